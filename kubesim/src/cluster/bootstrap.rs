//! The objects every API server creates at start, as kube-apiserver's bootstrap controllers
//! do: the default ClusterRoles and ClusterRoleBindings (RBAC bootstrap policy), the two
//! system PriorityClasses, and the `default/kubernetes` Service with its Endpoints and
//! EndpointSlice (once the listen port is known).

use serde_json::{Value, json};

use super::{Cluster, WriteOptions};
use crate::resources::VERBS;
use crate::store::ResKey;

/// The manager of what the bootstrap writes.
const MANAGER: &str = "kube-apiserver";

/// The verbs of read-only access.
const READ: [&str; 3] = ["get", "list", "watch"];
/// The verbs of write access (the `edit` role's).
const WRITE: [&str; 5] = ["create", "delete", "deletecollection", "patch", "update"];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn paths_rule(paths: &[&str]) -> Value {
    json!({"nonResourceURLs": paths, "verbs": ["get"]})
}

/// Metadata of a bootstrap RBAC object: the bootstrapping label and the autoupdate annotation.
fn rbac_meta(name: &str, extra_labels: &[(&str, &str)]) -> Value {
    let mut labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    for (k, v) in extra_labels {
        labels[*k] = json!(v);
    }
    json!({"name": name, "labels": labels,
           "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}})
}

fn cluster_role(name: &str, labels: &[(&str, &str)], rules: Vec<Value>) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
           "metadata": rbac_meta(name, labels), "rules": rules})
}

/// An aggregated ClusterRole: its `aggregationRule` selects `aggregate-to-<to>` roles; its
/// rules are those of `aggregated` (what the aggregation controller would have written).
fn aggregated_role(name: &str, labels: &[(&str, &str)], to: &str, aggregated: &[Value]) -> Value {
    let mut role = cluster_role(name, labels, aggregated.to_vec());
    role["aggregationRule"] = json!({"clusterRoleSelectors": [
        {"matchLabels": {format!("rbac.authorization.k8s.io/aggregate-to-{to}"): "true"}}]});
    role
}

fn binding(name: &str, role: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> = groups
        .iter()
        .map(|g| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g}))
        .collect();
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
           "metadata": rbac_meta(name, &[]),
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
           "subjects": subjects})
}

/// The default ClusterRoles of kube-apiserver's bootstrap policy (those clients and charts
/// refer to), with their aggregation labels.
pub fn cluster_roles() -> Vec<Value> {
    let view = vec![
        rule(
            &[""],
            &[
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
            ],
            &READ,
        ),
        rule(
            &[""],
            &[
                "bindings",
                "events",
                "limitranges",
                "namespaces/status",
                "pods/log",
                "pods/status",
                "replicationcontrollers/status",
                "resourcequotas",
                "resourcequotas/status",
            ],
            &READ,
        ),
        rule(&[""], &["namespaces"], &READ),
        rule(&["discovery.k8s.io"], &["endpointslices"], &READ),
        rule(
            &["apps"],
            &[
                "controllerrevisions",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ],
            &READ,
        ),
        rule(
            &["autoscaling"],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
            &READ,
        ),
        rule(
            &["batch"],
            &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
            &READ,
        ),
        rule(
            &["policy"],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
            &READ,
        ),
        rule(
            &["networking.k8s.io"],
            &["ingresses", "ingresses/status", "networkpolicies"],
            &READ,
        ),
    ];
    let edit = vec![
        rule(
            &[""],
            &[
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "secrets",
                "services/proxy",
            ],
            &READ,
        ),
        rule(&[""], &["serviceaccounts"], &["impersonate"]),
        rule(
            &[""],
            &[
                "pods",
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
            ],
            &WRITE,
        ),
        rule(&[""], &["pods/eviction"], &["create"]),
        rule(
            &[""],
            &[
                "configmaps",
                "events",
                "persistentvolumeclaims",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "secrets",
                "serviceaccounts",
                "services",
                "services/proxy",
            ],
            &WRITE,
        ),
        rule(&[""], &["serviceaccounts/token"], &["create"]),
        rule(
            &["apps"],
            &[
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/scale",
            ],
            &WRITE,
        ),
        rule(&["autoscaling"], &["horizontalpodautoscalers"], &WRITE),
        rule(&["batch"], &["cronjobs", "jobs"], &WRITE),
        rule(&["policy"], &["poddisruptionbudgets"], &WRITE),
        rule(
            &["networking.k8s.io"],
            &["ingresses", "networkpolicies"],
            &WRITE,
        ),
        rule(&["coordination.k8s.io"], &["leases"], &VERBS),
    ];
    let admin = vec![
        rule(
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews"],
            &["create"],
        ),
        rule(
            &["rbac.authorization.k8s.io"],
            &["rolebindings", "roles"],
            &VERBS,
        ),
    ];
    let to = |role: &str| format!("rbac.authorization.k8s.io/aggregate-to-{role}");
    let (to_admin, to_edit, to_view) = (to("admin"), to("edit"), to("view"));
    let edit_all: Vec<Value> = edit.iter().chain(&view).cloned().collect();
    let admin_all: Vec<Value> = admin.iter().chain(&edit_all).cloned().collect();
    vec![
        cluster_role(
            "cluster-admin",
            &[],
            vec![
                rule(&["*"], &["*"], &["*"]),
                json!({"nonResourceURLs": ["*"], "verbs": ["*"]}),
            ],
        ),
        aggregated_role("admin", &[], "admin", &admin_all),
        aggregated_role("edit", &[(&to_admin, "true")], "edit", &edit_all),
        aggregated_role("view", &[(&to_edit, "true")], "view", &view),
        cluster_role("system:aggregate-to-admin", &[(&to_admin, "true")], admin),
        cluster_role("system:aggregate-to-edit", &[(&to_edit, "true")], edit),
        cluster_role("system:aggregate-to-view", &[(&to_view, "true")], view),
        cluster_role(
            "system:discovery",
            &[],
            vec![paths_rule(&[
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
                "/healthz",
                "/livez",
                "/openapi",
                "/openapi/*",
                "/readyz",
                "/version",
                "/version/",
            ])],
        ),
        cluster_role(
            "system:basic-user",
            &[],
            vec![
                rule(
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    &["create"],
                ),
                rule(
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                    &["create"],
                ),
            ],
        ),
        cluster_role(
            "system:public-info-viewer",
            &[],
            vec![paths_rule(&[
                "/healthz",
                "/livez",
                "/readyz",
                "/version",
                "/version/",
            ])],
        ),
        cluster_role(
            "system:service-account-issuer-discovery",
            &[],
            vec![paths_rule(&[
                "/.well-known/openid-configuration",
                "/.well-known/openid-configuration/",
                "/openid/v1/jwks",
                "/openid/v1/jwks/",
            ])],
        ),
    ]
}

/// The default ClusterRoleBindings of the bootstrap policy.
pub fn cluster_role_bindings() -> Vec<Value> {
    vec![
        binding("cluster-admin", "cluster-admin", &["system:masters"]),
        binding(
            "system:discovery",
            "system:discovery",
            &["system:authenticated"],
        ),
        binding(
            "system:basic-user",
            "system:basic-user",
            &["system:authenticated"],
        ),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &["system:authenticated", "system:unauthenticated"],
        ),
        binding(
            "system:service-account-issuer-discovery",
            "system:service-account-issuer-discovery",
            &["system:serviceaccounts"],
        ),
    ]
}

/// The two PriorityClasses every cluster has.
fn priority_classes() -> Vec<Value> {
    crate::admission::SYSTEM_PRIORITY_CLASSES
        .iter()
        .map(|(name, value)| {
            let description = if name.ends_with("node-critical") {
                "Used for system critical pods that must not be moved from their current node."
            } else {
                "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."
            };
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                   "metadata": {"name": name}, "value": value, "globalDefault": false,
                   "description": description, "preemptionPolicy": "PreemptLowerPriority"})
        })
        .collect()
}

/// kube-apiserver's (group priority, version priority) of a built-in group-version
/// (`apiVersionPriorities` of the aggregator).
fn api_service_priority(group: &str, version: &str) -> (i64, i64) {
    let group_priority = match group {
        "" | "apiregistration.k8s.io" => 18000,
        "apps" => 17800,
        "events.k8s.io" => 17750,
        "authentication.k8s.io" => 17700,
        "authorization.k8s.io" => 17600,
        "autoscaling" => 17500,
        "batch" => 17400,
        "certificates.k8s.io" => 17300,
        "networking.k8s.io" => 17200,
        "policy" => 17100,
        "rbac.authorization.k8s.io" => 17000,
        "storage.k8s.io" => 16800,
        "admissionregistration.k8s.io" | "apiextensions.k8s.io" => 16700,
        "scheduling.k8s.io" => 16600,
        "coordination.k8s.io" => 16500,
        "node.k8s.io" => 16300,
        "discovery.k8s.io" => 16200,
        "flowcontrol.apiserver.k8s.io" => 16100,
        _ => 1000,
    };
    let version_priority = match (group, version) {
        ("", "v1") => 1,
        ("autoscaling", "v2") => 30,
        _ => 15,
    };
    (group_priority, version_priority)
}

/// The `apiregistration.k8s.io/v1` APIServices of the built-in group-versions, as the
/// aggregator registers them at start (`v1.` for the core group, `v1.apps`, ...): local (no
/// `spec.service`) and always available.
fn api_services(groups: &[(String, Vec<String>)]) -> Vec<Value> {
    let mut gvs = vec![(String::new(), "v1".to_string())];
    for (g, vs) in groups {
        gvs.extend(vs.iter().map(|v| (g.clone(), v.clone())));
    }
    gvs.into_iter()
        .map(|(group, version)| {
            let (gp, vp) = api_service_priority(&group, &version);
            let mut spec =
                json!({"version": version, "groupPriorityMinimum": gp, "versionPriority": vp});
            if !group.is_empty() {
                spec["group"] = json!(group);
            }
            json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                   "metadata": {"name": format!("{version}.{group}"),
                                "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"}},
                   "spec": spec})
        })
        .collect()
}

impl Cluster {
    /// Create the cluster-scoped bootstrap objects (RBAC policy, PriorityClasses, the
    /// built-in APIServices).
    pub(super) fn bootstrap(&self) {
        let opts = WriteOptions::manager(MANAGER);
        let rbac = |r: &str| ResKey::new("rbac.authorization.k8s.io", r);
        let mut objects: Vec<(ResKey, Value)> = Vec::new();
        objects.extend(
            cluster_roles()
                .into_iter()
                .map(|o| (rbac("clusterroles"), o)),
        );
        objects.extend(
            cluster_role_bindings()
                .into_iter()
                .map(|o| (rbac("clusterrolebindings"), o)),
        );
        objects.extend(
            priority_classes()
                .into_iter()
                .map(|o| (ResKey::new("scheduling.k8s.io", "priorityclasses"), o)),
        );
        for (res, obj) in objects {
            self.create(&res, "", obj, &opts)
                .expect("a bootstrap object is valid");
        }
        let api_service = ResKey::new("apiregistration.k8s.io", "apiservices");
        let now = crate::time::now();
        for obj in api_services(&self.registry().groups()) {
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            self.create(&api_service, "", obj, &opts)
                .expect("a bootstrap object is valid");
            self.update_status(&api_service, "", &name, MANAGER, |o| {
                o["status"] = json!({"conditions": [{"type": "Available", "status": "True",
                    "lastTransitionTime": now, "reason": "Local",
                    "message": "Local APIServices are always available"}]});
                Ok(())
            })
            .expect("a bootstrap APIService exists");
        }
    }

    /// Keep one APIService per group-version that CustomResourceDefinitions serve, as the
    /// API server's CRD registration controller does (label
    /// `kube-aggregator.kubernetes.io/automanaged: "true"`, group priority 1000, version
    /// priority 100, local and available); remove those no definition serves any more.
    pub(super) fn sync_crd_api_services(&self) {
        let res = ResKey::new("apiregistration.k8s.io", "apiservices");
        let mut wanted: Vec<(String, String)> = Vec::new();
        for i in self.registry().all().filter(|i| i.custom) {
            for v in &i.versions {
                let gv = (i.group.clone(), v.clone());
                if !wanted.contains(&gv) {
                    wanted.push(gv);
                }
            }
        }
        let opts = WriteOptions::manager(MANAGER);
        let (existing, _) = self.store.list(&res, None);
        for o in existing.iter() {
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            let automanaged =
                o["metadata"]["labels"]["kube-aggregator.kubernetes.io/automanaged"] == "true";
            let gv = (
                o["spec"]["group"].as_str().unwrap_or_default().to_string(),
                o["spec"]["version"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
            if automanaged && !wanted.contains(&gv) {
                let _ = self.delete(&res, "", name, &super::DeleteOptions::default());
            }
        }
        for (group, version) in wanted {
            let name = format!("{version}.{group}");
            if self
                .store
                .get(&crate::store::ObjKey::new(&res, "", &name))
                .is_some()
            {
                continue;
            }
            let obj = json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                "metadata": {"name": name, "labels": {"kube-aggregator.kubernetes.io/automanaged": "true"}},
                "spec": {"group": group, "version": version, "groupPriorityMinimum": 1000, "versionPriority": 100}});
            if self.create(&res, "", obj, &opts).is_err() {
                continue;
            }
            let now = crate::time::now();
            let _ = self.update_status(&res, "", &name, MANAGER, |o| {
                o["status"] = json!({"conditions": [{"type": "Available", "status": "True",
                    "lastTransitionTime": now, "reason": "Local",
                    "message": "Local APIServices are always available"}]});
                Ok(())
            });
        }
    }

    /// Create the `default/kubernetes` Service (ClusterIP 10.96.0.1, port 443 to `port`, the
    /// API server's port) with its Endpoints and EndpointSlice on 127.0.0.1, as the API
    /// server's endpoint reconciler does. Existing objects are left alone.
    pub fn bootstrap_api_service(&self, port: u16) {
        let opts = WriteOptions::manager(MANAGER);
        let objects = [
            (
                ResKey::new("", "services"),
                json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                    "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "sessionAffinity": "None",
                             "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}}),
            ),
            (
                ResKey::new("", "endpoints"),
                json!({"apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                    "subsets": [{"addresses": [{"ip": "127.0.0.1"}],
                                 "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}),
            ),
            (
                ResKey::new("discovery.k8s.io", "endpointslices"),
                json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes"}},
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
                    "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}),
            ),
        ];
        for (res, obj) in objects {
            match self.create(&res, "default", obj, &opts) {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => tracing::warn!(error = %e, "creating the kubernetes Service failed"),
            }
        }
    }
}

//! The resource registry (built-in types plus the types CustomResourceDefinitions serve) and
//! the documents derived from it: `/version`, `/api`, `/apis`, per group-version
//! `APIResourceList`s and the minimal `/openapi/v3` documents.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::store::ResKey;

/// The version this server reports (`/version`, OpenAPI `info.version`).
pub const GIT_VERSION: &str = "v1.33.0";

/// Everything the server knows about one resource type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group, "" for core.
    pub group: String,
    /// Served versions, the preferred (and storage) version first.
    pub versions: Vec<String>,
    /// Plural resource name (`jobs`).
    pub resource: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Served subresources: `status`, `scale`, `log`, `token`.
    pub subresources: Vec<String>,
    /// Served by a CustomResourceDefinition (no strategic merge patch, no typed checks).
    pub custom: bool,
    /// A custom type's `openAPIV3Schema` per served version (pruning, defaulting, validation
    /// and its OpenAPI documents); `None` for built-in types.
    pub schemas: Option<std::sync::Arc<BTreeMap<String, Value>>>,
    /// A custom type's scale subresource (`specReplicasPath`, `statusReplicasPath`,
    /// `labelSelectorPath`), as its CRD declares it.
    pub scale: Option<std::sync::Arc<Value>>,
}

impl ResourceInfo {
    /// The store collection of this type.
    pub fn key(&self) -> ResKey {
        ResKey::new(&self.group, &self.resource)
    }

    /// The preferred version.
    pub fn version(&self) -> &str {
        &self.versions[0]
    }

    /// `apiVersion` for `version` (`batch/v1`, `v1`).
    pub fn api_version_for(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    /// `apiVersion` of the preferred version.
    pub fn api_version(&self) -> String {
        self.api_version_for(self.version())
    }

    /// `jobs.batch`, or `pods` for the core group (as in error messages).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    /// `Job.batch`, or `Pod` for the core group (as in 422 messages).
    pub fn kind_qualified(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// Whether `sub` is a served subresource.
    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.iter().any(|s| s == sub)
    }

    /// Whether a delete that removes the object answers the object rather than a `Status`
    /// (`ReturnDeletedObject: true` in the type's registry store of kube-apiserver).
    pub fn returns_deleted_object(&self) -> bool {
        matches!(
            (self.group.as_str(), self.resource.as_str()),
            (
                "",
                "pods"
                    | "services"
                    | "serviceaccounts"
                    | "namespaces"
                    | "persistentvolumes"
                    | "persistentvolumeclaims"
            ) | ("storage.k8s.io", "storageclasses" | "csidrivers")
        )
    }

    /// Whether the type is a create-only review (access reviews, token and self reviews):
    /// answered from the request, never stored.
    pub fn is_review(&self) -> bool {
        matches!(
            self.group.as_str(),
            "authorization.k8s.io" | "authentication.k8s.io"
        )
    }

    /// The verbs served on the main resource.
    pub fn verbs(&self) -> Vec<&'static str> {
        if self.is_review() {
            vec!["create"]
        } else if self.is_component_status() {
            vec!["get", "list"]
        } else if self.resource == "namespaces" {
            VERBS
                .iter()
                .copied()
                .filter(|v| *v != "deletecollection")
                .collect()
        } else {
            VERBS.to_vec()
        }
    }

    /// Whether the type is `v1` ComponentStatus: read-only, computed on each request.
    pub fn is_component_status(&self) -> bool {
        self.group.is_empty() && self.resource == "componentstatuses"
    }

    /// Whether `version` is served.
    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }

    /// A custom type's schema at `version` (the storage version's when `version` is not
    /// served).
    pub fn schema(&self, version: &str) -> Option<&Value> {
        let schemas = self.schemas.as_ref()?;
        schemas.get(version).or_else(|| schemas.get(self.version()))
    }
}

/// All served resource types, keyed by group and plural.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    types: BTreeMap<ResKey, ResourceInfo>,
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    resource: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    all: bool,
    subs: &[&str],
) -> ResourceInfo {
    ResourceInfo {
        group: group.into(),
        versions: vec![version.into()],
        resource: resource.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: if all { vec!["all".into()] } else { vec![] },
        subresources: subs.iter().map(|s| s.to_string()).collect(),
        custom: false,
        schemas: None,
        scale: None,
    }
}

impl Registry {
    /// The built-in types.
    pub fn builtin() -> Self {
        let list = [
            builtin(
                "",
                "v1",
                "namespaces",
                "Namespace",
                false,
                &["ns"],
                false,
                &["status"],
            ),
            builtin(
                "",
                "v1",
                "pods",
                "Pod",
                true,
                &["po"],
                true,
                &[
                    "status",
                    "log",
                    "attach",
                    "exec",
                    "portforward",
                    "eviction",
                    "ephemeralcontainers",
                ],
            ),
            builtin("", "v1", "secrets", "Secret", true, &[], false, &[]),
            builtin(
                "",
                "v1",
                "configmaps",
                "ConfigMap",
                true,
                &["cm"],
                false,
                &[],
            ),
            builtin(
                "",
                "v1",
                "serviceaccounts",
                "ServiceAccount",
                true,
                &["sa"],
                false,
                &["token"],
            ),
            builtin(
                "",
                "v1",
                "services",
                "Service",
                true,
                &["svc"],
                true,
                &["status"],
            ),
            builtin("", "v1", "events", "Event", true, &["ev"], false, &[]),
            builtin(
                "",
                "v1",
                "endpoints",
                "Endpoints",
                true,
                &["ep"],
                false,
                &[],
            ),
            builtin(
                "",
                "v1",
                "nodes",
                "Node",
                false,
                &["no"],
                false,
                &["status"],
            ),
            builtin(
                "events.k8s.io",
                "v1",
                "events",
                "Event",
                true,
                &["ev"],
                false,
                &[],
            ),
            builtin("batch", "v1", "jobs", "Job", true, &[], true, &["status"]),
            builtin(
                "batch",
                "v1",
                "cronjobs",
                "CronJob",
                true,
                &["cj"],
                true,
                &["status"],
            ),
            builtin(
                "apps",
                "v1",
                "deployments",
                "Deployment",
                true,
                &["deploy"],
                true,
                &["status", "scale"],
            ),
            builtin(
                "apps",
                "v1",
                "replicasets",
                "ReplicaSet",
                true,
                &["rs"],
                true,
                &["status", "scale"],
            ),
            builtin(
                "apps",
                "v1",
                "statefulsets",
                "StatefulSet",
                true,
                &["sts"],
                true,
                &["status", "scale"],
            ),
            builtin(
                "apps",
                "v1",
                "daemonsets",
                "DaemonSet",
                true,
                &["ds"],
                true,
                &["status"],
            ),
            builtin(
                "coordination.k8s.io",
                "v1",
                "leases",
                "Lease",
                true,
                &[],
                false,
                &[],
            ),
            builtin(
                "rbac.authorization.k8s.io",
                "v1",
                "roles",
                "Role",
                true,
                &[],
                false,
                &[],
            ),
            builtin(
                "rbac.authorization.k8s.io",
                "v1",
                "clusterroles",
                "ClusterRole",
                false,
                &[],
                false,
                &[],
            ),
            builtin(
                "rbac.authorization.k8s.io",
                "v1",
                "rolebindings",
                "RoleBinding",
                true,
                &[],
                false,
                &[],
            ),
            builtin(
                "rbac.authorization.k8s.io",
                "v1",
                "clusterrolebindings",
                "ClusterRoleBinding",
                false,
                &[],
                false,
                &[],
            ),
            builtin(
                "authorization.k8s.io",
                "v1",
                "selfsubjectaccessreviews",
                "SelfSubjectAccessReview",
                false,
                &[],
                false,
                &[],
            ),
            builtin(
                "authorization.k8s.io",
                "v1",
                "subjectaccessreviews",
                "SubjectAccessReview",
                false,
                &[],
                false,
                &[],
            ),
            builtin(
                "authorization.k8s.io",
                "v1",
                "selfsubjectrulesreviews",
                "SelfSubjectRulesReview",
                false,
                &[],
                false,
                &[],
            ),
            builtin(
                "authentication.k8s.io",
                "v1",
                "selfsubjectreviews",
                "SelfSubjectReview",
                false,
                &[],
                false,
                &[],
            ),
            builtin(
                "authentication.k8s.io",
                "v1",
                "tokenreviews",
                "TokenReview",
                false,
                &[],
                false,
                &[],
            ),
            builtin(
                "",
                "v1",
                "persistentvolumeclaims",
                "PersistentVolumeClaim",
                true,
                &["pvc"],
                false,
                &["status"],
            ),
            builtin(
                "",
                "v1",
                "persistentvolumes",
                "PersistentVolume",
                false,
                &["pv"],
                false,
                &["status"],
            ),
            builtin(
                "",
                "v1",
                "replicationcontrollers",
                "ReplicationController",
                true,
                &["rc"],
                true,
                &["status", "scale"],
            ),
            builtin(
                "policy",
                "v1",
                "poddisruptionbudgets",
                "PodDisruptionBudget",
                true,
                &["pdb"],
                false,
                &["status"],
            ),
            builtin(
                "networking.k8s.io",
                "v1",
                "networkpolicies",
                "NetworkPolicy",
                true,
                &["netpol"],
                false,
                &[],
            ),
            builtin(
                "networking.k8s.io",
                "v1",
                "ingresses",
                "Ingress",
                true,
                &["ing"],
                false,
                &["status"],
            ),
            builtin(
                "networking.k8s.io",
                "v1",
                "ingressclasses",
                "IngressClass",
                false,
                &[],
                false,
                &[],
            ),
            builtin(
                "admissionregistration.k8s.io",
                "v1",
                "mutatingwebhookconfigurations",
                "MutatingWebhookConfiguration",
                false,
                &[],
                false,
                &[],
            ),
            builtin(
                "admissionregistration.k8s.io",
                "v1",
                "validatingwebhookconfigurations",
                "ValidatingWebhookConfiguration",
                false,
                &[],
                false,
                &[],
            ),
            builtin(
                "storage.k8s.io",
                "v1",
                "csidrivers",
                "CSIDriver",
                false,
                &[],
                false,
                &[],
            ),
            builtin(
                "storage.k8s.io",
                "v1",
                "storageclasses",
                "StorageClass",
                false,
                &["sc"],
                false,
                &[],
            ),
            builtin(
                "scheduling.k8s.io",
                "v1",
                "priorityclasses",
                "PriorityClass",
                false,
                &["pc"],
                false,
                &[],
            ),
            builtin(
                "autoscaling",
                "v2",
                "horizontalpodautoscalers",
                "HorizontalPodAutoscaler",
                true,
                &["hpa"],
                true,
                &["status"],
            ),
            builtin(
                "discovery.k8s.io",
                "v1",
                "endpointslices",
                "EndpointSlice",
                true,
                &[],
                false,
                &[],
            ),
            builtin(
                "",
                "v1",
                "componentstatuses",
                "ComponentStatus",
                false,
                &["cs"],
                false,
                &[],
            ),
            builtin(
                "certificates.k8s.io",
                "v1",
                "certificatesigningrequests",
                "CertificateSigningRequest",
                false,
                &["csr"],
                false,
                &["status", "approval"],
            ),
            builtin(
                "apiregistration.k8s.io",
                "v1",
                "apiservices",
                "APIService",
                false,
                &[],
                false,
                &["status"],
            ),
            builtin(
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
                "CustomResourceDefinition",
                false,
                &["crd", "crds"],
                false,
                &["status"],
            ),
        ];
        let mut r = Registry::default();
        for i in list {
            r.types.insert(i.key(), i);
        }
        r
    }

    /// The type served at `group`/`resource`, any version.
    pub fn get(&self, group: &str, resource: &str) -> Option<&ResourceInfo> {
        self.types.get(&ResKey::new(group, resource))
    }

    /// The type of an object's `apiVersion` and `kind`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceInfo> {
        let (group, version) = split_api_version(api_version);
        self.types
            .values()
            .find(|i| i.group == group && i.kind == kind && i.serves(version))
    }

    /// Every served type.
    pub fn all(&self) -> impl Iterator<Item = &ResourceInfo> {
        self.types.values()
    }

    /// Serve the types a CustomResourceDefinition declares (replacing an earlier definition
    /// of the same group and plural). Returns the type, or why the definition is unusable.
    pub fn add_crd(&mut self, crd: &Value) -> Result<ResourceInfo, String> {
        let info = crd_info(crd)?;
        self.types.insert(info.key(), info.clone());
        Ok(info)
    }

    /// Stop serving a CustomResourceDefinition's type.
    pub fn remove_crd(&mut self, crd: &Value) {
        if let Ok(info) = crd_info(crd)
            && self.types.get(&info.key()).is_some_and(|i| i.custom)
        {
            self.types.remove(&info.key());
        }
    }

    /// Served group names with their versions, core ("") excluded, in a stable order
    /// (built-in groups first as the API server lists them, then custom ones).
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        let mut ordered: Vec<&ResourceInfo> = self
            .types
            .values()
            .filter(|i| !i.group.is_empty())
            .collect();
        ordered.sort_by_key(|i| (i.custom, group_rank(&i.group), i.group.clone()));
        for i in ordered {
            match out.iter_mut().find(|(g, _)| *g == i.group) {
                Some((_, vs)) => {
                    for v in &i.versions {
                        if !vs.contains(v) {
                            vs.push(v.clone());
                        }
                    }
                }
                None => out.push((i.group.clone(), i.versions.clone())),
            }
        }
        out
    }
}

fn group_rank(g: &str) -> usize {
    /// The order kube-apiserver lists its groups in (`/apis`).
    const ORDER: [&str; 19] = [
        "apiregistration.k8s.io",
        "apps",
        "events.k8s.io",
        "authentication.k8s.io",
        "authorization.k8s.io",
        "autoscaling",
        "batch",
        "certificates.k8s.io",
        "networking.k8s.io",
        "policy",
        "rbac.authorization.k8s.io",
        "storage.k8s.io",
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "scheduling.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "flowcontrol.apiserver.k8s.io",
        "",
    ];
    ORDER.iter().position(|x| *x == g).unwrap_or(ORDER.len())
}

/// `batch/v1` -> (`batch`, `v1`); `v1` -> (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

fn crd_info(crd: &Value) -> Result<ResourceInfo, String> {
    let spec = &crd["spec"];
    let group = spec["group"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or("spec.group is required")?;
    let names = &spec["names"];
    let plural = names["plural"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or("spec.names.plural is required")?;
    let kind = names["kind"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or("spec.names.kind is required")?;
    let singular = names["singular"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut versions: Vec<(bool, String, bool, bool)> = Vec::new();
    let mut schemas = BTreeMap::new();
    let mut scale_paths = None;
    for v in spec["versions"].as_array().into_iter().flatten() {
        if v["served"].as_bool() == Some(false) {
            continue;
        }
        let name = v["name"]
            .as_str()
            .ok_or("spec.versions[].name is required")?;
        if let Some(schema) = v["schema"].get("openAPIV3Schema") {
            schemas.insert(name.to_string(), schema.clone());
        }
        let status = v["subresources"].get("status").is_some();
        let scale = v["subresources"].get("scale").is_some();
        if v["storage"].as_bool() == Some(true) || scale_paths.is_none() {
            scale_paths = v["subresources"].get("scale").cloned().or(scale_paths);
        }
        versions.push((
            v["storage"].as_bool() == Some(true),
            name.to_string(),
            status,
            scale,
        ));
    }
    if versions.is_empty() {
        return Err("spec.versions must serve at least one version".into());
    }
    // Storage version first.
    versions.sort_by_key(|(storage, _, _, _)| !*storage);
    let mut subresources = Vec::new();
    if versions.iter().any(|v| v.2) {
        subresources.push("status".to_string());
    }
    if versions.iter().any(|v| v.3) {
        subresources.push("scale".to_string());
    }
    Ok(ResourceInfo {
        group: group.into(),
        versions: versions.into_iter().map(|v| v.1).collect(),
        resource: plural.into(),
        singular,
        kind: kind.into(),
        namespaced: spec["scope"].as_str() != Some("Cluster"),
        short_names: strings(&names["shortNames"]),
        categories: strings(&names["categories"]),
        subresources,
        custom: true,
        schemas: Some(std::sync::Arc::new(schemas)),
        scale: scale_paths.map(std::sync::Arc::new),
    })
}

/// The `APIResourceDiscovery` entries of one group-version's `APIResourceList`: each
/// resource with its subresources nested.
fn discovery_resources(group: &str, version: &str, list: &Value) -> Vec<Value> {
    let entries = list["resources"].as_array().cloned().unwrap_or_default();
    let kind_of = |r: &Value| {
        json!({
            "group": r.get("group").cloned().unwrap_or_else(|| json!(group)),
            "version": r.get("version").cloned().unwrap_or_else(|| json!(version)),
            "kind": r["kind"],
        })
    };
    let mut out: Vec<Value> = Vec::new();
    for r in &entries {
        let name = r["name"].as_str().unwrap_or_default();
        match name.split_once('/') {
            None => {
                let mut d = json!({
                    "resource": name,
                    "responseKind": kind_of(r),
                    "scope": if r["namespaced"] == true { "Namespaced" } else { "Cluster" },
                    "singularResource": r["singularName"],
                    "verbs": r["verbs"],
                });
                for k in ["shortNames", "categories"] {
                    if let Some(v) = r.get(k) {
                        d[k] = v.clone();
                    }
                }
                out.push(d);
            }
            Some((parent, sub)) => {
                if let Some(p) = out.iter_mut().find(|d| d["resource"] == parent) {
                    let s = json!({"subresource": sub, "responseKind": kind_of(r), "verbs": r["verbs"]});
                    match p["subresources"].as_array_mut() {
                        Some(a) => a.push(s),
                        None => p["subresources"] = json!([s]),
                    }
                }
            }
        }
    }
    out
}

/// Every verb served on a resource (RBAC's full access to it).
pub(crate) const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// `GET /version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": GIT_VERSION,
        "gitCommit": "60a317eadfcb839692a68eab88b2096f4d708f4f",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `GET /api`.
pub fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
    })
}

fn api_group(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"name": name, "versions": vs, "preferredVersion": vs[0]})
}

impl Registry {
    /// `GET /apis`.
    pub fn api_group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .groups()
            .iter()
            .map(|(g, vs)| api_group(g, vs))
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// `GET /apis/<group>`.
    pub fn api_group_doc(&self, group: &str) -> Option<Value> {
        let (g, vs) = self.groups().into_iter().find(|(g, _)| g == group)?;
        let mut doc = api_group(&g, &vs);
        doc["kind"] = json!("APIGroup");
        doc["apiVersion"] = json!("v1");
        Some(doc)
    }

    /// Types served at `group`/`version`.
    pub fn served(&self, group: &str, version: &str) -> Vec<&ResourceInfo> {
        self.types
            .values()
            .filter(|i| i.group == group && i.serves(version))
            .collect()
    }

    /// `GET /api/v1`, `GET /apis/<group>/<version>`: the `APIResourceList`.
    pub fn api_resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let served = self.served(group, version);
        if served.is_empty() {
            return None;
        }
        let mut resources = Vec::new();
        for i in served {
            let verbs = i.verbs();
            let mut r = json!({
                "name": i.resource,
                "singularName": i.singular,
                "namespaced": i.namespaced,
                "kind": i.kind,
                "verbs": verbs,
            });
            if !i.short_names.is_empty() {
                r["shortNames"] = json!(i.short_names);
            }
            if !i.categories.is_empty() {
                r["categories"] = json!(i.categories);
            }
            resources.push(r);
            for sub in &i.subresources {
                let name = format!("{}/{sub}", i.resource);
                let r = match sub.as_str() {
                    "log" => {
                        json!({"name": name, "singularName": "", "namespaced": i.namespaced, "kind": i.kind, "verbs": ["get"]})
                    }
                    "attach" | "exec" | "portforward" => {
                        let kind = match sub.as_str() {
                            "attach" => "PodAttachOptions",
                            "exec" => "PodExecOptions",
                            _ => "PodPortForwardOptions",
                        };
                        json!({"name": name, "singularName": "", "namespaced": i.namespaced, "kind": kind, "verbs": ["create", "get"]})
                    }
                    "scale" => json!({"name": name, "singularName": "", "namespaced": i.namespaced,
                        "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}),
                    "token" => json!({"name": name, "singularName": "", "namespaced": i.namespaced,
                        "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest", "verbs": ["create"]}),
                    "eviction" => {
                        json!({"name": name, "singularName": "", "namespaced": i.namespaced,
                        "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]})
                    }
                    _ => {
                        json!({"name": name, "singularName": "", "namespaced": i.namespaced, "kind": i.kind,
                        "verbs": ["get", "patch", "update"]})
                    }
                };
                resources.push(r);
            }
        }
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        Some(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
        )
    }

    /// `GET /api` or `GET /apis` (`core` true for `/api`) as aggregated discovery
    /// (`apidiscovery.k8s.io/<api_version>` `APIGroupDiscoveryList`), built from the same
    /// per group-version lists as the plain documents.
    pub fn group_discovery_list(&self, core: bool, api_version: &str) -> Value {
        let groups: Vec<(String, Vec<String>)> = if core {
            vec![(String::new(), vec!["v1".to_string()])]
        } else {
            self.groups()
        };
        let items: Vec<Value> = groups
            .iter()
            .map(|(g, vs)| {
                let versions: Vec<Value> = vs
                    .iter()
                    .filter_map(|v| {
                        let list = self.api_resource_list(g, v)?;
                        Some(json!({
                            "version": v,
                            "resources": discovery_resources(g, v, &list),
                            "freshness": "Current",
                        }))
                    })
                    .collect();
                let mut meta = json!({"creationTimestamp": null});
                if !g.is_empty() {
                    meta["name"] = json!(g);
                }
                json!({"metadata": meta, "versions": versions})
            })
            .collect();
        json!({
            "kind": "APIGroupDiscoveryList",
            "apiVersion": format!("apidiscovery.k8s.io/{api_version}"),
            "metadata": {},
            "items": items,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_lists_subresources_and_openapi_has_namespace_patch() {
        let r = Registry::builtin();
        let core = r.api_resource_list("", "v1").unwrap();
        let names: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["name"].as_str().unwrap())
            .collect();
        for n in [
            "pods",
            "pods/log",
            "pods/status",
            "pods/exec",
            "pods/attach",
            "pods/portforward",
            "serviceaccounts/token",
            "namespaces",
            "configmaps",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        let doc = r.openapi_doc("api/v1").unwrap();
        let ns = &doc["paths"]["/api/v1/namespaces/{name}"]["patch"];
        assert_eq!(ns["x-kubernetes-group-version-kind"]["kind"], "Namespace");
        assert!(
            r.openapi_index()["paths"]["apis/batch/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/apis/batch/v1?hash=")
        );
        assert!(r.api_resource_list("batch", "v2").is_none());
    }

    #[test]
    fn crds_are_served_with_their_scope_and_subresources() {
        let mut r = Registry::builtin();
        let crd = json!({"spec": {"group": "secrets-store.csi.x-k8s.io", "scope": "Namespaced",
            "names": {"plural": "secretproviderclasses", "kind": "SecretProviderClass", "singular": "secretproviderclass"},
            "versions": [{"name": "v1alpha1", "served": true, "storage": false},
                         {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}}]}});
        let info = r.add_crd(&crd).unwrap();
        assert_eq!(info.versions, ["v1", "v1alpha1"]);
        assert!(info.has_subresource("status"));
        assert!(
            r.api_group_list()["groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["name"] == "secrets-store.csi.x-k8s.io")
        );
        assert!(
            r.by_kind("secrets-store.csi.x-k8s.io/v1alpha1", "SecretProviderClass")
                .is_some()
        );
        r.remove_crd(&crd);
        assert!(
            r.get("secrets-store.csi.x-k8s.io", "secretproviderclasses")
                .is_none()
        );
    }
}

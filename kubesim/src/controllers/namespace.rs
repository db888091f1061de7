//! The namespace controller: a Namespace being deleted (phase Terminating, spec finalizer
//! `kubernetes`) has every namespaced object in it deleted; once none is left, the finalizer
//! is removed and the Namespace disappears. It also recreates a deleted `default`
//! ServiceAccount in active namespaces, and publishes the cluster CA in each of them as the
//! `kube-root-ca.crt` ConfigMap (key `ca.crt`), recreated when deleted and reset when changed,
//! as kube-controller-manager's root-ca-cert-publisher does (https servers only).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::Reconciler;
use crate::cluster::{ApiError, Cluster, DeleteOptions, Propagation, WriteOptions};
use crate::store::{EventType, ObjKey, ResKey, WatchEvent};

/// The component name on managedFields.
pub const COMPONENT: &str = "namespace-controller";

/// The ConfigMap that holds the cluster CA in every namespace.
pub const ROOT_CA: &str = "kube-root-ca.crt";

/// Create or reset `kube-root-ca.crt` in `namespace` to hold the cluster CA (`ca.crt`).
fn publish_root_ca(cluster: &Cluster, namespace: &str) -> Result<(), ApiError> {
    let Some(pem) = cluster.root_ca() else {
        return Ok(());
    };
    let cm = ResKey::new("", "configmaps");
    let manager = "root-ca-cert-publisher";
    match cluster.store().get(&ObjKey::new(&cm, namespace, ROOT_CA)) {
        None => {
            let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": ROOT_CA, "annotations": {
                    "kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                "data": {"ca.crt": pem}});
            match cluster.create(&cm, namespace, obj, &WriteOptions::manager(manager)) {
                Ok(_) => Ok(()),
                Err(e) if e.is_conflict() => Ok(()),
                Err(e) => Err(e),
            }
        }
        Some(cur) if cur["data"] != json!({"ca.crt": pem}) => {
            match cluster.mutate(&cm, namespace, ROOT_CA, manager, |o| {
                o["data"] = json!({"ca.crt": pem});
                if let Some(m) = o.as_object_mut() {
                    m.remove("binaryData");
                }
                Ok(())
            }) {
                Ok(_) => Ok(()),
                Err(e) if e.is_not_found() => Ok(()),
                Err(e) => Err(e),
            }
        }
        Some(_) => Ok(()),
    }
}

fn namespaces() -> ResKey {
    ResKey::new("", "namespaces")
}

/// The namespace controller.
pub struct NamespaceController;

impl Reconciler for NamespaceController {
    fn name(&self) -> &'static str {
        COMPONENT
    }

    fn keys_for(&self, cluster: &Cluster, ev: &WatchEvent) -> Vec<ObjKey> {
        if ev.key.res == namespaces() {
            return vec![ev.key.clone()];
        }
        if ev.key.namespace.is_empty() {
            return Vec::new();
        }
        let ns_key = ObjKey::new(&namespaces(), "", &ev.key.namespace);
        let terminating = cluster
            .store()
            .get(&ns_key)
            .is_some_and(|n| !n["metadata"]["deletionTimestamp"].is_null());
        let default_sa = ev.kind == EventType::Deleted
            && ev.key.res == ResKey::new("", "serviceaccounts")
            && ev.key.name == "default";
        let root_ca = ev.key.res == ResKey::new("", "configmaps") && ev.key.name == ROOT_CA;
        if terminating && ev.kind == EventType::Deleted || default_sa || (root_ca && !terminating) {
            return vec![ns_key];
        }
        Vec::new()
    }

    fn all_keys(&self, cluster: &Cluster) -> Vec<ObjKey> {
        super::all_of(cluster, &namespaces())
    }

    fn reconcile(&self, cluster: &Cluster, key: &ObjKey) -> Result<Option<Duration>, ApiError> {
        let Some(ns) = cluster.store().get(key) else {
            return Ok(None);
        };
        let name = key.name.as_str();
        if ns["metadata"]["deletionTimestamp"].is_null() {
            let sa = ResKey::new("", "serviceaccounts");
            if cluster
                .store()
                .get(&ObjKey::new(&sa, name, "default"))
                .is_none()
            {
                let obj = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
                match cluster.create(
                    &sa,
                    name,
                    obj,
                    &WriteOptions::manager("serviceaccount-controller"),
                ) {
                    Ok(_) => {}
                    Err(e) if e.is_conflict() => {}
                    Err(e) => return Err(e),
                }
            }
            publish_root_ca(cluster, name)?;
            return Ok(None);
        }
        for res in super::gc::namespaced_resources(cluster) {
            let (items, _) = cluster.store().list(&res, Some(name));
            for o in items {
                let o: &Value = &o;
                if !o["metadata"]["deletionTimestamp"].is_null() {
                    continue;
                }
                let opts = DeleteOptions {
                    propagation_policy: Some(Propagation::Background),
                    ..Default::default()
                };
                match cluster.delete(&res, name, super::meta_str(o, "name"), &opts) {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        // What is left once deletion was asked of everything: objects in their grace period
        // (pods) or held by finalizers. Their removal emits DELETED events, which requeue
        // this namespace.
        let mut by_resource = BTreeMap::new();
        let mut by_finalizer: BTreeMap<String, usize> = BTreeMap::new();
        for res in super::gc::namespaced_resources(cluster) {
            let (items, _) = cluster.store().list(&res, Some(name));
            if items.is_empty() {
                continue;
            }
            by_resource.insert(format!("{}.{}", res.resource, res.group), items.len());
            for o in &items {
                for f in o["metadata"]["finalizers"].as_array().into_iter().flatten() {
                    if let Some(f) = f.as_str() {
                        *by_finalizer.entry(f.to_string()).or_default() += 1;
                    }
                }
            }
        }
        let conditions = deletion_conditions(&by_resource, &by_finalizer);
        let r = cluster.update_status(&namespaces(), "", name, COMPONENT, |o| {
            set_conditions(&mut o["status"], conditions);
            Ok(())
        });
        match r {
            Ok(_) => {}
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        }
        if !by_resource.is_empty() {
            return Ok(None);
        }
        let r = cluster.mutate(&namespaces(), "", name, COMPONENT, |o| {
            if let Some(list) = o["spec"]["finalizers"].as_array_mut() {
                list.retain(|f| f != "kubernetes");
            }
            Ok(())
        });
        match r {
            Ok(_) => Ok(None),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The namespace deleter's conditions (`status_condition_utils.go`), in its order, as
/// `(type, status, reason, message)`: no discovery, parsing or deletion failure here; content
/// and finalizers remaining as counted.
fn deletion_conditions(
    by_resource: &BTreeMap<String, usize>,
    by_finalizer: &BTreeMap<String, usize>,
) -> Vec<(&'static str, &'static str, &'static str, String)> {
    let mut out = vec![
        (
            "NamespaceDeletionDiscoveryFailure",
            "False",
            "ResourcesDiscovered",
            "All resources successfully discovered".to_string(),
        ),
        (
            "NamespaceDeletionGroupVersionParsingFailure",
            "False",
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".to_string(),
        ),
        (
            "NamespaceDeletionContentFailure",
            "False",
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization".to_string(),
        ),
    ];
    if by_resource.is_empty() {
        out.push((
            "NamespaceContentRemaining",
            "False",
            "ContentRemoved",
            "All content successfully removed".to_string(),
        ));
    } else {
        let mut parts: Vec<String> = by_resource
            .iter()
            .map(|(r, n)| format!("{r} has {n} resource instances"))
            .collect();
        parts.sort();
        out.push((
            "NamespaceContentRemaining",
            "True",
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", parts.join(", ")),
        ));
    }
    if by_finalizer.is_empty() {
        out.push((
            "NamespaceFinalizersRemaining",
            "False",
            "ContentRemoved",
            "All content successfully removed".to_string(),
        ));
    } else {
        let mut parts: Vec<String> = by_finalizer
            .iter()
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        parts.sort();
        out.push((
            "NamespaceFinalizersRemaining",
            "True",
            "SomeFinalizerRemain",
            format!("Some finalizers are remaining: {}", parts.join(", ")),
        ));
    }
    out
}

/// Merge `conditions` into `status.conditions` as `updateConditions` does: a condition whose
/// status, reason and message are unchanged is left alone; `lastTransitionTime` moves only
/// when the status changes.
fn set_conditions(
    status: &mut Value,
    conditions: Vec<(&'static str, &'static str, &'static str, String)>,
) {
    if !status.is_object() {
        *status = json!({});
    }
    let mut list = status["conditions"].as_array().cloned().unwrap_or_default();
    let now = crate::time::now();
    for (ty, st, reason, message) in conditions {
        match list.iter_mut().find(|c| c["type"] == ty) {
            Some(c) => {
                if c["status"] != st {
                    c["lastTransitionTime"] = json!(now);
                }
                c["status"] = json!(st);
                c["reason"] = json!(reason);
                c["message"] = json!(message);
            }
            None => list.push(json!({"type": ty, "status": st, "lastTransitionTime": now,
                                     "reason": reason, "message": message})),
        }
    }
    status["conditions"] = Value::Array(list);
}

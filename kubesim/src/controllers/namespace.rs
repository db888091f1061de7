//! The namespace controller: a Namespace being deleted (phase Terminating, spec finalizer
//! `kubernetes`) has every namespaced object in it deleted; once none is left, the finalizer
//! is removed and the Namespace disappears. It also recreates a deleted `default`
//! ServiceAccount in active namespaces.

use std::time::Duration;

use serde_json::{Value, json};

use super::Reconciler;
use crate::cluster::{ApiError, Cluster, DeleteOptions, Propagation, WriteOptions};
use crate::store::{EventType, ObjKey, ResKey, WatchEvent};

/// The component name on managedFields.
pub const COMPONENT: &str = "namespace-controller";

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
        if terminating && ev.kind == EventType::Deleted || default_sa {
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
            return Ok(None);
        }
        let mut remaining = 0;
        for res in super::gc::namespaced_resources(cluster) {
            let (items, _) = cluster.store().list(&res, Some(name));
            for o in items {
                remaining += 1;
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
        if remaining > 0 {
            // Re-check: objects removed right away have emitted DELETED events that requeue
            // this namespace; the rest (pods in their grace period, finalizers) do so later.
            let left: usize = super::gc::namespaced_resources(cluster)
                .iter()
                .map(|r| cluster.store().list(r, Some(name)).0.len())
                .sum();
            if left > 0 {
                return Ok(None);
            }
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

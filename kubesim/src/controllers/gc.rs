//! The garbage collector. Dependents are the objects whose `metadata.ownerReferences` name an
//! owner by uid.
//! - Background: a dependent whose owners are all gone (absent, or present with another uid)
//!   is deleted; an owner that is gone is dropped from a dependent that still has others.
//! - Foreground: an owner with `deletionTimestamp` and the `foregroundDeletion` finalizer gets
//!   its dependents deleted (in the foreground too); once no dependent with
//!   `blockOwnerDeletion: true` remains, the finalizer is removed and the owner disappears.
//! - Orphan: an owner with the `orphan` finalizer has its reference removed from every
//!   dependent, then the finalizer is removed.

use std::time::Duration;

use serde_json::Value;

use super::{Reconciler, meta_str};
use crate::cluster::{ApiError, Cluster, DeleteOptions, Propagation};
use crate::resources::{Registry, split_api_version};
use crate::store::{ObjKey, ResKey, WatchEvent};

/// The component name on managedFields.
pub const COMPONENT: &str = "garbage-collector-controller";
const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";

fn refs(obj: &Value) -> &[Value] {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn has_finalizer(obj: &Value, f: &str) -> bool {
    obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|l| l.iter().any(|x| x == f))
}

fn deleting(obj: &Value) -> bool {
    !obj["metadata"]["deletionTimestamp"].is_null()
}

/// Every object with an ownerReference to `uid`.
fn dependents(cluster: &Cluster, uid: &str) -> Vec<(ObjKey, Value)> {
    cluster
        .store()
        .all()
        .into_iter()
        .filter(|(_, o)| refs(o).iter().any(|r| r["uid"] == uid))
        .map(|(k, o)| (k, (*o).clone()))
        .collect()
}

/// The owner an ownerReference of an object in `namespace` points at, if it exists with that uid.
fn resolve_owner(
    cluster: &Cluster,
    registry: &Registry,
    namespace: &str,
    r: &Value,
) -> Option<(ObjKey, Value)> {
    let (group, _) = split_api_version(r["apiVersion"].as_str().unwrap_or(""));
    let kind = r["kind"].as_str().unwrap_or("");
    let info = registry
        .all()
        .find(|i| i.group == group && i.kind == kind)?;
    let ns = if info.namespaced { namespace } else { "" };
    let key = ObjKey::new(&info.key(), ns, r["name"].as_str().unwrap_or(""));
    let owner = cluster.store().get(&key)?;
    (owner["metadata"]["uid"] == r["uid"]).then(|| (key, (*owner).clone()))
}

/// The garbage collector.
pub struct GarbageCollector;

impl Reconciler for GarbageCollector {
    fn name(&self) -> &'static str {
        COMPONENT
    }

    fn keys_for(&self, cluster: &Cluster, ev: &WatchEvent) -> Vec<ObjKey> {
        let obj = &ev.object;
        let mut keys = Vec::new();
        let gone = ev.kind == crate::store::EventType::Deleted;
        if !gone
            && (!refs(obj).is_empty()
                || has_finalizer(obj, FOREGROUND)
                || has_finalizer(obj, ORPHAN))
        {
            keys.push(ev.key.clone());
        }
        if gone {
            // Its dependents may now be garbage.
            let uid = meta_str(obj, "uid");
            keys.extend(dependents(cluster, uid).into_iter().map(|(k, _)| k));
        }
        if gone || deleting(obj) {
            // An owner waiting in the foreground for this dependent.
            let registry = cluster.registry();
            for r in refs(obj) {
                if let Some((key, owner)) = resolve_owner(cluster, &registry, &ev.key.namespace, r)
                    && has_finalizer(&owner, FOREGROUND)
                {
                    keys.push(key);
                }
            }
        }
        keys
    }

    fn all_keys(&self, cluster: &Cluster) -> Vec<ObjKey> {
        cluster
            .store()
            .all()
            .into_iter()
            .filter(|(_, o)| {
                !refs(o).is_empty() || has_finalizer(o, FOREGROUND) || has_finalizer(o, ORPHAN)
            })
            .map(|(k, _)| k)
            .collect()
    }

    fn reconcile(&self, cluster: &Cluster, key: &ObjKey) -> Result<Option<Duration>, ApiError> {
        let Some(obj) = cluster.store().get(key) else {
            return Ok(None);
        };
        let obj: &Value = &obj;
        let uid = meta_str(obj, "uid").to_string();
        if deleting(obj) && has_finalizer(obj, ORPHAN) {
            for (dk, _) in dependents(cluster, &uid) {
                let r = cluster.mutate(&dk.res, &dk.namespace, &dk.name, COMPONENT, |d| {
                    if let Some(list) = d["metadata"]["ownerReferences"].as_array_mut() {
                        list.retain(|r| r["uid"] != uid.as_str());
                        if list.is_empty() {
                            d["metadata"]
                                .as_object_mut()
                                .expect("object")
                                .remove("ownerReferences");
                        }
                    }
                    Ok(())
                });
                ignore_not_found(r)?;
            }
            return remove_finalizer(cluster, key, ORPHAN);
        }
        if deleting(obj) && has_finalizer(obj, FOREGROUND) {
            let deps = dependents(cluster, &uid);
            for (dk, d) in &deps {
                if !deleting(d) {
                    let opts = DeleteOptions {
                        propagation_policy: Some(Propagation::Foreground),
                        ..Default::default()
                    };
                    ignore_not_found(cluster.delete(&dk.res, &dk.namespace, &dk.name, &opts))?;
                }
            }
            let blocking = dependents(cluster, &uid).into_iter().any(|(_, d)| {
                refs(&d)
                    .iter()
                    .any(|r| r["uid"] == uid.as_str() && r["blockOwnerDeletion"] == true)
            });
            if !blocking {
                return remove_finalizer(cluster, key, FOREGROUND);
            }
            return Ok(None);
        }
        // A dependent: is any owner still there?
        let owner_refs = refs(obj);
        if owner_refs.is_empty() {
            return Ok(None);
        }
        let mut solid = Vec::new();
        let mut waiting = false;
        let mut dangling = Vec::new();
        let registry = cluster.registry();
        for r in owner_refs {
            match resolve_owner(cluster, &registry, &key.namespace, r).map(|(_, o)| o) {
                Some(owner) if deleting(&owner) && has_finalizer(&owner, FOREGROUND) => {
                    waiting = true
                }
                Some(owner) if deleting(&owner) && has_finalizer(&owner, ORPHAN) => {
                    solid.push(r.clone())
                }
                Some(_) => solid.push(r.clone()),
                None => dangling.push(r["uid"].clone()),
            }
        }
        if !solid.is_empty() || (waiting && deleting(obj)) {
            if !dangling.is_empty() {
                let r = cluster.mutate(&key.res, &key.namespace, &key.name, COMPONENT, |d| {
                    if let Some(list) = d["metadata"]["ownerReferences"].as_array_mut() {
                        list.retain(|r| !dangling.contains(&r["uid"]));
                    }
                    Ok(())
                });
                ignore_not_found(r)?;
            }
            return Ok(None);
        }
        if deleting(obj) && !waiting {
            return Ok(None);
        }
        if waiting || !dangling.is_empty() {
            let policy = if waiting {
                Propagation::Foreground
            } else {
                Propagation::Background
            };
            let opts = DeleteOptions {
                propagation_policy: Some(policy),
                ..Default::default()
            };
            ignore_not_found(cluster.delete(&key.res, &key.namespace, &key.name, &opts))?;
        }
        Ok(None)
    }
}

fn ignore_not_found<T>(r: Result<T, ApiError>) -> Result<(), ApiError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

fn remove_finalizer(
    cluster: &Cluster,
    key: &ObjKey,
    finalizer: &str,
) -> Result<Option<Duration>, ApiError> {
    let r = cluster.mutate(&key.res, &key.namespace, &key.name, COMPONENT, |o| {
        if let Some(list) = o["metadata"]["finalizers"].as_array_mut() {
            list.retain(|f| f != finalizer);
            if list.is_empty() {
                o["metadata"]
                    .as_object_mut()
                    .expect("object")
                    .remove("finalizers");
            }
        }
        Ok(())
    });
    ignore_not_found(r)?;
    Ok(None)
}

/// For the namespace controller: resources a namespace's content is listed from.
pub(crate) fn namespaced_resources(cluster: &Cluster) -> Vec<ResKey> {
    cluster
        .registry()
        .all()
        .filter(|i| i.namespaced)
        .map(|i| i.key())
        .collect()
}

//! The ReplicaSet controller: keeps `spec.replicas` active pods (named `<rs>-<5 random>`,
//! controller reference to the ReplicaSet) and reports replicas, ready and available counts.
//! The same controller, with its own component name, runs ReplicationControllers (whose
//! `spec.selector` is a plain label map rather than a `LabelSelector`).

use std::time::Duration;

use serde_json::{Value, json};

use super::{Reconciler, controller_of, meta_str, owned, record_event};
use crate::cluster::{ApiError, Cluster, WriteOptions};
use crate::store::{ObjKey, ResKey, WatchEvent};

/// The component name on Events and managedFields.
pub const COMPONENT: &str = "replicaset-controller";

/// The ReplicationController manager's component name.
pub const RC_COMPONENT: &str = "replication-controller";

fn pods() -> ResKey {
    ResKey::new("", "pods")
}

/// A pod that is neither terminal nor being deleted.
pub(crate) fn is_active(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && !matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded") | Some("Failed")
        )
}

/// The pod's Ready condition is True.
pub(crate) fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The pod a ReplicaSet creates from its template.
pub fn pod_from_template(rs: &Value) -> Value {
    ReplicaSetController::replica_sets().pod_from_template(rs)
}

/// The ReplicaSet controller, or the ReplicationController manager.
pub struct ReplicaSetController {
    res: ResKey,
    api_version: &'static str,
    kind: &'static str,
    component: &'static str,
}

impl ReplicaSetController {
    /// The controller of `apps/v1` ReplicaSets.
    pub fn replica_sets() -> Self {
        ReplicaSetController {
            res: ResKey::new("apps", "replicasets"),
            api_version: "apps/v1",
            kind: "ReplicaSet",
            component: COMPONENT,
        }
    }

    /// The controller of `v1` ReplicationControllers.
    pub fn replication_controllers() -> Self {
        ReplicaSetController {
            res: ResKey::new("", "replicationcontrollers"),
            api_version: "v1",
            kind: "ReplicationController",
            component: RC_COMPONENT,
        }
    }

    fn pod_from_template(&self, owner: &Value) -> Value {
        let template = &owner["spec"]["template"];
        let mut meta = super::template_pod_meta(owner);
        meta["ownerReferences"] =
            json!([super::controller_ref(owner, self.api_version, self.kind)]);
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"].clone()})
    }

    /// The owner's selector as a `LabelSelector` (a ReplicationController's is a label map).
    fn selector(&self, owner: &Value) -> Value {
        if self.kind == "ReplicationController" {
            json!({"matchLabels": owner["spec"]["selector"]})
        } else {
            owner["spec"]["selector"].clone()
        }
    }
}

impl Reconciler for ReplicaSetController {
    fn name(&self) -> &'static str {
        self.component
    }

    fn keys_for(&self, _cluster: &Cluster, ev: &WatchEvent) -> Vec<ObjKey> {
        if ev.key.res == self.res {
            return vec![ev.key.clone()];
        }
        if ev.key.res == pods() {
            return controller_of(&ev.object, self.kind)
                .map(|name| ObjKey::new(&self.res, &ev.key.namespace, name))
                .into_iter()
                .collect();
        }
        Vec::new()
    }

    fn all_keys(&self, cluster: &Cluster) -> Vec<ObjKey> {
        super::all_of(cluster, &self.res)
    }

    fn reconcile(&self, cluster: &Cluster, key: &ObjKey) -> Result<Option<Duration>, ApiError> {
        let Some(rs) = cluster.store().get(key) else {
            return Ok(None);
        };
        let rs: &Value = &rs;
        let ns = &key.namespace;
        if rs["metadata"]["deletionTimestamp"].is_null() {
            let owner_ref = super::controller_ref(rs, self.api_version, self.kind);
            super::adopt(
                cluster,
                &pods(),
                ns,
                owner_ref,
                &self.selector(rs),
                self.component,
                is_active,
            )?;
        }
        let all = owned(cluster, &pods(), ns, rs);
        let mut active: Vec<&Value> = all.iter().filter(|p| is_active(p)).collect();
        let want = rs["spec"]["replicas"].as_u64().unwrap_or(1) as usize;
        if rs["metadata"]["deletionTimestamp"].is_null() {
            if active.len() < want {
                for _ in active.len()..want {
                    match cluster.create(
                        &pods(),
                        ns,
                        self.pod_from_template(rs),
                        &WriteOptions::manager(self.component),
                    ) {
                        Ok(p) => {
                            let msg = format!("Created pod: {}", meta_str(&p, "name"));
                            record_event(
                                cluster,
                                rs,
                                self.component,
                                false,
                                "SuccessfulCreate",
                                &msg,
                            );
                        }
                        Err(e) => {
                            let msg = format!("Error creating: {}", e.message);
                            record_event(cluster, rs, self.component, true, "FailedCreate", &msg);
                            return Err(e);
                        }
                    }
                }
            } else if active.len() > want {
                // Remove unready pods first, then the newest.
                active.sort_by_key(|p| {
                    (
                        is_ready(p),
                        std::cmp::Reverse(meta_str(p, "creationTimestamp").to_string()),
                    )
                });
                for p in active.iter().take(active.len() - want) {
                    let name = meta_str(p, "name");
                    super::delete_pod(cluster, rs, self.component, ns, name)?;
                }
            }
        }
        // Status from the pods as they are now.
        let pods_now = owned(cluster, &pods(), ns, rs);
        let active: Vec<&Value> = pods_now.iter().filter(|p| is_active(p)).collect();
        let ready = active.iter().filter(|p| is_ready(p)).count();
        let mut status = json!({
            "replicas": active.len(),
            "fullyLabeledReplicas": active.len(),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": rs["metadata"]["generation"],
        });
        let m = status.as_object_mut().expect("object");
        for k in ["fullyLabeledReplicas", "readyReplicas", "availableReplicas"] {
            if m[k] == 0 {
                m.remove(k);
            }
        }
        if status != rs["status"] {
            cluster.update_status(&key.res, ns, &key.name, self.component, |o| {
                o["status"] = status;
                Ok(())
            })?;
        }
        Ok(None)
    }
}

//! The Deployment controller: one ReplicaSet per pod template (`<deploy>-<pod-template-hash>`,
//! label `pod-template-hash`, controller reference), rolled out with the RollingUpdate
//! (maxSurge / maxUnavailable) or Recreate strategy, the `deployment.kubernetes.io/revision`
//! annotation, old ReplicaSets pruned beyond `revisionHistoryLimit`, and the status and
//! conditions `kubectl rollout status`, helm `--wait` and kstatus read.

use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Reconciler, controller_of, meta_str, owned, record_event};
use crate::cluster::{ApiError, Cluster, DeleteOptions, Propagation, WriteOptions};
use crate::store::{ObjKey, ResKey, WatchEvent};

/// The component name on Events and managedFields.
pub const COMPONENT: &str = "deployment-controller";
/// The revision annotation on Deployments and their ReplicaSets.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// The label that tells the ReplicaSets (and pods) of different templates apart.
pub const HASH_LABEL: &str = "pod-template-hash";

fn deployments() -> ResKey {
    ResKey::new("apps", "deployments")
}

fn replicasets() -> ResKey {
    ResKey::new("apps", "replicasets")
}

/// The pod-template-hash of a template: a hash of its JSON, encoded with the API server's
/// "safe" alphabet (no vowels, no confusable digits).
pub fn template_hash(template: &Value) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let digest = Sha256::digest(template.to_string().as_bytes());
    let mut n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    let mut out = String::new();
    while n > 0 {
        out.push(ALPHABET[(n % ALPHABET.len() as u32) as usize] as char);
        n /= ALPHABET.len() as u32;
    }
    if out.is_empty() {
        out.push('b');
    }
    out
}

/// The template without the pod-template-hash label (to compare RS and Deployment templates).
fn without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t["metadata"]["labels"].as_object_mut() {
        labels.remove(HASH_LABEL);
        if labels.is_empty() {
            t["metadata"]
                .as_object_mut()
                .expect("object")
                .remove("labels");
        }
    }
    if t["metadata"].as_object().is_some_and(|m| m.is_empty()) {
        t.as_object_mut().expect("object").remove("metadata");
    }
    t
}

fn revision(rs: &Value) -> u64 {
    rs["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn spec_replicas(rs: &Value) -> i64 {
    rs["spec"]["replicas"].as_i64().unwrap_or(0)
}

fn status_count(obj: &Value, field: &str) -> i64 {
    obj["status"][field].as_i64().unwrap_or(0)
}

/// An int-or-percent of `total`, rounded up (surge) or down (unavailable).
fn int_or_percent(v: &Value, total: i64, round_up: bool, default: &str) -> i64 {
    let v = if v.is_null() {
        json!(default)
    } else {
        v.clone()
    };
    if let Some(n) = v.as_i64() {
        return n;
    }
    let pct: f64 = v
        .as_str()
        .and_then(|s| s.strip_suffix('%'))
        .and_then(|s| s.parse().ok())
        .unwrap_or(25.0);
    let x = pct * total as f64 / 100.0;
    if round_up {
        x.ceil() as i64
    } else {
        x.floor() as i64
    }
}

fn condition(kind: &str, ok: bool, reason: &str, message: &str, old: &Value) -> Value {
    let now = crate::time::now();
    let status = if ok { "True" } else { "False" };
    let prev = old["status"]["conditions"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["type"] == kind));
    let transition = match prev {
        Some(p) if p["status"] == status => p["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let update = match prev {
        Some(p) if p["status"] == status && p["reason"] == reason => p["lastUpdateTime"].clone(),
        _ => json!(now),
    };
    json!({"type": kind, "status": status, "lastUpdateTime": update, "lastTransitionTime": transition,
           "reason": reason, "message": message})
}

/// The Deployment controller.
pub struct DeploymentController;

impl DeploymentController {
    fn new_replicaset(
        &self,
        cluster: &Cluster,
        d: &Value,
        hash: &str,
        rev: u64,
        replicas: i64,
    ) -> Result<Value, ApiError> {
        let name = format!("{}-{hash}", meta_str(d, "name"));
        let mut template = d["spec"]["template"].clone();
        template["metadata"]["labels"][HASH_LABEL] = json!(hash);
        let mut selector = d["spec"]["selector"].clone();
        selector["matchLabels"][HASH_LABEL] = json!(hash);
        let mut labels = d["spec"]["template"]["metadata"]["labels"].clone();
        if !labels.is_object() {
            labels = json!({});
        }
        labels[HASH_LABEL] = json!(hash);
        let max_surge = int_or_percent(
            &d["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
            spec_replicas(d),
            true,
            "25%",
        );
        let rs = json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "labels": labels,
                "annotations": {
                    REVISION: rev.to_string(),
                    "deployment.kubernetes.io/desired-replicas": spec_replicas(d).to_string(),
                    "deployment.kubernetes.io/max-replicas": (spec_replicas(d) + max_surge).to_string(),
                },
                "ownerReferences": [super::controller_ref(d, "apps/v1", "Deployment")],
            },
            "spec": {
                "replicas": replicas,
                "minReadySeconds": d["spec"]["minReadySeconds"].as_i64().unwrap_or(0),
                "selector": selector,
                "template": template,
            },
        });
        let created = cluster.create(
            &replicasets(),
            meta_str(d, "namespace"),
            rs,
            &WriteOptions::manager(COMPONENT),
        )?;
        let msg = format!("Scaled up replica set {name} from 0 to {replicas}");
        record_event(cluster, d, COMPONENT, false, "ScalingReplicaSet", &msg);
        Ok(created)
    }

    fn scale(&self, cluster: &Cluster, d: &Value, rs: &Value, to: i64) -> Result<(), ApiError> {
        let from = spec_replicas(rs);
        if from == to {
            return Ok(());
        }
        let desired = spec_replicas(d).to_string();
        cluster.mutate(
            &replicasets(),
            meta_str(rs, "namespace"),
            meta_str(rs, "name"),
            COMPONENT,
            |o| {
                o["spec"]["replicas"] = json!(to);
                o["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] =
                    json!(desired);
                Ok(())
            },
        )?;
        let dir = if to > from { "up" } else { "down" };
        let msg = format!(
            "Scaled {dir} replica set {} from {from} to {to}",
            meta_str(rs, "name")
        );
        record_event(cluster, d, COMPONENT, false, "ScalingReplicaSet", &msg);
        Ok(())
    }
}

impl Reconciler for DeploymentController {
    fn name(&self) -> &'static str {
        COMPONENT
    }

    fn keys_for(&self, _cluster: &Cluster, ev: &WatchEvent) -> Vec<ObjKey> {
        if ev.key.res == deployments() {
            return vec![ev.key.clone()];
        }
        if ev.key.res == replicasets() {
            return controller_of(&ev.object, "Deployment")
                .map(|name| ObjKey::new(&deployments(), &ev.key.namespace, name))
                .into_iter()
                .collect();
        }
        Vec::new()
    }

    fn all_keys(&self, cluster: &Cluster) -> Vec<ObjKey> {
        super::all_of(cluster, &deployments())
    }

    fn reconcile(&self, cluster: &Cluster, key: &ObjKey) -> Result<Option<Duration>, ApiError> {
        let Some(d) = cluster.store().get(key) else {
            return Ok(None);
        };
        let d: &Value = &d;
        if !d["metadata"]["deletionTimestamp"].is_null() {
            return Ok(None);
        }
        let ns = &key.namespace;
        let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
        let template = &d["spec"]["template"];
        let hash = template_hash(&without_hash(template));
        let owner_ref = super::controller_ref(d, "apps/v1", "Deployment");
        super::adopt(
            cluster,
            &replicasets(),
            ns,
            owner_ref,
            &d["spec"]["selector"],
            COMPONENT,
            |_| true,
        )?;
        let mut all = owned(cluster, &replicasets(), ns, d);
        all.sort_by_key(|rs| (revision(rs), meta_str(rs, "creationTimestamp").to_string()));
        let max_rev = all.iter().map(revision).max().unwrap_or(0);
        let paused = d["spec"]["paused"].as_bool() == Some(true);

        // The ReplicaSet of the current template (created or re-labelled as newest revision).
        let mut new_rs = all
            .iter()
            .find(|rs| without_hash(&rs["spec"]["template"]) == without_hash(template))
            .cloned();
        let recreate = d["spec"]["strategy"]["type"] == "Recreate";
        let mut max_surge = int_or_percent(
            &d["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
            replicas,
            true,
            "25%",
        );
        let mut max_unavailable = int_or_percent(
            &d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
            replicas,
            false,
            "25%",
        );
        if max_surge == 0 && max_unavailable == 0 {
            max_unavailable = 1;
        }
        if recreate {
            max_surge = 0;
        }
        if !paused {
            match &new_rs {
                None => {
                    let old_total: i64 = all.iter().map(spec_replicas).sum();
                    let start = if recreate {
                        if old_total > 0 { 0 } else { replicas }
                    } else if all.is_empty() {
                        replicas
                    } else {
                        (replicas + max_surge - old_total).clamp(0, replicas)
                    };
                    new_rs = Some(self.new_replicaset(cluster, d, &hash, max_rev + 1, start)?);
                }
                Some(rs) if revision(rs) < max_rev || revision(rs) == 0 => {
                    let rev = (max_rev + 1).to_string();
                    let updated = cluster.mutate(
                        &replicasets(),
                        ns,
                        meta_str(rs, "name"),
                        COMPONENT,
                        |o| {
                            o["metadata"]["annotations"][REVISION] = json!(rev);
                            Ok(())
                        },
                    )?;
                    new_rs = Some(updated);
                }
                Some(_) => {}
            }
        }
        let all = owned(cluster, &replicasets(), ns, d);
        let new_name = new_rs
            .as_ref()
            .map(|rs| meta_str(rs, "name").to_string())
            .unwrap_or_default();
        let (new, old): (Vec<&Value>, Vec<&Value>) =
            all.iter().partition(|rs| meta_str(rs, "name") == new_name);
        let new = new.first().copied();

        if !paused && let Some(new) = new {
            let total: i64 = all.iter().map(spec_replicas).sum();
            let old_pods: i64 = old.iter().map(|rs| status_count(rs, "replicas")).sum();
            if recreate {
                for rs in &old {
                    self.scale(cluster, d, rs, 0)?;
                }
                if old_pods == 0 {
                    self.scale(cluster, d, new, replicas)?;
                }
            } else {
                // Scale up the new ReplicaSet within the surge budget.
                let new_spec = spec_replicas(new);
                if new_spec > replicas {
                    self.scale(cluster, d, new, replicas)?;
                } else if new_spec < replicas {
                    let room = replicas + max_surge - total;
                    if room > 0 {
                        self.scale(cluster, d, new, (new_spec + room).min(replicas))?;
                    }
                }
                // Scale down old ReplicaSets as far as availability allows.
                let available: i64 = all
                    .iter()
                    .map(|rs| status_count(rs, "availableReplicas"))
                    .sum();
                let min_available = replicas - max_unavailable;
                let new_unavailable =
                    (spec_replicas(new) - status_count(new, "availableReplicas")).max(0);
                let mut budget = (available - min_available - new_unavailable).max(0);
                for rs in &old {
                    // Pods of old ReplicaSets that are not available can always go.
                    let unavailable =
                        (spec_replicas(rs) - status_count(rs, "availableReplicas")).max(0);
                    let cut = (unavailable + budget).min(spec_replicas(rs));
                    if cut > 0 {
                        budget -= (cut - unavailable).max(0);
                        self.scale(cluster, d, rs, spec_replicas(rs) - cut)?;
                    }
                }
            }
        }

        // Prune old ReplicaSets without replicas beyond the history limit.
        let limit = d["spec"]["revisionHistoryLimit"]
            .as_i64()
            .unwrap_or(10)
            .max(0) as usize;
        let all = owned(cluster, &replicasets(), ns, d);
        let mut idle: Vec<&Value> = all
            .iter()
            .filter(|rs| {
                meta_str(rs, "name") != new_name
                    && spec_replicas(rs) == 0
                    && status_count(rs, "replicas") == 0
            })
            .collect();
        idle.sort_by_key(|rs| revision(rs));
        if idle.len() > limit {
            for rs in &idle[..idle.len() - limit] {
                let opts = DeleteOptions {
                    propagation_policy: Some(Propagation::Background),
                    ..Default::default()
                };
                let _ = cluster.delete(&replicasets(), ns, meta_str(rs, "name"), &opts);
            }
        }

        // Status.
        let all = owned(cluster, &replicasets(), ns, d);
        let new = all.iter().find(|rs| meta_str(rs, "name") == new_name);
        let sum = |f: &str| all.iter().map(|rs| status_count(rs, f)).sum::<i64>();
        let total_spec: i64 = all.iter().map(spec_replicas).sum();
        let available = sum("availableReplicas");
        let updated = new.map(|rs| status_count(rs, "replicas")).unwrap_or(0);
        let new_available = new
            .map(|rs| status_count(rs, "availableReplicas"))
            .unwrap_or(0);
        let old_pods: i64 = all
            .iter()
            .filter(|rs| meta_str(rs, "name") != new_name)
            .map(|rs| status_count(rs, "replicas"))
            .sum();
        let complete = updated == replicas && new_available == replicas && old_pods == 0;
        let available_ok = available >= replicas - max_unavailable;
        let mut requeue = None;
        let mut conditions = vec![if available_ok {
            condition(
                "Available",
                true,
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                d,
            )
        } else {
            condition(
                "Available",
                false,
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                d,
            )
        }];
        conditions.push(if paused {
            condition(
                "Progressing",
                false,
                "DeploymentPaused",
                "Deployment is paused",
                d,
            )
        } else if complete {
            condition(
                "Progressing",
                true,
                "NewReplicaSetAvailable",
                &format!("ReplicaSet \"{new_name}\" has successfully progressed."),
                d,
            )
        } else {
            // Still rolling: progress (any count changed, or a new template) refreshes
            // lastUpdateTime; none for progressDeadlineSeconds ends it with
            // ProgressDeadlineExceeded.
            let counts = |o: &Value| {
                [
                    "replicas",
                    "updatedReplicas",
                    "readyReplicas",
                    "availableReplicas",
                ]
                .map(|f| status_count(o, f))
            };
            let now_counts = [sum("replicas"), updated, sum("readyReplicas"), available];
            let prev = d["status"]["conditions"]
                .as_array()
                .and_then(|l| l.iter().find(|c| c["type"] == "Progressing"))
                .cloned()
                .unwrap_or(Value::Null);
            let progressed = counts(d) != now_counts
                || d["status"]["observedGeneration"] != d["metadata"]["generation"]
                || prev["reason"] == "NewReplicaSetAvailable";
            let now = jiff::Timestamp::now();
            let last = match prev["lastUpdateTime"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            {
                Some(t) if !progressed => t,
                _ => now,
            };
            let deadline = d["spec"]["progressDeadlineSeconds"].as_i64().unwrap_or(600);
            let expiry = last + jiff::SignedDuration::from_secs(deadline);
            let mut c = if now >= expiry {
                condition(
                    "Progressing",
                    false,
                    "ProgressDeadlineExceeded",
                    &format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                    d,
                )
            } else {
                requeue = Some(Duration::from_secs_f64(
                    expiry.duration_since(now).as_secs_f64().max(0.0),
                ));
                condition(
                    "Progressing",
                    true,
                    "ReplicaSetUpdated",
                    &format!("ReplicaSet \"{new_name}\" is progressing."),
                    d,
                )
            };
            if c["status"] == "True" {
                c["lastUpdateTime"] = json!(crate::time::ts(last));
            }
            c
        });
        let mut status = json!({
            "observedGeneration": d["metadata"]["generation"],
            "replicas": sum("replicas"),
            "updatedReplicas": updated,
            "readyReplicas": sum("readyReplicas"),
            "availableReplicas": available,
            "unavailableReplicas": (total_spec.max(replicas) - available).max(0),
            "conditions": conditions,
        });
        let m = status.as_object_mut().expect("object");
        for k in [
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
        ] {
            if m[k] == 0 {
                m.remove(k);
            }
        }
        let rev = new.map(revision).unwrap_or(0).to_string();
        let annotated = d["metadata"]["annotations"][REVISION].as_str() == Some(rev.as_str());
        if !annotated && new.is_some() {
            cluster.mutate(&key.res, ns, &key.name, COMPONENT, |o| {
                o["metadata"]["annotations"][REVISION] = json!(rev);
                Ok(())
            })?;
        }
        if status != d["status"] {
            cluster.update_status(&key.res, ns, &key.name, COMPONENT, |o| {
                o["status"] = status;
                Ok(())
            })?;
        }
        Ok(requeue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_safe() {
        let t =
            json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c"}]}});
        let h = template_hash(&t);
        assert_eq!(h, template_hash(&t.clone()));
        assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        let mut labelled = t.clone();
        labelled["metadata"]["labels"][HASH_LABEL] = json!(h);
        assert_eq!(without_hash(&labelled), t);
        assert_ne!(template_hash(&json!({"spec": {}})), h);
    }

    #[test]
    fn surge_and_unavailable_rounding() {
        assert_eq!(int_or_percent(&Value::Null, 1, true, "25%"), 1);
        assert_eq!(int_or_percent(&Value::Null, 1, false, "25%"), 0);
        assert_eq!(int_or_percent(&json!(2), 10, true, "25%"), 2);
        assert_eq!(int_or_percent(&json!("50%"), 3, false, "25%"), 1);
    }
}

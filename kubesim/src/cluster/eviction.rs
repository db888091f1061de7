//! `pods/eviction`: a pod deletion that honours its PodDisruptionBudget, as kube-apiserver's
//! eviction REST does. No disruption controller fills PDB status here, so the budget's
//! figures (expected pods, desired and current healthy) are computed from the pods at the
//! moment of the eviction, the way the disruption controller computes them.

use serde_json::{Value, json};

use super::{ApiError, Cluster, DeleteOptions, ListOptions};
use crate::selector::LabelSelector;
use crate::store::ResKey;

fn pods() -> ResKey {
    ResKey::new("", "pods")
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn terminal(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded") | Some("Failed")
    )
}

/// The PDB's selector, when it selects something (nil and empty select nothing here).
fn pdb_selector(pdb: &Value) -> Option<LabelSelector> {
    LabelSelector::from_json(&pdb["spec"]["selector"])
        .ok()
        .filter(|s| !s.is_empty())
}

/// `GetScaledValueFromIntOrPercent(v, total, roundUp=true)`.
fn scaled(v: &Value, total: i64) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return Some(n);
    }
    let p: i64 = v.as_str()?.strip_suffix('%')?.parse().ok()?;
    Some((p * total + 99) / 100)
}

/// The budget's (desired healthy, current healthy) for the pods it selects.
fn budget(cluster: &Cluster, ns: &str, pdb: &Value, sel: &LabelSelector) -> (i64, i64) {
    let matched: Vec<Value> = cluster
        .list(&pods(), Some(ns), &ListOptions::default())
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| sel.matches(p))
        .collect();
    let healthy = matched
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && !terminal(p) && ready(p))
        .count() as i64;
    let spec = &pdb["spec"];
    let desired = if let Some(n) = spec["minAvailable"].as_i64() {
        n
    } else {
        // Percentages and maxUnavailable count the replicas the pods' controllers ask for.
        let expected = expected_count(cluster, ns, &matched);
        if !spec["maxUnavailable"].is_null() {
            expected - scaled(&spec["maxUnavailable"], expected).unwrap_or(0)
        } else if !spec["minAvailable"].is_null() {
            scaled(&spec["minAvailable"], expected).unwrap_or(0)
        } else {
            0
        }
    };
    (desired.max(0), healthy)
}

/// The replicas the pods' controllers want (ReplicaSets, ReplicationControllers and
/// StatefulSets by their `spec.replicas`); a pod without such a controller counts as one.
fn expected_count(cluster: &Cluster, ns: &str, matched: &[Value]) -> i64 {
    let mut seen: Vec<String> = Vec::new();
    let mut total = 0;
    for p in matched {
        let owner = p["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["controller"] == true);
        let res = owner.and_then(|r| match r["kind"].as_str() {
            Some("ReplicaSet") => Some(ResKey::new("apps", "replicasets")),
            Some("StatefulSet") => Some(ResKey::new("apps", "statefulsets")),
            Some("ReplicationController") => Some(ResKey::new("", "replicationcontrollers")),
            _ => None,
        });
        let (Some(owner), Some(res)) = (owner, res) else {
            total += 1;
            continue;
        };
        let uid = owner["uid"].as_str().unwrap_or_default().to_string();
        if seen.contains(&uid) {
            continue;
        }
        seen.push(uid);
        match cluster.get(&res, ns, owner["name"].as_str().unwrap_or_default()) {
            Ok(c) => total += c["spec"]["replicas"].as_i64().unwrap_or(1),
            Err(_) => total += 1,
        }
    }
    total
}

/// Evict pod `ns/name`: delete it with `opts` unless its disruption budget allows no
/// disruption (429 TooManyRequests, as kube-apiserver answers).
pub fn evict(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    opts: &DeleteOptions,
) -> Result<(), ApiError> {
    let pod = cluster.get(&pods(), ns, name)?;
    let ignore_budget = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded") | Some("Failed") | Some("Pending")
    ) || !pod["metadata"]["deletionTimestamp"].is_null();
    if !ignore_budget {
        let pdbs: Vec<(Value, LabelSelector)> = cluster
            .list(
                &ResKey::new("policy", "poddisruptionbudgets"),
                Some(ns),
                &ListOptions::default(),
            )?
            .items
            .into_iter()
            .filter_map(|pdb| pdb_selector(&pdb).map(|s| (pdb, s)))
            .filter(|(_, s)| s.matches(&pod))
            .collect();
        if pdbs.len() > 1 {
            return Err(ApiError::new(
                500,
                "InternalError",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        if let Some((pdb, sel)) = pdbs.first() {
            let (desired, healthy) = budget(cluster, ns, pdb, sel);
            let unhealthy_ok = !ready(&pod)
                && (pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
                    || (healthy >= desired && desired > 0));
            if !unhealthy_ok && healthy - desired <= 0 {
                let pdb_name = pdb["metadata"]["name"].as_str().unwrap_or_default();
                let mut e = ApiError::new(
                    429,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                );
                e.details = Some(Box::new(json!({
                    "causes": [{"reason": "DisruptionBudget", "message": format!(
                        "The disruption budget {pdb_name} needs {desired} healthy pods and has {healthy} currently")}],
                    "retryAfterSeconds": 10,
                })));
                return Err(e);
            }
        }
    }
    cluster.delete(&pods(), ns, name, opts).map(|_| ())
}

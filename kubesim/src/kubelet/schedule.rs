//! The scheduler's filter that matters on one node: taints. A pod not bound yet whose
//! tolerations do not cover every `NoSchedule` and `NoExecute` taint of the node (a cordoned
//! node counts as tainted `node.kubernetes.io/unschedulable:NoSchedule`) stays Pending with
//! `PodScheduled=False`, reason `Unschedulable` and the real scheduler's message, and a
//! Warning event `FailedScheduling`; it is bound once the node's taints or the pod allow it.

use serde_json::{Value, json};

/// The taint a cordoned node (`spec.unschedulable: true`) carries.
const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// The node's taints that keep pods off (`NoSchedule`, `NoExecute`), cordoning included.
fn hard_taints(node: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| matches!(t["effect"].as_str(), Some("NoSchedule" | "NoExecute")))
        .cloned()
        .collect();
    if node["spec"]["unschedulable"].as_bool() == Some(true)
        && !out.iter().any(|t| t["key"] == UNSCHEDULABLE_TAINT)
    {
        out.push(json!({"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}));
    }
    out
}

/// Whether `toleration` tolerates `taint` (Kubernetes' matching: an empty key with `Exists`
/// tolerates every taint; an empty effect every effect; `Equal`, the default, compares values).
fn tolerates(toleration: &Value, taint: &Value) -> bool {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let effect = s(&toleration["effect"]);
    if !effect.is_empty() && effect != s(&taint["effect"]) {
        return false;
    }
    let key = s(&toleration["key"]);
    match toleration["operator"].as_str().unwrap_or("Equal") {
        "Exists" => key.is_empty() || key == s(&taint["key"]),
        "Equal" => key == s(&taint["key"]) && s(&toleration["value"]) == s(&taint["value"]),
        _ => false,
    }
}

/// Why `pod` cannot run on `node` (the scheduler's message), or `None` when it can.
pub(super) fn unschedulable_message(pod: &Value, node: &Value) -> Option<String> {
    let tolerations = pod["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let untolerated = hard_taints(node)
        .into_iter()
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))?;
    let reason = if untolerated["key"] == UNSCHEDULABLE_TAINT {
        "1 node(s) were unschedulable".to_string()
    } else {
        let value = untolerated["value"].as_str().unwrap_or_default();
        format!(
            "1 node(s) had untolerated taint {{{}: {value}}}",
            untolerated["key"].as_str().unwrap_or_default()
        )
    };
    Some(format!(
        "0/1 nodes are available: {reason}. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    ))
}

/// Whether `pod`'s status already says `message` (so it is not written again).
pub(super) fn says_unschedulable(pod: &Value, message: &str) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| {
            c["type"] == "PodScheduled"
                && c["status"] == "False"
                && c["reason"] == "Unschedulable"
                && c["message"] == message
        })
}

/// The status of a pod no node accepts.
pub(super) fn unschedulable_status(message: &str) -> Value {
    json!({
        "phase": "Pending",
        "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": message, "lastProbeTime": null,
            "lastTransitionTime": crate::time::now(),
        }],
        "qosClass": "BestEffort",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(taints: Value) -> Value {
        json!({"metadata": {"name": "kubesim"}, "spec": {"taints": taints}})
    }

    fn pod(tolerations: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"tolerations": tolerations}})
    }

    #[test]
    fn taints_keep_pods_off_unless_tolerated() {
        let critical =
            node(json!([{"key": "CriticalAddonsOnly", "value": "true", "effect": "NoSchedule"}]));
        let msg = unschedulable_message(&pod(json!([])), &critical).expect("unschedulable");
        assert!(
            msg.starts_with("0/1 nodes are available: 1 node(s) had untolerated taint {CriticalAddonsOnly: true}."),
            "{msg}"
        );
        for ok in [
            json!([{"key": "CriticalAddonsOnly", "operator": "Exists"}]),
            json!([{"key": "CriticalAddonsOnly", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]),
            json!([{"key": "CriticalAddonsOnly", "value": "true"}]),
            json!([{"operator": "Exists"}]),
        ] {
            assert_eq!(
                unschedulable_message(&pod(ok.clone()), &critical),
                None,
                "{ok}"
            );
        }
        for not in [
            json!([{"key": "CriticalAddonsOnly", "value": "false"}]),
            json!([{"key": "CriticalAddonsOnly", "operator": "Exists", "effect": "NoExecute"}]),
            json!([{"key": "other", "operator": "Exists"}]),
        ] {
            assert!(
                unschedulable_message(&pod(not.clone()), &critical).is_some(),
                "{not}"
            );
        }
        // PreferNoSchedule does not keep pods off; a cordoned node does.
        let soft = node(json!([{"key": "k", "effect": "PreferNoSchedule"}]));
        assert_eq!(unschedulable_message(&pod(json!([])), &soft), None);
        let cordoned = json!({"spec": {"unschedulable": true}});
        assert!(
            unschedulable_message(&pod(json!([])), &cordoned)
                .is_some_and(|m| m.contains("were unschedulable"))
        );
        let status = json!({"status": unschedulable_status(&msg)});
        assert!(says_unschedulable(&status, &msg));
        assert!(!says_unschedulable(&status, "another message"));
    }
}

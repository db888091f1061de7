//! `fieldValidation=Strict`: unknown fields of built-in kinds are rejected with the API
//! server's `strict decoding error: unknown field "spec.foo"`.
//!
//! The object is decoded into its k8s-openapi type and encoded again; a non-null field of the
//! request that does not come back is unknown. When the typed decode fails (partial apply
//! bodies, quantities written as numbers, ...) the check is skipped rather than guessed.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;
use crate::resources::ResourceInfo;
use crate::structural;

fn roundtrip<T: DeserializeOwned + Serialize>(v: &Value) -> Option<Value> {
    // Decoded from the borrowed value: no copy of the object first.
    let typed = T::deserialize(v).ok()?;
    serde_json::to_value(&typed).ok()
}

fn typed_roundtrip(info: &ResourceInfo, v: &Value) -> Option<Value> {
    use k8s_openapi::api::{
        admissionregistration as admreg, apps, autoscaling, batch, coordination, core, discovery,
        networking, policy, rbac, scheduling, storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Pod") => roundtrip::<core::v1::Pod>(v),
        ("", "Secret") => roundtrip::<core::v1::Secret>(v),
        ("", "ConfigMap") => roundtrip::<core::v1::ConfigMap>(v),
        ("", "ServiceAccount") => roundtrip::<core::v1::ServiceAccount>(v),
        ("", "Service") => roundtrip::<core::v1::Service>(v),
        ("", "Namespace") => roundtrip::<core::v1::Namespace>(v),
        ("", "Event") => roundtrip::<core::v1::Event>(v),
        ("batch", "Job") => roundtrip::<batch::v1::Job>(v),
        ("batch", "CronJob") => roundtrip::<batch::v1::CronJob>(v),
        ("apps", "Deployment") => roundtrip::<apps::v1::Deployment>(v),
        ("apps", "ReplicaSet") => roundtrip::<apps::v1::ReplicaSet>(v),
        ("apps", "StatefulSet") => roundtrip::<apps::v1::StatefulSet>(v),
        ("apps", "DaemonSet") => roundtrip::<apps::v1::DaemonSet>(v),
        ("coordination.k8s.io", "Lease") => roundtrip::<coordination::v1::Lease>(v),
        ("rbac.authorization.k8s.io", "Role") => roundtrip::<rbac::v1::Role>(v),
        ("rbac.authorization.k8s.io", "ClusterRole") => roundtrip::<rbac::v1::ClusterRole>(v),
        ("rbac.authorization.k8s.io", "RoleBinding") => roundtrip::<rbac::v1::RoleBinding>(v),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            roundtrip::<rbac::v1::ClusterRoleBinding>(v)
        }
        ("", "PersistentVolumeClaim") => roundtrip::<core::v1::PersistentVolumeClaim>(v),
        ("", "PersistentVolume") => roundtrip::<core::v1::PersistentVolume>(v),
        ("", "ReplicationController") => roundtrip::<core::v1::ReplicationController>(v),
        ("policy", "PodDisruptionBudget") => roundtrip::<policy::v1::PodDisruptionBudget>(v),
        ("networking.k8s.io", "NetworkPolicy") => roundtrip::<networking::v1::NetworkPolicy>(v),
        ("networking.k8s.io", "Ingress") => roundtrip::<networking::v1::Ingress>(v),
        ("networking.k8s.io", "IngressClass") => roundtrip::<networking::v1::IngressClass>(v),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => {
            roundtrip::<admreg::v1::MutatingWebhookConfiguration>(v)
        }
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            roundtrip::<admreg::v1::ValidatingWebhookConfiguration>(v)
        }
        ("storage.k8s.io", "CSIDriver") => roundtrip::<storage::v1::CSIDriver>(v),
        ("storage.k8s.io", "StorageClass") => roundtrip::<storage::v1::StorageClass>(v),
        ("scheduling.k8s.io", "PriorityClass") => roundtrip::<scheduling::v1::PriorityClass>(v),
        ("autoscaling", "HorizontalPodAutoscaler") => {
            roundtrip::<autoscaling::v2::HorizontalPodAutoscaler>(v)
        }
        ("discovery.k8s.io", "EndpointSlice") => roundtrip::<discovery::v1::EndpointSlice>(v),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            roundtrip::<apiext::CustomResourceDefinition>(v)
        }
        _ => None,
    }
}

/// Appends to `out` the paths of the non-null fields of `input` that `known` lacks. `path` is
/// the position of `input` (restored on return); a path is only written out when reported.
fn unknown_fields(input: &Value, known: &Value, path: &mut String, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, val) in i {
                if val.is_null() {
                    continue;
                }
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match k.get(key) {
                    None => out.push(path.clone()),
                    Some(kv) => unknown_fields(val, kv, path, out),
                }
                path.truncate(len);
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (n, (iv, kv)) in i.iter().zip(k).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{n}]"));
                unknown_fields(iv, kv, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn prune(input: &mut Value, known: &Value) {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            i.retain(|key, _| k.contains_key(key));
            for (key, v) in i.iter_mut() {
                if let Some(kv) = k.get(key) {
                    prune(v, kv);
                }
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (iv, kv) in i.iter_mut().zip(k) {
                prune(iv, kv);
            }
        }
        _ => {}
    }
}

/// The paths of the fields of `obj` (a built-in kind, `status` aside) its type does not have,
/// or those a custom resource's schema prunes; empty for undecodable bodies.
pub fn unknown(info: &ResourceInfo, obj: &Value) -> Vec<String> {
    if info.custom {
        return custom_unknown(info, obj).unwrap_or_default();
    }
    let mut stripped = None;
    let probe = without_status(obj, &mut stripped);
    let mut out = Vec::new();
    if let Some(known) = typed_roundtrip(info, probe) {
        unknown_fields(probe, &known, &mut String::new(), &mut out);
    }
    out
}

/// The fields a custom resource's schema prunes (`None` without a schema).
fn custom_unknown(info: &ResourceInfo, obj: &Value) -> Option<Vec<String>> {
    let schema = structural::schema_of(info)?;
    let mut copy = obj.clone();
    Some(structural::prune(schema, &mut copy))
}

/// `obj` without `status`: `obj` itself when it has none, else a copy kept in `slot`.
fn without_status<'a>(obj: &'a Value, slot: &'a mut Option<Value>) -> &'a Value {
    if obj.get("status").is_none() {
        return obj;
    }
    let mut copy = obj.clone();
    if let Some(m) = copy.as_object_mut() {
        m.remove("status");
    }
    slot.insert(copy)
}

/// `fieldValidation=Ignore|Warn`: drop the fields of a built-in kind its type does not have,
/// as decoding into the API server's types does (`status` is left alone), or the fields a
/// custom resource's schema does not declare, as its pruning does. Undecodable bodies are
/// kept as they are.
pub fn drop_unknown(info: &ResourceInfo, obj: &mut Value) {
    drop_unknown_reporting(info, obj);
}

/// [`drop_unknown`] that also returns the paths [`unknown`] reports (the non-null fields
/// dropped), from the same decoding; `None` when nothing was decoded (custom resources
/// without a schema, undecodable bodies), so nothing was dropped.
pub fn drop_unknown_reporting(info: &ResourceInfo, obj: &mut Value) -> Option<Vec<String>> {
    if !obj.is_object() {
        return None;
    }
    if info.custom {
        return structural::schema_of(info).map(|schema| structural::prune(schema, obj));
    }
    let status = obj.as_object_mut().and_then(|m| m.remove("status"));
    let known = typed_roundtrip(info, obj);
    let mut out = Vec::new();
    if let Some(known) = &known {
        unknown_fields(obj, known, &mut String::new(), &mut out);
        prune(obj, known);
    }
    if let (Some(s), Some(m)) = (status, obj.as_object_mut()) {
        m.insert("status".into(), s);
    }
    known.map(|_| out)
}

/// 400 `<Kind> in version "v1" cannot be handled as a <Kind>: strict decoding error: unknown
/// field "..."` when `obj` (a built-in kind) carries fields its type does not have; for
/// server-side apply bodies (`apply`) the structured-merge message `failed to create typed
/// patch object (...): .spec.foo: field not declared in schema`. Custom resources are checked
/// against their schema (the fields pruning would drop), except apply bodies, which are
/// pruned; undecodable bodies pass.
pub fn check(info: &ResourceInfo, obj: &Value, apply: bool) -> Result<(), ApiError> {
    check_decoded(info, obj, apply).map(|_| ())
}

/// [`check`], telling whether the object was decoded (true: it has no field its type lacks
/// but null ones, or a custom resource has none its schema prunes; false: a custom resource
/// without a schema or an undecodable body, passed unchecked).
pub fn check_decoded(info: &ResourceInfo, obj: &Value, apply: bool) -> Result<bool, ApiError> {
    let unknown = if info.custom {
        if apply {
            // Apply configurations of custom resources are pruned, never refused (the
            // structured-merge type of a CRD is built from its pruned schema).
            return Ok(structural::schema_of(info).is_some());
        }
        let Some(unknown) = custom_unknown(info, obj) else {
            return Ok(false);
        };
        unknown
    } else {
        let mut stripped = None;
        let probe = without_status(obj, &mut stripped);
        let Some(known) = typed_roundtrip(info, probe) else {
            return Ok(false);
        };
        let mut unknown = Vec::new();
        unknown_fields(probe, &known, &mut String::new(), &mut unknown);
        unknown
    };
    if unknown.is_empty() {
        return Ok(true);
    }
    if apply {
        let gv = info.api_version();
        let gv = if info.group.is_empty() {
            format!("/{gv}")
        } else {
            gv
        };
        return Err(ApiError::bad_request(format!(
            "failed to create typed patch object ({gv}, Kind={}): .{}: field not declared in schema",
            info.kind, unknown[0]
        )));
    }
    let list: Vec<String> = unknown
        .iter()
        .map(|p| format!("unknown field {p:?}"))
        .collect();
    Err(ApiError::bad_request(format!(
        "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {}",
        list.join(", "),
        kind = info.kind,
        version = info.version(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let r = Registry::builtin();
        let job = r.get("batch", "jobs").unwrap();
        let obj = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x", "bogus": 1},
            "spec": {"foo": 1, "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "i", "colour": "red"}]}}}});
        let err = check(job, &obj, false).unwrap_err();
        assert_eq!(err.code, 400);
        assert_eq!(
            err.message,
            "Job in version \"v1\" cannot be handled as a Job: strict decoding error: unknown field \"metadata.bogus\", unknown field \"spec.foo\", unknown field \"spec.template.spec.containers[0].colour\""
        );
        let err = check(job, &obj, true).unwrap_err();
        assert_eq!(
            err.message,
            "failed to create typed patch object (batch/v1, Kind=Job): .metadata.bogus: field not declared in schema"
        );
        let mut dropped = obj.clone();
        drop_unknown(job, &mut dropped);
        assert!(dropped["metadata"].get("bogus").is_none() && dropped["spec"].get("foo").is_none());
        assert!(
            dropped["spec"]["template"]["spec"]["containers"][0]
                .get("colour")
                .is_none()
        );
        assert_eq!(
            dropped["spec"]["template"]["spec"]["containers"][0]["image"],
            "i"
        );
        let ok = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "labels": {}}, "data": {"a": "b"}});
        check(r.get("", "configmaps").unwrap(), &ok, false).unwrap();
    }
}

//! Property tests of what kubesim decodes and merges from clients: protobuf bodies (arbitrary
//! bytes, envelopes around arbitrary messages) and patches (JSON, merge, strategic merge,
//! server-side apply, recorded updates) of arbitrary documents against arbitrary objects,
//! through kubesim's public functions. None may panic: a bad body is an error answer, never a
//! crashed request.

use kubesim::patch::{
    PatchError, json_patch, merge_patch, record_update, server_side_apply, strategic_merge_patch,
};
use kubesim::proto::{MAGIC, ProtoError, decode, envelope};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const NOW: &str = "2026-01-01T00:00:00Z";

/// Keys of Kubernetes objects, list merge keys, patch directives and field-set notation.
const KEYS: [&str; 36] = [
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "labels",
    "annotations",
    "finalizers",
    "ownerReferences",
    "managedFields",
    "manager",
    "operation",
    "fieldsType",
    "fieldsV1",
    "subresource",
    "spec",
    "template",
    "containers",
    "initContainers",
    "env",
    "ports",
    "containerPort",
    "protocol",
    "volumes",
    "volumeMounts",
    "mountPath",
    "data",
    "status",
    "$patch",
    "$retainKeys",
    "$setElementOrder/containers",
    "$deleteFromPrimitiveList/finalizers",
    "f:metadata",
    "f:spec",
    "k:{\"name\":\"a\"}",
    "v:\"x\"",
];

/// The kinds whose strategic merge schema differs (and a custom resource).
const KINDS: [(&str, &str); 8] = [
    ("v1", "Pod"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("batch/v1", "Job"),
    ("example.com/v1", "Widget"),
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(&KEYS[..]).prop_map(str::to_string),
        1 => "[a-z$:/{}\"]{1,8}",
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..70000).prop_map(Value::from),
        proptest::sample::select(
            &[
                "a", "b", "replace", "delete", "merge", "Apply", "Update", "FieldsV1", "TCP", ""
            ][..]
        )
        .prop_map(Value::from),
        "[ -~]{0,6}".prop_map(Value::from),
    ]
}

/// Arbitrary JSON shaped like Kubernetes objects and patches.
fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 64, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(key(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object of `kind` with arbitrary content (its identity as a server would hold it).
fn object() -> impl Strategy<Value = (Value, &'static str, &'static str)> {
    (proptest::sample::select(&KINDS[..]), value(), value()).prop_map(|((av, kind), meta, rest)| {
        let mut o = match rest {
            Value::Object(m) => m,
            other => {
                let mut m = Map::new();
                m.insert("spec".into(), other);
                m
            }
        };
        let mut meta = match meta {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        meta.insert("name".into(), json!("x"));
        meta.insert("namespace".into(), json!("default"));
        o.insert("apiVersion".into(), json!(av));
        o.insert("kind".into(), json!(kind));
        o.insert("metadata".into(), Value::Object(meta));
        (Value::Object(o), av, kind)
    })
}

/// Whether a strategic merge patch directive is a key of `v` or of anything in it.
fn has_directive(v: &Value) -> bool {
    let directive = |k: &str| {
        k == "$patch"
            || k == "$retainKeys"
            || k.starts_with("$setElementOrder/")
            || k.starts_with("$deleteFromPrimitiveList/")
    };
    match v {
        Value::Object(m) => m.iter().any(|(k, v)| directive(k) || has_directive(v)),
        Value::Array(a) => a.iter().any(has_directive),
        _ => false,
    }
}

/// `v` without `$...` keys (a stored object never has one).
fn without_directives(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k, without_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(without_directives).collect()),
        other => other,
    }
}

/// Protobuf wire bytes: arbitrary fields (varint, fixed, length-delimited with nested
/// messages or strings), so the decoder meets plausible messages and not only noise.
fn wire() -> impl Strategy<Value = Vec<u8>> {
    let leaf = proptest::collection::vec(any::<u8>(), 0..12);
    leaf.prop_recursive(4, 256, 6, |inner| {
        proptest::collection::vec((1u32..20, 0u8..4, any::<u64>(), inner), 0..6).prop_map(
            |fields| {
                let mut out = Vec::new();
                for (tag, wt, n, nested) in fields {
                    match wt {
                        0 => {
                            varint(u64::from(tag << 3), &mut out);
                            varint(n, &mut out);
                        }
                        1 => {
                            varint(u64::from(tag << 3 | 1), &mut out);
                            out.extend_from_slice(&n.to_le_bytes());
                        }
                        _ => {
                            varint(u64::from(tag << 3 | 2), &mut out);
                            varint(nested.len() as u64, &mut out);
                            out.extend_from_slice(&nested);
                        }
                    }
                }
                out
            },
        )
    })
}

fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// The kinds the protobuf decoder knows, and one it does not.
const PROTO_KINDS: [(&str, &str); 16] = [
    ("v1", "Secret"),
    ("v1", "ConfigMap"),
    ("v1", "Namespace"),
    ("v1", "ServiceAccount"),
    ("v1", "Service"),
    ("v1", "Pod"),
    ("", "DeleteOptions"),
    ("meta.k8s.io/v1", "DeleteOptions"),
    ("authentication.k8s.io/v1", "TokenRequest"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
    ("apps/v1", "Deployment"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("example.com/v1", "Widget"),
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn protobuf_arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&body);
        let mut enveloped = MAGIC.to_vec();
        enveloped.extend_from_slice(&body);
        let _ = decode(&enveloped);
    }

    #[test]
    fn protobuf_messages_of_every_kind_never_panic(
        (av, kind) in proptest::sample::select(&PROTO_KINDS[..]),
        raw in wire(),
    ) {
        match decode(&envelope(av, kind, raw)) {
            Ok(v) => {
                prop_assert_eq!(&v["kind"], &json!(kind));
                prop_assert!(v["apiVersion"].is_string());
            }
            Err(ProtoError::NotEnvelope) => prop_assert!(false, "an envelope was refused as none"),
            Err(ProtoError::Unsupported(_) | ProtoError::Malformed(_)) => {}
        }
    }

    #[test]
    fn json_and_merge_patches_never_panic((target, _, _) in object(), patch in value()) {
        let _ = json_patch(&target, &patch);
        let merged = merge_patch(&target, &patch);
        if !patch.is_object() {
            prop_assert_eq!(merged, patch);
        }
    }

    #[test]
    fn json_patch_operations_never_panic(
        (target, _, _) in object(),
        ops in proptest::collection::vec(
            (
                proptest::sample::select(&["add", "remove", "replace", "move", "copy", "test", "bad"][..]),
                "(/(metadata|spec|labels|containers|0|1|-|~0|~1|x)){0,4}",
                "(/(metadata|spec|labels|0|-)){0,3}",
                value(),
            ),
            0..4,
        ),
    ) {
        let patch: Vec<Value> = ops
            .into_iter()
            .map(|(op, path, from, v)| json!({"op": op, "path": path, "from": from, "value": v}))
            .collect();
        let _ = json_patch(&target, &Value::Array(patch));
    }

    #[test]
    fn strategic_merge_patch_never_panics((target, av, kind) in object(), patch in value()) {
        let target = without_directives(target);
        match strategic_merge_patch(&target, &patch, av, kind) {
            Ok(out) => prop_assert!(!has_directive(&out), "a directive left in {out}"),
            Err(PatchError::Invalid(m)) => prop_assert!(!m.is_empty()),
            Err(PatchError::Conflict(c)) => prop_assert!(false, "a merge patch conflicted: {c:?}"),
        }
    }

    #[test]
    fn server_side_apply_never_panics(
        live in proptest::option::of(object()),
        (applied, _, _) in object(),
        manager in proptest::sample::select(&["sc-job", "helm", "kubectl", ""][..]),
        force in any::<bool>(),
    ) {
        let live = live.map(|(o, _, _)| o);
        match server_side_apply(live.as_ref(), &applied, manager, force, NOW) {
            Ok(out) => {
                prop_assert!(out["metadata"]["managedFields"].is_array() || out["metadata"]["managedFields"].is_null());
            }
            Err(PatchError::Conflict(c)) => {
                prop_assert!(!force, "a forced apply conflicted");
                prop_assert!(!c.is_empty());
            }
            Err(PatchError::Invalid(m)) => prop_assert!(!m.is_empty()),
        }
    }

    #[test]
    fn recorded_updates_never_panic(
        old in proptest::option::of(object()),
        (new, _, _) in object(),
        subresource in proptest::option::of(Just("status")),
    ) {
        let old = old.map(|(o, _, _)| o);
        let mut new = new;
        record_update(old.as_ref(), &mut new, "kubectl-edit", subresource, NOW);
    }
}

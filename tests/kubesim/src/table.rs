//! `meta.k8s.io/v1` Table responses, so `kubectl get` prints the usual columns.

use serde_json::Value;

/// Whether an Accept header asks for a Table (`as=Table;v=v1;g=meta.k8s.io`).
pub fn wants_table(_accept: &str) -> bool {
    todo!("table module")
}

/// A Table for objects of `group`/`resource` (plural). `list_meta` is the list's metadata
/// (resourceVersion, continue). `now` is the current time as unix seconds (for AGE).
/// Rows carry the object as `PartialObjectMetadata` (kubectl's default `includeObject=Metadata`),
/// or whole when `include_object` is "Object".
pub fn to_table(
    _group: &str,
    _resource: &str,
    _objects: &[&Value],
    _list_meta: Value,
    _now: i64,
    _include_object: &str,
) -> Value {
    todo!("table module")
}

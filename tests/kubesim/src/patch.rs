//! Patches on JSON objects: RFC 6902 JSON patch, RFC 7386 merge patch, strategic merge
//! patch with the Kubernetes merge keys, and server-side apply with per-manager field
//! ownership recorded in `metadata.managedFields` (FieldsV1). Pure functions, no I/O.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch cannot be applied (bad document, failed `test` op, ...): HTTP 422 / 400.
    #[error("{0}")]
    Invalid(String),
    /// Server-side apply conflicts (force=false): HTTP 409 with FieldManagerConflict causes.
    #[error("Apply failed with {} conflict(s)", .0.len())]
    Conflict(Vec<ApplyConflict>),
}

/// One field owned by another manager with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyConflict {
    pub manager: String,
    /// The field path as the API server prints it, e.g. `.spec.replicas` or `.data.key`.
    pub field: String,
}

pub fn json_patch(_target: &Value, _patch: &Value) -> Result<Value, PatchError> {
    todo!("patch module")
}

pub fn merge_patch(_target: &Value, _patch: &Value) -> Value {
    todo!("patch module")
}

/// `api_version`/`kind` select the merge keys (e.g. containers by `name`).
pub fn strategic_merge_patch(_target: &Value, _patch: &Value, _api_version: &str, _kind: &str) -> Result<Value, PatchError> {
    todo!("patch module")
}

/// Server-side apply of `applied` by `manager` onto `live` (None: the object is created).
/// Returns the new object with updated `metadata.managedFields` (operation Apply, time `now`).
pub fn server_side_apply(
    _live: Option<&Value>,
    _applied: &Value,
    _manager: &str,
    _force: bool,
    _now: &str,
) -> Result<Value, PatchError> {
    todo!("patch module")
}

/// Record a non-apply write (create, update, patch) by `manager` in `new`'s managedFields:
/// the manager's `Update` entry owns the fields it set or changed; other managers lose
/// ownership of the fields this write changed. `subresource` is e.g. `Some("status")`.
pub fn record_update(_old: Option<&Value>, _new: &mut Value, _manager: &str, _subresource: Option<&str>, _now: &str) {
    todo!("patch module")
}

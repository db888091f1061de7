//! Patches on JSON objects: RFC 6902 JSON patch, RFC 7386 merge patch, strategic merge
//! patch with the Kubernetes merge keys, and server-side apply with per-manager field
//! ownership recorded in `metadata.managedFields` (FieldsV1). Pure functions, no I/O.
//!
//! Strategic merge patch and server-side apply share one table of list keys per kind
//! (see `schema`). Neither treats `status` specially: for kinds whose status is a
//! subresource, the caller drops `status` from the body of main-resource writes (and the
//! rest from `/status` writes) before calling in, as the API server's strategies do.

mod fieldset;
mod schema;
mod smp;
mod ssa;

use serde_json::Value;

/// The message of the API server for a strategic merge patch on a custom resource (it
/// answers 415 Unsupported Media Type); returned as [`PatchError::Invalid`].
pub const SMP_UNSUPPORTED: &str = "strategic merge patch format is not supported";

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch cannot be applied (bad document, failed `test` op, ...): HTTP 422 / 400.
    /// [`SMP_UNSUPPORTED`] marks a strategic merge patch on a custom resource (HTTP 415).
    #[error("{0}")]
    Invalid(String),
    /// Server-side apply conflicts (force=false): HTTP 409 with FieldManagerConflict
    /// causes. The message is [`conflict_message`].
    #[error("{}", conflict_message(.0))]
    Conflict(Vec<ApplyConflict>),
}

/// One field owned by another manager with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyConflict {
    /// The other manager's name.
    pub manager: String,
    /// The field path as the API server prints it, e.g. `.spec.replicas`, `.data.key` or
    /// `.spec.template.spec.containers[name="main"].image`.
    pub field: String,
    /// The operation of the other manager's entry: `Apply` or `Update`.
    pub operation: String,
    /// The apiVersion of the other manager's entry (printed for `Update` managers).
    pub api_version: String,
    /// The subresource of the other manager's entry, e.g. `status`.
    pub subresource: Option<String>,
}

impl ApplyConflict {
    /// The other manager as the API server prints it: `"helm"`, or for writers that did
    /// not apply `"kubectl-create" using v1`, with `with subresource "status"` if any.
    pub fn manager_label(&self) -> String {
        let mut label = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            label = format!("{label} with subresource {sub:?}");
        }
        if self.operation == "Update" {
            label = format!("{label} using {}", self.api_version);
        }
        label
    }

    /// The `message` of this conflict's Status cause (`reason: FieldManagerConflict`,
    /// `field`: [`ApplyConflict::field`]), e.g. `conflict with "helm"`.
    pub fn cause_message(&self) -> String {
        format!("conflict with {}", self.manager_label())
    }
}

/// The Status message of a 409 apply conflict, exactly as the API server words it:
/// `Apply failed with 1 conflict: conflict with "mgr": .spec.x`, or for several
/// `Apply failed with 2 conflicts: conflicts with "mgr":\n- .data.a\n- .data.b`.
pub fn conflict_message(conflicts: &[ApplyConflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            only.manager_label(),
            only.field
        );
    }
    let mut labels: Vec<String> = conflicts.iter().map(ApplyConflict::manager_label).collect();
    labels.sort();
    labels.dedup();
    let mut lines = Vec::new();
    for label in labels {
        lines.push(format!("conflicts with {label}:"));
        for conflict in conflicts.iter().filter(|c| c.manager_label() == label) {
            lines.push(format!("- {}", conflict.field));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Applies an RFC 6902 JSON patch (a list of operations) to `target`.
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    let operations: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::Invalid(format!("invalid JSON patch: {e}")))?;
    // Applied to a copy that is dropped on error, so the operations need no undo (json-patch's
    // undo of a `move` to the root panics: `unable to undo applied patches`).
    let mut doc = target.clone();
    json_patch::patch_unsafe(&mut doc, &operations)
        .map_err(|e| PatchError::Invalid(format!("JSON patch failed: {e}")))?;
    Ok(doc)
}

/// Applies an RFC 7386 merge patch: maps merge, `null` deletes, lists are replaced.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    let mut doc = target.clone();
    json_patch::merge(&mut doc, patch);
    doc
}

/// Applies a strategic merge patch. `api_version`/`kind` select the merge keys (e.g.
/// containers by `name`); lists without one are replaced. Directives `$patch`,
/// `$retainKeys`, `$deleteFromPrimitiveList/<list>` and `$setElementOrder/<list>` are
/// honoured and never left in the result. Custom resources get
/// `PatchError::Invalid(SMP_UNSUPPORTED)`.
pub fn strategic_merge_patch(
    target: &Value,
    patch: &Value,
    api_version: &str,
    kind: &str,
) -> Result<Value, PatchError> {
    if !schema::is_builtin(api_version) {
        return Err(PatchError::Invalid(SMP_UNSUPPORTED.to_string()));
    }
    smp::apply(target, patch, &schema::Schema::for_kind(api_version, kind))
}

/// Server-side apply of `applied` by `manager` onto `live` (None: the object is created).
/// Returns the new object with updated `metadata.managedFields` (operation Apply, time
/// `now`; the time stays as it was when the apply changes nothing).
///
/// The manager's owned fields become exactly those of `applied`; fields it owned before
/// and no longer applies are removed unless another manager owns them too. With
/// `force == false`, changing a field another manager owns fails with
/// [`PatchError::Conflict`]; with `force == true` the ownership moves to `manager`.
/// `metadata.managedFields`, `resourceVersion`, `uid`, `creationTimestamp`, `generation`
/// and `selfLink` in `applied` are ignored (the caller checks `resourceVersion` as a
/// precondition first); `apiVersion`, `kind`, `metadata.name` and `metadata.namespace`
/// are merged but never owned.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, PatchError> {
    ssa::server_side_apply(live, applied, manager, None, force, now)
}

/// Server-side apply through a subresource (`Some("status")` for `/status`): as
/// [`server_side_apply`], but the manager's Apply entry is the one for that subresource,
/// so a status apply neither prunes nor takes over what the same manager applied to the
/// main resource. The caller passes only what the subresource may change (e.g. `status`
/// plus the identity fields).
pub fn server_side_apply_subresource(
    live: &Value,
    applied: &Value,
    manager: &str,
    subresource: Option<&str>,
    force: bool,
    now: &str,
) -> Result<Value, PatchError> {
    ssa::server_side_apply(Some(live), applied, manager, subresource, force, now)
}

/// Record a non-apply write (create, update, patch) by `manager` in `new`'s managedFields:
/// the manager's `Update` entry owns the fields it set or changed; other managers lose
/// ownership of the fields this write changed or removed. `subresource` is e.g.
/// `Some("status")`. Managed fields sent in `new` replace the stored ones, `[{}]` clears
/// them, and none keeps those of `old`.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    now: &str,
) {
    ssa::record_update(old, new, manager, subresource, now)
}

#[cfg(test)]
mod tests;

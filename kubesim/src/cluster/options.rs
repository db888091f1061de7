//! The options and results of the cluster's operations.

use serde_json::Value;

use crate::selector::{FieldSelector, LabelSelector};
use crate::store::Obj;

/// `fieldValidation` of a write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Unknown fields are dropped silently.
    Ignore,
    /// Unknown fields are dropped (the HTTP layer may warn).
    #[default]
    Warn,
    /// Unknown fields of built-in kinds fail with 400 `strict decoding error`.
    Strict,
}

/// Options of create, update and patch.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// Manager recorded in managedFields (`kubesim` when unset; required for apply).
    pub field_manager: Option<String>,
    /// Run admission and return the result without persisting anything.
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    /// The object was already stripped of the fields its type does not have (the HTTP layer
    /// does it while collecting its `Warning`s, server-side apply by checking its body), so
    /// the write path does not decode it again. Only with `fieldValidation` Warn or Ignore.
    pub unknown_fields_dropped: bool,
}

impl WriteOptions {
    /// Options for a writer identified by `manager` (what controllers use).
    pub fn manager(manager: &str) -> Self {
        Self {
            field_manager: Some(manager.to_string()),
            ..Self::default()
        }
    }

    pub(super) fn manager_name(&self) -> &str {
        self.field_manager.as_deref().unwrap_or("kubesim")
    }
}

/// The four patch formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json` (built-in kinds only).
    Strategic,
    /// `application/apply-patch+yaml`: server-side apply; creates a missing object.
    Apply { force: bool },
}

/// Filters and paging of a list.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub label_selector: Option<LabelSelector>,
    pub field_selector: Option<FieldSelector>,
    /// Page size; `None` or 0 returns everything.
    pub limit: Option<usize>,
    /// The `continue` token of the previous page.
    pub continue_token: Option<String>,
    /// `resourceVersion` of the list (unset, `0`, or a version).
    pub resource_version: Option<String>,
    /// `resourceVersionMatch` (`Exact`, `NotOlderThan`).
    pub resource_version_match: Option<String>,
}

/// One page of a list.
#[derive(Clone, Debug)]
pub struct ObjectList {
    pub items: Vec<Value>,
    /// The store's resourceVersion of the snapshot.
    pub resource_version: u64,
    /// Set when more items follow.
    pub continue_token: Option<String>,
    /// How many items follow this page (set on pages of unfiltered lists only).
    pub remaining_item_count: Option<usize>,
}

/// One page of a list, sharing the stored objects.
#[derive(Clone, Debug)]
pub struct SharedList {
    pub items: Vec<Obj>,
    /// The store's resourceVersion of the snapshot.
    pub resource_version: u64,
    /// Set when more items follow.
    pub continue_token: Option<String>,
    /// How many items follow this page (set on pages of unfiltered lists only).
    pub remaining_item_count: Option<usize>,
}

/// `propagationPolicy` of a delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

/// Options of a delete (body or query).
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    /// `None`: the kind's default (Orphan for batch/v1 Jobs, Background otherwise).
    pub propagation_policy: Option<Propagation>,
    /// Pods only; `None`: `spec.terminationGracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

/// The outcome of a delete.
#[derive(Clone, Debug, PartialEq)]
pub enum Deleted {
    /// The object is gone; its last state.
    Gone(Value),
    /// Deletion is pending (finalizers, graceful pod termination, namespace cleanup); the
    /// object with `deletionTimestamp` set.
    Pending(Value),
}

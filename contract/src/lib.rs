//! The formats sc-agent and sc-job exchange, defined once (see `docs/internals.md`): object
//! names, labels, annotations and selectors; the change set; the documents of a connection's
//! metadata ConfigMap (`requested.json`, `status.json`, `journal.json`) and the phase derived
//! from them; the failure reasons; the requests split over shards with their protected
//! settings merged in. No I/O: callers fetch objects and pass them (or a way to fetch them) in.

pub mod changeset;
pub mod cluster;
pub mod documents;
pub mod drift;
pub mod metadata;
pub mod reason;
pub mod requests;
pub mod shards;

pub use changeset::{
    Action, Cause, ChangeEntry, ChangeSet, MAX_CHANGESET_CONNECTIONS, in_flight_changeset,
    parse_changeset,
};
pub use documents::{
    JOURNAL_LENGTH, JournalEntry, ObjectKey, Requested, RequestedPhase, RunPhase, Status,
    append_journal, checked_spec_text, requested_document, spec_text,
};
pub use drift::{Change, DRIFT_KEY, Drift, DriftedObject, ObjectState, REAPPLY_ANNOTATION};
pub use metadata::{
    Carried, ConnectionPhase, Metadata, by_connection, mark_applying, phase_if_carried,
};
pub use reason::{Reason, RunError};
pub use requests::{
    RawConnection, Requests, configmap_connections, hash_key, merge_protected, raw_connections,
    revision_of, secret_connections,
};

use std::collections::BTreeMap;

/// The namespace the extension runs in unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = "sc-system";
/// The request ConfigMap rendered by the chart.
pub const REQUESTS_CONFIGMAP: &str = "sc-requests";
/// The Secret with the protected inputs rendered by the chart.
pub const PROTECTED_SECRET: &str = "sc-protected";
/// The key of both request objects.
pub const CONNECTIONS_KEY: &str = "connections.json";
/// The change set ConfigMap read by sc-job.
pub const CHANGESET_CONFIGMAP: &str = "sc-changeset";
/// The key of the change set.
pub const CHANGESET_KEY: &str = "changeset.json";
/// The fixed name of the materializing Job.
pub const JOB_NAME: &str = "sc-job";
/// The Lease of the leader election.
pub const LEASE_NAME: &str = "sc-agent";
/// The agent's Deployment.
pub const AGENT_DEPLOYMENT: &str = "sc-agent";
/// The field manager of everything the agent writes.
pub const FIELD_MANAGER: &str = "sc-agent";
/// The field manager of everything sc-job writes.
pub const JOB_FIELD_MANAGER: &str = "sc-job";
/// Prefix of the metadata ConfigMaps.
pub const METADATA_PREFIX: &str = "sc-conn-";

/// `app.kubernetes.io/managed-by`.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// `app.kubernetes.io/part-of`.
pub const PART_OF_LABEL: &str = "app.kubernetes.io/part-of";
/// `app.kubernetes.io/component`.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// The value of the managed-by and part-of labels.
pub const MANAGED_BY: &str = sc_model::render::MANAGED_BY;
/// The component label value of the metadata ConfigMaps.
pub const COMPONENT_CONNECTION: &str = "connection";
/// The label selector of the metadata ConfigMaps.
pub const METADATA_SELECTOR: &str =
    "app.kubernetes.io/managed-by=sc-extension,app.kubernetes.io/component=connection";
/// Annotation with the Helm revision that rendered the requests.
pub const REVISION_ANNOTATION: &str = shards::REVISION_ANNOTATION;
/// Annotation with the change set id, on the Job and the change set.
pub const CHANGESET_ID_ANNOTATION: &str = "sc-extension.io/changeset-id";
/// Annotation set on the change set once its run's outcome has been reported.
pub const CONCLUDED_ANNOTATION: &str = "sc-extension.io/concluded";
/// Annotation on a shared workload-identity ServiceAccount listing the connections that use
/// it (comma-separated, sorted), computed from the whole request set.
pub const USERS_ANNOTATION: &str = "sc-extension.io/connections";

/// Keys of a metadata ConfigMap.
pub const SPEC_KEY: &str = "spec.json";
/// See [`SPEC_KEY`].
pub const REQUESTED_KEY: &str = "requested.json";
/// See [`SPEC_KEY`].
pub const STATUS_KEY: &str = "status.json";
/// See [`SPEC_KEY`].
pub const JOURNAL_KEY: &str = "journal.json";

/// The metadata ConfigMap name of a connection.
pub fn metadata_name(connection: &str) -> String {
    sc_model::names::metadata_config_map_name(connection)
}

/// The labels of every object the agent creates, with its component.
pub fn labels(component: &str) -> BTreeMap<String, String> {
    [
        (MANAGED_BY_LABEL, MANAGED_BY),
        (PART_OF_LABEL, MANAGED_BY),
        (COMPONENT_LABEL, component),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The labels of the metadata ConfigMap of `connection`: [`labels`] of its component and the
/// connection label.
pub fn metadata_labels(connection: &str) -> BTreeMap<String, String> {
    let mut labels = labels(COMPONENT_CONNECTION);
    labels.insert(
        sc_model::render::CONNECTION_LABEL.to_string(),
        sc_model::names::connection_label_value(connection),
    );
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_names_use_the_secret_stem() {
        assert_eq!(metadata_name("My_Blob-1"), "sc-conn-myblob1");
        assert!(metadata_name("x").starts_with(METADATA_PREFIX));
    }

    #[test]
    fn the_selector_selects_the_labels_of_metadata() {
        let labels = metadata_labels("My_Blob");
        for term in METADATA_SELECTOR.split(',') {
            let (k, v) = term.split_once('=').unwrap();
            assert_eq!(labels.get(k).map(String::as_str), Some(v), "{term}");
        }
        assert_eq!(labels[sc_model::render::CONNECTION_LABEL], "My_Blob");
    }
}

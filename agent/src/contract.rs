//! The names and formats shared by the chart, sc-agent and sc-job (see `docs/internals.md`):
//! the request objects, the metadata ConfigMap of each connection, the change set and the Job.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

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
pub const REVISION_ANNOTATION: &str = sc_model::shards::REVISION_ANNOTATION;
/// Annotation with the change set id, on the Job and the change set.
pub const CHANGESET_ID_ANNOTATION: &str = "sc-extension.io/changeset-id";
/// Annotation set on the change set once its run's outcome has been reported.
pub const CONCLUDED_ANNOTATION: &str = "sc-extension.io/concluded";

/// Keys of a metadata ConfigMap.
pub const SPEC_KEY: &str = "spec.json";
/// See [`SPEC_KEY`].
pub const REQUESTED_KEY: &str = "requested.json";
/// See [`SPEC_KEY`].
pub const STATUS_KEY: &str = "status.json";
/// See [`SPEC_KEY`].
pub const JOURNAL_KEY: &str = "journal.json";
/// How many runs a journal keeps.
pub const JOURNAL_LENGTH: usize = 10;

/// Error reasons recorded by sc-job that no retry can fix (the request must change). Every
/// other reason (API errors, missing namespaces or workloads, RBAC) is retried with backoff.
pub const PERMANENT_REASONS: [&str; 6] = [
    "InvalidRequest",
    "InvalidRequests",
    "Invalid",
    "NotManaged",
    "OwnedByAnotherConnection",
    "WorkloadNotPatchable",
];

/// The metadata ConfigMap name of a connection.
pub fn metadata_name(connection: &str) -> String {
    format!(
        "{METADATA_PREFIX}{}",
        sc_model::names::compact_name(connection)
    )
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

/// What the agent wants for a connection: `requested.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requested {
    /// The content hash of the current request (empty when deleted).
    pub hash: String,
    /// The Helm revision of the requests when this hash was first requested.
    pub revision: i64,
    /// `Pending` or `Deleted`.
    pub phase: RequestedPhase,
}

/// The agent's phase of a requested connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestedPhase {
    /// Requested (whether a Job carries it is in the change set).
    Pending,
    /// Written by earlier versions while a change set carried the connection; read as
    /// `Pending`.
    Applying,
    /// Removed from the requests.
    Deleted,
}

/// The error of a run, as sc-job records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RunError {
    /// A short PascalCase reason (`Invalid`, `Conflict`, `Forbidden`, `ApiError`, ...).
    #[serde(default)]
    pub reason: String,
    /// What failed, on which object or key.
    #[serde(default)]
    pub message: String,
    /// What to do.
    #[serde(default)]
    pub remedy: String,
}

impl RunError {
    /// Whether a retry with the same input cannot succeed.
    pub fn is_permanent(&self) -> bool {
        PERMANENT_REASONS.contains(&self.reason.as_str())
    }
}

/// An object a connection created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// The kind.
    #[serde(default)]
    pub kind: String,
    /// The namespace.
    #[serde(default)]
    pub namespace: String,
    /// The name.
    #[serde(default)]
    pub name: String,
}

/// The last result of sc-job for a connection: `status.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// `Ready` or `Failed`.
    #[serde(default)]
    pub phase: String,
    /// The hash last applied successfully.
    #[serde(default)]
    pub applied_hash: Option<String>,
    /// The hash the last run was for (success or failure).
    #[serde(default)]
    pub hash: Option<String>,
    /// The revision of the last run.
    #[serde(default)]
    pub revision: Option<i64>,
    /// The objects created.
    #[serde(default)]
    pub objects: Vec<ObjectRef>,
    /// The error of the last run.
    #[serde(default)]
    pub error: Option<RunError>,
    /// When.
    #[serde(default)]
    pub time: Option<String>,
}

impl Status {
    /// Whether sc-job has removed the connection.
    pub fn is_deleted(&self) -> bool {
        self.phase == "Deleted"
    }

    /// The error of the last run if it failed for `hash`.
    pub fn failure_for(&self, hash: &str) -> Option<&RunError> {
        if self.phase != "Failed" || self.hash.as_deref() != Some(hash) {
            return None;
        }
        self.error.as_ref()
    }
}

/// One run in the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// When it ended.
    #[serde(default)]
    pub time: String,
    /// The Job of the run, `<namespace>/<name>`.
    #[serde(default)]
    pub job: String,
    /// The change set id of the run.
    #[serde(default)]
    pub changeset: String,
    /// `Succeeded` or `Failed`.
    #[serde(default)]
    pub result: String,
    /// The steps it took.
    #[serde(default)]
    pub steps: Vec<Value>,
    /// The error, if it failed.
    #[serde(default)]
    pub error: Option<RunError>,
    /// Other fields (sc-job's entries carry more), kept as they are.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// One connection in a change set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChangeEntry {
    /// The connection name.
    pub name: String,
    /// The content hash to apply (empty for a delete).
    pub hash: String,
    /// `apply` or `delete`.
    pub action: Action,
}

/// At most this many connections go into one change set (its ConfigMap stays far below the
/// 1 MiB limit of an object, and one sc-job's memory is bounded); more pending changes
/// follow in the next runs.
pub const MAX_CHANGESET_CONNECTIONS: usize = 5000;

/// What sc-job does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Create or update its objects.
    Apply,
    /// Remove it (its objects per its deletion policy) and its metadata.
    Delete,
}

/// The change set: `changeset.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSet {
    /// A fresh id per run.
    pub id: String,
    /// The Helm revision of the requests.
    pub revision: i64,
    /// The connections to apply or delete.
    pub connections: Vec<ChangeEntry>,
}

/// The parsed content of a metadata ConfigMap.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    /// The ConfigMap name.
    pub configmap: String,
    /// The exact connection name (annotation), else from `spec.json`.
    pub connection: String,
    /// `spec.json` as written (shared: a parsed metadata ConfigMap is cloned on every step).
    pub spec_text: Option<Arc<str>>,
    /// `requested.json` as written.
    pub requested_text: Option<Arc<str>>,
    /// `requested.json`.
    pub requested: Option<Requested>,
    /// `status.json`.
    pub status: Option<Arc<Status>>,
    /// `journal.json`.
    pub journal: Vec<JournalEntry>,
    /// The ConfigMap's resourceVersion.
    pub resource_version: Option<String>,
    /// The hash the change set in flight (written, not concluded) carries for this
    /// connection: see [`mark_applying`]. Not part of the ConfigMap.
    pub applying_hash: Option<String>,
    /// SHA-256 of `spec.json` and `requested.json`, in a copy that dropped the texts
    /// ([`Metadata::keep_digest_only`]). Not part of the ConfigMap.
    pub texts_digest: Option<[u8; 32]>,
}

/// The digest [`Metadata::has_texts`] compares when the texts were dropped.
fn texts_digest(spec: Option<&str>, requested: Option<&str>) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for text in [spec, requested] {
        match text {
            Some(t) => {
                h.update([1]);
                h.update((t.len() as u64).to_le_bytes());
                h.update(t.as_bytes());
            }
            None => h.update([0]),
        }
    }
    h.finalize().into()
}

/// Notes in `metadata` which connections `changeset` (in flight) carries, and with which hash.
pub fn mark_applying(metadata: &mut [Metadata], changeset: &ChangeSet) {
    let carried: BTreeMap<&str, &str> = changeset
        .connections
        .iter()
        .filter(|c| c.action == Action::Apply)
        .map(|c| (c.name.as_str(), c.hash.as_str()))
        .collect();
    for m in metadata {
        m.applying_hash = carried.get(m.connection.as_str()).map(|h| h.to_string());
    }
}

/// The change set of ConfigMap `sc-changeset` and whether its run is concluded; `None` when
/// it holds none that parses.
pub fn parse_changeset(cm: &k8s_openapi::api::core::v1::ConfigMap) -> Option<(ChangeSet, bool)> {
    let concluded = cm
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(CONCLUDED_ANNOTATION));
    cm.data
        .as_ref()
        .and_then(|d| d.get(CHANGESET_KEY))
        .and_then(|t| serde_json::from_str(t).ok())
        .map(|cs| (cs, concluded))
}

/// The change set of ConfigMap `sc-changeset` while its run is in flight (not concluded).
pub fn in_flight_changeset(cm: &k8s_openapi::api::core::v1::ConfigMap) -> Option<ChangeSet> {
    parse_changeset(cm).and_then(|(cs, concluded)| (!concluded).then_some(cs))
}

impl Metadata {
    /// Parses a metadata ConfigMap given by name, annotations and data. Unparsable keys read as
    /// absent.
    pub fn parse(
        configmap: &str,
        annotations: &BTreeMap<String, String>,
        data: &BTreeMap<String, String>,
        resource_version: Option<String>,
    ) -> Metadata {
        let connection = annotations
            .get(sc_model::render::CONNECTION_ANNOTATION)
            .cloned()
            .or_else(|| {
                data.get(SPEC_KEY)
                    .and_then(|t| serde_json::from_str::<Value>(t).ok())
                    .and_then(|s| s["name"].as_str().map(str::to_string))
            })
            .unwrap_or_default();
        Metadata {
            configmap: configmap.to_string(),
            connection,
            spec_text: data.get(SPEC_KEY).map(|t| Arc::from(t.as_str())),
            requested_text: data.get(REQUESTED_KEY).map(|t| Arc::from(t.as_str())),
            requested: data
                .get(REQUESTED_KEY)
                .and_then(|t| serde_json::from_str(t).ok()),
            status: data
                .get(STATUS_KEY)
                .and_then(|t| serde_json::from_str(t).ok())
                .map(Arc::new),
            journal: data
                .get(JOURNAL_KEY)
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or_default(),
            resource_version,
            applying_hash: None,
            texts_digest: None,
        }
    }

    /// Whether `spec.json` and `requested.json` are exactly `spec` and `requested`.
    pub fn has_texts(&self, spec: &str, requested: &str) -> bool {
        match &self.texts_digest {
            Some(d) => *d == texts_digest(Some(spec), Some(requested)),
            None => {
                self.spec_text.as_deref() == Some(spec)
                    && self.requested_text.as_deref() == Some(requested)
            }
        }
    }

    /// Replaces `spec.json` and `requested.json` by their digest: [`Metadata::has_texts`]
    /// still answers, [`Metadata::spec`] no longer does. For copies kept by the thousand.
    pub fn keep_digest_only(&mut self) {
        if self.texts_digest.is_none() {
            self.texts_digest = Some(texts_digest(
                self.spec_text.as_deref(),
                self.requested_text.as_deref(),
            ));
        }
        self.spec_text = None;
        self.requested_text = None;
    }

    /// `spec.json`, parsed (`None` when absent or not JSON).
    pub fn spec(&self) -> Option<Value> {
        serde_json::from_str(self.spec_text.as_deref()?).ok()
    }

    /// Parses a ConfigMap object.
    pub fn from_configmap(cm: &k8s_openapi::api::core::v1::ConfigMap) -> Metadata {
        Metadata::parse(
            cm.metadata.name.as_deref().unwrap_or_default(),
            cm.metadata.annotations.as_ref().unwrap_or(&BTreeMap::new()),
            cm.data.as_ref().unwrap_or(&BTreeMap::new()),
            cm.metadata.resource_version.clone(),
        )
    }

    /// The phase a user sees, given the hash of the current request (`None` when the
    /// connection is no longer requested).
    pub fn phase(&self, current_hash: Option<&str>) -> Phase {
        let requested_hash = self.requested.as_ref().map(|r| r.hash.as_str());
        let Some(hash) = current_hash.or(requested_hash) else {
            return Phase::Pending;
        };
        if self
            .requested
            .as_ref()
            .is_some_and(|r| r.phase == RequestedPhase::Deleted)
            && current_hash.is_none()
        {
            return Phase::Deleted;
        }
        if let Some(status) = &self.status {
            if status.failure_for(hash).is_some() {
                return Phase::Failed;
            }
            if status.applied_hash.as_deref() == Some(hash) && !hash.is_empty() {
                return Phase::Ready;
            }
        }
        let legacy = self
            .requested
            .as_ref()
            .is_some_and(|r| r.hash == hash && r.phase == RequestedPhase::Applying);
        if legacy || self.applying_hash.as_deref() == Some(hash) {
            Phase::Applying
        } else {
            Phase::Pending
        }
    }
}

/// The phase of a connection as users see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Hash)]
pub enum Phase {
    /// Requested, no Job has taken it yet.
    Pending,
    /// A Job carries it.
    Applying,
    /// Its objects match the request.
    Ready,
    /// The last run for the current request failed.
    Failed,
    /// Removed from the requests, removal not done yet.
    Deleted,
}

impl Phase {
    /// Every phase, for metrics.
    pub const ALL: [Phase; 5] = [
        Phase::Pending,
        Phase::Applying,
        Phase::Ready,
        Phase::Failed,
        Phase::Deleted,
    ];

    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Applying => "Applying",
            Phase::Ready => "Ready",
            Phase::Failed => "Failed",
            Phase::Deleted => "Deleted",
        }
    }
}

/// The requests as the chart rendered them, with the protected inputs merged in (so its
/// `Debug` form shows no content).
#[derive(Clone)]
pub struct Requests {
    /// The Helm revision (0 when unknown).
    pub revision: i64,
    /// The `connections` subtree with each connection's `secrets`.
    pub connections: Value,
    /// The key of the content hashes: see [`hash_key`].
    pub hash_key: String,
}

/// The key of the content hashes (HMAC): the uid of the protected Secret, which only those who
/// may read that Secret see, so the hashes recorded in ConfigMaps cannot be tested offline
/// against guessed secrets. Empty when there is no protected Secret (then no secret either).
/// A new protected Secret (a reinstall) changes every hash once: each connection is applied
/// again, idempotently.
pub fn hash_key(protected: Option<&k8s_openapi::api::core::v1::Secret>) -> String {
    protected
        .and_then(|s| s.metadata.uid.clone())
        .unwrap_or_default()
}

impl std::fmt::Debug for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.connections.as_object().map_or(0, |m| m.len());
        f.debug_struct("Requests")
            .field("revision", &self.revision)
            .field("connections", &count)
            .finish()
    }
}

impl Requests {
    /// Merges `connections.json` of the request ConfigMap(s) with that of the protected
    /// Secret(s): `public` and `protected` are the shards in order, by object name, each with
    /// its `connections.json` when it has one.
    pub fn parse(
        revision: i64,
        public: &[(&str, Option<&[u8]>)],
        protected: &[(&str, Option<&[u8]>)],
        hash_key: &str,
    ) -> Result<Requests, String> {
        let mut connections = serde_json::Map::new();
        for (name, text) in public {
            let part: Value = match text {
                Some(t) if !t.trim_ascii().is_empty() => serde_json::from_slice(t).map_err(|e| {
                    format!("ConfigMap {name} key {CONNECTIONS_KEY} is not JSON ({e}): upgrade the release with valid values")
                })?,
                _ => Value::Null,
            };
            sc_model::shards::merge_into(&mut connections, part, &format!("ConfigMap {name}"))?;
        }
        let mut secrets = serde_json::Map::new();
        for (name, bytes) in protected {
            let Some(bytes) = bytes.filter(|b| !b.is_empty()) else {
                continue;
            };
            // Never include serde's message: it may quote the secret text.
            let part: Value = serde_json::from_slice(bytes).map_err(|_| {
                format!("Secret {name} key {CONNECTIONS_KEY} is not JSON: upgrade the release with valid protected values")
            })?;
            sc_model::shards::merge_into(&mut secrets, part, &format!("Secret {name}"))?;
        }
        for (name, p) in secrets {
            if let (Some(Value::Object(c)), Value::Object(mut p)) = (connections.get_mut(&name), p)
                && let Some(s) = p.remove("secrets")
            {
                c.insert("secrets".into(), s);
            }
        }
        Ok(Requests {
            revision,
            connections: Value::Object(connections),
            hash_key: hash_key.to_string(),
        })
    }
}

/// `connections.json` of a request ConfigMap.
pub fn configmap_connections(cm: &k8s_openapi::api::core::v1::ConfigMap) -> Option<&[u8]> {
    cm.data.as_ref()?.get(CONNECTIONS_KEY).map(|t| t.as_bytes())
}

/// `connections.json` of a protected Secret.
pub fn secret_connections(s: &k8s_openapi::api::core::v1::Secret) -> Option<&[u8]> {
    s.data
        .as_ref()?
        .get(CONNECTIONS_KEY)
        .map(|b| b.0.as_slice())
}

/// The Helm revision recorded on an object (0 when absent or not a number).
pub fn revision_of(annotations: Option<&BTreeMap<String, String>>) -> i64 {
    annotations
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .and_then(|r| r.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(requested: Option<Requested>, status: Option<Status>) -> Metadata {
        Metadata {
            requested,
            status: status.map(Arc::new),
            ..Default::default()
        }
    }

    #[test]
    fn texts_compare_the_same_with_or_without_the_texts() {
        let data = |spec: Option<&str>| {
            let mut d = BTreeMap::new();
            if let Some(s) = spec {
                d.insert(SPEC_KEY.to_string(), s.to_string());
            }
            d.insert(REQUESTED_KEY.to_string(), r#"{"hash":"h"}"#.to_string());
            d
        };
        let cases = [
            (
                Some(r#"{"name":"a"}"#),
                r#"{"name":"a"}"#,
                r#"{"hash":"h"}"#,
                true,
            ),
            (
                Some(r#"{"name":"a"}"#),
                r#"{"name":"b"}"#,
                r#"{"hash":"h"}"#,
                false,
            ),
            (
                Some(r#"{"name":"a"}"#),
                r#"{"name":"a"}"#,
                r#"{"hash":"g"}"#,
                false,
            ),
            // No spec.json is not an empty one.
            (None, "", r#"{"hash":"h"}"#, false),
            (Some(""), "", r#"{"hash":"h"}"#, true),
        ];
        for (stored, spec, requested, same) in cases {
            let full = Metadata::parse("sc-a", &BTreeMap::new(), &data(stored), None);
            let mut slim = full.clone();
            slim.keep_digest_only();
            assert!(slim.spec_text.is_none() && slim.requested_text.is_none());
            assert_eq!(full.has_texts(spec, requested), same, "{stored:?} {spec}");
            assert_eq!(slim.has_texts(spec, requested), same, "{stored:?} {spec}");
            // Twice is once.
            let digest = slim.texts_digest;
            slim.keep_digest_only();
            assert_eq!(slim.texts_digest, digest);
        }
    }

    fn req(hash: &str, phase: RequestedPhase) -> Option<Requested> {
        Some(Requested {
            hash: hash.into(),
            revision: 1,
            phase,
        })
    }

    #[test]
    fn phases_follow_requested_and_status() {
        assert_eq!(
            meta(req("h1", RequestedPhase::Pending), None).phase(Some("h1")),
            Phase::Pending
        );
        assert_eq!(
            meta(req("h1", RequestedPhase::Applying), None).phase(Some("h1")),
            Phase::Applying
        );
        let ready = Status {
            phase: "Ready".into(),
            applied_hash: Some("h1".into()),
            hash: Some("h1".into()),
            ..Default::default()
        };
        let m = meta(req("h1", RequestedPhase::Applying), Some(ready));
        assert_eq!(m.phase(Some("h1")), Phase::Ready);
        assert_eq!(m.phase(Some("h2")), Phase::Pending);
        let failed = Status {
            phase: "Failed".into(),
            applied_hash: Some("h1".into()),
            hash: Some("h2".into()),
            error: Some(RunError::default()),
            ..Default::default()
        };
        let m = meta(req("h2", RequestedPhase::Applying), Some(failed));
        assert_eq!(m.phase(Some("h2")), Phase::Failed);
        assert_eq!(m.phase(Some("h3")), Phase::Pending);
        assert_eq!(
            meta(req("", RequestedPhase::Deleted), None).phase(None),
            Phase::Deleted
        );
    }

    #[test]
    fn the_change_set_in_flight_makes_its_connections_applying() {
        let mut ms = vec![
            Metadata {
                connection: "a".into(),
                ..meta(req("h1", RequestedPhase::Pending), None)
            },
            Metadata {
                connection: "b".into(),
                ..meta(req("h2", RequestedPhase::Pending), None)
            },
        ];
        let cs = ChangeSet {
            id: "x".into(),
            revision: 1,
            connections: vec![ChangeEntry {
                name: "a".into(),
                hash: "h1".into(),
                action: Action::Apply,
            }],
        };
        mark_applying(&mut ms, &cs);
        assert_eq!(ms[0].phase(Some("h1")), Phase::Applying);
        // A newer request than the one carried waits for the next change set.
        assert_eq!(ms[0].phase(Some("h9")), Phase::Pending);
        assert_eq!(ms[1].phase(Some("h2")), Phase::Pending);

        let mut cm = k8s_openapi::api::core::v1::ConfigMap {
            data: Some(BTreeMap::from([(
                CHANGESET_KEY.to_string(),
                serde_json::to_string(&cs).unwrap(),
            )])),
            ..Default::default()
        };
        assert_eq!(in_flight_changeset(&cm), Some(cs));
        cm.metadata.annotations = Some(BTreeMap::from([(
            CONCLUDED_ANNOTATION.to_string(),
            "true".to_string(),
        )]));
        assert_eq!(in_flight_changeset(&cm), None);
    }

    #[test]
    fn protected_inputs_are_merged_and_never_quoted_in_errors() {
        let r = Requests::parse(
            3,
            &[(
                "sc-requests",
                Some(br#"{"a": {"targetType": "storage-blob"}, "b": {}}"#),
            )],
            &[(
                "sc-protected",
                Some(
                    br#"{"a": {"secrets": {"accountKey": "s3cr3t-key"}}, "gone": {"secrets": {}}}"#,
                ),
            )],
            "uid",
        )
        .unwrap();
        assert_eq!(r.connections["a"]["secrets"]["accountKey"], "s3cr3t-key");
        assert!(r.connections.get("gone").is_none());
        let err = Requests::parse(
            1,
            &[("sc-requests", Some(b"{}"))],
            &[("sc-protected", Some(b"{\"a\": hunter2"))],
            "",
        )
        .unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(!format!("{r:?}").contains("s3cr3t-key"), "{r:?}");
    }

    #[test]
    fn shards_are_merged_and_a_connection_in_two_is_refused() {
        let r = Requests::parse(
            2,
            &[
                ("sc-requests", Some(br#"{"a": {"targetType": "redis"}}"#)),
                ("sc-requests-1", Some(br#"{"b": {"targetType": "redis"}}"#)),
            ],
            &[
                (
                    "sc-protected",
                    Some(br#"{"b": {"secrets": {"password": "p1"}}}"#),
                ),
                (
                    "sc-protected-1",
                    Some(br#"{"a": {"secrets": {"password": "p2"}}}"#),
                ),
            ],
            "uid",
        )
        .unwrap();
        assert_eq!(r.connections["a"]["secrets"]["password"], "p2");
        assert_eq!(r.connections["b"]["secrets"]["password"], "p1");
        let err = Requests::parse(
            2,
            &[
                ("sc-requests", Some(br#"{"a": {}}"#)),
                ("sc-requests-1", Some(br#"{"a": {}}"#)),
            ],
            &[],
            "",
        )
        .unwrap_err();
        assert!(
            err.contains("sc-requests-1") && err.contains("\"a\""),
            "{err}"
        );
        let err = Requests::parse(
            2,
            &[("sc-requests", Some(b"{}"))],
            &[
                (
                    "sc-protected",
                    Some(br#"{"a": {"secrets": {"password": "p1"}}}"#),
                ),
                (
                    "sc-protected-1",
                    Some(br#"{"a": {"secrets": {"password": "p2"}}}"#),
                ),
            ],
            "",
        )
        .unwrap_err();
        assert!(
            err.contains("sc-protected-1") && !err.contains("p2"),
            "{err}"
        );
    }

    #[test]
    fn the_largest_change_set_fits_an_object() {
        let cs = ChangeSet {
            id: uuid::Uuid::new_v4().to_string(),
            revision: i64::MAX,
            connections: (0..MAX_CHANGESET_CONNECTIONS)
                .map(|i| ChangeEntry {
                    name: format!("{i:_>60}"),
                    hash: "f".repeat(64),
                    action: Action::Delete,
                })
                .collect(),
        };
        let bytes = serde_json::to_string(&cs).unwrap().len();
        assert!(bytes < 1_000_000, "{bytes} bytes");
    }

    #[test]
    fn metadata_names_use_the_secret_stem() {
        assert_eq!(metadata_name("My_Blob-1"), "sc-conn-myblob1");
    }
}

//! The documents of a connection's metadata ConfigMap: `spec.json`, `requested.json` and
//! `status.json` (written by sc-job in one update per run; earlier versions of sc-agent wrote
//! the first two) and the entries of `journal.json` (both).

use crate::changeset::Action;
use crate::reason::RunError;
use sc_model::DeletionPolicy;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::fmt;

/// How many runs a journal keeps.
pub const JOURNAL_LENGTH: usize = 10;

/// What was requested for a connection when it was last run: `requested.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requested {
    /// The content hash of the request (empty in a `Deleted` document of earlier versions).
    pub hash: String,
    /// The Helm revision of the requests when this hash was first requested.
    pub revision: i64,
    /// `Pending` (absent: what sc-job writes) or, in documents of earlier versions of the
    /// agent, `Applying` or `Deleted`.
    #[serde(default, skip_serializing_if = "RequestedPhase::is_pending")]
    pub phase: RequestedPhase,
}

/// The phase in `requested.json`: only documents written by earlier versions of the agent
/// carry one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestedPhase {
    /// Requested (whether a Job carries it is in the change set).
    #[default]
    Pending,
    /// Written by earlier versions while a change set carried the connection; read as
    /// `Pending`.
    Applying,
    /// Removed from the requests.
    Deleted,
}

impl RequestedPhase {
    fn is_pending(&self) -> bool {
        *self == RequestedPhase::Pending
    }
}

/// The `requested.json` of a connection requested with `hash` by the change set of
/// `revision`: its revision is the one at which this hash was first requested, kept from
/// `existing` (what the metadata holds) when that records the same hash. The one builder of
/// the document: sc-job writes it, the agent's commands read it.
pub fn requested_document(hash: &str, revision: i64, existing: Option<&Requested>) -> Requested {
    let revision = match existing {
        Some(r) if r.hash == hash && r.phase != RequestedPhase::Deleted => r.revision,
        _ => revision,
    };
    Requested {
        hash: hash.to_string(),
        revision,
        phase: RequestedPhase::Pending,
    }
}

/// The text of `spec.json` for a connection: its non-secret request as sc-model parsed it.
pub fn spec_text(connection: &sc_model::Connection) -> String {
    serde_json::to_string(&connection.spec).unwrap_or_default()
}

/// The text of `spec.json` for a checked connection, valid or not: the parsed request, else
/// (it did not parse) its raw request without `secrets`, with its name.
pub fn checked_spec_text(check: &sc_model::ConnectionCheck) -> String {
    match &check.connection {
        Some(c) => spec_text(c),
        None => check.invalid_spec.clone().unwrap_or_default(),
    }
}

/// The outcome of one run of sc-job for a connection: the `phase` of `status.json` and the
/// `result` of a journal entry. A value of another version is kept as [`RunPhase::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum RunPhase {
    /// Every object applied.
    Ready,
    /// Something failed; see the error.
    Failed,
    /// Removed from the request (objects deleted or retained per its deletion policy).
    Deleted,
    /// Another value, as written (empty when the document has none).
    Other(String),
}

impl RunPhase {
    /// The name written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            RunPhase::Ready => "Ready",
            RunPhase::Failed => "Failed",
            RunPhase::Deleted => "Deleted",
            RunPhase::Other(s) => s,
        }
    }
}

impl Default for RunPhase {
    /// The phase of a document without one.
    fn default() -> RunPhase {
        RunPhase::Other(String::new())
    }
}

impl From<String> for RunPhase {
    fn from(s: String) -> RunPhase {
        match s.as_str() {
            "Ready" => RunPhase::Ready,
            "Failed" => RunPhase::Failed,
            "Deleted" => RunPhase::Deleted,
            _ => RunPhase::Other(s),
        }
    }
}

impl From<&str> for RunPhase {
    fn from(s: &str) -> RunPhase {
        RunPhase::from(s.to_string())
    }
}

impl From<RunPhase> for String {
    fn from(p: RunPhase) -> String {
        match p {
            RunPhase::Other(s) => s,
            known => known.as_str().to_string(),
        }
    }
}

impl fmt::Display for RunPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for RunPhase {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The kind, namespace and name of an object: what `status.json` lists, and how sc-job names
/// the objects it reads and writes in its log and errors.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    /// The Kubernetes kind (`Secret`, `ServiceAccount`, ...).
    #[serde(default)]
    pub kind: String,
    /// The namespace (empty for cluster-scoped objects).
    #[serde(default)]
    pub namespace: String,
    /// The name.
    #[serde(default)]
    pub name: String,
}

impl ObjectKey {
    /// The key of `kind` `namespace/name`.
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        ObjectKey {
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ObjectKey {
    /// `secret default/sc-x-secret`: the kind lower-cased as kubectl spells resources.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind.to_ascii_lowercase();
        if self.namespace.is_empty() {
            write!(f, "{kind} {}", self.name)
        } else {
            write!(f, "{kind} {}/{}", self.namespace, self.name)
        }
    }
}

/// The last result of sc-job for a connection: `status.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// `Ready`, `Failed` or `Deleted`.
    #[serde(default)]
    pub phase: RunPhase,
    /// The hash the last run was for (success or failure).
    #[serde(default)]
    pub hash: Option<String>,
    /// The content hash of what is in place (`null` once deleted).
    #[serde(default)]
    pub applied_hash: Option<String>,
    /// The revision of the last run.
    #[serde(default)]
    pub revision: Option<i64>,
    /// The change set id of the last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changeset: Option<String>,
    /// The objects created (or, after a removal with `Retain`, kept).
    #[serde(default)]
    pub objects: Vec<ObjectKey>,
    /// The error of the last run.
    #[serde(default)]
    pub error: Option<RunError>,
    /// When, RFC 3339 in UTC.
    #[serde(default)]
    pub time: Option<String>,
    /// The connection's deletion policy when it was applied.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "write_policy",
        deserialize_with = "read_policy"
    )]
    pub deletion_policy: Option<DeletionPolicy>,
}

fn write_policy<S: Serializer>(p: &Option<DeletionPolicy>, s: S) -> Result<S::Ok, S::Error> {
    p.map(DeletionPolicy::as_str).serialize(s)
}

/// An unknown policy reads as none (the reader's default applies).
fn read_policy<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DeletionPolicy>, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    Ok(text.as_deref().and_then(DeletionPolicy::parse))
}

impl Status {
    /// Whether sc-job has removed the connection.
    pub fn is_deleted(&self) -> bool {
        self.phase == RunPhase::Deleted
    }

    /// The error of the last run if it failed for `hash`.
    pub fn failure_for(&self, hash: &str) -> Option<&RunError> {
        if self.phase != RunPhase::Failed || self.hash.as_deref() != Some(hash) {
            return None;
        }
        self.error.as_ref()
    }
}

/// One run in the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
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
    /// The change set's revision (sc-job's entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// What the change set asked for (sc-job's entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// The hash the change set asked for (sc-job's entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// The outcome: the run's phase (`Ready`, `Failed`, `Deleted`).
    #[serde(default)]
    pub result: RunPhase,
    /// The log lines of the run.
    #[serde(default)]
    pub steps: Vec<String>,
    /// The error, if it failed.
    #[serde(default)]
    pub error: Option<RunError>,
    /// Fields of other versions, kept as they are.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// `journal` (the text of `journal.json`; absent or unreadable reads as empty) with `entry`
/// appended, keeping the last [`JOURNAL_LENGTH`] entries.
pub fn append_journal(journal: Option<&str>, entry: JournalEntry) -> Vec<JournalEntry> {
    let mut runs: Vec<JournalEntry> = journal
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    runs.push(entry);
    let excess = runs.len().saturating_sub(JOURNAL_LENGTH);
    runs.drain(..excess);
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reason::Reason;
    use serde_json::json;

    #[test]
    fn requested_round_trips_and_the_old_applying_phase_parses() {
        let r = Requested {
            hash: "h".into(),
            revision: 3,
            phase: RequestedPhase::Pending,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"hash":"h","revision":3}"#);
        assert_eq!(serde_json::from_str::<Requested>(&text).unwrap(), r);
        // As earlier versions of the agent wrote it.
        let pending: Requested =
            serde_json::from_str(r#"{"hash":"h","revision":3,"phase":"Pending"}"#).unwrap();
        assert_eq!(pending, r);
        let old: Requested =
            serde_json::from_str(r#"{"hash": "h", "revision": 2, "phase": "Applying"}"#).unwrap();
        assert_eq!(old.phase, RequestedPhase::Applying);
        let deleted: Requested =
            serde_json::from_str(r#"{"hash": "", "revision": 4, "phase": "Deleted"}"#).unwrap();
        assert_eq!(deleted.phase, RequestedPhase::Deleted);
    }

    #[test]
    fn requested_keeps_the_revision_its_hash_was_first_requested_at() {
        let first = requested_document("h", 2, None);
        assert_eq!((first.hash.as_str(), first.revision), ("h", 2));
        // A later revision that leaves the request alone keeps it; a new hash takes the new one.
        assert_eq!(requested_document("h", 7, Some(&first)).revision, 2);
        assert_eq!(requested_document("g", 7, Some(&first)).revision, 7);
        // A connection removed (earlier versions wrote Deleted) and requested again.
        let deleted = Requested {
            hash: "h".into(),
            revision: 3,
            phase: RequestedPhase::Deleted,
        };
        assert_eq!(requested_document("h", 7, Some(&deleted)).revision, 7);
        // The legacy Applying phase is not written back.
        let applying = Requested {
            phase: RequestedPhase::Applying,
            ..first
        };
        let again = requested_document("h", 7, Some(&applying));
        assert_eq!((again.revision, again.phase), (2, RequestedPhase::Pending));
    }

    #[test]
    fn spec_texts_of_valid_and_invalid_connections() {
        let checks = sc_model::check_connections(&json!({
            "ok": {"targetType": "storage-blob", "authType": "secret",
                   "parameters": {"accountName": "a"}, "secrets": {"accountKey": "s3cr3t"}},
            "bad": {"targetType": "nope", "secrets": {"x": "s3cr3t"}},
        }));
        let bad = checked_spec_text(&checks[0]);
        assert!(
            bad.contains(r#""name":"bad""#) && !bad.contains("s3cr3t"),
            "{bad}"
        );
        let ok = checked_spec_text(&checks[1]);
        assert_eq!(ok, spec_text(checks[1].connection.as_ref().unwrap()));
        assert!(
            ok.contains("storage-blob") && !ok.contains("s3cr3t"),
            "{ok}"
        );
    }

    /// `status.json` as sc-job has always written it, field for field.
    const STATUS: &str = r#"{"phase":"Failed","hash":"h2","appliedHash":"h1","revision":4,"changeset":"id","objects":[{"kind":"Secret","namespace":"apps","name":"sc-c-secret"}],"error":{"reason":"NotManaged","message":"m","remedy":"r"},"time":"2026-01-01T00:00:00Z","deletionPolicy":"Delete"}"#;

    #[test]
    fn status_round_trips_in_the_documented_form() {
        let s: Status = serde_json::from_str(STATUS).unwrap();
        assert_eq!(s.phase, RunPhase::Failed);
        assert_eq!(s.deletion_policy, Some(DeletionPolicy::Delete));
        assert_eq!(
            s.objects[0],
            ObjectKey::new("Secret", "apps", "sc-c-secret")
        );
        assert_eq!(s.error.as_ref().unwrap().reason, Reason::NotManaged);
        assert!(s.failure_for("h2").is_some_and(RunError::is_permanent));
        assert!(s.failure_for("h1").is_none());
        assert_eq!(serde_json::to_string(&s).unwrap(), STATUS);
        // Without a policy and with nothing applied: explicit nulls, no policy key.
        let deleted = Status {
            phase: RunPhase::Deleted,
            hash: Some(String::new()),
            revision: Some(5),
            changeset: Some("id".into()),
            time: Some("t".into()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&deleted).unwrap(),
            json!({"phase": "Deleted", "hash": "", "appliedHash": null, "revision": 5,
                   "changeset": "id", "objects": [], "error": null, "time": "t"})
        );
        assert!(deleted.is_deleted());
    }

    #[test]
    fn old_and_partial_status_documents_parse() {
        let s: Status = serde_json::from_str(r#"{"phase": "Ready", "appliedHash": "h"}"#).unwrap();
        assert_eq!(s.phase, RunPhase::Ready);
        assert_eq!(s.revision, None);
        let s: Status = serde_json::from_str(
            r#"{"phase": "Unknown", "objects": [{"kind": "Secret"}], "deletionPolicy": "keep",
                "error": {"reason": "SomethingNew", "message": "m"}}"#,
        )
        .unwrap();
        assert_eq!(s.phase, RunPhase::Other("Unknown".into()));
        assert_eq!(s.objects[0].name, "");
        assert_eq!(s.deletion_policy, None);
        assert_eq!(
            s.error.unwrap().reason,
            Reason::Other("SomethingNew".into())
        );
        assert_eq!(
            serde_json::from_str::<Status>("{}").unwrap(),
            Status::default()
        );
    }

    #[test]
    fn journal_entries_of_both_writers_round_trip() {
        let job = r#"{"time":"t","job":"sc-system/sc-job","changeset":"id","revision":4,"action":"apply","hash":"h","result":"Ready","steps":["[c] secret a/b: created"],"error":null}"#;
        let e: JournalEntry = serde_json::from_str(job).unwrap();
        assert_eq!(e.action, Some(Action::Apply));
        assert_eq!(e.result, RunPhase::Ready);
        assert!(e.extra.is_empty());
        assert_eq!(serde_json::to_string(&e).unwrap(), job);
        let agent = r#"{"time":"t","job":"sc-system/sc-job","changeset":"id","result":"Failed","steps":[],"error":{"reason":"JobFailed","message":"m","remedy":"r"}}"#;
        let e: JournalEntry = serde_json::from_str(agent).unwrap();
        assert_eq!(e.revision, None);
        assert_eq!(serde_json::to_string(&e).unwrap(), agent);
        // Fields of other versions are kept.
        let e: JournalEntry = serde_json::from_str(r#"{"result":"Ready","attempt":2}"#).unwrap();
        assert_eq!(e.extra["attempt"], 2);
        assert_eq!(serde_json::to_value(&e).unwrap()["attempt"], 2);
    }

    #[test]
    fn journal_keeps_the_last_runs() {
        let entry = |i: i64| JournalEntry {
            revision: Some(i),
            ..Default::default()
        };
        let mut j = append_journal(None, entry(0));
        for i in 1..15 {
            j = append_journal(Some(&serde_json::to_string(&j).unwrap()), entry(i));
        }
        assert_eq!(j.len(), JOURNAL_LENGTH);
        assert_eq!(j[0].revision, Some(5));
        assert_eq!(j[9].revision, Some(14));
        assert_eq!(append_journal(Some("not json"), entry(1)), vec![entry(1)]);
    }

    #[test]
    fn object_keys_print_as_kubectl_names_them() {
        let o = ObjectKey::new("Secret", "default", "sc-x-secret");
        assert_eq!(o.to_string(), "secret default/sc-x-secret");
        assert_eq!(
            ObjectKey::new("Namespace", "", "apps").to_string(),
            "namespace apps"
        );
    }
}

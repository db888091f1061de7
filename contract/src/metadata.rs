//! A connection's metadata ConfigMap as read (`spec.json`, `requested.json`, `status.json`,
//! `journal.json`) and the phase a user sees, derived from it.

use crate::changeset::{Action, Cause, ChangeEntry, ChangeSet};
use crate::documents::{JournalEntry, Requested, RequestedPhase, RunPhase, Status};
use crate::drift::{DRIFT_KEY, Drift, REAPPLY_ANNOTATION};
use crate::reason::RunError;
use crate::{JOURNAL_KEY, REQUESTED_KEY, SPEC_KEY, STATUS_KEY};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

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
    /// `journal.json` (the agent's watch cache keeps only a failed last entry, by its time
    /// and result).
    pub journal: Vec<JournalEntry>,
    /// `drift.json` (written by sc-agent; absent in documents of earlier versions).
    pub drift: Option<Box<Drift>>,
    /// The annotation of `sc-agent reapply`, when an operator asked for a run.
    pub reapply: Option<String>,
    /// The ConfigMap's resourceVersion.
    pub resource_version: Option<String>,
    /// The hash the change set in flight (written, not concluded) carries for this
    /// connection: see [`mark_applying`]. Not part of the ConfigMap.
    pub applying_hash: Option<String>,
    /// Whether that change set carries it as a repair or an operator's reapply (planned
    /// knowing its drift), not as a change of its request: see [`mark_applying`].
    pub applying_repair: bool,
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

/// `metadata` by connection name.
pub fn by_connection(metadata: &[Metadata]) -> BTreeMap<&str, &Metadata> {
    metadata
        .iter()
        .map(|m| (m.connection.as_str(), m))
        .collect()
}

/// Whether the metadata `m` records the run of change set `id` for `entry` as done: applied
/// (or, for a removal, deleted, or its metadata already gone).
fn recorded_done(m: Option<&Metadata>, entry: &ChangeEntry, id: &str) -> bool {
    let status = m.and_then(|m| m.status.as_deref());
    let of_run = status.filter(|s| s.changeset.as_deref() == Some(id));
    match entry.action {
        Action::Apply => of_run.is_some_and(|s| s.phase != RunPhase::Failed),
        Action::Delete => m.is_none() || of_run.is_some_and(Status::is_deleted),
    }
}

/// Notes in `metadata` which connections `changeset` (not marked concluded) still carries,
/// and with which hash. A connection whose metadata records that change set applied is done
/// (not marked); a run is over once every connection it carried is done: a successful run
/// is concluded by this derivation, a failed one by the agent's `concluded` mark. A
/// connection recorded failed stays marked until then.
pub fn mark_applying(metadata: &mut [Metadata], changeset: &ChangeSet) {
    let id = changeset.id.as_str();
    let carried: BTreeMap<&str, (&ChangeEntry, bool)> = {
        let by_name = by_connection(metadata);
        changeset
            .connections
            .iter()
            .map(|c| {
                let done = recorded_done(by_name.get(c.name.as_str()).copied(), c, id);
                (c.name.as_str(), (c, done))
            })
            .collect()
    };
    let over = carried.values().all(|(_, done)| *done);
    for m in metadata {
        let entry = carried
            .get(m.connection.as_str())
            .filter(|(c, done)| !over && !*done && c.action == Action::Apply)
            .map(|(c, _)| *c);
        m.applying_hash = entry.map(|c| c.hash.clone());
        m.applying_repair =
            entry.is_some_and(|c| matches!(c.cause, Some(Cause::Repair | Cause::Reapply)));
    }
}

/// The phase of a connection that has no metadata ConfigMap yet (no run recorded it), given
/// its entry in the change set in flight: `Applying` when `entry` applies `hash` (any hash
/// when not known), else `Pending`.
pub fn phase_if_carried(entry: Option<&ChangeEntry>, hash: Option<&str>) -> ConnectionPhase {
    if entry.is_some_and(|c| c.action == Action::Apply && hash.is_none_or(|h| c.hash == h)) {
        ConnectionPhase::Applying
    } else {
        ConnectionPhase::Pending
    }
}

/// The entries of the change set in flight by connection name: the phase of each of
/// thousands of connections without metadata ([`phase_if_carried`]) without a scan.
#[derive(Debug, Clone, Default)]
pub struct Carried<'a>(std::collections::HashMap<&'a str, &'a ChangeEntry>);

impl<'a> Carried<'a> {
    /// The index of `changeset` (none: nothing is carried).
    pub fn new(changeset: Option<&'a ChangeSet>) -> Self {
        Carried(
            changeset
                .map(|cs| {
                    cs.connections
                        .iter()
                        .map(|c| (c.name.as_str(), c))
                        .collect()
                })
                .unwrap_or_default(),
        )
    }

    /// [`phase_if_carried`] of `name`.
    pub fn phase(&self, name: &str, hash: Option<&str>) -> ConnectionPhase {
        phase_if_carried(self.0.get(name).copied(), hash)
    }
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
            drift: data
                .get(DRIFT_KEY)
                .and_then(|t| serde_json::from_str(t).ok()),
            reapply: annotations.get(REAPPLY_ANNOTATION).cloned(),
            resource_version,
            applying_hash: None,
            applying_repair: false,
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

    /// The phase a user sees, given the hash of the current request (`None` when it is not
    /// known: then the hash the change set in flight carries, else the one `requested.json`
    /// recorded; a connection no longer requested is the caller's to tell).
    pub fn phase(&self, current_hash: Option<&str>) -> ConnectionPhase {
        let requested_hash = self.requested.as_ref().map(|r| r.hash.as_str());
        let Some(hash) = current_hash
            .or(self.applying_hash.as_deref())
            .or(requested_hash)
        else {
            return ConnectionPhase::Pending;
        };
        if self
            .requested
            .as_ref()
            .is_some_and(|r| r.phase == RequestedPhase::Deleted)
            && current_hash.is_none()
        {
            return ConnectionPhase::Deleted;
        }
        if let Some(status) = &self.status {
            if status.failure_for(hash).is_some() {
                return ConnectionPhase::Failed;
            }
            if status.applied_hash.as_deref() == Some(hash) && !hash.is_empty() {
                return match self.drift.as_ref().filter(|d| d.is_active_for(hash)) {
                    None => ConnectionPhase::Ready,
                    Some(d) if d.contested.is_some() => ConnectionPhase::Failed,
                    Some(_) if self.applying_hash.as_deref() == Some(hash) => {
                        ConnectionPhase::Applying
                    }
                    Some(_) => ConnectionPhase::Drifted,
                };
            }
        }
        let legacy = self
            .requested
            .as_ref()
            .is_some_and(|r| r.hash == hash && r.phase == RequestedPhase::Applying);
        if legacy || self.applying_hash.as_deref() == Some(hash) {
            ConnectionPhase::Applying
        } else {
            ConnectionPhase::Pending
        }
    }
}

impl Metadata {
    /// The error a user sees for the connection requested with `hash`: the contest of the
    /// repairs (`drift.json`), else the failure of the last run for that hash.
    pub fn error_for(&self, hash: &str) -> Option<&RunError> {
        self.drift
            .as_ref()
            .and_then(|d| d.contested_for(hash))
            .or_else(|| self.status.as_ref().and_then(|s| s.failure_for(hash)))
    }

    /// The drift recorded for the applied `hash`, if any.
    pub fn drift_for(&self, hash: &str) -> Option<&Drift> {
        self.drift.as_deref().filter(|d| d.is_active_for(hash))
    }
}

/// The phase of a connection as users see it, derived from its metadata and the change set
/// in flight (never written as such).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Hash)]
pub enum ConnectionPhase {
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
    /// Applied, but an object it materialized was deleted, lost its label or was written by
    /// another field manager since (`drift.json`); a repair run follows unless the
    /// connection's `driftPolicy` is `Report`.
    Drifted,
}

impl ConnectionPhase {
    /// Every phase, for metrics.
    pub const ALL: [ConnectionPhase; 6] = [
        ConnectionPhase::Pending,
        ConnectionPhase::Applying,
        ConnectionPhase::Ready,
        ConnectionPhase::Failed,
        ConnectionPhase::Deleted,
        ConnectionPhase::Drifted,
    ];

    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionPhase::Pending => "Pending",
            ConnectionPhase::Applying => "Applying",
            ConnectionPhase::Ready => "Ready",
            ConnectionPhase::Failed => "Failed",
            ConnectionPhase::Deleted => "Deleted",
            ConnectionPhase::Drifted => "Drifted",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reason::RunError;

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
            ConnectionPhase::Pending
        );
        assert_eq!(
            meta(req("h1", RequestedPhase::Applying), None).phase(Some("h1")),
            ConnectionPhase::Applying
        );
        let ready = Status {
            phase: "Ready".into(),
            applied_hash: Some("h1".into()),
            hash: Some("h1".into()),
            ..Default::default()
        };
        let m = meta(req("h1", RequestedPhase::Applying), Some(ready));
        assert_eq!(m.phase(Some("h1")), ConnectionPhase::Ready);
        assert_eq!(m.phase(Some("h2")), ConnectionPhase::Pending);
        let failed = Status {
            phase: "Failed".into(),
            applied_hash: Some("h1".into()),
            hash: Some("h2".into()),
            error: Some(RunError::default()),
            ..Default::default()
        };
        let m = meta(req("h2", RequestedPhase::Applying), Some(failed));
        assert_eq!(m.phase(Some("h2")), ConnectionPhase::Failed);
        assert_eq!(m.phase(Some("h3")), ConnectionPhase::Pending);
        assert_eq!(
            meta(req("", RequestedPhase::Deleted), None).phase(None),
            ConnectionPhase::Deleted
        );
    }

    #[test]
    fn drift_of_the_applied_hash_makes_a_connection_drifted_or_contested() {
        use crate::drift::{Change, DriftedObject};
        use crate::reason::Reason;
        let ready = Status {
            phase: "Ready".into(),
            applied_hash: Some("h1".into()),
            hash: Some("h1".into()),
            ..Default::default()
        };
        let deleted = DriftedObject {
            kind: "Secret".into(),
            namespace: "default".into(),
            name: "sc-a-secret".into(),
            change: Change::Deleted,
            manager: None,
            at: None,
        };
        let mut data = BTreeMap::new();
        data.insert(
            REQUESTED_KEY.to_string(),
            r#"{"hash":"h1","revision":1,"phase":"Pending"}"#.to_string(),
        );
        data.insert(
            STATUS_KEY.to_string(),
            serde_json::to_string(&ready).unwrap(),
        );
        // A document of an earlier version (no drift.json) reads as before.
        let old = Metadata::parse("sc-conn-a", &BTreeMap::new(), &data, None);
        assert_eq!(old.drift, None);
        assert_eq!(old.phase(Some("h1")), ConnectionPhase::Ready);
        let drift = Drift {
            hash: "h1".into(),
            objects: vec![deleted],
            ..Default::default()
        };
        data.insert(
            DRIFT_KEY.to_string(),
            serde_json::to_string(&drift).unwrap(),
        );
        let mut m = Metadata::parse("sc-conn-a", &BTreeMap::new(), &data, None);
        assert_eq!(m.phase(Some("h1")), ConnectionPhase::Drifted);
        // Stale drift of another hash: the new request is pending.
        assert_eq!(m.phase(Some("h2")), ConnectionPhase::Pending);
        m.applying_hash = Some("h1".into());
        assert_eq!(m.phase(Some("h1")), ConnectionPhase::Applying);
        let contested = RunError::of(Reason::Contested, "secret default/sc-a-secret");
        m.drift.as_mut().unwrap().contested = Some(contested.clone());
        assert_eq!(m.phase(Some("h1")), ConnectionPhase::Failed);
        assert_eq!(m.error_for("h1"), Some(&contested));
        assert_eq!(m.error_for("h2"), None);
        // The reapply annotation is read.
        let annotations = BTreeMap::from([(
            REAPPLY_ANNOTATION.to_string(),
            "2026-01-01T00:00:00Z".to_string(),
        )]);
        let m = Metadata::parse("sc-conn-a", &annotations, &data, None);
        assert_eq!(m.reapply.as_deref(), Some("2026-01-01T00:00:00Z"));
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
            connections: vec![crate::ChangeEntry {
                name: "a".into(),
                hash: "h1".into(),
                action: Action::Apply,
                cause: None,
            }],
        };
        mark_applying(&mut ms, &cs);
        assert_eq!(ms[0].phase(Some("h1")), ConnectionPhase::Applying);
        // A newer request than the one carried waits for the next change set.
        assert_eq!(ms[0].phase(Some("h9")), ConnectionPhase::Pending);
        assert_eq!(ms[1].phase(Some("h2")), ConnectionPhase::Pending);
    }

    #[test]
    fn a_run_is_over_once_every_connection_records_it() {
        let recorded = |name: &str, phase: &str, changeset: &str| Metadata {
            connection: name.into(),
            status: Some(Arc::new(Status {
                phase: phase.into(),
                hash: Some("h".into()),
                applied_hash: (phase == "Ready").then(|| "h".to_string()),
                changeset: Some(changeset.into()),
                error: (phase == "Failed").then(RunError::default),
                ..Default::default()
            })),
            ..Default::default()
        };
        let apply = |name: &str| crate::ChangeEntry {
            name: name.into(),
            hash: "h".into(),
            action: Action::Apply,
            cause: None,
        };
        let cs = ChangeSet {
            id: "x".into(),
            revision: 1,
            connections: vec![
                apply("a"),
                apply("b"),
                apply("new"),
                crate::ChangeEntry {
                    name: "gone".into(),
                    hash: String::new(),
                    action: Action::Delete,
                    cause: None,
                },
            ],
        };
        // a recorded this run, b an older one, new has no metadata yet, gone's was removed.
        let mut ms = vec![recorded("a", "Ready", "x"), recorded("b", "Ready", "old")];
        mark_applying(&mut ms, &cs);
        assert_eq!(ms[0].applying_hash, None);
        assert_eq!(ms[0].phase(Some("h")), ConnectionPhase::Ready);
        assert_eq!(ms[1].applying_hash.as_deref(), Some("h"));
        let carried = Carried::new(Some(&cs));
        assert_eq!(carried.phase("new", Some("h")), ConnectionPhase::Applying);
        assert_eq!(carried.phase("new", None), ConnectionPhase::Applying);
        assert_eq!(carried.phase("new", Some("h2")), ConnectionPhase::Pending);
        assert_eq!(carried.phase("other", None), ConnectionPhase::Pending);
        // A delete entry does not make a connection Applying.
        assert_eq!(carried.phase("gone", None), ConnectionPhase::Pending);
        let entry = cs.connections.iter().find(|c| c.name == "new");
        assert_eq!(
            phase_if_carried(entry, Some("h")),
            ConnectionPhase::Applying
        );
        assert_eq!(phase_if_carried(None, None), ConnectionPhase::Pending);
        assert_eq!(
            Carried::new(None).phase("new", None),
            ConnectionPhase::Pending
        );
        // A failed connection keeps the run in flight (the agent marks it concluded).
        let mut ms = vec![
            recorded("a", "Ready", "x"),
            recorded("b", "Failed", "x"),
            recorded("new", "Ready", "x"),
        ];
        mark_applying(&mut ms, &cs);
        assert_eq!(ms[1].applying_hash.as_deref(), Some("h"));
        assert_eq!(ms[1].phase(Some("h")), ConnectionPhase::Failed);
        // Every connection done: the run is over, nothing is marked.
        let mut ms = vec![
            recorded("a", "Ready", "x"),
            recorded("b", "Ready", "x"),
            recorded("new", "Ready", "x"),
        ];
        mark_applying(&mut ms, &cs);
        assert!(ms.iter().all(|m| m.applying_hash.is_none()));
        // The hash carried in flight is the current one when the caller does not know it.
        let mut ms = vec![recorded("b", "Ready", "old")];
        let newer = ChangeSet {
            connections: vec![crate::ChangeEntry {
                hash: "h2".into(),
                ..apply("b")
            }],
            ..cs
        };
        mark_applying(&mut ms, &newer);
        assert_eq!(ms[0].phase(None), ConnectionPhase::Applying);
    }
}

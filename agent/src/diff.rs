//! The pure decisions of the reconcile loop: what each connection should look like in its
//! metadata, which changes are pending, whether to start, wait for or replace the Job, and
//! when a transient failure is retried. No I/O.

use crate::contract::{
    Action, ChangeEntry, ChangeSet, JOURNAL_LENGTH, JournalEntry, Metadata, Reason, Requested,
    RequestedPhase, Requests, RunError, RunPhase,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// What the requests want for one connection.
#[derive(Debug, Clone)]
pub struct Desired {
    /// The connection name.
    pub name: String,
    /// Its content hash (also for an invalid request).
    pub hash: String,
    /// The non-secret request, as written to `spec.json`.
    pub spec: String,
    /// The validation errors (empty when valid), as `path: message`.
    pub errors: Vec<String>,
}

/// Hashes and non-secret specs of every requested connection (the requests are consumed:
/// each connection's raw request is freed as soon as it is parsed).
pub fn desired(requests: Requests) -> Vec<Desired> {
    sc_model::check_connections_owned(requests.connections, &requests.hash_key)
        .into_iter()
        .map(|c| {
            let spec = match &c.connection {
                Some(conn) => serde_json::to_string(&conn.spec).unwrap_or_default(),
                None => c.invalid_spec.unwrap_or_default(),
            };
            // Kept for as long as the requests stay the same: no spare capacity.
            let mut spec = spec;
            spec.shrink_to_fit();
            Desired {
                name: c.name,
                hash: c.hash,
                spec,
                errors: c.errors.iter().map(ToString::to_string).collect(),
            }
        })
        .collect()
}

/// Drops the connections whose metadata ConfigMap name is taken by an earlier one (names that
/// differ only in non-alphanumeric characters or case, in different namespaces) or is not a
/// valid name (a connection name without a letter or digit); returns the kept connections and
/// the (dropped, kept) name pairs, with an empty kept name for an invalid one. A dropped
/// connection has nowhere to record a result, so no Job carries it.
pub fn without_metadata_clashes(desired: Vec<Desired>) -> (Vec<Desired>, Vec<(String, String)>) {
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    let mut kept = Vec::with_capacity(desired.len());
    let mut clashes = Vec::new();
    for d in desired {
        let cm = crate::contract::metadata_name(&d.name);
        if cm.len() == crate::contract::METADATA_PREFIX.len()
            || !sc_model::names::is_dns_subdomain(&cm)
        {
            clashes.push((d.name.clone(), String::new()));
            continue;
        }
        match owners.get(&cm) {
            Some(owner) => clashes.push((d.name.clone(), owner.clone())),
            None => {
                owners.insert(cm, d.name.clone());
                kept.push(d);
            }
        }
    }
    (kept, clashes)
}

/// The `spec.json` and `requested.json` texts the agent writes for a connection. The revision
/// in `requested.json` is the one at which its hash was first requested (`existing` is what
/// the metadata holds), so a Helm revision that leaves a connection alone rewrites nothing.
pub fn metadata_texts(
    d: &Desired,
    revision: i64,
    existing: Option<&Requested>,
) -> (String, String) {
    let revision = match existing {
        Some(r) if r.hash == d.hash && r.phase != RequestedPhase::Deleted => r.revision,
        _ => revision,
    };
    let requested = Requested {
        hash: d.hash.clone(),
        revision,
        phase: RequestedPhase::Pending,
    };
    (
        d.spec.clone(),
        serde_json::to_string(&requested).unwrap_or_default(),
    )
}

/// The `requested.json` of a connection removed from the requests.
pub fn deleted_text(revision: i64) -> String {
    serde_json::to_string(&Requested {
        hash: String::new(),
        revision,
        phase: RequestedPhase::Deleted,
    })
    .unwrap_or_default()
}

/// Whether a failure recorded for `hash` settles the connection: a permanent failure is not
/// retried until the input changes or a new Helm revision asks again (the documented flow: fix
/// the cause, e.g. delete a foreign Secret, and run the same `helm upgrade` again). A failure
/// recorded without a revision counts as current.
fn settled_by_failure(m: &Metadata, hash: &str, revision: i64) -> bool {
    m.status.as_ref().is_some_and(|s| {
        s.failure_for(hash).is_some_and(RunError::is_permanent)
            && s.revision.is_none_or(|r| r >= revision)
    })
}

/// The changes the next change set must carry: connections whose applied hash differs from
/// the requested one (unless a permanent failure is recorded for that hash at the requests'
/// `revision` or later), and removed connections whose metadata still exists. Sorted by name.
pub fn pending_changes(
    desired: &[Desired],
    metadata: &[Metadata],
    revision: i64,
) -> Vec<ChangeEntry> {
    let by_name: BTreeMap<&str, &Metadata> = metadata
        .iter()
        .map(|m| (m.connection.as_str(), m))
        .collect();
    let mut out = Vec::new();
    for d in desired {
        let m = by_name.get(d.name.as_str());
        let applied = m.and_then(|m| m.status.as_ref()).is_some_and(|s| {
            s.applied_hash.as_deref() == Some(&d.hash) && s.failure_for(&d.hash).is_none()
        });
        if applied || m.is_some_and(|m| settled_by_failure(m, &d.hash, revision)) {
            continue;
        }
        out.push(ChangeEntry {
            name: d.name.clone(),
            hash: d.hash.clone(),
            action: Action::Apply,
        });
    }
    let wanted: std::collections::BTreeSet<&str> =
        desired.iter().map(|d| d.name.as_str()).collect();
    for m in metadata {
        if m.connection.is_empty() || wanted.contains(m.connection.as_str()) {
            continue;
        }
        if settled_by_failure(m, "", revision) || m.status.as_ref().is_some_and(|s| s.is_deleted())
        {
            continue;
        }
        out.push(ChangeEntry {
            name: m.connection.clone(),
            hash: String::new(),
            action: Action::Delete,
        });
    }
    out.sort();
    out
}

/// What the Job `sc-job` is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// No Job.
    Absent,
    /// Running (or pending), carrying the change set with this id.
    Active {
        /// The change set id.
        changeset: String,
    },
    /// Finished successfully but still present.
    Complete {
        /// The change set id.
        changeset: String,
    },
    /// Failed; kept for debugging until the next attempt.
    Failed {
        /// The change set id.
        changeset: String,
        /// Seconds since the Unix epoch when it failed.
        failed_at: i64,
        /// The Job's failure reason and message.
        message: String,
    },
}

/// The next step of the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do.
    Idle,
    /// A Job runs: wait for it.
    WaitForJob,
    /// Delete the Complete Job.
    DeleteCompleteJob,
    /// A retry of a failed run is due at this time (seconds since the epoch).
    RetryAt(i64),
    /// Record the failed Job in the journal, delete it, then start a new run.
    ReplaceFailedJob,
    /// Write the change set and create the Job.
    Start,
}

/// Exponential backoff of transient failures: `base * 2^(failures - 1)`, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(10),
            max: Duration::from_secs(600),
        }
    }
}

impl Backoff {
    /// The delay after `failures` consecutive failures (at least 1).
    pub fn delay(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(20);
        self.base.saturating_mul(1 << exp).min(self.max)
    }
}

/// Whether every pending change was already in the failed change set of the current Helm
/// `revision`: then a new run is a retry (subject to backoff), not a new request. A change set
/// of an older revision is replaced at once: the new revision asks again.
pub fn is_retry(pending: &[ChangeEntry], last: Option<&ChangeSet>, revision: i64) -> bool {
    let Some(last) = last else { return false };
    last.revision >= revision
        && !pending.is_empty()
        && pending
            .iter()
            .all(|p| last.connections.iter().any(|c| c == p))
}

/// Decides the next step from the Job, the pending changes, the last change set, the count of
/// consecutive failures and the current time (seconds since the epoch).
pub fn decide(
    job: &JobState,
    pending: &[ChangeEntry],
    last: Option<&ChangeSet>,
    revision: i64,
    failures: u32,
    backoff: &Backoff,
    now: i64,
) -> Decision {
    match job {
        JobState::Active { .. } => Decision::WaitForJob,
        JobState::Complete { .. } => Decision::DeleteCompleteJob,
        JobState::Failed { failed_at, .. } => {
            if pending.is_empty() {
                return Decision::Idle;
            }
            if is_retry(pending, last, revision) {
                let due = failed_at + backoff.delay(failures.max(1)).as_secs() as i64;
                if now < due {
                    return Decision::RetryAt(due);
                }
            }
            Decision::ReplaceFailedJob
        }
        JobState::Absent => {
            if pending.is_empty() {
                Decision::Idle
            } else {
                Decision::Start
            }
        }
    }
}

/// The journal with the failure of a Job added to it, unless the run is already recorded
/// (by sc-job or by an earlier attempt). `None` when nothing changes.
pub fn journal_with_failure(
    journal: &[JournalEntry],
    job: &str,
    changeset: &str,
    time: &str,
    message: &str,
) -> Option<Vec<JournalEntry>> {
    if journal.iter().any(|e| e.changeset == changeset) {
        return None;
    }
    let mut out = journal.to_vec();
    out.push(JournalEntry {
        time: time.to_string(),
        job: job.to_string(),
        changeset: changeset.to_string(),
        revision: None,
        action: None,
        hash: None,
        extra: Default::default(),
        result: RunPhase::Failed,
        steps: Vec::new(),
        error: Some(RunError {
            reason: Reason::JobFailed,
            message: message.to_string(),
            remedy: format!(
                "see `kubectl logs job/{} -n <namespace>`; the agent retries transient failures",
                crate::contract::JOB_NAME
            ),
        }),
    });
    let excess = out.len().saturating_sub(JOURNAL_LENGTH);
    out.drain(..excess);
    Some(out)
}

/// The connections of a change set whose run failed, with their recorded errors.
pub fn failed_connections<'a>(
    changeset: &ChangeSet,
    metadata: &'a [Metadata],
) -> Vec<(String, Option<&'a RunError>)> {
    let by_name: BTreeMap<&str, &Metadata> = metadata
        .iter()
        .map(|m| (m.connection.as_str(), m))
        .collect();
    changeset
        .connections
        .iter()
        .filter_map(|c| {
            let m = by_name.get(c.name.as_str()).copied();
            let status = m.and_then(|m| m.status.as_ref());
            let done = match c.action {
                // sc-job may have applied a newer request than the change set named.
                Action::Apply => status.is_some_and(|s| {
                    s.failure_for(&c.hash).is_none()
                        && (s.applied_hash.as_deref() == Some(&c.hash)
                            || (s.phase == "Ready" && s.hash.as_deref() == Some(&c.hash)))
                }),
                Action::Delete => m.is_none() || status.is_some_and(|s| s.is_deleted()),
            };
            (!done).then(|| (c.name.clone(), status.and_then(|s| s.failure_for(&c.hash))))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Status;
    use serde_json::json;

    fn entry(name: &str, hash: &str, action: Action) -> ChangeEntry {
        ChangeEntry {
            name: name.into(),
            hash: hash.into(),
            action,
        }
    }

    fn meta(name: &str, status: Option<Status>) -> Metadata {
        Metadata {
            connection: name.into(),
            configmap: crate::contract::metadata_name(name),
            status: status.map(std::sync::Arc::new),
            ..Default::default()
        }
    }

    fn applied(hash: &str) -> Option<Status> {
        Some(Status {
            phase: "Ready".into(),
            applied_hash: Some(hash.into()),
            hash: Some(hash.into()),
            ..Default::default()
        })
    }

    fn failed(hash: &str, reason: &str) -> Option<Status> {
        Some(Status {
            phase: "Failed".into(),
            applied_hash: None,
            hash: Some(hash.into()),
            error: Some(RunError {
                reason: reason.into(),
                message: "m".into(),
                remedy: "r".into(),
            }),
            ..Default::default()
        })
    }

    fn want(name: &str, hash: &str) -> Desired {
        Desired {
            name: name.into(),
            hash: hash.into(),
            spec: "{}".to_string(),
            errors: vec![],
        }
    }

    #[test]
    fn desired_hashes_invalid_requests_and_hides_secrets() {
        let requests = Requests {
            hash_key: "k".into(),
            revision: 2,
            connections: json!({
                "ok": {"targetType": "storage-blob", "authType": "secret",
                       "parameters": {"accountName": "a"}, "secrets": {"accountKey": "s3cr3t"}},
                "bad": {"targetType": "nope", "secrets": {"x": "s3cr3t"}},
            }),
        };
        let d = desired(requests);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "bad");
        assert!(!d[0].errors.is_empty());
        assert!(d[0].spec.contains(r#""name":"bad""#), "{}", d[0].spec);
        assert!(d[1].errors.is_empty());
        for x in &d {
            assert_eq!(x.hash.len(), 64);
            assert!(!x.spec.contains("s3cr3t"), "{}", x.spec);
        }
        let (spec, requested) = metadata_texts(&d[1], 2, None);
        assert!(spec.contains("storage-blob"));
        assert!(requested.contains("\"Pending\""));
        assert!(requested.contains("\"revision\":2"));
        // A later revision that leaves the connection alone keeps the text, so nothing is
        // written; a new hash takes the new revision.
        let r: Requested = serde_json::from_str(&requested).unwrap();
        assert_eq!(metadata_texts(&d[1], 7, Some(&r)).1, requested);
        let other = Requested {
            hash: "old".into(),
            ..r.clone()
        };
        assert!(
            metadata_texts(&d[1], 7, Some(&other))
                .1
                .contains("\"revision\":7")
        );
        let deleted = Requested {
            phase: RequestedPhase::Deleted,
            ..r
        };
        assert!(
            metadata_texts(&d[1], 7, Some(&deleted))
                .1
                .contains("\"revision\":7")
        );
    }

    #[test]
    fn clashing_metadata_names_keep_the_first_connection() {
        let (kept, clashes) = without_metadata_clashes(vec![
            want("Blob-1", "a"),
            want("blob_1", "b"),
            want("c", "c"),
        ]);
        let names: Vec<&str> = kept.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, vec!["Blob-1", "c"]);
        assert_eq!(clashes, vec![("blob_1".to_string(), "Blob-1".to_string())]);
    }

    #[test]
    fn a_name_without_a_metadata_name_is_dropped() {
        let (kept, clashes) = without_metadata_clashes(vec![want("___", "a"), want("c", "c")]);
        let names: Vec<&str> = kept.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, vec!["c"]);
        assert_eq!(clashes, vec![("___".to_string(), String::new())]);
    }

    #[test]
    fn pending_skips_applied_and_permanently_failed_and_deletes_removed() {
        let desired = vec![
            want("a", "h1"),
            want("b", "h2"),
            want("c", "h3"),
            want("d", "h4"),
            want("e", "h5"),
        ];
        let metadata = vec![
            meta("a", applied("h1")),
            meta("b", applied("old")),
            meta("c", failed("h3", "InvalidRequest")),
            meta("d", failed("h4", "ApiError")),
            meta("gone", applied("h9")),
            meta(
                "removed",
                Some(Status {
                    phase: "Deleted".into(),
                    ..Default::default()
                }),
            ),
        ];
        let p = pending_changes(&desired, &metadata, 1);
        assert_eq!(
            p,
            vec![
                entry("b", "h2", Action::Apply),
                entry("d", "h4", Action::Apply),
                entry("e", "h5", Action::Apply),
                entry("gone", "", Action::Delete),
            ]
        );
        // A permanent failure for an older hash does not settle a new request.
        let p = pending_changes(
            &[want("c", "h3b")],
            &[meta("c", failed("h3", "InvalidRequest"))],
            1,
        );
        assert_eq!(p, vec![entry("c", "h3b", Action::Apply)]);
        // A permanent failure of an older revision does not settle a new revision that asks
        // again with the same content (the cause was fixed outside the request); one of this
        // revision does.
        let at = |revision| {
            let mut s = failed("h3", "NotManaged").unwrap();
            s.revision = Some(revision);
            meta("c", Some(s))
        };
        assert_eq!(
            pending_changes(&[want("c", "h3")], &[at(2)], 3),
            vec![entry("c", "h3", Action::Apply)]
        );
        assert!(pending_changes(&[want("c", "h3")], &[at(3)], 3).is_empty());
    }

    #[test]
    fn decisions_serialize_jobs_and_back_off_retries() {
        let b = Backoff::default();
        let p = vec![entry("a", "h1", Action::Apply)];
        let last = ChangeSet {
            id: "x".into(),
            revision: 1,
            connections: p.clone(),
        };
        let active = JobState::Active {
            changeset: "x".into(),
        };
        assert_eq!(
            decide(&active, &p, Some(&last), 1, 0, &b, 0),
            Decision::WaitForJob
        );
        let complete = JobState::Complete {
            changeset: "x".into(),
        };
        assert_eq!(
            decide(&complete, &[], None, 1, 0, &b, 0),
            Decision::DeleteCompleteJob
        );
        assert_eq!(
            decide(&JobState::Absent, &[], None, 1, 0, &b, 0),
            Decision::Idle
        );
        assert_eq!(
            decide(&JobState::Absent, &p, None, 1, 0, &b, 0),
            Decision::Start
        );
        let failed = JobState::Failed {
            changeset: "x".into(),
            failed_at: 1000,
            message: "BackoffLimitExceeded".into(),
        };
        // Same changes: a retry, after the backoff.
        assert_eq!(
            decide(&failed, &p, Some(&last), 1, 1, &b, 1001),
            Decision::RetryAt(1010)
        );
        assert_eq!(
            decide(&failed, &p, Some(&last), 1, 3, &b, 1001),
            Decision::RetryAt(1040)
        );
        assert_eq!(
            decide(&failed, &p, Some(&last), 1, 1, &b, 1010),
            Decision::ReplaceFailedJob
        );
        // A new request replaces the failed Job at once.
        let newer = vec![entry("a", "h2", Action::Apply)];
        assert_eq!(
            decide(&failed, &newer, Some(&last), 1, 5, &b, 1001),
            Decision::ReplaceFailedJob
        );
        // Nothing pending (e.g. only a permanent failure): the failed Job stays.
        assert_eq!(
            decide(&failed, &[], Some(&last), 1, 1, &b, 5000),
            Decision::Idle
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let b = Backoff {
            base: Duration::from_secs(5),
            max: Duration::from_secs(60),
        };
        let delays: Vec<u64> = (1..=6).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(delays, vec![5, 10, 20, 40, 60, 60]);
        assert_eq!(b.delay(0).as_secs(), 5);
        assert_eq!(b.delay(u32::MAX).as_secs(), 60);
    }

    #[test]
    fn a_subset_of_the_failed_changes_is_a_retry() {
        let last = ChangeSet {
            id: "x".into(),
            revision: 1,
            connections: vec![
                entry("a", "1", Action::Apply),
                entry("b", "2", Action::Apply),
            ],
        };
        assert!(is_retry(&[entry("b", "2", Action::Apply)], Some(&last), 1));
        assert!(!is_retry(&[entry("b", "3", Action::Apply)], Some(&last), 1));
        assert!(!is_retry(&[], Some(&last), 1));
        assert!(!is_retry(&[entry("b", "2", Action::Apply)], None, 1));
        // A new Helm revision asks again: not a retry, even with the same changes.
        assert!(!is_retry(&[entry("b", "2", Action::Apply)], Some(&last), 2));
    }

    #[test]
    fn journal_records_a_failed_job_once_and_keeps_ten_runs() {
        let mut journal = Vec::new();
        for i in 0..10 {
            let e: JournalEntry = serde_json::from_value(json!({
                "time": format!("t{i}"), "job": "sc-system/sc-job", "changeset": format!("c{i}"),
                "result": "Succeeded", "steps": [], "error": null, "hash": format!("h{i}"),
            }))
            .unwrap();
            journal.push(e);
        }
        assert!(journal_with_failure(&journal, "sc-system/sc-job", "c3", "t", "m").is_none());
        let j = journal_with_failure(&journal, "sc-system/sc-job", "new", "t", "DeadlineExceeded")
            .unwrap();
        assert_eq!(j.len(), JOURNAL_LENGTH);
        assert_eq!(j[0].changeset, "c1");
        // Fields the agent does not know survive.
        assert_eq!(serde_json::to_value(&j[0]).unwrap()["hash"], "h1");
        let last = j.last().unwrap();
        assert_eq!(last.changeset, "new");
        assert_eq!(last.result, "Failed");
        assert_eq!(last.error.as_ref().unwrap().message, "DeadlineExceeded");
    }

    #[test]
    fn failed_connections_name_what_did_not_apply() {
        let cs = ChangeSet {
            id: "x".into(),
            revision: 1,
            connections: vec![
                entry("a", "1", Action::Apply),
                entry("b", "2", Action::Apply),
                entry("c", "", Action::Delete),
                entry("d", "4", Action::Apply),
            ],
        };
        let newer = Status {
            phase: "Ready".into(),
            applied_hash: Some("5".into()),
            hash: Some("4".into()),
            ..Default::default()
        };
        let metadata = vec![
            meta("a", applied("1")),
            meta("b", failed("2", "InvalidRequest")),
            meta("c", applied("3")),
            meta("d", Some(newer)),
        ];
        let f = failed_connections(&cs, &metadata);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].0, "b");
        assert_eq!(f[0].1.unwrap().reason, "InvalidRequest");
        assert_eq!(f[1].0, "c");
    }
}

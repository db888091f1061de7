//! The plan stage: from one [`Observed`] value, everything the step is to write. Pure: no
//! API call, no clock (the time is observed), so every decision is tested from small
//! fixtures. It holds the rules too: which changes are pending, whether to start, wait for or
//! replace the Job, and when a transient failure is retried. The agent writes no metadata of
//! a connection before its run: sc-job records what was requested with the result.

use super::desired::{Desired, NameClash};
use super::observe::Observed;
use crate::contract::{
    Action, CHANGESET_ID_ANNOTATION, Cause, ChangeEntry, ChangeSet, ConnectionPhase, JOB_NAME,
    JOURNAL_LENGTH, JournalEntry, Metadata, Reason, RunError, RunPhase,
};
use k8s_openapi::api::batch::v1::Job;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// What the agent remembers from one step to the next (besides the API, the source of
/// truth): lost on a restart, at the cost of a shorter backoff and a repeated warning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    /// Consecutive failed runs, for the backoff.
    pub failures: u32,
    /// The name clashes last reported: reported again only when they change.
    pub reported_clashes: Vec<NameClash>,
    /// The change set whose success was last reported (a success is not marked on the
    /// change set: it is derived from the metadata).
    pub reported_success: Option<String>,
}

/// Everything one step is to write, in the order the act stage writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Notes of the `NameClash` Warning events (empty unless the clashes changed).
    pub clash_notes: Vec<String>,
    /// The outcome of the last run, when it is to be reported now.
    pub conclusion: Option<Conclusion>,
    /// The metadata ConfigMaps to delete.
    pub metadata: MetadataPlan,
    /// The drift of materialized objects: `drift.json` writes and Warning events.
    pub drift: super::drift::DriftPlan,
    /// Requested and removed connections by phase (the connections gauge).
    pub phases: BTreeMap<ConnectionPhase, i64>,
    /// The changes the next change set must carry.
    pub pending: Vec<ChangeEntry>,
    /// The decision about the Job.
    pub decision: Decision,
    /// What the decision asks of the act stage.
    pub job: JobAction,
    /// The memory after this step.
    pub memory: Memory,
}

/// The outcome of a run, reported once: a log line and a metric; a failure also by a Warning
/// event on the requests and the change set marked concluded (so a restarted agent does not
/// report it again). A success is derived (the Job deleted itself and every connection it
/// carried records the change set): nothing is written for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conclusion {
    /// The change set id.
    pub changeset: String,
    /// `None` when the run applied its whole change set, else the Job's failure.
    pub failure: Option<String>,
    /// The note of the event.
    pub note: String,
    /// The Job is gone and these repairs or reapplies of its change set have no record of its
    /// run (the Job deleted, or never created): the act stage reads them again, live, before it
    /// reports the failure (the metadata watch may lag behind sc-job's last records, the
    /// jobs watch behind the Job's creation).
    pub unrecorded: Vec<ChangeEntry>,
}

/// The metadata ConfigMaps a step deletes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataPlan {
    /// Metadata ConfigMaps of connections sc-job has removed.
    pub deletes: Vec<MetadataDelete>,
}

/// One metadata ConfigMap to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataDelete {
    /// The removed connection.
    pub connection: String,
    /// Its metadata ConfigMap.
    pub configmap: String,
}

/// A failed run to record in the journal of each connection its change set carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRun {
    /// The change set of the run.
    pub changeset: ChangeSet,
    /// The Job's failure reason and message.
    pub message: String,
}

/// What the act stage does about Job `sc-job`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobAction {
    /// Nothing.
    Nothing,
    /// Nothing now; look again at this time (seconds since the epoch).
    WakeAt(i64),
    /// Delete the Complete Job.
    DeleteComplete,
    /// Record the failed run, then delete its Job: its change set left nothing undone.
    DeleteSettledFailed(FailedRun),
    /// Record the failed run (when its change set is the last one), then delete its Job so
    /// that the next step starts the next run.
    ReplaceFailed(Option<FailedRun>),
    /// Check live that the changes are still pending, write the change set and create the Job.
    Start {
        /// The pending changes, as the watch cache shows them.
        candidates: Vec<ChangeEntry>,
    },
}

/// The requests lack a shard (or one is of another revision): how long, and whether a
/// Warning event said so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incomplete {
    /// Since when (seconds since the epoch).
    pub since: i64,
    /// What is missing.
    pub why: String,
    /// Whether a Warning event reported it.
    pub reported: bool,
}

/// How long incomplete requests are waited out before a Warning event says so (seconds).
pub const INCOMPLETE_REPORT_AFTER: i64 = 60;

/// Incomplete requests are looked at again after this many seconds (the protected shards
/// are not watched).
pub const INCOMPLETE_RECHECK: i64 = 2;

/// The requests are incomplete (`why`) at `now`: the new state, and the note of the Warning
/// event when it is due (once, past [`INCOMPLETE_REPORT_AFTER`]).
pub fn incomplete(
    previous: Option<&Incomplete>,
    why: String,
    now: i64,
) -> (Incomplete, Option<String>) {
    let since = previous.map_or(now, |p| p.since);
    let reported = previous.is_some_and(|p| p.reported);
    let report = !reported && now - since >= INCOMPLETE_REPORT_AFTER;
    let note = report.then(|| {
        format!(
            "the requests are incomplete: {why}; upgrade the release so the chart writes every shard again"
        )
    });
    (
        Incomplete {
            since,
            why,
            reported: reported || report,
        },
        note,
    )
}

/// Plans one step from what was observed and what the agent remembers.
pub fn plan(observed: &Observed, memory: &Memory, backoff: &Backoff) -> Plan {
    let Observed {
        revision,
        now,
        job: state,
        ..
    } = observed;
    let (revision, now) = (*revision, *now);
    let desired = observed.desired.as_slice();
    let metadata = observed.metadata.as_slice();
    let clash_notes = if observed.clashes == memory.reported_clashes {
        Vec::new()
    } else {
        observed.clashes.iter().map(clash_note).collect()
    };
    let last = observed.last_run.as_ref().map(|r| &r.changeset);
    let mut failures = memory.failures;
    let conclusion = conclusion(observed, memory.reported_success.as_deref());
    let mut reported_success = memory.reported_success.clone();
    match &conclusion {
        Some(c) if c.failure.is_none() => {
            failures = 0;
            reported_success = Some(c.changeset.clone());
        }
        Some(_) => failures = failures.saturating_add(1),
        None => {}
    }
    let metadata_plan = metadata_plan(desired, metadata);
    let drift = super::drift::plan_drift_read(
        desired,
        metadata,
        &observed.live,
        &observed.read,
        now,
        observed.drift_limits,
    );
    // The pending changes see the drift as this step writes it.
    let with_drift: Vec<Metadata>;
    let metadata = if drift.writes.is_empty() {
        metadata
    } else {
        let new: BTreeMap<&str, &Option<crate::contract::Drift>> = drift
            .writes
            .iter()
            .map(|w| (w.connection.as_str(), &w.drift))
            .collect();
        with_drift = metadata
            .iter()
            .map(|m| {
                let mut m = m.clone();
                if let Some(d) = new.get(m.connection.as_str()) {
                    m.drift = (*d).clone().map(Box::new);
                }
                m
            })
            .collect();
        with_drift.as_slice()
    };
    let pending = pending_changes(desired, metadata, revision);
    let decision = decide(state, &pending, last, revision, failures, backoff, now);
    if matches!(decision, Decision::Start | Decision::ReplaceFailedJob)
        && !is_retry(&pending, last, revision)
    {
        // A new request starts a fresh backoff.
        failures = 0;
    }
    // The failed run of the last change set, to record in the journals before its Job goes.
    let failed_run = match (state, last) {
        (
            JobState::Failed {
                changeset, message, ..
            },
            Some(cs),
        ) if *changeset == cs.id => Some(FailedRun {
            changeset: cs.clone(),
            message: message.clone(),
        }),
        _ => None,
    };
    let job = match decision {
        // A failed Job whose change set left nothing undone (sc-job killed after recording
        // every connection, before deleting its Job) explains nothing any more: the journal
        // and the JobFailed event keep the failure, and the Job goes.
        Decision::Idle => match failed_run {
            Some(run) if settled(&run.changeset, metadata) => JobAction::DeleteSettledFailed(run),
            _ => JobAction::Nothing,
        },
        Decision::WaitForJob => JobAction::Nothing,
        Decision::RetryAt(t) => JobAction::WakeAt(t),
        Decision::DeleteCompleteJob => JobAction::DeleteComplete,
        Decision::ReplaceFailedJob => JobAction::ReplaceFailed(failed_run),
        Decision::Start => JobAction::Start {
            candidates: pending.clone(),
        },
    };
    Plan {
        clash_notes,
        conclusion,
        metadata: metadata_plan,
        drift,
        phases: phase_counts(desired, metadata, in_flight(observed)),
        pending,
        decision,
        job,
        memory: Memory {
            failures,
            reported_clashes: observed.clashes.clone(),
            reported_success,
        },
    }
}

/// The note of the Warning event about an ignored connection.
fn clash_note(clash: &NameClash) -> String {
    let dropped = &clash.dropped;
    match &clash.taken_by {
        None => format!(
            "connection {dropped:?} has no letter or digit, so no metadata ConfigMap can record it: it is ignored; rename it (letters, digits and '_')"
        ),
        Some(kept) => format!(
            "connections {kept} and {dropped} map to the same metadata ConfigMap {}: {dropped} is ignored; rename one of them",
            crate::contract::metadata_name(dropped)
        ),
    }
}

/// The candidates of a new change set whose metadata is read again, live, before it is
/// written: those the last run carried (only a run records a connection's result, so only
/// they can have a record the metadata watch does not show yet), and the repairs and
/// reapplies (the agent marks a repair in `drift.json` in the same step, the operator a
/// reapply: the watch may not show either yet).
pub fn to_recheck(
    candidates: &[ChangeEntry],
    last_run: Option<&super::observe::LastRun>,
) -> Vec<ChangeEntry> {
    let carried: BTreeSet<&str> = last_run
        .iter()
        .flat_map(|r| r.changeset.connections.iter().map(|c| c.name.as_str()))
        .collect();
    candidates
        .iter()
        .filter(|c| c.cause.is_some() || carried.contains(c.name.as_str()))
        .cloned()
        .collect()
}

/// The change set in flight: the last one, not marked concluded.
fn in_flight(observed: &Observed) -> Option<&ChangeSet> {
    observed
        .last_run
        .as_ref()
        .filter(|r| !r.concluded)
        .map(|r| &r.changeset)
}

/// The outcome of the last run when it is known and not reported yet (a success is reported
/// once per agent: `reported_success`): the Job failed or completed, or is gone (with every
/// change applied, or some not recorded: then the act stage checks, live, that it is really
/// gone and they really are not recorded).
fn conclusion(observed: &Observed, reported_success: Option<&str>) -> Option<Conclusion> {
    let run = observed.last_run.as_ref().filter(|r| !r.concluded)?;
    let cs = &run.changeset;
    let failed = failed_connections(cs, &observed.metadata);
    // Of a Job gone, the repairs and reapplies without a record: nothing else would run them
    // again (a request change left undone stays pending and the next change set redoes it).
    let unrecorded: Vec<ChangeEntry> = match &observed.job {
        JobState::Absent => cs
            .connections
            .iter()
            .filter(|c| {
                matches!(c.cause, Some(Cause::Repair | Cause::Reapply))
                    && failed.iter().any(|f| f.name == c.name && f.error.is_none())
            })
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    let failure = match &observed.job {
        JobState::Failed {
            changeset, message, ..
        } if *changeset == cs.id => Some(message.clone()),
        JobState::Complete { changeset } if *changeset == cs.id => None,
        JobState::Absent if failed.is_empty() => None,
        JobState::Absent if !unrecorded.is_empty() => Some(format!(
            "Job {JOB_NAME} is gone without a record of its run (deleted, or never created)"
        )),
        _ => return None,
    };
    if failure.is_none() && reported_success == Some(cs.id.as_str()) {
        return None;
    }
    let note = match &failure {
        None => {
            let names: Vec<&str> = cs.connections.iter().map(|c| c.name.as_str()).collect();
            format!("change set {} applied: {}", cs.id, names.join(", "))
        }
        Some(message) => {
            let parts: Vec<String> = failed
                .iter()
                .map(|f| match f.error {
                    Some(e) => format!("{} ({}: {})", f.name, e.reason, e.message),
                    None => f.name.clone(),
                })
                .collect();
            format!(
                "change set {} failed ({message}); failed connections: {}; see `kubectl logs job/{JOB_NAME} -n {}`",
                cs.id,
                if parts.is_empty() {
                    "none recorded".to_string()
                } else {
                    parts.join("; ")
                },
                observed.namespace
            )
        }
    };
    Some(Conclusion {
        changeset: cs.id.clone(),
        failure,
        note,
        unrecorded,
    })
}

/// The metadata of connections sc-job removed, to delete. The agent writes no other metadata
/// of a connection: sc-job records what was requested with each result.
pub fn metadata_plan(desired: &[Desired], metadata: &[Metadata]) -> MetadataPlan {
    let mut out = MetadataPlan::default();
    let wanted: BTreeSet<&str> = desired.iter().map(|d| d.name.as_str()).collect();
    for m in metadata {
        if m.connection.is_empty() || wanted.contains(m.connection.as_str()) {
            continue;
        }
        if m.status.as_ref().is_some_and(|s| s.is_deleted()) {
            // sc-job has removed the connection: its metadata goes too.
            out.deletes.push(MetadataDelete {
                connection: m.connection.clone(),
                configmap: m.configmap.clone(),
            });
        }
    }
    out
}

/// Requested and removed connections by phase; a requested connection without metadata is
/// Applying while the change set in flight (`in_flight`) carries it, else Pending.
pub fn phase_counts(
    desired: &[Desired],
    metadata: &[Metadata],
    in_flight: Option<&ChangeSet>,
) -> BTreeMap<ConnectionPhase, i64> {
    let mut counts: BTreeMap<ConnectionPhase, i64> = BTreeMap::new();
    let by_name: BTreeMap<&str, &Metadata> = metadata
        .iter()
        .map(|m| (m.connection.as_str(), m))
        .collect();
    let carried = crate::contract::Carried::new(in_flight);
    for d in desired {
        let phase = by_name
            .get(d.name.as_str())
            .map(|m| m.phase(Some(&d.hash)))
            .unwrap_or_else(|| carried.phase(&d.name, Some(&d.hash)));
        *counts.entry(phase).or_default() += 1;
    }
    let wanted: BTreeSet<&str> = desired.iter().map(|d| d.name.as_str()).collect();
    for m in metadata {
        if !wanted.contains(m.connection.as_str()) {
            *counts.entry(ConnectionPhase::Deleted).or_default() += 1;
        }
    }
    counts
}

/// A summary of a change set for the log, with the applied and the deleted connections.
pub fn changeset_note(cs: &ChangeSet) -> (String, String, String) {
    let describe = |action: Action| {
        cs.connections
            .iter()
            .filter(|c| c.action == action)
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut note = format!("change set {} (revision {})", cs.id, cs.revision);
    let (apply, delete) = (describe(Action::Apply), describe(Action::Delete));
    if !apply.is_empty() {
        note.push_str(&format!(": apply {apply}"));
    }
    if !delete.is_empty() {
        note.push_str(&format!("; delete {delete}"));
    }
    (note, apply, delete)
}

/// The state of Job `sc-job`; a failed Job without a transition time failed `now`.
pub fn job_state(job: Option<&Job>, now: i64) -> JobState {
    let Some(job) = job else {
        return JobState::Absent;
    };
    let changeset = job
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CHANGESET_ID_ANNOTATION))
        .cloned()
        .unwrap_or_default();
    if job.metadata.deletion_timestamp.is_some() {
        // Being deleted: wait until it is gone.
        return JobState::Active { changeset };
    }
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    for c in conditions {
        if c.status != "True" {
            continue;
        }
        if c.type_ == "Complete" {
            return JobState::Complete { changeset };
        }
        if c.type_ == "Failed" {
            let failed_at = c
                .last_transition_time
                .as_ref()
                .map_or(now, |t| t.0.as_second());
            let message = [c.reason.as_deref(), c.message.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ");
            return JobState::Failed {
                changeset,
                failed_at,
                message,
            };
        }
    }
    JobState::Active { changeset }
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
/// `revision` or later), applied connections an operator asked to run again (`reapply`) or
/// whose drift waits for a repair, and removed connections whose metadata still exists.
/// Sorted by name.
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
        if m.is_some_and(|m| m.reapply.is_some()) {
            // An operator's request runs whatever the state.
            out.push(ChangeEntry {
                name: d.name.clone(),
                hash: d.hash.clone(),
                action: Action::Apply,
                cause: Some(Cause::Reapply),
            });
            continue;
        }
        if applied {
            if m.is_some_and(|m| super::drift::awaits_repair(m, &d.hash)) {
                out.push(ChangeEntry {
                    name: d.name.clone(),
                    hash: d.hash.clone(),
                    action: Action::Apply,
                    cause: Some(Cause::Repair),
                });
            }
            continue;
        }
        if m.is_some_and(|m| settled_by_failure(m, &d.hash, revision)) {
            continue;
        }
        out.push(ChangeEntry {
            name: d.name.clone(),
            hash: d.hash.clone(),
            action: Action::Apply,
            cause: None,
        });
    }
    let wanted: BTreeSet<&str> = desired.iter().map(|d| d.name.as_str()).collect();
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
            cause: None,
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
        extra: Default::default(),
        revision: None,
        action: None,
        hash: None,
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

/// A connection of a change set whose run did not apply it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedConnection<'a> {
    /// The connection name.
    pub name: String,
    /// The error sc-job recorded for the hash the change set carried, if any.
    pub error: Option<&'a RunError>,
}

/// Whether a failed Job's change set left nothing for a request change to redo: every
/// connection it carried is applied at its hash (or deleted), whether or not this run recorded
/// it. A repair or reapply it carried, unrecorded, counts as settled here: the failed run is
/// journaled when the Job goes, and that journal entry runs the repair again.
fn settled(changeset: &ChangeSet, metadata: &[Metadata]) -> bool {
    undone(changeset, metadata, false).is_empty()
}

/// The connections of a change set whose run failed, with their recorded errors.
pub fn failed_connections<'a>(
    changeset: &ChangeSet,
    metadata: &'a [Metadata],
) -> Vec<FailedConnection<'a>> {
    undone(changeset, metadata, true)
}

/// The connections of `changeset` not applied (or deleted) as it asked, with their recorded
/// errors. With `of_this_run`, a repair or a reapply counts as done only by the record of this
/// change set's run; without, as any other apply (its hash applied).
fn undone<'a>(
    changeset: &ChangeSet,
    metadata: &'a [Metadata],
    of_this_run: bool,
) -> Vec<FailedConnection<'a>> {
    let by_name = crate::contract::by_connection(metadata);
    changeset
        .connections
        .iter()
        .filter_map(|c| {
            let m = by_name.get(c.name.as_str()).copied();
            let status = m.and_then(|m| m.status.as_ref());
            let done = match c.action {
                // A repair or a reapply runs a hash already applied: only the record of
                // this change set's run says it ran (its Job may be gone without running,
                // created too late or deleted by hand).
                Action::Apply
                    if of_this_run && matches!(c.cause, Some(Cause::Repair | Cause::Reapply)) =>
                {
                    status.is_some_and(|s| {
                        s.failure_for(&c.hash).is_none()
                            && s.changeset.as_deref() == Some(changeset.id.as_str())
                    })
                }
                // sc-job may have applied a newer request than the change set named.
                Action::Apply => status.is_some_and(|s| {
                    s.failure_for(&c.hash).is_none()
                        && (s.applied_hash.as_deref() == Some(&c.hash)
                            || (s.phase == "Ready" && s.hash.as_deref() == Some(&c.hash)))
                }),
                Action::Delete => m.is_none() || status.is_some_and(|s| s.is_deleted()),
            };
            (!done).then(|| FailedConnection {
                name: c.name.clone(),
                error: status.and_then(|s| s.failure_for(&c.hash)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Requests, Status};
    use crate::reconcile::desired::desired;
    use crate::reconcile::desired::tests::want;
    use serde_json::json;

    fn entry(name: &str, hash: &str, action: Action) -> ChangeEntry {
        ChangeEntry {
            name: name.into(),
            hash: hash.into(),
            action,
            cause: None,
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

    #[test]
    fn desired_refuses_a_guarded_namespace_naming_its_key() {
        let conn = |ns: &str| {
            json!({"namespace": ns, "targetType": "storage-blob", "authType": "secret",
                   "parameters": {"accountName": "a"}, "secrets": {"accountKey": "s3cr3t"}})
        };
        let requests = Requests {
            hash_key: "k".into(),
            revision: 1,
            connections: json!({"sys": conn("kube-system"), "own": conn("sc-system"),
                                "ok": conn("apps")}),
        };
        let guard = sc_model::NamespaceGuard::new(Some("sc-system"), Vec::<String>::new());
        let d = desired(requests, &guard, &Default::default());
        let errors: Vec<(&str, &[String])> = d
            .iter()
            .map(|x| (x.name.as_str(), x.errors.as_slice()))
            .collect();
        assert!(errors[0].1.is_empty(), "{errors:?}");
        for (i, name) in [(1, "own"), (2, "sys")] {
            assert_eq!(errors[i].0, name);
            assert_eq!(errors[i].1.len(), 1, "{errors:?}");
            assert!(
                errors[i].1[0].starts_with(&format!("connections.{name}.namespace: ")),
                "{errors:?}"
            );
            assert!(!errors[i].1[0].contains("s3cr3t"));
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
        let d = desired(
            requests,
            &sc_model::NamespaceGuard::default(),
            &Default::default(),
        );
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "bad");
        assert!(!d[0].errors.is_empty());
        assert!(d[1].errors.is_empty());
        for x in &d {
            assert_eq!(x.hash.len(), 64);
            assert!(
                x.errors.iter().all(|e| !e.contains("s3cr3t")),
                "{:?}",
                x.errors
            );
        }
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
        assert_eq!(f[0].name, "b");
        assert_eq!(f[0].error.unwrap().reason, "InvalidRequest");
        assert_eq!(f[1].name, "c");
    }

    // The plan stage, from small fixtures: Observed in, Plan out.

    use crate::reconcile::desired::NameClash;
    use crate::reconcile::observe::{LastRun, Observed};
    use k8s_openapi::api::core::v1::ConfigMap;
    use std::sync::Arc;

    fn observed(desired: Vec<Desired>, metadata: Vec<Metadata>) -> Observed {
        Observed {
            namespace: "sc-system".into(),
            requests: Arc::new(ConfigMap::default()),
            owner_uid: "uid".into(),
            revision: 1,
            desired: Arc::new(desired),
            clashes: Vec::new(),
            metadata,
            last_run: None,
            job: JobState::Absent,
            now: 1001,
            read: Default::default(),
            live: BTreeMap::new(),
            drift_limits: Default::default(),
            secrets_polled: false,
        }
    }

    /// The metadata sc-job recorded for `d` at `revision`, with `status`.
    fn recorded(d: &Desired, revision: i64, status: Option<Status>) -> Metadata {
        let requested = crate::contract::requested_document(&d.hash, revision, None);
        Metadata {
            spec_text: Some("{}".into()),
            requested_text: Some(serde_json::to_string(&requested).unwrap().into()),
            requested: Some(requested),
            ..meta(&d.name, status)
        }
    }

    fn run(connections: Vec<ChangeEntry>, concluded: bool) -> Option<LastRun> {
        Some(LastRun {
            changeset: ChangeSet {
                id: "x".into(),
                revision: 1,
                connections,
            },
            concluded,
        })
    }

    fn job_failed_at(failed_at: i64) -> JobState {
        JobState::Failed {
            changeset: "x".into(),
            failed_at,
            message: "BackoffLimitExceeded".into(),
        }
    }

    /// `a` after the run of change set "x" carrying it with hash `carried`, whose Job failed
    /// at 1000; sc-job recorded `status`.
    fn after_failed_job(
        a: &Desired,
        carried: &str,
        status: Option<Status>,
        concluded: bool,
    ) -> Observed {
        Observed {
            last_run: run(vec![entry(&a.name, carried, Action::Apply)], concluded),
            job: job_failed_at(1000),
            ..observed(vec![a.clone()], vec![recorded(a, 1, status)])
        }
    }

    fn remembering(failures: u32) -> Memory {
        Memory {
            failures,
            ..Memory::default()
        }
    }

    #[test]
    fn a_new_connection_gets_a_change_set_and_no_metadata_write() {
        let o = observed(vec![want("a", "h1")], vec![]);
        let p = plan(&o, &Memory::default(), &Backoff::default());
        // sc-job records what was requested with the result: nothing is written before.
        assert_eq!(p.metadata, MetadataPlan::default());
        assert_eq!(
            p.job,
            JobAction::Start {
                candidates: vec![entry("a", "h1", Action::Apply)]
            }
        );
        assert_eq!(p.conclusion, None);
        assert_eq!(p.phases, BTreeMap::from([(ConnectionPhase::Pending, 1)]));
        // Once the change set carries it, it is Applying, without metadata yet.
        let o = Observed {
            last_run: run(vec![entry("a", "h1", Action::Apply)], false),
            job: JobState::Active {
                changeset: "x".into(),
            },
            ..o
        };
        let p = plan(&o, &Memory::default(), &Backoff::default());
        assert_eq!(p.phases, BTreeMap::from([(ConnectionPhase::Applying, 1)]));
        assert_eq!(p.job, JobAction::Nothing);
    }

    #[test]
    fn written_metadata_is_not_written_again() {
        let a = want("a", "h1");
        let o = observed(vec![a.clone()], vec![recorded(&a, 1, applied("h1"))]);
        let p = plan(
            &Observed { revision: 5, ..o },
            &Memory::default(),
            &Backoff::default(),
        );
        // A later revision that leaves the connection alone writes nothing and runs nothing.
        assert_eq!(p.metadata, MetadataPlan::default());
        assert_eq!(p.job, JobAction::Nothing);
        assert_eq!(p.phases, BTreeMap::from([(ConnectionPhase::Ready, 1)]));
    }

    #[test]
    fn a_deleted_secret_is_repaired_in_the_same_step_and_reapply_runs_an_applied_connection() {
        use crate::contract::{ObjectKey, ObjectState};
        use crate::reconcile::drift::Live;
        let a = want("a", "h1");
        let secret = ObjectKey::new("Secret", "default", "sc-a-secret");
        let mut status = applied("h1").unwrap();
        status.objects = vec![secret.clone()];
        let o = Observed {
            read: Default::default(),
            live: BTreeMap::from([(secret.clone(), Live::Absent)]),
            ..observed(vec![a.clone()], vec![recorded(&a, 1, Some(status.clone()))])
        };
        let p = plan(&o, &Memory::default(), &Backoff::default());
        assert_eq!(p.drift.events.len(), 1);
        assert_eq!(p.drift.writes.len(), 1);
        let repair = ChangeEntry {
            cause: Some(Cause::Repair),
            ..entry("a", "h1", Action::Apply)
        };
        assert_eq!(
            p.job,
            JobAction::Start {
                candidates: vec![repair]
            }
        );
        assert_eq!(p.phases, BTreeMap::from([(ConnectionPhase::Drifted, 1)]));
        // Intact: nothing to do, unless an operator asks for a run.
        let intact = Observed {
            read: Default::default(),
            live: BTreeMap::from([(
                secret,
                Live::Present(ObjectState {
                    labelled: true,
                    foreign_write: None,
                }),
            )]),
            ..o
        };
        assert_eq!(
            plan(&intact, &Memory::default(), &Backoff::default()).job,
            JobAction::Nothing
        );
        let mut m = recorded(&a, 1, Some(status));
        m.reapply = Some("t".into());
        let asked = Observed {
            metadata: vec![m],
            ..intact
        };
        let reapply = ChangeEntry {
            cause: Some(Cause::Reapply),
            ..entry("a", "h1", Action::Apply)
        };
        assert_eq!(
            plan(&asked, &Memory::default(), &Backoff::default()).job,
            JobAction::Start {
                candidates: vec![reapply]
            }
        );
    }

    #[test]
    fn a_failed_job_within_its_backoff_waits() {
        let a = want("a", "h1");
        let o = after_failed_job(&a, "h1", failed("h1", "ApiError"), true);
        let memory = remembering(2);
        let p = plan(&o, &memory, &Backoff::default());
        assert_eq!(p.job, JobAction::WakeAt(1020));
        assert_eq!(p.decision, Decision::RetryAt(1020));
        assert!(p.metadata.deletes.is_empty());
        assert_eq!(p.conclusion, None);
        assert_eq!(p.memory.failures, 2);
        // Past the backoff, the failed run is recorded and its Job replaced.
        let p = plan(
            &Observed {
                now: 1020,
                ..o.clone()
            },
            &memory,
            &Backoff::default(),
        );
        let JobAction::ReplaceFailed(Some(run)) = &p.job else {
            panic!("expected a replacement, got {:?}", p.job);
        };
        assert_eq!(run.changeset.id, "x");
        assert_eq!(run.message, "BackoffLimitExceeded");
        // A retry keeps the count of failures.
        assert_eq!(p.memory.failures, 2);
    }

    #[test]
    fn a_new_request_replaces_a_failed_job_at_once_with_a_fresh_backoff() {
        let a = want("a", "h2");
        let o = after_failed_job(&a, "h1", failed("h1", "ApiError"), true);
        let memory = remembering(4);
        let p = plan(&o, &memory, &Backoff::default());
        assert!(
            matches!(p.job, JobAction::ReplaceFailed(Some(_))),
            "{:?}",
            p.job
        );
        assert_eq!(p.memory.failures, 0);
    }

    #[test]
    fn a_permanent_failure_at_the_current_revision_asks_nothing() {
        let a = want("a", "h1");
        let mut status = failed("h1", "InvalidRequest").unwrap();
        status.revision = Some(3);
        let o = Observed {
            revision: 3,
            ..observed(vec![a.clone()], vec![recorded(&a, 3, Some(status))])
        };
        let p = plan(&o, &Memory::default(), &Backoff::default());
        assert!(p.pending.is_empty());
        assert_eq!(p.metadata, MetadataPlan::default());
        assert_eq!(p.job, JobAction::Nothing);
        assert_eq!(p.phases, BTreeMap::from([(ConnectionPhase::Failed, 1)]));
        // A new Helm revision asks again.
        let p = plan(
            &Observed { revision: 4, ..o },
            &Memory::default(),
            &Backoff::default(),
        );
        assert_eq!(
            p.job,
            JobAction::Start {
                candidates: vec![entry("a", "h1", Action::Apply)]
            }
        );
    }

    #[test]
    fn a_removed_connection_is_removed_then_its_metadata_goes() {
        let gone = recorded(&want("gone", "h9"), 1, applied("h9"));
        let p = plan(
            &observed(vec![], vec![gone.clone()]),
            &Memory::default(),
            &Backoff::default(),
        );
        // Pending removal: nothing is written to its metadata, a change set removes it.
        assert_eq!(p.metadata, MetadataPlan::default());
        assert_eq!(
            p.job,
            JobAction::Start {
                candidates: vec![entry("gone", "", Action::Delete)]
            }
        );
        assert_eq!(p.phases, BTreeMap::from([(ConnectionPhase::Deleted, 1)]));
        // Metadata an earlier agent marked Deleted is removed the same way.
        let legacy = Metadata {
            requested: serde_json::from_str(r#"{"hash":"","revision":2,"phase":"Deleted"}"#).ok(),
            ..gone.clone()
        };
        let p = plan(
            &observed(vec![], vec![legacy]),
            &Memory::default(),
            &Backoff::default(),
        );
        assert_eq!(
            p.job,
            JobAction::Start {
                candidates: vec![entry("gone", "", Action::Delete)]
            }
        );
        // Once sc-job recorded the removal, the metadata ConfigMap is deleted.
        let removed = Metadata {
            status: Some(Arc::new(Status {
                phase: "Deleted".into(),
                ..Default::default()
            })),
            ..gone
        };
        let p = plan(
            &observed(vec![], vec![removed]),
            &Memory::default(),
            &Backoff::default(),
        );
        assert_eq!(
            p.metadata.deletes,
            vec![MetadataDelete {
                connection: "gone".into(),
                configmap: "sc-conn-gone".into()
            }]
        );
        assert_eq!(p.job, JobAction::Nothing);
        assert_eq!(p.phases, BTreeMap::from([(ConnectionPhase::Deleted, 1)]));
    }

    #[test]
    fn only_the_candidates_the_last_run_carried_are_read_again() {
        let candidates = vec![
            entry("a", "h1", Action::Apply),
            entry("b", "h1", Action::Apply),
            entry("c", "", Action::Delete),
        ];
        assert!(to_recheck(&candidates, None).is_empty());
        let last = run(
            vec![
                entry("b", "h0", Action::Apply),
                entry("c", "", Action::Delete),
            ],
            false,
        );
        let names: Vec<String> = to_recheck(&candidates, last.as_ref())
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["b", "c"]);
        // The second run of a bulk change: none of its candidates was in the first.
        let first = run(vec![entry("x", "h", Action::Apply)], false);
        assert!(to_recheck(&candidates, first.as_ref()).is_empty());
        // A repair is read again whatever the last run carried: its mark is this step's.
        let mut repair = entry("r", "h1", Action::Apply);
        repair.cause = Some(Cause::Repair);
        let names: Vec<String> = to_recheck(&[repair], first.as_ref())
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["r"]);
    }

    #[test]
    fn a_failed_run_is_concluded_once_and_counts_for_the_backoff() {
        let a = want("a", "h1");
        let o = after_failed_job(&a, "h1", failed("h1", "ApiError"), false);
        let p = plan(&o, &Memory::default(), &Backoff::default());
        let c = p.conclusion.expect("a conclusion");
        assert_eq!(c.changeset, "x");
        assert_eq!(c.failure.as_deref(), Some("BackoffLimitExceeded"));
        assert!(
            c.note.contains("failed connections: a (ApiError: m)"),
            "{}",
            c.note
        );
        assert!(c.note.contains("-n sc-system"), "{}", c.note);
        assert_eq!(p.memory.failures, 1);
        assert_eq!(p.job, JobAction::WakeAt(1010));
        // Concluded: not reported again.
        let o = Observed {
            last_run: run(vec![entry("a", "h1", Action::Apply)], true),
            ..o
        };
        assert_eq!(
            plan(&o, &Memory::default(), &Backoff::default()).conclusion,
            None
        );
    }

    #[test]
    fn a_run_gone_with_every_change_applied_succeeded() {
        let a = want("a", "h1");
        let o = Observed {
            last_run: run(vec![entry("a", "h1", Action::Apply)], false),
            ..observed(vec![a.clone()], vec![recorded(&a, 1, applied("h1"))])
        };
        let memory = remembering(3);
        let p = plan(&o, &memory, &Backoff::default());
        let c = p.conclusion.expect("a conclusion");
        assert_eq!(c.failure, None);
        assert_eq!(c.note, "change set x applied: a");
        assert_eq!(p.memory.failures, 0);
        assert_eq!(p.memory.reported_success.as_deref(), Some("x"));
        assert_eq!(p.job, JobAction::Nothing);
        // Reported once: nothing marks the change set, the agent remembers it.
        assert_eq!(plan(&o, &p.memory, &Backoff::default()).conclusion, None);
    }

    /// Connection `a` applied at `h1` by the run of change set `earlier`, and its repair.
    fn repair_recorded_by_an_earlier_run() -> (Desired, ChangeEntry, Status) {
        let mut repair = entry("a", "h1", Action::Apply);
        repair.cause = Some(Cause::Repair);
        let earlier = Status {
            changeset: Some("earlier".into()),
            ..applied("h1").unwrap()
        };
        (want("a", "h1"), repair, earlier)
    }

    /// The repair of an applied connection (its hash unchanged) whose Job went without
    /// running (deleted by hand, or never created because a Job of an earlier change set was
    /// still there): only a record of this change set's run says it ran.
    #[test]
    fn a_repair_whose_job_is_gone_without_its_record_failed() {
        let (a, repair, by_earlier_run) = repair_recorded_by_an_earlier_run();
        let o = Observed {
            last_run: run(vec![repair.clone()], false),
            ..observed(vec![a.clone()], vec![recorded(&a, 1, Some(by_earlier_run))])
        };
        let p = plan(&o, &Memory::default(), &Backoff::default());
        let c = p.conclusion.expect("a conclusion");
        assert!(
            c.failure.as_deref().is_some_and(|f| f.contains("gone")),
            "{c:?}"
        );
        assert!(c.note.contains("failed connections: a"), "{}", c.note);
        assert_eq!(c.unrecorded, vec![repair.clone()]);
        // Recorded by this change set's run: applied.
        let by_this_run = Status {
            changeset: Some("x".into()),
            ..applied("h1").unwrap()
        };
        let o = Observed {
            last_run: run(vec![repair.clone()], false),
            ..observed(vec![a.clone()], vec![recorded(&a, 1, Some(by_this_run))])
        };
        let c = plan(&o, &Memory::default(), &Backoff::default())
            .conclusion
            .expect("a conclusion");
        assert_eq!((c.failure, c.unrecorded), (None, Vec::new()));
        // The Job still runs (or the watch shows it): no conclusion.
        let o = Observed {
            last_run: run(vec![repair], false),
            job: JobState::Active {
                changeset: "x".into(),
            },
            ..observed(vec![a.clone()], vec![recorded(&a, 1, applied("h1"))])
        };
        assert_eq!(
            plan(&o, &Memory::default(), &Backoff::default()).conclusion,
            None
        );
    }

    #[test]
    fn a_failed_job_whose_changes_all_applied_is_deleted() {
        let a = want("a", "h1");
        let o = after_failed_job(&a, "h1", applied("h1"), true);
        let p = plan(&o, &Memory::default(), &Backoff::default());
        let JobAction::DeleteSettledFailed(run) = &p.job else {
            panic!("expected the Job deleted, got {:?}", p.job);
        };
        assert_eq!(run.changeset.id, "x");
        // A failed Job of another change set stays.
        let o = Observed {
            job: JobState::Failed {
                changeset: "older".into(),
                failed_at: 1000,
                message: "m".into(),
            },
            ..o
        };
        assert_eq!(
            plan(&o, &Memory::default(), &Backoff::default()).job,
            JobAction::Nothing
        );
    }

    /// A repair whose sc-job was killed before it recorded the connection (its hash applied
    /// by an earlier run): the failed Job is journaled and deleted, so the journal entry runs
    /// the repair again; it is still named in the failure.
    #[test]
    fn a_failed_job_of_an_unrecorded_repair_is_journaled_and_deleted() {
        let (a, repair, earlier) = repair_recorded_by_an_earlier_run();
        let o = Observed {
            last_run: run(vec![repair], false),
            job: job_failed_at(1000),
            ..observed(vec![a.clone()], vec![recorded(&a, 1, Some(earlier))])
        };
        let p = plan(&o, &Memory::default(), &Backoff::default());
        let JobAction::DeleteSettledFailed(run) = &p.job else {
            panic!("expected the Job journaled and deleted, got {:?}", p.job);
        };
        assert_eq!(run.changeset.id, "x");
        let c = p.conclusion.expect("a conclusion");
        assert!(c.note.contains("failed connections: a"), "{}", c.note);
    }

    #[test]
    fn a_running_job_is_waited_for_and_a_complete_one_deleted() {
        let o = Observed {
            job: JobState::Active {
                changeset: "x".into(),
            },
            ..observed(vec![want("a", "h1")], vec![])
        };
        let p = plan(&o, &Memory::default(), &Backoff::default());
        assert_eq!(p.job, JobAction::Nothing);
        let o = Observed {
            job: JobState::Complete {
                changeset: "x".into(),
            },
            ..o
        };
        assert_eq!(
            plan(&o, &Memory::default(), &Backoff::default()).job,
            JobAction::DeleteComplete
        );
    }

    #[test]
    fn name_clashes_are_reported_when_they_change() {
        let clashes = vec![
            NameClash {
                dropped: "blob_1".into(),
                taken_by: Some("Blob-1".into()),
            },
            NameClash {
                dropped: "___".into(),
                taken_by: None,
            },
        ];
        let o = Observed {
            clashes: clashes.clone(),
            ..observed(vec![], vec![])
        };
        let p = plan(&o, &Memory::default(), &Backoff::default());
        assert_eq!(p.clash_notes.len(), 2);
        assert!(
            p.clash_notes[0].contains(
                "connections Blob-1 and blob_1 map to the same metadata ConfigMap sc-conn-blob1"
            ),
            "{}",
            p.clash_notes[0]
        );
        assert!(
            p.clash_notes[1].contains("\"___\" has no letter or digit"),
            "{}",
            p.clash_notes[1]
        );
        assert_eq!(p.memory.reported_clashes, clashes);
        assert!(
            plan(&o, &p.memory, &Backoff::default())
                .clash_notes
                .is_empty()
        );
    }

    #[test]
    fn incomplete_requests_are_reported_once_after_a_minute() {
        let (first, note) = incomplete(None, "shard 2 missing".into(), 100);
        assert_eq!(note, None);
        let (later, note) = incomplete(Some(&first), "shard 2 missing".into(), 159);
        assert_eq!((later.since, note), (100, None));
        let (late, note) = incomplete(Some(&later), "shard 2 missing".into(), 160);
        assert!(note.is_some_and(|n| n.contains("shard 2 missing")));
        assert!(late.reported);
        assert_eq!(
            incomplete(Some(&late), "shard 2 missing".into(), 500).1,
            None
        );
    }

    #[test]
    fn the_job_state_follows_its_conditions() {
        let job = |conditions: serde_json::Value, deleting: bool| -> Job {
            let mut v = json!({
                "metadata": {"name": "sc-job", "annotations": {CHANGESET_ID_ANNOTATION: "x"}},
                "status": {"conditions": conditions},
            });
            if deleting {
                v["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
            }
            serde_json::from_value(v).unwrap()
        };
        assert_eq!(job_state(None, 7), JobState::Absent);
        let failed = json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
            "message": "too many", "lastTransitionTime": "1970-01-01T00:16:40Z"}]);
        assert_eq!(
            job_state(Some(&job(failed.clone(), false)), 7),
            JobState::Failed {
                changeset: "x".into(),
                failed_at: 1000,
                message: "BackoffLimitExceeded: too many".into()
            }
        );
        let untimed = json!([{"type": "Failed", "status": "True"}]);
        assert!(matches!(
            job_state(Some(&job(untimed, false)), 7),
            JobState::Failed { failed_at: 7, .. }
        ));
        assert_eq!(
            job_state(Some(&job(failed, true)), 7),
            JobState::Active {
                changeset: "x".into()
            }
        );
        let complete = json!([{"type": "Complete", "status": "True"}]);
        assert_eq!(
            job_state(Some(&job(complete, false)), 7),
            JobState::Complete {
                changeset: "x".into()
            }
        );
        let running = json!([{"type": "Complete", "status": "False"}]);
        assert_eq!(
            job_state(Some(&job(running, false)), 7),
            JobState::Active {
                changeset: "x".into()
            }
        );
    }
}

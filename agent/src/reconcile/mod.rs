//! The agent's reconcile step, in three stages, each in the file named for it:
//!
//! - [`observe`]: the watch stores (requests and their shards, the protected Secret, the
//!   metadata ConfigMaps, the Job) and the live change set, read into one [`Observed`] value;
//!   what it derives from the request objects ([`desired`]) is kept while they stay the same.
//! - [`plan`]: pure. From `Observed` and the agent's [`Memory`] (the count of failed runs, the
//!   clashes last reported) it decides everything the step writes: the events, the outcome of
//!   the last run, the metadata to write or delete, and what to do about Job `sc-job`. No API
//!   call and no clock, so its decisions are unit-tested from small fixtures.
//! - [`act`]: the writes, in order, and the live checks just before creating a Job.
//!
//! The process around the step (HTTP endpoints, signals, the Lease, the debounce loop) is
//! in `crate::runtime`. Each step runs in a tracing span `reconcile` with the fields
//! `revision` and `changeset` (the last change set, or the one the step created).

pub mod act;
pub mod desired;
pub mod drift;
pub mod observe;
pub mod plan;

use act::Actor;
use observe::{Observation, Observed, Observer};
use plan::{Backoff, Incomplete, Memory};
use tracing::Instrument as _;

/// The reconcile loop's state: the API is the source of truth; only the [`Memory`] and
/// how long the requests have been incomplete live here.
pub struct Reconciler {
    observer: Observer,
    actor: Actor,
    backoff: Backoff,
    memory: Memory,
    /// Since when the requests have been incomplete, if they are.
    incomplete: Option<Incomplete>,
    /// Whether the last step set out to start a run (its Job may not show in the watch yet).
    starting: bool,
}

impl Reconciler {
    /// A reconciler observing through `observer` and writing through `actor`.
    pub fn new(observer: Observer, actor: Actor, backoff: Backoff) -> Self {
        Reconciler {
            observer,
            actor,
            backoff,
            memory: Memory::default(),
            incomplete: None,
            starting: false,
        }
    }

    /// The versions of the request objects the watches hold and whether they are whole (see
    /// [`Observer::requests_version`]).
    pub fn requests_version(&self) -> Option<(String, bool)> {
        self.observer.requests_version()
    }

    /// Whether Job `sc-job` exists (see [`Observer::job_exists`]), or the last step set out to
    /// create it (a run of the changes still pending follows the one that just ended).
    pub fn job_exists(&self) -> bool {
        self.starting || self.observer.job_exists()
    }

    /// One step; returns when it wants to be woken up (seconds since the epoch) besides
    /// watch events.
    pub async fn step(&mut self) -> anyhow::Result<Option<i64>> {
        let span = tracing::info_span!(
            "reconcile",
            revision = tracing::field::Empty,
            changeset = tracing::field::Empty
        );
        self.step_inner().instrument(span).await
    }

    async fn step_inner(&mut self) -> anyhow::Result<Option<i64>> {
        self.starting = false;
        let Some(requests) = self.observer.requests() else {
            tracing::debug!(configmap = %self.observer.requests_name(), "no requests yet");
            return Ok(None);
        };
        let span = tracing::Span::current();
        span.record(
            "revision",
            crate::contract::revision_of(requests.metadata.annotations.as_ref()),
        );
        self.actor
            .own_lease(requests.metadata.uid.as_deref().unwrap_or_default())
            .await;
        let observed: Observed = match self.observer.observe(requests.clone()).await? {
            Observation::Incomplete(why) => {
                tracing::info!(%why, "waiting for every shard of the requests");
                let now = jiff::Timestamp::now().as_second();
                let (state, note) = plan::incomplete(self.incomplete.as_ref(), why, now);
                self.incomplete = Some(state);
                if let Some(note) = note {
                    self.actor.incomplete_requests(&requests, &note).await;
                }
                return Ok(Some(now + plan::INCOMPLETE_RECHECK));
            }
            Observation::Invalid(message) => {
                self.actor.invalid_requests(&requests, &message).await;
                return Ok(None);
            }
            Observation::Complete(observed) => *observed,
        };
        if let Some(was) = self.incomplete.take() {
            tracing::info!(was = %was.why, "every shard of the requests is there");
        }
        if let Some(run) = &observed.last_run {
            span.record("changeset", run.changeset.id.as_str());
        }
        let plan = plan::plan(&observed, &self.memory, &self.backoff);
        self.memory = plan.memory.clone();
        self.starting = matches!(plan.job, plan::JobAction::Start { .. });
        // Secrets read by name are looked at by a task of their own, which wakes a step when
        // it finds a change (`Observer::look_at_secrets`): no step is scheduled for them.
        tracing::debug!(
            secrets_read_by_name = observed.secrets_polled,
            "step planned"
        );
        self.actor.act(&observed, &plan).await
    }
}

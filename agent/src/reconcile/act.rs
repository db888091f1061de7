//! The act stage: the writes a plan asks for (Warning events, the concluded mark of a failed
//! run, the metadata ConfigMaps sc-job removed, the journal of a failed run, the change set
//! and the Job). Before creating a Job it checks, live, that none exists and that the
//! changes are still pending. Nothing is written per connection before the Job: sc-job
//! records what was requested with each result.

use super::observe::Observed;
use super::plan::{self, Conclusion, FailedRun, JobAction, MetadataPlan, Plan};
use crate::contract::{
    self, CHANGESET_CONFIGMAP, CHANGESET_ID_ANNOTATION, CHANGESET_KEY, CONCLUDED_ANNOTATION,
    ChangeEntry, ChangeSet, FIELD_MANAGER, JOB_NAME, JOURNAL_KEY, METADATA_SELECTOR, Metadata,
};
use crate::jobspec::{JobConfig, job_object, owner_reference};
use crate::server::Health;
use anyhow::Context as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::events::{self, Event, EventType, Reporter};
use kube::{Api, Client, Resource};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Up to this many pending connections are checked one by one before a run; more, with a
/// fresh list of every metadata ConfigMap.
const FRESH_READS: usize = 32;

/// Metadata ConfigMaps per page of a list.
const METADATA_PAGE: u32 = 500;

/// Attempts to write one journal entry (conflicts and transient API errors are retried).
const JOURNAL_ATTEMPTS: u32 = 5;

/// How many (reason, note) event recorders the agent keeps before starting afresh.
const MAX_RECORDERS: usize = 128;

/// The act stage: the client and what the writes need.
pub struct Actor {
    client: Client,
    ns: String,
    requests_name: String,
    job: JobConfig,
    changeset_limit: usize,
    health: Arc<Health>,
    events: EventPublisher,
    /// The uid of the requests ConfigMap the Lease was last given as owner.
    lease_owner: Option<String>,
}

impl Actor {
    /// The act stage in `ns`; events are reported as `identity`.
    pub fn new(
        client: Client,
        ns: &str,
        requests_name: &str,
        job: JobConfig,
        changeset_limit: usize,
        health: Arc<Health>,
        identity: &str,
    ) -> Self {
        Actor {
            events: EventPublisher::new(client.clone(), identity),
            client,
            ns: ns.to_string(),
            requests_name: requests_name.to_string(),
            job,
            changeset_limit,
            health,
            lease_owner: None,
        }
    }

    fn configmaps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Gives the Lease an owner reference to the requests ConfigMap (`uid`), like every other
    /// object the agent creates, so that uninstalling the release removes it too. Once per uid.
    pub async fn own_lease(&mut self, uid: &str) {
        if uid.is_empty() || self.lease_owner.as_deref() == Some(uid) {
            return;
        }
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(self.client.clone(), &self.ns);
        let patch = json!({"metadata": {"ownerReferences": [{
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": self.requests_name,
            "uid": uid,
        }]}});
        match leases
            .patch(
                contract::LEASE_NAME,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => self.lease_owner = Some(uid.to_string()),
            Err(e) => tracing::warn!(
                error = %e,
                "giving the Lease {}/{} an owner reference failed; it stays after an uninstall",
                self.ns,
                contract::LEASE_NAME
            ),
        }
    }

    /// Reports requests that cannot be used (a Warning event on the requests ConfigMap).
    pub async fn invalid_requests(&self, requests: &ConfigMap, message: &str) {
        tracing::warn!(%message, "the requests are unusable");
        self.events
            .publish(
                requests,
                EventType::Warning,
                "InvalidRequests",
                "Reconcile",
                message,
            )
            .await;
    }

    /// Reports requests that stay incomplete (a Warning event, once).
    pub async fn incomplete_requests(&self, requests: &ConfigMap, note: &str) {
        tracing::warn!("{note}");
        self.events
            .publish(
                requests,
                EventType::Warning,
                "RequestsIncomplete",
                "Reconcile",
                note,
            )
            .await;
    }

    /// Carries out `plan`; returns when the step wants to be woken up (seconds since the
    /// epoch) besides watch events.
    pub async fn act(&self, observed: &Observed, plan: &Plan) -> anyhow::Result<Option<i64>> {
        let requests = observed.requests.as_ref();
        for note in &plan.clash_notes {
            tracing::warn!("{note}");
            self.events
                .publish(requests, EventType::Warning, "NameClash", "Reconcile", note)
                .await;
        }
        if let Some(conclusion) = &plan.conclusion
            && self.confirmed(observed, conclusion).await?
        {
            self.conclude(requests, conclusion).await?;
        }
        self.delete_metadata(&plan.metadata).await?;
        self.write_drift(requests, &plan.drift).await?;
        self.health.metrics.set_phases(&plan.phases);
        tracing::debug!(decision = ?plan.decision, pending = plan.pending.len(), "reconcile");
        match &plan.job {
            JobAction::Nothing => Ok(None),
            JobAction::WakeAt(t) => Ok(Some(*t)),
            JobAction::DeleteComplete => {
                tracing::info!("deleting the Complete Job {JOB_NAME}");
                self.delete_job().await?;
                Ok(None)
            }
            JobAction::DeleteSettledFailed(run) => {
                self.journal_failure(run).await?;
                tracing::info!(
                    "deleting the failed Job {JOB_NAME}: every connection of its change set is applied"
                );
                self.delete_job().await?;
                Ok(None)
            }
            JobAction::ReplaceFailed(run) => {
                if let Some(run) = run {
                    self.journal_failure(run).await?;
                }
                tracing::info!("deleting the failed Job {JOB_NAME} before the next attempt");
                self.delete_job().await?;
                Ok(None)
            }
            JobAction::Start { candidates } => {
                self.start(observed, candidates).await?;
                Ok(None)
            }
        }
    }

    /// Whether `conclusion` holds as the API shows it now. A run whose Job is gone without a
    /// record of some connections is concluded only when the Job is gone (the jobs watch may
    /// not show a Job just created) and they are still unrecorded (the metadata watch may not
    /// show sc-job's last records); the failure is then journaled for them, so a repair or a
    /// reapply it carried runs again.
    async fn confirmed(
        &self,
        observed: &Observed,
        conclusion: &Conclusion,
    ) -> anyhow::Result<bool> {
        if conclusion.unrecorded.is_empty() {
            return Ok(true);
        }
        if self.jobs().get_opt(JOB_NAME).await?.is_some() {
            return Ok(false);
        }
        let fresh = self
            .read_metadata_of(&observed.metadata, &conclusion.unrecorded)
            .await?;
        let run = FailedRun {
            changeset: ChangeSet {
                id: conclusion.changeset.clone(),
                revision: observed
                    .last_run
                    .as_ref()
                    .map_or(0, |r| r.changeset.revision),
                connections: conclusion.unrecorded.clone(),
            },
            message: conclusion.failure.clone().unwrap_or_default(),
        };
        let still = plan::failed_connections(&run.changeset, &fresh);
        if still.is_empty() {
            return Ok(false);
        }
        let names: Vec<&str> = still.iter().map(|f| f.name.as_str()).collect();
        tracing::warn!(changeset = %run.changeset.id, connections = %names.join(", "), "Job {JOB_NAME} is gone without recording these connections");
        self.journal_failure(&run).await?;
        Ok(true)
    }

    /// Reports the outcome of the last run (log, metrics); a failure also with a Warning event,
    /// and marks its change set concluded so that it is reported once. A success writes
    /// nothing: the Job controller's events on Job `sc-job` and the journals record it.
    async fn conclude(&self, requests: &ConfigMap, conclusion: &Conclusion) -> anyhow::Result<()> {
        let changeset = &conclusion.changeset;
        match &conclusion.failure {
            None => {
                self.health.metrics.jobs_succeeded.inc();
                tracing::info!(%changeset, note = %conclusion.note, "sc-job succeeded");
                return Ok(());
            }
            Some(message) => {
                self.health.metrics.jobs_failed.inc();
                tracing::warn!(%changeset, %message, "sc-job failed");
                self.events
                    .publish(
                        requests,
                        EventType::Warning,
                        "JobFailed",
                        "RunJob",
                        &conclusion.note,
                    )
                    .await;
            }
        }
        let patch = json!({"metadata": {"annotations": {CONCLUDED_ANNOTATION: "true"}}});
        self.configmaps()
            .patch(
                CHANGESET_CONFIGMAP,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .with_context(|| {
                format!(
                    "marking ConfigMap {}/{CHANGESET_CONFIGMAP} concluded failed",
                    self.ns
                )
            })?;
        Ok(())
    }

    /// Deletes the metadata ConfigMaps of `plan`. A connection whose delete fails does not
    /// stop the others; the first error is returned once all were tried.
    async fn delete_metadata(&self, plan: &MetadataPlan) -> anyhow::Result<()> {
        let mut first_error: Option<anyhow::Error> = None;
        for d in &plan.deletes {
            match self
                .configmaps()
                .delete(&d.configmap, &DeleteParams::default())
                .await
            {
                Ok(_) => {
                    tracing::info!(connection = %d.connection, "removed connection's metadata deleted")
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    first_error.get_or_insert(anyhow::Error::new(e).context(format!(
                        "deleting ConfigMap {}/{} failed",
                        self.ns, d.configmap
                    )));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Publishes the drift events and writes `drift.json` (a merge patch of that key only, of
    /// a metadata ConfigMap that exists: drift is only seen of applied connections).
    /// A connection whose write fails does not stop the others.
    async fn write_drift(
        &self,
        requests: &ConfigMap,
        plan: &super::drift::DriftPlan,
    ) -> anyhow::Result<()> {
        for e in &plan.events {
            tracing::warn!(reason = e.reason, "{}", e.note);
            self.events
                .publish(requests, EventType::Warning, e.reason, "Drift", &e.note)
                .await;
        }
        let mut first_error = None;
        for w in &plan.writes {
            let text = match &w.drift {
                Some(d) => json!(serde_json::to_string(d)?),
                None => serde_json::Value::Null,
            };
            let patch = json!({"data": {contract::DRIFT_KEY: text}});
            let pp = PatchParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..Default::default()
            };
            match self
                .configmaps()
                .patch(&w.configmap, &pp, &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    tracing::warn!(connection = %w.connection, error = %e, "recording drift failed");
                    first_error.get_or_insert(anyhow::Error::new(e).context(format!(
                        "writing {} of ConfigMap {}/{} failed",
                        contract::DRIFT_KEY,
                        self.ns,
                        w.configmap
                    )));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Removes the `sc-agent reapply` annotation of `connection`: a change set carries it.
    async fn reapplied(&self, connection: &str) {
        let name = contract::metadata_name(connection);
        let patch = json!({"metadata": {"annotations": {contract::REAPPLY_ANNOTATION: null}}});
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        if let Err(e) = self
            .configmaps()
            .patch(&name, &pp, &Patch::Merge(&patch))
            .await
        {
            // It stays: the connection runs once more, harmlessly.
            tracing::warn!(connection, error = %e, "removing the reapply annotation failed");
        }
    }

    /// Records a failed Job in the journal of each connection it carried (once per run). A
    /// connection whose write fails does not stop the others; the first error is returned
    /// once all were tried.
    async fn journal_failure(&self, run: &FailedRun) -> anyhow::Result<()> {
        let time = jiff::Timestamp::now().to_string();
        let mut first_error = None;
        for entry in &run.changeset.connections {
            if let Err(e) = self
                .journal_failure_of(&entry.name, &run.changeset.id, &time, &run.message)
                .await
            {
                tracing::warn!(connection = %entry.name, error = format!("{e:#}"), "recording the failed run failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Appends the failed run to the journal of `connection`: read, then write guarded by the
    /// resourceVersion; a conflict or a transient API error reads again and retries (a few
    /// times, briefly).
    async fn journal_failure_of(
        &self,
        connection: &str,
        changeset: &str,
        time: &str,
        message: &str,
    ) -> anyhow::Result<()> {
        let name = contract::metadata_name(connection);
        let job = format!("{}/{JOB_NAME}", self.ns);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = async {
                let Some(cm) = self.configmaps().get_opt(&name).await? else {
                    return Ok(());
                };
                let m = Metadata::from_configmap(&cm);
                let Some(journal) =
                    plan::journal_with_failure(&m.journal, &job, changeset, time, message)
                else {
                    return Ok(());
                };
                let patch = json!({
                    "metadata": {"resourceVersion": m.resource_version},
                    "data": {JOURNAL_KEY: serde_json::to_string(&journal).unwrap_or_default()},
                });
                self.configmaps()
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
            .await;
            match result {
                Ok(()) => return Ok(()),
                Err(kube::Error::Api(e))
                    if attempt < JOURNAL_ATTEMPTS
                        && matches!(e.code, 409 | 429 | 500 | 503 | 504) =>
                {
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "recording the failed run in ConfigMap {}/{name} failed",
                        self.ns
                    )));
                }
            }
        }
    }

    async fn delete_job(&self) -> anyhow::Result<()> {
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match self.jobs().delete(JOB_NAME, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e).with_context(|| format!("deleting Job {}/{JOB_NAME} failed", self.ns)),
        }
    }

    /// Writes the change set and creates the Job, after checking (live) that no Job exists
    /// and that the changes are still pending.
    async fn start(&self, observed: &Observed, candidates: &[ChangeEntry]) -> anyhow::Result<()> {
        if self.jobs().get_opt(JOB_NAME).await?.is_some() {
            return Ok(());
        }
        let revision = observed.revision;
        // The metadata watch may lag behind sc-job's last records: a connection it shows
        // pending may be done, never the reverse (only the agent makes a connection pending).
        // So the candidates the last run carried, and the repairs and reapplies (marked by this
        // step or an operator), are checked against the API (`plan::to_recheck`): a few read
        // one by one, many in a fresh list, read in pages and kept without the journals. A
        // connection shown pending wrongly would only be applied once more: the check saves a
        // run, it guards nothing.
        let recheck = plan::to_recheck(candidates, observed.last_run.as_ref());
        let fresh: Vec<Metadata> = if recheck.len() <= FRESH_READS {
            self.read_metadata_of(&observed.metadata, &recheck).await?
        } else {
            self.list_metadata().await?
        };
        let mut pending = plan::pending_changes(&observed.desired, &fresh, revision);
        if pending.is_empty() {
            return Ok(());
        }
        let limit = self.changeset_limit.max(1);
        if pending.len() > limit {
            tracing::info!(
                pending = pending.len(),
                "the change set takes the first {limit} pending changes; the rest follow in the next runs"
            );
            pending.truncate(limit);
        }
        let cs = ChangeSet {
            id: uuid::Uuid::new_v4().to_string(),
            revision,
            connections: pending,
        };
        tracing::Span::current().record("changeset", cs.id.as_str());
        for c in &cs.connections {
            if let Ok(i) = observed
                .desired
                .binary_search_by(|d| d.name.as_str().cmp(c.name.as_str()))
                && !observed.desired[i].errors.is_empty()
            {
                tracing::warn!(connection = %c.name, errors = %observed.desired[i].errors.join("; "), "invalid connection request, sc-job will record the failure");
            }
        }
        let owner_uid = &observed.owner_uid;
        let obj = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": CHANGESET_CONFIGMAP,
                "namespace": self.ns,
                "labels": contract::labels("changeset"),
                "annotations": {CHANGESET_ID_ANNOTATION: cs.id},
                "ownerReferences": [owner_reference(owner_uid)],
            },
            "data": {CHANGESET_KEY: serde_json::to_string(&cs)?},
        });
        // A full replace of the previous change set, dropping its concluded mark.
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        let api = self.configmaps();
        match api.get_opt(CHANGESET_CONFIGMAP).await? {
            Some(old) => {
                let mut new: ConfigMap = serde_json::from_value(obj)?;
                new.metadata.resource_version = old.metadata.resource_version;
                api.replace(CHANGESET_CONFIGMAP, &pp, &new).await
            }
            None => api.create(&pp, &serde_json::from_value(obj)?).await,
        }
        .with_context(|| format!("writing ConfigMap {}/{CHANGESET_CONFIGMAP} failed", self.ns))?;
        let job: Job =
            serde_json::from_value(job_object(&self.job, &self.ns, &cs.id, revision, owner_uid))?;
        match self.jobs().create(&pp, &job).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {
                tracing::info!("Job {JOB_NAME} already exists, waiting for it");
                return Ok(());
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("creating Job {}/{JOB_NAME} failed", self.ns));
            }
        }
        self.health.metrics.jobs_started.inc();
        for c in &cs.connections {
            match c.cause {
                Some(contract::Cause::Reapply) => self.reapplied(&c.name).await,
                Some(contract::Cause::Repair) => {
                    self.health.metrics.drift_repairs.inc();
                    self.repair_started(&fresh, &c.name).await;
                }
                _ => {}
            }
        }
        let (note, apply, delete) = plan::changeset_note(&cs);
        tracing::info!(changeset = %cs.id, %apply, %delete, "created Job {JOB_NAME}: {note}");
        Ok(())
    }

    /// The repair of `connection` is under way (its change set written, its Job created):
    /// `repairPending` of its `drift.json` (as read live in `fresh`) is cleared now. A run
    /// may complete before the next step sees its change set in flight (a success is derived
    /// from the records), so waiting to see it would repair the connection again and again.
    /// A run that fails is re-armed from the journal (`drift::repair_failed`); a failed write
    /// here leaves the flag, and the repair runs once more.
    async fn repair_started(&self, fresh: &[Metadata], connection: &str) {
        let Some(m) = fresh.iter().find(|m| m.connection == connection) else {
            return;
        };
        let Some(mut drift) = m.drift.clone().filter(|d| d.repair_pending) else {
            return;
        };
        drift.repair_pending = false;
        let plan = super::drift::DriftPlan {
            writes: vec![super::drift::DriftWrite {
                connection: connection.to_string(),
                configmap: m.configmap.clone(),
                drift: Some(*drift),
            }],
            events: Vec::new(),
        };
        if let Err(e) = self.write_drift(&ConfigMap::default(), &plan).await {
            tracing::warn!(%connection, error = format!("{e:#}"), "clearing the pending repair failed; it runs once more");
        }
    }

    /// `known` with the metadata of each of `candidates` read again, live (without journal).
    async fn read_metadata_of(
        &self,
        known: &[Metadata],
        candidates: &[ChangeEntry],
    ) -> anyhow::Result<Vec<Metadata>> {
        let api = self.configmaps();
        let mut by_name: BTreeMap<String, Metadata> = known
            .iter()
            .map(|m| (m.configmap.clone(), m.clone()))
            .collect();
        for c in candidates {
            let name = contract::metadata_name(&c.name);
            let cm = api
                .get_opt(&name)
                .await
                .with_context(|| format!("reading ConfigMap {}/{name} failed", self.ns))?;
            match cm {
                Some(cm) => {
                    by_name.insert(name, metadata_without_journal(cm));
                }
                None => {
                    by_name.remove(&name);
                }
            }
        }
        Ok(by_name.into_values().collect())
    }

    /// Every metadata ConfigMap, listed in pages and kept without the journals, so memory
    /// follows the page size.
    async fn list_metadata(&self) -> anyhow::Result<Vec<Metadata>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut lp = ListParams::default()
                .labels(METADATA_SELECTOR)
                .limit(METADATA_PAGE);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = self.configmaps().list(&lp).await.with_context(|| {
                format!("listing the metadata ConfigMaps in {} failed", self.ns)
            })?;
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            out.extend(page.items.into_iter().map(metadata_without_journal));
            if token.is_none() {
                return Ok(out);
            }
        }
    }
}

/// A metadata ConfigMap parsed without its journal.
fn metadata_without_journal(mut cm: ConfigMap) -> Metadata {
    if let Some(d) = cm.data.as_mut() {
        d.remove(JOURNAL_KEY);
    }
    Metadata::from_configmap(&cm)
}

/// Publishes Kubernetes events on the requests ConfigMap.
struct EventPublisher {
    client: Client,
    reporter: Reporter,
    /// One recorder per event reason and note. A recorder aggregates repeated events by reason
    /// and object, not by note: with one recorder, a different note would only count as a
    /// repeat of the first one and never be shown.
    recorders: std::sync::Mutex<BTreeMap<(String, String), events::Recorder>>,
}

impl EventPublisher {
    fn new(client: Client, identity: &str) -> Self {
        EventPublisher {
            client,
            reporter: Reporter {
                controller: FIELD_MANAGER.to_string(),
                instance: Some(identity.to_string()),
            },
            recorders: Default::default(),
        }
    }

    /// Publishes an event on `on`; failures are only logged.
    async fn publish(
        &self,
        on: &ConfigMap,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let reference: ObjectReference = on.object_ref(&());
        let mut note = note.to_string();
        if note.len() > 1000 {
            let mut cut = 1000;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
        }
        let recorder = {
            let mut recorders = self.recorders.lock().unwrap_or_else(|e| e.into_inner());
            if recorders.len() >= MAX_RECORDERS {
                recorders.clear();
            }
            recorders
                .entry((reason.to_string(), note.clone()))
                .or_insert_with(|| {
                    events::Recorder::new(self.client.clone(), self.reporter.clone())
                })
                .clone()
        };
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&ev, &reference).await {
            tracing::warn!(error = %e, reason, "publishing an event failed");
        }
    }
}

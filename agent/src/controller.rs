//! `sc-agent run`: watches the requests, the protected Secret, the metadata ConfigMaps and the
//! Job; while it holds the Lease, one debounced reconcile loop keeps the metadata, batches
//! pending changes into a change set and runs at most one `sc-job` at a time.

use crate::contract::{
    self, Action, CHANGESET_CONFIGMAP, CHANGESET_ID_ANNOTATION, CHANGESET_KEY,
    CONCLUDED_ANNOTATION, ChangeSet, ConnectionPhase, FIELD_MANAGER, JOB_NAME, JOURNAL_KEY,
    METADATA_SELECTOR, Metadata, RequestedPhase, Requests,
};
use crate::diff::{self, Backoff, Decision, Desired, JobState};
use crate::jobspec::{AgentConfig, job_object, owner_reference};
use crate::server::Health;
use crate::shards::Shards;
use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::Notify;

/// Up to this many pending connections are checked one by one before a run; more, with a
/// fresh list of every metadata ConfigMap.
const FRESH_READS: usize = 32;

/// Metadata ConfigMaps per page of a list.
const METADATA_PAGE: u32 = 500;

/// Metadata ConfigMaps written at once.
const METADATA_IN_FLIGHT: usize = 16;

/// Attempts to write one journal entry (conflicts and transient API errors are retried).
const JOURNAL_ATTEMPTS: u32 = 5;

/// The connections derived from the request objects and the name clashes among them, by the
/// versions of the objects they were derived from.
/// The `spec.json` of a metadata write: this text, or the one the ConfigMap holds.
enum SpecText<'a> {
    Text(String),
    Keep(&'a str),
}

type Derived = (Vec<String>, Arc<Vec<Desired>>, Vec<(String, String)>);

/// Settings of the loop.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The configuration file.
    pub config: AgentConfig,
    /// The namespace of the extension.
    pub namespace: String,
    /// Where the endpoints listen.
    pub listen: std::net::SocketAddr,
    /// This replica's identity in the Lease.
    pub identity: String,
    /// Lease duration (seconds).
    pub lease_duration: u64,
    /// Lease renewal margin (seconds).
    pub lease_grace: u64,
    /// How long triggers are collected before a reconcile step.
    pub debounce: Duration,
    /// Most connections in one change set.
    pub changeset_limit: usize,
    /// Backoff of transient sc-job failures.
    pub backoff: Backoff,
}

/// The watched objects.
struct Stores {
    requests: Store<ConfigMap>,
    /// The further shards of the requests (`sc-requests-1`, ...).
    request_shards: Store<ConfigMap>,
    protected: Store<Secret>,
    metadata: MetadataStore,
    jobs: Store<Job>,
}

/// Starts a reflector for `api` with `config`, waking `trigger` on every event; `strip`
/// removes from each object what the agent does not need to keep.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    trigger: Arc<Notify>,
    strip: fn(&mut K),
) -> Store<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    // What the agent never reads is not kept: managed fields, and the journals of the
    // metadata ConfigMaps (read live when the agent appends to one).
    let stream = reflector::reflector(
        writer,
        watcher(api, config).modify(move |o| {
            kube::ResourceExt::managed_fields_mut(o).clear();
            strip(o);
        }),
    )
    .default_backoff();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::warn!(error = %e, "watch failed, retrying");
            }
            trigger.notify_one();
        }
    });
    reader
}

/// The metadata ConfigMaps, parsed as they arrive and kept by name: all a step reads of them
/// (no journal), with the large texts shared, so thousands stay small and a step's copy is
/// cheap.
#[derive(Clone)]
struct MetadataStore {
    map: Arc<std::sync::RwLock<BTreeMap<String, Metadata>>>,
    ready: tokio::sync::watch::Receiver<bool>,
}

impl MetadataStore {
    /// Watches the metadata ConfigMaps through `api`, waking `trigger` on every event.
    fn watch(api: Api<ConfigMap>, trigger: Arc<Notify>) -> MetadataStore {
        let map: Arc<std::sync::RwLock<BTreeMap<String, Metadata>>> = Default::default();
        let (ready_tx, ready) = tokio::sync::watch::channel(false);
        let parse = |mut cm: ConfigMap| {
            if let Some(d) = cm.data.as_mut() {
                d.remove(JOURNAL_KEY);
            }
            let mut m = Metadata::from_configmap(&cm);
            // Thousands of connections are kept here: the agent compares the texts it would
            // write with a digest, and reads a status for its phase and failure only (the
            // texts, the list of objects and the time stay in the ConfigMap).
            m.keep_digest_only();
            if let Some(status) = m.status.as_mut().and_then(Arc::get_mut) {
                status.objects = Vec::new();
                status.time = None;
            }
            (cm.metadata.name.clone().unwrap_or_default(), m)
        };
        let stream =
            watcher(api, watcher::Config::default().labels(METADATA_SELECTOR)).default_backoff();
        let store = map.clone();
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            // A (re)list builds a new map, swapped in once complete.
            let mut relist: Option<BTreeMap<String, Metadata>> = None;
            while let Some(event) = stream.next().await {
                let mut map = store.write().unwrap_or_else(|e| e.into_inner());
                match event {
                    Ok(watcher::Event::Init) => relist = Some(BTreeMap::new()),
                    Ok(watcher::Event::InitApply(cm)) => {
                        let (name, m) = parse(cm);
                        relist.get_or_insert_default().insert(name, m);
                    }
                    Ok(watcher::Event::InitDone) => {
                        *map = relist.take().unwrap_or_default();
                        ready_tx.send_replace(true);
                    }
                    Ok(watcher::Event::Apply(cm)) => {
                        let (name, m) = parse(cm);
                        map.insert(name, m);
                    }
                    Ok(watcher::Event::Delete(cm)) => {
                        map.remove(cm.metadata.name.as_deref().unwrap_or_default());
                    }
                    Err(e) => tracing::warn!(error = %e, "watch failed, retrying"),
                }
                drop(map);
                trigger.notify_one();
            }
        });
        MetadataStore { map, ready }
    }

    /// Waits until the first list is in.
    async fn wait_until_ready(&self) -> Result<(), tokio::sync::watch::error::RecvError> {
        self.ready.clone().wait_for(|r| *r).await.map(|_| ())
    }

    /// Every metadata ConfigMap, in name order.
    fn snapshot(&self) -> Vec<Metadata> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// Runs the agent until SIGTERM or Ctrl-C.
pub async fn run(client: Client, settings: RunSettings) -> anyhow::Result<()> {
    let ns = settings.namespace.clone();
    let health = Arc::new(Health::default());

    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| {
            format!(
                "listening on {} failed; pass a free --listen address",
                settings.listen
            )
        })?;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    {
        let app = crate::server::router(health.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "the HTTP endpoints stopped");
            }
        });
    }
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing the current step and releasing the lease");
        let _ = stop_tx.send(true);
    });

    let trigger = Arc::new(Notify::new());
    let by_name = |name: &str| watcher::Config::default().fields(&format!("metadata.name={name}"));
    let requests_name = settings
        .config
        .requests_config_map
        .clone()
        .unwrap_or_else(|| contract::REQUESTS_CONFIGMAP.to_string());
    let protected_name = settings
        .config
        .protected_secret
        .clone()
        .unwrap_or_else(|| contract::PROTECTED_SECRET.to_string());
    let stores = Stores {
        requests: reflect(
            Api::<ConfigMap>::namespaced(client.clone(), &ns),
            by_name(&requests_name),
            trigger.clone(),
            |_| {},
        ),
        request_shards: reflect(
            Api::<ConfigMap>::namespaced(client.clone(), &ns),
            watcher::Config::default().labels(&format!(
                "{}={requests_name}",
                crate::shards::SHARD_OF_LABEL
            )),
            trigger.clone(),
            |_| {},
        ),
        protected: reflect(
            Api::<Secret>::namespaced(client.clone(), &ns),
            by_name(&protected_name),
            trigger.clone(),
            |_| {},
        ),
        metadata: MetadataStore::watch(
            Api::<ConfigMap>::namespaced(client.clone(), &ns),
            trigger.clone(),
        ),
        jobs: reflect(
            Api::<Job>::namespaced(client.clone(), &ns),
            by_name(JOB_NAME),
            trigger.clone(),
            |_| {},
        ),
    };
    {
        let (a, b, c, d, e) = (
            stores.requests.clone(),
            stores.protected.clone(),
            stores.metadata.clone(),
            stores.jobs.clone(),
            stores.request_shards.clone(),
        );
        let health = health.clone();
        let trigger = trigger.clone();
        tokio::spawn(async move {
            let synced = a.wait_until_ready().await.is_ok()
                && b.wait_until_ready().await.is_ok()
                && c.wait_until_ready().await.is_ok()
                && d.wait_until_ready().await.is_ok()
                && e.wait_until_ready().await.is_ok();
            if synced {
                tracing::info!("watches synced");
                health.ready.store(true, Ordering::Release);
                trigger.notify_one();
            }
        });
    }

    let lease = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), contract::LEASE_NAME)
        .with_namespace(&ns)
        .with_identity(&settings.identity)
        .with_field_manager(format!("{FIELD_MANAGER}-{}", settings.identity))
        .with_duration(settings.lease_duration)
        .with_grace(settings.lease_grace)
        .build()
        .await
        .with_context(|| format!("setting up the Lease {ns}/{} failed", contract::LEASE_NAME))?;
    let (mut leader, lease_task) = lease.watch().await;

    let reporter = Reporter {
        controller: FIELD_MANAGER.to_string(),
        instance: Some(settings.identity.clone()),
    };
    let mut reconciler = Reconciler {
        client: client.clone(),
        ns: ns.clone(),
        requests_name,
        settings: settings.clone(),
        stores,
        reporter,
        recorders: std::sync::Mutex::new(BTreeMap::new()),
        lease_owner: None,
        health: health.clone(),
        failures: 0,
        reported_clashes: Vec::new(),
        protected_shards: None,
        incomplete: None,
        derived: None,
    };

    let mut wake_at: Option<tokio::time::Instant> = None;
    let mut was_leader = false;
    loop {
        let sleep = async {
            match wake_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop_rx.wait_for(|s| *s) => break,
            changed = leader.changed() => {
                if changed.is_err() {
                    anyhow::bail!("the leader election of Lease {ns}/{} stopped", contract::LEASE_NAME);
                }
            }
            _ = trigger.notified() => {}
            _ = sleep => { wake_at = None; }
        }
        let is_leader = *leader.borrow();
        if is_leader != was_leader {
            tracing::info!(identity = %settings.identity, leader = is_leader, "leadership changed");
            was_leader = is_leader;
        }
        if !is_leader || !health.ready.load(Ordering::Acquire) {
            continue;
        }
        // Debounce: collect the triggers of a burst of changes.
        tokio::select! {
            _ = stop_rx.wait_for(|s| *s) => break,
            _ = tokio::time::sleep(settings.debounce) => {}
        }
        if !*leader.borrow() {
            continue;
        }
        let started = std::time::Instant::now();
        match reconciler.step().await {
            Ok(Some(at)) => {
                let secs = (at - jiff::Timestamp::now().as_second()).max(0) as u64;
                wake_at = Some(tokio::time::Instant::now() + Duration::from_secs(secs));
                tracing::info!(in_seconds = secs, "next step scheduled");
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "reconcile step failed, retrying");
                wake_at = Some(tokio::time::Instant::now() + Duration::from_secs(2));
            }
        }
        health
            .metrics
            .reconcile_duration
            .observe(started.elapsed().as_secs_f64());
        release_free_memory();
    }

    // Closing the channel makes the lease task release the Lease.
    drop(leader);
    match tokio::time::timeout(Duration::from_secs(10), lease_task).await {
        Ok(Ok(Ok(_))) => tracing::info!("lease released"),
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "releasing the lease failed"),
        Ok(Err(e)) => tracing::warn!(error = %e, "the lease task failed"),
        Err(_) => tracing::warn!("releasing the lease timed out"),
    }
    Ok(())
}

/// Hands the memory freed by a step back to the system. A step over thousands of connections
/// allocates and frees tens of MiB; glibc's allocator would otherwise keep them, and the
/// resident size would stay at the highest step's.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap memory to the system; it has no
    // preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Limits glibc to two malloc arenas: one per thread multiplies the memory kept after peaks,
/// for no gain in a process this quiet. Called before the runtime starts its threads.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before other threads
    // exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The state of Job `sc-job`.
pub fn job_state(job: Option<&Job>) -> JobState {
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
        .and_then(|s| s.conditions.as_ref())
        .cloned()
        .unwrap_or_default();
    for c in &conditions {
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
                .map(|t| t.0.as_second())
                .unwrap_or_else(|| jiff::Timestamp::now().as_second());
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

/// How many (reason, note) event recorders the agent keeps before starting afresh.
const MAX_RECORDERS: usize = 128;

/// The reconcile loop's state: the API is the source of truth; only the count of consecutive
/// failures (for the backoff) lives here.
struct Reconciler {
    client: Client,
    ns: String,
    requests_name: String,
    settings: RunSettings,
    stores: Stores,
    reporter: Reporter,
    /// One recorder per event reason and note. A recorder aggregates repeated events by reason
    /// and object, not by note: with one recorder, a different note would only count as a
    /// repeat of the first one and never be shown.
    recorders: std::sync::Mutex<BTreeMap<(String, String), Recorder>>,
    /// The uid of the requests ConfigMap the Lease was last given as owner.
    lease_owner: Option<String>,
    health: Arc<Health>,
    failures: u32,
    /// The name clashes last reported: reported again only when they change.
    reported_clashes: Vec<(String, String)>,
    /// The shards of the protected Secret (not watched: read when its first object
    /// changes), by the resourceVersion of the first.
    protected_shards: Option<(String, Vec<Arc<Secret>>)>,
    /// The connections derived from the request objects (hashes, specs, validation), with the
    /// name clashes, by the versions of the objects they were derived from.
    derived: Option<Derived>,
    /// Since when the requests have been incomplete (a shard missing or of another
    /// revision), what was missing, and whether a Warning event said so.
    incomplete: Option<(i64, String, bool)>,
}

impl Reconciler {
    fn configmaps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Gives the Lease an owner reference to the requests ConfigMap (`uid`), like every other
    /// object the agent creates, so that uninstalling the release removes it too.
    async fn own_lease(&mut self, uid: &str) {
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

    /// One step; returns when it wants to be woken up (seconds since the epoch) besides
    /// watch events.
    async fn step(&mut self) -> anyhow::Result<Option<i64>> {
        let Some(requests_cm) = self
            .stores
            .requests
            .get(&ObjectRef::new(&self.requests_name).within(&self.ns))
        else {
            tracing::debug!(configmap = %self.requests_name, "no requests yet");
            return Ok(None);
        };
        let owner_uid = requests_cm.metadata.uid.clone().unwrap_or_default();
        if !owner_uid.is_empty() && self.lease_owner.as_deref() != Some(owner_uid.as_str()) {
            self.own_lease(&owner_uid).await;
        }
        let revision = contract::revision_of(requests_cm.metadata.annotations.as_ref());
        let protected_name = self
            .settings
            .config
            .protected_secret
            .clone()
            .unwrap_or_else(|| contract::PROTECTED_SECRET.to_string());
        let protected = self
            .stores
            .protected
            .get(&ObjectRef::new(&protected_name).within(&self.ns));
        let hash_key = contract::hash_key(protected.as_deref());
        let public = crate::shards::from_store(requests_cm.clone(), "ConfigMap", |name| {
            self.stores
                .request_shards
                .get(&ObjectRef::new(name).within(&self.ns))
        });
        let public = match public {
            Shards::Complete(all) => all,
            Shards::Incomplete(why) => return Ok(self.incomplete(&requests_cm, why).await),
            Shards::Invalid(message) => {
                self.invalid_requests(&requests_cm, &message).await;
                return Ok(None);
            }
        };
        let protected = match protected {
            None => Vec::new(),
            Some(first) => match self.protected_shards(first).await {
                Shards::Complete(all) => all,
                Shards::Incomplete(why) => return Ok(self.incomplete(&requests_cm, why).await),
                Shards::Invalid(message) => {
                    self.invalid_requests(&requests_cm, &message).await;
                    return Ok(None);
                }
            },
        };
        if let Some((_, what, _)) = self.incomplete.take() {
            tracing::info!(was = %what, "every shard of the requests is there");
        }
        // What was derived from the same versions of the request objects is reused: the
        // metadata and the Job change far more often than the requests.
        let version = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            format!(
                "{}@{}",
                m.name.as_deref().unwrap_or_default(),
                m.resource_version.as_deref().unwrap_or_default()
            )
        };
        let key: Vec<String> = public
            .iter()
            .map(|o| version(&o.metadata))
            .chain(protected.iter().map(|o| version(&o.metadata)))
            .chain([hash_key.clone(), revision.to_string()])
            .collect();
        let (desired, clashes) = match &self.derived {
            Some((k, desired, clashes)) if *k == key => (desired.clone(), clashes.clone()),
            _ => {
                let requests = match Requests::from_objects(&public, &protected, &hash_key) {
                    Ok(r) => r,
                    Err(message) => {
                        self.derived = None;
                        self.invalid_requests(&requests_cm, &message).await;
                        return Ok(None);
                    }
                };
                let (desired, clashes) = diff::without_metadata_clashes(diff::desired(requests));
                let desired = Arc::new(desired);
                self.derived = Some((key, desired.clone(), clashes.clone()));
                (desired, clashes)
            }
        };
        drop((public, protected));
        let new_clashes = if clashes == self.reported_clashes {
            &[][..]
        } else {
            &clashes[..]
        };
        for (dropped, kept) in new_clashes {
            let note = if kept.is_empty() {
                format!(
                    "connection {dropped:?} has no letter or digit, so no metadata ConfigMap can record it: it is ignored; rename it (letters, digits and '_')"
                )
            } else {
                format!(
                    "connections {kept} and {dropped} map to the same metadata ConfigMap {}: {dropped} is ignored; rename one of them",
                    contract::metadata_name(dropped)
                )
            };
            tracing::warn!("{note}");
            self.event(
                &requests_cm,
                EventType::Warning,
                "NameClash",
                "Reconcile",
                &note,
            )
            .await;
        }
        self.reported_clashes = clashes;
        let mut metadata: Vec<Metadata> = self.stores.metadata.snapshot();
        let changeset = self.get_changeset().await?;
        if let Some((cs, false)) = &changeset {
            contract::mark_applying(&mut metadata, cs);
        }
        let job = self
            .stores
            .jobs
            .get(&ObjectRef::new(JOB_NAME).within(&self.ns));
        let state = job_state(job.as_deref());

        self.conclude(&requests_cm, &state, changeset.as_ref(), &metadata)
            .await?;
        self.write_metadata(&desired, &metadata, revision, &owner_uid)
            .await?;
        let pending = diff::pending_changes(&desired, &metadata, revision);
        self.update_phase_metrics(&desired, &metadata);

        let last = changeset.as_ref().map(|c| &c.0);
        let now = jiff::Timestamp::now().as_second();
        let decision = diff::decide(
            &state,
            &pending,
            last,
            revision,
            self.failures,
            &self.settings.backoff,
            now,
        );
        tracing::debug!(?decision, pending = pending.len(), "reconcile");
        if matches!(decision, Decision::Start | Decision::ReplaceFailedJob)
            && !diff::is_retry(&pending, last, revision)
        {
            // A new request starts a fresh backoff.
            self.failures = 0;
        }
        // A failed Job whose change set left nothing undone (sc-job killed after recording
        // every connection, before deleting its Job) explains nothing any more: the journal
        // and the JobFailed event keep the failure, and the Job goes.
        let settled_failed_job = match (&state, last) {
            (JobState::Failed { changeset: id, .. }, Some(cs)) if *id == cs.id => {
                diff::failed_connections(cs, &metadata).is_empty()
            }
            _ => false,
        };
        match decision {
            Decision::Idle if settled_failed_job => {
                if let (JobState::Failed { message, .. }, Some(cs)) = (&state, last) {
                    self.journal_failure(cs, message).await?;
                }
                tracing::info!(
                    "deleting the failed Job {JOB_NAME}: every connection of its change set is applied"
                );
                self.delete_job().await?;
                Ok(None)
            }
            Decision::Idle | Decision::WaitForJob => Ok(None),
            Decision::RetryAt(t) => Ok(Some(t)),
            Decision::DeleteCompleteJob => {
                tracing::info!("deleting the Complete Job {JOB_NAME}");
                self.delete_job().await?;
                Ok(None)
            }
            Decision::ReplaceFailedJob => {
                if let (
                    JobState::Failed {
                        changeset: id,
                        message,
                        ..
                    },
                    Some(cs),
                ) = (&state, last)
                    && *id == cs.id
                {
                    self.journal_failure(cs, message).await?;
                }
                tracing::info!("deleting the failed Job {JOB_NAME} before the next attempt");
                self.delete_job().await?;
                Ok(None)
            }
            Decision::Start => {
                self.start(&requests_cm, &desired, &metadata, revision, &owner_uid)
                    .await?;
                Ok(None)
            }
        }
    }

    /// Reports requests that cannot be used (a Warning event on the requests ConfigMap).
    async fn invalid_requests(&self, requests_cm: &ConfigMap, message: &str) {
        tracing::warn!(%message, "the requests are unusable");
        self.event(
            requests_cm,
            EventType::Warning,
            "InvalidRequests",
            "Reconcile",
            message,
        )
        .await;
    }

    /// The requests are not complete yet (`why` names the shard): an upgrade writes its
    /// shards one after the other, so this is waited out. Past a minute it is reported once
    /// as a Warning event. Returns when to look again (the protected shards are not watched).
    async fn incomplete(&mut self, requests_cm: &ConfigMap, why: String) -> Option<i64> {
        let now = jiff::Timestamp::now().as_second();
        let since = match &self.incomplete {
            Some((since, _, _)) => *since,
            None => now,
        };
        let reported = self.incomplete.as_ref().is_some_and(|i| i.2);
        tracing::info!(%why, "waiting for every shard of the requests");
        let report = !reported && now - since >= 60;
        if report {
            let note = format!(
                "the requests are incomplete: {why}; upgrade the release so the chart writes every shard again"
            );
            tracing::warn!("{note}");
            self.event(
                requests_cm,
                EventType::Warning,
                "RequestsIncomplete",
                "Reconcile",
                &note,
            )
            .await;
        }
        self.incomplete = Some((since, why, reported || report));
        Some(now + 2)
    }

    /// Every shard of the protected Secret `first`: the further ones are read once per
    /// version of the first (an upgrade writes them all with it).
    async fn protected_shards(&mut self, first: Arc<Secret>) -> Shards<Secret> {
        let version = first.metadata.resource_version.clone().unwrap_or_default();
        if let Some((v, all)) = &self.protected_shards
            && *v == version
        {
            return Shards::Complete(all.clone());
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.ns);
        let shards = crate::shards::gather(first, "Secret", |name| {
            let api = &api;
            async move { api.get_opt(&name).await }
        })
        .await;
        if let Shards::Complete(all) = &shards {
            self.protected_shards = Some((version, all.clone()));
        }
        shards
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
            out.extend(page.items.into_iter().map(|mut cm| {
                if let Some(d) = cm.data.as_mut() {
                    d.remove(JOURNAL_KEY);
                }
                Metadata::from_configmap(&cm)
            }));
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// The change set (live) and whether its run has been concluded.
    async fn get_changeset(&self) -> anyhow::Result<Option<(ChangeSet, bool)>> {
        let Some(cm) = self
            .configmaps()
            .get_opt(CHANGESET_CONFIGMAP)
            .await
            .with_context(|| {
                format!("reading ConfigMap {}/{CHANGESET_CONFIGMAP} failed", self.ns)
            })?
        else {
            return Ok(None);
        };
        Ok(contract::parse_changeset(&cm))
    }

    /// Reports the outcome of the last run once (event, metrics, backoff count).
    async fn conclude(
        &mut self,
        requests_cm: &ConfigMap,
        state: &JobState,
        changeset: Option<&(ChangeSet, bool)>,
        metadata: &[Metadata],
    ) -> anyhow::Result<()> {
        let Some((cs, false)) = changeset else {
            return Ok(());
        };
        let failed = diff::failed_connections(cs, metadata);
        let outcome = match state {
            JobState::Failed {
                changeset, message, ..
            } if *changeset == cs.id => Some(Err(message.clone())),
            JobState::Complete { changeset } if *changeset == cs.id => Some(Ok(())),
            JobState::Absent if failed.is_empty() => Some(Ok(())),
            _ => None,
        };
        let Some(outcome) = outcome else {
            return Ok(());
        };
        match outcome {
            Ok(()) => {
                self.failures = 0;
                self.health.metrics.jobs_succeeded.inc();
                let names: Vec<&str> = cs.connections.iter().map(|c| c.name.as_str()).collect();
                let note = format!("change set {} applied: {}", cs.id, names.join(", "));
                tracing::info!(changeset = %cs.id, "sc-job succeeded");
                self.event(
                    requests_cm,
                    EventType::Normal,
                    "JobSucceeded",
                    "RunJob",
                    &note,
                )
                .await;
            }
            Err(message) => {
                self.failures = self.failures.saturating_add(1);
                self.health.metrics.jobs_failed.inc();
                let parts: Vec<String> = failed
                    .iter()
                    .map(|(name, err)| match err {
                        Some(e) => format!("{name} ({}: {})", e.reason, e.message),
                        None => name.clone(),
                    })
                    .collect();
                let note = format!(
                    "change set {} failed ({message}); failed connections: {}; see `kubectl logs job/{JOB_NAME} -n {}`",
                    cs.id,
                    if parts.is_empty() {
                        "none recorded".to_string()
                    } else {
                        parts.join("; ")
                    },
                    self.ns
                );
                tracing::warn!(changeset = %cs.id, %message, "sc-job failed");
                self.event(
                    requests_cm,
                    EventType::Warning,
                    "JobFailed",
                    "RunJob",
                    &note,
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

    /// Writes `spec.json` and `requested.json` where they differ, and marks removed
    /// connections Deleted. A connection whose write fails does not stop the others; the first
    /// error is returned once all were tried.
    async fn write_metadata(
        &self,
        desired: &[Desired],
        metadata: &[Metadata],
        revision: i64,
        owner_uid: &str,
    ) -> anyhow::Result<()> {
        let mut first_error: Option<anyhow::Error> = None;
        // (connection, spec.json, requested.json) to write.
        let mut writes: Vec<(&str, SpecText, String)> = Vec::new();
        let by_name: BTreeMap<&str, &Metadata> = metadata
            .iter()
            .map(|m| (m.connection.as_str(), m))
            .collect();
        for d in desired {
            let existing = by_name.get(d.name.as_str()).copied();
            let (spec, requested) =
                diff::metadata_texts(d, revision, existing.and_then(|m| m.requested.as_ref()));
            if existing.is_some_and(|m| m.has_texts(&spec, &requested)) {
                continue;
            }
            if !d.errors.is_empty() {
                tracing::warn!(connection = %d.name, errors = %d.errors.join("; "), "invalid connection request, sc-job will record the failure");
            }
            writes.push((&d.name, SpecText::Text(spec), requested));
        }
        let wanted: std::collections::BTreeSet<&str> =
            desired.iter().map(|d| d.name.as_str()).collect();
        for m in metadata {
            if m.connection.is_empty() || wanted.contains(m.connection.as_str()) {
                continue;
            }
            if m.status.as_ref().is_some_and(|s| s.is_deleted()) {
                // sc-job has removed the connection: its metadata goes too.
                match self
                    .configmaps()
                    .delete(&m.configmap, &DeleteParams::default())
                    .await
                {
                    Ok(_) => {
                        tracing::info!(connection = %m.connection, "removed connection's metadata deleted")
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => {
                        first_error.get_or_insert(anyhow::Error::new(e).context(format!(
                            "deleting ConfigMap {}/{} failed",
                            self.ns, m.configmap
                        )));
                    }
                }
                continue;
            }
            if m.requested
                .as_ref()
                .is_some_and(|r| r.phase == RequestedPhase::Deleted)
            {
                continue;
            }
            // Keep spec.json: sc-job reads the deletion policy from it.
            let spec = match &m.spec_text {
                Some(t) => SpecText::Text(t.to_string()),
                None => SpecText::Keep(&m.configmap),
            };
            writes.push((&m.connection, spec, diff::deleted_text(revision)));
        }
        // Independent objects: a bounded number of writes in flight.
        let errors: Vec<anyhow::Error> = futures::stream::iter(writes)
            .map(|(connection, spec, requested)| async move {
                let spec = match spec {
                    SpecText::Text(t) => Some(t),
                    SpecText::Keep(configmap) => match self.configmaps().get_opt(configmap).await {
                        Ok(Some(cm)) => cm.data.and_then(|mut d| d.remove(contract::SPEC_KEY)),
                        // Gone meanwhile: nothing left to mark as removed.
                        Ok(None) => return None,
                        Err(e) => {
                            return Some(anyhow::Error::new(e).context(format!(
                                "reading ConfigMap {}/{configmap} failed",
                                self.ns
                            )));
                        }
                    },
                };
                self.apply_metadata(connection, spec.as_deref(), &requested, owner_uid)
                    .await
                    .err()
            })
            .buffer_unordered(METADATA_IN_FLIGHT)
            .filter_map(|e| async move { e })
            .collect()
            .await;
        if let Some(e) = errors.into_iter().next() {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn apply_metadata(
        &self,
        connection: &str,
        spec: Option<&str>,
        requested: &str,
        owner_uid: &str,
    ) -> anyhow::Result<()> {
        let name = contract::metadata_name(connection);
        if !sc_model::names::is_dns_subdomain(&name)
            || name.len() == contract::METADATA_PREFIX.len()
        {
            tracing::warn!(
                connection,
                "connection name gives no valid metadata ConfigMap name, skipped"
            );
            return Ok(());
        }
        let mut labels = contract::labels(contract::COMPONENT_CONNECTION);
        labels.insert(
            sc_model::render::CONNECTION_LABEL.to_string(),
            sc_model::names::connection_label_value(connection),
        );
        let mut data = serde_json::Map::new();
        if let Some(s) = spec {
            data.insert(contract::SPEC_KEY.into(), s.into());
        }
        data.insert(contract::REQUESTED_KEY.into(), requested.into());
        let obj = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": self.ns,
                "labels": labels,
                "annotations": {sc_model::render::CONNECTION_ANNOTATION: connection},
                "ownerReferences": [owner_reference(owner_uid)],
            },
            "data": data,
        });
        self.configmaps()
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&obj),
            )
            .await
            .with_context(|| format!("writing ConfigMap {}/{name} failed", self.ns))?;
        tracing::info!(connection, configmap = %name, "metadata updated");
        Ok(())
    }

    fn update_phase_metrics(&self, desired: &[Desired], metadata: &[Metadata]) {
        let mut counts: BTreeMap<ConnectionPhase, i64> = BTreeMap::new();
        let by_name: BTreeMap<&str, &Metadata> = metadata
            .iter()
            .map(|m| (m.connection.as_str(), m))
            .collect();
        for d in desired {
            let phase = by_name
                .get(d.name.as_str())
                .map(|m| m.phase(Some(&d.hash)))
                .unwrap_or(ConnectionPhase::Pending);
            *counts.entry(phase).or_default() += 1;
        }
        let wanted: std::collections::BTreeSet<&str> =
            desired.iter().map(|d| d.name.as_str()).collect();
        for m in metadata {
            if !wanted.contains(m.connection.as_str()) {
                *counts.entry(ConnectionPhase::Deleted).or_default() += 1;
            }
        }
        self.health.metrics.set_phases(&counts);
    }

    /// Records a failed Job in the journal of each connection it carried (once per run). A
    /// connection whose write fails does not stop the others; the first error is returned
    /// once all were tried.
    async fn journal_failure(&self, cs: &ChangeSet, message: &str) -> anyhow::Result<()> {
        let time = jiff::Timestamp::now().to_string();
        let mut first_error = None;
        for entry in &cs.connections {
            if let Err(e) = self
                .journal_failure_of(&entry.name, &cs.id, &time, message)
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
                    diff::journal_with_failure(&m.journal, &job, changeset, time, message)
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
    async fn start(
        &mut self,
        requests_cm: &ConfigMap,
        desired: &[Desired],
        known: &[Metadata],
        revision: i64,
        owner_uid: &str,
    ) -> anyhow::Result<()> {
        if self.jobs().get_opt(JOB_NAME).await?.is_some() {
            return Ok(());
        }
        // The metadata watch may lag behind sc-job's last records: a connection it shows
        // pending may be done, never the reverse (only the agent makes a connection pending).
        // So the candidates are checked against the API: a few read one by one, many in a
        // fresh list, read in pages and kept without the journals.
        let candidates = diff::pending_changes(desired, known, revision);
        if candidates.is_empty() {
            return Ok(());
        }
        let fresh: Vec<Metadata> = if candidates.len() <= FRESH_READS {
            let api = self.configmaps();
            let mut by_name: BTreeMap<String, Metadata> = known
                .iter()
                .map(|m| (m.configmap.clone(), m.clone()))
                .collect();
            for c in &candidates {
                let name = contract::metadata_name(&c.name);
                let cm = api
                    .get_opt(&name)
                    .await
                    .with_context(|| format!("reading ConfigMap {}/{name} failed", self.ns))?;
                match cm {
                    Some(mut cm) => {
                        if let Some(d) = cm.data.as_mut() {
                            d.remove(JOURNAL_KEY);
                        }
                        by_name.insert(name, Metadata::from_configmap(&cm));
                    }
                    None => {
                        by_name.remove(&name);
                    }
                }
            }
            by_name.into_values().collect()
        } else {
            self.list_metadata().await?
        };
        let mut pending = diff::pending_changes(desired, &fresh, revision);
        if pending.is_empty() {
            return Ok(());
        }
        let limit = self.settings.changeset_limit.max(1);
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
        let job: Job = serde_json::from_value(job_object(
            &self.settings.config.job,
            &self.ns,
            &cs.id,
            revision,
            owner_uid,
        ))?;
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
        let describe = |action: Action| {
            cs.connections
                .iter()
                .filter(|c| c.action == action)
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut note = format!("change set {} (revision {revision})", cs.id);
        let (apply, delete) = (describe(Action::Apply), describe(Action::Delete));
        if !apply.is_empty() {
            note.push_str(&format!(": apply {apply}"));
        }
        if !delete.is_empty() {
            note.push_str(&format!("; delete {delete}"));
        }
        tracing::info!(changeset = %cs.id, %apply, %delete, "created Job {JOB_NAME}");
        self.event(
            requests_cm,
            EventType::Normal,
            "JobCreated",
            "RunJob",
            &note,
        )
        .await;
        Ok(())
    }

    /// Publishes an event on the request ConfigMap; failures are only logged.
    async fn event(
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
                .or_insert_with(|| Recorder::new(self.client.clone(), self.reporter.clone()))
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

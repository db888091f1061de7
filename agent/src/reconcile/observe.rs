//! The observe stage: the watch stores, the shards of the requests and the live change set,
//! read into one [`Observed`] value. Reads only; what it derives from the request objects
//! (hashes, specs, validation) is kept by the versions of those objects, since the metadata
//! and the Job change far more often than the requests.

use super::desired::{self, Desired, NameClash};
use super::drift::{self, DriftLimits, Live};
use super::plan::{self, JobState};
use crate::contract::{
    self, CHANGESET_CONFIGMAP, ChangeSet, JOB_NAME, JOURNAL_KEY, JournalEntry, METADATA_SELECTOR,
    Metadata, RunPhase,
};
use crate::contract::{ObjectKey, ObjectState};
use crate::jobspec::AgentConfig;
use crate::shards::Shards;
use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use tokio::sync::Notify;

/// What one step sees: the input of the plan stage.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The namespace of the extension.
    pub namespace: String,
    /// The requests ConfigMap: events are published on it, and it owns what the agent creates.
    pub requests: Arc<ConfigMap>,
    /// Its uid.
    pub owner_uid: String,
    /// The Helm revision of the requests.
    pub revision: i64,
    /// What the requests want, per connection (without the clashing ones).
    pub desired: Arc<Vec<Desired>>,
    /// The requested connections the agent ignores.
    pub clashes: Vec<NameClash>,
    /// Every metadata ConfigMap (no journal), the connections of the change set in flight
    /// marked applying.
    pub metadata: Vec<Metadata>,
    /// The last change set, read live.
    pub last_run: Option<LastRun>,
    /// Job `sc-job`.
    pub job: JobState,
    /// The time of the step (seconds since the epoch).
    pub now: i64,
    /// What the watches show of the objects applied connections list (only of kinds whose
    /// watch has listed).
    pub live: BTreeMap<crate::contract::ObjectKey, super::drift::Live>,
    /// The objects of `live` read from the API in this step (not from a watch or a look).
    pub read: std::collections::BTreeSet<crate::contract::ObjectKey>,
    /// When drift repairs are contested.
    pub drift_limits: super::drift::DriftLimits,
    /// Whether Secrets were read by name (not watched): they are looked at again after the
    /// drift interval.
    pub secrets_polled: bool,
}

/// The last change set and whether its outcome was reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastRun {
    /// The change set.
    pub changeset: ChangeSet,
    /// Whether it carries the concluded annotation.
    pub concluded: bool,
}

/// What the requests allow a step to see.
#[derive(Debug)]
pub enum Observation {
    /// A shard of the requests is missing or of another revision (what, in words).
    Incomplete(String),
    /// The requests cannot be used (why, in words; no secret).
    Invalid(String),
    /// Everything a plan needs.
    Complete(Box<Observed>),
}

/// The watched objects.
struct Stores {
    requests: Store<ConfigMap>,
    /// The further shards of the requests (`sc-requests-1`, ...).
    request_shards: Store<ConfigMap>,
    protected: Store<Secret>,
    metadata: MetadataStore,
    jobs: Store<Job>,
    materialized: MaterializedStore,
}

/// The connections derived from the request objects, with the name clashes among them, by
/// the versions of the objects they were derived from.
struct Derived {
    key: Vec<String>,
    /// The key the hashes were computed with.
    hash_key: String,
    desired: Arc<Vec<Desired>>,
    clashes: Vec<NameClash>,
}

/// The shards of the protected Secret (not watched: read when its first object changes), by
/// the resourceVersion of the first.
struct ProtectedShards {
    version: String,
    shards: Vec<Arc<Secret>>,
}

/// The observe stage: the watches and what is derived from them.
pub struct Observer {
    client: Client,
    ns: String,
    requests_name: String,
    protected_name: String,
    stores: Stores,
    protected_shards: Option<ProtectedShards>,
    derived: Option<Derived>,
    drift_limits: DriftLimits,
    /// What the looks at the Secrets read by name (not watched) found.
    looks: Arc<std::sync::Mutex<SecretLooks>>,
    /// Woken when a look finds a change.
    trigger: Arc<Notify>,
    /// The namespaces connections may not target.
    guard: sc_model::NamespaceGuard,
}

impl Observer {
    /// Starts the watches of the requests, their shards, the protected Secret, the metadata
    /// ConfigMaps and the Job in `ns`, waking `trigger` on every event.
    pub fn watch(client: Client, ns: &str, config: &AgentConfig, trigger: Arc<Notify>) -> Self {
        let by_name =
            |name: &str| watcher::Config::default().fields(&format!("metadata.name={name}"));
        let requests_name = config
            .requests_config_map
            .clone()
            .unwrap_or_else(|| contract::REQUESTS_CONFIGMAP.to_string());
        let protected_name = config
            .protected_secret
            .clone()
            .unwrap_or_else(|| contract::PROTECTED_SECRET.to_string());
        let stores = Stores {
            requests: reflect(
                Api::namespaced(client.clone(), ns),
                by_name(&requests_name),
                trigger.clone(),
            ),
            request_shards: reflect(
                Api::namespaced(client.clone(), ns),
                watcher::Config::default().labels(&format!(
                    "{}={requests_name}",
                    crate::shards::SHARD_OF_LABEL
                )),
                trigger.clone(),
            ),
            protected: reflect(
                Api::namespaced(client.clone(), ns),
                by_name(&protected_name),
                trigger.clone(),
            ),
            metadata: MetadataStore::watch(Api::namespaced(client.clone(), ns), trigger.clone()),
            jobs: reflect(
                Api::namespaced(client.clone(), ns),
                by_name(JOB_NAME),
                trigger.clone(),
            ),
            materialized: MaterializedStore::watch(
                &client,
                &config.watch_namespaces,
                config.watch_secrets,
                trigger.clone(),
            ),
        };
        Observer {
            client,
            ns: ns.to_string(),
            requests_name,
            protected_name,
            stores,
            protected_shards: None,
            derived: None,
            drift_limits: DriftLimits::default(),
            looks: Default::default(),
            trigger,
            guard: config.guard(ns),
        }
    }

    /// Sets when drift repairs are contested.
    pub fn with_drift_limits(mut self, limits: DriftLimits) -> Self {
        self.drift_limits = limits;
        self
    }

    /// What the API shows of the objects the applied connections list. ServiceAccounts and
    /// SecretProviderClasses come from their watches; an object missing from a watch that
    /// has listed is read once, live and metadata only (without our label it is still there;
    /// gone, it was deleted). Secrets are watched the same way with `agent.drift.watchSecrets`;
    /// otherwise (no grant lets the agent list every Secret) they are read by name by
    /// [`Observer::look_at_secrets`], a task of its own, and a step takes what its looks
    /// found; a step reads again, live, only the Secrets last seen drifted (so the step after
    /// a repair sees it done).
    async fn live(
        &mut self,
        desired: &[Desired],
        metadata: &[Metadata],
    ) -> (
        BTreeMap<ObjectKey, Live>,
        std::collections::BTreeSet<ObjectKey>,
    ) {
        let mut out = BTreeMap::new();
        let mut read = std::collections::BTreeSet::new();
        let mut reads = 0usize;
        // Secrets last seen drifted, read again now.
        let drifted: Vec<ObjectKey> = {
            let looks = self.looks.lock().unwrap_or_else(|e| e.into_inner());
            looks.drifted.keys().take(LIVE_READS).cloned().collect()
        };
        for key in &drifted {
            reads += 1;
            if let Ok(reading) = read_live(&self.client, key).await {
                read.insert(key.clone());
                let mut looks = self.looks.lock().unwrap_or_else(|e| e.into_inner());
                looks.record(key, reading);
            }
        }
        let mut polled = false;
        let looks = self.looks.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut missing = Vec::new();
        for key in drift::watched_objects(desired, metadata) {
            let seen = match self.stores.materialized.get(key) {
                // Read by name: what the looks found.
                None if key.kind == "Secret" => {
                    polled = true;
                    if let Some(live) = looks.get(key) {
                        out.insert(key.clone(), live);
                    }
                    continue;
                }
                None => continue,
                Some(seen) => seen,
            };
            match seen {
                Some(state) => {
                    out.insert(key.clone(), Live::Present(state));
                }
                None => missing.push(key),
            }
        }
        self.looks.lock().unwrap_or_else(|e| e.into_inner()).polled = polled;
        // Objects missing from a watch that has listed, read once.
        missing.sort();
        missing.dedup();
        for key in missing {
            if reads >= LIVE_READS {
                break;
            }
            reads += 1;
            match read_live(&self.client, key).await {
                Ok(live) => {
                    read.insert(key.clone());
                    out.insert(key.clone(), live);
                }
                Err(e) => {
                    tracing::debug!(object = %key, error = %e, "reading the metadata failed");
                }
            }
        }
        (out, read)
    }

    /// Reads, every drift interval while `leader` holds, the metadata of the next
    /// [`LIVE_READS`] Secrets (in turns, by metadata ConfigMap) that applied connections list
    /// and no watch holds, and the Secrets last seen drifted; wakes a step only when what it
    /// found changes what a step sees (a Secret found drifted, or no longer). A look costs
    /// [`LIVE_READS`] small reads and no step: at rest the agent does no other work for it
    /// (with every Secret watched, a walk of the metadata in memory and no read).
    pub fn look_at_secrets(
        &self,
        leader: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let client = self.client.clone();
        let metadata = self.stores.metadata.clone();
        let materialized = self.stores.materialized.clone();
        let looks = self.looks.clone();
        let trigger = self.trigger.clone();
        let every = std::time::Duration::from_secs(self.drift_limits.interval.max(1) as u64);
        tokio::spawn(async move {
            if metadata.wait_until_ready().await.is_err() {
                return;
            }
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The metadata ConfigMap after which the next look starts.
            let mut after = String::new();
            loop {
                tick.tick().await;
                if !*leader.borrow() {
                    continue;
                }
                let (turn, next) =
                    metadata.secrets_after(&after, LIVE_READS, |k| materialized.get(k).is_none());
                after = next;
                let again: Vec<ObjectKey> = {
                    let l = looks.lock().unwrap_or_else(|e| e.into_inner());
                    l.drifted
                        .keys()
                        .filter(|k| !turn.contains(k))
                        .take(LIVE_READS)
                        .cloned()
                        .collect()
                };
                let mut changed = false;
                for key in turn.iter().chain(&again) {
                    match read_live(&client, key).await {
                        Ok(reading) => {
                            changed |= looks
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .record(key, reading);
                        }
                        Err(e) => {
                            tracing::debug!(object = %key, error = %e, "reading the metadata failed");
                        }
                    }
                }
                if changed {
                    tracing::debug!("a look at the Secrets found a change");
                    trigger.notify_one();
                }
            }
        })
    }

    /// Whether Job `sc-job` exists (a run is in flight, or its Job is not deleted yet).
    pub fn job_exists(&self) -> bool {
        self.stores
            .jobs
            .get(&reflector::ObjectRef::new(JOB_NAME).within(&self.ns))
            .is_some()
    }

    /// The name of the requests ConfigMap.
    pub fn requests_name(&self) -> &str {
        &self.requests_name
    }

    /// Resolves once every watch has its first list; `false` if one stopped before.
    pub fn synced(&self) -> impl Future<Output = bool> + Send + 'static {
        let s = &self.stores;
        let (a, b, c, d, e) = (
            s.requests.clone(),
            s.protected.clone(),
            s.metadata.clone(),
            s.jobs.clone(),
            s.request_shards.clone(),
        );
        async move {
            a.wait_until_ready().await.is_ok()
                && b.wait_until_ready().await.is_ok()
                && c.wait_until_ready().await.is_ok()
                && d.wait_until_ready().await.is_ok()
                && e.wait_until_ready().await.is_ok()
        }
    }

    /// The requests ConfigMap, if it exists.
    pub fn requests(&self) -> Option<Arc<ConfigMap>> {
        self.stores
            .requests
            .get(&reflector::ObjectRef::new(&self.requests_name).within(&self.ns))
    }

    /// The versions of the request objects the watches hold (`name@resourceVersion`, the
    /// first ConfigMap, its further shards, the protected Secret) and whether they are whole:
    /// every shard the first ConfigMap announces is there and the protected Secret carries
    /// its revision. Protected settings in several Secrets (only the first is watched) count
    /// as not whole. `None` without requests.
    pub fn requests_version(&self) -> Option<(String, bool)> {
        let first = self.requests()?;
        let version = |m: &ObjectMeta| {
            format!(
                "{}@{};",
                m.name.as_deref().unwrap_or_default(),
                m.resource_version.as_deref().unwrap_or_default()
            )
        };
        let revision = crate::shards::revision(first.metadata.annotations.as_ref());
        let mut key = String::new();
        let mut whole = true;
        match crate::shards::from_store(first.clone(), "ConfigMap", |name| {
            self.stores
                .request_shards
                .get(&reflector::ObjectRef::new(name).within(&self.ns))
        }) {
            Shards::Complete(all) => all.iter().for_each(|o| key.push_str(&version(&o.metadata))),
            Shards::Incomplete(_) | Shards::Invalid(_) => {
                key.push_str(&version(&first.metadata));
                whole = false;
            }
        }
        if let Some(p) = self
            .stores
            .protected
            .get(&reflector::ObjectRef::new(&self.protected_name).within(&self.ns))
        {
            key.push_str(&version(&p.metadata));
            let annotations = p.metadata.annotations.as_ref();
            whole &= crate::shards::shard_count("Secret", annotations) == Ok(1)
                && crate::shards::revision(annotations) == revision;
        }
        Some((key, whole))
    }

    /// Reads everything a step needs, given the requests ConfigMap.
    pub async fn observe(&mut self, requests: Arc<ConfigMap>) -> anyhow::Result<Observation> {
        let owner_uid = requests.metadata.uid.clone().unwrap_or_default();
        let revision = contract::revision_of(requests.metadata.annotations.as_ref());
        let protected = self
            .stores
            .protected
            .get(&reflector::ObjectRef::new(&self.protected_name).within(&self.ns));
        let hash_key = contract::hash_key(protected.as_deref());
        let public = crate::shards::from_store(requests.clone(), "ConfigMap", |name| {
            self.stores
                .request_shards
                .get(&reflector::ObjectRef::new(name).within(&self.ns))
        });
        let public = match public {
            Shards::Complete(all) => all,
            Shards::Incomplete(why) => return Ok(Observation::Incomplete(why)),
            Shards::Invalid(message) => return Ok(Observation::Invalid(message)),
        };
        let protected = match protected {
            None => Vec::new(),
            Some(first) => match self.protected_shards(first).await {
                Shards::Complete(all) => all,
                Shards::Incomplete(why) => return Ok(Observation::Incomplete(why)),
                Shards::Invalid(message) => return Ok(Observation::Invalid(message)),
            },
        };
        let (desired, clashes) = match self.derive(&public, &protected, hash_key, revision) {
            Ok(d) => d,
            Err(message) => return Ok(Observation::Invalid(message)),
        };
        drop((public, protected));
        let mut metadata = self.stores.metadata.snapshot();
        let last_run = self.last_run().await?;
        if let Some(LastRun {
            changeset,
            concluded: false,
        }) = &last_run
        {
            contract::mark_applying(&mut metadata, changeset);
        }
        let (live, read) = self.live(&desired, &metadata).await;
        let now = jiff::Timestamp::now().as_second();
        let job = self
            .stores
            .jobs
            .get(&reflector::ObjectRef::new(JOB_NAME).within(&self.ns));
        Ok(Observation::Complete(Box::new(Observed {
            namespace: self.ns.clone(),
            requests,
            owner_uid,
            revision,
            desired,
            clashes,
            metadata,
            last_run,
            job: plan::job_state(job.as_deref(), now),
            now,
            live,
            read,
            drift_limits: self.drift_limits,
            secrets_polled: self.looks.lock().unwrap_or_else(|e| e.into_inner()).polled,
        })))
    }

    /// The connections the request objects ask for, reused while those objects, the hash key
    /// and the revision stay the same; the message when the requests cannot be parsed.
    fn derive(
        &mut self,
        public: &[Arc<ConfigMap>],
        protected: &[Arc<Secret>],
        hash_key: String,
        revision: i64,
    ) -> Result<(Arc<Vec<Desired>>, Vec<NameClash>), String> {
        let version = |m: &ObjectMeta| {
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
        if let Some(d) = &self.derived
            && d.key == key
        {
            return Ok((d.desired.clone(), d.clashes.clone()));
        }
        // What the last request objects gave, if this one's can be derived from it: the same
        // hash key, no connection dropped.
        let previous = self
            .derived
            .take()
            .filter(|d| d.clashes.is_empty() && d.hash_key == hash_key);
        // The connections' texts, unparsed: only those whose texts changed are parsed again.
        let raw = contract::raw_connections(public, protected);
        let rederived = match (&previous, &raw) {
            (Some(p), Some(r)) => desired::rederive(&p.desired, r, &hash_key, &self.guard),
            _ => None,
        };
        let (desired, clashes) = match rederived {
            Some(d) => (d, Vec::new()),
            None => {
                let requests = contract::Requests::from_objects(public, protected, &hash_key)?;
                let fingerprints: desired::Fingerprints = raw
                    .iter()
                    .flatten()
                    .map(|(name, texts)| (*name, desired::fingerprint(texts)))
                    .collect();
                desired::without_metadata_clashes(desired::desired(
                    requests,
                    &self.guard,
                    &fingerprints,
                ))
            }
        };
        let desired = Arc::new(desired);
        self.derived = Some(Derived {
            key,
            hash_key,
            desired: desired.clone(),
            clashes: clashes.clone(),
        });
        Ok((desired, clashes))
    }

    /// Every shard of the protected Secret `first`: the further ones are read once per
    /// version of the first (an upgrade writes them all with it).
    async fn protected_shards(&mut self, first: Arc<Secret>) -> Shards<Secret> {
        let version = first.metadata.resource_version.clone().unwrap_or_default();
        if let Some(p) = &self.protected_shards
            && p.version == version
        {
            return Shards::Complete(p.shards.clone());
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.ns);
        let shards = crate::shards::gather(first, "Secret", |name| {
            let api = &api;
            async move { api.get_opt(&name).await }
        })
        .await;
        if let Shards::Complete(all) = &shards {
            self.protected_shards = Some(ProtectedShards {
                version,
                shards: all.clone(),
            });
        }
        shards
    }

    /// The change set (live) and whether its run has been concluded.
    async fn last_run(&self) -> anyhow::Result<Option<LastRun>> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.ns);
        let Some(cm) = api.get_opt(CHANGESET_CONFIGMAP).await.with_context(|| {
            format!("reading ConfigMap {}/{CHANGESET_CONFIGMAP} failed", self.ns)
        })?
        else {
            return Ok(None);
        };
        Ok(
            contract::parse_changeset(&cm).map(|(changeset, concluded)| LastRun {
                changeset,
                concluded,
            }),
        )
    }
}

/// Starts a reflector for `api` with `config`, waking `trigger` on every event. What the agent
/// never reads, the managed fields, is not kept.
fn reflect<K>(api: Api<K>, config: watcher::Config, trigger: Arc<Notify>) -> Store<K>
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
    let stream = reflector::reflector(
        writer,
        watcher(api, config).modify(|o| kube::ResourceExt::managed_fields_mut(o).clear()),
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

/// A metadata ConfigMap as the watch cache keeps it, by name. Thousands of connections are
/// kept there: the agent compares the texts it would write with a digest, and reads a
/// status for its phase and failure only (the texts, the list of objects and the time stay
/// in the ConfigMap). Of the journal it keeps only a failed last run, by its end (see
/// [`journal_tail`]).
fn cached_metadata(mut cm: ConfigMap) -> (String, Metadata) {
    let journal = cm.data.as_mut().and_then(|d| d.remove(JOURNAL_KEY));
    let mut m = Metadata::from_configmap(&cm);
    m.journal = journal_tail(journal.as_deref());
    m.keep_digest_only();
    if let Some(status) = m.status.as_mut().and_then(Arc::get_mut) {
        // Only the objects whose drift is watched.
        status
            .objects
            .retain(|o| drift::WATCHED_KINDS.contains(&o.kind.as_str()));
        status.objects.shrink_to_fit();
        status.time = None;
    }
    (cm.metadata.name.clone().unwrap_or_default(), m)
}

/// What the watch cache keeps of a journal (the text of `journal.json`): its last entry when
/// it records a failed run, with only its time and result; nothing otherwise. Drift decides
/// from it whether a repair's run failed and is to run again; the agent reads the whole
/// journal live when it appends to it.
fn journal_tail(text: Option<&str>) -> Vec<JournalEntry> {
    /// The fields read of each entry; the steps and errors are skipped, not kept.
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        time: String,
        #[serde(default)]
        result: RunPhase,
    }
    let last = text
        .and_then(|t| serde_json::from_str::<Vec<Entry>>(t).ok())
        .and_then(|mut entries| entries.pop());
    match last {
        Some(Entry {
            time,
            result: RunPhase::Failed,
        }) => vec![JournalEntry {
            time,
            result: RunPhase::Failed,
            ..Default::default()
        }],
        _ => Vec::new(),
    }
}

/// The metadata ConfigMaps, parsed as they arrive and kept by name: all a step reads of them
/// (of the journal only a failed last run; the whole journal is read live when the agent
/// appends to one), with the large texts shared, so thousands stay small and a step's copy
/// is cheap.
#[derive(Clone)]
struct MetadataStore {
    /// Boxed: a map node holds 11 entries and is often half full, so it holds pointers.
    map: Arc<std::sync::RwLock<BTreeMap<String, Box<Metadata>>>>,
    ready: tokio::sync::watch::Receiver<bool>,
}

impl MetadataStore {
    /// Watches the metadata ConfigMaps through `api`, waking `trigger` on every event.
    fn watch(api: Api<ConfigMap>, trigger: Arc<Notify>) -> MetadataStore {
        let map: Arc<std::sync::RwLock<BTreeMap<String, Box<Metadata>>>> = Default::default();
        let (ready_tx, ready) = tokio::sync::watch::channel(false);
        let parse = cached_metadata;
        let stream =
            watcher(api, watcher::Config::default().labels(METADATA_SELECTOR)).default_backoff();
        let store = map.clone();
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            // A (re)list builds a new map, swapped in once complete (built at once, so its
            // nodes are full).
            let mut relist: Option<Vec<(String, Box<Metadata>)>> = None;
            while let Some(event) = stream.next().await {
                let mut map = store.write().unwrap_or_else(|e| e.into_inner());
                match event {
                    Ok(watcher::Event::Init) => relist = Some(Vec::new()),
                    Ok(watcher::Event::InitApply(cm)) => {
                        let (name, m) = parse(cm);
                        relist.get_or_insert_default().push((name, Box::new(m)));
                    }
                    Ok(watcher::Event::InitDone) => {
                        *map = relist.take().unwrap_or_default().into_iter().collect();
                        ready_tx.send_replace(true);
                    }
                    Ok(watcher::Event::Apply(cm)) => {
                        let (name, m) = parse(cm);
                        map.insert(name, Box::new(m));
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

    /// Up to `n` Secrets (those `wanted` keeps) that applied connections list, taken in the
    /// order of their metadata ConfigMaps from the first after `after`, wrapping around;
    /// with the name of the last ConfigMap taken, where the next turn starts.
    fn secrets_after(
        &self,
        after: &str,
        n: usize,
        wanted: impl Fn(&ObjectKey) -> bool,
    ) -> (Vec<ObjectKey>, String) {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        let mut last = after.to_string();
        let from = (Excluded(after.to_string()), Unbounded);
        let to = (Unbounded, Included(after.to_string()));
        for (name, m) in map
            .range::<String, _>(from)
            .chain(map.range::<String, _>(to))
        {
            if out.len() >= n {
                break;
            }
            last = name.clone();
            let applied = m.status.as_ref().filter(|s| {
                m.requested.as_ref().is_some_and(|r| {
                    !r.hash.is_empty()
                        && s.applied_hash.as_deref() == Some(r.hash.as_str())
                        && s.failure_for(&r.hash).is_none()
                })
            });
            out.extend(
                applied
                    .into_iter()
                    .flat_map(|s| s.objects.iter())
                    .filter(|o| o.kind == "Secret" && wanted(o))
                    .cloned(),
            );
        }
        (out, last)
    }

    /// Every metadata ConfigMap, in name order.
    fn snapshot(&self) -> Vec<Metadata> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|m| (**m).clone())
            .collect()
    }
}

/// Objects read live in one step, at most: Secrets, and objects missing from their watch.
const LIVE_READS: usize = 64;

/// What `key` (a watched kind) is, read live, metadata only.
async fn read_live(client: &Client, key: &ObjectKey) -> kube::Result<Live> {
    let c = client.clone();
    let ns = key.namespace.as_str();
    let meta = match key.kind.as_str() {
        "Secret" => Api::<PartialObjectMeta<Secret>>::namespaced(c, ns)
            .get_metadata_opt(&key.name)
            .await?
            .map(|p| p.metadata),
        "ServiceAccount" => Api::<PartialObjectMeta<ServiceAccount>>::namespaced(c, ns)
            .get_metadata_opt(&key.name)
            .await?
            .map(|p| p.metadata),
        _ => Api::<PartialObjectMeta<DynamicObject>>::namespaced_with(c, ns, &spc_resource())
            .get_metadata_opt(&key.name)
            .await?
            .map(|p| p.metadata),
    };
    Ok(match meta {
        Some(meta) => Live::Present(ObjectState::of(&meta)),
        None => Live::Absent,
    })
}

/// What the looks at the Secrets read by name found: in full only the Secrets found drifted
/// (deleted, without our label, written by another field manager), since a Secret found as
/// sc-job left it counts as unseen for the drift stage; of those, a 64-bit hash of the key,
/// so 10,000 Secrets cost 160 KB, not a copy of every name.
#[derive(Debug, Clone, Default)]
struct SecretLooks {
    /// The Secrets last found drifted, with what was found.
    drifted: BTreeMap<ObjectKey, Live>,
    /// Hashes of the keys of the Secrets last found as sc-job left them.
    clean: std::collections::HashSet<u64>,
    /// Whether the last step had Secrets to take from the looks (some are not watched).
    polled: bool,
}

impl SecretLooks {
    fn key_hash(key: &ObjectKey) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        h.finish()
    }

    fn is_clean(live: &Live) -> bool {
        matches!(live, Live::Present(s) if s.labelled && s.foreign_write.is_none())
    }

    /// Records what a read of `key` found; whether that changes what a step sees.
    fn record(&mut self, key: &ObjectKey, live: Live) -> bool {
        let h = Self::key_hash(key);
        if Self::is_clean(&live) {
            self.clean.insert(h);
            self.drifted.remove(key).is_some()
        } else {
            self.clean.remove(&h);
            if self.drifted.get(key) == Some(&live) {
                return false;
            }
            self.drifted.insert(key.clone(), live);
            true
        }
    }

    /// What the looks last found of `key`, if they read it.
    fn get(&self, key: &ObjectKey) -> Option<Live> {
        if let Some(l) = self.drifted.get(key) {
            return Some(l.clone());
        }
        self.clean
            .contains(&Self::key_hash(key))
            .then_some(Live::Present(ObjectState {
                labelled: true,
                foreign_write: None,
            }))
    }
}

/// The label selector of what sc-job materializes.
const MATERIALIZED_SELECTOR: &str = "app.kubernetes.io/managed-by=sc-extension";

/// The SecretProviderClass resource (a CRD of the Secrets Store CSI driver).
fn spc_resource() -> ApiResource {
    ApiResource {
        group: "secrets-store.csi.x-k8s.io".into(),
        version: "v1".into(),
        api_version: "secrets-store.csi.x-k8s.io/v1".into(),
        kind: "SecretProviderClass".into(),
        plural: "secretproviderclasses".into(),
    }
}

/// One watch of materialized objects: a kind, in a namespace or all.
struct MaterializedWatch {
    kind: &'static str,
    /// `None`: every namespace.
    namespace: Option<String>,
    map: RwLock<BTreeMap<(String, String), ObjectState>>,
    listed: std::sync::atomic::AtomicBool,
}

/// The metadata of the ServiceAccounts and SecretProviderClasses sc-job materialized (by our
/// managed-by label): for each, only whether it carries the label and the last write of
/// another field manager after sc-job's.
/// Metadata-only requests: the agent never receives a Secret's data from the API server (and
/// keeps nothing else of an object, whatever a server sends).
#[derive(Clone)]
struct MaterializedStore {
    watches: Arc<Vec<MaterializedWatch>>,
}

impl MaterializedStore {
    /// Watches ServiceAccounts and SecretProviderClasses (and, with `secrets`, Secrets) by our
    /// label, in `namespaces` (empty: cluster-wide), waking `trigger` on every change.
    fn watch(
        client: &Client,
        namespaces: &[String],
        secrets: bool,
        trigger: Arc<Notify>,
    ) -> MaterializedStore {
        let scopes: Vec<Option<String>> = if namespaces.is_empty() {
            vec![None]
        } else {
            namespaces.iter().cloned().map(Some).collect()
        };
        let mut watches = Vec::new();
        for scope in &scopes {
            let kinds: &[&'static str] = if secrets {
                &["ServiceAccount", "SecretProviderClass", "Secret"]
            } else {
                &["ServiceAccount", "SecretProviderClass"]
            };
            for &kind in kinds {
                watches.push(MaterializedWatch {
                    kind,
                    namespace: scope.clone(),
                    map: RwLock::default(),
                    listed: Default::default(),
                });
            }
        }
        let store = MaterializedStore {
            watches: Arc::new(watches),
        };
        for i in 0..store.watches.len() {
            let w = &store.watches[i];
            let config = watcher::Config::default().labels(MATERIALIZED_SELECTOR);
            let ns = w.namespace.clone();
            let c = client.clone();
            let stream = match w.kind {
                // Metadata-only requests (`as=PartialObjectMetadata`, as for every
                // `PartialObjectMeta` Api): the API server never sends a Secret's data.
                "Secret" => meta_stream(
                    match &ns {
                        Some(ns) => Api::<PartialObjectMeta<Secret>>::namespaced(c, ns),
                        None => Api::all(c),
                    },
                    config,
                ),
                "ServiceAccount" => meta_stream(
                    match &ns {
                        Some(ns) => Api::<PartialObjectMeta<ServiceAccount>>::namespaced(c, ns),
                        None => Api::all(c),
                    },
                    config,
                ),
                _ => meta_stream(
                    match &ns {
                        Some(ns) => Api::<PartialObjectMeta<DynamicObject>>::namespaced_with(
                            c,
                            ns,
                            &spc_resource(),
                        ),
                        None => Api::all_with(c, &spc_resource()),
                    },
                    config,
                ),
            };
            let (store, trigger) = (store.clone(), trigger.clone());
            tokio::spawn(async move {
                let w = &store.watches[i];
                futures::pin_mut!(stream);
                let mut relist: Option<BTreeMap<(String, String), ObjectState>> = None;
                let mut failing = false;
                while let Some(event) = stream.next().await {
                    let key = |m: &ObjectMeta| {
                        (
                            m.namespace.clone().unwrap_or_default(),
                            m.name.clone().unwrap_or_default(),
                        )
                    };
                    // A step is woken only when what a step sees changes: not for a
                    // relist that finds what was there, nor for a write that leaves the
                    // label and the field managers as they were (sc-job's own applies).
                    let changed = match event {
                        Ok(watcher::Event::Init) => {
                            relist = Some(BTreeMap::new());
                            false
                        }
                        Ok(watcher::Event::InitApply(m)) => {
                            relist
                                .get_or_insert_default()
                                .insert(key(&m), ObjectState::of(&m));
                            false
                        }
                        Ok(watcher::Event::InitDone) => {
                            let new = relist.take().unwrap_or_default();
                            let mut map = w.map.write().unwrap_or_else(|e| e.into_inner());
                            let was_listed =
                                w.listed.swap(true, std::sync::atomic::Ordering::AcqRel);
                            let changed = !was_listed || *map != new;
                            *map = new;
                            failing = false;
                            changed
                        }
                        Ok(watcher::Event::Apply(m)) => {
                            let state = ObjectState::of(&m);
                            w.map
                                .write()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(key(&m), state.clone())
                                .is_none_or(|was| was != state)
                        }
                        Ok(watcher::Event::Delete(m)) => w
                            .map
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&key(&m))
                            .is_some(),
                        Err(e) => {
                            // A cluster without the CSI driver does not serve
                            // SecretProviderClasses: said once, not on every retry.
                            if !failing {
                                tracing::info!(kind = w.kind, namespace = ?w.namespace, error = %e, "the drift watch failed, retrying");
                            }
                            failing = true;
                            relist = None;
                            false
                        }
                    };
                    if changed {
                        trigger.notify_one();
                    }
                }
            });
        }
        store
    }

    /// What the watch of `key`'s kind and namespace shows: `None` when no such watch has
    /// listed; `Some(None)` when it does not hold the object.
    fn get(&self, key: &ObjectKey) -> Option<Option<ObjectState>> {
        let w = self.watches.iter().find(|w| {
            w.kind == key.kind
                && w.namespace.as_ref().is_none_or(|ns| *ns == key.namespace)
                && w.listed.load(std::sync::atomic::Ordering::Acquire)
        })?;
        let map = w.map.read().unwrap_or_else(|e| e.into_inner());
        Some(map.get(&(key.namespace.clone(), key.name.clone())).cloned())
    }

    /// The kinds whose watch has listed (for diagnostics).
    #[allow(dead_code)]
    fn listed(&self) -> BTreeSet<&'static str> {
        self.watches
            .iter()
            .filter(|w| w.listed.load(std::sync::atomic::Ordering::Acquire))
            .map(|w| w.kind)
            .collect()
    }
}

/// A metadata-only watch of `api`, its objects reduced to their metadata.
fn meta_stream<P>(
    api: Api<P>,
    config: watcher::Config,
) -> futures::stream::BoxStream<'static, Result<watcher::Event<ObjectMeta>, watcher::Error>>
where
    P: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let meta = |mut p: P| std::mem::take(p.meta_mut());
    // The watcher starts every attempt to list with `Init`, and the backoff starts afresh on
    // every item that is not an error: a list that fails each time (a cluster without the
    // CSI driver serves no SecretProviderClasses) would be retried every second, forever,
    // instead of backing off. A (re)list is begun by its first `InitApply` or `InitDone`.
    watcher(api, config)
        .filter(|e| std::future::ready(!matches!(e, Ok(watcher::Event::Init))))
        .default_backoff()
        .map(move |e| {
            e.map(|e| match e {
                watcher::Event::Apply(p) => watcher::Event::Apply(meta(p)),
                watcher::Event::Delete(p) => watcher::Event::Delete(meta(p)),
                watcher::Event::Init => watcher::Event::Init,
                watcher::Event::InitApply(p) => watcher::Event::InitApply(meta(p)),
                watcher::Event::InitDone => watcher::Event::InitDone,
            })
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::desired::tests::want;
    use serde_json::json;

    /// A metadata ConfigMap of connection `a` (hash `h1`) whose Secret was deleted at
    /// 2026-12-06T22:00:15Z and whose repair's run (sc-job killed) ended at 22:00:16, with
    /// the journal entries before it.
    fn repair_failed_configmap() -> ConfigMap {
        let drift = json!({"hash": "h1", "since": 1_796_594_415_i64, "repairs": [1_796_594_415_i64],
            "objects": [{"kind": "Secret", "namespace": "apps", "name": "sc-a-secret", "change": "deleted"}]});
        let status = json!({"phase": "Ready", "hash": "h1", "appliedHash": "h1", "revision": 2,
            "changeset": "c0", "objects": [{"kind": "Secret", "namespace": "apps", "name": "sc-a-secret"}],
            "time": "2026-12-06T21:59:39Z"});
        let journal = json!([
            {"time": "2026-12-06T21:59:39Z", "job": "sc-system/sc-job", "changeset": "c0",
             "revision": 2, "action": "apply", "hash": "h1", "result": "Ready",
             "steps": ["[a] secret apps/sc-a-secret: created (1 key)"]},
            {"time": "2026-12-06T22:00:16.956933089Z", "job": "sc-system/sc-job", "changeset": "c1",
             "result": "Failed", "steps": [],
             "error": {"reason": "JobFailed", "message": "BackoffLimitExceeded", "remedy": "r"}}
        ]);
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "sc-conn-a", "namespace": "sc-system", "resourceVersion": "7",
                         "annotations": {sc_model::render::CONNECTION_ANNOTATION: "a"}},
            "data": {
                "spec.json": r#"{"name":"a"}"#,
                "requested.json": r#"{"hash":"h1","revision":2,"phase":"Pending"}"#,
                "status.json": status.to_string(),
                "journal.json": journal.to_string(),
                "drift.json": drift.to_string(),
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_cache_keeps_what_rearms_a_repair_whose_run_failed() {
        // The repair's change set is concluded (nothing in flight) and the Secret is still
        // gone: the plan must run the repair again from what the watch cache holds.
        let (name, m) = cached_metadata(repair_failed_configmap());
        assert_eq!(name, "sc-conn-a");
        let gone = BTreeMap::from([(
            ObjectKey::new("Secret", "apps", "sc-a-secret"),
            Live::Absent,
        )]);
        let d = [want("a", "h1")];
        let p = drift::plan_drift(
            &d,
            std::slice::from_ref(&m),
            &gone,
            1_796_594_430,
            DriftLimits::default(),
        );
        let mut after = m.clone();
        if let Some(w) = p.writes.iter().find(|w| w.connection == "a") {
            after.drift = w.drift.clone().map(Box::new);
        }
        assert!(
            drift::awaits_repair(&after, "h1"),
            "the failed repair is not run again: {:?}",
            p.writes
        );
        let pending = plan::pending_changes(&d, std::slice::from_ref(&after), 2);
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].cause, Some(crate::contract::Cause::Repair));
        // Only the failed last run is kept, by its time and result.
        assert_eq!(m.journal.len(), 1);
        assert_eq!(m.journal[0].time, "2026-12-06T22:00:16.956933089Z");
        assert!(m.journal[0].error.is_none() && m.journal[0].changeset.is_empty());
    }

    #[test]
    fn the_cache_keeps_no_journal_entry_of_a_run_that_succeeded() {
        let ready = r#"[{"time":"2026-12-06T21:59:39Z","result":"Failed"},
            {"time":"2026-12-06T22:00:16Z","changeset":"c1","result":"Ready","steps":["x"]}]"#;
        assert!(journal_tail(Some(ready)).is_empty());
        assert!(journal_tail(Some("[]")).is_empty());
        assert!(journal_tail(Some("not json")).is_empty());
        assert!(journal_tail(None).is_empty());
    }

    fn secret(name: &str) -> ObjectKey {
        ObjectKey {
            kind: "Secret".into(),
            namespace: "apps".into(),
            name: name.into(),
        }
    }

    fn present(labelled: bool, foreign: Option<&str>) -> Live {
        Live::Present(ObjectState {
            labelled,
            foreign_write: foreign.map(|m| (m.to_string(), "2026-01-01T00:00:00Z".to_string())),
        })
    }

    /// A metadata store of connections `c0`..`c{n-1}`, each listing its Secret; `c1` is not
    /// applied (its last run was for another hash).
    fn store(n: usize) -> MetadataStore {
        let (_tx, ready) = tokio::sync::watch::channel(true);
        let map = (0..n)
            .map(|i| {
                let name = format!("c{i}");
                let applied = if i == 1 { "old" } else { "h" };
                let m = Metadata {
                    configmap: name.clone(),
                    connection: name.clone(),
                    requested: Some(crate::contract::Requested {
                        hash: "h".into(),
                        revision: 1,
                        phase: crate::contract::RequestedPhase::Pending,
                    }),
                    status: Some(Arc::new(crate::contract::Status {
                        phase: crate::contract::RunPhase::Ready,
                        hash: Some(applied.into()),
                        applied_hash: Some(applied.into()),
                        objects: vec![secret(&format!("s{i}"))],
                        ..Default::default()
                    })),
                    ..Default::default()
                };
                (name, Box::new(m))
            })
            .collect();
        MetadataStore {
            map: Arc::new(RwLock::new(map)),
            ready,
        }
    }

    #[test]
    fn the_looks_take_the_secrets_of_applied_connections_in_turns() {
        let s = store(5);
        let names =
            |keys: Vec<ObjectKey>| -> Vec<String> { keys.into_iter().map(|k| k.name).collect() };
        let (turn, after) = s.secrets_after("", 2, |_| true);
        assert_eq!(
            (names(turn), after.as_str()),
            (vec!["s0".into(), "s2".into()], "c2")
        );
        let (turn, after) = s.secrets_after(&after, 2, |_| true);
        assert_eq!(
            (names(turn), after.as_str()),
            (vec!["s3".into(), "s4".into()], "c4")
        );
        // Round again.
        let (turn, after) = s.secrets_after(&after, 2, |_| true);
        assert_eq!(
            (names(turn), after.as_str()),
            (vec!["s0".into(), "s2".into()], "c2")
        );
        // Fewer than a look's worth: each once.
        let (turn, _) = s.secrets_after("c3", 64, |_| true);
        assert_eq!(names(turn), ["s4", "s0", "s2", "s3"]);
        // Secrets a watch holds are not read.
        let (turn, _) = s.secrets_after("", 64, |k| k.name != "s2");
        assert_eq!(names(turn), ["s0", "s3", "s4"]);
    }

    #[test]
    fn a_look_wakes_a_step_only_when_it_changes_what_a_step_sees() {
        let mut looks = SecretLooks::default();
        let (a, b) = (secret("a"), secret("b"));
        assert_eq!(looks.get(&a), None, "never read");
        // As sc-job left it: the same as unread for the drift stage, no step.
        assert!(!looks.record(&a, present(true, None)));
        assert_eq!(looks.get(&a), Some(present(true, None)));
        assert_eq!(looks.get(&b), None);
        // Deleted: a step; the same again: none.
        assert!(looks.record(&a, Live::Absent));
        assert_eq!(looks.get(&a), Some(Live::Absent));
        assert!(!looks.record(&a, Live::Absent));
        // Back as sc-job left it (repaired): a step, and it is clean again.
        assert!(looks.record(&a, present(true, None)));
        assert_eq!(looks.get(&a), Some(present(true, None)));
        assert!(looks.drifted.is_empty());
        // Written by another manager, then its label removed: a step each.
        assert!(looks.record(&b, present(true, Some("kubectl-patch"))));
        assert!(looks.record(&b, present(false, Some("kubectl-patch"))));
        assert_eq!(looks.get(&b), Some(present(false, Some("kubectl-patch"))));
        assert_eq!(looks.drifted.len(), 1);
    }
}

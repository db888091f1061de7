//! The observe stage: the watch stores, the shards of the requests and the live change set,
//! read into one [`Observed`] value. Reads only; what it derives from the request objects
//! (hashes, specs, validation) is kept by the versions of those objects, since the metadata
//! and the Job change far more often than the requests.

use super::desired::{self, Desired, NameClash};
use super::drift::{self, DriftLimits, Live};
use super::plan::{self, JobState};
use crate::contract::{
    self, CHANGESET_CONFIGMAP, ChangeSet, JOB_NAME, JOURNAL_KEY, METADATA_SELECTOR, Metadata,
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
    /// Where the next step starts reading Secrets.
    secret_turn: usize,
    /// Whether the last step read Secrets by name (some are not watched).
    secrets_polled: bool,
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
                trigger,
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
            secret_turn: 0,
            secrets_polled: false,
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
    /// otherwise (no grant lets the agent list every Secret) their metadata is read live, at
    /// most [`LIVE_READS`] a step, in turns.
    async fn live(
        &mut self,
        desired: &[Desired],
        metadata: &[Metadata],
    ) -> BTreeMap<ObjectKey, Live> {
        let mut out = BTreeMap::new();
        let mut reads = 0usize;
        let keys: BTreeSet<&ObjectKey> = drift::watched_objects(desired, metadata).collect();
        // Secrets a watch holds (agent.drift.watchSecrets) are taken from it below, with the
        // other kinds; the rest are read by name.
        let secrets: Vec<&ObjectKey> = keys
            .iter()
            .copied()
            .filter(|k| k.kind == "Secret" && self.stores.materialized.get(k).is_none())
            .collect();
        self.secrets_polled = !secrets.is_empty();
        // Secrets in turns, from where the last step stopped.
        let start = if secrets.is_empty() {
            0
        } else {
            self.secret_turn % secrets.len()
        };
        let turn = secrets[start..].iter().chain(&secrets[..start]).copied();
        for key in turn.take(LIVE_READS) {
            reads += 1;
            self.secret_turn = self.secret_turn.wrapping_add(1);
            match self.read_metadata(key).await {
                Ok(Some(meta)) => {
                    out.insert(key.clone(), Live::Present(ObjectState::of(&meta)));
                }
                Ok(None) => {
                    out.insert(key.clone(), Live::Absent);
                }
                Err(e) => {
                    tracing::debug!(object = %key, error = %e, "reading the metadata failed");
                }
            }
        }
        // The other kinds, and the Secrets a watch holds.
        let watched = |k: &ObjectKey| self.stores.materialized.get(k).is_some();
        for key in keys
            .into_iter()
            .filter(|k| k.kind != "Secret" || watched(k))
        {
            let Some(seen) = self.stores.materialized.get(key) else {
                continue;
            };
            let live = match seen {
                Some(state) => Live::Present(state),
                None if reads < LIVE_READS => {
                    reads += 1;
                    match self.read_metadata(key).await {
                        Ok(Some(meta)) => Live::Present(ObjectState::of(&meta)),
                        Ok(None) => Live::Absent,
                        Err(e) => {
                            tracing::debug!(object = %key, error = %e, "reading the metadata failed");
                            continue;
                        }
                    }
                }
                None => continue,
            };
            out.insert(key.clone(), live);
        }
        out
    }

    /// The metadata of `key` (a watched kind), read live.
    async fn read_metadata(&self, key: &ObjectKey) -> kube::Result<Option<ObjectMeta>> {
        let c = self.client.clone();
        let ns = key.namespace.as_str();
        Ok(match key.kind.as_str() {
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
        })
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
        let live = self.live(&desired, &metadata).await;
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
            drift_limits: self.drift_limits,
            secrets_polled: self.secrets_polled,
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
        let requests = match contract::Requests::from_objects(public, protected, &hash_key) {
            Ok(r) => r,
            Err(message) => {
                self.derived = None;
                return Err(message);
            }
        };
        let (desired, clashes) =
            desired::without_metadata_clashes(desired::desired(requests, &self.guard));
        let desired = Arc::new(desired);
        self.derived = Some(Derived {
            key,
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

/// The metadata ConfigMaps, parsed as they arrive and kept by name: all a step reads of them
/// (no journal, read live when the agent appends to one), with the large texts shared, so
/// thousands stay small and a step's copy is cheap.
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
                // Only the objects whose drift is watched.
                status
                    .objects
                    .retain(|o| drift::WATCHED_KINDS.contains(&o.kind.as_str()));
                status.objects.shrink_to_fit();
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

/// Objects read live in one step, at most: Secrets, and objects missing from their watch.
const LIVE_READS: usize = 64;

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
                    match event {
                        Ok(watcher::Event::Init) => relist = Some(BTreeMap::new()),
                        Ok(watcher::Event::InitApply(m)) => {
                            relist
                                .get_or_insert_default()
                                .insert(key(&m), ObjectState::of(&m));
                        }
                        Ok(watcher::Event::InitDone) => {
                            *w.map.write().unwrap_or_else(|e| e.into_inner()) =
                                relist.take().unwrap_or_default();
                            w.listed.store(true, std::sync::atomic::Ordering::Release);
                            failing = false;
                        }
                        Ok(watcher::Event::Apply(m)) => {
                            w.map
                                .write()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(key(&m), ObjectState::of(&m));
                        }
                        Ok(watcher::Event::Delete(m)) => {
                            w.map
                                .write()
                                .unwrap_or_else(|e| e.into_inner())
                                .remove(&key(&m));
                        }
                        Err(e) => {
                            // A cluster without the CSI driver does not serve
                            // SecretProviderClasses: said once, not on every retry.
                            if !failing {
                                tracing::info!(kind = w.kind, namespace = ?w.namespace, error = %e, "the drift watch failed, retrying");
                            }
                            failing = true;
                            continue;
                        }
                    }
                    trigger.notify_one();
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
    watcher(api, config)
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

//! The controllers kubesim runs in-process: Job (with TTL-after-finished), CronJob, Deployment,
//! ReplicaSet (and ReplicationController), the garbage collector, the namespace controller and the Event mirror (one
//! Event in both Event APIs). Each is a [`Reconciler`]
//! driven by the store's watch stream: an event names the keys to reconcile, a queue
//! deduplicates them, and a reconcile may ask to run again after a delay (real deadlines
//! only: activeDeadlineSeconds, ttlSecondsAfterFinished, backoff). Every write goes through
//! [`Cluster`], so resourceVersions, generation and watch events are those of any client.

pub mod cronjob;
pub mod deployment;
pub mod events;
pub mod gc;
pub mod job;
pub mod namespace;
pub mod replicaset;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cluster::{ApiError, Cluster, DeleteOptions, ListOptions, WriteOptions};
use crate::store::{ObjKey, ResKey, WatchEvent};

/// Settings of the controllers.
#[derive(Clone, Debug, Default)]
pub struct ControllerConfig {
    pub job: job::JobTiming,
}

/// One controller: which keys an event concerns, and how to reconcile one key.
pub trait Reconciler: Send + Sync + 'static {
    /// The component name (field manager, Event source).
    fn name(&self) -> &'static str;
    /// The keys to reconcile because of `ev`.
    fn keys_for(&self, cluster: &Cluster, ev: &WatchEvent) -> Vec<ObjKey>;
    /// Every key to reconcile at start-up (and after missing events).
    fn all_keys(&self, cluster: &Cluster) -> Vec<ObjKey>;
    /// Bring `key` towards its desired state; `Ok(Some(d))` asks for another pass after `d`.
    fn reconcile(&self, cluster: &Cluster, key: &ObjKey) -> Result<Option<Duration>, ApiError>;
}

/// The running controllers; dropping this stops them.
pub struct Controllers {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Controllers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Start every controller on the current tokio runtime.
pub fn start(cluster: Arc<Cluster>, config: ControllerConfig) -> Controllers {
    let reconcilers: Vec<Arc<dyn Reconciler>> = vec![
        Arc::new(job::JobController::new(config.job.clone())),
        Arc::new(cronjob::CronJobController),
        Arc::new(replicaset::ReplicaSetController::replica_sets()),
        Arc::new(replicaset::ReplicaSetController::replication_controllers()),
        Arc::new(deployment::DeploymentController),
        Arc::new(gc::GarbageCollector),
        Arc::new(namespace::NamespaceController),
        Arc::new(events::EventMirror),
    ];
    let tasks = reconcilers
        .into_iter()
        .map(|r| tokio::spawn(run(r, cluster.clone())))
        .collect();
    Controllers { tasks }
}

/// A deduplicating work queue with delayed entries.
#[derive(Default)]
pub struct WorkQueue {
    ready: VecDeque<ObjKey>,
    queued: BTreeSet<ObjKey>,
    delayed: BTreeMap<(Instant, u64), ObjKey>,
    seq: u64,
}

impl WorkQueue {
    pub fn add(&mut self, key: ObjKey) {
        if self.queued.insert(key.clone()) {
            self.ready.push_back(key);
        }
    }

    pub fn add_after(&mut self, key: ObjKey, delay: Duration) {
        self.seq += 1;
        self.delayed.insert((Instant::now() + delay, self.seq), key);
    }

    /// Move due delayed entries to the ready queue; the next due time if any remain.
    fn promote(&mut self) -> Option<Instant> {
        let now = Instant::now();
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                return Some(entry.key().0);
            }
            let key = entry.remove();
            self.add(key);
        }
        None
    }

    fn pop(&mut self) -> Option<ObjKey> {
        let key = self.ready.pop_front()?;
        self.queued.remove(&key);
        Some(key)
    }
}

/// Drive one reconciler until the task is aborted.
pub async fn run(r: Arc<dyn Reconciler>, cluster: Arc<Cluster>) {
    let Ok(sub) = cluster.store().subscribe(None) else {
        return;
    };
    let mut live = sub.live;
    let mut queue = WorkQueue::default();
    for key in r.all_keys(&cluster) {
        queue.add(key);
    }
    let mut failures: BTreeMap<ObjKey, u32> = BTreeMap::new();
    loop {
        // Take every event already delivered before working, so bursts coalesce.
        loop {
            match live.try_recv() {
                Ok(ev) => r
                    .keys_for(&cluster, &ev)
                    .into_iter()
                    .for_each(|k| queue.add(k)),
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {
                    r.all_keys(&cluster).into_iter().for_each(|k| queue.add(k))
                }
                Err(tokio::sync::broadcast::error::TryRecvError::Empty) => break,
                Err(tokio::sync::broadcast::error::TryRecvError::Closed) => return,
            }
        }
        let next_due = queue.promote();
        if let Some(key) = queue.pop() {
            match r.reconcile(&cluster, &key) {
                Ok(again) => {
                    failures.remove(&key);
                    if let Some(d) = again {
                        queue.add_after(key, d);
                    }
                }
                Err(e) => {
                    let n = failures.entry(key.clone()).or_default();
                    *n += 1;
                    let delay = Duration::from_millis(50u64 << (*n).min(7));
                    tracing::debug!(controller = r.name(), ?key, error = %e, "reconcile failed; retrying");
                    queue.add_after(key, delay);
                }
            }
            tokio::task::yield_now().await;
            continue;
        }
        let sleep = async {
            match next_due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = live.recv() => match ev {
                Ok(ev) => r.keys_for(&cluster, &ev).into_iter().for_each(|k| queue.add(k)),
                Err(RecvError::Lagged(_)) => r.all_keys(&cluster).into_iter().for_each(|k| queue.add(k)),
                Err(RecvError::Closed) => return,
            },
            _ = sleep => {}
        }
    }
}

// ---- helpers shared by the controllers ----

pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or("")
}

/// The key of a stored object.
pub(crate) fn key_of(res: &ResKey, obj: &Value) -> ObjKey {
    ObjKey::new(res, meta_str(obj, "namespace"), meta_str(obj, "name"))
}

/// Every key of a collection.
pub(crate) fn all_of(cluster: &Cluster, res: &ResKey) -> Vec<ObjKey> {
    cluster
        .store()
        .list(res, None)
        .0
        .iter()
        .map(|o| key_of(res, o))
        .collect()
}

/// The metadata of a pod made from `owner`'s `spec.template`: the template's metadata without
/// the fields the server sets, with `generateName: <owner>-`.
pub(crate) fn template_pod_meta(owner: &Value) -> Value {
    let mut meta = owner["spec"]["template"]["metadata"].clone();
    if !meta.is_object() {
        meta = json!({});
    }
    for drop in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        meta.as_object_mut().expect("object").remove(drop);
    }
    meta["generateName"] = json!(format!("{}-", meta_str(owner, "name")));
    meta
}

/// Delete the pod `ns/name` that `owner` controls, with a `SuccessfulDelete` Event from
/// `component`; a pod already gone is no error.
pub(crate) fn delete_pod(
    cluster: &Cluster,
    owner: &Value,
    component: &str,
    ns: &str,
    name: &str,
) -> Result<(), ApiError> {
    match cluster.delete(
        &ResKey::new("", "pods"),
        ns,
        name,
        &DeleteOptions::default(),
    ) {
        Ok(_) => record_event(
            cluster,
            owner,
            component,
            false,
            "SuccessfulDelete",
            &format!("Deleted pod: {name}"),
        ),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e),
    }
    Ok(())
}

/// A controller reference to `owner` (controller and blockOwnerDeletion set).
pub fn controller_ref(owner: &Value, api_version: &str, kind: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "name": meta_str(owner, "name"),
        "uid": meta_str(owner, "uid"),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// The uid of `obj`'s controller owner, if any.
pub(crate) fn controller_uid(obj: &Value) -> Option<&str> {
    obj["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .and_then(|r| r["uid"].as_str())
}

/// The controller owner of `obj` if it is of `kind`: its name.
pub(crate) fn controller_of<'a>(obj: &'a Value, kind: &str) -> Option<&'a str> {
    obj["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true && r["kind"] == kind)
        .and_then(|r| r["name"].as_str())
}

/// The objects of `res` in `namespace` whose controller is `owner` (by uid).
pub(crate) fn owned(cluster: &Cluster, res: &ResKey, namespace: &str, owner: &Value) -> Vec<Value> {
    let uid = meta_str(owner, "uid");
    cluster
        .list(res, Some(namespace), &ListOptions::default())
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|o| controller_uid(o) == Some(uid))
        .collect()
}

/// Adopt the objects of `res` in `namespace` that `owner`'s `selector` matches, that have no
/// controller and are not being deleted (and are `eligible`), as the real controllers do (e.g. ReplicaSets left
/// by a Deployment deleted with `--cascade=orphan`, when a Deployment with the same selector
/// comes back). An empty selector adopts nothing.
pub(crate) fn adopt(
    cluster: &Cluster,
    res: &ResKey,
    namespace: &str,
    owner_ref: Value,
    selector: &Value,
    manager: &str,
    eligible: impl Fn(&Value) -> bool,
) -> Result<(), ApiError> {
    let Ok(sel) = crate::selector::LabelSelector::from_json(selector) else {
        return Ok(());
    };
    if sel.is_empty() {
        return Ok(());
    }
    let items = cluster
        .list(res, Some(namespace), &ListOptions::default())?
        .items;
    for o in items {
        if controller_uid(&o).is_some()
            || !o["metadata"]["deletionTimestamp"].is_null()
            || o["metadata"]["uid"] == owner_ref["uid"]
            || !sel.matches(&o)
            || !eligible(&o)
        {
            continue;
        }
        let r = cluster.mutate(res, namespace, meta_str(&o, "name"), manager, |x| {
            if controller_uid(x).is_some() {
                return Ok(());
            }
            match x["metadata"]["ownerReferences"].as_array_mut() {
                Some(list) => list.push(owner_ref.clone()),
                None => x["metadata"]["ownerReferences"] = json!([owner_ref.clone()]),
            }
            Ok(())
        });
        match r {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Record a core/v1 Event about `obj` (as the real components do; `warning` for Warning).
/// A repeat of the same event (object, component, type, reason, message) increments the
/// `count` and `lastTimestamp` of the first one, as the client-go event recorder does.
/// Failures are logged at debug level only: Events are best effort.
pub fn record_event(
    cluster: &Cluster,
    obj: &Value,
    component: &str,
    warning: bool,
    reason: &str,
    message: &str,
) {
    let ns = match meta_str(obj, "namespace") {
        "" => "default",
        ns => ns,
    };
    let kind = if warning { "Warning" } else { "Normal" };
    let now = crate::time::now();
    let res = ResKey::new("", "events");
    let opts = WriteOptions::manager(component);
    // The same event seen before: its name. New events are named `<object>.<nanoseconds in
    // hex>` as client-go names them, so they list in the order they happened.
    let uid = meta_str(obj, "uid");
    let existing = cluster
        .store()
        .list(&res, Some(ns))
        .0
        .into_iter()
        .find(|e| {
            e["involvedObject"]["uid"] == uid
                && e["reason"] == reason
                && e["message"] == message
                && e["type"] == kind
                && e["source"]["component"] == component
        });
    let name = match &existing {
        Some(e) => meta_str(e, "name").to_string(),
        None => format!(
            "{}.{:x}",
            meta_str(obj, "name"),
            jiff::Timestamp::now().as_nanosecond()
        ),
    };
    let bump = |cluster: &Cluster| {
        cluster.mutate(&res, ns, &name, component, |e| {
            e["count"] = json!(e["count"].as_i64().unwrap_or(1) + 1);
            e["lastTimestamp"] = json!(now);
            Ok(())
        })
    };
    let result = if existing.is_some() {
        bump(cluster)
    } else {
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "namespace": obj["metadata"]["namespace"],
                "name": meta_str(obj, "name"),
                "uid": meta_str(obj, "uid"),
                "resourceVersion": meta_str(obj, "resourceVersion"),
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": component},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "eventTime": null,
            "reportingComponent": component,
            "reportingInstance": "",
        });
        cluster.create(&res, ns, event, &opts)
    };
    if let Err(e) = result {
        tracing::debug!(%reason, error = %e, "could not record an event");
    }
}

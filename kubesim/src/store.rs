//! The versioned in-memory object store: one global resourceVersion counter, atomic
//! read-modify-write per object, a bounded event history for watch resumption and a
//! broadcast channel for live watchers. Objects are JSON values; the store stamps
//! `metadata.resourceVersion` on every write and knows nothing else about their shape.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::broadcast;

/// A stored object. Shared, immutable; a write replaces it.
pub type Obj = Arc<Value>;

/// A resource collection: API group ("" for core) and plural resource name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResKey {
    pub group: String,
    pub resource: String,
}

impl ResKey {
    pub fn new(group: &str, resource: &str) -> Self {
        Self {
            group: group.to_string(),
            resource: resource.to_string(),
        }
    }
}

/// One object: its collection, namespace ("" for cluster-scoped) and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjKey {
    pub res: ResKey,
    pub namespace: String,
    pub name: String,
}

impl ObjKey {
    pub fn new(res: &ResKey, namespace: &str, name: &str) -> Self {
        Self {
            res: res.clone(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// A change, as seen by watchers. `prev` is the object before the change (None for Added),
/// so a watcher with a selector can turn a transition into ADDED or DELETED.
#[derive(Debug)]
pub struct WatchEvent {
    pub rv: u64,
    pub kind: EventType,
    pub key: ObjKey,
    pub object: Obj,
    pub prev: Option<Obj>,
    /// `object` as JSON, written once by the first watcher that sends it as it is and shared
    /// by the others (see [`WatchEvent::object_json`]); dropped once the event is
    /// [`JSON_KEPT`] events old, so the history does not keep a second copy of its objects.
    json: Mutex<Option<Arc<str>>>,
}

/// How many of the newest events keep their JSON for watchers still to send them.
const JSON_KEPT: usize = 256;

impl WatchEvent {
    /// `object` serialized as JSON, computed once for every watcher of the event.
    pub fn object_json(&self) -> Arc<str> {
        let mut json = self.json.lock().unwrap_or_else(|e| e.into_inner());
        json.get_or_insert_with(|| {
            Arc::from(serde_json::to_string(&*self.object).expect("a JSON value serializes"))
        })
        .clone()
    }
}

/// What a write closure decides.
pub enum Write {
    /// Store this object (created when absent, replaced when present).
    Put(Value),
    /// Remove the object.
    Delete,
    /// Leave everything as it is (no new resourceVersion, no event).
    Unchanged,
}

/// A resumed watch: the events after the requested version that are still in the history,
/// then the live channel. Both are taken under one lock, so nothing is missed or repeated
/// (events on `live` with `rv <= last_backlog_rv` must be skipped by the reader).
pub struct Subscription {
    pub backlog: Vec<Arc<WatchEvent>>,
    pub live: broadcast::Receiver<Arc<WatchEvent>>,
    /// The store's resourceVersion when the subscription was taken.
    pub rv: u64,
}

/// The requested version is older than the retained history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooOld {
    pub requested: u64,
    pub oldest: u64,
}

struct State {
    rv: u64,
    objects: BTreeMap<ObjKey, Obj>,
    history: VecDeque<Arc<WatchEvent>>,
    /// Every event with rv > compacted is still in `history`.
    compacted: u64,
}

/// The store: objects by key, the event history and the live broadcast channel.
pub struct Store {
    state: Mutex<State>,
    tx: broadcast::Sender<Arc<WatchEvent>>,
    history_limit: usize,
}

impl Default for Store {
    fn default() -> Self {
        Self::new(50_000, 65_536)
    }
}

impl Store {
    /// `history_limit` events are kept for watch resumption; `channel` is the live
    /// broadcast capacity (a watcher that falls further behind gets 410 Expired).
    pub fn new(history_limit: usize, channel: usize) -> Self {
        let (tx, _) = broadcast::channel(channel);
        Self {
            state: Mutex::new(State {
                rv: 1,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                compacted: 1,
            }),
            tx,
            history_limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The newest resourceVersion handed out.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    pub fn get(&self, key: &ObjKey) -> Option<Obj> {
        self.lock().objects.get(key).cloned()
    }

    /// Every object of a collection (in one namespace, or all namespaces when `None`),
    /// ordered by namespace then name, with the resourceVersion of that snapshot.
    pub fn list(&self, res: &ResKey, namespace: Option<&str>) -> (Vec<Obj>, u64) {
        let st = self.lock();
        let items = range(&st.objects, res, namespace)
            .map(|(_, v)| v.clone())
            .collect();
        (items, st.rv)
    }

    /// Like `list`, but only objects whose key sorts after `after` (for continue tokens).
    pub fn list_after(
        &self,
        res: &ResKey,
        namespace: Option<&str>,
        after: Option<&ObjKey>,
    ) -> (Vec<Obj>, u64) {
        let st = self.lock();
        let items = range(&st.objects, res, namespace)
            .filter(|(k, _)| after.is_none_or(|a| *k > a))
            .map(|(_, v)| v.clone())
            .collect();
        (items, st.rv)
    }

    /// Like `list_after`, but the state at resourceVersion `rv` (kube-apiserver's `Exact`
    /// lists and continued pages): the current objects with the newer events of the history
    /// undone. `TooOld` when the history no longer reaches back to `rv`; a future `rv`
    /// answers the current state.
    pub fn list_at(
        &self,
        res: &ResKey,
        namespace: Option<&str>,
        after: Option<&ObjKey>,
        rv: u64,
    ) -> Result<Vec<Obj>, TooOld> {
        let st = self.lock();
        if rv < st.compacted {
            return Err(TooOld {
                requested: rv,
                oldest: st.compacted,
            });
        }
        let mut objects: BTreeMap<&ObjKey, Obj> = range(&st.objects, res, namespace)
            .map(|(k, v)| (k, v.clone()))
            .collect();
        for ev in st.history.iter().rev().take_while(|e| e.rv > rv) {
            if ev.key.res != *res || namespace.is_some_and(|ns| ev.key.namespace != ns) {
                continue;
            }
            match &ev.prev {
                Some(prev) => objects.insert(&ev.key, prev.clone()),
                None => objects.remove(&ev.key),
            };
        }
        Ok(objects
            .into_iter()
            .filter(|(k, _)| after.is_none_or(|a| *k > a))
            .map(|(_, v)| v)
            .collect())
    }

    /// Every object of every collection (for the garbage collector and scans).
    pub fn all(&self) -> Vec<(ObjKey, Obj)> {
        self.lock()
            .objects
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Atomic read-modify-write of one object. The closure sees the current object and
    /// decides; on `Put` the store stamps a new `metadata.resourceVersion` and emits ADDED or
    /// MODIFIED, on `Delete` it emits DELETED (the object carrying the new version).
    /// Returns the stored object (or the deleted one's last state), or `None` for `Unchanged`.
    pub fn write<E>(
        &self,
        key: &ObjKey,
        f: impl FnOnce(Option<&Obj>) -> Result<Write, E>,
    ) -> Result<Option<Obj>, E> {
        let mut st = self.lock();
        let current = st.objects.get(key).cloned();
        let decision = f(current.as_ref())?;
        let (kind, object) = match decision {
            Write::Unchanged => return Ok(None),
            Write::Put(mut v) => {
                st.rv += 1;
                set_rv(&mut v, st.rv);
                let obj = Arc::new(v);
                st.objects.insert(key.clone(), obj.clone());
                (
                    if current.is_some() {
                        EventType::Modified
                    } else {
                        EventType::Added
                    },
                    obj,
                )
            }
            Write::Delete => {
                let Some(cur) = current.as_ref() else {
                    return Ok(None);
                };
                st.rv += 1;
                let mut v = (**cur).clone();
                set_rv(&mut v, st.rv);
                st.objects.remove(key);
                (EventType::Deleted, Arc::new(v))
            }
        };
        let ev = Arc::new(WatchEvent {
            rv: st.rv,
            kind,
            key: key.clone(),
            object: object.clone(),
            prev: current,
            json: Mutex::new(None),
        });
        st.history.push_back(ev.clone());
        if let Some(old) = st.history.len().checked_sub(JSON_KEPT + 1) {
            let old = &st.history[old];
            *old.json.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        while st.history.len() > self.history_limit {
            if let Some(old) = st.history.pop_front() {
                st.compacted = old.rv;
            }
        }
        // No receivers is fine.
        let _ = self.tx.send(ev);
        Ok(Some(object))
    }

    /// Subscribe to changes after `from_rv` (None: from now). Fails with `TooOld` when the
    /// history no longer holds every event after `from_rv`.
    pub fn subscribe(&self, from_rv: Option<u64>) -> Result<Subscription, TooOld> {
        let st = self.lock();
        let live = self.tx.subscribe();
        let backlog = match from_rv {
            None => Vec::new(),
            Some(rv) if rv >= st.rv => Vec::new(),
            Some(rv) if rv < st.compacted => {
                return Err(TooOld {
                    requested: rv,
                    oldest: st.compacted,
                });
            }
            Some(rv) => st.history.iter().filter(|e| e.rv > rv).cloned().collect(),
        };
        Ok(Subscription {
            backlog,
            live,
            rv: st.rv,
        })
    }

    /// Forget the event history up to now (tests use it to force 410 Expired on resume).
    pub fn compact(&self) {
        let mut st = self.lock();
        st.history.clear();
        st.compacted = st.rv;
    }
}

fn range<'a>(
    objects: &'a BTreeMap<ObjKey, Obj>,
    res: &'a ResKey,
    namespace: Option<&'a str>,
) -> impl Iterator<Item = (&'a ObjKey, &'a Obj)> + 'a {
    let start = ObjKey {
        res: res.clone(),
        namespace: namespace.unwrap_or("").to_string(),
        name: String::new(),
    };
    objects
        .range(start..)
        .take_while(move |(k, _)| k.res == *res && namespace.is_none_or(|ns| k.namespace == ns))
}

fn set_rv(v: &mut Value, rv: u64) {
    if let Some(obj) = v.as_object_mut() {
        let meta = obj
            .entry("metadata")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(m) = meta.as_object_mut() {
            m.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(ns: &str, name: &str) -> ObjKey {
        ObjKey::new(&ResKey::new("", "configmaps"), ns, name)
    }

    #[test]
    fn write_stamps_versions_and_lists_in_order() {
        let s = Store::default();
        for (ns, name) in [("b", "x"), ("a", "z"), ("a", "y")] {
            s.write::<()>(&key(ns, name), |_| {
                Ok(Write::Put(json!({"metadata": {"name": name}})))
            })
            .unwrap();
        }
        let (items, rv) = s.list(&ResKey::new("", "configmaps"), None);
        let names: Vec<_> = items
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["y", "z", "x"]);
        assert_eq!(rv, 4);
        let (items, _) = s.list(&ResKey::new("", "configmaps"), Some("a"));
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["metadata"]["resourceVersion"], "4");
        let (items, _) = s.list(&ResKey::new("", "secrets"), None);
        assert!(items.is_empty());
    }

    #[test]
    fn unchanged_emits_nothing_and_delete_bumps_version() {
        let s = Store::default();
        let k = key("a", "x");
        s.write::<()>(&k, |_| Ok(Write::Put(json!({})))).unwrap();
        let sub = s.subscribe(Some(2)).unwrap();
        assert!(
            s.write::<()>(&k, |_| Ok(Write::Unchanged))
                .unwrap()
                .is_none()
        );
        assert_eq!(s.current_rv(), 2);
        let gone = s.write::<()>(&k, |_| Ok(Write::Delete)).unwrap().unwrap();
        assert_eq!(gone["metadata"]["resourceVersion"], "3");
        assert!(s.get(&k).is_none());
        let mut live = sub.live;
        let ev = live.try_recv().unwrap();
        assert_eq!(ev.kind, EventType::Deleted);
        assert!(ev.prev.is_some());
    }

    #[test]
    fn list_at_undoes_newer_events() {
        let s = Store::new(100, 16);
        let res = ResKey::new("", "configmaps");
        let put = |name: &str, v: i64| {
            s.write::<()>(&key("a", name), |_| {
                Ok(Write::Put(json!({"metadata": {"name": name}, "v": v})))
            })
            .unwrap();
        };
        put("x", 1); // rv 2
        put("y", 1); // rv 3
        put("x", 2); // rv 4
        s.write::<()>(&key("a", "y"), |_| Ok(Write::Delete))
            .unwrap(); // rv 5
        put("z", 1); // rv 6
        let at = |rv: u64| -> Vec<(String, i64)> {
            s.list_at(&res, Some("a"), None, rv)
                .unwrap()
                .iter()
                .map(|o| {
                    (
                        o["metadata"]["name"].as_str().unwrap().to_string(),
                        o["v"].as_i64().unwrap(),
                    )
                })
                .collect()
        };
        assert_eq!(at(2), [("x".to_string(), 1)]);
        assert_eq!(at(3), [("x".to_string(), 1), ("y".to_string(), 1)]);
        assert_eq!(at(4), [("x".to_string(), 2), ("y".to_string(), 1)]);
        assert_eq!(at(5), [("x".to_string(), 2)]);
        assert_eq!(at(6), [("x".to_string(), 2), ("z".to_string(), 1)]);
        assert_eq!(
            s.list_at(&res, Some("a"), None, 3).unwrap()[0]["metadata"]["resourceVersion"],
            "2"
        );
        s.compact();
        assert_eq!(
            s.list_at(&res, None, None, 5).err(),
            Some(TooOld {
                requested: 5,
                oldest: 6
            })
        );
        assert_eq!(s.list_at(&res, None, None, 6).unwrap().len(), 2);
    }

    #[test]
    fn subscribe_replays_history_and_reports_compaction() {
        let s = Store::new(2, 16);
        for i in 0..4 {
            s.write::<()>(&key("a", &format!("o{i}")), |_| Ok(Write::Put(json!({}))))
                .unwrap();
        }
        // rv is 5; history holds the events at rv 4 and 5.
        let sub = s.subscribe(Some(3)).unwrap();
        assert_eq!(sub.backlog.iter().map(|e| e.rv).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(
            s.subscribe(Some(2)).err(),
            Some(TooOld {
                requested: 2,
                oldest: 3
            })
        );
        s.compact();
        assert!(s.subscribe(Some(4)).is_err());
        assert!(s.subscribe(Some(5)).unwrap().backlog.is_empty());
    }
}

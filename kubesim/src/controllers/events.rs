//! Events in both APIs: kube-apiserver stores `core/v1` and `events.k8s.io/v1` Events once and
//! serves each in both versions, so an event posted through one API (kube-rs' recorder uses
//! `events.k8s.io/v1`) shows in `kubectl describe` and `kubectl get events` (which read
//! `core/v1`), and the other way round. kubesim keeps the two collections apart and mirrors
//! each Event into the other one, converted field by field; a mirror carries the annotation
//! [`MIRROR_ANNOTATION`] and follows its origin (updates, deletion).

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::Reconciler;
use crate::cluster::{ApiError, Cluster, DeleteOptions, WriteOptions};
use crate::store::{ObjKey, ResKey, WatchEvent};

/// The component name on managedFields.
pub const COMPONENT: &str = "event-mirror";

/// Marks a mirrored Event; its value is the API group of the origin (`core` or
/// `events.k8s.io`).
pub const MIRROR_ANNOTATION: &str = "kubesim.io/mirror-of";

fn core() -> ResKey {
    ResKey::new("", "events")
}

fn events_api() -> ResKey {
    ResKey::new("events.k8s.io", "events")
}

fn is_mirror(obj: &Value) -> bool {
    !obj["metadata"]["annotations"][MIRROR_ANNOTATION].is_null()
}

/// Copies `from[src]` to `to[dst]` when present.
fn copy(from: &Value, src: &str, to: &mut Map<String, Value>, dst: &str) {
    if let Some(v) = from.get(src).filter(|v| !v.is_null()) {
        to.insert(dst.to_string(), v.clone());
    }
}

/// The metadata of a mirror of `origin`: name, namespace, labels, annotations and the mark.
fn mirror_metadata(origin: &Value, group: &str) -> Value {
    let m = &origin["metadata"];
    let mut annotations = m["annotations"].as_object().cloned().unwrap_or_default();
    annotations.insert(MIRROR_ANNOTATION.into(), json!(group));
    let mut meta =
        json!({"name": m["name"], "namespace": m["namespace"], "annotations": annotations});
    if m["labels"].is_object() {
        meta["labels"] = m["labels"].clone();
    }
    meta
}

/// An `events.k8s.io/v1` Event as `core/v1`.
pub fn to_core(e: &Value) -> Value {
    let mut c = Map::new();
    c.insert("apiVersion".into(), json!("v1"));
    c.insert("kind".into(), json!("Event"));
    c.insert("metadata".into(), mirror_metadata(e, "events.k8s.io"));
    copy(e, "regarding", &mut c, "involvedObject");
    copy(e, "related", &mut c, "related");
    copy(e, "reason", &mut c, "reason");
    copy(e, "note", &mut c, "message");
    copy(e, "type", &mut c, "type");
    copy(e, "action", &mut c, "action");
    copy(e, "eventTime", &mut c, "eventTime");
    copy(e, "series", &mut c, "series");
    copy(e, "reportingController", &mut c, "reportingComponent");
    copy(e, "reportingInstance", &mut c, "reportingInstance");
    copy(e, "deprecatedSource", &mut c, "source");
    copy(e, "deprecatedFirstTimestamp", &mut c, "firstTimestamp");
    copy(e, "deprecatedLastTimestamp", &mut c, "lastTimestamp");
    copy(e, "deprecatedCount", &mut c, "count");
    if !c.contains_key("source")
        && let Some(rc) = e["reportingController"].as_str()
    {
        c.insert("source".into(), json!({"component": rc}));
    }
    if !c.contains_key("count")
        && let Some(n) = e["series"]["count"].as_i64()
    {
        c.insert("count".into(), json!(n));
    }
    if !c.contains_key("involvedObject") {
        c.insert("involvedObject".into(), json!({}));
    }
    Value::Object(c)
}

/// A `core/v1` Event as `events.k8s.io/v1`.
pub fn to_events_api(c: &Value) -> Value {
    let mut e = Map::new();
    e.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    e.insert("kind".into(), json!("Event"));
    e.insert("metadata".into(), mirror_metadata(c, "core"));
    copy(c, "involvedObject", &mut e, "regarding");
    copy(c, "related", &mut e, "related");
    copy(c, "reason", &mut e, "reason");
    copy(c, "message", &mut e, "note");
    copy(c, "type", &mut e, "type");
    copy(c, "action", &mut e, "action");
    copy(c, "series", &mut e, "series");
    copy(c, "source", &mut e, "deprecatedSource");
    copy(c, "firstTimestamp", &mut e, "deprecatedFirstTimestamp");
    copy(c, "lastTimestamp", &mut e, "deprecatedLastTimestamp");
    copy(c, "count", &mut e, "deprecatedCount");
    copy(c, "reportingInstance", &mut e, "reportingInstance");
    let controller = c["reportingComponent"]
        .as_str()
        .filter(|s| !s.is_empty())
        .or_else(|| c["source"]["component"].as_str());
    if let Some(rc) = controller {
        e.insert("reportingController".into(), json!(rc));
    }
    // eventTime is required by events.k8s.io/v1; older core events only have timestamps.
    let time = [&c["eventTime"], &c["firstTimestamp"], &c["lastTimestamp"]]
        .into_iter()
        .find(|v| v.is_string())
        .cloned();
    if let Some(t) = time {
        e.insert("eventTime".into(), t);
    }
    Value::Object(e)
}

/// Mirrors every Event into the other API.
pub struct EventMirror;

impl EventMirror {
    fn other(res: &ResKey) -> Option<ResKey> {
        if *res == core() {
            Some(events_api())
        } else if *res == events_api() {
            Some(core())
        } else {
            None
        }
    }
}

/// The fields a mirror holds, without server-set metadata, to compare a mirror with its
/// conversion.
fn content(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
    }
    json!({"body": o, "labels": obj["metadata"]["labels"], "annotations": obj["metadata"]["annotations"]})
}

impl Reconciler for EventMirror {
    fn name(&self) -> &'static str {
        COMPONENT
    }

    fn keys_for(&self, _cluster: &Cluster, ev: &WatchEvent) -> Vec<ObjKey> {
        if Self::other(&ev.key.res).is_some() {
            vec![ev.key.clone()]
        } else {
            Vec::new()
        }
    }

    fn all_keys(&self, cluster: &Cluster) -> Vec<ObjKey> {
        let mut keys = super::all_of(cluster, &core());
        keys.extend(super::all_of(cluster, &events_api()));
        keys
    }

    fn reconcile(&self, cluster: &Cluster, key: &ObjKey) -> Result<Option<Duration>, ApiError> {
        let Some(other) = Self::other(&key.res) else {
            return Ok(None);
        };
        let ns = key.namespace.as_str();
        let name = key.name.as_str();
        let mirror_key = ObjKey::new(&other, ns, name);
        let mirror = cluster.store().get(&mirror_key);
        let Some(origin) = cluster.store().get(key) else {
            // The origin is gone: so goes its mirror (never an Event posted there directly).
            if let Some(m) = mirror
                && is_mirror(&m)
            {
                match cluster.delete(&other, ns, name, &DeleteOptions::default()) {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(None);
        };
        if is_mirror(&origin) {
            return Ok(None);
        }
        let want = if key.res == core() {
            to_events_api(&origin)
        } else {
            to_core(&origin)
        };
        match mirror {
            None => match cluster.create(&other, ns, want, &WriteOptions::manager(COMPONENT)) {
                Ok(_) => Ok(None),
                // Created meanwhile (by a client, or an earlier pass): decided on the next event.
                Err(e) if e.is_conflict() => Ok(None),
                Err(e) => Err(e),
            },
            // An Event of the same name posted to the other API on its own: left alone.
            Some(m) if !is_mirror(&m) => Ok(None),
            Some(m) if content(&m) == content(&want) => Ok(None),
            Some(_) => {
                let r = cluster.mutate(&other, ns, name, COMPONENT, |o| {
                    // Server-set metadata stays; labels, annotations and the body follow.
                    let mut meta = o["metadata"].as_object().cloned().unwrap_or_default();
                    for k in ["labels", "annotations"] {
                        match want["metadata"].get(k) {
                            Some(v) if !v.is_null() => meta.insert(k.into(), v.clone()),
                            _ => meta.remove(k),
                        };
                    }
                    *o = want;
                    o["metadata"] = Value::Object(meta);
                    Ok(())
                });
                match r {
                    Ok(_) => Ok(None),
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_keep_what_kubectl_shows() {
        let e = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "x.1", "namespace": "ns"},
            "regarding": {"kind": "ConfigMap", "name": "sc-requests", "namespace": "ns", "uid": "u"},
            "reason": "JobCreated", "note": "change set 1", "type": "Normal", "action": "RunJob",
            "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "sc-agent",
            "reportingInstance": "sc-agent-0", "series": {"count": 3, "lastObservedTime": "2026-01-01T00:00:09.000000Z"},
        });
        let c = to_core(&e);
        assert_eq!(c["involvedObject"]["name"], "sc-requests");
        assert_eq!(c["message"], "change set 1");
        assert_eq!(c["source"]["component"], "sc-agent");
        assert_eq!(c["reportingComponent"], "sc-agent");
        assert_eq!(c["count"], 3);
        assert_eq!(
            c["metadata"]["annotations"][MIRROR_ANNOTATION],
            "events.k8s.io"
        );

        let back = to_events_api(&json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "y.2", "namespace": "ns"},
            "involvedObject": {"kind": "Job", "name": "sc-job"},
            "reason": "ConnectionFailed", "message": "m", "type": "Warning",
            "source": {"component": "sc-job"}, "firstTimestamp": "2026-01-01T00:00:00Z", "count": 1,
        }));
        assert_eq!(back["regarding"]["name"], "sc-job");
        assert_eq!(back["note"], "m");
        assert_eq!(back["reportingController"], "sc-job");
        assert_eq!(back["eventTime"], "2026-01-01T00:00:00Z");
        assert_eq!(back["deprecatedCount"], 1);
        assert_eq!(back["metadata"]["annotations"][MIRROR_ANNOTATION], "core");
    }
}

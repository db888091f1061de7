//! Drift of what sc-job materialized: `drift.json` in a connection's metadata ConfigMap
//! (written by sc-agent), the request of an operator to run a connection again
//! (`sc-agent reapply`), and what tells a drifted object from an intact one in its metadata.

use crate::reason::RunError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt;

/// The key of a metadata ConfigMap that records drift (written by sc-agent only).
pub const DRIFT_KEY: &str = "drift.json";

/// Annotation on a metadata ConfigMap asking the agent to run the connection again
/// (`sc-agent reapply`): its value is the time of the request. The agent removes it once a
/// change set carries the connection.
pub const REAPPLY_ANNOTATION: &str = "sc-extension.io/reapply";

/// How a materialized object drifted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Change {
    /// The object is gone.
    Deleted,
    /// The object exists without the label `app.kubernetes.io/managed-by: sc-extension`.
    LabelLost,
    /// Another field manager wrote it after sc-job's last apply.
    Written,
    /// A change of another version.
    #[serde(other)]
    Other,
}

/// One drifted object, as the agent saw it (names and field managers only, never a value).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DriftedObject {
    /// The kind (`Secret`, `ServiceAccount`, `SecretProviderClass`).
    pub kind: String,
    /// The namespace.
    #[serde(default)]
    pub namespace: String,
    /// The name.
    pub name: String,
    /// What happened.
    pub change: Change,
    /// The field manager of the write (`Written`), e.g. `kubectl-patch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    /// The time of that write as managedFields record it (`Written`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

impl fmt::Display for DriftedObject {
    /// `secret default/sc-x-secret was written by kubectl-patch`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = crate::ObjectKey::new(&self.kind, &self.namespace, &self.name);
        match self.change {
            Change::Deleted => write!(f, "{key} was deleted"),
            Change::LabelLost => write!(
                f,
                "{key} lost its label {}={}",
                crate::MANAGED_BY_LABEL,
                crate::MANAGED_BY
            ),
            Change::Written => write!(
                f,
                "{key} was written by field manager {}",
                self.manager.as_deref().unwrap_or("(unknown)")
            ),
            Change::Other => write!(f, "{key} changed"),
        }
    }
}

/// `drift.json`: the drift of a connection's objects against the hash applied when it was
/// seen, the repairs started for it and, once they were contested, the error.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Drift {
    /// The applied hash the drift was seen against: a document of another hash is stale.
    #[serde(default)]
    pub hash: String,
    /// The drifted objects as last seen (empty once restored).
    #[serde(default)]
    pub objects: Vec<DriftedObject>,
    /// When the current drift was first seen (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// When repairs were started (seconds since the epoch), the last ones of the window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repairs: Vec<i64>,
    /// Whether a repair waits for a run: set when a repair is planned (and again when the
    /// run of the repair failed while the drift persists), cleared once a change set carries
    /// the connection.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repair_pending: bool,
    /// Set once the repairs were contested (reason `Contested`): no more repairs until the
    /// request changes or `sc-agent reapply`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contested: Option<RunError>,
    /// Fields of other versions, kept as they are.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

impl Drift {
    /// Whether the document says something for `hash`: drifted objects or a contest.
    pub fn is_active_for(&self, hash: &str) -> bool {
        self.hash == hash && (!self.objects.is_empty() || self.contested.is_some())
    }

    /// The contest error when it concerns `hash`.
    pub fn contested_for(&self, hash: &str) -> Option<&RunError> {
        (self.hash == hash)
            .then_some(self.contested.as_ref())
            .flatten()
    }
}

/// What the metadata of a materialized object tells about drift (never its content).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectState {
    /// Whether it carries `app.kubernetes.io/managed-by: sc-extension`.
    pub labelled: bool,
    /// The latest write by a field manager other than sc-job (and sc-agent) after sc-job's
    /// last write: manager and time.
    pub foreign_write: Option<(String, String)>,
}

impl ObjectState {
    /// The state of an object from its labels and managedFields.
    pub fn of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> ObjectState {
        let labelled = meta
            .labels
            .as_ref()
            .and_then(|l| l.get(crate::MANAGED_BY_LABEL))
            .is_some_and(|v| v == crate::MANAGED_BY);
        ObjectState {
            labelled,
            foreign_write: foreign_write(meta.managed_fields.as_deref().unwrap_or_default()),
        }
    }
}

/// The latest write (manager, time) of a manager other than sc-job and sc-agent, made after
/// sc-job's last write or in the same second (the times of managedFields have a resolution
/// of a second), to a field of the kind sc-job writes: data, stringData, type, spec, labels
/// or annotations (a ServiceAccount's `secrets`, written by Kubernetes itself on older
/// clusters, does not count). Writes of the status subresource do not count.
pub fn foreign_write(
    entries: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry],
) -> Option<(String, String)> {
    let time = |e: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry| {
        e.time.as_ref().map(|t| t.0.as_second())
    };
    let main = entries
        .iter()
        .filter(|e| e.subresource.as_deref().unwrap_or_default().is_empty());
    let ours = main
        .clone()
        .filter(|e| e.manager.as_deref() == Some(crate::JOB_FIELD_MANAGER))
        .filter_map(time)
        .max()?;
    let others = main.filter(|e| {
        !matches!(
            e.manager.as_deref(),
            Some(crate::JOB_FIELD_MANAGER) | Some(crate::FIELD_MANAGER) | None
        )
    });
    let described = |e: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry| {
        (
            e.manager.clone().unwrap_or_default(),
            e.time.as_ref().map(|t| t.0.to_string()).unwrap_or_default(),
        )
    };
    let later = others
        .clone()
        .filter(|e| writes_our_fields(e.fields_v1.as_ref()))
        .filter_map(|e| Some((time(e)?, e)))
        .filter(|(t, _)| *t >= ours)
        .max_by_key(|(t, _)| *t)
        .map(|(_, e)| described(e));
    // A key of `data` another manager wrote and sc-job no longer owns stays drifted after
    // sc-job's later writes: an apply leaves a field of another owner in place.
    later.or_else(|| {
        let stray = foreign_data_keys(entries);
        others
            .filter(|e| owned_data_keys(e).any(|k| stray.contains(k)))
            .max_by_key(|e| time(e))
            .map(described)
    })
}

/// The keys of a Secret's `data` that a field manager other than sc-job (and sc-agent) owns
/// and sc-job does not: values another writer added or changed since sc-job wrote them. A
/// forced apply of sc-job takes back the keys it applies; the others stay until removed.
pub fn foreign_data_keys(
    entries: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry],
) -> BTreeSet<String> {
    let main = entries
        .iter()
        .filter(|e| e.subresource.as_deref().unwrap_or_default().is_empty());
    let ours: BTreeSet<&str> = main
        .clone()
        .filter(|e| e.manager.as_deref() == Some(crate::JOB_FIELD_MANAGER))
        .flat_map(owned_data_keys)
        .collect();
    main.filter(|e| {
        !matches!(
            e.manager.as_deref(),
            Some(crate::JOB_FIELD_MANAGER) | Some(crate::FIELD_MANAGER) | None
        )
    })
    .flat_map(owned_data_keys)
    .filter(|k| !ours.contains(k))
    .map(str::to_string)
    .collect()
}

/// The keys of `data` a managedFields entry owns.
fn owned_data_keys(
    e: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry,
) -> impl Iterator<Item = &str> + '_ {
    e.fields_v1
        .as_ref()
        .and_then(|f| f.0.get("f:data"))
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.keys())
        .filter_map(|k| k.strip_prefix("f:"))
}

/// Whether a managedFields entry owns fields of the kind sc-job writes.
fn writes_our_fields(
    fields: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1>,
) -> bool {
    let Some(Value::Object(top)) = fields.map(|f| &f.0) else {
        return false;
    };
    ["f:data", "f:stringData", "f:type", "f:spec"]
        .iter()
        .any(|k| top.contains_key(*k))
        || top
            .get("f:metadata")
            .and_then(Value::as_object)
            .is_some_and(|m| m.contains_key("f:labels") || m.contains_key("f:annotations"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn drift_documents_round_trip_and_other_versions_parse() {
        let d = Drift {
            hash: "h".into(),
            objects: vec![DriftedObject {
                kind: "Secret".into(),
                namespace: "default".into(),
                name: "sc-a-secret".into(),
                change: Change::Written,
                manager: Some("kubectl-patch".into()),
                at: Some("2026-01-01T00:00:00Z".into()),
            }],
            since: Some(10),
            repairs: vec![10],
            ..Default::default()
        };
        let text = serde_json::to_string(&d).unwrap();
        assert_eq!(
            text,
            r#"{"hash":"h","objects":[{"kind":"Secret","namespace":"default","name":"sc-a-secret","change":"written","manager":"kubectl-patch","at":"2026-01-01T00:00:00Z"}],"since":10,"repairs":[10]}"#
        );
        assert_eq!(serde_json::from_str::<Drift>(&text).unwrap(), d);
        assert!(d.is_active_for("h") && !d.is_active_for("g"));
        assert_eq!(
            d.objects[0].to_string(),
            "secret default/sc-a-secret was written by field manager kubectl-patch"
        );
        let other: Drift = serde_json::from_str(
            r#"{"hash":"h","objects":[{"kind":"Secret","name":"x","change":"renamed"}],"level":3}"#,
        )
        .unwrap();
        assert_eq!(other.objects[0].change, Change::Other);
        assert_eq!(other.extra["level"], 3);
        assert_eq!(
            serde_json::from_str::<Drift>("{}").unwrap(),
            Drift::default()
        );
    }

    fn entry(manager: &str, time: &str, subresource: Option<&str>) -> Value {
        let mut e = json!({"manager": manager, "operation": "Update", "time": time,
                           "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:KEY": {}}}});
        if let Some(s) = subresource {
            e["subresource"] = json!(s);
        }
        e
    }

    fn state(labels: Value, entries: Vec<Value>) -> ObjectState {
        let meta =
            serde_json::from_value(json!({"labels": labels, "managedFields": entries})).unwrap();
        ObjectState::of(&meta)
    }

    #[test]
    fn a_key_another_manager_wrote_and_sc_job_no_longer_applies_stays_a_foreign_write() {
        let ours = json!({"app.kubernetes.io/managed-by": "sc-extension"});
        let mut vandal = entry("vandal", "2026-01-01T00:00:00Z", None);
        vandal["fieldsV1"] = json!({"f:data": {"f:OLD": {}}});
        let mut job = entry("sc-job", "2026-01-01T00:00:09Z", None);
        job["fieldsV1"] = json!({"f:data": {"f:KEY": {}}, "f:metadata": {"f:labels": {}}});
        let entries: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry> =
            serde_json::from_value(json!([vandal, job])).unwrap();
        assert_eq!(
            foreign_data_keys(&entries),
            BTreeSet::from(["OLD".to_string()])
        );
        let s = state(ours.clone(), vec![vandal.clone(), job.clone()]);
        assert_eq!(
            s.foreign_write,
            Some(("vandal".into(), "2026-01-01T00:00:00Z".into()))
        );
        // Once sc-job owns the key as well (the same value applied again), it is not stray.
        job["fieldsV1"]["f:data"]["f:OLD"] = json!({});
        let s = state(ours, vec![vandal, job]);
        assert_eq!(s.foreign_write, None);
    }

    #[test]
    fn a_later_write_of_another_manager_is_a_foreign_write() {
        let ours = json!({"app.kubernetes.io/managed-by": "sc-extension"});
        let s = state(
            ours.clone(),
            vec![
                entry("sc-job", "2026-01-01T00:00:00Z", None),
                entry("kubectl-patch", "2026-01-01T00:00:05Z", None),
                entry("kubectl-edit", "2026-01-01T00:00:03Z", None),
            ],
        );
        assert!(s.labelled);
        assert_eq!(
            s.foreign_write,
            Some(("kubectl-patch".into(), "2026-01-01T00:00:05Z".into()))
        );
        // Earlier writes, writes of a subresource, of the agent, of fields sc-job does not
        // write: none.
        let mut token = entry("kube-controller-manager", "2026-01-01T00:00:09Z", None);
        token["fieldsV1"] = json!({"f:secrets": {}});
        let s = state(
            ours.clone(),
            vec![
                entry("kubectl-patch", "2026-01-01T00:00:00Z", None),
                entry("sc-job", "2026-01-01T00:00:05Z", None),
                entry("kubelet", "2026-01-01T00:00:09Z", Some("status")),
                entry("sc-agent", "2026-01-01T00:00:09Z", None),
                token,
            ],
        );
        assert_eq!(s.foreign_write, None);
        // A write in the same second as sc-job's counts (the times cannot tell them apart).
        let s = state(
            ours,
            vec![
                entry("sc-job", "2026-01-01T00:00:05Z", None),
                entry("kubectl-patch", "2026-01-01T00:00:05Z", None),
            ],
        );
        assert_eq!(
            s.foreign_write,
            Some(("kubectl-patch".into(), "2026-01-01T00:00:05Z".into()))
        );
        // Not written by sc-job at all: nothing to compare with.
        let s = state(
            json!({"app.kubernetes.io/managed-by": "helm"}),
            vec![entry("kubectl-patch", "2026-01-01T00:00:00Z", None)],
        );
        assert!(!s.labelled);
        assert_eq!(s.foreign_write, None);
    }
}

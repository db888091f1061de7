//! Recording each connection's result in its metadata ConfigMap: `status.json` and the
//! `journal.json` entry in one update with optimistic concurrency (field manager `sc-job`).

use crate::api::{Kube, is_transient};
use crate::failure::Failure;
use crate::log::{ObjRef, now};
use crate::materialize::{ConnRun, Phase};
use sc_model::names;
use sc_model::render::{CONNECTION_ANNOTATION, CONNECTION_LABEL, MANAGED_BY};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The labels of every metadata ConfigMap (as sc-agent selects them).
pub const METADATA_SELECTOR: &str =
    "app.kubernetes.io/managed-by=sc-extension,app.kubernetes.io/component=connection";

/// Runs kept in `journal.json`.
pub const JOURNAL_LENGTH: usize = 10;

/// Where and for which run results are recorded.
pub struct Recorder<'a> {
    /// The API.
    pub kube: &'a Kube,
    /// The release namespace (the metadata ConfigMaps live there).
    pub namespace: String,
    /// `<namespace>/<job name>`.
    pub job: String,
    /// The change set id.
    pub changeset: String,
    /// The change set revision.
    pub revision: u64,
    /// The request ConfigMap (`name`, `uid`) the metadata is owned by, when it exists.
    pub owner: Option<(String, String)>,
    /// The metadata ConfigMaps by name, listed once at the start; `None` when the list
    /// failed, and each connection's is read on its own.
    pub listed: Option<BTreeMap<String, Value>>,
}

/// The `status.json` document of a run. `previous` is the status recorded before, whose
/// `appliedHash` stays when this run did not apply.
pub fn status_document(
    run: &ConnRun,
    revision: u64,
    changeset: &str,
    previous: &Value,
    time: &str,
) -> Value {
    let applied_hash = match run.phase {
        Phase::Ready => run
            .applied_hash
            .clone()
            .map(Value::from)
            .unwrap_or(Value::Null),
        Phase::Deleted => Value::Null,
        Phase::Failed => previous.get("appliedHash").cloned().unwrap_or(Value::Null),
    };
    let mut objects = json!(run.objects);
    if run.phase == Phase::Failed {
        // A failed run leaves in place what earlier runs recorded and what it wrote before the
        // failure: keep both, so that a later removal or prune finds every object.
        let mut all = previous["objects"].as_array().cloned().unwrap_or_default();
        for o in objects.as_array().into_iter().flatten() {
            if !all.contains(o) {
                all.push(o.clone());
            }
        }
        objects = Value::Array(all);
    }
    let mut doc = json!({
        "phase": run.phase,
        "hash": run.hash,
        "appliedHash": applied_hash,
        "revision": revision,
        "changeset": changeset,
        "objects": objects,
        "error": run.error,
        "time": time,
    });
    if let Some(p) = run.deletion_policy {
        doc["deletionPolicy"] = json!(p.as_str());
    }
    doc
}

/// `journal` (a JSON array, or anything else when absent or unreadable) with `entry` appended,
/// keeping the last [`JOURNAL_LENGTH`] entries.
pub fn append_journal(journal: Option<&str>, entry: Value) -> Value {
    let mut runs: Vec<Value> = journal
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    runs.push(entry);
    let skip = runs.len().saturating_sub(JOURNAL_LENGTH);
    Value::Array(runs.into_iter().skip(skip).collect())
}

impl Recorder<'_> {
    /// The metadata ConfigMap of `connection`, if it exists: from the list read at the start,
    /// else (not listed, e.g. it lost its labels, or no list) read now.
    pub async fn metadata(&self, connection: &str) -> Result<Option<Value>, Failure> {
        let name = names::metadata_config_map_name(connection);
        if let Some(cm) = self.listed.as_ref().and_then(|l| l.get(&name)) {
            return Ok(Some(cm.clone()));
        }
        self.fetch(&name).await
    }

    async fn fetch(&self, name: &str) -> Result<Option<Value>, Failure> {
        let r = ObjRef::new("ConfigMap", &self.namespace, name);
        self.kube
            .get("ConfigMap", &self.namespace, name)
            .await
            .map_err(|e| Failure::api("get", &r, &e))
    }

    /// Records `run`: its journal entry and `status.json` in one write of the metadata
    /// ConfigMap, conditional on the `resourceVersion` read (a conflict reads it again), so a
    /// status is never recorded without its entry and no concurrent write is lost.
    pub async fn record(&self, run: &ConnRun) -> Result<(), Failure> {
        let name = names::metadata_config_map_name(&run.name);
        let r = ObjRef::new("ConfigMap", &self.namespace, &name);
        let time = now();
        let entry = json!({
            "time": time,
            "job": self.job,
            "changeset": self.changeset,
            "revision": self.revision,
            "action": match run.action { crate::inputs::Action::Apply => "apply", crate::inputs::Action::Delete => "delete" },
            "hash": run.hash,
            "result": run.phase,
            "steps": run.steps,
            "error": run.error,
        });
        let mut live = self.metadata(&run.name).await?;
        let mut last_err = String::new();
        for _ in 0..8 {
            let Some(mut cm) = live.take() else {
                if run.phase == Phase::Deleted {
                    // The agent already removed the metadata of this deleted connection (an
                    // earlier run recorded it Deleted): nothing is left to record.
                    return Ok(());
                }
                // No metadata yet (sc-job run without the agent): create it.
                let status =
                    status_document(run, self.revision, &self.changeset, &Value::Null, &time);
                let mut cm = self.skeleton(&name, &run.name);
                cm["data"] = json!({
                    "status.json": status.to_string(),
                    "journal.json": append_journal(None, entry.clone()).to_string(),
                });
                match self.kube.create("ConfigMap", &self.namespace, &cm).await {
                    Ok(_) => return Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        last_err = s.message.clone();
                        live = self.fetch(&name).await?;
                        continue;
                    }
                    Err(e) => return Err(Failure::api("create", &r, &e)),
                }
            };
            let previous = cm["data"]["status.json"]
                .as_str()
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or(Value::Null);
            let status = status_document(run, self.revision, &self.changeset, &previous, &time);
            let journal = append_journal(cm["data"]["journal.json"].as_str(), entry.clone());
            if !cm["data"].is_object() {
                cm["data"] = json!({});
            }
            cm["data"]["status.json"] = Value::String(status.to_string());
            cm["data"]["journal.json"] = Value::String(journal.to_string());
            self.complete_metadata(&mut cm, &run.name);
            match self
                .kube
                .replace("ConfigMap", &self.namespace, &name, &cm)
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    if run.phase == Phase::Deleted {
                        return Ok(());
                    }
                    last_err = s.message.clone();
                }
                Err(e) if is_transient(&e) => last_err = e.to_string(),
                Err(e) => return Err(Failure::api("update", &r, &e)),
            }
            live = self.fetch(&name).await?;
        }
        Err(Failure::new(
            "Conflict",
            format!("recording the result in {r} kept failing: {last_err}"),
            "run the change again",
        ))
    }

    /// A metadata ConfigMap with its labels, annotation and owner reference, and no data.
    fn skeleton(&self, name: &str, connection: &str) -> Value {
        let mut cm = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {
                    "app.kubernetes.io/managed-by": MANAGED_BY,
                    "app.kubernetes.io/part-of": MANAGED_BY,
                    "app.kubernetes.io/component": "connection",
                    CONNECTION_LABEL: names::connection_label_value(connection),
                },
                "annotations": {CONNECTION_ANNOTATION: connection},
            },
        });
        if let Some((owner, uid)) = &self.owner {
            cm["metadata"]["ownerReferences"] = json!([{
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": owner,
                "uid": uid,
            }]);
        }
        cm
    }

    /// Adds what the skeleton has and `cm` lacks (labels, annotation, owner reference);
    /// keeps everything else as read, managed fields included.
    fn complete_metadata(&self, cm: &mut Value, connection: &str) {
        let skeleton = self.skeleton(
            cm["metadata"]["name"].as_str().unwrap_or_default(),
            connection,
        );
        for key in ["labels", "annotations"] {
            if !cm["metadata"][key].is_object() {
                cm["metadata"][key] = json!({});
            }
            for (k, v) in skeleton["metadata"][key].as_object().into_iter().flatten() {
                if cm["metadata"][key].get(k).is_none() {
                    cm["metadata"][key][k] = v.clone();
                }
            }
        }
        let has_owner = cm["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
        if !has_owner && !skeleton["metadata"]["ownerReferences"].is_null() {
            cm["metadata"]["ownerReferences"] = skeleton["metadata"]["ownerReferences"].clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::{Action, Entry};

    #[test]
    fn journal_keeps_the_last_runs() {
        let mut j = append_journal(None, json!(0));
        for i in 1..15 {
            j = append_journal(Some(&j.to_string()), json!(i));
        }
        let a = j.as_array().unwrap();
        assert_eq!(a.len(), JOURNAL_LENGTH);
        assert_eq!(a[0], json!(5));
        assert_eq!(a[9], json!(14));
        assert_eq!(append_journal(Some("not json"), json!(1)), json!([1]));
    }

    #[test]
    fn a_failure_keeps_the_previous_applied_hash() {
        let entry = Entry {
            name: "c".into(),
            hash: "h2".into(),
            action: Action::Apply,
        };
        let mut run = ConnRun::new(&entry);
        run.error = Some(Failure::new("X", "m", "r"));
        let doc = status_document(&run, 4, "id", &json!({"appliedHash": "h1"}), "t");
        assert_eq!(doc["phase"], "Failed");
        assert_eq!(doc["appliedHash"], "h1");
        assert_eq!(doc["hash"], "h2");
        assert_eq!(doc["error"]["reason"], "X");
        run.phase = Phase::Ready;
        run.error = None;
        run.applied_hash = Some("h2".into());
        let doc = status_document(&run, 4, "id", &json!({"appliedHash": "h1"}), "t");
        assert_eq!(doc["appliedHash"], "h2");
        assert_eq!(doc["error"], Value::Null);
    }

    #[test]
    fn a_failure_keeps_the_objects_recorded_before_and_those_it_wrote() {
        let entry = Entry {
            name: "c".into(),
            hash: "h2".into(),
            action: Action::Delete,
        };
        let sa = json!({"kind": "ServiceAccount", "namespace": "apps", "name": "sc-account-x"});
        let secret = json!({"kind": "Secret", "namespace": "apps", "name": "sc-c-secret"});
        let previous = json!({"appliedHash": "h1", "objects": [secret, sa]});
        let mut run = ConnRun::new(&entry);
        run.error = Some(Failure::new("ApiError", "m", "r"));
        let doc = status_document(&run, 4, "id", &previous, "t");
        assert_eq!(doc["objects"], json!([secret, sa]));
        run.objects
            .push(ObjRef::new("SecretProviderClass", "apps", "sc-c-spc"));
        let doc = status_document(&run, 4, "id", &previous, "t");
        assert_eq!(doc["objects"].as_array().unwrap().len(), 3);
        // A run that succeeded records only what it wrote.
        run.phase = Phase::Deleted;
        run.error = None;
        let doc = status_document(&run, 4, "id", &previous, "t");
        assert_eq!(doc["objects"].as_array().unwrap().len(), 1);
    }
}

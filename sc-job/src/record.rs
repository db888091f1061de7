//! Recording each connection's result in its metadata ConfigMap: `status.json` by server-side
//! apply (field manager `sc-job`), `journal.json` appended with optimistic concurrency.

use crate::api::{Kube, is_transient};
use crate::failure::Failure;
use crate::log::{ObjRef, now};
use crate::materialize::{ConnRun, Phase};
use sc_model::names;
use sc_model::render::{CONNECTION_ANNOTATION, CONNECTION_LABEL, MANAGED_BY};
use serde_json::{Value, json};

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
    /// The metadata ConfigMap of `connection`, if it exists.
    pub async fn metadata(&self, connection: &str) -> Result<Option<Value>, Failure> {
        let name = names::metadata_config_map_name(connection);
        let r = ObjRef::new("ConfigMap", &self.namespace, &name);
        self.kube
            .get("ConfigMap", &self.namespace, &name)
            .await
            .map_err(|e| Failure::api("get", &r, &e))
    }

    /// Records `run`: the journal entry, then `status.json`. In that order, a run cut short
    /// between the two writes (sc-job killed, an API error) leaves its entry in the journal and
    /// the status as it was, so the connection is run again: never a status without its entry.
    pub async fn record(&self, run: &ConnRun) -> Result<(), Failure> {
        let name = names::metadata_config_map_name(&run.name);
        let r = ObjRef::new("ConfigMap", &self.namespace, &name);
        let previous = self
            .metadata(&run.name)
            .await?
            .and_then(|cm| {
                cm["data"]["status.json"]
                    .as_str()
                    .and_then(|t| serde_json::from_str(t).ok())
            })
            .unwrap_or(Value::Null);
        let time = now();
        let status = status_document(run, self.revision, &self.changeset, &previous, &time);
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
                    CONNECTION_LABEL: names::connection_label_value(&run.name),
                },
                "annotations": {CONNECTION_ANNOTATION: run.name},
            },
            "data": {"status.json": status.to_string()},
        });
        if let Some((owner, uid)) = &self.owner {
            cm["metadata"]["ownerReferences"] = json!([{
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": owner,
                "uid": uid,
            }]);
        }
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
        let mut last_err = None;
        let mut recorded = false;
        let mut status_written = false;
        for _ in 0..8 {
            let live = match self.metadata(&run.name).await {
                Ok(live) => live,
                Err(f) => {
                    last_err = Some(f.to_string());
                    continue;
                }
            };
            let Some(mut live) = live else {
                if run.phase == Phase::Deleted {
                    // The agent already removed the metadata of this deleted connection (an
                    // earlier run recorded it Deleted): nothing is left to record.
                    return Ok(());
                }
                if status_written {
                    return Err(Failure::new(
                        "NotFound",
                        format!("{r} disappeared while recording the journal"),
                        "run the change again",
                    ));
                }
                // No metadata yet (sc-job run without the agent): the status creates it.
                self.kube
                    .apply("ConfigMap", &self.namespace, &name, &cm)
                    .await
                    .map_err(|e| Failure::api("apply", &r, &e))?;
                status_written = true;
                continue;
            };
            let journal = append_journal(live["data"]["journal.json"].as_str(), entry.clone());
            live["data"]["journal.json"] = Value::String(journal.to_string());
            match self
                .kube
                .replace("ConfigMap", &self.namespace, &name, &live)
                .await
            {
                Ok(_) => {
                    recorded = true;
                    break;
                }
                Err(e) if is_transient(&e) => last_err = Some(e.to_string()),
                Err(kube::Error::Api(s)) if s.code == 404 && run.phase == Phase::Deleted => {
                    return Ok(());
                }
                Err(e) => return Err(Failure::api("update", &r, &e)),
            }
        }
        if !recorded {
            return Err(Failure::new(
                "Conflict",
                format!(
                    "updating the journal of {r} kept failing: {}",
                    last_err.unwrap_or_default()
                ),
                "run the change again",
            ));
        }
        if status_written {
            return Ok(());
        }
        self.kube
            .apply("ConfigMap", &self.namespace, &name, &cm)
            .await
            .map_err(|e| Failure::api("apply", &r, &e))?;
        Ok(())
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

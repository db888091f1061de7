//! Recording each connection's result in its metadata ConfigMap: `spec.json` and
//! `requested.json` (what was requested), `status.json` and the `journal.json` entry in one
//! write with optimistic concurrency (field manager `sc-job`): an update of the ConfigMap, or
//! its creation when no run has recorded the connection yet.

use crate::api::{Kube, is_transient};
use crate::failure;
use crate::log::now;
use crate::materialize::ConnRun;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use sc_contract::{
    Action, JOURNAL_KEY, JournalEntry, ObjectKey, REQUESTED_KEY, Reason, Requested, RunError,
    RunPhase, SPEC_KEY, STATUS_KEY, Status, append_journal, metadata_labels, metadata_name,
    requested_document,
};
use sc_model::render::CONNECTION_ANNOTATION;
use std::collections::BTreeMap;

/// Where and for which run results are recorded.
pub struct ResultRecorder<'a> {
    /// The API.
    pub kube: &'a Kube,
    /// The release namespace (the metadata ConfigMaps live there).
    pub namespace: String,
    /// `<namespace>/<job name>`.
    pub job: String,
    /// The change set id.
    pub changeset: String,
    /// The change set revision.
    pub revision: i64,
    /// The request ConfigMap (`name`, `uid`) the metadata is owned by, when it exists.
    pub owner: Option<(String, String)>,
    /// The metadata ConfigMaps by name, listed once at the start; `None` when the list
    /// failed, and each connection's is read on its own.
    pub listed: Option<BTreeMap<String, ConfigMap>>,
    /// What is requested of each connection the change set applies and the requests name:
    /// recorded with its result.
    pub requested: BTreeMap<String, RequestedSpec>,
    /// The metadata ConfigMaps this run created ahead of applying their connection
    /// ([`Self::write_ahead`]), by name.
    pub created: std::sync::Mutex<BTreeMap<String, ConfigMap>>,
}

/// What is requested of a connection, as recorded in `spec.json` and `requested.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedSpec {
    /// The text of `spec.json` (`sc_contract::spec_text`).
    pub spec: String,
    /// The content hash of the request.
    pub hash: String,
    /// The revision of the requests it was read from: `requested.json` takes it when its
    /// hash is new.
    pub revision: i64,
}

/// Puts `spec.json` and `requested.json` of `requested` into `data` (a metadata ConfigMap's,
/// as read): the revision of `requested.json` stays when the hash it records is the same.
pub fn put_requested(data: &mut BTreeMap<String, String>, requested: &RequestedSpec) {
    let existing: Option<Requested> = data
        .get(REQUESTED_KEY)
        .and_then(|t| serde_json::from_str(t).ok());
    let document = requested_document(&requested.hash, requested.revision, existing.as_ref());
    data.insert(SPEC_KEY.into(), requested.spec.clone());
    data.insert(REQUESTED_KEY.into(), to_json(&document));
}

/// The `status.json` of a run. `previous` is the status recorded before, whose
/// `appliedHash` stays when this run did not apply.
pub fn status_document(
    run: &ConnRun,
    revision: i64,
    changeset: &str,
    previous: Option<&Status>,
    time: &str,
) -> Status {
    let applied_hash = match run.phase {
        RunPhase::Ready => run.applied_hash.clone(),
        RunPhase::Failed => previous.and_then(|p| p.applied_hash.clone()),
        RunPhase::Deleted | RunPhase::Other(_) => None,
    };
    let mut objects = run.objects.clone();
    if run.phase == RunPhase::Failed {
        // A failed run leaves in place what earlier runs recorded and what it wrote before the
        // failure: keep both, so that a later removal or prune finds every object.
        let mut all = previous.map(|p| p.objects.clone()).unwrap_or_default();
        for o in objects {
            if !all.contains(&o) {
                all.push(o);
            }
        }
        objects = all;
    }
    Status {
        phase: run.phase.clone(),
        hash: Some(run.hash.clone()),
        applied_hash,
        revision: Some(revision),
        changeset: Some(changeset.to_string()),
        objects,
        error: run.error.clone(),
        time: Some(time.to_string()),
        deletion_policy: run.deletion_policy,
    }
}

/// A ConfigMap read through the untyped API; one that does not parse reads as absent.
fn typed(obj: Option<serde_json::Value>) -> Option<ConfigMap> {
    obj.and_then(|o| serde_json::from_value(o).ok())
}

impl ResultRecorder<'_> {
    /// The metadata ConfigMap of `connection`, if it exists: from the list read at the start
    /// (a connection no run has recorded has none: not read again one by one), else (no list)
    /// read now. One that lost its labels is missing from the list: [`Self::record`]'s create
    /// then conflicts, and it is read and updated.
    pub async fn metadata(&self, connection: &str) -> Result<Option<ConfigMap>, RunError> {
        let name = metadata_name(connection);
        let created = self
            .created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&name)
            .cloned();
        if created.is_some() {
            return Ok(created);
        }
        if let Some(listed) = &self.listed {
            return Ok(listed.get(&name).cloned());
        }
        self.fetch(&name).await
    }

    async fn fetch(&self, name: &str) -> Result<Option<ConfigMap>, RunError> {
        let r = ObjectKey::new("ConfigMap", &self.namespace, name);
        self.kube
            .get("ConfigMap", &self.namespace, name)
            .await
            .map(typed)
            .map_err(|e| failure::api_error("get", &r, &e))
    }

    /// Writes what is requested of `connection` (`spec.json`, `requested.json`) into a new
    /// metadata ConfigMap before anything of it is applied, when no run has recorded it yet
    /// and its `deletionPolicy` is `Delete`: an object that a removal must delete is never
    /// written without a record naming it, so a connection removed after a run was killed
    /// mid-way is still known (its deletion policy and namespace) and removed. Costs one write
    /// per such connection seen for the first time; a connection already recorded costs none,
    /// and neither does one with `Retain` (its removal keeps its objects, recorded or not, so
    /// its first record is created with its result). An existing ConfigMap (one that lost its
    /// labels) is left to [`Self::record`].
    pub async fn write_ahead(&self, connection: &str) -> Result<(), RunError> {
        let Some(requested) = self.requested.get(connection) else {
            return Ok(());
        };
        let name = metadata_name(connection);
        let r = ObjectKey::new("ConfigMap", &self.namespace, &name);
        let mut cm = ConfigMap::default();
        put_requested(cm.data.get_or_insert_default(), requested);
        self.complete_metadata(&mut cm, &name, connection);
        let obj = serde_json::to_value(&cm).unwrap_or_default();
        match self.kube.create("ConfigMap", &self.namespace, &obj).await {
            Ok(written) => {
                // The answer holds the metadata (its resourceVersion); the data is as sent.
                let mut created = obj;
                created["metadata"] = written["metadata"].clone();
                if let Some(created) = typed(Some(created)) {
                    self.created
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(name, created);
                }
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(failure::api_error("create", &r, &e)),
        }
    }

    /// Records `run`: its journal entry and `status.json` in one write of the metadata
    /// ConfigMap, conditional on the `resourceVersion` read (a conflict reads it again), so a
    /// status is never recorded without its entry and no concurrent write is lost.
    pub async fn record(&self, run: &ConnRun) -> Result<(), RunError> {
        let name = metadata_name(&run.name);
        let r = ObjectKey::new("ConfigMap", &self.namespace, &name);
        let time = now();
        let entry = JournalEntry {
            time: time.clone(),
            job: self.job.clone(),
            changeset: self.changeset.clone(),
            revision: Some(self.revision),
            action: Some(run.action),
            hash: Some(run.hash.clone()),
            result: run.phase.clone(),
            steps: run.steps.clone(),
            error: run.error.clone(),
            extra: Default::default(),
        };
        let mut live = self.metadata(&run.name).await?;
        let mut last_err = String::new();
        for _ in 0..8 {
            let creating = live.is_none();
            if creating && run.phase == RunPhase::Deleted {
                // The agent already removed the metadata of this deleted connection (an
                // earlier run recorded it Deleted): nothing is left to record.
                return Ok(());
            }
            // No run has recorded the connection yet: create its metadata.
            let mut cm = live.take().unwrap_or_default();
            let data = cm.data.get_or_insert_default();
            let previous: Option<Status> = data
                .get(STATUS_KEY)
                .and_then(|t| serde_json::from_str(t).ok());
            let status = status_document(
                run,
                self.revision,
                &self.changeset,
                previous.as_ref(),
                &time,
            );
            let journal = append_journal(data.get(JOURNAL_KEY).map(String::as_str), entry.clone());
            data.insert(STATUS_KEY.into(), to_json(&status));
            data.insert(JOURNAL_KEY.into(), to_json(&journal));
            if run.action == Action::Apply
                && let Some(requested) = self.requested.get(&run.name)
            {
                put_requested(data, requested);
            }
            self.complete_metadata(&mut cm, &name, &run.name);
            let obj = serde_json::to_value(&cm).unwrap_or_default();
            let written = if creating {
                self.kube.create("ConfigMap", &self.namespace, &obj).await
            } else {
                self.kube
                    .replace("ConfigMap", &self.namespace, &name, &obj)
                    .await
            };
            match written {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if creating && s.code == 409 => {
                    last_err = s.message.clone()
                }
                Err(e) if creating => return Err(failure::api_error("create", &r, &e)),
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    if run.phase == RunPhase::Deleted {
                        return Ok(());
                    }
                    last_err = s.message.clone();
                }
                Err(e) if is_transient(&e) => last_err = e.to_string(),
                Err(e) => return Err(failure::api_error("update", &r, &e)),
            }
            live = self.fetch(&name).await?;
        }
        Err(RunError::of(
            Reason::Conflict,
            format!("recording the result in {r} kept failing: {last_err}"),
        ))
    }

    /// Gives `cm` what a metadata ConfigMap has and it lacks (name, namespace, labels,
    /// annotation, owner reference); keeps everything else as read, managed fields included.
    fn complete_metadata(&self, cm: &mut ConfigMap, name: &str, connection: &str) {
        let meta = &mut cm.metadata;
        meta.name.get_or_insert_with(|| name.to_string());
        meta.namespace.get_or_insert_with(|| self.namespace.clone());
        let labels = meta.labels.get_or_insert_default();
        for (k, v) in metadata_labels(connection) {
            labels.entry(k).or_insert(v);
        }
        meta.annotations
            .get_or_insert_default()
            .entry(CONNECTION_ANNOTATION.to_string())
            .or_insert_with(|| connection.to_string());
        let owned = meta
            .owner_references
            .as_ref()
            .is_some_and(|o| !o.is_empty());
        if let (false, Some((owner, uid))) = (owned, &self.owner) {
            meta.owner_references = Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: owner.clone(),
                uid: uid.clone(),
                ..Default::default()
            }]);
        }
    }
}

/// A document as the text of a ConfigMap key.
fn to_json<T: serde::Serialize>(doc: &T) -> String {
    serde_json::to_string(doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sc_contract::{Action, ChangeEntry};
    use serde_json::{Value, json};

    /// `status.json` of `run` after `previous`, as written.
    fn document(run: &ConnRun, previous: Value) -> Value {
        let previous: Status = serde_json::from_value(previous).unwrap();
        serde_json::to_value(status_document(run, 4, "id", Some(&previous), "t")).unwrap()
    }

    #[test]
    fn a_failure_keeps_the_previous_applied_hash() {
        let entry = ChangeEntry {
            name: "c".into(),
            hash: "h2".into(),
            action: Action::Apply,
            cause: None,
        };
        let mut run = ConnRun::new(&entry);
        run.error = Some(RunError::new(Reason::Other("X".into()), "m", "r"));
        let doc = document(&run, json!({"appliedHash": "h1"}));
        assert_eq!(doc["phase"], "Failed");
        assert_eq!(doc["appliedHash"], "h1");
        assert_eq!(doc["hash"], "h2");
        assert_eq!(doc["error"]["reason"], "X");
        run.phase = RunPhase::Ready;
        run.error = None;
        run.applied_hash = Some("h2".into());
        let doc = document(&run, json!({"appliedHash": "h1"}));
        assert_eq!(doc["appliedHash"], "h2");
        assert_eq!(doc["error"], Value::Null);
    }

    #[test]
    fn a_failure_keeps_the_objects_recorded_before_and_those_it_wrote() {
        let entry = ChangeEntry {
            name: "c".into(),
            hash: "h2".into(),
            action: Action::Delete,
            cause: None,
        };
        let sa = json!({"kind": "ServiceAccount", "namespace": "apps", "name": "sc-account-x"});
        let secret = json!({"kind": "Secret", "namespace": "apps", "name": "sc-c-secret"});
        let previous = json!({"appliedHash": "h1", "objects": [secret, sa]});
        let mut run = ConnRun::new(&entry);
        run.error = Some(RunError::new(Reason::ApiError, "m", "r"));
        let doc = document(&run, previous.clone());
        assert_eq!(doc["objects"], json!([secret, sa]));
        run.objects
            .push(ObjectKey::new("SecretProviderClass", "apps", "sc-c-spc"));
        let doc = document(&run, previous.clone());
        assert_eq!(doc["objects"].as_array().unwrap().len(), 3);
        // A run that succeeded records only what it wrote.
        run.phase = RunPhase::Deleted;
        run.error = None;
        let doc = document(&run, previous.clone());
        assert_eq!(doc["objects"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn requested_keeps_its_revision_while_the_hash_stays() {
        let spec = RequestedSpec {
            spec: r#"{"name":"c"}"#.into(),
            hash: "h1".into(),
            revision: 3,
        };
        let mut data = BTreeMap::new();
        put_requested(&mut data, &spec);
        assert_eq!(data[SPEC_KEY], r#"{"name":"c"}"#);
        assert_eq!(data[REQUESTED_KEY], r#"{"hash":"h1","revision":3}"#);
        let later = RequestedSpec {
            revision: 5,
            ..spec.clone()
        };
        put_requested(&mut data, &later);
        assert_eq!(data[REQUESTED_KEY], r#"{"hash":"h1","revision":3}"#);
        // What an earlier agent wrote is read, and replaced by the current form.
        data.insert(
            REQUESTED_KEY.into(),
            r#"{"hash":"h1","revision":2,"phase":"Applying"}"#.into(),
        );
        put_requested(&mut data, &later);
        assert_eq!(data[REQUESTED_KEY], r#"{"hash":"h1","revision":2}"#);
        let changed = RequestedSpec {
            hash: "h2".into(),
            revision: 6,
            ..spec
        };
        put_requested(&mut data, &changed);
        assert_eq!(data[REQUESTED_KEY], r#"{"hash":"h2","revision":6}"#);
    }
}

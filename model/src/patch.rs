//! RFC 6902 JSON patches that inject a connection into a live workload object.

use crate::names;
use crate::render::{CSI_DRIVER, WI_USE_LABEL, WorkloadPatch};
use crate::types::WorkloadKind;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Why a workload cannot be patched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The object is not a kind that can be patched.
    #[error("{kind}/{name}: cannot inject into a {kind}: {hint}")]
    UnsupportedKind {
        /// The object's kind.
        kind: String,
        /// The object's name.
        name: String,
        /// What to do.
        hint: String,
    },
    /// The object has no pod template or no containers.
    #[error(
        "{kind}/{name}: no pod template with containers at {pointer}: check that the object is a valid {kind}"
    )]
    NoPodTemplate {
        /// The object's kind.
        kind: String,
        /// The object's name.
        name: String,
        /// Where the template was expected.
        pointer: String,
    },
    /// The pod template already uses another ServiceAccount.
    #[error(
        "{kind}/{name}: uses serviceAccountName {current}, but the connection needs {wanted}: remove serviceAccountName from the workload, set it to {wanted}, or remove the workload from the connection's workloads"
    )]
    ServiceAccountConflict {
        /// The object's kind.
        kind: String,
        /// The object's name.
        name: String,
        /// The ServiceAccount the template uses.
        current: String,
        /// The ServiceAccount the connection needs.
        wanted: String,
    },
    /// The pod template has a volume of the same name that is not ours.
    #[error(
        "{kind}/{name}: already has a volume {volume} that is not the connection's CSI volume: rename that volume"
    )]
    VolumeConflict {
        /// The object's kind.
        kind: String,
        /// The object's name.
        name: String,
        /// The volume name.
        volume: String,
    },
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn add(path: String, value: Value) -> Value {
    json!({"op": "add", "path": path, "value": value})
}

/// The JSON patch operations that make `workload` (a Deployment, StatefulSet, DaemonSet or
/// CronJob as read from the API server) use the connection: `envFrom` with the Secret in
/// every container, and for workload identity the `serviceAccountName` and the pod label
/// `azure.workload.identity/use: "true"`, and for `keyvaultCsi` the CSI volume and its
/// mount. Idempotent: no operations when everything is already there. Init containers are
/// left alone.
pub fn workload_patch_ops(
    workload: &Value,
    patch: &WorkloadPatch,
) -> Result<Vec<Value>, PatchError> {
    patch_ops(workload, patch).map(|(ops, _)| ops)
}

/// [`workload_patch_ops`] and what the operations add.
fn patch_ops(
    workload: &Value,
    patch: &WorkloadPatch,
) -> Result<(Vec<Value>, Injected), PatchError> {
    let mut added = Injected::default();
    let kind_str = workload["kind"].as_str().unwrap_or_default().to_string();
    let name = workload["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let kind = WorkloadKind::parse(&kind_str).ok_or_else(|| PatchError::UnsupportedKind {
        kind: kind_str.clone(),
        name: name.clone(),
        hint: match kind_str.as_str() {
            "Pod" | "Job" => "its pod template cannot change after creation; reference the Secret in its manifest instead".into(),
            _ => "use a Deployment, StatefulSet, DaemonSet or CronJob".into(),
        },
    })?;
    let base = kind.pod_template_pointer();
    let template = workload.pointer(base);
    let containers = template
        .and_then(|t| t.pointer("/spec/containers"))
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| PatchError::NoPodTemplate {
            kind: kind_str.clone(),
            name: name.clone(),
            pointer: format!("{base}/spec/containers"),
        })?;
    let template = template.unwrap_or(&Value::Null);
    let pod_spec = &template["spec"];
    let mut ops = Vec::new();

    if let Some(sa) = &patch.service_account {
        let current = pod_spec["serviceAccountName"]
            .as_str()
            .or_else(|| pod_spec["serviceAccount"].as_str())
            .unwrap_or("");
        if current != sa.as_str() {
            if !current.is_empty() && current != "default" {
                return Err(PatchError::ServiceAccountConflict {
                    kind: kind_str,
                    name,
                    current: current.to_string(),
                    wanted: sa.clone(),
                });
            }
            ops.push(add(format!("{base}/spec/serviceAccountName"), json!(sa)));
            if pod_spec.get("serviceAccount").is_some_and(|v| !v.is_null()) {
                ops.push(add(format!("{base}/spec/serviceAccount"), json!(sa)));
            }
            added.service_account = Some(ServiceAccountChange {
                set: sa.clone(),
                previous: current.to_string(),
            });
        }
        let label_ops = ops.len();
        match template
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
        {
            None if template.get("metadata").is_none_or(Value::is_null) => {
                ops.push(add(
                    format!("{base}/metadata"),
                    json!({"labels": {WI_USE_LABEL: "true"}}),
                ));
            }
            None => ops.push(add(
                format!("{base}/metadata/labels"),
                json!({WI_USE_LABEL: "true"}),
            )),
            Some(l) if l.get(WI_USE_LABEL).and_then(Value::as_str) != Some("true") => {
                ops.push(add(
                    format!("{base}/metadata/labels/{}", escape(WI_USE_LABEL)),
                    json!("true"),
                ))
            }
            Some(_) => {}
        }
        added.label = ops.len() > label_ops;
    }

    if let Some(v) = &patch.csi_volume {
        let volumes = pod_spec["volumes"].as_array();
        let existing =
            volumes.and_then(|vs| vs.iter().find(|x| x["name"] == v.volume_name.as_str()));
        match existing {
            Some(x)
                if x["csi"]["volumeAttributes"]["secretProviderClass"]
                    == v.secret_provider_class.as_str() => {}
            Some(_) => {
                return Err(PatchError::VolumeConflict {
                    kind: kind_str,
                    name,
                    volume: v.volume_name.clone(),
                });
            }
            None => {
                let vol = json!({
                    "name": v.volume_name,
                    "csi": {
                        "driver": CSI_DRIVER,
                        "readOnly": true,
                        "volumeAttributes": {"secretProviderClass": v.secret_provider_class},
                    },
                });
                if volumes.is_some() {
                    ops.push(add(format!("{base}/spec/volumes/-"), vol));
                } else {
                    ops.push(add(format!("{base}/spec/volumes"), json!([vol])));
                }
                added.csi_volume = true;
            }
        }
    }

    for (i, c) in containers.iter().enumerate() {
        let cbase = format!("{base}/spec/containers/{i}");
        let cname = c["name"].as_str().unwrap_or_default().to_string();
        if let Some(secret) = &patch.env_from_secret {
            let entry = json!({"secretRef": {"name": secret}});
            let before = ops.len();
            match c["envFrom"].as_array() {
                None => ops.push(add(format!("{cbase}/envFrom"), json!([entry]))),
                Some(list)
                    if !list
                        .iter()
                        .any(|e| e["secretRef"]["name"] == secret.as_str()) =>
                {
                    ops.push(add(format!("{cbase}/envFrom/-"), entry))
                }
                Some(_) => {}
            }
            if ops.len() > before {
                added.env_from.push(cname.clone());
            }
        }
        if let Some(v) = &patch.csi_volume {
            let mount = json!({"name": v.volume_name, "mountPath": v.mount_path, "readOnly": true});
            let before = ops.len();
            match c["volumeMounts"].as_array() {
                None => ops.push(add(format!("{cbase}/volumeMounts"), json!([mount]))),
                Some(list) if !list.iter().any(|m| m["name"] == v.volume_name.as_str()) => {
                    ops.push(add(format!("{cbase}/volumeMounts/-"), mount))
                }
                Some(_) => {}
            }
            if ops.len() > before {
                added.volume_mounts.push(cname);
            }
        }
    }
    Ok((ops, added))
}

/// A change of the pod template's ServiceAccount made by a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccountChange {
    /// The ServiceAccount the connection set.
    pub set: String,
    /// The `serviceAccountName` the pod template had before (empty: none, or `default`).
    #[serde(default)]
    pub previous: String,
}

/// What a connection added to the pod template of one workload: the record kept as JSON in
/// the workload's annotation [`names::injected_annotation`], so that removing the connection
/// (or the workload from its list) removes exactly that and nothing the user wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Injected {
    /// The containers that got the `envFrom` entry of the connection's Secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<String>,
    /// The ServiceAccount the connection set, and what was there before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ServiceAccountChange>,
    /// Whether it added the pod label `azure.workload.identity/use`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub label: bool,
    /// Whether it added the CSI volume.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub csi_volume: bool,
    /// The containers that got the CSI volume mount.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<String>,
}

impl Injected {
    /// The record of `connection` on `workload`, if any (one that does not parse reads as
    /// absent).
    pub fn read(workload: &Value, connection: &str) -> Option<Injected> {
        workload["metadata"]["annotations"][names::injected_annotation(connection)]
            .as_str()
            .and_then(|t| serde_json::from_str(t).ok())
    }

    /// Whether it records nothing.
    pub fn is_empty(&self) -> bool {
        *self == Injected::default()
    }

    /// This record with `added` (a later patch) added: the ServiceAccount keeps the first
    /// `previous`, so a move to another ServiceAccount still restores the original.
    fn merge(mut self, added: Injected) -> Injected {
        for c in added.env_from {
            if !self.env_from.contains(&c) {
                self.env_from.push(c);
            }
        }
        for c in added.volume_mounts {
            if !self.volume_mounts.contains(&c) {
                self.volume_mounts.push(c);
            }
        }
        self.service_account = match (self.service_account, added.service_account) {
            (Some(old), Some(new)) => Some(ServiceAccountChange {
                set: new.set,
                previous: old.previous,
            }),
            (old, new) => new.or(old),
        };
        self.label |= added.label;
        self.csi_volume |= added.csi_volume;
        self
    }
}

/// What a connection puts in a pod template, by name.
struct Traces<'a> {
    secret: Option<&'a str>,
    volume: Option<&'a str>,
    service_accounts: &'a [String],
}

/// What of `traces` the pod template at `base` has: the record of a workload patched
/// before records were kept (sc-extension 0.1), which recorded nothing of what it added.
fn present(workload: &Value, base: &str, traces: &Traces<'_>) -> Injected {
    let template = workload.pointer(base).unwrap_or(&Value::Null);
    let spec = &template["spec"];
    let mut found = Injected::default();
    for c in spec["containers"].as_array().into_iter().flatten() {
        let name = c["name"].as_str().unwrap_or_default().to_string();
        let has = |list: &str, f: &dyn Fn(&Value) -> bool| {
            c[list].as_array().is_some_and(|l| l.iter().any(f))
        };
        if let Some(s) = traces.secret
            && has("envFrom", &|e| e["secretRef"]["name"] == s)
        {
            found.env_from.push(name.clone());
        }
        if let Some(v) = traces.volume
            && has("volumeMounts", &|m| m["name"] == v)
        {
            found.volume_mounts.push(name);
        }
    }
    if let Some(v) = traces.volume {
        found.csi_volume = spec["volumes"]
            .as_array()
            .is_some_and(|l| l.iter().any(|x| x["name"] == v));
    }
    let current = spec["serviceAccountName"].as_str().unwrap_or_default();
    if traces.service_accounts.iter().any(|s| s == current) {
        found.service_account = Some(ServiceAccountChange {
            set: current.to_string(),
            previous: String::new(),
        });
        found.label = template["metadata"]["labels"][WI_USE_LABEL] == "true";
    }
    found
}

fn supported_kind(workload: &Value) -> Result<WorkloadKind, PatchError> {
    let kind = workload["kind"].as_str().unwrap_or_default();
    WorkloadKind::parse(kind).ok_or_else(|| PatchError::UnsupportedKind {
        kind: kind.to_string(),
        name: workload["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        hint: "use a Deployment, StatefulSet, DaemonSet or CronJob".into(),
    })
}

/// The operation that sets annotation `key` to `value` in the object metadata at `meta`
/// (`""` for the workload's, `<pod template>/metadata` for its pods'); `created` tells
/// whether an earlier operation of the same patch created that metadata.
fn set_annotation(doc: &Value, meta: &str, created: bool, key: &str, value: Value) -> Value {
    let m = doc.pointer(meta).unwrap_or(&Value::Null);
    if m["annotations"].is_object() {
        add(format!("{meta}/annotations/{}", escape(key)), value)
    } else if m.is_object() || created {
        add(format!("{meta}/annotations"), json!({ key: value }))
    } else {
        add(meta.to_string(), json!({"annotations": { key: value }}))
    }
}

/// [`workload_patch_ops`] plus what keeps the result true over time: the pod-template
/// annotation whose value is the connection's rollout hash (when `restart_annotation` is set;
/// a new value rolls the workload out, the same value changes nothing), and the record of what
/// the connection added ([`Injected`], merged with the record already there). `patched_before`
/// tells that the connection patched this workload earlier: without a record, what it adds is
/// found present and recorded (a workload patched by a version that kept no records).
/// No operations when everything is in place.
pub fn inject_ops(
    workload: &Value,
    patch: &WorkloadPatch,
    patched_before: bool,
) -> Result<Vec<Value>, PatchError> {
    let (mut ops, added) = patch_ops(workload, patch)?;
    let base = supported_kind(workload)?.pod_template_pointer();
    let existing = Injected::read(workload, &patch.connection);
    let had_record = existing.is_some();
    let existing = existing.unwrap_or_else(|| {
        if patched_before {
            let sa: Vec<String> = patch.service_account.iter().cloned().collect();
            let traces = Traces {
                secret: patch.env_from_secret.as_deref(),
                volume: patch.csi_volume.as_ref().map(|v| v.volume_name.as_str()),
                service_accounts: &sa,
            };
            present(workload, base, &traces)
        } else {
            Injected::default()
        }
    });
    let record = existing.clone().merge(added);
    if let Some(key) = &patch.restart_annotation {
        let meta = format!("{base}/metadata");
        let current = workload.pointer(&meta).unwrap_or(&Value::Null)["annotations"][key].as_str();
        if current != Some(patch.restart_hash.as_str()) {
            let created = ops.iter().any(|o| o["path"] == meta.as_str());
            ops.push(set_annotation(
                workload,
                &meta,
                created,
                key,
                json!(patch.restart_hash),
            ));
        }
    }
    if !had_record || record != existing {
        let text = serde_json::to_string(&record).unwrap_or_default();
        let key = names::injected_annotation(&patch.connection);
        ops.push(set_annotation(
            workload,
            "/metadata",
            false,
            &key,
            json!(text),
        ));
    }
    Ok(ops)
}

/// How to take a connection out of a workload.
#[derive(Debug, Clone, Copy)]
pub struct Ejection<'a> {
    /// The connection.
    pub connection: &'a str,
    /// The ServiceAccounts the connection used: for a workload patched before records were
    /// kept, a `serviceAccountName` among them is taken as the connection's.
    pub service_accounts: &'a [String],
    /// Another connection that lists the workload and sets the same ServiceAccount: the
    /// ServiceAccount and the pod label stay, and its record takes them over.
    pub heir: Option<&'a str>,
}

/// A test of `path` against `value`, then its removal.
fn remove(ops: &mut Vec<Value>, path: String, value: &Value) {
    ops.push(json!({"op": "test", "path": path, "value": value}));
    ops.push(json!({"op": "remove", "path": path}));
}

/// Removes the element of `list` (at `path`) that `is_ours` matches; the list itself when it
/// was the only element.
fn remove_element(
    ops: &mut Vec<Value>,
    path: &str,
    list: &Value,
    is_ours: impl Fn(&Value) -> bool,
) {
    let Some(items) = list.as_array() else {
        return;
    };
    if let Some(i) = items.iter().position(is_ours) {
        if items.len() == 1 {
            remove(ops, path.to_string(), list);
        } else {
            remove(ops, format!("{path}/{i}"), &items[i]);
        }
    }
}

/// The JSON patch that removes what the connection added to `workload` and nothing else:
/// what its record ([`Injected`]) lists, found by name (the `envFrom` entry of its Secret,
/// its CSI volume and mounts, the ServiceAccount it set when still set, restoring the one
/// before, the pod label it added), its restart annotation and its record. A workload
/// patched before records were kept is taken to have had none of them. Every removal is
/// preceded by a test of the value removed, so a concurrent change fails the patch instead of
/// removing something else.
pub fn eject_ops(workload: &Value, e: &Ejection<'_>) -> Result<Vec<Value>, PatchError> {
    let base = supported_kind(workload)?.pod_template_pointer();
    let secret = names::secret_name(e.connection);
    let volume = names::csi_volume_name(e.connection);
    let injected_key = names::injected_annotation(e.connection);
    let record = Injected::read(workload, e.connection).unwrap_or_else(|| {
        let traces = Traces {
            secret: Some(&secret),
            volume: Some(&volume),
            service_accounts: e.service_accounts,
        };
        present(workload, base, &traces)
    });
    let template = workload.pointer(base).unwrap_or(&Value::Null);
    let spec = &template["spec"];
    let mut ops = Vec::new();
    for (i, c) in spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = c["name"].as_str().unwrap_or_default();
        let cbase = format!("{base}/spec/containers/{i}");
        if record.env_from.iter().any(|n| n == name) {
            remove_element(&mut ops, &format!("{cbase}/envFrom"), &c["envFrom"], |x| {
                x["secretRef"]["name"] == secret.as_str()
            });
        }
        if record.volume_mounts.iter().any(|n| n == name) {
            remove_element(
                &mut ops,
                &format!("{cbase}/volumeMounts"),
                &c["volumeMounts"],
                |x| x["name"] == volume.as_str(),
            );
        }
    }
    if record.csi_volume {
        remove_element(
            &mut ops,
            &format!("{base}/spec/volumes"),
            &spec["volumes"],
            |x| x["name"] == volume.as_str(),
        );
    }
    let identity = record.service_account.is_some() || record.label;
    match e.heir {
        Some(heir) if identity => {
            // The ServiceAccount and the label stay: the heir's record takes them over (an
            // heir without a record finds them present when it is next applied).
            if let Some(heir_record) = Injected::read(workload, heir) {
                let mut taken = heir_record.clone();
                taken.service_account = taken.service_account.or(record.service_account.clone());
                taken.label |= record.label;
                if taken != heir_record {
                    let text = serde_json::to_string(&taken).unwrap_or_default();
                    ops.push(add(
                        format!(
                            "/metadata/annotations/{}",
                            escape(&names::injected_annotation(heir))
                        ),
                        json!(text),
                    ));
                }
            }
        }
        _ => {
            if let Some(change) = &record.service_account {
                for field in ["serviceAccountName", "serviceAccount"] {
                    if spec[field] == change.set.as_str() {
                        let path = format!("{base}/spec/{field}");
                        if change.previous.is_empty() {
                            remove(&mut ops, path, &spec[field]);
                        } else {
                            ops.push(json!({"op": "test", "path": path, "value": change.set}));
                            ops.push(
                                json!({"op": "replace", "path": path, "value": change.previous}),
                            );
                        }
                    }
                }
            }
            if record.label && template["metadata"]["labels"][WI_USE_LABEL] == "true" {
                let path = format!("{base}/metadata/labels/{}", escape(WI_USE_LABEL));
                remove(&mut ops, path, &json!("true"));
            }
        }
    }
    let restart = names::restart_annotation(e.connection);
    if let Some(v) = template["metadata"]["annotations"].get(&restart) {
        let path = format!("{base}/metadata/annotations/{}", escape(&restart));
        remove(&mut ops, path, v);
    }
    if let Some(v) = workload["metadata"]["annotations"].get(&injected_key) {
        remove(
            &mut ops,
            format!("/metadata/annotations/{}", escape(&injected_key)),
            v,
        );
    }
    Ok(ops)
}

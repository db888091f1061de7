//! RFC 6902 JSON patches that inject a connection into a live workload object.

use crate::render::{CSI_DRIVER, WI_USE_LABEL, WorkloadPatch};
use crate::types::WorkloadKind;
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
        }
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
            }
        }
    }

    for (i, c) in containers.iter().enumerate() {
        let cbase = format!("{base}/spec/containers/{i}");
        if let Some(secret) = &patch.env_from_secret {
            let entry = json!({"secretRef": {"name": secret}});
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
        }
        if let Some(v) = &patch.csi_volume {
            let mount = json!({"name": v.volume_name, "mountPath": v.mount_path, "readOnly": true});
            match c["volumeMounts"].as_array() {
                None => ops.push(add(format!("{cbase}/volumeMounts"), json!([mount]))),
                Some(list) if !list.iter().any(|m| m["name"] == v.volume_name.as_str()) => {
                    ops.push(add(format!("{cbase}/volumeMounts/-"), mount))
                }
                Some(_) => {}
            }
        }
    }
    Ok(ops)
}

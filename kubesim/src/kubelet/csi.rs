//! The Secrets Store CSI driver (`secrets-store.csi.k8s.io`) as a pod sees it, with a local
//! fake of the Azure Key Vault provider.
//!
//! The driver is registered when the cluster has the CSIDriver object
//! `secrets-store.csi.k8s.io`; without it the mount fails as the kubelet fails it on a node
//! without the driver. Mounting a volume reads its SecretProviderClass (the volume attribute
//! `secretProviderClass`, in the pod's namespace) and asks the provider for its objects:
//! provider `azure` reads each entry of `parameters.objects` from the Secret named after
//! `parameters.keyvaultName` in namespace [`VAULT_NAMESPACE`] (key = `objectName`), and writes
//! it to the file `objectAlias` (or `objectName`) of the volume. Then the SecretProviderClass's
//! `secretObjects` are synced into Secrets of the pod's namespace, labelled
//! `secrets-store.csi.k8s.io/managed: "true"` and owned by the pods that mount the class (the
//! real driver owns them through its SecretProviderClassPodStatus objects, which kubesim does
//! not write): they go with the last such pod.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::cluster::{Cluster, WriteOptions};
use crate::store::{ObjKey, ResKey};

/// The driver name of the Secrets Store CSI driver.
pub const DRIVER: &str = "secrets-store.csi.k8s.io";
/// Where the fake Key Vault provider reads values: Secret `<keyvaultName>`, key `<objectName>`.
pub const VAULT_NAMESPACE: &str = "kubesim-system";
/// The label the driver puts on the Secrets it syncs.
pub const MANAGED_LABEL: &str = "secrets-store.csi.k8s.io/managed";
const GROUP: &str = "secrets-store.csi.x-k8s.io";
const MANAGER: &str = "secrets-store-csi-driver";

/// Whether `volume` is a CSI volume of the Secrets Store CSI driver.
pub fn is_secrets_store(volume: &Value) -> bool {
    volume["csi"]["driver"].as_str() == Some(DRIVER)
}

/// Mount a Secrets Store CSI volume of `pod`: the files of the volume (path -> content), or
/// the reason the mount fails (the text after `MountVolume.SetUp failed for volume "x" : `).
pub fn mount(
    cluster: &Cluster,
    pod: &Value,
    volume: &Value,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let drivers = ResKey::new("storage.k8s.io", "csidrivers");
    if cluster
        .store()
        .get(&ObjKey::new(&drivers, "", DRIVER))
        .is_none()
    {
        return Err(format!(
            "kubernetes.io/csi: mounter.SetUpAt failed to get CSI client: driver name {DRIVER} not found in the list of registered CSI drivers"
        ));
    }
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let unknown = |desc: String| format!("rpc error: code = Unknown desc = {desc}");
    let Some(spc_name) = volume["csi"]["volumeAttributes"]["secretProviderClass"]
        .as_str()
        .filter(|s| !s.is_empty())
    else {
        return Err(
            "rpc error: code = InvalidArgument desc = secretProviderClass is not set".to_string(),
        );
    };
    let spc_res = ResKey::new(GROUP, "secretproviderclasses");
    let Some(spc) = cluster.store().get(&ObjKey::new(&spc_res, ns, spc_name)) else {
        return Err(unknown(format!(
            "failed to get secretproviderclass {ns}/{spc_name}, error: SecretProviderClass.{GROUP} {spc_name:?} not found"
        )));
    };
    let provider = spc["spec"]["provider"].as_str().unwrap_or_default();
    let failed = |e: String| {
        unknown(format!(
            "failed to mount secrets store objects for pod {ns}/{pod_name}, err: rpc error: code = Unknown desc = {e}"
        ))
    };
    if provider != "azure" {
        return Err(failed(format!(
            "error connecting to provider {provider:?}: provider not found: provider {provider:?}"
        )));
    }
    let params = &spc["spec"]["parameters"];
    let vault = params["keyvaultName"].as_str().unwrap_or_default();
    if vault.is_empty() {
        return Err(failed(
            "failed to mount objects, error: keyvaultName is not set".to_string(),
        ));
    }
    let objects = azure_objects(params["objects"].as_str().unwrap_or_default())
        .map_err(|e| failed(format!("failed to mount objects, error: {e}")))?;
    let secrets = ResKey::new("", "secrets");
    let store = cluster
        .store()
        .get(&ObjKey::new(&secrets, VAULT_NAMESPACE, vault));
    let mut files = BTreeMap::new();
    for o in &objects {
        let value = store
            .as_ref()
            .and_then(|s| s["data"][o.name.as_str()].as_str().map(str::to_string))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
        let Some(value) = value else {
            return Err(failed(format!(
                "failed to mount objects, error: failed to get objectType:{}, objectName:{}, objectVersion:{}: SecretNotFound: A {} with (name/id) {} was not found in this key vault {vault} (kubesim: no key {:?} in Secret {VAULT_NAMESPACE}/{vault})",
                o.object_type, o.name, o.version, o.object_type, o.name, o.name
            )));
        };
        files.insert(o.file.clone(), value);
    }
    sync_secrets(cluster, pod, &spc, &files);
    Ok(files)
}

/// One entry of an azure SecretProviderClass's `objects`.
#[derive(Debug, PartialEq, Eq)]
struct AzureObject {
    name: String,
    object_type: String,
    version: String,
    /// The file name: `objectAlias`, or `objectName`.
    file: String,
}

/// Parse the provider's `objects` parameter: YAML `array:` of YAML documents (strings) with
/// `objectName`, `objectType`, `objectAlias`, `objectVersion`.
fn azure_objects(text: &str) -> Result<Vec<AzureObject>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let doc: Value = serde_saphyr::from_str(text)
        .map_err(|e| format!("failed to unmarshal objects, error: {e}"))?;
    let mut out = Vec::new();
    for item in doc["array"].as_array().into_iter().flatten() {
        let obj: Value = match item {
            Value::String(s) => serde_saphyr::from_str(s)
                .map_err(|e| format!("failed to unmarshal object, error: {e}"))?,
            other => other.clone(),
        };
        let field = |k: &str| obj[k].as_str().unwrap_or_default().to_string();
        let name = field("objectName");
        if name.is_empty() {
            return Err("objectName is not set".to_string());
        }
        let alias = field("objectAlias");
        out.push(AzureObject {
            file: if alias.is_empty() {
                name.clone()
            } else {
                alias
            },
            name,
            object_type: field("objectType"),
            version: field("objectVersion"),
        });
    }
    Ok(out)
}

/// Sync the class's `secretObjects` into Secrets of the pod's namespace: create them (label
/// [`MANAGED_LABEL`], the entry's labels and annotations, owner: the pod) or add the pod to
/// the owners of one the driver made. A Secret without the label is left alone.
fn sync_secrets(cluster: &Cluster, pod: &Value, spc: &Value, files: &BTreeMap<String, Vec<u8>>) {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let owner = json!({
        "apiVersion": "v1", "kind": "Pod",
        "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"],
    });
    let secrets = ResKey::new("", "secrets");
    for so in spc["spec"]["secretObjects"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(name) = so["secretName"].as_str().filter(|s| !s.is_empty()) else {
            continue;
        };
        let mut data = Map::new();
        for d in so["data"].as_array().into_iter().flatten() {
            let (Some(object), Some(key)) = (d["objectName"].as_str(), d["key"].as_str()) else {
                continue;
            };
            if let Some(v) = files.get(object) {
                data.insert(
                    key.to_string(),
                    base64::engine::general_purpose::STANDARD.encode(v).into(),
                );
            }
        }
        let mut labels = so["labels"].as_object().cloned().unwrap_or_default();
        labels.insert(MANAGED_LABEL.into(), "true".into());
        let mut metadata = json!({"name": name, "namespace": ns, "labels": labels,
                                  "ownerReferences": [owner]});
        if let Some(a) = so["annotations"].as_object() {
            metadata["annotations"] = Value::Object(a.clone());
        }
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": metadata,
            "type": so["type"].as_str().filter(|t| !t.is_empty()).unwrap_or("Opaque"),
            "data": data,
        });
        let created = cluster.create(&secrets, ns, secret, &WriteOptions::manager(MANAGER));
        if created.is_ok() {
            continue;
        }
        let r = cluster.mutate(&secrets, ns, name, MANAGER, |s| {
            if s["metadata"]["labels"][MANAGED_LABEL] != "true" {
                return Ok(());
            }
            let refs = s["metadata"]["ownerReferences"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !refs.iter().any(|r| r["uid"] == owner["uid"]) {
                let mut refs = refs;
                refs.push(owner.clone());
                s["metadata"]["ownerReferences"] = Value::Array(refs);
            }
            Ok(())
        });
        if let Err(e) = r {
            tracing::warn!(secret = %name, namespace = %ns, error = %e, "syncing a secretObjects Secret failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_azure_objects_parameter() {
        let text = "array:\n  - |\n    objectName: db-password\n    objectType: secret\n    objectVersion: \"\"\n  - |\n    objectName: tls-cert\n    objectType: cert\n    objectVersion: \"\"\n    objectAlias: tls.crt\n";
        let objects = azure_objects(text).unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].file, "db-password");
        assert_eq!(objects[1].name, "tls-cert");
        assert_eq!(objects[1].file, "tls.crt");
        assert_eq!(objects[1].object_type, "cert");
        assert!(azure_objects("array:\n  - |\n    objectType: secret\n").is_err());
    }
}

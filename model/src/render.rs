//! The desired objects of a validated connection, as Kubernetes JSON objects: the Secret,
//! the workload-identity ServiceAccount, the SecretProviderClass, and the intent of the
//! patch of the listed workloads.

use crate::names;
use crate::resolve::{Connection, RequestSet};
use crate::types::{AuthType, WorkloadRef};
use base64::Engine;
use serde::Serialize;
use serde_json::{Map, Value, json};

/// `app.kubernetes.io/managed-by` value of every object written.
pub const MANAGED_BY: &str = "sc-extension";
/// Label naming the connection of an object.
pub const CONNECTION_LABEL: &str = "sc-extension.io/connection";
/// Annotation with the exact connection name.
pub const CONNECTION_ANNOTATION: &str = "sc-extension.io/connection-name";
/// Annotation with the connection's content hash.
pub const HASH_ANNOTATION: &str = "sc-extension.io/content-hash";
/// Pod label that enables workload identity.
pub const WI_USE_LABEL: &str = "azure.workload.identity/use";
/// ServiceAccount annotation with the identity's client ID.
pub const WI_CLIENT_ID_ANNOTATION: &str = "azure.workload.identity/client-id";
/// ServiceAccount annotation with the identity's tenant ID.
pub const WI_TENANT_ID_ANNOTATION: &str = "azure.workload.identity/tenant-id";
/// The CSI driver of the Secrets Store.
pub const CSI_DRIVER: &str = "secrets-store.csi.k8s.io";
/// Where a `keyvaultCsi` connection's objects are mounted: `<prefix>/<connection name>`.
pub const CSI_MOUNT_PREFIX: &str = "/mnt/secrets-store";

/// What to change in the pod template of each listed workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadPatch {
    /// The connection.
    pub connection: String,
    /// A Secret every container gets through `envFrom: [{secretRef: {name}}]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_from_secret: Option<String>,
    /// The pod's `serviceAccountName`, with the pod label `azure.workload.identity/use`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// A CSI volume mounted read-only in every container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csi_volume: Option<CsiVolume>,
    /// The pod-template annotation whose value is the connection's rollout hash
    /// ([`Connection::rollout_hash`]): a change of the Secret or ServiceAccount changes it and
    /// rolls the workload out. `None` with `restartOnChange: false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_annotation: Option<String>,
    /// The value of `restart_annotation` (not shown: it depends on the protected settings'
    /// key, which `sc-agent plan` does not have).
    #[serde(skip)]
    pub restart_hash: String,
}

/// A Secrets Store CSI volume of a `keyvaultCsi` connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CsiVolume {
    /// The volume name in the pod (a DNS label).
    pub volume_name: String,
    /// The SecretProviderClass it uses.
    pub secret_provider_class: String,
    /// Where it is mounted in each container.
    pub mount_path: String,
}

/// Everything one connection wants to exist.
#[derive(Debug, Clone)]
pub struct DesiredObjects {
    /// The connection name.
    pub connection: String,
    /// The namespace of the objects and workloads.
    pub namespace: String,
    /// The Secret (values base64 in `data`), if the connection writes one.
    pub secret: Option<Value>,
    /// The ServiceAccount (workload identity).
    pub service_account: Option<Value>,
    /// The SecretProviderClass (`keyvaultCsi`).
    pub secret_provider_class: Option<Value>,
    /// The workloads to patch, and how.
    pub workloads: Vec<WorkloadRef>,
    /// The patch applied to each workload.
    pub patch: WorkloadPatch,
}

fn labels(c: &Connection) -> Value {
    json!({
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": MANAGED_BY,
        CONNECTION_LABEL: names::connection_label_value(c.name()),
    })
}

fn annotations(c: &Connection) -> Value {
    json!({
        CONNECTION_ANNOTATION: c.name(),
        HASH_ANNOTATION: c.hash,
    })
}

impl Connection {
    /// The desired objects of this connection.
    pub fn desired(&self) -> DesiredObjects {
        DesiredObjects {
            connection: self.name().to_string(),
            namespace: self.spec.namespace.clone(),
            secret: self.secret_object(),
            service_account: self.service_account_object(),
            secret_provider_class: self.secret_provider_class_object(),
            workloads: self.spec.workloads.clone(),
            patch: self.workload_patch(),
        }
    }

    fn secret_object_with(
        &self,
        values: impl Fn(&crate::resolve::ResolvedKey) -> String,
        field: &str,
    ) -> Option<Value> {
        let name = self.secret_name()?;
        let data: Map<String, Value> = self
            .keys
            .iter()
            .map(|k| (k.name.clone(), Value::String(values(k))))
            .collect();
        Some(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": self.spec.namespace,
                "labels": labels(self),
                "annotations": annotations(self),
            },
            "type": "Opaque",
            field: data,
        }))
    }

    /// The Secret with every value base64-encoded in `data` (holds credentials: never log it).
    pub fn secret_object(&self) -> Option<Value> {
        let b64 = base64::engine::general_purpose::STANDARD;
        self.secret_object_with(|k| b64.encode(k.value.expose()), "data")
    }

    /// The Secret for display: values in `stringData`, credentials as `<redacted>`.
    pub fn secret_object_redacted(&self) -> Option<Value> {
        self.secret_object_with(|k| k.value.display().to_string(), "stringData")
    }

    /// The workload-identity ServiceAccount, shared by every connection with the same
    /// client ID in the namespace: it carries no connection label, and every connection
    /// renders it identically (the tenant ID may come from another of them).
    pub fn service_account_object(&self) -> Option<Value> {
        let client_id = self.workload_identity_client_id()?;
        let mut ann = Map::new();
        ann.insert(WI_CLIENT_ID_ANNOTATION.into(), client_id.into());
        if let Some(t) = &self.identity_tenant_id {
            ann.insert(WI_TENANT_ID_ANNOTATION.into(), t.clone().into());
        }
        Some(json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": names::service_account_name(client_id),
                "namespace": self.spec.namespace,
                "labels": {
                    "app.kubernetes.io/managed-by": MANAGED_BY,
                    "app.kubernetes.io/part-of": MANAGED_BY,
                },
                "annotations": ann,
            },
        }))
    }

    /// The SecretProviderClass of a `keyvaultCsi` connection.
    pub fn secret_provider_class_object(&self) -> Option<Value> {
        let name = self.secret_provider_class_name()?;
        let p = &self.spec.parameters;
        let mut objects = String::from("array:\n");
        for o in &self.spec.keyvault_objects {
            objects.push_str(&format!(
                "  - |\n    objectName: {}\n    objectType: {}\n    objectVersion: {:?}\n",
                o.name, o.object_type, o.version
            ));
            if let Some(a) = &o.alias {
                objects.push_str(&format!("    objectAlias: {a}\n"));
            }
        }
        let mut params = Map::new();
        params.insert("usePodIdentity".into(), "false".into());
        let client_id = p.get("clientId").cloned().unwrap_or_default();
        if self.bool_parameter("useWorkloadIdentity") {
            params.insert("clientID".into(), client_id.into());
        } else {
            params.insert("useVMManagedIdentity".into(), "true".into());
            params.insert("userAssignedIdentityID".into(), client_id.into());
        }
        params.insert(
            "keyvaultName".into(),
            p.get("keyvaultName").cloned().unwrap_or_default().into(),
        );
        params.insert(
            "tenantId".into(),
            p.get("tenantId").cloned().unwrap_or_default().into(),
        );
        params.insert("objects".into(), objects.into());
        let mut spec = json!({ "provider": "azure", "parameters": params });
        if self.bool_parameter("syncSecret") {
            let data: Vec<Value> = self
                .spec
                .keyvault_objects
                .iter()
                .map(|o| json!({ "objectName": o.file_name(), "key": o.file_name() }))
                .collect();
            spec["secretObjects"] = json!([{
                "secretName": names::secret_name(self.name()),
                "type": "Opaque",
                "labels": labels(self),
                "data": data,
            }]);
        }
        Some(json!({
            "apiVersion": "secrets-store.csi.x-k8s.io/v1",
            "kind": "SecretProviderClass",
            "metadata": {
                "name": name,
                "namespace": self.spec.namespace,
                "labels": labels(self),
                "annotations": annotations(self),
            },
            "spec": spec,
        }))
    }

    /// The change this connection makes to the pod template of each listed workload.
    pub fn workload_patch(&self) -> WorkloadPatch {
        let csi = self.spec.auth_type == AuthType::KeyvaultCsi;
        WorkloadPatch {
            connection: self.name().to_string(),
            env_from_secret: if csi {
                self.bool_parameter("syncSecret")
                    .then(|| names::secret_name(self.name()))
            } else {
                self.secret_name()
            },
            service_account: self.service_account_name(),
            csi_volume: csi.then(|| CsiVolume {
                volume_name: names::csi_volume_name(self.name()),
                secret_provider_class: names::secret_provider_class_name(self.name()),
                mount_path: format!("{CSI_MOUNT_PREFIX}/{}", self.name()),
            }),
            restart_annotation: self
                .spec
                .restart_on_change
                .then(|| names::restart_annotation(self.name())),
            restart_hash: self.rollout_hash.clone(),
        }
    }
}

impl RequestSet {
    /// The desired objects of every connection, sorted by connection name.
    pub fn desired(&self) -> Vec<DesiredObjects> {
        self.connections().iter().map(Connection::desired).collect()
    }

    /// Every workload-identity ServiceAccount once, with the connections that use it,
    /// sorted by namespace and name (a ServiceAccount is shared by every connection with
    /// the same client ID in a namespace).
    pub fn service_accounts(&self) -> Vec<(Value, Vec<String>)> {
        let mut out: std::collections::BTreeMap<(String, String), (Value, Vec<String>)> =
            Default::default();
        for c in self.connections() {
            if let (Some(sa), Some(name)) = (c.service_account_object(), c.service_account_name()) {
                out.entry((c.spec.namespace.clone(), name))
                    .or_insert_with(|| (sa, Vec::new()))
                    .1
                    .push(c.name().to_string());
            }
        }
        out.into_values().collect()
    }
}

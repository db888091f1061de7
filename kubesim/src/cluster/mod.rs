//! The in-process API: every operation the HTTP layer serves, with admission (defaulting and
//! validation), server-set metadata, managedFields, dryRun and optimistic concurrency. The
//! controllers and the kubelet use the same operations, so whatever they write goes through
//! the same rules and reaches watchers the same way.
//!
//! What this layer does not do (the controllers do it, through this API):
//! - garbage collection of dependents (Background / Foreground / Orphan propagation: this layer
//!   only sets `deletionTimestamp` and the `foregroundDeletion` / `orphan` finalizers);
//! - deleting the contents of a terminating Namespace and then its `kubernetes` finalizer;
//! - running pods and removing gracefully deleted pods once their processes ended (the kubelet
//!   calls [`Cluster::delete`] with `grace_period_seconds: Some(0)`).
//!
//! The operations are grouped by concern: `auth` (tokens, RBAC), `crud` (get, list, create,
//! update, delete), `write` (the update path they share), `patching` (the four patch types),
//! `subresources` (status, scale, pod logs), `eviction` (`pods/eviction`); `options` holds their options and results.

use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{Map, Value, json};

pub use crate::error::{ApiError, Cause};
use crate::resources::{Registry, ResourceInfo};
use crate::store::{ResKey, Store};
use auth::{TokenEntry, random_token};

mod auth;
mod bootstrap;
mod crud;
pub mod eviction;
mod options;
mod patching;
mod subresources;
mod write;

pub use auth::TokenReviewOutcome;
pub use bootstrap::{cluster_role_bindings, cluster_roles};
pub use options::{
    DeleteOptions, Deleted, FieldValidation, ListOptions, ObjectList, PatchType, Propagation,
    SharedList, WriteOptions,
};
pub use subresources::{LogOptions, LogStream, OutputStream, PodLogs, PodStreams, StreamRefusal};

/// The cluster state and its API. Share it as `Arc<Cluster>`.
pub struct Cluster {
    store: Store,
    registry: RwLock<Arc<Registry>>,
    admin_token: String,
    tokens: Mutex<HashMap<String, TokenEntry>>,
    pod_logs: RwLock<Option<Arc<dyn PodLogs>>>,
    next_ip: AtomicU32,
    expiry: tokio::sync::watch::Sender<u64>,
    issuer: RwLock<Issuer>,
}

/// The ServiceAccount token issuer the discovery documents name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    /// `issuer` (and the default token audience).
    pub url: String,
    /// `jwks_uri`: where the key set is served.
    pub jwks_uri: String,
}

/// kube-apiserver's usual `--service-account-issuer`.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("rv", &self.store.current_rv())
            .finish_non_exhaustive()
    }
}

/// The namespaces every cluster starts with.
pub const BUILTIN_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

fn meta(obj: &Value) -> &Value {
    &obj["metadata"]
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"].as_object_mut().expect("metadata object")
}

fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect()
}

impl Cluster {
    /// A cluster with the built-in namespaces (each with its `default` ServiceAccount).
    pub fn new() -> Arc<Self> {
        let c = Arc::new(Cluster {
            store: Store::default(),
            registry: RwLock::new(Arc::new(Registry::builtin())),
            admin_token: random_token(),
            tokens: Mutex::new(HashMap::new()),
            pod_logs: RwLock::new(None),
            next_ip: AtomicU32::new(10),
            expiry: tokio::sync::watch::Sender::new(0),
            issuer: RwLock::new(Issuer {
                url: DEFAULT_ISSUER.to_string(),
                jwks_uri: format!("{DEFAULT_ISSUER}/openid/v1/jwks"),
            }),
        });
        let ns = ResKey::new("", "namespaces");
        for name in BUILTIN_NAMESPACES {
            c.create(
                &ns,
                "",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
                &WriteOptions::default(),
            )
            .expect("built-in namespace");
        }
        c.bootstrap();
        c
    }

    /// The object store (watch subscriptions, raw scans).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Forget the watch history and end every open watch with a 410 Expired ERROR event, so
    /// clients must relist (tests use it to exercise their recovery).
    pub fn expire_watches(&self) {
        self.store.compact();
        self.expiry.send_modify(|n| *n += 1);
    }

    /// Changes whenever [`Cluster::expire_watches`] is called (watch streams listen to it).
    pub fn watch_expiry(&self) -> tokio::sync::watch::Receiver<u64> {
        self.expiry.subscribe()
    }

    /// The bearer token of the `admin` user (group `system:masters`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Install the pod log source (the kubelet).
    pub fn set_pod_logs(&self, logs: Arc<dyn PodLogs>) {
        *self.pod_logs.write().unwrap_or_else(|e| e.into_inner()) = Some(logs);
    }

    /// The ServiceAccount token issuer (`/.well-known/openid-configuration`).
    pub fn issuer(&self) -> Issuer {
        self.issuer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Set the ServiceAccount token issuer and where its key set is served.
    pub fn set_issuer(&self, issuer: Issuer) {
        *self.issuer.write().unwrap_or_else(|e| e.into_inner()) = issuer;
    }

    /// A snapshot of the served types.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The served type at `res`.
    pub fn info(&self, res: &ResKey) -> Result<ResourceInfo, ApiError> {
        self.registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&res.group, &res.resource)
            .cloned()
            .ok_or_else(ApiError::no_route)
    }
}

#[cfg(test)]
mod tests;

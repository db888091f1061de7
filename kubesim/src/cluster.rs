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

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use base64::Engine;
use bytes::Bytes;
use futures::Stream;
use rand::Rng;
use serde_json::{Map, Value, json};

pub use crate::error::{ApiError, Cause};
use crate::rbac::{Attributes, UserInfo};
use crate::resources::{Registry, ResourceInfo};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Obj, ObjKey, ResKey, Store, Write};
use crate::{admission, patch, strict};

/// The current time as the API server writes timestamps (RFC 3339, seconds, `Z`).
pub fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}

fn time_in(seconds: i64) -> String {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(seconds);
    t.round(jiff::Unit::Second).unwrap_or(t).to_string()
}

/// `fieldValidation` of a write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Unknown fields are dropped silently.
    Ignore,
    /// Unknown fields are dropped (the HTTP layer may warn).
    #[default]
    Warn,
    /// Unknown fields of built-in kinds fail with 400 `strict decoding error`.
    Strict,
}

/// Options of create, update and patch.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// Manager recorded in managedFields (`kubesim` when unset; required for apply).
    pub field_manager: Option<String>,
    /// Run admission and return the result without persisting anything.
    pub dry_run: bool,
    pub field_validation: FieldValidation,
}

impl WriteOptions {
    /// Options for a writer identified by `manager` (what controllers use).
    pub fn manager(manager: &str) -> Self {
        Self {
            field_manager: Some(manager.to_string()),
            ..Self::default()
        }
    }

    fn manager_name(&self) -> &str {
        self.field_manager.as_deref().unwrap_or("kubesim")
    }
}

/// The four patch formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json` (built-in kinds only).
    Strategic,
    /// `application/apply-patch+yaml`: server-side apply; creates a missing object.
    Apply { force: bool },
}

/// Filters and paging of a list.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub label_selector: Option<LabelSelector>,
    pub field_selector: Option<FieldSelector>,
    /// Page size; `None` or 0 returns everything.
    pub limit: Option<usize>,
    /// The `continue` token of the previous page.
    pub continue_token: Option<String>,
}

/// One page of a list.
#[derive(Clone, Debug)]
pub struct ObjectList {
    pub items: Vec<Value>,
    /// The store's resourceVersion of the snapshot.
    pub resource_version: u64,
    /// Set when more items follow.
    pub continue_token: Option<String>,
}

/// One page of a list, sharing the stored objects.
#[derive(Clone, Debug)]
pub struct SharedList {
    pub items: Vec<Obj>,
    /// The store's resourceVersion of the snapshot.
    pub resource_version: u64,
    /// Set when more items follow.
    pub continue_token: Option<String>,
}

/// `propagationPolicy` of a delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

/// Options of a delete (body or query).
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    /// `None`: the kind's default (Orphan for batch/v1 Jobs, Background otherwise).
    pub propagation_policy: Option<Propagation>,
    /// Pods only; `None`: `spec.terminationGracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

/// The outcome of a delete.
#[derive(Clone, Debug, PartialEq)]
pub enum Deleted {
    /// The object is gone; its last state.
    Gone(Value),
    /// Deletion is pending (finalizers, graceful pod termination, namespace cleanup); the
    /// object with `deletionTimestamp` set.
    Pending(Value),
}

/// `pods/log` options. `limit_bytes` is applied by [`Cluster::pod_logs`]; a [`PodLogs`]
/// source handles the others.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Resolved by the cluster: always a container of the pod.
    pub container: String,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<i64>,
    pub since_seconds: Option<i64>,
    /// RFC 3339.
    pub since_time: Option<String>,
    pub limit_bytes: Option<i64>,
}

/// A stream of log bytes (ends when the log ends, or, with `follow`, when the container exits).
pub type LogStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Where pod logs come from (the kubelet). Without one, every log request answers
/// 400 `container "c" in pod "p" is waiting to start: ContainerCreating`.
pub trait PodLogs: Send + Sync {
    /// The log of `opts.container` of `pod` (the stored Pod object), or the API error to answer
    /// (e.g. 400 waiting to start, 400 `previous terminated container "c" in pod "p" not found`).
    fn logs(&self, pod: &Value, opts: &LogOptions) -> Result<LogStream, ApiError>;
}

struct TokenEntry {
    namespace: String,
    name: String,
    uid: String,
}

/// The cluster state and its API. Share it as `Arc<Cluster>`.
pub struct Cluster {
    store: Store,
    registry: RwLock<Arc<Registry>>,
    admin_token: String,
    tokens: Mutex<HashMap<String, TokenEntry>>,
    pod_logs: RwLock<Option<Arc<dyn PodLogs>>>,
    next_ip: AtomicU32,
    expiry: tokio::sync::watch::Sender<u64>,
}

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

const GENERATE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn random_suffix(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| GENERATE_ALPHABET[rng.random_range(0..GENERATE_ALPHABET.len())] as char)
        .collect()
}

fn random_token() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill(&mut bytes);
    hex::encode(bytes)
}

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

/// The object with `apiVersion`, `kind`, `metadata` first, as the API server prints it.
fn canonical(obj: Value) -> Value {
    let Value::Object(mut m) = obj else {
        return obj;
    };
    let mut out = Map::new();
    for k in ["apiVersion", "kind", "metadata"] {
        if let Some(v) = m.remove(k) {
            out.insert(k.to_string(), v);
        }
    }
    out.extend(m);
    Value::Object(out)
}

/// Whether the type tracks `metadata.generation` (workloads, CRDs, custom resources).
fn has_generation(info: &ResourceInfo) -> bool {
    info.custom
        || matches!(
            info.group.as_str(),
            "apps" | "batch" | "apiextensions.k8s.io"
        )
}

/// Everything but `metadata` (and `status` when it is a subresource): what `generation` tracks.
fn content(info: &ResourceInfo, obj: &Value) -> Value {
    let mut m = obj.as_object().cloned().unwrap_or_default();
    m.remove("metadata");
    m.remove("apiVersion");
    m.remove("kind");
    if info.has_subresource("status") {
        m.remove("status");
    }
    Value::Object(m)
}

/// The object minus resourceVersion and managedFields (an update that changes nothing else is
/// not written).
fn comparable(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    v
}

/// Whether a write leaves an object that must now disappear: deletion requested, no
/// finalizers left, no graceful termination pending (and, for namespaces, no spec finalizers).
fn ready_to_remove(obj: &Value) -> bool {
    let m = meta(obj);
    m.get("deletionTimestamp").is_some()
        && finalizers(obj).is_empty()
        && m["deletionGracePeriodSeconds"].as_i64().unwrap_or(0) == 0
        && obj["spec"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty)
}

/// Which part of an object a write may change.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The main resource: `status` is kept from the stored object when it is a subresource.
    Main,
    /// The status subresource: only `status` is taken.
    Status,
    /// Everything (trusted in-process writers).
    All,
}

impl Scope {
    fn subresource(self) -> Option<&'static str> {
        match self {
            Scope::Status => Some("status"),
            _ => None,
        }
    }
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

    // ---- authentication and authorization ----

    /// The user of a bearer token: the admin, or a ServiceAccount whose token was issued by
    /// [`Cluster::issue_token`] and which still exists.
    pub fn authenticate(&self, token: &str) -> Option<UserInfo> {
        if token == self.admin_token {
            return Some(UserInfo {
                name: "admin".into(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
            });
        }
        let (ns, name, uid) = {
            let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
            let e = tokens.get(token)?;
            (e.namespace.clone(), e.name.clone(), e.uid.clone())
        };
        let sa = self.store.get(&ObjKey::new(
            &ResKey::new("", "serviceaccounts"),
            &ns,
            &name,
        ))?;
        if meta(&sa)["uid"].as_str() != Some(&uid) {
            return None;
        }
        Some(UserInfo {
            name: format!("system:serviceaccount:{ns}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
        })
    }

    /// Issue a bearer token for ServiceAccount `namespace`/`name` (404 when it does not exist).
    /// The token stays valid while the ServiceAccount exists.
    pub fn issue_token(&self, namespace: &str, name: &str) -> Result<String, ApiError> {
        let res = ResKey::new("", "serviceaccounts");
        let sa = self.get(&res, namespace, name)?;
        let token = format!("kubesim-sa.{}", random_token());
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                token.clone(),
                TokenEntry {
                    namespace: namespace.into(),
                    name: name.into(),
                    uid: meta(&sa)["uid"].as_str().unwrap_or_default().into(),
                },
            );
        Ok(token)
    }

    /// RBAC decision for `user` (403 with the API server's message when denied).
    pub fn authorize(&self, user: &UserInfo, attrs: &Attributes) -> Result<(), ApiError> {
        let decision = self.decide(user, attrs);
        if decision.allowed {
            return Ok(());
        }
        let info = self
            .info(&ResKey::new(&attrs.api_group, &attrs.resource))
            .ok();
        Err(ApiError::forbidden(
            crate::rbac::forbidden_message_with_reason(user, attrs, &decision.reason),
            info.as_ref(),
            &attrs.name,
        ))
    }

    /// The RBAC decision for `user` with the Roles and bindings currently stored.
    pub fn decide(&self, user: &UserInfo, attrs: &Attributes) -> crate::rbac::Decision {
        if user.groups.iter().any(|g| g == "system:masters") {
            return crate::rbac::Decision {
                allowed: true,
                reason: String::new(),
            };
        }
        let fetch = |r: &str| {
            self.store
                .list(&ResKey::new("rbac.authorization.k8s.io", r), None)
                .0
        };
        let (roles, croles, rbs, crbs) = (
            fetch("roles"),
            fetch("clusterroles"),
            fetch("rolebindings"),
            fetch("clusterrolebindings"),
        );
        let (r1, r2, r3, r4) = (refs(&roles), refs(&croles), refs(&rbs), refs(&crbs));
        let policy = crate::rbac::Policy {
            roles: &r1,
            cluster_roles: &r2,
            role_bindings: &r3,
            cluster_role_bindings: &r4,
        };
        crate::rbac::decide(&policy, user, attrs)
    }

    // ---- reads ----

    /// One object (404 when absent).
    pub fn get(&self, res: &ResKey, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let info = self.info(res)?;
        let ns = if info.namespaced { namespace } else { "" };
        self.store
            .get(&ObjKey::new(res, ns, name))
            .map(|o| (*o).clone())
            .ok_or_else(|| ApiError::not_found(&info, name))
    }

    /// Objects of a collection in `namespace` (all namespaces when `None`), filtered and paged.
    pub fn list(
        &self,
        res: &ResKey,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ObjectList, ApiError> {
        let page = self.list_shared(res, namespace, opts)?;
        Ok(ObjectList {
            items: page.items.iter().map(|o| (**o).clone()).collect(),
            resource_version: page.resource_version,
            continue_token: page.continue_token,
        })
    }

    /// [`Cluster::list`] without copying the stored objects.
    pub fn list_shared(
        &self,
        res: &ResKey,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<SharedList, ApiError> {
        let info = self.info(res)?;
        let namespace = if info.namespaced { namespace } else { None };
        let after = match &opts.continue_token {
            None => None,
            Some(t) => Some(decode_continue(t, res)?),
        };
        let (objs, rv) = self.store.list_after(res, namespace, after.as_ref());
        let limit = opts.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let mut items: Vec<Obj> = Vec::new();
        let mut continue_token = None;
        for o in objs {
            if !opts.label_selector.as_ref().is_none_or(|s| s.matches(&o))
                || !opts.field_selector.as_ref().is_none_or(|s| s.matches(&o))
            {
                continue;
            }
            if items.len() == limit {
                let last = items.last().expect("limit > 0");
                continue_token = Some(encode_continue(rv, last));
                break;
            }
            items.push(o);
        }
        Ok(SharedList {
            items,
            resource_version: rv,
            continue_token,
        })
    }

    // ---- writes ----

    /// Create `obj` in `namespace` (ignored for cluster-scoped types): admission, server-set
    /// metadata, managedFields. 409 when it exists, 404 when the namespace does not.
    pub fn create(
        &self,
        res: &ResKey,
        namespace: &str,
        obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let info = self.info(res)?;
        self.create_inner(&info, namespace, obj, opts, false)
    }

    fn create_inner(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        mut obj: Value,
        opts: &WriteOptions,
        applied: bool,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let ns = if info.namespaced {
            namespace.to_string()
        } else {
            String::new()
        };
        if info.namespaced {
            if ns.is_empty() {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            if let Some(body_ns) = meta(&obj)["namespace"].as_str()
                && !body_ns.is_empty()
                && body_ns != ns
            {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            let nskey = ObjKey::new(&ResKey::new("", "namespaces"), "", &ns);
            match self.store.get(&nskey) {
                None => return Err(ApiError::namespace_not_found(&ns)),
                Some(n) if meta(&n).get("deletionTimestamp").is_some() => {
                    return Err(ApiError::forbidden(
                        format!(
                            "{} {:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                            info.qualified(),
                            meta(&obj)["name"].as_str().unwrap_or_default()
                        ),
                        Some(info),
                        meta(&obj)["name"].as_str().unwrap_or_default(),
                    ));
                }
                Some(_) => {}
            }
        }
        // Admission errors name the object as requested (generateName before a name exists).
        let requested = [
            meta(&obj)["name"].as_str(),
            meta(&obj)["generateName"].as_str(),
        ]
        .into_iter()
        .flatten()
        .find(|n| !n.is_empty())
        .unwrap_or_default()
        .to_string();
        // Server-set metadata.
        let uid = uuid::Uuid::new_v4().to_string();
        {
            let m = meta_mut(&mut obj);
            let name = m
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if name.is_empty()
                && let Some(g) = m
                    .get("generateName")
                    .and_then(Value::as_str)
                    .filter(|g| !g.is_empty())
            {
                m.insert(
                    "name".into(),
                    Value::String(format!("{g}{}", random_suffix(5))),
                );
            }
            if info.namespaced {
                m.insert("namespace".into(), Value::String(ns.clone()));
            } else {
                m.remove("namespace");
            }
            m.insert("uid".into(), Value::String(uid.clone()));
            m.insert("creationTimestamp".into(), Value::String(now()));
            if has_generation(info) {
                m.insert("generation".into(), json!(1));
            } else {
                m.remove("generation");
            }
            for k in [
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
            ] {
                m.remove(k);
            }
            if !applied {
                m.remove("managedFields");
            }
        }
        obj["apiVersion"] = Value::String(info.api_version());
        obj["kind"] = Value::String(info.kind.clone());
        if info.has_subresource("status")
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        if opts.field_validation == FieldValidation::Strict {
            strict::check(info, &obj, false)?;
        } else {
            strict::drop_unknown(info, &mut obj);
        }
        admission::default_object(info, &mut obj)?;
        admission::prepare_create(info, &mut obj, &uid);
        if (info.group.as_str(), info.resource.as_str()) == ("", "services") {
            self.allocate_cluster_ip(&mut obj);
        }
        let name = meta(&obj)["name"].as_str().unwrap_or_default().to_string();
        let causes = admission::validate(info, &obj, None);
        if !causes.is_empty() {
            return Err(ApiError::invalid(info, &name, causes));
        }
        if (info.group.as_str(), info.resource.as_str()) == ("", "pods") {
            // The ServiceAccount admission plugin: the pod's ServiceAccount must exist.
            let sa = obj["spec"]["serviceAccountName"]
                .as_str()
                .unwrap_or("default");
            let sa_key = ObjKey::new(&ResKey::new("", "serviceaccounts"), &ns, sa);
            if self.store.get(&sa_key).is_none() {
                return Err(ApiError::forbidden(
                    format!(
                        "pods {requested:?} is forbidden: error looking up service account {ns}/{sa}: serviceaccount {sa:?} not found"
                    ),
                    Some(info),
                    &requested,
                ));
            }
        }
        if info.group == "apiextensions.k8s.io" {
            crate::resources::Registry::default()
                .add_crd(&obj)
                .map_err(|e| {
                    ApiError::invalid(info, &name, vec![Cause::invalid("spec", &json!({}), &e)])
                })?;
        }
        let ts = now();
        if !applied {
            patch::record_update(None, &mut obj, opts.manager_name(), None, &ts);
        }
        let obj = canonical(obj);
        let key = ObjKey::new(&info.key(), &ns, &name);
        let mut result = None;
        self.store.write(&key, |cur| {
            if cur.is_some() {
                return Err(ApiError::already_exists(info, &name));
            }
            if opts.dry_run {
                result = Some(obj.clone());
                return Ok(Write::Unchanged);
            }
            Ok(Write::Put(obj.clone()))
        })?;
        let out = match result {
            Some(v) => v,
            None => (*self
                .store
                .get(&key)
                .ok_or_else(|| ApiError::not_found(info, &name))?)
            .clone(),
        };
        if !opts.dry_run {
            self.after_write(info, &out);
        }
        Ok(out)
    }

    fn allocate_cluster_ip(&self, obj: &mut Value) {
        let spec = &mut obj["spec"];
        if spec["type"] == "ExternalName" {
            return;
        }
        let ip = match spec["clusterIP"].as_str() {
            Some(ip) if !ip.is_empty() => ip.to_string(),
            _ => {
                let n = self.next_ip.fetch_add(1, Ordering::Relaxed);
                format!("10.96.{}.{}", (n >> 8) & 0xff, n & 0xff)
            }
        };
        spec["clusterIP"] = Value::String(ip.clone());
        spec["clusterIPs"] = json!([ip]);
    }

    /// Side effects of a stored write: CustomResourceDefinitions start being served, and a
    /// namespace gets its `default` ServiceAccount.
    fn after_write(&self, info: &ResourceInfo, obj: &Value) {
        match (info.group.as_str(), info.resource.as_str()) {
            ("apiextensions.k8s.io", "customresourcedefinitions")
                if meta(obj).get("deletionTimestamp").is_none() =>
            {
                let mut registry = self.registry.write().unwrap_or_else(|e| e.into_inner());
                let _ = Arc::make_mut(&mut registry).add_crd(obj);
            }
            ("", "namespaces") => {
                let ns = meta(obj)["name"].as_str().unwrap_or_default();
                let key = ObjKey::new(&ResKey::new("", "serviceaccounts"), ns, "default");
                if meta(obj).get("deletionTimestamp").is_none() && self.store.get(&key).is_none() {
                    let _ = self.create(
                        &key.res,
                        ns,
                        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}),
                        &WriteOptions::default(),
                    );
                }
            }
            _ => {}
        }
    }

    /// Side effects of a removal: a deleted CustomResourceDefinition takes its objects along.
    fn after_remove(&self, info: &ResourceInfo, obj: &Value) {
        if (info.group.as_str(), info.resource.as_str())
            == ("apiextensions.k8s.io", "customresourcedefinitions")
        {
            let Ok(served) = crate::resources::Registry::default().add_crd(obj) else {
                return;
            };
            {
                let mut registry = self.registry.write().unwrap_or_else(|e| e.into_inner());
                Arc::make_mut(&mut registry).remove_crd(obj);
            }
            let (items, _) = self.store.list(&served.key(), None);
            for o in items {
                let key = ObjKey::new(
                    &served.key(),
                    meta(&o)["namespace"].as_str().unwrap_or_default(),
                    meta(&o)["name"].as_str().unwrap_or_default(),
                );
                let _ = self.store.write::<ApiError>(&key, |_| Ok(Write::Delete));
            }
        }
    }

    /// The common update path: `f` turns the stored object into the candidate, then the
    /// scope, server-set metadata, defaults, validation, generation and managedFields rules
    /// apply. `applied` marks server-side apply results (managedFields already computed).
    #[allow(clippy::too_many_arguments)]
    fn update_inner(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        scope: Scope,
        opts: &WriteOptions,
        applied: bool,
        validate: bool,
        f: impl FnOnce(&Value) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let ns = if info.namespaced { namespace } else { "" };
        let key = ObjKey::new(&info.key(), ns, name);
        let mut dry = None;
        let mut remove = false;
        let mut unchanged = None;
        let written = self.store.write(&key, |cur| {
            let Some(cur) = cur else {
                return Err(ApiError::not_found(info, name));
            };
            let old: &Value = cur;
            let mut new = f(old)?;
            if !new.is_object() {
                return Err(ApiError::bad_request(
                    "the request body must be a JSON object",
                ));
            }
            // Optimistic concurrency: a resourceVersion in the new object must match.
            if let Some(rv) = meta(&new)["resourceVersion"]
                .as_str()
                .filter(|s| !s.is_empty())
                && Some(rv) != meta(old)["resourceVersion"].as_str()
            {
                return Err(ApiError::conflict(info, name));
            }
            if let Some(n) = meta(&new)["name"].as_str()
                && !n.is_empty()
                && n != name
            {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            match scope {
                Scope::Status => {
                    let status = new.get("status").cloned();
                    let managed = meta(&new).get("managedFields").cloned();
                    new = old.clone();
                    if applied && let Some(mf) = managed {
                        meta_mut(&mut new).insert("managedFields".into(), mf);
                    }
                    match status {
                        Some(s) => new["status"] = s,
                        None => {
                            if let Some(m) = new.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                Scope::Main if info.has_subresource("status") => match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                },
                _ => {}
            }
            // Server-set metadata is kept from the stored object.
            {
                let om = meta(old).clone();
                let m = meta_mut(&mut new);
                for k in [
                    "uid",
                    "creationTimestamp",
                    "generation",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "namespace",
                    "name",
                ] {
                    match om.get(k) {
                        Some(v) => m.insert(k.into(), v.clone()),
                        None => m.remove(k),
                    };
                }
                if !m.contains_key("managedFields")
                    && let Some(mf) = om.get("managedFields")
                {
                    m.insert("managedFields".into(), mf.clone());
                }
                m.insert("resourceVersion".into(), om["resourceVersion"].clone());
            }
            new["apiVersion"] = Value::String(info.api_version());
            new["kind"] = Value::String(info.kind.clone());
            if scope != Scope::Status {
                if opts.field_validation == FieldValidation::Strict {
                    strict::check(info, &new, false)?;
                } else {
                    strict::drop_unknown(info, &mut new);
                }
                admission::default_object(info, &mut new)?;
            }
            if validate {
                let causes = admission::validate(info, &new, Some(old));
                if !causes.is_empty() {
                    return Err(ApiError::invalid(info, name, causes));
                }
            }
            if has_generation(info) && content(info, &new) != content(info, old) {
                let g = meta(old)["generation"].as_i64().unwrap_or(0);
                meta_mut(&mut new).insert("generation".into(), json!(g + 1));
            }
            if !applied {
                patch::record_update(
                    Some(old),
                    &mut new,
                    opts.manager_name(),
                    scope.subresource(),
                    &now(),
                );
            }
            if comparable(&new) == comparable(old) {
                unchanged = Some(old.clone());
                return Ok(Write::Unchanged);
            }
            let new = canonical(new);
            remove = ready_to_remove(&new);
            if opts.dry_run {
                dry = Some(new);
                return Ok(Write::Unchanged);
            }
            Ok(Write::Put(new))
        })?;
        if let Some(v) = dry.or(unchanged) {
            return Ok(v);
        }
        let written = written
            .map(|o| (*o).clone())
            .ok_or_else(|| ApiError::not_found(info, name))?;
        if remove {
            return Ok(self.remove_if_ready(info, &key).unwrap_or(written));
        }
        self.after_write(info, &written);
        Ok(written)
    }

    /// Remove the object at `key` if it is still ready to go; returns its last state.
    fn remove_if_ready(&self, info: &ResourceInfo, key: &ObjKey) -> Option<Value> {
        let gone = self
            .store
            .write::<ApiError>(key, |cur| {
                Ok(if cur.is_some_and(|c| ready_to_remove(c)) {
                    Write::Delete
                } else {
                    Write::Unchanged
                })
            })
            .ok()
            .flatten()?;
        self.after_remove(info, &gone);
        Some((*gone).clone())
    }

    /// Replace an object (PUT). `.status` is ignored for types with a status subresource; a
    /// `metadata.resourceVersion` in `obj` must match (409). Removing the last finalizer of an
    /// object being deleted removes it.
    pub fn update(
        &self,
        res: &ResKey,
        namespace: &str,
        name: &str,
        obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let info = self.info(res)?;
        let lease_like = matches!(
            (info.group.as_str(), info.resource.as_str()),
            ("coordination.k8s.io", "leases") | ("", "events") | ("", "endpoints")
        );
        let ns = if info.namespaced { namespace } else { "" };
        if lease_like && self.store.get(&ObjKey::new(res, ns, name)).is_none() {
            let mut obj = obj;
            if obj.is_object() && meta(&obj)["name"].as_str().is_none_or(str::is_empty) {
                meta_mut(&mut obj).insert("name".into(), Value::String(name.into()));
            }
            return self.create_inner(&info, namespace, obj, opts, false);
        }
        self.update_inner(
            &info,
            namespace,
            name,
            Scope::Main,
            opts,
            false,
            true,
            |_| Ok(obj),
        )
    }

    /// Replace the status of an object (PUT `/status`): only `.status` of `obj` is taken.
    pub fn replace_status(
        &self,
        res: &ResKey,
        namespace: &str,
        name: &str,
        obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let info = self.info(res)?;
        self.update_inner(
            &info,
            namespace,
            name,
            Scope::Status,
            opts,
            false,
            true,
            |_| Ok(obj),
        )
    }

    /// Server-side apply of `body` to the existing object (see [`Cluster::patch`]).
    #[allow(clippy::too_many_arguments)]
    fn apply_existing(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        scope: Scope,
        body: &Value,
        manager: &str,
        force: bool,
        ts: &str,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        strict::check(info, body, true)?;
        let mut applied = body.clone();
        if scope == Scope::Status {
            // Only status is applied through the subresource.
            let status = applied.get("status").cloned().unwrap_or(json!({}));
            applied = json!({"apiVersion": body["apiVersion"], "kind": body["kind"], "metadata": {"name": name}, "status": status});
        }
        self.update_inner(info, namespace, name, scope, opts, true, true, |old| {
            if let Some(rv) = meta(&applied)["resourceVersion"].as_str()
                && Some(rv) != meta(old)["resourceVersion"].as_str()
            {
                return Err(ApiError::conflict(info, name));
            }
            // Field ownership through the status subresource is kept apart from the
            // main resource's, as the API server keys managedFields by subresource.
            let (view, others) = managed_view(old, scope == Scope::Status);
            let mut new = patch::server_side_apply(Some(&view), &applied, manager, force, ts)
                .map_err(|e| apply_error(info, name, e, Some(&view)))?;
            let mut entries: Vec<Value> = meta(&new)["managedFields"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if scope == Scope::Status {
                for e in &mut entries {
                    e["subresource"] = json!("status");
                }
            }
            entries.extend(others);
            let m = meta_mut(&mut new);
            m.insert("managedFields".into(), Value::Array(entries));
            m.remove("resourceVersion");
            Ok(new)
        })
    }

    /// Patch an object (or its status with `subresource: Some("status")`). Apply creates a
    /// missing object; the other types answer 404. A `metadata.resourceVersion` in the patch
    /// is a precondition (409).
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        res: &ResKey,
        namespace: &str,
        name: &str,
        subresource: Option<&str>,
        kind: PatchType,
        body: &Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let info = self.info(res)?;
        let scope = if subresource == Some("status") {
            Scope::Status
        } else {
            Scope::Main
        };
        match kind {
            PatchType::Apply { force } => {
                let manager = opts
                    .field_manager
                    .clone()
                    .filter(|m| !m.is_empty())
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "PATCH, application/apply-patch+yaml requests require a fieldManager",
                        )
                    })?;
                if !body.is_object() {
                    return Err(ApiError::bad_request("the apply body must be an object"));
                }
                if let Some(n) = meta(body)["name"].as_str()
                    && n != name
                {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({n}) does not match the name on the URL ({name})"
                    )));
                }
                let ns = if info.namespaced { namespace } else { "" };
                let ts = now();
                // As kube-apiserver's guaranteed update: an apply racing another write that
                // creates or deletes the object is applied again to what that write left (a
                // concurrent create never answers AlreadyExists).
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    let result = if self.store.get(&ObjKey::new(res, ns, name)).is_none() {
                        if scope == Scope::Status {
                            return Err(ApiError::not_found(&info, name));
                        }
                        let mut applied = body.clone();
                        meta_mut(&mut applied).insert("name".into(), Value::String(name.into()));
                        strict::check(&info, &applied, true)?;
                        let created =
                            patch::server_side_apply(None, &applied, &manager, force, &ts)
                                .map_err(|e| patch_error(&info, name, e))?;
                        match self.create_inner(&info, namespace, created, opts, true) {
                            Err(e) if e.code == 409 && attempts < 3 => continue,
                            other => other,
                        }
                    } else {
                        match self.apply_existing(
                            &info, namespace, name, scope, body, &manager, force, &ts, opts,
                        ) {
                            Err(e) if e.code == 404 && scope == Scope::Main && attempts < 3 => {
                                continue;
                            }
                            other => other,
                        }
                    };
                    return result;
                }
            }
            PatchType::Strategic if info.custom => Err(ApiError::unsupported_media_type(
                "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            )),
            _ => self.update_inner(&info, namespace, name, scope, opts, false, true, |old| {
                let mut new = match kind {
                    PatchType::Json => {
                        patch::json_patch(old, body).map_err(|e| patch_error(&info, name, e))?
                    }
                    PatchType::Merge => patch::merge_patch(old, body),
                    _ => patch::strategic_merge_patch(old, body, &info.api_version(), &info.kind)
                        .map_err(|e| patch_error(&info, name, e))?,
                };
                // Only a resourceVersion the patch itself carries is a precondition.
                let patched_rv = match kind {
                    PatchType::Json => {
                        meta(&new)["resourceVersion"] != meta(old)["resourceVersion"]
                    }
                    _ => meta(body).get("resourceVersion").is_some(),
                };
                if !patched_rv {
                    meta_mut(&mut new).remove("resourceVersion");
                }
                Ok(new)
            }),
        }
    }

    /// Atomically change the status of an object (for controllers and the kubelet): `f` gets the
    /// whole stored object and only its `.status` is kept. Bumps the resourceVersion and emits
    /// MODIFIED when the status changed; a no-op change writes nothing.
    pub fn update_status(
        &self,
        res: &ResKey,
        namespace: &str,
        name: &str,
        manager: &str,
        f: impl FnOnce(&mut Value) -> Result<(), ApiError>,
    ) -> Result<Value, ApiError> {
        self.update_with(res, namespace, name, manager, Scope::Status, f)
    }

    /// Atomically change any part of an object (for controllers: remove a finalizer, strip
    /// ownerReferences, set `spec.nodeName`, ...). No validation; generation and
    /// managedFields rules apply. When the change leaves an object being deleted without
    /// finalizers, it is removed and its last state returned.
    pub fn mutate(
        &self,
        res: &ResKey,
        namespace: &str,
        name: &str,
        manager: &str,
        f: impl FnOnce(&mut Value) -> Result<(), ApiError>,
    ) -> Result<Value, ApiError> {
        self.update_with(res, namespace, name, manager, Scope::All, f)
    }

    /// An unconditional read-modify-write of `scope` of an object by `manager` (no
    /// resourceVersion precondition), shared by [`Cluster::update_status`] and [`Cluster::mutate`].
    fn update_with(
        &self,
        res: &ResKey,
        namespace: &str,
        name: &str,
        manager: &str,
        scope: Scope,
        f: impl FnOnce(&mut Value) -> Result<(), ApiError>,
    ) -> Result<Value, ApiError> {
        let info = self.info(res)?;
        self.update_inner(
            &info,
            namespace,
            name,
            scope,
            &WriteOptions::manager(manager),
            false,
            false,
            |old| {
                let mut v = old.clone();
                f(&mut v)?;
                meta_mut(&mut v).remove("resourceVersion");
                Ok(v)
            },
        )
    }

    /// Delete an object. See [`DeleteOptions`]; with finalizers (after adding `foregroundDeletion`
    /// or `orphan` for those policies) only `deletionTimestamp` is set. Scheduled, running pods
    /// with a grace period get `deletionTimestamp` + `deletionGracePeriodSeconds` and are removed by
    /// the kubelet; Namespaces turn `Terminating` until the namespace controller finishes.
    pub fn delete(
        &self,
        res: &ResKey,
        namespace: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let info = self.info(res)?;
        let ns = if info.namespaced { namespace } else { "" };
        let key = ObjKey::new(res, ns, name);
        let is_pod = (info.group.as_str(), info.resource.as_str()) == ("", "pods");
        let is_ns = (info.group.as_str(), info.resource.as_str()) == ("", "namespaces");
        let mut outcome = None;
        let mut removed = false;
        self.store.write(&key, |cur| {
            let Some(cur) = cur else { return Err(ApiError::not_found(&info, name)) };
            let cur: &Value = cur;
            if let Some(uid) = &opts.precondition_uid
                && meta(cur)["uid"].as_str() != Some(uid)
            {
                return Err(ApiError::conflict_msg(
                    &info,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta(cur)["uid"].as_str().unwrap_or_default()
                    ),
                ));
            }
            if let Some(rv) = &opts.precondition_resource_version
                && meta(cur)["resourceVersion"].as_str() != Some(rv)
            {
                return Err(ApiError::conflict_msg(
                    &info,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        meta(cur)["resourceVersion"].as_str().unwrap_or_default()
                    ),
                ));
            }
            let policy = opts.propagation_policy.unwrap_or(
                if (info.group.as_str(), info.resource.as_str()) == ("batch", "jobs") {
                    Propagation::Orphan
                } else {
                    Propagation::Background
                },
            );
            let mut fins = finalizers(cur);
            let already = meta(cur).get("deletionTimestamp").is_some();
            let extra = match policy {
                Propagation::Foreground => Some("foregroundDeletion"),
                Propagation::Orphan => Some("orphan"),
                Propagation::Background => None,
            };
            if !already
                && let Some(f) = extra
                && !fins.iter().any(|x| x == f)
            {
                fins.push(f.to_string());
            }
            let grace = if is_pod {
                let terminal = matches!(cur["status"]["phase"].as_str(), Some("Succeeded") | Some("Failed"));
                let scheduled = cur["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
                if terminal || !scheduled {
                    0
                } else {
                    opts.grace_period_seconds
                        .or(cur["spec"]["terminationGracePeriodSeconds"].as_i64())
                        .unwrap_or(30)
                        .max(0)
                }
            } else {
                0
            };
            let ns_pending = is_ns && cur["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
            if fins.is_empty() && grace == 0 && !ns_pending {
                if opts.dry_run {
                    outcome = Some(Deleted::Gone(cur.clone()));
                    return Ok(Write::Unchanged);
                }
                removed = true;
                return Ok(Write::Delete);
            }
            let mut new = cur.clone();
            let current_grace = meta(cur)["deletionGracePeriodSeconds"].as_i64();
            let m = meta_mut(&mut new);
            if !already || current_grace.is_some_and(|g| grace < g) {
                m.insert("deletionTimestamp".into(), Value::String(time_in(grace)));
                m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
            if !fins.is_empty() {
                m.insert("finalizers".into(), json!(fins));
            }
            if is_ns {
                new["status"]["phase"] = json!("Terminating");
            }
            if comparable(&new) == comparable(cur) || opts.dry_run {
                outcome = Some(Deleted::Pending(new));
                return Ok(Write::Unchanged);
            }
            Ok(Write::Put(new))
        })
        .and_then(|written| {
            if let Some(o) = outcome {
                return Ok(o);
            }
            let w = written.ok_or_else(|| ApiError::not_found(&info, name))?;
            // Decided by this write, not by a read after it: a controller may already have
            // removed the last finalizer (and so the object) by then.
            if removed {
                self.after_remove(&info, &w);
                Ok(Deleted::Gone((*w).clone()))
            } else {
                Ok(Deleted::Pending((*w).clone()))
            }
        })
    }

    /// Delete every object of a collection matching `list` (deletecollection). Returns the
    /// outcome of each delete.
    pub fn delete_collection(
        &self,
        res: &ResKey,
        namespace: Option<&str>,
        list: &ListOptions,
        opts: &DeleteOptions,
    ) -> Result<Vec<Deleted>, ApiError> {
        let items = self.list(
            res,
            namespace,
            &ListOptions {
                limit: None,
                continue_token: None,
                ..list.clone()
            },
        )?;
        let mut out = Vec::new();
        for o in items.items {
            let ns = meta(&o)["namespace"].as_str().unwrap_or_default();
            let name = meta(&o)["name"].as_str().unwrap_or_default();
            match self.delete(res, ns, name, opts) {
                Ok(d) => out.push(d),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    // ---- subresources ----

    /// The `autoscaling/v1` Scale of a type with a scale subresource.
    pub fn get_scale(&self, res: &ResKey, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let info = self.info(res)?;
        if !info.has_subresource("scale") {
            return Err(ApiError::no_route());
        }
        let obj = self.get(res, namespace, name)?;
        Ok(scale_of(&obj))
    }

    /// Set `spec.replicas` from a Scale (`metadata.resourceVersion` in it is a precondition).
    pub fn set_scale(
        &self,
        res: &ResKey,
        namespace: &str,
        name: &str,
        scale: &Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let info = self.info(res)?;
        if !info.has_subresource("scale") {
            return Err(ApiError::no_route());
        }
        let Some(replicas) = scale["spec"]["replicas"].as_i64() else {
            return Err(ApiError::invalid(
                &info,
                name,
                vec![Cause::required("spec.replicas", "")],
            ));
        };
        if replicas < 0 {
            return Err(ApiError::invalid(
                &info,
                name,
                vec![Cause::invalid(
                    "spec.replicas",
                    &json!(replicas),
                    "must be greater than or equal to 0",
                )],
            ));
        }
        let rv = meta(scale)["resourceVersion"].as_str().map(str::to_string);
        let obj = self.update_inner(
            &info,
            namespace,
            name,
            Scope::Main,
            opts,
            false,
            true,
            |old| {
                let mut v = old.clone();
                v["spec"]["replicas"] = json!(replicas);
                match &rv {
                    Some(rv) => {
                        meta_mut(&mut v).insert("resourceVersion".into(), Value::String(rv.clone()))
                    }
                    None => meta_mut(&mut v).remove("resourceVersion"),
                };
                Ok(v)
            },
        )?;
        Ok(scale_of(&obj))
    }

    /// The log of a pod's container through the installed [`PodLogs`] source. 404 for a missing
    /// pod; 400 when the container is ambiguous or unknown; `limit_bytes` is applied here.
    pub fn pod_logs(
        &self,
        namespace: &str,
        name: &str,
        mut opts: LogOptions,
    ) -> Result<LogStream, ApiError> {
        let pod = self.get(&ResKey::new("", "pods"), namespace, name)?;
        let names: Vec<String> = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect();
        let init: Vec<String> = pod["spec"]["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect();
        if opts.container.is_empty() {
            if let Some(d) =
                meta(&pod)["annotations"]["kubectl.kubernetes.io/default-container"].as_str()
            {
                opts.container = d.to_string();
            } else if names.len() == 1 {
                opts.container = names[0].clone();
            } else {
                let mut msg = format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    names.join(" ")
                );
                if !init.is_empty() {
                    msg.push_str(&format!(
                        " or one of the init containers: [{}]",
                        init.join(" ")
                    ));
                }
                return Err(ApiError::bad_request(msg));
            }
        }
        if !names.contains(&opts.container) && !init.contains(&opts.container) {
            return Err(ApiError::bad_request(format!(
                "container {} is not valid for pod {name}",
                opts.container
            )));
        }
        let source = self
            .pod_logs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(source) = source else {
            return Err(ApiError::bad_request(format!(
                "container {:?} in pod {name:?} is waiting to start: ContainerCreating",
                opts.container
            )));
        };
        let stream = source.logs(&pod, &opts)?;
        Ok(match opts.limit_bytes.filter(|l| *l > 0) {
            None => stream,
            Some(limit) => limit_stream(stream, limit as usize),
        })
    }
}

fn refs(v: &[Arc<Value>]) -> Vec<&Value> {
    v.iter().map(|o| o.as_ref()).collect()
}

fn limit_stream(stream: LogStream, limit: usize) -> LogStream {
    use futures::StreamExt;
    Box::pin(stream.scan(limit, |left, chunk| {
        let out = match chunk {
            Err(e) => Some(Err(e)),
            Ok(_) if *left == 0 => None,
            Ok(b) => {
                let take = b.len().min(*left);
                *left -= take;
                Some(Ok(b.slice(..take)))
            }
        };
        futures::future::ready(out)
    }))
}

fn scale_of(obj: &Value) -> Value {
    let m = meta(obj);
    let selector = obj["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|l| {
            l.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
            "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"],
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

/// `obj` with only the managedFields entries of one side (the status subresource, or the
/// main resource), the subresource marker removed; and the other side's entries.
fn managed_view(obj: &Value, status: bool) -> (Value, Vec<Value>) {
    let entries = meta(obj)["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let (mut mine, others): (Vec<Value>, Vec<Value>) = entries
        .into_iter()
        .partition(|e| (e["subresource"].as_str() == Some("status")) == status);
    for e in &mut mine {
        if let Some(m) = e.as_object_mut() {
            m.remove("subresource");
        }
    }
    let mut view = obj.clone();
    meta_mut(&mut view).insert("managedFields".into(), Value::Array(mine));
    (view, others)
}

fn patch_error(info: &ResourceInfo, name: &str, e: patch::PatchError) -> ApiError {
    apply_error(info, name, e, None)
}

/// A patch failure; apply conflicts name the conflicting managers as their entries in `live`
/// describe them.
fn apply_error(
    info: &ResourceInfo,
    name: &str,
    e: patch::PatchError,
    live: Option<&Value>,
) -> ApiError {
    match e {
        patch::PatchError::Conflict(c) => {
            let entries: Vec<Value> = live
                .and_then(|l| meta(l)["managedFields"].as_array().cloned())
                .unwrap_or_default();
            let describe = |manager: &str| describe_manager(&entries, manager);
            ApiError::apply_conflict(info, name, &c, &describe)
        }
        patch::PatchError::Invalid(m) => ApiError::new(422, "Invalid", m),
    }
}

/// How the API server prints a conflicting manager: `"m"` for an Apply entry, `"m" using v1 at
/// <time>` for an Update entry, with ` with subresource "status"` when it wrote a subresource.
fn describe_manager(entries: &[Value], manager: &str) -> String {
    let mine: Vec<&Value> = entries
        .iter()
        .filter(|e| e["manager"].as_str() == Some(manager))
        .collect();
    let entry = mine
        .iter()
        .find(|e| e["operation"] == "Apply")
        .or(mine.first());
    let mut out = format!("{manager:?}");
    let Some(e) = entry else { return out };
    if let Some(sub) = e["subresource"].as_str().filter(|s| !s.is_empty()) {
        out.push_str(&format!(" with subresource {sub:?}"));
    }
    if e["operation"] == "Update" {
        out.push_str(&format!(
            " using {}",
            e["apiVersion"].as_str().unwrap_or_default()
        ));
        if let Some(t) = e["time"].as_str() {
            out.push_str(&format!(" at {t}"));
        }
    }
    out
}

fn encode_continue(rv: u64, last: &Value) -> String {
    let token = json!({"rv": rv, "ns": meta(last)["namespace"].as_str().unwrap_or_default(), "name": meta(last)["name"]});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str, res: &ResKey) -> Result<ObjKey, ApiError> {
    let expired = || {
        ApiError::expired(
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| expired())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| expired())?;
    let (Some(ns), Some(name)) = (v["ns"].as_str(), v["name"].as_str()) else {
        return Err(expired());
    };
    Ok(ObjKey::new(res, ns, name))
}

impl ApiError {
    /// 404.
    pub fn is_not_found(&self) -> bool {
        self.code == 404
    }

    /// 409 (AlreadyExists or Conflict).
    pub fn is_conflict(&self) -> bool {
        self.code == 409
    }
}

#[cfg(test)]
mod tests;

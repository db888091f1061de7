//! Applying and deleting one connection's objects: the namespace check, the ownership check
//! before every write, server-side apply, workload patches and deletions.

use crate::api::{self, Kube, MetadataList};
use crate::failure;
use crate::log::Log;
use sc_contract::{
    Action, ChangeEntry, MANAGED_BY, MANAGED_BY_LABEL, Metadata, ObjectKey, Reason, RunError,
    RunPhase, Status, USERS_ANNOTATION,
};
use sc_model::names;
use sc_model::render::CONNECTION_ANNOTATION;
use sc_model::{
    Connection, DeletionPolicy, Ejection, PatchError, RequestSet, WorkloadKind, eject_ops,
    inject_ops,
};
use serde_json::{Map, Value, json};

/// The result of one connection in this run.
#[derive(Debug, Clone)]
pub struct ConnRun {
    /// The connection name.
    pub name: String,
    /// What the change set asked for.
    pub action: Action,
    /// The hash the change set asked for.
    pub hash: String,
    /// The content hash of what was applied (when Ready).
    pub applied_hash: Option<String>,
    /// The outcome.
    pub phase: RunPhase,
    /// Objects written (apply) or still present (delete).
    pub objects: Vec<ObjectKey>,
    /// Why it failed.
    pub error: Option<RunError>,
    /// The log lines of this connection.
    pub steps: Vec<String>,
    /// The deletion policy in effect.
    pub deletion_policy: Option<DeletionPolicy>,
}

impl ConnRun {
    /// A run of `entry`, not yet done.
    pub fn new(entry: &ChangeEntry) -> Self {
        ConnRun {
            name: entry.name.clone(),
            action: entry.action,
            hash: entry.hash.clone(),
            applied_hash: None,
            phase: RunPhase::Failed,
            objects: Vec::new(),
            error: None,
            steps: Vec::new(),
            deletion_policy: None,
        }
    }

    /// Marks it failed and logs the failure.
    pub fn fail(&mut self, log: &Log, failure: RunError) {
        self.steps.push(log.failed(&self.name, &failure));
        self.phase = RunPhase::Failed;
        self.error = Some(failure);
    }
}

/// What a materialization step needs.
pub struct Materializer<'a> {
    /// The API.
    pub kube: &'a Kube,
    /// The log.
    pub log: Log,
    /// The valid connections of the request.
    pub set: &'a RequestSet,
    /// The raw requests (`connections.json`, without secrets): every connection still
    /// requested, valid or not.
    pub requests: &'a Value,
    /// Whether the SecretProviderClass API is served (checked once).
    pub spc_served: Option<bool>,
    /// Namespaces found to exist in this run (each is checked once per run).
    pub namespaces: &'a std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Connections applied at once that patch the same workload take turns.
    pub workload_locks: &'a WorkloadLocks,
    /// What is known of the objects to write before writing them (the ownership check).
    pub lookups: &'a Lookups,
}

/// A (namespace, kind) with at most this many objects to write in a run looks each one up
/// (a metadata-only list of that one name) rather than listing the whole collection.
pub const LOOK_UP_ONE_BY_ONE: usize = 16;
/// Objects per page of a metadata-only list.
const LIST_PAGE: u32 = 500;
/// Applies of one object refused with 409 Conflict (it changed since it was looked up), each
/// followed by a new lookup, before its connection fails.
const CONFLICT_TRIES: usize = 4;

/// How the objects of one kind in one namespace are looked up before they are written.
enum Listing {
    /// One metadata-only list of the whole collection; updated with what this run writes.
    Listed(std::sync::Mutex<MetadataList>),
    /// A metadata-only list of each name (few objects to write).
    OneByOne,
    /// `list` is forbidden (the RBAC of an older chart): a GET of each object.
    Refused,
}

/// The listing of one (namespace, kind), taken once.
type ListingCell = std::sync::Arc<tokio::sync::OnceCell<Listing>>;

/// An object as looked up before a write: its metadata (or the whole object), or `None`
/// when it does not exist; and the resourceVersion the apply takes as its precondition (the
/// object's, or the list's when it is absent, so that an object created since is never
/// overwritten: its resourceVersion is larger).
struct Seen {
    existing: Option<Value>,
    precondition: Option<String>,
}

/// The ownership check in bulk: for each (namespace, kind) sc-job writes in a run, one
/// metadata-only list (`PartialObjectMetadataList`, paged), taken the first time an object of
/// it is written; few objects are looked up one by one instead.
#[derive(Default)]
pub struct Lookups {
    /// The objects to write in this run.
    objects: std::collections::BTreeSet<ObjectKey>,
    /// How many, per (namespace, kind).
    wanted: std::collections::BTreeMap<(String, String), usize>,
    listings: std::sync::Mutex<std::collections::BTreeMap<(String, String), ListingCell>>,
    /// The (namespace, kind) whose `list` was forbidden.
    refused: std::sync::Mutex<std::collections::BTreeSet<(String, String)>>,
}

impl Lookups {
    /// Lookups for a run that writes `objects` (repeats count once).
    pub fn new(objects: impl IntoIterator<Item = ObjectKey>) -> Self {
        let objects: std::collections::BTreeSet<ObjectKey> = objects.into_iter().collect();
        let mut wanted = std::collections::BTreeMap::new();
        for o in &objects {
            *wanted
                .entry((o.namespace.clone(), o.kind.clone()))
                .or_insert(0) += 1;
        }
        Lookups {
            objects,
            wanted,
            ..Lookups::default()
        }
    }

    fn is_refused(&self, r: &ObjectKey) -> bool {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&(r.namespace.clone(), r.kind.clone()))
    }

    /// Records that `list` is forbidden for `r`'s kind and namespace; `true` the first time.
    fn refuse(&self, r: &ObjectKey) -> bool {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((r.namespace.clone(), r.kind.clone()))
    }

    fn cell(&self, ns: &str, kind: &str) -> ListingCell {
        self.listings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((ns.to_string(), kind.to_string()))
            .or_default()
            .clone()
    }

    fn wanted(&self, ns: &str, kind: &str) -> usize {
        self.wanted
            .get(&(ns.to_string(), kind.to_string()))
            .copied()
            .unwrap_or(1)
    }
}

/// The objects sc-job writes for `conn` before its workloads (Secret, ServiceAccount,
/// SecretProviderClass).
pub fn objects_to_write(conn: &Connection) -> Vec<ObjectKey> {
    let d = conn.desired();
    let key = |kind: &str, obj: &Value| {
        ObjectKey::new(
            kind,
            obj["metadata"]["namespace"].as_str().unwrap_or_default(),
            obj["metadata"]["name"].as_str().unwrap_or_default(),
        )
    };
    let mut out = Vec::new();
    if let Some(s) = &d.secret {
        out.push(key("Secret", s));
    }
    if let Some(sa) = conn.service_account_name() {
        out.push(ObjectKey::new("ServiceAccount", &d.namespace, &sa));
    }
    if let Some(spc) = &d.secret_provider_class {
        out.push(key("SecretProviderClass", spc));
    }
    out
}

/// `{"metadata": ...}` of an object.
fn metadata_of(obj: &Value) -> Value {
    json!({"metadata": obj["metadata"]})
}

/// One lock per workload (`kind/namespace/name`): connections applied concurrently that list
/// the same workload patch it one after the other, each computing its JSON patch against the
/// other's result, so no patch overwrites another's `envFrom`. Namespaces take a lock too
/// (`Namespace/<name>`), so each is checked once per run.
#[derive(Default)]
pub struct WorkloadLocks(
    std::sync::Mutex<std::collections::BTreeMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
);

impl WorkloadLocks {
    /// The lock of the workload `key`.
    pub fn get(&self, key: String) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default()
            .clone()
    }
}

fn label<'v>(obj: &'v Value, key: &str) -> Option<&'v str> {
    obj["metadata"]["labels"][key].as_str()
}

fn is_ours(obj: &Value) -> bool {
    label(obj, MANAGED_BY_LABEL) == Some(MANAGED_BY)
}

/// An object of `connection` whose `managed-by` label was removed by someone else: the last
/// run of the connection recorded it (`recorded`), sc-job's field manager applied it, and its
/// annotations still name the connection. sc-job takes it back (its apply restores the label);
/// an object we never wrote stays refused, whatever its annotations say.
fn lost_our_label(obj: &Value, connection: &str, recorded: bool) -> bool {
    if !recorded {
        return false;
    }
    let applied_by_us = obj["metadata"]["managedFields"]
        .as_array()
        .is_some_and(|fields| {
            fields.iter().any(|f| {
                f["manager"] == sc_contract::JOB_FIELD_MANAGER && f["operation"] == "Apply"
            })
        });
    let annotations = &obj["metadata"]["annotations"];
    let names_connection = annotations[CONNECTION_ANNOTATION].as_str() == Some(connection)
        || annotations[USERS_ANNOTATION]
            .as_str()
            .is_some_and(|users| users.split(',').any(|u| u.trim() == connection));
    applied_by_us && names_connection
}

fn resource_version(obj: &Value) -> Option<&str> {
    obj["metadata"]["resourceVersion"].as_str()
}

/// The resource name of `kind` (`secrets`), for log lines.
fn plural_of(kind: &str) -> String {
    api::resource(kind).map_or_else(|| kind.to_ascii_lowercase(), |ar| ar.plural)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// The remedy when an object of this kind is in the way.
fn in_the_way_remedy(kind: &str) -> &'static str {
    match kind {
        "ServiceAccount" => {
            "delete or rename that ServiceAccount (sc-extension names it after the identity's client ID), or use another identity"
        }
        _ => "delete it or rename the connection",
    }
}

/// The shared ServiceAccount `sa` in `namespace` as the valid connections using it render it,
/// with the list of its users; `None` when no valid connection uses it.
pub fn shared_service_account(set: &RequestSet, namespace: &str, sa: &str) -> Option<Value> {
    let users: Vec<&Connection> = set
        .connections()
        .iter()
        .filter(|c| {
            c.spec.namespace == namespace && c.service_account_name().as_deref() == Some(sa)
        })
        .collect();
    let mut obj = users.first()?.service_account_object()?;
    let names: Vec<&str> = users.iter().map(|c| c.name()).collect();
    obj["metadata"]["annotations"][USERS_ANNOTATION] = json!(names.join(","));
    Some(obj)
}

/// Whether a connection other than `except` in the raw requests may use ServiceAccount `sa`
/// in `namespace`: a valid one that does, or an invalid one whose `clientId` maps to it.
fn sa_still_used(
    set: &RequestSet,
    requests: &Value,
    namespace: &str,
    sa: &str,
    except: &str,
) -> Vec<String> {
    let mut users = Vec::new();
    let Some(map) = requests.as_object() else {
        return users;
    };
    for (name, req) in map {
        if name == except {
            continue;
        }
        let uses = match set.get(name) {
            Some(c) => {
                c.spec.namespace == namespace && c.service_account_name().as_deref() == Some(sa)
            }
            None => {
                let ns = req["namespace"]
                    .as_str()
                    .unwrap_or(sc_model::request::DEFAULT_NAMESPACE);
                let cid = req["parameters"]["clientId"].as_str().unwrap_or_default();
                ns == namespace && !cid.is_empty() && names::service_account_name(cid) == sa
            }
        };
        if uses {
            users.push(name.clone());
        }
    }
    users
}

impl Materializer<'_> {
    /// Applies every object of `conn`; stops at the first failure. `previous` is the
    /// connection's `status.json` before this run, if any.
    pub async fn apply(
        &mut self,
        conn: &Connection,
        previous: Option<&Status>,
        run: &mut ConnRun,
    ) -> Result<(), RunError> {
        let d = conn.desired();
        let ns = d.namespace.clone();
        let ns_ref = ObjectKey::new("Namespace", "", &ns);
        // One check per namespace and run: the connections of a namespace wait for the first.
        let lock = self.workload_locks.get(ns_ref.to_string());
        let turn = lock.lock().await;
        let known = self
            .namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&ns);
        if !known {
            match self.kube.get("Namespace", "", &ns).await {
                Ok(Some(_)) => {
                    self.namespaces
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(ns.clone());
                }
                Ok(None) => {
                    return Err(RunError::new(
                        Reason::NamespaceNotFound,
                        format!("namespace {ns} does not exist"),
                        format!(
                            "create namespace {ns} or set connections.{}.namespace to an existing namespace (sc-job never creates namespaces)",
                            conn.name()
                        ),
                    ));
                }
                Err(e) => return Err(failure::api_error("get", &ns_ref, &e)),
            }
        }
        drop(turn);
        let recorded = recorded_objects(previous);
        if let Some(secret) = &d.secret {
            let n = secret["data"].as_object().map_or(0, Map::len);
            self.write(
                conn.name(),
                &recorded,
                secret,
                true,
                Some(plural(n, "key", "keys")),
                run,
            )
            .await?;
        }
        if let Some(sa) = conn.service_account_name() {
            let obj = shared_service_account(self.set, &ns, &sa)
                .or_else(|| conn.service_account_object())
                .unwrap_or(Value::Null);
            let users = obj["metadata"]["annotations"][USERS_ANNOTATION]
                .as_str()
                .unwrap_or_default()
                .replace(',', ", ");
            self.write(
                conn.name(),
                &recorded,
                &obj,
                false,
                Some(format!("used by {users}")),
                run,
            )
            .await?;
        }
        if let Some(spc) = &d.secret_provider_class {
            self.check_spc_served(spc).await?;
            let n = conn.spec.keyvault_objects.len();
            self.write(
                conn.name(),
                &recorded,
                spc,
                true,
                Some(plural(n, "object", "objects")),
                run,
            )
            .await?;
        }
        for w in &d.workloads {
            let kind = w.kind.as_str();
            let r = ObjectKey::new(kind, &ns, &w.name);
            let lock = self.workload_locks.get(r.to_string());
            let _turn = lock.lock().await;
            let live = match self.kube.get(kind, &ns, &w.name).await {
                Ok(Some(o)) => o,
                Ok(None) => {
                    return Err(RunError::new(
                        Reason::WorkloadNotFound,
                        format!("{r} does not exist"),
                        format!(
                            "create the workload first or remove it from connections.{}.workloads",
                            conn.name()
                        ),
                    ));
                }
                Err(e) => return Err(failure::api_error("get", &r, &e)),
            };
            let patched_before = recorded_workloads(previous).contains(&r);
            let ops = match inject_ops(&live, &d.patch, patched_before) {
                // The connection's own ServiceAccount of an earlier apply (its clientId
                // changed): the workload moves to the new one.
                Err(PatchError::ServiceAccountConflict { current, .. })
                    if recorded_objects(previous).iter().any(|o| {
                        o.kind == "ServiceAccount" && o.namespace == ns && o.name == current
                    }) =>
                {
                    inject_ops(
                        &without_service_account(&live, w.kind),
                        &d.patch,
                        patched_before,
                    )
                }
                other => other,
            }
            .map_err(|e| {
                RunError::new(
                    Reason::WorkloadNotPatchable,
                    format!("cannot patch {r}: {e}"),
                    format!("or remove it from connections.{}.workloads", conn.name()),
                )
            })?;
            if ops.is_empty() {
                run.steps
                    .push(self.log.step(conn.name(), &r, "unchanged", None));
            } else {
                self.kube
                    .json_patch(kind, &ns, &w.name, &ops)
                    .await
                    .map_err(|e| failure::api_error("patch", &r, &e))?;
                let mut detail = plural(ops.len(), "change", "changes");
                if let Some(key) = &d.patch.restart_annotation {
                    let escaped = key.replace('~', "~0").replace('/', "~1");
                    if ops.iter().any(|o| {
                        o["path"].as_str().is_some_and(|p| p.ends_with(&escaped))
                            || o["value"]["annotations"].get(key).is_some()
                            || o["value"].get(key).is_some()
                    }) {
                        detail.push_str(&format!(
                            "; pod template annotation {key} set to the new content hash: the workload rolls out"
                        ));
                    }
                }
                run.steps
                    .push(self.log.step(conn.name(), &r, "patched", Some(&detail)));
            }
            run.objects.push(r);
        }
        Ok(())
    }

    async fn check_spc_served(&mut self, spc: &Value) -> Result<(), RunError> {
        let served = match self.spc_served {
            Some(s) => s,
            None => {
                let s = self
                    .kube
                    .serves("secrets-store.csi.x-k8s.io/v1", "secretproviderclasses")
                    .await
                    .map_err(|e| {
                        let r = ObjectKey::new(
                            "SecretProviderClass",
                            spc["metadata"]["namespace"].as_str().unwrap_or(""),
                            spc["metadata"]["name"].as_str().unwrap_or(""),
                        );
                        failure::api_error("discover", &r, &e)
                    })?;
                self.spc_served = Some(s);
                s
            }
        };
        if served {
            Ok(())
        } else {
            Err(RunError::new(
                Reason::SecretProviderClassNotServed,
                "the cluster does not serve secretproviderclasses.secrets-store.csi.x-k8s.io/v1 (the Secrets Store CSI driver is not installed)",
                "enable the Azure Key Vault Secrets Provider add-on (az aks enable-addons --addons azure-keyvault-secrets-provider, or the Arc extension Microsoft.AzureKeyVaultSecretsProvider), then run the change again",
            ))
        }
    }

    /// The listing of `r`'s kind and namespace, taken the first time it is needed.
    async fn listing(&self, r: &ObjectKey) -> Result<ListingCell, RunError> {
        let cell = self.lookups.cell(&r.namespace, &r.kind);
        cell.get_or_try_init(|| async {
            if self.lookups.wanted(&r.namespace, &r.kind) <= LOOK_UP_ONE_BY_ONE {
                return Ok(Listing::OneByOne);
            }
            // Only the objects this run writes are kept: memory follows the change set, not
            // the namespace.
            let keep = |name: &str| {
                self.lookups
                    .objects
                    .contains(&ObjectKey::new(&r.kind, &r.namespace, name))
            };
            match self
                .kube
                .list_metadata(&r.kind, &r.namespace, None, LIST_PAGE, keep)
                .await
            {
                Ok(list) => Ok(Listing::Listed(std::sync::Mutex::new(list))),
                Err(e) if api::is_forbidden(&e) => {
                    self.refused(r);
                    Ok(Listing::Refused)
                }
                Err(e) => Err(failure::api_error("list", r, &e)),
            }
        })
        .await?;
        Ok(cell)
    }

    /// `list` of `r`'s kind and namespace was forbidden: logged once.
    fn refused(&self, r: &ObjectKey) {
        if self.lookups.refuse(r) {
            self.log.job(&format!(
                "listing the {} of namespace {} is forbidden: each is checked with a get (the chart grants list)",
                plural_of(&r.kind),
                r.namespace
            ));
        }
    }

    /// The object `r` as it is now: a metadata-only list of its name (whose resourceVersion
    /// is the precondition when it is absent), or a GET when `list` is forbidden.
    async fn look_up_one(&self, r: &ObjectKey) -> Result<Seen, RunError> {
        if !self.lookups.is_refused(r) {
            match self
                .kube
                .list_metadata(&r.kind, &r.namespace, Some(&r.name), LIST_PAGE, |_| true)
                .await
            {
                Ok(list) => {
                    let existing = list.items.get(&r.name).cloned();
                    let precondition = match &existing {
                        Some(e) => resource_version(e).map(str::to_string),
                        None => Some(list.resource_version),
                    };
                    return Ok(Seen {
                        existing,
                        precondition,
                    });
                }
                Err(e) if api::is_forbidden(&e) => self.refused(r),
                Err(e) => return Err(failure::api_error("list", r, &e)),
            }
        }
        let existing = self
            .kube
            .get(&r.kind, &r.namespace, &r.name)
            .await
            .map_err(|e| failure::api_error("get", r, &e))?;
        let precondition = existing
            .as_ref()
            .and_then(resource_version)
            .map(str::to_string);
        Ok(Seen {
            existing,
            precondition,
        })
    }

    /// The object `r` before its first write: from the list of its kind and namespace.
    async fn look_up(&self, r: &ObjectKey) -> Result<Seen, RunError> {
        let cell = self.listing(r).await?;
        match cell.get() {
            Some(Listing::Listed(list)) => {
                let list = list.lock().unwrap_or_else(|e| e.into_inner());
                let existing = list.items.get(&r.name).cloned();
                let precondition = match &existing {
                    Some(e) => resource_version(e).map(str::to_string),
                    None => Some(list.resource_version.clone()),
                };
                Ok(Seen {
                    existing,
                    precondition,
                })
            }
            _ => self.look_up_one(r).await,
        }
    }

    /// After a write: the list of its kind and namespace holds the object as written, so a
    /// later write of it in this run (a shared ServiceAccount) takes that as its precondition.
    fn remember(&self, r: &ObjectKey, after: &Value) {
        let cell = self.lookups.cell(&r.namespace, &r.kind);
        if let Some(Listing::Listed(list)) = cell.get() {
            list.lock()
                .unwrap_or_else(|e| e.into_inner())
                .items
                .insert(r.name.clone(), metadata_of(after));
        }
    }

    /// Refuses the object when it exists and is not ours (or, for `exclusive` objects,
    /// belongs to another connection), applies it and logs created, updated or unchanged.
    ///
    /// The check reads the object's metadata from the list of its kind and namespace; the
    /// apply carries a resourceVersion precondition covering the time since: the object's
    /// when it was listed, the list's when it was absent (an object created since has a larger
    /// one). A 409 Conflict means it changed: it is looked up and checked again.
    async fn write(
        &self,
        connection: &str,
        recorded: &[ObjectKey],
        obj: &Value,
        exclusive: bool,
        detail: Option<String>,
        run: &mut ConnRun,
    ) -> Result<(), RunError> {
        let kind = obj["kind"].as_str().unwrap_or_default();
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let r = ObjectKey::new(kind, ns, name);
        let mut seen = self.look_up(&r).await?;
        let mut tries = 0;
        let (existing, after) = loop {
            tries += 1;
            if let Some(e) = &seen.existing {
                check_owner(&r, e, connection, exclusive, recorded.contains(&r))?;
                let stray = stray_data_keys(e, obj);
                if let (false, Some(rv)) = (stray.is_empty(), seen.precondition.as_deref()) {
                    match self.kube.remove_data_keys(ns, name, &stray, rv).await {
                        Ok(after) => {
                            run.steps.push(self.log.step(
                                connection,
                                &r,
                                "repaired",
                                Some(&format!(
                                    "removed {} another field manager wrote: {}",
                                    plural(stray.len(), "key", "keys"),
                                    stray.join(", ")
                                )),
                            ));
                            seen = Seen {
                                precondition: resource_version(&after).map(str::to_string),
                                existing: Some(metadata_of(&after)),
                            };
                        }
                        Err(e) if api::is_conflict(&e) && tries < CONFLICT_TRIES => {
                            seen = self.look_up_one(&r).await?;
                            continue;
                        }
                        Err(e) => return Err(failure::api_error("patch", &r, &e)),
                    }
                }
            }
            match self
                .kube
                .apply_if(kind, ns, name, obj, seen.precondition.as_deref())
                .await
            {
                Ok(after) => break (seen.existing, after),
                Err(e) if api::is_conflict(&e) && tries < CONFLICT_TRIES => {
                    seen = self.look_up_one(&r).await?;
                }
                Err(e) => return Err(failure::api_error("apply", &r, &e)),
            }
        };
        self.remember(&r, &after);
        let outcome = match &existing {
            None => "created",
            Some(e) if resource_version(e) == resource_version(&after) => "unchanged",
            Some(_) => "updated",
        };
        run.steps
            .push(self.log.step(connection, &r, outcome, detail.as_deref()));
        run.objects.push(r);
        Ok(())
    }

    /// Removes a connection: with `deletionPolicy: Delete` the objects it created that still
    /// carry its labels, a shared ServiceAccount only when no other connection uses it.
    pub async fn delete(
        &self,
        entry: &ChangeEntry,
        metadata: Option<&Metadata>,
        run: &mut ConnRun,
    ) -> Result<(), RunError> {
        let spec = metadata.and_then(Metadata::spec).unwrap_or(Value::Null);
        let status = metadata.and_then(|m| m.status.as_deref());
        let policy = match spec["deletionPolicy"].as_str() {
            Some(p) => DeletionPolicy::parse(p),
            None => status.and_then(|s| s.deletion_policy),
        }
        .unwrap_or_default();
        run.deletion_policy = Some(policy);
        let mut objects = recorded_objects(status);
        if objects.is_empty() {
            // Never recorded as applied: the objects its name maps to, if they carry its labels.
            let ns = spec["namespace"]
                .as_str()
                .unwrap_or(sc_model::request::DEFAULT_NAMESPACE);
            objects.push(ObjectKey::new(
                "Secret",
                ns,
                &names::secret_name(&entry.name),
            ));
            objects.push(ObjectKey::new(
                "SecretProviderClass",
                ns,
                &names::secret_provider_class_name(&entry.name),
            ));
            // Workload identity: the ServiceAccount of its client ID (kept while another
            // connection uses it, like any shared ServiceAccount).
            let client_id = spec["parameters"]["clientId"].as_str().unwrap_or_default();
            if spec["authType"] == "workloadIdentity" && !client_id.is_empty() {
                objects.push(ObjectKey::new(
                    "ServiceAccount",
                    ns,
                    &names::service_account_name(client_id),
                ));
            }
        }
        if policy == DeletionPolicy::Retain {
            run.steps.push(self.log.note(
                &entry.name,
                "removed from the request; deletionPolicy Retain keeps its objects and the references of its workloads to them",
            ));
            for r in &objects {
                self.refresh_shared_service_account(&entry.name, r, run)
                    .await?;
            }
            run.objects = objects;
            run.objects.extend(recorded_workloads(status));
            return Ok(());
        }
        // The workloads first: no pod template is left referring to a deleted object.
        let accounts = service_accounts(&objects);
        for r in recorded_workloads(status) {
            self.unpatch(&entry.name, &r, &accounts, run).await?;
        }
        let recorded = recorded_objects(status);
        self.remove_objects(&entry.name, objects, &recorded, run)
            .await
    }

    /// After an apply: the objects a previous apply recorded (`previous` is that
    /// `status.json`) that the connection no longer has, for example after a change of
    /// `clientId` or `namespace`. Removed with `deletionPolicy: Delete`, else kept and logged.
    pub async fn prune(
        &self,
        conn: &Connection,
        previous: Option<&Status>,
        run: &mut ConnRun,
    ) -> Result<(), RunError> {
        // Workloads no longer listed (or in the connection's old namespace) lose what the
        // connection added to them, whatever the deletion policy: the user took them out.
        let accounts = service_accounts(&recorded_objects(previous));
        for r in recorded_workloads(previous) {
            if !run.objects.contains(&r) {
                self.unpatch(conn.name(), &r, &accounts, run).await?;
            }
        }
        let stale: Vec<ObjectKey> = recorded_objects(previous)
            .into_iter()
            .filter(|o| !run.objects.contains(o))
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        if conn.spec.deletion_policy == DeletionPolicy::Delete {
            let recorded = stale.clone();
            return self
                .remove_objects(conn.name(), stale, &recorded, run)
                .await;
        }
        for r in stale {
            run.steps.push(self.log.step(
                conn.name(),
                &r,
                "no longer used, kept",
                Some("deletionPolicy Retain"),
            ));
            self.refresh_shared_service_account(conn.name(), &r, run)
                .await?;
        }
        Ok(())
    }

    /// Removes from workload `r` what `connection` added to it (recorded on the workload, see
    /// [`sc_model::Injected`]), and nothing else. `accounts` are the ServiceAccounts the
    /// connection used. Another requested connection listing the workload with the same
    /// ServiceAccount keeps that ServiceAccount and the pod label in place.
    async fn unpatch(
        &self,
        connection: &str,
        r: &ObjectKey,
        accounts: &[String],
        run: &mut ConnRun,
    ) -> Result<(), RunError> {
        let Some(kind) = WorkloadKind::parse(&r.kind) else {
            return Ok(());
        };
        let lock = self.workload_locks.get(r.to_string());
        let _turn = lock.lock().await;
        let live = self
            .kube
            .get(&r.kind, &r.namespace, &r.name)
            .await
            .map_err(|e| failure::api_error("get", r, &e))?;
        let Some(live) = live else {
            run.steps
                .push(self.log.step(connection, r, "already gone", None));
            return Ok(());
        };
        let current = live
            .pointer(&format!(
                "{}/spec/serviceAccountName",
                kind.pod_template_pointer()
            ))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let heir = self.set.connections().iter().find(|c| {
            c.name() != connection
                && c.spec.namespace == r.namespace
                && c.spec
                    .workloads
                    .iter()
                    .any(|w| w.kind == kind && w.name == r.name)
                && c.service_account_name().as_deref() == Some(current)
        });
        let ejection = Ejection {
            connection,
            service_accounts: accounts,
            heir: heir.map(Connection::name),
        };
        let ops = eject_ops(&live, &ejection).map_err(|e| {
            RunError::new(
                Reason::WorkloadNotPatchable,
                format!("cannot remove connection {connection} from {r}: {e}"),
                "remove what the connection added to the workload by hand",
            )
        })?;
        if ops.is_empty() {
            run.steps.push(self.log.step(
                connection,
                r,
                "no longer listed",
                Some("nothing of the connection left in it"),
            ));
            return Ok(());
        }
        self.kube
            .json_patch(&r.kind, &r.namespace, &r.name, &ops)
            .await
            .map_err(|e| failure::api_error("patch", r, &e))?;
        let mut detail = "removed what the connection added".to_string();
        if let Some(h) = heir {
            detail.push_str(&format!(
                "; its ServiceAccount stays, used by connection {}",
                h.name()
            ));
        }
        run.steps
            .push(self.log.step(connection, r, "unpatched", Some(&detail)));
        Ok(())
    }

    /// A ServiceAccount `connection` no longer uses but other connections do: its list of
    /// users is written again without `connection` (when it is ours and the list changed).
    async fn refresh_shared_service_account(
        &self,
        connection: &str,
        r: &ObjectKey,
        run: &mut ConnRun,
    ) -> Result<(), RunError> {
        if r.kind != "ServiceAccount" {
            return Ok(());
        }
        let users = sa_still_used(self.set, self.requests, &r.namespace, &r.name, connection);
        if users.is_empty() {
            return Ok(());
        }
        let Some(obj) = shared_service_account(self.set, &r.namespace, &r.name) else {
            return Ok(());
        };
        let live = self
            .kube
            .get(&r.kind, &r.namespace, &r.name)
            .await
            .map_err(|e| failure::api_error("get", r, &e))?;
        let Some(live) = live.filter(is_ours) else {
            return Ok(());
        };
        let annotation = |o: &Value| o["metadata"]["annotations"][USERS_ANNOTATION].clone();
        if annotation(&live) != annotation(&obj) {
            self.kube
                .apply(&r.kind, &r.namespace, &r.name, &obj)
                .await
                .map_err(|e| failure::api_error("apply", r, &e))?;
        }
        let detail = format!("still used by {}", users.join(", "));
        run.steps
            .push(self.log.step(connection, r, "kept", Some(&detail)));
        Ok(())
    }

    /// Deletes `objects` of `connection` that still carry its labels; a shared ServiceAccount
    /// only when no other requested connection uses it.
    async fn remove_objects(
        &self,
        connection: &str,
        objects: Vec<ObjectKey>,
        recorded: &[ObjectKey],
        run: &mut ConnRun,
    ) -> Result<(), RunError> {
        for r in objects {
            if r.kind == "SecretProviderClass"
                && !self
                    .kube
                    .serves("secrets-store.csi.x-k8s.io/v1", "secretproviderclasses")
                    .await
                    .unwrap_or(true)
            {
                continue;
            }
            let live = self
                .kube
                .get(&r.kind, &r.namespace, &r.name)
                .await
                .map_err(|e| failure::api_error("get", &r, &e))?;
            let Some(live) = live else {
                run.steps
                    .push(self.log.step(connection, &r, "already gone", None));
                continue;
            };
            let exclusive = r.kind != "ServiceAccount";
            if check_owner(&r, &live, connection, exclusive, recorded.contains(&r)).is_err() {
                run.steps.push(self.log.step(
                    connection,
                    &r,
                    "kept",
                    Some("not created by this connection"),
                ));
                continue;
            }
            if r.kind == "ServiceAccount" {
                let users =
                    sa_still_used(self.set, self.requests, &r.namespace, &r.name, connection);
                if !users.is_empty() {
                    if let Some(obj) = shared_service_account(self.set, &r.namespace, &r.name) {
                        self.kube
                            .apply(&r.kind, &r.namespace, &r.name, &obj)
                            .await
                            .map_err(|e| failure::api_error("apply", &r, &e))?;
                    }
                    let detail = format!("still used by {}", users.join(", "));
                    run.steps
                        .push(self.log.step(connection, &r, "kept", Some(&detail)));
                    continue;
                }
            }
            let uid = live["metadata"]["uid"].as_str();
            self.kube
                .delete(&r.kind, &r.namespace, &r.name, uid)
                .await
                .map_err(|e| failure::api_error("delete", &r, &e))?;
            run.steps
                .push(self.log.step(connection, &r, "deleted", None));
        }
        Ok(())
    }
}

/// `workload` with no ServiceAccount in its pod template (`serviceAccount`, the deprecated
/// alias, set to `default`), so that the patch sets the connection's.
fn without_service_account(workload: &Value, kind: WorkloadKind) -> Value {
    let mut copy = workload.clone();
    let pointer = format!("{}/spec", kind.pod_template_pointer());
    if let Some(spec) = copy.pointer_mut(&pointer).and_then(Value::as_object_mut) {
        spec.remove("serviceAccountName");
        if spec.contains_key("serviceAccount") {
            spec.insert("serviceAccount".into(), json!("default"));
        }
    }
    copy
}

/// The objects a `status.json` records that sc-job owns (Secrets, ServiceAccounts,
/// SecretProviderClasses; not the patched workloads).
fn recorded_objects(status: Option<&Status>) -> Vec<ObjectKey> {
    status
        .map(|s| s.objects.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|o| {
            matches!(
                o.kind.as_str(),
                "Secret" | "ServiceAccount" | "SecretProviderClass"
            )
        })
        .cloned()
        .collect()
}

/// The workloads a `status.json` records as patched.
fn recorded_workloads(status: Option<&Status>) -> Vec<ObjectKey> {
    status
        .map(|s| s.objects.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|o| WorkloadKind::parse(&o.kind).is_some())
        .cloned()
        .collect()
}

/// The names of the ServiceAccounts among `objects`.
fn service_accounts(objects: &[ObjectKey]) -> Vec<String> {
    objects
        .iter()
        .filter(|o| o.kind == "ServiceAccount")
        .map(|o| o.name.clone())
        .collect()
}

/// Refuses an existing object that is not managed by sc-extension (unless it is one of
/// `connection`'s, `recorded` by its last run, that lost our label) or, when `exclusive`,
/// belongs to another connection.
/// The keys of a Secret's `data` that another field manager wrote and sc-job no longer
/// applies (`existing`'s managedFields against `obj`, the Secret to apply): an apply alone
/// leaves them, so they are removed first. Only key names, never values.
fn stray_data_keys(existing: &Value, obj: &Value) -> Vec<String> {
    if obj["kind"] != "Secret" {
        return Vec::new();
    }
    let entries: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry> =
        serde_json::from_value(existing["metadata"]["managedFields"].clone()).unwrap_or_default();
    let applied = obj["data"].as_object();
    sc_contract::drift::foreign_data_keys(&entries)
        .into_iter()
        .filter(|k| applied.is_none_or(|m| !m.contains_key(k)))
        .collect()
}

fn check_owner(
    r: &ObjectKey,
    existing: &Value,
    connection: &str,
    exclusive: bool,
    recorded: bool,
) -> Result<(), RunError> {
    if !is_ours(existing) && !lost_our_label(existing, connection, recorded) {
        return Err(RunError::new(
            Reason::NotManaged,
            format!("{r} exists and is not managed by sc-extension"),
            in_the_way_remedy(&r.kind),
        ));
    }
    if exclusive {
        let owner = existing["metadata"]["annotations"][CONNECTION_ANNOTATION].as_str();
        if let Some(other) = owner.filter(|o| *o != connection) {
            return Err(RunError::new(
                Reason::OwnedByAnotherConnection,
                format!("{r} belongs to connection {other}"),
                format!(
                    "rename one of the two connections, or delete the object if connection {other} was removed"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workload_without_its_service_account_takes_the_new_one() {
        let live = json!({"kind": "StatefulSet", "metadata": {"name": "db"}, "spec": {"template": {
            "metadata": {"labels": {"azure.workload.identity/use": "true"}},
            "spec": {"serviceAccountName": "sc-account-old", "serviceAccount": "sc-account-old",
                     "containers": [{"name": "main"}]}}}});
        let copy = without_service_account(&live, WorkloadKind::StatefulSet);
        assert!(copy["spec"]["template"]["spec"]["serviceAccountName"].is_null());
        assert_eq!(
            copy["spec"]["template"]["spec"]["serviceAccount"],
            "default"
        );
        assert_eq!(
            copy["spec"]["template"]["spec"]["containers"],
            live["spec"]["template"]["spec"]["containers"]
        );
    }

    #[test]
    fn refuses_foreign_and_other_connections_objects() {
        let r = ObjectKey::new("Secret", "default", "sc-x-secret");
        let foreign = json!({"metadata": {"labels": {"app": "mine"}}});
        let e = check_owner(&r, &foreign, "x", true, false).unwrap_err();
        assert_eq!(e.reason, "NotManaged");
        assert_eq!(
            e.to_string(),
            "secret default/sc-x-secret exists and is not managed by sc-extension; delete it or rename the connection"
        );
        let other = json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": "sc-extension"},
                                         "annotations": {CONNECTION_ANNOTATION: "x_"}}});
        assert_eq!(
            check_owner(&r, &other, "x", true, true).unwrap_err().reason,
            "OwnedByAnotherConnection"
        );
        assert!(check_owner(&r, &other, "x_", true, true).is_ok());
        assert!(
            check_owner(
                &ObjectKey::new("ServiceAccount", "default", "sc-account-a"),
                &other,
                "x",
                false,
                false
            )
            .is_ok()
        );
    }

    #[test]
    fn takes_back_a_recorded_object_that_lost_our_label_and_nothing_else() {
        let r = ObjectKey::new("Secret", "default", "sc-x-secret");
        let unlabelled = |manager: &str, operation: &str, connection: &str| {
            json!({"metadata": {"labels": {"app": "mine"},
                "annotations": {CONNECTION_ANNOTATION: connection},
                "managedFields": [
                    {"manager": "kubectl-label", "operation": "Update"},
                    {"manager": manager, "operation": operation}]}})
        };
        // Applied by sc-job for this connection, recorded by its last run: ours again.
        let lost = unlabelled("sc-job", "Apply", "x");
        assert!(check_owner(&r, &lost, "x", true, true).is_ok());
        // Not recorded by the last run, another connection named, another manager, or an
        // Update by a manager that happens to be called sc-job: still refused.
        for (obj, recorded) in [
            (lost.clone(), false),
            (unlabelled("sc-job", "Apply", "y"), true),
            (unlabelled("kubectl", "Apply", "x"), true),
            (unlabelled("sc-job", "Update", "x"), true),
        ] {
            let e = check_owner(&r, &obj, "x", true, recorded).unwrap_err();
            assert_eq!(e.reason, "NotManaged", "{obj}");
        }
        // A shared ServiceAccount names its users in another annotation.
        let sa = json!({"metadata": {"annotations": {USERS_ANNOTATION: "a,x"},
            "managedFields": [{"manager": "sc-job", "operation": "Apply"}]}});
        let sa_ref = ObjectKey::new("ServiceAccount", "default", "sc-account-1");
        assert!(check_owner(&sa_ref, &sa, "x", false, true).is_ok());
        assert!(check_owner(&sa_ref, &sa, "b", false, true).is_err());
    }

    #[test]
    fn shared_service_account_is_the_same_for_every_user() {
        let conns = json!({
            "a": {"namespace": "ns", "targetType": "storage-blob", "authType": "workloadIdentity",
                  "parameters": {"accountName": "acct", "clientId": "0a1b2c3d-0000-4000-8000-000000000001",
                                  "tenantId": "66666666-7777-8888-9999-000000000000"}},
            "b": {"namespace": "ns", "targetType": "storage-blob", "authType": "workloadIdentity",
                  "parameters": {"accountName": "acct2", "clientId": "0A1B2C3D-0000-4000-8000-000000000001"}},
        });
        let set = sc_model::validate_connections(&conns).unwrap();
        let sa = set.get("a").unwrap().service_account_name().unwrap();
        assert_eq!(set.get("b").unwrap().service_account_name().unwrap(), sa);
        let obj = shared_service_account(&set, "ns", &sa).unwrap();
        assert_eq!(obj["metadata"]["annotations"][USERS_ANNOTATION], "a,b");
        assert_eq!(
            sa_still_used(&set, &conns, "ns", &sa, "a"),
            vec!["b".to_string()]
        );
        assert!(sa_still_used(&set, &conns, "other", &sa, "a").is_empty());
    }
}

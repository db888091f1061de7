//! Reads, creates, updates (PUT, and the controllers' in-place changes) and deletes.

use base64::Engine;
use rand::Rng;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

use super::write::{Scope, canonical, has_generation, same_but_versions, without_rv_slot};
use super::{
    Cluster, DeleteOptions, Deleted, FieldValidation, ListOptions, ObjectList, Propagation,
    SharedList, WriteOptions, finalizers, meta, meta_mut,
};
use crate::error::{ApiError, Cause};
use crate::resources::ResourceInfo;
use crate::store::{Obj, ObjKey, ResKey, Write};
use crate::time::{in_seconds, now};
use crate::{admission, patch, strict, structural};

const GENERATE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn random_suffix(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| GENERATE_ALPHABET[rng.random_range(0..GENERATE_ALPHABET.len())] as char)
        .collect()
}

impl Cluster {
    /// One object (404 when absent).
    pub fn get(&self, res: &ResKey, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.get_shared(res, namespace, name).map(|o| (*o).clone())
    }

    /// [`Cluster::get`] without copying the stored object.
    pub fn get_shared(&self, res: &ResKey, namespace: &str, name: &str) -> Result<Obj, ApiError> {
        let info = self.info(res)?;
        let ns = if info.namespaced { namespace } else { "" };
        self.store
            .get(&ObjKey::new(res, ns, name))
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
            remaining_item_count: page.remaining_item_count,
        })
    }

    /// [`Cluster::list`] without copying the stored objects. As kube-apiserver's storage: a
    /// `continue` token serves the next page of the snapshot it was taken from; an `Exact`
    /// resourceVersion (or any resourceVersion of a paged list without a match) the state at
    /// that version while the watch history reaches back to it (410 Expired after); other
    /// lists the current state. A resourceVersion newer than the store's is the caller's to
    /// wait for (see [`Cluster::list_too_large`]).
    pub fn list_shared(
        &self,
        res: &ResKey,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<SharedList, ApiError> {
        let info = self.info(res)?;
        let namespace = if info.namespaced { namespace } else { None };
        validate_list_options(opts)?;
        let requested = parse_rv(opts.resource_version.as_deref())?;
        let current = self.store.current_rv();
        let (after, at) = match &opts.continue_token {
            Some(t) => {
                let (after, rv) = decode_continue(t, res, namespace)?;
                if requested.is_some_and(|r| r > 0) {
                    return Err(ApiError::bad_request(
                        "specifying resource version is not allowed when using continue",
                    ));
                }
                (Some(after), (rv > 0).then_some(rv as u64))
            }
            None => {
                let exact = match opts.resource_version_match.as_deref() {
                    Some("Exact") => true,
                    Some(_) => false,
                    // The legacy paged list: the state at that version.
                    None => opts.limit.is_some_and(|l| l > 0),
                };
                (None, requested.filter(|r| exact && *r > 0))
            }
        };
        if let Some(r) = requested.filter(|r| *r > current) {
            return Err(Cluster::list_too_large(r, current));
        }
        let at_version = |rv: u64| -> Result<(Vec<Obj>, u64), ApiError> {
            let objs = self
                .store
                .list_at(res, namespace, after.as_ref(), rv)
                .map_err(|_| {
                    ApiError::expired(if after.is_some() {
                        CONTINUE_EXPIRED
                    } else {
                        "The resourceVersion for the provided list is too old."
                    })
                })?;
            Ok((objs, rv))
        };
        let (objs, rv) = match at {
            Some(rv) if rv < current => at_version(rv)?,
            Some(rv) => match self.store.list_after(res, namespace, after.as_ref()) {
                // A write came in since `current` was read: the state at `rv` after all.
                (_, now) if now != rv => at_version(rv)?,
                listed => listed,
            },
            None => self.store.list_after(res, namespace, after.as_ref()),
        };
        let limit = opts.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let filtered = opts.label_selector.is_some() || opts.field_selector.is_some();
        let mut items: Vec<Obj> = Vec::new();
        let mut continue_token = None;
        let mut remaining_item_count = None;
        let total = objs.len();
        for (index, o) in objs.into_iter().enumerate() {
            if !opts.label_selector.as_ref().is_none_or(|s| s.matches(&o))
                || !opts.field_selector.as_ref().is_none_or(|s| s.matches(&o))
            {
                continue;
            }
            if items.len() == limit {
                let last = items.last().expect("limit > 0");
                continue_token = Some(encode_continue(rv, last, namespace));
                if !filtered {
                    remaining_item_count = Some(total - index);
                }
                break;
            }
            items.push(o);
        }
        Ok(SharedList {
            items,
            resource_version: rv,
            continue_token,
            remaining_item_count,
        })
    }

    /// 504 for a list at a resourceVersion the store has not reached, as kube-apiserver's
    /// watch cache answers once it gave up waiting.
    pub fn list_too_large(requested: u64, current: u64) -> ApiError {
        ApiError {
            details: Some(Box::new(json!({
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": 1,
            }))),
            ..ApiError::new(
                504,
                "Timeout",
                format!("Timeout: Too large resource version: {requested}, current: {current}"),
            )
        }
    }

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

    pub(super) fn create_inner(
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
        } else if !opts.unknown_fields_dropped {
            strict::drop_unknown(info, &mut obj);
        }
        admission::default_object(info, &mut obj)?;
        if let Some(schema) = structural::schema_of(info) {
            structural::prune(schema, &mut obj);
            structural::default(schema, &mut obj);
        }
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
        let obj = canonical(info, obj);
        let key = ObjKey::new(&info.key(), &ns, &name);
        let mut result = None;
        let written = self.store.write(&key, |cur| {
            if cur.is_some() {
                return Err(ApiError::already_exists(info, &name));
            }
            if opts.dry_run {
                result = Some(without_rv_slot(obj));
                return Ok(Write::Unchanged);
            }
            Ok(Write::Put(obj))
        })?;
        let out = match (result, written) {
            (Some(v), _) => v,
            (None, Some(stored)) => (*stored).clone(),
            (None, None) => return Err(ApiError::not_found(info, &name)),
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
        self.replace(&info, namespace, name, Scope::Main, obj, opts)
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
        self.store
            .write(&key, |cur| {
                let Some(cur) = cur else {
                    return Err(ApiError::not_found(&info, name));
                };
                let cur: &Value = cur;
                precondition(
                    &info,
                    name,
                    "UID",
                    &opts.precondition_uid,
                    &meta(cur)["uid"],
                )?;
                precondition(
                    &info,
                    name,
                    "ResourceVersion",
                    &opts.precondition_resource_version,
                    &meta(cur)["resourceVersion"],
                )?;
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
                    let terminal = matches!(
                        cur["status"]["phase"].as_str(),
                        Some("Succeeded") | Some("Failed")
                    );
                    let scheduled = cur["spec"]["nodeName"]
                        .as_str()
                        .is_some_and(|n| !n.is_empty());
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
                let ns_pending = is_ns
                    && cur["spec"]["finalizers"]
                        .as_array()
                        .is_some_and(|f| !f.is_empty());
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
                    m.insert("deletionTimestamp".into(), Value::String(in_seconds(grace)));
                    m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                }
                if !fins.is_empty() {
                    m.insert("finalizers".into(), json!(fins));
                }
                if is_ns {
                    new["status"]["phase"] = json!("Terminating");
                }
                if same_but_versions(&new, cur) || opts.dry_run {
                    outcome = Some(Deleted::Pending(new));
                    return Ok(Write::Unchanged);
                }
                Ok(Write::Put(canonical(&info, new)))
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
                resource_version: None,
                resource_version_match: None,
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
}

const CONTINUE_EXPIRED: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.";

/// The list options kube-apiserver refuses (422 on `ListOptions`).
fn validate_list_options(opts: &ListOptions) -> Result<(), ApiError> {
    let Some(m) = opts
        .resource_version_match
        .as_deref()
        .filter(|m| !m.is_empty())
    else {
        return Ok(());
    };
    let rv = opts.resource_version.as_deref().unwrap_or_default();
    let mut causes = Vec::new();
    if rv.is_empty() {
        causes.push(Cause::forbidden(
            "resourceVersionMatch",
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        ));
    }
    if opts.continue_token.is_some() {
        causes.push(Cause::forbidden(
            "resourceVersionMatch",
            "resourceVersionMatch is forbidden when continue is provided",
        ));
    }
    if m != "Exact" && m != "NotOlderThan" {
        causes.push(Cause::not_supported(
            "resourceVersionMatch",
            m,
            &["Exact", "NotOlderThan", ""],
        ));
    }
    if m == "Exact" && rv == "0" {
        causes.push(Cause::forbidden(
            "resourceVersionMatch",
            "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
        ));
    }
    if causes.is_empty() {
        return Ok(());
    }
    let message = format!(
        "ListOptions.meta.k8s.io \"\" is invalid: {}",
        causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let causes: Vec<Value> = causes
        .iter()
        .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
        .collect();
    Err(ApiError {
        details: Some(Box::new(
            json!({"group": "meta.k8s.io", "kind": "ListOptions", "causes": causes}),
        )),
        ..ApiError::new(422, "Invalid", message)
    })
}

/// A list's `resourceVersion` (None: unset).
fn parse_rv(rv: Option<&str>) -> Result<Option<u64>, ApiError> {
    match rv.filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(r) => r.parse::<u64>().map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "invalid resource version: resourceVersion: Invalid value: {r:?}: strconv.ParseUint: parsing {r:?}: invalid syntax"
            ))
        }),
    }
}

/// kube-apiserver's continue token: base64url (no padding) of
/// `{"v":"meta.k8s.io/v1","rv":N,"start":"<key after the list's prefix>\u0000"}`, the key
/// being `<namespace>/<name>` for a list over all namespaces and `<name>` otherwise.
fn encode_continue(rv: u64, last: &Value, namespace: Option<&str>) -> String {
    let name = meta(last)["name"].as_str().unwrap_or_default();
    let start = match (namespace, meta(last)["namespace"].as_str()) {
        (None, Some(ns)) if !ns.is_empty() => format!("{ns}/{name}\u{0}"),
        _ => format!("{name}\u{0}"),
    };
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

/// The key a continue token starts after and its resourceVersion (-1: the latest), or 400
/// with the storage layer's message.
fn decode_continue(
    token: &str,
    res: &ResKey,
    namespace: Option<&str>,
) -> Result<(ObjKey, i64), ApiError> {
    let invalid = |detail: String| {
        ApiError::bad_request(format!(
            "invalid continue token: continue key is not valid{detail}"
        ))
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|e| {
            let at = match e {
                base64::DecodeError::InvalidByte(i, _)
                | base64::DecodeError::InvalidLastSymbol(i, _) => i,
                base64::DecodeError::InvalidLength(n) => n.saturating_sub(1),
                base64::DecodeError::InvalidPadding => token.find('=').unwrap_or(0),
            };
            invalid(format!(": illegal base64 data at input byte {at}"))
        })?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        let detail = match first {
            None => "unexpected end of JSON input".to_string(),
            Some(b) if !b"{[\"-0123456789tfn".contains(b) => {
                format!(
                    "invalid character {:?} looking for beginning of value",
                    *b as char
                )
            }
            _ => e.to_string(),
        };
        invalid(format!(": {detail}"))
    })?;
    if !v.is_object() {
        return Err(invalid(format!(
            ": json: cannot unmarshal {} into Go value of type storage.continueToken",
            match v {
                Value::Array(_) => "array",
                Value::String(_) => "string",
                Value::Number(_) => "number",
                Value::Bool(_) => "bool",
                _ => "null",
            }
        )));
    }
    match v["v"].as_str().unwrap_or_default() {
        "meta.k8s.io/v1" => {}
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid continue token: continue key is not valid: server does not recognize this encoded version {other}"
            )));
        }
    }
    let rv = v["rv"].as_i64().unwrap_or(0);
    if rv == 0 {
        return Err(invalid(
            ": incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into(),
        ));
    }
    let start = v["start"].as_str().unwrap_or_default();
    if start.is_empty() {
        return Err(invalid(
            ": encoded start key empty (version meta.k8s.io/v1)".into(),
        ));
    }
    let key = start.trim_end_matches('\u{0}');
    if key.split('/').any(|p| p == ".." || p == ".") || key.starts_with('/') {
        return Err(invalid(format!(": {start}")));
    }
    let (ns, name) = match namespace {
        Some(ns) => (ns, key),
        None => key.split_once('/').unwrap_or(("", key)),
    };
    Ok((ObjKey::new(res, ns, name), rv))
}

/// A delete precondition (`what`: `UID` or `ResourceVersion`): 409 when `wanted` is set and
/// the stored object's `actual` value differs.
fn precondition(
    info: &ResourceInfo,
    name: &str,
    what: &str,
    wanted: &Option<String>,
    actual: &Value,
) -> Result<(), ApiError> {
    match wanted {
        Some(w) if actual.as_str() != Some(w) => Err(ApiError::conflict_msg(
            info,
            name,
            &format!(
                "Precondition failed: {what} in precondition: {w}, {what} in object meta: {}",
                actual.as_str().unwrap_or_default()
            ),
        )),
        _ => Ok(()),
    }
}

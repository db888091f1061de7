//! The write path every update shares: scope, server-set metadata, admission, generation,
//! managedFields, removal once nothing holds an object, and the side effects of writes.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::{Cluster, FieldValidation, WriteOptions, finalizers, meta, meta_mut};
use crate::error::ApiError;
use crate::resources::ResourceInfo;
use crate::store::{ObjKey, ResKey, Write};
use crate::time::now;
use crate::{admission, patch, strict, structural};

/// `metav1.ObjectMeta`'s fields in their declaration order, the order the API server's JSON
/// encoder writes them for built-in types.
const META_ORDER: [&str; 15] = [
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// The object in the key order kube-apiserver writes it. A built-in type is a Go struct:
/// `kind`, `apiVersion` (the inline `TypeMeta`), `metadata` in `ObjectMeta`'s field order,
/// the type's own fields, `status` last. A custom resource is unstructured, a Go map, which
/// the JSON encoder writes with its keys sorted at every level.
///
/// A missing `metadata.resourceVersion` gets an empty slot in its place, which the store
/// fills in place when it writes the object.
pub(super) fn canonical(info: &ResourceInfo, obj: Value) -> Value {
    let Value::Object(mut m) = obj else {
        return obj;
    };
    if let Some(Value::Object(meta)) = m.get_mut("metadata")
        && !meta.contains_key("resourceVersion")
    {
        meta.insert("resourceVersion".into(), Value::String(String::new()));
    }
    if info.custom {
        let mut v = Value::Object(m);
        v.sort_all_objects();
        return v;
    }
    let mut out = Map::new();
    for k in ["kind", "apiVersion"] {
        if let Some(v) = m.remove(k) {
            out.insert(k.to_string(), v);
        }
    }
    if let Some(meta) = m.remove("metadata") {
        out.insert("metadata".into(), order_metadata(meta));
    }
    let status = m.remove("status");
    out.extend(m);
    if let Some(s) = status {
        out.insert("status".into(), s);
    }
    Value::Object(out)
}

fn order_metadata(meta: Value) -> Value {
    let Value::Object(mut m) = meta else {
        return meta;
    };
    let mut out = Map::new();
    for k in META_ORDER {
        if let Some(v) = m.remove(k) {
            out.insert(k.to_string(), v);
        }
    }
    out.extend(m);
    Value::Object(out)
}

/// Drop the empty `resourceVersion` slot of an object that was not written (dry run).
pub(super) fn without_rv_slot(mut obj: Value) -> Value {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut)
        && m.get("resourceVersion").and_then(Value::as_str) == Some("")
    {
        m.remove("resourceVersion");
    }
    obj
}

/// Whether the type tracks `metadata.generation` (workloads, CRDs, custom resources).
pub(super) fn has_generation(info: &ResourceInfo) -> bool {
    info.custom
        || matches!(
            info.group.as_str(),
            "apps" | "batch" | "apiextensions.k8s.io"
        )
        || (info.group.is_empty() && info.resource == "replicationcontrollers")
}

/// Whether two objects are equal but for the top-level fields `skip` names and, inside
/// `metadata`, the fields `skip_meta` names (`skip_meta` None: `metadata` is skipped whole).
/// Compares in place, without copying either object.
fn equal_except(a: &Value, b: &Value, skip: &[&str], skip_meta: Option<&[&str]>) -> bool {
    fn fields_equal(
        a: &Map<String, Value>,
        b: &Map<String, Value>,
        skip: impl Fn(&str) -> bool,
        eq: impl Fn(&str, &Value, &Value) -> bool,
    ) -> bool {
        let kept = |m: &Map<String, Value>| m.keys().filter(|k| !skip(k)).count();
        kept(a) == kept(b)
            && a.iter()
                .filter(|(k, _)| !skip(k))
                .all(|(k, v)| b.get(k).is_some_and(|w| eq(k, v, w)))
    }
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let skip_top = |k: &str| skip.contains(&k) || (skip_meta.is_none() && k == "metadata");
    fields_equal(a, b, skip_top, |k, v, w| match (k, skip_meta) {
        ("metadata", Some(sm)) => match (v.as_object(), w.as_object()) {
            (Some(vm), Some(wm)) => fields_equal(vm, wm, |k| sm.contains(&k), |_, x, y| x == y),
            _ => v == w,
        },
        _ => v == w,
    })
}

/// Whether the content `generation` tracks differs: everything but `metadata`, `apiVersion`,
/// `kind` (and `status` when it is a subresource).
fn content_changed(info: &ResourceInfo, new: &Value, old: &Value) -> bool {
    let skip: &[&str] = if info.has_subresource("status") {
        &["apiVersion", "kind", "status"]
    } else {
        &["apiVersion", "kind"]
    };
    !equal_except(new, old, skip, None)
}

/// Whether two versions of an object are equal but for resourceVersion and managedFields (an
/// update that changes nothing else is not written).
pub(super) fn same_but_versions(a: &Value, b: &Value) -> bool {
    equal_except(a, b, &[], Some(&["resourceVersion", "managedFields"]))
}

/// Whether two `managedFields` hold the same entries (in any order: the API server sorts them).
fn same_managed_fields(a: Option<&Value>, b: Option<&Value>) -> bool {
    fn entries(v: Option<&Value>) -> Vec<&Value> {
        v.and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    }
    let (a, b) = (entries(a), entries(b));
    a.len() == b.len() && a.iter().all(|e| b.contains(e))
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
pub(super) enum Scope {
    /// The main resource: `status` is kept from the stored object when it is a subresource.
    Main,
    /// The status subresource: only `status` is taken.
    Status,
    /// `pods/ephemeralcontainers`: only `spec.ephemeralContainers` is taken.
    EphemeralContainers,
    /// Everything (trusted in-process writers).
    All,
}

impl Scope {
    fn subresource(self) -> Option<&'static str> {
        match self {
            Scope::Status => Some("status"),
            Scope::EphemeralContainers => Some("ephemeralcontainers"),
            _ => None,
        }
    }
}

impl Cluster {
    /// Side effects of a stored write: CustomResourceDefinitions start being served (and
    /// their group-versions get APIServices), and a namespace gets its `default`
    /// ServiceAccount.
    pub(super) fn after_write(&self, info: &ResourceInfo, obj: &Value) {
        match (info.group.as_str(), info.resource.as_str()) {
            ("apiextensions.k8s.io", "customresourcedefinitions")
                if meta(obj).get("deletionTimestamp").is_none() =>
            {
                {
                    let mut registry = self.registry.write().unwrap_or_else(|e| e.into_inner());
                    let _ = Arc::make_mut(&mut registry).add_crd(obj);
                }
                self.sync_crd_api_services();
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
    pub(super) fn after_remove(&self, info: &ResourceInfo, obj: &Value) {
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
            self.sync_crd_api_services();
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
    pub(super) fn update_inner(
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
                Scope::EphemeralContainers => {
                    let containers = new["spec"].get("ephemeralContainers").cloned();
                    let managed = meta(&new).get("managedFields").cloned();
                    new = old.clone();
                    if applied && let Some(mf) = managed {
                        meta_mut(&mut new).insert("managedFields".into(), mf);
                    }
                    match containers {
                        Some(c) if !c.is_null() => new["spec"]["ephemeralContainers"] = c,
                        _ => {
                            if let Some(m) = new["spec"].as_object_mut() {
                                m.remove("ephemeralContainers");
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
                let om = meta(old);
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
                } else if !opts.unknown_fields_dropped {
                    strict::drop_unknown(info, &mut new);
                }
                admission::default_object(info, &mut new)?;
            }
            if let Some(schema) = structural::schema_of(info) {
                // The status subresource's writes are pruned and defaulted too.
                structural::prune(schema, &mut new);
                structural::default(schema, &mut new);
            }
            if validate {
                let causes = admission::validate(info, &new, Some(old));
                if !causes.is_empty() {
                    return Err(ApiError::invalid(info, name, causes));
                }
            }
            if has_generation(info) && content_changed(info, &new, old) {
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
            // A server-side apply that leaves the content as it was is still written when
            // it changed the ownership (a new co-owner, fields given up): kube-apiserver
            // compares the encoded object, managedFields included.
            let unchanged_write = if applied {
                same_but_versions(&new, old)
                    && same_managed_fields(
                        meta(&new).get("managedFields"),
                        meta(old).get("managedFields"),
                    )
            } else {
                same_but_versions(&new, old)
            };
            if unchanged_write {
                unchanged = Some(old.clone());
                return Ok(Write::Unchanged);
            }
            let new = canonical(info, new);
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

    /// Replace `scope` of an object with that of `obj` (PUT of the object or of its status),
    /// validated.
    pub(super) fn replace(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        scope: Scope,
        obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.update_inner(info, namespace, name, scope, opts, false, true, |_| Ok(obj))
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
}

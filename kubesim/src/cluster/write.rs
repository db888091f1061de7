//! The write path every update shares: scope, server-set metadata, admission, generation,
//! managedFields, removal once nothing holds an object, and the side effects of writes.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::{Cluster, FieldValidation, WriteOptions, finalizers, meta, meta_mut};
use crate::error::ApiError;
use crate::resources::ResourceInfo;
use crate::store::{ObjKey, ResKey, Write};
use crate::time::now;
use crate::{admission, patch, strict};

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
pub(super) fn comparable(obj: &Value) -> Value {
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
pub(super) enum Scope {
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
    /// Side effects of a stored write: CustomResourceDefinitions start being served, and a
    /// namespace gets its `default` ServiceAccount.
    pub(super) fn after_write(&self, info: &ResourceInfo, obj: &Value) {
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

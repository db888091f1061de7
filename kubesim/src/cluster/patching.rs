//! Patches: JSON patch, merge patch, strategic merge patch and server-side apply.

use serde_json::{Value, json};

use super::write::Scope;
use super::{Cluster, FieldValidation, PatchType, WriteOptions, meta, meta_mut};
use crate::error::ApiError;
use crate::resources::ResourceInfo;
use crate::store::{ObjKey, ResKey};
use crate::time::now;
use crate::{patch, strict, structural};

impl Cluster {
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
        let decoded = strict::check_decoded(info, body, true)?;
        // The merge of a checked apply configuration into the stored object has no field its
        // type lacks: the write path need not decode it again.
        let checked;
        let opts = if decoded && opts.field_validation != FieldValidation::Strict {
            checked = WriteOptions {
                unknown_fields_dropped: true,
                ..opts.clone()
            };
            &checked
        } else {
            opts
        };
        let mut applied = body.clone();
        if let Some(schema) = structural::schema_of(info) {
            structural::prune(schema, &mut applied);
        }
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
        let scope = match subresource {
            // A CertificateSigningRequest's approval is a part of its status.
            Some("status" | "approval") => Scope::Status,
            Some("ephemeralcontainers") => Scope::EphemeralContainers,
            _ => Scope::Main,
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
                        if let Some(schema) = structural::schema_of(&info) {
                            structural::prune(schema, &mut applied);
                        }
                        meta_mut(&mut applied).insert("name".into(), Value::String(name.into()));
                        let decoded = strict::check_decoded(&info, &applied, true)?;
                        let created =
                            patch::server_side_apply(None, &applied, &manager, force, &ts)
                                .map_err(|e| patch_error(&info, name, e))?;
                        let checked = WriteOptions {
                            unknown_fields_dropped: decoded
                                && opts.field_validation != FieldValidation::Strict,
                            ..opts.clone()
                        };
                        match self.create_inner(&info, namespace, created, &checked, true) {
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

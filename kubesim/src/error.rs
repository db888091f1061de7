//! The one error type of the API: every failure renders as the API server's `metav1.Status`.

use serde_json::{Value, json};

use crate::resources::ResourceInfo;

/// One `details.causes` entry of a `Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// e.g. `FieldValueRequired`, `FieldValueNotSupported`, `FieldValueInvalid`,
    /// `FieldValueForbidden`, `FieldManagerConflict`.
    pub reason: String,
    pub message: String,
    pub field: String,
}

impl Cause {
    pub fn new(reason: &str, field: &str, message: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            message: message.into(),
            field: field.into(),
        }
    }

    /// `field: Required value[: detail]`.
    pub fn required(field: &str, detail: &str) -> Self {
        let msg = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        Self::new("FieldValueRequired", field, msg)
    }

    /// `field: Unsupported value: "v": supported values: "a", "b"`.
    pub fn not_supported(field: &str, value: &str, supported: &[&str]) -> Self {
        let list = supported
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        Self::new(
            "FieldValueNotSupported",
            field,
            format!("Unsupported value: {value:?}: supported values: {list}"),
        )
    }

    /// `field: Invalid value: <value>: detail`. `value` is rendered as the API server does
    /// (strings quoted).
    pub fn invalid(field: &str, value: &Value, detail: &str) -> Self {
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        Self::new(
            "FieldValueInvalid",
            field,
            format!("Invalid value: {shown}: {detail}"),
        )
    }

    /// `field: Forbidden: detail`.
    pub fn forbidden(field: &str, detail: &str) -> Self {
        Self::new("FieldValueForbidden", field, format!("Forbidden: {detail}"))
    }
}

/// An API failure with its HTTP code, `reason`, message and optional `details`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `reason` of the Status (`NotFound`, `Conflict`, `Invalid`, ...).
    pub reason: String,
    /// `message` of the Status, worded as the API server words it.
    pub message: String,
    /// `details` of the Status (name, group, kind, uid, causes), when there are any.
    pub details: Option<Box<Value>>,
}

fn boxed(v: Value) -> Option<Box<Value>> {
    Some(Box::new(v))
}

fn details(info: &ResourceInfo, name: &str) -> Value {
    json!({"name": name, "group": info.group, "kind": info.resource})
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            message: message.into(),
            details: None,
        }
    }

    /// 404.
    pub fn is_not_found(&self) -> bool {
        self.code == 404
    }

    /// 409 (AlreadyExists or Conflict).
    pub fn is_conflict(&self) -> bool {
        self.code == 409
    }

    /// 404 `jobs.batch "x" not found`.
    pub fn not_found(info: &ResourceInfo, name: &str) -> Self {
        Self {
            details: boxed(details(info, name)),
            ..Self::new(
                404,
                "NotFound",
                format!("{} {name:?} not found", info.qualified()),
            )
        }
    }

    /// 404 for a path or resource this server does not serve.
    pub fn no_route() -> Self {
        Self {
            details: boxed(json!({})),
            ..Self::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        }
    }

    /// 404 `namespaces "x" not found` (creating in a missing namespace).
    pub fn namespace_not_found(ns: &str) -> Self {
        Self {
            details: boxed(json!({"name": ns, "kind": "namespaces"})),
            ..Self::new(404, "NotFound", format!("namespaces {ns:?} not found"))
        }
    }

    /// 409 `configmaps "x" already exists`.
    pub fn already_exists(info: &ResourceInfo, name: &str) -> Self {
        Self {
            details: boxed(details(info, name)),
            ..Self::new(
                409,
                "AlreadyExists",
                format!("{} {name:?} already exists", info.qualified()),
            )
        }
    }

    /// 409 Conflict on a stale resourceVersion or failed precondition.
    pub fn conflict(info: &ResourceInfo, name: &str) -> Self {
        Self::conflict_msg(
            info,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 `Operation cannot be fulfilled on <res> "<name>": <why>`.
    pub fn conflict_msg(info: &ResourceInfo, name: &str, why: &str) -> Self {
        Self {
            details: boxed(details(info, name)),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} {name:?}: {why}",
                    info.qualified()
                ),
            )
        }
    }

    /// 409 for server-side apply conflicts, with `FieldManagerConflict` causes, worded as the
    /// API server does. `describe` prints a manager (`"helm"`, or for an Update entry
    /// `"kubectl" using v1 at 2026-01-01T00:00:00Z`).
    pub fn apply_conflict(
        info: &ResourceInfo,
        name: &str,
        conflicts: &[crate::patch::ApplyConflict],
        describe: &dyn Fn(&str) -> String,
    ) -> Self {
        let message = if let [c] = conflicts {
            format!(
                "Apply failed with 1 conflict: conflict with {}: {}",
                describe(&c.manager),
                c.field
            )
        } else {
            let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
            managers.sort_unstable();
            managers.dedup();
            let mut lines = Vec::new();
            for m in managers {
                lines.push(format!("conflicts with {}:", describe(m)));
                for c in conflicts.iter().filter(|c| c.manager == m) {
                    lines.push(format!("- {}", c.field));
                }
            }
            format!(
                "Apply failed with {} conflicts: {}",
                conflicts.len(),
                lines.join("\n")
            )
        };
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|c| {
                json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", describe(&c.manager)), "field": c.field})
            })
            .collect();
        let mut d = details(info, name);
        d["causes"] = Value::Array(causes);
        Self {
            details: boxed(d),
            ..Self::new(409, "Conflict", message)
        }
    }

    /// 422 `Job.batch "x" is invalid: <field>: <message>` with causes.
    pub fn invalid(info: &ResourceInfo, name: &str, causes: Vec<Cause>) -> Self {
        let rendered: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let summary = if rendered.len() == 1 {
            rendered[0].clone()
        } else {
            format!("[{}]", rendered.join(", "))
        };
        let message = format!("{} {name:?} is invalid: {summary}", info.kind_qualified());
        let causes: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
        Self {
            details: boxed(
                json!({"name": name, "group": info.group, "kind": info.kind, "causes": causes}),
            ),
            ..Self::new(422, "Invalid", message)
        }
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 Forbidden with the authorizer's message.
    pub fn forbidden(message: impl Into<String>, info: Option<&ResourceInfo>, name: &str) -> Self {
        Self {
            details: info.map(|i| Box::new(details(i, name))),
            ..Self::new(403, "Forbidden", message)
        }
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self {
            details: boxed(json!({})),
            ..Self::new(405, "MethodNotAllowed", message)
        }
    }

    /// 410 Expired.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 415 UnsupportedMediaType, listing what is accepted.
    pub fn unsupported_media_type(accepted: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {accepted}"
            ),
        )
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The `metav1.Status` body, its keys in the order of the Go struct: `kind`,
    /// `apiVersion`, `metadata`, `status`, `message`, `reason`, `details`, `code`. Empty
    /// `details` fields (the core group) are omitted, as `omitempty` does.
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        });
        if let Some(d) = &self.details {
            s["details"] = status_details((**d).clone());
        }
        s["code"] = json!(self.code);
        s
    }
}

/// `metav1.StatusDetails` in field order (`name`, `group`, `kind`, `uid`, `causes`,
/// `retryAfterSeconds`), empty strings left out.
fn status_details(d: Value) -> Value {
    let Value::Object(mut m) = d else {
        return d;
    };
    let mut out = serde_json::Map::new();
    for k in [
        "name",
        "group",
        "kind",
        "uid",
        "causes",
        "retryAfterSeconds",
    ] {
        match m.remove(k) {
            Some(Value::String(s)) if s.is_empty() => {}
            Some(v) => {
                out.insert(k.to_string(), v);
            }
            None => {}
        }
    }
    out.extend(m);
    Value::Object(out)
}

impl From<crate::patch::PatchError> for ApiError {
    fn from(e: crate::patch::PatchError) -> Self {
        match e {
            crate::patch::PatchError::Invalid(m) => ApiError::new(422, "Invalid", m),
            crate::patch::PatchError::Conflict(_) => ApiError::new(409, "Conflict", e.to_string()),
        }
    }
}

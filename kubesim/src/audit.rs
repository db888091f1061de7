//! A request log for tests that check least privilege: every API request made with a token
//! other than the admin's (ServiceAccounts, bootstrap users) is recorded as its authorizer
//! attributes (user, verb, API group, resource, subresource, namespace, name) with the answer's
//! status code, counted, and served to the admin at `GET /kubesim/audit`.
//!
//! A list or watch with `fieldSelector=metadata.name=NAME` is recorded with that name, as
//! kube-apiserver authorizes it. A server-side apply that creates its object (201) is recorded
//! as its `patch` and, marked `"implied": true`, the `create` kube-apiserver also authorizes
//! for it: the entries without that mark count HTTP requests (one per request, as
//! kube-apiserver's audit log has one event per request), all of them the authorizer's view.
//! Admin requests (kubectl, helm) are not recorded.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use percent_encoding::percent_decode_str;
use serde::Serialize;
use serde_json::json;

use crate::cluster::Cluster;

/// The path of the audit endpoint.
pub const AUDIT_PATH: &str = "/kubesim/audit";

/// One kind of request, as the authorizer sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// e.g. `system:serviceaccount:sc-system:sc-agent`.
    pub user: String,
    /// get list watch create update patch delete deletecollection, or the lower-cased HTTP
    /// method of a non-resource request.
    pub verb: String,
    /// "" for the core group.
    pub api_group: String,
    /// Plural resource; "" for a non-resource request.
    pub resource: String,
    /// e.g. `status`, `log`; "" for the resource itself.
    pub subresource: String,
    /// "" for cluster-scoped requests.
    pub namespace: String,
    /// "" for collection requests without a `metadata.name` field selector.
    pub name: String,
    /// The path of a non-resource request; "" otherwise.
    pub path: String,
    /// The status code of the answer.
    pub code: u16,
    /// An authorization the request implied without being a request of its own: the `create`
    /// of a server-side apply that created its object. Serialized only when true.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub implied: bool,
}

struct Audit {
    cluster: Arc<Cluster>,
    entries: Mutex<BTreeMap<AuditEntry, u64>>,
}

/// Wraps `router` so that it records the requests of non-admin users and serves the record at
/// [`AUDIT_PATH`] to the admin (403 for anyone else).
pub fn wrap(router: axum::Router, cluster: Arc<Cluster>) -> axum::Router {
    let audit = Arc::new(Audit {
        cluster,
        entries: Mutex::new(BTreeMap::new()),
    });
    router.layer(axum::middleware::from_fn_with_state(audit, observe))
}

async fn observe(State(audit): State<Arc<Audit>>, req: Request, next: Next) -> Response {
    let token = match req.headers().get(header::AUTHORIZATION) {
        None => Some(audit.cluster.admin_token().to_string()),
        Some(h) => h.to_str().ok().and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
                .map(|t| t.trim().to_string())
        }),
    };
    let user = token.and_then(|t| audit.cluster.authenticate(&t));
    let admin = user
        .as_ref()
        .is_some_and(|u| u.groups.iter().any(|g| g == "system:masters"));
    if req.uri().path() == AUDIT_PATH {
        return serve(&audit, admin, req.method());
    }
    let Some(user) = user.filter(|_| !admin) else {
        return next.run(req).await;
    };
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let response = next.run(req).await;
    let mut entry = attributes(&method, &path, &query);
    entry.user = user.name;
    entry.code = response.status().as_u16();
    let mut entries = audit.entries.lock().unwrap_or_else(|e| e.into_inner());
    if entry.verb == "patch" && entry.code == 201 {
        // A server-side apply that creates the object: kube-apiserver also authorizes
        // `create` for it (handlers/patch.go, createAuthorizerAttributes). It is the same
        // HTTP request, so the entry is marked as implied rather than counted as one.
        let mut create = entry.clone();
        create.verb = "create".into();
        create.implied = true;
        *entries.entry(create).or_default() += 1;
    }
    *entries.entry(entry).or_default() += 1;
    drop(entries);
    response
}

fn serve(audit: &Audit, admin: bool, method: &Method) -> Response {
    let (code, body) = if !admin {
        (
            StatusCode::FORBIDDEN,
            json!({"message": format!("only the admin may read {AUDIT_PATH}")}),
        )
    } else if method != Method::GET {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"message": format!("{AUDIT_PATH} only answers GET")}),
        )
    } else {
        let entries = audit.entries.lock().unwrap_or_else(|e| e.into_inner());
        let items: Vec<_> = entries
            .iter()
            .map(|(e, count)| {
                let mut v = serde_json::to_value(e).unwrap_or_default();
                v["count"] = json!(count);
                v
            })
            .collect();
        (StatusCode::OK, json!({"items": items}))
    };
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap_or_default()
}

/// The authorizer attributes of a request (user and code left empty).
fn attributes(method: &Method, path: &str, query: &str) -> AuditEntry {
    let param = |key: &str| {
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == key).then(|| percent_decode_str(v).decode_utf8_lossy().into_owned())
        })
    };
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest): (&str, &[&str]) = match segs.as_slice() {
        ["api", _, rest @ ..] if !rest.is_empty() => ("", rest),
        ["apis", g, _, rest @ ..] if !rest.is_empty() => (g, rest),
        _ => {
            return AuditEntry {
                verb: method.as_str().to_lowercase(),
                path: path.to_string(),
                ..empty()
            };
        }
    };
    let (namespace, resource, name, subresource) = match rest {
        ["namespaces", ns, r, tail @ ..] => (*ns, *r, tail.first(), tail.get(1)),
        [r, tail @ ..] => ("", *r, tail.first(), tail.get(1)),
        [] => ("", "", None, None),
    };
    let mut name = name.map(|n| n.to_string()).unwrap_or_default();
    let collection = name.is_empty();
    let watch = param("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (method, collection) {
        (&Method::GET, true) if watch => "watch",
        (&Method::GET, true) => "list",
        (&Method::GET, false) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "deletecollection",
        (&Method::DELETE, false) => "delete",
        (other, _) => {
            return AuditEntry {
                verb: other.as_str().to_lowercase(),
                path: path.to_string(),
                ..empty()
            };
        }
    };
    if collection
        && let Some(selected) = param("fieldSelector").and_then(|s| {
            s.strip_prefix("metadata.name==")
                .or_else(|| s.strip_prefix("metadata.name="))
                .filter(|n| !n.contains(','))
                .map(str::to_string)
        })
    {
        name = selected;
    }
    AuditEntry {
        verb: verb.to_string(),
        api_group: group.to_string(),
        resource: resource.to_string(),
        subresource: subresource.map(|s| s.to_string()).unwrap_or_default(),
        namespace: namespace.to_string(),
        name,
        ..empty()
    }
}

fn empty() -> AuditEntry {
    AuditEntry {
        user: String::new(),
        verb: String::new(),
        api_group: String::new(),
        resource: String::new(),
        subresource: String::new(),
        namespace: String::new(),
        name: String::new(),
        path: String::new(),
        code: 0,
        implied: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_of_resource_paths() {
        let a = attributes(
            &Method::GET,
            "/api/v1/namespaces/sc-system/secrets",
            "fieldSelector=metadata.name%3Dsc-protected&watch=true",
        );
        assert_eq!(
            (a.verb.as_str(), a.resource.as_str(), a.name.as_str()),
            ("watch", "secrets", "sc-protected")
        );
        assert_eq!(a.namespace, "sc-system");
        let a = attributes(
            &Method::PATCH,
            "/apis/apps/v1/namespaces/apps/deployments/web",
            "",
        );
        assert_eq!(
            (a.verb.as_str(), a.api_group.as_str(), a.name.as_str()),
            ("patch", "apps", "web")
        );
        let a = attributes(&Method::GET, "/api/v1/namespaces/apps", "");
        assert_eq!(
            (a.verb.as_str(), a.resource.as_str(), a.name.as_str()),
            ("get", "namespaces", "apps")
        );
        let a = attributes(&Method::GET, "/api/v1/namespaces/sc-system/pods/p/log", "");
        assert_eq!(
            (a.resource.as_str(), a.subresource.as_str()),
            ("pods", "log")
        );
        let a = attributes(&Method::GET, "/apis", "");
        assert_eq!((a.verb.as_str(), a.path.as_str()), ("get", "/apis"));
    }
}

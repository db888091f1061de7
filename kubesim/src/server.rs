//! The HTTP layer: one handler that routes every Kubernetes path form itself, decodes bodies
//! (JSON, YAML, protobuf), authenticates bearer tokens, authorizes with RBAC and serves
//! lists, watches, logs and subresources on top of [`Cluster`].

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::cluster::{
    ApiError, Cluster, DeleteOptions, Deleted, FieldValidation, ListOptions, LogOptions, PatchType,
    Propagation, WriteOptions,
};
use crate::negotiate::{self, Output, negotiate};
use crate::rbac::{self, Attributes, UserInfo};
use crate::resources::{self, ResourceInfo};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{EventType, WatchEvent};
use crate::structural;

/// The router serving `cluster`.
pub fn router(cluster: Arc<Cluster>) -> axum::Router {
    crate::audit::wrap(
        axum::Router::new()
            .fallback(handle)
            .with_state(cluster.clone()),
        cluster,
    )
}

/// Query parameters, URL-decoded; empty pairs (`?&watch=true`) skipped.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        let mut out = Vec::new();
        for pair in q.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let dec = |s: &str| {
                percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            out.push((dec(k), dec(v)));
        }
        Query(out)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true") | Some("1") | Some(""))
    }

    fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value {v:?} for query parameter {key}"))
            }),
        }
    }
}

/// A JSON body ends with a newline, as Go's `json.Encoder` (the API server's serializer)
/// writes it.
pub(crate) fn json_response(code: u16, body: &Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json_line(body)))
        .expect("valid response")
}

/// `v` as JSON and a newline, written straight into bytes (the same bytes as its `Display`).
fn json_line(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    serde_json::to_writer(&mut out, v).expect("a JSON value serializes");
    out.push(b'\n');
    out
}

pub(crate) fn error_response(e: &ApiError) -> Response {
    let mut r = json_response(e.code, &e.status());
    if let Some(secs) = e
        .details
        .as_ref()
        .and_then(|d| d["retryAfterSeconds"].as_u64())
    {
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    }
    r
}

async fn handle(State(cluster): State<Arc<Cluster>>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    // A WebSocket upgrade (pods/exec, attach, portforward) is taken here, before the body.
    let ws = if parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    {
        use axum::extract::FromRequestParts;
        axum::extract::ws::WebSocketUpgrade::from_request_parts(&mut parts, &())
            .await
            .ok()
    } else {
        None
    };
    let path = parts.uri.path().to_string();
    let query = Query::parse(parts.uri.query());
    if matches!(path.as_str(), "/healthz" | "/livez" | "/readyz") {
        return Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from("ok"))
            .expect("valid response");
    }
    let user = match authenticate(&cluster, &parts.headers) {
        Some(u) => u,
        None => return error_response(&ApiError::unauthorized()),
    };
    let user = match impersonate(&cluster, user, &parts.headers) {
        Ok(u) => u,
        Err(e) => return error_response(&e),
    };
    let body = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(b) => b,
        Err(e) => {
            return error_response(&ApiError::bad_request(format!(
                "reading the request body failed: {e}"
            )));
        }
    };
    let req = Req {
        method: parts.method,
        path,
        query,
        headers: parts.headers,
        body,
        user,
        ws: std::sync::Mutex::new(ws),
    };
    match route(&cluster, &req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

/// The user of a request. A bearer token must be known (else 401). A request without
/// credentials is the admin, as on the API server's former insecure port: client-go (kubectl,
/// helm) never sends credentials over plain http, so loopback http without a token is trusted.
fn authenticate(cluster: &Cluster, headers: &HeaderMap) -> Option<UserInfo> {
    let Some(h) = headers.get(header::AUTHORIZATION) else {
        return cluster.authenticate(cluster.admin_token());
    };
    let h = h.to_str().ok()?;
    let token = h
        .strip_prefix("Bearer ")
        .or_else(|| h.strip_prefix("bearer "))?
        .trim();
    cluster.authenticate(token)
}

/// `Impersonate-User` / `Impersonate-Group` (kubectl `--as`, `--as-group`): the request runs as
/// that user when the authenticated one may impersonate it. ServiceAccount users get their
/// groups as a token would give them.
fn impersonate(
    cluster: &Cluster,
    user: UserInfo,
    headers: &HeaderMap,
) -> Result<UserInfo, ApiError> {
    let Some(name) = headers
        .get("impersonate-user")
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(user);
    };
    let groups: Vec<String> = headers
        .get_all("impersonate-group")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let sa = name
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'));
    let (resource, namespace, object) = match sa {
        Some((ns, sa)) => ("serviceaccounts", ns, sa),
        None => ("users", "", name),
    };
    cluster.authorize(
        &user,
        &Attributes {
            verb: "impersonate".into(),
            resource: resource.into(),
            namespace: namespace.into(),
            name: object.into(),
            ..Attributes::default()
        },
    )?;
    let mut target = match sa {
        Some((ns, sa)) => UserInfo::service_account(ns, sa),
        None => UserInfo {
            name: name.to_string(),
            groups: vec!["system:authenticated".into()],
        },
    };
    for g in groups {
        if !target.groups.contains(&g) {
            target.groups.push(g);
        }
    }
    Ok(target)
}

struct Req {
    method: Method,
    path: String,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
    user: UserInfo,
    /// The WebSocket upgrade of the request, if it is one (taken by the streaming
    /// subresources).
    ws: std::sync::Mutex<Option<axum::extract::ws::WebSocketUpgrade>>,
}

impl Req {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn non_resource(&self, cluster: &Cluster) -> Result<(), ApiError> {
        let attrs = Attributes {
            verb: self.method.as_str().to_lowercase(),
            path: Some(self.path.clone()),
            ..Attributes::default()
        };
        cluster.authorize(&self.user, &attrs)
    }

    fn write_options(&self) -> WriteOptions {
        let manager = self
            .query
            .get("fieldManager")
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .or_else(|| {
                let ua = self.header(header::USER_AGENT);
                let prefix = ua.split('/').next().unwrap_or_default();
                Some(if prefix.is_empty() {
                    "unknown".to_string()
                } else {
                    prefix.to_string()
                })
            });
        WriteOptions {
            field_manager: manager,
            dry_run: self.query.get("dryRun").is_some_and(|d| d == "All"),
            field_validation: match self.query.get("fieldValidation") {
                Some("Strict") => FieldValidation::Strict,
                Some("Ignore") => FieldValidation::Ignore,
                _ => FieldValidation::Warn,
            },
            unknown_fields_dropped: false,
        }
    }
}

/// A parsed resource path.
#[derive(Clone)]
struct Target {
    info: ResourceInfo,
    version: String,
    namespace: String,
    name: Option<String>,
    subresource: Option<String>,
}

async fn route(cluster: &Arc<Cluster>, req: &Req) -> Result<Response, ApiError> {
    let segs: Vec<&str> = req
        .path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let registry = cluster.registry();
    let get_only = |doc: Option<Value>| -> Result<Response, ApiError> {
        req.non_resource(cluster)?;
        if req.method != Method::GET {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
        doc.map(|d| json_response(200, &d))
            .ok_or_else(ApiError::no_route)
    };
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["version"] => return get_only(Some(resources::version())),
        ["api"] | ["apis"] => {
            let core = segs[0] == "api";
            if let Some(v) = negotiate::discovery_version(req.header(header::ACCEPT)) {
                req.non_resource(cluster)?;
                if req.method != Method::GET {
                    return Err(ApiError::method_not_allowed(
                        "the server does not allow this method on the requested resource",
                    ));
                }
                return Ok(aggregated_discovery(
                    &registry.group_discovery_list(core, v),
                    v,
                ));
            }
            return get_only(Some(if core {
                resources::api_versions()
            } else {
                registry.api_group_list()
            }));
        }
        ["openapi", "v3"] => return get_only(Some(registry.openapi_index())),
        ["openapi", "v3", gv @ ..] => return get_only(registry.openapi_doc(&gv.join("/"))),
        [".well-known", "openid-configuration"] => {
            return issuer_document(cluster, req, false);
        }
        ["openid", "v1", "jwks"] => return issuer_document(cluster, req, true),
        ["apis", g] => return get_only(registry.api_group_doc(g)),
        ["api", v] => return get_only(registry.api_resource_list("", v)),
        ["apis", g, v] => return get_only(registry.api_resource_list(g, v)),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => {
            req.non_resource(cluster)?;
            return Err(ApiError::no_route());
        }
    };
    let served = |r: &str| {
        registry
            .get(group, r)
            .filter(|i| i.serves(version))
            .cloned()
    };
    let (info, namespace, name, sub) = match rest {
        ["namespaces", ns, r, tail @ ..] if served(r).is_some_and(|i| i.namespaced) => {
            let info = served(r).expect("checked");
            match tail {
                [] => (info, ns.to_string(), None, None),
                [n] => (info, ns.to_string(), Some(n.to_string()), None),
                [n, s] => (
                    info,
                    ns.to_string(),
                    Some(n.to_string()),
                    Some(s.to_string()),
                ),
                _ => return Err(ApiError::no_route()),
            }
        }
        [r, tail @ ..] => {
            let info = served(r).ok_or_else(ApiError::no_route)?;
            match tail {
                [] => (info, String::new(), None, None),
                [n] if !info.namespaced => (info, String::new(), Some(n.to_string()), None),
                [n, s] if !info.namespaced => (
                    info,
                    String::new(),
                    Some(n.to_string()),
                    Some(s.to_string()),
                ),
                _ => return Err(ApiError::no_route()),
            }
        }
        [] => return Err(ApiError::no_route()),
    };
    if let Some(s) = &sub
        && !info.has_subresource(s)
    {
        return Err(ApiError::no_route());
    }
    let t = Target {
        info,
        version: version.to_string(),
        namespace,
        name,
        subresource: sub,
    };
    let verb = verb_of(req, &t)?;
    cluster.authorize(
        &req.user,
        &Attributes {
            verb: verb.to_string(),
            api_group: t.info.group.clone(),
            resource: t.info.resource.clone(),
            subresource: t.subresource.clone().unwrap_or_default(),
            namespace: t.namespace.clone(),
            name: t.name.clone().unwrap_or_else(|| authorized_name(req, verb)),
            path: None,
        },
    )?;
    serve(cluster, req, &t, verb).await
}

/// ServiceAccount issuer discovery, as kube-apiserver serves it: the OpenID configuration
/// (`jwks` false) or its key set (`jwks` true). kubesim's tokens are opaque, not signed JWTs,
/// so the key set is empty.
fn issuer_document(cluster: &Cluster, req: &Req, jwks: bool) -> Result<Response, ApiError> {
    req.non_resource(cluster)?;
    if req.method != Method::GET {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let issuer = cluster.issuer();
    let (content_type, body) = if jwks {
        ("application/jwk-set+json", json!({"keys": []}))
    } else {
        (
            "application/json",
            json!({
                "issuer": issuer.url,
                "jwks_uri": issuer.jwks_uri,
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }),
        )
    };
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "public, max-age=3600")
        .body(Body::from(body.to_string()))
        .expect("valid response"))
}

/// The object name a collection request is authorized for: as kube-apiserver's RequestInfo
/// does, a list or watch whose field selector is exactly `metadata.name=NAME` is a request for
/// NAME, so RBAC rules with `resourceNames` allow it.
fn authorized_name(req: &Req, verb: &str) -> String {
    if verb != "list" && verb != "watch" {
        return String::new();
    }
    let Some(fs) = req.query.get("fieldSelector") else {
        return String::new();
    };
    let parts: Vec<&str> = fs.split(',').filter(|p| !p.trim().is_empty()).collect();
    match parts.as_slice() {
        [only] => only
            .trim()
            .strip_prefix("metadata.name==")
            .or_else(|| only.trim().strip_prefix("metadata.name="))
            .filter(|n| !n.starts_with('='))
            .map(str::to_string)
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn verb_of(req: &Req, t: &Target) -> Result<&'static str, ApiError> {
    let collection = t.name.is_none();
    Ok(match (&req.method, collection) {
        (&Method::GET, true) if req.query.flag("watch") && req.query.get("watch").is_some() => {
            "watch"
        }
        (&Method::GET, true) => "list",
        (&Method::GET, false) => "get",
        (&Method::POST, true) => "create",
        (&Method::POST, false)
            if matches!(t.subresource.as_deref(), Some("token" | "eviction")) =>
        {
            "create"
        }
        (&Method::POST, false)
            if t.subresource
                .as_deref()
                .and_then(crate::streaming::Kind::of)
                .is_some() =>
        {
            "create"
        }
        (&Method::PUT, false) => "update",
        (&Method::PATCH, false) => "patch",
        (&Method::DELETE, false) => "delete",
        (&Method::DELETE, true) => "deletecollection",
        _ => {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
    })
}

/// Whether a stored object is served at the requested version as it is (`present` would not
/// change it).
fn as_served(obj: &Value, t: &Target) -> bool {
    obj.get("kind").and_then(Value::as_str) != Some(t.info.kind.as_str())
        || (obj.get("apiVersion").and_then(Value::as_str)
            == Some(t.info.api_version_for(&t.version).as_str())
            && read_defaults(t).is_none())
}

/// The schema of a custom type whose reads apply defaults (it declares some): as the API
/// server defaults what it reads from storage, an object stored before a default was added
/// is served with it.
fn read_defaults(t: &Target) -> Option<&Value> {
    structural::schema_of(&t.info).filter(|s| structural::has_defaults(s))
}

/// An object as served at `version` (custom resources may be served at several), with the
/// defaults of its schema.
fn present(mut obj: Value, t: &Target) -> Value {
    if obj.is_object() && obj.get("kind").and_then(Value::as_str) == Some(t.info.kind.as_str()) {
        obj["apiVersion"] = Value::String(t.info.api_version_for(&t.version));
        if let Some(schema) = read_defaults(t) {
            structural::default(schema, &mut obj);
            obj.sort_all_objects();
        }
    }
    obj
}

fn unix_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Decode a request body by its Content-Type (JSON when absent).
fn decode_body(req: &Req) -> Result<Value, ApiError> {
    let ct = req
        .header(header::CONTENT_TYPE)
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if req.body.is_empty() {
        return Ok(Value::Null);
    }
    match ct.as_str() {
        ""
        | "application/json"
        | "*/*"
        | "application/json-patch+json"
        | "application/merge-patch+json"
        | "application/strategic-merge-patch+json" => serde_json::from_slice(&req.body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}"))),
        "application/yaml"
        | "application/apply-patch+yaml"
        | "application/x-yaml"
        | "text/yaml" => {
            // JSON is YAML: clients (kube-rs, client-go's apply) send apply bodies as JSON,
            // which the JSON parser reads much faster. Anything it refuses goes to YAML.
            if req.body.trim_ascii_start().first() == Some(&b'{')
                && let Ok(v) = serde_json::from_slice::<Value>(&req.body)
            {
                return Ok(v);
            }
            let text = std::str::from_utf8(&req.body)
                .map_err(|_| ApiError::bad_request("the YAML body is not UTF-8"))?;
            serde_saphyr::from_str::<Value>(text).map_err(|e| {
                ApiError::bad_request(format!("the request body is not valid YAML: {e}"))
            })
        }
        "application/vnd.kubernetes.protobuf" => {
            crate::proto::decode(&req.body).map_err(|e| match e {
                crate::proto::ProtoError::Unsupported(_) => {
                    ApiError::unsupported_media_type("application/json, application/yaml")
                }
                other => ApiError::bad_request(other.to_string()),
            })
        }
        _ => Err(ApiError::unsupported_media_type(
            "application/json, application/yaml, application/vnd.kubernetes.protobuf",
        )),
    }
}

/// How long a list at a resourceVersion newer than the store's waits for it before the 504
/// (kube-apiserver's watch cache waits 3 s).
const LIST_VERSION_WAIT: Duration = Duration::from_secs(1);

/// Wait (at most [`LIST_VERSION_WAIT`]) until the store reaches the resourceVersion a list
/// asks for.
async fn wait_for_version(cluster: &Cluster, rv: Option<&str>) {
    let Some(wanted) = rv.and_then(|r| r.parse::<u64>().ok()) else {
        return;
    };
    let store = cluster.store();
    if store.current_rv() >= wanted {
        return;
    }
    let Ok(sub) = store.subscribe(None) else {
        return;
    };
    let mut live = sub.live;
    let deadline = tokio::time::Instant::now() + LIST_VERSION_WAIT;
    while store.current_rv() < wanted {
        match tokio::time::timeout_at(deadline, live.recv()).await {
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            _ => return,
        }
    }
}

fn list_options(req: &Req, t: &Target) -> Result<ListOptions, ApiError> {
    let label_selector = match req.query.get("labelSelector").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(LabelSelector::parse(s).map_err(ApiError::bad_request)?),
    };
    let field_selector = match req.query.get("fieldSelector").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            FieldSelector::parse(s, &t.info.group, &t.info.resource)
                .map_err(ApiError::bad_request)?,
        ),
    };
    Ok(ListOptions {
        label_selector,
        field_selector,
        limit: req.query.int("limit")?.map(|l| l.max(0) as usize),
        continue_token: req
            .query
            .get("continue")
            .filter(|c| !c.is_empty())
            .map(str::to_string),
        ..ListOptions::default()
    })
}

/// The `additionalPrinterColumns` of a custom resource's served version (None: built-in).
fn printer_columns(cluster: &Cluster, t: &Target) -> Option<Vec<Value>> {
    if !t.info.custom {
        return None;
    }
    let crds = crate::store::ResKey::new("apiextensions.k8s.io", "customresourcedefinitions");
    let crd = cluster
        .get(&crds, "", &format!("{}.{}", t.info.resource, t.info.group))
        .ok()?;
    let version = crd["spec"]["versions"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == t.version.as_str())?
        .clone();
    Some(
        version["additionalPrinterColumns"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    )
}

fn make_table(
    t: &Target,
    columns: Option<&[Value]>,
    objs: &[&Value],
    list_meta: Value,
    include: &str,
) -> Value {
    match columns {
        Some(cols) => crate::table::to_custom_table(cols, objs, list_meta, unix_now(), include),
        None => crate::table::to_table(
            &t.info.group,
            &t.info.resource,
            objs,
            list_meta,
            unix_now(),
            include,
        ),
    }
}

fn table_response(
    cluster: &Cluster,
    req: &Req,
    t: &Target,
    objs: &[&Value],
    list_meta: Value,
) -> Response {
    let include = req.query.get("includeObject").unwrap_or("Metadata");
    let columns = printer_columns(cluster, t);
    let table = make_table(t, columns.as_deref(), objs, list_meta, include);
    Response::builder()
        .header(
            header::CONTENT_TYPE,
            "application/json;as=Table;v=v1;g=meta.k8s.io",
        )
        .body(Body::from(table.to_string() + "\n"))
        .expect("valid response")
}

async fn serve(
    cluster: &Arc<Cluster>,
    req: &Req,
    t: &Target,
    verb: &str,
) -> Result<Response, ApiError> {
    if t.info.is_review() {
        return review(cluster, req, t);
    }
    if t.info.is_component_status() {
        return component_statuses(cluster, req, t, verb);
    }
    let res = t.info.key();
    let ns = t.namespace.as_str();
    let name = t.name.as_deref().unwrap_or_default();
    // Logs are text and token requests their own kind; everything else is negotiated.
    let output = match t.subresource.as_deref() {
        Some("log" | "token" | "eviction" | "exec" | "attach" | "portforward") => Output::Object,
        _ => negotiate(req.header(header::ACCEPT))?,
    };
    let shape = |obj: Value| -> Result<Value, ApiError> { negotiate::object(output, &t.info, obj) };
    match (verb, t.subresource.as_deref()) {
        ("list", _) => {
            if req.query.flag("sendInitialEvents") && req.query.get("sendInitialEvents").is_some() {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "sendInitialEvents is forbidden for list requests; use a watch",
                ));
            }
            let mut opts = list_options(req, t)?;
            opts.resource_version = req.query.get("resourceVersion").map(str::to_string);
            opts.resource_version_match = req
                .query
                .get("resourceVersionMatch")
                .filter(|m| !m.is_empty())
                .map(str::to_string);
            wait_for_version(cluster, opts.resource_version.as_deref()).await;
            let ns = if ns.is_empty() { None } else { Some(ns) };
            let list = cluster.list_shared(&res, ns, &opts)?;
            let mut meta = json!({"resourceVersion": list.resource_version.to_string()});
            if let Some(c) = &list.continue_token {
                meta["continue"] = json!(c);
            }
            if let Some(n) = list.remaining_item_count {
                meta["remainingItemCount"] = json!(n);
            }
            if output == Output::Table {
                let refs: Vec<&Value> = list.items.iter().map(|o| o.as_ref()).collect();
                return Ok(table_response(cluster, req, t, &refs, meta));
            }
            if let Some(partial) = negotiate::list(
                output,
                &t.info,
                &meta,
                list.items.iter().map(|o| o.as_ref()),
            )? {
                return Ok(json_response(200, &partial));
            }
            Ok(list_response(t, meta, &list.items))
        }
        ("watch", _) => watch(cluster, req, t, output),
        ("get", None) => {
            let stored = cluster.get_shared(&res, ns, name)?;
            if output == Output::Object && as_served(&stored, t) {
                return Ok(json_response(200, &stored));
            }
            let obj = present((*stored).clone(), t);
            if output == Output::Table {
                let rv = obj["metadata"]["resourceVersion"].clone();
                return Ok(table_response(
                    cluster,
                    req,
                    t,
                    &[&obj],
                    json!({"resourceVersion": rv}),
                ));
            }
            Ok(json_response(200, &shape(obj)?))
        }
        ("get", Some("status" | "approval" | "ephemeralcontainers")) => Ok(json_response(
            200,
            &shape(present(cluster.get(&res, ns, name)?, t))?,
        )),
        ("get", Some("scale")) => Ok(json_response(200, &cluster.get_scale(&res, ns, name)?)),
        ("get", Some("log")) => pod_logs(cluster, req, ns, name),
        ("get" | "create", Some(sub)) if crate::streaming::Kind::of(sub).is_some() => {
            stream(cluster, req, t, verb, sub).await
        }
        ("create", None) => {
            let mut body = decode_body(req)?;
            if !body.is_object() {
                return Err(ApiError::bad_request("the request body must be an object"));
            }
            check_kind(&body, t)?;
            let mut opts = req.write_options();
            let warnings = drop_unknown_fields(&mut opts, t, &mut body);
            let obj = cluster.create(&res, ns, body, &opts)?;
            Ok(with_warnings(
                json_response(201, &shape(present(obj, t))?),
                &warnings,
            ))
        }
        ("create", Some("token")) => token_request(cluster, req, ns, name),
        ("create", Some("eviction")) => evict(cluster, req, ns, name),
        ("update", None) => {
            let mut body = decode_body(req)?;
            check_kind(&body, t)?;
            let mut opts = req.write_options();
            let warnings = drop_unknown_fields(&mut opts, t, &mut body);
            let obj = cluster.update(&res, ns, name, body, &opts)?;
            Ok(with_warnings(
                json_response(200, &shape(present(obj, t))?),
                &warnings,
            ))
        }
        ("update", Some("ephemeralcontainers")) => {
            let body = decode_body(req)?;
            Ok(json_response(
                200,
                &shape(present(
                    cluster.replace_ephemeral_containers(ns, name, body, &req.write_options())?,
                    t,
                ))?,
            ))
        }
        ("update", Some("status" | "approval")) => {
            let body = decode_body(req)?;
            Ok(json_response(
                200,
                &shape(present(
                    cluster.replace_status(&res, ns, name, body, &req.write_options())?,
                    t,
                ))?,
            ))
        }
        ("update", Some("scale")) => {
            let body = decode_body(req)?;
            Ok(json_response(
                200,
                &cluster.set_scale(&res, ns, name, &body, &req.write_options())?,
            ))
        }
        ("patch", sub @ (None | Some("status" | "scale" | "approval" | "ephemeralcontainers"))) => {
            let ct = req
                .header(header::CONTENT_TYPE)
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            let kind = match ct.as_str() {
                "application/json-patch+json" => PatchType::Json,
                "application/merge-patch+json" => PatchType::Merge,
                "application/strategic-merge-patch+json" => PatchType::Strategic,
                "application/apply-patch+yaml" => PatchType::Apply {
                    force: req.query.flag("force") && req.query.get("force").is_some(),
                },
                _ => {
                    return Err(ApiError::unsupported_media_type(
                        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json",
                    ));
                }
            };
            let body = decode_body(req)?;
            if sub == Some("scale") {
                return patch_scale(cluster, req, t, kind, &body);
            }
            let existed = matches!(kind, PatchType::Apply { .. })
                && cluster.get_shared(&res, ns, name).is_ok();
            if matches!(kind, PatchType::Apply { .. }) && !existed && sub.is_none() {
                // An apply that creates the object also needs `create` on it, as
                // kube-apiserver authorizes it (handlers/patch.go, createAuthorizerAttributes).
                cluster.authorize(
                    &req.user,
                    &Attributes {
                        verb: "create".to_string(),
                        api_group: t.info.group.clone(),
                        resource: t.info.resource.clone(),
                        subresource: String::new(),
                        namespace: t.namespace.clone(),
                        name: name.to_string(),
                        path: None,
                    },
                )?;
            }
            let obj = cluster.patch(&res, ns, name, sub, kind, &body, &req.write_options())?;
            let code = if matches!(kind, PatchType::Apply { .. }) && !existed {
                201
            } else {
                200
            };
            Ok(json_response(code, &shape(present(obj, t))?))
        }
        ("delete", None) => {
            let opts = delete_options(req)?;
            let outcome = cluster.delete(&res, ns, name, &opts)?;
            Ok(json_response(200, &shape(deleted_body(t, outcome))?))
        }
        ("deletecollection", None) => {
            let opts = delete_options(req)?;
            let list = list_options(req, t)?;
            let done = cluster.delete_collection(
                &res,
                if ns.is_empty() { None } else { Some(ns) },
                &list,
                &opts,
            )?;
            let items: Vec<Value> = done
                .into_iter()
                .map(|d| match d {
                    Deleted::Gone(v) | Deleted::Pending(v) => present(v, t),
                })
                .collect();
            let meta = json!({"resourceVersion": cluster.store().current_rv().to_string()});
            if let Some(partial) = negotiate::list(output, &t.info, &meta, items.iter())? {
                return Ok(json_response(200, &partial));
            }
            Ok(json_response(
                200,
                &json!({"kind": format!("{}List", t.info.kind), "apiVersion": t.info.api_version_for(&t.version),
                        "metadata": meta, "items": items}),
            ))
        }
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    }
}

/// Reviews (`kubectl auth can-i`, `auth whoami`, token reviews): answered, never stored.
fn review(cluster: &Cluster, req: &Req, t: &Target) -> Result<Response, ApiError> {
    if req.method != Method::POST || t.name.is_some() {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let body = match decode_body(req) {
        Err(e) if e.code == 415 => crate::reviews::decode_proto(&req.body).ok_or(e)?,
        other => other?,
    };
    let answer = crate::reviews::answer(cluster, &req.user, &t.info, &t.version, body)?;
    Ok(json_response(201, &answer))
}

/// A `<Kind>List`, written item by item from the shared objects (a list can be large).
fn list_response(t: &Target, meta: Value, items: &[crate::store::Obj]) -> Response {
    let api_version = t.info.api_version_for(&t.version);
    let rewrite = api_version != t.info.api_version() || read_defaults(t).is_some();
    let mut out = String::with_capacity(256 + items.len() * 1024);
    out.push_str(&format!(
        "{{\"kind\":{},\"apiVersion\":{},\"metadata\":{},\"items\":[",
        json!(format!("{}List", t.info.kind)),
        json!(api_version),
        meta
    ));
    for (i, o) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if rewrite {
            out.push_str(&present((**o).clone(), t).to_string());
        } else {
            out.push_str(&o.to_string());
        }
    }
    out.push_str("]}\n");
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(out))
        .expect("valid response")
}

/// `fieldValidation=Warn` (the default) and `Ignore`: drop the fields the type does not have
/// from the body, in one decoding with the `Warning` headers it gives under `Warn` (the
/// non-null fields dropped), and tell the write path it need not look again.
fn drop_unknown_fields(opts: &mut WriteOptions, t: &Target, body: &mut Value) -> Vec<String> {
    if opts.field_validation == FieldValidation::Strict || !body.is_object() {
        return Vec::new();
    }
    let Some(dropped) = crate::strict::drop_unknown_reporting(&t.info, body) else {
        return Vec::new();
    };
    opts.unknown_fields_dropped = true;
    if opts.field_validation != FieldValidation::Warn {
        return Vec::new();
    }
    dropped
        .into_iter()
        .map(|f| format!("unknown field {f:?}"))
        .collect()
}

/// Add `Warning: 299 - "..."` headers, as the API server reports dropped fields.
fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let value = format!("299 - {w:?}");
        if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
            response.headers_mut().append("warning", v);
        }
    }
    response
}

/// A body's `apiVersion`/`kind`, when given, must be the resource's.
fn check_kind(body: &Value, t: &Target) -> Result<(), ApiError> {
    if let Some(k) = body.get("kind").and_then(Value::as_str)
        && !k.is_empty()
        && k != t.info.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind of the body ({k}) does not match the resource ({})",
            t.info.kind
        )));
    }
    Ok(())
}

fn deleted_body(t: &Target, outcome: Deleted) -> Value {
    match outcome {
        Deleted::Pending(v) => present(v, t),
        Deleted::Gone(v) if t.info.returns_deleted_object() => present(v, t),
        Deleted::Gone(v) => {
            // metav1.StatusDetails: the core group is omitted (`omitempty`).
            let mut details = serde_json::Map::new();
            details.insert("name".into(), v["metadata"]["name"].clone());
            if !t.info.group.is_empty() {
                details.insert("group".into(), json!(t.info.group));
            }
            details.insert("kind".into(), json!(t.info.resource));
            details.insert("uid".into(), v["metadata"]["uid"].clone());
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": details,
            })
        }
    }
}

fn delete_options(req: &Req) -> Result<DeleteOptions, ApiError> {
    let body = decode_body(req)?;
    delete_options_of(req, &body)
}

/// The `DeleteOptions` of `body` (a delete's body, or an Eviction's `deleteOptions`) and the
/// request's query.
fn delete_options_of(req: &Req, body: &Value) -> Result<DeleteOptions, ApiError> {
    let empty = json!({});
    let body = if body.is_object() { body } else { &empty };
    let policy = body["propagationPolicy"]
        .as_str()
        .or_else(|| req.query.get("propagationPolicy"))
        .map(|p| match p {
            "Background" => Ok(Propagation::Background),
            "Foreground" => Ok(Propagation::Foreground),
            "Orphan" => Ok(Propagation::Orphan),
            other => Err(ApiError::new(
                422,
                "Invalid",
                format!("propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""),
            )),
        })
        .transpose()?;
    let orphan = body["orphanDependents"]
        .as_bool()
        .or_else(|| req.query.get("orphanDependents").map(|v| v == "true"));
    let policy = policy.or(match orphan {
        Some(true) => Some(Propagation::Orphan),
        Some(false) => Some(Propagation::Background),
        None => None,
    });
    let grace = match body["gracePeriodSeconds"].as_i64() {
        Some(g) => Some(g),
        None => req.query.int("gracePeriodSeconds")?,
    };
    let dry_run = body["dryRun"]
        .as_array()
        .is_some_and(|a| a.iter().any(|d| d == "All"))
        || req.query.get("dryRun") == Some("All");
    Ok(DeleteOptions {
        propagation_policy: policy,
        grace_period_seconds: grace,
        precondition_uid: body["preconditions"]["uid"].as_str().map(str::to_string),
        precondition_resource_version: body["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string),
        dry_run,
    })
}

fn patch_scale(
    cluster: &Cluster,
    req: &Req,
    t: &Target,
    kind: PatchType,
    body: &Value,
) -> Result<Response, ApiError> {
    let res = t.info.key();
    let name = t.name.as_deref().unwrap_or_default();
    let current = cluster.get_scale(&res, &t.namespace, name)?;
    let mut patched = match kind {
        PatchType::Json => crate::patch::json_patch(&current, body)?,
        PatchType::Merge | PatchType::Strategic | PatchType::Apply { .. } => {
            crate::patch::merge_patch(&current, body)
        }
    };
    if body["metadata"].get("resourceVersion").is_none()
        && let Some(m) = patched["metadata"].as_object_mut()
    {
        m.remove("resourceVersion");
    }
    Ok(json_response(
        200,
        &cluster.set_scale(&res, &t.namespace, name, &patched, &req.write_options())?,
    ))
}

/// An aggregated discovery document (`apidiscovery.k8s.io/<version>`), with the media type
/// client-go checks to tell it from the plain one.
fn aggregated_discovery(doc: &Value, version: &str) -> Response {
    use sha2::Digest;
    let body = json_line(doc);
    let etag = hex::encode(&sha2::Sha256::digest(&body)[..16]).to_uppercase();
    Response::builder()
        .header(
            header::CONTENT_TYPE,
            format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"),
        )
        .header(header::VARY, "Accept")
        .header(header::ETAG, format!("\"{etag}\""))
        .body(Body::from(body))
        .expect("valid response")
}

/// `v1` ComponentStatus (`kubectl get cs`): the control plane components, computed on each
/// request as kube-apiserver probes them. Everything runs inside this process, so each is
/// healthy. The type is deprecated; responses carry the API server's warning.
fn component_statuses(
    cluster: &Cluster,
    req: &Req,
    t: &Target,
    verb: &str,
) -> Result<Response, ApiError> {
    let item = |name: &str| {
        json!({"kind": "ComponentStatus", "apiVersion": "v1",
               "metadata": {"name": name, "creationTimestamp": null},
               "conditions": [{"type": "Healthy", "status": "True", "message": "ok"}]})
    };
    let names = ["scheduler", "controller-manager", "etcd-0"];
    let output = negotiate(req.header(header::ACCEPT))?;
    let warnings = ["v1 ComponentStatus is deprecated in v1.19+".to_string()];
    let response = match verb {
        "list" => {
            let items: Vec<Value> = names.iter().map(|n| item(n)).collect();
            let meta = json!({});
            if output == Output::Table {
                let refs: Vec<&Value> = items.iter().collect();
                table_response(cluster, req, t, &refs, meta)
            } else if let Some(partial) = negotiate::list(output, &t.info, &meta, items.iter())? {
                json_response(200, &partial)
            } else {
                json_response(
                    200,
                    &json!({"kind": "ComponentStatusList", "apiVersion": "v1", "metadata": meta, "items": items}),
                )
            }
        }
        "get" => {
            let name = t.name.as_deref().unwrap_or_default();
            if !names.contains(&name) {
                return Err(ApiError::not_found(&t.info, name));
            }
            let obj = item(name);
            if output == Output::Table {
                table_response(cluster, req, t, &[&obj], json!({}))
            } else {
                json_response(200, &negotiate::object(output, &t.info, obj)?)
            }
        }
        _ => {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
    };
    Ok(with_warnings(response, &warnings))
}

/// `pods/eviction` (`policy/v1` Eviction): deletes the pod unless that would violate its
/// PodDisruptionBudget (429), as kube-apiserver's eviction REST does.
fn evict(cluster: &Cluster, req: &Req, ns: &str, name: &str) -> Result<Response, ApiError> {
    let body = decode_body(req)?;
    if !body.is_object() {
        return Err(ApiError::bad_request("the request body must be an object"));
    }
    if !matches!(
        body["apiVersion"].as_str(),
        None | Some("policy/v1") | Some("policy/v1beta1")
    ) || !matches!(body["kind"].as_str(), None | Some("Eviction"))
    {
        return Err(ApiError::bad_request(format!(
            "unsupported eviction kind {:?} in {:?}",
            body["kind"].as_str().unwrap_or_default(),
            body["apiVersion"].as_str().unwrap_or_default()
        )));
    }
    if let Some(n) = body["metadata"]["name"].as_str()
        && n != name
    {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let mut opts = delete_options_of(req, &body["deleteOptions"])?;
    if req.query.get("dryRun") == Some("All") {
        opts.dry_run = true;
    }
    crate::cluster::eviction::evict(cluster, ns, name, &opts)?;
    Ok(json_response(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

fn token_request(cluster: &Cluster, req: &Req, ns: &str, name: &str) -> Result<Response, ApiError> {
    let body = decode_body(req)?;
    let mut spec = body
        .get("spec")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let seconds = spec["expirationSeconds"].as_i64().unwrap_or(3600).max(600);
    spec["expirationSeconds"] = json!(seconds);
    if spec.get("audiences").is_none_or(Value::is_null) {
        spec["audiences"] = json!([cluster.issuer().url]);
    }
    let audiences = rbac::strings(&spec, "audiences");
    let token = cluster.issue_token_for(ns, name, &audiences)?;
    let exp = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(seconds);
    let exp = exp.round(jiff::Unit::Second).unwrap_or(exp);
    Ok(json_response(
        201,
        &json!({
            "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
            "spec": spec,
            "status": {"token": token, "expirationTimestamp": exp.to_string()},
        }),
    ))
}

/// `pods/exec`, `pods/attach`, `pods/portforward`. A WebSocket upgrade is a GET, authorized
/// as `get`; as kube-apiserver does since 1.35 (`AuthorizePodWebsocketUpgradeCreatePermission`),
/// it also needs `create`, the verb of the SPDY POST.
async fn stream(
    cluster: &Arc<Cluster>,
    req: &Req,
    t: &Target,
    verb: &str,
    sub: &str,
) -> Result<Response, ApiError> {
    let kind = crate::streaming::Kind::of(sub).expect("checked by the caller");
    let ns = t.namespace.as_str();
    let name = t.name.as_deref().unwrap_or_default();
    if verb == "get" {
        cluster.authorize(
            &req.user,
            &Attributes {
                verb: "create".into(),
                api_group: t.info.group.clone(),
                resource: t.info.resource.clone(),
                subresource: sub.to_string(),
                namespace: ns.to_string(),
                name: name.to_string(),
                path: None,
            },
        )?;
    }
    let all = |key: &str| -> Vec<String> {
        req.query
            .0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let params = crate::streaming::Params {
        container: req.query.get("container").unwrap_or_default().to_string(),
        command: all("command"),
        stdin: req.query.flag("stdin") && req.query.get("stdin").is_some(),
        stdout: req.query.flag("stdout") && req.query.get("stdout").is_some(),
        stderr: req.query.flag("stderr") && req.query.get("stderr").is_some(),
        tty: req.query.flag("tty") && req.query.get("tty").is_some(),
        ports: all("ports"),
    };
    let ws = req.ws.lock().unwrap_or_else(|e| e.into_inner()).take();
    crate::streaming::serve(cluster, kind, ns, name, params, &req.headers, ws).await
}

fn pod_logs(cluster: &Cluster, req: &Req, ns: &str, name: &str) -> Result<Response, ApiError> {
    let q = &req.query;
    let opts = LogOptions {
        container: q.get("container").unwrap_or_default().to_string(),
        follow: q.get("follow") == Some("true") || q.get("follow") == Some("1"),
        previous: q.get("previous") == Some("true") || q.get("previous") == Some("1"),
        timestamps: q.get("timestamps") == Some("true") || q.get("timestamps") == Some("1"),
        tail_lines: q.int("tailLines")?,
        since_seconds: q.int("sinceSeconds")?,
        since_time: q.get("sinceTime").map(str::to_string),
        limit_bytes: q.int("limitBytes")?,
    };
    let stream = cluster.pod_logs(ns, name, opts)?;
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from_stream(stream))
        .expect("valid response"))
}

// ---- watch ----

const BOOKMARK_EVERY: Duration = Duration::from_secs(30);
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

struct WatchFilter {
    namespace: Option<String>,
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
}

impl WatchFilter {
    fn matches(&self, obj: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| obj["metadata"]["namespace"].as_str() == Some(ns))
            && self.labels.as_ref().is_none_or(|s| s.matches(obj))
            && self.fields.as_ref().is_none_or(|s| s.matches(obj))
    }
}

/// Encodes watch events: plain objects, or one-row Tables for `kubectl get -w`.
struct Encoder {
    /// Some: one-row Tables, with the custom printer columns when there are any.
    table: Option<Option<Vec<Value>>>,
    /// `PartialObjectMetadata` objects.
    metadata: bool,
    include: String,
    target: Target,
    api_version: String,
    kind: String,
    sent_columns: bool,
}

impl Encoder {
    /// A stored object's event. Plain watches that serve the object as stored share its JSON,
    /// written once for all watchers (the same bytes [`Encoder::event`] writes).
    fn stored_event(&mut self, kind: &str, ev: &WatchEvent) -> Bytes {
        let obj = &ev.object;
        let as_stored = self.table.is_none()
            && !self.metadata
            && (obj.get("kind").and_then(Value::as_str) != Some(self.kind.as_str())
                || obj.get("apiVersion").and_then(Value::as_str)
                    == Some(self.api_version.as_str()));
        if !as_stored {
            return self.event(kind, (**obj).clone());
        }
        let json = ev.object_json();
        let mut s = String::with_capacity(json.len() + 32);
        s.push_str("{\"type\":\"");
        s.push_str(kind);
        s.push_str("\",\"object\":");
        s.push_str(&json);
        s.push_str("}\n");
        Bytes::from(s)
    }

    fn event(&mut self, kind: &str, obj: Value) -> Bytes {
        let mut obj = obj;
        if obj.get("kind").and_then(Value::as_str) == Some(self.kind.as_str()) {
            obj["apiVersion"] = json!(self.api_version);
        }
        let object = if let Some(columns) = &self.table {
            let mut t = make_table(
                &self.target,
                columns.as_deref(),
                &[&obj],
                json!({"resourceVersion": obj["metadata"]["resourceVersion"]}),
                &self.include,
            );
            if self.sent_columns {
                t["columnDefinitions"] = json!([]);
            }
            self.sent_columns = true;
            t
        } else if self.metadata {
            crate::negotiate::partial(&obj)
        } else {
            obj
        };
        line(&json!({"type": kind, "object": object}))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let mut object =
            json!({"kind": self.kind, "apiVersion": self.api_version, "metadata": meta});
        if self.metadata {
            object = crate::negotiate::partial(&object);
        }
        line(&json!({"type": "BOOKMARK", "object": object}))
    }
}

fn line(v: &Value) -> Bytes {
    Bytes::from(json_line(v))
}

fn expired_event(requested: u64, current: u64) -> Bytes {
    let e = ApiError::expired(format!("too old resource version: {requested} ({current})"));
    line(&json!({"type": "ERROR", "object": e.status()}))
}

fn watch(
    cluster: &Arc<Cluster>,
    req: &Req,
    t: &Target,
    output: Output,
) -> Result<Response, ApiError> {
    let q = &req.query;
    let send_initial = q.get("sendInitialEvents").map(|v| v == "true");
    if send_initial.is_some() && q.get("resourceVersionMatch") != Some("NotOlderThan") {
        return Err(ApiError::new(
            422,
            "Invalid",
            "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        ));
    }
    let opts = list_options(req, t)?;
    let filter = WatchFilter {
        namespace: if t.namespace.is_empty() {
            None
        } else {
            Some(t.namespace.clone())
        },
        labels: opts.label_selector.clone(),
        fields: opts.field_selector.clone(),
    };
    let rv_param = q
        .get("resourceVersion")
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    let timeout = q
        .int("timeoutSeconds")?
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(s as u64))
        .unwrap_or(DEFAULT_WATCH_TIMEOUT);
    let bookmarks = q.flag("allowWatchBookmarks") && q.get("allowWatchBookmarks").is_some();
    let mut enc = Encoder {
        table: (output == Output::Table).then(|| printer_columns(cluster, t)),
        // As kube-apiserver's watch encoder: `PartialObjectMetadataList` cannot be made of one
        // object, so those watches carry the objects themselves.
        metadata: output == Output::Metadata,
        include: q.get("includeObject").unwrap_or("Metadata").to_string(),
        target: t.clone(),
        api_version: t.info.api_version_for(&t.version),
        kind: t.info.kind.clone(),
        sent_columns: false,
    };
    let res = t.info.key();
    let store = cluster.store();
    // Initial state: synthetic ADDED events (rv unset or "0", or watch-list).
    let initial = match (send_initial, rv_param.as_deref()) {
        (Some(true), _) => true,
        (Some(false), _) => false,
        (None, None) | (None, Some("0")) => true,
        (None, Some(_)) => false,
    };
    let mut prelude = Vec::new();
    let sub = if initial {
        let (items, rv) = store.list(&res, filter.namespace.as_deref());
        let sub = store.subscribe(Some(rv)).map_err(|e| {
            ApiError::expired(format!(
                "too old resource version: {} ({})",
                e.requested, e.oldest
            ))
        })?;
        for o in items.iter().filter(|o| filter.matches(o)) {
            prelude.push(enc.event("ADDED", (**o).clone()));
        }
        if send_initial == Some(true) {
            prelude.push(enc.bookmark(rv, true));
        }
        Some((sub, rv))
    } else {
        let from =
            match rv_param.as_deref() {
                Some(v) => Some(v.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version {v:?}"))
                })?),
                None => None,
            };
        match store.subscribe(from) {
            Ok(sub) => {
                // A version from the future starts at the present.
                let start = from.unwrap_or(sub.rv).min(sub.rv);
                Some((sub, start))
            }
            Err(e) => {
                prelude.push(expired_event(e.requested, store.current_rv()));
                None
            }
        }
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let res_key = res.clone();
    let mut expiry = cluster.watch_expiry();
    expiry.mark_unchanged();
    tokio::spawn(async move {
        for b in prelude {
            if tx.send(b).await.is_err() {
                return;
            }
        }
        let Some((sub, start_rv)) = sub else { return };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = start_rv;
        let mut live = sub.live;
        let backlog = sub.backlog;
        let out = |ev: &WatchEvent, enc: &mut Encoder| -> Option<Bytes> {
            if ev.key.res != res_key {
                return None;
            }
            let now_match = filter.matches(&ev.object);
            let before = ev.prev.as_ref().is_some_and(|p| filter.matches(p));
            match ev.kind {
                EventType::Added if now_match => Some(enc.stored_event("ADDED", ev)),
                EventType::Deleted if now_match => Some(enc.stored_event("DELETED", ev)),
                EventType::Modified => match (before, now_match) {
                    (true, true) => Some(enc.stored_event("MODIFIED", ev)),
                    (false, true) => Some(enc.stored_event("ADDED", ev)),
                    (true, false) => {
                        let mut gone = (**ev.prev.as_ref().expect("matched")).clone();
                        gone["metadata"]["resourceVersion"] = json!(ev.rv.to_string());
                        Some(enc.event("DELETED", gone))
                    }
                    (false, false) => None,
                },
                _ => None,
            }
        };
        for ev in &backlog {
            if ev.rv <= seen {
                continue;
            }
            seen = ev.rv;
            if let Some(b) = out(ev, &mut enc)
                && tx.send(b).await.is_err()
            {
                return;
            }
        }
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
        loop {
            tokio::select! {
                r = live.recv() => match r {
                    Ok(ev) => {
                        if ev.rv <= seen {
                            continue;
                        }
                        seen = ev.rv;
                        if let Some(b) = out(&ev, &mut enc)
                            && tx.send(b).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let _ = tx.send(expired_event(seen, seen)).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    if bookmarks && tx.send(enc.bookmark(seen, false)).await.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if bookmarks {
                        let _ = tx.send(enc.bookmark(seen, false)).await;
                    }
                    return;
                }
                _ = tx.closed() => return,
                _ = expiry.changed() => {
                    let _ = tx.send(expired_event(seen, seen)).await;
                    return;
                }
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let stream = futures::StreamExt::map(stream, Ok::<Bytes, std::io::Error>);
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(Body::from_stream(stream))
        .expect("valid response"))
}

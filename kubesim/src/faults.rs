//! Fault injection: a share of the API requests of the workloads answered with errors, delayed,
//! or (for watches) cut mid-way or expired on resume, and pods killed on demand, so that tests
//! can check that clients recover.
//!
//! Faults apply to requests authenticated with a ServiceAccount token (the pods), never to the
//! admin (the tests, kubectl, helm) unless [`Targets::All`] asks for it, so a test can always
//! observe the truth.
//!
//! Every decision comes from one PRNG seeded with [`FaultConfig::seed`]: each targeted request
//! draws the same number of values, so the n-th targeted request always meets the same fate.
//! Which request is the n-th one still depends on the timing of concurrent clients, so a replay
//! with the same seed reproduces the mix and the rates of faults, not always the exact request
//! that got each one.
//!
//! The admin endpoint (admin credentials only):
//! - `GET /kubesim/faults`, `PUT /kubesim/faults` (a [`FaultConfig`] as JSON; reseeds the PRNG),
//! - `GET /kubesim/faults/stats`: the faults injected so far, by kind ([`FaultStats`]),
//!
//! [`FaultConfig::inject`] adds one-shot writes: kubesim makes a write of its own (as the
//! admin, with its own field manager) right before it serves the first request matching a
//! pattern, then serves that request. Tests use it to make a race deterministic, e.g. a
//! foreign object created between a client's list and its write:
//! `{"inject": [{"before": {"verb": "patch", "resource": "secrets", "namespace": "ns",
//! "name": "s"}, "create": {...}}]}`. Injections match every client's requests, whatever
//! [`FaultConfig::targets`] says.
//! - `POST /kubesim/kill-pod?namespace=NS&name=POD`: SIGKILL to every running container of the
//!   pod (the kubelet then restarts or fails it as its restart policy says).

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cluster::{ApiError, Cluster};
use crate::server::{error_response, json_response};
use crate::store::ResKey;

const SIGKILL: i32 = 9;
/// The paths of the admin endpoint; other `/kubesim/...` paths are served by the router.
const ADMIN_PATHS: [&str; 3] = [
    "/kubesim/faults",
    "/kubesim/faults/stats",
    "/kubesim/kill-pod",
];
/// The seconds a 429 or 503 asks the client to wait (`Retry-After`).
const RETRY_AFTER_SECONDS: &str = "1";
/// A cut watch ends after at most this many events...
const WATCH_CUT_MAX_EVENTS: u64 = 20;
/// ...or after at most this many milliseconds, whichever comes first.
const WATCH_CUT_MAX_MS: u64 = 10_000;

/// Whose requests faults apply to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Targets {
    /// Requests authenticated with a ServiceAccount token (pods).
    #[default]
    ServiceAccounts,
    /// Every request, the admin's included.
    All,
}

/// Added latency: a uniform draw in `min..=max` milliseconds. Written `MIN-MAX` (or `N`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    /// Shortest delay (ms).
    pub min: u64,
    /// Longest delay (ms).
    pub max: u64,
}

impl FromStr for Latency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid latency {s:?}: expected MIN-MAX in milliseconds, e.g. 5-50");
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let min: u64 = a.trim().parse().map_err(|_| bad())?;
        let max: u64 = b.trim().parse().map_err(|_| bad())?;
        if min > max {
            return Err(bad());
        }
        Ok(Latency { min, max })
    }
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

impl Serialize for Latency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Latency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What to inject. Rates are shares of the targeted requests, from 0 to 1. The default injects
/// nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Seed of the PRNG behind every decision.
    pub seed: u64,
    /// Share of requests answered 500, 503 or 429 (one of the three, evenly; 503 and 429 carry
    /// `Retry-After`).
    pub error_rate: f64,
    /// Share of optimistic-concurrency writes answered 409 Conflict ("the object has been
    /// modified"): updates (PUT), patches carrying a `resourceVersion`, deletes with
    /// preconditions. Other writes cannot meet that conflict on an API server (it retries them
    /// itself), so they are left alone.
    pub conflict_rate: f64,
    /// Latency added to every targeted request.
    pub latency_ms: Option<Latency>,
    /// Share of watches cut mid-way (after a few events or seconds). Half of the affected
    /// watches that start from a `resourceVersion` other than 0 (resumes, and kube-rs watches
    /// after their list) are answered with a 410 Expired ERROR event instead.
    pub watch_cut_rate: f64,
    /// Whose requests are targeted.
    pub targets: Targets,
    /// One-shot writes made right before serving the first request each matches (whoever
    /// sends it); each is removed once made.
    pub inject: Vec<Injection>,
}

/// The requests an [`Injection`] waits for: every field given must match (`verb` as RBAC
/// names it: get, list, watch, create, update, patch, delete, deletecollection).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RequestMatch {
    /// The verb.
    pub verb: Option<String>,
    /// The API group (`""` for the core group).
    pub group: Option<String>,
    /// The resource (plural), e.g. `secrets`.
    pub resource: Option<String>,
    /// The namespace.
    pub namespace: Option<String>,
    /// The object's name.
    pub name: Option<String>,
}

/// A write kubesim makes right before serving the first request matching `before`: `create`
/// creates that object (in the resource, group and namespace of the matched request), `patch`
/// applies that JSON merge patch to the object the request names. The write is recorded
/// with the field manager `fieldManager` (default `intruder`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Injection {
    /// The request to wait for.
    pub before: RequestMatch,
    /// The object to create.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create: Option<Value>,
    /// The JSON merge patch (RFC 7386) to apply to the object the request names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<Value>,
    /// The field manager of the write (`intruder` when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_manager: Option<String>,
}

/// What a resource request is, as far as injections care.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct RequestInfo {
    verb: String,
    group: String,
    resource: String,
    namespace: String,
    name: String,
}

impl RequestMatch {
    fn matches(&self, r: &RequestInfo) -> bool {
        let ok = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        ok(&self.verb, &r.verb)
            && ok(&self.group, &r.group)
            && ok(&self.resource, &r.resource)
            && ok(&self.namespace, &r.namespace)
            && ok(&self.name, &r.name)
    }
}

/// The verb, group, resource, namespace and name of a resource request (`None` for other
/// paths); subresources are not matched.
fn request_info(method: &Method, path: &str, watch: bool) -> Option<RequestInfo> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest: &[&str] = match segs.as_slice() {
        ["api", "v1", rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        _ => return None,
    };
    let group = if segs[0] == "apis" { segs[1] } else { "" };
    let (namespace, rest) = match rest {
        ["namespaces", ns, r, rest @ ..] => (*ns, [&[*r][..], rest].concat()),
        _ => ("", rest.to_vec()),
    };
    let (resource, name) = match rest.as_slice() {
        [r] => (*r, ""),
        [r, n] => (*r, *n),
        _ => return None,
    };
    let verb = match *method {
        Method::GET if watch => "watch",
        Method::GET if name.is_empty() => "list",
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if name.is_empty() => "deletecollection",
        Method::DELETE => "delete",
        _ => return None,
    };
    Some(RequestInfo {
        verb: verb.into(),
        group: group.into(),
        resource: resource.into(),
        namespace: namespace.into(),
        name: name.into(),
    })
}

impl FaultConfig {
    /// Whether anything is injected.
    pub fn is_active(&self) -> bool {
        self.error_rate > 0.0
            || self.conflict_rate > 0.0
            || self.watch_cut_rate > 0.0
            || self.latency_ms.is_some_and(|l| l.max > 0)
    }

    /// Checks the rates are shares.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("errorRate", self.error_rate),
            ("conflictRate", self.conflict_rate),
            ("watchCutRate", self.watch_cut_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must be between 0 and 1, got {v}"));
            }
        }
        Ok(())
    }
}

/// Faults injected so far, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultStats {
    /// Requests seen that faults could target.
    pub targeted: u64,
    /// 500 InternalError answers.
    pub error500: u64,
    /// 503 ServiceUnavailable answers.
    pub error503: u64,
    /// 429 TooManyRequests answers.
    pub error429: u64,
    /// 409 Conflict answers.
    pub conflict: u64,
    /// Requests delayed.
    pub latency: u64,
    /// Watches cut mid-way.
    pub watch_cut: u64,
    /// Watch resumes answered 410 Expired.
    pub watch_expired: u64,
    /// Pods killed through the admin endpoint.
    pub pod_kill: u64,
    /// One-shot writes made ([`FaultConfig::inject`]).
    pub injected: u64,
}

#[derive(Default)]
struct Counters {
    targeted: AtomicU64,
    error500: AtomicU64,
    error503: AtomicU64,
    error429: AtomicU64,
    conflict: AtomicU64,
    latency: AtomicU64,
    watch_cut: AtomicU64,
    watch_expired: AtomicU64,
    pod_kill: AtomicU64,
    injected: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The fault injector of one kubesim instance.
pub struct Faults {
    state: Mutex<(FaultConfig, StdRng)>,
    counters: Counters,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("config", &self.config())
            .finish()
    }
}

/// The draws of one request, all taken at once so that every request consumes the same
/// amount of the PRNG.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Draw {
    latency_ms: u64,
    error: f64,
    error_kind: u8,
    conflict: f64,
    watch: f64,
    cut_events: u64,
    cut_ms: u64,
}

/// What happens to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Pass,
    Error(u16),
    Conflict,
    Expire,
    Cut { events: u64, ms: u64 },
}

/// The shape of a request, as far as faults care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shape {
    watch: bool,
    resume: bool,
    precondition_write: bool,
}

impl Faults {
    /// An injector with `config`.
    pub fn new(config: FaultConfig) -> Arc<Self> {
        let rng = StdRng::seed_from_u64(config.seed);
        Arc::new(Faults {
            state: Mutex::new((config, rng)),
            counters: Counters::default(),
        })
    }

    /// The current configuration.
    pub fn config(&self) -> FaultConfig {
        self.lock().0.clone()
    }

    /// Replaces the configuration and reseeds the PRNG with its seed.
    pub fn set_config(&self, config: FaultConfig) -> Result<(), String> {
        config.validate()?;
        let rng = StdRng::seed_from_u64(config.seed);
        *self.lock() = (config, rng);
        Ok(())
    }

    /// The faults injected so far.
    pub fn stats(&self) -> FaultStats {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FaultStats {
            targeted: g(&c.targeted),
            error500: g(&c.error500),
            error503: g(&c.error503),
            error429: g(&c.error429),
            conflict: g(&c.conflict),
            latency: g(&c.latency),
            watch_cut: g(&c.watch_cut),
            watch_expired: g(&c.watch_expired),
            pod_kill: g(&c.pod_kill),
            injected: g(&c.injected),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (FaultConfig, StdRng)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The first pending injection matching `request`, removed from the configuration.
    fn take_injection(&self, request: &RequestInfo) -> Option<Injection> {
        let mut st = self.lock();
        let i = st.0.inject.iter().position(|i| i.before.matches(request))?;
        Some(st.0.inject.remove(i))
    }

    /// Draws for one request when faults are on and apply to `service_account` requests.
    fn draw(&self, service_account: bool) -> Option<(FaultConfig, Draw)> {
        let mut st = self.lock();
        let (config, rng) = &mut *st;
        if !config.is_active() || (!service_account && config.targets != Targets::All) {
            return None;
        }
        let l = config.latency_ms.unwrap_or_default();
        let d = Draw {
            latency_ms: rng.random_range(l.min..=l.max),
            error: rng.random(),
            error_kind: rng.random_range(0..3),
            conflict: rng.random(),
            watch: rng.random(),
            cut_events: rng.random_range(1..=WATCH_CUT_MAX_EVENTS),
            cut_ms: rng.random_range(500..=WATCH_CUT_MAX_MS),
        };
        Some((config.clone(), d))
    }
}

/// The fate of a request of `shape` given `config` and its draws.
fn fate(config: &FaultConfig, d: &Draw, shape: Shape) -> Fate {
    if d.error < config.error_rate {
        return Fate::Error([500, 503, 429][usize::from(d.error_kind % 3)]);
    }
    if shape.precondition_write && d.conflict < config.conflict_rate {
        return Fate::Conflict;
    }
    if shape.watch && d.watch < config.watch_cut_rate {
        // A watch from a resourceVersion is expired half of the time, else cut like the others.
        return if shape.resume && d.watch < config.watch_cut_rate / 2.0 {
            Fate::Expire
        } else {
            Fate::Cut {
                events: d.cut_events,
                ms: d.cut_ms,
            }
        };
    }
    Fate::Pass
}

/// State of the fault middleware.
#[derive(Clone)]
pub struct FaultLayer {
    /// The injector.
    pub faults: Arc<Faults>,
    /// The cluster (authentication, pods).
    pub cluster: Arc<Cluster>,
}

/// Wraps `router` with fault injection and the `/kubesim/...` admin endpoint.
pub fn wrap(router: axum::Router, faults: Arc<Faults>, cluster: Arc<Cluster>) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(
        FaultLayer { faults, cluster },
        middleware,
    ))
}

/// The bearer token of a request, if any.
fn bearer(req: &Request) -> Option<&str> {
    let h = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    h.strip_prefix("Bearer ")
        .or_else(|| h.strip_prefix("bearer "))
        .map(str::trim)
}

fn query_param(req: &Request, key: &str) -> Option<String> {
    req.uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k == key).then(|| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned()
            })
        })
}

/// Makes `injection`, due before serving `request`, as the admin.
fn inject(cluster: &Cluster, injection: &Injection, request: &RequestInfo) -> Result<(), ApiError> {
    let res = ResKey::new(&request.group, &request.resource);
    let opts = crate::cluster::WriteOptions::manager(
        injection.field_manager.as_deref().unwrap_or("intruder"),
    );
    if let Some(obj) = &injection.create {
        cluster.create(&res, &request.namespace, obj.clone(), &opts)?;
    }
    if let Some(patch) = &injection.patch {
        cluster.patch(
            &res,
            &request.namespace,
            &request.name,
            None,
            crate::cluster::PatchType::Merge,
            patch,
            &opts,
        )?;
    }
    Ok(())
}

async fn middleware(State(layer): State<FaultLayer>, req: Request, next: Next) -> Response {
    if ADMIN_PATHS.contains(&req.uri().path().trim_end_matches('/')) {
        return admin(&layer, req).await;
    }
    if !layer.faults.lock().0.inject.is_empty() {
        let watch = query_param(&req, "watch").is_some_and(|w| w == "true" || w == "1");
        if let Some(request) = request_info(req.method(), req.uri().path(), watch)
            && let Some(injection) = layer.faults.take_injection(&request)
        {
            match inject(&layer.cluster, &injection, &request) {
                Ok(()) => {
                    bump(&layer.faults.counters.injected);
                    tracing::info!(?request, "injected write made");
                }
                Err(e) => tracing::warn!(?request, error = %e.message, "injected write failed"),
            }
        }
    }
    let user = bearer(&req).and_then(|t| layer.cluster.authenticate(t));
    let service_account = user
        .as_ref()
        .is_some_and(|u| u.name.starts_with("system:serviceaccount:"));
    let Some((config, draw)) = layer.faults.draw(service_account) else {
        return next.run(req).await;
    };
    let c = &layer.faults.counters;
    bump(&c.targeted);
    if draw.latency_ms > 0 {
        bump(&c.latency);
        tokio::time::sleep(Duration::from_millis(draw.latency_ms)).await;
    }
    let watch = query_param(&req, "watch").is_some_and(|w| w == "true" || w == "1")
        || req.uri().path().contains("/watch/");
    let rv = query_param(&req, "resourceVersion").unwrap_or_default();
    let (req, precondition_write) = precondition_write(req).await;
    let shape = Shape {
        watch,
        resume: watch && !rv.is_empty() && rv != "0",
        precondition_write,
    };
    match fate(&config, &draw, shape) {
        Fate::Pass => next.run(req).await,
        Fate::Error(code) => {
            let (counter, reason, message) = match code {
                500 => (
                    &c.error500,
                    "InternalError",
                    "an error on the server (\"injected fault\") has prevented the request from succeeding",
                ),
                503 => (
                    &c.error503,
                    "ServiceUnavailable",
                    "the server is currently unable to handle the request",
                ),
                _ => (
                    &c.error429,
                    "TooManyRequests",
                    "the server has received too many requests and has asked us to try again later",
                ),
            };
            bump(counter);
            let mut r = error_response(&ApiError::new(code, reason, message));
            if code != 500 {
                r.headers_mut().insert(
                    header::RETRY_AFTER,
                    header::HeaderValue::from_static(RETRY_AFTER_SECONDS),
                );
            }
            r
        }
        Fate::Conflict => {
            bump(&c.conflict);
            error_response(&ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {}: the object has been modified; please apply your changes to the latest version and try again",
                    object_of(req.uri().path())
                ),
            ))
        }
        Fate::Expire => {
            bump(&c.watch_expired);
            let e = ApiError::expired(format!("too old resource version: {rv} (injected)"));
            let mut line = json!({"type": "ERROR", "object": e.status()}).to_string();
            line.push('\n');
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(line))
                .expect("valid response")
        }
        Fate::Cut { events, ms } => {
            let resp = next.run(req).await;
            if !resp.status().is_success() {
                return resp;
            }
            bump(&c.watch_cut);
            let (parts, body) = resp.into_parts();
            let stream = futures::StreamExt::take_until(
                futures::StreamExt::take(body.into_data_stream(), events as usize),
                tokio::time::sleep(Duration::from_millis(ms)),
            );
            Response::from_parts(parts, Body::from_stream(stream))
        }
    }
}

/// `<resource> "<name>"` from a resource path, for the Conflict message.
fn object_of(path: &str) -> String {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (resource, name) = match segs.as_slice() {
        [.., r, n, "status" | "scale"] => (*r, *n),
        [.., r, n] => (*r, *n),
        _ => ("objects", ""),
    };
    format!("{resource} \"{name}\"")
}

/// Whether `req` is a write guarded by optimistic concurrency; the body is read and put back.
async fn precondition_write(req: Request) -> (Request, bool) {
    let method = req.method().clone();
    if !matches!(method, Method::PUT | Method::PATCH | Method::DELETE) {
        return (req, false);
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let guarded = match method {
        Method::PUT => true,
        // A server-side apply is guarded only when it carries a resourceVersion (its other
        // conflicts are about field ownership, not versions).
        Method::PATCH => contains(&bytes, b"resourceVersion"),
        _ => contains(&bytes, b"preconditions"),
    };
    (Request::from_parts(parts, Body::from(bytes)), guarded)
}

fn contains(hay: &Bytes, needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The `/kubesim/...` admin endpoint.
async fn admin(layer: &FaultLayer, req: Request) -> Response {
    let admin = match bearer(&req) {
        None => req.headers().get(header::AUTHORIZATION).is_none(),
        Some(t) => t == layer.cluster.admin_token(),
    };
    if !admin {
        return error_response(&ApiError::new(
            403,
            "Forbidden",
            "the kubesim admin endpoint needs the admin credentials of the kubeconfig",
        ));
    }
    let path = req.uri().path().trim_end_matches('/').to_string();
    let method = req.method().clone();
    match (method, path.as_str()) {
        (Method::GET, "/kubesim/faults") => json_response(
            200,
            &serde_json::to_value(layer.faults.config()).expect("json"),
        ),
        (Method::PUT, "/kubesim/faults") => {
            let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            let config: FaultConfig = match serde_json::from_slice(&bytes) {
                Ok(c) => c,
                Err(e) => {
                    return error_response(&ApiError::bad_request(format!(
                        "the fault configuration is not valid JSON of the expected shape: {e}"
                    )));
                }
            };
            if let Err(e) = layer.faults.set_config(config) {
                return error_response(&ApiError::bad_request(e));
            }
            tracing::info!(config = ?layer.faults.config(), "fault configuration changed");
            json_response(
                200,
                &serde_json::to_value(layer.faults.config()).expect("json"),
            )
        }
        (Method::GET, "/kubesim/faults/stats") => json_response(
            200,
            &serde_json::to_value(layer.faults.stats()).expect("json"),
        ),
        (Method::POST, "/kubesim/kill-pod") => {
            let ns = query_param(&req, "namespace").unwrap_or_default();
            let name = query_param(&req, "name").unwrap_or_default();
            match kill_pod(&layer.cluster, &ns, &name) {
                Ok(killed) => {
                    bump(&layer.faults.counters.pod_kill);
                    json_response(
                        200,
                        &json!({"namespace": ns, "name": name, "killed": killed}),
                    )
                }
                Err(e) => error_response(&e),
            }
        }
        _ => error_response(&ApiError::method_not_allowed(
            "the method is not allowed on this kubesim endpoint",
        )),
    }
}

/// SIGKILL to the process group of every running container of pod `ns/name`; returns the
/// containers killed with their process ids.
pub fn kill_pod(cluster: &Cluster, ns: &str, name: &str) -> Result<Vec<Value>, ApiError> {
    if ns.is_empty() || name.is_empty() {
        return Err(ApiError::bad_request(
            "kill-pod needs the query parameters namespace and name",
        ));
    }
    let pod = cluster.get(&ResKey::new("", "pods"), ns, name)?;
    let mut killed = Vec::new();
    for cs in pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if cs["state"]["running"].is_null() {
            continue;
        }
        let pid = cs["containerID"]
            .as_str()
            .and_then(|id| id.strip_prefix("process://"))
            .and_then(|p| p.parse::<i32>().ok());
        if let Some(pid) = pid {
            crate::kubelet::process::signal_group(pid, SIGKILL);
            killed.push(json!({"container": cs["name"], "pid": pid}));
        }
    }
    if killed.is_empty() {
        return Err(ApiError::new(
            409,
            "Conflict",
            format!("pod {ns}/{name} has no running container to kill; wait until it runs"),
        ));
    }
    tracing::info!(namespace = ns, pod = name, "pod killed with SIGKILL");
    Ok(killed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> FaultConfig {
        FaultConfig {
            seed: 42,
            error_rate: 0.2,
            conflict_rate: 0.3,
            latency_ms: Some(Latency { min: 0, max: 3 }),
            watch_cut_rate: 0.25,
            targets: Targets::ServiceAccounts,
            inject: Vec::new(),
        }
    }

    #[test]
    fn requests_are_matched_by_verb_group_resource_namespace_and_name() {
        let info = |m: Method, p: &str| request_info(&m, p, false).unwrap();
        let patch = info(Method::PATCH, "/api/v1/namespaces/ns/secrets/s");
        assert_eq!(
            patch,
            RequestInfo {
                verb: "patch".into(),
                group: String::new(),
                resource: "secrets".into(),
                namespace: "ns".into(),
                name: "s".into(),
            }
        );
        let list = info(
            Method::GET,
            "/apis/secrets-store.csi.x-k8s.io/v1/namespaces/ns/secretproviderclasses",
        );
        assert_eq!(
            (list.verb.as_str(), list.group.as_str(), list.name.as_str()),
            ("list", "secrets-store.csi.x-k8s.io", "")
        );
        assert_eq!(info(Method::GET, "/api/v1/namespaces/x").verb, "get");
        assert_eq!(
            info(Method::DELETE, "/api/v1/namespaces/ns/pods").verb,
            "deletecollection"
        );
        assert!(request_info(&Method::GET, "/api/v1/namespaces/ns/pods/p/log", false).is_none());
        assert!(request_info(&Method::GET, "/version", false).is_none());
        let m: RequestMatch = serde_json::from_value(
            json!({"verb": "patch", "resource": "secrets", "namespace": "ns", "name": "s"}),
        )
        .unwrap();
        assert!(m.matches(&patch));
        assert!(!m.matches(&info(Method::PATCH, "/api/v1/namespaces/ns/secrets/t")));
        assert!(!m.matches(&info(Method::GET, "/api/v1/namespaces/ns/secrets/s")));
        assert!(!m.matches(&info(Method::PATCH, "/api/v1/namespaces/other/secrets/s")));
        assert!(RequestMatch::default().matches(&list));
        assert!(serde_json::from_value::<Injection>(json!({"befor": {}})).is_err());
    }

    #[test]
    fn latency_parses_and_prints() {
        assert_eq!("5-50".parse(), Ok(Latency { min: 5, max: 50 }));
        assert_eq!("7".parse(), Ok(Latency { min: 7, max: 7 }));
        assert!("50-5".parse::<Latency>().is_err());
        assert!("x".parse::<Latency>().is_err());
        assert_eq!(Latency { min: 1, max: 2 }.to_string(), "1-2");
    }

    #[test]
    fn config_round_trips_as_json_and_rejects_unknown_keys() {
        let c = config();
        let text = serde_json::to_string(&c).unwrap();
        assert!(text.contains("\"latencyMs\":\"0-3\""), "{text}");
        assert!(text.contains("\"targets\":\"serviceAccounts\""), "{text}");
        assert_eq!(serde_json::from_str::<FaultConfig>(&text).unwrap(), c);
        assert!(serde_json::from_str::<FaultConfig>(r#"{"errorRat": 0.1}"#).is_err());
        let partial: FaultConfig = serde_json::from_str(r#"{"targets": "all"}"#).unwrap();
        assert_eq!(partial.targets, Targets::All);
        assert!(!partial.is_active());
        let bad = FaultConfig {
            error_rate: 1.5,
            ..FaultConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("errorRate"));
    }

    #[test]
    fn the_same_seed_gives_the_same_draws() {
        let a = Faults::new(config());
        let b = Faults::new(config());
        let da: Vec<_> = (0..200).map(|_| a.draw(true).unwrap().1).collect();
        let db: Vec<_> = (0..200).map(|_| b.draw(true).unwrap().1).collect();
        assert_eq!(da, db);
        let other = Faults::new(FaultConfig {
            seed: 43,
            ..config()
        });
        let dc: Vec<_> = (0..200).map(|_| other.draw(true).unwrap().1).collect();
        assert_ne!(da, dc);
        // Reseeding replays the sequence.
        a.set_config(config()).unwrap();
        assert_eq!(a.draw(true).unwrap().1, da[0]);
    }

    #[test]
    fn the_admin_is_spared_unless_all_are_targeted() {
        let f = Faults::new(config());
        assert!(f.draw(false).is_none());
        assert!(f.draw(true).is_some());
        f.set_config(FaultConfig {
            targets: Targets::All,
            ..config()
        })
        .unwrap();
        assert!(f.draw(false).is_some());
        f.set_config(FaultConfig::default()).unwrap();
        assert!(f.draw(true).is_none());
    }

    #[test]
    fn fates_follow_the_rates_and_the_request_shape() {
        let f = Faults::new(config());
        let plain = Shape {
            watch: false,
            resume: false,
            precondition_write: false,
        };
        let guarded = Shape {
            precondition_write: true,
            ..plain
        };
        let resume = Shape {
            watch: true,
            resume: true,
            precondition_write: false,
        };
        let (mut errors, mut conflicts, mut expired, mut cut) = (0, 0, 0, 0);
        let n = 4000;
        for _ in 0..n {
            let (c, d) = f.draw(true).unwrap();
            match fate(&c, &d, plain) {
                Fate::Error(code) => {
                    assert!([500, 503, 429].contains(&code));
                    errors += 1;
                }
                Fate::Pass => {}
                other => panic!("a plain read got {other:?}"),
            }
            if fate(&c, &d, guarded) == Fate::Conflict {
                conflicts += 1;
            }
            let resumed = fate(&c, &d, resume);
            if resumed == Fate::Expire {
                expired += 1;
            }
            if let Fate::Cut { events, ms } = fate(
                &c,
                &d,
                Shape {
                    resume: false,
                    ..resume
                },
            ) {
                assert!((1..=WATCH_CUT_MAX_EVENTS).contains(&events));
                assert!(ms <= WATCH_CUT_MAX_MS);
                assert!(
                    resumed != Fate::Pass,
                    "a resume is cut or expired when a watch is"
                );
                cut += 1;
            }
        }
        let share = |k: i32| f64::from(k) / f64::from(n);
        assert!((share(errors) - 0.2).abs() < 0.03, "errors {errors}");
        // Conflicts only when no error was drawn first: 0.8 * 0.3.
        assert!(
            (share(conflicts) - 0.24).abs() < 0.03,
            "conflicts {conflicts}"
        );
        // Watches: 0.8 * 0.25 cut; resumes: half of those expired.
        assert!((share(cut) - 0.2).abs() < 0.03, "cut {cut}");
        assert!((share(expired) - 0.1).abs() < 0.03, "expired {expired}");
    }

    #[test]
    fn conflict_messages_name_the_object() {
        assert_eq!(
            object_of("/api/v1/namespaces/sc-system/configmaps/sc-conn-a"),
            "configmaps \"sc-conn-a\""
        );
        assert_eq!(
            object_of("/apis/batch/v1/namespaces/x/jobs/sc-job/status"),
            "jobs \"sc-job\""
        );
    }

    mod served {
        use super::super::*;
        use crate::cluster::WriteOptions;
        use crate::{Kubesim, Options};

        fn status_code(e: kube::Error) -> u16 {
            match e {
                kube::Error::Api(s) => s.code,
                other => panic!("expected an API error, got {other}"),
            }
        }

        async fn text(client: &kube::Client, req: axum::http::Request<Vec<u8>>) -> String {
            client.request_text(req).await.expect("admin request")
        }

        fn sa_client(ks: &Kubesim) -> kube::Client {
            let c = ks.cluster();
            c.create(
                &ResKey::new("", "serviceaccounts"),
                "default",
                json!({"metadata": {"name": "app"}}),
                &WriteOptions::default(),
            )
            .expect("create the ServiceAccount");
            ks.client_with_token(&c.issue_token("default", "app").expect("token"))
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn pods_get_errors_and_the_admin_does_not() {
            let ks = Kubesim::start(Options {
                faults: FaultConfig {
                    seed: 3,
                    error_rate: 1.0,
                    ..FaultConfig::default()
                },
                ..Default::default()
            })
            .await
            .unwrap();
            let sa = sa_client(&ks);
            let admin = ks.client();
            let req = || {
                axum::http::Request::get("/api/v1/namespaces/default/configmaps")
                    .body(Vec::new())
                    .unwrap()
            };
            for _ in 0..6 {
                let code = status_code(sa.request_text(req()).await.unwrap_err());
                assert!([500, 503, 429].contains(&code), "code {code}");
            }
            text(&admin, req()).await;
            let stats: FaultStats = serde_json::from_str(
                &text(
                    &admin,
                    axum::http::Request::get("/kubesim/faults/stats")
                        .body(Vec::new())
                        .unwrap(),
                )
                .await,
            )
            .unwrap();
            // kube-rs retries 429 and 503 itself: at least one targeted request per call.
            assert!(stats.targeted >= 6, "{stats:?}");
            assert_eq!(
                stats.error500 + stats.error503 + stats.error429,
                stats.targeted,
                "{stats:?}"
            );

            // The admin endpoint refuses ServiceAccounts.
            let code = status_code(
                sa.request_text(
                    axum::http::Request::get("/kubesim/faults")
                        .body(Vec::new())
                        .unwrap(),
                )
                .await
                .unwrap_err(),
            );
            assert_eq!(code, 403);

            // Faults off: the request reaches RBAC (the ServiceAccount may not list ConfigMaps).
            let put = axum::http::Request::put("/kubesim/faults")
                .header("content-type", "application/json")
                .body(br#"{"seed": 9}"#.to_vec())
                .unwrap();
            let now: FaultConfig = serde_json::from_str(&text(&admin, put).await).unwrap();
            assert_eq!(now.seed, 9);
            assert!(!now.is_active());
            assert_eq!(status_code(sa.request_text(req()).await.unwrap_err()), 403);
            let bad = axum::http::Request::put("/kubesim/faults")
                .body(br#"{"errorRate": 2}"#.to_vec())
                .unwrap();
            assert_eq!(status_code(admin.request_text(bad).await.unwrap_err()), 400);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn watches_are_cut_and_resumes_expire() {
            let ks = Kubesim::start(Options {
                faults: FaultConfig {
                    seed: 5,
                    watch_cut_rate: 1.0,
                    targets: Targets::All,
                    ..FaultConfig::default()
                },
                ..Default::default()
            })
            .await
            .unwrap();
            let admin = ks.client();
            let c = ks.cluster();
            for i in 0..30 {
                c.create(
                    &ResKey::new("", "configmaps"),
                    "default",
                    json!({"metadata": {"name": format!("cm-{i}")}}),
                    &WriteOptions::default(),
                )
                .unwrap();
            }
            // The initial events of 30 objects are cut after at most 20.
            let all = text(
                &admin,
                axum::http::Request::get("/api/v1/namespaces/default/configmaps?watch=true")
                    .body(Vec::new())
                    .unwrap(),
            )
            .await;
            let events = all.lines().filter(|l| l.contains("\"ADDED\"")).count();
            assert!((1..=20).contains(&events), "{events} events before the cut");
            // Resumes are expired half of the time, else cut.
            let mut cut_resumes = 0;
            let expired = loop {
                let resumed = text(
                    &admin,
                    axum::http::Request::get(
                        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=3",
                    )
                    .body(Vec::new())
                    .unwrap(),
                )
                .await;
                if resumed.contains("\"ERROR\"") {
                    break resumed;
                }
                cut_resumes += 1;
                assert!(cut_resumes < 30, "no resume was expired");
            };
            assert!(expired.contains("\"code\":410"), "{expired}");
            let stats = ks.faults().stats();
            assert_eq!((stats.watch_cut, stats.watch_expired), (1 + cut_resumes, 1));
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conflicts_hit_guarded_writes_only() {
            let ks = Kubesim::start(Options {
                faults: FaultConfig {
                    conflict_rate: 1.0,
                    targets: Targets::All,
                    ..FaultConfig::default()
                },
                ..Default::default()
            })
            .await
            .unwrap();
            use k8s_openapi::api::core::v1::ConfigMap;
            use kube::api::{Patch, PatchParams, PostParams};
            let api: kube::Api<ConfigMap> = kube::Api::namespaced(ks.client(), "default");
            let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "a"}})).unwrap();
            let created = api.create(&PostParams::default(), &cm).await.unwrap();
            let e = api
                .replace("a", &PostParams::default(), &created)
                .await
                .unwrap_err();
            assert_eq!(status_code(e), 409);
            api.patch(
                "a",
                &PatchParams::apply("t"),
                &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}})),
            )
            .await
            .unwrap();
            api.patch(
                "a",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"k": "w"}})),
            )
            .await
            .unwrap();
            let guarded = json!({"metadata": {"resourceVersion": "1"}, "data": {"k": "x"}});
            let e = api
                .patch("a", &PatchParams::default(), &Patch::Merge(guarded))
                .await
                .unwrap_err();
            assert_eq!(status_code(e), 409);
            assert_eq!(ks.faults().stats().conflict, 2);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn injections_write_once_before_the_first_matching_request() {
            let ks = Kubesim::start(Options::default()).await.unwrap();
            let admin = ks.client();
            let put = axum::http::Request::put("/kubesim/faults")
                .header("content-type", "application/json")
                .body(
                    serde_json::to_vec(&json!({"inject": [
                        {"before": {"verb": "patch", "resource": "configmaps", "namespace": "default", "name": "a"},
                         "create": {"metadata": {"name": "a", "labels": {"by": "intruder"}}, "data": {"k": "theirs"}}},
                        {"before": {"verb": "get", "resource": "configmaps", "name": "a"},
                         "patch": {"metadata": {"labels": {"by": null}}}},
                    ]}))
                    .unwrap(),
                )
                .unwrap();
            let now: FaultConfig = serde_json::from_str(&text(&admin, put).await).unwrap();
            assert_eq!(now.inject.len(), 2);
            assert!(!now.is_active(), "injections draw no random faults");
            use k8s_openapi::api::core::v1::ConfigMap;
            use kube::api::{Patch, PatchParams};
            let api: kube::Api<ConfigMap> = kube::Api::namespaced(admin.clone(), "default");
            // The apply carries the resourceVersion of an earlier list: the object created
            // right before it makes it conflict, and it writes nothing.
            let listed = ks.cluster().store().current_rv().to_string();
            let ours = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "a", "resourceVersion": listed}, "data": {"k": "ours"}});
            let e = api
                .patch(
                    "a",
                    &PatchParams::apply("sc-job").force(),
                    &Patch::Apply(ours),
                )
                .await
                .unwrap_err();
            assert_eq!(status_code(e), 409);
            assert_eq!(ks.faults().stats().injected, 1);
            // The get is served after the second injection: the label is gone.
            let got = api.get("a").await.unwrap();
            assert_eq!(got.data.unwrap()["k"], "theirs");
            assert!(got.metadata.labels.unwrap_or_default().is_empty());
            let managers: Vec<String> = got
                .metadata
                .managed_fields
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.manager)
                .collect();
            assert_eq!(managers, ["intruder"]);
            assert_eq!(ks.faults().stats().injected, 2);
            assert!(ks.faults().config().inject.is_empty(), "each is made once");
            api.get("a").await.unwrap();
            assert_eq!(ks.faults().stats().injected, 2);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn kill_pod_sends_sigkill() {
            let ks = Kubesim::start(Options::default()).await.unwrap();
            let c = ks.cluster();
            let pods = ResKey::new("", "pods");
            c.create(
                &pods,
                "default",
                json!({"metadata": {"name": "sleeper"}, "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": false,
                    "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "60"]}]}}),
                &WriteOptions::default(),
            )
            .unwrap();
            let admin = ks.client();
            let kill = || {
                axum::http::Request::post("/kubesim/kill-pod?namespace=default&name=sleeper")
                    .body(Vec::new())
                    .unwrap()
            };
            crate::testing::wait_until(Duration::from_secs(30), "the pod to run", || {
                let p = c.get(&pods, "default", "sleeper").ok();
                async move {
                    let p = p?;
                    (!p["status"]["containerStatuses"][0]["state"]["running"].is_null())
                        .then_some(())
                }
            })
            .await;
            let out: Value = serde_json::from_str(&text(&admin, kill()).await).unwrap();
            assert_eq!(out["killed"][0]["container"], "main");
            let ended = crate::testing::wait_until(
                Duration::from_secs(30),
                "the killed container to terminate",
                || {
                    let p = c.get(&pods, "default", "sleeper").ok();
                    async move {
                        let t = p?["status"]["containerStatuses"][0]["state"]["terminated"].clone();
                        (!t.is_null()).then_some(t)
                    }
                },
            )
            .await;
            assert_eq!(ended["exitCode"], 137, "{ended}");
            assert_eq!(ks.faults().stats().pod_kill, 1);
            // Nothing left to kill.
            assert_eq!(
                status_code(admin.request_text(kill()).await.unwrap_err()),
                409
            );
        }
    }
}

//! The agent's HTTP endpoints: `/healthz`, `/readyz` (ready once every watch has synced) and
//! `/metrics` (Prometheus text format).

use crate::contract::ConnectionPhase;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The label of the connections gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    /// The connection phase.
    pub phase: String,
}

/// The agent's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Connections by phase.
    pub connections: Family<PhaseLabel, Gauge>,
    /// Jobs created.
    pub jobs_started: Counter,
    /// Jobs that applied their whole change set.
    pub jobs_succeeded: Counter,
    /// Jobs that failed.
    pub jobs_failed: Counter,
    /// Drift repairs carried by a change set.
    pub drift_repairs: Counter,
    /// Duration of one reconcile step.
    pub reconcile_duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sc_agent");
        let connections = Family::<PhaseLabel, Gauge>::default();
        registry.register(
            "connections",
            "Requested and removed connections by phase",
            connections.clone(),
        );
        let jobs_started = Counter::default();
        registry.register("jobs_started", "sc-job Jobs created", jobs_started.clone());
        let jobs_succeeded = Counter::default();
        registry.register(
            "jobs_succeeded",
            "sc-job runs that applied their whole change set",
            jobs_succeeded.clone(),
        );
        let jobs_failed = Counter::default();
        registry.register(
            "jobs_failed",
            "sc-job runs that failed",
            jobs_failed.clone(),
        );
        let drift_repairs = Counter::default();
        registry.register(
            "drift_repairs",
            "Connections carried by a change set to repair drift of their objects",
            drift_repairs.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile step",
            reconcile_duration.clone(),
        );
        Metrics {
            registry,
            connections,
            jobs_started,
            jobs_succeeded,
            jobs_failed,
            drift_repairs,
            reconcile_duration,
        }
    }
}

impl Metrics {
    /// Sets the connections gauge from a count per phase (every phase is reported).
    pub fn set_phases(&self, counts: &std::collections::BTreeMap<ConnectionPhase, i64>) {
        for p in ConnectionPhase::ALL {
            self.connections
                .get_or_create(&PhaseLabel {
                    phase: p.as_str().to_string(),
                })
                .set(counts.get(&p).copied().unwrap_or(0));
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// What the endpoints report on.
#[derive(Debug, Default)]
pub struct Health {
    /// Every watch has synced once.
    pub ready: AtomicBool,
    /// The metrics.
    pub metrics: Metrics,
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(h): State<Arc<Health>>) -> impl IntoResponse {
    if h.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "watches not synced yet\n")
    }
}

async fn metrics(State(h): State<Arc<Health>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        h.metrics.encode(),
    )
}

/// The router of the endpoints.
pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

//! The HTTP endpoint of `--http ADDR`, for running the demo as a sidecar:
//!
//! - `GET /` -> `{"name":"<leader>"}`, the shape the old Kubernetes leader-elector sidecar
//!   served (an empty name when nobody is known to lead);
//! - `GET /leader` -> the leader, this instance, whether it leads (never stale), its term and
//!   when its lease runs out;
//! - `GET /healthz` -> 200 `ok`, or 500 with the reason when this instance believes it leads
//!   but has not renewed for longer than the lease plus `--health-tolerance`;
//! - `GET /metrics` -> the [`Metrics`] in the Prometheus (OpenMetrics) text format.
//!
//! The server runs on the same multi-threaded runtime as the election, on tasks of its own, so
//! it answers while the election waits on a slow backend.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use lock_core::ElectorHandle;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::metrics::Metrics;

/// The content type of the text `prometheus-client` writes: OpenMetrics, which Prometheus
/// scrapes (and which parsers of Prometheus' older text format read too: `# EOF` is a comment).
const METRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the handlers read: the elector's handle and the metrics.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The running elector.
    pub handle: ElectorHandle,
    /// The metrics its callbacks update.
    pub metrics: Arc<Metrics>,
    /// The lease duration in force, for the lease's expiry.
    pub lease_duration: Duration,
    /// How much longer than the lease a leader may go without renewing before `/healthz` fails.
    pub health_tolerance: Duration,
    /// The readiness verdicts this instance competes by (`None`: no check, always ready).
    pub ready: Option<tokio::sync::watch::Receiver<bool>>,
}

/// Binds the first of `addrs` that can be bound (the addresses `--http` resolved to) and
/// serves the endpoints on a task of their own; returns the bound address (the port is the
/// system's choice when it names port 0).
pub async fn serve(addrs: &[SocketAddr], endpoint: Endpoint) -> std::io::Result<SocketAddr> {
    // The first address that binds, as `TcpListener::bind` tries a name's addresses.
    let listener = TcpListener::bind(addrs).await?;
    let bound = listener.local_addr()?;
    let app = router(endpoint);
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(error = %err, "the HTTP server stopped");
        }
    });
    Ok(bound)
}

fn router(endpoint: Endpoint) -> Router {
    Router::new()
        .route("/", get(name))
        .route("/leader", get(leader))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(endpoint))
}

/// The body of `GET /`.
#[derive(Serialize)]
struct Name {
    name: String,
}

async fn name(State(endpoint): State<Arc<Endpoint>>) -> Json<Name> {
    Json(Name {
        name: endpoint.handle.leader().unwrap_or_default(),
    })
}

/// The body of `GET /leader`.
#[derive(Serialize)]
struct LeaderView {
    /// The holder last observed on the lock (null: free or not read yet).
    leader: Option<String>,
    /// This instance's identity.
    instance: String,
    /// The lock, as its backend describes it.
    lock: String,
    /// Whether this instance holds a valid term right now (checked against the clock).
    is_leader: bool,
    /// This instance's current term (its fencing token), if it leads.
    term: Option<u64>,
    /// When this instance last renewed its lease (RFC 3339), if it leads.
    renewed_at: Option<String>,
    /// When this instance stops leading unless it renews: last renew + renew deadline (null
    /// for a term held for life).
    valid_until: Option<String>,
    /// When the lease runs out for the others, counted from the last renew (null for a term
    /// held for life).
    lease_expires_at: Option<String>,
    /// Whether this instance's readiness check passes (true without --ready-url or
    /// --ready-command): an unready instance never takes the lock.
    ready: bool,
}

async fn leader(State(endpoint): State<Arc<Endpoint>>) -> Json<LeaderView> {
    let handle = &endpoint.handle;
    let term = handle.leadership();
    let now = (Instant::now(), Utc::now());
    Json(LeaderView {
        leader: handle.leader(),
        instance: handle.identity().to_owned(),
        lock: handle.lock_name().to_owned(),
        is_leader: term.as_ref().is_some_and(|term| term.is_leader()),
        term: term.as_ref().map(|term| term.fencing_token()),
        renewed_at: term.as_ref().map(|term| wall(term.renewed_at(), now)),
        // A term for life (--leader-for-life) has neither: no clock ends it.
        valid_until: term
            .as_ref()
            .and_then(|term| term.deadline())
            .map(|deadline| wall(deadline, now)),
        lease_expires_at: term
            .as_ref()
            .filter(|term| !term.is_for_life())
            .map(|term| wall(term.renewed_at() + endpoint.lease_duration, now)),
        ready: endpoint.ready.as_ref().is_none_or(|ready| *ready.borrow()),
    })
}

/// A monotonic instant as RFC 3339 wall-clock time, given one moment on both clocks.
fn wall(at: Instant, (now, wall_now): (Instant, DateTime<Utc>)) -> String {
    let time = if at >= now {
        wall_now + (at - now)
    } else {
        wall_now - (now - at)
    };
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn healthz(State(endpoint): State<Arc<Endpoint>>) -> (StatusCode, String) {
    match endpoint.handle.check_health(endpoint.health_tolerance) {
        Ok(()) => (StatusCode::OK, "ok".to_owned()),
        Err(unhealthy) => (StatusCode::INTERNAL_SERVER_ERROR, unhealthy.to_string()),
    }
}

async fn metrics(State(endpoint): State<Arc<Endpoint>>) -> impl IntoResponse {
    let text = endpoint.metrics.encode(endpoint.handle.is_leader());
    ([(header::CONTENT_TYPE, METRICS_TEXT)], text)
}

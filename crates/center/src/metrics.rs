//! The centre's Prometheus metrics (issue 17 item 3, docs/metrics.md).
//!
//! One set per process, reached through [`get`]: the storage layer, the push hub and
//! the HTTP middleware count where things happen, without a handle threaded through
//! every call. What is cheaper to read than to track (devices by state, open event
//! streams, read-only) is read when Prometheus scrapes ([`render`]). Served on the
//! listener of `dodvpn_metrics`, never on the API port.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use sqlx::Row;

use crate::device_state::DeviceState;
use crate::Center;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    /// The matched route template (`/api/v1/orgs/{id}`), never the raw path, so
    /// ids and scanners' paths cannot grow the series without bound.
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

/// Seconds: 1 ms to 10 s, what an API call or a push may take on a healthy centre
/// and on one in trouble.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

pub struct CenterMetrics {
    registry: Registry,
    devices: Family<StateLabel, Gauge>,
    event_streams: Gauge,
    pushes: Family<SourceLabel, Counter>,
    push_latency: Histogram,
    push_streams_cut: Counter,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    audit_appends: Counter,
    db_errors: Family<KindLabel, Counter>,
    read_only: Gauge,
}

impl CenterMetrics {
    fn new() -> CenterMetrics {
        let mut registry = Registry::with_prefix("dodvpn_center");
        let m = CenterMetrics {
            devices: Family::default(),
            event_streams: Gauge::default(),
            pushes: Family::default(),
            push_latency: latency_histogram(),
            push_streams_cut: Counter::default(),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            audit_appends: Counter::default(),
            db_errors: Family::default(),
            read_only: Gauge::default(),
            registry: Registry::default(),
        };
        let build: Family<VersionLabel, Gauge> = Family::default();
        build
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The centre's version (always 1)", build);
        registry.register(
            "devices",
            "Registered devices by life-cycle state (TR D.6), read from the database at each scrape",
            m.devices.clone(),
        );
        registry.register(
            "event_streams",
            "Device event streams (server-sent events) open on this process",
            m.event_streams.clone(),
        );
        registry.register(
            "pushes",
            "Events handed to open device streams: live (just committed) or backlog (replayed when a stream opens)",
            m.pushes.clone(),
        );
        registry.register_with_unit(
            "push_latency",
            "Time from the start of the change that made an event to its hand-over to an open stream (live pushes)",
            Unit::Seconds,
            m.push_latency.clone(),
        );
        registry.register(
            "push_streams_cut",
            "Event streams closed because they fell too far behind (the agent resumes from its last event)",
            m.push_streams_cut.clone(),
        );
        registry.register(
            "http_requests",
            "API and console requests by method, matched route template and status",
            m.requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer a request (to the response head: an event stream counts until it opens)",
            Unit::Seconds,
            m.request_seconds.clone(),
        );
        registry.register(
            "audit_appends",
            "Records appended to the hash-chained audit log (counted when their change commits)",
            m.audit_appends.clone(),
        );
        registry.register(
            "db_errors",
            "Database errors by kind (a unique-key conflict answered 409 is not one)",
            m.db_errors.clone(),
        );
        registry.register(
            "read_only",
            "1 when the audit chain or tree failed verification and every change is refused",
            m.read_only.clone(),
        );
        CenterMetrics { registry, ..m }
    }

    /// `n` audit records committed.
    pub fn audit_appended(&self, n: u64) {
        if n > 0 {
            self.audit_appends.inc_by(n);
        }
    }

    /// A database error that reached the API or a background task.
    pub fn db_error(&self, e: &sqlx::Error) {
        let kind = match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => "pool",
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => "connection",
            sqlx::Error::Database(_) => "database",
            sqlx::Error::RowNotFound
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::TypeNotFound { .. } => "decode",
            _ => "other",
        };
        self.db_errors.get_or_create(&KindLabel { kind }).inc();
    }

    /// An event was handed to an open stream `latency` after its change began.
    pub fn pushed_live(&self, latency: Duration) {
        self.pushes
            .get_or_create(&SourceLabel { source: "live" })
            .inc();
        self.push_latency.observe(latency.as_secs_f64());
    }

    /// `n` events replayed to a stream that just opened.
    pub fn pushed_backlog(&self, n: u64) {
        self.pushes
            .get_or_create(&SourceLabel { source: "backlog" })
            .inc_by(n);
    }

    /// A stream too far behind was closed.
    pub fn stream_cut(&self) {
        self.push_streams_cut.inc();
    }

    fn request(&self, method: &'static str, route: String, status: u16, took: Duration) {
        self.request_seconds
            .get_or_create(&RouteLabels {
                method,
                route: route.clone(),
            })
            .observe(took.as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status: status.to_string(),
            })
            .inc();
    }
}

static METRICS: OnceLock<CenterMetrics> = OnceLock::new();

/// This process's metrics.
pub fn get() -> &'static CenterMetrics {
    METRICS.get_or_init(|| {
        let m = CenterMetrics::new();
        // Every source and kind exists from the start at 0, so dashboards and
        // `rate()` see a series before the first event.
        for source in ["live", "backlog"] {
            drop(m.pushes.get_or_create(&SourceLabel { source }));
        }
        for kind in ["pool", "connection", "database", "decode", "other"] {
            drop(m.db_errors.get_or_create(&KindLabel { kind }));
        }
        for s in DeviceState::ALL {
            drop(m.devices.get_or_create(&StateLabel { state: s.as_str() }));
        }
        m
    })
}

fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: count and time every request under its route template. Requests no
/// route matched are counted under `unmatched`.
pub async fn observe_http(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let resp = next.run(req).await;
    get().request(method, route, resp.status().as_u16(), start.elapsed());
    resp
}

/// How long a scrape waits for the device count before answering with the last one.
const DB_READ_TIMEOUT: Duration = Duration::from_secs(4);

/// The exposition text, with the values read at scrape time brought up to date.
pub async fn render(center: &Center) -> String {
    let m = get();
    m.event_streams.set(center.hub.open_streams() as i64);
    m.read_only
        .set(i64::from(center.db.read_only.get().is_some()));
    let counts = tokio::time::timeout(
        DB_READ_TIMEOUT,
        sqlx::query("SELECT status, COUNT(*) FROM devices GROUP BY status")
            .fetch_all(&center.db.pool),
    )
    .await;
    match counts {
        Ok(Ok(rows)) => {
            for s in DeviceState::ALL {
                let n = rows
                    .iter()
                    .find(|r| r.try_get::<String, _>(0).is_ok_and(|v| v == s.as_str()))
                    .and_then(|r| r.try_get::<i64, _>(1).ok())
                    .unwrap_or(0);
                m.devices
                    .get_or_create(&StateLabel { state: s.as_str() })
                    .set(n);
            }
        }
        Ok(Err(e)) => {
            m.db_error(&e);
            tracing::warn!(error = %e, "metrics: cannot count devices; the last counts are served");
        }
        Err(_) => {
            tracing::warn!("metrics: counting devices took over 4 s; the last counts are served")
        }
    }
    dodvpn_metrics::encode(&m.registry)
}

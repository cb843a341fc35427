//! Refusals leave audit records (issue 9): API calls refused for the wrong tier,
//! the wrong organisation, a revoked, expired or unknown certificate or a missing
//! role, and TLS handshakes refused for a certificate of no CA of this centre.
//!
//! Aggregated so that a flood cannot flood the chain. Per (kind, source) — the
//! source is the refused caller when it authenticated, else its certificate
//! serial, else its IP address — the first refusal is recorded at once
//! (`count: 1`); those that follow within the window are counted and recorded
//! as one `repeated: true` record with their `count` when the window ends. At
//! most [`MAX_SOURCES`] sources are tracked at a time; beyond that, new ones
//! share one "(other sources)" entry per kind. A window therefore adds at most
//! two records per tracked source however many refusals arrive, and the counts
//! add up to the number of refusals. The window is 60 s (`DODVPN_REFUSAL_WINDOW_MS`
//! changes it, 100 ms – 1 h).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;

use crate::auth::{CallerSlot, PeerCert};
use crate::db::{now_ms, Db};
use crate::error::ErrorInfo;
use crate::Center;

pub const WINDOW_ENV: &str = "DODVPN_REFUSAL_WINDOW_MS";
const DEFAULT_WINDOW_MS: i64 = 60_000;
pub const MAX_SOURCES: usize = 256;
const OTHER_SOURCES: &str = "(other sources)";

/// API error codes that refuse a caller for who it is (not for what it sent).
pub const AUDITED_CODES: &[&str] = &[
    "wrong_tier",
    "other_organisation",
    "provider_only",
    "admin_only",
    "not_device_provider",
    "no_provider_contract",
    "auditor_read_only",
    "revoked",
    "expired",
    "unknown_certificate",
    "not_party",
    "other_device",
];

/// Kind of a refused TLS handshake (action `refused.tls_certificate`).
pub const TLS_CERTIFICATE: &str = "tls_certificate";

/// One refusal as seen by the centre.
pub struct Refusal {
    pub code: &'static str,
    pub source: String,
    /// What was refused, e.g. "GET /api/v1/orgs/org-…" or "tls handshake".
    pub subject: String,
    pub remote: Option<IpAddr>,
    pub message: String,
    /// The presented certificate, to name its device in the record.
    pub cert_serial: Option<u64>,
}

struct Entry {
    opened_ms: i64,
    /// Refusals since the last record, not yet recorded.
    pending: u64,
    first_ms: i64,
    last_ms: i64,
    last: Refusal,
}

pub struct Refusals {
    window_ms: i64,
    entries: Mutex<HashMap<(&'static str, String), Entry>>,
}

impl Refusals {
    pub fn from_env() -> Refusals {
        let window_ms = std::env::var(WINDOW_ENV)
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
            .map_or(DEFAULT_WINDOW_MS, |v| v.clamp(100, 3_600_000));
        Refusals {
            window_ms,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Count a refusal; record it now if it is the first of its kind and source
    /// in the window.
    pub async fn note(&self, db: &Db, mut r: Refusal) {
        let now = now_ms();
        let first = {
            let Ok(mut entries) = self.entries.lock() else {
                return;
            };
            if entries.len() >= MAX_SOURCES && !entries.contains_key(&(r.code, r.source.clone())) {
                r.source = OTHER_SOURCES.to_string();
            }
            let key = (r.code, r.source.clone());
            match entries.get_mut(&key) {
                Some(e) if now - e.opened_ms < self.window_ms => {
                    if e.pending == 0 {
                        e.first_ms = now;
                    }
                    e.pending += 1;
                    e.last_ms = now;
                    e.last = r;
                    None
                }
                _ => {
                    let rec = Pending::of(&r, 1, now, now, false, self.window_ms);
                    entries.insert(
                        key,
                        Entry {
                            opened_ms: now,
                            pending: 0,
                            first_ms: now,
                            last_ms: now,
                            last: r,
                        },
                    );
                    Some(rec)
                }
            }
        };
        if let Some(rec) = first {
            rec.write(db).await;
        }
    }

    /// Record the counts of windows that ended; forget sources that went quiet.
    pub async fn flush(&self, db: &Db) {
        let now = now_ms();
        let due: Vec<Pending> = {
            let Ok(mut entries) = self.entries.lock() else {
                return;
            };
            let mut due = Vec::new();
            entries.retain(|_, e| {
                if now - e.opened_ms < self.window_ms {
                    return true;
                }
                if e.pending == 0 {
                    return false;
                }
                due.push(Pending::of(
                    &e.last,
                    e.pending,
                    e.first_ms,
                    e.last_ms,
                    true,
                    self.window_ms,
                ));
                // A flood that goes on is summed once per window.
                e.opened_ms = now;
                e.pending = 0;
                true
            });
            due
        };
        for rec in due {
            rec.write(db).await;
        }
    }

    pub async fn run(self: Arc<Self>, db: Arc<Db>) {
        let tick = Duration::from_millis((self.window_ms / 4).max(25) as u64);
        loop {
            tokio::time::sleep(tick).await;
            self.flush(&db).await;
        }
    }
}

/// A refusal record about to be written.
struct Pending {
    actor: String,
    action: String,
    subject: String,
    details: serde_json::Value,
    cert_serial: Option<u64>,
}

impl Pending {
    fn of(
        r: &Refusal,
        count: u64,
        first_ms: i64,
        last_ms: i64,
        repeated: bool,
        window_ms: i64,
    ) -> Pending {
        Pending {
            actor: r.source.clone(),
            action: format!("refused.{}", r.code),
            subject: r.subject.clone(),
            details: json!({
                "code": r.code,
                "count": count,
                "repeated": repeated,
                "first_ms": first_ms,
                "last_ms": last_ms,
                "window_ms": window_ms,
                "remote": r.remote.map(|ip| ip.to_string()),
                "message": r.message,
            }),
            cert_serial: r.cert_serial,
        }
    }

    async fn write(mut self, db: &Db) {
        if db.read_only.get().is_some() {
            tracing::warn!(action = %self.action, actor = %self.actor, "refusal not recorded: the centre is read-only");
            return;
        }
        if let Some(serial) = self.cert_serial {
            let device: Option<String> =
                sqlx::query_scalar("SELECT device_id FROM certs WHERE serial = $1")
                    .bind(serial as i64)
                    .fetch_optional(&db.pool)
                    .await
                    .ok()
                    .flatten();
            self.details["serial"] = json!(serial);
            self.details["device"] = json!(device);
        }
        let result = async {
            let mut tx = db.begin_write().await?;
            tx.audit(&self.actor, &self.action, &self.subject, self.details)
                .await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e.message, "cannot record a refusal");
        }
    }
}

fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Middleware: after each API call, record it if it was refused for who called.
pub async fn observe(State(c): State<Arc<Center>>, mut req: Request, next: Next) -> Response {
    let slot = CallerSlot::default();
    req.extensions_mut().insert(slot.clone());
    let peer = req.extensions().get::<PeerCert>().cloned();
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip());
    let subject = format!("{} {}", req.method(), clip(req.uri().path(), 200));
    let resp = next.run(req).await;
    if let Some(info) = resp.extensions().get::<ErrorInfo>() {
        if let Some(code) = AUDITED_CODES.iter().find(|c| **c == info.code) {
            let source = slot
                .get()
                .or_else(|| peer.as_ref().map(|p| format!("cert:{}", p.serial)))
                .or_else(|| remote.map(|ip| format!("ip:{ip}")))
                .unwrap_or_else(|| "unknown".into());
            let refusal = Refusal {
                code,
                source,
                subject,
                remote,
                message: clip(&info.message, 300),
                cert_serial: peer.map(|p| p.serial),
            };
            c.refusals.note(&c.db, refusal).await;
        }
    }
    resp
}

/// A TLS handshake failed: record it if the client's certificate was refused
/// (a foreign CA, a bad signature…). Other failures (garbage, timeouts) are not
/// refusals of a credential and are only logged.
pub async fn tls_refused(c: &Center, remote: SocketAddr, e: &std::io::Error) {
    let Some(rustls::Error::InvalidCertificate(why)) =
        e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
    else {
        return;
    };
    let refusal = Refusal {
        code: TLS_CERTIFICATE,
        source: format!("tls:{}", remote.ip()),
        subject: "tls handshake".into(),
        remote: Some(remote.ip()),
        message: clip(&format!("client certificate refused: {why:?}"), 300),
        cert_serial: None,
    };
    c.refusals.note(&c.db, refusal).await;
}

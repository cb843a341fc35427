//! Calls made by the VPN device itself, over mutual TLS (TR D.6 i–k, R-POL-5 push).
//! Enrolment takes the tier-1 device certificate; everything after it the tier-2
//! service certificate (R-PKI-1/2).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Json;
use futures_util::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use super::admin::certs::{
    cert_from_row, confirm_installed, store_cert, CertIssued, CertRecord, CsrBody, Installed,
    CERT_COLS, SERVICE_CERT_DAYS,
};
use super::admin::grants::{run_application, Application, ApplicationResult};
use crate::auth::{Caller, Tier};
use crate::device_state::DeviceState;
use crate::error::{ApiError, ErrorBody};
use crate::grants::SignedInfo;
use crate::hub::Event;
use crate::Center;

/// Renewal is allowed once less than this much of a service certificate's life is left.
const RENEW_WINDOW_SECS: i64 = 30 * 86400;

/// TR D.6 i: with its tier-1 certificate, the device obtains a service certificate for a
/// separate tier-2 key (CSR). Also renews a service certificate near its end (R-PKI-4).
#[utoipa::path(post, path = "/api/v1/device/enroll", tag = "device", request_body = CsrBody,
    responses((status = 201, body = CertIssued), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn enroll(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<CsrBody>, JsonRejection>,
) -> Result<(StatusCode, Json<CertIssued>), ApiError> {
    let dev = caller.device(Tier::Device)?.clone();
    let Json(body) = body?;
    let mut tx = c.db.begin_write().await?;
    let status: String = sqlx::query_scalar("SELECT status FROM devices WHERE id = $1")
        .bind(&dev.device_id)
        .fetch_one(&mut *tx.tx)
        .await?;
    let current: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(not_after) FROM certs WHERE device_id = $1 AND tier = 'service' AND revoked_ms IS NULL",
    )
    .bind(&dev.device_id)
    .fetch_one(&mut *tx.tx)
    .await?;
    let status: DeviceState = status.parse()?;
    let renewal = match (status, current) {
        (DeviceState::ServiceApproved, _) => false,
        (st, Some(na)) if st.is_enrolled() && na - tx.now / 1000 < RENEW_WINDOW_SECS => true,
        (st, _) if st.is_enrolled() => {
            return Err(ApiError::conflict(
                "already_enrolled",
                "this device already holds a valid service certificate",
            ))
        }
        (other, _) => {
            return Err(ApiError::conflict(
                "not_approved",
                format!("service for this device has not been approved by the provider (device is '{other}')"),
            ))
        }
    };
    let serial = tx.next_counter("cert_serial").await?;
    let cert = c.pki.issue_service_cert(
        &body.csr,
        &dev.device_id,
        &dev.org_id,
        serial,
        SERVICE_CERT_DAYS,
    )?;
    store_cert(&mut tx, "service", &dev.device_id, &body.csr, &cert).await?;
    if !renewal {
        sqlx::query("UPDATE devices SET status = $3, updated_ms = $2 WHERE id = $1")
            .bind(&dev.device_id)
            .bind(tx.now)
            .bind(DeviceState::Enrolled.as_str())
            .execute(&mut *tx.tx)
            .await?;
    }
    tx.audit(
        &caller.actor(),
        if renewal { "service_cert.renewed" } else { "service_cert.issued" },
        &dev.device_id,
        serde_json::json!({"serial": serial, "fingerprint": cert.fingerprint_sha256_hex, "not_after": cert.not_after_unix, "step": "i"}),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(CertIssued::new(&c, cert))))
}

#[derive(Serialize, ToSchema)]
pub struct WhoAmI {
    pub device_id: String,
    pub org_id: String,
    pub tier: String,
    pub serial: u64,
    /// The address (IP:port) this TCP connection came from, as the centre sees it: a
    /// device behind a NAT learns its public address here (issue 19). Behind a
    /// proxy (HAProxy) it is the proxy's address. Only in `GET /device/whoami`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
    /// The provider's UDP reflectors ("IP:port"): the relay's port and the port after
    /// it. A probe from the agent's NAT-T port shows its NAT's real mapping, and two
    /// different answers a NAT that maps per destination (symmetric). Empty without a
    /// relay. Only in `GET /device/whoami`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reflectors: Vec<String>,
}

/// TR D.6 j: the device confirms, with the new service certificate itself, that it is installed.
/// A device whose service key lives elsewhere (a standard IKEv2 router enrolled from its
/// own certificate request, `dodvpn agent enroll --csr`) cannot use that certificate here,
/// so the tier-1 certificate that requested it may confirm it too; the audit record says
/// which tier confirmed.
#[utoipa::path(post, path = "/api/v1/device/service-cert/installed", tag = "device", request_body = Installed,
    responses((status = 200, body = WhoAmI), (status = 403, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "unknown_certificate: no such valid certificate for this device")))]
pub async fn service_cert_installed(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<Installed>, JsonRejection>,
) -> Result<Json<WhoAmI>, ApiError> {
    let dev = match caller.device(Tier::Device) {
        Ok(d) => d.clone(),
        Err(_) => caller.device(Tier::Service)?.clone(),
    };
    let Json(body) = body?;
    let mut tx = c.db.begin_write().await?;
    let serial = confirm_installed(&mut tx, &dev.device_id, "service", &body.fingerprint).await?;
    // Only the first confirmation moves the device; a repeat (or one after a renewal)
    // leaves its state alone.
    sqlx::query("UPDATE devices SET status = $3, updated_ms = $2 WHERE id = $1 AND status = $4")
        .bind(&dev.device_id)
        .bind(tx.now)
        .bind(DeviceState::ServiceInstalled.as_str())
        .bind(DeviceState::Enrolled.as_str())
        .execute(&mut *tx.tx)
        .await?;
    tx.audit(
        &caller.actor(),
        "service_cert.installed",
        &dev.device_id,
        serde_json::json!({"serial": serial, "step": "j", "confirmed_with": dev.tier.as_str()}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(whoami_of(&caller)?))
}

fn whoami_of(caller: &Caller) -> Result<WhoAmI, ApiError> {
    match caller {
        Caller::Device(d) => Ok(WhoAmI {
            device_id: d.device_id.clone(),
            org_id: d.org_id.clone(),
            tier: d.tier.as_str().into(),
            serial: d.serial,
            observed: None,
            reflectors: Vec::new(),
        }),
        _ => Err(ApiError::unauthenticated(
            "this endpoint requires mutual TLS with a device or service certificate",
        )),
    }
}

#[derive(Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Software {
    /// The agent's version, e.g. "0.1.0".
    #[schema(min_length = 1, max_length = 64)]
    pub version: String,
    /// The operating system it runs on, e.g. "Debian GNU/Linux 12 (bookworm), Linux 6.1".
    #[schema(min_length = 1, max_length = 200)]
    pub os: String,
}

/// The agent reports what it runs, at start; the ledger shows it (R-SVC-2). A change
/// is audited.
#[utoipa::path(put, path = "/api/v1/device/software", tag = "device", request_body = Software,
    responses((status = 200, body = Software), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn put_software(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<Software>, JsonRejection>,
) -> Result<Json<Software>, ApiError> {
    let dev = match caller.device(Tier::Service) {
        Ok(d) => d.clone(),
        Err(_) => caller.device(Tier::Device)?.clone(),
    };
    let Json(body) = body?;
    super::admin::orgs::check_text("version", &body.version, 64)?;
    super::admin::orgs::check_text("os", &body.os, 200)?;
    let text = serde_json::to_string(&body).map_err(|_| ApiError::internal("software"))?;
    let mut tx = c.db.begin_write().await?;
    let old: Option<String> = sqlx::query_scalar("SELECT software FROM devices WHERE id = $1")
        .bind(&dev.device_id)
        .fetch_one(&mut *tx.tx)
        .await?;
    if old.as_deref() != Some(text.as_str()) {
        sqlx::query("UPDATE devices SET software = $2 WHERE id = $1")
            .bind(&dev.device_id)
            .bind(&text)
            .execute(&mut *tx.tx)
            .await?;
        let before: serde_json::Value = old
            .and_then(|o| serde_json::from_str(&o).ok())
            .unwrap_or_default();
        tx.audit(
            &caller.actor(),
            "device.software",
            &dev.device_id,
            serde_json::json!({"before": before, "after": body}),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Json(body))
}

/// Which device and tier this TLS connection authenticated as.
#[utoipa::path(get, path = "/api/v1/device/whoami", tag = "device", responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)))]
pub async fn whoami(
    State(c): State<Arc<Center>>,
    caller: Caller,
    extensions: axum::http::Extensions,
) -> Result<Json<WhoAmI>, ApiError> {
    let mut who = whoami_of(&caller)?;
    who.observed = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.to_string());
    if let Some(relay) = &c.relay {
        who.reflectors = relay.reflectors().iter().map(|a| a.to_string()).collect();
    }
    Ok(Json(who))
}

/// Where a device may be reached (issue 19), as its agent reports them.
#[derive(Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Candidates {
    /// "IP:port" each (the device's local addresses, the public one the centre saw);
    /// at most 16, no duplicates. Empty clears them.
    #[schema(max_items = 16)]
    pub candidates: Vec<String>,
    /// What the agent's reflector probes showed of its NAT: `none` (its own address
    /// is public), `cone` (one mapping for every destination) or `symmetric` (a
    /// mapping per destination: hole punching cannot reach it through another NAT).
    /// Absent when it could not tell (no reflector, no answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<NatKind>,
}

/// A device's NAT, as its agent found it with the reflectors.
#[derive(Deserialize, Serialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NatKind {
    None,
    Cone,
    Symmetric,
}

impl NatKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NatKind::None => "none",
            NatKind::Cone => "cone",
            NatKind::Symmetric => "symmetric",
        }
    }

    pub fn parse(s: &str) -> Option<NatKind> {
        [NatKind::None, NatKind::Cone, NatKind::Symmetric]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Most candidates one device may report.
pub const MAX_CANDIDATES: usize = 16;

/// The agent reports its candidates whenever they change; every live grant naming
/// the device is re-issued with them, so its peers hear at once (event stream).
#[utoipa::path(put, path = "/api/v1/device/candidates", tag = "device", request_body = Candidates,
    responses((status = 200, body = Candidates), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn put_candidates(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<Candidates>, JsonRejection>,
) -> Result<Json<Candidates>, ApiError> {
    let dev = caller.device(Tier::Service)?.clone();
    let Json(body) = body?;
    if body.candidates.len() > MAX_CANDIDATES {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_CANDIDATES} candidates, {} given",
            body.candidates.len()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for cand in &body.candidates {
        let a: SocketAddr = cand
            .parse()
            .map_err(|_| ApiError::bad_request(format!("candidate {cand:?} is not IP:port")))?;
        if a.port() == 0 || a.ip().is_unspecified() || a.ip().is_multicast() {
            return Err(ApiError::bad_request(format!(
                "candidate {cand:?} is not an address a peer can send to"
            )));
        }
        if !seen.insert(a) {
            return Err(ApiError::bad_request(format!(
                "candidate {cand:?} is given twice"
            )));
        }
    }
    let text =
        serde_json::to_string(&body.candidates).map_err(|_| ApiError::internal("candidates"))?;
    let nat = body.nat.map(NatKind::as_str);
    let mut tx = c.db.begin_write().await?;
    let (old, old_nat): (String, Option<String>) =
        sqlx::query_as("SELECT candidates, nat FROM devices WHERE id = $1")
            .bind(&dev.device_id)
            .fetch_one(&mut *tx.tx)
            .await?;
    if old_nat.as_deref() != nat {
        // Read only when introducing (nat.rs): no grant changes, no audit record.
        sqlx::query("UPDATE devices SET nat = $2 WHERE id = $1")
            .bind(&dev.device_id)
            .bind(nat)
            .execute(&mut *tx.tx)
            .await?;
    }
    if old != text {
        sqlx::query("UPDATE devices SET candidates = $2, updated_ms = $3 WHERE id = $1")
            .bind(&dev.device_id)
            .bind(&text)
            .bind(tx.now)
            .execute(&mut *tx.tx)
            .await?;
        tx.audit(
            &caller.actor(),
            "device.candidates",
            &dev.device_id,
            serde_json::json!({"candidates": body.candidates}),
        )
        .await?;
        let set = std::collections::HashSet::from([dev.device_id.clone()]);
        crate::grants::reevaluate(&c, &mut tx, &caller.actor(), Some(&set)).await?;
    }
    tx.commit().await?;
    Ok(Json(body))
}

#[derive(Serialize, ToSchema)]
pub struct DeviceSnapshot {
    /// The sequence number of the newest event for this device; resume the stream from it.
    pub version: i64,
    pub status: DeviceState,
    /// Every live grant's connection info for this device, signed by the centre.
    pub connection_info: Vec<SignedInfo>,
    /// Certificate that signs connection info (PEM).
    pub signer_certificate: String,
}

/// Full state, for a device starting up or resynchronising.
#[utoipa::path(get, path = "/api/v1/device/state", tag = "device", responses((status = 200, body = DeviceSnapshot), (status = 403, body = ErrorBody)))]
pub async fn state(
    State(c): State<Arc<Center>>,
    caller: Caller,
) -> Result<Json<DeviceSnapshot>, ApiError> {
    let dev = caller.device(Tier::Service)?;
    let version: Option<i64> =
        sqlx::query_scalar("SELECT MAX(seq) FROM events WHERE device_id = $1")
            .bind(&dev.device_id)
            .fetch_one(&c.db.pool)
            .await?;
    let status: String = sqlx::query_scalar("SELECT status FROM devices WHERE id = $1")
        .bind(&dev.device_id)
        .fetch_one(&c.db.pool)
        .await?;
    let rows = sqlx::query(
        "SELECT applicant_device, info_applicant, info_target FROM grants WHERE status = 'active' AND (applicant_device = $1 OR target_device = $1)",
    )
    .bind(&dev.device_id)
    .fetch_all(&c.db.pool)
    .await?;
    let mut infos = Vec::new();
    for r in rows {
        let a: String = r.get(0);
        let text: String = if a == dev.device_id {
            r.get(1)
        } else {
            r.get(2)
        };
        infos.push(
            serde_json::from_str(&text)
                .map_err(|_| ApiError::internal("stored connection info unreadable"))?,
        );
    }
    Ok(Json(DeviceSnapshot {
        version: version.unwrap_or(0),
        status: status.parse()?,
        connection_info: infos,
        signer_certificate: c.pki.signer_cert_pem().to_string(),
    }))
}

#[derive(Deserialize, IntoParams)]
pub struct Since {
    /// Resume after this sequence number (0 = from the beginning).
    #[serde(default)]
    pub since: i64,
}

/// The device's event stream (server-sent events; each `id:` is a sequence number).
/// Missed events are replayed from `since`, so a dropped stream never loses an update.
#[utoipa::path(get, path = "/api/v1/device/events", tag = "device", params(Since),
    responses((status = 200, content_type = "text/event-stream",
        description = "Server-sent events, one `Event` (JSON) in each `data:` field, `id:` its sequence number; the stream stays open",
        body = String), (status = 403, body = ErrorBody)))]
pub async fn events(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Query(q): Query<Since>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let dev = caller.device(Tier::Service)?.clone();
    // Subscribe before reading the backlog so nothing falls between the two.
    let live = c.hub.subscribe(&dev.device_id);
    let rows = sqlx::query("SELECT seq, kind, payload FROM events WHERE device_id = $1 AND seq > $2 ORDER BY seq LIMIT 100000")
        .bind(&dev.device_id)
        .bind(q.since)
        .fetch_all(&c.db.pool)
        .await?;
    let backlog: Vec<Event> = rows
        .iter()
        .map(|r| {
            let payload: String = r.get(2);
            Event {
                seq: r.get(0),
                kind: r.get(1),
                payload: serde_json::from_str(&payload).unwrap_or_default(),
            }
        })
        .collect();
    crate::metrics::get().pushed_backlog(backlog.len() as u64);
    let mut last = backlog.last().map(|e| e.seq).unwrap_or(q.since);
    let hello = Event {
        seq: last,
        kind: "hello".into(),
        payload: serde_json::json!({"device_id": dev.device_id, "since": q.since}),
    };
    // The newest audit checkpoint, for the device to witness (issue 15 step 3).
    let checkpoint = {
        let mut conn = c.db.pool.acquire().await?;
        crate::tlog::latest(&mut conn)
            .await?
            .map(|n| crate::tlog::checkpoint_event(&n))
    };
    let live = tokio_stream::wrappers::ReceiverStream::new(live).filter_map(move |e| {
        // Checkpoints are not per-device rows: they carry no sequence number.
        let fresh = e.kind == crate::tlog::CHECKPOINT_EVENT || e.seq > last;
        if fresh && e.seq > last {
            last = e.seq;
        }
        async move { fresh.then_some(e) }
    });
    let s = stream::iter(std::iter::once(hello).chain(backlog).chain(checkpoint))
        .chain(live)
        .map(|e| {
            let data = serde_json::to_string(&e).unwrap_or_default();
            let ev = SseEvent::default().event(e.kind.clone()).data(data);
            Ok(if e.kind == crate::tlog::CHECKPOINT_EVENT {
                ev
            } else {
                ev.id(e.seq.to_string())
            })
        });
    Ok(Sse::new(s).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// TR D.6 k: the device applies to connect to a peer device or a group.
#[utoipa::path(post, path = "/api/v1/device/connections", tag = "device", request_body = Application,
    responses((status = 200, body = ApplicationResult), (status = 403, body = ErrorBody)))]
pub async fn connect(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<Application>, JsonRejection>,
) -> Result<Json<ApplicationResult>, ApiError> {
    let dev = caller.device(Tier::Service)?.clone();
    let Json(body) = body?;
    if body
        .from_device
        .as_deref()
        .is_some_and(|f| f != dev.device_id)
    {
        return Err(ApiError::forbidden(
            "other_device",
            "a device may apply only for itself",
        ));
    }
    Ok(Json(
        run_application(
            &c,
            &caller.actor(),
            &dev.device_id,
            body.to_device.as_deref(),
            body.to_group.as_deref(),
            body.purpose.as_deref(),
        )
        .await?,
    ))
}

/// This device's certificates (both tiers), so a device that crashed between issuance
/// and storing can install what was issued to it. Either tier may ask.
#[utoipa::path(get, path = "/api/v1/device/certs", tag = "device", responses((status = 200, body = [CertRecord])))]
pub async fn my_certs(
    State(c): State<Arc<Center>>,
    caller: Caller,
) -> Result<Json<Vec<CertRecord>>, ApiError> {
    let who = whoami_of(&caller)?;
    let rows = sqlx::query(&format!(
        "SELECT {} FROM certs WHERE device_id = $1 ORDER BY serial",
        CERT_COLS
    ))
    .bind(&who.device_id)
    .fetch_all(&c.db.pool)
    .await?;
    Ok(Json(rows.iter().map(cert_from_row).collect()))
}

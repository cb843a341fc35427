//! Hole punching and the relay (issue 19 items 2, 3), the centre's part. A device
//! whose packet waits for a peer without a fixed address asks to be introduced: the
//! centre tells both at once, on their event streams, where the other may be reached
//! (`introduce`), and the called side opens its NAT towards the caller. If that does
//! not get them through (symmetric NAT, CGNAT), the caller asks for a relay: both get
//! a binding for the provider relay (`relay`), signed with the secret the centre
//! shares with the relay, and meet there.
//!
//! Only devices holding a live grant between them are introduced or relayed.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::device::NatKind;
use crate::auth::{Caller, Tier};
use crate::db::WriteTx;
use crate::error::{ApiError, ErrorBody};

use crate::Center;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerRef {
    /// The device at the other end of a live grant.
    #[schema(min_length = 1, max_length = 64)]
    pub peer_device_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct Introduced {
    pub peer_device_id: String,
    /// Where the peer may be reached ("IP:port"), as pushed to us in `introduce`.
    pub candidates: Vec<String>,
    /// Whether a relay can be asked for if punching fails.
    pub relay_available: bool,
    /// False when the two NATs, as the agents' reflector probes showed them, rule hole
    /// punching out: nobody was told, ask for the relay at once.
    pub punch: bool,
}

#[derive(Serialize, ToSchema)]
pub struct RelayAllocated {
    pub peer_device_id: String,
    /// The relay both sides meet at ("IP:port").
    pub relay: String,
    /// The allocation's id (hex), as the relay logs it.
    pub allocation: String,
}

/// 429 when this pair asked for `what` less than [`crate::relays::Pacer::EVERY`] ago.
fn paced(c: &Center, what: &'static str, me: &str, peer: &str) -> Result<(), ApiError> {
    c.pacer
        .admit(what, me, peer, std::time::Instant::now())
        .map_err(|wait| {
            ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                format!(
                    "{what} for {peer} asked again too soon: retry in {} ms / 要求が多すぎます: {} ms 後に再試行してください",
                    wait.as_millis(),
                    wait.as_millis()
                ),
            )
        })
}

/// 404 unless a live grant joins the two devices (either way round).
async fn require_grant(tx: &mut WriteTx<'_>, me: &str, peer: &str) -> Result<(), ApiError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM grants WHERE status = 'active' AND ((applicant_device = $1 AND target_device = $2) OR (applicant_device = $2 AND target_device = $1))",
    )
    .bind(me)
    .bind(peer)
    .fetch_one(&mut *tx.tx)
    .await?;
    if n == 0 {
        return Err(ApiError::not_found(format!(
            "no live grant between this device and {peer}"
        )));
    }
    Ok(())
}

/// Where a device may be reached: its reported candidates, and its fixed endpoint on
/// the NAT-T port (a peer opens its mapping towards the port our IKE comes from).
async fn reach_of(tx: &mut WriteTx<'_>, device: &str) -> Result<Vec<String>, ApiError> {
    let (endpoint, candidates): (Option<String>, String) =
        sqlx::query_as("SELECT endpoint, candidates FROM devices WHERE id = $1")
            .bind(device)
            .fetch_one(&mut *tx.tx)
            .await?;
    let mut out: Vec<String> = serde_json::from_str(&candidates)
        .map_err(|_| ApiError::internal("stored candidates unreadable"))?;
    let fixed = endpoint.as_deref().and_then(|e| {
        e.parse::<std::net::IpAddr>()
            .ok()
            .or_else(|| e.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
    });
    if let Some(ip) = fixed {
        let s = std::net::SocketAddr::new(ip, 4500).to_string();
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// The NAT a device's agent last reported (None when it could not tell).
async fn nat_of(tx: &mut WriteTx<'_>, device: &str) -> Result<Option<NatKind>, ApiError> {
    let nat: Option<String> = sqlx::query_scalar("SELECT nat FROM devices WHERE id = $1")
        .bind(device)
        .fetch_one(&mut *tx.tx)
        .await?;
    Ok(nat.as_deref().and_then(NatKind::parse))
}

/// Whether hole punching can join two devices: not when one NAT maps per
/// destination (symmetric) and the other side is behind a NAT too, which drops what
/// comes from a mapping it was not told of. A full-cone NAT would let it in, but the
/// probes cannot tell it from a port-restricted one, so such a pair is relayed too.
/// Unknown NATs are tried.
fn punch_can_work(a: Option<NatKind>, b: Option<NatKind>) -> bool {
    use NatKind::{Cone, Symmetric};
    !matches!(
        (a, b),
        (Some(Symmetric), Some(Cone | Symmetric)) | (Some(Cone), Some(Symmetric))
    )
}

/// Introduce this device to a peer it holds a grant with: both are told at once
/// (`introduce` events, `{peer_device_id, candidates, at_ms}`), so the peer opens its
/// NAT towards us while our IKE is on its way. When the two NATs rule punching out
/// (`punch: false`), nobody is told: the caller asks for the relay instead.
#[utoipa::path(post, path = "/api/v1/device/introduce", tag = "device", request_body = PeerRef,
    responses((status = 200, body = Introduced), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 429, body = ErrorBody, description = "too_many_requests: this pair was introduced less than 2 s ago")))]
pub async fn introduce(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<PeerRef>, JsonRejection>,
) -> Result<Json<Introduced>, ApiError> {
    let me = caller.device(Tier::Service)?.device_id.clone();
    let Json(body) = body?;
    let peer = body.peer_device_id;
    let mut tx = c.db.begin_write().await?;
    require_grant(&mut tx, &me, &peer).await?;
    paced(&c, "introduce", &me, &peer)?;
    let mine = reach_of(&mut tx, &me).await?;
    let theirs = reach_of(&mut tx, &peer).await?;
    let punch = punch_can_work(nat_of(&mut tx, &me).await?, nat_of(&mut tx, &peer).await?);
    if !punch {
        return Ok(Json(Introduced {
            peer_device_id: peer,
            candidates: theirs,
            relay_available: c.relay.is_some(),
            punch,
        }));
    }
    let at = tx.now;
    tx.event(
        &peer,
        "introduce",
        &serde_json::json!({"peer_device_id": me, "candidates": mine, "at_ms": at}),
    )
    .await?;
    tx.event(
        &me,
        "introduce",
        &serde_json::json!({"peer_device_id": peer, "candidates": theirs, "at_ms": at}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(Introduced {
        peer_device_id: peer,
        candidates: theirs,
        relay_available: c.relay.is_some(),
        punch,
    }))
}

/// Punching did not get us through: allocate a relay session for this device and the
/// peer. Each gets its binding in a `relay` event (`{peer_device_id, relay, binding
/// (base64), initiate, at_ms}`); the caller dials through the relay, the peer answers.
/// Audited (`relay.allocated`).
#[utoipa::path(post, path = "/api/v1/device/relay", tag = "device", request_body = PeerRef,
    responses((status = 200, body = RelayAllocated), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "no_relay: this centre has no relay configured"),
              (status = 429, body = ErrorBody, description = "too_many_requests: a relay for this pair was allocated less than 2 s ago")))]
pub async fn relay(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<PeerRef>, JsonRejection>,
) -> Result<Json<RelayAllocated>, ApiError> {
    let me = caller.device(Tier::Service)?.device_id.clone();
    let Json(body) = body?;
    let peer = body.peer_device_id;
    let Some(relay) = &c.relay else {
        return Err(ApiError::conflict(
            "no_relay",
            "this centre has no relay configured (DODVPN_RELAY) / リレーが設定されていません",
        ));
    };
    let mut tx = c.db.begin_write().await?;
    require_grant(&mut tx, &me, &peer).await?;
    paced(&c, "relay", &me, &peer)?;
    let at = tx.now;
    let (alloc, mine, theirs) = relay.allocate((at / 1000).max(0) as u64);
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let addr = relay.addr.to_string();
    let allocation = hex::encode(alloc);
    tx.audit(
        &caller.actor(),
        "relay.allocated",
        &me,
        serde_json::json!({"peer": peer, "relay": addr, "allocation": allocation}),
    )
    .await?;
    tx.event(
        &me,
        "relay",
        &serde_json::json!({"peer_device_id": peer, "relay": addr, "binding": b64(&mine), "initiate": true, "at_ms": at}),
    )
    .await?;
    tx.event(
        &peer,
        "relay",
        &serde_json::json!({"peer_device_id": me, "relay": addr, "binding": b64(&theirs), "initiate": false, "at_ms": at}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(RelayAllocated {
        peer_device_id: peer,
        relay: addr,
        allocation,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use NatKind::{Cone, None as Public, Symmetric};

    #[test]
    fn punching_is_skipped_only_where_a_symmetric_nat_meets_another_nat() {
        assert!(!punch_can_work(Some(Symmetric), Some(Symmetric)));
        assert!(!punch_can_work(Some(Symmetric), Some(Cone)));
        assert!(!punch_can_work(Some(Cone), Some(Symmetric)));
        assert!(punch_can_work(Some(Symmetric), Some(Public)));
        assert!(punch_can_work(Some(Public), Some(Symmetric)));
        assert!(punch_can_work(Some(Cone), Some(Cone)));
        // An agent that could not tell (no reflector answered, an older agent): try.
        assert!(punch_can_work(Some(Symmetric), None));
        assert!(punch_can_work(None, None));
    }
}

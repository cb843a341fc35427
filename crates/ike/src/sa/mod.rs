//! The IKE SA state machine (RFC 7296), one module per exchange in the manner
//! of strongSwan's tasks:
//!
//! * [`exchange`](self): requests and responses with a window of one,
//!   retransmission (§2.1–2.3), SK payload protection, error answers (§2.21);
//! * `init`: IKE_SA_INIT as initiator and responder, NAT detection (§2.23);
//! * `auth`: IKE_AUTH and the first child SA;
//! * `child`: CREATE_CHILD_SA for child SAs and their rekeying (§1.3, §2.8.1);
//! * `rekey`: CREATE_CHILD_SA rekeying the IKE SA itself (§1.3.2, §2.8.2);
//! * `informational`: liveness, DELETE, MOBIKE answers;
//! * `timers`: DPD, NAT keepalives, rekey timers and hard lifetimes.

mod auth;
mod child;
mod exchange;
mod informational;
mod init;
pub(crate) mod payloads;
mod rekey;
mod timers;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dodvpn_wire::{ExchangeType, Identification, IkeHeader, Message};

use crate::child::{ChildSa, RekeyState};
use crate::crypto::{DhPrivate, Group};
use crate::fragment::Reassembler;
use crate::keys::IkeKeys;
use crate::proposal::IkeSuite;
use crate::rng::Rng;
use crate::{Config, DownReason, Event, SaId, Transmit};

use exchange::{CreateKind, Ctx, Pending, Request};

/// Lifecycle of an IKE SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Initiator: IKE_SA_INIT request sent.
    InitSent,
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH (half-open).
    InitDone,
    /// Initiator: IKE_AUTH request sent.
    AuthSent,
    Established,
    /// Replaced by a rekeyed SA; waits to delete / be deleted.
    Rekeyed,
    /// Our DELETE of the IKE SA is outstanding.
    Deleting,
    Closed,
}

const NONCE_LEN: usize = 32;

/// Constant for tests/tools: the default half-open lifetime.
pub const DEFAULT_HALF_OPEN: Duration = Duration::from_secs(30);

/// What IKE_SA_INIT (or an IKE rekey) yields: the suite and the SK_* keys.
/// Code that needs keys takes a `&Keyed`, so it cannot run before they exist.
#[derive(Debug)]
pub(crate) struct Keyed {
    pub suite: IkeSuite,
    pub keys: IkeKeys,
}

/// One IKE SA.
pub struct IkeSa {
    cfg: Arc<Config>,
    rng: Rng,
    /// We are the original initiator (I flag).
    initiator: bool,
    spi_i: u64,
    spi_r: u64,
    state: State,
    local: SocketAddr,
    remote: SocketAddr,
    nat_t: bool,
    local_behind_nat: bool,
    keyed: Option<Arc<Keyed>>,
    // IKE_SA_INIT material
    dh: Option<DhPrivate>,
    ke_group: Option<Group>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    msg1: Vec<u8>,
    msg2: Vec<u8>,
    cookie: Option<Vec<u8>>,
    peer_id: Option<Identification>,
    // exchanges (window size 1)
    next_req_id: u32,
    pending: Option<Pending>,
    queue: VecDeque<Request>,
    peer_next_req_id: u32,
    last_resp: Option<(u32, Vec<Vec<u8>>)>,
    /// Both sides announced IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383 §2.3).
    fragmentation: bool,
    /// Both sides announced MOBIKE_SUPPORTED in IKE_AUTH (RFC 4555 §3.2):
    /// `Some(true)` when we are the original initiator, the side that decides
    /// the addresses (§3.1), kept across IKE rekeys.
    mobike: Option<bool>,
    /// Fragments of the peer's current request and of the answer to ours.
    frag_req: Reassembler,
    frag_resp: Reassembler,
    children: Vec<ChildSa>,
    created: Instant,
    last_recv: Instant,
    last_sent: Instant,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Rekeyed IKE SAs to hand to the endpoint.
    pub(crate) spawned: Vec<IkeSa>,
    /// IKE rekey timer and hard lifetime (§2.8).
    ike_rekey_at: Option<Instant>,
    ike_expire_at: Option<Instant>,
    /// Child rekey collisions (§2.8.1): old local SPI → (the new local SPI the
    /// peer's exchange created, the lower nonce of that exchange).
    child_collisions: Vec<(u32, u32, Vec<u8>)>,
    /// IKE rekey collision (§2.8.2): the SA the peer's exchange created while
    /// ours was in flight, and the lower nonce of that exchange.
    ike_collision: Option<(Box<IkeSa>, Vec<u8>)>,
}

impl core::fmt::Debug for IkeSa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IkeSa")
            .field("initiator", &self.initiator)
            .field("spi_i", &format_args!("{:016x}", self.spi_i))
            .field("spi_r", &format_args!("{:016x}", self.spi_r))
            .field("state", &self.state)
            .field("children", &self.children)
            .finish_non_exhaustive()
    }
}

impl IkeSa {
    fn blank(
        cfg: Arc<Config>,
        rng: Rng,
        now: Instant,
        initiator: bool,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> IkeSa {
        let limits = cfg.fragment_limits;
        IkeSa {
            cfg,
            rng,
            initiator,
            spi_i: 0,
            spi_r: 0,
            state: State::InitSent,
            local,
            remote,
            nat_t: false,
            local_behind_nat: false,
            keyed: None,
            dh: None,
            ke_group: None,
            ni: Vec::new(),
            nr: Vec::new(),
            msg1: Vec::new(),
            msg2: Vec::new(),
            cookie: None,
            peer_id: None,
            next_req_id: 0,
            pending: None,
            queue: VecDeque::new(),
            peer_next_req_id: 0,
            last_resp: None,
            fragmentation: false,
            mobike: None,
            frag_req: Reassembler::new(limits),
            frag_resp: Reassembler::new(limits),
            children: Vec::new(),
            created: now,
            last_recv: now,
            last_sent: now,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            spawned: Vec::new(),
            ike_rekey_at: None,
            ike_expire_at: None,
            child_collisions: Vec::new(),
            ike_collision: None,
        }
    }

    // ---- accessors -------------------------------------------------------

    /// Our SPI, the handle of this SA.
    pub fn id(&self) -> SaId {
        if self.initiator {
            self.spi_i
        } else {
            self.spi_r
        }
    }
    pub fn state(&self) -> State {
        self.state
    }
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }
    pub fn spis(&self) -> (u64, u64) {
        (self.spi_i, self.spi_r)
    }
    pub fn children(&self) -> &[ChildSa] {
        &self.children
    }
    pub fn keys(&self) -> Option<&IkeKeys> {
        self.keyed.as_deref().map(|k| &k.keys)
    }
    pub fn suite(&self) -> Option<IkeSuite> {
        self.keyed.as_deref().map(|k| k.suite)
    }
    pub fn addresses(&self) -> (SocketAddr, SocketAddr, bool) {
        (self.local, self.remote, self.nat_t)
    }
    /// Request/response message IDs: (our next request, peer's next request).
    pub fn message_ids(&self) -> (u32, u32) {
        (self.next_req_id, self.peer_next_req_id)
    }
    pub fn peer_id(&self) -> Option<&Identification> {
        self.peer_id.as_ref()
    }
    /// MOBIKE was negotiated and we are the side that moves the SA (RFC 4555 §3.1).
    pub fn can_move(&self) -> bool {
        self.mobike == Some(true)
    }
    /// MOBIKE was negotiated (either role).
    pub fn mobike(&self) -> bool {
        self.mobike.is_some()
    }
    pub(crate) fn half_open(&self) -> bool {
        self.state == State::InitDone
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---- public actions ------------------------------------------------------

    pub fn send_liveness(&mut self, now: Instant) {
        self.enqueue(now, Request::Liveness);
    }
    pub fn delete_child(&mut self, now: Instant, local_spi: u32) {
        self.enqueue(now, Request::DeleteChild(local_spi));
    }
    pub fn delete(&mut self, now: Instant) {
        self.enqueue(now, Request::DeleteIke);
    }
    /// Send our IKE_SA_INIT again now, outside the retransmission schedule (which
    /// stays as it was): the peer's NAT has just been opened for us (hole punching),
    /// so the copy its NAT dropped a moment ago would now get in.
    pub fn resend_init(&mut self, now: Instant) -> bool {
        if self.state != State::InitSent {
            return false;
        }
        let Some(bytes) = self.pending.as_ref().map(|p| p.bytes.clone()) else {
            return false;
        };
        self.send_all(now, &bytes);
        true
    }

    /// Our address changed (a new DHCP lease, a failover line): move the SA and
    /// its child SAs to `local` with an UPDATE_SA_ADDRESSES exchange (RFC 4555
    /// §3.5), over the NAT-T port from now on (§3.3). A request already in
    /// flight is retransmitted from the new address. False, and nothing done,
    /// unless MOBIKE was negotiated and we are its original initiator.
    pub fn update_addresses(&mut self, now: Instant, local: SocketAddr) -> bool {
        if !self.can_move() || !matches!(self.state, State::Established) {
            return false;
        }
        let p = self.cfg.nat_t_port;
        self.local = SocketAddr::new(local.ip(), p);
        if !self.nat_t {
            self.nat_t = true;
            self.remote.set_port(p);
        }
        if !self
            .queue
            .iter()
            .any(|r| matches!(r, Request::UpdateAddresses))
        {
            self.enqueue(now, Request::UpdateAddresses);
        }
        true
    }
    pub fn create_child(&mut self, now: Instant) {
        self.enqueue(
            now,
            Request::Create {
                kind: CreateKind::NewChild,
                group: None,
            },
        );
    }
    pub fn rekey_child(&mut self, now: Instant, local_spi: u32) {
        if let Some(c) = self.children.iter_mut().find(|c| c.local_spi == local_spi) {
            if c.rekey == RekeyState::Idle {
                c.rekey = RekeyState::Requested;
            }
        }
        self.enqueue(
            now,
            Request::Create {
                kind: CreateKind::RekeyChild(local_spi),
                group: None,
            },
        );
    }
    pub fn rekey(&mut self, now: Instant) {
        self.enqueue(
            now,
            Request::Create {
                kind: CreateKind::RekeyIke,
                group: None,
            },
        );
    }

    fn close(&mut self, reason: DownReason) {
        if self.state == State::Closed {
            return;
        }
        let silent = matches!(self.state, State::InitDone) && reason == DownReason::HalfOpenTimeout;
        let was_up = matches!(self.state, State::Established | State::Deleting);
        if was_up && reason != DownReason::Rekeyed {
            for c in std::mem::take(&mut self.children) {
                self.events.push_back(Event::ChildSaDeleted {
                    sa: self.id(),
                    local_spi: c.local_spi,
                    remote_spi: c.remote_spi,
                });
            }
        }
        self.state = State::Closed;
        self.pending = None;
        self.queue.clear();
        if !silent {
            self.events.push_back(Event::IkeSaDown {
                sa: self.id(),
                reason,
            });
        }
    }

    fn fail(&mut self, reason: String) {
        tracing::debug!("IKE SA failed: {reason}");
        self.close(DownReason::Failed(reason));
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    // ---- receiving ---------------------------------------------------------------

    /// Handle an IKE message for this SA (marker already stripped).
    pub fn handle(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        if self.state == State::Closed {
            return;
        }
        let Ok(header) = IkeHeader::parse(bytes) else {
            return;
        };
        if header.length as usize != bytes.len() {
            return;
        }
        if header.flags.response() {
            self.handle_response(now, &header, bytes);
        } else {
            self.handle_request(now, from, to, &header, bytes);
        }
        self.pump(now);
    }

    fn handle_response(&mut self, now: Instant, header: &IkeHeader, bytes: &[u8]) {
        let Some(p) = &self.pending else { return };
        if p.msg_id != header.message_id {
            return;
        }
        // The response must come from the peer's side of the SA (I flag opposite to ours).
        if header.flags.initiator() == self.initiator {
            return;
        }
        if header.exchange_type == ExchangeType::IkeSaInit {
            if matches!(p.ctx, Ctx::Init) && self.state == State::InitSent {
                let Ok(msg) = Message::parse(bytes) else {
                    return;
                };
                self.on_init_response(now, &msg, bytes);
            }
            return;
        }
        let Some(keyed) = self.keyed.clone() else {
            return;
        };
        // Not authentic: dropped (§2.21), the request is retransmitted.
        let Ok(parsed) = self.open(now, &keyed, bytes, true) else {
            return;
        };
        self.last_recv = now;
        // A fragment of the answer (RFC 7383): wait for the rest.
        let Some(parsed) = parsed else { return };
        let Some(p) = self.pending.take() else { return };
        let payloads = match parsed {
            Ok(payloads) => payloads,
            // Authentic but malformed: nothing to answer, and the exchange cannot
            // complete; the SA is not worth keeping (§2.21.3).
            Err(e) => return self.fail(format!("peer sent a malformed response: {e}")),
        };
        match p.ctx {
            Ctx::Init => {}
            Ctx::Auth { child_spi } => self.on_auth_response(now, &keyed, &payloads, child_spi),
            Ctx::Liveness => {}
            Ctx::UpdateAddresses => self.on_update_response(&payloads),
            Ctx::DeleteChild(spi) => self.on_delete_child_response(spi),
            Ctx::DeleteIke => {
                let reason = if self.state == State::Rekeyed {
                    DownReason::Rekeyed
                } else {
                    DownReason::LocalDelete
                };
                self.state = State::Deleting;
                self.close(reason);
            }
            Ctx::Create {
                kind,
                nonce,
                dh,
                spi,
            } => self.on_create_response(now, &keyed, &payloads, kind, nonce, dh, spi),
        }
    }

    fn handle_request(
        &mut self,
        now: Instant,
        from: SocketAddr,
        to: SocketAddr,
        header: &IkeHeader,
        bytes: &[u8],
    ) {
        // Requests come from the peer's side: I flag set iff the peer is the original initiator.
        if header.flags.initiator() == self.initiator {
            return;
        }
        let id = header.message_id;
        if id.wrapping_add(1) == self.peer_next_req_id {
            // §2.1: retransmitted request: answer from the cache, do not reprocess.
            // A fragmented request is answered once, on its first fragment
            // (RFC 7383 §2.6.1), not once per fragment.
            let first = dodvpn_wire::locate_encrypted(bytes)
                .map_or(true, |l| l.fragment.is_none_or(|(n, _)| n == 1));
            if let Some((rid, resp)) = &self.last_resp {
                if *rid == id && first {
                    let resp = resp.clone();
                    self.send_all(now, &resp);
                }
            }
            return;
        }
        if id != self.peer_next_req_id || header.exchange_type == ExchangeType::IkeSaInit {
            return;
        }
        if self.state == State::InitDone && header.exchange_type != ExchangeType::IkeAuth {
            return;
        }
        let Some(keyed) = self.keyed.clone() else {
            return;
        };
        let Ok(parsed) = self.open(now, &keyed, bytes, false) else {
            return;
        };
        self.last_recv = now;
        // A fragment of the request (RFC 7383): wait for the rest.
        let Some(parsed) = parsed else { return };
        self.peer_next_req_id = id.wrapping_add(1);
        // §2.23: follow the peer's address (NAT mapping changes, float to 4500;
        // RFC 4555 §3.5: an UPDATE_SA_ADDRESSES comes from the new one).
        let before = self.remote;
        if self.state == State::InitDone || self.nat_t || to.port() == self.cfg.nat_t_port {
            self.remote = from;
            self.local = to;
            if to.port() == self.cfg.nat_t_port {
                self.nat_t = true;
            }
        }
        if self.remote != before && self.state == State::Established {
            tracing::debug!(
                "IKE SA {:016x}: the peer moved from {before} to {}",
                self.id(),
                self.remote
            );
            self.events.push_back(Event::AddressesChanged {
                sa: self.id(),
                local: self.local,
                remote: self.remote,
                nat_t: self.nat_t,
            });
        }
        let payloads = match parsed {
            Ok(payloads) => payloads,
            Err(e) => return self.reject_malformed(now, header.exchange_type, id, &e),
        };
        match header.exchange_type {
            ExchangeType::IkeAuth if self.state == State::InitDone => {
                self.on_auth_request(now, &keyed, id, &payloads)
            }
            ExchangeType::Informational => self.on_informational(now, id, &payloads),
            ExchangeType::CreateChildSa => self.on_create_request(now, &keyed, id, &payloads),
            other => {
                // Unknown exchange on an established SA: answer empty-handed.
                self.respond(now, other, id, &[]);
            }
        }
    }
}

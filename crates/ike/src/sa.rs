//! The IKE SA state machine (RFC 7296): IKE_SA_INIT / IKE_AUTH as initiator
//! and responder, CREATE_CHILD_SA (child, child rekey, IKE rekey),
//! INFORMATIONAL (liveness, DELETE, MOBIKE answers), retransmission with a
//! window of one (§2.1–2.3), DPD, NAT-T floating and keepalives (§2.23).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dodvpn_wire::{
    emit_encrypted, emit_payload_chain, locate_encrypted, parse_payload_chain, CertEncoding,
    Certificate, Delete, ExchangeType, Flags, HashAlgorithm, Identification, IkeHeader,
    KeyExchange, Message, Notify, NotifyType, Payload, ProtocolId, Sa, TrafficSelector,
};
use ring::rand::{SecureRandom, SystemRandom};

use crate::auth::{self, LocalAuth, RemoteAuth};
use crate::child::{self, nonce_lt, nonce_min, ChildSa, RekeyState};
use crate::crypto::{DhPrivate, Group};
use crate::keys::{self, IkeKeys};
use crate::nat::nat_hash;
use crate::proposal::{self, IkeSelection, IkeSuite};
use crate::{ChildSaInfo, Config, DownReason, Error, Event, SaId, Transmit};

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

pub(crate) fn random_bytes(rng: &dyn SecureRandom, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill(&mut v).expect("system RNG");
    v
}

pub(crate) fn random_u64(rng: &dyn SecureRandom) -> u64 {
    loop {
        let mut b = [0u8; 8];
        rng.fill(&mut b).expect("system RNG");
        let v = u64::from_be_bytes(b);
        if v != 0 {
            return v;
        }
    }
}

pub(crate) fn random_spi(rng: &dyn SecureRandom) -> u32 {
    loop {
        let mut b = [0u8; 4];
        rng.fill(&mut b).expect("system RNG");
        let v = u32::from_be_bytes(b);
        if v > 255 {
            return v;
        }
    }
}

fn notify(t: NotifyType, data: Vec<u8>) -> Payload {
    Payload::Notify(Notify::new(t, data))
}

fn first_error(payloads: &[Payload]) -> Option<NotifyType> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.notify_type.is_error() => Some(n.notify_type),
        _ => None,
    })
}

fn find_notify(payloads: &[Payload], t: NotifyType) -> Option<&Notify> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.notify_type == t => Some(n),
        _ => None,
    })
}

/// What a CREATE_CHILD_SA we started is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CreateKind {
    NewChild,
    /// Rekey of the child with this local (inbound) SPI.
    RekeyChild(u32),
    RekeyIke,
}

/// A request we want to send.
#[derive(Debug)]
enum Request {
    Liveness,
    DeleteChild(u32),
    DeleteIke,
    Create {
        kind: CreateKind,
        group: Option<Group>,
    },
}

/// Exchange context kept while a request is outstanding.
#[derive(Debug)]
enum Ctx {
    Init,
    Auth {
        child_spi: u32,
    },
    Liveness,
    DeleteChild(u32),
    DeleteIke,
    Create {
        kind: CreateKind,
        nonce: Vec<u8>,
        dh: Option<DhPrivate>,
        /// New local SPI: ESP (u32) or IKE (u64).
        spi: u64,
    },
}

#[derive(Debug)]
struct Pending {
    msg_id: u32,
    bytes: Vec<u8>,
    tries: u32,
    deadline: Instant,
    ctx: Ctx,
}

/// One IKE SA.
pub struct IkeSa {
    cfg: Arc<Config>,
    rng: SystemRandom,
    /// We are the original initiator (I flag).
    initiator: bool,
    spi_i: u64,
    spi_r: u64,
    state: State,
    local: SocketAddr,
    remote: SocketAddr,
    nat_t: bool,
    local_behind_nat: bool,
    suite: Option<IkeSuite>,
    keys: Option<IkeKeys>,
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
    last_resp: Option<(u32, Vec<u8>)>,
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
        now: Instant,
        initiator: bool,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> IkeSa {
        IkeSa {
            cfg,
            rng: SystemRandom::new(),
            initiator,
            spi_i: 0,
            spi_r: 0,
            state: State::InitSent,
            local,
            remote,
            nat_t: false,
            local_behind_nat: false,
            suite: None,
            keys: None,
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
        self.keys.as_ref()
    }
    pub fn suite(&self) -> Option<IkeSuite> {
        self.suite
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
    pub(crate) fn half_open(&self) -> bool {
        self.state == State::InitDone
    }
    /// When the IKE SA's rekey timer and hard lifetime fire.
    pub fn ike_timers(&self) -> (Option<Instant>, Option<Instant>) {
        (self.ike_rekey_at, self.ike_expire_at)
    }

    /// `base` less a random share of the configured jitter (at most half of `base`).
    fn jittered(&self, base: Duration) -> Duration {
        let j = self.cfg.rekey_jitter.min(base / 2);
        let ms = j.as_millis() as u64;
        if ms == 0 {
            return base;
        }
        base - Duration::from_millis(random_u64(&self.rng) % (ms + 1))
    }

    fn start_ike_timers(&mut self, now: Instant) {
        self.ike_rekey_at = self.cfg.ike_rekey_time.map(|t| now + self.jittered(t));
        self.ike_expire_at = self.cfg.ike_life_time.map(|t| now + t);
    }

    /// Retry delay after a failed rekey.
    fn rekey_retry(&self, base: Option<Duration>) -> Duration {
        (base.unwrap_or(Duration::from_secs(60)) / 10)
            .clamp(Duration::from_secs(1), Duration::from_secs(30))
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---- initiator start ---------------------------------------------------

    /// Start an IKE SA as initiator.
    pub fn connect(
        cfg: Arc<Config>,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<IkeSa, Error> {
        let first = *cfg
            .ike_proposals
            .first()
            .ok_or_else(|| Error::Config("no IKE proposals".into()))?;
        let mut sa = IkeSa::blank(cfg, now, true, local, remote);
        sa.spi_i = random_u64(&sa.rng);
        sa.ni = random_bytes(&sa.rng, NONCE_LEN);
        sa.ke_group = Some(first.group);
        sa.send_init(now)?;
        Ok(sa)
    }

    fn send_init(&mut self, now: Instant) -> Result<(), Error> {
        let group = self.ke_group.expect("group set");
        let dh = DhPrivate::generate(group, &self.rng)?;
        let mut payloads = Vec::new();
        if let Some(c) = &self.cookie {
            // §2.6: COOKIE is the first payload.
            payloads.push(notify(NotifyType::Cookie, c.clone()));
        }
        payloads.push(Payload::SecurityAssociation(proposal::ike_sa_payload(
            &self.cfg.ike_proposals,
            vec![],
        )));
        payloads.push(Payload::KeyExchange(KeyExchange {
            group: group.id(),
            data: dh.public_value().to_vec(),
        }));
        payloads.push(Payload::Nonce(self.ni.clone()));
        payloads.extend(self.nat_notifies(0));
        payloads.push(Payload::Notify(Notify::signature_hash_algorithms(&[
            HashAlgorithm::Sha2_256,
            HashAlgorithm::Sha2_384,
            HashAlgorithm::Sha2_512,
        ])));
        let header = IkeHeader::new(
            self.spi_i,
            0,
            ExchangeType::IkeSaInit,
            Flags::new(true, false),
            0,
        );
        let bytes = Message::new(header, payloads).to_bytes()?;
        self.dh = Some(dh);
        self.msg1 = bytes.clone();
        self.state = State::InitSent;
        self.next_req_id = 0;
        self.pending = None;
        self.start_request(now, 0, bytes, Ctx::Init);
        Ok(())
    }

    /// NAT_DETECTION_SOURCE_IP / _DESTINATION_IP for the current addresses.
    fn nat_notifies(&self, spi_r: u64) -> Vec<Payload> {
        let src = if self.cfg.force_encap {
            // Fake the source hash so both sides float to UDP 4500 (as
            // strongSwan's encap=yes does).
            random_bytes(&self.rng, 20)
        } else {
            nat_hash(self.spi_i, spi_r, self.local)
        };
        vec![
            notify(NotifyType::NatDetectionSourceIp, src),
            notify(
                NotifyType::NatDetectionDestinationIp,
                nat_hash(self.spi_i, spi_r, self.remote),
            ),
        ]
    }

    /// Evaluate the peer's NAT_DETECTION notifies (§2.23). Returns whether
    /// the peer supports NAT-T at all.
    fn check_nat(
        &mut self,
        payloads: &[Payload],
        spi_r_in_hash: u64,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> (bool, bool) {
        let src = payloads.iter().filter_map(|p| match p {
            Payload::Notify(n) if n.notify_type == NotifyType::NatDetectionSourceIp => {
                Some(&n.data)
            }
            _ => None,
        });
        let remote_hash = nat_hash(self.spi_i, spi_r_in_hash, remote);
        let mut any = false;
        let mut remote_nat = true;
        for d in src {
            any = true;
            if *d == remote_hash {
                remote_nat = false;
            }
        }
        let local_nat = match find_notify(payloads, NotifyType::NatDetectionDestinationIp) {
            Some(n) => n.data != nat_hash(self.spi_i, spi_r_in_hash, local),
            None => false,
        };
        (any, local_nat || (any && remote_nat))
    }

    fn float(&mut self) {
        let p = self.cfg.nat_t_port;
        self.nat_t = true;
        self.local.set_port(p);
        self.remote.set_port(p);
    }

    // ---- responder start ---------------------------------------------------

    /// Answer an IKE_SA_INIT request whose proposal was already selected
    /// (by the endpoint, which also handled cookies and INVALID_KE).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn accept_init(
        cfg: Arc<Config>,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        request: &[u8],
        msg: &Message,
        suite: IkeSuite,
        chosen: dodvpn_wire::Proposal,
    ) -> Result<IkeSa, Error> {
        let mut sa = IkeSa::blank(cfg, now, false, local, remote);
        sa.state = State::InitDone;
        sa.spi_i = msg.header.spi_i;
        sa.spi_r = random_u64(&sa.rng);
        let ke = msg
            .payloads
            .iter()
            .find_map(|p| match p {
                Payload::KeyExchange(k) => Some(k),
                _ => None,
            })
            .ok_or_else(|| Error::Protocol("no KE".into()))?;
        sa.ni = msg
            .payloads
            .iter()
            .find_map(|p| match p {
                Payload::Nonce(n) => Some(n.clone()),
                _ => None,
            })
            .ok_or_else(|| Error::Protocol("no nonce".into()))?;
        if sa.ni.len() < 16 || sa.ni.len() > 256 {
            return Err(Error::Protocol("bad nonce length".into()));
        }
        let dh = DhPrivate::generate(suite.group, &sa.rng)?;
        let public = dh.public_value().to_vec();
        let g_ir = dh.agree(&ke.data)?;
        sa.nr = random_bytes(&sa.rng, NONCE_LEN);
        let (nat_supported, nat) = sa.check_nat(&msg.payloads, 0, local, remote);
        let mut payloads = vec![
            Payload::SecurityAssociation(Sa {
                proposals: vec![chosen],
            }),
            Payload::KeyExchange(KeyExchange {
                group: suite.group.id(),
                data: public,
            }),
            Payload::Nonce(sa.nr.clone()),
        ];
        if nat_supported {
            payloads.extend(sa.nat_notifies(sa.spi_r));
        }
        payloads.push(Payload::Notify(Notify::signature_hash_algorithms(&[
            HashAlgorithm::Sha2_256,
            HashAlgorithm::Sha2_384,
            HashAlgorithm::Sha2_512,
        ])));
        let header = IkeHeader::new(
            sa.spi_i,
            sa.spi_r,
            ExchangeType::IkeSaInit,
            Flags::new(false, true),
            0,
        );
        let bytes = Message::new(header, payloads).to_bytes()?;
        sa.local_behind_nat = nat && nat_supported;
        sa.derive_initial_keys(suite, &g_ir)?;
        sa.msg1 = request.to_vec();
        sa.msg2 = bytes.clone();
        sa.peer_next_req_id = 1;
        sa.last_resp = Some((0, bytes.clone()));
        sa.send_raw(now, bytes);
        Ok(sa)
    }

    fn derive_initial_keys(&mut self, suite: IkeSuite, g_ir: &[u8]) -> Result<(), Error> {
        let seed = keys::skeyseed(suite.prf, &self.ni, &self.nr, g_ir);
        self.keys = Some(keys::derive_ike_keys(
            suite.prf,
            suite.cipher,
            &seed,
            &self.ni,
            &self.nr,
            self.spi_i,
            self.spi_r,
        )?);
        self.suite = Some(suite);
        Ok(())
    }

    // ---- sending -------------------------------------------------------------

    fn send_raw(&mut self, now: Instant, bytes: Vec<u8>) {
        self.last_sent = now;
        self.transmits.push_back(Transmit {
            to: self.remote,
            from: self.local,
            bytes,
            nat_t: self.nat_t,
        });
    }

    fn start_request(&mut self, now: Instant, msg_id: u32, bytes: Vec<u8>, ctx: Ctx) {
        self.pending = Some(Pending {
            msg_id,
            bytes: bytes.clone(),
            tries: 1,
            deadline: now + self.cfg.retransmit_base,
            ctx,
        });
        self.send_raw(now, bytes);
    }

    /// The suite and the SK_e / SK_a keys for messages we send (`ours`) or receive.
    fn sk_keys(&self, ours: bool) -> Result<(IkeSuite, &[u8], &[u8]), Error> {
        let suite = self
            .suite
            .ok_or_else(|| Error::Protocol("no keys".into()))?;
        let keys = self
            .keys
            .as_ref()
            .ok_or_else(|| Error::Protocol("no keys".into()))?;
        Ok(if self.initiator == ours {
            (suite, &keys.sk_ei, &keys.sk_ai)
        } else {
            (suite, &keys.sk_er, &keys.sk_ar)
        })
    }

    /// Encrypt `payloads` into an SK message (§3.14).
    fn encrypt(
        &self,
        exchange: ExchangeType,
        response: bool,
        msg_id: u32,
        payloads: &[Payload],
    ) -> Result<Vec<u8>, Error> {
        let (suite, ek, ak) = self.sk_keys(true)?;
        let mut plain = Vec::new();
        let inner = emit_payload_chain(payloads, &mut plain)?;
        let header = IkeHeader::new(
            self.spi_i,
            self.spi_r,
            exchange,
            Flags::new(self.initiator, response),
            msg_id,
        );
        let mut out = Vec::new();
        let loc = emit_encrypted(
            &header,
            &[],
            inner,
            suite.cipher.body_len(plain.len()),
            &mut out,
        )?;
        suite
            .cipher
            .seal(ek, ak, &mut out, loc.body.start, &plain, &self.rng)?;
        Ok(out)
    }

    /// Verify and decrypt an SK message from the peer.
    fn decrypt(&self, bytes: &[u8]) -> Result<Vec<Payload>, Error> {
        let (suite, ek, ak) = self.sk_keys(false)?;
        let loc = locate_encrypted(bytes)?;
        if loc.fragment.is_some() {
            return Err(Error::Protocol("IKE fragments not supported".into()));
        }
        let mut buf = bytes.to_vec();
        let range = suite.cipher.open(ek, ak, &mut buf, loc.body.start)?;
        Ok(parse_payload_chain(loc.inner_next, &buf[range])?)
    }

    fn respond(&mut self, now: Instant, exchange: ExchangeType, msg_id: u32, payloads: &[Payload]) {
        match self.encrypt(exchange, true, msg_id, payloads) {
            Ok(bytes) => {
                self.last_resp = Some((msg_id, bytes.clone()));
                self.send_raw(now, bytes);
            }
            Err(e) => tracing::warn!("cannot encrypt response: {e}"),
        }
    }

    /// Queue a request; sent when the window is free.
    fn enqueue(&mut self, now: Instant, r: Request) {
        self.queue.push_back(r);
        self.pump(now);
    }

    fn pump(&mut self, now: Instant) {
        while self.pending.is_none() && matches!(self.state, State::Established | State::Rekeyed) {
            let Some(r) = self.queue.pop_front() else {
                return;
            };
            if let Err(e) = self.send_request(now, r) {
                tracing::warn!("request not sent: {e}");
            }
        }
    }

    fn send_request(&mut self, now: Instant, r: Request) -> Result<(), Error> {
        let id = self.next_req_id;
        let (exchange, payloads, ctx) = match r {
            Request::Liveness => (ExchangeType::Informational, vec![], Ctx::Liveness),
            Request::DeleteChild(spi) => {
                if !self.children.iter().any(|c| c.local_spi == spi) {
                    return Ok(());
                }
                (
                    ExchangeType::Informational,
                    vec![Payload::Delete(Delete::esp(&[spi]))],
                    Ctx::DeleteChild(spi),
                )
            }
            Request::DeleteIke => {
                self.state = State::Deleting;
                (
                    ExchangeType::Informational,
                    vec![Payload::Delete(Delete::ike())],
                    Ctx::DeleteIke,
                )
            }
            Request::Create { kind, group } => self.build_create(kind, group)?,
        };
        let bytes = self.encrypt(exchange, false, id, &payloads)?;
        self.next_req_id = id.wrapping_add(1);
        self.start_request(now, id, bytes, ctx);
        Ok(())
    }

    fn build_create(
        &mut self,
        kind: CreateKind,
        group: Option<Group>,
    ) -> Result<(ExchangeType, Vec<Payload>, Ctx), Error> {
        let nonce = random_bytes(&self.rng, NONCE_LEN);
        let mut payloads = Vec::new();
        let (dh, spi);
        match kind {
            CreateKind::RekeyIke => {
                let s = self.cfg.ike_proposals[0];
                let g = group.unwrap_or(s.group);
                let new_spi = random_u64(&self.rng);
                let d = DhPrivate::generate(g, &self.rng)?;
                payloads.push(Payload::SecurityAssociation(proposal::ike_sa_payload(
                    &self.cfg.ike_proposals,
                    new_spi.to_be_bytes().to_vec(),
                )));
                payloads.push(Payload::Nonce(nonce.clone()));
                payloads.push(Payload::KeyExchange(KeyExchange {
                    group: g.id(),
                    data: d.public_value().to_vec(),
                }));
                dh = Some(d);
                spi = new_spi;
            }
            CreateKind::NewChild | CreateKind::RekeyChild(_) => {
                let new_spi = random_spi(&self.rng);
                if let CreateKind::RekeyChild(old) = kind {
                    if !self.children.iter().any(|c| c.local_spi == old) {
                        return Err(Error::Protocol("no such child SA".into()));
                    }
                    payloads.push(Payload::Notify(Notify::with_spi(
                        ProtocolId::Esp,
                        old,
                        NotifyType::RekeySa,
                        vec![],
                    )));
                }
                payloads.push(Payload::SecurityAssociation(proposal::esp_sa_payload(
                    &self.cfg.esp_proposals,
                    new_spi,
                    true,
                )));
                payloads.push(Payload::Nonce(nonce.clone()));
                let g = group.or(self.cfg.esp_proposals.first().and_then(|s| s.pfs));
                dh = match g {
                    Some(g) => {
                        let d = DhPrivate::generate(g, &self.rng)?;
                        payloads.push(Payload::KeyExchange(KeyExchange {
                            group: g.id(),
                            data: d.public_value().to_vec(),
                        }));
                        Some(d)
                    }
                    None => None,
                };
                let (lts, rts) = match kind {
                    CreateKind::RekeyChild(old) => {
                        let c = self
                            .children
                            .iter()
                            .find(|c| c.local_spi == old)
                            .expect("checked");
                        (c.local_ts.clone(), c.remote_ts.clone())
                    }
                    _ => (self.cfg.local_ts.clone(), self.cfg.remote_ts.clone()),
                };
                payloads.push(Payload::TsInitiator(child::to_wire(&lts)));
                payloads.push(Payload::TsResponder(child::to_wire(&rts)));
                spi = new_spi as u64;
            }
        }
        Ok((
            ExchangeType::CreateChildSa,
            payloads,
            Ctx::Create {
                kind,
                nonce,
                dh,
                spi,
            },
        ))
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

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    // ---- timers ----------------------------------------------------------------

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        let mut t: Option<Instant> = None;
        let mut add = |x: Instant| t = Some(t.map_or(x, |y| y.min(x)));
        if let Some(p) = &self.pending {
            add(p.deadline);
        }
        match self.state {
            State::InitDone => add(self.created + self.cfg.half_open_timeout),
            State::Established => {
                if self.pending.is_none() {
                    add(self.last_recv + self.cfg.dpd_delay);
                }
                if self.nat_t && self.local_behind_nat {
                    add(self.last_sent + self.cfg.keepalive_interval);
                }
                for x in [self.ike_rekey_at, self.ike_expire_at]
                    .into_iter()
                    .flatten()
                {
                    add(x);
                }
                for c in &self.children {
                    for x in [c.rekey_at, c.expire_at].into_iter().flatten() {
                        add(x);
                    }
                }
            }
            _ => {}
        }
        t
    }

    /// Rekey timers and hard lifetimes of the IKE SA and its children (§2.8).
    fn lifetimes(&mut self, now: Instant) {
        if self.ike_expire_at.is_some_and(|t| now >= t) {
            tracing::info!("IKE SA {:016x}: hard lifetime reached, deleting", self.id());
            self.ike_expire_at = None;
            self.ike_rekey_at = None;
            self.queue.push_front(Request::DeleteIke);
            self.pump(now);
            return;
        }
        let mut deletes = Vec::new();
        let mut rekeys = Vec::new();
        for c in &mut self.children {
            if c.expire_at.is_some_and(|t| now >= t) {
                c.expire_at = None;
                c.rekey_at = None;
                deletes.push(c.local_spi);
                continue;
            }
            if c.rekey_at.is_some_and(|t| now >= t) {
                c.rekey_at = None;
                if c.rekey == RekeyState::Idle {
                    c.rekey = RekeyState::Requested;
                    rekeys.push(c.local_spi);
                }
            }
        }
        for spi in deletes {
            tracing::info!("child SA {spi:08x}: hard lifetime reached, deleting");
            self.queue.retain(|r| !matches!(r, Request::Create { kind: CreateKind::RekeyChild(x), .. } if *x == spi));
            self.enqueue(now, Request::DeleteChild(spi));
        }
        for spi in rekeys {
            tracing::info!("child SA {spi:08x}: rekey time reached, rekeying");
            self.enqueue(
                now,
                Request::Create {
                    kind: CreateKind::RekeyChild(spi),
                    group: None,
                },
            );
        }
        if self.ike_rekey_at.is_some_and(|t| now >= t) {
            self.ike_rekey_at = None;
            tracing::info!("IKE SA {:016x}: rekey time reached, rekeying", self.id());
            self.rekey(now);
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        if self.state == State::InitDone && now >= self.created + self.cfg.half_open_timeout {
            self.close(DownReason::HalfOpenTimeout);
            return;
        }
        if let Some(p) = &mut self.pending {
            if now >= p.deadline {
                if p.tries >= self.cfg.retransmit_tries {
                    let reason = match p.ctx {
                        Ctx::DeleteIke => DownReason::LocalDelete,
                        _ => DownReason::DeadPeer,
                    };
                    self.close(reason);
                    return;
                }
                // §2.1: exponential backoff.
                let wait = self.cfg.retransmit_base * 2u32.saturating_pow(p.tries);
                p.tries += 1;
                p.deadline = now + wait;
                let bytes = p.bytes.clone();
                self.send_raw(now, bytes);
            }
        }
        if self.state == State::Established {
            self.lifetimes(now);
        }
        if self.state == State::Established {
            if self.pending.is_none()
                && self.queue.is_empty()
                && now >= self.last_recv + self.cfg.dpd_delay
            {
                self.enqueue(now, Request::Liveness);
            }
            if self.nat_t
                && self.local_behind_nat
                && now >= self.last_sent + self.cfg.keepalive_interval
            {
                // RFC 3948 §2.3: a single 0xFF octet, no marker.
                self.last_sent = now;
                self.transmits.push_back(Transmit {
                    to: self.remote,
                    from: self.local,
                    bytes: vec![0xff],
                    nat_t: false,
                });
            }
        }
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
            self.handle_response(now, from, to, &header, bytes);
        } else {
            self.handle_request(now, from, to, &header, bytes);
        }
        self.pump(now);
    }

    fn handle_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        to: SocketAddr,
        header: &IkeHeader,
        bytes: &[u8],
    ) {
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
                self.on_init_response(now, from, to, &msg, bytes);
            }
            return;
        }
        let Ok(payloads) = self.decrypt(bytes) else {
            return;
        };
        self.last_recv = now;
        let p = self.pending.take().expect("checked");
        match p.ctx {
            Ctx::Init => {}
            Ctx::Auth { child_spi } => self.on_auth_response(now, &payloads, child_spi),
            Ctx::Liveness => {}
            Ctx::DeleteChild(spi) => {
                if let Some(i) = self.children.iter().position(|c| c.local_spi == spi) {
                    let c = self.children.remove(i);
                    self.events.push_back(Event::ChildSaDeleted {
                        sa: self.id(),
                        local_spi: c.local_spi,
                        remote_spi: c.remote_spi,
                    });
                }
            }
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
                ..
            } => self.on_create_response(now, &payloads, kind, nonce, dh, spi),
        }
    }

    fn on_init_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        to: SocketAddr,
        msg: &Message,
        bytes: &[u8],
    ) {
        let _ = (from, to);
        if let Some(c) = msg.find_notify(NotifyType::Cookie) {
            if c.data.is_empty() || c.data.len() > 64 {
                return;
            }
            self.cookie = Some(c.data.clone());
            let _ = self.send_init(now);
            return;
        }
        if let Some(n) = msg.find_notify(NotifyType::InvalidKePayload) {
            let g = n.requested_group().and_then(Group::from_id);
            match g {
                Some(g)
                    if self.cfg.ike_proposals.iter().any(|s| s.group == g)
                        && Some(g) != self.ke_group =>
                {
                    self.ke_group = Some(g);
                    let _ = self.send_init(now);
                }
                _ => self.fail(format!(
                    "INVALID_KE_PAYLOAD for unusable group {:?}",
                    n.requested_group()
                )),
            }
            return;
        }
        if let Some(e) = first_error(&msg.payloads) {
            self.fail(format!("peer refused IKE_SA_INIT: {e:?}"));
            return;
        }
        let mut sa = None;
        let mut ke = None;
        let mut nr = None;
        for p in &msg.payloads {
            match p {
                Payload::SecurityAssociation(s) => sa = Some(s),
                Payload::KeyExchange(k) => ke = Some(k),
                Payload::Nonce(n) => nr = Some(n.clone()),
                _ => {}
            }
        }
        let (Some(sa), Some(ke), Some(nr)) = (sa, ke, nr) else {
            return;
        };
        if msg.header.spi_r == 0 || nr.len() < 16 || nr.len() > 256 {
            return;
        }
        let Some(suite) = proposal::accept_ike_answer(&self.cfg.ike_proposals, sa) else {
            return self.fail("responder chose a proposal we did not offer".into());
        };
        if Some(suite.group) != self.ke_group || ke.group != suite.group.id() {
            return self.fail("responder's KE group differs from ours".into());
        }
        let Some(dh) = self.dh.take() else { return };
        let g_ir = match dh.agree(&ke.data) {
            Ok(g) => g,
            Err(_) => return self.fail("bad KE payload".into()),
        };
        self.spi_r = msg.header.spi_r;
        self.nr = nr;
        if let Err(e) = self.derive_initial_keys(suite, &g_ir) {
            return self.fail(e.to_string());
        }
        self.msg2 = bytes.to_vec();
        self.pending = None;
        self.last_recv = now;
        let (nat_supported, nat) =
            self.check_nat(&msg.payloads, self.spi_r, self.local, self.remote);
        if nat_supported {
            let local_hash_mismatch =
                find_notify(&msg.payloads, NotifyType::NatDetectionDestinationIp)
                    .is_some_and(|n| n.data != nat_hash(self.spi_i, self.spi_r, self.local));
            self.local_behind_nat = local_hash_mismatch;
            if nat || self.cfg.force_encap {
                self.float();
            }
        }
        // IKE_AUTH (§1.2).
        let child_spi = random_spi(&self.rng);
        let mut payloads = vec![Payload::IdInitiator(self.cfg.local_id.clone())];
        if let LocalAuth::Cert { cert_der, .. } = &self.cfg.local_auth {
            payloads.push(Payload::Certificate(Certificate {
                encoding: CertEncoding::X509Signature,
                data: cert_der.clone(),
            }));
        }
        if let Some(r) = &self.cfg.remote_id {
            payloads.push(Payload::IdResponder(r.clone()));
        }
        let keys = self.keys.as_ref().expect("derived");
        let octets = auth::signed_octets(
            &self.msg1,
            &self.nr,
            suite.prf,
            &keys.sk_pi,
            &self.cfg.local_id,
        );
        let a = match auth::make_auth(&self.cfg.local_auth, suite.prf, &octets) {
            Ok(a) => a,
            Err(e) => return self.fail(format!("cannot sign: {e}")),
        };
        payloads.push(Payload::Authentication(a));
        payloads.push(Payload::SecurityAssociation(proposal::esp_sa_payload(
            &self.cfg.esp_proposals,
            child_spi,
            false,
        )));
        payloads.push(Payload::TsInitiator(child::to_wire(&self.cfg.local_ts)));
        payloads.push(Payload::TsResponder(child::to_wire(&self.cfg.remote_ts)));
        match self.encrypt(ExchangeType::IkeAuth, false, 1, &payloads) {
            Ok(b) => {
                self.next_req_id = 2;
                self.state = State::AuthSent;
                self.start_request(now, 1, b, Ctx::Auth { child_spi });
            }
            Err(e) => self.fail(e.to_string()),
        }
    }

    fn fail(&mut self, reason: String) {
        tracing::debug!("IKE SA failed: {reason}");
        self.close(DownReason::Failed(reason));
    }

    /// Authenticate the peer's AUTH payload; returns a reason on failure.
    fn verify_peer(
        &self,
        id: &Identification,
        cert: Option<&Certificate>,
        a: &dodvpn_wire::Auth,
        octets: &[u8],
    ) -> Result<(), String> {
        if let Some(want) = &self.cfg.remote_id {
            if !auth::id_matches(want, id) {
                return Err("peer identity does not match the configured remote identity".into());
            }
        }
        let prf = self.suite.expect("keys").prf;
        match &self.cfg.remote_auth {
            RemoteAuth::Psk(k) => auth::verify_psk(prf, k, octets, a),
            RemoteAuth::Cert(v) => {
                let cert = cert.ok_or("peer sent no certificate")?;
                if cert.encoding != CertEncoding::X509Signature {
                    return Err(format!(
                        "certificate encoding {:?} not supported",
                        cert.encoding
                    ));
                }
                let spki = auth::cert_spki(&cert.data).ok_or("peer certificate unreadable")?;
                let key = auth::parse_spki(spki).ok_or("unsupported public key")?;
                auth::verify_signature(&key, a, octets)?;
                v.validate(&cert.data, id)
            }
        }
    }

    fn on_auth_response(&mut self, now: Instant, payloads: &[Payload], child_spi: u32) {
        if let Some(e) = first_error(payloads) {
            if e == NotifyType::AuthenticationFailed
                || e.to_wire() < 16384 && find_payload_auth(payloads).is_none()
            {
                self.events.push_back(Event::AuthFailed {
                    sa: self.id(),
                    reason: format!("peer answered {e:?}"),
                });
                return self.fail(format!("IKE_AUTH refused: {e:?}"));
            }
        }
        let mut idr = None;
        let mut cert = None;
        let mut a = None;
        for p in payloads {
            match p {
                Payload::IdResponder(i) => idr = Some(i),
                Payload::Certificate(c) if cert.is_none() => cert = Some(c),
                Payload::Authentication(x) => a = Some(x),
                _ => {}
            }
        }
        let (Some(idr), Some(a)) = (idr, a) else {
            self.events.push_back(Event::AuthFailed {
                sa: self.id(),
                reason: "IKE_AUTH response without IDr/AUTH".into(),
            });
            return self.fail("bad IKE_AUTH response".into());
        };
        let suite = self.suite.expect("keys");
        let keys = self.keys.as_ref().expect("keys");
        let octets = auth::signed_octets(&self.msg2, &self.ni, suite.prf, &keys.sk_pr, idr);
        if let Err(reason) = self.verify_peer(idr, cert, a, &octets) {
            self.events.push_back(Event::AuthFailed {
                sa: self.id(),
                reason: reason.clone(),
            });
            return self.fail(format!("peer authentication failed: {reason}"));
        }
        self.peer_id = Some(idr.clone());
        self.state = State::Established;
        self.start_ike_timers(now);
        self.events.push_back(Event::IkeSaUp {
            sa: self.id(),
            local: self.local,
            remote: self.remote,
            peer_id: idr.clone(),
            nat_t: self.nat_t,
        });
        // First child SA.
        let ni = self.ni.clone();
        let nr = self.nr.clone();
        match self.child_from_response(now, payloads, child_spi, None, &ni, &nr) {
            Ok(info) => self.events.push_back(Event::ChildSaUp(info)),
            Err(reason) => self.events.push_back(Event::ChildSaFailed {
                sa: self.id(),
                reason,
            }),
        }
    }

    /// Initiator side of a child SA: check the responder's answer and derive keys.
    fn child_from_response(
        &mut self,
        now: Instant,
        payloads: &[Payload],
        local_spi: u32,
        g_ir: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
    ) -> Result<ChildSaInfo, String> {
        if let Some(e) = first_error(payloads) {
            return Err(format!("peer refused child SA: {e:?}"));
        }
        let mut sa = None;
        let mut tsi = None;
        let mut tsr = None;
        for p in payloads {
            match p {
                Payload::SecurityAssociation(s) => sa = Some(s),
                Payload::TsInitiator(t) => tsi = Some(t),
                Payload::TsResponder(t) => tsr = Some(t),
                _ => {}
            }
        }
        let (Some(sa), Some(tsi), Some(tsr)) = (sa, tsi, tsr) else {
            return Err("child SA answer incomplete".into());
        };
        if sa.proposals.len() != 1 {
            return Err("responder must choose exactly one proposal".into());
        }
        let with_dh = g_ir.is_some();
        let (choice, _) = proposal::select_esp(&self.cfg.esp_proposals, sa, with_dh, local_spi)
            .ok_or("responder chose an ESP proposal we did not offer")?;
        let (lts, rts) = (child::ranges(tsi), child::ranges(tsr));
        if lts.is_empty() || rts.is_empty() {
            return Err("empty traffic selectors".into());
        }
        self.install_child(
            local_spi, choice, g_ir, ni, nr, true, lts, rts, None, now, true,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn install_child(
        &mut self,
        local_spi: u32,
        choice: proposal::EspChoice,
        g_ir: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
        exchange_initiator: bool,
        local_ts: Vec<dodvpn_wire::TsRange>,
        remote_ts: Vec<dodvpn_wire::TsRange>,
        rekey_of: Option<u32>,
        now: Instant,
        switch_outbound: bool,
    ) -> Result<ChildSaInfo, String> {
        let prf = self.suite.expect("keys").prf;
        let sk_d = &self.keys.as_ref().expect("keys").sk_d;
        let (i2r, r2i) = keys::child_keymat(prf, sk_d, g_ir, ni, nr, choice.aead.keymat_len())
            .map_err(|e| e.to_string())?;
        let (keymat_out, keymat_in) = if exchange_initiator {
            (i2r, r2i)
        } else {
            (r2i, i2r)
        };
        let c = ChildSa {
            local_spi,
            remote_spi: choice.peer_spi,
            aead: choice.aead,
            esn: choice.esn,
            local_ts: local_ts.clone(),
            remote_ts: remote_ts.clone(),
            keymat_in: keymat_in.clone(),
            keymat_out: keymat_out.clone(),
            rekey_at: self.cfg.rekey_time.map(|t| now + self.jittered(t)),
            expire_at: self.cfg.life_time.map(|t| now + t),
            rekey: RekeyState::Idle,
        };
        self.children.push(c);
        Ok(ChildSaInfo {
            ike_sa: self.id(),
            local_spi,
            remote_spi: choice.peer_spi,
            aead: choice.aead,
            esn: choice.esn,
            keymat_in,
            keymat_out,
            local_ts,
            remote_ts,
            local_addr: self.local,
            remote_addr: self.remote,
            udp_encap: self.nat_t,
            rekey_of,
            switch_outbound,
        })
    }

    fn on_create_response(
        &mut self,
        now: Instant,
        payloads: &[Payload],
        kind: CreateKind,
        nonce: Vec<u8>,
        dh: Option<DhPrivate>,
        spi: u64,
    ) {
        if let Some(n) = find_notify(payloads, NotifyType::InvalidKePayload) {
            if let Some(g) = n.requested_group().and_then(Group::from_id) {
                let allowed = match kind {
                    CreateKind::RekeyIke => self.cfg.ike_proposals.iter().any(|s| s.group == g),
                    _ => self.cfg.esp_proposals.iter().any(|s| s.pfs == Some(g)),
                };
                if allowed && dh.as_ref().map(|d| d.group()) != Some(g) {
                    self.queue.push_front(Request::Create {
                        kind,
                        group: Some(g),
                    });
                    return;
                }
            }
        }
        let nr = payloads.iter().find_map(|p| match p {
            Payload::Nonce(n) => Some(n.clone()),
            _ => None,
        });
        let ke = payloads.iter().find_map(|p| match p {
            Payload::KeyExchange(k) => Some(k.clone()),
            _ => None,
        });
        let fail_child = |me: &mut IkeSa, reason: String| {
            me.events.push_back(Event::ChildSaFailed {
                sa: me.id(),
                reason,
            });
            me.rekey_failed(now, kind);
        };
        if let Some(e) = first_error(payloads) {
            return fail_child(self, format!("CREATE_CHILD_SA refused: {e:?}"));
        }
        let Some(nr) = nr else {
            return fail_child(self, "no nonce in CREATE_CHILD_SA response".into());
        };
        let g_ir = match (dh, ke) {
            (Some(d), Some(k)) if k.group == d.group().id() => match d.agree(&k.data) {
                Ok(g) => Some(g),
                Err(_) => return fail_child(self, "bad KE".into()),
            },
            (None, None) => None,
            _ => return fail_child(self, "KE mismatch in CREATE_CHILD_SA response".into()),
        };
        match kind {
            CreateKind::RekeyIke => {
                let Some(sa) = payloads.iter().find_map(|p| match p {
                    Payload::SecurityAssociation(s) => Some(s),
                    _ => None,
                }) else {
                    return fail_child(self, "no SA".into());
                };
                let Some(suite) = proposal::accept_ike_answer(&self.cfg.ike_proposals, sa) else {
                    return fail_child(self, "bad IKE rekey proposal".into());
                };
                let Some(peer_spi) = sa.proposals[0].spi_u64() else {
                    return fail_child(self, "bad SPI".into());
                };
                let Some(g_ir) = g_ir else {
                    return fail_child(self, "IKE rekey without KE".into());
                };
                if suite.group.id() != ke_group_of(payloads) {
                    return fail_child(self, "KE group mismatch".into());
                }
                let Some(ours) =
                    self.build_rekeyed(now, suite, &g_ir, &nonce, &nr, spi, peer_spi, true)
                else {
                    return fail_child(self, "cannot derive the rekeyed IKE SA's keys".into());
                };
                let ours_redundant = match self.ike_collision.take() {
                    None => {
                        self.adopt(now, ours);
                        false
                    }
                    Some((theirs, their_min)) => {
                        // §2.8.2: the SA of the exchange with the lowest nonce is
                        // redundant; its initiator deletes it, the other peer the old SA.
                        if nonce_lt(nonce_min(&nonce, &nr), &their_min) {
                            tracing::debug!("IKE rekey collision: ours is redundant");
                            self.adopt(now, *theirs);
                            let mut r = ours;
                            r.ike_rekey_at = None;
                            r.enqueue(now, Request::DeleteIke);
                            self.spawned.push(r);
                            true
                        } else {
                            tracing::debug!("IKE rekey collision: ours survives");
                            self.adopt(now, ours);
                            let mut t = *theirs;
                            t.ike_rekey_at = None;
                            self.spawned.push(t);
                            false
                        }
                    }
                };
                self.state = State::Rekeyed;
                self.queue.clear();
                if !ours_redundant {
                    // §2.18: the rekey initiator deletes the old IKE SA.
                    self.queue.push_back(Request::DeleteIke);
                }
            }
            CreateKind::NewChild | CreateKind::RekeyChild(_) => {
                let rekey_of = match kind {
                    CreateKind::RekeyChild(old) => Some(old),
                    _ => None,
                };
                match self.child_from_response(
                    now,
                    payloads,
                    spi as u32,
                    g_ir.as_deref(),
                    &nonce,
                    &nr,
                ) {
                    Ok(mut info) => {
                        info.rekey_of = rekey_of;
                        let Some(old) = rekey_of else {
                            self.events.push_back(Event::ChildSaUp(info));
                            return;
                        };
                        self.set_child_rekey(old, RekeyState::Replaced);
                        let collision = self
                            .child_collisions
                            .iter()
                            .position(|c| c.0 == old)
                            .map(|i| self.child_collisions.remove(i));
                        let redundant = collision.is_some_and(|(_, _, their_min)| {
                            nonce_lt(nonce_min(&nonce, &nr), &their_min)
                        });
                        if redundant {
                            // §2.8.1: our exchange had the lowest nonce, so the SA we
                            // created is redundant and ours to delete; the peer
                            // deletes the old one. Never reported, never used.
                            tracing::debug!(
                                "child rekey collision: our SA {:08x} is redundant",
                                info.local_spi
                            );
                            if let Some(c) = self
                                .children
                                .iter_mut()
                                .find(|c| c.local_spi == info.local_spi)
                            {
                                c.rekey = RekeyState::Replaced;
                                c.rekey_at = None;
                            }
                            self.queue.push_back(Request::DeleteChild(info.local_spi));
                        } else {
                            self.events.push_back(Event::ChildSaUp(info));
                            // §2.8: delete the old child SA.
                            self.queue.push_back(Request::DeleteChild(old));
                        }
                    }
                    Err(reason) => fail_child(self, reason),
                }
            }
        }
    }

    /// Build the IKE SA an IKE rekey created (no children yet).
    #[allow(clippy::too_many_arguments)]
    fn build_rekeyed(
        &self,
        now: Instant,
        suite: IkeSuite,
        g_ir: &[u8],
        ni: &[u8],
        nr: &[u8],
        our_spi: u64,
        peer_spi: u64,
        we_initiated: bool,
    ) -> Option<IkeSa> {
        let old = self.keys.as_ref().expect("keys");
        let old_prf = self.suite.expect("keys").prf;
        let seed = keys::rekey_skeyseed(old_prf, &old.sk_d, g_ir, ni, nr);
        let (spi_i, spi_r) = if we_initiated {
            (our_spi, peer_spi)
        } else {
            (peer_spi, our_spi)
        };
        let new_keys =
            keys::derive_ike_keys(suite.prf, suite.cipher, &seed, ni, nr, spi_i, spi_r).ok()?;
        let mut n = IkeSa::blank(self.cfg.clone(), now, we_initiated, self.local, self.remote);
        n.spi_i = spi_i;
        n.spi_r = spi_r;
        n.state = State::Established;
        n.nat_t = self.nat_t;
        n.local_behind_nat = self.local_behind_nat;
        n.suite = Some(suite);
        n.keys = Some(new_keys);
        n.ni = ni.to_vec();
        n.nr = nr.to_vec();
        n.peer_id = self.peer_id.clone();
        n.start_ike_timers(now);
        Some(n)
    }

    /// Make `n` our successor: move the children and the child requests still
    /// queued over, and hand it to the endpoint.
    fn adopt(&mut self, now: Instant, mut n: IkeSa) {
        n.children = std::mem::take(&mut self.children);
        for r in std::mem::take(&mut self.queue) {
            match r {
                Request::DeleteChild(_)
                | Request::Create {
                    kind: CreateKind::NewChild | CreateKind::RekeyChild(_),
                    ..
                } => n.queue.push_back(r),
                other => self.queue.push_back(other),
            }
        }
        n.pump(now);
        self.events.push_back(Event::IkeSaRekeyed {
            old: self.id(),
            new: n.id(),
        });
        self.spawned.push(n);
    }

    /// Our rekey failed: try again later, unless the peer's colliding rekey
    /// already replaced the SA.
    fn rekey_failed(&mut self, now: Instant, kind: CreateKind) {
        match kind {
            CreateKind::NewChild => {}
            CreateKind::RekeyChild(old) => {
                if let Some(i) = self.child_collisions.iter().position(|c| c.0 == old) {
                    self.child_collisions.remove(i);
                    self.set_child_rekey(old, RekeyState::Replaced);
                } else {
                    let retry = self.rekey_retry(self.cfg.rekey_time);
                    if let Some(c) = self.children.iter_mut().find(|c| c.local_spi == old) {
                        if c.rekey == RekeyState::Requested {
                            c.rekey = RekeyState::Idle;
                            c.rekey_at = Some(now + retry);
                        }
                    }
                }
            }
            CreateKind::RekeyIke => {
                if let Some((theirs, _)) = self.ike_collision.take() {
                    self.adopt(now, *theirs);
                    self.state = State::Rekeyed;
                    self.queue.clear();
                } else if self.state == State::Established {
                    self.ike_rekey_at = Some(now + self.rekey_retry(self.cfg.ike_rekey_time));
                }
            }
        }
    }

    fn set_child_rekey(&mut self, local_spi: u32, st: RekeyState) {
        if let Some(c) = self.children.iter_mut().find(|c| c.local_spi == local_spi) {
            c.rekey = st;
            c.rekey_at = None;
        }
    }

    /// Whether our CREATE_CHILD_SA of this kind is in flight.
    fn create_in_flight(&self, f: impl Fn(CreateKind) -> bool) -> bool {
        matches!(&self.pending, Some(Pending { ctx: Ctx::Create { kind, .. }, .. }) if f(*kind))
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
            if let Some((rid, resp)) = &self.last_resp {
                if *rid == id {
                    let resp = resp.clone();
                    self.send_raw(now, resp);
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
        let Ok(payloads) = self.decrypt(bytes) else {
            return;
        };
        self.last_recv = now;
        self.peer_next_req_id = id.wrapping_add(1);
        // §2.23: follow the peer's address (NAT mapping changes, float to 4500).
        if self.state == State::InitDone || self.nat_t || to.port() == self.cfg.nat_t_port {
            self.remote = from;
            self.local = to;
            if to.port() == self.cfg.nat_t_port {
                self.nat_t = true;
            }
        }
        match header.exchange_type {
            ExchangeType::IkeAuth if self.state == State::InitDone => {
                self.on_auth_request(now, id, &payloads)
            }
            ExchangeType::Informational => self.on_informational(now, id, &payloads),
            ExchangeType::CreateChildSa => self.on_create_request(now, id, &payloads),
            other => {
                // Unknown exchange on an established SA: answer empty-handed.
                self.respond(now, other, id, &[]);
            }
        }
    }

    fn on_auth_request(&mut self, now: Instant, id: u32, payloads: &[Payload]) {
        let mut idi = None;
        let mut cert = None;
        let mut a = None;
        let mut sa = None;
        let mut tsi = None;
        let mut tsr = None;
        for p in payloads {
            match p {
                Payload::IdInitiator(i) => idi = Some(i),
                Payload::Certificate(c) if cert.is_none() => cert = Some(c),
                Payload::Authentication(x) => a = Some(x),
                Payload::SecurityAssociation(s) => sa = Some(s),
                Payload::TsInitiator(t) => tsi = Some(t),
                Payload::TsResponder(t) => tsr = Some(t),
                _ => {}
            }
        }
        let suite = self.suite.expect("keys");
        let verdict = match (idi, a) {
            (Some(idi), Some(a)) => {
                let keys = self.keys.as_ref().expect("keys");
                let octets = auth::signed_octets(&self.msg1, &self.nr, suite.prf, &keys.sk_pi, idi);
                self.verify_peer(idi, cert, a, &octets)
            }
            _ => Err("IKE_AUTH without IDi/AUTH".into()),
        };
        if let Err(reason) = verdict {
            self.respond(
                now,
                ExchangeType::IkeAuth,
                id,
                &[notify(NotifyType::AuthenticationFailed, vec![])],
            );
            self.events.push_back(Event::AuthFailed {
                sa: self.id(),
                reason: reason.clone(),
            });
            self.close(DownReason::Failed(format!(
                "peer authentication failed: {reason}"
            )));
            return;
        }
        let idi = idi.expect("checked").clone();
        let keys = self.keys.as_ref().expect("keys");
        let octets = auth::signed_octets(
            &self.msg2,
            &self.ni,
            suite.prf,
            &keys.sk_pr,
            &self.cfg.local_id,
        );
        let our_auth = match auth::make_auth(&self.cfg.local_auth, suite.prf, &octets) {
            Ok(a) => a,
            Err(e) => {
                self.respond(
                    now,
                    ExchangeType::IkeAuth,
                    id,
                    &[notify(NotifyType::AuthenticationFailed, vec![])],
                );
                self.close(DownReason::Failed(format!("cannot sign: {e}")));
                return;
            }
        };
        let mut out = vec![Payload::IdResponder(self.cfg.local_id.clone())];
        if let LocalAuth::Cert { cert_der, .. } = &self.cfg.local_auth {
            out.push(Payload::Certificate(Certificate {
                encoding: CertEncoding::X509Signature,
                data: cert_der.clone(),
            }));
        }
        out.push(Payload::Authentication(our_auth));
        self.peer_id = Some(idi.clone());
        self.state = State::Established;
        self.start_ike_timers(now);
        self.events.push_back(Event::IkeSaUp {
            sa: self.id(),
            local: self.local,
            remote: self.remote,
            peer_id: idi,
            nat_t: self.nat_t,
        });
        let (ni, nr) = (self.ni.clone(), self.nr.clone());
        if let (Some(sa), Some(tsi), Some(tsr)) = (sa, tsi, tsr) {
            match self.child_for_request(now, sa, tsi, tsr, None, false, &ni, &nr, None) {
                Ok((info, reply)) => {
                    out.extend(reply);
                    self.events.push_back(Event::ChildSaUp(info));
                }
                Err(n) => {
                    self.events.push_back(Event::ChildSaFailed {
                        sa: self.id(),
                        reason: format!("{n:?}"),
                    });
                    out.push(notify(n, vec![]));
                }
            }
        }
        self.respond(now, ExchangeType::IkeAuth, id, &out);
    }

    /// Responder side of a child SA: select, narrow, derive. Returns the info
    /// and the payloads of the answer (SA, [KEr], TSi, TSr), or the error notify.
    #[allow(clippy::too_many_arguments)]
    fn child_for_request(
        &mut self,
        now: Instant,
        sa: &Sa,
        tsi: &[TrafficSelector],
        tsr: &[TrafficSelector],
        ke: Option<&KeyExchange>,
        with_dh: bool,
        ni: &[u8],
        nr: &[u8],
        rekey_of: Option<u32>,
    ) -> Result<(ChildSaInfo, Vec<Payload>), NotifyType> {
        let local_spi = random_spi(&self.rng);
        let (choice, answer) =
            proposal::select_esp(&self.cfg.esp_proposals, sa, with_dh, local_spi)
                .ok_or(NotifyType::NoProposalChosen)?;
        // §2.9: narrow the initiator's proposal to our policy.
        let remote_ts = child::narrow(tsi, &self.cfg.remote_ts);
        let local_ts = child::narrow(tsr, &self.cfg.local_ts);
        if remote_ts.is_empty() || local_ts.is_empty() {
            return Err(NotifyType::TsUnacceptable);
        }
        let mut reply = vec![Payload::SecurityAssociation(Sa {
            proposals: vec![answer],
        })];
        let g_ir = match choice.pfs {
            Some(g) => {
                let ke = ke.ok_or(NotifyType::InvalidKePayload)?;
                if ke.group != g.id() {
                    return Err(NotifyType::InvalidKePayload);
                }
                let d =
                    DhPrivate::generate(g, &self.rng).map_err(|_| NotifyType::NoProposalChosen)?;
                reply.push(Payload::KeyExchange(KeyExchange {
                    group: g.id(),
                    data: d.public_value().to_vec(),
                }));
                Some(d.agree(&ke.data).map_err(|_| NotifyType::InvalidSyntax)?)
            }
            None => None,
        };
        reply.push(Payload::TsInitiator(child::to_wire(&remote_ts)));
        reply.push(Payload::TsResponder(child::to_wire(&local_ts)));
        let info = self
            .install_child(
                local_spi,
                choice,
                g_ir.as_deref(),
                ni,
                nr,
                false,
                local_ts,
                remote_ts,
                rekey_of,
                now,
                rekey_of.is_none(),
            )
            .map_err(|_| NotifyType::NoProposalChosen)?;
        Ok((info, reply))
    }

    fn on_create_request(&mut self, now: Instant, id: u32, payloads: &[Payload]) {
        if self.state != State::Established {
            self.respond(
                now,
                ExchangeType::CreateChildSa,
                id,
                &[notify(NotifyType::TemporaryFailure, vec![])],
            );
            return;
        }
        let mut sa = None;
        let mut ni = None;
        let mut ke = None;
        let mut tsi = None;
        let mut tsr = None;
        for p in payloads {
            match p {
                Payload::SecurityAssociation(s) => sa = Some(s),
                Payload::Nonce(n) => ni = Some(n.clone()),
                Payload::KeyExchange(k) => ke = Some(k),
                Payload::TsInitiator(t) => tsi = Some(t),
                Payload::TsResponder(t) => tsr = Some(t),
                _ => {}
            }
        }
        let (Some(sa), Some(ni)) = (sa, ni) else {
            return self.respond(
                now,
                ExchangeType::CreateChildSa,
                id,
                &[notify(NotifyType::InvalidSyntax, vec![])],
            );
        };
        let nr = random_bytes(&self.rng, NONCE_LEN);
        if sa.proposals.iter().any(|p| p.protocol == ProtocolId::Ike) {
            // IKE SA rekey (§1.3.2). Not while our own child SA exchange is in
            // flight: its result would land on the SA being replaced (§2.25).
            if self.create_in_flight(|k| k != CreateKind::RekeyIke) {
                return self.respond(
                    now,
                    ExchangeType::CreateChildSa,
                    id,
                    &[notify(NotifyType::TemporaryFailure, vec![])],
                );
            }
            match proposal::select_ike(&self.cfg.ike_proposals, sa, ke.map(|k| k.group)) {
                IkeSelection::Chosen(suite, mut chosen) => {
                    let (Some(ke), Some(peer_spi)) = (ke, chosen.spi_u64()) else {
                        return self.respond(
                            now,
                            ExchangeType::CreateChildSa,
                            id,
                            &[notify(NotifyType::InvalidSyntax, vec![])],
                        );
                    };
                    let Ok(d) = DhPrivate::generate(suite.group, &self.rng) else {
                        return;
                    };
                    let public = d.public_value().to_vec();
                    let Ok(g_ir) = d.agree(&ke.data) else {
                        return self.respond(
                            now,
                            ExchangeType::CreateChildSa,
                            id,
                            &[notify(NotifyType::InvalidSyntax, vec![])],
                        );
                    };
                    let our_spi = random_u64(&self.rng);
                    chosen.spi = our_spi.to_be_bytes().to_vec();
                    let reply = vec![
                        Payload::SecurityAssociation(Sa {
                            proposals: vec![chosen],
                        }),
                        Payload::Nonce(nr.clone()),
                        Payload::KeyExchange(KeyExchange {
                            group: suite.group.id(),
                            data: public,
                        }),
                    ];
                    self.respond(now, ExchangeType::CreateChildSa, id, &reply);
                    let Some(n) =
                        self.build_rekeyed(now, suite, &g_ir, &ni, &nr, our_spi, peer_spi, false)
                    else {
                        return;
                    };
                    if self.create_in_flight(|k| k == CreateKind::RekeyIke) {
                        // §2.8.2: both rekey at once; decided when our answer comes.
                        self.ike_collision = Some((Box::new(n), nonce_min(&ni, &nr).to_vec()));
                        return;
                    }
                    self.queue.retain(|r| {
                        !matches!(
                            r,
                            Request::Create {
                                kind: CreateKind::RekeyIke,
                                ..
                            }
                        )
                    });
                    self.adopt(now, n);
                    // Wait for the peer's DELETE of this (old) SA.
                    self.state = State::Rekeyed;
                    self.queue.clear();
                }
                IkeSelection::InvalidKe(g) => self.respond(
                    now,
                    ExchangeType::CreateChildSa,
                    id,
                    &[Payload::Notify(Notify::invalid_ke_payload(g.id()))],
                ),
                IkeSelection::NoProposalChosen => self.respond(
                    now,
                    ExchangeType::CreateChildSa,
                    id,
                    &[notify(NotifyType::NoProposalChosen, vec![])],
                ),
            }
            return;
        }
        let (Some(tsi), Some(tsr)) = (tsi, tsr) else {
            return self.respond(
                now,
                ExchangeType::CreateChildSa,
                id,
                &[notify(NotifyType::InvalidSyntax, vec![])],
            );
        };
        let rekey_of = match find_notify(payloads, NotifyType::RekeySa) {
            Some(n) => {
                let old = n
                    .spi_u32()
                    .and_then(|s| self.children.iter().find(|c| c.remote_spi == s));
                match old {
                    Some(c) if c.rekey == RekeyState::Replaced => {
                        // Already replaced (and being deleted): §2.25 TEMPORARY_FAILURE.
                        return self.respond(
                            now,
                            ExchangeType::CreateChildSa,
                            id,
                            &[notify(NotifyType::TemporaryFailure, vec![])],
                        );
                    }
                    Some(c) => Some(c.local_spi),
                    None => {
                        let spi = n.spi_u32().unwrap_or(0);
                        return self.respond(
                            now,
                            ExchangeType::CreateChildSa,
                            id,
                            &[Payload::Notify(Notify::with_spi(
                                ProtocolId::Esp,
                                spi,
                                NotifyType::ChildSaNotFound,
                                vec![],
                            ))],
                        );
                    }
                }
            }
            None => None,
        };
        let lowest = nonce_min(&ni, &nr).to_vec();
        match self.child_for_request(now, sa, tsi, tsr, ke, true, &ni, &nr, rekey_of) {
            Ok((info, reply)) => {
                if let Some(old) = rekey_of {
                    if self.create_in_flight(|k| k == CreateKind::RekeyChild(old)) {
                        // §2.8.1: we are rekeying it too; decided when our answer comes.
                        self.child_collisions.push((old, info.local_spi, lowest));
                    } else {
                        self.queue.retain(|r| !matches!(r, Request::Create { kind: CreateKind::RekeyChild(x), .. } if *x == old));
                        self.set_child_rekey(old, RekeyState::Replaced);
                    }
                }
                let mut out = vec![Payload::SecurityAssociation(Sa::default())];
                out.clear();
                let mut it = reply.into_iter();
                out.push(it.next().expect("SA"));
                out.push(Payload::Nonce(nr));
                out.extend(it);
                self.respond(now, ExchangeType::CreateChildSa, id, &out);
                self.events.push_back(Event::ChildSaUp(info));
            }
            Err(NotifyType::InvalidKePayload) => {
                let g = self
                    .cfg
                    .esp_proposals
                    .iter()
                    .find_map(|s| s.pfs)
                    .map(|g| g.id())
                    .unwrap_or(dodvpn_wire::DhGroup::None);
                self.respond(
                    now,
                    ExchangeType::CreateChildSa,
                    id,
                    &[Payload::Notify(Notify::invalid_ke_payload(g))],
                );
            }
            Err(n) => self.respond(now, ExchangeType::CreateChildSa, id, &[notify(n, vec![])]),
        }
    }

    fn on_informational(&mut self, now: Instant, id: u32, payloads: &[Payload]) {
        let mut out = Vec::new();
        let mut delete_ike = false;
        for p in payloads {
            match p {
                Payload::Delete(d) if d.protocol == ProtocolId::Ike => delete_ike = true,
                Payload::Delete(d) if d.protocol == ProtocolId::Esp || d.protocol == ProtocolId::Ah => {
                    let mut ours = Vec::new();
                    for spi in d.spis_u32() {
                        if let Some(i) = self.children.iter().position(|c| c.remote_spi == spi) {
                            let c = self.children.remove(i);
                            ours.push(c.local_spi);
                            self.events.push_back(Event::ChildSaDeleted {
                                sa: self.id(),
                                local_spi: c.local_spi,
                                remote_spi: c.remote_spi,
                            });
                        }
                    }
                    // §1.4.1: the response carries the paired DELETE.
                    if !ours.is_empty() {
                        out.push(Payload::Delete(Delete::esp(&ours)));
                    }
                }
                Payload::Notify(n) => match n.notify_type {
                    // RFC 4555 §3.5 / §3.8: MOBIKE address update and return routability.
                    NotifyType::UpdateSaAddresses
                        if payloads.iter().any(|q| matches!(q, Payload::Notify(m) if m.notify_type == NotifyType::NatDetectionSourceIp)) =>
                    {
                        out.extend(self.nat_notifies(self.spi_r));
                    }
                    NotifyType::Cookie2 => out.push(notify(NotifyType::Cookie2, n.data.clone())),
                    _ => {}
                },
                _ => {}
            }
        }
        self.respond(now, ExchangeType::Informational, id, &out);
        if delete_ike {
            self.close(if self.state == State::Rekeyed {
                DownReason::Rekeyed
            } else {
                DownReason::PeerDeleted
            });
        }
    }
}

fn find_payload_auth(payloads: &[Payload]) -> Option<&dodvpn_wire::Auth> {
    payloads.iter().find_map(|p| match p {
        Payload::Authentication(a) => Some(a),
        _ => None,
    })
}

fn ke_group_of(payloads: &[Payload]) -> dodvpn_wire::DhGroup {
    payloads
        .iter()
        .find_map(|p| match p {
            Payload::KeyExchange(k) => Some(k.group),
            _ => None,
        })
        .unwrap_or(dodvpn_wire::DhGroup::None)
}

/// Constant for tests/tools: the default half-open lifetime.
pub const DEFAULT_HALF_OPEN: Duration = Duration::from_secs(30);

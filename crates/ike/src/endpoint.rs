//! The endpoint: routes datagrams to IKE SAs by SPI, answers new
//! IKE_SA_INIT requests (proposal selection, INVALID_KE_PAYLOAD, stateless
//! COOKIEs, RFC 7296 §2.6) and collects transmits and events.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dodvpn_wire::{ExchangeType, Flags, IkeHeader, Message, Notify, NotifyType, Payload};
use ring::hmac;

use crate::proposal::{self, IkeSelection};
use crate::rng::Rng;
use crate::sa::payloads::Found;
use crate::sa::IkeSa;
use crate::{Config, Error, Event, SaId, Transmit};

/// How often the cookie secret rotates; the previous one stays valid.
const COOKIE_ROTATION: Duration = Duration::from_secs(120);

/// An IKE endpoint with one configuration and any number of IKE SAs.
pub struct Endpoint {
    cfg: Arc<Config>,
    rng: Rng,
    sas: HashMap<SaId, IkeSa>,
    /// (SPIi, initiator address) → our SPI for SAs we answered, so a
    /// retransmitted or replayed IKE_SA_INIT never creates a second SA.
    half_open: HashMap<(u64, SocketAddr), SaId>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    cookie_secret: [u8; 32],
    cookie_prev: Option<[u8; 32]>,
    cookie_version: u8,
    cookie_rotate_at: Option<Instant>,
}

impl Endpoint {
    pub fn new(cfg: Config) -> Endpoint {
        Endpoint::with_rng(cfg, Rng::system())
    }

    /// An endpoint whose nonces, SPIs, cookie secrets and rekey jitter come from
    /// a deterministic stream seeded with `seed` (Diffie-Hellman keys and IVs
    /// still come from the OS): for tests and fuzzing that must replay a run,
    /// e.g. choose which end of a rekey collision has the lower nonce. Never
    /// for production, where these values must be unpredictable.
    pub fn with_seed(cfg: Config, seed: u64) -> Endpoint {
        Endpoint::with_rng(cfg, Rng::seeded(&seed.to_be_bytes()))
    }

    fn with_rng(cfg: Config, rng: Rng) -> Endpoint {
        let mut cookie_secret = [0u8; 32];
        rng.fill(&mut cookie_secret);
        Endpoint {
            cfg: Arc::new(cfg),
            rng,
            sas: HashMap::new(),
            half_open: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            cookie_secret,
            cookie_prev: None,
            cookie_version: 0,
            cookie_rotate_at: None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Start an IKE SA to `remote` (as initiator); the first child SA uses
    /// the configured selectors.
    pub fn connect(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<SaId, Error> {
        let sa = IkeSa::connect_with(self.cfg.clone(), self.rng.fork(), now, local, remote)?;
        let id = sa.id();
        self.sas.insert(id, sa);
        self.collect();
        Ok(id)
    }

    /// The configuration as shared with this endpoint's SAs.
    pub fn shared_config(&self) -> Arc<Config> {
        self.cfg.clone()
    }

    /// Whether `datagram` from `from` belongs to one of our SAs: by our SPI, or a
    /// retransmitted IKE_SA_INIT we already answered.
    pub fn owns(&self, from: SocketAddr, datagram: &[u8]) -> bool {
        let Ok(h) = IkeHeader::parse(datagram) else {
            return false;
        };
        if h.exchange_type == ExchangeType::IkeSaInit && !h.flags.response() && h.spi_r == 0 {
            return self.half_open.contains_key(&(h.spi_i, from));
        }
        let ours = if h.flags.initiator() {
            h.spi_r
        } else {
            h.spi_i
        };
        self.sas.contains_key(&ours)
    }

    /// Hand an SA to another endpoint (with [`Endpoint::adopt`]): a responder SA
    /// answered here before the peer's identity was known.
    pub fn take_sa(&mut self, id: SaId) -> Option<IkeSa> {
        self.half_open.retain(|_, v| *v != id);
        self.sas.remove(&id)
    }

    /// Take over an SA from another endpoint; its timers and datagrams are ours now.
    pub fn adopt(&mut self, sa: IkeSa) {
        self.sas.insert(sa.id(), sa);
        self.collect();
    }

    pub fn sa(&self, id: SaId) -> Option<&IkeSa> {
        self.sas.get(&id)
    }

    pub fn sa_ids(&self) -> Vec<SaId> {
        let mut v: Vec<SaId> = self.sas.keys().copied().collect();
        v.sort_unstable();
        v
    }

    fn with_sa(&mut self, id: SaId, f: impl FnOnce(&mut IkeSa)) -> bool {
        let found = match self.sas.get_mut(&id) {
            Some(sa) => {
                f(sa);
                true
            }
            None => false,
        };
        self.collect();
        found
    }

    pub fn send_liveness(&mut self, now: Instant, sa: SaId) -> bool {
        self.with_sa(sa, |s| s.send_liveness(now))
    }
    pub fn create_child(&mut self, now: Instant, sa: SaId) -> bool {
        self.with_sa(sa, |s| s.create_child(now))
    }
    pub fn rekey_child(&mut self, now: Instant, sa: SaId, local_spi: u32) -> bool {
        self.with_sa(sa, |s| s.rekey_child(now, local_spi))
    }
    pub fn rekey_ike(&mut self, now: Instant, sa: SaId) -> bool {
        self.with_sa(sa, |s| s.rekey(now))
    }
    pub fn delete_child(&mut self, now: Instant, sa: SaId, local_spi: u32) -> bool {
        self.with_sa(sa, |s| s.delete_child(now, local_spi))
    }
    pub fn delete_ike(&mut self, now: Instant, sa: SaId) -> bool {
        self.with_sa(sa, |s| s.delete(now))
    }
    /// [`IkeSa::resend_init`]: true if an IKE_SA_INIT left again.
    pub fn resend_init(&mut self, now: Instant, sa: SaId) -> bool {
        let mut sent = false;
        self.with_sa(sa, |s| sent = s.resend_init(now));
        sent
    }
    /// [`IkeSa::update_addresses`]: true if the SA moves (MOBIKE).
    pub fn update_addresses(&mut self, now: Instant, sa: SaId, local: SocketAddr) -> bool {
        let mut moved = false;
        self.with_sa(sa, |s| moved = s.update_addresses(now, local));
        moved
    }

    /// Handle one received IKE datagram (non-ESP marker already stripped for
    /// the NAT-T port). Garbage is dropped silently.
    pub fn handle(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, datagram: &[u8]) {
        let Ok(header) = IkeHeader::parse(datagram) else {
            return;
        };
        if header.length as usize != datagram.len() {
            return;
        }
        if header.exchange_type == ExchangeType::IkeSaInit
            && !header.flags.response()
            && header.spi_r == 0
            && header.message_id == 0
        {
            if let Some(id) = self.half_open.get(&(header.spi_i, from)).copied() {
                if let Some(sa) = self.sas.get_mut(&id) {
                    sa.handle(now, from, to, datagram);
                }
            } else {
                self.new_responder(now, from, to, &header, datagram);
            }
            self.collect();
            return;
        }
        // The sender's I flag tells which SPI is ours.
        let ours = if header.flags.initiator() {
            header.spi_r
        } else {
            header.spi_i
        };
        if let Some(sa) = self.sas.get_mut(&ours) {
            sa.handle(now, from, to, datagram);
        }
        self.collect();
    }

    fn cookie_for(
        &self,
        secret: &[u8; 32],
        version: u8,
        ni: &[u8],
        ip: IpAddr,
        spi_i: u64,
    ) -> Vec<u8> {
        // §2.6: Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>).
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(ni);
        match ip {
            IpAddr::V4(a) => ctx.update(&a.octets()),
            IpAddr::V6(a) => ctx.update(&a.octets()),
        }
        ctx.update(&spi_i.to_be_bytes());
        let mut v = vec![version];
        v.extend_from_slice(&ctx.sign().as_ref()[..16]);
        v
    }

    fn rotate_cookie_secret(&mut self, now: Instant) {
        match self.cookie_rotate_at {
            None => self.cookie_rotate_at = Some(now + COOKIE_ROTATION),
            Some(t) if now >= t => {
                self.cookie_prev = Some(self.cookie_secret);
                self.rng.fill(&mut self.cookie_secret);
                self.cookie_version = self.cookie_version.wrapping_add(1);
                self.cookie_rotate_at = Some(now + COOKIE_ROTATION);
            }
            _ => {}
        }
    }

    fn cookie_valid(&self, cookie: &[u8], ni: &[u8], ip: IpAddr, spi_i: u64) -> bool {
        let Some(&v) = cookie.first() else {
            return false;
        };
        let secret = if v == self.cookie_version {
            Some(self.cookie_secret)
        } else if v == self.cookie_version.wrapping_sub(1) {
            self.cookie_prev
        } else {
            None
        };
        secret.is_some_and(|s| {
            let want = self.cookie_for(&s, v, ni, ip, spi_i);
            crate::crypto::ct_eq(&want, cookie)
        })
    }

    /// A stateless IKE_SA_INIT answer carrying one notify.
    fn stateless_reply(&mut self, from: SocketAddr, to: SocketAddr, spi_i: u64, n: Notify) {
        let header = IkeHeader::new(
            spi_i,
            0,
            ExchangeType::IkeSaInit,
            Flags::new(false, true),
            0,
        );
        if let Ok(bytes) = Message::new(header, vec![Payload::Notify(n)]).to_bytes() {
            self.transmits.push_back(Transmit {
                to: from,
                from: to,
                bytes,
                nat_t: to.port() == self.cfg.nat_t_port,
            });
        }
    }

    fn new_responder(
        &mut self,
        now: Instant,
        from: SocketAddr,
        to: SocketAddr,
        header: &IkeHeader,
        datagram: &[u8],
    ) {
        let Ok(msg) = Message::parse(datagram) else {
            return;
        };
        let found = Found::of(&msg.payloads);
        let Some(ni) = found.nonce else { return };
        // §2.6: demand a cookie when too many SAs are half-open.
        self.rotate_cookie_secret(now);
        let half_open = self.sas.values().filter(|s| s.half_open()).count();
        if half_open >= self.cfg.cookie_threshold {
            let ok = match msg.payloads.first() {
                Some(Payload::Notify(n)) if n.notify_type == NotifyType::Cookie => {
                    self.cookie_valid(&n.data, ni, from.ip(), header.spi_i)
                }
                _ => false,
            };
            if !ok {
                let c = self.cookie_for(
                    &self.cookie_secret.clone(),
                    self.cookie_version,
                    ni,
                    from.ip(),
                    header.spi_i,
                );
                self.stateless_reply(from, to, header.spi_i, Notify::new(NotifyType::Cookie, c));
                return;
            }
        }
        let (Some(sa_payload), Some(ke_group)) = (found.sa, found.ke.map(|k| k.group)) else {
            self.stateless_reply(
                from,
                to,
                header.spi_i,
                Notify::new(NotifyType::InvalidSyntax, vec![]),
            );
            return;
        };
        match proposal::select_ike(&self.cfg.ike_proposals, sa_payload, Some(ke_group)) {
            IkeSelection::Chosen(suite, chosen) => {
                match IkeSa::accept_init(
                    self.cfg.clone(),
                    self.rng.fork(),
                    now,
                    to,
                    from,
                    datagram,
                    &msg,
                    suite,
                    chosen,
                ) {
                    Ok(sa) => {
                        let id = sa.id();
                        self.half_open.insert((header.spi_i, from), id);
                        self.sas.insert(id, sa);
                    }
                    Err(e) => {
                        tracing::debug!("IKE_SA_INIT from {from} refused: {e}");
                        self.stateless_reply(
                            from,
                            to,
                            header.spi_i,
                            Notify::new(NotifyType::InvalidSyntax, vec![]),
                        );
                    }
                }
            }
            IkeSelection::InvalidKe(g) => {
                self.stateless_reply(from, to, header.spi_i, Notify::invalid_ke_payload(g.id()))
            }
            IkeSelection::NoProposalChosen => {
                tracing::warn!(
                    peer = %from,
                    offered = %proposal::describe_sa(sa_payload),
                    accepted = %proposal::describe_ike_suites(&self.cfg.ike_proposals),
                    "IKE proposal refused: NO_PROPOSAL_CHOSEN / IKE 提案を拒否"
                );
                self.stateless_reply(
                    from,
                    to,
                    header.spi_i,
                    Notify::new(NotifyType::NoProposalChosen, vec![]),
                )
            }
        }
    }

    /// Drain SA output, register rekeyed SAs (and drain them too), drop closed ones.
    fn collect(&mut self) {
        loop {
            let mut spawned = Vec::new();
            let mut closed = Vec::new();
            let mut ids: Vec<SaId> = self.sas.keys().copied().collect();
            ids.sort_unstable();
            for id in ids {
                let sa = self.sas.get_mut(&id).expect("listed");
                while let Some(t) = sa.poll_transmit() {
                    self.transmits.push_back(t);
                }
                while let Some(e) = sa.poll_event() {
                    self.events.push_back(e);
                }
                spawned.append(&mut sa.spawned);
                if sa.is_closed() {
                    closed.push(id);
                }
            }
            for id in closed {
                self.sas.remove(&id);
                self.half_open.retain(|_, v| *v != id);
            }
            if spawned.is_empty() {
                return;
            }
            for n in spawned {
                self.sas.insert(n.id(), n);
            }
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sas.values().filter_map(|s| s.poll_timeout()).min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for sa in self.sas.values_mut() {
            if sa.poll_timeout().is_some_and(|t| t <= now) {
                sa.handle_timeout(now);
            }
        }
        self.collect();
    }
}

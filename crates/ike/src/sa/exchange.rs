//! Requests and responses (§2.1–2.3): a window of one, retransmission of our
//! requests, the cached answer for a retransmitted request, SK payload
//! protection (§3.14), and the answer to an authentic request that does not
//! parse (§2.21).

use std::time::Instant;

use dodvpn_wire::{
    emit_encrypted, emit_encrypted_fragment, emit_payload_chain, locate_encrypted,
    parse_payload_chain, Delete, ExchangeType, Flags, IkeHeader, NotifyType, Payload, PayloadType,
    IKE_HEADER_LEN,
};

use super::payloads::notify;
use super::{IkeSa, Keyed, State};
use crate::crypto::{DhPrivate, Group};
use crate::fragment::{self, Added, Fragment};
use crate::{Error, Transmit};

/// What a CREATE_CHILD_SA we started is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CreateKind {
    NewChild,
    /// Rekey of the child with this local (inbound) SPI.
    RekeyChild(u32),
    RekeyIke,
}

/// A request we want to send.
#[derive(Debug)]
pub(super) enum Request {
    Liveness,
    DeleteChild(u32),
    DeleteIke,
    /// RFC 4555 §3.5: our address changed.
    UpdateAddresses,
    Create {
        kind: CreateKind,
        group: Option<Group>,
    },
}

/// Exchange context kept while a request is outstanding.
#[derive(Debug)]
pub(super) enum Ctx {
    Init,
    Auth {
        child_spi: u32,
    },
    Liveness,
    DeleteChild(u32),
    DeleteIke,
    UpdateAddresses,
    Create {
        kind: CreateKind,
        nonce: Vec<u8>,
        dh: Option<DhPrivate>,
        /// New local SPI: ESP (u32) or IKE (u64).
        spi: u64,
    },
}

#[derive(Debug)]
pub(super) struct Pending {
    pub msg_id: u32,
    /// The request as sent: one message, or its RFC 7383 fragments.
    pub bytes: Vec<Vec<u8>>,
    pub tries: u32,
    pub deadline: Instant,
    pub ctx: Ctx,
}

/// A message that passed the integrity check: its payloads, or why they do not parse.
pub(super) type Opened = Result<Vec<Payload>, dodvpn_wire::Error>;

impl IkeSa {
    pub(super) fn send_raw(&mut self, now: Instant, bytes: Vec<u8>) {
        self.last_sent = now;
        self.transmits.push_back(Transmit {
            to: self.remote,
            from: self.local,
            bytes,
            nat_t: self.nat_t,
        });
    }

    /// Send a message or all of its fragments, in order.
    pub(super) fn send_all(&mut self, now: Instant, datagrams: &[Vec<u8>]) {
        for d in datagrams {
            self.send_raw(now, d.clone());
        }
    }

    pub(super) fn start_request(
        &mut self,
        now: Instant,
        msg_id: u32,
        bytes: Vec<Vec<u8>>,
        ctx: Ctx,
    ) {
        self.send_all(now, &bytes);
        self.pending = Some(Pending {
            msg_id,
            bytes,
            tries: 1,
            deadline: now + self.cfg.retransmit_base,
            ctx,
        });
    }

    /// The SK_e / SK_a keys for messages we send (`ours`) or receive.
    fn sk_keys<'k>(&self, keyed: &'k Keyed, ours: bool) -> (&'k [u8], &'k [u8]) {
        let k = &keyed.keys;
        if self.initiator == ours {
            (&k.sk_ei, &k.sk_ai)
        } else {
            (&k.sk_er, &k.sk_ar)
        }
    }

    /// Encrypt `payloads` into an SK message (§3.14), or, when both sides
    /// support RFC 7383 and the message would not fit in one IP datagram of the
    /// configured fragment size, into SKF fragments (§2.5).
    pub(super) fn encrypt(
        &self,
        exchange: ExchangeType,
        response: bool,
        msg_id: u32,
        payloads: &[Payload],
    ) -> Result<Vec<Vec<u8>>, Error> {
        let keyed = self
            .keyed
            .as_deref()
            .ok_or_else(|| Error::Protocol("no keys".into()))?;
        let (ek, ak) = self.sk_keys(keyed, true);
        let mut plain = Vec::new();
        let inner = emit_payload_chain(payloads, &mut plain)?;
        let header = IkeHeader::new(
            self.spi_i,
            self.spi_r,
            exchange,
            Flags::new(self.initiator, response),
            msg_id,
        );
        let cipher = keyed.suite.cipher;
        let max =
            fragment::max_message_len(self.cfg.fragment_size, self.remote.is_ipv6(), self.nat_t);
        let whole = IKE_HEADER_LEN + 4 + cipher.body_len(plain.len());
        if !self.fragmentation || whole <= max {
            let mut out = Vec::new();
            let loc = emit_encrypted(&header, &[], inner, cipher.body_len(plain.len()), &mut out)?;
            cipher.seal(ek, ak, &mut out, loc.body.start, &plain, self.rng.secure())?;
            return Ok(vec![out]);
        }
        let chunk = fragment::chunk_len(max, |n| cipher.body_len(n))
            .ok_or_else(|| Error::Config("fragment size too small".into()))?;
        let total = u16::try_from(plain.len().div_ceil(chunk))
            .map_err(|_| Error::Protocol("message too large to fragment".into()))?;
        let mut out = Vec::with_capacity(total as usize);
        for (i, part) in plain.chunks(chunk).enumerate() {
            let next = if i == 0 {
                inner
            } else {
                PayloadType::NoNextPayload
            };
            let mut m = Vec::new();
            let loc = emit_encrypted_fragment(
                &header,
                next,
                i as u16 + 1,
                total,
                cipher.body_len(part.len()),
                &mut m,
            )?;
            cipher.seal(ek, ak, &mut m, loc.body.start, part, self.rng.secure())?;
            out.push(m);
        }
        Ok(out)
    }

    /// Verify and decrypt an SK message from the peer. `Err`: not authentic (or
    /// not an SK message we take), to be dropped; `Ok(None)`: an authentic
    /// fragment (RFC 7383), stored until the message is whole; `Ok(Some(Err))`:
    /// authentic, but the payload chain inside does not parse.
    pub(super) fn open(
        &mut self,
        now: Instant,
        keyed: &Keyed,
        bytes: &[u8],
        response: bool,
    ) -> Result<Option<Opened>, Error> {
        let (ek, ak) = self.sk_keys(keyed, false);
        let loc = locate_encrypted(bytes)?;
        let mut buf = bytes.to_vec();
        let range = keyed.suite.cipher.open(ek, ak, &mut buf, loc.body.start)?;
        let Some((number, total)) = loc.fragment else {
            return Ok(Some(parse_payload_chain(loc.inner_next, &buf[range])));
        };
        // §2.5: fragments only when both sides said they support them.
        if !self.fragmentation {
            return Err(Error::Protocol(
                "IKE fragment, but fragmentation was not negotiated".into(),
            ));
        }
        let f = Fragment {
            message_id: IkeHeader::parse(bytes)?.message_id,
            number,
            total,
            inner_next: loc.inner_next,
            plain: buf[range].to_vec(),
        };
        let r = if response {
            &mut self.frag_resp
        } else {
            &mut self.frag_req
        };
        match r.add(now, f) {
            Added::Incomplete => Ok(None),
            Added::Complete(first, plain) => Ok(Some(parse_payload_chain(first, &plain))),
            Added::Refused(why) => {
                tracing::debug!("IKE SA {:016x}: fragment refused: {why}", self.id());
                Err(Error::Protocol(why.into()))
            }
        }
    }

    pub(super) fn respond(
        &mut self,
        now: Instant,
        exchange: ExchangeType,
        msg_id: u32,
        payloads: &[Payload],
    ) {
        match self.encrypt(exchange, true, msg_id, payloads) {
            Ok(bytes) => {
                self.send_all(now, &bytes);
                self.last_resp = Some((msg_id, bytes));
            }
            Err(e) => tracing::warn!("cannot encrypt response: {e}"),
        }
    }

    /// An authentic request whose payloads do not parse gets the error notify
    /// RFC 7296 names for it (§2.5 UNSUPPORTED_CRITICAL_PAYLOAD with the payload
    /// type, otherwise §2.21 INVALID_SYNTAX). In IKE_AUTH the SA is not set up.
    pub(super) fn reject_malformed(
        &mut self,
        now: Instant,
        exchange: ExchangeType,
        msg_id: u32,
        e: &dodvpn_wire::Error,
    ) {
        tracing::debug!("IKE SA {:016x}: malformed request {msg_id}: {e}", self.id());
        let (t, data) = e.notify();
        self.respond(now, exchange, msg_id, &[notify(t, data)]);
        if self.state == State::InitDone {
            self.fail(format!("malformed IKE_AUTH request: {e}"));
        }
    }

    /// Queue a request; sent when the window is free.
    pub(super) fn enqueue(&mut self, now: Instant, r: Request) {
        self.queue.push_back(r);
        self.pump(now);
    }

    pub(super) fn pump(&mut self, now: Instant) {
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
            Request::UpdateAddresses => {
                let mut p = vec![notify(NotifyType::UpdateSaAddresses, vec![])];
                p.extend(self.nat_notifies(self.spi_r));
                (ExchangeType::Informational, p, Ctx::UpdateAddresses)
            }
            Request::Create { kind, group } => self.build_create(kind, group)?,
        };
        let bytes = self.encrypt(exchange, false, id, &payloads)?;
        self.next_req_id = id.wrapping_add(1);
        self.start_request(now, id, bytes, ctx);
        Ok(())
    }
}

//! CREATE_CHILD_SA for child SAs (§1.3.1) and their rekeying (§1.3.3), with
//! simultaneous rekeys of the same child resolved by nonce (§2.8.1). The
//! request side also builds IKE rekey requests; their answers are in `rekey`.

use std::time::Instant;

use dodvpn_wire::{
    ExchangeType, KeyExchange, Notify, NotifyType, Payload, ProtocolId, Sa, TrafficSelector,
};

use super::exchange::{CreateKind, Ctx, Request};
use super::payloads::{find_notify, first_error, notify, Found};
use super::{IkeSa, Keyed, State, NONCE_LEN};
use crate::child::{self, nonce_lt, nonce_min, ChildSa, RekeyState};
use crate::crypto::{DhPrivate, Group};
use crate::keys;
use crate::proposal;
use crate::{ChildSaInfo, Error, Event};

impl IkeSa {
    pub(super) fn build_create(
        &mut self,
        kind: CreateKind,
        group: Option<Group>,
    ) -> Result<(ExchangeType, Vec<Payload>, Ctx), Error> {
        let nonce = self.rng.bytes(NONCE_LEN);
        let mut payloads = Vec::new();
        let (dh, spi);
        match kind {
            CreateKind::RekeyIke => {
                let s = *self
                    .cfg
                    .ike_proposals
                    .first()
                    .ok_or_else(|| Error::Config("no IKE proposals".into()))?;
                let g = group.unwrap_or(s.group);
                let new_spi = self.rng.u64_nonzero();
                let d = DhPrivate::generate(g, self.rng.secure())?;
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
                let new_spi = self.rng.spi();
                let (lts, rts) = match kind {
                    CreateKind::RekeyChild(old) => {
                        let c = self
                            .children
                            .iter()
                            .find(|c| c.local_spi == old)
                            .ok_or_else(|| Error::Protocol("no such child SA".into()))?;
                        payloads.push(Payload::Notify(Notify::with_spi(
                            ProtocolId::Esp,
                            old,
                            NotifyType::RekeySa,
                            vec![],
                        )));
                        (c.local_ts.clone(), c.remote_ts.clone())
                    }
                    _ => (self.cfg.local_ts.clone(), self.cfg.remote_ts.clone()),
                };
                payloads.push(Payload::SecurityAssociation(proposal::esp_sa_payload(
                    &self.cfg.esp_proposals,
                    new_spi,
                    true,
                )));
                payloads.push(Payload::Nonce(nonce.clone()));
                let g = group.or(self.cfg.esp_proposals.first().and_then(|s| s.pfs));
                dh = match g {
                    Some(g) => {
                        let d = DhPrivate::generate(g, self.rng.secure())?;
                        payloads.push(Payload::KeyExchange(KeyExchange {
                            group: g.id(),
                            data: d.public_value().to_vec(),
                        }));
                        Some(d)
                    }
                    None => None,
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

    /// Initiator side of a child SA: check the responder's answer and derive keys.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn child_from_response(
        &mut self,
        now: Instant,
        keyed: &Keyed,
        payloads: &[Payload],
        local_spi: u32,
        g_ir: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
    ) -> Result<ChildSaInfo, String> {
        if let Some(e) = first_error(payloads) {
            return Err(format!("peer refused child SA: {e:?}"));
        }
        let found = Found::of(payloads);
        let (Some(sa), Some(tsi), Some(tsr)) = (found.sa, found.tsi, found.tsr) else {
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
            keyed, local_spi, choice, g_ir, ni, nr, true, lts, rts, None, now, true,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn install_child(
        &mut self,
        keyed: &Keyed,
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
        let (i2r, r2i) = keys::child_keymat(
            keyed.suite.prf,
            &keyed.keys.sk_d,
            g_ir,
            ni,
            nr,
            choice.aead.keymat_len(),
        )
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

    /// Responder side of a child SA: select, narrow, derive. Returns the info
    /// and the payloads of the answer (SA, [KEr], TSi, TSr), or the error notify.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn child_for_request(
        &mut self,
        now: Instant,
        keyed: &Keyed,
        sa: &Sa,
        tsi: &[TrafficSelector],
        tsr: &[TrafficSelector],
        ke: Option<&KeyExchange>,
        with_dh: bool,
        ni: &[u8],
        nr: &[u8],
        rekey_of: Option<u32>,
    ) -> Result<(ChildSaInfo, Vec<Payload>), NotifyType> {
        let local_spi = self.rng.spi();
        let Some((choice, answer)) =
            proposal::select_esp(&self.cfg.esp_proposals, sa, with_dh, local_spi)
        else {
            tracing::warn!(
                peer = %self.remote,
                offered = %proposal::describe_sa(sa),
                accepted = %proposal::describe_esp_suites(&self.cfg.esp_proposals),
                pfs = with_dh,
                "ESP proposal refused: NO_PROPOSAL_CHOSEN / ESP 提案を拒否"
            );
            return Err(NotifyType::NoProposalChosen);
        };
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
                let d = DhPrivate::generate(g, self.rng.secure())
                    .map_err(|_| NotifyType::NoProposalChosen)?;
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
                keyed,
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

    pub(super) fn on_create_request(
        &mut self,
        now: Instant,
        keyed: &Keyed,
        id: u32,
        payloads: &[Payload],
    ) {
        let refuse = |me: &mut IkeSa, n: Payload| {
            me.respond(now, ExchangeType::CreateChildSa, id, &[n]);
        };
        if self.state != State::Established {
            return refuse(self, notify(NotifyType::TemporaryFailure, vec![]));
        }
        let found = Found::of(payloads);
        let (Some(sa), Some(ni)) = (found.sa, found.nonce) else {
            return refuse(self, notify(NotifyType::InvalidSyntax, vec![]));
        };
        let nr = self.rng.bytes(NONCE_LEN);
        if sa.proposals.iter().any(|p| p.protocol == ProtocolId::Ike) {
            return self.on_ike_rekey_request(now, keyed, id, sa, found.ke, ni, nr);
        }
        let (Some(tsi), Some(tsr)) = (found.tsi, found.tsr) else {
            return refuse(self, notify(NotifyType::InvalidSyntax, vec![]));
        };
        let rekey_of = match find_notify(payloads, NotifyType::RekeySa) {
            Some(n) => {
                let old = n
                    .spi_u32()
                    .and_then(|s| self.children.iter().find(|c| c.remote_spi == s));
                match old {
                    Some(c) if c.rekey == RekeyState::Replaced => {
                        // Already replaced (and being deleted): §2.25 TEMPORARY_FAILURE.
                        return refuse(self, notify(NotifyType::TemporaryFailure, vec![]));
                    }
                    Some(c) => Some(c.local_spi),
                    None => {
                        let spi = n.spi_u32().unwrap_or(0);
                        return refuse(
                            self,
                            Payload::Notify(Notify::with_spi(
                                ProtocolId::Esp,
                                spi,
                                NotifyType::ChildSaNotFound,
                                vec![],
                            )),
                        );
                    }
                }
            }
            None => None,
        };
        let lowest = nonce_min(ni, &nr).to_vec();
        match self.child_for_request(now, keyed, sa, tsi, tsr, found.ke, true, ni, &nr, rekey_of) {
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
                // SA, Nr, then [KEr], TSi, TSr.
                let mut out = Vec::with_capacity(reply.len() + 1);
                let mut it = reply.into_iter();
                out.extend(it.next());
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
                refuse(self, Payload::Notify(Notify::invalid_ke_payload(g)));
            }
            Err(n) => refuse(self, notify(n, vec![])),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_create_response(
        &mut self,
        now: Instant,
        keyed: &Keyed,
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
        let found = Found::of(payloads);
        if let Some(e) = first_error(payloads) {
            return self.create_failed(now, kind, format!("CREATE_CHILD_SA refused: {e:?}"));
        }
        let Some(nr) = found.nonce else {
            return self.create_failed(now, kind, "no nonce in CREATE_CHILD_SA response".into());
        };
        let g_ir = match (dh, found.ke) {
            (Some(d), Some(k)) if k.group == d.group().id() => match d.agree(&k.data) {
                Ok(g) => Some(g),
                Err(_) => return self.create_failed(now, kind, "bad KE".into()),
            },
            (None, None) => None,
            _ => {
                return self.create_failed(
                    now,
                    kind,
                    "KE mismatch in CREATE_CHILD_SA response".into(),
                )
            }
        };
        let rekey_of = match kind {
            CreateKind::RekeyIke => {
                return self.on_ike_rekey_response(now, keyed, &found, g_ir, &nonce, nr, spi)
            }
            CreateKind::RekeyChild(old) => Some(old),
            CreateKind::NewChild => None,
        };
        let mut info = match self.child_from_response(
            now,
            keyed,
            payloads,
            spi as u32,
            g_ir.as_deref(),
            &nonce,
            nr,
        ) {
            Ok(info) => info,
            Err(reason) => return self.create_failed(now, kind, reason),
        };
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
        let redundant =
            collision.is_some_and(|(_, _, their_min)| nonce_lt(nonce_min(&nonce, nr), &their_min));
        if redundant {
            // §2.8.1: our exchange had the lowest nonce, so the SA we created is
            // redundant and ours to delete; the peer deletes the old one. Never
            // reported, never used.
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

    /// Our CREATE_CHILD_SA failed: report it, and retry a rekey later.
    pub(super) fn create_failed(&mut self, now: Instant, kind: CreateKind, reason: String) {
        self.events.push_back(Event::ChildSaFailed {
            sa: self.id(),
            reason,
        });
        self.rekey_failed(now, kind);
    }

    pub(super) fn set_child_rekey(&mut self, local_spi: u32, st: RekeyState) {
        if let Some(c) = self.children.iter_mut().find(|c| c.local_spi == local_spi) {
            c.rekey = st;
            c.rekey_at = None;
        }
    }

    /// Whether our CREATE_CHILD_SA of this kind is in flight.
    pub(super) fn create_in_flight(&self, f: impl Fn(CreateKind) -> bool) -> bool {
        matches!(&self.pending, Some(super::Pending { ctx: Ctx::Create { kind, .. }, .. }) if f(*kind))
    }

    /// The peer answered our DELETE of a child SA.
    pub(super) fn on_delete_child_response(&mut self, spi: u32) {
        if let Some(i) = self.children.iter().position(|c| c.local_spi == spi) {
            let c: ChildSa = self.children.remove(i);
            self.events.push_back(Event::ChildSaDeleted {
                sa: self.id(),
                local_spi: c.local_spi,
                remote_spi: c.remote_spi,
            });
        }
    }
}

//! CREATE_CHILD_SA rekeying the IKE SA itself (§1.3.2): the new SA takes the
//! children over; simultaneous rekeys are resolved by nonce (§2.8.2).

use std::sync::Arc;
use std::time::Instant;

use dodvpn_wire::{ExchangeType, KeyExchange, Notify, NotifyType, Payload, Sa};

use super::exchange::{CreateKind, Request};
use super::payloads::{notify, Found};
use super::{IkeSa, Keyed, State};
use crate::child::{nonce_lt, nonce_min, RekeyState};
use crate::crypto::DhPrivate;
use crate::keys;
use crate::proposal::{self, IkeSelection, IkeSuite};
use crate::Event;

impl IkeSa {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_ike_rekey_request(
        &mut self,
        now: Instant,
        keyed: &Keyed,
        id: u32,
        sa: &Sa,
        ke: Option<&KeyExchange>,
        ni: &[u8],
        nr: Vec<u8>,
    ) {
        let refuse = |me: &mut IkeSa, n: Payload| {
            me.respond(now, ExchangeType::CreateChildSa, id, &[n]);
        };
        // Not while our own child SA exchange is in flight: its result would
        // land on the SA being replaced (§2.25).
        if self.create_in_flight(|k| k != CreateKind::RekeyIke) {
            return refuse(self, notify(NotifyType::TemporaryFailure, vec![]));
        }
        let (suite, mut chosen) =
            match proposal::select_ike(&self.cfg.ike_proposals, sa, ke.map(|k| k.group)) {
                IkeSelection::Chosen(suite, chosen) => (suite, chosen),
                IkeSelection::InvalidKe(g) => {
                    return refuse(self, Payload::Notify(Notify::invalid_ke_payload(g.id())))
                }
                IkeSelection::NoProposalChosen => {
                    tracing::warn!(
                        peer = %self.remote,
                        offered = %proposal::describe_sa(sa),
                        accepted = %proposal::describe_ike_suites(&self.cfg.ike_proposals),
                        "IKE rekey proposal refused: NO_PROPOSAL_CHOSEN / IKE 鍵更新の提案を拒否"
                    );
                    return refuse(self, notify(NotifyType::NoProposalChosen, vec![]));
                }
            };
        let (Some(ke), Some(peer_spi)) = (ke, chosen.spi_u64()) else {
            return refuse(self, notify(NotifyType::InvalidSyntax, vec![]));
        };
        let Ok(d) = DhPrivate::generate(suite.group, self.rng.secure()) else {
            return refuse(self, notify(NotifyType::NoProposalChosen, vec![]));
        };
        let public = d.public_value().to_vec();
        let Ok(g_ir) = d.agree(&ke.data) else {
            return refuse(self, notify(NotifyType::InvalidSyntax, vec![]));
        };
        let our_spi = self.rng.u64_nonzero();
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
            self.build_rekeyed(now, keyed, suite, &g_ir, ni, &nr, our_spi, peer_spi, false)
        else {
            return;
        };
        if self.create_in_flight(|k| k == CreateKind::RekeyIke) {
            // §2.8.2: both rekey at once; decided when our answer comes.
            self.ike_collision = Some((Box::new(n), nonce_min(ni, &nr).to_vec()));
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

    /// The answer to our IKE rekey; `g_ir` and the nonces were checked by the caller.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_ike_rekey_response(
        &mut self,
        now: Instant,
        keyed: &Keyed,
        found: &Found<'_>,
        g_ir: Option<Vec<u8>>,
        nonce: &[u8],
        nr: &[u8],
        spi: u64,
    ) {
        let kind = CreateKind::RekeyIke;
        let Some(sa) = found.sa else {
            return self.create_failed(now, kind, "no SA".into());
        };
        let Some(suite) = proposal::accept_ike_answer(&self.cfg.ike_proposals, sa) else {
            return self.create_failed(now, kind, "bad IKE rekey proposal".into());
        };
        let Some(peer_spi) = sa.proposals.first().and_then(|p| p.spi_u64()) else {
            return self.create_failed(now, kind, "bad SPI".into());
        };
        let Some(g_ir) = g_ir else {
            return self.create_failed(now, kind, "IKE rekey without KE".into());
        };
        if found.ke.map(|k| k.group) != Some(suite.group.id()) {
            return self.create_failed(now, kind, "KE group mismatch".into());
        }
        let Some(ours) =
            self.build_rekeyed(now, keyed, suite, &g_ir, nonce, nr, spi, peer_spi, true)
        else {
            return self.create_failed(now, kind, "cannot derive the rekeyed IKE SA's keys".into());
        };
        let ours_redundant = match self.ike_collision.take() {
            None => {
                self.adopt(now, ours);
                false
            }
            Some((theirs, their_min)) => {
                // §2.8.2: the SA of the exchange with the lowest nonce is
                // redundant; its initiator deletes it, the other peer the old SA.
                if nonce_lt(nonce_min(nonce, nr), &their_min) {
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

    /// Build the IKE SA an IKE rekey created (no children yet).
    #[allow(clippy::too_many_arguments)]
    fn build_rekeyed(
        &self,
        now: Instant,
        old: &Keyed,
        suite: IkeSuite,
        g_ir: &[u8],
        ni: &[u8],
        nr: &[u8],
        our_spi: u64,
        peer_spi: u64,
        we_initiated: bool,
    ) -> Option<IkeSa> {
        let seed = keys::rekey_skeyseed(old.suite.prf, &old.keys.sk_d, g_ir, ni, nr);
        let (spi_i, spi_r) = if we_initiated {
            (our_spi, peer_spi)
        } else {
            (peer_spi, our_spi)
        };
        let new_keys =
            keys::derive_ike_keys(suite.prf, suite.cipher, &seed, ni, nr, spi_i, spi_r).ok()?;
        let mut n = IkeSa::blank(
            self.cfg.clone(),
            self.rng.fork(),
            now,
            we_initiated,
            self.local,
            self.remote,
        );
        n.spi_i = spi_i;
        n.spi_r = spi_r;
        n.state = State::Established;
        n.nat_t = self.nat_t;
        n.local_behind_nat = self.local_behind_nat;
        // RFC 7383 §2.3: a rekeyed IKE SA keeps what IKE_SA_INIT negotiated.
        n.fragmentation = self.fragmentation;
        // RFC 4555 §3.1: the original initiator keeps deciding the addresses.
        n.mobike = self.mobike;
        n.keyed = Some(Arc::new(Keyed {
            suite,
            keys: new_keys,
        }));
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
    pub(super) fn rekey_failed(&mut self, now: Instant, kind: CreateKind) {
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
}

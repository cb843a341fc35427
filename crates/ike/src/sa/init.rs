//! IKE_SA_INIT (§1.2) as initiator and responder: proposals, KE, nonces,
//! COOKIE and INVALID_KE_PAYLOAD retries, NAT detection (§2.23), SKEYSEED.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use dodvpn_wire::{
    ExchangeType, Flags, HashAlgorithm, IkeHeader, KeyExchange, Message, Notify, NotifyType,
    Payload, Sa,
};

use super::exchange::Ctx;
use super::payloads::{find_notify, first_error, notify, Found};
use super::{IkeSa, Keyed, State, NONCE_LEN};
use crate::crypto::{DhPrivate, Group};
use crate::keys;
use crate::nat::nat_hash;
use crate::proposal::{self, IkeSuite};
use crate::rng::Rng;
use crate::{Config, Error};

/// The IKE port (§2): a peer dialled anywhere else speaks NAT-T from the start.
pub const IKE_PORT: u16 = 500;

/// The hash algorithms we accept for RFC 7427 signatures (RFC 7427 §4).
fn signature_hashes() -> Payload {
    Payload::Notify(Notify::signature_hash_algorithms(&[
        HashAlgorithm::Sha2_256,
        HashAlgorithm::Sha2_384,
        HashAlgorithm::Sha2_512,
    ]))
}

impl IkeSa {
    /// Start an IKE SA as initiator.
    pub fn connect(
        cfg: Arc<Config>,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<IkeSa, Error> {
        IkeSa::connect_with(cfg, Rng::system(), now, local, remote)
    }

    pub(crate) fn connect_with(
        cfg: Arc<Config>,
        rng: Rng,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<IkeSa, Error> {
        let first = *cfg
            .ike_proposals
            .first()
            .ok_or_else(|| Error::Config("no IKE proposals".into()))?;
        let mut sa = IkeSa::blank(cfg, rng, now, true, local, remote);
        if remote.port() != IKE_PORT {
            // §2.23 (and RFC 3948): a peer reached at a NAT's mapping, a relay or its
            // NAT-T port is spoken to with the non-ESP marker from our NAT-T port from
            // the first message on.
            sa.nat_t = true;
            sa.local.set_port(sa.cfg.nat_t_port);
        }
        sa.spi_i = sa.rng.u64_nonzero();
        sa.ni = sa.rng.bytes(NONCE_LEN);
        sa.ke_group = Some(first.group);
        sa.send_init(now)?;
        Ok(sa)
    }

    fn send_init(&mut self, now: Instant) -> Result<(), Error> {
        let group = self
            .ke_group
            .ok_or_else(|| Error::Config("no KE group".into()))?;
        let dh = DhPrivate::generate(group, self.rng.secure())?;
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
        payloads.push(signature_hashes());
        if self.cfg.fragmentation {
            payloads.push(notify(NotifyType::Ikev2FragmentationSupported, vec![]));
        }
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
        self.start_request(now, 0, vec![bytes], Ctx::Init);
        Ok(())
    }

    /// NAT_DETECTION_SOURCE_IP / _DESTINATION_IP for the current addresses.
    pub(super) fn nat_notifies(&self, spi_r: u64) -> Vec<Payload> {
        let src = if self.cfg.force_encap {
            // Fake the source hash so both sides float to UDP 4500 (as
            // strongSwan's encap=yes does).
            self.rng.bytes(20)
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

    /// Evaluate the peer's NAT_DETECTION notifies (§2.23): whether the peer
    /// supports NAT-T at all, and whether a NAT is in the path.
    pub(super) fn check_nat(
        &self,
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

    /// Move to the NAT-T ports (§2.23). An SA already on them stays where it is: the
    /// peer's port may be a NAT's mapping or a relay's, not 4500.
    fn float(&mut self) {
        if self.nat_t {
            return;
        }
        let p = self.cfg.nat_t_port;
        self.nat_t = true;
        self.local.set_port(p);
        self.remote.set_port(p);
    }

    /// Answer an IKE_SA_INIT request whose proposal was already selected
    /// (by the endpoint, which also handled cookies and INVALID_KE).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn accept_init(
        cfg: Arc<Config>,
        rng: Rng,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        request: &[u8],
        msg: &Message,
        suite: IkeSuite,
        chosen: dodvpn_wire::Proposal,
    ) -> Result<IkeSa, Error> {
        let mut sa = IkeSa::blank(cfg, rng, now, false, local, remote);
        // An initiator that starts on our NAT-T port is answered there, with the marker.
        sa.nat_t = local.port() == sa.cfg.nat_t_port;
        sa.state = State::InitDone;
        sa.spi_i = msg.header.spi_i;
        sa.spi_r = sa.rng.u64_nonzero();
        let found = Found::of(&msg.payloads);
        let ke = found.ke.ok_or_else(|| Error::Protocol("no KE".into()))?;
        let ni = found
            .nonce
            .ok_or_else(|| Error::Protocol("no nonce".into()))?;
        if ni.len() < 16 || ni.len() > 256 {
            return Err(Error::Protocol("bad nonce length".into()));
        }
        sa.ni = ni.to_vec();
        let dh = DhPrivate::generate(suite.group, sa.rng.secure())?;
        let public = dh.public_value().to_vec();
        let g_ir = dh.agree(&ke.data)?;
        sa.nr = sa.rng.bytes(NONCE_LEN);
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
        payloads.push(signature_hashes());
        // RFC 7383 §2.3: answer the peer's IKEV2_FRAGMENTATION_SUPPORTED with ours.
        if sa.cfg.fragmentation
            && find_notify(&msg.payloads, NotifyType::Ikev2FragmentationSupported).is_some()
        {
            payloads.push(notify(NotifyType::Ikev2FragmentationSupported, vec![]));
            sa.fragmentation = true;
        }
        // §1.2: CERTREQ in the answer, so the initiator sends the chain we can check.
        payloads.extend(sa.certreq());
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
        sa.last_resp = Some((0, vec![bytes.clone()]));
        sa.send_raw(now, bytes);
        Ok(sa)
    }

    fn derive_initial_keys(&mut self, suite: IkeSuite, g_ir: &[u8]) -> Result<Arc<Keyed>, Error> {
        let seed = keys::skeyseed(suite.prf, &self.ni, &self.nr, g_ir);
        let keys = keys::derive_ike_keys(
            suite.prf,
            suite.cipher,
            &seed,
            &self.ni,
            &self.nr,
            self.spi_i,
            self.spi_r,
        )?;
        let keyed = Arc::new(Keyed { suite, keys });
        self.keyed = Some(keyed.clone());
        Ok(keyed)
    }

    pub(super) fn on_init_response(&mut self, now: Instant, msg: &Message, bytes: &[u8]) {
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
        let found = Found::of(&msg.payloads);
        let (Some(sa), Some(ke), Some(nr)) = (found.sa, found.ke, found.nonce) else {
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
        self.nr = nr.to_vec();
        let keyed = match self.derive_initial_keys(suite, &g_ir) {
            Ok(k) => k,
            Err(e) => return self.fail(e.to_string()),
        };
        self.msg2 = bytes.to_vec();
        self.fragmentation = self.cfg.fragmentation
            && msg
                .find_notify(NotifyType::Ikev2FragmentationSupported)
                .is_some();
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
        self.send_auth(now, &keyed);
    }
}

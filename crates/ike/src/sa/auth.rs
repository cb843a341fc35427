//! IKE_AUTH (§1.2, §2.15): identities, AUTH, certificates, and the first
//! child SA carried in the same exchange.

use std::time::Instant;

use dodvpn_wire::{
    CertEncoding, Certificate, CertificateRequest, ExchangeType, Identification, Message,
    NotifyType, Payload,
};

use super::exchange::Ctx;
use super::payloads::{find_notify, first_error, notify, Found};
use super::{IkeSa, Keyed, State};
use crate::auth::{self, LocalAuth, RemoteAuth};
use crate::{child, proposal, DownReason, Event};

/// Most CERT payloads we take from a peer: its certificate and four
/// intermediates (webpki's own path limit is six sub-CAs; deployments here
/// have at most two).
const MAX_PEER_CERTS: usize = 5;

fn cert_payload(der: &[u8]) -> Payload {
    Payload::Certificate(Certificate {
        encoding: CertEncoding::X509Signature,
        data: der.to_vec(),
    })
}

impl IkeSa {
    /// Our CERT payloads: our certificate, then the configured chain, issuer
    /// first. When the peer's CERTREQ names a CA of that chain, the chain stops
    /// below it, as the peer has that CA already (RFC 7296 §3.7).
    pub(super) fn our_certs(&self, certreqs: &[&CertificateRequest]) -> Vec<Payload> {
        let LocalAuth::Cert { cert_der, .. } = &self.cfg.local_auth else {
            return Vec::new();
        };
        let wanted: Vec<&[u8]> = certreqs
            .iter()
            .filter(|r| r.encoding == CertEncoding::X509Signature)
            .flat_map(|r| r.authority_hashes())
            .collect();
        let mut out = vec![cert_payload(cert_der)];
        for ca in &self.cfg.local_chain {
            if auth::spki_sha1(ca).is_some_and(|h| wanted.contains(&&h[..])) {
                break;
            }
            out.push(cert_payload(ca));
        }
        out
    }

    /// Our CERTREQ: the key hashes of the CAs we trust for the peer's
    /// certificate (none with PSK, or when the validator names none).
    pub(super) fn certreq(&self) -> Option<Payload> {
        let RemoteAuth::Cert(v) = &self.cfg.remote_auth else {
            return None;
        };
        let hashes = v.ca_key_hashes();
        (!hashes.is_empty()).then(|| {
            Payload::CertificateRequest(CertificateRequest {
                encoding: CertEncoding::X509Signature,
                authorities: hashes.concat(),
            })
        })
    }

    /// Our IKE_AUTH request, right after the IKE_SA_INIT answer.
    pub(super) fn send_auth(&mut self, now: Instant, keyed: &Keyed) {
        let prf = keyed.suite.prf;
        let child_spi = self.rng.spi();
        let mut payloads = vec![Payload::IdInitiator(self.cfg.local_id.clone())];
        // The responder's CERTREQ, if any, came in its IKE_SA_INIT answer.
        let init_answer = Message::parse(&self.msg2).ok();
        let certreqs = init_answer
            .as_ref()
            .map(|m| Found::of(&m.payloads).certreqs)
            .unwrap_or_default();
        payloads.extend(self.our_certs(&certreqs));
        payloads.extend(self.certreq());
        if let Some(r) = &self.cfg.remote_id {
            payloads.push(Payload::IdResponder(r.clone()));
        }
        let octets = auth::signed_octets(
            &self.msg1,
            &self.nr,
            prf,
            &keyed.keys.sk_pi,
            &self.cfg.local_id,
        );
        let a = match auth::make_auth(&self.cfg.local_auth, prf, &octets) {
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
        if self.cfg.mobike {
            payloads.push(notify(NotifyType::MobikeSupported, vec![]));
        }
        match self.encrypt(ExchangeType::IkeAuth, false, 1, &payloads) {
            Ok(b) => {
                self.next_req_id = 2;
                self.state = State::AuthSent;
                self.start_request(now, 1, b, Ctx::Auth { child_spi });
            }
            Err(e) => self.fail(e.to_string()),
        }
    }

    /// A responder whose configuration selects by identity continues with the
    /// configuration of the peer named by IDi (before AUTH is checked, so that
    /// peer's own rules check it). The suite chosen in IKE_SA_INIT must be one the
    /// selected configuration allows too.
    fn select_config(&mut self, keyed: &Keyed, idi: &Identification) -> Result<(), String> {
        let Some(select) = self.cfg.select_by_identity.clone() else {
            return Ok(());
        };
        let cfg = (select.0)(idi).ok_or_else(|| {
            format!(
                "no connection is for the identity {:?}",
                String::from_utf8_lossy(&idi.data)
            )
        })?;
        if !cfg.ike_proposals.contains(&keyed.suite) {
            return Err(format!(
                "the IKE suite {} is not allowed for the identity {:?}",
                keyed.suite.name(),
                String::from_utf8_lossy(&idi.data)
            ));
        }
        self.cfg = cfg;
        Ok(())
    }

    /// Authenticate the peer's AUTH payload; returns a reason on failure.
    fn verify_peer(
        &self,
        keyed: &Keyed,
        id: &Identification,
        certs: &[&Certificate],
        a: &dodvpn_wire::Auth,
        octets: &[u8],
    ) -> Result<(), String> {
        if let Some(want) = &self.cfg.remote_id {
            if !auth::id_matches(want, id) {
                return Err("peer identity does not match the configured remote identity".into());
            }
        }
        match &self.cfg.remote_auth {
            RemoteAuth::Psk(k) => auth::verify_psk(keyed.suite.prf, k, octets, a),
            RemoteAuth::Cert(v) => {
                let (cert, rest) = certs.split_first().ok_or("peer sent no certificate")?;
                if cert.encoding != CertEncoding::X509Signature {
                    return Err(format!(
                        "certificate encoding {:?} not supported",
                        cert.encoding
                    ));
                }
                if certs.len() > MAX_PEER_CERTS {
                    return Err(format!(
                        "peer sent {} certificates; at most {MAX_PEER_CERTS} are taken",
                        certs.len()
                    ));
                }
                // Further X.509 CERT payloads are the chain; other encodings
                // (e.g. hash-and-URL) are not used for it.
                let intermediates: Vec<&[u8]> = rest
                    .iter()
                    .filter(|c| c.encoding == CertEncoding::X509Signature)
                    .map(|c| c.data.as_slice())
                    .collect();
                let spki = auth::cert_spki(&cert.data).ok_or("peer certificate unreadable")?;
                let key = auth::parse_spki(spki).ok_or("unsupported public key")?;
                auth::verify_signature(&key, a, octets)?;
                v.validate_chain(&cert.data, &intermediates, id)
            }
        }
    }

    fn up(&mut self, now: Instant, peer_id: Identification) {
        self.peer_id = Some(peer_id.clone());
        self.state = State::Established;
        self.start_ike_timers(now);
        self.events.push_back(Event::IkeSaUp {
            sa: self.id(),
            local: self.local,
            remote: self.remote,
            peer_id,
            nat_t: self.nat_t,
        });
    }

    pub(super) fn on_auth_response(
        &mut self,
        now: Instant,
        keyed: &Keyed,
        payloads: &[Payload],
        child_spi: u32,
    ) {
        let found = Found::of(payloads);
        if let Some(e) = first_error(payloads) {
            if e == NotifyType::AuthenticationFailed || e.to_wire() < 16384 && found.auth.is_none()
            {
                self.events.push_back(Event::AuthFailed {
                    sa: self.id(),
                    reason: format!("peer answered {e:?}"),
                });
                return self.fail(format!("IKE_AUTH refused: {e:?}"));
            }
        }
        let (Some(idr), Some(a)) = (found.idr, found.auth) else {
            self.events.push_back(Event::AuthFailed {
                sa: self.id(),
                reason: "IKE_AUTH response without IDr/AUTH".into(),
            });
            return self.fail("bad IKE_AUTH response".into());
        };
        let octets = auth::signed_octets(
            &self.msg2,
            &self.ni,
            keyed.suite.prf,
            &keyed.keys.sk_pr,
            idr,
        );
        if let Err(reason) = self.verify_peer(keyed, idr, &found.certs, a, &octets) {
            self.events.push_back(Event::AuthFailed {
                sa: self.id(),
                reason: reason.clone(),
            });
            return self.fail(format!("peer authentication failed: {reason}"));
        }
        if self.cfg.mobike && find_notify(payloads, NotifyType::MobikeSupported).is_some() {
            self.mobike = Some(true);
        }
        self.up(now, idr.clone());
        // First child SA.
        let ni = self.ni.clone();
        let nr = self.nr.clone();
        match self.child_from_response(now, keyed, payloads, child_spi, None, &ni, &nr) {
            Ok(info) => self.events.push_back(Event::ChildSaUp(info)),
            Err(reason) => self.events.push_back(Event::ChildSaFailed {
                sa: self.id(),
                reason,
            }),
        }
    }

    pub(super) fn on_auth_request(
        &mut self,
        now: Instant,
        keyed: &Keyed,
        id: u32,
        payloads: &[Payload],
    ) {
        let found = Found::of(payloads);
        let prf = keyed.suite.prf;
        let verdict = match (found.idi, found.auth) {
            (Some(idi), Some(a)) => self.select_config(keyed, idi).and_then(|()| {
                let octets = auth::signed_octets(&self.msg1, &self.nr, prf, &keyed.keys.sk_pi, idi);
                self.verify_peer(keyed, idi, &found.certs, a, &octets)
                    .map(|()| idi.clone())
            }),
            _ => Err("IKE_AUTH without IDi/AUTH".into()),
        };
        let idi = match verdict {
            Ok(idi) => idi,
            Err(reason) => {
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
        };
        let octets = auth::signed_octets(
            &self.msg2,
            &self.ni,
            prf,
            &keyed.keys.sk_pr,
            &self.cfg.local_id,
        );
        let our_auth = match auth::make_auth(&self.cfg.local_auth, prf, &octets) {
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
        out.extend(self.our_certs(&found.certreqs));
        out.push(Payload::Authentication(our_auth));
        // RFC 4555 §3.2: answered only when offered; the initiator moves the SA.
        if self.cfg.mobike && find_notify(payloads, NotifyType::MobikeSupported).is_some() {
            self.mobike = Some(false);
            out.push(notify(NotifyType::MobikeSupported, vec![]));
        }
        self.up(now, idi);
        let (ni, nr) = (self.ni.clone(), self.nr.clone());
        if let (Some(sa), Some(tsi), Some(tsr)) = (found.sa, found.tsi, found.tsr) {
            match self.child_for_request(now, keyed, sa, tsi, tsr, None, false, &ni, &nr, None) {
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
}

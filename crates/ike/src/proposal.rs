//! Proposals: strongSwan-style proposal strings → typed suites → wire SA
//! payloads, and responder-side selection (RFC 7296 §2.7, §3.3).

use dodvpn_esp::Aead;
use dodvpn_wire::{
    DhGroup, EncrId, EsnId, Proposal, ProtocolId, Sa, Transform, TransformAttribute, TransformId,
};

use crate::crypto::{Group, IkeCipher, Integ, Prf};
use crate::Error;

/// One IKE SA suite: cipher (+ integrity for CBC), PRF, DH group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IkeSuite {
    pub cipher: IkeCipher,
    pub prf: Prf,
    pub group: Group,
}

/// One ESP suite: AEAD, ESN choice(s), optional PFS group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EspSuite {
    pub aead: Aead,
    /// Offer/accept 64-bit extended sequence numbers.
    pub esn: bool,
    /// Offer/accept 32-bit sequence numbers.
    pub no_esn: bool,
    /// DH group for PFS in CREATE_CHILD_SA (ignored in IKE_AUTH, §1.2).
    pub pfs: Option<Group>,
}

fn token_group(t: &str) -> Option<Group> {
    match t {
        "ecp256" => Some(Group::Ecp256),
        "ecp384" => Some(Group::Ecp384),
        "x25519" | "curve25519" => Some(Group::Curve25519),
        _ => None,
    }
}

fn token_aead_ike(t: &str) -> Option<IkeCipher> {
    match t {
        "aes128gcm16" | "aes128gcm128" => Some(IkeCipher::AesGcm16 { key_bits: 128 }),
        "aes256gcm16" | "aes256gcm128" => Some(IkeCipher::AesGcm16 { key_bits: 256 }),
        "chacha20poly1305" => Some(IkeCipher::ChaCha20Poly1305),
        _ => None,
    }
}

impl IkeSuite {
    /// Parse e.g. "aes128gcm16-prfsha256-ecp256" or "aes256-sha256-ecp256"
    /// (for CBC without an explicit prf, the PRF follows the integrity hash,
    /// as strongSwan does).
    pub fn parse(s: &str) -> Result<IkeSuite, Error> {
        let bad = || Error::Config(format!("bad IKE proposal {s:?}"));
        let mut cipher = None;
        let mut cbc_bits = None;
        let mut integ = None;
        let mut prf = None;
        let mut group = None;
        for t in s.to_ascii_lowercase().split('-') {
            if let Some(c) = token_aead_ike(t) {
                cipher = Some(c);
            } else if t == "aes128" || t == "aes256" {
                cbc_bits = Some(if t == "aes128" { 128 } else { 256 });
            } else if let Some(g) = token_group(t) {
                group = Some(g);
            } else {
                match t {
                    "sha256" | "sha2_256" => integ = Some(Integ::HmacSha256_128),
                    "sha384" | "sha2_384" => integ = Some(Integ::HmacSha384_192),
                    "sha512" | "sha2_512" => integ = Some(Integ::HmacSha512_256),
                    "prfsha256" => prf = Some(Prf::HmacSha256),
                    "prfsha384" => prf = Some(Prf::HmacSha384),
                    "prfsha512" => prf = Some(Prf::HmacSha512),
                    _ => return Err(bad()),
                }
            }
        }
        let cipher = match (cipher, cbc_bits, integ) {
            (Some(c), None, None) => c,
            (None, Some(b), Some(i)) => IkeCipher::AesCbc {
                key_bits: b,
                integ: i,
            },
            _ => return Err(bad()),
        };
        let prf = prf
            .or(match integ {
                Some(Integ::HmacSha256_128) => Some(Prf::HmacSha256),
                Some(Integ::HmacSha384_192) => Some(Prf::HmacSha384),
                Some(Integ::HmacSha512_256) => Some(Prf::HmacSha512),
                None => None,
            })
            .ok_or_else(bad)?;
        Ok(IkeSuite {
            cipher,
            prf,
            group: group.ok_or_else(bad)?,
        })
    }

    /// The wire proposal (number, SPI set by the caller).
    pub fn to_proposal(&self, number: u8, spi: Vec<u8>) -> Proposal {
        let mut transforms = vec![encr_transform(
            self.cipher.encr_id(),
            self.cipher.key_length_attr(),
        )];
        transforms.push(Transform::new(TransformId::Prf(self.prf.id())));
        if let Some(i) = self.cipher.integ() {
            transforms.push(Transform::new(TransformId::Integ(i.id())));
        }
        transforms.push(Transform::new(TransformId::Dh(self.group.id())));
        Proposal {
            number,
            protocol: ProtocolId::Ike,
            spi,
            transforms,
        }
    }

    fn matches(&self, p: &Proposal) -> bool {
        p.protocol == ProtocolId::Ike
            && has_encr(p, self.cipher.encr_id(), self.cipher.key_length_attr())
            && has(p, TransformId::Prf(self.prf.id()))
            && match self.cipher.integ() {
                Some(i) => has(p, TransformId::Integ(i.id())),
                None => !p.transforms.iter().any(
                    |t| matches!(t.id, TransformId::Integ(x) if x != dodvpn_wire::IntegId::None),
                ),
            }
            && has(p, TransformId::Dh(self.group.id()))
    }
}

impl EspSuite {
    /// Parse e.g. "aes128gcm16", "aes256gcm16-esn", "chacha20poly1305-noesn-x25519".
    pub fn parse(s: &str) -> Result<EspSuite, Error> {
        let bad = || Error::Config(format!("bad ESP proposal {s:?}"));
        let mut aead = None;
        let (mut esn, mut no_esn) = (false, false);
        let mut pfs = None;
        for t in s.to_ascii_lowercase().split('-') {
            match t {
                "aes128gcm16" | "aes128gcm128" => aead = Some(Aead::AesGcm128),
                "aes256gcm16" | "aes256gcm128" => aead = Some(Aead::AesGcm256),
                "chacha20poly1305" => aead = Some(Aead::ChaCha20Poly1305),
                "esn" => esn = true,
                "noesn" => no_esn = true,
                _ => pfs = Some(token_group(t).ok_or_else(bad)?),
            }
        }
        if !esn && !no_esn {
            no_esn = true;
        }
        Ok(EspSuite {
            aead: aead.ok_or_else(bad)?,
            esn,
            no_esn,
            pfs,
        })
    }

    /// The wire proposal. `with_dh`: include the PFS group (not in IKE_AUTH).
    pub fn to_proposal(&self, number: u8, spi: u32, with_dh: bool) -> Proposal {
        let mut transforms = vec![encr_transform(
            EncrId::from(self.aead.ikev2_transform_id()),
            self.aead.ikev2_key_length_attr(),
        )];
        if with_dh {
            if let Some(g) = self.pfs {
                transforms.push(Transform::new(TransformId::Dh(g.id())));
            }
        }
        if self.esn {
            transforms.push(Transform::new(TransformId::Esn(EsnId::Esn)));
        }
        if self.no_esn {
            transforms.push(Transform::new(TransformId::Esn(EsnId::NoEsn)));
        }
        Proposal {
            number,
            protocol: ProtocolId::Esp,
            spi: spi.to_be_bytes().to_vec(),
            transforms,
        }
    }
}

fn encr_transform(id: EncrId, bits: Option<u16>) -> Transform {
    match bits {
        Some(b) => Transform::with_key_length(TransformId::Encr(id), b),
        None => Transform::new(TransformId::Encr(id)),
    }
}

fn has(p: &Proposal, id: TransformId) -> bool {
    p.transforms
        .iter()
        .any(|t| t.id == id && t.attributes.is_empty())
}

fn has_encr(p: &Proposal, id: EncrId, bits: Option<u16>) -> bool {
    p.transforms.iter().any(|t| {
        t.id == TransformId::Encr(id)
            && t.key_length() == bits
            // unknown attributes make the transform unacceptable (§3.3.6)
            && t.attributes.iter().all(|a| matches!(a, TransformAttribute::KeyLength(_)))
    })
}

/// Parse a list of proposal strings.
pub fn parse_ike_proposals(list: &[&str]) -> Result<Vec<IkeSuite>, Error> {
    list.iter().map(|s| IkeSuite::parse(s)).collect()
}

/// Parse a list of ESP proposal strings.
pub fn parse_esp_proposals(list: &[&str]) -> Result<Vec<EspSuite>, Error> {
    list.iter().map(|s| EspSuite::parse(s)).collect()
}

/// Build the SA payload offering all suites (numbers 1..).
pub fn ike_sa_payload(suites: &[IkeSuite], spi: Vec<u8>) -> Sa {
    Sa {
        proposals: suites
            .iter()
            .enumerate()
            .map(|(i, s)| s.to_proposal(i as u8 + 1, spi.clone()))
            .collect(),
    }
}

/// Build an ESP SA payload offering all suites with our inbound SPI.
pub fn esp_sa_payload(suites: &[EspSuite], spi: u32, with_dh: bool) -> Sa {
    Sa {
        proposals: suites
            .iter()
            .enumerate()
            .map(|(i, s)| s.to_proposal(i as u8 + 1, spi, with_dh))
            .collect(),
    }
}

/// Outcome of responder-side IKE proposal selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IkeSelection {
    /// Accepted: our suite and the single-transform proposal to answer with
    /// (peer's proposal number and SPI).
    Chosen(IkeSuite, Proposal),
    /// Acceptable proposal, but the KE payload is for another group: answer
    /// INVALID_KE_PAYLOAD with this group (§1.2, §3.10.1).
    InvalidKe(Group),
    NoProposalChosen,
}

/// Select the first acceptable proposal of the peer (in the peer's order),
/// preferring one whose DH group matches the KE payload `ke_group`.
pub fn select_ike(ours: &[IkeSuite], sa: &Sa, ke_group: Option<DhGroup>) -> IkeSelection {
    let mut fallback = None;
    for p in &sa.proposals {
        for s in ours {
            if s.matches(p) {
                if ke_group.is_none() || ke_group == Some(s.group.id()) {
                    return IkeSelection::Chosen(*s, s.to_proposal(p.number, p.spi.clone()));
                }
                fallback.get_or_insert(s.group);
            }
        }
    }
    match fallback {
        Some(g) => IkeSelection::InvalidKe(g),
        None => IkeSelection::NoProposalChosen,
    }
}

/// Check that a responder's answer is one of the suites we offered.
pub fn accept_ike_answer(ours: &[IkeSuite], sa: &Sa) -> Option<IkeSuite> {
    let p = match sa.proposals.as_slice() {
        [p] => p,
        _ => return None,
    };
    ours.iter().copied().find(|s| s.matches(p))
}

/// A negotiated ESP transform set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EspChoice {
    pub aead: Aead,
    pub esn: bool,
    pub pfs: Option<Group>,
    /// The peer's inbound SPI (our outbound).
    pub peer_spi: u32,
}

/// Select an ESP proposal. `with_dh`: CREATE_CHILD_SA (PFS groups must
/// match); in IKE_AUTH DH transforms are ignored (§1.2).
/// Returns the choice and the single proposal to answer with (SPI = `our_spi`).
pub fn select_esp(
    ours: &[EspSuite],
    sa: &Sa,
    with_dh: bool,
    our_spi: u32,
) -> Option<(EspChoice, Proposal)> {
    for p in &sa.proposals {
        if p.protocol != ProtocolId::Esp {
            continue;
        }
        let Some(peer_spi) = p.spi_u32() else {
            continue;
        };
        for s in ours {
            let id = EncrId::from(s.aead.ikev2_transform_id());
            if !has_encr(p, id, s.aead.ikev2_key_length_attr()) {
                continue;
            }
            let peer_groups: Vec<DhGroup> = p
                .transforms
                .iter()
                .filter_map(|t| match t.id {
                    TransformId::Dh(g) if g != DhGroup::None => Some(g),
                    _ => None,
                })
                .collect();
            let pfs = if with_dh {
                match s.pfs {
                    Some(g) if peer_groups.contains(&g.id()) => Some(g),
                    None if peer_groups.is_empty() => None,
                    _ => continue,
                }
            } else {
                None
            };
            let peer_esn = has(p, TransformId::Esn(EsnId::Esn));
            let peer_noesn = has(p, TransformId::Esn(EsnId::NoEsn))
                || !p
                    .transforms
                    .iter()
                    .any(|t| matches!(t.id, TransformId::Esn(_)));
            let esn = if s.no_esn && peer_noesn {
                false
            } else if s.esn && peer_esn {
                true
            } else {
                continue;
            };
            let mut transforms = vec![encr_transform(id, s.aead.ikev2_key_length_attr())];
            if let Some(g) = pfs {
                transforms.push(Transform::new(TransformId::Dh(g.id())));
            }
            transforms.push(Transform::new(TransformId::Esn(if esn {
                EsnId::Esn
            } else {
                EsnId::NoEsn
            })));
            let answer = Proposal {
                number: p.number,
                protocol: ProtocolId::Esp,
                spi: our_spi.to_be_bytes().to_vec(),
                transforms,
            };
            return Some((
                EspChoice {
                    aead: s.aead,
                    esn,
                    pfs,
                    peer_spi,
                },
                answer,
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strongswan_style_strings() {
        let s = IkeSuite::parse("aes128gcm16-prfsha256-ecp256").unwrap();
        assert_eq!(s.cipher, IkeCipher::AesGcm16 { key_bits: 128 });
        assert_eq!(s.prf, Prf::HmacSha256);
        assert_eq!(s.group, Group::Ecp256);
        let s = IkeSuite::parse("aes256gcm16-prfsha384-ecp384").unwrap();
        assert_eq!(s.group, Group::Ecp384);
        let s = IkeSuite::parse("chacha20poly1305-prfsha256-x25519").unwrap();
        assert_eq!(s.cipher, IkeCipher::ChaCha20Poly1305);
        let s = IkeSuite::parse("aes128-sha256-ecp256").unwrap();
        assert_eq!(
            s.cipher,
            IkeCipher::AesCbc {
                key_bits: 128,
                integ: Integ::HmacSha256_128
            }
        );
        assert_eq!(s.prf, Prf::HmacSha256);
        assert!(IkeSuite::parse("aes128gcm16-ecp256").is_err());
        assert!(IkeSuite::parse("aes128-prfsha256-ecp256").is_err());
        assert!(IkeSuite::parse("3des-md5-modp1024").is_err());

        let e = EspSuite::parse("aes256gcm16-esn-ecp384").unwrap();
        assert_eq!(e.aead, Aead::AesGcm256);
        assert!(e.esn && !e.no_esn);
        assert_eq!(e.pfs, Some(Group::Ecp384));
        let e = EspSuite::parse("chacha20poly1305").unwrap();
        assert!(!e.esn && e.no_esn && e.pfs.is_none());
    }

    #[test]
    fn selection_prefers_ke_group_and_asks_for_invalid_ke() {
        let ours = parse_ike_proposals(&[
            "aes256gcm16-prfsha384-ecp384",
            "aes128gcm16-prfsha256-ecp256",
        ])
        .unwrap();
        let theirs = parse_ike_proposals(&[
            "aes128gcm16-prfsha256-ecp256",
            "aes256gcm16-prfsha384-ecp384",
        ])
        .unwrap();
        let sa = ike_sa_payload(&theirs, vec![]);
        match select_ike(&ours, &sa, Some(DhGroup::Ecp384)) {
            IkeSelection::Chosen(s, p) => {
                assert_eq!(s, ours[0]);
                assert_eq!(p.number, 2);
            }
            x => panic!("{x:?}"),
        }
        match select_ike(&ours, &sa, Some(DhGroup::Ecp256)) {
            IkeSelection::Chosen(s, p) => {
                assert_eq!(s, ours[1]);
                assert_eq!(p.number, 1);
            }
            x => panic!("{x:?}"),
        }
        assert_eq!(
            select_ike(&ours, &sa, Some(DhGroup::Curve25519)),
            IkeSelection::InvalidKe(Group::Ecp256)
        );
        let other = ike_sa_payload(
            &parse_ike_proposals(&["aes128-sha256-ecp256"]).unwrap(),
            vec![],
        );
        assert_eq!(
            select_ike(&ours, &other, Some(DhGroup::Ecp256)),
            IkeSelection::NoProposalChosen
        );
        // round trip through the wire format
        let bytes = dodvpn_wire::Message::new(
            dodvpn_wire::IkeHeader::new(
                1,
                0,
                dodvpn_wire::ExchangeType::IkeSaInit,
                dodvpn_wire::Flags::new(true, false),
                0,
            ),
            vec![dodvpn_wire::Payload::SecurityAssociation(sa.clone())],
        )
        .to_bytes()
        .unwrap();
        let back = dodvpn_wire::Message::parse(&bytes).unwrap();
        assert_eq!(
            back.payloads[0],
            dodvpn_wire::Payload::SecurityAssociation(sa)
        );
    }

    #[test]
    fn esp_selection() {
        let ours = parse_esp_proposals(&["aes256gcm16-ecp384", "aes128gcm16"]).unwrap();
        let theirs = parse_esp_proposals(&["aes128gcm16-esn-noesn"]).unwrap();
        let sa = esp_sa_payload(&theirs, 0x1234, true);
        let (c, p) = select_esp(&ours, &sa, true, 0x9999).unwrap();
        assert_eq!(c.aead, Aead::AesGcm128);
        assert!(!c.esn);
        assert_eq!(c.peer_spi, 0x1234);
        assert_eq!(p.spi_u32(), Some(0x9999));
        // PFS demanded but not offered
        let ours_pfs = parse_esp_proposals(&["aes128gcm16-ecp256"]).unwrap();
        assert!(select_esp(&ours_pfs, &sa, true, 1).is_none());
        // ... is fine in IKE_AUTH
        assert!(select_esp(&ours_pfs, &sa, false, 1).is_some());
    }
}

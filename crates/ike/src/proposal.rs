//! Proposals: strongSwan-style proposal strings → typed suites → wire SA
//! payloads, and responder-side selection (RFC 7296 §2.7, §3.3).

use dodvpn_esp::{Aead, Integ as EspInteg};
use dodvpn_wire::{
    DhGroup, EncrId, EsnId, IntegId, Proposal, ProtocolId, Sa, Transform, TransformAttribute,
    TransformId,
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
        "modp2048" => Some(Group::Modp2048),
        "modp3072" => Some(Group::Modp3072),
        "modp4096" => Some(Group::Modp4096),
        "ecp256" => Some(Group::Ecp256),
        "ecp384" => Some(Group::Ecp384),
        "ecp521" => Some(Group::Ecp521),
        "x25519" | "curve25519" => Some(Group::Curve25519),
        _ => None,
    }
}

/// Keywords strongSwan accepts that we refuse on purpose, with the reason
/// (shown in the config error and documented in docs/interop.md).
pub fn refused_keyword(t: &str) -> Option<&'static str> {
    match t {
        "modp768" | "modp1024" | "modp1536" | "modp1024s160" | "modp2048s224" | "modp2048s256" => {
            Some("MODP groups below 2048 bits and the RFC 5114 groups are too weak (RFC 8247 §2.4)")
        }
        "sha1" | "sha" | "md5" | "aesxcbc" | "prfsha1" | "prfmd5" => {
            Some("SHA-1, MD5 and AES-XCBC integrity/PRF are not accepted (RFC 8247 §2.2, §2.3)")
        }
        "3des" | "des" | "blowfish" | "cast128" => {
            Some("64-bit block ciphers are not accepted (RFC 8247 §2.1)")
        }
        _ => None,
    }
}

fn bad_token(kind: &str, s: &str, t: &str) -> Error {
    match refused_keyword(t) {
        Some(why) => Error::Config(format!(
            "bad {kind} proposal {s:?}: {t:?} refused: {why} / {t:?} は安全でないため使えません"
        )),
        None => Error::Config(format!(
            "bad {kind} proposal {s:?}: unknown keyword {t:?} / 不明なキーワード {t:?}"
        )),
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
        let lower = s.to_ascii_lowercase();
        for t in lower.split('-') {
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
                    _ => return Err(bad_token("IKE", s, t)),
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

    /// The suite as strongSwan writes it: `aes128gcm16-prfsha256-ecp256`,
    /// `aes256-sha256-modp2048` (the PRF is left out where it follows the
    /// integrity hash, as in strongSwan's own configs).
    pub fn name(&self) -> String {
        let prf = match self.prf {
            Prf::HmacSha256 => "prfsha256",
            Prf::HmacSha384 => "prfsha384",
            Prf::HmacSha512 => "prfsha512",
        };
        match self.cipher {
            IkeCipher::AesGcm16 { key_bits } => {
                format!("aes{key_bits}gcm16-{prf}-{}", self.group.name())
            }
            IkeCipher::ChaCha20Poly1305 => format!("chacha20poly1305-{prf}-{}", self.group.name()),
            IkeCipher::AesCbc { key_bits, integ } => {
                let i = integ_name(integ);
                if prf[3..] == i[..] {
                    format!("aes{key_bits}-{i}-{}", self.group.name())
                } else {
                    format!("aes{key_bits}-{i}-{prf}-{}", self.group.name())
                }
            }
        }
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
    /// Parse e.g. "aes128gcm16", "aes256gcm16-esn", "chacha20poly1305-noesn-x25519",
    /// "aes256-sha256", "aes128-sha512-modp2048" (CBC + HMAC-SHA2).
    pub fn parse(s: &str) -> Result<EspSuite, Error> {
        let bad = || Error::Config(format!("bad ESP proposal {s:?}"));
        let mut aead = None;
        let mut cbc_bits = None;
        let mut integ = None;
        let (mut esn, mut no_esn) = (false, false);
        let mut pfs = None;
        let lower = s.to_ascii_lowercase();
        for t in lower.split('-') {
            match t {
                "aes128gcm16" | "aes128gcm128" => aead = Some(Aead::AesGcm128),
                "aes256gcm16" | "aes256gcm128" => aead = Some(Aead::AesGcm256),
                "chacha20poly1305" => aead = Some(Aead::ChaCha20Poly1305),
                "aes128" => cbc_bits = Some(128),
                "aes256" => cbc_bits = Some(256),
                "sha256" | "sha2_256" => integ = Some(EspInteg::HmacSha256_128),
                "sha384" | "sha2_384" => integ = Some(EspInteg::HmacSha384_192),
                "sha512" | "sha2_512" => integ = Some(EspInteg::HmacSha512_256),
                "esn" => esn = true,
                "noesn" => no_esn = true,
                _ => pfs = Some(token_group(t).ok_or_else(|| bad_token("ESP", s, t))?),
            }
        }
        if !esn && !no_esn {
            no_esn = true;
        }
        let aead = match (aead, cbc_bits, integ) {
            (Some(a), None, None) => a,
            (None, Some(128), Some(i)) => Aead::AesCbc128(i),
            (None, Some(_), Some(i)) => Aead::AesCbc256(i),
            _ => return Err(bad()),
        };
        Ok(EspSuite {
            aead,
            esn,
            no_esn,
            pfs,
        })
    }

    /// The suite as strongSwan writes it (`aes128gcm16`, `aes256-sha256`,
    /// `aes256gcm16-esn-ecp384`...).
    pub fn name(&self) -> String {
        let mut n = self.aead.name();
        match (self.esn, self.no_esn) {
            (true, true) => n.push_str("-esn-noesn"),
            (true, false) => n.push_str("-esn"),
            _ => {}
        }
        if let Some(g) = self.pfs {
            n.push('-');
            n.push_str(g.name());
        }
        n
    }

    /// The wire proposal. `with_dh`: include the PFS group (not in IKE_AUTH).
    pub fn to_proposal(&self, number: u8, spi: u32, with_dh: bool) -> Proposal {
        let mut transforms = vec![encr_transform(
            EncrId::from(self.aead.ikev2_transform_id()),
            self.aead.ikev2_key_length_attr(),
        )];
        if let Some(i) = self.aead.ikev2_integ_id() {
            transforms.push(Transform::new(TransformId::Integ(IntegId::from(i))));
        }
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

fn integ_name(i: Integ) -> &'static str {
    match i {
        Integ::HmacSha256_128 => "sha256",
        Integ::HmacSha384_192 => "sha384",
        Integ::HmacSha512_256 => "sha512",
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
            let integ = s.aead.ikev2_integ_id().map(IntegId::from);
            let integ_ok = match integ {
                Some(i) => has(p, TransformId::Integ(i)),
                // AEAD: no integrity transform other than NONE (RFC 7296 §3.3).
                None => !p
                    .transforms
                    .iter()
                    .any(|t| matches!(t.id, TransformId::Integ(x) if x != IntegId::None)),
            };
            if !integ_ok {
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
            if let Some(i) = integ {
                transforms.push(Transform::new(TransformId::Integ(i)));
            }
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

/// One received proposal in strongSwan's keyword notation, every offered
/// algorithm of each type in the peer's order: `aes256-sha1-modp1024`,
/// `aes128gcm16-aes256gcm16-prfsha256-ecp256-ecp384`, with `esn`/`noesn`
/// for ESP. Codepoints without a keyword are written `encr#N`, `integ#N`...
pub fn describe_proposal(p: &Proposal) -> String {
    let mut encr = Vec::new();
    let mut integ = Vec::new();
    let mut prf = Vec::new();
    let mut dh = Vec::new();
    let mut esn = Vec::new();
    for t in &p.transforms {
        match t.id {
            TransformId::Encr(e) => {
                let bits = t.key_length();
                let aes = |suffix: &str| match bits {
                    Some(b) => format!("aes{b}{suffix}"),
                    None => format!("aes{suffix}"),
                };
                encr.push(match e {
                    EncrId::AesCbc => aes(""),
                    EncrId::AesCtr => aes("ctr"),
                    EncrId::AesGcm8 => aes("gcm8"),
                    EncrId::AesGcm12 => aes("gcm12"),
                    EncrId::AesGcm16 => aes("gcm16"),
                    EncrId::AesCcm8 => aes("ccm8"),
                    EncrId::AesCcm12 => aes("ccm12"),
                    EncrId::AesCcm16 => aes("ccm16"),
                    EncrId::TripleDes => "3des".into(),
                    EncrId::Null => "null".into(),
                    EncrId::ChaCha20Poly1305 => "chacha20poly1305".into(),
                    other => format!("encr#{}", u16::from(other)),
                })
            }
            TransformId::Integ(i) => integ.push(match i {
                IntegId::None => continue,
                IntegId::HmacMd5_96 => "md5".into(),
                IntegId::HmacSha1_96 => "sha1".into(),
                IntegId::AesXcbc96 => "aesxcbc".into(),
                IntegId::HmacSha2_256_128 => "sha256".into(),
                IntegId::HmacSha2_384_192 => "sha384".into(),
                IntegId::HmacSha2_512_256 => "sha512".into(),
                other => format!("integ#{}", u16::from(other)),
            }),
            TransformId::Prf(f) => prf.push(match f {
                dodvpn_wire::PrfId::HmacMd5 => "prfmd5".into(),
                dodvpn_wire::PrfId::HmacSha1 => "prfsha1".into(),
                dodvpn_wire::PrfId::Aes128Xcbc => "prfaesxcbc".into(),
                dodvpn_wire::PrfId::Aes128Cmac => "prfaescmac".into(),
                dodvpn_wire::PrfId::HmacSha2_256 => "prfsha256".into(),
                dodvpn_wire::PrfId::HmacSha2_384 => "prfsha384".into(),
                dodvpn_wire::PrfId::HmacSha2_512 => "prfsha512".into(),
                other => format!("prf#{}", u16::from(other)),
            }),
            TransformId::Dh(g) => dh.push(match g {
                DhGroup::None => continue,
                DhGroup::Modp1024 => "modp1024".into(),
                DhGroup::Curve448 => "curve448".into(),
                other => match Group::from_id(other) {
                    Some(g) => g.name().into(),
                    None => format!("dh#{}", u16::from(other)),
                },
            }),
            TransformId::Esn(e) => esn.push(match e {
                EsnId::Esn => "esn".into(),
                EsnId::NoEsn => "noesn".into(),
                other => format!("esn#{}", u16::from(other)),
            }),
            _ => {}
        }
    }
    // strongSwan derives one PRF per integrity hash when none is written: leave out
    // the PRFs that follow from the listed integrity algorithms, as its configs do.
    prf.retain(|f: &String| {
        !integ
            .iter()
            .any(|i| f.strip_prefix("prf") == Some(i.as_str()))
    });
    let mut all = encr;
    all.append(&mut integ);
    all.append(&mut prf);
    all.append(&mut dh);
    if p.protocol == ProtocolId::Esp {
        all.append(&mut esn);
    }
    all.join("-")
}

/// Every proposal of an SA payload, comma-separated, for logs.
pub fn describe_sa(sa: &Sa) -> String {
    sa.proposals
        .iter()
        .map(describe_proposal)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Our IKE suites, comma-separated, for logs.
pub fn describe_ike_suites(suites: &[IkeSuite]) -> String {
    suites
        .iter()
        .map(IkeSuite::name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Our ESP suites, comma-separated, for logs.
pub fn describe_esp_suites(suites: &[EspSuite]) -> String {
    suites
        .iter()
        .map(EspSuite::name)
        .collect::<Vec<_>>()
        .join(", ")
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

    #[test]
    fn new_groups_and_cbc_suites_parse_and_print_as_strongswan_writes_them() {
        for name in [
            "aes256-sha256-modp2048",
            "aes128-sha384-modp3072",
            "aes256-sha512-modp4096",
            "aes256gcm16-prfsha384-ecp521",
            "aes128gcm16-prfsha256-ecp256",
            "aes256-sha256-prfsha384-ecp384",
            "chacha20poly1305-prfsha256-curve25519",
        ] {
            let s = IkeSuite::parse(name).unwrap();
            assert_eq!(s.name(), name);
            // The wire proposal selects back to the same suite.
            let sa = ike_sa_payload(&[s], vec![]);
            assert!(
                matches!(select_ike(&[s], &sa, Some(s.group.id())), IkeSelection::Chosen(x, _) if x == s)
            );
        }
        let s = IkeSuite::parse("aes256-sha256-modp2048").unwrap();
        assert_eq!(s.group, Group::Modp2048);
        assert_eq!(
            s.cipher,
            IkeCipher::AesCbc {
                key_bits: 256,
                integ: Integ::HmacSha256_128
            }
        );
        for name in [
            "aes256-sha256",
            "aes128-sha384",
            "aes256-sha512-esn",
            "aes256gcm16",
            "aes128-sha256-modp2048",
        ] {
            assert_eq!(EspSuite::parse(name).unwrap().name(), name);
        }
        assert_eq!(
            EspSuite::parse("aes256-sha256").unwrap().aead,
            Aead::AesCbc256(EspInteg::HmacSha256_128)
        );
        // Refused keywords say why.
        for (bad, why) in [
            ("aes256-sha1-modp1024", "sha1"),
            ("aes256-sha256-modp1024", "MODP"),
            ("3des-sha256-modp2048", "64-bit"),
        ] {
            let e = IkeSuite::parse(bad).unwrap_err().to_string();
            assert!(e.contains("refused") && e.contains(why), "{bad}: {e}");
        }
        assert!(EspSuite::parse("aes256-sha1")
            .unwrap_err()
            .to_string()
            .contains("refused"));
        assert!(
            EspSuite::parse("aes256").is_err(),
            "CBC needs an integrity keyword"
        );
        assert!(
            EspSuite::parse("aes256gcm16-sha256").is_err(),
            "AEAD takes none"
        );
    }

    #[test]
    fn esp_cbc_selection_needs_the_integrity_transform() {
        let ours = parse_esp_proposals(&["aes256-sha256", "aes128gcm16"]).unwrap();
        let theirs = parse_esp_proposals(&["aes256-sha512", "aes256-sha256"]).unwrap();
        let sa = esp_sa_payload(&theirs, 0x42, false);
        let (c, answer) = select_esp(&ours, &sa, false, 7).unwrap();
        assert_eq!(c.aead, Aead::AesCbc256(EspInteg::HmacSha256_128));
        assert_eq!(answer.number, 2);
        assert!(answer
            .transforms
            .iter()
            .any(|t| t.id == TransformId::Integ(IntegId::HmacSha2_256_128)));
        // CBC without the integrity transform we want: refused.
        let only512 = esp_sa_payload(&parse_esp_proposals(&["aes256-sha512"]).unwrap(), 1, false);
        assert!(select_esp(&ours, &only512, false, 7).is_none());
        // An AEAD proposal carrying an integrity transform is not an AEAD proposal we take.
        let mut gcm = esp_sa_payload(&parse_esp_proposals(&["aes128gcm16"]).unwrap(), 1, false);
        gcm.proposals[0]
            .transforms
            .push(Transform::new(TransformId::Integ(
                IntegId::HmacSha2_256_128,
            )));
        assert!(select_esp(&ours, &gcm, false, 7).is_none());
    }

    #[test]
    fn received_proposals_are_described_in_strongswan_notation() {
        let mut p = IkeSuite::parse("aes256-sha256-modp2048")
            .unwrap()
            .to_proposal(1, vec![]);
        p.transforms
            .push(Transform::new(TransformId::Integ(IntegId::HmacSha1_96)));
        p.transforms
            .push(Transform::new(TransformId::Dh(DhGroup::Modp1024)));
        p.transforms
            .push(Transform::new(TransformId::Encr(EncrId::TripleDes)));
        p.transforms
            .push(Transform::new(TransformId::Dh(DhGroup::from(999))));
        assert_eq!(
            describe_proposal(&p),
            "aes256-3des-sha256-sha1-modp2048-modp1024-dh#999"
        );
        let esp = EspSuite::parse("aes128-sha256-esn")
            .unwrap()
            .to_proposal(1, 5, false);
        assert_eq!(describe_proposal(&esp), "aes128-sha256-esn");
        let ours = parse_ike_proposals(&["aes128gcm16-prfsha256-ecp256", "aes256-sha256-modp2048"])
            .unwrap();
        assert_eq!(
            describe_ike_suites(&ours),
            "aes128gcm16-prfsha256-ecp256, aes256-sha256-modp2048"
        );
    }
}

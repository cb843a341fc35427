//! Payload bodies (everything after the 4-byte generic payload header).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::codec::{count, put_u16, Reader};
use crate::codepoints::{
    AuthMethod, CertEncoding, CfgAttrType, CfgType, DhGroup, HashAlgorithm, IdType, NotifyType,
    PayloadType, ProtocolId,
};
use crate::error::{Error, Result};
use crate::sa::Sa;
use crate::ts::{emit_ts_payload, parse_ts_payload, TrafficSelector};

/// One IKEv2 payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Payload {
    SecurityAssociation(Sa),
    KeyExchange(KeyExchange),
    IdInitiator(Identification),
    IdResponder(Identification),
    Certificate(Certificate),
    CertificateRequest(CertificateRequest),
    Authentication(Auth),
    Nonce(Vec<u8>),
    Notify(Notify),
    Delete(Delete),
    VendorId(Vec<u8>),
    TsInitiator(Vec<TrafficSelector>),
    TsResponder(Vec<TrafficSelector>),
    /// SK (46). Must be the last payload of its chain.
    Encrypted(Encrypted),
    /// SKF (53, RFC 7383). Must be the last (in practice only) payload.
    EncryptedFragment(EncryptedFragment),
    Configuration(Configuration),
    /// EAP (48): the EAP message, uninterpreted.
    Eap(Vec<u8>),
    /// A payload type this crate does not know, received with the critical
    /// bit clear (RFC 7296 §2.5: skip it). Emitted with the critical bit clear.
    Unknown {
        payload_type: u8,
        body: Vec<u8>,
    },
}

/// KE payload (RFC 7296 §3.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyExchange {
    pub group: DhGroup,
    pub data: Vec<u8>,
}

/// IDi / IDr payload (RFC 7296 §3.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identification {
    pub id_type: IdType,
    pub data: Vec<u8>,
}

/// CERT payload (RFC 7296 §3.6).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Certificate {
    pub encoding: CertEncoding,
    pub data: Vec<u8>,
}

/// CERTREQ payload (RFC 7296 §3.7).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertificateRequest {
    pub encoding: CertEncoding,
    /// For X.509: concatenated 20-byte SHA-1 hashes of trusted CA public keys.
    pub authorities: Vec<u8>,
}

/// AUTH payload (RFC 7296 §3.8).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Auth {
    pub method: AuthMethod,
    /// For [`AuthMethod::DigitalSignature`]: 1-byte length ‖ ASN.1
    /// AlgorithmIdentifier ‖ signature (RFC 7427 §3); see
    /// [`Auth::digital_signature`] and [`Auth::split_digital_signature`].
    pub data: Vec<u8>,
}

/// Notify payload (RFC 7296 §3.10).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Notify {
    /// `Unspecified` (0) when `spi` is empty.
    pub protocol: ProtocolId,
    pub spi: Vec<u8>,
    pub notify_type: NotifyType,
    pub data: Vec<u8>,
}

/// Delete payload (RFC 7296 §3.11).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Delete {
    pub protocol: ProtocolId,
    /// 0 for IKE, 4 for ESP/AH. Every entry of `spis` must have this length.
    pub spi_size: u8,
    pub spis: Vec<Vec<u8>>,
}

/// SK payload: everything after the generic header, i.e. IV ‖ ciphertext
/// (incl. padding and pad length) ‖ ICV, as produced by the `ike` crate.
///
/// AAD for AEAD ciphers (RFC 5282 §5.1) is the IKE header plus the SK
/// generic payload header — i.e. every byte of the message before `body`
/// (SK is last, so `msg[..msg.len() - body.len()]`). For non-AEAD ciphers the
/// integrity checksum covers the message from the IKE header through the end
/// of the ciphertext (everything but the ICV). [`crate::locate_encrypted`]
/// returns these ranges for a serialized message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Encrypted {
    /// Type of the first payload inside (the SK generic header's "next
    /// payload" field).
    pub inner_next: PayloadType,
    pub body: Vec<u8>,
}

/// SKF payload (RFC 7383 §2.5): like SK, plus fragment numbering. The AAD
/// for AEAD is again every message byte before `body` (IKE header, generic
/// header, Fragment Number and Total Fragments).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EncryptedFragment {
    /// First inner payload type in fragment 1; 0 in the others.
    pub inner_next: PayloadType,
    pub fragment_number: u16,
    pub total_fragments: u16,
    pub body: Vec<u8>,
}

/// CP payload (RFC 7296 §3.15).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Configuration {
    pub cfg_type: CfgType,
    pub attributes: Vec<ConfigAttribute>,
}

/// One configuration attribute (type is 15 bits; the R bit is sent as 0).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConfigAttribute {
    pub attr_type: CfgAttrType,
    pub value: Vec<u8>,
}

impl Payload {
    /// The payload type written in the previous payload's "next payload".
    pub fn payload_type(&self) -> PayloadType {
        match self {
            Payload::SecurityAssociation(_) => PayloadType::SecurityAssociation,
            Payload::KeyExchange(_) => PayloadType::KeyExchange,
            Payload::IdInitiator(_) => PayloadType::IdInitiator,
            Payload::IdResponder(_) => PayloadType::IdResponder,
            Payload::Certificate(_) => PayloadType::Certificate,
            Payload::CertificateRequest(_) => PayloadType::CertificateRequest,
            Payload::Authentication(_) => PayloadType::Authentication,
            Payload::Nonce(_) => PayloadType::Nonce,
            Payload::Notify(_) => PayloadType::Notify,
            Payload::Delete(_) => PayloadType::Delete,
            Payload::VendorId(_) => PayloadType::VendorId,
            Payload::TsInitiator(_) => PayloadType::TsInitiator,
            Payload::TsResponder(_) => PayloadType::TsResponder,
            Payload::Encrypted(_) => PayloadType::Encrypted,
            Payload::EncryptedFragment(_) => PayloadType::EncryptedFragment,
            Payload::Configuration(_) => PayloadType::Configuration,
            Payload::Eap(_) => PayloadType::Eap,
            Payload::Unknown { payload_type, .. } => PayloadType::from(*payload_type),
        }
    }

    /// Parse a body of a known, non-encrypted payload type. `ty` must not be
    /// SK/SKF/Unknown (the chain parser handles those).
    pub(crate) fn parse_body(ty: PayloadType, mut r: Reader<'_>) -> Result<Payload> {
        Ok(match ty {
            PayloadType::SecurityAssociation => Payload::SecurityAssociation(Sa::parse(r)?),
            PayloadType::KeyExchange => {
                let group = DhGroup::from(r.u16("KE payload")?);
                r.take(2, "KE payload")?;
                Payload::KeyExchange(KeyExchange {
                    group,
                    data: r.rest().to_vec(),
                })
            }
            PayloadType::IdInitiator | PayloadType::IdResponder => {
                let id_type = IdType::from(r.u8("ID payload")?);
                r.take(3, "ID payload")?;
                let id = Identification {
                    id_type,
                    data: r.rest().to_vec(),
                };
                if ty == PayloadType::IdInitiator {
                    Payload::IdInitiator(id)
                } else {
                    Payload::IdResponder(id)
                }
            }
            PayloadType::Certificate => Payload::Certificate(Certificate {
                encoding: CertEncoding::from(r.u8("CERT payload")?),
                data: r.rest().to_vec(),
            }),
            PayloadType::CertificateRequest => Payload::CertificateRequest(CertificateRequest {
                encoding: CertEncoding::from(r.u8("CERTREQ payload")?),
                authorities: r.rest().to_vec(),
            }),
            PayloadType::Authentication => {
                let method = AuthMethod::from(r.u8("AUTH payload")?);
                r.take(3, "AUTH payload")?;
                Payload::Authentication(Auth {
                    method,
                    data: r.rest().to_vec(),
                })
            }
            PayloadType::Nonce => Payload::Nonce(r.rest().to_vec()),
            PayloadType::Notify => {
                let protocol = ProtocolId::from(r.u8("Notify payload")?);
                let spi_size = r.u8("Notify payload")? as usize;
                let notify_type = NotifyType::from(r.u16("Notify payload")?);
                let spi = r.take(spi_size, "Notify SPI")?.to_vec();
                Payload::Notify(Notify {
                    protocol,
                    spi,
                    notify_type,
                    data: r.rest().to_vec(),
                })
            }
            PayloadType::Delete => {
                let protocol = ProtocolId::from(r.u8("Delete payload")?);
                let spi_size = r.u8("Delete payload")?;
                let n_off = r.offset();
                let n = r.u16("Delete payload")? as usize;
                let sz = spi_size as usize;
                let found = r.remaining().checked_div(sz).unwrap_or(0);
                let exact = r.remaining() == found * sz;
                if n != found || !exact {
                    return Err(Error::CountMismatch {
                        offset: n_off,
                        what: "number of SPIs",
                        declared: n,
                        found,
                    });
                }
                let mut spis = Vec::with_capacity(n);
                for _ in 0..n {
                    spis.push(r.take(sz, "Delete SPI")?.to_vec());
                }
                Payload::Delete(Delete {
                    protocol,
                    spi_size,
                    spis,
                })
            }
            PayloadType::VendorId => Payload::VendorId(r.rest().to_vec()),
            PayloadType::TsInitiator => Payload::TsInitiator(parse_ts_payload(r)?),
            PayloadType::TsResponder => Payload::TsResponder(parse_ts_payload(r)?),
            PayloadType::Configuration => {
                let cfg_type = CfgType::from(r.u8("CP payload")?);
                r.take(3, "CP payload")?;
                let mut attributes = Vec::new();
                while !r.is_empty() {
                    let off = r.offset();
                    let t = r.u16("configuration attribute")? & 0x7fff;
                    let len = r.u16("configuration attribute")? as usize;
                    if len > r.remaining() {
                        return Err(Error::BadLength {
                            offset: off + 2,
                            what: "configuration attribute length",
                            value: len,
                        });
                    }
                    attributes.push(ConfigAttribute {
                        attr_type: CfgAttrType::from(t),
                        value: r.take(len, "configuration attribute")?.to_vec(),
                    });
                }
                Payload::Configuration(Configuration {
                    cfg_type,
                    attributes,
                })
            }
            PayloadType::Eap => Payload::Eap(r.rest().to_vec()),
            // Not reachable from the chain parser; keep total anyway.
            PayloadType::NoNextPayload
            | PayloadType::Encrypted
            | PayloadType::EncryptedFragment
            | PayloadType::Unknown(_) => Payload::Unknown {
                payload_type: ty.to_wire(),
                body: r.rest().to_vec(),
            },
        })
    }

    /// Append the body (no generic header). SK/SKF write their fields after
    /// the generic header (fragment numbers, then body).
    pub(crate) fn emit_body(&self, out: &mut Vec<u8>) -> Result<()> {
        match self {
            Payload::SecurityAssociation(sa) => sa.emit(out)?,
            Payload::KeyExchange(ke) => {
                put_u16(out, ke.group.to_wire());
                put_u16(out, 0);
                out.extend_from_slice(&ke.data);
            }
            Payload::IdInitiator(id) | Payload::IdResponder(id) => {
                out.extend_from_slice(&id.body())
            }
            Payload::Certificate(c) => {
                out.push(c.encoding.to_wire());
                out.extend_from_slice(&c.data);
            }
            Payload::CertificateRequest(c) => {
                out.push(c.encoding.to_wire());
                out.extend_from_slice(&c.authorities);
            }
            Payload::Authentication(a) => {
                out.push(a.method.to_wire());
                out.extend_from_slice(&[0, 0, 0]);
                out.extend_from_slice(&a.data);
            }
            Payload::Nonce(d) | Payload::VendorId(d) | Payload::Eap(d) => out.extend_from_slice(d),
            Payload::Notify(n) => {
                out.push(n.protocol.to_wire());
                out.push(count::<u8>(n.spi.len(), "Notify SPI size")?);
                put_u16(out, n.notify_type.to_wire());
                out.extend_from_slice(&n.spi);
                out.extend_from_slice(&n.data);
            }
            Payload::Delete(d) => {
                if d.spis.iter().any(|s| s.len() != d.spi_size as usize)
                    || (d.spi_size == 0 && !d.spis.is_empty())
                {
                    return Err(Error::Unencodable {
                        what: "Delete SPI of wrong size",
                    });
                }
                out.push(d.protocol.to_wire());
                out.push(d.spi_size);
                put_u16(out, count::<u16>(d.spis.len(), "number of SPIs")?);
                for s in &d.spis {
                    out.extend_from_slice(s);
                }
            }
            Payload::TsInitiator(t) | Payload::TsResponder(t) => emit_ts_payload(t, out)?,
            Payload::Encrypted(e) => out.extend_from_slice(&e.body),
            Payload::EncryptedFragment(f) => {
                put_u16(out, f.fragment_number);
                put_u16(out, f.total_fragments);
                out.extend_from_slice(&f.body);
            }
            Payload::Configuration(c) => {
                out.push(c.cfg_type.to_wire());
                out.extend_from_slice(&[0, 0, 0]);
                for a in &c.attributes {
                    let t = a.attr_type.to_wire();
                    if t > 0x7fff {
                        return Err(Error::Unencodable {
                            what: "configuration attribute type",
                        });
                    }
                    put_u16(out, t);
                    put_u16(
                        out,
                        count::<u16>(a.value.len(), "configuration attribute length")?,
                    );
                    out.extend_from_slice(&a.value);
                }
            }
            Payload::Unknown { body, .. } => out.extend_from_slice(body),
        }
        Ok(())
    }
}

impl Identification {
    pub fn ipv4(a: Ipv4Addr) -> Self {
        Identification {
            id_type: IdType::Ipv4Addr,
            data: a.octets().to_vec(),
        }
    }
    pub fn ipv6(a: Ipv6Addr) -> Self {
        Identification {
            id_type: IdType::Ipv6Addr,
            data: a.octets().to_vec(),
        }
    }
    pub fn ip(a: IpAddr) -> Self {
        match a {
            IpAddr::V4(a) => Self::ipv4(a),
            IpAddr::V6(a) => Self::ipv6(a),
        }
    }
    pub fn fqdn(name: &str) -> Self {
        Identification {
            id_type: IdType::Fqdn,
            data: name.as_bytes().to_vec(),
        }
    }
    pub fn rfc822(addr: &str) -> Self {
        Identification {
            id_type: IdType::Rfc822Addr,
            data: addr.as_bytes().to_vec(),
        }
    }
    /// DER-encoded X.501 Name (e.g. a certificate's subject).
    pub fn der_dn(der: &[u8]) -> Self {
        Identification {
            id_type: IdType::DerAsn1Dn,
            data: der.to_vec(),
        }
    }
    pub fn key_id(id: &[u8]) -> Self {
        Identification {
            id_type: IdType::KeyId,
            data: id.to_vec(),
        }
    }

    /// The address of an IPv4/IPv6 ID of the right length.
    pub fn as_ip(&self) -> Option<IpAddr> {
        match self.id_type {
            IdType::Ipv4Addr => <[u8; 4]>::try_from(self.data.as_slice())
                .ok()
                .map(|a| IpAddr::V4(a.into())),
            IdType::Ipv6Addr => <[u8; 16]>::try_from(self.data.as_slice())
                .ok()
                .map(|a| IpAddr::V6(a.into())),
            _ => None,
        }
    }

    /// FQDN / RFC822 / KEY_ID text when it is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self.id_type {
            IdType::Fqdn | IdType::Rfc822Addr | IdType::KeyId => {
                core::str::from_utf8(&self.data).ok()
            }
            _ => None,
        }
    }

    /// The payload body (ID Type ‖ 3 reserved ‖ data): this is
    /// "RestOfInitIDPayload" / "RestOfRespIDPayload" that RFC 7296 §2.15
    /// feeds into prf(SK_pi/SK_pr, …) for the AUTH computation.
    pub fn body(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(4 + self.data.len());
        v.push(self.id_type.to_wire());
        v.extend_from_slice(&[0, 0, 0]);
        v.extend_from_slice(&self.data);
        v
    }
}

impl CertificateRequest {
    /// The 20-byte SHA-1 SPKI hashes (X.509 encoding); a trailing partial
    /// chunk is ignored.
    pub fn authority_hashes(&self) -> impl Iterator<Item = &[u8]> {
        self.authorities.chunks_exact(20)
    }
}

/// DER AlgorithmIdentifiers for RFC 7427 Digital Signature AUTH (RFC 7427
/// Appendix A, RFC 8420).
pub mod algorithm_identifier {
    /// sha256WithRSAEncryption, NULL parameters.
    pub const SHA256_WITH_RSA: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
    ];
    /// sha384WithRSAEncryption, NULL parameters.
    pub const SHA384_WITH_RSA: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c, 0x05, 0x00,
    ];
    /// sha512WithRSAEncryption, NULL parameters.
    pub const SHA512_WITH_RSA: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d, 0x05, 0x00,
    ];
    /// ecdsa-with-SHA256.
    pub const ECDSA_WITH_SHA256: &[u8] = &[
        0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
    ];
    /// ecdsa-with-SHA384.
    pub const ECDSA_WITH_SHA384: &[u8] = &[
        0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
    ];
    /// ecdsa-with-SHA512.
    pub const ECDSA_WITH_SHA512: &[u8] = &[
        0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04,
    ];
    /// id-Ed25519 (RFC 8420).
    pub const ED25519: &[u8] = &[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];
}

impl Auth {
    /// Build an RFC 7427 Digital Signature AUTH payload (method 14):
    /// data = len(alg_id) ‖ alg_id ‖ signature.
    pub fn digital_signature(alg_id: &[u8], signature: &[u8]) -> Result<Auth> {
        let l = count::<u8>(alg_id.len(), "AlgorithmIdentifier length")?;
        let mut data = Vec::with_capacity(1 + alg_id.len() + signature.len());
        data.push(l);
        data.extend_from_slice(alg_id);
        data.extend_from_slice(signature);
        Ok(Auth {
            method: AuthMethod::DigitalSignature,
            data,
        })
    }

    /// Split method-14 data into (AlgorithmIdentifier DER, signature).
    /// Offsets in errors are relative to the start of `data`.
    pub fn split_digital_signature(&self) -> Result<(&[u8], &[u8])> {
        if self.method != AuthMethod::DigitalSignature {
            return Err(Error::Invalid {
                offset: 0,
                what: "AUTH method is not Digital Signature",
            });
        }
        let (&l, rest) = self.data.split_first().ok_or(Error::Truncated {
            offset: 0,
            what: "AlgorithmIdentifier length",
            needed: 1,
        })?;
        let l = l as usize;
        if l > rest.len() {
            return Err(Error::BadLength {
                offset: 0,
                what: "AlgorithmIdentifier length",
                value: l,
            });
        }
        Ok(rest.split_at(l))
    }
}

impl Notify {
    /// A notify about the IKE SA (no SPI).
    pub fn new(notify_type: NotifyType, data: Vec<u8>) -> Self {
        Notify {
            protocol: ProtocolId::Unspecified,
            spi: Vec::new(),
            notify_type,
            data,
        }
    }

    /// A notify about a child SA (e.g. REKEY_SA, INVALID_SPI with ESP SPI).
    pub fn with_spi(
        protocol: ProtocolId,
        spi: u32,
        notify_type: NotifyType,
        data: Vec<u8>,
    ) -> Self {
        Notify {
            protocol,
            spi: spi.to_be_bytes().to_vec(),
            notify_type,
            data,
        }
    }

    /// INVALID_KE_PAYLOAD carrying the group the responder wants.
    pub fn invalid_ke_payload(group: DhGroup) -> Self {
        Self::new(
            NotifyType::InvalidKePayload,
            group.to_wire().to_be_bytes().to_vec(),
        )
    }

    /// The group requested by INVALID_KE_PAYLOAD (2-byte data).
    pub fn requested_group(&self) -> Option<DhGroup> {
        if self.notify_type != NotifyType::InvalidKePayload {
            return None;
        }
        <[u8; 2]>::try_from(self.data.as_slice())
            .ok()
            .map(|b| DhGroup::from(u16::from_be_bytes(b)))
    }

    /// SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4) with the given list.
    pub fn signature_hash_algorithms(algs: &[HashAlgorithm]) -> Self {
        let mut data = Vec::with_capacity(algs.len() * 2);
        for a in algs {
            data.extend_from_slice(&a.to_wire().to_be_bytes());
        }
        Self::new(NotifyType::SignatureHashAlgorithms, data)
    }

    /// The list carried by SIGNATURE_HASH_ALGORITHMS (None if another type
    /// or an odd length).
    pub fn hash_algorithms(&self) -> Option<Vec<HashAlgorithm>> {
        if self.notify_type != NotifyType::SignatureHashAlgorithms || self.data.len() % 2 != 0 {
            return None;
        }
        Some(
            self.data
                .chunks_exact(2)
                .map(|c| HashAlgorithm::from(u16::from_be_bytes([c[0], c[1]])))
                .collect(),
        )
    }

    /// The SPI as a 32-bit ESP/AH SPI when it is 4 bytes.
    pub fn spi_u32(&self) -> Option<u32> {
        <[u8; 4]>::try_from(self.spi.as_slice())
            .ok()
            .map(u32::from_be_bytes)
    }
}

impl Delete {
    /// Delete the IKE SA this message is protected by.
    pub fn ike() -> Self {
        Delete {
            protocol: ProtocolId::Ike,
            spi_size: 0,
            spis: Vec::new(),
        }
    }

    /// Delete ESP child SAs (our inbound SPIs).
    pub fn esp(spis: &[u32]) -> Self {
        Delete {
            protocol: ProtocolId::Esp,
            spi_size: 4,
            spis: spis.iter().map(|s| s.to_be_bytes().to_vec()).collect(),
        }
    }

    /// 4-byte SPIs as u32 (others skipped).
    pub fn spis_u32(&self) -> Vec<u32> {
        self.spis
            .iter()
            .filter_map(|s| {
                <[u8; 4]>::try_from(s.as_slice())
                    .ok()
                    .map(u32::from_be_bytes)
            })
            .collect()
    }
}

//! SA payload body: proposals → transforms → attributes (RFC 7296 §3.3).

use crate::codec::{count, patch_len16, put_u16, Reader};
use crate::codepoints::{DhGroup, EncrId, EsnId, IntegId, PrfId, ProtocolId, TransformType};
use crate::error::{Error, Result};

/// Transform attribute type of Key Length (always TV format).
pub const ATTR_KEY_LENGTH: u16 = 14;

/// The body of an SA payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Sa {
    pub proposals: Vec<Proposal>,
}

/// One proposal substructure.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Proposal {
    /// Proposal number (first is 1, RFC 7296 §3.3.1). Emitted as stored.
    pub number: u8,
    pub protocol: ProtocolId,
    /// Empty for an initial IKE SA, 8 bytes for IKE rekey, 4 for ESP/AH.
    pub spi: Vec<u8>,
    pub transforms: Vec<Transform>,
}

impl Proposal {
    /// The SPI as a 32-bit ESP/AH SPI, when it is 4 bytes long.
    pub fn spi_u32(&self) -> Option<u32> {
        <[u8; 4]>::try_from(self.spi.as_slice())
            .ok()
            .map(u32::from_be_bytes)
    }

    /// The SPI as a 64-bit IKE SPI, when it is 8 bytes long.
    pub fn spi_u64(&self) -> Option<u64> {
        <[u8; 8]>::try_from(self.spi.as_slice())
            .ok()
            .map(u64::from_be_bytes)
    }
}

/// A transform: its (typed) type + ID and its attributes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Transform {
    pub id: TransformId,
    pub attributes: Vec<TransformAttribute>,
}

impl Transform {
    pub fn new(id: TransformId) -> Self {
        Transform {
            id,
            attributes: Vec::new(),
        }
    }

    /// A transform with a Key Length attribute (in bits), e.g. AES-GCM-16/256.
    pub fn with_key_length(id: TransformId, bits: u16) -> Self {
        Transform {
            id,
            attributes: vec![TransformAttribute::KeyLength(bits)],
        }
    }

    /// The Key Length attribute, if present.
    pub fn key_length(&self) -> Option<u16> {
        self.attributes.iter().find_map(|a| match a {
            TransformAttribute::KeyLength(k) => Some(*k),
            _ => None,
        })
    }
}

/// Transform type and ID, typed by transform type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransformId {
    Encr(EncrId),
    Prf(PrfId),
    Integ(IntegId),
    Dh(DhGroup),
    Esn(EsnId),
    /// A transform type this crate does not know (types 1..=5 always map to
    /// the typed variants on parse).
    Unknown {
        transform_type: u8,
        id: u16,
    },
}

impl TransformId {
    pub fn from_wire(transform_type: u8, id: u16) -> Self {
        match TransformType::from(transform_type) {
            TransformType::Encr => TransformId::Encr(id.into()),
            TransformType::Prf => TransformId::Prf(id.into()),
            TransformType::Integ => TransformId::Integ(id.into()),
            TransformType::Dh => TransformId::Dh(id.into()),
            TransformType::Esn => TransformId::Esn(id.into()),
            TransformType::Unknown(_) => TransformId::Unknown { transform_type, id },
        }
    }

    pub fn transform_type(self) -> TransformType {
        match self {
            TransformId::Encr(_) => TransformType::Encr,
            TransformId::Prf(_) => TransformType::Prf,
            TransformId::Integ(_) => TransformType::Integ,
            TransformId::Dh(_) => TransformType::Dh,
            TransformId::Esn(_) => TransformType::Esn,
            TransformId::Unknown { transform_type, .. } => TransformType::from(transform_type),
        }
    }

    /// The 16-bit transform ID as on the wire.
    pub fn raw_id(self) -> u16 {
        match self {
            TransformId::Encr(x) => x.into(),
            TransformId::Prf(x) => x.into(),
            TransformId::Integ(x) => x.into(),
            TransformId::Dh(x) => x.into(),
            TransformId::Esn(x) => x.into(),
            TransformId::Unknown { id, .. } => id,
        }
    }
}

/// A transform attribute (RFC 7296 §3.3.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TransformAttribute {
    /// Type 14 in TV format: key length in bits.
    KeyLength(u16),
    /// Any other TV-format attribute (`attr_type` is 15 bits).
    Tv { attr_type: u16, value: u16 },
    /// A TLV-format attribute (`attr_type` is 15 bits).
    Tlv { attr_type: u16, value: Vec<u8> },
}

impl Sa {
    pub(crate) fn parse(mut r: Reader<'_>) -> Result<Sa> {
        let mut proposals = Vec::new();
        let mut last_seen = false;
        while !r.is_empty() {
            if last_seen {
                return Err(Error::Invalid {
                    offset: r.offset(),
                    what: "data after last proposal",
                });
            }
            let off = r.offset();
            let last = r.u8("proposal header")?;
            match last {
                0 => last_seen = true,
                2 => {}
                _ => {
                    return Err(Error::Invalid {
                        offset: off,
                        what: "proposal last-substructure",
                    })
                }
            }
            let _reserved = r.u8("proposal header")?;
            let len = r.u16("proposal header")? as usize;
            if len < 8 || len - 4 > r.remaining() {
                return Err(Error::BadLength {
                    offset: off + 2,
                    what: "proposal length",
                    value: len,
                });
            }
            let mut p = r.sub(len - 4, "proposal")?;
            proposals.push(Proposal::parse(&mut p, off)?);
        }
        if !proposals.is_empty() && !last_seen {
            return Err(Error::Invalid {
                offset: r.offset(),
                what: "last proposal marked as not last",
            });
        }
        Ok(Sa { proposals })
    }

    pub(crate) fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        let n = self.proposals.len();
        for (i, p) in self.proposals.iter().enumerate() {
            let start = out.len();
            out.push(if i + 1 == n { 0 } else { 2 });
            out.push(0);
            put_u16(out, 0);
            out.push(p.number);
            out.push(p.protocol.to_wire());
            out.push(count::<u8>(p.spi.len(), "proposal SPI size")?);
            out.push(count::<u8>(p.transforms.len(), "number of transforms")?);
            out.extend_from_slice(&p.spi);
            let tn = p.transforms.len();
            for (j, t) in p.transforms.iter().enumerate() {
                let ts = out.len();
                out.push(if j + 1 == tn { 0 } else { 3 });
                out.push(0);
                put_u16(out, 0);
                out.push(t.id.transform_type().to_wire());
                out.push(0);
                put_u16(out, t.id.raw_id());
                for a in &t.attributes {
                    match a {
                        TransformAttribute::KeyLength(k) => {
                            put_u16(out, 0x8000 | ATTR_KEY_LENGTH);
                            put_u16(out, *k);
                        }
                        TransformAttribute::Tv { attr_type, value } => {
                            if *attr_type > 0x7fff {
                                return Err(Error::Unencodable {
                                    what: "attribute type",
                                });
                            }
                            put_u16(out, 0x8000 | attr_type);
                            put_u16(out, *value);
                        }
                        TransformAttribute::Tlv { attr_type, value } => {
                            if *attr_type > 0x7fff {
                                return Err(Error::Unencodable {
                                    what: "attribute type",
                                });
                            }
                            put_u16(out, *attr_type);
                            put_u16(out, count::<u16>(value.len(), "attribute length")?);
                            out.extend_from_slice(value);
                        }
                    }
                }
                patch_len16(out, ts + 2, ts, "transform length")?;
            }
            patch_len16(out, start + 2, start, "proposal length")?;
        }
        Ok(())
    }
}

impl Proposal {
    fn parse(r: &mut Reader<'_>, start: usize) -> Result<Proposal> {
        let number = r.u8("proposal header")?;
        let protocol = ProtocolId::from(r.u8("proposal header")?);
        let spi_size = r.u8("proposal header")? as usize;
        let declared = r.u8("proposal header")? as usize;
        let spi = r.take(spi_size, "proposal SPI")?.to_vec();
        let mut transforms = Vec::new();
        let mut last_seen = false;
        while !r.is_empty() {
            let off = r.offset();
            if last_seen {
                return Err(Error::Invalid {
                    offset: off,
                    what: "data after last transform",
                });
            }
            let last = r.u8("transform header")?;
            match last {
                0 => last_seen = true,
                3 => {}
                _ => {
                    return Err(Error::Invalid {
                        offset: off,
                        what: "transform last-substructure",
                    })
                }
            }
            let _reserved = r.u8("transform header")?;
            let len = r.u16("transform header")? as usize;
            if len < 8 || len - 4 > r.remaining() {
                return Err(Error::BadLength {
                    offset: off + 2,
                    what: "transform length",
                    value: len,
                });
            }
            let mut t = r.sub(len - 4, "transform")?;
            let ttype = t.u8("transform header")?;
            let _reserved = t.u8("transform header")?;
            let id = t.u16("transform header")?;
            let mut attributes = Vec::new();
            while !t.is_empty() {
                let aoff = t.offset();
                let ty = t.u16("transform attribute")?;
                if ty & 0x8000 != 0 {
                    let value = t.u16("transform attribute")?;
                    let attr_type = ty & 0x7fff;
                    attributes.push(if attr_type == ATTR_KEY_LENGTH {
                        TransformAttribute::KeyLength(value)
                    } else {
                        TransformAttribute::Tv { attr_type, value }
                    });
                } else {
                    let alen = t.u16("transform attribute")? as usize;
                    if alen > t.remaining() {
                        return Err(Error::BadLength {
                            offset: aoff + 2,
                            what: "attribute length",
                            value: alen,
                        });
                    }
                    let value = t.take(alen, "transform attribute")?.to_vec();
                    attributes.push(TransformAttribute::Tlv {
                        attr_type: ty,
                        value,
                    });
                }
            }
            transforms.push(Transform {
                id: TransformId::from_wire(ttype, id),
                attributes,
            });
        }
        if !transforms.is_empty() && !last_seen {
            return Err(Error::Invalid {
                offset: r.offset(),
                what: "last transform marked as not last",
            });
        }
        if transforms.len() != declared {
            return Err(Error::CountMismatch {
                offset: start + 7,
                what: "number of transforms",
                declared,
                found: transforms.len(),
            });
        }
        Ok(Proposal {
            number,
            protocol,
            spi,
            transforms,
        })
    }
}

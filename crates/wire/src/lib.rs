//! # dodvpn-wire
//!
//! IKEv2 (RFC 7296, plus RFC 7383 fragments, RFC 7427 signature AUTH) and
//! ESP (RFC 4303, RFC 3948 UDP encapsulation) wire formats: parse and emit,
//! no I/O, no crypto state. This is the one place that knows the bytes.
//!
//! * IKE side: [`Message::parse`] / [`Message::emit`] with owned payload
//!   structs (`Vec<u8>` fields), typed code points with `Unknown(raw)` kept.
//!   [`parse_payload_chain`] / [`emit_payload_chain`] handle the decrypted
//!   inside of an SK payload; [`locate_encrypted`], [`emit_encrypted`] and
//!   [`emit_encrypted_fragment`] give the `ike` crate the AAD and body ranges
//!   for in-place AEAD.
//! * Data plane: [`EspHeader`], the ESP trailer ([`esp_pad_len`],
//!   [`write_esp_trailer`], [`check_esp_trailer`]), [`classify_udp4500`],
//!   and the IP / TCP / UDP headers ([`peek_ip`], [`IpHeader`],
//!   [`TcpHeader`], [`UdpHeader`], [`set_tos`]): borrow-only,
//!   allocation-free, used by `dodvpn-esp` and `dodvpn-dataplane` on every
//!   packet.
//!
//! No function in this crate panics on any input bytes.
//!
//! ```
//! use dodvpn_wire::*;
//!
//! let sa = Sa {
//!     proposals: vec![Proposal {
//!         number: 1,
//!         protocol: ProtocolId::Ike,
//!         spi: vec![],
//!         transforms: vec![
//!             Transform::with_key_length(TransformId::Encr(EncrId::AesGcm16), 256),
//!             Transform::new(TransformId::Prf(PrfId::HmacSha2_256)),
//!             Transform::new(TransformId::Dh(DhGroup::Ecp256)),
//!         ],
//!     }],
//! };
//! let header = IkeHeader::new(0x0102, 0, ExchangeType::IkeSaInit, Flags::new(true, false), 0);
//! let msg = Message::new(
//!     header,
//!     vec![
//!         Payload::SecurityAssociation(sa),
//!         Payload::KeyExchange(KeyExchange { group: DhGroup::Ecp256, data: vec![0; 64] }),
//!         Payload::Nonce(vec![7; 32]),
//!     ],
//! );
//! let bytes = msg.to_bytes().unwrap();
//! let back = Message::parse(&bytes).unwrap();
//! assert_eq!(back.payloads, msg.payloads);
//! assert_eq!(back.header.length as usize, bytes.len());
//!
//! // On port 4500 the same message travels behind the non-ESP marker.
//! let mut dgram = NON_ESP_MARKER.to_vec();
//! dgram.extend_from_slice(&bytes);
//! assert_eq!(classify_udp4500(&dgram), Udp4500::Ike(&bytes[..]));
//! ```

#![forbid(unsafe_code)]

mod codec;
pub mod codepoints;
mod error;
pub mod esp;
mod header;
pub mod ip;
mod message;
mod payload;
mod sa;
mod ts;

pub use codepoints::*;
pub use error::{Error, Result};
pub use esp::{
    check_esp_trailer, classify_udp4500, esp_pad_len, write_esp_trailer, EspHeader, EspTrailer,
    Udp4500, ESP_HEADER_LEN, ESP_TRAILER_LEN, NON_ESP_MARKER,
};
pub use header::{Flags, IkeHeader, IKE_HEADER_LEN};
pub use ip::{peek_ip, set_tos, IpHeader, TcpHeader, UdpHeader, UpperLayer};
pub use message::{
    emit_encrypted, emit_encrypted_fragment, emit_payload_chain, locate_encrypted,
    parse_payload_chain, EncryptedLocation, Message, GENERIC_HEADER_LEN,
};
pub use payload::{
    algorithm_identifier, Auth, Certificate, CertificateRequest, ConfigAttribute, Configuration,
    Delete, Encrypted, EncryptedFragment, Identification, KeyExchange, Notify, Payload,
};
pub use sa::{Proposal, Sa, Transform, TransformAttribute, TransformId, ATTR_KEY_LENGTH};
pub use ts::{TrafficSelector, TsRange};

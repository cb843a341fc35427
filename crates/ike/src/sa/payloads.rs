//! Picking what an exchange needs out of a payload chain, in one place.

use dodvpn_wire::{
    Auth, Certificate, CertificateRequest, Identification, KeyExchange, Notify, NotifyType,
    Payload, Sa, TrafficSelector,
};

/// The first payload of each kind in a chain (later duplicates are ignored),
/// except CERT and CERTREQ, which are all kept in order (RFC 7296 §3.6: the
/// first CERT holds the key that signed AUTH, the others its chain).
#[derive(Default)]
pub(crate) struct Found<'a> {
    pub sa: Option<&'a Sa>,
    pub ke: Option<&'a KeyExchange>,
    pub nonce: Option<&'a [u8]>,
    pub idi: Option<&'a Identification>,
    pub idr: Option<&'a Identification>,
    pub certs: Vec<&'a Certificate>,
    pub certreqs: Vec<&'a CertificateRequest>,
    pub auth: Option<&'a Auth>,
    pub tsi: Option<&'a [TrafficSelector]>,
    pub tsr: Option<&'a [TrafficSelector]>,
}

impl<'a> Found<'a> {
    pub(crate) fn of(payloads: &'a [Payload]) -> Found<'a> {
        let mut f = Found::default();
        for p in payloads {
            match p {
                Payload::SecurityAssociation(s) => {
                    f.sa.get_or_insert(s);
                }
                Payload::KeyExchange(k) => {
                    f.ke.get_or_insert(k);
                }
                Payload::Nonce(n) => {
                    f.nonce.get_or_insert(n);
                }
                Payload::IdInitiator(i) => {
                    f.idi.get_or_insert(i);
                }
                Payload::IdResponder(i) => {
                    f.idr.get_or_insert(i);
                }
                Payload::Certificate(c) => f.certs.push(c),
                Payload::CertificateRequest(c) => f.certreqs.push(c),
                Payload::Authentication(a) => {
                    f.auth.get_or_insert(a);
                }
                Payload::TsInitiator(t) => {
                    f.tsi.get_or_insert(t);
                }
                Payload::TsResponder(t) => {
                    f.tsr.get_or_insert(t);
                }
                _ => {}
            }
        }
        f
    }
}

pub(crate) fn notify(t: NotifyType, data: Vec<u8>) -> Payload {
    Payload::Notify(Notify::new(t, data))
}

pub(crate) fn first_error(payloads: &[Payload]) -> Option<NotifyType> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.notify_type.is_error() => Some(n.notify_type),
        _ => None,
    })
}

pub(crate) fn find_notify(payloads: &[Payload], t: NotifyType) -> Option<&Notify> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.notify_type == t => Some(n),
        _ => None,
    })
}

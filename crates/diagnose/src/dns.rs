//! The DNS questions (built and judged with hickory-proto, no I/O here): the
//! `version.bind` CHAOS TXT, a recursive question, and a zone transfer.

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_proto::serialize::binary::BinEncodable;

fn question(
    id: u16,
    name: &str,
    ty: RecordType,
    class: DNSClass,
    rd: bool,
) -> Result<Vec<u8>, String> {
    let name = Name::from_ascii(name).map_err(|e| format!("bad DNS name {name:?}: {e}"))?;
    let mut q = Query::query(name, ty);
    q.set_query_class(class);
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(rd)
        .add_query(q);
    m.to_bytes().map_err(|e| e.to_string())
}

/// `version.bind. CH TXT`.
pub fn version_query(id: u16) -> Vec<u8> {
    question(id, "version.bind.", RecordType::TXT, DNSClass::CH, false).unwrap_or_default()
}

/// An A question with recursion desired, for a name the server should not be
/// authoritative for (the operator's canary name).
pub fn recursion_query(id: u16, name: &str) -> Result<Vec<u8>, String> {
    question(id, name, RecordType::A, DNSClass::IN, true)
}

/// An AXFR question for `zone`, framed for TCP (2-byte length first).
pub fn axfr_query(id: u16, zone: &str) -> Result<Vec<u8>, String> {
    let q = question(id, zone, RecordType::AXFR, DNSClass::IN, false)?;
    let mut out = (q.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&q);
    Ok(out)
}

/// A response to question `id`, or None.
fn response(b: &[u8], id: u16) -> Option<Message> {
    let m = Message::from_vec(b).ok()?;
    (m.id() == id && m.message_type() == MessageType::Response).then_some(m)
}

/// The version string from a `version.bind` answer.
pub fn version_answer(b: &[u8], id: u16) -> Option<String> {
    let m = response(b, id)?;
    if m.response_code() != ResponseCode::NoError {
        return None;
    }
    m.answers().iter().find_map(|r| match r.data() {
        RData::TXT(t) => Some(
            t.txt_data()
                .iter()
                .map(|s| String::from_utf8_lossy(s).to_string())
                .collect::<Vec<_>>()
                .join(""),
        ),
        _ => None,
    })
}

/// Whether the server offers recursion: it says so (RA) and did not refuse. The
/// answer itself may be SERVFAIL when the resolver cannot reach the Internet; an
/// open resolver is open all the same.
pub fn recursion_offered(b: &[u8], id: u16) -> Option<(bool, String)> {
    let m = response(b, id)?;
    let rc = m.response_code();
    let open = m.recursion_available() && rc != ResponseCode::Refused;
    Some((
        open,
        format!(
            "rcode={} ra={} answers={}",
            rc,
            m.recursion_available(),
            m.answers().len()
        ),
    ))
}

/// The records of the first AXFR message (after its 2-byte length), if the transfer
/// was allowed: NOERROR and an SOA first.
pub fn axfr_answer(b: &[u8], id: u16) -> Option<Vec<String>> {
    if b.len() < 2 {
        return None;
    }
    let n = u16::from_be_bytes([b[0], b[1]]) as usize;
    let m = response(b.get(2..2 + n)?, id)?;
    if m.response_code() != ResponseCode::NoError {
        return None;
    }
    let first = m.answers().first()?;
    if first.record_type() != RecordType::SOA {
        return None;
    }
    Some(m.answers().iter().map(|r| r.to_string()).collect())
}

/// Bytes of the first TCP-framed message still missing (0 when complete).
pub fn tcp_missing(b: &[u8]) -> usize {
    if b.len() < 2 {
        return 2 - b.len();
    }
    let n = u16::from_be_bytes([b[0], b[1]]) as usize + 2;
    n.saturating_sub(b.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{SOA, TXT};
    use hickory_proto::rr::Record;
    use proptest::prelude::*;

    fn reply_to(q: &[u8], f: impl FnOnce(&mut Message)) -> Vec<u8> {
        let mut m = Message::from_vec(q).unwrap();
        m.set_message_type(MessageType::Response);
        f(&mut m);
        m.to_bytes().unwrap()
    }

    #[test]
    fn version_bind() {
        let q = version_query(7);
        let r = reply_to(&q, |m| {
            let name = Name::from_ascii("version.bind.").unwrap();
            let mut rec = Record::from_rdata(
                name,
                0,
                RData::TXT(TXT::new(vec!["9.18.28-1~deb12u2-Debian".into()])),
            );
            rec.set_dns_class(DNSClass::CH);
            m.add_answer(rec);
        });
        assert_eq!(
            version_answer(&r, 7).as_deref(),
            Some("9.18.28-1~deb12u2-Debian")
        );
        assert_eq!(version_answer(&r, 8), None);
        assert_eq!(version_answer(&q, 7), None, "a question is not an answer");
    }

    #[test]
    fn recursion() {
        let q = recursion_query(9, "canary.example.").unwrap();
        let open = reply_to(&q, |m| {
            m.set_recursion_available(true);
            m.set_response_code(ResponseCode::ServFail);
        });
        assert!(recursion_offered(&open, 9).unwrap().0);
        let closed = reply_to(&q, |m| {
            m.set_recursion_available(true);
            m.set_response_code(ResponseCode::Refused);
        });
        assert!(!recursion_offered(&closed, 9).unwrap().0);
    }

    #[test]
    fn axfr() {
        let framed = axfr_query(3, "example.org.").unwrap();
        assert_eq!(tcp_missing(&framed), 0);
        let r = reply_to(&framed[2..], |m| {
            let zone = Name::from_ascii("example.org.").unwrap();
            let soa = SOA::new(zone.clone(), zone.clone(), 1, 1, 1, 1, 1);
            m.add_answer(Record::from_rdata(zone, 60, RData::SOA(soa)));
        });
        let mut tcp = (r.len() as u16).to_be_bytes().to_vec();
        tcp.extend_from_slice(&r);
        assert_eq!(axfr_answer(&tcp, 3).unwrap().len(), 1);
        let refused = reply_to(&framed[2..], |m| {
            m.set_response_code(ResponseCode::NotAuth);
        });
        let mut tcp = (refused.len() as u16).to_be_bytes().to_vec();
        tcp.extend_from_slice(&refused);
        assert_eq!(axfr_answer(&tcp, 3), None);
        assert!(axfr_query(1, "bad..name").is_err());
    }

    proptest! {
        #[test]
        fn never_panic(b in proptest::collection::vec(any::<u8>(), 0..600), id in any::<u16>()) {
            let _ = version_answer(&b, id);
            let _ = recursion_offered(&b, id);
            let _ = axfr_answer(&b, id);
            let _ = tcp_missing(&b);
        }
    }
}

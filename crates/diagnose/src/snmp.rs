//! SNMP `public` community: one SNMPv2c GetRequest for sysDescr.0 (RFC 3416, BER per
//! X.690), and the GetResponse judged from bytes.
//!
//! Hand-encoded on purpose: the request is 40-odd fixed bytes and the answer needs a
//! TLV walk of five levels. The SNMP crates on crates.io are either unmaintained for
//! years (`snmp`) or bring a whole ASN.1 framework and its proc-macros (`rasn-snmp`)
//! for this one message. Only a read is sent: no SetRequest exists in this module.

/// sysDescr.0 = 1.3.6.1.2.1.1.1.0
const SYS_DESCR: &[u8] = &[0x2b, 6, 1, 2, 1, 1, 1, 0];

/// The GetRequest datagram; `id` is made positive and four bytes long so the INTEGER
/// encoding is the minimal one.
pub fn get_sysdescr(community: &str, id: u32) -> Vec<u8> {
    let id = (id & 0x7fff_ffff) | 0x0100_0000;
    let c = &community.as_bytes()[..community.len().min(64)];
    let varbind = tlv(0x30, &[tlv(0x06, SYS_DESCR), vec![0x05, 0]].concat());
    let pdu = tlv(
        0xa0,
        &[
            tlv(0x02, &id.to_be_bytes()),
            vec![0x02, 1, 0],
            vec![0x02, 1, 0],
            tlv(0x30, &varbind),
        ]
        .concat(),
    );
    tlv(0x30, &[vec![0x02, 1, 1], tlv(0x04, c), pdu].concat())
}

/// The request id [`get_sysdescr`] put on the wire for `id`.
pub fn wire_id(id: u32) -> u32 {
    (id & 0x7fff_ffff) | 0x0100_0000
}

fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    if body.len() < 128 {
        out.push(body.len() as u8);
    } else {
        out.push(0x82);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(body);
    out
}

/// One TLV from the front of `b`: (tag, value, rest).
fn take(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&l, b) = b.split_first()?;
    let (len, b) = if l < 0x80 {
        (l as usize, b)
    } else {
        let n = (l & 0x7f) as usize;
        if n == 0 || n > 3 || b.len() < n {
            return None;
        }
        let len = b[..n].iter().fold(0usize, |a, &x| (a << 8) | x as usize);
        (len, &b[n..])
    };
    if b.len() < len {
        return None;
    }
    Some((tag, &b[..len], &b[len..]))
}

fn int(v: &[u8]) -> Option<i64> {
    if v.is_empty() || v.len() > 8 {
        return None;
    }
    let neg = v[0] & 0x80 != 0;
    Some(
        v.iter()
            .fold(if neg { -1i64 } else { 0 }, |a, &x| (a << 8) | x as i64),
    )
}

/// The sysDescr a GetResponse to request `id` carries; None if the bytes are not such
/// an answer (wrong id, an error status, or no OCTET STRING value).
pub fn sysdescr_answer(b: &[u8], id: u32) -> Option<String> {
    let (0x30, msg, _) = take(b)? else {
        return None;
    };
    let (0x02, _version, rest) = take(msg)? else {
        return None;
    };
    let (0x04, _community, rest) = take(rest)? else {
        return None;
    };
    let (0xa2, pdu, _) = take(rest)? else {
        return None;
    };
    let (0x02, rid, rest) = take(pdu)? else {
        return None;
    };
    if int(rid)? != wire_id(id) as i64 {
        return None;
    }
    let (0x02, status, rest) = take(rest)? else {
        return None;
    };
    if int(status)? != 0 {
        return None;
    }
    let (0x02, _index, rest) = take(rest)? else {
        return None;
    };
    let (0x30, list, _) = take(rest)? else {
        return None;
    };
    let (0x30, vb, _) = take(list)? else {
        return None;
    };
    let (0x06, oid, rest) = take(vb)? else {
        return None;
    };
    if oid != SYS_DESCR {
        return None;
    }
    let (0x04, value, _) = take(rest)? else {
        return None;
    };
    Some(String::from_utf8_lossy(value).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn request_bytes() {
        // Every byte: SEQUENCE{ v2c, "public", GetRequest{ id (bit 24 forced on), 0, 0, { {sysDescr.0, NULL} } } }
        let r = get_sysdescr("public", 0x1234_5678);
        let want: Vec<u8> = [
            &[0x30, 0x29, 0x02, 1, 1, 0x04, 6][..],
            b"public",
            &[
                0xa0, 0x1c, 0x02, 4, 0x13, 0x34, 0x56, 0x78, 0x02, 1, 0, 0x02, 1, 0,
            ],
            &[
                0x30, 0x0e, 0x30, 0x0c, 0x06, 8, 0x2b, 6, 1, 2, 1, 1, 1, 0, 0x05, 0,
            ],
        ]
        .concat();
        assert_eq!(r, want);
    }

    fn response(id: u32, status: u8, value: &[u8]) -> Vec<u8> {
        let vb = tlv(0x30, &[tlv(0x06, SYS_DESCR), tlv(0x04, value)].concat());
        let pdu = tlv(
            0xa2,
            &[
                tlv(0x02, &wire_id(id).to_be_bytes()),
                vec![0x02, 1, status],
                vec![0x02, 1, 0],
                tlv(0x30, &vb),
            ]
            .concat(),
        );
        tlv(
            0x30,
            &[vec![0x02, 1, 1], tlv(0x04, b"public"), pdu].concat(),
        )
    }

    #[test]
    fn answers() {
        let long = vec![b'L'; 300];
        assert_eq!(
            sysdescr_answer(&response(7, 0, b"Linux target 6.1"), 7).as_deref(),
            Some("Linux target 6.1")
        );
        assert_eq!(
            sysdescr_answer(&response(7, 0, &long), 7).unwrap().len(),
            300
        );
        assert_eq!(sysdescr_answer(&response(7, 0, b"x"), 8), None, "wrong id");
        assert_eq!(
            sysdescr_answer(&response(7, 2, b"x"), 7),
            None,
            "noSuchName"
        );
        assert_eq!(sysdescr_answer(&response(7, 0, b"x")[..20], 7), None, "cut");
        assert_eq!(sysdescr_answer(b"", 7), None);
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..300), id in any::<u32>()) {
            let _ = sysdescr_answer(&b, id);
        }
    }
}

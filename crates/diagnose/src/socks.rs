//! Open SOCKS: a SOCKS5 greeting offering only "no authentication" (RFC 1928 §3), then
//! a CONNECT to the provider's own canary (§4). Nothing is sent through the tunnel.

/// Version 5, one method, 0x00 = no authentication required.
pub const GREETING: [u8; 3] = [5, 1, 0];

/// Whether the method selection accepts "no authentication".
pub fn no_auth_accepted(b: &[u8]) -> bool {
    b.len() >= 2 && b[0] == 5 && b[1] == 0
}

/// CONNECT to `host:port` (an IPv4/IPv6 literal or a name).
pub fn connect(host: &str, port: u16) -> Option<Vec<u8>> {
    let mut r = vec![5, 1, 0];
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => {
            r.push(1);
            r.extend_from_slice(&a.octets());
        }
        Ok(std::net::IpAddr::V6(a)) => {
            r.push(4);
            r.extend_from_slice(&a.octets());
        }
        Err(_) => {
            let n = host.as_bytes();
            if n.is_empty() || n.len() > 255 {
                return None;
            }
            r.push(3);
            r.push(n.len() as u8);
            r.extend_from_slice(n);
        }
    }
    r.extend_from_slice(&port.to_be_bytes());
    Some(r)
}

/// The reply code of a CONNECT reply (0 = succeeded), once its fixed part has arrived.
pub fn reply(b: &[u8]) -> Option<u8> {
    (b.len() >= 2 && b[0] == 5).then(|| b[1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bytes() {
        assert_eq!(
            connect("10.99.0.2", 8081).unwrap(),
            vec![5, 1, 0, 1, 10, 99, 0, 2, 0x1f, 0x91]
        );
        assert_eq!(
            connect("canary.example", 80).unwrap(),
            [&[5u8, 1, 0, 3, 14][..], b"canary.example", &[0, 80]].concat()
        );
        assert!(connect("", 80).is_none());
        assert!(no_auth_accepted(&[5, 0]));
        assert!(!no_auth_accepted(&[5, 0xff]));
        assert!(!no_auth_accepted(b"HTTP/1.1 400"));
        assert_eq!(reply(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]), Some(0));
        assert_eq!(reply(&[5, 2]), Some(2));
        assert_eq!(reply(&[4, 0x5a]), None);
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..40), h in ".{0,300}") {
            let _ = (no_auth_accepted(&b), reply(&b), connect(&h, 1));
        }
    }
}

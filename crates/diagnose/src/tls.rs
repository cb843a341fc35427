//! Which TLS protocol versions a server offers, judged from one hand-built
//! ClientHello per version (RFC 2246 / 4346 / 5246 record and handshake layout).
//!
//! Why hand-built: rustls cannot speak TLS 1.0/1.1 at all, and Debian's OpenSSL refuses
//! them below its security level; a ClientHello is a few fixed bytes, and the
//! ServerHello's `server_version` answers the question without finishing the
//! handshake (no key exchange is done, nothing is decrypted).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Tls10,
    Tls11,
    Tls12,
}

impl Version {
    pub fn wire(self) -> [u8; 2] {
        match self {
            Version::Tls10 => [3, 1],
            Version::Tls11 => [3, 2],
            Version::Tls12 => [3, 3],
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Version::Tls10 => "TLS 1.0",
            Version::Tls11 => "TLS 1.1",
            Version::Tls12 => "TLS 1.2",
        }
    }
}

/// Suites a server of that era would pick from (CBC and 3DES for 1.0/1.1; GCM and
/// ChaCha20 added for 1.2) and the renegotiation SCSV.
const OLD_SUITES: &[u16] = &[
    0xc014, 0xc013, 0xc00a, 0xc009, 0x0039, 0x0033, 0x0035, 0x002f, 0x000a, 0x00ff,
];
const NEW_SUITES: &[u16] = &[
    0xc02f, 0xc02b, 0xc030, 0xc02c, 0xcca8, 0xcca9, 0x009e, 0x009c, 0x009d,
];

/// The ClientHello record offering exactly `v` (`random` is the client random).
pub fn client_hello(v: Version, random: [u8; 32], sni: Option<&str>) -> Vec<u8> {
    let mut suites: Vec<u16> = Vec::new();
    if v == Version::Tls12 {
        suites.extend_from_slice(NEW_SUITES);
    }
    suites.extend_from_slice(OLD_SUITES);
    let mut ext = Vec::new();
    if let Some(name) =
        sni.filter(|n| !n.is_empty() && n.len() < 200 && n.parse::<std::net::IpAddr>().is_err())
    {
        let n = name.as_bytes();
        let mut body = Vec::new();
        body.extend_from_slice(&((n.len() + 3) as u16).to_be_bytes());
        body.push(0);
        body.extend_from_slice(&(n.len() as u16).to_be_bytes());
        body.extend_from_slice(n);
        push_ext(&mut ext, 0x0000, &body);
    }
    // supported_groups: x25519, P-256, P-384; ec_point_formats: uncompressed.
    push_ext(&mut ext, 0x000a, &[0, 6, 0, 0x1d, 0, 0x17, 0, 0x18]);
    push_ext(&mut ext, 0x000b, &[1, 0]);
    if v == Version::Tls12 {
        // signature_algorithms: rsa_pkcs1_sha256/384, rsa_pss_rsae_sha256, ecdsa_p256_sha256, rsa_pkcs1_sha1, ecdsa_sha1.
        push_ext(
            &mut ext,
            0x000d,
            &[0, 12, 4, 1, 5, 1, 8, 4, 4, 3, 2, 1, 2, 3],
        );
    }
    let mut hello = Vec::new();
    hello.extend_from_slice(&v.wire());
    hello.extend_from_slice(&random);
    hello.push(0); // no session id
    hello.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        hello.extend_from_slice(&s.to_be_bytes());
    }
    hello.extend_from_slice(&[1, 0]); // compression: null only
    hello.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    hello.extend_from_slice(&ext);
    let mut hs = vec![1u8];
    hs.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&hello);
    // The record layer says TLS 1.0 for any hello, as clients do for compatibility.
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

fn push_ext(out: &mut Vec<u8>, ty: u16, body: &[u8]) {
    out.extend_from_slice(&ty.to_be_bytes());
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
}

#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// More bytes needed.
    Incomplete,
    /// A ServerHello choosing this version and cipher suite.
    Hello { version: [u8; 2], suite: u16 },
    /// An alert (level, description): the version is refused.
    Alert(u8, u8),
    /// Not TLS.
    NotTls,
}

/// Judge the first bytes a server sent back.
pub fn answer(b: &[u8]) -> Answer {
    if b.len() < 5 {
        return if b.is_empty() || b[0] == 0x16 || b[0] == 0x15 {
            Answer::Incomplete
        } else {
            Answer::NotTls
        };
    }
    if b[1] != 3 {
        return Answer::NotTls;
    }
    let len = u16::from_be_bytes([b[3], b[4]]) as usize;
    match b[0] {
        0x15 => match (b.get(5), b.get(6)) {
            (Some(&l), Some(&d)) => Answer::Alert(l, d),
            _ => Answer::Incomplete,
        },
        0x16 => {
            // handshake type, 3-byte length, version, 32 random, session id, suite
            let body = &b[5..b.len().min(5 + len)];
            if body.len() < 4 + 2 + 32 + 1 {
                return Answer::Incomplete;
            }
            if body[0] != 2 {
                return Answer::NotTls;
            }
            let version = [body[4], body[5]];
            let sid = body[38] as usize;
            match (body.get(39 + sid), body.get(40 + sid)) {
                (Some(&a), Some(&c)) => Answer::Hello {
                    version,
                    suite: u16::from_be_bytes([a, c]),
                },
                _ => Answer::Incomplete,
            }
        }
        _ => Answer::NotTls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hello_layout() {
        let h = client_hello(Version::Tls10, [7; 32], Some("example.org"));
        assert_eq!(&h[..3], &[0x16, 3, 1]);
        assert_eq!(u16::from_be_bytes([h[3], h[4]]) as usize, h.len() - 5);
        assert_eq!(h[5], 1);
        assert_eq!(&h[9..11], &[3, 1]);
        assert_eq!(&h[11..43], &[7; 32]);
        let h12 = client_hello(Version::Tls12, [0; 32], None);
        assert_eq!(&h12[9..11], &[3, 3]);
    }

    #[test]
    fn answers() {
        // ServerHello, TLS 1.0, empty session id, suite 0xc014.
        let mut sh = vec![0x16, 3, 1, 0, 0, 2, 0, 0, 0, 3, 1];
        sh.extend_from_slice(&[0; 32]);
        sh.extend_from_slice(&[0, 0xc0, 0x14, 0]);
        let n = sh.len() - 5;
        sh[3..5].copy_from_slice(&(n as u16).to_be_bytes());
        assert_eq!(
            answer(&sh),
            Answer::Hello {
                version: [3, 1],
                suite: 0xc014
            }
        );
        assert_eq!(answer(&[0x15, 3, 3, 0, 2, 2, 70]), Answer::Alert(2, 70));
        assert_eq!(answer(b"HTTP/1.1 400"), Answer::NotTls);
        assert_eq!(answer(&[0x16, 3]), Answer::Incomplete);
        assert_eq!(answer(&sh[..20]), Answer::Incomplete);
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = answer(&b);
        }
    }
}

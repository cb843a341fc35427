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

/// Suites no server should accept (RFC 7465 RC4, RFC 8996-era DES/3DES, NULL
/// encryption, anonymous key exchange, EXPORT), with the name the finding shows.
pub const WEAK_SUITES: &[(u16, &str)] = &[
    (0x0001, "NULL-MD5"),
    (0x0002, "NULL-SHA"),
    (0x003b, "NULL-SHA256"),
    (0xc006, "ECDHE-ECDSA-NULL-SHA"),
    (0xc010, "ECDHE-RSA-NULL-SHA"),
    (0xc015, "AECDH-NULL-SHA"),
    (0x0003, "EXP-RC4-MD5"),
    (0x0006, "EXP-RC2-CBC-MD5"),
    (0x0008, "EXP-DES-CBC-SHA"),
    (0x0014, "EXP-EDH-RSA-DES-CBC-SHA"),
    (0x0004, "RC4-MD5"),
    (0x0005, "RC4-SHA"),
    (0xc011, "ECDHE-RSA-RC4-SHA"),
    (0xc007, "ECDHE-ECDSA-RC4-SHA"),
    (0x0009, "DES-CBC-SHA"),
    (0x000a, "DES-CBC3-SHA"),
    (0x0016, "EDH-RSA-DES-CBC3-SHA"),
    (0xc012, "ECDHE-RSA-DES-CBC3-SHA"),
    (0x0018, "ADH-RC4-MD5"),
    (0x001b, "ADH-DES-CBC3-SHA"),
    (0x0034, "ADH-AES128-SHA"),
    (0x003a, "ADH-AES256-SHA"),
    (0x006c, "ADH-AES128-SHA256"),
    (0x00a6, "ADH-AES128-GCM-SHA256"),
    (0xc018, "AECDH-AES128-SHA"),
    (0xc019, "AECDH-AES256-SHA"),
];

/// The name of a weak suite, if `suite` is one.
pub fn weak_suite(suite: u16) -> Option<&'static str> {
    WEAK_SUITES.iter().find(|w| w.0 == suite).map(|w| w.1)
}

/// A ClientHello (up to TLS 1.2) offering only [`WEAK_SUITES`]: a ServerHello means the
/// server accepts one of them.
pub fn weak_hello(random: [u8; 32]) -> Vec<u8> {
    let suites: Vec<u16> = WEAK_SUITES.iter().map(|w| w.0).collect();
    hello_with(Version::Tls12, &suites, random, None)
}

/// The ClientHello record offering exactly `v` (`random` is the client random).
pub fn client_hello(v: Version, random: [u8; 32], sni: Option<&str>) -> Vec<u8> {
    let mut suites: Vec<u16> = Vec::new();
    if v == Version::Tls12 {
        suites.extend_from_slice(NEW_SUITES);
    }
    suites.extend_from_slice(OLD_SUITES);
    hello_with(v, &suites, random, sni)
}

fn hello_with(v: Version, suites: &[u16], random: [u8; 32], sni: Option<&str>) -> Vec<u8> {
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

/// The handshake messages (type, body) in the plaintext handshake records at the front
/// of `b` (TLS ≤ 1.2 sends ServerHello, Certificate, … ServerHelloDone in the clear), and
/// whether ServerHelloDone (14) was among them.
pub fn handshake_messages(b: &[u8]) -> (Vec<(u8, Vec<u8>)>, bool) {
    let mut stream = Vec::new();
    let mut rest = b;
    while rest.len() >= 5 && rest[0] == 0x16 && rest[1] == 3 {
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        if rest.len() < 5 + len {
            break;
        }
        stream.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
    }
    let mut msgs = Vec::new();
    let mut done = false;
    let mut m = &stream[..];
    while m.len() >= 4 {
        let len = u32::from_be_bytes([0, m[1], m[2], m[3]]) as usize;
        if m.len() < 4 + len {
            break;
        }
        done |= m[0] == 14;
        msgs.push((m[0], m[4..4 + len].to_vec()));
        m = &m[4 + len..];
    }
    (msgs, done)
}

/// The DER certificates of a Certificate message body (RFC 5246 §7.4.2), leaf first.
pub fn certificates(body: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if body.len() < 3 {
        return out;
    }
    let total = u32::from_be_bytes([0, body[0], body[1], body[2]]) as usize;
    let mut m = &body[3..body.len().min(3 + total)];
    while m.len() >= 3 {
        let len = u32::from_be_bytes([0, m[0], m[1], m[2]]) as usize;
        if m.len() < 3 + len {
            break;
        }
        out.push(m[3..3 + len].to_vec());
        m = &m[3 + len..];
    }
    out
}

/// What a leaf certificate shows: its subject, issuer and notAfter, whether it has
/// expired at `now` (Unix seconds), and whether it is self-signed (issuer = subject and
/// its own key verifies its signature).
#[derive(Debug, PartialEq, Eq)]
pub struct CertView {
    pub subject: String,
    pub issuer: String,
    pub not_after: String,
    pub expired: bool,
    pub self_signed: bool,
}

pub fn view_certificate(der: &[u8], now: i64) -> Option<CertView> {
    let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = c.subject().to_string();
    let issuer = c.issuer().to_string();
    let self_signed = c.subject().as_raw() == c.issuer().as_raw()
        && c.verify_signature(Some(c.public_key())).is_ok();
    Some(CertView {
        expired: c.validity().not_after.timestamp() < now,
        not_after: c.validity().not_after.to_string(),
        subject,
        issuer,
        self_signed,
    })
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

    #[test]
    fn weak_hello_offers_only_weak_suites() {
        let h = weak_hello([1; 32]);
        let n = u16::from_be_bytes([h[44], h[45]]) as usize;
        assert_eq!(n, WEAK_SUITES.len() * 2);
        for c in h[46..46 + n].chunks(2) {
            assert!(weak_suite(u16::from_be_bytes([c[0], c[1]])).is_some());
        }
        assert_eq!(weak_suite(0xc02f), None);
    }

    #[test]
    fn messages_and_certificates_across_records() {
        // Certificate message with two certs [1,2,3] and [4], split over two records, then ServerHelloDone.
        let certs = [0, 0, 3, 1, 2, 3, 0, 0, 1, 4];
        let mut body = vec![0, 0, certs.len() as u8];
        body.extend_from_slice(&certs);
        let mut hs = vec![11, 0, 0, body.len() as u8];
        hs.extend_from_slice(&body);
        hs.extend_from_slice(&[14, 0, 0, 0]);
        let (a, b) = hs.split_at(6);
        let mut recs = Vec::new();
        for part in [a, b] {
            recs.extend_from_slice(&[0x16, 3, 3, 0, part.len() as u8]);
            recs.extend_from_slice(part);
        }
        let (msgs, done) = handshake_messages(&recs);
        assert!(done);
        assert_eq!(msgs[0].0, 11);
        assert_eq!(certificates(&msgs[0].1), vec![vec![1, 2, 3], vec![4]]);
        let (_, done) = handshake_messages(&recs[..recs.len() - 2]);
        assert!(!done);
    }

    #[test]
    fn certificate_views() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["target.test".into()]).unwrap();
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let c = p.self_signed(&key).unwrap();
        let v = view_certificate(c.der(), 1_700_000_000).unwrap();
        assert!(v.expired && v.self_signed, "{v:?}");
        let v = view_certificate(c.der(), 1_600_000_000).unwrap();
        assert!(!v.expired);
        // Signed by a CA: not self-signed.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut cap = rcgen::CertificateParams::new(vec![]).unwrap();
        cap.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        cap.distinguished_name
            .push(rcgen::DnType::CommonName, "Test CA");
        let ca = cap.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(cap, &ca_key);
        let leaf = rcgen::CertificateParams::new(vec!["leaf.test".into()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let v = view_certificate(leaf.der(), 1_700_000_000).unwrap();
        assert!(!v.self_signed, "{v:?}");
        assert!(view_certificate(ca.der(), 0).unwrap().self_signed);
        assert_eq!(view_certificate(b"not der", 0), None);
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = answer(&b);
            let (m, _) = handshake_messages(&b);
            for (_, body) in m { let _ = certificates(&body); }
            let _ = certificates(&b);
            let _ = view_certificate(&b, 0);
        }
    }
}

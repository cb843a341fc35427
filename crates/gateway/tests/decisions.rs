//! The gateway's decisions on the inputs an attacker would choose: IP literals in
//! every spelling, names under public suffixes, domain fronting through SNI, and
//! malformed or oversized requests.

use dodvpn_gateway::*;
use proptest::prelude::*;
use std::net::IpAddr;
use std::sync::Arc;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn ip_literals_in_every_spelling_are_normalised() {
    for (lit, want) in [
        ("127.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.0.258", "10.0.1.2"),
        ("[::1]", "::1"),
        ("::ffff:127.0.0.1", "::ffff:127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
    ] {
        assert_eq!(ip_literal(lit), Some(ip(want)), "{lit}");
    }
    for name in [
        "updates.example.test",
        "0x7g.1",
        "256.1.1.1",
        "1.2.3.4.5",
        "",
        "1..2",
        "08.1.1.1",
    ] {
        assert_eq!(ip_literal(name), None, "{name}");
    }
}

#[test]
fn only_global_unicast_may_be_dialled() {
    let p = DialPolicy {
        internal: vec![
            "10.64.0.0/10".parse().unwrap(),
            "192.0.2.1/32".parse().unwrap(),
        ],
        permitted: vec![],
    };
    for (a, why) in [
        ("127.0.0.1", Refused::Loopback),
        ("10.1.2.3", Refused::Private),
        ("172.16.0.1", Refused::Private),
        ("192.168.1.1", Refused::Private),
        ("100.64.0.1", Refused::SharedCgnat),
        ("169.254.169.254", Refused::LinkLocal),
        ("224.0.0.1", Refused::Multicast),
        ("0.0.0.0", Refused::Unspecified),
        ("198.51.100.7", Refused::SpecialPurpose),
        ("240.0.0.1", Refused::SpecialPurpose),
        ("::1", Refused::Loopback),
        ("fe80::1", Refused::LinkLocal),
        ("fd00::1", Refused::Private),
        ("2001:db8::1", Refused::SpecialPurpose),
        // Translations carry the address they translate.
        ("::ffff:127.0.0.1", Refused::Loopback),
        ("64:ff9b::a00:1", Refused::Private),
        ("2002:7f00:1::1", Refused::Loopback),
        ("2002:a9fe:a9fe::1", Refused::LinkLocal),
        // Teredo: the client address 10.0.0.1, inverted, in the last 32 bits.
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", Refused::Private),
    ] {
        // The VPN's own range counts as internal even though it is private too.
        let got = p.check(ip(a));
        assert!(
            got == Some(why) || (got == Some(Refused::Internal) && why == Refused::Private),
            "{a}: {got:?}"
        );
    }
    assert_eq!(p.check(ip("10.64.1.1")), Some(Refused::Internal));
    assert_eq!(p.check(ip("::ffff:10.64.1.1")), Some(Refused::Internal));
    for a in ["93.184.216.34", "2606:4700::6810:85e5", "8.8.8.8"] {
        assert_eq!(p.check(ip(a)), None, "{a}");
    }
    let permitted = DialPolicy {
        internal: vec![],
        permitted: vec!["198.51.100.0/24".parse().unwrap()],
    };
    assert_eq!(
        permitted.check(ip("198.51.100.7")),
        None,
        "a range the provider permits on purpose"
    );
}

fn list(entries: &[&str]) -> Allowlist {
    Allowlist::new(entries.iter().map(|e| Entry::parse(e).unwrap()))
}

fn connect<'a>(host: &'a str, port: u16) -> Target<'a> {
    Target {
        host,
        port,
        path: None,
    }
}

#[test]
fn the_allowlist_denies_by_default_and_matches_hosts_wildcards_ports_and_prefixes() {
    let l = list(&[
        "updates.example.test",
        "*.vendor.example.jp",
        "api.example.test:8443",
        "http://news.example.test/public/",
        "198.51.100.9",
    ]);
    assert_eq!(
        l.decide(&connect("updates.example.test", 443)),
        Verdict::Allow("updates.example.test".into())
    );
    assert_eq!(
        l.decide(&connect("UPDATES.example.test.", 443)),
        Verdict::Allow("updates.example.test".into())
    );
    assert_eq!(
        l.decide(&connect("updates.example.test", 22)),
        Verdict::WrongPort
    );
    assert_eq!(
        l.decide(&connect("evil.example.test", 443)),
        Verdict::NotListed
    );
    assert_eq!(
        l.decide(&connect("a.b.vendor.example.jp", 443)),
        Verdict::Allow("*.vendor.example.jp".into())
    );
    assert_eq!(
        l.decide(&connect("vendor.example.jp", 443)),
        Verdict::NotListed,
        "the wildcard is for names below it"
    );
    assert_eq!(
        l.decide(&connect("xvendor.example.jp", 443)),
        Verdict::NotListed
    );
    assert_eq!(
        l.decide(&connect("api.example.test", 8443)),
        Verdict::Allow("api.example.test:8443".into())
    );
    let get = |path| Target {
        host: "news.example.test",
        port: 80,
        path: Some(path),
    };
    assert_eq!(
        l.decide(&get("/public/today.html")),
        Verdict::Allow("http://news.example.test/public/".into())
    );
    assert_eq!(l.decide(&get("/private/x")), Verdict::WrongPort);
    assert_eq!(
        l.decide(&connect("news.example.test", 443)),
        Verdict::WrongPort,
        "a URL prefix does not allow CONNECT"
    );
    // IP literals match only as written entries, in any spelling.
    assert!(matches!(
        l.decide(&connect("198.51.100.9", 443)),
        Verdict::Allow(_)
    ));
    assert!(matches!(
        l.decide(&connect("0xc6.0x33.0x64.9", 443)),
        Verdict::Allow(_)
    ));
    assert_eq!(l.decide(&connect("127.0.0.1", 443)), Verdict::NotListed);
    assert_eq!(
        Allowlist::default().decide(&connect("updates.example.test", 443)),
        Verdict::NotListed
    );
}

#[test]
fn wildcards_at_or_above_a_public_suffix_are_refused() {
    for e in [
        "*.jp",
        "*.co.jp",
        "*.com",
        "*.test",
        "*.github.io",
        "*.lg.jp",
    ] {
        assert!(
            matches!(Entry::parse(e), Err(EntryError::WildcardTooBroad(_))),
            "{e}: {:?}",
            Entry::parse(e)
        );
        assert!(Entry::parse(e)
            .unwrap_err()
            .to_string()
            .contains("公開サフィックス"));
    }
    for e in [
        "*.example.co.jp",
        "*.hospital.lg.jp",
        "*.example.test",
        "*.someone.github.io",
    ] {
        assert!(Entry::parse(e).is_ok(), "{e}");
    }
    for e in [
        "",
        "bad host",
        "host:0",
        "host:99999",
        "*.1.2.3.4",
        "http://",
        "exa_mple.test",
    ] {
        assert!(Entry::parse(e).is_err(), "{e}");
    }
}

#[test]
fn a_decision_with_100000_entries_is_still_exact() {
    let mut entries: Vec<Entry> = (0..100_000)
        .map(|i| Entry::parse(&format!("site{i}.example{}.test", i % 97)).unwrap())
        .collect();
    entries.push(Entry::parse("*.updates.example.jp").unwrap());
    let l = Allowlist::new(entries);
    assert_eq!(l.len(), 100_001);
    assert!(matches!(
        l.decide(&connect("site99999.example89.test", 443)),
        Verdict::Allow(_)
    ));
    assert_eq!(
        l.decide(&connect("site99999.example88.test", 443)),
        Verdict::NotListed
    );
    assert!(matches!(
        l.decide(&connect("cdn.updates.example.jp", 443)),
        Verdict::Allow(_)
    ));
}

/// A real ClientHello, as rustls writes it for `name`.
fn client_hello(name: &str) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let server = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), server).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

#[test]
fn the_sni_of_a_real_client_hello_is_read_whole_or_in_pieces() {
    let hello = client_hello("updates.example.test");
    assert_eq!(
        server_name(&hello),
        Ok(Sni::Name("updates.example.test".into()))
    );
    for cut in [0, 3, 5, 40, hello.len() - 1] {
        assert_eq!(
            server_name(&hello[..cut]),
            Ok(Sni::Incomplete),
            "cut at {cut}"
        );
    }
    // The same hello split over two TLS records.
    let body = &hello[5..];
    let (a, b) = body.split_at(50);
    let mut split = vec![22, 3, 1, 0, a.len() as u8];
    split.extend_from_slice(a);
    split.extend_from_slice(&[22, 3, 1, (b.len() >> 8) as u8, b.len() as u8]);
    split.extend_from_slice(b);
    assert_eq!(
        server_name(&split),
        Ok(Sni::Name("updates.example.test".into()))
    );
    // An IP literal sends no SNI.
    assert_eq!(server_name(&client_hello("198.51.100.9")), Ok(Sni::Absent));
    assert_eq!(
        server_name(b"GET / HTTP/1.1\r\n\r\n"),
        Err(SniError::NotTls)
    );
    let mut not_hello = hello.clone();
    not_hello[5] = 2;
    assert_eq!(server_name(&not_hello), Err(SniError::NotClientHello));
}

#[test]
fn proxy_request_heads_are_parsed_and_bounded() {
    let buf = b"CONNECT updates.example.test:443 HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic abc\r\n\r\nrest";
    let r = request::parse(buf).unwrap().unwrap();
    assert_eq!(
        (r.method.as_str(), r.host.as_str(), r.port, r.path.clone()),
        ("CONNECT", "updates.example.test", 443, None)
    );
    assert_eq!(r.proxy_authorization.as_deref(), Some("Basic abc"));
    assert_eq!(
        r.head_len,
        buf.len() - 4,
        "the head ends before the tunnelled bytes"
    );
    let r = request::parse(
        b"GET http://news.example.test/public/a?b=1 HTTP/1.1\r\nHost: news.example.test\r\n\r\n",
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        (r.host.as_str(), r.port, r.path.as_deref()),
        ("news.example.test", 80, Some("/public/a?b=1"))
    );
    let r = request::parse(b"CONNECT [2001:db8::1]:443 HTTP/1.1\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!((r.host.as_str(), r.port), ("2001:db8::1", 443));
    assert_eq!(
        request::parse(b"CONNECT updates.example.test:443 HTTP/1.1\r\nHost"),
        Ok(None)
    );
    assert_eq!(
        request::parse(b"GET /index.html HTTP/1.1\r\n\r\n"),
        Err(HeadError::NotProxyForm)
    );
    assert!(matches!(
        request::parse(b"GET ftp://x/ HTTP/1.1\r\n\r\n"),
        Err(HeadError::UnsupportedScheme(_))
    ));
    assert!(matches!(
        request::parse(b"CONNECT host HTTP/1.1\r\n\r\n"),
        Err(HeadError::Malformed(_))
    ));
    assert!(matches!(
        request::parse(b"CONNECT host:0 HTTP/1.1\r\n\r\n"),
        Err(HeadError::Malformed(_))
    ));
    assert!(matches!(
        request::parse(b"\x00\x01garbage\r\n\r\n"),
        Err(HeadError::Malformed(_))
    ));
    let mut huge = b"CONNECT a.test:443 HTTP/1.1\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'a', request::MAX_HEAD + 10));
    assert_eq!(request::parse(&huge), Err(HeadError::TooLarge));
    let mut many = b"CONNECT a.test:443 HTTP/1.1\r\n".to_vec();
    for i in 0..100 {
        many.extend(format!("X-{i}: y\r\n").as_bytes());
    }
    many.extend(b"\r\n");
    assert_eq!(request::parse(&many), Err(HeadError::TooLarge));
}

proptest! {
    #[test]
    fn any_bytes_never_panic_the_parsers(b in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let _ = server_name(&b);
        let _ = request::parse(&b);
        if let Ok(s) = std::str::from_utf8(&b) {
            let _ = ip_literal(s);
            let _ = Entry::parse(s);
        }
    }

    /// Dotted-quad decimal reads as the standard library reads it.
    #[test]
    fn dotted_decimal_agrees_with_std(a: u8, b: u8, c: u8, d: u8) {
        let s = format!("{a}.{b}.{c}.{d}");
        prop_assert_eq!(ip_literal(&s), Some(s.parse::<IpAddr>().unwrap()));
    }

    /// Every spelling of the same 32 bits is the same address.
    #[test]
    fn integer_hex_and_octal_spellings_agree(v: u32) {
        let want = Some(IpAddr::V4(v.into()));
        prop_assert_eq!(ip_literal(&v.to_string()), want);
        prop_assert_eq!(ip_literal(&format!("0x{v:x}")), want);
        prop_assert_eq!(ip_literal(&format!("0{v:o}")), want);
    }
}

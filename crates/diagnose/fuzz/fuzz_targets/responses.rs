//! Whatever a diagnosed (possibly hostile) server sends back: every sans-IO judge of
//! the diagnosis must answer without panicking, and evidence must stay bounded.
#![no_main]

use dodvpn_diagnose::{banner, dns, finding, ftp, http, icmp, snmp, socks, tls};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let id = data.first().map(|&b| b as u16 * 257).unwrap_or(0);
    let _ = banner::classify(data);
    let _ = banner::first_line(data);
    let _ = ftp::reply(data);
    let text = String::from_utf8_lossy(data);
    let _ = ftp::pasv_port(&text);
    let _ = ftp::world_writable_dirs(&text);
    if let Some(h) = http::parse(data) {
        let _ = h.is_directory_listing();
        let _ = h.vpn_login_product();
    }
    let _ = tls::answer(data);
    let (msgs, _) = tls::handshake_messages(data);
    for (_, body) in &msgs {
        for der in tls::certificates(body) {
            let _ = tls::view_certificate(&der, 0);
        }
    }
    let _ = tls::view_certificate(data, 0);
    let _ = snmp::sysdescr_answer(data, id as u32);
    let _ = socks::no_auth_accepted(data);
    let _ = socks::reply(data);
    let _ = icmp::reply(data, std::net::Ipv4Addr::LOCALHOST, id, 1);
    let _ = dns::version_answer(data, id);
    let _ = dns::recursion_offered(data, id);
    let _ = dns::axfr_answer(data, id);
    let _ = dns::tcp_missing(data);
    assert!(finding::printable(data, 100).chars().count() <= 100);
});

//! What a client sends the gateway first (a request head, then a ClientHello), and
//! any host or allowlist entry text: an answer or an error, never a panic.
#![no_main]

use dodvpn_gateway::{ip_literal, request, server_name, Allowlist, Entry, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = server_name(data);
    if let Ok(Some(r)) = request::parse(data) {
        let list = Allowlist::new(Entry::parse(&r.host).ok());
        let _ = list.decide(&Target { host: &r.host, port: r.port, path: r.path.as_deref() });
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = ip_literal(s);
    }
});

//! Arbitrary datagrams into a responder endpoint (first byte picks the port):
//! must never panic. A second stage feeds the rest after a real IKE_SA_INIT
//! so SPI-routed paths are reached too.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::Instant;

use dodvpn_ike::*;
use dodvpn_wire::Identification;
use libfuzzer_sys::fuzz_target;

fn config() -> Config {
    let mut c = Config::new(
        proposal::parse_ike_proposals(&["aes128gcm16-prfsha256-ecp256", "aes256-sha256-x25519"]).unwrap(),
        proposal::parse_esp_proposals(&["aes128gcm16"]).unwrap(),
        Identification::fqdn("responder"),
        LocalAuth::Psk(b"k".to_vec()),
        RemoteAuth::Psk(b"k".to_vec()),
    );
    c.cookie_threshold = 4;
    c
}

fn init_request() -> &'static (Vec<u8>, SocketAddr, SocketAddr) {
    static R: OnceLock<(Vec<u8>, SocketAddr, SocketAddr)> = OnceLock::new();
    R.get_or_init(|| {
        let mut i = Endpoint::new(config());
        let a = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 500);
        let b = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 500);
        i.connect(Instant::now(), a, b).unwrap();
        (i.poll_transmit().unwrap().bytes, a, b)
    })
}

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let (init, a, b) = init_request();
    let mut r = Endpoint::new(config());
    let to = if data.first().is_some_and(|x| x & 1 == 1) { SocketAddr::new(b.ip(), 4500) } else { *b };
    r.handle(now, *a, to, data);
    // Now with a half-open SA present: splice its SPIs into the input.
    r.handle(now, *a, *b, init);
    let spi_r = r.sa_ids().into_iter().next();
    if let (Some(spi_r), true) = (spi_r, data.len() >= 28) {
        let mut m = data.to_vec();
        m[..8].copy_from_slice(&init[..8]);
        m[8..16].copy_from_slice(&spi_r.to_be_bytes());
        r.handle(now, *a, to, &m);
    }
    while r.poll_transmit().is_some() {}
    while r.poll_event().is_some() {}
    r.handle_timeout(now + std::time::Duration::from_secs(60));
});

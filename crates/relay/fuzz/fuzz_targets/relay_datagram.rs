//! Any datagram from any address: the relay never panics, and a binding it did not
//! get from the secret's holder never binds.
#![no_main]
use std::net::SocketAddr;
use std::time::Instant;

use dodvpn_relay::{Action, Relay};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = Relay::new(b"fuzz secret".to_vec());
    let now = Instant::now();
    let from: SocketAddr = "192.0.2.7:4500".parse().unwrap();
    let _ = dodvpn_relay::Binding::open(data, b"fuzz secret", 1_000);
    match r.handle(now, 1_000, from, data) {
        Action::Bound { .. } | Action::Forward(_) => {
            panic!("an unsigned datagram bound or was forwarded")
        }
        Action::Reflect(answer) => assert!(answer.len() < data.len(), "the reflector amplifies"),
        Action::Drop(_) => {}
    }
});

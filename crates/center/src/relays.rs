//! The provider relay as the centre knows it (issue 19 item 3): where it listens and
//! the secret it shares with the centre, with which the centre signs each side's
//! binding. The relay (`dodvpn relay`) reads the same secret file; it never sees a
//! key of the sites it forwards for.
//!
//! `DODVPN_RELAY=IP:port` turns it on; the secret is `relay.key` in the data
//! directory (32 random bytes, created 0600 on first start).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;

/// The secret's file name in the centre's data directory.
pub const SECRET_FILE: &str = "relay.key";
/// How long a binding the centre hands out stays valid at the relay.
pub const BINDING_LIFETIME_SECS: u64 = 12 * 3600;

pub struct RelayConfig {
    pub addr: SocketAddr,
    secret: Vec<u8>,
}

/// `DODVPN_RELAY`'s value: IP:port, the port 1-65534 since the port after it is the
/// relay's second UDP reflector.
fn relay_addr(value: &str) -> anyhow::Result<SocketAddr> {
    let addr: SocketAddr = value
        .parse()
        .with_context(|| format!("DODVPN_RELAY={value:?} is not IP:port"))?;
    if addr.port() == 0 || addr.port() == u16::MAX {
        anyhow::bail!(
            "DODVPN_RELAY={addr}: the port must be 1-65534 (the port after it is the relay's second UDP reflector)"
        );
    }
    Ok(addr)
}

impl RelayConfig {
    /// From `DODVPN_RELAY`; `None` when it is not set (no relay: punching only).
    pub fn from_env(data_dir: &Path) -> anyhow::Result<Option<RelayConfig>> {
        let Ok(addr) = std::env::var("DODVPN_RELAY") else {
            return Ok(None);
        };
        let addr = relay_addr(&addr)?;
        let path = data_dir.join(SECRET_FILE);
        if !path.exists() {
            let mut b = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
            crate::init::write_secret_file(&path, &b)?;
        }
        let secret =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if secret.len() < 32 {
            anyhow::bail!("{} holds fewer than 32 bytes", path.display());
        }
        Ok(Some(RelayConfig { addr, secret }))
    }

    /// The UDP reflectors the relay answers probes on: its port and the one after it
    /// (`dodvpn relay` binds both).
    pub fn reflectors(&self) -> [SocketAddr; 2] {
        let mut second = self.addr;
        second.set_port(self.addr.port() + 1); // below u16::MAX: from_env
        [self.addr, second]
    }

    /// A fresh allocation: the binding of side 0 and of side 1.
    pub fn allocate(&self, now_unix: u64) -> ([u8; 16], Vec<u8>, Vec<u8>) {
        let mut alloc = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut alloc);
        let expires = now_unix + BINDING_LIFETIME_SECS;
        let side = |side| {
            dodvpn_relay::Binding {
                expires,
                alloc,
                side,
            }
            .seal(&self.secret)
        };
        (alloc, side(0), side(1))
    }
}

/// At most one introduction (or one relay allocation) per pair of devices every
/// [`Pacer::EVERY`]: each one is an event on the peer's stream, so a device could
/// otherwise flood its peer. Agents ask once per peer every 5 s; this is the
/// centre's own bound. Per replica (a bound, not an exact count).
#[derive(Default)]
pub struct Pacer {
    last: Mutex<HashMap<(&'static str, String, String), Instant>>,
}

impl Pacer {
    pub const EVERY: Duration = Duration::from_secs(2);
    /// Entries kept before old ones are swept.
    const SWEEP_ABOVE: usize = 10_000;

    /// `Ok` and noted, or how long until `me` may ask `what` about `peer` again.
    pub fn admit(
        &self,
        what: &'static str,
        me: &str,
        peer: &str,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.len() > Self::SWEEP_ABOVE {
            last.retain(|_, t| now.duration_since(*t) < Self::EVERY);
        }
        let key = (what, me.to_string(), peer.to_string());
        if let Some(t) = last.get(&key) {
            let since = now.duration_since(*t);
            if since < Self::EVERY {
                return Err(Self::EVERY - since);
            }
        }
        last.insert(key, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_address_leaves_room_for_the_second_reflector() {
        let a = relay_addr("192.0.2.1:4600").unwrap();
        let cfg = RelayConfig {
            addr: a,
            secret: vec![0; 32],
        };
        assert_eq!(cfg.reflectors(), [a, "192.0.2.1:4601".parse().unwrap()]);
        for bad in ["192.0.2.1:65535", "192.0.2.1:0", "192.0.2.1", "relay:4600"] {
            let e = format!("{:#}", relay_addr(bad).unwrap_err());
            assert!(e.contains("DODVPN_RELAY"), "{bad}: {e}");
        }
        assert!(
            format!("{:#}", relay_addr("[2001:db8::1]:65535").unwrap_err()).contains("1-65534")
        );
    }

    #[test]
    fn one_per_pair_and_kind_every_two_seconds() {
        let p = Pacer::default();
        let t = Instant::now();
        assert!(p.admit("introduce", "a", "b", t).is_ok());
        let wait = p
            .admit("introduce", "a", "b", t + Duration::from_millis(500))
            .unwrap_err();
        assert_eq!(wait, Duration::from_millis(1500));
        assert!(
            p.admit("introduce", "b", "a", t).is_ok(),
            "the other direction is its own pair"
        );
        assert!(
            p.admit("relay", "a", "b", t).is_ok(),
            "relays are paced apart from introductions"
        );
        assert!(p.admit("introduce", "a", "c", t).is_ok());
        assert!(p.admit("introduce", "a", "b", t + Pacer::EVERY).is_ok());
    }

    #[test]
    fn many_pairs_are_swept_not_kept_forever() {
        let p = Pacer::default();
        let t = Instant::now();
        for i in 0..=Pacer::SWEEP_ABOVE {
            p.admit("introduce", "a", &i.to_string(), t).unwrap();
        }
        p.admit("introduce", "a", "late", t + Pacer::EVERY).unwrap();
        assert!(p.last.lock().unwrap().len() < 10);
    }
}

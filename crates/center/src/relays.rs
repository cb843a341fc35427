//! The provider relay as the centre knows it (issue 19 item 3): where it listens and
//! the secret it shares with the centre, with which the centre signs each side's
//! binding. The relay (`dodvpn relay`) reads the same secret file; it never sees a
//! key of the sites it forwards for.
//!
//! `DODVPN_RELAY=IP:port` turns it on; the secret is `relay.key` in the data
//! directory (32 random bytes, created 0600 on first start).

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;

/// The secret's file name in the centre's data directory.
pub const SECRET_FILE: &str = "relay.key";
/// How long a binding the centre hands out stays valid at the relay.
pub const BINDING_LIFETIME_SECS: u64 = 12 * 3600;

pub struct RelayConfig {
    pub addr: SocketAddr,
    secret: Vec<u8>,
}

impl RelayConfig {
    /// From `DODVPN_RELAY`; `None` when it is not set (no relay: punching only).
    pub fn from_env(data_dir: &Path) -> anyhow::Result<Option<RelayConfig>> {
        let Ok(addr) = std::env::var("DODVPN_RELAY") else {
            return Ok(None);
        };
        let addr: SocketAddr = addr
            .parse()
            .with_context(|| format!("DODVPN_RELAY={addr:?} is not IP:port"))?;
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

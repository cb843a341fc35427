//! The TOML configuration of `dodvpn tunnel` (documented in README.md, "Static tunnels").

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use ipnet::IpNet;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelConfig {
    /// TUN interface name.
    #[serde(default = "default_interface")]
    pub interface: String,
    /// Inner MTU of the TUN device.
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// Address given to the TUN device (optional), e.g. "10.10.1.1/32".
    #[serde(default)]
    pub address: Option<IpNet>,
    /// UDP port for IKE (500) and for NAT-T / ESP-in-UDP (4500).
    #[serde(default = "default_ike_port")]
    pub ike_port: u16,
    #[serde(default = "default_natt_port")]
    pub natt_port: u16,
    /// Unix socket for `dodvpn tunnel status`.
    #[serde(default = "default_control")]
    pub control: PathBuf,
    /// TUN offloads (TSO/GRO); on by default, off to compare.
    #[serde(default = "default_true")]
    pub offload: bool,
    #[serde(rename = "connection", default)]
    pub connections: Vec<Connection>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    /// Negotiate when the first packet for the remote subnets arrives.
    Trap,
    /// Negotiate at start-up (and again when it goes down).
    Start,
    /// Only answer the peer.
    None,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RsaSignature {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    #[default]
    Pkcs1,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256, 32-octet salt.
    Pss,
}

/// One `local_map` entry: `{ real = "10.2.0.0/24", visible = "100.64.1.0/24" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapEntry {
    pub real: IpNet,
    pub visible: IpNet,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    pub name: String,
    pub local_addr: IpAddr,
    pub remote_addr: IpAddr,
    /// Our traffic selectors, as the peer sees them (the visible prefixes
    /// where `local_map` maps a real one).
    pub local_subnets: Vec<IpNet>,
    pub remote_subnets: Vec<IpNet>,
    /// Address mapping of our real prefixes (R-DP-8, overlapping site ranges):
    /// outbound sources real → visible, inbound destinations visible → real.
    /// IPv4, same prefix length.
    #[serde(default)]
    pub local_map: Vec<MapEntry>,
    /// Our identity: an FQDN ("site-a.example") or a DN ("CN=site-a").
    pub local_id: String,
    /// The identity the peer must prove; absent = whatever its certificate or PSK proves.
    #[serde(default)]
    pub remote_id: Option<String>,
    /// Pre-shared key (or `psk_file`); use certificates where you can.
    #[serde(default)]
    pub psk: Option<String>,
    #[serde(default)]
    pub psk_file: Option<PathBuf>,
    /// Our certificate (PEM), our PKCS#8 key (PEM, 0600: ECDSA P-256, ECDSA P-384 or
    /// RSA 2048–4096 bits), and the CA (PEM) that must have issued the peer's certificate.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Intermediate CA certificates (PEM, the issuer of `cert` first) sent after
    /// our certificate, for peers that trust only the root.
    #[serde(default)]
    pub chain: Option<PathBuf>,
    /// CRLs (DER or PEM) of `ca` or of intermediates: every certificate of the
    /// peer's chain whose issuer has a CRL here is checked against it.
    #[serde(default)]
    pub crls: Vec<PathBuf>,
    /// How an RSA `key` signs IKE AUTH (RFC 7427): "pkcs1" (RSASSA-PKCS1-v1_5 with
    /// SHA-256, the default) or "pss" (RSASSA-PSS with SHA-256). Ignored for EC keys.
    #[serde(default)]
    pub rsa_signature: RsaSignature,
    #[serde(default = "default_ike_proposals")]
    pub ike_proposals: Vec<String>,
    #[serde(default = "default_esp_proposals")]
    pub esp_proposals: Vec<String>,
    #[serde(default = "default_start")]
    pub start: Start,
    /// Delete child SAs idle this long, and the IKE SA when none is left ("0s" = never).
    #[serde(default = "default_idle", with = "humantime_serde_lite")]
    pub idle_timeout: Duration,
    /// ESP always travels in UDP 4500 (R-DP-5: dodvpn opens no raw ESP socket), and the
    /// NAT detection hash is faked so the peer encapsulates too (as strongSwan's
    /// `encap = yes`). The key may be given as `true`; `false` is refused, since it cannot
    /// be honoured (docs/interop.md).
    #[serde(default = "default_true")]
    pub force_encap: bool,
    /// Offer and accept IKE fragmentation (RFC 7383); on by default.
    #[serde(default = "default_true")]
    pub fragmentation: bool,
    /// Offer and accept MOBIKE (RFC 4555); on by default. When our address changes,
    /// an SA we started moves instead of being set up anew.
    #[serde(default = "default_true")]
    pub mobike: bool,
    /// Largest IP datagram (IP and UDP headers included) an encrypted IKE message
    /// may take before it is cut into fragments: 576 to 65535, default 1280 for
    /// IPv4 and IPv6 alike.
    #[serde(default = "default_fragment_size")]
    pub fragment_size: usize,
    /// Liveness check after this much silence.
    #[serde(default = "default_dpd", with = "humantime_serde_lite")]
    pub dpd: Duration,
    /// Rekey child SAs after this ("0s" = never); up to 10 % earlier at random.
    #[serde(default = "default_rekey", with = "humantime_serde_lite")]
    pub rekey_time: Duration,
    /// Rekey the IKE SA after this ("0s" = never); up to 10 % earlier at random.
    #[serde(default = "default_ike_rekey", with = "humantime_serde_lite")]
    pub ike_rekey_time: Duration,
    /// Hard lifetime of a child SA not rekeyed by then (default: rekey_time + 10 %).
    #[serde(default, with = "humantime_serde_lite::option")]
    pub life_time: Option<Duration>,
    /// Hard lifetime of an IKE SA not rekeyed by then (default: ike_rekey_time + 10 %).
    #[serde(default, with = "humantime_serde_lite::option")]
    pub ike_life_time: Option<Duration>,
}

impl Connection {
    /// `local_map` as (real, visible) pairs.
    pub fn local_pairs(&self) -> Vec<(IpNet, IpNet)> {
        self.local_map.iter().map(|m| (m.real, m.visible)).collect()
    }
    /// (rekey time, hard lifetime) of child SAs; `None` = never.
    pub fn child_lifetimes(&self) -> (Option<Duration>, Option<Duration>) {
        lifetimes(self.rekey_time, self.life_time)
    }
    /// (rekey time, hard lifetime) of the IKE SA; `None` = never.
    pub fn ike_lifetimes(&self) -> (Option<Duration>, Option<Duration>) {
        lifetimes(self.ike_rekey_time, self.ike_life_time)
    }
    /// How much earlier than its rekey time an SA may be rekeyed (10 % of the shorter one).
    pub fn rekey_jitter(&self) -> Duration {
        [self.rekey_time, self.ike_rekey_time]
            .into_iter()
            .filter(|d| !d.is_zero())
            .min()
            .map_or(Duration::ZERO, |d| d / 10)
    }
}

fn lifetimes(rekey: Duration, life: Option<Duration>) -> (Option<Duration>, Option<Duration>) {
    let rekey = (!rekey.is_zero()).then_some(rekey);
    let life = match life {
        Some(l) if l.is_zero() => None,
        Some(l) => Some(l),
        None => rekey.map(|r| r + r / 10),
    };
    (rekey, life)
}

fn default_interface() -> String {
    "dodvpn0".into()
}
fn default_mtu() -> u16 {
    1400
}
fn default_ike_port() -> u16 {
    500
}
fn default_natt_port() -> u16 {
    4500
}
fn default_control() -> PathBuf {
    PathBuf::from("/run/dodvpn/tunnel.sock")
}
fn default_true() -> bool {
    true
}
/// AEAD first; then what routers and the operating systems' own clients offer by
/// default and RFC 8247 still allows (AES-CBC + HMAC-SHA-256, MODP-2048; docs/interop.md).
fn default_ike_proposals() -> Vec<String> {
    vec![
        "aes128gcm16-prfsha256-ecp256".into(),
        "aes256gcm16-prfsha384-ecp384".into(),
        "aes128gcm16-prfsha256-x25519".into(),
        "aes256gcm16-prfsha384-ecp521".into(),
        "aes256-sha256-modp2048".into(),
    ]
}
fn default_esp_proposals() -> Vec<String> {
    vec![
        "aes128gcm16".into(),
        "aes256gcm16".into(),
        "chacha20poly1305".into(),
        "aes256-sha256".into(),
        "aes128-sha256".into(),
    ]
}
fn default_fragment_size() -> usize {
    dodvpn_ike::fragment::DEFAULT_FRAGMENT_SIZE
}
fn default_start() -> Start {
    Start::Trap
}
fn default_idle() -> Duration {
    Duration::from_secs(300)
}
fn default_dpd() -> Duration {
    Duration::from_secs(30)
}
fn default_rekey() -> Duration {
    Duration::from_secs(3600)
}
fn default_ike_rekey() -> Duration {
    Duration::from_secs(4 * 3600)
}

/// Durations written the human way: "30s", "5m", "1h 30m".
mod humantime_serde_lite {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
    }
    pub mod option {
        use serde::{Deserialize, Deserializer};
        use std::time::Duration;
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            let s = String::deserialize(d)?;
            humantime::parse_duration(&s)
                .map(Some)
                .map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
        }
    }
}

impl TunnelConfig {
    pub fn load(path: &Path) -> anyhow::Result<TunnelConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let cfg: TunnelConfig = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid tunnel configuration", path.display()))?;
        cfg.check()?;
        Ok(cfg)
    }

    pub fn check(&self) -> anyhow::Result<()> {
        if self.connections.is_empty() {
            bail!("no [[connection]] defined");
        }
        let mut names = std::collections::HashSet::new();
        for c in &self.connections {
            if !names.insert(&c.name) {
                bail!("connection name {:?} is used twice", c.name);
            }
            if !(dodvpn_ike::fragment::MIN_FRAGMENT_SIZE..=65535).contains(&c.fragment_size) {
                bail!(
                    "connection {:?}: fragment_size {} is out of range (576 to 65535 bytes)",
                    c.name,
                    c.fragment_size
                );
            }
            let psk = c.psk.is_some() || c.psk_file.is_some();
            let cert = c.cert.is_some() || c.key.is_some() || c.ca.is_some();
            match (psk, cert) {
                (true, true) => bail!(
                    "connection {:?}: give either a PSK or cert/key/ca, not both",
                    c.name
                ),
                (false, false) => bail!(
                    "connection {:?}: give psk/psk_file or cert, key and ca",
                    c.name
                ),
                (false, true) if c.cert.is_none() || c.key.is_none() || c.ca.is_none() => {
                    bail!(
                        "connection {:?}: certificate authentication needs cert, key and ca",
                        c.name
                    )
                }
                _ => {}
            }
            if c.local_subnets.is_empty() || c.remote_subnets.is_empty() {
                bail!(
                    "connection {:?}: local_subnets and remote_subnets must not be empty",
                    c.name
                );
            }
            if let Err(e) = dodvpn_dataplane::NetMap::new(&c.local_pairs()) {
                bail!("connection {:?}: local_map: {e}", c.name);
            }
            for (what, (rekey, life)) in [("", c.child_lifetimes()), ("ike_", c.ike_lifetimes())] {
                if let (Some(r), Some(l)) = (rekey, life) {
                    if l <= r {
                        bail!(
                            "connection {:?}: {what}life_time must be longer than {what}rekey_time",
                            c.name
                        );
                    }
                }
            }
            if !c.force_encap {
                bail!(
                    "connection {:?}: force_encap = false is not supported: dodvpn always carries ESP in UDP 4500 (R-DP-5); remove the key / force_encap = false は使えません (ESP は常に UDP 4500)",
                    c.name
                );
            }
            if c.local_addr.is_ipv4() != c.remote_addr.is_ipv4() {
                bail!(
                    "connection {:?}: local_addr and remote_addr must be the same IP version",
                    c.name
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_map_is_parsed_and_checked() {
        let conf = |map: &str| {
            let cfg: TunnelConfig = toml::from_str(&format!(
                r#"
                [[connection]]
                name = "h"
                local_addr = "192.0.2.1"
                remote_addr = "192.0.2.2"
                local_subnets = ["100.64.1.0/24"]
                remote_subnets = ["10.1.0.0/24"]
                local_id = "a.test"
                psk = "not a real secret"
                local_map = [{map}]
                "#
            ))
            .unwrap();
            cfg
        };
        let ok = conf(r#"{ real = "10.2.0.0/24", visible = "100.64.1.0/24" }"#);
        ok.check().unwrap();
        assert_eq!(
            ok.connections[0].local_pairs(),
            vec![(
                "10.2.0.0/24".parse().unwrap(),
                "100.64.1.0/24".parse().unwrap()
            )]
        );
        let err = conf(r#"{ real = "10.2.0.0/24", visible = "100.64.0.0/23" }"#)
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("local_map"), "{err}");
        assert!(conf(r#"{ real = "fd00::/64", visible = "fd01::/64" }"#)
            .check()
            .is_err());
    }

    #[test]
    fn parses_a_full_connection_and_applies_defaults() {
        let cfg: TunnelConfig = toml::from_str(
            r#"
            interface = "dv0"
            [[connection]]
            name = "b"
            local_addr = "192.0.2.1"
            remote_addr = "192.0.2.2"
            local_subnets = ["10.10.1.0/24"]
            remote_subnets = ["10.10.2.0/24"]
            local_id = "a.test"
            remote_id = "b.test"
            psk = "not a real secret"
            idle_timeout = "45s"
            "#,
        )
        .unwrap();
        cfg.check().unwrap();
        let c = &cfg.connections[0];
        assert_eq!(c.start, Start::Trap);
        assert_eq!(c.idle_timeout, Duration::from_secs(45));
        assert_eq!(
            c.child_lifetimes(),
            (
                Some(Duration::from_secs(3600)),
                Some(Duration::from_secs(3960))
            )
        );
        assert_eq!(
            c.ike_lifetimes(),
            (
                Some(Duration::from_secs(4 * 3600)),
                Some(Duration::from_secs(4 * 3960))
            )
        );
        assert_eq!(c.rekey_jitter(), Duration::from_secs(360));
        assert_eq!(cfg.ike_port, 500);
        assert!(!c.ike_proposals.is_empty());
        assert_eq!(c.rsa_signature, RsaSignature::Pkcs1);
    }

    #[test]
    fn rsa_signature_choice() {
        let conf = |v: &str| {
            format!(
                r#"
                [[connection]]
                name = "b"
                local_addr = "192.0.2.1"
                remote_addr = "192.0.2.2"
                local_subnets = ["10.10.1.0/24"]
                remote_subnets = ["10.10.2.0/24"]
                local_id = "a"
                cert = "a.pem"
                key = "a.key"
                ca = "ca.pem"
                rsa_signature = "{v}"
                "#
            )
        };
        let cfg: TunnelConfig = toml::from_str(&conf("pss")).unwrap();
        assert_eq!(cfg.connections[0].rsa_signature, RsaSignature::Pss);
        let cfg: TunnelConfig = toml::from_str(&conf("pkcs1")).unwrap();
        assert_eq!(cfg.connections[0].rsa_signature, RsaSignature::Pkcs1);
        assert!(toml::from_str::<TunnelConfig>(&conf("pss-sha1")).is_err());
    }

    #[test]
    fn rekey_times_parse_and_are_checked() {
        let base = r#"
            [[connection]]
            name = "b"
            local_addr = "192.0.2.1"
            remote_addr = "192.0.2.2"
            local_subnets = ["10.10.1.0/24"]
            remote_subnets = ["10.10.2.0/24"]
            local_id = "a"
            psk = "x"
        "#;
        let cfg: TunnelConfig = toml::from_str(&format!(
            "{base}rekey_time = \"20s\"\nike_rekey_time = \"0s\"\n"
        ))
        .unwrap();
        cfg.check().unwrap();
        let c = &cfg.connections[0];
        assert_eq!(
            c.child_lifetimes(),
            (Some(Duration::from_secs(20)), Some(Duration::from_secs(22)))
        );
        assert_eq!(c.ike_lifetimes(), (None, None));
        assert_eq!(c.rekey_jitter(), Duration::from_secs(2));
        let cfg: TunnelConfig = toml::from_str(&format!(
            "{base}rekey_time = \"20s\"\nlife_time = \"15s\"\n"
        ))
        .unwrap();
        assert!(cfg.check().unwrap_err().to_string().contains("life_time"));
    }

    #[test]
    fn refuses_typos_and_incomplete_auth() {
        let bad = r#"
            [[connection]]
            name = "b"
            local_addr = "192.0.2.1"
            remote_addr = "192.0.2.2"
            local_subnets = ["10.10.1.0/24"]
            remote_subnets = ["10.10.2.0/24"]
            local_id = "a"
            cert = "a.pem"
        "#;
        let cfg: TunnelConfig = toml::from_str(bad).unwrap();
        assert!(cfg
            .check()
            .unwrap_err()
            .to_string()
            .contains("cert, key and ca"));
        let typo = bad.replace("local_id", "lcoal_id");
        assert!(toml::from_str::<TunnelConfig>(&typo).is_err());
    }

    #[test]
    fn fragmentation_and_chain_keys() {
        let base = r#"
            [[connection]]
            name = "b"
            local_addr = "2001:db8::1"
            remote_addr = "2001:db8::2"
            local_subnets = ["10.10.1.0/24", "fd00:1::/64"]
            remote_subnets = ["10.10.2.0/24"]
            local_id = "a"
            psk = "x"
        "#;
        let cfg: TunnelConfig = toml::from_str(base).unwrap();
        cfg.check().unwrap();
        let c = &cfg.connections[0];
        assert!(c.fragmentation);
        assert_eq!(c.fragment_size, 1280);
        assert!(c.chain.is_none() && c.crls.is_empty());
        let small = format!("{base}\n            fragment_size = 575\n");
        let cfg: TunnelConfig = toml::from_str(&small).unwrap();
        assert!(cfg
            .check()
            .unwrap_err()
            .to_string()
            .contains("fragment_size 575"));
        let off =
            format!("{base}\n            fragmentation = false\n            fragment_size = 576\n");
        let cfg: TunnelConfig = toml::from_str(&off).unwrap();
        cfg.check().unwrap();
        assert!(!cfg.connections[0].fragmentation);
        assert_eq!(cfg.connections[0].fragment_size, 576);
    }
}

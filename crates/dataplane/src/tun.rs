//! The TUN device: created with virtio-net headers and TSO/USO offloads
//! (the kernel hands us TCP/UDP super-packets up to 64 KiB that we split,
//! and we may write coalesced super-packets back), one file descriptor
//! per queue (IFF_MULTI_QUEUE). Each step falls back with a log line.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;

use ipnet::IpNet;
use tun_rs::{DeviceBuilder, SyncDevice};

/// TUN configuration.
#[derive(Debug, Clone)]
pub struct TunConfig {
    /// Interface name.
    pub name: String,
    /// MTU of the inner packets.
    pub mtu: u16,
    /// Optional IPv4 address/prefix on the device.
    pub ipv4: Option<(Ipv4Addr, u8)>,
    /// Optional IPv6 address/prefix on the device.
    pub ipv6: Option<(Ipv6Addr, u8)>,
    /// Try IFF_VNET_HDR + TSO/USO offloads.
    pub offload: bool,
    /// Queues wanted (IFF_MULTI_QUEUE if > 1).
    pub queues: usize,
}

impl Default for TunConfig {
    fn default() -> Self {
        Self {
            name: "dod0".into(),
            mtu: 1400,
            ipv4: None,
            ipv6: None,
            offload: true,
            queues: 1,
        }
    }
}

/// An open TUN device with one or more queues.
pub struct Tun {
    queues: Vec<SyncDevice>,
    name: String,
    mtu: u16,
    offload: bool,
    udp_gso: bool,
}

impl std::fmt::Debug for Tun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tun")
            .field("name", &self.name)
            .field("mtu", &self.mtu)
            .field("offload", &self.offload)
            .field("queues", &self.queues.len())
            .finish()
    }
}

fn build(cfg: &TunConfig, offload: bool, multi_queue: bool) -> io::Result<SyncDevice> {
    let mut b = DeviceBuilder::new().name(cfg.name.clone()).mtu(cfg.mtu);
    if let Some((a, p)) = cfg.ipv4 {
        b = b.ipv4(a, p, None);
    }
    if let Some((a, p)) = cfg.ipv6 {
        b = b.ipv6(a, p);
    }
    b.offload(offload).multi_queue(multi_queue).build_sync()
}

impl Tun {
    /// Create the device, trying offloads and multi-queue first and
    /// falling back step by step (each fallback logged).
    pub fn create(cfg: &TunConfig) -> io::Result<Tun> {
        let want_mq = cfg.queues > 1;
        let attempts: [(bool, bool); 3] =
            [(cfg.offload, want_mq), (false, want_mq), (false, false)];
        let mut last_err = None;
        let mut dev = None;
        for (i, &(off, mq)) in attempts.iter().enumerate() {
            if i > 0 && attempts[i - 1] == (off, mq) {
                continue;
            }
            match build(cfg, off, mq) {
                Ok(d) => {
                    dev = Some((d, mq));
                    break;
                }
                Err(e) => {
                    tracing::warn!(
                        "TUN {} (offload={off}, multi_queue={mq}) failed: {e}; falling back",
                        cfg.name
                    );
                    last_err = Some(e);
                }
            }
        }
        let (first, mq) = dev.ok_or_else(|| last_err.unwrap_or_else(|| io::Error::other("TUN")))?;
        let offload = first.tcp_gso();
        let udp_gso = first.udp_gso();
        if cfg.offload && !offload {
            tracing::warn!("TUN {}: running without offloads (plain TUN)", cfg.name);
        }
        let mut queues = vec![first];
        if mq {
            while queues.len() < cfg.queues {
                match queues[0].try_clone() {
                    Ok(q) => queues.push(q),
                    Err(e) => {
                        tracing::warn!(
                            "TUN {}: extra queue failed: {e}; using {}",
                            cfg.name,
                            queues.len()
                        );
                        break;
                    }
                }
            }
        }
        let name = queues[0].name().unwrap_or_else(|_| cfg.name.clone());
        tracing::info!(
            "TUN {name}: mtu {} offload={offload} udp_gso={udp_gso} queues={}",
            cfg.mtu,
            queues.len()
        );
        Ok(Tun {
            queues,
            name,
            mtu: cfg.mtu,
            offload,
            udp_gso,
        })
    }

    /// Interface name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// MTU.
    pub fn mtu(&self) -> u16 {
        self.mtu
    }
    /// virtio-net header + TSO in use.
    pub fn offload(&self) -> bool {
        self.offload
    }
    /// USO (UDP segmentation offload) in use.
    pub fn udp_gso(&self) -> bool {
        self.udp_gso
    }
    /// Number of queues.
    pub fn queues(&self) -> usize {
        self.queues.len()
    }
    /// Queue `i`.
    pub fn queue(&self, i: usize) -> &SyncDevice {
        &self.queues[i]
    }

    /// Route `net` into this device (`ip route replace`), with an optional
    /// preferred source address.
    pub fn add_route(&self, net: IpNet, src: Option<IpAddr>) -> io::Result<()> {
        let mut cmd = Command::new("ip");
        if net.addr().is_ipv6() {
            cmd.arg("-6");
        }
        cmd.args([
            "route",
            "replace",
            &net.trunc().to_string(),
            "dev",
            &self.name,
        ]);
        if let Some(s) = src {
            cmd.args(["src", &s.to_string()]);
        }
        let out = cmd.output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "ip route replace {net} dev {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Remove a route added with [`add_route`](Self::add_route).
    pub fn remove_route(&self, net: IpNet) -> io::Result<()> {
        let out = Command::new("ip")
            .args(["route", "del", &net.trunc().to_string(), "dev", &self.name])
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        Ok(())
    }
}

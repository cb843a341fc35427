//! `dodvpn tunnel`: static IPsec connections (IKEv2 + ESP) from a TOML file, on the
//! userspace data plane (TUN + UDP). The IKE state machines (`dodvpn_ike`) are driven
//! by one control thread; the packet path (`dodvpn_dataplane`) runs on its own workers.

pub mod config;
pub mod control;
pub mod core;
pub mod daemon;
pub mod peer;
pub mod telemetry;

pub use config::TunnelConfig;

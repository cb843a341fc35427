//! Exposure diagnosis (R-SVC-5, issue 14): what a member organisation's own
//! Internet-facing addresses show, checked from outside without harm.
//!
//! - Nothing is written and nothing is guessed: one anonymous FTP login (listing only),
//!   one request through a suspected proxy to the operator's own canary, one query per
//!   DNS question, one ClientHello per TLS version.
//! - Polite: every probe (a connection or a datagram) takes a slot from a per-target
//!   [`pace::Pacer`] (default 100 probes/s); every connect and read has a timeout.
//! - Only addresses in a [`scope::Scope`] (the organisation's registered public
//!   addresses) are probed; anything else is refused before any packet is sent.
//!
//! The protocol parts (`ftp`, `http`, `tls`, `dns`, `banner`, `snmp`, `socks`, `icmp`) are sans-IO: they build
//! requests and judge answers from bytes, and are property-tested and fuzzed; `run`
//! does the I/O.

pub mod banner;
pub mod catalog;
pub mod dns;
pub mod finding;
pub mod ftp;
pub mod http;
pub mod icmp;
pub mod pace;
pub mod ports;
pub mod run;
pub mod scope;
pub mod snmp;
pub mod socks;
pub mod tls;
pub mod top_tcp;

pub use finding::{Finding, Proto, Severity};
pub use run::{diagnose, Options};
pub use scope::{NotRegistered, Scope};

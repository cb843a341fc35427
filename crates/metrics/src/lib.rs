//! The `/metrics` listener of the centre and of the agent (issue 17 item 3).
//!
//! Metrics get their own plain-HTTP listener, off unless `--metrics-listen` names an
//! address: the centre's HTTPS port faces every device, and nothing should be served
//! there that a provider did not ask for. Who may scrape is decided per request:
//! the caller's address must be in the allow-list (loopback unless the operator names
//! networks), and with a token file the request must carry `Authorization: Bearer
//! TOKEN`, compared in constant time.

mod access;
mod serve;

pub use access::{Access, Refused};
pub use prometheus_client;
pub use serve::{start, Render, CONTENT_TYPE};

use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;

/// How a process serves its metrics (from `--metrics-listen`, `--metrics-allow`,
/// `--metrics-token-file`).
#[derive(Clone, Debug)]
pub struct Options {
    pub listen: SocketAddr,
    /// Source networks answered; empty means loopback only.
    pub allow: Vec<IpNet>,
    /// A file holding the bearer token scrapers must present (mode 0600 or stricter).
    pub token_file: Option<PathBuf>,
}

/// The OpenMetrics text of a registry.
pub fn encode(registry: &prometheus_client::registry::Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; an error here is a bug in a label encoder.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::error!(error = %e, "cannot encode the metrics");
    }
    out
}

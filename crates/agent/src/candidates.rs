//! Endpoint discovery, agent side (issue 19 item 1): where this device may be reached,
//! reported to the centre whenever it changes (`PUT /api/v1/device/candidates`); the
//! centre re-issues the grants naming us, so our peers hear of it on their streams.
//!
//! Candidates are the local address we reach the centre from and the public address
//! the centre saw our HTTPS connection come from (`GET /device/whoami`, "observed"),
//! both on our NAT-T port. The public one is a guess at the NAT's UDP mapping: a
//! masquerading NAT usually keeps the source port, but only a UDP reflector would
//! tell for sure (not there yet, docs/nat.md). Behind an HTTPS proxy the observed
//! address is the proxy's, and is then useless but harmless.

use std::net::{IpAddr, SocketAddr, UdpSocket};

use serde::Deserialize;

use crate::CenterClient;

/// Our candidates from the local address towards the centre and the observed one,
/// each on `natt_port`; no duplicates, never an unspecified or loopback address.
pub fn gather(local: Option<IpAddr>, observed: Option<IpAddr>, natt_port: u16) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for ip in [local, observed].into_iter().flatten() {
        if ip.is_unspecified() || ip.is_loopback() {
            continue;
        }
        let s = SocketAddr::new(ip, natt_port).to_string();
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// The local address this host uses towards `centre` (a routing lookup; nothing sent).
fn local_towards(centre: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = if centre.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let s = UdpSocket::bind(any).ok()?;
    s.connect(centre).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

/// The centre's address (one lookup of its URL's host).
pub async fn centre_addr(client: &CenterClient) -> anyhow::Result<Option<SocketAddr>> {
    let url = reqwest::Url::parse(&client.base)?;
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let found = tokio::net::lookup_host((host.as_str(), port)).await?.next();
    Ok(found)
}

/// Our local address towards `centre` is no longer among the candidates last
/// reported (a new DHCP lease, a failover line): a cheap routing lookup, so it
/// can run often and the centre is asked only when something moved.
pub fn local_moved(centre: SocketAddr, natt_port: u16, last: &Option<Vec<String>>) -> bool {
    let (Some(last), Some(local)) = (last, local_towards(centre)) else {
        return false;
    };
    let now = gather(Some(local), None, natt_port);
    now.iter().any(|c| !last.contains(c))
}

#[derive(Deserialize)]
struct WhoAmI {
    observed: Option<String>,
}

/// How long one report may take. After our address changed, the pooled HTTPS
/// connection still has the old source and its answers never arrive: the
/// attempt is dropped (and the connection with it) and tried once more on a
/// new connection.
const REPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(8);

/// [`report_once`] within [`REPORT_TIMEOUT`], a second time if the first timed out.
pub async fn report(
    client: &CenterClient,
    natt_port: u16,
    last: &mut Option<Vec<String>>,
) -> anyhow::Result<Option<Vec<String>>> {
    for _ in 0..2 {
        if let Ok(r) =
            tokio::time::timeout(REPORT_TIMEOUT, report_once(client, natt_port, last)).await
        {
            return r;
        }
    }
    anyhow::bail!("the centre did not answer within {REPORT_TIMEOUT:?}, twice")
}

/// Ask the centre what it sees, and report our candidates if they differ from `last`.
/// Returns the candidates when they were (re)reported.
async fn report_once(
    client: &CenterClient,
    natt_port: u16,
    last: &mut Option<Vec<String>>,
) -> anyhow::Result<Option<Vec<String>>> {
    let who: WhoAmI = client.get("/api/v1/device/whoami").await?;
    let local = centre_addr(client).await?.and_then(local_towards);
    let observed = who
        .observed
        .and_then(|o| o.parse::<SocketAddr>().ok())
        .map(|a| a.ip());
    let now = gather(local, observed, natt_port);
    if last.as_ref() == Some(&now) {
        return Ok(None);
    }
    let _: serde_json::Value = client
        .put(
            "/api/v1/device/candidates",
            &serde_json::json!({ "candidates": now }),
        )
        .await?;
    *last = Some(now.clone());
    Ok(Some(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn local_and_observed_on_the_natt_port_without_duplicates() {
        assert_eq!(
            gather(ip("198.51.100.2"), ip("192.0.2.101"), 4500),
            ["198.51.100.2:4500", "192.0.2.101:4500"]
        );
        // Not behind a NAT: one candidate.
        assert_eq!(
            gather(ip("192.0.2.11"), ip("192.0.2.11"), 4500),
            ["192.0.2.11:4500"]
        );
        // IPv6 is written with brackets; loopback and unspecified are never candidates.
        assert_eq!(
            gather(ip("2001:db8::5"), ip("::1"), 4501),
            ["[2001:db8::5]:4501"]
        );
        assert!(gather(ip("0.0.0.0"), None, 4500).is_empty());
    }
}

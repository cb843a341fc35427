//! Endpoint discovery, agent side (issue 19 item 1): where this device may be reached,
//! reported to the centre whenever it changes (`PUT /api/v1/device/candidates`); the
//! centre re-issues the grants naming us, so our peers hear of it on their streams.
//!
//! Candidates are the local address we reach the centre from, on our NAT-T port, and
//! our public one. Where the centre names UDP reflectors (its relay's two ports), the
//! public one is what the reflector saw our NAT-T port come from: the NAT's real
//! mapping of the port peers reach. Two reflectors that saw different ports mean a
//! NAT that maps per destination (symmetric); we report that too, and the centre
//! sends such a pair to the relay without trying to punch. Without reflectors (or
//! without an answer) the public candidate is a guess: the address the centre saw
//! our HTTPS connection come from (`GET /device/whoami`, "observed") on our NAT-T
//! port, which a masquerading NAT that keeps source ports gets right. Behind an HTTPS
//! proxy the observed address is the proxy's, and is then useless but harmless.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use dodvpn_tunnel::daemon::Handle;
use serde::{Deserialize, Serialize};

use crate::CenterClient;

/// What the reflector probes showed of our NAT (the centre's `nat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Nat {
    /// Our own address is public.
    None,
    /// One mapping, whatever the destination.
    Cone,
    /// A mapping per destination: punching through another NAT cannot work.
    Symmetric,
}

/// What we last told the centre.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reported {
    pub candidates: Vec<String>,
    pub nat: Option<Nat>,
}

/// How long the reflectors get to answer.
const PROBE_WAIT: Duration = Duration::from_millis(900);

/// Our candidates: `local` and `public`; no duplicates, never an unspecified or
/// loopback address.
pub fn gather(local: Option<SocketAddr>, public: Option<SocketAddr>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in [local, public].into_iter().flatten() {
        if a.ip().is_unspecified() || a.ip().is_loopback() {
            continue;
        }
        let s = a.to_string();
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Our public mapping and NAT from the reflectors' answers (one per reflector, in
/// order; `None` where none came). One answer gives the mapping but not the kind.
pub fn classify(
    local: Option<SocketAddr>,
    answers: &[Option<SocketAddr>],
) -> (Option<SocketAddr>, Option<Nat>) {
    let seen: Vec<SocketAddr> = answers.iter().flatten().copied().collect();
    let Some(&first) = seen.first() else {
        return (None, None);
    };
    let nat = if seen.iter().any(|a| *a != first) {
        Some(Nat::Symmetric)
    } else if Some(first) == local {
        Some(Nat::None)
    } else if seen.len() > 1 {
        Some(Nat::Cone)
    } else {
        None
    };
    (Some(first), nat)
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
pub fn local_moved(centre: SocketAddr, natt_port: u16, last: &Option<Reported>) -> bool {
    let (Some(last), Some(local)) = (last, local_towards(centre)) else {
        return false;
    };
    let now = gather(Some(SocketAddr::new(local, natt_port)), None);
    now.iter().any(|c| !last.candidates.contains(c))
}

#[derive(Deserialize)]
struct WhoAmI {
    observed: Option<String>,
    #[serde(default)]
    reflectors: Vec<String>,
}

/// How long one report may take. After our address changed, the pooled HTTPS
/// connection still has the old source and its answers never arrive: the
/// attempt is dropped (and the connection with it) and tried once more on a
/// new connection.
const REPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(8);

/// [`report_once`] within [`REPORT_TIMEOUT`], a second time if the first timed out.
/// `prober` is the tunnel daemon, whose NAT-T socket the reflectors are probed from.
pub async fn report(
    client: &CenterClient,
    natt_port: u16,
    prober: &Handle,
    last: &mut Option<Reported>,
) -> anyhow::Result<Option<Reported>> {
    for _ in 0..2 {
        if let Ok(r) =
            tokio::time::timeout(REPORT_TIMEOUT, report_once(client, natt_port, prober, last)).await
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
    prober: &Handle,
    last: &mut Option<Reported>,
) -> anyhow::Result<Option<Reported>> {
    let who: WhoAmI = client.get("/api/v1/device/whoami").await?;
    let local = centre_addr(client)
        .await?
        .and_then(local_towards)
        .map(|ip| SocketAddr::new(ip, natt_port));
    let reflectors: Vec<SocketAddr> = who
        .reflectors
        .iter()
        .filter_map(|r| r.parse().ok())
        .collect();
    let answers = if reflectors.is_empty() {
        Vec::new()
    } else {
        let prober = prober.clone();
        tokio::task::spawn_blocking(move || prober.probe_mapping(&reflectors, PROBE_WAIT)).await??
    };
    let (mapped, nat) = classify(local, &answers);
    let observed = who
        .observed
        .and_then(|o| o.parse::<SocketAddr>().ok())
        .map(|a| SocketAddr::new(a.ip(), natt_port));
    let now = Reported {
        candidates: gather(local, mapped.or(observed)),
        nat,
    };
    if last.as_ref() == Some(&now) {
        return Ok(None);
    }
    let _: serde_json::Value = client
        .put(
            "/api/v1/device/candidates",
            &serde_json::json!({ "candidates": now.candidates, "nat": now.nat }),
        )
        .await?;
    *last = Some(now.clone());
    Ok(Some(now))
}

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.candidates.join(", "))?;
        match self.nat {
            Some(Nat::None) => f.write_str(" (no NAT / NAT なし)"),
            Some(Nat::Cone) => f.write_str(" (behind a NAT / NAT 配下)"),
            Some(Nat::Symmetric) => f.write_str(
                " (behind a symmetric NAT: peers behind NATs go through the relay / 対称型 NAT 配下: リレー経由)",
            ),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn local_and_public_without_duplicates() {
        assert_eq!(
            gather(at("198.51.100.2:4500"), at("192.0.2.101:4500")),
            ["198.51.100.2:4500", "192.0.2.101:4500"]
        );
        // Not behind a NAT: one candidate.
        assert_eq!(
            gather(at("192.0.2.11:4500"), at("192.0.2.11:4500")),
            ["192.0.2.11:4500"]
        );
        // IPv6 is written with brackets; loopback and unspecified are never candidates.
        assert_eq!(
            gather(at("[2001:db8::5]:4501"), at("[::1]:4501")),
            ["[2001:db8::5]:4501"]
        );
        assert!(gather(at("0.0.0.0:4500"), None).is_empty());
    }

    #[test]
    fn the_reflectors_answers_tell_the_mapping_and_the_nat() {
        let local = at("198.51.100.2:4500");
        // Both saw the same mapping: a NAT that maps once for every destination.
        assert_eq!(
            classify(local, &[at("192.0.2.101:4500"), at("192.0.2.101:4500")]),
            (at("192.0.2.101:4500"), Some(Nat::Cone))
        );
        // A NAT that picked another port (port-preserving guess would be wrong).
        assert_eq!(
            classify(local, &[at("192.0.2.101:61002"), at("192.0.2.101:61002")]),
            (at("192.0.2.101:61002"), Some(Nat::Cone))
        );
        assert_eq!(
            classify(local, &[at("192.0.2.103:1024"), at("192.0.2.103:1025")]),
            (at("192.0.2.103:1024"), Some(Nat::Symmetric))
        );
        assert_eq!(classify(local, &[local, local]), (local, Some(Nat::None)));
        // One answer: the mapping, but not whether it is the same for everyone.
        assert_eq!(
            classify(local, &[None, at("192.0.2.101:4500")]),
            (at("192.0.2.101:4500"), None)
        );
        assert_eq!(classify(local, &[None, None]), (None, None));
        assert_eq!(classify(local, &[]), (None, None));
    }
}

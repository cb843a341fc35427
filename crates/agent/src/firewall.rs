//! The gateway firewall (issue 9 point 3): a DOD-VPN device is its site's gateway, so
//! nothing from outside may reach the inside around the tunnels. While the agent runs it
//! owns one nftables table, `inet dodvpn_agent`:
//!
//! - a packet arriving on an outer interface is dropped unless it is for one of this
//!   gateway's own addresses on that interface (IKE, ESP, the centre's replies): packets
//!   for the inside subnets or for any other local address never get in that way. What
//!   comes out of a tunnel arrives on the TUN interface, after the data plane's filter;
//! - nothing is forwarded to an outer interface (inside hosts do not leave by the side);
//! - the operator's explicit exceptions (`--allow-in`, `--allow-out`) pass, and so do
//!   the replies of the connections they let through (marked in conntrack).
//!
//! The ruleset is generated text fed to `nft -f -`, which replaces the table in one
//! transaction; the table is deleted when the agent stops. A table left by a killed
//! agent keeps the site closed until the next start replaces it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::str::FromStr;

use anyhow::{bail, Context};
use dodvpn_policy::{Proto, Service};
use ipnet::IpNet;

/// The nftables table the agent owns (family inet: IPv4 and IPv6).
pub const TABLE: &str = "dodvpn_agent";
/// Conntrack mark of connections an operator's exception let through ("ddvp").
const ALLOWED_MARK: u32 = 0x6464_7670;

/// One operator exception: `NET` or `NET,SERVICE` (service as in policies: `tcp/443`,
/// `udp/53,123`, `icmp`, `any`; default `any`). For `--allow-in` NET is an inside
/// destination reachable from outside; for `--allow-out` an outside destination that
/// inside hosts may reach through this gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allow {
    pub net: IpNet,
    pub service: Service,
}

impl FromStr for Allow {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Allow> {
        let (net, service) = match s.split_once(',') {
            Some((n, svc)) => (n.trim(), svc.trim()),
            None => (s.trim(), "any"),
        };
        let net = net
            .parse::<IpNet>()
            .or_else(|_| net.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| {
                anyhow::anyhow!("{s:?}: {net:?} is not an address or a prefix (NET[,SERVICE])")
            })?
            .trunc();
        let service = service
            .parse::<Service>()
            .map_err(|e| anyhow::anyhow!("{s:?}: {e}"))?;
        Ok(Allow { net, service })
    }
}

/// What the operator configured on `dodvpn agent run`.
#[derive(Clone, Debug, Default)]
pub struct FirewallOptions {
    /// Outer (untrusted) interfaces; empty = the interface that routes to the centre.
    pub outer: Vec<String>,
    pub allow_in: Vec<Allow>,
    pub allow_out: Vec<Allow>,
}

/// Interface names go into the ruleset text: only what Linux names look like.
fn check_ifname(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        bail!("{name:?} is not an interface name");
    }
    Ok(())
}

/// nftables match for a destination and a service (empty for "everything").
fn matcher(a: &Allow) -> String {
    let fam = if a.net.addr().is_ipv4() { "ip" } else { "ip6" };
    let mut m = format!("{fam} daddr {} ", a.net);
    let ports = (!a.service.ports.is_empty()).then(|| {
        let list: Vec<String> = a.service.ports.iter().map(|p| p.to_string()).collect();
        format!("th dport {{ {} }} ", list.join(", "))
    });
    match (a.service.proto, ports) {
        (Proto::Any, None) => {}
        (Proto::Any, Some(p)) => {
            let _ = write!(m, "meta l4proto {{ tcp, udp }} {p}");
        }
        (Proto::Tcp, p) => {
            let _ = write!(m, "meta l4proto tcp {}", p.unwrap_or_default());
        }
        (Proto::Udp, p) => {
            let _ = write!(m, "meta l4proto udp {}", p.unwrap_or_default());
        }
        (Proto::Icmp, _) => {
            let _ = write!(m, "meta l4proto {{ icmp, ipv6-icmp }} ");
        }
    }
    m
}

/// The whole table as `nft -f` input: replaces any earlier table of ours atomically.
pub fn ruleset(outer: &[String], opts: &FirewallOptions) -> anyhow::Result<String> {
    if outer.is_empty() {
        bail!("no outer interface to protect");
    }
    for i in outer {
        check_ifname(i)?;
    }
    let outer_set = format!(
        "{{ {} }}",
        outer
            .iter()
            .map(|i| format!("\"{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mark = format!("0x{ALLOWED_MARK:08x}");
    let mut r = String::new();
    let _ = writeln!(r, "table inet {TABLE} {{}}");
    let _ = writeln!(r, "delete table inet {TABLE}");
    let _ = writeln!(r, "table inet {TABLE} {{");
    let _ = writeln!(r, "  chain from_outside {{");
    let _ = writeln!(
        r,
        "    type filter hook prerouting priority mangle; policy accept;"
    );
    let _ = writeln!(r, "    iifname != {outer_set} accept");
    let _ = writeln!(
        r,
        "    fib daddr . iif type {{ local, broadcast, multicast }} accept"
    );
    let _ = writeln!(r, "    ct direction reply ct mark {mark} accept");
    for a in &opts.allow_in {
        let _ = writeln!(r, "    {}ct mark set {mark} accept", matcher(a));
    }
    let _ = writeln!(
        r,
        "    counter drop comment \"around the tunnels: not for this gateway's outer address\""
    );
    let _ = writeln!(r, "  }}");
    let _ = writeln!(r, "  chain forward {{");
    let _ = writeln!(
        r,
        "    type filter hook forward priority filter; policy accept;"
    );
    let _ = writeln!(r, "    oifname != {outer_set} accept");
    let _ = writeln!(r, "    ct mark {mark} accept");
    for a in &opts.allow_out {
        let _ = writeln!(r, "    {}ct mark set {mark} accept", matcher(a));
    }
    let _ = writeln!(
        r,
        "    counter drop comment \"inside to outside: not allowed by the operator\""
    );
    let _ = writeln!(r, "  }}");
    let _ = writeln!(r, "}}");
    Ok(r)
}

fn nft(args: &[&str], stdin: Option<&str>) -> anyhow::Result<()> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run nft (is nftables installed?)")?;
    if let (Some(text), Some(mut w)) = (stdin, child.stdin.take()) {
        w.write_all(text.as_bytes())
            .context("cannot feed the ruleset to nft")?;
    }
    let out = child.wait_with_output().context("nft did not finish")?;
    if !out.status.success() {
        bail!(
            "nft {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The interface this host sends to `addr` on (a routing lookup, nothing is sent).
pub fn interface_towards(addr: IpAddr) -> anyhow::Result<String> {
    let out = Command::new("ip")
        .args(["-o", "route", "get", &addr.to_string()])
        .stdin(Stdio::null())
        .output()
        .context("cannot run ip")?;
    if !out.status.success() {
        bail!(
            "no route to {addr}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "dev" {
            if let Some(dev) = words.next() {
                return Ok(dev.to_string());
            }
        }
    }
    bail!("`ip route get {addr}` names no interface: {}", text.trim())
}

/// The installed table; deleted when this is dropped (the agent stopping, by
/// revocation, an error or SIGTERM).
pub struct GatewayFirewall {
    pub outer: Vec<String>,
}

impl GatewayFirewall {
    /// Install (or replace) the table. `tun` is the data plane's interface, which must
    /// not be an outer one; `loopback` may not be either (the host's own traffic).
    pub fn install(
        outer: Vec<String>,
        tun: &str,
        opts: &FirewallOptions,
    ) -> anyhow::Result<GatewayFirewall> {
        for i in &outer {
            if i == tun || i == "lo" {
                bail!("{i} cannot be an outer interface (pass --outer-interface)");
            }
        }
        let text = ruleset(&outer, opts)?;
        nft(&["-f", "-"], Some(&text)).with_context(|| {
            format!("cannot install the gateway firewall (nftables table inet {TABLE})")
        })?;
        Ok(GatewayFirewall { outer })
    }
}

impl Drop for GatewayFirewall {
    fn drop(&mut self) {
        if let Err(e) = nft(&["delete", "table", "inet", TABLE], None) {
            tracing::warn!(error = %e, "cannot remove the gateway firewall");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exceptions_parse_with_a_clear_error() {
        let a: Allow = "10.1.0.50,tcp/22".parse().unwrap();
        assert_eq!(a.net, "10.1.0.50/32".parse::<IpNet>().unwrap());
        assert_eq!(a.service, Service::tcp(&[22]));
        let a: Allow = "10.1.0.77/24".parse().unwrap();
        assert_eq!(a.net, "10.1.0.0/24".parse::<IpNet>().unwrap());
        assert_eq!(a.service, Service::any());
        let a: Allow = "2001:db8::/32,udp/53,123".parse().unwrap();
        assert_eq!(a.service.ports.len(), 2);
        let e = "10.1.0.300,tcp/22"
            .parse::<Allow>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an address or a prefix"), "{e}");
        let e = "10.1.0.5,smtp".parse::<Allow>().unwrap_err().to_string();
        assert!(e.contains("expected tcp, udp, icmp or any"), "{e}");
    }

    #[test]
    fn ruleset_drops_around_the_tunnels_and_lets_only_exceptions_through() {
        let opts = FirewallOptions {
            outer: vec![],
            allow_in: vec!["10.1.0.50,tcp/443".parse().unwrap()],
            allow_out: vec!["2001:db8::/32,udp/53".parse().unwrap()],
        };
        let r = ruleset(&["out0".into(), "wan1".into()], &opts).unwrap();
        // Replaces an older table of ours in the same transaction.
        assert!(r.starts_with(&format!(
            "table inet {TABLE} {{}}\ndelete table inet {TABLE}\n"
        )));
        let pre = r.split("chain forward").next().unwrap();
        let fwd = r.split("chain forward").nth(1).unwrap();
        assert!(pre.contains("iifname != { \"out0\", \"wan1\" } accept"));
        assert!(pre.contains("fib daddr . iif type { local, broadcast, multicast } accept"));
        assert!(pre.contains(
            "ip daddr 10.1.0.50/32 meta l4proto tcp th dport { 443 } ct mark set 0x64647670 accept"
        ));
        assert!(pre.trim_end().ends_with("}") && pre.contains("counter drop"));
        assert!(fwd.contains("oifname != { \"out0\", \"wan1\" } accept"));
        assert!(fwd.contains(
            "ip6 daddr 2001:db8::/32 meta l4proto udp th dport { 53 } ct mark set 0x64647670 accept"
        ));
        assert!(fwd.contains("counter drop"));
        // The drops come after every exception.
        assert!(pre.find("counter drop").unwrap() > pre.find("ct mark set").unwrap());
    }

    #[test]
    fn interface_names_cannot_inject_rules() {
        let opts = FirewallOptions::default();
        for bad in ["", "out0\" accept", "a b", "averyveryverylongname"] {
            let e = ruleset(&[bad.to_string()], &opts).unwrap_err().to_string();
            assert!(e.contains("is not an interface name"), "{bad:?}: {e}");
        }
        assert!(ruleset(&[], &opts).is_err());
    }
}

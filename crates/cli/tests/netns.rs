//! The data plane in real network namespaces (needs root; fails, never skips, without
//! it): dodvpn ↔ dodvpn on-demand tunnels with PSK and certificates, and dodvpn ↔
//! strongSwan in both directions. The scenarios live in tests/netns/*.sh so they can
//! also be run by hand; these tests run them against the binary under test.

use std::path::PathBuf;
use std::process::Command;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/netns")
        .join(name)
}

fn run(name: &str) {
    let root = current_uid() == 0;
    assert!(root, "{name} needs root (network namespaces, TUN, UDP 500/4500): run the tests as root, as CI does");
    let out = Command::new("bash")
        .arg(script(name))
        .env("DODVPN_BIN", env!("CARGO_BIN_EXE_dodvpn"))
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{name} failed:\n{stdout}");
    assert!(
        stdout.contains(" passed, 0 failed"),
        "{name} printed no summary:\n{stdout}"
    );
}

fn current_uid() -> u32 {
    // No libc dependency for one call: ask the shell.
    let out = Command::new("id").arg("-u").output().expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(u32::MAX)
}

#[test]
fn dodvpn_to_dodvpn_on_demand_tunnels() {
    run("tunnel_selftest.sh");
}

/// R-DP-2: 17 cases against strongSwan in both directions (PSK, ECDSA, RSA, suites, NAT,
/// rekey under load, idle delete), and MOBIKE: dodvpn's address changes during a
/// transfer and strongSwan follows under the same IKE SA, and the other way round; with
/// strongSwan's `mobike = no`
/// the next packet brings a new IKE SA (tests/netns/interop_strongswan.sh).
#[test]
fn dodvpn_interoperates_with_strongswan_both_directions() {
    run("interop_strongswan.sh");
}

/// Issue 16, transport (R-DP-2): against strongSwan in both directions, with ping and
/// TCP (sha256) each case: IKE fragmentation (RFC 7383) with RSA-4096 certificates over
/// a path that drops IP fragments; IPv6-only outer addresses with IPv4 and IPv6 inner;
/// certificate chains through one and two intermediates; DELETE on SIGTERM (initiator
/// and responder) and on `dodvpn tunnel down`, seen by strongSwan right after.
#[test]
fn transport_interop_with_strongswan() {
    run("interop_transport.sh");
}

/// Issue 16: the suites routers and the operating systems' own clients use, against
/// strongSwan in both directions with ping and TCP (sha256): MODP 2048/3072/4096, ECP-521,
/// AES-CBC + HMAC-SHA-256/384/512 for IKE and ESP; Windows', macOS/iOS and a router's default
/// proposal sets accepted or refused, the refusal logged with what was offered and accepted.
#[test]
fn strongswan_interop_suites_modp_ecp521_cbc_hmac() {
    run("interop_suites.sh");
}

/// A strongSwan site (issue 4, item 7): a hospital's standard IKEv2 router (charon with
/// kernel-libipsec) enrolled from its own certificate request and configured by hand from
/// `dodvpn admin grant show`, talking to a clinic's dodvpn agent through the centre:
/// on-demand setup from the agent, TCP with sha256 both ways, the router initiating under
/// a reverse grant, the session in the centre's list, SIGTERM to the agent sending the
/// router DELETE (no SA left within 3 s), grant withdrawal cutting within 2 s.
#[test]
fn strongswan_router_as_a_site() {
    run("strongswan_site.sh");
}

/// Issue 9.3: the agent is its site's gateway. Plain IP routed around the tunnels via
/// the site's outer address reaches the inside host without the agent and gets no answer
/// with it, while the peer site's host does, through the tunnel with a grant. Nothing is
/// forwarded inside → outside; `--allow-in` / `--allow-out` open exactly what they name;
/// SIGTERM removes the nftables table, SIGKILL leaves the site closed; no nft, no agent.
#[test]
fn gateway_drops_what_routes_around_the_tunnels() {
    run("gateway_firewall.sh");
}

/// TR §9 end to end (issue 4): `dodvpn demo --exit` builds a centre and seven sites in
/// namespaces, enrols them through D.6 a–l and checks, with real ICMP and TCP traffic
/// and the centre's audit log: on-demand tunnels and idle teardown, multi-session at
/// the hospital (§9.5), group isolation, overlapping ranges, a clinic behind a NAT without
/// an endpoint keeping its session across a new DHCP lease (MOBIKE), the vendor's maintenance window
/// limited to the contracted host and port (§9.2), the three-point session audit and an
/// operator cut, a centre outage and an agent crash, grant withdrawal and revocation
/// cutting live tunnels within 2 s.
#[test]
fn tr9_network_end_to_end() {
    assert!(
        current_uid() == 0,
        "the TR §9 end-to-end test needs root (network namespaces, TUN): run the tests as root, as CI does"
    );
    let work = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_dodvpn"))
        .args(["demo", "--exit", "--work"])
        .arg(work.path().join("demo"))
        .output()
        .expect("run dodvpn demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the demo's checks failed:\n{stdout}");
    assert!(stdout.contains(" checks passed, 0 failed"), "{stdout}");
    for must in [
        "clinic → lab: unreachable",
        "outsider → anyone: unreachable",
        "vendor → 10.1.0.50:80: refused",
        "reported up by both ends, one session id",
        "pharmacy revoked: tunnel cut",
        "on-demand setup still works",
        "the outsider around the tunnels → the sites' inside",
        "the revoked pharmacy's agent stopped by itself and was reaped",
    ] {
        assert!(stdout.contains(must), "missing check {must:?}:\n{stdout}");
    }
}

/// R-DP-8: two clinics with the same inside subnet reach one hospital and each other
/// through address mapping (`local_map`), with real ICMP, TCP and UDP.
#[test]
fn overlapping_sites_reach_the_hospital_through_mapping() {
    run("mapping_selftest.sh");
}

/// R-SVC-5 (issue 14): `dodvpn diagnose` against vsftpd, bind9, squid, socat
/// echo/chargen/daytime and `openssl s_server -tls1` in namespaces of its own, a clean
/// host, an unregistered address refused, and nmap's NSE scripts on the same targets.
#[test]
fn diagnose_finds_what_nmap_finds_and_refuses_unregistered_addresses() {
    run("diagnose.sh");
}

/// Issue 16 point 4 (R-DP-2): the agent over IPv6-only outer addresses. The centre listens
/// on IPv6 only, the devices' endpoints are IPv6, no outer interface has an IPv4 address;
/// TR D.6 enrolment over IPv6, agent ↔ agent IKE and ESP-in-UDP over IPv6 with each side
/// initiating once, ping and TCP (sha256) over IPv4 and IPv6 inner both ways, the session
/// reported to the centre (tests/netns/agent_ipv6.sh).
#[test]
fn agent_over_ipv6_only_outer_addresses() {
    run("agent_ipv6.sh");
}

/// Issue 17 item 3: the agents' /metrics with a real data plane — tunnels up, handshakes
/// by role with their durations, bytes and packets per peer, a filter refusal and its
/// drop, counters that survive `tunnel down`, a wrong token refused — and the centre's
/// event streams, devices in service and pushes (tests/netns/agent_metrics.sh).
#[test]
fn agent_metrics_with_a_real_data_plane() {
    run("agent_metrics.sh");
}

/// Issue 19 item 5 (identity, not address): a clinic behind a masquerading nftables NAT,
/// registered without an endpoint, reaches a fixed-address hospital on demand and the
/// hospital answers over the clinic's SA (ping, 2 MiB TCP sha256); the hospital installs
/// the grant instead of skipping it and identifies the clinic by its certificate; a
/// fixed-address hospital ↔ lab pair works as before; the clinic's candidates (the NAT's
/// public address among them) reach the hospital's grant. Issue 19 item 4: the clinic's
/// new DHCP lease during an 8 MiB transfer is followed with MOBIKE (sha256 equal, the
/// same session id at both ends, no IKE SA down) (tests/netns/agent_nat.sh).
#[test]
fn a_clinic_behind_nat_without_an_endpoint_reaches_the_hospital() {
    run("agent_nat.sh");
}

/// Issue 12 (R-SVC-1), the gateway centre: `dodvpn gateway run` reached by a member site
/// over its tunnel, an "Internet" namespace with HTTPS/HTTP servers and a bind9 zone for
/// example.test: allowed → 200, not allowed → 403 page (ja/en), approval by push without
/// restart, expiry, SNI ≠ CONNECT and no SNI refused, names resolving to private, loopback,
/// CGNAT, the VPN range and the gateway itself refused, `0x7f.1` and `2130706433` refused,
/// a site without a grant gets no TCP answer, sign-in with a console account made through
/// /console/setup (200; a wrong password 407), the node's and the centre's logs, the daily
/// digest in the audit chain, and bad input (malformed, 20 KB head, slowloris, 10,000
/// concurrent CONNECTs) answered with HTTP errors while memory stays bounded.
#[test]
fn the_gateway_centre_gives_allowlisted_approved_internet_access_over_the_vpn_only() {
    run("gateway_centre.sh");
}

/// Issue 19 items 1–3 (tests/netns/agent_punch.sh): four clinics behind nftables NATs
/// of the test's own, without endpoints. Clinic ↔ clinic through a port-restricted and
/// a full-cone-like NAT both ways, and hospital → clinic, on demand: the caller dials
/// the peer's reported candidates, the centre introduces both at once and the called
/// side opens its NAT (the port-restricted NAT is seen dropping the first IKE). Both
/// behind symmetric NATs: the centre allocates the relay, both tunnels run through it,
/// 2 MiB of known plain text arrive intact and a capture at the relay never holds it;
/// the centre's session list marks that session as relayed, and only that one.
#[test]
fn clinics_behind_nats_punch_through_and_symmetric_nats_meet_at_the_relay() {
    run("agent_punch.sh");
}

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

#[test]
fn dodvpn_interoperates_with_strongswan_both_directions() {
    run("interop_strongswan.sh");
}

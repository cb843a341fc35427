//! The Debian package (issue 17 item 1). scripts/package-deb.sh packages the binary
//! under test twice, as version -1 and as a newer build -2, and
//! tests/package/deb_lifecycle.sh installs the first, runs the units' ExecStart lines
//! as systemd would, enrols a device, restarts, upgrades to the second while it runs,
//! removes and purges, checking each step (about 50 checks).
//!
//! It installs into the machine it runs on, so it runs in a fresh Debian root only:
//! under CI that is the machine itself (.ci/run runs the suite inside
//! ../shared/tools/fresh-debian.sh); anywhere else this test makes one with
//! fresh-debian.sh for the script, and this machine's packages, users and /etc are
//! never touched. Needs root (dpkg, users, TUN); fails, never skips, without it.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_dodvpn");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn uid() -> u32 {
    let out = Command::new("id").arg("-u").output().expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(u32::MAX)
}

/// scripts/package-deb.sh with the binary under test; the path of the package.
fn package(version: &str, out: &Path) -> PathBuf {
    let o = Command::new("bash")
        .arg(repo().join("scripts/package-deb.sh"))
        .args(["--binary", BIN, "--version", version, "--fast", "--out"])
        .arg(out)
        .current_dir(repo())
        .output()
        .expect("run scripts/package-deb.sh");
    assert!(
        o.status.success(),
        "package-deb.sh --version {version} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let path = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    assert!(
        path.is_file(),
        "package-deb.sh printed {path:?}, not a file"
    );
    path
}

/// Whether anything is still mounted at or below `dir` (then it must not be deleted).
fn mounted_below(dir: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let d = dir.to_string_lossy();
    mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .any(|m| m == d || m.starts_with(&format!("{d}/")))
}

#[test]
fn deb_installs_starts_enrols_restarts_upgrades_and_purges() {
    assert_eq!(
        uid(),
        0,
        "the package test needs root (dpkg, a system user, TUN, a fresh Debian root): run the tests as root, as CI does"
    );
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let scratch = tempfile::Builder::new()
        .prefix("dodvpn-deb.")
        .tempdir_in(if ci { "/tmp" } else { "/var/tmp" })
        .unwrap();
    let upstream = env!("CARGO_PKG_VERSION");
    let debs = scratch.path().join("debs");
    let old = package(&format!("{upstream}-1"), &debs);
    let new = package(&format!("{upstream}-2"), &debs);
    let script = repo().join("tests/package/deb_lifecycle.sh");

    let (out, root) = if ci {
        // The CI's root was made for this run: the package goes into it.
        let o = Command::new("bash")
            .arg(&script)
            .arg(&old)
            .arg(&new)
            .current_dir(repo())
            .output()
            .expect("run deb_lifecycle.sh");
        (o, None)
    } else {
        // Not CI: a fresh root of our own, with the packages and the two scripts the
        // test needs copied in at /pkgtest (fresh-debian.sh debootstraps into it).
        let fresh = repo().join("../shared/tools/fresh-debian.sh");
        assert!(
            fresh.is_file(),
            "{} is missing: outside CI the package test runs in a fresh Debian root that it makes (shared/ must sit beside the checkout)",
            fresh.display()
        );
        let root = scratch.path().join("root");
        let stage = root.join("pkgtest");
        std::fs::create_dir_all(stage.join("scripts")).unwrap();
        std::fs::create_dir_all(stage.join("tests/package")).unwrap();
        std::fs::copy(
            repo().join("scripts/setup.sh"),
            stage.join("scripts/setup.sh"),
        )
        .unwrap();
        std::fs::copy(&script, stage.join("tests/package/deb_lifecycle.sh")).unwrap();
        std::fs::copy(&old, stage.join("old.deb")).unwrap();
        std::fs::copy(&new, stage.join("new.deb")).unwrap();
        let o = Command::new("bash")
            .arg(&fresh)
            .arg("--keep")
            .arg(&root)
            .args([
                "--",
                "bash",
                "/pkgtest/tests/package/deb_lifecycle.sh",
                "--install-needs",
                "/pkgtest/old.deb",
                "/pkgtest/new.deb",
            ])
            .current_dir(repo())
            .output()
            .expect("run fresh-debian.sh");
        (o, Some(root))
    };
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    if let Some(root) = root {
        // fresh-debian.sh unmounted everything it mounted; never delete through a mount.
        if mounted_below(&root) {
            panic!(
                "{} still has mounts below it; left in place, remove by hand after unmounting",
                root.display()
            );
        }
        let _ = Command::new("rm")
            .args(["-rf", "--one-file-system"])
            .arg(&root)
            .status();
    }
    assert!(out.status.success(), "deb_lifecycle.sh failed:\n{stdout}");
    assert!(
        stdout.contains(" passed, 0 failed"),
        "deb_lifecycle.sh printed no summary:\n{stdout}"
    );
}

//! TR D.6 d–l for one registered device, through the real `dodvpn` CLI: written once for
//! `dodvpn demo` and the cli tests (crates/cli/tests/common includes this file). The
//! shell scripts have the same sequence once, as `d6_enrol` in tests/netns/lib.sh.

use std::path::Path;

use anyhow::Context;

/// `dodvpn ARGS` somewhere (a namespace, or this host): its stdout, or an error.
pub type Dodvpn<'a> = &'a dyn Fn(&[&str]) -> anyhow::Result<String>;

/// Where the steps run: the provider's side, holding the admin credential, and the
/// device itself (which reaches the centre with its own tier-1 certificate).
pub struct D6<'a> {
    pub center: &'a str,
    pub ca: &'a Path,
    pub credential: &'a Path,
    pub provider: Dodvpn<'a>,
    pub device: Dodvpn<'a>,
}

impl D6<'_> {
    fn admin(&self, args: &[&str]) -> anyhow::Result<String> {
        let (ca, cred) = (self.ca.to_string_lossy(), self.credential.to_string_lossy());
        let mut full = vec!["admin", "--json", "--center", self.center, "--ca", &ca];
        full.extend(["--credential-file", &cred]);
        full.extend(args);
        (self.provider)(&full).with_context(|| format!("admin {}", args.join(" ")))
    }

    /// After registration (c): the provider provisions the tier-1 key into `keystore`
    /// (d–f) and delivers (g); the owner applies (h), the provider approves (i); the
    /// device enrols its separate tier-2 key (j) and the service starts (l).
    pub fn enrol(&self, device_id: &str, keystore: &Path) -> anyhow::Result<()> {
        let (ca, cred) = (self.ca.to_string_lossy(), self.credential.to_string_lossy());
        let ks = keystore.to_string_lossy();
        (self.provider)(&[
            "device",
            "provision",
            "--center",
            self.center,
            "--ca",
            &ca,
            "--credential-file",
            &cred,
            "--keystore",
            &ks,
            "--device",
            device_id,
        ])
        .context("device provision")?;
        self.admin(&["device", "deliver", device_id])?;
        self.admin(&["service", "apply", device_id])?;
        self.admin(&["service", "approve", device_id])?;
        (self.device)(&[
            "agent",
            "enroll",
            "--keystore",
            &ks,
            "--center",
            self.center,
        ])
        .context("agent enroll")?;
        self.admin(&["service", "start", device_id])?;
        Ok(())
    }
}

//! Who may read `/metrics`: an address allow-list, and optionally a bearer token.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;

use anyhow::Context;
use ipnet::IpNet;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Options;

/// The checks every scrape passes, built once from [`Options`].
#[derive(Clone)]
pub struct Access {
    allow: Vec<IpNet>,
    /// SHA-256 of the token: comparing digests takes the same time whatever the
    /// presented token's length.
    token_digest: Option<[u8; 32]>,
}

/// Why a scrape was refused (and the status it is answered with).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The caller's address is not in the allow-list (403).
    Remote,
    /// No `Authorization: Bearer …` header while a token is required (401).
    NoToken,
    /// A token that is not the configured one (401).
    WrongToken,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Remote => "address not allowed",
            Refused::NoToken => "bearer token required",
            Refused::WrongToken => "wrong bearer token",
        }
    }
}

fn loopback() -> Vec<IpNet> {
    vec![
        "127.0.0.0/8".parse().expect("constant"),
        "::1/128".parse().expect("constant"),
    ]
}

impl Access {
    /// Check the options and read the token file. A listener other hosts can reach
    /// whose allow-list still says loopback only would refuse every scraper, so it is
    /// an error that says what to add.
    pub fn from_options(o: &Options) -> anyhow::Result<Access> {
        let allow = if o.allow.is_empty() {
            if !o.listen.ip().is_loopback() {
                anyhow::bail!(
                    "--metrics-listen {} is reachable from other hosts, but without --metrics-allow only loopback may scrape: \
                     name the Prometheus server's address or network with --metrics-allow (and, on a network you do not trust, \
                     add --metrics-token-file)",
                    o.listen
                );
            }
            loopback()
        } else {
            o.allow.iter().map(|n| n.trunc()).collect()
        };
        let token_digest = match &o.token_file {
            None => None,
            Some(path) => {
                let meta = std::fs::metadata(path).with_context(|| {
                    format!("cannot read the metrics token file {}", path.display())
                })?;
                if meta.permissions().mode() & 0o077 != 0 {
                    anyhow::bail!(
                        "the metrics token file {} is readable by other users (mode {:o}): chmod 600 it",
                        path.display(),
                        meta.permissions().mode() & 0o777
                    );
                }
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read the metrics token file {}", path.display())
                })?;
                let token = text.trim();
                if token.len() < 16 {
                    anyhow::bail!(
                        "the metrics token in {} is {} characters long: use at least 16 (e.g. `openssl rand -hex 32`)",
                        path.display(),
                        token.len()
                    );
                }
                Some(Sha256::digest(token.as_bytes()).into())
            }
        };
        Ok(Access {
            allow,
            token_digest,
        })
    }

    pub fn requires_token(&self) -> bool {
        self.token_digest.is_some()
    }

    pub fn allowed(&self) -> &[IpNet] {
        &self.allow
    }

    /// Whether a request from `remote` with this `Authorization` header may scrape.
    pub fn check(&self, remote: IpAddr, authorization: Option<&[u8]>) -> Result<(), Refused> {
        let remote = remote.to_canonical();
        if !self.allow.iter().any(|n| n.contains(&remote)) {
            return Err(Refused::Remote);
        }
        let Some(want) = &self.token_digest else {
            return Ok(());
        };
        let presented = authorization
            .and_then(|h| h.strip_prefix(b"Bearer "))
            .ok_or(Refused::NoToken)?;
        let got: [u8; 32] = Sha256::digest(trim(presented)).into();
        if bool::from(got.ct_eq(want)) {
            Ok(())
        } else {
            Err(Refused::WrongToken)
        }
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| *c != b' ').unwrap_or(b.len());
    let end = b.iter().rposition(|c| *c != b' ').map_or(start, |e| e + 1);
    &b[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn opts(listen: &str, allow: &[&str], token: Option<&std::path::Path>) -> Options {
        Options {
            listen: listen.parse().unwrap(),
            allow: allow.iter().map(|a| a.parse().unwrap()).collect(),
            token_file: token.map(|p| p.to_path_buf()),
        }
    }

    fn token_file(text: &str, mode: u32) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        f
    }

    #[test]
    fn loopback_only_by_default() {
        let a = Access::from_options(&opts("127.0.0.1:9464", &[], None)).unwrap();
        assert_eq!(a.check("127.0.0.1".parse().unwrap(), None), Ok(()));
        assert_eq!(a.check("::1".parse().unwrap(), None), Ok(()));
        // An IPv4 caller on a dual-stack socket arrives as ::ffff:a.b.c.d.
        assert_eq!(a.check("::ffff:127.0.0.1".parse().unwrap(), None), Ok(()));
        assert_eq!(
            a.check("192.0.2.7".parse().unwrap(), None),
            Err(Refused::Remote)
        );
    }

    #[test]
    fn a_reachable_listener_needs_an_allow_list() {
        let e = Access::from_options(&opts("0.0.0.0:9464", &[], None))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("--metrics-allow"), "{e}");
        let a = Access::from_options(&opts("0.0.0.0:9464", &["192.0.2.0/24"], None)).unwrap();
        assert_eq!(a.check("192.0.2.9".parse().unwrap(), None), Ok(()));
        assert_eq!(
            a.check("127.0.0.1".parse().unwrap(), None),
            Err(Refused::Remote)
        );
    }

    #[test]
    fn the_token_is_required_and_compared() {
        let f = token_file("0123456789abcdef0123\n", 0o600);
        let a = Access::from_options(&opts("127.0.0.1:1", &[], Some(f.path()))).unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(a.check(lo, None), Err(Refused::NoToken));
        assert_eq!(a.check(lo, Some(b"Basic abc")), Err(Refused::NoToken));
        assert_eq!(
            a.check(lo, Some(b"Bearer 0123456789abcdef0124")),
            Err(Refused::WrongToken)
        );
        assert_eq!(a.check(lo, Some(b"Bearer ")), Err(Refused::WrongToken));
        assert_eq!(a.check(lo, Some(b"Bearer 0123456789abcdef0123")), Ok(()));
        // The address is checked before the token.
        assert_eq!(
            a.check(
                "192.0.2.1".parse().unwrap(),
                Some(b"Bearer 0123456789abcdef0123")
            ),
            Err(Refused::Remote)
        );
    }

    #[test]
    fn token_files_others_can_read_or_too_short_are_refused() {
        let f = token_file("0123456789abcdef0123", 0o644);
        let e = Access::from_options(&opts("127.0.0.1:1", &[], Some(f.path())))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("chmod 600"), "{e}");
        let f = token_file("short\n", 0o600);
        let e = Access::from_options(&opts("127.0.0.1:1", &[], Some(f.path())))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("at least 16"), "{e}");
        let e = Access::from_options(&opts(
            "127.0.0.1:1",
            &[],
            Some(std::path::Path::new("/nonexistent/token")),
        ))
        .err()
        .unwrap();
        assert!(format!("{e:#}").contains("/nonexistent/token"), "{e:#}");
    }
}

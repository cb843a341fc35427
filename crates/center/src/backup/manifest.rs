//! What an archive says about itself. The archive is a plain tar:
//! `manifest.json`, `manifest.hmac`, then one `parts/<name>.sealed` per part in the
//! manifest's order. The manifest is readable without the passphrase
//! (`tar -xOf FILE manifest.json`); everything else is sealed (seal.rs).

use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

use super::seal::KdfParams;

pub const FORMAT: &str = "dodvpn-backup/1";
pub const MANIFEST: &str = "manifest.json";
pub const MANIFEST_MAC: &str = "manifest.hmac";
/// A manifest larger than this is not one of ours.
pub const MANIFEST_MAX: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    /// The dodvpn release that wrote the archive.
    pub dodvpn_version: String,
    pub created_ms: i64,
    pub database: DatabaseInfo,
    pub audit: AuditHead,
    pub counts: Counts,
    pub kdf: KdfParams,
    /// HMAC of a fixed label: tells a wrong passphrase from an altered archive.
    pub key_check: String,
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseInfo {
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The newest migration applied (crates/center/migrations).
    pub schema_version: i64,
    /// How the snapshot was taken, e.g. `SQLite 3.46.0 VACUUM INTO` or
    /// `pg_dump (PostgreSQL) 15.18 from server 15.18`.
    pub taken_with: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuditHead {
    pub records: u64,
    pub head_seq: u64,
    pub head_hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    pub organisations: u64,
    pub devices: u64,
    pub grants: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// `database` or `file`.
    pub kind: String,
    /// For a file: its path inside the data directory, e.g. `pki/root.key`.
    /// For the database: `center.db` (SQLite) or `postgres.sql` (pg_dump, plain).
    pub path: String,
    /// Unix permission bits the file had, octal, e.g. `0600` (files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Plaintext size and SHA-256.
    pub size: u64,
    pub sha256: String,
}

pub fn mode_text(mode: u32) -> String {
    format!("{:04o}", mode & 0o777)
}

impl Part {
    pub fn mode_bits(&self) -> Option<u32> {
        self.mode
            .as_deref()
            .and_then(|m| u32::from_str_radix(m, 8).ok())
    }

    /// Its name in the tar and in the key derivation.
    pub fn entry_name(&self) -> String {
        format!("parts/{}/{}.sealed", self.kind, self.path)
    }
}

/// A data-directory path that can be written without leaving the directory:
/// relative, only normal components, no NUL.
pub fn safe_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.contains('\0')
        && Path::new(p)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// A secret by name, so a restore never leaves it readable by others whatever
/// mode the archive recorded.
pub fn is_secret(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.ends_with(".key") || name.ends_with(".token") || name.ends_with(".code")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_directory_are_refused() {
        for bad in ["", "/etc/passwd", "../x", "pki/../../x", "./x", "a\0b"] {
            assert!(!safe_relative(bad), "{bad:?}");
        }
        for good in ["pki/root.key", "admin.token", "messages/m-1.cms"] {
            assert!(safe_relative(good), "{good:?}");
        }
    }
}

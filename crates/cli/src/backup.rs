//! `dodvpn center backup` and `dodvpn center restore` (docs/backup.md): the flags,
//! the passphrase (a file, the environment or a prompt; never a flag value, which
//! every local user could read in /proc) and the operator's output.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use zeroize::Zeroizing;

#[derive(Subcommand)]
pub enum CenterOp {
    /// Write a consistent snapshot of the centre, while it serves, to one archive: the
    /// database (SQLite online copy, or pg_dump for PostgreSQL), the PKI and every other
    /// file of the data directory, sealed under a passphrase (Argon2id + AES-256-GCM),
    /// with a manifest of versions and SHA-256 per part.
    Backup(BackupArgs),
    /// Bring a backup back into a new data directory (and, for a PostgreSQL archive,
    /// an empty database). Refuses a wrong passphrase, an altered archive and an existing
    /// data directory (unless --force), and verifies the audit chain before it finishes.
    Restore(RestoreArgs),
}

#[derive(Args)]
pub struct BackupArgs {
    /// The centre's data directory.
    #[arg(long, env = "DODVPN_DATA", default_value = "./dodvpn-center")]
    data: PathBuf,
    /// The centre's database URL (default: SQLite DATA/center.db).
    #[arg(long, env = "DODVPN_DATABASE_URL")]
    database: Option<String>,
    /// The archive to write (must not exist; written as FILE.partial, then renamed).
    #[arg(long, value_name = "FILE")]
    to: PathBuf,
    #[command(flatten)]
    pass: PassphraseArgs,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// The archive made by `dodvpn center backup`.
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// The data directory to create (must not exist or be empty, unless --force).
    #[arg(long)]
    data: PathBuf,
    /// For a PostgreSQL archive: the empty database to load it into,
    /// postgres://USER@HOST:PORT/DB (never read from the environment, so a restore
    /// cannot land in a database nobody named).
    #[arg(long)]
    database: Option<String>,
    /// Replace an existing data directory (moved aside to DATA.replaced-TIME, not
    /// deleted) and drop the tables of a non-empty PostgreSQL database.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    pass: PassphraseArgs,
}

#[derive(Args)]
struct PassphraseArgs {
    /// File holding the archive's passphrase (or set DODVPN_BACKUP_PASSPHRASE; on a
    /// terminal you are asked).
    #[arg(long, env = "DODVPN_BACKUP_PASSPHRASE_FILE", value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

/// Shorter passphrases are refused for new archives: the archive holds the CA keys.
const MIN_PASSPHRASE: usize = 12;
const PASSPHRASE_ENV: &str = "DODVPN_BACKUP_PASSPHRASE";

impl PassphraseArgs {
    fn read(&self, confirm: bool) -> anyhow::Result<Zeroizing<String>> {
        let pass = if let Some(f) = &self.passphrase_file {
            let s = Zeroizing::new(
                std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read the passphrase file {}", f.display()))?,
            );
            Zeroizing::new(s.trim_end_matches(['\n', '\r']).to_string())
        } else if let Ok(s) = std::env::var(PASSPHRASE_ENV) {
            Zeroizing::new(s)
        } else if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            let first = Zeroizing::new(rpassword::prompt_password("backup passphrase: ")?);
            if confirm {
                let again = Zeroizing::new(rpassword::prompt_password("again: ")?);
                anyhow::ensure!(*first == *again, "the two passphrases differ");
            }
            first
        } else {
            anyhow::bail!(
                "no passphrase: give --passphrase-file FILE, set {PASSPHRASE_ENV}, or run on a terminal to be asked"
            );
        };
        anyhow::ensure!(!pass.is_empty(), "the passphrase is empty");
        if confirm {
            anyhow::ensure!(
                pass.chars().count() >= MIN_PASSPHRASE,
                "the passphrase is shorter than {MIN_PASSPHRASE} characters; the archive holds the centre's CA keys"
            );
        }
        Ok(pass)
    }
}

pub async fn run(op: CenterOp) -> anyhow::Result<()> {
    let mut say = |line: String| eprintln!("{line}");
    match op {
        CenterOp::Backup(a) => {
            let pass = a.pass.read(true)?;
            let opts = dodvpn_center::backup::BackupOptions {
                data_dir: a.data,
                database_url: a.database,
                to: a.to,
            };
            let s = dodvpn_center::backup::backup(&opts, pass.as_bytes(), &mut say).await?;
            let m = &s.manifest;
            println!(
                "backup written: {} ({})\n  database      {} schema {} ({})\n  contents      {} organisations, {} devices, {} grants, {} audit records (head #{})\n  parts         {} (sealed: AES-256-GCM, key from the passphrase by Argon2id)\n  restore with  dodvpn center restore --from {} --data NEW_DIR{}",
                opts.to.display(),
                dodvpn_center::backup::human(s.bytes),
                m.database.backend,
                m.database.schema_version,
                m.database.taken_with,
                m.counts.organisations,
                m.counts.devices,
                m.counts.grants,
                m.audit.records,
                m.audit.head_seq,
                m.parts.len(),
                opts.to.display(),
                if m.database.backend == "postgres" {
                    " --database postgres://…/EMPTY_DB"
                } else {
                    ""
                }
            );
            Ok(())
        }
        CenterOp::Restore(a) => {
            let pass = a.pass.read(false)?;
            let opts = dodvpn_center::backup::RestoreOptions {
                from: a.from,
                data_dir: a.data,
                database_url: a.database,
                force: a.force,
            };
            let s = dodvpn_center::backup::restore(&opts, pass.as_bytes(), &mut say).await?;
            let m = &s.manifest;
            println!(
                "restored into {}\n  files         {} (private keys 0600)\n  database      {} schema {}{}\n  contents      {} organisations, {} devices, {} grants\n  audit chain   intact: {} records verified, head #{}{}\n  start with    dodvpn center --data {}{}",
                opts.data_dir.display(),
                s.files,
                m.database.backend,
                s.schema_after,
                if s.schema_after != m.database.schema_version {
                    format!(" (upgraded from {})", m.database.schema_version)
                } else {
                    String::new()
                },
                m.counts.organisations,
                m.counts.devices,
                m.counts.grants,
                s.audit_checked,
                m.audit.head_seq,
                s.replaced
                    .as_ref()
                    .map(|p| format!("\n  previous data {} (kept)", p.display()))
                    .unwrap_or_default(),
                opts.data_dir.display(),
                opts.database_url
                    .as_deref()
                    .map(|u| format!(" --database {}", dodvpn_center::db::redact_url(u)))
                    .unwrap_or_default()
            );
            Ok(())
        }
    }
}

//! `dodvpn audit check EXPORT`: the auditor's offline check of a bundle
//! (R-AUD-4), without the centre. See dodvpn_audit::bundle for what is checked.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;

use crate::output;

#[derive(Subcommand)]
pub enum AuditTopCmd {
    /// Verify an audit bundle (from `dodvpn admin audit bundle`) offline: the hash
    /// chain, every checkpoint's signature and root, every record's inclusion, the
    /// consistency of all checkpoints, and checkpoints you kept from earlier.
    Check {
        /// The bundle file.
        export: PathBuf,
        /// Only accept this log key (SHA-256 fingerprint, hex, obtained out of band).
        #[arg(long)]
        key_fingerprint: Option<String>,
        /// A checkpoint note kept from earlier (a previous check, a device): the
        /// export must extend it. Repeatable.
        #[arg(long = "known")]
        known: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: AuditTopCmd) -> anyhow::Result<()> {
    let AuditTopCmd::Check {
        export,
        key_fingerprint,
        known,
        json,
    } = cmd;
    let text = std::fs::read_to_string(&export)
        .with_context(|| format!("cannot read {} / ファイルを読めません", export.display()))?;
    let bundle: dodvpn_audit::bundle::Bundle = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{} is not an audit bundle: {e} / 監査バンドルではありません",
            export.display()
        )
    })?;
    let mut kept = Vec::new();
    for k in &known {
        kept.push(
            std::fs::read_to_string(k)
                .with_context(|| format!("cannot read {} / ファイルを読めません", k.display()))?,
        );
    }
    match dodvpn_audit::bundle::check(&bundle, key_fingerprint.as_deref(), &kept) {
        Ok(r) => {
            output::print(
                &json!({
                    "ok": true,
                    "records": r.records,
                    "checkpoints": r.checkpoints,
                    "newest_checkpoint_size": r.newest_size,
                    "inclusion_proofs_verified": r.inclusion_proofs,
                    "consistency_proofs_verified": r.consistency_proofs,
                    "log_key_fingerprint": r.key_fingerprint,
                    "pinned": key_fingerprint.is_some(),
                    "result": "the audit log is complete and consistent with every checkpoint / 監査ログは完全で、すべてのチェックポイントと整合しています",
                }),
                json,
            );
            if key_fingerprint.is_none() {
                eprintln!("note: the log key was not pinned (--key-fingerprint): this shows consistency, not that the centre you trust signed it / 注意: ログ署名鍵が指定されていないため、署名者は確認していません");
            }
            Ok(())
        }
        Err(e) => {
            output::print(
                &json!({"ok": false, "problem": e.code(), "error": e.to_string()}),
                json,
            );
            anyhow::bail!(
                "the audit bundle does not verify / 監査バンドルの検証に失敗しました: {e}"
            )
        }
    }
}

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
    /// consistency of all checkpoints, checkpoints you kept from earlier, and the
    /// RFC 3161 timestamp tokens of checkpoints (with --tsa-ca).
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
        /// The TSA's CA certificate (PEM) you trust: every timestamp token in the
        /// export must carry its checkpoint's hash and be signed by a TSA
        /// certificate (timeStamping EKU) issued under it.
        #[arg(long)]
        tsa_ca: Option<PathBuf>,
        /// Devices' cosignatures that make a checkpoint "witnessed" (default: the
        /// provider's setting recorded in the export, else 1).
        #[arg(long)]
        witnesses: Option<u32>,
        /// Fail unless the newest checkpoint is witnessed.
        #[arg(long)]
        require_witnessed: bool,
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
        tsa_ca,
        witnesses,
        require_witnessed,
        json,
    } = cmd;
    let tsa_ca = match &tsa_ca {
        Some(p) => {
            let pem_text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {} / ファイルを読めません", p.display()))?;
            let der = pem::parse(pem_text.as_bytes()).map_err(|e| {
                anyhow::anyhow!(
                    "{} is not a PEM certificate: {e} / PEM 証明書ではありません",
                    p.display()
                )
            })?;
            Some(der.into_contents())
        }
        None => None,
    };
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
    let opts = dodvpn_audit::bundle::CheckOptions {
        pinned: key_fingerprint.as_deref(),
        known: &kept,
        tsa_ca: tsa_ca.as_deref(),
        witnesses,
    };
    match dodvpn_audit::bundle::check_with(&bundle, &opts) {
        Ok(r) if require_witnessed && r.newest_witnessed != Some(r.newest_size) => {
            output::print(
                &json!({"ok": false, "problem": "not_witnessed",
                    "newest_checkpoint_size": r.newest_size, "newest_witnessed": r.newest_witnessed,
                    "witness_threshold": r.witness_threshold, "cosignatures_verified": r.cosignatures_verified}),
                json,
            );
            anyhow::bail!(
                "the newest checkpoint (size {}) has fewer than {} device cosignature(s) / 最新のチェックポイントは必要な数の装置に連署されていません",
                r.newest_size,
                r.witness_threshold
            )
        }
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
                    "timestamps_verified": r.timestamps_verified,
                    "timestamps_unchecked": r.timestamps_unchecked,
                    "newest_timestamp": r.newest_timestamp.map(|(size, t)| json!({"size": size, "gen_time": t})),
                    "cosignatures_verified": r.cosignatures_verified,
                    "witness_threshold": r.witness_threshold,
                    "witnessed_checkpoints": r.witnessed_checkpoints,
                    "newest_witnessed": r.newest_witnessed,
                    "result": "the audit log is complete and consistent with every checkpoint / 監査ログは完全で、すべてのチェックポイントと整合しています",
                }),
                json,
            );
            if r.timestamps_unchecked > 0 {
                eprintln!("note: {} timestamp token(s) not verified: give the TSA's CA with --tsa-ca / 注意: タイムスタンプは未検証です（--tsa-ca で TSA の CA 証明書を指定してください）", r.timestamps_unchecked);
            }
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

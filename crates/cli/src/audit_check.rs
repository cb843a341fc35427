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
        /// The provider's service CA certificate (PEM, obtained out of band): every
        /// cosignature's key must then be the key of a tier-2 (service) certificate of
        /// the cosigning device issued under it and valid when it cosigned.
        #[arg(long)]
        service_ca: Option<PathBuf>,
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
        service_ca,
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
    let witness_certs = match &service_ca {
        Some(p) => {
            let ca = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {} / ファイルを読めません", p.display()))?;
            match witness_certificates(&bundle, &ca) {
                Ok(n) => Some(n),
                Err(e) => {
                    output::print(
                        &json!({"ok": false, "problem": "witness_certificate", "error": e}),
                        json,
                    );
                    anyhow::bail!(
                        "the audit bundle does not verify / 監査バンドルの検証に失敗しました: {e}"
                    );
                }
            }
        }
        None => None,
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
                    "witness_certificates_verified": witness_certs,
                    "result": "the audit log is complete and consistent with every checkpoint / 監査ログは完全で、すべてのチェックポイントと整合しています",
                }),
                json,
            );
            if r.timestamps_unchecked > 0 {
                eprintln!("note: {} timestamp token(s) not verified: give the TSA's CA with --tsa-ca / 注意: タイムスタンプは未検証です（--tsa-ca で TSA の CA 証明書を指定してください）", r.timestamps_unchecked);
            }
            if witness_certs.is_none() && r.cosignatures_verified > 0 {
                eprintln!("note: the witnesses' certificates were not checked: give the provider's service CA with --service-ca / 注意: 連署した装置の証明書は未検証です（--service-ca でサービス CA 証明書を指定してください）");
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

/// Every cosignature's key is that of the cosigning device's service certificate, issued
/// under `service_ca_pem` and valid when it cosigned. Returns how many were checked.
fn witness_certificates(
    bundle: &dodvpn_audit::bundle::Bundle,
    service_ca_pem: &str,
) -> Result<u64, String> {
    use base64::Engine;
    let mut n = 0;
    for c in &bundle.cosignatures {
        let cos =
            dodvpn_audit::witness::Cosignature::parse_line(&c.line).map_err(|e| e.to_string())?;
        let who = format!("the cosignature of {} at size {}", cos.witness, c.size);
        let pem_text = c.cert_pem.as_deref().ok_or_else(|| {
            format!("{who} carries no certificate (an export from before certificates were included) / 証明書がありません")
        })?;
        let der = pem::parse(pem_text.as_bytes())
            .map_err(|e| {
                format!("{who}: the certificate is not PEM: {e} / 証明書が PEM ではありません")
            })?
            .into_contents();
        let info = dodvpn_pki::validate(
            &der,
            dodvpn_pki::Tier::Service,
            service_ca_pem,
            cos.time_ms.div_euclid(1000),
            &|_| false,
        )
        .map_err(|e| format!("{who}: {e} / 連署した装置の証明書を検証できません"))?;
        let spki = base64::engine::general_purpose::STANDARD
            .decode(&c.public_key)
            .unwrap_or_default();
        if info.public_key_spki_der != spki {
            return Err(format!(
                "{who}: the key is not the certificate's key / 鍵が証明書の鍵と一致しません"
            ));
        }
        if info.id.as_deref() != Some(cos.witness.as_str()) || info.serial != c.cert_serial {
            return Err(format!(
                "{who}: the certificate is of {} (serial {}), not of the cosigning device / 証明書が連署した装置のものではありません",
                info.id.unwrap_or_default(),
                info.serial
            ));
        }
        n += 1;
    }
    Ok(n)
}

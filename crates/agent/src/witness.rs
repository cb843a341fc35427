//! The device as a witness of the centre's audit log (issue 15 step 3, R-AUD-4).
//!
//! On each `audit.checkpoint` event the agent fetches the newest checkpoint with
//! the consistency proof from the one it kept, judges it
//! ([`dodvpn_audit::witness::judge`]), and then either
//! - keeps it (key-store file [`KEPT_FILE`], atomic, 0600) and returns a
//!   cosignature made with its service key, or
//! - says so loudly (error log in English and Japanese, and an alert to the
//!   centre's list), keeps the checkpoint it had, and carries on: tunnels are
//!   not touched by this.
//!
//! Decided here: the centre's log key is pinned at first use (the first
//! checkpoint a device accepts, normally right after enrolment); a checkpoint
//! signed by another key later is an alarm, not a new pin.

use anyhow::Context;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use dodvpn_audit::merkle::Hash;
use dodvpn_audit::note::SignedNote;
use dodvpn_audit::witness::{judge, p256_point, Cosignature, WitnessError};
use dodvpn_pki::{KeyStore, Tier};
use serde::{Deserialize, Serialize};

use crate::client::CenterClient;

/// Key-store file holding the newest checkpoint this device accepted.
pub const KEPT_FILE: &str = "audit-checkpoint.json";

/// What the key store keeps.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Kept {
    pub log_name: String,
    /// The centre's log key (base64 of the uncompressed P-256 point), pinned at first use.
    pub log_public_key: String,
    /// The checkpoint, as the centre signed it.
    pub note: String,
}

impl Kept {
    pub fn load(store: &dyn KeyStore) -> anyhow::Result<Option<Kept>> {
        match store.get_file(KEPT_FILE)? {
            None => Ok(None),
            Some(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| {
                format!("{KEPT_FILE} in the key store is unreadable")
            })?)),
        }
    }

    fn save(&self, store: &dyn KeyStore) -> anyhow::Result<()> {
        store.put_file(KEPT_FILE, &serde_json::to_vec(self)?)?;
        Ok(())
    }
}

#[derive(Deserialize)]
struct WitnessProof {
    log_name: String,
    log_public_key: String,
    note: String,
    proof: Vec<String>,
}

#[derive(Deserialize)]
struct CosignatureResult {
    cosignatures: u64,
    witnessed: bool,
}

/// What one witnessing round came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted, kept and cosigned.
    Cosigned {
        size: u64,
        cosignatures: u64,
        witnessed: bool,
    },
    /// The proof failed: the kept checkpoint stays. `reported` says whether the
    /// centre took the alert.
    Alarm {
        problem: String,
        message_en: String,
        message_ja: String,
        kept_size: u64,
        new_size: u64,
        reported: bool,
    },
}

fn hashes(hex_list: &[String]) -> Option<Vec<Hash>> {
    hex_list
        .iter()
        .map(|h| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(h, &mut out).ok().map(|_| out)
        })
        .collect()
}

/// One round: fetch, judge, keep and cosign, or raise the alarm.
pub async fn witness(
    client: &CenterClient,
    store: &dyn KeyStore,
    device_id: &str,
) -> anyhow::Result<Outcome> {
    let kept = Kept::load(store)?;
    let kept_note = match &kept {
        Some(k) => Some(
            SignedNote::parse(&k.note)
                .with_context(|| format!("the checkpoint kept in {KEPT_FILE} is unreadable"))?,
        ),
        None => None,
    };
    let old = kept_note.as_ref().map_or(0, |n| n.head.size);
    let p: WitnessProof = client
        .get(&format!("/api/v1/device/audit/consistency?old={old}"))
        .await
        .context("cannot fetch the audit consistency proof")?;
    let (log_name, log_key_b64) = match &kept {
        Some(k) => (k.log_name.clone(), k.log_public_key.clone()),
        None => (p.log_name.clone(), p.log_public_key.clone()),
    };
    let log_key = B64
        .decode(&log_key_b64)
        .context("the centre's log key is not base64")?;
    let verdict = SignedNote::parse(&p.note)
        .map_err(WitnessError::from)
        .and_then(|new| {
            let proof = hashes(&p.proof).ok_or(WitnessError::Inconsistent {
                kept: old,
                new: new.head.size,
                source: dodvpn_audit::merkle::ProofError::Malformed,
            })?;
            judge(&log_name, &log_key, kept_note.as_ref(), &new, &proof).map(|()| new)
        });
    match verdict {
        Ok(new) => {
            if kept_note
                .as_ref()
                .is_none_or(|k| new.head.size > k.head.size)
            {
                Kept {
                    log_name,
                    log_public_key: log_key_b64,
                    note: p.note.clone(),
                }
                .save(store)?;
            }
            let spki = store
                .public_key(Tier::Service)?
                .context("the key store has no service key")?;
            let point = p256_point(&spki).context("the service key is not an ECDSA P-256 key")?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            let cos = Cosignature::make(device_id, point, &new, now, |m| {
                store.sign(Tier::Service, m).map_err(|e| e.to_string())
            })
            .map_err(|e| anyhow::anyhow!("cannot cosign the checkpoint: {e}"))?;
            let r: CosignatureResult = client
                .post(
                    "/api/v1/device/audit/cosignatures",
                    &serde_json::json!({"size": new.head.size, "cosignature": cos.to_line()}),
                )
                .await
                .context("the centre did not take the cosignature")?;
            Ok(Outcome::Cosigned {
                size: new.head.size,
                cosignatures: r.cosignatures,
                witnessed: r.witnessed,
            })
        }
        Err(e) => {
            let new_size = SignedNote::parse(&p.note).map_or(0, |n| n.head.size);
            tracing::error!(
                problem = e.code(),
                kept_size = old,
                new_size,
                "AUDIT LOG ALARM: {e} / 監査ログ警報: {}",
                e.message_ja()
            );
            let reported = match &kept {
                Some(k) => client
                    .post::<_, serde_json::Value>(
                        "/api/v1/device/audit/alerts",
                        &serde_json::json!({
                            "kept_note": k.note,
                            "new_note": p.note,
                            "problem": e.code(),
                            "message": format!("{e} / {}", e.message_ja()),
                        }),
                    )
                    .await
                    .map_err(|err| {
                        tracing::error!("the alert did not reach the centre: {err:#} / アラートをセンターに送れませんでした")
                    })
                    .is_ok(),
                None => false,
            };
            Ok(Outcome::Alarm {
                problem: e.code().into(),
                message_en: e.to_string(),
                message_ja: e.message_ja(),
                kept_size: old,
                new_size,
                reported,
            })
        }
    }
}

/// One line for the operator.
pub fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Cosigned {
            size,
            cosignatures,
            witnessed,
        } => format!(
            "audit checkpoint {size} verified and cosigned ({cosignatures} cosignature(s){}) / 監査チェックポイント {size} を検証し連署しました",
            if *witnessed { ", witnessed" } else { "" }
        ),
        Outcome::Alarm {
            problem,
            message_en,
            message_ja,
            kept_size,
            new_size,
            reported,
        } => format!(
            "AUDIT LOG ALARM ({problem}): {message_en} / 監査ログ警報: {message_ja} [kept checkpoint {kept_size}, shown {new_size}; {}] tunnels keep running / トンネルは動作を続けます",
            if *reported { "reported to the centre / センターに報告済み" } else { "NOT reported to the centre / センターに報告できず" }
        ),
    }
}

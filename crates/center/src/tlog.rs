//! The transparency log over the audit records (issue 15, R-AUD-4): the Merkle
//! tree stored beside the records, signed checkpoints, proofs.
//!
//! Decided here:
//! - Tree nodes are written by [`append`] inside the record's own transaction
//!   (db.rs `WriteTx::audit`): the writers' lock (process mutex on SQLite,
//!   advisory lock on PostgreSQL) serialises appends across replicas, so two
//!   centres on one PostgreSQL extend one tree; a crash leaves record and nodes
//!   together or neither.
//! - A database from before the tree gets its nodes built once at start ([`backfill`]).
//! - The signer ([`run`]) signs a checkpoint at most every
//!   `DODVPN_AUDIT_CHECKPOINT_SECS` seconds (default 10, 1–3600) when the tree
//!   grew. A size already signed (by another replica) is left as it is.
//! - With a TSA configured (tsa_client.rs), checkpoint number 1, 1+K, 1+2K, …
//!   is sent to it ([`Signer::timestamp_due`]); the token is verified before it
//!   is stored, and a checkpoint whose stamping failed is tried again next round.
//! - At start the newest stored checkpoint is compared with the tree: fewer
//!   records than it covers, or another root, means records were cut off or
//!   rewritten, and the centre goes read-only as for a broken chain.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use dodvpn_audit::merkle::{self, Hash, NodeId};
use dodvpn_audit::note::{SignedNote, TreeHead, ORIGIN_PREFIX};
use sqlx::{AnyConnection, Row};

use crate::db::{now_ms, Db};
use crate::error::ApiError;

pub const INTERVAL_ENV: &str = "DODVPN_AUDIT_CHECKPOINT_SECS";
/// How many distinct devices must cosign a checkpoint for it to be "witnessed".
pub const WITNESSES_ENV: &str = "DODVPN_AUDIT_WITNESSES";
pub const DEFAULT_WITNESSES: u32 = 1;
/// The event that carries a new checkpoint to every device's stream.
pub const CHECKPOINT_EVENT: &str = "audit.checkpoint";
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// The signer name on the centre's checkpoints.
pub const SIGNER_NAME: &str = "centre";

pub fn interval_from_env() -> Duration {
    std::env::var(INTERVAL_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(DEFAULT_INTERVAL, |s| Duration::from_secs(s.clamp(1, 3600)))
}

/// The witness threshold: `DODVPN_AUDIT_WITNESSES` (1–10000, default 1).
pub fn witnesses_from_env() -> anyhow::Result<u32> {
    match std::env::var(WITNESSES_ENV) {
        Err(_) => Ok(DEFAULT_WITNESSES),
        Ok(v) => match v.trim().parse::<u32>() {
            Ok(n) if (1..=10_000).contains(&n) => Ok(n),
            _ => anyhow::bail!(
                "{WITNESSES_ENV}={v:?}: the number of witnesses must be 1–10000 / 証人の数は 1〜10000 で指定してください"
            ),
        },
    }
}

fn to_hex(h: &Hash) -> String {
    hex::encode(h)
}

fn from_hex(s: &str) -> Option<Hash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

async fn get_node(conn: &mut AnyConnection, id: NodeId) -> Result<Option<Hash>, ApiError> {
    let row = sqlx::query("SELECT hash FROM audit_tree WHERE level = $1 AND idx = $2")
        .bind(id.level as i32)
        .bind(id.index as i64)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.and_then(|r| from_hex(&r.get::<String, _>(0))))
}

async fn fetch(
    conn: &mut AnyConnection,
    ids: &[NodeId],
) -> Result<HashMap<NodeId, Hash>, ApiError> {
    let mut out = HashMap::with_capacity(ids.len());
    for id in ids {
        if let Some(h) = get_node(conn, *id).await? {
            out.insert(*id, h);
        }
    }
    Ok(out)
}

fn tree_err(e: merkle::TreeError) -> ApiError {
    match e {
        merkle::TreeError::MissingNode(_) => ApiError::internal(e.to_string()),
        _ => ApiError::bad_request_code("out_of_range", e.to_string()),
    }
}

/// Store the leaf of record `seq` (whose chain hash is `hash_hex`) and every subtree it completes.
pub async fn append(conn: &mut AnyConnection, seq: u64, hash_hex: &str) -> Result<(), ApiError> {
    let input = merkle::record_leaf_input(hash_hex)
        .ok_or_else(|| ApiError::internal("audit record hash is not 32 bytes of hex"))?;
    let index = seq - 1;
    let known = fetch(conn, &merkle::Append::reads(index)).await?;
    let writes = merkle::Append::writes(
        &mut |id: NodeId| known.get(&id).copied(),
        index,
        merkle::leaf_hash(&input),
    )
    .map_err(tree_err)?;
    for (id, h) in writes {
        sqlx::query("INSERT INTO audit_tree (level, idx, hash) VALUES ($1, $2, $3)")
            .bind(id.level as i32)
            .bind(id.index as i64)
            .bind(to_hex(&h))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Number of leaves in the stored tree.
pub async fn size(conn: &mut AnyConnection) -> Result<u64, ApiError> {
    let n: Option<i64> = sqlx::query("SELECT MAX(idx) FROM audit_tree WHERE level = 0")
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)
        .ok()
        .flatten();
    Ok(n.map_or(0, |n| n as u64 + 1))
}

pub async fn root(conn: &mut AnyConnection, size: u64) -> Result<Hash, ApiError> {
    let ids = merkle::nodes_needed(|n| merkle::root(n, size));
    let map = fetch(conn, &ids).await?;
    merkle::root(&mut |id: NodeId| map.get(&id).copied(), size).map_err(tree_err)
}

pub async fn inclusion(
    conn: &mut AnyConnection,
    seq: u64,
    size: u64,
) -> Result<Vec<Hash>, ApiError> {
    let index = seq.wrapping_sub(1);
    let ids = merkle::nodes_needed(|n| merkle::inclusion_proof(n, index, size));
    let map = fetch(conn, &ids).await?;
    merkle::inclusion_proof(&mut |id: NodeId| map.get(&id).copied(), index, size).map_err(tree_err)
}

pub async fn consistency(
    conn: &mut AnyConnection,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, ApiError> {
    let ids = merkle::nodes_needed(|n| merkle::consistency_proof(n, old, new));
    let map = fetch(conn, &ids).await?;
    merkle::consistency_proof(&mut |id: NodeId| map.get(&id).copied(), old, new).map_err(tree_err)
}

/// Build the nodes of records written before the tree existed (or before this
/// start), in one write transaction.
pub async fn backfill(db: &Db) -> Result<u64, ApiError> {
    let mut tx = db.begin_write().await?;
    let have = size(&mut tx.tx).await?;
    let rows = sqlx::query("SELECT seq, hash FROM audit WHERE seq > $1 ORDER BY seq")
        .bind(have as i64)
        .fetch_all(&mut *tx.tx)
        .await?;
    let mut added = 0;
    for r in rows {
        let seq: i64 = r.get(0);
        if seq as u64 != have + added + 1 {
            // A gap: the chain check names it; do not build a tree over it.
            break;
        }
        append(&mut tx.tx, seq as u64, &r.get::<String, _>(1)).await?;
        added += 1;
    }
    tx.commit().await?;
    Ok(added)
}

/// The centre's checkpoint signer.
pub struct Signer {
    pub key: dodvpn_pki::LogKey,
    pub origin: String,
    pub tsa: Option<crate::tsa_client::TsaConfig>,
    /// Distinct cosigners that make a checkpoint witnessed (the provider's setting).
    pub witnesses: u32,
}

impl Signer {
    pub fn new(key: dodvpn_pki::LogKey) -> Signer {
        let fp = dodvpn_audit::bundle::key_fingerprint(key.public_point());
        Signer {
            origin: format!("{ORIGIN_PREFIX}{}", &fp[..16]),
            key,
            tsa: None,
            witnesses: DEFAULT_WITNESSES,
        }
    }

    pub fn with_witnesses(mut self, n: u32) -> Signer {
        self.witnesses = n.max(1);
        self
    }

    pub fn with_tsa(mut self, tsa: Option<crate::tsa_client::TsaConfig>) -> Signer {
        self.tsa = tsa;
        self
    }

    /// Stamp the checkpoints that are due (every Kth) and have no token yet,
    /// newest first, at most 4 a round. Returns the sizes stamped.
    pub async fn timestamp_due(&self, db: &Db) -> Result<Vec<u64>, ApiError> {
        let Some(tsa) = &self.tsa else {
            return Ok(vec![]);
        };
        let rows = sqlx::query(
            "SELECT c.size, c.note, (SELECT COUNT(*) FROM audit_checkpoints o WHERE o.size <= c.size) \
             FROM audit_checkpoints c WHERE NOT EXISTS (SELECT 1 FROM audit_timestamps t WHERE t.size = c.size) \
             ORDER BY c.size DESC LIMIT 64",
        )
        .fetch_all(&db.pool)
        .await?;
        let mut done = Vec::new();
        for r in rows {
            let (size, note, ordinal): (i64, String, i64) = (r.get(0), r.get(1), r.get(2));
            // Not is_multiple_of: the workspace's rust-version is 1.85.
            #[allow(clippy::manual_is_multiple_of)]
            if (ordinal as u64 - 1) % tsa.every != 0 {
                continue;
            }
            if done.len() == 4 {
                break;
            }
            let note = SignedNote::parse(&note)
                .map_err(|e| ApiError::internal(format!("stored checkpoint unreadable: {e}")))?;
            let imprint = dodvpn_tsp::imprint_of(note.body.as_bytes());
            let nonce: [u8; 8] = rand::random();
            let req = dodvpn_tsp::request(&imprint, nonce)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let resp = crate::tsa_client::post(&tsa.url, req)
                .await
                .map_err(|e| ApiError::internal(format!("RFC 3161 TSA: {e:#}")))?;
            let token = dodvpn_tsp::token_from_response(&resp)
                .map_err(|e| ApiError::internal(format!("RFC 3161 TSA: {e}")))?;
            let v =
                dodvpn_tsp::verify(&token, &imprint, &tsa.ca_der, Some(nonce)).map_err(|e| {
                    ApiError::internal(format!("RFC 3161 TSA token refused ({}): {e}", e.code()))
                })?;
            sqlx::query(
                "INSERT INTO audit_timestamps (size, token, gen_time, tsa) VALUES ($1,$2,$3,$4) ON CONFLICT (size) DO NOTHING",
            )
            .bind(size)
            .bind(base64::engine::general_purpose::STANDARD.encode(&token))
            .bind(v.gen_time as i64)
            .bind(v.tsa_subject)
            .execute(&db.pool)
            .await?;
            done.push(size as u64);
        }
        Ok(done)
    }

    pub fn public_key_b64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.key.public_point())
    }

    /// Sign a checkpoint of the current tree if it grew since the newest one.
    /// Returns the size signed, if any.
    pub async fn checkpoint_now(&self, db: &Db) -> Result<Option<u64>, ApiError> {
        let mut conn = db.pool.acquire().await?;
        let size = size(&mut conn).await?;
        let last = latest(&mut conn).await?.map_or(0, |n| n.head.size);
        if size == 0 || size <= last {
            return Ok(None);
        }
        let root = root(&mut conn, size).await?;
        let head = TreeHead {
            origin: self.origin.clone(),
            size,
            root,
            time_ms: now_ms(),
        };
        let note = SignedNote::sign(head, SIGNER_NAME, self.key.public_point(), |b| {
            self.key.sign(b).map_err(|e| e.to_string())
        })
        .map_err(ApiError::internal)?;
        // Another replica may have signed this size first: keep theirs.
        let done = sqlx::query(
            "INSERT INTO audit_checkpoints (size, root, time_ms, note) VALUES ($1,$2,$3,$4) ON CONFLICT (size) DO NOTHING",
        )
        .bind(size as i64)
        .bind(to_hex(&root))
        .bind(note.head.time_ms)
        .bind(note.to_text())
        .execute(&mut *conn)
        .await?;
        Ok((done.rows_affected() > 0).then_some(size))
    }
}

/// The newest stored checkpoint.
pub async fn latest(conn: &mut AnyConnection) -> Result<Option<SignedNote>, ApiError> {
    let row = sqlx::query("SELECT note FROM audit_checkpoints ORDER BY size DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| {
        SignedNote::parse(&r.get::<String, _>(0))
            .map_err(|e| ApiError::internal(format!("stored checkpoint unreadable: {e}")))
    })
    .transpose()
}

/// Every stored checkpoint note, oldest first.
pub async fn all_notes(db: &Db) -> Result<Vec<String>, ApiError> {
    Ok(
        sqlx::query("SELECT note FROM audit_checkpoints ORDER BY size")
            .fetch_all(&db.pool)
            .await?
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect(),
    )
}

/// Every stored timestamp token, by checkpoint size.
pub async fn all_timestamps(db: &Db) -> Result<Vec<dodvpn_audit::bundle::Timestamp>, ApiError> {
    Ok(
        sqlx::query("SELECT size, token FROM audit_timestamps ORDER BY size")
            .fetch_all(&db.pool)
            .await?
            .iter()
            .map(|r| dodvpn_audit::bundle::Timestamp {
                size: r.get::<i64, _>(0) as u64,
                token: r.get(1),
            })
            .collect(),
    )
}

/// The newest checkpoint must still describe the tree: called at start.
/// `Some(why)` when it does not (records cut off or rewritten).
pub async fn check_against_latest(db: &Db, signer: &Signer) -> Result<Option<String>, ApiError> {
    let mut conn = db.pool.acquire().await?;
    let Some(note) = latest(&mut conn).await? else {
        return Ok(None);
    };
    if note.verify(SIGNER_NAME, signer.key.public_point()).is_err() {
        return Ok(Some(format!(
            "the stored audit checkpoint of size {} is not signed by this centre's log key",
            note.head.size
        )));
    }
    let records: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit")
        .fetch_one(&mut *conn)
        .await?;
    let have = size(&mut conn).await?;
    if (records as u64) < note.head.size || have < note.head.size {
        return Ok(Some(format!(
            "the signed audit checkpoint covers {} records but only {records} are stored: the newest records were cut off",
            note.head.size
        )));
    }
    match root(&mut conn, note.head.size).await {
        Ok(r) if r == note.head.root => Ok(None),
        _ => Ok(Some(format!(
            "the first {} audit records no longer have the root the centre signed: the history was rewritten",
            note.head.size
        ))),
    }
}

/// The event that shows devices a checkpoint (not stored: every stream gets the
/// newest one when it opens and each new one live).
pub fn checkpoint_event(note: &SignedNote) -> crate::hub::Event {
    crate::hub::Event {
        seq: 0,
        kind: CHECKPOINT_EVENT.into(),
        payload: serde_json::json!({"size": note.head.size, "note": note.to_text()}),
    }
}

/// Sign checkpoints every `every` while the centre runs, and show each new one
/// (this replica's or another's) to the devices connected here.
pub async fn run(signer: Arc<Signer>, db: Arc<Db>, hub: Arc<crate::hub::Hub>, every: Duration) {
    let mut pushed = 0u64;
    loop {
        tokio::time::sleep(every).await;
        if db.read_only.get().is_some() {
            continue;
        }
        match signer.checkpoint_now(&db).await {
            Ok(Some(size)) => tracing::debug!(size, "audit checkpoint signed"),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e.message, "audit checkpoint failed"),
        }
        if let Ok(mut conn) = db.pool.acquire().await {
            if let Ok(Some(n)) = latest(&mut conn).await {
                if n.head.size > pushed {
                    pushed = n.head.size;
                    hub.broadcast(&checkpoint_event(&n));
                }
            }
        }
        match signer.timestamp_due(&db).await {
            Ok(v) if !v.is_empty() => tracing::debug!(sizes = ?v, "audit checkpoints timestamped"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e.message, "RFC 3161 timestamp failed; retried next round / タイムスタンプ取得に失敗（次回再試行）")
            }
        }
    }
}

//! dodvpn-audit: the centre's append-only, tamper-evident audit log (R-AUD-1).
//!
//! Every record carries the hash of the record before it, so the log is a hash
//! chain: editing, deleting, inserting or reordering any record breaks a link
//! that [`verify`] reports. The first record links to [`GENESIS`].
//!
//! Decided here:
//! - `hash = SHA-256(encoding)`, lower-case hex, where the encoding is a domain
//!   tag followed by every field length-prefixed (u64 big-endian length, then
//!   bytes): `prev_hash`, `seq` (8 bytes BE), `ts_ms` (8 bytes BE), `actor`,
//!   `action`, `subject`, and `details` as canonical JSON (object keys sorted,
//!   no whitespace). Length prefixes make the encoding unambiguous (no two field
//!   lists encode alike); canonical JSON keeps the hash stable when `details` is
//!   stored as text and read back (key order is not preserved by every store).
//! - `seq` starts at 1 and grows by exactly 1; `ts_ms` never goes backwards
//!   along the chain ([`next`] clamps it), so a later record never claims to be
//!   older than an earlier one.
//! - Export format for auditors (R-AUD-3): JSON Lines, one record per line, in
//!   chain order ([`to_jsonl`] / [`from_jsonl`]).
//!
//! The crate does no I/O; the centre stores the records.

pub mod bundle;
pub mod merkle;
pub mod note;
pub mod witness;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt::Write as _;

/// `prev_hash` of the first record: 64 hex zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Domain tag so a record hash can never be confused with another SHA-256 use.
const HASH_DOMAIN: &[u8] = b"dodvpn-audit-v1\0";

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub seq: u64,
    /// Unix time in milliseconds (UTC), from the centre's synchronised clock.
    pub ts_ms: i64,
    /// Who did it: an operator, an organisation, a device id, or "center".
    pub actor: String,
    /// What happened, e.g. "enrol", "policy.change", "connect.apply", "tunnel.up".
    pub action: String,
    /// What it happened to, e.g. a device id, grant id or session id.
    pub subject: String,
    pub details: serde_json::Value,
    /// Hex SHA-256 of the previous record ([`GENESIS`] for the first).
    pub prev_hash: String,
    /// Hex SHA-256 of this record, see [`record_hash`].
    pub hash: String,
}

impl Record {
    /// The hash this record should carry given its other fields.
    pub fn expected_hash(&self) -> String {
        record_hash(
            &self.prev_hash,
            self.seq,
            self.ts_ms,
            &self.actor,
            &self.action,
            &self.subject,
            &self.details,
        )
    }
}

/// What a successful [`verify`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub count: u64,
    /// Hash of the last record ([`GENESIS`] for an empty chain, or the start
    /// record's hash for an empty segment): the value to anchor (R-AUD-4).
    pub head_hash: String,
    pub first_ts: Option<i64>,
    pub last_ts: Option<i64>,
}

/// Why a chain failed verification. `seq` is the sequence number the broken
/// record claims (or, for [`ChainError::Reordered`], the place it stands at).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("audit record {seq} was altered: its content no longer matches its hash")]
    Edited { seq: u64 },
    #[error("audit records are missing: record {after_seq} is followed by record {found_seq}")]
    Missing { after_seq: u64, found_seq: u64 },
    /// Every record is intact and the hash links still chain them all, but they
    /// are stored in another order (or under other numbers) than they were written.
    #[error("audit records were reordered: record {found} stands where record {at} belongs; every record is intact, only their order or numbering was changed")]
    Reordered { at: u64, found: u64 },
    /// A sequence number that does not grow: a duplicated record, or one moved
    /// back behind a later one with other damage besides.
    #[error("audit record {seq} is out of order (its number is not after the record before it)")]
    OutOfOrder { seq: u64 },
    #[error("audit record {seq} does not link to the record before it (a record was replaced or rewritten)")]
    BadLink { seq: u64 },
    #[error("audit record {seq} has a timestamp earlier than the record before it")]
    TimeWentBackwards { seq: u64 },
    #[error(
        "the audit chain does not start at the genesis record (seq 1 linked to the all-zero hash)"
    )]
    BadGenesis,
    /// The stored row cannot even be read as a record (e.g. its details are not JSON).
    #[error("audit record {seq} cannot be read: {reason}")]
    Unreadable { seq: i64, reason: String },
    /// A record verified earlier (the checkpoint) is gone or was rewritten.
    #[error("audit record {seq} was verified earlier but is now {what}: records were deleted or rewritten, or the database was restored from an older copy")]
    CheckpointLost { seq: u64, what: &'static str },
}

impl ChainError {
    /// Stable machine-readable name of the problem.
    pub fn code(&self) -> &'static str {
        match self {
            ChainError::Edited { .. } => "edited",
            ChainError::Missing { .. } => "missing",
            ChainError::Reordered { .. } => "reordered",
            ChainError::OutOfOrder { .. } => "out_of_order",
            ChainError::BadLink { .. } => "bad_link",
            ChainError::TimeWentBackwards { .. } => "time_went_backwards",
            ChainError::BadGenesis => "bad_genesis",
            ChainError::Unreadable { .. } => "unreadable",
            ChainError::CheckpointLost { .. } => "checkpoint_lost",
        }
    }

    /// Sequence number of the first record found bad (the place where the chain breaks).
    pub fn seq(&self) -> i64 {
        let s = match self {
            ChainError::Edited { seq }
            | ChainError::OutOfOrder { seq }
            | ChainError::BadLink { seq }
            | ChainError::TimeWentBackwards { seq }
            | ChainError::CheckpointLost { seq, .. } => *seq,
            ChainError::Missing { found_seq, .. } => *found_seq,
            ChainError::Reordered { at, .. } => *at,
            ChainError::BadGenesis => 1,
            ChainError::Unreadable { seq, .. } => return *seq,
        };
        i64::try_from(s).unwrap_or(i64::MAX)
    }
}

/// A record as a database row holds it: `details` as text, `seq` as a signed
/// integer. Reading it can fail; [`verify_stored`] names the row that does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub seq: i64,
    pub ts_ms: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

impl StoredRecord {
    pub fn parse(&self) -> Result<Record, ChainError> {
        let unreadable = |reason: String| ChainError::Unreadable {
            seq: self.seq,
            reason,
        };
        let seq = u64::try_from(self.seq)
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| unreadable("its sequence number is not positive".into()))?;
        let details = serde_json::from_str(&self.details)
            .map_err(|e| unreadable(format!("its details are not JSON ({e})")))?;
        Ok(Record {
            seq,
            ts_ms: self.ts_ms,
            actor: self.actor.clone(),
            action: self.action.clone(),
            subject: self.subject.clone(),
            details,
            prev_hash: self.prev_hash.clone(),
            hash: self.hash.clone(),
        })
    }

    /// For display and export: unreadable details become a JSON string holding the
    /// stored text (so the record shows, and fails verification, instead of vanishing).
    pub fn lossy(&self) -> Record {
        self.parse().unwrap_or_else(|_| Record {
            seq: u64::try_from(self.seq).unwrap_or(0),
            ts_ms: self.ts_ms,
            actor: self.actor.clone(),
            action: self.action.clone(),
            subject: self.subject.clone(),
            details: serde_json::from_str(&self.details)
                .unwrap_or_else(|_| serde_json::Value::String(self.details.clone())),
            prev_hash: self.prev_hash.clone(),
            hash: self.hash.clone(),
        })
    }
}

/// A point up to which the chain was verified: the last good record's number and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: String,
}

/// Verify stored rows. With `checkpoint = None`, `rows` is the whole chain from
/// genesis. With a checkpoint at seq N > 0, `rows` are the rows with seq >= N in
/// seq order: the first must be the checkpoint record itself, unchanged, and the
/// rest must continue it. The first unreadable row is reported as
/// [`ChainError::Unreadable`] unless an earlier row already fails.
pub fn verify_stored(
    checkpoint: Option<&Checkpoint>,
    rows: &[StoredRecord],
) -> Result<Summary, ChainError> {
    let mut recs = Vec::with_capacity(rows.len());
    let mut unreadable = None;
    for row in rows {
        match row.parse() {
            Ok(r) => recs.push(r),
            Err(e) => {
                unreadable = Some(e);
                break;
            }
        }
    }
    let summary = match checkpoint.filter(|cp| cp.seq > 0) {
        None => verify(&recs),
        Some(cp) => {
            let lost = |what| ChainError::CheckpointLost { seq: cp.seq, what };
            let first = match (recs.first(), rows.first()) {
                (Some(r), _) if r.seq == cp.seq => r,
                // The checkpoint row itself is unreadable.
                (None, Some(row)) if row.seq == cp.seq as i64 => return Err(lost("unreadable")),
                _ => return Err(lost("missing")),
            };
            if first.hash != cp.hash || first.expected_hash() != first.hash {
                return Err(lost("altered"));
            }
            verify_from(Some(first), &recs[1..]).map(|mut s| {
                // Count the rows looked at, checkpoint record included.
                s.count += 1;
                s.first_ts.get_or_insert(first.ts_ms);
                s.last_ts.get_or_insert(first.ts_ms);
                s
            })
        }
    }?;
    match unreadable {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

/// A line of a JSON Lines export that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit export line {line}: {message}")]
pub struct JsonlError {
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

/// SHA-256 (lower-case hex) over the unambiguous encoding described in the
/// crate docs.
pub fn record_hash(
    prev_hash: &str,
    seq: u64,
    ts_ms: i64,
    actor: &str,
    action: &str,
    subject: &str,
    details: &serde_json::Value,
) -> String {
    let mut h = Sha256::new();
    h.update(HASH_DOMAIN);
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    field(prev_hash.as_bytes());
    field(&seq.to_be_bytes());
    field(&ts_ms.to_be_bytes());
    field(actor.as_bytes());
    field(action.as_bytes());
    field(subject.as_bytes());
    field(canonical_json(details).as_bytes());
    hex::encode(h.finalize())
}

/// JSON text with object keys sorted and no whitespace. Written by hand rather
/// than relying on `serde_json::Map` ordering, which a feature flag elsewhere
/// in the build (`preserve_order`) could change.
pub fn canonical_json(v: &serde_json::Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(k, out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The record that follows `prev` (or the first record when `prev` is None).
/// `ts_ms` is raised to `prev.ts_ms` if the clock stepped back, so time never
/// goes backwards in the chain.
pub fn next(
    prev: Option<&Record>,
    ts_ms: i64,
    actor: &str,
    action: &str,
    subject: &str,
    details: serde_json::Value,
) -> Record {
    let (seq, prev_hash, ts_ms) = match prev {
        // saturating: 2^64 records will not happen; never panic on the write path.
        Some(p) => (p.seq.saturating_add(1), p.hash.clone(), ts_ms.max(p.ts_ms)),
        None => (1, GENESIS.to_string(), ts_ms),
    };
    let hash = record_hash(&prev_hash, seq, ts_ms, actor, action, subject, &details);
    Record {
        seq,
        ts_ms,
        actor: actor.to_string(),
        action: action.to_string(),
        subject: subject.to_string(),
        details,
        prev_hash,
        hash,
    }
}

/// Verify a whole chain, which must start at the genesis record.
pub fn verify<'a>(records: impl IntoIterator<Item = &'a Record>) -> Result<Summary, ChainError> {
    verify_from(None, records)
}

/// Verify `records` as the continuation of `start`, a record already trusted
/// (verified earlier, or anchored). With `start = None` this is [`verify`].
/// Lets the centre verify incrementally and an auditor check an exported range.
pub fn verify_from<'a>(
    start: Option<&Record>,
    records: impl IntoIterator<Item = &'a Record>,
) -> Result<Summary, ChainError> {
    let records: Vec<&Record> = records.into_iter().collect();
    check_links(start, &records).map_err(|e| written_order(start, &records).unwrap_or(e))
}

/// The checks of [`verify_from`], record by record in the order given.
fn check_links(start: Option<&Record>, records: &[&Record]) -> Result<Summary, ChainError> {
    // (seq, hash, ts) of the last good record; genesis is "seq 0".
    let mut prev: Option<(u64, String, i64)> = start.map(|r| (r.seq, r.hash.clone(), r.ts_ms));
    let mut count = 0u64;
    let mut first_ts = None;
    for r in records {
        if r.expected_hash() != r.hash {
            return Err(ChainError::Edited { seq: r.seq });
        }
        match &prev {
            None => {
                if r.seq > 1 {
                    return Err(ChainError::Missing {
                        after_seq: 0,
                        found_seq: r.seq,
                    });
                }
                if r.seq == 0 || r.prev_hash != GENESIS {
                    return Err(ChainError::BadGenesis);
                }
            }
            Some((pseq, phash, pts)) => {
                let expected = pseq.saturating_add(1);
                if r.seq <= *pseq {
                    return Err(ChainError::OutOfOrder { seq: r.seq });
                }
                if r.seq > expected {
                    return Err(ChainError::Missing {
                        after_seq: *pseq,
                        found_seq: r.seq,
                    });
                }
                if &r.prev_hash != phash {
                    return Err(ChainError::BadLink { seq: r.seq });
                }
                if r.ts_ms < *pts {
                    return Err(ChainError::TimeWentBackwards { seq: r.seq });
                }
            }
        }
        first_ts.get_or_insert(r.ts_ms);
        count += 1;
        prev = Some((r.seq, r.hash.clone(), r.ts_ms));
    }
    let (head_hash, last_ts) = match prev {
        Some((_, hash, ts)) => (hash, (count > 0).then_some(ts)),
        None => (GENESIS.to_string(), None),
    };
    Ok(Summary {
        count,
        head_hash,
        first_ts,
        last_ts,
    })
}

/// Explain a failure as a reordering if it is one: rebuild the order the records
/// were written in by following their hash links from `start` (or genesis). If
/// that reaches every record, each intact at its written position and in time
/// order, the only damage is the order (or the numbers) they are stored in.
fn written_order(start: Option<&Record>, records: &[&Record]) -> Option<ChainError> {
    let mut by_prev: HashMap<&str, &Record> = HashMap::with_capacity(records.len());
    for r in records {
        if by_prev.insert(r.prev_hash.as_str(), r).is_some() {
            // Two records claim the same predecessor: a duplicate or a fork.
            return None;
        }
    }
    let base = start.map_or(0, |s| s.seq);
    let (mut hash, mut ts) = match start {
        Some(s) => (s.hash.as_str(), s.ts_ms),
        None => (GENESIS, i64::MIN),
    };
    let mut written: HashMap<&str, u64> = HashMap::with_capacity(records.len());
    for pos in 1..=records.len() as u64 {
        let r = by_prev.get(hash)?;
        let seq = base.checked_add(pos)?;
        let h = record_hash(
            &r.prev_hash,
            seq,
            r.ts_ms,
            &r.actor,
            &r.action,
            &r.subject,
            &r.details,
        );
        if h != r.hash || r.ts_ms < ts {
            return None;
        }
        written.insert(r.hash.as_str(), seq);
        hash = r.hash.as_str();
        ts = r.ts_ms;
    }
    if written.len() != records.len() {
        return None;
    }
    records.iter().enumerate().find_map(|(i, r)| {
        let at = base + 1 + i as u64;
        let found = written[r.hash.as_str()];
        (found != at || r.seq != at).then_some(ChainError::Reordered { at, found })
    })
}

/// Check an excerpt of a chain (e.g. one organisation's records): each record
/// is intact, numbers grow, and records that are neighbours in the chain link.
/// Returns how many records were checked. Gaps are expected and not reported;
/// that the excerpt belongs to the whole chain is shown by the centre's verify.
pub fn verify_excerpt<'a>(
    records: impl IntoIterator<Item = &'a Record>,
) -> Result<u64, ChainError> {
    let mut prev: Option<&Record> = None;
    let mut count = 0;
    for r in records {
        if r.expected_hash() != r.hash {
            return Err(ChainError::Edited { seq: r.seq });
        }
        if let Some(p) = prev {
            if r.seq <= p.seq {
                return Err(ChainError::OutOfOrder { seq: r.seq });
            }
            if r.seq == p.seq + 1 && r.prev_hash != p.hash {
                return Err(ChainError::BadLink { seq: r.seq });
            }
            if r.ts_ms < p.ts_ms {
                return Err(ChainError::TimeWentBackwards { seq: r.seq });
            }
        } else if r.seq == 1 && r.prev_hash != GENESIS {
            return Err(ChainError::BadGenesis);
        }
        count += 1;
        prev = Some(r);
    }
    Ok(count)
}

/// JSON Lines export: one record per line, each line ending in `\n`.
pub fn to_jsonl<'a>(records: impl IntoIterator<Item = &'a Record>) -> String {
    let mut out = String::new();
    for r in records {
        // A Record is plain strings, numbers and a JSON value: serialising it
        // to a String cannot fail.
        if let Ok(line) = serde_json::to_string(r) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// Read a JSON Lines export. Blank lines are skipped; an unreadable line is
/// reported with its 1-based number. Does not verify the chain: call [`verify`].
pub fn from_jsonl(text: &str) -> Result<Vec<Record>, JsonlError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let rec: Record = serde_json::from_str(line).map_err(|e| JsonlError {
            line: i + 1,
            message: e.to_string(),
        })?;
        out.push(rec);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(n: usize) -> Vec<Record> {
        let mut v: Vec<Record> = Vec::new();
        for i in 0..n {
            let r = next(
                v.last(),
                1_700_000_000_000 + i as i64 * 1000,
                "center",
                "connect.apply",
                &format!("grant-{i}"),
                json!({"applicant": "dev-a", "target": "dev-b", "n": i}),
            );
            v.push(r);
        }
        v
    }

    #[test]
    fn good_chain_verifies() {
        let c = chain(5);
        let s = verify(&c).unwrap();
        assert_eq!(s.count, 5);
        assert_eq!(s.head_hash, c[4].hash);
        assert_eq!(s.first_ts, Some(1_700_000_000_000));
        assert_eq!(s.last_ts, Some(1_700_000_004_000));
        assert_eq!(c[0].prev_hash, GENESIS);
        assert_eq!(c[0].seq, 1);
        assert_eq!(c[4].seq, 5);
    }

    #[test]
    fn empty_chain_verifies() {
        let s = verify(&[]).unwrap();
        assert_eq!(s.count, 0);
        assert_eq!(s.head_hash, GENESIS);
        assert_eq!(s.first_ts, None);
    }

    #[test]
    fn genesis_is_64_zeros() {
        assert_eq!(GENESIS.len(), 64);
        assert!(GENESIS.bytes().all(|b| b == b'0'));
    }

    #[test]
    fn next_never_moves_time_backwards() {
        let a = next(None, 5000, "x", "y", "z", json!(null));
        let b = next(Some(&a), 1000, "x", "y", "z", json!(null));
        assert_eq!(b.ts_ms, 5000);
        assert!(verify([&a, &b]).is_ok());
    }

    #[test]
    fn hash_is_stable_across_key_order() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b":1,"a":{"y":2,"x":[1,"s"]}}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{"a":{"x":[1,"s"],"y":2},"b":1}"#).unwrap();
        assert_eq!(
            record_hash(GENESIS, 1, 0, "a", "b", "c", &a),
            record_hash(GENESIS, 1, 0, "a", "b", "c", &b)
        );
        assert_eq!(canonical_json(&a), r#"{"a":{"x":[1,"s"],"y":2},"b":1}"#);
    }

    #[test]
    fn canonical_json_matches_serde_for_strings() {
        let v = json!({"k": "quote\" back\\ nl\n ctl\u{1} é"});
        let canon = canonical_json(&v);
        let back: serde_json::Value = serde_json::from_str(&canon).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn encoding_is_unambiguous() {
        // Moving a byte between adjacent fields must change the hash.
        let d = json!(null);
        assert_ne!(
            record_hash(GENESIS, 1, 0, "ab", "c", "", &d),
            record_hash(GENESIS, 1, 0, "a", "bc", "", &d)
        );
    }

    #[test]
    fn hash_survives_db_round_trip() {
        let c = chain(3);
        // As the centre stores it: details as JSON text, read back.
        let back: Vec<Record> = c
            .iter()
            .map(|r| {
                let text = r.details.to_string();
                Record {
                    details: serde_json::from_str(&text).unwrap(),
                    ..r.clone()
                }
            })
            .collect();
        assert!(verify(&back).is_ok());
    }

    #[test]
    fn edited_field_detected() {
        let mut c = chain(4);
        c[2].actor = "mallory".into();
        assert_eq!(verify(&c), Err(ChainError::Edited { seq: 3 }));

        let mut c = chain(4);
        c[1].details = json!({"applicant": "dev-x"});
        assert_eq!(verify(&c), Err(ChainError::Edited { seq: 2 }));
    }

    #[test]
    fn modified_timestamp_detected() {
        let mut c = chain(4);
        c[2].ts_ms += 1;
        assert_eq!(verify(&c), Err(ChainError::Edited { seq: 3 }));
    }

    #[test]
    fn modified_timestamp_with_rehash_breaks_next_link() {
        let mut c = chain(4);
        c[2].ts_ms += 1;
        c[2].hash = c[2].expected_hash();
        assert_eq!(verify(&c), Err(ChainError::BadLink { seq: 4 }));
    }

    #[test]
    fn backwards_time_detected_even_if_rehashed_whole_chain() {
        // An attacker who rewrites the whole tail still cannot make time go back.
        let mut c = chain(3);
        c[1].ts_ms = c[0].ts_ms - 1;
        c[1].hash = c[1].expected_hash();
        c[2].prev_hash = c[1].hash.clone();
        c[2].hash = c[2].expected_hash();
        assert_eq!(verify(&c), Err(ChainError::TimeWentBackwards { seq: 2 }));
    }

    #[test]
    fn removed_record_detected() {
        let mut c = chain(5);
        c.remove(2);
        assert_eq!(
            verify(&c),
            Err(ChainError::Missing {
                after_seq: 2,
                found_seq: 4
            })
        );
    }

    #[test]
    fn removed_first_record_detected() {
        let mut c = chain(3);
        c.remove(0);
        assert_eq!(
            verify(&c),
            Err(ChainError::Missing {
                after_seq: 0,
                found_seq: 2
            })
        );
    }

    #[test]
    fn removed_record_with_renumbering_and_local_rehash_detected() {
        // Delete record 3, renumber the next one to 3 and recompute only its
        // hash: its prev_hash still names the deleted record, so the link fails.
        let mut c = chain(5);
        c.remove(2);
        c[2].seq = 3;
        c[2].hash = c[2].expected_hash();
        assert_eq!(verify(&c), Err(ChainError::BadLink { seq: 3 }));
    }

    #[test]
    fn removed_record_with_repaired_link_breaks_the_following_link() {
        // Delete record 3, then "repair" record 4 (renumber, relink to record
        // 2, rehash). The next record still carries seq 5 and points at
        // record 4's old hash.
        let mut c = chain(5);
        c.remove(2);
        c[2].seq = 3;
        c[2].prev_hash = c[1].hash.clone();
        c[2].hash = c[2].expected_hash();
        assert_eq!(
            verify(&c),
            Err(ChainError::Missing {
                after_seq: 3,
                found_seq: 5
            })
        );
        // Renumbering that one too still leaves its prev_hash dangling.
        c[3].seq = 4;
        c[3].hash = c[3].expected_hash();
        assert_eq!(verify(&c), Err(ChainError::BadLink { seq: 4 }));
    }

    #[test]
    fn reordered_records_detected() {
        // Two neighbours swap places in an export (numbers kept).
        let mut c = chain(5);
        c.swap(1, 2);
        assert_eq!(verify(&c), Err(ChainError::Reordered { at: 2, found: 3 }));
        let mut c = chain(5);
        c.swap(3, 4);
        assert_eq!(verify(&c), Err(ChainError::Reordered { at: 4, found: 5 }));
        // A record moved back behind later ones.
        let mut c = chain(5);
        let r = c.remove(1);
        c.insert(3, r);
        assert_eq!(verify(&c), Err(ChainError::Reordered { at: 2, found: 3 }));
        // In a database the rows swap their numbers: the content is intact.
        let mut c = chain(5);
        c.swap(2, 3);
        (c[2].seq, c[3].seq) = (3, 4);
        assert_eq!(verify(&c), Err(ChainError::Reordered { at: 3, found: 4 }));
        // A segment after a trusted record.
        let mut c = chain(6);
        c.swap(4, 5);
        assert_eq!(
            verify_from(Some(&c[2]), &c[3..]),
            Err(ChainError::Reordered { at: 5, found: 6 })
        );
    }

    #[test]
    fn reordering_with_other_damage_reports_the_damage() {
        // Swapped and one of them edited: not a pure reordering.
        let mut c = chain(5);
        c.swap(1, 2);
        c[1].actor = "mallory".into();
        assert_eq!(verify(&c), Err(ChainError::Edited { seq: 3 }));
        // A duplicated record is out of order, not a reordering.
        let mut c = chain(3);
        c.push(c[1].clone());
        assert_eq!(verify(&c), Err(ChainError::OutOfOrder { seq: 2 }));
        // A swap that also makes time go backwards is not "only reordered".
        let mut c = chain(3);
        c[2].ts_ms = c[1].ts_ms;
        c[2].hash = c[2].expected_hash();
        c.swap(1, 2);
        assert!(verify(&c).is_err());
    }

    fn stored(r: &Record) -> StoredRecord {
        StoredRecord {
            seq: r.seq as i64,
            ts_ms: r.ts_ms,
            actor: r.actor.clone(),
            action: r.action.clone(),
            subject: r.subject.clone(),
            details: r.details.to_string(),
            prev_hash: r.prev_hash.clone(),
            hash: r.hash.clone(),
        }
    }

    #[test]
    fn unreadable_row_is_named() {
        let c = chain(4);
        let mut rows: Vec<StoredRecord> = c.iter().map(stored).collect();
        assert_eq!(verify_stored(None, &rows).unwrap().count, 4);
        rows[2].details = "{not json".into();
        let err = verify_stored(None, &rows).unwrap_err();
        assert!(
            matches!(err, ChainError::Unreadable { seq: 3, .. }),
            "{err:?}"
        );
        assert_eq!(err.seq(), 3);
        assert_eq!(err.code(), "unreadable");
        assert!(err
            .to_string()
            .starts_with("audit record 3 cannot be read: its details are not JSON"));
        // An earlier break is the first bad record.
        rows[1].actor = "mallory".into();
        assert_eq!(
            verify_stored(None, &rows),
            Err(ChainError::Edited { seq: 2 })
        );
        // Shown as text, never dropped.
        assert_eq!(rows[2].lossy().details, serde_json::json!("{not json"));
        let mut neg = stored(&c[0]);
        neg.seq = -5;
        assert!(matches!(
            neg.parse(),
            Err(ChainError::Unreadable { seq: -5, .. })
        ));
    }

    #[test]
    fn checkpoint_continues_or_is_lost() {
        let c = chain(6);
        let rows: Vec<StoredRecord> = c.iter().map(stored).collect();
        let cp = Checkpoint {
            seq: 3,
            hash: c[2].hash.clone(),
        };
        let s = verify_stored(Some(&cp), &rows[2..]).unwrap();
        assert_eq!((s.count, s.head_hash.as_str()), (4, c[5].hash.as_str()));
        // Nothing new since the checkpoint.
        let last = Checkpoint {
            seq: 6,
            hash: c[5].hash.clone(),
        };
        assert_eq!(
            verify_stored(Some(&last), &rows[5..]).unwrap().head_hash,
            c[5].hash
        );
        // Checkpoint record gone (truncated, or an older database).
        assert_eq!(
            verify_stored(Some(&last), &rows[..0]),
            Err(ChainError::CheckpointLost {
                seq: 6,
                what: "missing"
            })
        );
        assert_eq!(
            verify_stored(Some(&cp), &rows[3..]),
            Err(ChainError::CheckpointLost {
                seq: 3,
                what: "missing"
            })
        );
        // Checkpoint record rewritten.
        let mut bad = rows.clone();
        bad[2].actor = "mallory".into();
        assert_eq!(
            verify_stored(Some(&cp), &bad[2..]),
            Err(ChainError::CheckpointLost {
                seq: 3,
                what: "altered"
            })
        );
        // A break after the checkpoint is named.
        let mut bad = rows.clone();
        bad[4].details = "[".into();
        assert!(matches!(
            verify_stored(Some(&cp), &bad[2..]),
            Err(ChainError::Unreadable { seq: 5, .. })
        ));
        // A checkpoint at 0 is genesis.
        let zero = Checkpoint {
            seq: 0,
            hash: GENESIS.into(),
        };
        assert_eq!(verify_stored(Some(&zero), &rows).unwrap().count, 6);
    }

    #[test]
    fn excerpt_checks_each_record_and_neighbour_links() {
        let c = chain(6);
        let ex = [c[0].clone(), c[2].clone(), c[3].clone(), c[5].clone()];
        assert_eq!(verify_excerpt(&ex), Ok(4));
        assert!(verify(&ex).is_err(), "an excerpt is not a whole chain");
        let mut bad = ex.clone();
        bad[1].subject = "other".into();
        assert_eq!(verify_excerpt(&bad), Err(ChainError::Edited { seq: 3 }));
        let bad = [c[3].clone(), c[2].clone()];
        assert_eq!(verify_excerpt(&bad), Err(ChainError::OutOfOrder { seq: 3 }));
    }

    #[test]
    fn bad_genesis_detected() {
        let mut c = chain(2);
        c[0].prev_hash = "ff".repeat(32);
        c[0].hash = c[0].expected_hash();
        assert_eq!(verify(&c), Err(ChainError::BadGenesis));
    }

    #[test]
    fn replaced_hash_field_detected() {
        let mut c = chain(3);
        c[1].hash = GENESIS.into();
        assert_eq!(verify(&c), Err(ChainError::Edited { seq: 2 }));
    }

    #[test]
    fn verify_from_checks_a_segment() {
        let c = chain(6);
        let s = verify_from(Some(&c[2]), &c[3..]).unwrap();
        assert_eq!(s.count, 3);
        assert_eq!(s.head_hash, c[5].hash);
        assert_eq!(
            verify_from(Some(&c[1]), &c[3..]),
            Err(ChainError::Missing {
                after_seq: 2,
                found_seq: 4
            })
        );
        // Empty segment: head stays at the start record.
        assert_eq!(verify_from(Some(&c[5]), &[]).unwrap().head_hash, c[5].hash);
    }

    #[test]
    fn jsonl_round_trip() {
        let c = chain(4);
        let text = to_jsonl(&c);
        assert_eq!(text.lines().count(), 4);
        let back = from_jsonl(&text).unwrap();
        assert_eq!(back, c);
        assert!(verify(&back).is_ok());
    }

    #[test]
    fn jsonl_errors_carry_line_numbers() {
        let c = chain(3);
        let mut text = to_jsonl(&c);
        text.push_str("\n{not json}\n");
        let err = from_jsonl(&text).unwrap_err();
        assert_eq!(err.line, 5);
        assert!(err.to_string().starts_with("audit export line 5:"));
        let err = from_jsonl(r#"{"seq":1}"#).unwrap_err();
        assert_eq!(err.line, 1);
        let mut line: serde_json::Value = serde_json::to_value(&c[0]).unwrap();
        line["extra"] = json!(1);
        assert!(
            from_jsonl(&line.to_string()).is_err(),
            "unknown fields are rejected"
        );
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            ChainError::Missing {
                after_seq: 2,
                found_seq: 4
            }
            .to_string(),
            "audit records are missing: record 2 is followed by record 4"
        );
    }
}

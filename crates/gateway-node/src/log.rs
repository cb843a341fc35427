//! The request log (TR C 4-8-1: logs per user and device). One JSON line per request,
//! appended to one file per UTC day (`requests-YYYY-MM-DD.jsonl`, opened append-only;
//! a new day starts a new file, and files older than the retention are removed).
//!
//! The file is also the outbox: the sender reads it from the offset the centre has
//! taken (`.sent` beside it), so a restart or an absent centre loses nothing. A
//! finished day's file is hashed and the digest handed to the centre for the audit
//! chain (`.digest` beside it once accepted): editing a line later is detectable.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use dodvpn_gateway::feed::{LogDigest, LogRecord};

/// Most records one batch carries to the centre.
pub const BATCH: usize = 500;

/// `YYYY-MM-DD` of a UTC instant (ms since the epoch), by the civil-from-days algorithm.
pub fn utc_day(ms: i64) -> String {
    let z = ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

struct Current {
    day: String,
    file: File,
}

pub struct RequestLog {
    dir: PathBuf,
    keep_days: u32,
    current: Mutex<Option<Current>>,
}

fn day_file(dir: &Path, day: &str) -> PathBuf {
    dir.join(format!("requests-{day}.jsonl"))
}

fn side_file(dir: &Path, day: &str, ext: &str) -> PathBuf {
    dir.join(format!("requests-{day}.{ext}"))
}

impl RequestLog {
    pub fn open(dir: &Path, keep_days: u32) -> anyhow::Result<RequestLog> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the log directory {}", dir.display()))?;
        Ok(RequestLog {
            dir: dir.to_path_buf(),
            keep_days,
            current: Mutex::new(None),
        })
    }

    /// Append one record to today's file (rotating at midnight UTC).
    pub fn append(&self, r: &LogRecord) -> anyhow::Result<()> {
        let day = utc_day(r.at_ms);
        let mut line = serde_json::to_vec(r)?;
        line.push(b'\n');
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if cur.as_ref().map(|c| c.day != day).unwrap_or(true) {
            if let Some(old) = cur.take() {
                let _ = old.file.sync_all();
            }
            let path = day_file(&self.dir, &day);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("cannot open the request log {}", path.display()))?;
            *cur = Some(Current { day, file });
            drop(cur);
            self.prune(r.at_ms);
            cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        }
        let c = cur.as_mut().context("request log not open")?;
        // One write call per line: with O_APPEND a line is never interleaved.
        c.file
            .write_all(&line)
            .context("cannot write the request log")?;
        Ok(())
    }

    /// Days with a log file, oldest first.
    pub fn days(&self) -> Vec<String> {
        let mut days: Vec<String> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_prefix("requests-")?
                    .strip_suffix(".jsonl")
                    .map(str::to_string)
            })
            .collect();
        days.sort();
        days
    }

    /// Remove the files of days past the retention (digested or not: the digest is
    /// already in the centre's chain, and the records in the centre).
    fn prune(&self, now_ms: i64) {
        let oldest = utc_day(now_ms - i64::from(self.keep_days) * 86_400_000);
        for d in self.days().into_iter().filter(|d| *d < oldest) {
            for p in [
                day_file(&self.dir, &d),
                side_file(&self.dir, &d, "sent"),
                side_file(&self.dir, &d, "digest"),
            ] {
                let _ = fs::remove_file(p);
            }
        }
    }

    fn sent_offset(&self, day: &str) -> u64 {
        fs::read_to_string(side_file(&self.dir, day, "sent"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The next records the centre has not taken: (day, records, offset after them).
    pub fn unsent(&self) -> anyhow::Result<Option<(String, Vec<LogRecord>, u64)>> {
        for day in self.days() {
            let path = day_file(&self.dir, &day);
            let len = fs::metadata(&path)?.len();
            let from = self.sent_offset(&day);
            if from >= len {
                continue;
            }
            let mut f = File::open(&path)?;
            f.seek(SeekFrom::Start(from))?;
            let mut rd = BufReader::new(f);
            let mut out = Vec::new();
            let mut at = from;
            let mut line = Vec::new();
            while out.len() < BATCH {
                line.clear();
                let n = rd.read_until(b'\n', &mut line)?;
                if n == 0 || line.last() != Some(&b'\n') {
                    break; // end, or a line still being written
                }
                at += n as u64;
                match serde_json::from_slice(&line) {
                    Ok(r) => out.push(r),
                    Err(e) => tracing::warn!(day, offset = at, "unreadable request log line: {e}"),
                }
            }
            if at > from {
                return Ok(Some((day, out, at)));
            }
        }
        Ok(None)
    }

    pub fn mark_sent(&self, day: &str, offset: u64) -> anyhow::Result<()> {
        let p = side_file(&self.dir, day, "sent");
        let tmp = p.with_extension("sent.tmp");
        fs::write(&tmp, offset.to_string())?;
        fs::rename(tmp, p)?;
        Ok(())
    }

    /// Finished days (before `today`) whose digest the centre has not accepted yet,
    /// with every record sent.
    pub fn digests_due(&self, today: &str) -> anyhow::Result<Vec<LogDigest>> {
        let mut out = Vec::new();
        for day in self.days().into_iter().filter(|d| d.as_str() < today) {
            if side_file(&self.dir, &day, "digest").exists() {
                continue;
            }
            let path = day_file(&self.dir, &day);
            if self.sent_offset(&day) < fs::metadata(&path)?.len() {
                continue;
            }
            out.push(digest_of(&path, &day)?);
        }
        Ok(out)
    }

    pub fn mark_digested(&self, d: &LogDigest) -> anyhow::Result<()> {
        fs::write(
            side_file(&self.dir, &d.day, "digest"),
            serde_json::to_vec(d)?,
        )?;
        Ok(())
    }
}

/// SHA-256 and line count of one day's file exactly as written.
pub fn digest_of(path: &Path, day: &str) -> anyhow::Result<LogDigest> {
    let mut f = File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    let mut records = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        records += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
        ctx.update(&buf[..n]);
    }
    Ok(LogDigest {
        day: day.to_string(),
        records,
        sha256: hex::encode(ctx.finish()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dodvpn_gateway::feed::Outcome;

    fn rec(at_ms: i64, host: &str) -> LogRecord {
        LogRecord {
            at_ms,
            org_id: "o1".into(),
            device_id: "d1".into(),
            user: None,
            host: host.into(),
            port: 443,
            method: "CONNECT".into(),
            bytes_up: 1,
            bytes_down: 2,
            duration_ms: 3,
            outcome: Outcome::Allowed,
            reason: "allowed:x".into(),
        }
    }

    #[test]
    fn utc_days() {
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(utc_day(951_782_400_000), "2000-02-29");
        assert_eq!(utc_day(1_798_761_599_999), "2026-12-31");
        assert_eq!(utc_day(-1), "1969-12-31");
    }

    #[test]
    fn rotates_daily_sends_from_the_file_and_digests_finished_days() {
        let dir = tempfile::tempdir().unwrap();
        let log = RequestLog::open(dir.path(), 30).unwrap();
        let day1 = 1_798_588_800_000; // 2026-12-30T00:00Z
        log.append(&rec(day1 + 1, "a.test")).unwrap();
        log.append(&rec(day1 + 2, "b.test")).unwrap();
        log.append(&rec(day1 + 86_400_000, "c.test")).unwrap();
        assert_eq!(log.days(), vec!["2026-12-30", "2026-12-31"]);
        // Nothing digested before its records are sent.
        assert!(log.digests_due("2026-12-31").unwrap().is_empty());
        let (day, recs, off) = log.unsent().unwrap().unwrap();
        assert_eq!((day.as_str(), recs.len()), ("2026-12-30", 2));
        assert_eq!(recs[1].host, "b.test");
        log.mark_sent(&day, off).unwrap();
        let (day2, recs2, off2) = log.unsent().unwrap().unwrap();
        assert_eq!(
            (day2.as_str(), recs2[0].host.as_str()),
            ("2026-12-31", "c.test")
        );
        log.mark_sent(&day2, off2).unwrap();
        assert!(log.unsent().unwrap().is_none());
        let due = log.digests_due("2026-12-31").unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].day.as_str(), due[0].records), ("2026-12-30", 2));
        let bytes = fs::read(dir.path().join("requests-2026-12-30.jsonl")).unwrap();
        assert_eq!(
            due[0].sha256,
            hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes))
        );
        log.mark_digested(&due[0]).unwrap();
        assert!(log.digests_due("2026-12-31").unwrap().is_empty());
        // Retention: a record 40 days later removes the old days.
        log.append(&rec(day1 + 40 * 86_400_000, "d.test")).unwrap();
        assert_eq!(log.days().len(), 1);
    }
}

//! Percentiles (nearest rank) and small helpers. Medians and percentiles only, no means.

use serde_json::{json, Value};

/// Latency summary in milliseconds.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// Nearest-rank percentile of an already sorted slice (`p` in 0..=100).
pub fn pct_sorted(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn summarise(values: &[f64]) -> Summary {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    Summary {
        n: v.len(),
        p50: pct_sorted(&v, 50.0),
        p90: pct_sorted(&v, 90.0),
        p99: pct_sorted(&v, 99.0),
        max: v.last().copied().unwrap_or(f64::NAN),
    }
}

pub fn median(values: &[f64]) -> f64 {
    summarise(values).p50
}

impl Summary {
    pub fn json(&self) -> Value {
        json!({"n": self.n, "p50_ms": r3(self.p50), "p90_ms": r3(self.p90), "p99_ms": r3(self.p99), "max_ms": r3(self.max)})
    }
}

/// Round to 3 decimals for the JSON file.
pub fn r3(x: f64) -> Value {
    if x.is_finite() {
        json!((x * 1000.0).round() / 1000.0)
    } else {
        Value::Null
    }
}

/// Deterministic pseudo-random numbers (splitmix64), so runs pick the same pairs.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(|x| x as f64).collect();
        let s = summarise(&v);
        assert_eq!(s.p50, 50.0);
        assert_eq!(s.p99, 99.0);
        assert_eq!(s.max, 100.0);
        assert_eq!(summarise(&[3.0]).p99, 3.0);
        assert!(summarise(&[]).p50.is_nan());
    }
}

//! The result table (Markdown, pasteable into BENCHMARKS.md).

use std::fmt::Write as _;

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// P1 … P8.
    pub id: String,
    /// What was measured.
    pub scenario: String,
    /// Our number.
    pub ours: String,
    /// The baseline measured in the same run.
    pub baseline: String,
    /// ours / baseline (or the added latency).
    pub ratio: String,
    /// The target.
    pub target: String,
    /// `Some(true)` met, `Some(false)` not met, `None` reported only.
    pub met: Option<bool>,
    /// Messages dropped (queue overflow/TTL, or published − processed).
    pub dropped: String,
}

/// `12345.6` → `12,346`.
pub fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A rate in messages per second.
pub fn rate(v: f64, unit: &str) -> String {
    format!("{} {unit}/s", thousands(v))
}

/// A ratio as a percentage.
pub fn pct(v: f64) -> String {
    format!("{:.0} %", v * 100.0)
}

/// The table.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    s.push_str("| id | scenario | ours | baseline (same run) | ratio | target | met | dropped |\n");
    s.push_str("|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "reported",
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.id, r.scenario, r.ours, r.baseline, r.ratio, r.target, met, r.dropped
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(pct(0.914), "91 %");
    }
}

//! The Prometheus text exposition format (0.0.4): `# HELP`/`# TYPE` lines, samples with
//! escaped label values.

use std::fmt::Write as _;

use super::series::{CounterVec, HistogramVec};

pub(super) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

pub(super) fn scalar(out: &mut String, name: &str, kind: &str, help: &str, v: f64) {
    family(out, name, kind, help);
    sample(out, name, &[], v);
}

pub(super) fn counters(out: &mut String, name: &str, help: &str, keys: &[&str], c: &CounterVec) {
    family(out, name, "counter", help);
    for (values, v) in c.snapshot() {
        let labels: Vec<(&str, &str)> = keys
            .iter()
            .copied()
            .zip(values.iter().map(String::as_str))
            .collect();
        sample(out, name, &labels, v);
    }
}

pub(super) fn histograms(out: &mut String, name: &str, help: &str, key: &str, h: &HistogramVec) {
    family(out, name, "histogram", help);
    for (values, hist) in h.snapshot() {
        let value = values.first().map_or("", String::as_str);
        hist.render(out, name, &[(key, value)]);
    }
}

pub(super) fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], v: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, val)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape(val));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {v}");
}

/// Label value escaping of the text format: backslash, double quote, newline.
pub(super) fn escape(v: &str) -> std::borrow::Cow<'_, str> {
    if v.contains(['\\', '"', '\n']) {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .into()
    } else {
        v.into()
    }
}

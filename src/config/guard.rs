//! Validation of the shrink guard's keys (see [`crate::backup::guard`]):
//!
//! ```yaml
//! jobs:
//!   - name: site
//!     guard: {max_shrink: 50%, min_files: 0, min_bytes: 0}   # the defaults
//!     sources:
//!       - name: rrd
//!         rrd: {path: /var/lib/metric-reporting-daemon/rrds}
//!         guard: {min_files: 100}   # overrides the job's keys for this source
//! ```
//!
//! A source's `guard` starts from the job's and replaces only the keys it
//! sets.

use std::collections::BTreeMap;

use super::check::{parse_size, Problems};
use super::raw;
use crate::options::{GuardConfig, Thresholds};

/// The guard of job `j` (`key` is the job's place, e.g. `jobs[0]`).
pub(super) fn job(j: &raw::RawJob, key: &str, p: &mut Problems) -> GuardConfig {
    let base = j.guard.as_ref().map_or_else(Thresholds::default, |g| {
        thresholds(&g.value, Thresholds::default(), &format!("{key}.guard"), p)
    });
    let mut sources = BTreeMap::new();
    for (i, s) in j.sources.value.iter().enumerate() {
        if let Some(g) = &s.value.guard {
            let skey = format!("{key}.sources[{i}].guard");
            sources.insert(
                s.value.name.value.clone(),
                thresholds(&g.value, base, &skey, p),
            );
        }
    }
    GuardConfig { job: base, sources }
}

fn thresholds(g: &raw::RawGuard, inherit: Thresholds, key: &str, p: &mut Problems) -> Thresholds {
    let mut t = inherit;
    if let Some(v) = &g.min_files {
        match u64::try_from(v.value) {
            Ok(n) => t.min_files = n,
            Err(_) => p.at(
                &v.referenced,
                format!("{key}.min_files"),
                "must be 0 or more",
            ),
        }
    }
    if let Some(v) = &g.min_bytes {
        match parse_size(&v.value.0) {
            Ok(n) => t.min_bytes = n,
            Err(why) => p.at(&v.referenced, format!("{key}.min_bytes"), why),
        }
    }
    if let Some(v) = &g.max_shrink {
        match parse_fraction(&v.value.0) {
            Ok(f) => t.max_shrink = f,
            Err(why) => p.at(&v.referenced, format!("{key}.max_shrink"), why),
        }
    }
    t
}

/// `max_shrink`: a percentage (`50%`, `12.5%`) or a fraction (`0.5`), from
/// nothing lost (0) to all of it (100%, which turns the check off).
pub fn parse_fraction(s: &str) -> Result<f64, String> {
    let bad = || {
        format!(
            "`{s}` is not a share such as 50% or 0.5 (from 0% to 100%; 100% turns the check off)"
        )
    };
    let t = s.trim();
    let value = match t.strip_suffix('%') {
        Some(pct) => pct.trim().parse::<f64>().map_err(|_| bad())? / 100.0,
        None => t.parse::<f64>().map_err(|_| bad())?,
    };
    if value.is_finite() && (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn shares_parse_as_percentages_or_fractions() {
        assert_eq!(parse_fraction("50%"), Ok(0.5));
        assert_eq!(parse_fraction(" 12.5 % "), Ok(0.125));
        assert_eq!(parse_fraction("0.1"), Ok(0.1));
        assert_eq!(parse_fraction("100%"), Ok(1.0));
        assert_eq!(parse_fraction("0"), Ok(0.0));
        for bad in ["150%", "-1%", "2", "half", "%", "NaN", "inf", "true"] {
            assert!(parse_fraction(bad).is_err(), "{bad} accepted");
        }
    }

    fn cfg(job_guard: &str, source_guard: &str) -> Result<crate::config::Config, String> {
        let text = format!(
            "store:\n  url: file:///tmp/x\njobs:\n  - name: j\n{job_guard}    sources:\n      - name: a\n        files: {{path: /tmp}}\n      - name: b\n        files: {{path: /tmp}}\n{source_guard}"
        );
        crate::config::parse(&text, Path::new("c.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_apply_and_sources_override_single_keys() {
        let c = cfg("", "").unwrap();
        assert_eq!(c.jobs[0].guard, GuardConfig::default());
        let c = cfg(
            "    guard: {max_shrink: 10%, min_bytes: 1KiB}\n",
            "        guard: {min_files: 3}\n",
        )
        .unwrap();
        let g = &c.jobs[0].guard;
        assert_eq!(g.for_source("a").max_shrink, 0.1);
        let b = g.for_source("b");
        assert_eq!((b.min_files, b.min_bytes, b.max_shrink), (3, 1024, 0.1));
    }

    #[test]
    fn bad_values_name_line_and_key() {
        let e = cfg(
            "    guard: {max_shrink: 150%, min_files: -1}\n",
            "        guard: {min_bytes: lots}\n",
        )
        .unwrap_err();
        assert!(e.contains("c.yaml:5:25: jobs[0].guard.max_shrink"), "{e}");
        assert!(e.contains("jobs[0].guard.max_shrink"), "{e}");
        assert!(
            e.contains("jobs[0].guard.min_files: must be 0 or more"),
            "{e}"
        );
        assert!(e.contains("jobs[0].sources[1].guard.min_bytes"), "{e}");
        assert!(e.contains("3 problems"), "{e}");
    }
}

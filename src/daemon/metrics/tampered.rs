//! What the tamper check shows in the metrics: the gauge of tampered
//! backups and `/readyz`'s reason. A child of `metrics` so the tamper
//! check (which records into the metrics) and the metrics rendering need
//! not import each other.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{escape, JobStats};

/// Pure: why `/readyz` fails for a job with tampered backups.
pub fn readiness_reason(tampered: &[String]) -> String {
    format!(
        "TAMPERING: {} backup{} deleted or rewritten by someone other than ccbackup ({})",
        tampered.len(),
        if tampered.len() == 1 { "" } else { "s" },
        tampered.join("; ")
    )
}

/// `ccbackup_store_tampered_backups`, for the jobs checked on a versioned
/// store.
pub fn render(out: &mut String, jobs: &BTreeMap<String, JobStats>) {
    let _ = writeln!(
        out,
        "# HELP ccbackup_store_tampered_backups Backups the retention policy keeps that the store's version history shows deleted or rewritten by someone other than ccbackup (versioned S3 stores only).\n\
         # TYPE ccbackup_store_tampered_backups gauge"
    );
    for (name, s) in jobs {
        if let Some(t) = &s.tampered {
            let _ = writeln!(
                out,
                "ccbackup_store_tampered_backups{{job=\"{}\"}} {}",
                escape(name),
                t.len()
            );
        }
    }
}

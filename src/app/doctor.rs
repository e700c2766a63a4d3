//! `ccbackup doctor`: runs the site checks ([`crate::doctor`]) and prints
//! one line per check, or a JSON array.

use super::out::say;
use super::{failed, AppError};
use crate::config::Config;
use crate::doctor::{self, Check, Options, Status};

pub(super) async fn doctor(
    cfg: &Config,
    job: Option<&str>,
    json: bool,
    opts: Options,
) -> Result<(), AppError> {
    let jobs = cfg
        .select_jobs(job)
        .map_err(|e| AppError::Usage(e.to_string()))?;
    let checks = doctor::run(cfg, &jobs, opts).await;
    if json {
        say!("{}", serde_json::to_string_pretty(&checks).map_err(failed)?);
    } else {
        for c in &checks {
            say!("{}", line(c));
        }
    }
    match doctor::failures(&checks) {
        0 => {
            if !json {
                say!("{} checks, none failed", checks.len());
            }
            Ok(())
        }
        n => Err(failed(anyhow::anyhow!(
            "{n} of {} checks failed",
            checks.len()
        ))),
    }
}

/// `FAIL  job: subject: check: detail (hint: ...)`, control characters from
/// servers' messages neutralised.
fn line(c: &Check) -> String {
    let status = match c.status {
        Status::Ok => "ok  ",
        Status::Info => "info",
        Status::Warn => "warn",
        Status::Fail => "FAIL",
    };
    // One line per check, whatever a server put in its message.
    let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let hint = c
        .hint
        .as_deref()
        .map(|h| format!(" (hint: {})", flat(h)))
        .unwrap_or_default();
    crate::progress::printable(&format!(
        "{status}  {}: {}: {}: {}{hint}",
        c.job,
        c.subject,
        c.check,
        flat(&c.detail)
    ))
}

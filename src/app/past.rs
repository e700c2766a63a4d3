//! `--as-of TIME`: opening the repository as it was at a past time.

use chrono::{DateTime, Utc};

use super::{failed, AppError};
use crate::config::Config;
use crate::repo::store::{self, Repo};

/// Pure: the time `--as-of` names. RFC 3339 with any offset and optional
/// fractions (what `list` prints is RFC 3339 in UTC).
pub(super) fn parse_time(text: &str) -> Result<DateTime<Utc>, AppError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            AppError::Usage(format!(
                "--as-of {text:?} is not an RFC 3339 time ({e}); e.g. 2026-12-07T12:00:00Z"
            ))
        })
}

/// The configured repository with its signing keys, as it is now or, with
/// `as_of`, as it was then (read-only).
pub(super) async fn open_repo(cfg: &Config, as_of: Option<&str>) -> Result<Repo, AppError> {
    let at = as_of.map(parse_time).transpose()?;
    let repo = store::open(&cfg.store)
        .map_err(failed)?
        .with_signing(cfg.signing.as_ref());
    match at {
        None => Ok(repo),
        Some(at) => crate::repo::as_of::open(&repo, at).await.map_err(failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_takes_rfc3339_and_what_list_prints() {
        let a = parse_time("2026-12-07T12:00:00Z").unwrap();
        assert_eq!(parse_time("2026-12-07T13:00:00+01:00").unwrap(), a);
        assert!(parse_time("2026-12-07T12:00:00.250Z").unwrap() > a);
        let e = parse_time("yesterday").unwrap_err().to_string();
        assert!(e.contains("RFC 3339") && e.contains("yesterday"), "{e}");
    }
}

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

/// Pure: refuses an `--as-of` later than now (plus the store's allowed
/// clock skew). The store has no versions from the future, so such a view
/// is the present; and since `--as-of` views skip the tamper check, the
/// attacker's present would be shown as if it were the past (a mistyped
/// year is enough).
pub(super) fn not_future(
    at: DateTime<Utc>,
    now: DateTime<Utc>,
    skew: std::time::Duration,
) -> Result<(), AppError> {
    let skew = chrono::Duration::from_std(skew).unwrap_or(chrono::Duration::MAX);
    match now.checked_add_signed(skew) {
        Some(limit) if at > limit => Err(AppError::Usage(format!(
            "--as-of {} is in the future (now is {}): the store as it is now is what the command shows without --as-of",
            at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ))),
        _ => Ok(()),
    }
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
        Some(at) => {
            not_future(at, repo.clock.now(), cfg.store.max_clock_skew)?;
            crate::repo::as_of::open(&repo, at).await.map_err(failed)
        }
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

    #[test]
    fn attack_an_as_of_in_the_future_is_refused() {
        let now = parse_time("2026-12-07T12:00:00Z").unwrap();
        let skew = std::time::Duration::from_secs(300);
        assert!(not_future(now + chrono::Duration::seconds(300), now, skew).is_ok());
        assert!(not_future(now - chrono::Duration::days(9000), now, skew).is_ok());
        let e = not_future(now + chrono::Duration::seconds(301), now, skew)
            .unwrap_err()
            .to_string();
        assert!(e.contains("in the future"), "{e}");
        assert!(not_future(now, now, std::time::Duration::MAX).is_ok());
    }
}

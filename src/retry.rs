//! Retrying transient failures with exponential backoff and jitter.
//!
//! Only errors that say they are transient are retried (as in neon's
//! `remote_storage`): network trouble, server errors (5xx), throttling
//! (429/503, S3 `SlowDown`), and a database that is not accepting
//! connections yet (starting up, shutting down, connection refused). Anything
//! else (authentication, missing objects, failed preconditions, bad
//! configuration) fails at once: retrying cannot fix it and only delays the
//! alert.
//!
//! Classification first walks the error's `source()` chain for typed errors
//! (`object_store::Error`, `tokio_postgres::Error`, `std::io::Error`). Several
//! of our error types carry their cause in the message rather than as a
//! `source` (to avoid printing it twice), so when no typed error decides, the
//! rendered message is matched against known phrases. Permanent phrases win
//! over transient ones: "password authentication failed" must not be retried
//! even if the message also mentions a connection.

use std::error::Error as StdError;
use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// How often and how long to retry.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Attempts in total, including the first (at least 1).
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled after each failure.
    pub initial: Duration,
    /// Upper bound of one delay.
    pub max_delay: Duration,
    /// No new attempt starts once this much time has passed since the first.
    pub max_elapsed: Duration,
}

impl Backoff {
    /// For single store calls (lock, listing, manifest): quick, a minute at most.
    pub const STORE: Backoff = Backoff {
        max_attempts: 6,
        initial: Duration::from_millis(200),
        max_delay: Duration::from_secs(10),
        max_elapsed: Duration::from_secs(60),
    };

    /// For a whole run whose start failed (database starting up, store
    /// unreachable): a database restart takes tens of seconds.
    pub const RUN: Backoff = Backoff {
        max_attempts: 5,
        initial: Duration::from_secs(2),
        max_delay: Duration::from_secs(60),
        max_elapsed: Duration::from_secs(300),
    };

    /// The delay after the `failures`-th failure (1-based), with "full
    /// jitter": uniformly random in [d/2, d]. Jitter keeps several sidecars
    /// that failed together from retrying in lockstep; the lower half-bound
    /// keeps the delay from collapsing to nothing.
    pub fn delay(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(30);
        let base = self.initial.saturating_mul(1u32 << exp).min(self.max_delay);
        let half = base / 2;
        let extra_ms = half.as_millis() as u64;
        let jitter = if extra_ms == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(rand::rng().random_range(0..=extra_ms))
        };
        half + jitter
    }
}

/// Whether an error is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Transient,
    Permanent,
}

/// Messages that mean "try again later".
const TRANSIENT_PHRASES: &[&str] = &[
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "too many clients already",
    "connection refused",
    "connection reset",
    "connection closed",
    "broken pipe",
    "timed out",
    "timeout",
    "temporarily unavailable",
    "service unavailable",
    "slow down",
    "slowdown",
    "too many requests",
    "internal server error",
    "bad gateway",
    "gateway timeout",
    "error sending request",
    "dns error",
    "status: 500",
    "status: 502",
    "status: 503",
    "status: 504",
    "status: 429",
    "server error (5",
];

/// Messages that mean "retrying will not help".
const PERMANENT_PHRASES: &[&str] = &[
    "password authentication failed",
    "authentication failed",
    "no pg_hba.conf entry",
    "permission denied",
    "access denied",
    "unauthenticated",
    "forbidden",
    "invalidaccesskeyid",
    "signaturedoesnotmatch",
    "does not exist",
    "not found",
    "nosuchbucket",
    "precondition",
    "already exists",
    "invalid",
];

/// Classifies any error: typed causes first, then the message.
pub fn classify(err: &(dyn StdError + 'static)) -> Class {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(os) = e.downcast_ref::<object_store::Error>() {
            if let Some(c) = classify_object_store_variant(os) {
                return c;
            }
        }
        if let Some(pg) = e.downcast_ref::<tokio_postgres::Error>() {
            if let Some(db) = pg.as_db_error() {
                return classify_sqlstate(db.code().code());
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(c) = classify_io(io.kind()) {
                return c;
            }
        }
        cur = e.source();
    }
    classify_message(&full_message(err))
}

/// The error and every cause, lowercased, for phrase matching.
fn full_message(err: &(dyn StdError + 'static)) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        s.push_str(": ");
        s.push_str(&e.to_string());
        cur = e.source();
    }
    s.to_lowercase()
}

/// Phrase matching on a rendered message; unknown messages are permanent so
/// that a bug is reported at once rather than hidden behind retries.
pub fn classify_message(msg: &str) -> Class {
    let m = msg.to_lowercase();
    if PERMANENT_PHRASES.iter().any(|p| m.contains(p)) {
        return Class::Permanent;
    }
    if TRANSIENT_PHRASES.iter().any(|p| m.contains(p)) {
        return Class::Transient;
    }
    Class::Permanent
}

/// Variants that decide on their own; `Generic` (HTTP and I/O trouble) needs
/// its cause or message looked at.
fn classify_object_store_variant(e: &object_store::Error) -> Option<Class> {
    use object_store::Error as E;
    match e {
        E::NotFound { .. }
        | E::AlreadyExists { .. }
        | E::Precondition { .. }
        | E::NotModified { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::UnknownConfigurationKey { .. } => Some(Class::Permanent),
        _ => None,
    }
}

/// SQLSTATE classes: 08 connection exception, 53 insufficient resources,
/// 57P03 cannot connect now (starting up), 57P01/57P02 admin/crash shutdown,
/// 40001/40P01 serialization failure and deadlock.
fn classify_sqlstate(code: &str) -> Class {
    if code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "57P01" | "57P02" | "57P03" | "40001" | "40P01")
    {
        Class::Transient
    } else {
        Class::Permanent
    }
}

fn classify_io(kind: std::io::ErrorKind) -> Option<Class> {
    use std::io::ErrorKind as K;
    match kind {
        K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::NotConnected
        | K::BrokenPipe
        | K::TimedOut
        | K::Interrupted
        | K::UnexpectedEof
        | K::WouldBlock => Some(Class::Transient),
        K::PermissionDenied | K::NotFound | K::AlreadyExists | K::InvalidInput => {
            Some(Class::Permanent)
        }
        _ => None,
    }
}

/// Runs `op` until it succeeds, fails permanently, or the backoff budget is
/// spent; returns the last error. `what` names the operation in logs.
pub async fn retry<T, E, F, Fut>(backoff: Backoff, what: &str, mut op: F) -> Result<T, E>
where
    E: StdError + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    retry_if(backoff, what, |e: &E| classify(e), &mut op).await
}

/// As [`retry`], with the caller's classification (for errors whose
/// transient cases are known better by the caller).
pub async fn retry_if<T, E, F, Fut, C>(
    backoff: Backoff,
    what: &str,
    classify_err: C,
    mut op: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    C: Fn(&E) -> Class,
{
    let start = Instant::now();
    let mut failures = 0u32;
    loop {
        match op().await {
            Ok(v) => {
                if failures > 0 {
                    tracing::info!(
                        operation = what,
                        attempts = failures + 1,
                        "succeeded after retrying"
                    );
                }
                return Ok(v);
            }
            Err(e) => {
                failures += 1;
                if classify_err(&e) == Class::Permanent {
                    return Err(e);
                }
                let delay = backoff.delay(failures);
                let out_of_time = start.elapsed() + delay > backoff.max_elapsed;
                if failures >= backoff.max_attempts.max(1) || out_of_time {
                    tracing::warn!(operation = what, attempts = failures, error = %e, "giving up after transient failures");
                    return Err(e);
                }
                tracing::warn!(
                    operation = what,
                    attempt = failures,
                    retry_in_ms = delay.as_millis() as u64,
                    error = %e,
                    "transient failure, retrying"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn delays_grow_and_stay_bounded() {
        let b = Backoff {
            max_attempts: 10,
            initial: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_elapsed: Duration::from_secs(60),
        };
        for _ in 0..50 {
            let d1 = b.delay(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = b.delay(3);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            assert!(b.delay(20) <= Duration::from_secs(1));
        }
    }

    #[test]
    fn classifies_typical_failures() {
        let gen = |msg: &str| object_store::Error::Generic {
            store: "S3",
            source: msg.to_owned().into(),
        };
        assert_eq!(
            classify(&gen("Server returned 503 Service Unavailable")),
            Class::Transient
        );
        assert_eq!(
            classify(&gen("error sending request for url")),
            Class::Transient
        );
        assert_eq!(classify(&gen("something odd")), Class::Permanent);
        let nf = object_store::Error::NotFound {
            path: "x".into(),
            source: "gone".into(),
        };
        assert_eq!(classify(&nf), Class::Permanent);
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(classify(&io), Class::Transient);
        assert_eq!(
            classify_message("db error: FATAL: the database system is starting up"),
            Class::Transient
        );
        assert_eq!(
            classify_message(
                "FATAL: password authentication failed for user \"x\"; connection refused"
            ),
            Class::Permanent
        );
    }

    #[tokio::test]
    async fn retries_transient_until_success_and_stops_on_permanent() {
        let b = Backoff {
            max_attempts: 5,
            initial: Duration::from_millis(2),
            max_delay: Duration::from_millis(10),
            max_elapsed: Duration::from_secs(10),
        };
        let calls = AtomicU32::new(0);
        let r: Result<u32, std::io::Error> = retry(b, "test", || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 3 {
                    Err(std::io::Error::from(std::io::ErrorKind::TimedOut))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(r.unwrap(), 3);

        let calls = AtomicU32::new(0);
        let r: Result<(), std::io::Error> = retry(b, "test", || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied)) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let r: Result<(), std::io::Error> = retry(b, "test", || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(std::io::Error::from(std::io::ErrorKind::TimedOut)) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), b.max_attempts);
    }
}

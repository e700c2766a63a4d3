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
//! Every error type a retry loop sees implements [`Transient`], deciding
//! from its variants and typed causes only, never from message text:
//! `object_store::Error` variants (and, for `Generic`, object_store's
//! `HttpError` kind or an `io::Error` in its cause), `io::ErrorKind`,
//! tokio-postgres SQLSTATEs and connection state, and our own variants.
//! [`retry`] is the one loop; it stops at once when its cancellation token
//! fires.

use std::error::Error as StdError;
use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::chain;

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

    /// The delay after the `failures`-th failure (1-based), with "equal
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

/// An error that knows whether retrying it can help.
pub trait Transient {
    fn class(&self) -> Class;

    fn is_transient(&self) -> bool {
        self.class() == Class::Transient
    }
}

/// The store answered and refused this very request: object_store turns
/// the statuses that mean "this request is wrong" (304, 401, 403, 404, 409,
/// 412) into these variants, and a few are refused before sending. Such a
/// request is not worth retrying, and a put refused so was not written.
pub fn is_refusal(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    matches!(
        e,
        E::NotFound { .. }
            | E::AlreadyExists { .. }
            | E::Precondition { .. }
            | E::NotModified { .. }
            | E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::InvalidPath { .. }
            | E::NotSupported { .. }
            | E::NotImplemented { .. }
            | E::UnknownConfigurationKey { .. }
    )
}

impl Transient for object_store::Error {
    fn class(&self) -> Class {
        use object_store::Error as E;
        match self {
            e if is_refusal(e) => Class::Permanent,
            E::Generic { source, .. } => generic_class(source.as_ref()),
            // A local store's I/O or a spawned task that failed.
            _ => Class::Transient,
        }
    }
}

/// `Generic` is what object_store returns for transport failures and for
/// response statuses it has no variant for. Its HTTP error (with a kind)
/// or I/O error in the cause decides. The status of a response is not
/// reachable through public types (object_store 0.14 keeps `RetryError`
/// crate-private), but the statuses that mean a wrong request already have
/// their own variants (see above), so what remains is server trouble and
/// throttling (5xx, 429) that object_store's own retries gave up on:
/// transient.
fn generic_class(source: &(dyn StdError + Send + Sync + 'static)) -> Class {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut cur: Option<&(dyn StdError + 'static)> = Some(source);
    while let Some(e) = cur {
        if let Some(h) = e.downcast_ref::<HttpError>() {
            return match h.kind() {
                HttpErrorKind::Connect
                | HttpErrorKind::Request
                | HttpErrorKind::Timeout
                | HttpErrorKind::Interrupted => Class::Transient,
                _ => Class::Permanent,
            };
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io.class();
        }
        if let Some(os) = e.downcast_ref::<object_store::Error>() {
            return os.class();
        }
        cur = e.source();
    }
    Class::Transient
}

impl Transient for std::io::Error {
    fn class(&self) -> Class {
        use std::io::ErrorKind as K;
        match self.kind() {
            K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::BrokenPipe
            | K::TimedOut
            | K::Interrupted
            | K::UnexpectedEof
            | K::WouldBlock => Class::Transient,
            _ => match self.get_ref() {
                // An error of a typed kind carried inside an `Other`.
                Some(inner) => {
                    if let Some(os) = inner.downcast_ref::<object_store::Error>() {
                        os.class()
                    } else if let Some(pg) = inner.downcast_ref::<tokio_postgres::Error>() {
                        pg.class()
                    } else {
                        Class::Permanent
                    }
                }
                None => Class::Permanent,
            },
        }
    }
}

impl Transient for tokio_postgres::Error {
    fn class(&self) -> Class {
        if let Some(db) = self.as_db_error() {
            return sqlstate_class(db.code().code());
        }
        if self.is_closed() {
            return Class::Transient;
        }
        match StdError::source(self).and_then(|s| s.downcast_ref::<std::io::Error>()) {
            Some(io) => io.class(),
            None => Class::Permanent,
        }
    }
}

/// SQLSTATE classes: 08 connection exception, 53 insufficient resources,
/// 57P03 cannot connect now (starting up), 57P01/57P02 admin/crash shutdown,
/// 40001/40P01 serialization failure and deadlock.
fn sqlstate_class(code: &str) -> Class {
    if code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "57P01" | "57P02" | "57P03" | "40001" | "40P01")
    {
        Class::Transient
    } else {
        Class::Permanent
    }
}

/// Runs `op` until it succeeds, fails permanently, the backoff budget is
/// spent, or `cancel` fires; returns the last error. The first attempt
/// always runs; after a failure no new attempt starts once `cancel` has
/// fired, and a backoff sleep ends at once when it fires (the caller tells
/// a cancelled run by its token). `what` names the operation in logs.
pub async fn retry<T, E, F, Fut>(
    backoff: Backoff,
    what: &str,
    cancel: &CancellationToken,
    op: F,
) -> Result<T, E>
where
    E: Transient + StdError + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    retry_with(backoff, what, cancel, |e: &E| e.class(), op)
        .await
        .0
}

/// As [`retry`], with the caller's classification, and also returning how
/// many attempts were made.
pub async fn retry_with<T, E, F, Fut, C>(
    backoff: Backoff,
    what: &str,
    cancel: &CancellationToken,
    classify: C,
    mut op: F,
) -> (Result<T, E>, u32)
where
    E: StdError + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    C: Fn(&E) -> Class,
{
    let start = Instant::now();
    let mut failures = 0u32;
    loop {
        let e = match op().await {
            Ok(v) => {
                if failures > 0 {
                    tracing::info!(
                        operation = what,
                        attempts = failures + 1,
                        "succeeded after retrying"
                    );
                }
                return (Ok(v), failures + 1);
            }
            Err(e) => e,
        };
        failures += 1;
        if cancel.is_cancelled() || classify(&e) == Class::Permanent {
            return (Err(e), failures);
        }
        let delay = backoff.delay(failures);
        let out_of_time = start.elapsed() + delay > backoff.max_elapsed;
        if failures >= backoff.max_attempts.max(1) || out_of_time {
            tracing::warn!(operation = what, attempts = failures, error = %chain(&e), "giving up after transient failures");
            return (Err(e), failures);
        }
        tracing::warn!(
            operation = what,
            attempt = failures,
            retry_in_ms = delay.as_millis() as u64,
            error = %chain(&e),
            "transient failure, retrying"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => return (Err(e), failures),
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

    fn io(kind: std::io::ErrorKind, msg: &str) -> std::io::Error {
        std::io::Error::new(kind, msg.to_owned())
    }

    #[test]
    fn classifies_by_type_not_by_message() {
        use std::io::ErrorKind as K;
        let generic = |source: Box<dyn StdError + Send + Sync>| object_store::Error::Generic {
            store: "S3",
            source,
        };
        // The words do not matter: the kind does.
        let reset = io(K::ConnectionReset, "object not found; invalid state");
        assert_eq!(reset.class(), Class::Transient);
        assert_eq!(generic(Box::new(reset)).class(), Class::Transient);
        let denied = io(K::PermissionDenied, "connection refused, timed out");
        assert_eq!(denied.class(), Class::Permanent);
        assert_eq!(generic(Box::new(denied)).class(), Class::Permanent);
        let nf = object_store::Error::NotFound {
            path: "x".into(),
            source: "connection reset".into(),
        };
        assert_eq!(nf.class(), Class::Permanent);
        let pd = object_store::Error::PermissionDenied {
            path: "x".into(),
            source: "503 Service Unavailable".into(),
        };
        assert_eq!(pd.class(), Class::Permanent);
        // An object_store error carried by an io::Error keeps its class.
        let wrapped = std::io::Error::other(object_store::Error::Precondition {
            path: "x".into(),
            source: "timed out".into(),
        });
        assert_eq!(wrapped.class(), Class::Permanent);
    }

    #[test]
    fn sqlstates() {
        for c in [
            "08006", "08001", "53300", "57P01", "57P02", "57P03", "40001", "40P01",
        ] {
            assert_eq!(sqlstate_class(c), Class::Transient, "{c}");
        }
        for c in ["28P01", "28000", "3D000", "42501", "42P01", "57014"] {
            assert_eq!(sqlstate_class(c), Class::Permanent, "{c}");
        }
    }

    /// A loopback HTTP server that answers every request with `status`.
    async fn answering(status: &'static str) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16384];
                    let _ = s.read(&mut buf).await;
                    let reply = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = s.write_all(reply.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        port
    }

    /// What a real S3 client reports for `HEAD` against loopback `port`.
    async fn head_error(port: u16) -> object_store::Error {
        use object_store::ObjectStoreExt;
        let store = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(format!("http://127.0.0.1:{port}"))
            .with_allow_http(true)
            .with_bucket_name("b")
            .with_region("us-east-1")
            .with_access_key_id("k")
            .with_secret_access_key("s")
            .with_retry(object_store::RetryConfig {
                max_retries: 0,
                retry_timeout: Duration::from_secs(1),
                backoff: Default::default(),
            })
            .build()
            .unwrap();
        store
            .head(&object_store::path::Path::from("a/b"))
            .await
            .unwrap_err()
    }

    async fn s3_error(status: &'static str) -> object_store::Error {
        head_error(answering(status).await).await
    }

    #[tokio::test]
    async fn http_statuses_from_a_real_s3_client() {
        let unavailable = s3_error("503 Service Unavailable").await;
        assert!(
            matches!(unavailable, object_store::Error::Generic { .. }),
            "{unavailable:?}"
        );
        assert_eq!(unavailable.class(), Class::Transient, "{unavailable:?}");
        let throttled = s3_error("429 Too Many Requests").await;
        assert_eq!(throttled.class(), Class::Transient, "{throttled:?}");
        let forbidden = s3_error("403 Forbidden").await;
        assert_eq!(forbidden.class(), Class::Permanent, "{forbidden:?}");
        let missing = s3_error("404 Not Found").await;
        assert_eq!(missing.class(), Class::Permanent, "{missing:?}");

        // Nothing listening: a connect error, transient.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let refused = head_error(port).await;
        assert_eq!(refused.class(), Class::Transient, "{refused:?}");
    }

    fn quick() -> Backoff {
        Backoff {
            max_attempts: 5,
            initial: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
            max_elapsed: Duration::from_secs(600),
        }
    }

    fn timed_out() -> std::io::Error {
        std::io::Error::from(std::io::ErrorKind::TimedOut)
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_until_success_with_growing_delays() {
        let never = CancellationToken::new();
        let calls = std::sync::Mutex::new(Vec::new());
        let t0 = Instant::now();
        let r: Result<usize, std::io::Error> = retry(quick(), "test", &never, || {
            let mut c = calls.lock().unwrap();
            c.push(t0.elapsed());
            let n = c.len();
            async move {
                if n < 4 {
                    Err(timed_out())
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(r.unwrap(), 4);
        let at = calls.lock().unwrap().clone();
        let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
        // Delay n lies in [initial*2^(n-1)/2, initial*2^(n-1)].
        for (i, g) in gaps.iter().enumerate() {
            let full = Duration::from_secs(1 << i);
            assert!(*g >= full / 2 && *g <= full, "gap {i}: {g:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_stops_after_one_call_and_budget_is_bounded() {
        let never = CancellationToken::new();
        let calls = AtomicU32::new(0);
        let r: Result<(), std::io::Error> = retry(quick(), "test", &never, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(io(std::io::ErrorKind::PermissionDenied, "timed out")) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let r: Result<(), std::io::Error> = retry(quick(), "test", &never, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(timed_out()) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), quick().max_attempts);

        // max_elapsed: no attempt starts whose delay would cross it.
        let b = Backoff {
            max_attempts: 100,
            initial: Duration::from_secs(4),
            max_delay: Duration::from_secs(4),
            max_elapsed: Duration::from_secs(10),
        };
        let calls = AtomicU32::new(0);
        let t0 = Instant::now();
        let (r, attempts) = retry_with(
            b,
            "test",
            &never,
            |e: &std::io::Error| e.class(),
            || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(timed_out()) }
            },
        )
        .await;
        assert!(r.is_err());
        assert_eq!(attempts, calls.load(Ordering::SeqCst));
        assert!(t0.elapsed() <= b.max_elapsed, "{:?}", t0.elapsed());
        // Delays of 2..4 s: at least 3 attempts fit in 10 s, at most 6.
        assert!((3..=6).contains(&attempts), "{attempts}");
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_during_backoff_returns_promptly() {
        let cancel = CancellationToken::new();
        let b = Backoff {
            max_attempts: 10,
            initial: Duration::from_secs(3600),
            max_delay: Duration::from_secs(3600),
            max_elapsed: Duration::from_secs(100_000),
        };
        let calls = AtomicU32::new(0);
        let t0 = Instant::now();
        let canceller = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                cancel.cancel();
            })
        };
        let r: Result<(), std::io::Error> = retry(b, "test", &cancel, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(timed_out()) }
        })
        .await;
        canceller.await.unwrap();
        assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());

        // Already cancelled: one attempt, no sleep.
        let calls = AtomicU32::new(0);
        let r: Result<(), std::io::Error> = retry(b, "test", &cancel, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(timed_out()) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}

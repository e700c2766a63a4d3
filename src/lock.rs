//! Repository lock: a lease object per job, so two writers (the daemon and a
//! manual `run-now`, or two sidecars pointed at one bucket) never back up or
//! prune the same job at the same time.
//!
//! The lease lives at `locks/<job>.json` (outside the job's backup
//! directory, so catalog listings never see it) and holds the owner ID,
//! host, pid, purpose, and acquired/expires times in RFC 3339.
//!
//! # Protocol and its races
//!
//! * **Acquire**: a create-only put (`PutMode::Create`). It is atomic on
//!   S3 (`If-None-Match: *`), Azure, GCS and the local file system, so of two
//!   writers exactly one wins.
//! * **Held**: if the lease exists and has not expired, acquisition fails
//!   with its owner, host and expiry (the caller decides whether to wait).
//! * **Take over**: an expired lease is deleted, then created again with a
//!   create-only put. If that put loses, someone else took it over first and
//!   we report them. object_store has no conditional delete, so two takers
//!   could both delete: A deletes and creates, then B (who read the stale
//!   lease before A wrote) deletes A's fresh lease and creates its own. To
//!   catch that, a taker re-reads the lease after [`TAKEOVER_SETTLE`] and
//!   gives up if the owner is no longer itself. The window left is a taker
//!   that stalls longer than the settle time between reading the stale lease
//!   and deleting it; renewals (below) catch that case too, later.
//! * **Renew**: every `ttl / 3` the holder reads the lease; if the owner is
//!   still itself it writes a new expiry with `PutMode::Update` on the
//!   version it just read (exact on S3 and Azure). Stores without
//!   conditional updates (the local file system) get an overwrite after the
//!   ownership check; the gap between check and overwrite is one request,
//!   and a lease renewed at a third of its life cannot have expired in it
//!   unless the holder stalled for two thirds of the TTL. A renewal that
//!   finds another owner marks the guard as lost ([`LockGuard::lost`]).
//! * **Release**: read, and delete only if we still own it. Dropping a guard
//!   without releasing spawns the release on [`PENDING`], which the daemon
//!   drains before exiting.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::retry::{self, Backoff, Class};
use crate::store::Repo;

/// How long a taker waits before checking that its takeover stuck.
pub const TAKEOVER_SETTLE: Duration = Duration::from_millis(500);

/// Releases started by dropped guards; see [`wait_pending_releases`].
pub static PENDING: LazyLock<TaskTracker> = LazyLock::new(TaskTracker::new);

/// The content of a lease object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub host: String,
    pub pid: u32,
    /// What the holder is doing: `backup`, `prune`, ...
    pub purpose: String,
    pub acquired: String,
    pub expires: String,
}

impl Lease {
    fn expires_at(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.expires)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "job `{job}` is locked by {} on {} (pid {}, {}) until {}; lease {key}",
        lease.owner, lease.host, lease.pid, lease.purpose, lease.expires
    )]
    Held {
        job: String,
        key: String,
        lease: Lease,
    },
    #[error("job `{job}`: lost the takeover of the expired lease {key} to {owner}")]
    LostRace {
        job: String,
        key: String,
        owner: String,
    },
    #[error("job `{job}`: cannot {what} lease {key}: {source}")]
    Store {
        job: String,
        key: String,
        what: &'static str,
        source: object_store::Error,
    },
}

impl LockError {
    /// Lock contention is not a store failure: the daemon counts it apart.
    pub fn is_held(&self) -> bool {
        matches!(self, LockError::Held { .. } | LockError::LostRace { .. })
    }
}

/// Key of a job's lease.
pub fn lease_path(job: &str) -> ObjPath {
    ObjPath::from_iter(["locks", &format!("{job}.json")])
}

/// A unique owner ID for one acquisition: host, pid and random bits, so two
/// runs inside one process are distinct owners too.
fn new_owner() -> String {
    use rand::Rng;
    let r: u64 = rand::rng().random();
    format!(
        "{}-{}-{r:016x}",
        crate::backup::hostname(),
        std::process::id()
    )
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A held lock. Renewed in the background until released or dropped.
#[derive(Debug)]
pub struct LockGuard {
    store: Arc<dyn ObjectStore>,
    job: String,
    key: ObjPath,
    owner: String,
    stop: CancellationToken,
    lost: CancellationToken,
    released: bool,
}

impl LockGuard {
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Cancelled when a renewal found another owner or could not renew
    /// before the lease expired: the caller should stop writing.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Stops renewing and deletes the lease if it is still ours.
    pub async fn release(mut self) -> Result<(), LockError> {
        self.released = true;
        self.stop.cancel();
        release_lease(&*self.store, &self.job, &self.key, &self.owner).await
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.stop.cancel();
        if self.released {
            return;
        }
        // A cancelled run drops its guard mid-flight; release in the
        // background so the next run need not wait for the lease to expire.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (store, job, key, owner) = (
                self.store.clone(),
                self.job.clone(),
                self.key.clone(),
                self.owner.clone(),
            );
            PENDING.spawn_on(
                async move {
                    if let Err(e) = release_lease(&*store, &job, &key, &owner).await {
                        tracing::warn!(error = %e, "could not release lock of a cancelled run");
                    }
                },
                &rt,
            );
        }
    }
}

/// Waits (at most `limit`) for releases started by dropped guards.
pub async fn wait_pending_releases(limit: Duration) {
    PENDING.close();
    let _ = tokio::time::timeout(limit, PENDING.wait()).await;
    PENDING.reopen();
}

async fn read_lease(
    store: &dyn ObjectStore,
    job: &str,
    key: &ObjPath,
) -> Result<Option<(Lease, DateTime<Utc>, UpdateVersion)>, LockError> {
    let err = |what, source| LockError::Store {
        job: job.to_owned(),
        key: key.to_string(),
        what,
        source,
    };
    let got = match store.get(key).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(err("read", e)),
    };
    let version = UpdateVersion {
        e_tag: got.meta.e_tag.clone(),
        version: got.meta.version.clone(),
    };
    let modified = got.meta.last_modified;
    let bytes = match got.bytes().await {
        Ok(b) => b,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(err("read", e)),
    };
    let lease = serde_json::from_slice::<Lease>(&bytes).unwrap_or_else(|_| {
        // An unreadable lease (truncated, foreign) is treated as written at
        // its modification time with an unknown owner; it expires like any
        // other rather than blocking the job forever.
        Lease {
            owner: "unknown (unreadable lease)".to_owned(),
            host: "unknown".to_owned(),
            pid: 0,
            purpose: "unknown".to_owned(),
            acquired: rfc3339(modified),
            expires: rfc3339(modified + chrono::Duration::seconds(3600)),
        }
    });
    Ok(Some((lease, modified, version)))
}

async fn release_lease(
    store: &dyn ObjectStore,
    job: &str,
    key: &ObjPath,
    owner: &str,
) -> Result<(), LockError> {
    match read_lease(store, job, key).await? {
        Some((lease, _, _)) if lease.owner == owner => match store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(LockError::Store {
                job: job.to_owned(),
                key: key.to_string(),
                what: "delete",
                source,
            }),
        },
        Some((lease, _, _)) => {
            tracing::warn!(job, owner = %lease.owner, "lock was taken over before release; leaving it");
            Ok(())
        }
        None => Ok(()),
    }
}

fn lease_for(owner: &str, purpose: &str, ttl: Duration, acquired: DateTime<Utc>) -> Lease {
    let now = Utc::now();
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(120));
    Lease {
        owner: owner.to_owned(),
        host: crate::backup::hostname(),
        pid: std::process::id(),
        purpose: purpose.to_owned(),
        acquired: rfc3339(acquired),
        expires: rfc3339(now + ttl),
    }
}

fn payload(lease: &Lease) -> PutPayload {
    // Serialising a struct of strings cannot fail; fall back to empty JSON
    // rather than unwrap.
    PutPayload::from(serde_json::to_vec_pretty(lease).unwrap_or_else(|_| b"{}".to_vec()))
}

/// One attempt at taking the lock (no waiting on a held lease).
async fn try_acquire(
    repo: &Repo,
    job: &str,
    ttl: Duration,
    purpose: &str,
) -> Result<LockGuard, LockError> {
    let store = repo.store.clone();
    let key = lease_path(job);
    let owner = new_owner();
    let acquired = Utc::now();
    let lease = lease_for(&owner, purpose, ttl, acquired);
    let create = PutOptions::from(PutMode::Create);
    let store_err = |what, source| LockError::Store {
        job: job.to_owned(),
        key: key.to_string(),
        what,
        source,
    };

    match store.put_opts(&key, payload(&lease), create.clone()).await {
        Ok(_) => return Ok(start_guard(repo, job, key, owner, ttl, purpose, acquired)),
        Err(object_store::Error::AlreadyExists { .. }) => {}
        Err(e) => return Err(store_err("create", e)),
    }

    let Some((current, _, _)) = read_lease(&*store, job, &key).await? else {
        // Released between our put and our read: one more create-only try.
        return match store.put_opts(&key, payload(&lease), create).await {
            Ok(_) => Ok(start_guard(repo, job, key, owner, ttl, purpose, acquired)),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let holder = read_lease(&*store, job, &key).await?.map(|l| l.0.owner);
                Err(LockError::LostRace {
                    job: job.to_owned(),
                    key: key.to_string(),
                    owner: holder.unwrap_or_else(|| "unknown".to_owned()),
                })
            }
            Err(e) => Err(store_err("create", e)),
        };
    };
    let expired = current.expires_at().is_none_or(|t| t <= Utc::now());
    if !expired {
        return Err(LockError::Held {
            job: job.to_owned(),
            key: key.to_string(),
            lease: current,
        });
    }

    tracing::warn!(job, stale_owner = %current.owner, expired = %current.expires, "taking over an expired lock");
    match store.delete(&key).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(store_err("delete stale", e)),
    }
    match store.put_opts(&key, payload(&lease), create).await {
        Ok(_) => {}
        Err(object_store::Error::AlreadyExists { .. }) => {
            let holder = read_lease(&*store, job, &key).await?.map(|l| l.0.owner);
            return Err(LockError::LostRace {
                job: job.to_owned(),
                key: key.to_string(),
                owner: holder.unwrap_or_else(|| "unknown".to_owned()),
            });
        }
        Err(e) => return Err(store_err("create", e)),
    }
    // See the module doc: another taker may have deleted our fresh lease.
    tokio::time::sleep(TAKEOVER_SETTLE).await;
    match read_lease(&*store, job, &key).await? {
        Some((l, _, _)) if l.owner == owner => {
            Ok(start_guard(repo, job, key, owner, ttl, purpose, acquired))
        }
        other => Err(LockError::LostRace {
            job: job.to_owned(),
            key: key.to_string(),
            owner: other.map_or_else(|| "nobody (lease vanished)".to_owned(), |l| l.0.owner),
        }),
    }
}

fn start_guard(
    repo: &Repo,
    job: &str,
    key: ObjPath,
    owner: String,
    ttl: Duration,
    purpose: &str,
    acquired: DateTime<Utc>,
) -> LockGuard {
    let stop = CancellationToken::new();
    let lost = CancellationToken::new();
    tokio::spawn(renew_loop(
        repo.store.clone(),
        job.to_owned(),
        key.clone(),
        owner.clone(),
        purpose.to_owned(),
        ttl,
        acquired,
        stop.clone(),
        lost.clone(),
    ));
    tracing::debug!(job, %owner, "lock acquired");
    LockGuard {
        store: repo.store.clone(),
        job: job.to_owned(),
        key,
        owner,
        stop,
        lost,
        released: false,
    }
}

#[allow(clippy::too_many_arguments)]
async fn renew_loop(
    store: Arc<dyn ObjectStore>,
    job: String,
    key: ObjPath,
    owner: String,
    purpose: String,
    ttl: Duration,
    acquired: DateTime<Utc>,
    stop: CancellationToken,
    lost: CancellationToken,
) {
    let every = (ttl / 3).max(Duration::from_millis(100));
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match renew_once(&*store, &job, &key, &owner, &purpose, ttl, acquired).await {
            Ok(true) => last_ok = tokio::time::Instant::now(),
            Ok(false) => {
                tracing::error!(job = %job, "lock was taken over by another owner while the job ran");
                lost.cancel();
                return;
            }
            Err(e) => {
                tracing::warn!(job = %job, error = %e, "could not renew lock; will try again");
                if last_ok.elapsed() >= ttl {
                    tracing::error!(job = %job, "lock expired without renewal");
                    lost.cancel();
                    return;
                }
            }
        }
    }
}

/// Returns `Ok(false)` when the lease belongs to someone else now.
async fn renew_once(
    store: &dyn ObjectStore,
    job: &str,
    key: &ObjPath,
    owner: &str,
    purpose: &str,
    ttl: Duration,
    acquired: DateTime<Utc>,
) -> Result<bool, LockError> {
    let Some((current, _, version)) = read_lease(store, job, key).await? else {
        return Ok(false);
    };
    if current.owner != owner {
        return Ok(false);
    }
    let lease = lease_for(owner, purpose, ttl, acquired);
    let err = |source| LockError::Store {
        job: job.to_owned(),
        key: key.to_string(),
        what: "renew",
        source,
    };
    let conditional = PutOptions::from(PutMode::Update(version));
    match store.put_opts(key, payload(&lease), conditional).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::Precondition { .. }) => Ok(false),
        Err(object_store::Error::NotImplemented { .. })
        | Err(object_store::Error::NotSupported { .. }) => {
            // Ownership was checked just above; see the module doc.
            store
                .put_opts(key, payload(&lease), PutOptions::from(PutMode::Overwrite))
                .await
                .map(|_| true)
                .map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}

/// Takes the lock of `job`, retrying transient store errors. When the lease
/// is held by someone else, polls until `wait` has passed (zero: fail at
/// once), calling `on_wait` each time it finds it held.
pub async fn acquire(
    repo: &Repo,
    job: &str,
    ttl: Duration,
    purpose: &str,
    wait: Duration,
    mut on_wait: impl FnMut(&LockError),
) -> Result<LockGuard, LockError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let r = retry::retry_if(
            Backoff::STORE,
            "lock acquisition",
            |e: &LockError| match e {
                LockError::Store { source, .. } => retry::classify(source),
                _ => Class::Permanent,
            },
            || try_acquire(repo, job, ttl, purpose),
        )
        .await;
        match r {
            Err(e) if e.is_held() => {
                on_wait(&e);
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return Err(e);
                }
                let pause = (ttl / 6)
                    .clamp(Duration::from_millis(200), Duration::from_secs(10))
                    .min(deadline - now);
                tokio::time::sleep(pause).await;
            }
            other => return other,
        }
    }
}

/// Reads the current lease of `job`, if any (for status output and tests).
pub async fn current(repo: &Repo, job: &str) -> Result<Option<Lease>, LockError> {
    Ok(read_lease(&*repo.store, job, &lease_path(job))
        .await?
        .map(|(l, _, _)| l))
}

/// Writes a lease as another owner would (tests and tooling).
pub fn lease_json(owner: &str, host: &str, expires: DateTime<Utc>) -> Vec<u8> {
    let l = Lease {
        owner: owner.to_owned(),
        host: host.to_owned(),
        pid: 1,
        purpose: "backup".to_owned(),
        acquired: rfc3339(Utc::now()),
        expires: rfc3339(expires),
    };
    serde_json::to_vec(&l).unwrap_or_default()
}

//! Repository lock: a lease object per job, so two writers (the daemon and a
//! manual `run-now`, or two sidecars pointed at one bucket) never back up or
//! prune the same job at the same time.
//!
//! The lease lives at `locks/<job>.json` (outside the job's backup
//! directory, so catalog listings never see it) and holds the owner ID,
//! host, pid, purpose, and acquired/expires times in RFC 3339, plus the
//! boot ID, PID namespace and process start time that let a later run on
//! the same host tell that the holder is gone ([`liveness`]). Those three
//! are optional when read: a lease without them only expires.
//!
//! The store is untrusted: a lease is read up to [`MAX_LEASE_BYTES`], and
//! one that is larger, not JSON, or has no valid expiry counts as held by
//! an unknown owner for [`UNREADABLE_HOLD`] after it was written (time
//! enough for whatever wrote it, e.g. a newer ccbackup, to finish), never
//! as free. Strings from a lease are shown with control characters
//! escaped.
//!
//! # Protocol and its races
//!
//! * **Acquire**: a create-only put (`PutMode::Create`). It is atomic on
//!   S3 (`If-None-Match: *`), Azure, GCS and the local file system, so of two
//!   writers exactly one wins.
//! * **Held**: if the lease exists and has not expired, acquisition fails
//!   with its owner, host and expiry (the caller decides whether to wait).
//! * **Take over**: an expired lease, or one whose holder ran on this host
//!   and is provably gone (killed, OOM, container restarted: see
//!   [`liveness`]), is deleted, then created again with a
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

mod lease;
pub mod liveness;

/// The lease parser, for the fuzz targets and their smoke tests.
pub use lease::{parse_lease, Content as LeaseContent, MAX_LEASE_LIFE};

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::error::chain;
use crate::repo::store::Repo;
use crate::retry::{self, Backoff, Class, Transient};
use lease::read_found;
pub use lease::{shown, Content, Found, Lease, Standing, MAX_LEASE_BYTES, UNREADABLE_HOLD};

/// How long a taker waits before checking that its takeover stuck.
pub const TAKEOVER_SETTLE: Duration = Duration::from_millis(500);

/// Releases started by dropped guards; see [`wait_pending_releases`].
pub static PENDING: LazyLock<TaskTracker> = LazyLock::new(TaskTracker::new);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("job `{job}` is locked by {holder} until {until} ({state}); lease {key}. {hint}")]
    Held {
        job: String,
        key: String,
        /// Who holds it, safe to print.
        holder: String,
        until: String,
        /// Why it is not taken over: live here, or not ours to check.
        state: String,
        hint: String,
    },
    #[error("job `{job}`: lost the takeover of the stale lease {key} to {owner}")]
    LostRace {
        job: String,
        key: String,
        owner: String,
    },
    #[error("job `{job}`: cannot {what} lease {key}")]
    Store {
        job: String,
        key: String,
        what: &'static str,
        source: object_store::Error,
    },
}

impl Transient for LockError {
    fn class(&self) -> Class {
        match self {
            LockError::Store { source, .. } => source.class(),
            // Contention is waited for by its own loop, not retried.
            LockError::Held { .. } | LockError::LostRace { .. } => Class::Permanent,
        }
    }
}

impl LockError {
    /// Lock contention is not a store failure: the daemon counts it apart.
    pub fn is_held(&self) -> bool {
        matches!(self, LockError::Held { .. } | LockError::LostRace { .. })
    }
}

fn held_error(job: &str, key: &ObjPath, found: &Found, standing: &Standing) -> LockError {
    let (state, hint) = match standing {
        Standing::AliveHere => (
            "a live process on this host".to_owned(),
            format!(
                "Wait for it (`ccbackup run-now --wait-lock 10m`), or stop it; \
                 `ccbackup unlock --job {job} --force` removes the lease anyway"
            ),
        ),
        Standing::Unverifiable(why) => (
            format!("{why}; cannot check whether it still runs"),
            format!(
                "Wait for it (`ccbackup run-now --wait-lock 10m`); if that holder is gone, \
                 remove the lease with `ccbackup unlock --job {job} --force`"
            ),
        ),
        Standing::Expired | Standing::Dead(_) | Standing::Impossible(_) => (
            "stale".to_owned(),
            format!("Remove it with `ccbackup unlock --job {job}`"),
        ),
    };
    LockError::Held {
        job: job.to_owned(),
        key: key.to_string(),
        holder: found.describe(),
        until: rfc3339(found.expires_at()),
        state,
        hint,
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
    format!("{}-{}-{r:016x}", crate::sys::hostname(), std::process::id())
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
                        tracing::warn!(error = %chain(&e), "could not release lock of a cancelled run");
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

async fn release_lease(
    store: &dyn ObjectStore,
    job: &str,
    key: &ObjPath,
    owner: &str,
) -> Result<(), LockError> {
    let Some(found) = read_found(store, job, key).await? else {
        return Ok(());
    };
    if found.owner() == Some(owner) {
        return delete_lease(store, job, key, "delete").await;
    }
    tracing::warn!(job, holder = %found.describe(), "lock was taken over before release; leaving it");
    Ok(())
}

async fn delete_lease(
    store: &dyn ObjectStore,
    job: &str,
    key: &ObjPath,
    what: &'static str,
) -> Result<(), LockError> {
    match store.delete(key).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(source) => Err(LockError::Store {
            job: job.to_owned(),
            key: key.to_string(),
            what,
            source,
        }),
    }
}

fn lease_for(
    owner: &str,
    purpose: &str,
    ttl: Duration,
    acquired: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Lease {
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(120));
    let here = liveness::here();
    Lease {
        owner: owner.to_owned(),
        host: here.host.clone(),
        pid: here.pid,
        purpose: purpose.to_owned(),
        acquired: rfc3339(acquired),
        expires: rfc3339(now + ttl),
        boot_id: here.boot_id.clone(),
        pid_ns: here.pid_ns,
        start_time: here.start_time,
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
    let acquired = repo.clock.now();
    let lease = lease_for(&owner, purpose, ttl, acquired, acquired);
    let create = PutOptions::from(PutMode::Create);
    let store_err = |what, source| LockError::Store {
        job: job.to_owned(),
        key: key.to_string(),
        what,
        source,
    };
    let lost_race = |holder: Option<Found>| LockError::LostRace {
        job: job.to_owned(),
        key: key.to_string(),
        owner: holder.map_or_else(|| "unknown".to_owned(), |f| f.describe()),
    };

    match store.put_opts(&key, payload(&lease), create.clone()).await {
        Ok(_) => return Ok(start_guard(repo, job, key, owner, ttl, purpose, acquired)),
        Err(object_store::Error::AlreadyExists { .. }) => {}
        Err(e) => return Err(store_err("create", e)),
    }

    let Some(current) = read_found(&*store, job, &key).await? else {
        // Released between our put and our read: one more create-only try.
        return match store.put_opts(&key, payload(&lease), create).await {
            Ok(_) => Ok(start_guard(repo, job, key, owner, ttl, purpose, acquired)),
            Err(object_store::Error::AlreadyExists { .. }) => {
                Err(lost_race(read_found(&*store, job, &key).await?))
            }
            Err(e) => Err(store_err("create", e)),
        };
    };
    match current.standing(repo.clock.now(), repo.max_clock_skew) {
        Standing::Impossible(why) => {
            tracing::warn!(job, holder = %current.describe(), reason = %why, "taking over a lease ccbackup cannot have written");
        }
        Standing::Expired => {
            tracing::warn!(job, stale = %current.describe(), expired = %rfc3339(current.expires_at()), "taking over an expired lock");
        }
        Standing::Dead(why) => {
            tracing::warn!(job, dead_holder = %current.describe(), reason = %why, "taking over the lock of a holder that is gone");
        }
        held => return Err(held_error(job, &key, &current, &held)),
    }

    delete_lease(&*store, job, &key, "delete stale").await?;
    match store.put_opts(&key, payload(&lease), create).await {
        Ok(_) => {}
        Err(object_store::Error::AlreadyExists { .. }) => {
            return Err(lost_race(read_found(&*store, job, &key).await?));
        }
        Err(e) => return Err(store_err("create", e)),
    }
    // See the module doc: another taker may have deleted our fresh lease.
    tokio::time::sleep(TAKEOVER_SETTLE).await;
    match read_found(&*store, job, &key).await? {
        Some(f) if f.owner() == Some(owner.as_str()) => {
            Ok(start_guard(repo, job, key, owner, ttl, purpose, acquired))
        }
        Some(f) => Err(lost_race(Some(f))),
        None => Err(LockError::LostRace {
            job: job.to_owned(),
            key: key.to_string(),
            owner: "nobody (lease vanished)".to_owned(),
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
        repo.clock.clone(),
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
    clock: Clock,
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
        let lease = lease_for(&owner, &purpose, ttl, acquired, clock.now());
        match renew_once(&*store, &job, &key, &owner, &lease).await {
            Ok(true) => last_ok = tokio::time::Instant::now(),
            Ok(false) => {
                tracing::error!(job = %job, "lock was taken over by another owner while the job ran");
                lost.cancel();
                return;
            }
            Err(e) => {
                tracing::warn!(job = %job, error = %chain(&e), "could not renew lock; will try again");
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
    lease: &Lease,
) -> Result<bool, LockError> {
    let Some(current) = read_found(store, job, key).await? else {
        return Ok(false);
    };
    if current.owner() != Some(owner) {
        return Ok(false);
    }
    let version = current.version;
    let err = |source| LockError::Store {
        job: job.to_owned(),
        key: key.to_string(),
        what: "renew",
        source,
    };
    let conditional = PutOptions::from(PutMode::Update(version));
    match store.put_opts(key, payload(lease), conditional).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::Precondition { .. }) => Ok(false),
        Err(object_store::Error::NotImplemented { .. })
        | Err(object_store::Error::NotSupported { .. }) => {
            // Ownership was checked just above; see the module doc.
            store
                .put_opts(key, payload(lease), PutOptions::from(PutMode::Overwrite))
                .await
                .map(|_| true)
                .map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}

/// Takes the lock of `job`, retrying transient store errors. When the lease
/// is held by someone else, polls until `wait` has passed (zero: fail at
/// once), calling `on_wait` each time it finds it held. A lease whose
/// holder is gone (see [`liveness`]) is taken over at once.
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
        // Nothing cancels an acquisition but the caller dropping it.
        let r = retry::retry(
            Backoff::STORE,
            "lock acquisition",
            &CancellationToken::new(),
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

/// Reads the current lease of `job`, if there is a readable one (for
/// status output and tests; [`inspect`] also reports unreadable ones).
pub async fn current(repo: &Repo, job: &str) -> Result<Option<Lease>, LockError> {
    let found = read_found(&*repo.store, job, &lease_path(job)).await?;
    Ok(found.and_then(|f| match f.content {
        Content::Lease(l) => Some(l),
        Content::Unreadable(_) => None,
    }))
}

/// The lease of `job` as stored, and whether it may be taken over now.
pub async fn inspect(repo: &Repo, job: &str) -> Result<Option<(Found, Standing)>, LockError> {
    let found = read_found(&*repo.store, job, &lease_path(job)).await?;
    Ok(found.map(|f| {
        let standing = f.standing(repo.clock.now(), repo.max_clock_skew);
        (f, standing)
    }))
}

/// Deletes the lease of `job` if it is still the one `seen` by [`inspect`]
/// (same content and version); returns false when it changed or vanished
/// meanwhile, and leaves it. object_store has no conditional delete, so
/// this narrows the window to one request rather than closing it.
pub async fn remove(repo: &Repo, job: &str, seen: &Found) -> Result<bool, LockError> {
    let key = lease_path(job);
    let Some(now) = read_found(&*repo.store, job, &key).await? else {
        return Ok(false);
    };
    if now.content != seen.content || now.version.e_tag != seen.version.e_tag {
        return Ok(false);
    }
    delete_lease(&*repo.store, job, &key, "delete").await?;
    Ok(true)
}

/// Writes a lease as another owner would (tests and tooling).
pub fn lease_json(owner: &str, host: &str, expires: DateTime<Utc>) -> Vec<u8> {
    let l = Lease {
        owner: owner.to_owned(),
        host: host.to_owned(),
        pid: 1,
        purpose: "backup".to_owned(),
        // Shown, never judged (only `expires` decides), so the system
        // clock is good enough even for a test on paused time.
        acquired: rfc3339(Utc::now()),
        expires: rfc3339(expires),
        boot_id: None,
        pid_ns: None,
        start_time: None,
    };
    serde_json::to_vec(&l).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_leases_record_this_process() {
        let now = Utc::now();
        let l = lease_for("o", "backup", Duration::from_secs(60), now, now);
        assert_eq!(l.pid, std::process::id());
        assert!(l.boot_id.is_some() && l.start_time.is_some() && l.pid_ns.is_some());
        let back: Lease = serde_json::from_slice(&serde_json::to_vec(&l).unwrap()).unwrap();
        assert_eq!(back, l);
        assert_eq!(
            liveness::judge(&l, liveness::here(), liveness::probe),
            liveness::Verdict::Alive
        );
    }
}

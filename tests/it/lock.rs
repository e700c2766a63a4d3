//! Repository lease lock against a real file:// store: contention, expiry
//! takeover, release, and retries through a store that fails first.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ccbackup::lock::{self, LockError};
use ccbackup::store::{self, Repo};
use chrono::Utc;
use futures::stream::BoxStream;
use object_store::path::Path as ObjPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use crate::support::Workspace;

pub fn open_repo(ws: &Workspace) -> Repo {
    let cfg = ccbackup::config::parse(
        &format!(
            "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n      - name: etc\n        files: {{path: /tmp}}\n",
            ws.store_url()
        ),
        &ws.path().join("config.yaml"),
    )
    .unwrap();
    store::open(&cfg.store).unwrap()
}

/// A store whose first `fail_first` calls fail with a transient error
/// (connection reset), then behaves like the store it wraps.
#[derive(Debug)]
pub struct Flaky {
    pub inner: Arc<dyn ObjectStore>,
    pub fail_first: usize,
    pub calls: AtomicUsize,
}

impl Flaky {
    pub fn wrap(inner: Arc<dyn ObjectStore>, fail_first: usize) -> Arc<Flaky> {
        Arc::new(Flaky {
            inner,
            fail_first,
            calls: AtomicUsize::new(0),
        })
    }

    fn check(&self) -> object_store::Result<()> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.fail_first {
            Err(object_store::Error::Generic {
                store: "flaky",
                source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            })
        } else {
            Ok(())
        }
    }
}

impl std::fmt::Display for Flaky {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Flaky({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Flaky {
    async fn put_opts(
        &self,
        location: &ObjPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.check()?;
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &ObjPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.check()?;
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &ObjPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.check()?;
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjPath>> {
        self.inner.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&ObjPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.check() {
            Ok(()) => self.inner.list(prefix),
            Err(e) => Box::pin(futures::stream::once(async move { Err(e) })),
        }
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjPath>,
    ) -> object_store::Result<ListResult> {
        self.check()?;
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &ObjPath,
        to: &ObjPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.check()?;
        self.inner.copy_opts(from, to, options).await
    }
}

/// Writes another owner's lease for `job`, expiring at `expires`.
pub async fn plant_lease(repo: &Repo, job: &str, owner: &str, expires: chrono::DateTime<Utc>) {
    repo.store
        .put(
            &lock::lease_path(job),
            lock::lease_json(owner, "other-host", expires).into(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn second_owner_is_refused_with_holder_and_expiry_then_gets_it_after_release() {
    let ws = Workspace::new();
    let repo = open_repo(&ws);
    let ttl = Duration::from_secs(30);
    let first = lock::acquire(&repo, "j", ttl, "backup", Duration::ZERO, |_| {})
        .await
        .unwrap();
    let mut waits = 0;
    let err = lock::acquire(&repo, "j", ttl, "backup", Duration::ZERO, |_| waits += 1)
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Held { .. }), "{err}");
    assert_eq!(waits, 1);
    let msg = err.to_string();
    assert!(msg.contains(first.owner()), "{msg}");
    assert!(msg.contains("until 20"), "{msg}");

    first.release().await.unwrap();
    assert!(lock::current(&repo, "j").await.unwrap().is_none());
    let second = lock::acquire(&repo, "j", ttl, "prune", Duration::ZERO, |_| {})
        .await
        .unwrap();
    let lease = lock::current(&repo, "j").await.unwrap().unwrap();
    assert_eq!(lease.owner, second.owner());
    assert_eq!(lease.purpose, "prune");
    second.release().await.unwrap();
}

#[tokio::test]
async fn unexpired_foreign_lease_is_respected_and_expired_one_taken_over() {
    let ws = Workspace::new();
    let repo = open_repo(&ws);
    let ttl = Duration::from_secs(30);
    plant_lease(
        &repo,
        "j",
        "other-sidecar",
        Utc::now() + chrono::Duration::hours(1),
    )
    .await;
    let err = lock::acquire(&repo, "j", ttl, "backup", Duration::ZERO, |_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("other-sidecar"), "{err}");
    assert_eq!(
        lock::current(&repo, "j").await.unwrap().unwrap().owner,
        "other-sidecar"
    );

    plant_lease(
        &repo,
        "j",
        "crashed-sidecar",
        Utc::now() - chrono::Duration::seconds(5),
    )
    .await;
    let g = lock::acquire(&repo, "j", ttl, "backup", Duration::ZERO, |_| {})
        .await
        .unwrap();
    assert_eq!(
        lock::current(&repo, "j").await.unwrap().unwrap().owner,
        g.owner()
    );
    g.release().await.unwrap();
}

#[tokio::test]
async fn waiting_acquirer_gets_the_lock_when_the_holder_releases() {
    let ws = Workspace::new();
    let repo = open_repo(&ws);
    let ttl = Duration::from_secs(3);
    let first = lock::acquire(&repo, "j", ttl, "backup", Duration::ZERO, |_| {})
        .await
        .unwrap();
    let repo2 = repo.clone();
    let waiter = tokio::spawn(async move {
        let mut waits = 0u32;
        let g = lock::acquire(&repo2, "j", ttl, "backup", Duration::from_secs(20), |_| {
            waits += 1
        })
        .await;
        (g, waits)
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    first.release().await.unwrap();
    let (g, waits) = waiter.await.unwrap();
    let g = g.unwrap();
    assert!(waits >= 1);
    g.release().await.unwrap();
}

#[tokio::test]
async fn lease_is_renewed_while_held() {
    let ws = Workspace::new();
    let repo = open_repo(&ws);
    let ttl = Duration::from_secs(3);
    let g = lock::acquire(&repo, "j", ttl, "backup", Duration::ZERO, |_| {})
        .await
        .unwrap();
    let first = lock::current(&repo, "j").await.unwrap().unwrap().expires;
    // Past the original expiry: renewals (every second) keep it ours.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let later = lock::current(&repo, "j").await.unwrap().unwrap();
    assert_eq!(later.owner, g.owner());
    assert!(later.expires > first, "{} !> {first}", later.expires);
    assert!(!g.lost().is_cancelled());
    let err = lock::acquire(&repo, "j", ttl, "backup", Duration::ZERO, |_| {})
        .await
        .unwrap_err();
    assert!(err.is_held());
    g.release().await.unwrap();
}

#[tokio::test]
async fn transient_store_failures_are_retried_during_acquisition() {
    let ws = Workspace::new();
    let mut repo = open_repo(&ws);
    let flaky = Flaky::wrap(repo.store.clone(), 3);
    repo.store = flaky.clone();
    let g = lock::acquire(
        &repo,
        "j",
        Duration::from_secs(30),
        "backup",
        Duration::ZERO,
        |_| {},
    )
    .await
    .unwrap();
    assert!(flaky.calls.load(Ordering::SeqCst) >= 4);
    g.release().await.unwrap();

    // A permanent failure is not retried.
    let flaky = Arc::new(Flaky {
        inner: Arc::new(Denied),
        fail_first: 0,
        calls: AtomicUsize::new(0),
    });
    repo.store = flaky.clone();
    let err = lock::acquire(
        &repo,
        "j",
        Duration::from_secs(30),
        "backup",
        Duration::ZERO,
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(!err.is_held(), "{err}");
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 1);
}

/// A store that refuses everything with "permission denied".
#[derive(Debug)]
struct Denied;

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Denied")
    }
}

fn denied() -> object_store::Error {
    object_store::Error::PermissionDenied {
        path: "x".into(),
        source: "no".into(),
    }
}

#[async_trait]
impl ObjectStore for Denied {
    async fn put_opts(
        &self,
        _: &ObjPath,
        _: PutPayload,
        _: PutOptions,
    ) -> object_store::Result<PutResult> {
        Err(denied())
    }
    async fn put_multipart_opts(
        &self,
        _: &ObjPath,
        _: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(denied())
    }
    async fn get_opts(&self, _: &ObjPath, _: GetOptions) -> object_store::Result<GetResult> {
        Err(denied())
    }
    fn delete_stream(
        &self,
        _: BoxStream<'static, object_store::Result<ObjPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjPath>> {
        Box::pin(futures::stream::once(async { Err(denied()) }))
    }
    fn list(&self, _: Option<&ObjPath>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        Box::pin(futures::stream::once(async { Err(denied()) }))
    }
    async fn list_with_delimiter(&self, _: Option<&ObjPath>) -> object_store::Result<ListResult> {
        Err(denied())
    }
    async fn copy_opts(
        &self,
        _: &ObjPath,
        _: &ObjPath,
        _: CopyOptions,
    ) -> object_store::Result<()> {
        Err(denied())
    }
}

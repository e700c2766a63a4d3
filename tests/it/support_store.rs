//! The one fault-injecting object store of the tests: it wraps a real
//! store and asks a rule before every call whether to fail it, so a test
//! states its fault ("every delete of a manifest is denied", "the first
//! three calls reset") instead of implementing the `ObjectStore` trait.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path as ObjPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// A call the store was asked to make. A delete is asked once per key; a
/// listing with its prefix (the empty path for none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Put,
    PutMultipart,
    Get,
    Delete,
    List,
    Copy,
}

/// Decides one call: `Ok` passes it to the real store. Gets the call's
/// number (from 0, in the order calls reached the store).
type Rule = dyn Fn(Op, &ObjPath, usize) -> object_store::Result<()> + Send + Sync;
/// Runs after a call the real store made (whatever its result).
type After = dyn Fn(Op, &ObjPath) + Send + Sync;

/// Cheap to share: the delete stream outlives the call that made it and
/// keeps the parts alive. `calls` and `broken` are reached through it.
pub struct FaultyStore(Arc<Parts>);

pub struct Parts {
    inner: Arc<dyn ObjectStore>,
    rule: Box<Rule>,
    after: Option<Box<After>>,
    /// Calls that reached this store, failed or not.
    pub calls: AtomicUsize,
    /// While set, every call fails with a connection reset (transient).
    pub broken: AtomicBool,
}

/// A transient failure, as a dropped connection gives.
pub fn reset() -> object_store::Error {
    object_store::Error::Generic {
        store: "faulty",
        source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
    }
}

/// A permanent refusal of `path` saying `why`, as S3's `AccessDenied`.
pub fn denied(path: &ObjPath, why: &str) -> object_store::Error {
    object_store::Error::PermissionDenied {
        path: path.to_string(),
        source: why.to_owned().into(),
    }
}

impl FaultyStore {
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        rule: impl Fn(Op, &ObjPath, usize) -> object_store::Result<()> + Send + Sync + 'static,
    ) -> FaultyStore {
        FaultyStore(Arc::new(Parts {
            inner,
            rule: Box::new(rule),
            after: None,
            calls: AtomicUsize::new(0),
            broken: AtomicBool::new(false),
        }))
    }

    /// Passes every call on (until `broken` is set).
    pub fn passing(inner: Arc<dyn ObjectStore>) -> FaultyStore {
        FaultyStore::new(inner, |_, _, _| Ok(()))
    }

    /// The first `n` calls fail with a transient error, later ones pass.
    pub fn failing_first(inner: Arc<dyn ObjectStore>, n: usize) -> Arc<FaultyStore> {
        Arc::new(FaultyStore::new(inner, move |_, _, i| {
            if i < n {
                Err(reset())
            } else {
                Ok(())
            }
        }))
    }

    /// A store that refuses everything, permanently.
    pub fn denying_everything() -> Arc<FaultyStore> {
        Arc::new(FaultyStore::new(
            Arc::new(object_store::memory::InMemory::new()),
            |_, p, _| Err(denied(p, "no")),
        ))
    }

    /// Runs `f` after each call the real store made.
    pub fn after(mut self, f: impl Fn(Op, &ObjPath) + Send + Sync + 'static) -> FaultyStore {
        Arc::get_mut(&mut self.0)
            .expect("set before the store is shared")
            .after = Some(Box::new(f));
        self
    }
}

impl std::ops::Deref for FaultyStore {
    type Target = Parts;
    fn deref(&self) -> &Parts {
        &self.0
    }
}

impl Parts {
    fn check(&self, op: Op, path: &ObjPath) -> object_store::Result<()> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.broken.load(Ordering::SeqCst) {
            return Err(reset());
        }
        (self.rule)(op, path, n)
    }

    fn done(&self, op: Op, path: &ObjPath) {
        if let Some(f) = &self.after {
            f(op, path);
        }
    }
}

impl std::fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultyStore({:?})", self.inner)
    }
}

impl std::fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &ObjPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.check(Op::Put, location)?;
        let r = self.inner.put_opts(location, payload, opts).await;
        self.done(Op::Put, location);
        r
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.check(Op::PutMultipart, location)?;
        let r = self.inner.put_multipart_opts(location, opts).await;
        self.done(Op::PutMultipart, location);
        r
    }

    async fn get_opts(
        &self,
        location: &ObjPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.check(Op::Get, location)?;
        let r = self.inner.get_opts(location, options).await;
        self.done(Op::Get, location);
        r
    }

    /// One key at a time through the rule, so a test can refuse some keys
    /// of a batch and not others.
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjPath>> {
        let me = self.0.clone();
        locations
            .then(move |r| {
                let me = me.clone();
                async move {
                    let p = r?;
                    me.check(Op::Delete, &p)?;
                    let out = me.inner.delete(&p).await.map(|()| p.clone());
                    me.done(Op::Delete, &p);
                    out
                }
            })
            .boxed()
    }

    fn list(
        &self,
        prefix: Option<&ObjPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let at = prefix.cloned().unwrap_or_default();
        match self.check(Op::List, &at) {
            Ok(()) => {
                let s = self.inner.list(prefix);
                self.done(Op::List, &at);
                s
            }
            Err(e) => Box::pin(futures::stream::once(async move { Err(e) })),
        }
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjPath>,
    ) -> object_store::Result<ListResult> {
        let at = prefix.cloned().unwrap_or_default();
        self.check(Op::List, &at)?;
        let r = self.inner.list_with_delimiter(prefix).await;
        self.done(Op::List, &at);
        r
    }

    async fn copy_opts(
        &self,
        from: &ObjPath,
        to: &ObjPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.check(Op::Copy, to)?;
        let r = self.inner.copy_opts(from, to, options).await;
        self.done(Op::Copy, to);
        r
    }
}

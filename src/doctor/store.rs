//! A store as a backup uses it: list the job's prefix, then write, read
//! back and delete a small probe object under it.

use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rand::Rng;

use super::{bounded, timed_out, About, Check};
use crate::error::chain;
use crate::repo::store::{self, StoreSpec};

const PROBE: &[u8] = b"ccbackup doctor probe: safe to delete\n";

pub(super) async fn check(
    job_cfg: &crate::config::JobConfig,
    label: &str,
    spec: &StoreSpec,
) -> Vec<Check> {
    let job = job_cfg.name.as_str();
    let about = About::new(job, format!("{label} {}", store::display_url(&spec.url)));
    let hint = "check store.url, store.options and the credentials; for S3 the bucket must exist";
    let repo = match store::open(spec) {
        Ok(r) => r,
        Err(e) => return vec![about.fail("open", chain(&e).to_string(), hint)],
    };
    let mut out = Vec::new();
    let prefix = ObjPath::from(job);
    match bounded(repo.store.list_with_delimiter(Some(&prefix))).await {
        Some(Ok(l)) => out.push(about.ok(
            "list",
            format!(
                "{} entries under {job}/",
                l.common_prefixes.len() + l.objects.len()
            ),
        )),
        Some(Err(e)) => {
            out.push(about.fail("list", chain(&e).to_string(), hint));
            return out;
        }
        None => {
            out.push(about.fail("list", timed_out(), hint));
            return out;
        }
    }
    let name = format!("doctor-probe-{:016x}", rand::rng().random::<u64>());
    let key = prefix.clone().join(name.as_str());
    out.push(match bounded(probe(repo.store.as_ref(), &key)).await {
        Some(Ok(())) => about.ok(
            "write, read back, delete",
            format!("{} bytes at {job}/{name}", PROBE.len()),
        ),
        Some(Err(e)) => about.fail(
            "write, read back, delete",
            e,
            "the credentials need permission to put, get and delete objects under the prefix",
        ),
        None => about.fail(
            "write, read back, delete",
            timed_out(),
            "check the store's endpoint and network",
        ),
    });
    out.push(match &repo.s3 {
        Some(s3) => match bounded(s3.versioning()).await {
            Some(Ok(state)) => about.info("versioning", s3_versioning(state.as_deref())),
            Some(Err(e)) => about.info("versioning", format!("cannot tell: {}", chain(&e))),
            None => about.info("versioning", format!("cannot tell: {}", timed_out())),
        },
        None => about.info("versioning", versioning(&spec.url)),
    });
    if let Some(s3) = &repo.s3 {
        let mut enabled = None;
        out.push(match bounded(s3.object_lock()).await {
            Some(Ok(lock)) => {
                enabled = Some(lock.as_ref().is_some_and(|l| l.enabled));
                about.info("object lock", s3_object_lock(lock.as_ref()))
            }
            Some(Err(e)) => about.info("object lock", format!("cannot tell: {}", chain(&e))),
            None => about.info("object lock", format!("cannot tell: {}", timed_out())),
        });
        if let Some(lock) = spec.object_lock {
            let policy = job_cfg.retention.as_ref();
            out.extend(super::immutable::check(&about, &repo, lock, enabled, job, policy).await);
        }
    }
    out
}

fn s3_object_lock(lock: Option<&crate::repo::s3_uploads::ObjectLock>) -> String {
    match lock {
        Some(l) if l.enabled => match &l.default_retention {
            Some((mode, period)) => format!(
                "Enabled, default retention {mode} for {period}: locked versions cannot be deleted or shortened with the store's key"
            ),
            None => "Enabled, no default retention: objects are locked only if a retention is set on them".to_owned(),
        },
        _ => "not enabled: whoever holds the store's key can delete every backup for good (see the threat model)".to_owned(),
    }
}

fn s3_versioning(state: Option<&str>) -> String {
    match state {
        Some("Enabled") => {
            "Enabled: overwritten and deleted objects keep their old versions".to_owned()
        }
        Some(other) => format!("{other}: new writes keep no old versions"),
        None => "never enabled: a deleted or overwritten object is gone".to_owned(),
    }
}

async fn probe(store: &dyn ObjectStore, key: &ObjPath) -> Result<(), String> {
    store
        .put(key, PutPayload::from_static(PROBE))
        .await
        .map_err(|e| format!("write: {}", chain(&e)))?;
    let read = async {
        let got = store.get(key).await?.bytes().await?;
        Ok::<_, object_store::Error>(got)
    }
    .await;
    // Delete even when the read failed: the probe must not stay behind.
    let deleted = store.delete(key).await;
    let got = read.map_err(|e| format!("read back: {}", chain(&e)))?;
    if got.as_ref() != PROBE {
        return Err(format!(
            "read back {} bytes that differ from the {} written",
            got.len(),
            PROBE.len()
        ));
    }
    deleted.map_err(|e| format!("delete: {}", chain(&e)))
}

/// What can be said about keeping old versions of a store ccbackup cannot
/// ask (only S3 is asked, through its own API).
fn versioning(url: &url::Url) -> &'static str {
    match url.scheme() {
        "file" => "a file:// store keeps no versions: a deleted or overwritten object is gone",
        _ => "not checked: ask the provider whether versioning or object lock is on for the container",
    }
}

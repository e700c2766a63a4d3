//! What a lease holds, how one is read from the (untrusted) store, and
//! whether a found lease may be taken over.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{GetResult, ObjectStore, ObjectStoreExt, UpdateVersion};
use serde::{Deserialize, Serialize};

use super::liveness::{self, Verdict};
use super::LockError;

/// Larger lease objects are not read (a lease is a few hundred bytes).
pub const MAX_LEASE_BYTES: usize = 64 * 1024;

/// How long after it was written an unreadable lease counts as held.
pub const UNREADABLE_HOLD: Duration = Duration::from_secs(3600);

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
    /// `/proc/sys/kernel/random/boot_id` of the holder's kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// Inode of the holder's PID namespace (`/proc/self/ns/pid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<u64>,
    /// Field 22 of `/proc/<pid>/stat`: clock ticks since boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
}

impl Lease {
    fn expires_at(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.expires)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// `OWNER on HOST (pid N, PURPOSE)`, safe to print.
    pub fn describe(&self) -> String {
        format!(
            "{} on {} (pid {}, {})",
            shown(&self.owner),
            shown(&self.host),
            self.pid,
            shown(&self.purpose)
        )
    }
}

/// Longest a lease counts after its last write, whatever it claims: far
/// above any `lock_ttl` in use (renewals rewrite it every third of that).
pub const MAX_LEASE_LIFE: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// A lease object as found in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Lease(Lease),
    /// Not a lease we can read; the text says why (safe to print).
    Unreadable(String),
}

/// A lease object and what the store says about it.
#[derive(Debug, Clone)]
pub struct Found {
    pub content: Content,
    pub modified: DateTime<Utc>,
    pub(super) version: UpdateVersion,
}

impl Found {
    pub(super) fn owner(&self) -> Option<&str> {
        match &self.content {
            Content::Lease(l) => Some(&l.owner),
            Content::Unreadable(_) => None,
        }
    }

    /// When the lease stops counting (an unreadable one: a while after it
    /// was written).
    pub fn expires_at(&self) -> DateTime<Utc> {
        let unreadable =
            || self.modified + chrono::Duration::from_std(UNREADABLE_HOLD).unwrap_or_default();
        match &self.content {
            // A lease is renewed long before it expires, so the store's own
            // write time bounds it: a forged `expires: 9999-12-31` must not
            // block the job forever.
            Content::Lease(l) => l
                .expires_at()
                .map(|t| {
                    t.min(
                        self.modified
                            + chrono::Duration::from_std(MAX_LEASE_LIFE).unwrap_or_default(),
                    )
                })
                .unwrap_or_else(unreadable),
            Content::Unreadable(_) => unreadable(),
        }
    }

    /// Who holds it, safe to print.
    pub fn describe(&self) -> String {
        match &self.content {
            Content::Lease(l) => l.describe(),
            Content::Unreadable(why) => format!("an unreadable lease ({why})"),
        }
    }

    /// Why this lease cannot have been written by ccbackup on a clock
    /// within `skew` of ours, if it cannot: written (by the store's clock)
    /// or acquired in the future, or claiming an expiry beyond the longest
    /// ccbackup ever writes. Such a lease would otherwise count until a
    /// date its writer chose (the mtime of a `file://` object is anyone's
    /// to set), so it never holds a job.
    fn impossible(&self, now: DateTime<Utc>, skew: Duration) -> Option<String> {
        let skew = chrono::Duration::from_std(skew).unwrap_or_default();
        let limit = now + skew;
        let at = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        if self.modified > limit {
            return Some(format!(
                "it was written at {}, in the future",
                at(self.modified)
            ));
        }
        let Content::Lease(l) = &self.content else {
            return None;
        };
        if let Ok(acquired) = DateTime::parse_from_rfc3339(&l.acquired) {
            let acquired = acquired.with_timezone(&Utc);
            if acquired > limit {
                return Some(format!(
                    "it claims to be acquired at {}, in the future",
                    at(acquired)
                ));
            }
        }
        let longest = limit + chrono::Duration::from_std(MAX_LEASE_LIFE).unwrap_or_default();
        match l.expires_at() {
            Some(e) if e > longest => Some(format!(
                "it claims to last until {}, longer than ccbackup ever writes",
                at(e)
            )),
            _ => None,
        }
    }

    /// Whether the lease may be taken over now, and why (not). `skew` is
    /// how far ahead of `now` a time may be and still be believed.
    pub fn standing(&self, now: DateTime<Utc>, skew: Duration) -> Standing {
        if let Some(why) = self.impossible(now, skew) {
            return Standing::Impossible(why);
        }
        if self.expires_at() <= now {
            return Standing::Expired;
        }
        let Content::Lease(lease) = &self.content else {
            return Standing::Unverifiable("the lease is unreadable");
        };
        match liveness::judge(lease, liveness::here(), liveness::probe) {
            Verdict::Alive => Standing::AliveHere,
            Verdict::Dead(why) => Standing::Dead(why),
            Verdict::Unknown(why) => Standing::Unverifiable(why),
        }
    }
}

/// Whether a found lease may be taken over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Past its expiry.
    Expired,
    /// Its holder ran on this host and is gone; the text says how we know.
    Dead(String),
    /// Its times are ones ccbackup never writes (see [`Found::standing`]);
    /// the text says which.
    Impossible(String),
    /// A live process on this host holds it.
    AliveHere,
    /// Held by a process we cannot check (another host or container, an
    /// older lease, an unreadable one): it counts until it expires.
    Unverifiable(&'static str),
}

/// A string from the store, shortened, with control characters escaped so
/// it cannot forge log lines or terminal output.
pub fn shown(s: &str) -> String {
    const MAX_CHARS: usize = 120;
    let mut out: String = s
        .chars()
        .take(MAX_CHARS)
        .flat_map(|c| {
            let esc: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            esc
        })
        .collect();
    if s.chars().nth(MAX_CHARS).is_some() {
        out.push_str("...");
    }
    out
}

pub(super) async fn read_found(
    store: &dyn ObjectStore,
    job: &str,
    key: &ObjPath,
) -> Result<Option<Found>, LockError> {
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
    let content = match read_capped(got).await {
        Ok(Some(bytes)) => parse_lease(&bytes),
        Ok(None) => Content::Unreadable(format!(
            "larger than the {} KiB a lease may have",
            MAX_LEASE_BYTES / 1024
        )),
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(err("read", e)),
    };
    Ok(Some(Found {
        content,
        modified,
        version,
    }))
}

/// The object's bytes, or `None` once it passes [`MAX_LEASE_BYTES`]
/// (whatever size the store claimed).
async fn read_capped(got: GetResult) -> object_store::Result<Option<Vec<u8>>> {
    if got.meta.size > MAX_LEASE_BYTES as u64 {
        return Ok(None);
    }
    let mut stream = got.into_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if buf.len() + chunk.len() > MAX_LEASE_BYTES {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf))
}

/// Reads a lease object's bytes (untrusted: written by whoever can write
/// to the store); anything that is not a ccbackup lease is `Unreadable`.
pub fn parse_lease(bytes: &[u8]) -> Content {
    match serde_json::from_slice::<Lease>(bytes) {
        // serde's message may quote the object's text: escape it.
        Err(e) => Content::Unreadable(format!("not a ccbackup lease: {}", shown(&e.to_string()))),
        Ok(l) if l.expires_at().is_none() => Content::Unreadable(format!(
            "expiry {:?} is not an RFC 3339 time",
            shown(&l.expires)
        )),
        Ok(l) => Content::Lease(l),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a lease in this standing may be taken over.
    fn is_free(s: &Standing) -> bool {
        matches!(
            s,
            Standing::Expired | Standing::Dead(_) | Standing::Impossible(_)
        )
    }

    #[test]
    fn garbage_and_old_leases_parse_without_panicking() {
        for bad in [
            &b""[..],
            b"{",
            b"\xff\xfe",
            b"[1,2]",
            b"{\"owner\":1}",
            b"null",
        ] {
            assert!(
                matches!(parse_lease(bad), Content::Unreadable(_)),
                "{bad:?}"
            );
        }
        let bad_expiry = br#"{"owner":"o","host":"h","pid":1,"purpose":"p","acquired":"x","expires":"soon\u001b[2J"}"#;
        match parse_lease(bad_expiry) {
            Content::Unreadable(why) => assert!(!why.contains('\u{1b}'), "{why}"),
            other => panic!("{other:?}"),
        }
        // A lease from before boot IDs were recorded, with a future field.
        let old = br#"{"owner":"o","host":"h","pid":1,"purpose":"p","acquired":"2025-01-01T00:00:00Z","expires":"2025-01-01T00:02:00Z","later":true}"#;
        match parse_lease(old) {
            Content::Lease(l) => {
                assert_eq!((l.boot_id, l.start_time, l.pid_ns), (None, None, None))
            }
            other => panic!("{other:?}"),
        }
    }

    fn found(modified: DateTime<Utc>, acquired: DateTime<Utc>, expires: DateTime<Utc>) -> Found {
        let text = format!(
            r#"{{"owner":"o","host":"elsewhere","pid":1,"purpose":"backup","acquired":"{}","expires":"{}"}}"#,
            acquired.to_rfc3339(),
            expires.to_rfc3339()
        );
        Found {
            content: parse_lease(text.as_bytes()),
            modified,
            version: UpdateVersion {
                e_tag: None,
                version: None,
            },
        }
    }

    #[test]
    fn regression_issue22_leases_from_the_future_never_hold_a_job() {
        let now = Utc::now();
        let skew = Duration::from_secs(300);
        let min = chrono::Duration::minutes;
        // An honest lease of another host: held until it expires.
        let honest = found(now, now, now + min(2));
        assert!(matches!(
            honest.standing(now, skew),
            Standing::Unverifiable(_)
        ));
        // A store clock a little ahead is believed.
        let ahead = found(now + min(4), now + min(4), now + min(6));
        assert!(!is_free(&ahead.standing(now, skew)));
        let far = "2099-01-01T00:00:00Z".parse().unwrap();
        for forged in [
            found(far, now, far),
            found(now, far, now + min(2)),
            found(now, now, now + min(6 * 60 + 6)),
        ] {
            let st = forged.standing(now, skew);
            assert!(matches!(st, Standing::Impossible(_)), "{st:?}");
            assert!(is_free(&st));
        }
    }

    #[test]
    fn shown_escapes_control_characters_and_shortens() {
        assert_eq!(shown("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
        let long = "x".repeat(500);
        assert_eq!(shown(&long).len(), 123);
    }
}

//! Turns the raw YAML structs into a validated `Config`, collecting every
//! problem instead of stopping at the first.

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;

use chrono_tz::Tz;
use serde_saphyr::Spanned;

use super::check::{check_name, interval, Problems};
use super::raw::{self, RawRetention};
use super::sources::source;
use super::store::store;
use super::*;

/// Parses the text once into a tree, reads the raw structs from it
/// collecting every structural problem, then validates what was read.
pub fn parse(text: &str, path: &Path) -> Result<Config, Vec<Problem>> {
    // After a syntax error the structure of the rest is unknown: that
    // error is the only one reported.
    let root = super::tree::parse(text).map_err(|e| {
        vec![Problem {
            line: e.at.line,
            column: e.at.column,
            key: "yaml".to_owned(),
            message: e.message,
        }]
    })?;
    let read = super::tree::read::<raw::RawConfig>(&root, text);
    let Some(raw) = read.value else {
        return Err(read.problems);
    };
    let result = validate(&raw, path);
    if read.problems.is_empty() {
        return result;
    }
    // Validation saw placeholders where values could not be read; what it
    // says on those lines (or on the entries around them) is not reported.
    let semantic = result.err().unwrap_or_default();
    let mut all = read.problems;
    all.extend(
        semantic
            .into_iter()
            .filter(|p| !read.suspect_lines.contains(&p.line)),
    );
    Err(all)
}

/// The `daemon:` section, with its defaults.
fn daemon(rd: Option<&raw::RawDaemon>, p: &mut Problems) -> DaemonConfig {
    DaemonConfig {
        listen: rd
            .and_then(|d| d.listen.as_ref())
            .map(|l| l.value.clone())
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
        shutdown_grace: rd
            .and_then(|d| d.shutdown_grace.as_ref())
            .and_then(|v| interval(v, "daemon.shutdown_grace", p))
            .unwrap_or(DEFAULT_SHUTDOWN_GRACE),
        lock_ttl: rd
            .and_then(|d| d.lock_ttl.as_ref())
            .and_then(|v| {
                let ttl = interval(v, "daemon.lock_ttl", p)?;
                // A lease claiming to last longer is not believed (anyone
                // could write one that locks a job for years), so a longer
                // ttl would make every honest lease look forged.
                if ttl > crate::repo::lock::MAX_LEASE_LIFE {
                    p.at(
                        &v.referenced,
                        "daemon.lock_ttl",
                        "at most 6h: leases are renewed every third of it, and one that claims to last longer than 6h is taken for a forgery",
                    );
                    return None;
                }
                Some(ttl)
            })
            .unwrap_or(DEFAULT_LOCK_TTL),
        tampering_acknowledged: rd
            .and_then(|d| d.tampering_acknowledged.as_ref())
            .and_then(|t| super::keys::time(t, "daemon.tampering_acknowledged", p)),
        status_page: rd
            .and_then(|d| d.status_page.as_ref())
            .is_none_or(|v| v.value),
    }
}

fn validate(raw: &raw::RawConfig, path: &Path) -> Result<Config, Vec<Problem>> {
    let base = path.parent().unwrap_or(Path::new("."));
    let mut p = Problems::new();

    let store = store(&raw.store, &mut p);
    let copies = super::copies::copies(raw.copies.as_ref(), store.as_ref(), &mut p);
    let daemon = daemon(raw.daemon.as_ref(), &mut p);
    let notify = raw
        .notify
        .as_ref()
        .map(|n| super::notify::notify(n, "notify", &mut p))
        .unwrap_or_default();
    if let Some(l) = raw.daemon.as_ref().and_then(|d| d.listen.as_ref()) {
        if l.value.parse::<std::net::SocketAddr>().is_err() {
            p.at(
                &l.referenced,
                "daemon.listen",
                format!("`{}` is not an address like 0.0.0.0:9465", l.value),
            );
        }
    }

    let default_compression = raw
        .defaults
        .as_ref()
        .and_then(|d| d.compression.as_ref())
        .map(|c| {
            compression(
                c,
                CompressionSettings::default(),
                "defaults.compression",
                &mut p,
            )
        })
        .unwrap_or_default();
    let default_tz = raw
        .defaults
        .as_ref()
        .and_then(|d| d.timezone.as_ref())
        .and_then(|t| timezone(t, "defaults.timezone", &mut p))
        .unwrap_or(Tz::UTC);

    if raw.jobs.value.is_empty() {
        p.at(
            &raw.jobs.referenced,
            "jobs",
            "no jobs defined: add at least one job",
        );
    }
    let default_encryption = raw
        .encryption
        .as_ref()
        .and_then(|e| super::keys::encryption(e, "encryption", base, &mut p));
    let signing = raw
        .signing
        .as_ref()
        .and_then(|s| super::keys::signing(s, "signing", base, &mut p));
    let mut names = HashSet::new();
    let mut jobs = Vec::new();
    for (i, j) in raw.jobs.value.iter().enumerate() {
        let key = format!("jobs[{i}]");
        if !names.insert(j.value.name.value.clone()) {
            p.at(
                &j.value.name.referenced,
                format!("{key}.name"),
                format!("duplicate job name `{}`", j.value.name.value),
            );
        }
        if let Some(mut job) = job(
            &j.value,
            &key,
            base,
            default_compression,
            default_tz,
            &mut p,
        ) {
            job.encryption = match &j.value.encryption {
                Some(e) => super::keys::encryption(e, &format!("{key}.encryption"), base, &mut p),
                None => default_encryption.clone(),
            };
            jobs.push(job);
        }
    }

    match (p.0.is_empty(), store) {
        (true, Some(store)) => Ok(Config {
            path: path.to_owned(),
            store,
            copies,
            daemon,
            notify,
            signing,
            jobs,
            secret_problems: p.1,
            path_warnings: p.2,
        }),
        // Everything at once: the deferred problems are reported too.
        _ => Err(p.0.into_iter().chain(p.1).collect()),
    }
}

fn timezone(t: &Spanned<String>, key: &str, p: &mut Problems) -> Option<Tz> {
    match Tz::from_str(&t.value) {
        Ok(tz) => Some(tz),
        Err(_) => {
            p.at(
                &t.referenced,
                key,
                format!(
                    "unknown time zone `{}`: use an IANA name such as Europe/London",
                    t.value
                ),
            );
            None
        }
    }
}

fn compression(
    c: &raw::RawCompression,
    base: CompressionSettings,
    key: &str,
    p: &mut Problems,
) -> CompressionSettings {
    let mut out = base;
    if let Some(l) = &c.level {
        if (1..=19).contains(&l.value) {
            out.level = l.value as i32;
        } else {
            p.at(
                &l.referenced,
                format!("{key}.level"),
                "must be between 1 and 19",
            );
        }
    }
    if let Some(w) = &c.workers {
        if (0..=64).contains(&w.value) {
            out.workers = w.value as u32;
        } else {
            p.at(
                &w.referenced,
                format!("{key}.workers"),
                "must be between 0 and 64",
            );
        }
    }
    out
}

fn job(
    j: &raw::RawJob,
    key: &str,
    base: &Path,
    default_compression: CompressionSettings,
    default_tz: Tz,
    p: &mut Problems,
) -> Option<JobConfig> {
    check_name(&j.name, &format!("{key}.name"), p);
    let timezone = j
        .timezone
        .as_ref()
        .and_then(|t| timezone(t, &format!("{key}.timezone"), p))
        .unwrap_or(default_tz);
    let schedule = j
        .schedule
        .as_ref()
        .and_then(|s| match Schedule::from_str(&s.value) {
            Ok(s) => Some(s),
            Err(e) => {
                p.at(&s.referenced, format!("{key}.schedule"), e.to_string());
                None
            }
        });
    let compression = j
        .compression
        .as_ref()
        .map(|c| compression(c, default_compression, &format!("{key}.compression"), p))
        .unwrap_or(default_compression);
    let retention = j
        .retention
        .as_ref()
        .and_then(|r| retention(r, &format!("{key}.retention"), base, p));

    let sources = job_sources(j, key, p);
    let max_deletions = match &j.max_deletions {
        None => DEFAULT_MAX_DELETIONS,
        Some(v) if v.value >= 1 => v.value as usize,
        Some(v) => {
            p.at(
                &v.referenced,
                format!("{key}.max_deletions"),
                "must be at least 1",
            );
            DEFAULT_MAX_DELETIONS
        }
    };
    Some(JobConfig {
        name: j.name.value.clone(),
        schedule,
        timezone,
        retention,
        compression,
        jitter: j
            .jitter
            .as_ref()
            .and_then(|v| interval(v, &format!("{key}.jitter"), p)),
        max_age: j
            .max_age
            .as_ref()
            .and_then(|v| interval(v, &format!("{key}.max_age"), p)),
        max_deletions,
        orphan_grace: j
            .orphan_grace
            .as_ref()
            .and_then(|v| interval(v, &format!("{key}.orphan_grace"), p))
            .unwrap_or(DEFAULT_ORPHAN_GRACE),
        notify: j
            .notify
            .as_ref()
            .map(|n| super::notify::notify(n, &format!("{key}.notify"), p))
            .unwrap_or_default(),
        encryption: None,
        guard: super::guard::job(j, key, p),
        drill: j
            .verify
            .as_ref()
            .and_then(|d| super::drill::drill(d, &format!("{key}.verify"), p)),
        run_at_start: super::drill::run_at_start(
            j.run_at_start.as_ref(),
            &format!("{key}.run_at_start"),
            p,
        ),
        sources,
    })
}

/// The job's sources, each checked, and their names unique.
fn job_sources(j: &raw::RawJob, key: &str, p: &mut Problems) -> Vec<SourceConfig> {
    if j.sources.value.is_empty() {
        p.at(
            &j.sources.referenced,
            format!("{key}.sources"),
            "no sources: add at least one",
        );
    }
    let mut names = HashSet::new();
    let mut sources = Vec::new();
    for (i, s) in j.sources.value.iter().enumerate() {
        let skey = format!("{key}.sources[{i}]");
        if !names.insert(s.value.name.value.clone()) {
            p.at(
                &s.value.name.referenced,
                format!("{skey}.name"),
                format!("duplicate source name `{}`", s.value.name.value),
            );
        }
        if let Some(src) = source(s, &skey, p) {
            sources.push(src);
        }
    }
    sources
}

fn retention(
    r: &Spanned<RawRetention>,
    key: &str,
    base: &Path,
    p: &mut Problems,
) -> Option<crate::retention::policy::Policy> {
    match &r.value {
        RawRetention::Inline(spec) => match spec.validate() {
            Ok(policy) => Some(policy),
            Err(errs) => {
                // An inline mapping has no span of its own; problems with the
                // policy as a whole point at the `retention:` value.
                let at = (r.referenced.line(), r.referenced.column());
                p.0.extend(errs.into_iter().map(|e| {
                    let (line, column) = if e.key == "policy" {
                        at
                    } else {
                        (e.line, e.column)
                    };
                    Problem {
                        line,
                        column,
                        key: if e.key == "policy" {
                            key.to_owned()
                        } else {
                            format!("{key}.{}", e.key)
                        },
                        message: e.message,
                    }
                }));
                None
            }
        },
        RawRetention::File(f) => {
            let path = base.join(f);
            match super::policy_file::load(&path) {
                Ok(policy) => Some(policy),
                Err(e) => {
                    p.at(&r.referenced, key, e.to_string());
                    None
                }
            }
        }
    }
}

//! Turns the raw YAML structs into a validated `Config`, collecting every
//! problem instead of stopping at the first.

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono_tz::Tz;
use serde_saphyr::{Location, Spanned};
use url::Url;

use super::raw::{self, RawRetention, Scalar};
use super::sources::source;
use super::*;
use crate::secret::read_secret_file;

/// Collects problems while walking the raw config. The second list holds
/// unreadable password files: a problem for the commands that connect to
/// that server (and for check-config and the daemon), not for restoring a
/// directory from a host where the database secret is out of reach. The
/// third holds source paths that do not exist now: after a disaster they
/// are exactly what a restore brings back, so only reading them fails.
pub(super) struct Problems(pub(super) Vec<Problem>, Vec<Problem>, Vec<Problem>);

impl Problems {
    pub(super) fn new() -> Problems {
        Problems(Vec::new(), Vec::new(), Vec::new())
    }

    pub(super) fn warn(
        &mut self,
        loc: &Location,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.2.push(Problem {
            line: loc.line(),
            column: loc.column(),
            key: key.into(),
            message: message.into(),
        });
    }

    pub(super) fn defer(
        &mut self,
        loc: &Location,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.1.push(Problem {
            line: loc.line(),
            column: loc.column(),
            key: key.into(),
            message: message.into(),
        });
    }

    pub(super) fn at(
        &mut self,
        loc: &Location,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.0.push(Problem {
            line: loc.line(),
            column: loc.column(),
            key: key.into(),
            message: message.into(),
        });
    }
}

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

fn validate(raw: &raw::RawConfig, path: &Path) -> Result<Config, Vec<Problem>> {
    let base = path.parent().unwrap_or(Path::new("."));
    let mut p = Problems::new();

    let store = store(&raw.store, &mut p);
    let copies = super::copies::copies(raw.copies.as_ref(), store.as_ref(), &mut p);
    let rd = raw.daemon.as_ref();
    let daemon = DaemonConfig {
        listen: rd
            .and_then(|d| d.listen.as_ref())
            .map(|l| l.value.clone())
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
        shutdown_grace: rd
            .and_then(|d| d.shutdown_grace.as_ref())
            .and_then(|v| interval(v, "daemon.shutdown_grace", &mut p))
            .unwrap_or(DEFAULT_SHUTDOWN_GRACE),
        lock_ttl: rd
            .and_then(|d| d.lock_ttl.as_ref())
            .and_then(|v| {
                let ttl = interval(v, "daemon.lock_ttl", &mut p)?;
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
            .and_then(|t| super::keys::time(t, "daemon.tampering_acknowledged", &mut p)),
        status_page: rd
            .and_then(|d| d.status_page.as_ref())
            .is_none_or(|v| v.value),
    };
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
        .map(|c| compression(c, Compression::default(), "defaults.compression", &mut p))
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

/// A store URL that did not parse, for an error message: whatever sits
/// between `//` and the last `@` may be a user and password.
fn without_userinfo(url: &str) -> String {
    match (url.find("//"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => format!("{}//***{}", &url[..start], &url[at..]),
        _ => url.to_owned(),
    }
}

pub(super) fn store(s: &Spanned<raw::RawStore>, p: &mut Problems) -> Option<StoreSpec> {
    let raw = &s.value;
    let url = match Url::parse(&raw.url.value) {
        Ok(u) => Some(u),
        Err(e) => {
            p.at(
                &raw.url.referenced,
                "store.url",
                format!("`{}` is not a URL: {e}", without_userinfo(&raw.url.value)),
            );
            None
        }
    };
    let mut options = Vec::new();
    if let Some(url) = &url {
        let scheme = url.scheme();
        if !matches!(
            scheme,
            "file" | "s3" | "s3a" | "az" | "azure" | "abfs" | "abfss" | "gs"
        ) {
            p.at(
                &raw.url.referenced,
                "store.url",
                format!("unsupported scheme `{scheme}`: use file://, s3://, az:// or gs://"),
            );
        }
        for (k, v) in &raw.options {
            let key = format!("store.options.{k}");
            match option_value(scheme, k, &v.value) {
                Ok((name, value)) => {
                    if let Err(msg) = crate::repo::store::check_option_key(scheme, &name) {
                        p.at(&v.referenced, key, msg);
                    } else {
                        options.push((name, value));
                    }
                }
                Err(msg) => p.at(&v.referenced, key, msg),
            }
        }
    }
    let part_size = match &raw.part_size {
        None => DEFAULT_PART_SIZE,
        Some(v) => match parse_size(&v.value.0) {
            Ok(n) if (5 * 1024 * 1024..=5 * 1024 * 1024 * 1024).contains(&n) => n as usize,
            Ok(_) => {
                p.at(
                    &v.referenced,
                    "store.part_size",
                    "must be between 5MiB (the S3 minimum) and 5GiB",
                );
                DEFAULT_PART_SIZE
            }
            Err(msg) => {
                p.at(&v.referenced, "store.part_size", msg);
                DEFAULT_PART_SIZE
            }
        },
    };
    let concurrency = match &raw.concurrency {
        None => DEFAULT_CONCURRENCY,
        Some(v) if (1..=64).contains(&v.value) => v.value as usize,
        Some(v) => {
            p.at(
                &v.referenced,
                "store.concurrency",
                "must be between 1 and 64",
            );
            DEFAULT_CONCURRENCY
        }
    };
    let max_clock_skew = raw
        .max_clock_skew
        .as_ref()
        .and_then(|v| interval(v, "store.max_clock_skew", p))
        .unwrap_or(crate::repo::store::DEFAULT_MAX_CLOCK_SKEW);
    let object_lock = super::object_lock::object_lock(raw.object_lock.as_ref(), url.as_ref(), p);
    Some(StoreSpec {
        url: url?,
        options,
        part_size,
        concurrency,
        max_clock_skew,
        object_lock,
    })
}

/// `<key>_file: PATH` reads the value from a file (docker secrets); the
/// object-store key is the name without the suffix. Keys that are options
/// in their own right (Azure's `federated_token_file`) are passed as they are.
fn option_value(scheme: &str, key: &str, v: &Scalar) -> Result<(String, Secret), String> {
    if crate::repo::store::check_option_key(scheme, key).is_ok() {
        return Ok((key.to_owned(), Secret::new(v.0.clone())));
    }
    match key.strip_suffix("_file") {
        Some(base) if !base.is_empty() => read_secret_file(Path::new(&v.0))
            .map(|s| (base.to_owned(), s))
            .map_err(|e| format!("cannot read `{}`: {e}", v.0)),
        _ => Ok((key.to_owned(), Secret::new(v.0.clone()))),
    }
}

/// Parses sizes such as `16MiB`, `8MB`, `1048576`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size like 16MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1024 * 1024,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1024 * 1024 * 1024,
        other => return Err(format!("unknown size unit `{other}` in `{s}`")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// A TCP port, 1-65535; out of range is reported under `{key}.port`.
pub(super) fn tcp_port(v: &Spanned<i64>, key: &str, p: &mut Problems) -> Option<u16> {
    match u16::try_from(v.value) {
        Ok(port) if port > 0 => Some(port),
        _ => {
            p.at(
                &v.referenced,
                format!("{key}.port"),
                format!("{} is out of range 1-65535", v.value),
            );
            None
        }
    }
}

/// Durations of daemon settings: `h`, `m` (minutes) and `s`, e.g. `26h`,
/// `1h30m`, `90s`.
pub(super) fn interval(v: &Spanned<String>, key: &str, p: &mut Problems) -> Option<Duration> {
    match crate::duration::parse_duration(&v.value) {
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            p.at(&v.referenced, key, "must be longer than zero");
            None
        }
        Err(e) => {
            p.at(&v.referenced, key, e.to_string());
            None
        }
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
    base: Compression,
    key: &str,
    p: &mut Problems,
) -> Compression {
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

/// Names become object keys and metric labels: keep them to a safe charset.
pub(super) fn check_name(n: &Spanned<String>, key: &str, p: &mut Problems) {
    let ok = !n.value.is_empty()
        && n.value.len() <= 64
        && n.value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !n.value.starts_with('-');
    if !ok {
        p.at(
            &n.referenced,
            key,
            format!(
                "`{}` is not a valid name: use 1-64 letters, digits, `-` or `_`",
                n.value
            ),
        );
    }
}

fn job(
    j: &raw::RawJob,
    key: &str,
    base: &Path,
    default_compression: Compression,
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

//! The YAML file as written by the operator, before validation.
//!
//! Every struct denies unknown keys, and every value that validation may
//! reject is wrapped in `Spanned` so the error can point at its line. There is
//! deliberately no `flatten` and no `untagged` here: both make serde accept
//! misspelt keys silently or lose the location of the error.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::retention::policy::{PolicyKeys, PolicySpec};

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub store: S<RawStore>,
    /// Further stores every complete backup is copied to (3-2-1).
    #[serde(default)]
    pub copies: Option<S<Vec<S<RawStore>>>>,
    #[serde(default)]
    pub daemon: Option<RawDaemon>,
    #[serde(default)]
    pub notify: Option<RawNotify>,
    #[serde(default)]
    pub defaults: Option<RawDefaults>,
    #[serde(default)]
    pub encryption: Option<S<RawEncryption>>,
    #[serde(default)]
    pub signing: Option<S<RawSigning>>,
    pub jobs: S<Vec<S<RawJob>>>,
}

/// age recipients artifacts are encrypted to; the identity is for readers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEncryption {
    #[serde(default)]
    pub recipients: Vec<S<String>>,
    #[serde(default)]
    pub recipients_file: Option<S<String>>,
    #[serde(default)]
    pub identity_file: Option<S<String>>,
}

/// minisign keys: the writer's secret key, the readers' public key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSigning {
    #[serde(default)]
    pub secret_key_file: Option<S<String>>,
    #[serde(default)]
    pub public_key: Option<S<String>>,
    #[serde(default)]
    pub public_key_file: Option<S<String>>,
    /// RFC 3339: unsigned backups from before it stay readable and prunable.
    #[serde(default)]
    pub unsigned_before: Option<S<String>>,
    /// Several trusted keys, each optionally with a trust window.
    #[serde(default)]
    pub public_keys: Option<S<Vec<S<RawPublicKey>>>>,
}

/// One of `signing.public_keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPublicKey {
    #[serde(default)]
    pub key: Option<S<String>>,
    #[serde(default)]
    pub key_file: Option<S<String>>,
    /// RFC 3339: manifests the store recorded after it are not trusted
    /// with this key.
    #[serde(default)]
    pub not_after: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub url: S<String>,
    #[serde(default)]
    pub options: BTreeMap<String, S<Scalar>>,
    #[serde(default)]
    pub part_size: Option<S<Scalar>>,
    #[serde(default)]
    pub concurrency: Option<S<i64>>,
    /// How far ahead of this host's clock a backup may be dated and still
    /// count (clocks differ a little; forgeries are dated years ahead).
    #[serde(default)]
    pub max_clock_skew: Option<S<String>>,
    /// S3 Object Lock for everything a backup writes.
    #[serde(default)]
    pub object_lock: Option<S<RawObjectLock>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawObjectLock {
    pub mode: S<String>,
    pub period: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    #[serde(default)]
    pub listen: Option<S<String>>,
    #[serde(default)]
    pub shutdown_grace: Option<S<String>>,
    #[serde(default)]
    pub lock_ttl: Option<S<String>>,
    /// RFC 3339: tampering recorded by then is known and handled.
    #[serde(default)]
    pub tampering_acknowledged: Option<S<String>>,
    /// `false` turns the status page (`/`, `/status.json`) off.
    #[serde(default)]
    pub status_page: Option<S<bool>>,
}

/// Where run reports go: generic webhooks, healthchecks pings, Slack
/// incoming webhooks, email. URLs are `Scalar` so `Debug` never shows them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    #[serde(default)]
    pub webhooks: Vec<S<Scalar>>,
    #[serde(default)]
    pub healthchecks: Vec<S<Scalar>>,
    #[serde(default)]
    pub slack: Vec<S<Scalar>>,
    #[serde(default)]
    pub email: Option<S<RawEmail>>,
    #[serde(default)]
    pub on: Option<S<Vec<S<String>>>>,
    /// The old spelling of `on: [success]`, still accepted.
    #[serde(default)]
    pub on_success: Option<S<bool>>,
    /// How long one notification may take, e.g. `10s`.
    #[serde(default)]
    pub timeout: Option<S<String>>,
}

/// SMTP settings. There is deliberately no `password` key: only a file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmail {
    pub server: S<String>,
    #[serde(default)]
    pub port: Option<S<i64>>,
    #[serde(default)]
    pub starttls: Option<S<bool>>,
    #[serde(default)]
    pub tls: Option<S<bool>>,
    pub from: S<String>,
    #[serde(default)]
    pub to: Vec<S<String>>,
    #[serde(default)]
    pub username: Option<S<String>>,
    #[serde(default)]
    pub password_file: Option<S<String>>,
}

/// Settings every job inherits unless it sets its own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    #[serde(default)]
    pub compression: Option<RawCompression>,
    #[serde(default)]
    pub timezone: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    pub name: S<String>,
    #[serde(default)]
    pub schedule: Option<S<String>>,
    #[serde(default)]
    pub timezone: Option<S<String>>,
    #[serde(default)]
    pub retention: Option<S<RawRetention>>,
    #[serde(default)]
    pub compression: Option<RawCompression>,
    #[serde(default)]
    pub jitter: Option<S<String>>,
    #[serde(default)]
    pub max_age: Option<S<String>>,
    #[serde(default)]
    pub max_deletions: Option<S<i64>>,
    #[serde(default)]
    pub orphan_grace: Option<S<String>>,
    #[serde(default)]
    pub notify: Option<RawNotify>,
    #[serde(default)]
    pub encryption: Option<S<RawEncryption>>,
    #[serde(default)]
    pub guard: Option<S<RawGuard>>,
    /// Scheduled restore drills of the job's latest backup.
    #[serde(default)]
    pub verify: Option<S<RawDrill>>,
    /// `missed` (default), `always` or `never`.
    #[serde(default)]
    pub run_at_start: Option<S<String>>,
    pub sources: S<Vec<S<RawSource>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrill {
    pub schedule: S<String>,
    #[serde(default)]
    pub restore_test: Option<bool>,
    #[serde(default)]
    pub max_age: Option<S<String>>,
}

/// Limits of the shrink guard, for a job or one source (see `config::guard`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuard {
    #[serde(default)]
    pub min_files: Option<S<i64>>,
    #[serde(default)]
    pub min_bytes: Option<S<Scalar>>,
    #[serde(default)]
    pub max_shrink: Option<S<Scalar>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompression {
    #[serde(default)]
    pub level: Option<S<i64>>,
    #[serde(default)]
    pub workers: Option<S<i64>>,
}

/// One source: a name plus exactly one kind key. Modelled as optional fields
/// rather than an enum so a mapping with two kinds gets a precise message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub name: S<String>,
    #[serde(default)]
    pub postgres: Option<S<RawPostgres>>,
    #[serde(default)]
    pub rrd: Option<S<RawRrd>>,
    #[serde(default)]
    pub files: Option<S<RawFiles>>,
    #[serde(default)]
    pub guard: Option<S<RawGuard>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgres {
    #[serde(default)]
    pub host: Option<S<String>>,
    #[serde(default)]
    pub port: Option<S<i64>>,
    #[serde(default)]
    pub user: Option<S<String>>,
    #[serde(default)]
    pub password_file: Option<S<String>>,
    #[serde(default)]
    pub password_env: Option<S<String>>,
    #[serde(default)]
    pub databases: Option<S<Databases>>,
    #[serde(default)]
    pub maintenance_db: Option<S<String>>,
    #[serde(default)]
    pub bin_dir: Option<S<String>>,
    #[serde(default)]
    pub globals: Option<bool>,
    #[serde(default)]
    pub row_counts: Option<bool>,
    #[serde(default)]
    pub parallel: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRrd {
    pub path: S<String>,
    #[serde(default)]
    pub lock_timeout_ms: Option<S<i64>>,
    #[serde(default)]
    pub on_invalid: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFiles {
    pub path: S<String>,
}

/// `databases: all` or `databases: [a, b]`.
#[derive(Debug)]
pub enum Databases {
    Keyword(String),
    Names(Vec<S<String>>),
}

impl<'de> Deserialize<'de> for Databases {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Databases;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`all` or a list of database names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Databases, E> {
                Ok(Databases::Keyword(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Databases, A::Error> {
                let mut names = Vec::new();
                while let Some(n) = seq.next_element::<S<String>>()? {
                    names.push(n);
                }
                Ok(Databases::Names(names))
            }
        }
        d.deserialize_any(V)
    }
}

/// `retention:` is either an inline policy mapping or the path of a policy file.
#[derive(Debug)]
pub enum RawRetention {
    File(String),
    Inline(Box<PolicySpec>),
}

impl<'de> Deserialize<'de> for RawRetention {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawRetention;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a retention policy mapping or the path of a policy file")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawRetention, E> {
                Ok(RawRetention::File(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawRetention, A::Error> {
                let keys = PolicyKeys::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawRetention::Inline(Box::new(PolicySpec::from_keys(
                    keys, None,
                ))))
            }
        }
        d.deserialize_any(V)
    }
}

/// An option value: object stores take strings, but operators write YAML
/// booleans and numbers (`allow_http: true`), so those are accepted too.
#[derive(Clone)]
pub struct Scalar(pub String);

/// Option values may be credentials, so `Debug` never shows them.
impl fmt::Debug for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("Scalar(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

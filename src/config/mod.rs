//! Configuration: the YAML file (`raw`) is parsed once, then validated into
//! the types below. Validation collects every problem with its file, line and
//! key so an operator fixes them in one pass instead of one per run.

mod check;
mod copies;
mod drill;
mod guard;
mod keys;
mod notify;
mod object_lock;
mod policy_file;
mod raw;
mod sources;
mod store;
mod tree;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;

pub use crate::options::CompressionSettings;
use crate::repo::signing::SigningKeys;
use crate::repo::store::StoreSpec;
use crate::retention::policy::Policy;
use crate::schedule::Schedule;
use crate::secret::Secret;

pub use check::parse_size;
pub use sources::{
    DatabaseSelection, FilesConfig, PostgresConfig, RrdConfig, SourceConfig, SourceKind,
};

/// Default object-store part size: large enough for S3's 5 MiB minimum,
/// small enough that `concurrency` parts in flight stay well under our memory
/// budget. With 10,000 parts at most this caps one artifact at ~160 GiB.
pub const DEFAULT_PART_SIZE: usize = 16 * 1024 * 1024;
pub const DEFAULT_CONCURRENCY: usize = 3;
/// Not 9187: that is postgres_exporter's default, and on a Concertim host
/// (host networking) an exporter for the same database is the likeliest
/// neighbour. 9464 is OpenTelemetry's Prometheus exporter default; 9465 is
/// the next port.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9465";
/// How long a running job may finish after SIGTERM before it is cancelled.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(300);
/// Lifetime of a repository lock lease; renewed at a third of it.
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(120);
/// A prune that would delete more backups than this is refused.
pub const DEFAULT_MAX_DELETIONS: usize = 50;
/// Objects without a manifest younger than this may belong to a running
/// backup and are left alone by the sweep.
pub const DEFAULT_ORPHAN_GRACE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub store: StoreSpec,
    /// Stores that receive a copy of every complete backup, in order.
    pub copies: Vec<StoreSpec>,
    pub daemon: DaemonConfig,
    /// Webhooks for every job (jobs may add their own).
    pub notify: Notify,
    /// Manifest signing and verification keys.
    pub signing: Option<SigningKeys>,
    pub jobs: Vec<JobConfig>,
    /// Password files that could not be read. Commands that connect to the
    /// server concerned fail there; check-config and the daemon refuse to
    /// start (`require_secrets`); restoring other sources is unaffected.
    pub secret_problems: Vec<Problem>,
    /// Source paths that were not directories when the file was read.
    /// Warnings only: `list`, `restore`, `verify` and the daemon work
    /// without them (a restore creates them); a backup fails that source.
    pub path_warnings: Vec<Problem>,
}

/// Encryption of a job's artifacts (its own, or the top-level one).
#[derive(Debug, Clone)]
pub struct EncryptionConfig {
    pub recipients: std::sync::Arc<crate::crypto::Recipients>,
    /// Where `restore`/`verify --restore-test` find the identity when no
    /// `--identity` is given; read only when needed.
    pub identity_file: Option<PathBuf>,
}

impl Config {
    /// Fails like an invalid file when a password file could not be read:
    /// for commands that need every source (check-config, the daemon).
    pub fn require_secrets(&self) -> Result<(), ConfigError> {
        if self.secret_problems.is_empty() {
            return Ok(());
        }
        Err(ConfigError::Invalid {
            path: self.path.clone(),
            problems: self.secret_problems.clone(),
        })
    }

    pub fn job(&self, name: &str) -> Option<&JobConfig> {
        self.jobs.iter().find(|j| j.name == name)
    }

    /// The jobs a command applies to: one by name, or all of them.
    pub fn select_jobs(&self, name: Option<&str>) -> Result<Vec<&JobConfig>, UnknownJob> {
        match name {
            None => Ok(self.jobs.iter().collect()),
            Some(n) => self.job(n).map(|j| vec![j]).ok_or_else(|| UnknownJob {
                name: n.to_owned(),
                known: self.jobs.iter().map(|j| j.name.clone()).collect(),
            }),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no job named `{name}` in the configuration (jobs: {})", known.join(", "))]
pub struct UnknownJob {
    pub name: String,
    pub known: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub listen: String,
    pub shutdown_grace: Duration,
    pub lock_ttl: Duration,
    /// Tampering the store's history shows at or before this time is
    /// known and handled: the daemon no longer counts it, fails `/readyz`
    /// or notifies about it (`list` still shows it).
    pub tampering_acknowledged: Option<chrono::DateTime<chrono::Utc>>,
    /// Serve the status page (`/` and `/status.json`); on by default.
    pub status_page: bool,
}

/// Notification channels of one `notify` block (global or a job's). URLs
/// are `Secret`: webhook paths carry tokens, healthchecks URLs the check's
/// UUID, which is all it takes to ping it.
#[derive(Debug, Clone, Default)]
pub struct Notify {
    /// Generic webhooks: the run report as JSON.
    pub webhooks: Vec<Secret>,
    /// healthchecks.io-style ping URLs (`/start`, success, `/fail`).
    pub healthchecks: Vec<Secret>,
    /// Slack-compatible incoming webhooks (`{"text": ...}`).
    pub slack: Vec<Secret>,
    pub email: Option<EmailConfig>,
    /// Which events reach webhooks, Slack and email.
    pub on: NotifyOn,
    /// How long one notification may take (`timeout`); unset, the job's
    /// block falls back to the global one and that to
    /// `notify::TIMEOUT`.
    pub timeout: Option<std::time::Duration>,
}

/// Events beyond the ones that always notify: every outcome other than
/// success (failure, suspicious, locked, cancelled) always does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotifyOn {
    pub start: bool,
    pub success: bool,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// TLS from the first byte (`tls: true`, usually port 465).
    Tls,
    /// Plain connection upgraded with STARTTLS, which is required.
    StartTls,
    /// No encryption (`starttls: false`): a relay on the host or the LAN.
    Plain,
}

#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub server: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub from: String,
    pub to: Vec<String>,
    /// Both or neither: a username comes with a password file.
    pub username: Option<String>,
    pub password: Option<Secret>,
}

impl EmailConfig {
    /// Two blocks naming the same server and recipients send one mail.
    pub fn same_destination(&self, other: &EmailConfig) -> bool {
        self.server == other.server
            && self.port == other.port
            && self.from == other.from
            && self.to == other.to
    }
}

#[derive(Debug, Clone)]
pub struct JobConfig {
    pub name: String,
    pub schedule: Option<Schedule>,
    pub timezone: Tz,
    pub retention: Option<Policy>,
    pub compression: CompressionSettings,
    /// Random delay up to this before each scheduled run.
    pub jitter: Option<Duration>,
    /// `/readyz` fails when the last success is older than this.
    pub max_age: Option<Duration>,
    pub max_deletions: usize,
    pub orphan_grace: Duration,
    pub notify: Notify,
    pub encryption: Option<EncryptionConfig>,
    /// Limits of the shrink guard for this job's sources.
    pub guard: crate::options::GuardConfig,
    /// Scheduled restore drills (`verify:`).
    pub drill: Option<DrillConfig>,
    pub run_at_start: RunAtStart,
    pub sources: Vec<SourceConfig>,
}

/// What retention needs of a job, named by retention itself so that it
/// does not import config (config is the layer above it).
impl crate::retention::job::RetentionJob for JobConfig {
    fn name(&self) -> &str {
        &self.name
    }
    fn policy(&self) -> Option<&Policy> {
        self.retention.as_ref()
    }
    fn max_deletions(&self) -> usize {
        self.max_deletions
    }
    fn orphan_grace(&self) -> Duration {
        self.orphan_grace
    }
}

/// `jobs[].verify`: the daemon runs `verify` (with `--restore-test` unless
/// `restore_test: false`) on the job's latest backup on this schedule.
#[derive(Debug, Clone)]
pub struct DrillConfig {
    pub schedule: Schedule,
    pub restore_test: bool,
    /// `/readyz` fails when the last successful drill is older than this.
    pub max_age: Option<Duration>,
}

/// What the daemon does for a job when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunAtStart {
    /// Back up at once when the newest good backup is older than the
    /// schedule's interval, or there is none.
    #[default]
    Missed,
    Always,
    Never,
}

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: u64,
    pub column: u64,
    pub key: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", render_problems(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl Problem {
    /// `file:line:column: key: message`, the form every problem is shown in.
    pub fn render(&self, path: &Path) -> String {
        format!(
            "{}:{}:{}: {}: {}",
            path.display(),
            self.line,
            self.column,
            self.key,
            self.message
        )
    }
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let mut out = format!(
        "config file {} has {} problem{}:",
        path.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        out.push_str("\n  ");
        out.push_str(&p.render(path));
    }
    out
}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// Only `daemon.listen` (or the default), without validating the rest or
/// reading any secret: what a health check needs, as any user.
pub fn listen_address(path: &Path) -> Result<String, ConfigError> {
    #[derive(serde::Deserialize)]
    struct Daemon {
        #[serde(default)]
        listen: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct ListenOnly {
        #[serde(default)]
        daemon: Option<Daemon>,
    }
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let parsed: ListenOnly = serde_saphyr::from_str(&text).map_err(|e| ConfigError::Invalid {
        path: path.to_owned(),
        problems: vec![Problem {
            line: e.location().map(|l| l.line()).unwrap_or(0),
            column: e.location().map(|l| l.column()).unwrap_or(0),
            key: "daemon.listen".to_owned(),
            message: crate::retention::policy::plain_message(&e),
        }],
    })?;
    Ok(parsed
        .daemon
        .and_then(|d| d.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned()))
}

/// Validates configuration text; `path` names the file in messages and
/// anchors relative paths (policy files).
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    validate::parse(text, path).map_err(|problems| ConfigError::Invalid {
        path: path.to_owned(),
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "db-pass-123\n").unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "s3-secret-456").unwrap();
        let text = format!(
            "store:\n  url: s3://bucket/prefix\n  options:\n    access_key_id: AKIA-visible\n    secret_access_key_file: {}\n    allow_http: true\nnotify:\n  webhooks: [\"https://hooks.example/T0KEN-789\"]\njobs:\n  - name: j\n    sources:\n      - name: db\n        postgres: {{password_file: {}}}\n",
            key.display(),
            pw.display()
        );
        let cfg = parse(&text, Path::new("c.yaml")).unwrap();
        let dbg = format!("{cfg:?}");
        for secret in ["db-pass-123", "s3-secret-456", "T0KEN-789", "AKIA-visible"] {
            assert!(!dbg.contains(secret), "{secret} leaked in {dbg}");
        }
        // The secret file's content was read, with the suffix stripped from the key.
        let (k, v) = cfg
            .store
            .options
            .iter()
            .find(|(k, _)| k == "secret_access_key")
            .unwrap();
        assert_eq!(
            (k.as_str(), v.expose()),
            ("secret_access_key", "s3-secret-456")
        );
        assert!(cfg
            .store
            .options
            .iter()
            .any(|(k, v)| k == "allow_http" && v.expose() == "true"));
    }

    #[test]
    fn option_keys_that_end_in_file_are_not_secret_file_references() {
        // Regression: `federated_token_file` is an Azure option naming a
        // path; it used to be read as a docker secret for `federated_token`.
        let text = "store:\n  url: az://container/prefix\n  options:\n    federated_token_file: /var/run/token\njobs:\n  - name: j\n    sources:\n      - name: e\n        files: {path: /tmp}\n";
        let cfg = parse(text, Path::new("c.yaml")).unwrap();
        let (k, v) = &cfg.store.options[0];
        assert_eq!(
            (k.as_str(), v.expose()),
            ("federated_token_file", "/var/run/token")
        );
    }

    /// Retention reads a job only through `RetentionJob`: what it gets is
    /// what the file said.
    #[test]
    fn retention_sees_the_jobs_policy_and_limits() {
        use crate::retention::job::RetentionJob;
        let text = "store:\n  url: file:///tmp/x\njobs:\n  - name: a\n    retention: {keep_daily: 7}\n    max_deletions: 9\n    orphan_grace: 2h\n    sources:\n      - name: e\n        files: {path: /tmp}\n  - name: b\n    sources:\n      - name: e\n        files: {path: /tmp}\n";
        let cfg = parse(text, Path::new("c.yaml")).unwrap();
        let (a, b) = (&cfg.jobs[0], &cfg.jobs[1]);
        assert_eq!(RetentionJob::name(a), "a");
        assert_eq!(a.policy(), a.retention.as_ref());
        assert!(a.policy().is_some());
        assert_eq!(RetentionJob::max_deletions(a), 9);
        assert_eq!(RetentionJob::orphan_grace(a), Duration::from_secs(7200));
        assert!(b.policy().is_none());
        assert_eq!(RetentionJob::max_deletions(b), DEFAULT_MAX_DELETIONS);
        assert_eq!(RetentionJob::orphan_grace(b), DEFAULT_ORPHAN_GRACE);
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("16MiB"), Ok(16 * 1024 * 1024));
        assert_eq!(parse_size("5 MB"), Ok(5_000_000));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }
}

//! Command-line interface types (clap derive only; no behaviour here).

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

/// Options about the configuration and the user to run as, which commands
/// that read no configuration do not list in their help.
const CONFIG_OPTIONS: [&str; 3] = ["config", "user", "keep_read_access"];

/// The parser: [`Cli`] with the configuration options hidden from the help
/// of `keys` and `policy`, which need no configuration.
pub fn command() -> clap::Command {
    let cmd = Cli::command();
    // A global option is copied into each subcommand when the parser is
    // built, unless the subcommand has its own by that name: give these
    // two a hidden copy (still global, so it reaches their subcommands).
    let hidden: Vec<clap::Arg> = cmd
        .get_arguments()
        .filter(|a| CONFIG_OPTIONS.contains(&a.get_id().as_str()))
        .map(|a| a.clone().hide(true))
        .collect();
    let hide = |c: clap::Command| c.args(hidden.clone());
    cmd.mut_subcommand("keys", hide)
        .mut_subcommand("policy", hide)
}

#[derive(Debug, Parser)]
#[command(
    name = "ccbackup",
    version,
    about = "Backups of PostgreSQL, RRD metrics and directories to object storage, with retention"
)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        short,
        long,
        env = "CCBACKUP_CONFIG",
        default_value = "/etc/ccbackup/config.yaml",
        global = true
    )]
    pub config: PathBuf,

    /// Log format; JSON by default when stderr is not a terminal.
    #[arg(long, value_enum, global = true)]
    pub log_format: Option<LogFormat>,

    /// Log filter, e.g. `info` or `ccbackup=debug` (env RUST_LOG also works).
    #[arg(long, global = true)]
    pub log_level: Option<String>,

    /// Started as root: read the configuration and its secrets, then switch
    /// to `USER[:GROUP]` (name or number) for good before doing any work.
    /// Empty or `root` stays root (restores that must write root-owned files).
    #[arg(
        long,
        env = "CCBACKUP_USER",
        value_name = "USER[:GROUP]",
        global = true
    )]
    pub user: Option<String>,

    /// With --user: keep CAP_DAC_READ_SEARCH (read any file, nothing else),
    /// e.g. for a root-owned 0600 credentials.yml.enc. In a container it
    /// must be granted (`cap_add: [DAC_READ_SEARCH]`).
    #[arg(long, env = "CCBACKUP_KEEP_READ_ACCESS", global = true)]
    pub keep_read_access: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Take a backup now (all jobs, or one) and print its backup ID.
    RunNow {
        /// Only this job.
        #[arg(long)]
        job: Option<String>,
        /// When a live process holds the job's lock, wait up to DURATION
        /// (e.g. 30s, 5m, 1h30m) for it instead of failing at once.
        #[arg(long, value_name = "DURATION")]
        wait_lock: Option<String>,
        /// Print the run report of each job as one JSON object per line
        /// instead of the backup ID.
        #[arg(long)]
        json: bool,
        /// The sources are meant to be smaller this time (data removed on
        /// purpose): what the shrink guard finds is recorded as accepted,
        /// the backup counts as good and retention runs. This run only.
        #[arg(long)]
        accept_shrink: bool,
    },
    /// Copy complete backups from the primary store to the copy stores
    /// (`copies:`) that lack them, oldest first; resumable and idempotent.
    Copy {
        /// Copy what the primary store holds (the only source for now).
        #[arg(long, required = true)]
        from_primary: bool,
        /// Only this job.
        #[arg(long)]
        job: Option<String>,
        /// Only this copy store: its index in `copies:` (0 is the first) or
        /// its URL.
        #[arg(long, value_name = "URL-OR-INDEX")]
        to: Option<String>,
    },
    /// Remove a job's repository lock left by a run that is gone.
    Unlock {
        /// The job (needed when there are several).
        #[arg(long)]
        job: Option<String>,
        /// Also remove a lease held by a live process on this host, or an
        /// unexpired one from another host or container.
        #[arg(long)]
        force: bool,
    },
    /// List complete backups in the store.
    List {
        /// Only this job.
        #[arg(long)]
        job: Option<String>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// See the store as it was at TIME (RFC 3339, e.g. what `list`
        /// prints): every object's newest version written by then, ignoring
        /// later writes and deletes. S3 stores with bucket versioning only.
        #[arg(long, value_name = "TIME")]
        as_of: Option<String>,
    },
    /// Validate the configuration file and report every problem.
    CheckConfig,
    /// Apply the retention policy: delete what it does not keep, sweep leftovers.
    Prune {
        /// Only this job.
        #[arg(long)]
        job: Option<String>,
        /// Print the plan; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Retention policy tools.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Key tools for encryption and signed manifests.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Run jobs on their schedules, serve /healthz, /readyz and /metrics.
    Daemon {
        /// Address for health and metrics (overrides `daemon.listen`).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Ask the running daemon's /healthz (at `daemon.listen` from the
    /// configuration, or ADDR); exit 0 when it answers 200. For HEALTHCHECK.
    Healthcheck {
        /// Address to ask instead of `daemon.listen`.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Print the next run times of each scheduled job (RFC 3339, job's zone).
    Schedule {
        /// Only this job.
        #[arg(long)]
        job: Option<String>,
        /// How many run times to print per job.
        #[arg(long, default_value_t = 5)]
        count: usize,
        /// Start from this instant (RFC 3339) instead of now, e.g. to check
        /// a DST change ahead of time.
        #[arg(long)]
        after: Option<String>,
    },
    /// Check that this site is ready: every store (list, write, read back,
    /// delete a probe), database, source path, key file and notification
    /// endpoint each job uses. One line per check; exit 1 if any fails.
    Doctor {
        /// Only this job.
        #[arg(long)]
        job: Option<String>,
        /// Print a JSON array of checks instead of lines.
        #[arg(long)]
        json: bool,
        /// Also send a start event to webhooks, Slack and email (never to
        /// healthchecks, whose state a ping would change).
        #[arg(long)]
        notify_test: bool,
    },
    /// Restore a backup (latest by default): databases, RRD trees, directories.
    Restore(Box<RestoreArgs>),
    /// List what a backup holds without restoring it: each path of its
    /// trees, its databases with their tables (and row counts) and other
    /// TOC entries, the roles of its globals. Reads and checksums every
    /// artifact it lists; fails if one does not match.
    Ls(LsArgs),
    /// Check that stored backups are intact (and, optionally, that they restore).
    Verify {
        /// Only this job.
        #[arg(long)]
        job: Option<String>,
        /// A backup ID, `latest` (default) or `all`.
        #[arg(long, default_value = "latest")]
        backup: String,
        /// Restore dumps into a scratch database and compare row counts;
        /// validate every RRD file.
        #[arg(long)]
        restore_test: bool,
        /// age identity file for encrypted backups (overrides
        /// `encryption.identity_file`; only `--restore-test` needs one).
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
        /// Print one JSON report (docs/schema/verify.json) instead of lines.
        #[arg(long)]
        json: bool,
        /// See the store as it was at TIME (RFC 3339, e.g. what `list`
        /// prints): every object's newest version written by then, ignoring
        /// later writes and deletes. S3 stores with bucket versioning only.
        #[arg(long, value_name = "TIME")]
        as_of: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Write a new age identity and recipient and a minisign key pair into
    /// DIR (created 0700; secret files 0600; existing files are never
    /// overwritten). Needs no configuration file.
    Generate {
        /// Directory to write `age-identity.txt`, `age-recipient.txt`,
        /// `minisign.key` and `minisign.pub` into.
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Read backup times (RFC 3339, one per line) on stdin and show what the
    /// policy keeps and why, newest first.
    Simulate {
        /// A policy file (see policies/).
        policy: PathBuf,
        /// Print a JSON array, newest first (as the table).
        #[arg(long)]
        json: bool,
    },
}

/// Which backup and which of its sources, as `restore` and `ls` both ask.
#[derive(Debug, clap::Args)]
pub struct BackupPick {
    /// A backup ID or `latest`.
    #[arg(long, default_value = "latest")]
    pub backup: String,
    /// Only this source.
    #[arg(long)]
    pub source: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The job whose backup to restore (needed when there are several).
    #[arg(long)]
    pub job: Option<String>,
    #[command(flatten)]
    pub pick: BackupPick,
    /// Only this database of a PostgreSQL source.
    #[arg(long)]
    pub database: Option<String>,
    /// Restore the database under another name (created if missing).
    #[arg(long)]
    pub target_db: Option<String>,
    /// Restore only this table of the database (repeatable), with its data,
    /// indexes, constraints, owned sequences, grants and comments; a part
    /// holding a dot goes in double quotes. See docs/restore.md.
    #[arg(long, value_name = "SCHEMA.TABLE")]
    pub table: Vec<String>,
    /// Restore only the objects of this schema of the database (repeatable).
    #[arg(long, value_name = "SCHEMA")]
    pub schema: Vec<String>,
    /// Drop and recreate existing objects in a non-empty target database.
    #[arg(long)]
    pub clean: bool,
    /// Allow restoring over the original database or over existing files.
    #[arg(long)]
    pub force: bool,
    /// Parallel pg_restore jobs (1 restores in a single transaction).
    #[arg(long, default_value_t = 1)]
    pub jobs: u32,
    /// Also apply roles and tablespaces (pg_dumpall --globals-only).
    #[arg(long)]
    pub globals: bool,
    /// With --globals: roles that already exist on the target keep their
    /// current password (the backup's PASSWORD is dropped for them).
    #[arg(long, requires = "globals")]
    pub keep_role_passwords: bool,
    /// Do not restore object ownership (when the roles do not exist).
    #[arg(long)]
    pub no_owner: bool,
    /// Restore a directory source into DIR instead of the path the
    /// configuration gives for it.
    #[arg(long, value_name = "DIR")]
    pub to: Option<PathBuf>,
    /// Apply owner, group and setuid/setgid bits from the archive (as root;
    /// like `tar --same-owner`). Off by default: the archive comes from the
    /// store and is not trusted to choose who owns what.
    #[arg(long)]
    pub same_owner: bool,
    /// Allow `postgres`, `template0` or `template1` as a restore target when
    /// it already exists (they are never treated as empty databases).
    #[arg(long)]
    pub allow_system_db: bool,
    /// With `encryption:` configured, restore artifacts stored unencrypted
    /// anyway (backups taken before encryption was switched on).
    #[arg(long)]
    pub allow_unencrypted: bool,
    /// Only restore files whose relative path matches GLOB (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Show what would be restored, where, and what it would replace.
    #[arg(long)]
    pub dry_run: bool,
    /// age identity file for encrypted backups (overrides
    /// `encryption.identity_file`).
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Where artifacts are staged while they are verified (default: TMPDIR).
    #[arg(long, value_name = "DIR")]
    pub staging_dir: Option<PathBuf>,
    /// Print one JSON report (docs/schema/restore.json) instead of lines.
    #[arg(long)]
    pub json: bool,
    /// See the store as it was at TIME (RFC 3339, e.g. what `list`
    /// prints): every object's newest version written by then, ignoring
    /// later writes and deletes. S3 stores with bucket versioning only.
    #[arg(long, value_name = "TIME")]
    pub as_of: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// The job whose backup to list (needed when there are several).
    #[arg(long)]
    pub job: Option<String>,
    #[command(flatten)]
    pub pick: BackupPick,
    /// Type, mode, owner, size and time of each path; owners and dump ids
    /// of TOC entries.
    #[arg(long)]
    pub long: bool,
    /// Print one JSON document (docs/schema/ls.json) instead of lines.
    #[arg(long)]
    pub json: bool,
    /// age identity file for encrypted backups (overrides
    /// `encryption.identity_file`).
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// With `encryption:` configured, list artifacts stored unencrypted
    /// anyway (backups taken before encryption was switched on).
    #[arg(long)]
    pub allow_unencrypted: bool,
    /// Only paths matching GLOB (restore's --include syntax; quote it so
    /// the shell leaves it alone). With a GLOB only tree sources are listed.
    #[arg(value_name = "GLOB")]
    pub globs: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parser_builds_and_parses() {
        command().debug_assert();
        let m = command()
            .try_get_matches_from(["ccbackup", "--config", "/x.yaml", "keys", "generate", "d"])
            .unwrap();
        let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&m).unwrap();
        assert_eq!(cli.config, PathBuf::from("/x.yaml"));
    }
}

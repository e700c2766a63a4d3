//! Command-line interface types (clap derive only; no behaviour here).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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
    },
    /// List complete backups in the store.
    List {
        /// Only this job.
        #[arg(long)]
        job: Option<String>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Validate the configuration file and report every problem.
    CheckConfig,
}

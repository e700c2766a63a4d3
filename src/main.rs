//! Thin entry point: parse arguments, set up logging, run, map errors to
//! exit codes. Everything else lives in the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::FromArgMatches;
use tracing_subscriber::EnvFilter;

use ccbackup::app;
use ccbackup::cli::{Cli, LogFormat};
use ccbackup::error::chain;

/// tokio-cron-scheduler logs "Job creator created" and the like at INFO on
/// every start: its own plumbing, not ccbackup's news.
const QUIET_SCHEDULER: &str = "tokio_cron_scheduler=warn";

fn init_tracing(cli: &Cli) {
    let spec = cli
        .log_level
        .clone()
        .or_else(|| std::env::var(EnvFilter::DEFAULT_ENV).ok())
        .unwrap_or_else(|| "info".to_owned());
    // An operator who names the scheduler's target gets what they asked for.
    let spec = if spec.contains("tokio_cron_scheduler") {
        spec
    } else {
        format!("{spec},{QUIET_SCHEDULER}")
    };
    let filter = EnvFilter::new(&spec);
    let json = match cli.log_format {
        Some(LogFormat::Json) => true,
        Some(LogFormat::Text) => false,
        None => !std::io::stderr().is_terminal(),
    };
    // Colour only for a person at a terminal who has not asked for none.
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        // A closed stderr (`2>&1 | head`) must not turn into a panic: the
        // subscriber would eprintln! its own write error.
        .log_internal_errors(false)
        .with_writer(std::io::stderr);
    if json {
        // Run reports keep their nulls and lists (see `app::logfmt`).
        builder
            .json()
            .event_format(app::logfmt::JsonWithReports::default())
            .init();
    } else {
        builder.init();
    }
}

/// `eprintln!` that survives a closed stderr (see `app::out`).
macro_rules! note {
    ($($arg:tt)*) => {
        app::out::note_line(format_args!($($arg)*))
    };
}

fn main() -> ExitCode {
    // Everything ccbackup creates holds database contents or role password
    // hashes: staging files, decompressed dumps, objects of a file:// store.
    // Private by default; restored files get their modes from the archive
    // explicitly, so they are not affected.
    let _ = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    // Before any thread exists (see the module for why).
    ccbackup::sys::mem::bound_allocator();
    let cli = match Cli::from_arg_matches(&ccbackup::cli::command().get_matches()) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    init_tracing(&cli);
    // Before any thread exists: secrets are read, then root is dropped.
    let cfg = match app::prepare(&cli) {
        Ok(c) => c,
        Err(e) => {
            note!("error: {}", chain(&e));
            return ExitCode::from(e.exit_code());
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            note!("error: cannot start the async runtime: {e}");
            return ExitCode::from(app::EXIT_FAILURE);
        }
    };
    match rt.block_on(app::run(cli, cfg)) {
        Ok(()) => match app::out::failure() {
            None => ExitCode::SUCCESS,
            Some(why) => {
                note!("error: cannot write the output: {why}");
                ExitCode::from(app::EXIT_FAILURE)
            }
        },
        Err(e) => {
            note!(
                "error: {}",
                ccbackup::progress::printable(&chain(&e).to_string())
            );
            ExitCode::from(e.exit_code())
        }
    }
}

//! Thin entry point: parse arguments, set up logging, run, map errors to
//! exit codes. Everything else lives in the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use ccbackup::app;
use ccbackup::cli::{Cli, LogFormat};
use ccbackup::error::chain;

fn init_tracing(cli: &Cli) {
    let filter = cli
        .log_level
        .as_deref()
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
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
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    // Everything ccbackup creates holds database contents or role password
    // hashes: staging files, decompressed dumps, objects of a file:// store.
    // Private by default; restored files get their modes from the archive
    // explicitly, so they are not affected.
    let _ = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    // Before any thread exists (see the module for why).
    ccbackup::sys::mem::bound_allocator();
    let cli = Cli::parse();
    init_tracing(&cli);
    // Before any thread exists: secrets are read, then root is dropped.
    let cfg = match app::prepare(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            return ExitCode::from(e.exit_code());
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(app::EXIT_FAILURE);
        }
    };
    match rt.block_on(app::run(cli, cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "error: {}",
                ccbackup::progress::printable(&chain(&e).to_string())
            );
            ExitCode::from(e.exit_code())
        }
    }
}

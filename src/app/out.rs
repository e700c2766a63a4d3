//! Standard output for command results, and standard error for the notes
//! and errors around them. A reader that goes away early (`ccbackup list |
//! head -1`, or `2>&1 | head -1` for both) is normal: the rest of the
//! output is dropped and the command finishes its work and exits as it
//! would have. Any other stdout write error (a full disk under `> file`)
//! is kept and turns a successful exit into a failure, since the output
//! the operator asked for is lost.

use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static CLOSED: AtomicBool = AtomicBool::new(false);
static FAILED: Mutex<Option<String>> = Mutex::new(None);

/// `println!` for command output: never panics, stops writing once the
/// reader has gone.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::app::out::line(format_args!($($arg)*))
    };
}
pub(crate) use say;

pub fn line(args: std::fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    let result = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(e) = result {
        CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != ErrorKind::BrokenPipe {
            if let Ok(mut f) = FAILED.lock() {
                f.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// `eprintln!` for notes, warnings and errors: never panics; once stderr is
/// closed, nothing more is written to it.
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::app::out::note_line(format_args!($($arg)*))
    };
}
pub(crate) use note;

static ERR_CLOSED: AtomicBool = AtomicBool::new(false);

pub fn note_line(args: std::fmt::Arguments<'_>) {
    note_raw(format_args!("{args}\n"));
}

/// As [`note_line`] without the newline (terminal control sequences).
pub fn note_raw(args: std::fmt::Arguments<'_>) {
    if ERR_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut err = std::io::stderr().lock();
    if err.write_fmt(args).and_then(|()| err.flush()).is_err() {
        ERR_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Why standard output could not be written, other than its reader
/// closing it; `None` when everything was written or the reader left.
pub fn failure() -> Option<String> {
    FAILED.lock().ok().and_then(|f| f.clone())
}

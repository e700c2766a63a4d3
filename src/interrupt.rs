//! SIGINT and SIGTERM for one-shot commands (`run-now`, `restore`,
//! `verify`, `prune`).
//!
//! A signal does not end the process: it fires a [`CancellationToken`] that
//! the command passes down. Children are killed (their whole process group),
//! uploads are aborted, what the run wrote is removed, locks are released,
//! staging is deleted; then the command says what was stopped and exits
//! with `128 + signal` (130 for Ctrl-C, 143 for SIGTERM), like a shell does.
//! A second signal while cleaning up is only logged: cutting the cleanup
//! short is what leaves things behind.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::sys::child::KillSwitch;

#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    token: CancellationToken,
    signal: Arc<AtomicI32>,
}

impl Interrupt {
    /// Installs the SIGINT and SIGTERM handlers for this process.
    pub fn listen() -> std::io::Result<Interrupt> {
        use tokio::signal::unix::{signal, SignalKind};
        let me = Interrupt::default();
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let handle = me.clone();
        tokio::spawn(async move {
            loop {
                let (name, num) = tokio::select! {
                    _ = term.recv() => ("SIGTERM", libc::SIGTERM),
                    _ = int.recv() => ("SIGINT", libc::SIGINT),
                };
                if handle.token.is_cancelled() {
                    tracing::warn!(
                        signal = name,
                        "already stopping; cleaning up what this command wrote"
                    );
                    continue;
                }
                tracing::warn!(
                    signal = name,
                    "stopping: cleaning up what this command wrote"
                );
                handle.fire(num);
            }
        });
        Ok(me)
    }

    /// Marks the command interrupted by `signal` (tests and the handler).
    pub fn fire(&self, signal: i32) {
        let _ = self
            .signal
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
        self.token.cancel();
    }

    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    pub fn is_interrupted(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The signal that stopped the command, if any.
    pub fn signal(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    pub fn signal_name(&self) -> &'static str {
        match self.signal() {
            Some(libc::SIGINT) => "SIGINT",
            Some(libc::SIGTERM) => "SIGTERM",
            _ => "a signal",
        }
    }

    /// The shell's convention: 128 + signal number.
    pub fn exit_code(&self) -> Option<u8> {
        self.signal().map(|s| (128 + s).clamp(0, 255) as u8)
    }
}

/// Throws `kill` when `cancel` fires; the returned guard stops watching.
pub fn kill_on_cancel(cancel: &CancellationToken, kill: &KillSwitch) -> WatchGuard {
    let cancel = cancel.clone();
    let kill = kill.clone();
    WatchGuard(tokio::spawn(async move {
        cancel.cancelled().await;
        kill.kill();
    }))
}

/// Aborts its watcher task when dropped.
#[derive(Debug)]
pub struct WatchGuard(tokio::task::JoinHandle<()>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A reader that fails once `cancel` fires, so blocking work that pulls
/// from it (tar extraction, a pipe into a child) stops at the next read.
/// The error is not `ErrorKind::Interrupted`, which readers retry.
pub struct CancelRead<R> {
    inner: R,
    cancel: CancellationToken,
}

impl<R> CancelRead<R> {
    pub fn new(inner: R, cancel: CancellationToken) -> Self {
        CancelRead { inner, cancel }
    }
}

impl<R: std::io::Read> std::io::Read for CancelRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Err(std::io::Error::other("stopped by a signal"));
        }
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        let i = Interrupt::default();
        assert_eq!(i.exit_code(), None);
        i.fire(libc::SIGINT);
        assert_eq!(i.exit_code(), Some(130));
        // The first signal decides.
        i.fire(libc::SIGTERM);
        assert_eq!(i.exit_code(), Some(130));
        assert!(i.token().is_cancelled());
        let t = Interrupt::default();
        t.fire(libc::SIGTERM);
        assert_eq!(t.exit_code(), Some(143));
        assert_eq!(t.signal_name(), "SIGTERM");
    }

    #[test]
    fn cancel_read_stops_at_the_next_read() {
        use std::io::Read;
        let token = CancellationToken::new();
        let mut r = CancelRead::new(&b"abcdef"[..], token.clone());
        let mut buf = [0u8; 3];
        assert_eq!(r.read(&mut buf).unwrap(), 3);
        token.cancel();
        let err = r.read(&mut buf).unwrap_err();
        assert_ne!(err.kind(), std::io::ErrorKind::Interrupted);
    }
}

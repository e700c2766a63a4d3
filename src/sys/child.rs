//! Runs a dump program and streams its stdout into a writer.
//!
//! Success is judged only after stdout reached EOF *and* the exit status is
//! zero: a dump that was cut short (killed, server gone) ends its output
//! early and exits non-zero, and must never count. stderr is drained on its
//! own thread (a full pipe would block the child) and its tail is kept for
//! the error message.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use tokio_util::sync::CancellationToken;

use crate::retry::{Class, Transient};

/// How much of stderr is kept for error messages.
const STDERR_TAIL: usize = 4096;
/// Read size from the child's stdout.
const READ_BUF: usize = 256 * 1024;
/// Capacity asked for every pipe to or from a child. pg_dump writes its
/// archive 4 KiB at a time and pg_restore and psql read theirs through a
/// 4 KiB stdio buffer; with the default 64 KiB pipe each side blocks, and
/// wakes the other, every 16 of those. A pipe of 1 MiB (Linux's default
/// limit for unprivileged processes) lets both run longer between switches.
const PIPE_CAPACITY: usize = 1024 * 1024;

/// Asks for a [`PIPE_CAPACITY`] pipe. Only a speed-up: a kernel that
/// refuses keeps the default size.
fn widen(pipe: &impl rustix::fd::AsFd) {
    let _ = rustix::pipe::fcntl_setpipe_size(pipe, PIPE_CAPACITY);
}

#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("cannot start {program}")]
    Spawn { program: String, source: io::Error },
    #[error("reading output of {program} failed")]
    Read { program: String, source: io::Error },
    #[error("writing output of {program} failed")]
    Write { program: String, source: io::Error },
    #[error("{program} failed ({status}){}", tail_suffix(stderr))]
    Failed {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("{program} was cancelled")]
    Cancelled { program: String },
}

impl Transient for ChildError {
    /// A program that could not start, exited non-zero (its status and
    /// stderr are text, nothing typed says "connection trouble") or was
    /// killed by our kill switch is not retried; broken pipes are decided
    /// by their I/O kind.
    fn class(&self) -> Class {
        match self {
            ChildError::Read { source, .. } | ChildError::Write { source, .. } => source.class(),
            ChildError::Spawn { .. } | ChildError::Failed { .. } | ChildError::Cancelled { .. } => {
                Class::Permanent
            }
        }
    }
}

fn tail_suffix(stderr: &str) -> String {
    let t = stderr.trim();
    if t.is_empty() {
        String::new()
    } else {
        format!(": {t}")
    }
}

/// A handle that can kill a running child from another thread (cancellation).
/// Blocking threads read the flag; async code awaits [`KillSwitch::killed`].
#[derive(Clone, Default)]
pub struct KillSwitch(Arc<Mutex<KillState>>, CancellationToken);

#[derive(Default)]
struct KillState {
    pid: Option<u32>,
    killed: bool,
}

impl KillSwitch {
    /// Kills the registered child, or any child registered later.
    pub fn kill(&self) {
        if let Ok(mut s) = self.0.lock() {
            s.killed = true;
            if let Some(pid) = s.pid {
                kill_group(pid);
            }
        }
        self.1.cancel();
    }

    /// Resolves once [`KillSwitch::kill`] has been called.
    pub async fn killed(&self) {
        self.1.cancelled().await
    }

    /// A token cancelled when [`KillSwitch::kill`] is called: the branch
    /// of the cancellation tree for work that follows the run (copies).
    pub fn child_token(&self) -> CancellationToken {
        self.1.child_token()
    }

    /// Whether `kill` was called: a cancelled run must not commit.
    pub fn is_killed(&self) -> bool {
        self.0.lock().map(|s| s.killed).unwrap_or(true)
    }

    fn register(&self, child: &mut Child) -> bool {
        match self.0.lock() {
            Ok(mut s) => {
                if s.killed {
                    kill_group(child.id());
                    return false;
                }
                s.pid = Some(child.id());
                true
            }
            Err(_) => true,
        }
    }

    fn unregister(&self) -> bool {
        match self.0.lock() {
            Ok(mut s) => {
                s.pid = None;
                s.killed
            }
            Err(_) => false,
        }
    }
}

/// Kills the process group a child of ours leads. Every child runs in a
/// group of its own (see [`spawn`]), so workers it forked (`pg_restore -j`)
/// go too, instead of finishing a restore after ccbackup gave up on it.
fn kill_group(pid: u32) {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    // The group of a child we spawned and have not reaped, so the group id
    // cannot have been reused. Failure (the group is gone) needs no action.
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
}

/// Runs `cmd` (stdin closed, stdout and stderr piped), copies stdout into
/// `out`, and returns the number of bytes copied once the child exited 0.
pub fn stream_stdout(
    program: &str,
    mut cmd: Command,
    out: &mut dyn Write,
    kill: &KillSwitch,
) -> Result<u64, ChildError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn(program, &mut cmd, kill)?;
    let (tail, drain) = drain_stderr(&mut child);
    let copied = match child.stdout.take() {
        Some(mut stdout) => {
            widen(&stdout);
            copy(&mut stdout, out, program)
        }
        None => Ok(0),
    };
    if copied.is_err() {
        // The consumer is gone: stop the child rather than let it block.
        kill_group(child.id());
    }
    let status = child.wait();
    finish(program, status, copied, kill, tail, drain)
}

type Tail = Arc<Mutex<VecDeque<u8>>>;

/// Clears the child's environment down to what any client program needs:
/// where to find programs, the locale of its messages, time zone and temp
/// directory. Callers add the one variable that carries a secret.
pub fn clean_env(cmd: &mut Command) {
    cmd.env_clear();
    for (k, v) in std::env::vars_os() {
        let keep = k.to_str().is_some_and(|name| {
            matches!(name, "PATH" | "LANG" | "LANGUAGE" | "TZ" | "TMPDIR")
                || name.starts_with("LC_")
        });
        if keep {
            cmd.env(k, v);
        }
    }
}

/// Starts the child and registers it with the kill switch (a switch already
/// thrown kills it at once).
fn spawn(program: &str, cmd: &mut Command, kill: &KillSwitch) -> Result<Child, ChildError> {
    use std::os::unix::process::CommandExt;
    // A group of its own: a terminal's Ctrl-C reaches ccbackup only, which
    // then stops the child's whole group and cleans up in order.
    cmd.process_group(0);
    let mut child = cmd.spawn().map_err(|source| ChildError::Spawn {
        program: program.to_owned(),
        source,
    })?;
    if !kill.register(&mut child) {
        let _ = child.wait();
        return Err(ChildError::Cancelled {
            program: program.to_owned(),
        });
    }
    Ok(child)
}

/// Drains the child's stderr on a thread, keeping the last `STDERR_TAIL`
/// bytes: a full stderr pipe would otherwise block the child.
fn drain_stderr(child: &mut Child) -> (Tail, Option<thread::JoinHandle<()>>) {
    let tail: Tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
    let drain = child.stderr.take().map(|mut err| {
        let tail = tail.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match err.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if let Ok(mut t) = tail.lock() {
                            t.extend(&buf[..n]);
                            let excess = t.len().saturating_sub(STDERR_TAIL);
                            t.drain(..excess);
                        }
                    }
                }
            }
        })
    });
    (tail, drain)
}

/// Judges a finished child: cancelled, copy failure, or exit status.
fn finish(
    program: &str,
    status: io::Result<ExitStatus>,
    copied: Result<u64, ChildError>,
    kill: &KillSwitch,
    tail: Tail,
    drain: Option<thread::JoinHandle<()>>,
) -> Result<u64, ChildError> {
    let cancelled = kill.unregister();
    if let Some(h) = drain {
        let _ = h.join();
    }
    let stderr = tail
        .lock()
        .map(|t| String::from_utf8_lossy(&t.iter().copied().collect::<Vec<u8>>()).into_owned())
        .unwrap_or_default();
    if cancelled {
        return Err(ChildError::Cancelled {
            program: program.to_owned(),
        });
    }
    let status = status.map_err(|source| ChildError::Read {
        program: program.to_owned(),
        source,
    })?;
    // A non-zero exit explains a broken pipe better than the pipe error.
    if !status.success() {
        return Err(ChildError::Failed {
            program: program.to_owned(),
            status: describe(status),
            stderr,
        });
    }
    copied
}

/// Runs `cmd` with `input` copied into its stdin (stdout discarded, stderr
/// tail kept); succeeds only when all input was written and the child
/// exited 0.
pub fn feed_stdin(
    program: &str,
    mut cmd: Command,
    input: &mut dyn Read,
    kill: &KillSwitch,
) -> Result<u64, ChildError> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = spawn(program, &mut cmd, kill)?;
    let (tail, drain) = drain_stderr(&mut child);
    let copied = match child.stdin.take() {
        // Dropping stdin at the end of this arm sends EOF to the child.
        Some(mut stdin) => {
            widen(&stdin);
            copy(input, &mut stdin, program)
        }
        None => Ok(0),
    };
    let status = child.wait();
    finish(program, status, copied, kill, tail, drain)
}

/// Runs `cmd` with `input` on its stdin and copies its stdout into `out`.
///
/// Unlike [`feed_stdin`], a child that exits 0 without reading all of its
/// input succeeds: `pg_restore --list` reads an archive's table of contents
/// and stops, and the broken pipe that leaves the writer is expected. A
/// failure to write into `out` (a size cap) stops the child.
pub fn feed_capture(
    program: &str,
    mut cmd: Command,
    input: &mut (dyn Read + Send),
    out: &mut dyn Write,
    kill: &KillSwitch,
) -> Result<u64, ChildError> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn(program, &mut cmd, kill)?;
    let (tail, drain) = drain_stderr(&mut child);
    let feed_in = child.stdin.take();
    let stdout = child.stdout.take();
    let (fed, copied) = thread::scope(|scope| {
        let feeder = scope.spawn(move || match feed_in {
            Some(mut stdin) => copy(input, &mut stdin, program).map(|_| ()),
            None => Ok(()),
        });
        let copied = match stdout {
            Some(mut stdout) => copy(&mut stdout, out, program),
            None => Ok(0),
        };
        if copied.is_err() {
            kill_group(child.id());
        }
        let fed = feeder.join().unwrap_or_else(|_| {
            Err(ChildError::Write {
                program: program.to_owned(),
                source: io::Error::other("input thread panicked"),
            })
        });
        (fed, copied)
    });
    let status = child.wait();
    let early_exit = matches!(&fed, Err(ChildError::Write { source, .. })
        if source.kind() == io::ErrorKind::BrokenPipe);
    let copied = match fed {
        Err(e) if !early_exit => Err(e),
        _ => copied,
    };
    finish(program, status, copied, kill, tail, drain)
}

/// Runs `first` with `input` on its stdin and `second` reading what
/// `transform` makes of `first`'s stdout (`first | transform | second`).
///
/// Succeeds only when all input was written, `transform` read `first`'s
/// output to the end, and both exited 0. `second`'s stdin is closed only
/// after `first` was judged successful: when `first` or `transform` fails,
/// `second` is killed while its input is still open, so a consumer such as
/// `psql --single-transaction` never sees a clean end of a cut-short script
/// (which it would commit).
pub fn pipe_through(
    (first_name, mut first): (&str, Command),
    input: &mut (dyn Read + Send),
    transform: &mut dyn FnMut(&mut dyn Read, &mut dyn Write) -> io::Result<()>,
    (second_name, mut second): (&str, Command),
    kills: (&KillSwitch, &KillSwitch),
) -> Result<(), ChildError> {
    second
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut consumer = spawn(second_name, &mut second, kills.1)?;
    let (tail2, drain2) = drain_stderr(&mut consumer);
    first
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut producer = match spawn(first_name, &mut first, kills.0) {
        Ok(c) => c,
        Err(e) => {
            kill_group(consumer.id());
            let _ = consumer.wait();
            kills.1.unregister();
            return Err(e);
        }
    };
    let (tail1, drain1) = drain_stderr(&mut producer);
    let feed_in = producer.stdin.take();
    let out1 = producer.stdout.take();
    let mut in2 = consumer.stdin.take();
    if let Some(p) = &feed_in {
        widen(p);
    }
    if let Some(p) = &out1 {
        widen(p);
    }
    if let Some(p) = &in2 {
        widen(p);
    }
    let (fed, moved) = thread::scope(|scope| {
        let feeder = scope.spawn(move || match feed_in {
            // Dropping stdin at the end sends EOF to `first`.
            Some(mut stdin) => copy(input, &mut stdin, first_name).map(|_| ()),
            None => Ok(()),
        });
        let moved = match (out1, in2.as_mut()) {
            (Some(mut out), Some(stdin)) => {
                transform(&mut out, stdin).map_err(|source| ChildError::Write {
                    program: second_name.to_owned(),
                    source,
                })
            }
            _ => Ok(()),
        };
        if moved.is_err() {
            kill_group(producer.id());
        }
        let fed = feeder.join().unwrap_or_else(|_| {
            Err(ChildError::Write {
                program: first_name.to_owned(),
                source: io::Error::other("input thread panicked"),
            })
        });
        (fed, moved)
    });
    let status1 = producer.wait();
    let first_ok = fed.is_ok() && moved.is_ok() && status1.as_ref().is_ok_and(|s| s.success());
    if !first_ok {
        kill_group(consumer.id());
    }
    drop(in2);
    let status2 = consumer.wait();
    let r1 = finish(
        first_name,
        status1,
        fed.and(moved).map(|_| 0),
        kills.0,
        tail1,
        drain1,
    );
    let r2 = finish(second_name, status2, Ok(0), kills.1, tail2, drain2);
    // The producer's failure is the cause; the consumer was killed for it.
    r1.and(r2).map(|_| ())
}

fn copy(from: &mut dyn Read, to: &mut dyn Write, program: &str) -> Result<u64, ChildError> {
    let mut buf = vec![0u8; READ_BUF];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(ChildError::Read {
                    program: program.to_owned(),
                    source,
                })
            }
        };
        to.write_all(&buf[..n])
            .map_err(|source| ChildError::Write {
                program: program.to_owned(),
                source,
            })?;
        total += n as u64;
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => status.to_string(),
    }
}

/// Runs a short command and returns its stdout (for `--version` probes).
pub fn capture(program: &str, cmd: Command) -> Result<String, ChildError> {
    let mut out = Vec::new();
    stream_stdout(program, cmd, &mut out, &KillSwitch::default())?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn feed_capture_accepts_a_child_that_stops_reading_early() {
        let mut input = std::io::repeat(b'x').take(64 * 1024 * 1024);
        let mut out = Vec::new();
        let kill = KillSwitch::default();
        feed_capture("sh", sh("head -c 5"), &mut input, &mut out, &kill).unwrap();
        assert_eq!(out, b"xxxxx");
        let mut input = std::io::repeat(b'x').take(1024);
        let err = feed_capture(
            "sh",
            sh("head -c 5; exit 3"),
            &mut input,
            &mut Vec::new(),
            &kill,
        )
        .unwrap_err();
        assert!(matches!(err, ChildError::Failed { .. }), "{err:?}");
    }

    #[test]
    fn copies_stdout_of_a_successful_child() {
        let mut out = Vec::new();
        let n = stream_stdout("sh", sh("printf hello"), &mut out, &KillSwitch::default()).unwrap();
        assert_eq!(n, 5);
        assert_eq!(out, b"hello");
    }

    /// python3 reading the size of the pipe on its fd `fd` and passing it
    /// to `report` as `size`. It polls (for at most 5 s) because the pipe is
    /// resized just after the spawn and the child may look first.
    fn pipe_size_probe(fd: u8, report: &str) -> Command {
        let script = format!(
            "import fcntl, sys, time\n\
             for _ in range(1000):\n    \
             if fcntl.fcntl({fd}, fcntl.F_GETPIPE_SZ) >= {PIPE_CAPACITY}: break\n    \
             time.sleep(0.005)\n\
             size = fcntl.fcntl({fd}, fcntl.F_GETPIPE_SZ)\n\
             {report}"
        );
        let mut cmd = Command::new("python3");
        cmd.arg("-c").arg(script);
        cmd
    }

    /// pg_dump writes 4 KiB at a time; the child must see the 1 MiB pipe.
    #[test]
    fn the_childs_stdout_pipe_is_enlarged() {
        let mut out = Vec::new();
        let cmd = pipe_size_probe(1, "print(size)");
        stream_stdout("python3", cmd, &mut out, &KillSwitch::default()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap().trim(),
            PIPE_CAPACITY.to_string()
        );
    }

    /// pg_restore reads its input through a 4 KiB stdio buffer: the pipe
    /// ccbackup feeds is enlarged too. The child writes what it saw to a
    /// file, as its stdout is discarded.
    #[test]
    fn the_childs_stdin_pipe_is_enlarged() {
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("size");
        let mut cmd = pipe_size_probe(
            0,
            "open(sys.argv[1], 'w').write(str(size))\nsys.stdin.buffer.read()",
        );
        cmd.arg(&seen);
        let input = vec![b'x'; 3 * 1024 * 1024];
        let n = feed_stdin("python3", cmd, &mut &input[..], &KillSwitch::default()).unwrap();
        assert_eq!(n, input.len() as u64);
        assert_eq!(
            std::fs::read_to_string(&seen).unwrap(),
            PIPE_CAPACITY.to_string()
        );
    }

    #[test]
    fn exit_failures_are_permanent_whatever_stderr_says() {
        let mut out = Vec::new();
        let err = stream_stdout(
            "sh",
            sh("echo 'could not connect to server: Connection refused; timed out' >&2; exit 1"),
            &mut out,
            &KillSwitch::default(),
        )
        .unwrap_err();
        assert_eq!(err.class(), Class::Permanent, "{err}");
        let spawn = stream_stdout(
            "ccbackup-no-such-program",
            Command::new("/nonexistent/ccbackup-no-such-program"),
            &mut out,
            &KillSwitch::default(),
        )
        .unwrap_err();
        assert!(matches!(spawn, ChildError::Spawn { .. }), "{spawn}");
        assert_eq!(spawn.class(), Class::Permanent);
        // The cause is the source, not part of the message.
        assert!(std::error::Error::source(&spawn).is_some());
        assert_eq!(spawn.to_string(), "cannot start ccbackup-no-such-program");
    }

    #[test]
    fn nonzero_exit_after_output_is_a_failure_with_stderr_tail() {
        let mut out = Vec::new();
        let err = stream_stdout(
            "sh",
            sh("printf partial; echo 'fatal: boom' >&2; exit 3"),
            &mut out,
            &KillSwitch::default(),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("exit status 3"), "{msg}");
        assert!(msg.contains("fatal: boom"), "{msg}");
    }

    #[test]
    fn large_stderr_does_not_deadlock_and_keeps_only_the_tail() {
        let mut out = Vec::new();
        let err = stream_stdout(
            "sh",
            sh("i=0; while [ $i -lt 20000 ]; do echo line$i >&2; i=$((i+1)); done; echo END >&2; exit 1"),
            &mut out,
            &KillSwitch::default(),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("END"), "{msg}");
        assert!(
            msg.len() < STDERR_TAIL + 200,
            "tail not bounded: {}",
            msg.len()
        );
    }

    #[test]
    fn killed_child_is_reported_as_signal() {
        let mut out = Vec::new();
        let err = stream_stdout(
            "sh",
            sh("printf x; kill -9 $$"),
            &mut out,
            &KillSwitch::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("signal 9"), "{err}");
    }

    #[test]
    fn kill_switch_cancels() {
        let ks = KillSwitch::default();
        let ks2 = ks.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            ks2.kill();
        });
        let mut out = Vec::new();
        let err = stream_stdout("sh", sh("exec sleep 30"), &mut out, &ks).unwrap_err();
        t.join().unwrap();
        assert!(matches!(err, ChildError::Cancelled { .. }), "{err}");
    }

    /// Async waiters (a run waiting for its lock) wake on the kill itself;
    /// a poll would show as virtual time passing.
    #[tokio::test(start_paused = true)]
    async fn killed_wakes_waiters_without_polling() {
        let ks = KillSwitch::default();
        let t0 = tokio::time::Instant::now();
        let waiter = tokio::spawn({
            let ks = ks.clone();
            async move { ks.killed().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        ks.kill();
        waiter.await.unwrap();
        assert_eq!(t0.elapsed(), std::time::Duration::ZERO);
        assert!(ks.is_killed());
    }

    /// Copies follow the run through a child token: the kill reaches them
    /// at once, with no time passing (nothing polls the flag).
    #[tokio::test(start_paused = true)]
    async fn the_child_token_is_cancelled_by_the_kill_without_polling() {
        let ks = KillSwitch::default();
        let copies = ks.child_token();
        let t0 = tokio::time::Instant::now();
        let waiter = tokio::spawn(async move { copies.cancelled().await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        ks.kill();
        waiter.await.unwrap();
        assert_eq!(t0.elapsed(), std::time::Duration::ZERO);
    }
}

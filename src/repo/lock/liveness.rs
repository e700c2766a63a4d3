//! Is the process that wrote a lease still running?
//!
//! A lease records where its holder ran: host name, kernel boot ID
//! (`/proc/sys/kernel/random/boot_id`), PID namespace (the inode of
//! `/proc/self/ns/pid`), pid, and the process start time (field 22 of
//! `/proc/<pid>/stat`, clock ticks since boot). A pid alone proves nothing:
//! in a container pid 1 comes back after every restart. The pair (pid,
//! start time) names one process for the life of a boot.
//!
//! A holder is judged only when the evidence is ours to read:
//! * another host name: cannot tell (the lease expires on its own);
//! * same host, another boot ID: the machine rebooted, the holder is dead;
//! * same boot, another PID namespace: cannot tell. A sibling container on
//!   a host-network setup shares the host name and boot ID, and its pids
//!   mean nothing here (its pid 1 is not our pid 1), so guessing would let
//!   a `docker compose run` steal a running daemon's lock;
//! * same namespace: no such pid, a zombie, or a pid started at another
//!   tick means dead; the same start time means alive. A pid that exists
//!   but whose `stat` we cannot read (`hidepid`) counts as alive.
//!
//! Hostname reuse across machines sharing one store is assumed not to
//! happen (it would also make the logs ambiguous).

use std::sync::LazyLock;

use super::Lease;

/// Where this process runs, as recorded in the leases it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Here {
    pub host: String,
    pub boot_id: Option<String>,
    pub pid_ns: Option<u64>,
    pub pid: u32,
    pub start_time: Option<u64>,
}

static HERE: LazyLock<Here> = LazyLock::new(|| Here {
    host: crate::sys::hostname(),
    boot_id: boot_id(),
    pid_ns: own_pid_ns(),
    pid: std::process::id(),
    start_time: std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_stat(&s))
        .map(|s| s.start_time),
});

/// This process's identity (read once).
pub fn here() -> &'static Here {
    &HERE
}

/// What became of a lease's holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Running on this host right now.
    Alive,
    /// Provably gone; the reason names the evidence.
    Dead(String),
    /// Not ours to judge (another host, container, or an older lease).
    Unknown(&'static str),
}

/// What `/proc` says about a pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    NoSuchProcess,
    /// Exited but not reaped yet.
    Zombie,
    StartedAt(u64),
    /// Exists, but its start time cannot be read.
    Hidden,
}

/// Judges `lease` as seen from `here`, asking `probe` about pids. Pure
/// apart from `probe`, so every branch is unit-tested.
pub fn judge(lease: &Lease, here: &Here, probe: impl Fn(u32) -> Probe) -> Verdict {
    if lease.host != here.host {
        return Verdict::Unknown("held on another host");
    }
    let (Some(boot), Some(started)) = (&lease.boot_id, lease.start_time) else {
        return Verdict::Unknown("the lease records no boot ID or start time");
    };
    let Some(our_boot) = &here.boot_id else {
        return Verdict::Unknown("this host's boot ID cannot be read");
    };
    if boot != our_boot {
        return Verdict::Dead("the host has rebooted since (boot ID differs)".to_owned());
    }
    match (lease.pid_ns, here.pid_ns) {
        (Some(a), Some(b)) if a == b => {}
        _ => return Verdict::Unknown("held in another PID namespace (another container)"),
    }
    let pid = lease.pid;
    match probe(pid) {
        Probe::NoSuchProcess => Verdict::Dead(format!("no process has pid {pid}")),
        Probe::Zombie => Verdict::Dead(format!("pid {pid} has exited")),
        Probe::StartedAt(t) if t != started => Verdict::Dead(format!(
            "pid {pid} is now another process (started at tick {t}, the holder at {started})"
        )),
        Probe::StartedAt(_) | Probe::Hidden => Verdict::Alive,
    }
}

/// Asks the kernel about `pid` in our PID namespace.
pub fn probe(pid: u32) -> Probe {
    // 0 and values beyond i32 are not pids (and kill(2) would read them as
    // process groups).
    let Ok(raw) = i32::try_from(pid) else {
        return Probe::NoSuchProcess;
    };
    if raw <= 0 {
        return Probe::NoSuchProcess;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(text) => match parse_stat(&text) {
            Some(s) if matches!(s.state, 'Z' | 'X') => Probe::Zombie,
            Some(s) => Probe::StartedAt(s.start_time),
            None => Probe::Hidden,
        },
        Err(_) => exists(raw),
    }
}

/// `kill(pid, 0)`: tells "no such process" apart from "not visible to us".
fn exists(pid: i32) -> Probe {
    // Pid::from_raw refuses 0 and negatives, which would probe a group.
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return Probe::Hidden;
    };
    match rustix::process::test_kill_process(pid) {
        Err(e) if e == rustix::io::Errno::SRCH => Probe::NoSuchProcess,
        _ => Probe::Hidden,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub state: char,
    pub start_time: u64,
}

/// Parses state (field 3) and start time (field 22) of `/proc/<pid>/stat`.
/// The command name (field 2) is in parentheses and may itself contain
/// spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 3 was `state`; field 22 is 19 further on.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(Stat { state, start_time })
}

fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_owned())
}

/// The inode of our PID namespace, from the `pid:[N]` link.
fn own_pid_ns() -> Option<u64> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    parse_ns_link(&link.to_string_lossy())
}

fn parse_ns_link(s: &str) -> Option<u64> {
    s.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn here_() -> Here {
        Here {
            host: "h".into(),
            boot_id: Some("boot".into()),
            pid_ns: Some(7),
            pid: 10,
            start_time: Some(100),
        }
    }

    fn lease(host: &str, boot: Option<&str>, ns: Option<u64>, pid: u32, st: Option<u64>) -> Lease {
        Lease {
            owner: "o".into(),
            host: host.into(),
            pid,
            purpose: "backup".into(),
            acquired: String::new(),
            expires: String::new(),
            boot_id: boot.map(str::to_owned),
            pid_ns: ns,
            start_time: st,
        }
    }

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let text =
            "42 (a) b) (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1234 56 \
                    18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                state: 'S',
                start_time: 987654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) R 1 2"), None);
    }

    #[test]
    fn own_stat_is_readable_and_ns_link_parses() {
        let me = here();
        assert!(me.start_time.is_some());
        assert!(me.boot_id.is_some());
        assert_eq!(parse_ns_link("pid:[4026531836]"), Some(4026531836));
        assert_eq!(parse_ns_link("net:[1]"), None);
        assert_eq!(
            probe(std::process::id()),
            Probe::StartedAt(me.start_time.unwrap())
        );
        assert_eq!(probe(0), Probe::NoSuchProcess);
        assert_eq!(probe(u32::MAX), Probe::NoSuchProcess);
    }

    #[test]
    fn verdicts() {
        let h = here_();
        let alive = |_| Probe::StartedAt(100);
        let l = |host, boot, ns, st| lease(host, boot, ns, 10, st);
        assert_eq!(
            judge(&l("other", Some("boot"), Some(7), Some(100)), &h, alive),
            Verdict::Unknown("held on another host")
        );
        assert!(matches!(
            judge(&l("h", None, None, None), &h, alive),
            Verdict::Unknown(_)
        ));
        assert!(matches!(
            judge(&l("h", Some("old"), Some(7), Some(100)), &h, alive),
            Verdict::Dead(_)
        ));
        assert!(matches!(
            judge(&l("h", Some("boot"), Some(8), Some(100)), &h, alive),
            Verdict::Unknown(_)
        ));
        assert!(matches!(
            judge(&l("h", Some("boot"), None, Some(100)), &h, alive),
            Verdict::Unknown(_)
        ));
        let lease_ok = l("h", Some("boot"), Some(7), Some(100));
        assert_eq!(judge(&lease_ok, &h, alive), Verdict::Alive);
        assert_eq!(judge(&lease_ok, &h, |_| Probe::Hidden), Verdict::Alive);
        for p in [Probe::NoSuchProcess, Probe::Zombie, Probe::StartedAt(101)] {
            assert!(
                matches!(judge(&lease_ok, &h, |_| p), Verdict::Dead(_)),
                "{p:?}"
            );
        }
    }
}

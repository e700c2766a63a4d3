//! Dropping root after start-up (`--user`, env `CCBACKUP_USER`).
//!
//! Docker secrets keep their host permissions, and Concertim's are root-owned
//! 0600 files, so an image that runs as an unprivileged user from the start
//! cannot read them. The image therefore starts as root; ccbackup reads its
//! configuration and every secret file, then switches to the service user
//! for good before any work starts (supplementary groups, gid, uid, in that
//! order, and a check that root cannot be regained).
//!
//! With `--keep-read-access` the process keeps exactly one capability,
//! `CAP_DAC_READ_SEARCH` (read any file, search any directory: no writes,
//! no chown, no kill), so it can still back up files such as a root-owned
//! 0600 `credentials.yml.enc`. The container must be granted it
//! (`cap_add: [DAC_READ_SEARCH]`); otherwise the switch fails saying so.
//!
//! This runs before the async runtime starts: `setuid` is applied to every
//! thread by the C library, but capabilities are per thread, and threads
//! created later inherit the state of the thread that creates them.

use std::io;

use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};

use rustix::thread::{
    capabilities, set_capabilities, set_keep_capabilities, CapabilitySet, CapabilitySets,
};

/// The user and group to switch to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub uid: u32,
    pub gid: u32,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropOutcome {
    /// Switched from root; `read_access` says whether CAP_DAC_READ_SEARCH
    /// was kept.
    Dropped { target: Target, read_access: bool },
    /// Not running as root: nothing to drop (e.g. compose's `user:` already
    /// chose the user).
    NotRoot { uid: u32 },
}

#[derive(Debug, thiserror::Error)]
pub enum PrivDropError {
    #[error("--user `{spec}`: {why}")]
    Spec { spec: String, why: String },
    #[error("switching to uid {uid} gid {gid} failed ({step})")]
    Switch {
        uid: u32,
        gid: u32,
        step: &'static str,
        source: io::Error,
    },
    #[error(
        "--keep-read-access: this process does not hold CAP_DAC_READ_SEARCH to keep \
         (in a container, grant it with `cap_add: [DAC_READ_SEARCH]`)"
    )]
    NoReadCapability,
    #[error("after switching to uid {uid}: {why}; refusing to continue")]
    Verify { uid: u32, why: String },
}

/// `USER[:GROUP]`, names or numbers; `None` means "stay as we are" (empty,
/// `root`, `0`, `0:0`). A name without a group takes the user's primary
/// group. `passwd` and `group` are the texts of /etc/passwd and /etc/group.
pub fn parse_spec(spec: &str, passwd: &str, group: &str) -> Result<Option<Target>, String> {
    let spec = spec.trim();
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() {
        return match grp {
            None => Ok(None),
            Some(_) => Err("a group needs a user (USER:GROUP)".to_owned()),
        };
    }
    let (uid, primary) = match user.parse::<u32>() {
        Ok(n) => (n, lookup_id(passwd, n, 2, 3)),
        Err(_) => {
            let (uid, gid) = lookup_name(passwd, user, 2, 3)
                .ok_or_else(|| format!("no user `{user}` in /etc/passwd"))?;
            (uid, Some(gid))
        }
    };
    let gid = match grp {
        Some(g) if !g.is_empty() => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                lookup_name(group, g, 2, 2)
                    .ok_or_else(|| format!("no group `{g}` in /etc/group"))?
                    .0
            }
        },
        _ => primary.ok_or_else(|| {
            format!("uid {uid} has no /etc/passwd entry: give the group as {uid}:GID")
        })?,
    };
    if uid == 0 {
        return if gid == 0 {
            Ok(None)
        } else {
            Err("switching to root with another group is not supported".to_owned())
        };
    }
    Ok(Some(Target { uid, gid }))
}

/// `(field a, field b)` of the line whose first field is `name`.
fn lookup_name(table: &str, name: &str, a: usize, b: usize) -> Option<(u32, u32)> {
    table.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&name) && f.len() > a.max(b))
            .then(|| Some((f[a].parse().ok()?, f[b].parse().ok()?)))?
    })
}

/// Field `b` of the line whose field `a` is `id`.
fn lookup_id(table: &str, id: u32, a: usize, b: usize) -> Option<u32> {
    table.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > a.max(b) && f[a].parse() == Ok(id)).then(|| f[b].parse().ok())?
    })
}

/// Resolves `spec` against this system's /etc/passwd and /etc/group.
pub fn resolve(spec: &str) -> Result<Option<Target>, PrivDropError> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    parse_spec(spec, &read("/etc/passwd"), &read("/etc/group")).map_err(|why| PrivDropError::Spec {
        spec: spec.to_owned(),
        why,
    })
}

fn caps_err(t: Target, step: &'static str) -> impl Fn(rustix::io::Errno) -> PrivDropError {
    move |e| PrivDropError::Switch {
        uid: t.uid,
        gid: t.gid,
        step,
        source: e.into(),
    }
}

fn check(r: nix::Result<()>, t: Target, step: &'static str) -> Result<(), PrivDropError> {
    r.map_err(|errno| PrivDropError::Switch {
        uid: t.uid,
        gid: t.gid,
        step,
        source: io::Error::from(errno),
    })
}

/// Switches the whole process to `t`. Call it while the process has one
/// thread (see the module docs).
pub fn drop_to(t: Target, keep_read_access: bool) -> Result<DropOutcome, PrivDropError> {
    let euid = rustix::process::geteuid().as_raw();
    if euid != 0 {
        return Ok(DropOutcome::NotRoot { uid: euid });
    }
    let read = CapabilitySet::DAC_READ_SEARCH;
    if keep_read_access {
        let have = capabilities(None).map_err(caps_err(t, "capget"))?;
        if !have.permitted.contains(read) {
            return Err(PrivDropError::NoReadCapability);
        }
        // The flag is per thread; the process has one thread here.
        set_keep_capabilities(true).map_err(caps_err(t, "keep capabilities"))?;
    }
    // nix, not rustix: rustix's set_thread_* calls change one thread only,
    // while nix calls glibc's wrappers, which apply the change to every
    // thread of the process.
    let (uid, gid) = (Uid::from_raw(t.uid), Gid::from_raw(t.gid));
    check(setgroups(&[gid]), t, "setgroups")?;
    check(setgid(gid), t, "setgid")?;
    check(setuid(uid), t, "setuid")?;
    let kept = if keep_read_access {
        read
    } else {
        CapabilitySet::empty()
    };
    if keep_read_access {
        set_capabilities(
            None,
            CapabilitySets {
                effective: read,
                permitted: read,
                inheritable: CapabilitySet::empty(),
            },
        )
        .map_err(caps_err(t, "capset CAP_DAC_READ_SEARCH"))?;
        set_keep_capabilities(false).map_err(caps_err(t, "clear keep capabilities"))?;
    }
    verify(t, kept)?;
    Ok(DropOutcome::Dropped {
        target: t,
        read_access: keep_read_access,
    })
}

fn verify(t: Target, caps: CapabilitySet) -> Result<(), PrivDropError> {
    let fail = |why: String| PrivDropError::Verify { uid: t.uid, why };
    use rustix::process::{getegid, geteuid, getgid, getuid};
    let ids = (
        getuid().as_raw(),
        geteuid().as_raw(),
        getgid().as_raw(),
        getegid().as_raw(),
    );
    if ids != (t.uid, t.uid, t.gid, t.gid) {
        return Err(fail(format!("ids are {ids:?}")));
    }
    // setuid(0) must fail now; if it does not we stop.
    if setuid(Uid::from_raw(0)).is_ok() {
        return Err(fail("setuid(0) succeeded".to_owned()));
    }
    let now = capabilities(None).map_err(|e| fail(format!("capget: {e}")))?;
    if now.effective != caps || now.permitted != caps {
        return Err(fail(format!(
            "capabilities are effective {:?}, permitted {:?}",
            now.effective, now.permitted
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        ccbackup:x:10001:10001::/var/lib/ccbackup:/usr/sbin/nologin\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\nccbackup:x:10001:\nnogroup:x:65534:\nbackup:x:34:\n";

    fn t(uid: u32, gid: u32) -> Option<Target> {
        Some(Target { uid, gid })
    }

    #[test]
    fn names_numbers_and_primary_groups() {
        assert_eq!(parse_spec("ccbackup", PASSWD, GROUP), Ok(t(10001, 10001)));
        assert_eq!(parse_spec("10001", PASSWD, GROUP), Ok(t(10001, 10001)));
        assert_eq!(parse_spec("nobody:backup", PASSWD, GROUP), Ok(t(65534, 34)));
        assert_eq!(parse_spec("4242:4343", PASSWD, GROUP), Ok(t(4242, 4343)));
    }

    #[test]
    fn root_and_empty_mean_stay() {
        for s in ["", "root", "0", "0:0", "root:root"] {
            assert_eq!(parse_spec(s, PASSWD, GROUP), Ok(None), "{s}");
        }
    }

    #[test]
    fn unknown_names_and_unknown_primary_groups_are_errors() {
        assert!(parse_spec("nosuch", PASSWD, GROUP).is_err());
        assert!(parse_spec("ccbackup:nosuch", PASSWD, GROUP).is_err());
        assert!(parse_spec("4242", PASSWD, GROUP)
            .unwrap_err()
            .contains("4242:GID"));
        assert!(parse_spec(":34", PASSWD, GROUP).is_err());
        assert!(parse_spec("0:34", PASSWD, GROUP).is_err());
    }
}

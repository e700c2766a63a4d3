//! What every area checker of the configuration shares: the problem
//! collector and the checks of values that appear in more than one area
//! (names, ports, intervals, sizes). A leaf inside `config`: it imports
//! none of the area checkers, so they and `validate` (which only
//! orchestrates them) never import each other.

use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::Problem;

/// Collects problems while walking the raw config. The second list holds
/// unreadable password files: a problem for the commands that connect to
/// that server (and for check-config and the daemon), not for restoring a
/// directory from a host where the database secret is out of reach. The
/// third holds source paths that do not exist now: after a disaster they
/// are exactly what a restore brings back, so only reading them fails.
pub(super) struct Problems(
    pub(super) Vec<Problem>,
    pub(super) Vec<Problem>,
    pub(super) Vec<Problem>,
);

impl Problems {
    pub(super) fn new() -> Problems {
        Problems(Vec::new(), Vec::new(), Vec::new())
    }

    pub(super) fn warn(
        &mut self,
        loc: &Location,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.2.push(Problem {
            line: loc.line(),
            column: loc.column(),
            key: key.into(),
            message: message.into(),
        });
    }

    pub(super) fn defer(
        &mut self,
        loc: &Location,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.1.push(Problem {
            line: loc.line(),
            column: loc.column(),
            key: key.into(),
            message: message.into(),
        });
    }

    pub(super) fn at(
        &mut self,
        loc: &Location,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.0.push(Problem {
            line: loc.line(),
            column: loc.column(),
            key: key.into(),
            message: message.into(),
        });
    }
}

/// Parses sizes such as `16MiB`, `8MB`, `1048576`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size like 16MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1024 * 1024,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1024 * 1024 * 1024,
        other => return Err(format!("unknown size unit `{other}` in `{s}`")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// A TCP port, 1-65535; out of range is reported under `{key}.port`.
pub(super) fn tcp_port(v: &Spanned<i64>, key: &str, p: &mut Problems) -> Option<u16> {
    match u16::try_from(v.value) {
        Ok(port) if port > 0 => Some(port),
        _ => {
            p.at(
                &v.referenced,
                format!("{key}.port"),
                format!("{} is out of range 1-65535", v.value),
            );
            None
        }
    }
}

/// Durations of daemon settings: `h`, `m` (minutes) and `s`, e.g. `26h`,
/// `1h30m`, `90s`.
pub(super) fn interval(v: &Spanned<String>, key: &str, p: &mut Problems) -> Option<Duration> {
    match crate::duration::parse_duration(&v.value) {
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            p.at(&v.referenced, key, "must be longer than zero");
            None
        }
        Err(e) => {
            p.at(&v.referenced, key, e.to_string());
            None
        }
    }
}

/// Names become object keys and metric labels: keep them to a safe charset.
pub(super) fn check_name(n: &Spanned<String>, key: &str, p: &mut Problems) {
    let ok = !n.value.is_empty()
        && n.value.len() <= 64
        && n.value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !n.value.starts_with('-');
    if !ok {
        p.at(
            &n.referenced,
            key,
            format!(
                "`{}` is not a valid name: use 1-64 letters, digits, `-` or `_`",
                n.value
            ),
        );
    }
}

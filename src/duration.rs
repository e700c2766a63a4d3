//! The one duration grammar of ccbackup: `<number><unit>` parts such as
//! `30s`, `1h30m`, `2d`, `14d` or `1y6mo`, each unit at most once, in any
//! order (`5h1y` is a year and five hours).
//!
//! Units mean the same everywhere: `y` years, `mo` months, `w` weeks, `d`
//! days, `h` hours, `m` MINUTES, `s` seconds. What differs is which units a
//! setting accepts:
//! - fixed-length settings (jitter, lock_ttl, grace periods, max_age,
//!   `--wait-lock`) take `w`, `d`, `h`, `m` and `s` ([`parse_duration`]);
//!   years and months have no fixed length, so they are refused;
//! - retention's `keep_within*` rules are calendar durations and take `y`,
//!   `mo`, `w`, `d` and `h` (see `retention::policy::KeepDuration`); `m`
//!   there is refused with a pointer to `mo`, because restic reads a bare
//!   `m` in a policy as months and a wrong guess deletes backups.

use std::time::Duration;

/// A unit of the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Years,
    Months,
    Weeks,
    Days,
    Hours,
    Minutes,
    Seconds,
}

impl Unit {
    fn from_symbol(s: &str) -> Option<Unit> {
        Some(match s {
            "y" => Unit::Years,
            "mo" => Unit::Months,
            "w" => Unit::Weeks,
            "d" => Unit::Days,
            "h" => Unit::Hours,
            "m" => Unit::Minutes,
            "s" => Unit::Seconds,
            _ => return None,
        })
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Unit::Years => "y",
            Unit::Months => "mo",
            Unit::Weeks => "w",
            Unit::Days => "d",
            Unit::Hours => "h",
            Unit::Minutes => "m",
            Unit::Seconds => "s",
        }
    }

    /// Seconds in one unit, for the units of fixed length.
    fn fixed_secs(self) -> Option<u64> {
        match self {
            Unit::Years | Unit::Months => None,
            Unit::Weeks => Some(7 * 86_400),
            Unit::Days => Some(86_400),
            Unit::Hours => Some(3_600),
            Unit::Minutes => Some(60),
            Unit::Seconds => Some(1),
        }
    }
}

/// Why a text is not a sequence of `<number><unit>` parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LexError {
    Empty,
    /// Text where a number should start.
    ExpectedNumber {
        at: String,
    },
    /// A number with nothing after it.
    NoUnit {
        digits: String,
    },
    UnknownUnit {
        unit: String,
    },
    /// A unit given twice (`1d2d`): almost certainly a typo.
    Repeated {
        unit: Unit,
    },
    TooLarge {
        digits: String,
    },
}

/// What [`LexError::Repeated`] tells the operator.
pub fn repeated(unit: Unit) -> String {
    format!("the unit '{}' appears more than once", unit.symbol())
}

/// Splits `text` into its parts.
pub fn lex(text: &str) -> Result<Vec<(u64, Unit)>, LexError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(LexError::Empty);
    }
    let mut parts: Vec<(u64, Unit)> = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (digits, after) = rest.split_at(digits_end);
        if digits.is_empty() {
            return Err(LexError::ExpectedNumber {
                at: after.to_owned(),
            });
        }
        let unit_end = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (symbol, tail) = after.split_at(unit_end);
        let n: u64 = digits.parse().map_err(|_| LexError::TooLarge {
            digits: digits.to_owned(),
        })?;
        let unit = match Unit::from_symbol(symbol) {
            Some(u) => u,
            None if symbol.is_empty() => {
                return Err(LexError::NoUnit {
                    digits: digits.to_owned(),
                })
            }
            None => {
                return Err(LexError::UnknownUnit {
                    unit: symbol.to_owned(),
                })
            }
        };
        if parts.iter().any(|(_, u)| *u == unit) {
            return Err(LexError::Repeated { unit });
        }
        parts.push((n, unit));
        rest = tail;
    }
    Ok(parts)
}

/// A fixed-length duration setting that could not be read. It does not say
/// what the duration is for: the caller names the setting.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{value:?} is not a duration: {reason} (durations look like 30s, 5m, 1h30m or 2d; m = minutes)"
)]
pub struct DurationError {
    pub value: String,
    pub reason: String,
}

/// Parses a fixed-length duration: units `w`, `d`, `h`, `m` (minutes) and
/// `s`; the grammar of every duration setting outside retention policies.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let fail = |reason: String| DurationError {
        value: s.to_owned(),
        reason,
    };
    let parts = lex(s).map_err(|e| {
        fail(match e {
            LexError::Empty => "empty".to_owned(),
            LexError::ExpectedNumber { .. } => "expected a number".to_owned(),
            LexError::NoUnit { .. } => "missing unit after number".to_owned(),
            LexError::UnknownUnit { unit } => format!("unknown unit {unit:?}"),
            LexError::Repeated { unit } => repeated(unit),
            LexError::TooLarge { .. } => "number too large".to_owned(),
        })
    })?;
    let mut total: u64 = 0;
    for (n, unit) in parts {
        let Some(secs) = unit.fixed_secs() else {
            return Err(fail(format!(
                "'{}' has no fixed length; use days (d) or weeks (w)",
                unit.symbol()
            )));
        };
        total = n
            .checked_mul(secs)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| fail("number too large".to_owned()))?;
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_durations() {
        let secs = |s: &str| parse_duration(s).map(|d| d.as_secs());
        assert_eq!(secs("30s"), Ok(30));
        assert_eq!(secs("5m"), Ok(300));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs(" 2d "), Ok(172_800));
        assert_eq!(secs("1w1d"), Ok(8 * 86_400));
        assert_eq!(secs("0s"), Ok(0));
    }

    #[test]
    fn fixed_duration_errors_say_why() {
        let why = |s: &str| parse_duration(s).unwrap_err().reason;
        assert_eq!(why(""), "empty");
        assert_eq!(why("h"), "expected a number");
        assert_eq!(why("10"), "missing unit after number");
        assert_eq!(why("5x"), "unknown unit \"x\"");
        assert_eq!(why("1m1m"), "the unit 'm' appears more than once");
        assert_eq!(parse_duration("30m1h").map(|d| d.as_secs()), Ok(5400));
        assert!(why("1mo").contains("no fixed length"));
        assert!(why("1y").contains("no fixed length"));
        assert_eq!(why("99999999999999999999s"), "number too large");
        assert_eq!(why("999999999999999w"), "number too large");
        let msg = parse_duration("5x").unwrap_err().to_string();
        assert!(
            msg.starts_with("\"5x\" is not a duration: unknown unit"),
            "{msg}"
        );
    }

    #[test]
    fn units_mean_the_same_in_every_setting() {
        assert_eq!(
            lex("1y2mo3w4d5h6m7s"),
            Ok(vec![
                (1, Unit::Years),
                (2, Unit::Months),
                (3, Unit::Weeks),
                (4, Unit::Days),
                (5, Unit::Hours),
                (6, Unit::Minutes),
                (7, Unit::Seconds),
            ])
        );
        assert_eq!(lex("2h1d"), Ok(vec![(2, Unit::Hours), (1, Unit::Days)]));
    }
}

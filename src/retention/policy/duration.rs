//! The calendar-duration grammar of the `keep_within*` rules (`48h`, `1y6m`,
//! `2w3d`) and its arithmetic on wall-clock time.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use crate::duration::{lex, repeated, LexError, Unit};

/// A calendar duration for the `keep_within*` rules, measured back from the newest backup.
///
/// Calendar units are kept apart (not converted to hours) because "1 month before 31 March" is
/// a calendar question; see [`KeepDuration::subtract_from`]. Weeks are folded into days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct KeepDuration {
    pub years: u32,
    pub months: u32,
    pub days: u32,
    pub hours: u32,
}

impl KeepDuration {
    /// True when every component is zero.
    pub fn is_zero(&self) -> bool {
        self.years == 0 && self.months == 0 && self.days == 0 && self.hours == 0
    }

    /// `t` minus this duration, with the arithmetic of restic (Go's `AddDate`, then hours).
    ///
    /// Years, months and days are subtracted from the wall-clock date in `t`'s zone and an
    /// overflowing day is normalised forward: 31 March minus one month is "31 February", which is
    /// 3 March (2 March in a leap year); 29 February 2024 minus one year is 1 March 2023. The wall
    /// clock time is kept and mapped back to an instant the way Go's `time.Date` does, so a time
    /// falling in a DST gap or overlap resolves as restic would resolve it. Hours are then
    /// subtracted as elapsed time. A result before the representable range saturates to the
    /// earliest instant, which for a cut-off means "everything is inside the window".
    pub fn subtract_from(&self, t: DateTime<Tz>) -> DateTime<Tz> {
        let tz = t.timezone();
        self.checked_subtract_from(t)
            .unwrap_or_else(|| DateTime::<Utc>::MIN_UTC.with_timezone(&tz))
    }

    fn checked_subtract_from(&self, t: DateTime<Tz>) -> Option<DateTime<Tz>> {
        let tz = t.timezone();
        let local = t.naive_local();
        let month_index = i64::from(local.year()) * 12 + i64::from(local.month0())
            - i64::from(self.years) * 12
            - i64::from(self.months);
        let year = i32::try_from(month_index.div_euclid(12)).ok()?;
        let month0 = u32::try_from(month_index.rem_euclid(12)).ok()?;
        let first_of_month = NaiveDate::from_ymd_opt(year, month0 + 1, 1)?;
        let day_offset = i64::from(local.day()) - 1 - i64::from(self.days);
        let date = first_of_month.checked_add_signed(TimeDelta::try_days(day_offset)?)?;
        let wall = date.and_time(local.time());
        let at = resolve_wall_clock_like_go(tz, wall)?;
        at.checked_sub_signed(TimeDelta::try_hours(i64::from(self.hours))?)
    }
}

/// Maps a wall-clock time to an instant the way Go's `time.Date` does, so that cut-offs match
/// restic's even when they land in a DST gap or overlap: guess the offset in force at the wall
/// time read as UTC; if the instant that guess produces is governed by another offset, use that
/// one instead. (Go's choice is not "earliest" or "latest" consistently, hence the emulation.)
fn resolve_wall_clock_like_go(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Tz>> {
    let offset_at = |instant: NaiveDateTime| {
        i64::from(
            tz.offset_from_utc_datetime(&instant)
                .fix()
                .local_minus_utc(),
        )
    };
    let guess = offset_at(wall);
    let utc_guess = wall.checked_sub_signed(TimeDelta::try_seconds(guess)?)?;
    let actual = offset_at(utc_guess);
    let utc = if actual == guess {
        utc_guess
    } else {
        wall.checked_sub_signed(TimeDelta::try_seconds(actual)?)?
    };
    Some(tz.from_utc_datetime(&utc))
}

/// Canonical form: `y`, `mo`, `d`, `h` in that order, zero parts left out (`1y6mo`, `14d`).
/// Weeks come back as days (`2w` displays as `14d`).
impl fmt::Display for KeepDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0h");
        }
        for (n, unit) in [
            (self.years, "y"),
            (self.months, "mo"),
            (self.days, "d"),
            (self.hours, "h"),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

/// Why a duration such as `keep_within: 3m` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {problem}")]
pub struct ParseDurationError {
    input: String,
    problem: String,
}

impl ParseDurationError {
    fn new(input: &str, problem: impl Into<String>) -> Self {
        ParseDurationError {
            input: input.to_owned(),
            problem: problem.into(),
        }
    }
}

const UNIT_HINT: &str =
    "use y (years), mo (months), w (weeks), d (days) or h (hours), e.g. 14d, 48h or 1y6mo";

impl FromStr for KeepDuration {
    type Err = ParseDurationError;

    /// Parses `<n><unit>` sequences such as `48h`, `14d`, `6w`, `1y6mo` or `1y2mo3w4d5h`, in the
    /// grammar every ccbackup duration shares ([`crate::duration`]).
    ///
    /// A bare `m` means minutes there, which retention does not count in; it is refused with a
    /// pointer to `mo`, because restic reads it as months, and a wrong guess deletes backups.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |m: String| ParseDurationError::new(input, m);
        let parts = lex(input).map_err(|e| {
            fail(match e {
                LexError::Empty => format!("the duration is empty; {UNIT_HINT}"),
                LexError::ExpectedNumber { at } => {
                    format!("expected a number before {at:?}; {UNIT_HINT}")
                }
                LexError::NoUnit { digits } => {
                    format!("the number {digits} has no unit; {UNIT_HINT}")
                }
                LexError::UnknownUnit { unit } => format!("unknown unit {unit:?}; {UNIT_HINT}"),
                LexError::Repeated { unit } => repeated(unit),
                LexError::TooLarge { digits } => format!("the number {digits} is too large"),
            })
        })?;
        let mut result = KeepDuration::default();
        let mut weeks = 0u32;
        for (n, unit) in parts {
            let n = u32::try_from(n).map_err(|_| fail(format!("the number {n} is too large")))?;
            match unit {
                Unit::Years => result.years = n,
                Unit::Months => result.months = n,
                Unit::Weeks => weeks = n,
                Unit::Days => result.days = n,
                Unit::Hours => result.hours = n,
                Unit::Minutes => {
                    return Err(fail(
                        "the unit 'm' is ambiguous (months or minutes); use 'mo' for months \
                         (minutes are not supported)"
                            .to_owned(),
                    ))
                }
                Unit::Seconds => {
                    return Err(fail(format!(
                        "retention does not count in seconds; {UNIT_HINT}"
                    )))
                }
            }
        }
        result.days = weeks
            .checked_mul(7)
            .and_then(|d| d.checked_add(result.days))
            .ok_or_else(|| fail("the number of days is too large".to_owned()))?;
        if result.is_zero() {
            return Err(fail(
                "a zero duration keeps nothing; leave the key out instead".to_owned(),
            ));
        }
        Ok(result)
    }
}

//! Cron expressions and next-run computation.
//!
//! # Why ccbackup computes run times itself
//!
//! The daemon runs jobs with `tokio-cron-scheduler`, but its own cron
//! handling does not fit backup schedules written by people used to Vixie
//! cron:
//!
//! * it requires 6 or 7 fields, so the ordinary 5-field `min hour dom month
//!   dow` form is rejected;
//! * it ANDs day-of-month with day-of-week, whereas Vixie cron ORs them when
//!   both are restricted (`0 0 13 * 5` means "the 13th and every Friday",
//!   not "Friday the 13th");
//! * it freezes the UTC offset of a time-zoned job when the job is created,
//!   so a local-time schedule fires an hour off after a DST change.
//!
//! So this module parses the expression and computes the next run instant,
//! and the daemon only hands `tokio-cron-scheduler` one-shot jobs at the UTC
//! instants computed here. The module is pure: no I/O, no clock, no tokio.
//!
//! # Syntax
//!
//! * 5 fields `min hour dom month dow` (seconds = 0), or 6 fields with a
//!   leading seconds field `sec min hour dom month dow`.
//! * Each field is a comma-separated list of items; an item is `*`, a value
//!   `a`, a range `a-b`, or a stepped form `*/n`, `a-b/n`, or `a/n` (the
//!   last means `a` to the field's maximum, every `n`). Ranges must not be
//!   reversed, and a step must be between 1 and the size of the field.
//! * Ranges: seconds and minutes 0-59, hours 0-23, day-of-month 1-31,
//!   month 1-12 or `jan`-`dec`, day-of-week 0-7 or `sun`-`sat`, where both 0
//!   and 7 mean Sunday. Names are case-insensitive. In day-of-week, `*` and
//!   `a/n` run up to Saturday (6) so that `1/2` is Mon, Wed, Fri and does not
//!   wrap onto Sunday through 7.
//! * Macros: `@yearly`/`@annually` (`0 0 1 1 *`), `@monthly` (`0 0 1 * *`),
//!   `@weekly` (`0 0 * * 0`), `@daily`/`@midnight` (`0 0 * * *`), `@hourly`
//!   (`0 * * * *`), case-insensitive.
//!
//! # Day rule (as in Vixie cron)
//!
//! A field is "restricted" when its text does not start with `*`. If both
//! day-of-month and day-of-week are restricted, a day matches when EITHER
//! matches. Otherwise both must match, which for a bare `*` means the other
//! field alone decides; note that `*/2` counts as unrestricted, so
//! `0 0 */2 * 1` means odd-numbered days that are also Mondays, exactly as in
//! Vixie cron.
//!
//! An expression that can never match (for example `0 0 30 2 *`) is rejected
//! at parse time with a "never matches" error.
//!
//! # Time zones and DST
//!
//! The expression is matched against the local wall-clock time in the zone
//! passed to [`Schedule::next_after`]. Each matching local time becomes a run
//! instant as follows:
//!
//! * a local time that occurs exactly once runs at that instant;
//! * a local time that occurs twice (clocks going back) runs only at its
//!   FIRST occurrence, the earlier instant; the repeat is skipped;
//! * a local time that does not exist (clocks going forward) runs once at the
//!   first instant after the gap, i.e. at the moment the clocks jump;
//! * when several matches map to the same instant (say `*/15` inside a gap
//!   plus the local time at the gap end itself), the job runs once.
//!
//! The result is returned as a `DateTime<Tz>`, so it carries the offset in
//! force at that instant (e.g. `+01:00` in London summer time).
//!
//! # Search
//!
//! The search advances field by field (next matching month, day, hour,
//! minute, second) rather than second by second, so a yearly or leap-day
//! schedule costs a handful of steps. It is bounded to 400 years: the
//! Gregorian calendar repeats exactly after 400 years, so nothing can match
//! later that did not match within that span, and the bound is generous
//! enough for AND-rule schedules such as `0 0 29 2 */7` (29 February falling
//! on a Sunday), whose runs can be 40 years apart.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

/// One full Gregorian cycle; see the module doc for why this is enough.
const HORIZON_YEARS: i32 = 400;

/// No real zone shifts its clocks by more than a day or so at once (Samoa
/// skipped a whole day in 2011); past this we treat the zone data as broken
/// rather than searching on.
const MAX_TRANSITION_SECONDS: i64 = 8 * 86_400;

/// Which field of a cron expression an error refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Second => "second",
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
        })
    }
}

/// Why a cron expression or jitter string was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("empty schedule expression")]
    Empty,
    #[error(
        "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with a leading \
         second field, got {0}"
    )]
    FieldCount(usize),
    #[error(
        "unknown macro {0:?}: expected @yearly, @annually, @monthly, @weekly, @daily, \
         @midnight or @hourly"
    )]
    UnknownMacro(String),
    #[error("{field} field: {value} is out of range {min}-{max}")]
    OutOfRange {
        field: Field,
        value: u32,
        min: u32,
        max: u32,
    },
    #[error("{field} field: {value:?} is not a valid value (allowed {allowed})")]
    InvalidValue {
        field: Field,
        value: String,
        allowed: &'static str,
    },
    #[error("{field} field: step {value:?} is not a number in range 1-{max}")]
    InvalidStep {
        field: Field,
        value: String,
        max: u32,
    },
    #[error("{field} field: range {start}-{end} is reversed (allowed {allowed})")]
    ReversedRange {
        field: Field,
        start: u32,
        end: u32,
        allowed: &'static str,
    },
    #[error("{field} field: empty list item in {text:?}")]
    EmptyItem { field: Field, text: String },
    #[error(
        "expression {0:?} never matches: no selected day-of-month exists in any selected month"
    )]
    NeverMatches(String),
    #[error("jitter {value:?}: {reason} (expected e.g. 30s, 5m, 1h or 1h30m; m = minutes)")]
    InvalidJitter { value: String, reason: &'static str },
}

struct FieldSpec {
    field: Field,
    min: u32,
    /// Largest value accepted when written out.
    max: u32,
    /// Where `*` and `a/n` stop; differs from `max` only for day-of-week.
    wildcard_max: u32,
    /// Three-letter names for `min`, `min + 1`, ...
    names: &'static [&'static str],
    allowed: &'static str,
}

const SECOND: FieldSpec = FieldSpec {
    field: Field::Second,
    min: 0,
    max: 59,
    wildcard_max: 59,
    names: &[],
    allowed: "0-59",
};
const MINUTE: FieldSpec = FieldSpec {
    field: Field::Minute,
    min: 0,
    max: 59,
    wildcard_max: 59,
    names: &[],
    allowed: "0-59",
};
const HOUR: FieldSpec = FieldSpec {
    field: Field::Hour,
    min: 0,
    max: 23,
    wildcard_max: 23,
    names: &[],
    allowed: "0-23",
};
const DAY_OF_MONTH: FieldSpec = FieldSpec {
    field: Field::DayOfMonth,
    min: 1,
    max: 31,
    wildcard_max: 31,
    names: &[],
    allowed: "1-31",
};
const MONTH: FieldSpec = FieldSpec {
    field: Field::Month,
    min: 1,
    max: 12,
    wildcard_max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
    allowed: "1-12 or jan-dec",
};
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    field: Field::DayOfWeek,
    min: 0,
    max: 7,
    wildcard_max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    allowed: "0-7 or sun-sat",
};

/// A parsed cron expression. Each field is a bit set indexed by value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    source: String,
    seconds: u64,
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    /// Bit 0 = Sunday; 7 is folded into 0 while parsing.
    days_of_week: u64,
    /// Whether the day-of-month text started with `*` (Vixie's DOM_STAR).
    dom_star: bool,
    /// Whether the day-of-week text started with `*` (Vixie's DOW_STAR).
    dow_star: bool,
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let source = s.trim();
        if source.is_empty() {
            return Err(ScheduleError::Empty);
        }
        let expanded = if source.starts_with('@') {
            expand_macro(source)?
        } else {
            source
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (sec, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => return Err(ScheduleError::FieldCount(n)),
        };
        let [min, hour, dom, month, dow] = rest else {
            return Err(ScheduleError::FieldCount(fields.len()));
        };
        let schedule = Schedule {
            source: source.to_owned(),
            seconds: parse_field(&SECOND, sec)?,
            minutes: parse_field(&MINUTE, min)?,
            hours: parse_field(&HOUR, hour)?,
            days_of_month: parse_field(&DAY_OF_MONTH, dom)?,
            months: parse_field(&MONTH, month)?,
            days_of_week: parse_field(&DAY_OF_WEEK, dow)?,
            dom_star: dom.starts_with('*'),
            dow_star: dow.starts_with('*'),
        };
        if !schedule.can_match() {
            return Err(ScheduleError::NeverMatches(source.to_owned()));
        }
        Ok(schedule)
    }
}

fn expand_macro(source: &str) -> Result<&'static str, ScheduleError> {
    Ok(match source.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => return Err(ScheduleError::UnknownMacro(source.to_owned())),
    })
}

fn parse_field(spec: &FieldSpec, text: &str) -> Result<u64, ScheduleError> {
    let mut bits = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(ScheduleError::EmptyItem {
                field: spec.field,
                text: text.to_owned(),
            });
        }
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => (base, Some(parse_step(spec, step)?)),
            None => (item, None),
        };
        let (start, end) = if base == "*" {
            (spec.min, spec.wildcard_max)
        } else if let Some((a, b)) = base.split_once('-') {
            let (a, b) = (parse_value(spec, a, item)?, parse_value(spec, b, item)?);
            if a > b {
                return Err(ScheduleError::ReversedRange {
                    field: spec.field,
                    start: a,
                    end: b,
                    allowed: spec.allowed,
                });
            }
            (a, b)
        } else {
            let a = parse_value(spec, base, item)?;
            (
                a,
                if step.is_some() {
                    spec.wildcard_max.max(a)
                } else {
                    a
                },
            )
        };
        let step = step.unwrap_or(1);
        let mut v = start;
        while v <= end {
            bits |= 1 << v;
            v += step;
        }
    }
    if spec.field == Field::DayOfWeek && bits & (1 << 7) != 0 {
        bits = (bits & !(1 << 7)) | 1;
    }
    Ok(bits)
}

fn parse_step(spec: &FieldSpec, text: &str) -> Result<u32, ScheduleError> {
    let span = spec.wildcard_max - spec.min + 1;
    match parse_number(text) {
        Some(n) if (1..=span).contains(&n) => Ok(n),
        _ => Err(ScheduleError::InvalidStep {
            field: spec.field,
            value: text.to_owned(),
            max: span,
        }),
    }
}

/// `item` is only used to give an empty token (as in `-5` or `1-`) some
/// context in the error message.
fn parse_value(spec: &FieldSpec, token: &str, item: &str) -> Result<u32, ScheduleError> {
    let value = if let Some(n) = parse_number(token) {
        n
    } else if let Some(i) = spec
        .names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(token))
    {
        spec.min + i as u32
    } else {
        return Err(ScheduleError::InvalidValue {
            field: spec.field,
            value: if token.is_empty() { item } else { token }.to_owned(),
            allowed: spec.allowed,
        });
    };
    if value < spec.min || value > spec.max {
        return Err(ScheduleError::OutOfRange {
            field: spec.field,
            value,
            min: spec.min,
            max: spec.max,
        });
    }
    Ok(value)
}

/// Digits only: `str::parse` would also take a leading `+`.
fn parse_number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Smallest member of `set` that is `>= from`.
fn next_bit(set: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let masked = set & (u64::MAX << from);
    (masked != 0).then(|| masked.trailing_zeros())
}

fn is_leap_year(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Schedule {
    /// Under the AND rule a day exists only if some selected day-of-month
    /// fits in some selected month; the weekday side always works out within
    /// the 400-year cycle. Under the OR rule every selected weekday recurs.
    fn can_match(&self) -> bool {
        if !(self.dom_star || self.dow_star) {
            return true;
        }
        (1..=12u32)
            .filter(|m| self.months & (1 << m) != 0)
            .any(|m| {
                let longest = if m == 2 { 29 } else { days_in_month(2001, m) };
                self.days_of_month & (u64::MAX >> (63 - longest)) != 0
            })
    }

    fn day_matches(&self, day: u32, weekday_from_sunday: u32) -> bool {
        let dom = self.days_of_month & (1 << day) != 0;
        let dow = self.days_of_week & (1 << weekday_from_sunday) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// Whether a local wall-clock time matches every field.
    pub fn matches_local(&self, t: NaiveDateTime) -> bool {
        self.months & (1 << t.month()) != 0
            && self.day_matches(t.day(), t.weekday().num_days_from_sunday())
            && self.hours & (1 << t.hour()) != 0
            && self.minutes & (1 << t.minute()) != 0
            && self.seconds & (1 << t.second()) != 0
    }

    /// First matching local time `>= from`, not looking past `last_year`.
    fn next_local_match(&self, from: NaiveDateTime, last_year: i32) -> Option<NaiveDateTime> {
        let (mut year, mut month, mut day) = (from.year(), from.month(), from.day());
        let (mut hour, mut minute, mut second) = (from.hour(), from.minute(), from.second());
        // Each branch below either returns or moves strictly forward in time
        // (possibly by carrying a field past its maximum, which the next
        // round turns into a carry into the field above), and the year check
        // ends the loop.
        loop {
            if year > last_year {
                return None;
            }
            match next_bit(self.months, month) {
                Some(m) if m == month => {}
                Some(m) => {
                    (month, day, hour, minute, second) = (m, 1, 0, 0, 0);
                }
                None => {
                    (year, month, day, hour, minute, second) = (year + 1, 1, 1, 0, 0, 0);
                    continue;
                }
            }

            let month_len = days_in_month(year, month);
            let found = if day <= month_len {
                let first = NaiveDate::from_ymd_opt(year, month, day)?;
                let weekday = first.weekday().num_days_from_sunday();
                (day..=month_len).find(|d| self.day_matches(*d, (weekday + d - day) % 7))
            } else {
                None
            };
            match found {
                Some(d) if d == day => {}
                Some(d) => {
                    (day, hour, minute, second) = (d, 0, 0, 0);
                }
                None => {
                    (day, hour, minute, second) = (1, 0, 0, 0);
                    if month == 12 {
                        (year, month) = (year + 1, 1);
                    } else {
                        month += 1;
                    }
                    continue;
                }
            }

            match next_bit(self.hours, hour) {
                Some(h) if h == hour => {}
                Some(h) => {
                    (hour, minute, second) = (h, 0, 0);
                }
                None => {
                    (day, hour, minute, second) = (day + 1, 0, 0, 0);
                    continue;
                }
            }

            match next_bit(self.minutes, minute) {
                Some(m) if m == minute => {}
                Some(m) => {
                    (minute, second) = (m, 0);
                }
                None => {
                    (hour, minute, second) = (hour + 1, 0, 0);
                    continue;
                }
            }

            match next_bit(self.seconds, second) {
                Some(s) => second = s,
                None => {
                    (minute, second) = (minute + 1, 0);
                    continue;
                }
            }

            return NaiveDate::from_ymd_opt(year, month, day)?.and_hms_opt(hour, minute, second);
        }
    }

    /// First run strictly after `after`, in the given zone (see the module
    /// doc for the DST rules).
    ///
    /// Returns `None` only if no run exists within the 400-year search
    /// horizon or the representable date range; expressions that can never
    /// match are already rejected by the parser.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Tz>> {
        let start = first_local_running_after(after, tz)?;
        let last_year = start.year().checked_add(HORIZON_YEARS)?;
        let mut from = start;
        // run_instant is non-decreasing in local time for real zones, so the
        // first match from `start` is the answer; the loop only guards
        // against zone data where that does not hold.
        loop {
            let local = self.next_local_match(from, last_year)?;
            let run = run_instant(tz, local)?;
            if run.with_timezone(&Utc) > after {
                return Some(run);
            }
            from = local.checked_add_signed(TimeDelta::seconds(1))?;
        }
    }

    /// Up to `count` successive runs after `after`, each strictly later than
    /// the one before; shorter only when [`Schedule::next_after`] runs out.
    pub fn upcoming(&self, after: DateTime<Utc>, tz: Tz, count: usize) -> Vec<DateTime<Tz>> {
        let mut runs = Vec::with_capacity(count.min(1024));
        let mut cursor = after;
        while runs.len() < count {
            let Some(run) = self.next_after(cursor, tz) else {
                break;
            };
            cursor = run.with_timezone(&Utc);
            runs.push(run);
        }
        runs
    }
}

/// The instant a matching local time runs at, per the DST rules in the
/// module doc: the earlier occurrence of a repeated time, the gap end for a
/// skipped one.
fn run_instant(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Tz>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t),
        LocalResult::Ambiguous(a, b) => Some(a.min(b)),
        LocalResult::None => gap_end(tz, local),
    }
}

/// The instant the clocks jump over the non-existent `local`: the earliest
/// instant of the first local time after the gap.
fn gap_end(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Tz>> {
    let in_gap = |secs: i64| -> Option<bool> {
        let t = local.checked_add_signed(TimeDelta::seconds(secs))?;
        Some(matches!(tz.from_local_datetime(&t), LocalResult::None))
    };
    // Gaps are usually an hour, so start with a minute and double.
    let (mut lo, mut hi) = (0i64, 60i64);
    while in_gap(hi)? {
        lo = hi;
        hi *= 2;
        if hi > MAX_TRANSITION_SECONDS {
            return None;
        }
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if in_gap(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let first_real = local.checked_add_signed(TimeDelta::seconds(hi))?;
    tz.from_local_datetime(&first_real).earliest()
}

/// The earliest local time whose run instant is strictly after `after`.
///
/// Usually that is one second past `after`'s own local time. When `after`
/// falls in the second pass through a repeated hour, the local times just
/// ahead of it already ran in the first pass, so we search forward for the
/// end of the repeat; run_instant is non-decreasing in local time, which
/// makes a binary search valid.
fn first_local_running_after(after: DateTime<Utc>, tz: Tz) -> Option<NaiveDateTime> {
    let base = after.with_timezone(&tz).naive_local();
    let runs_later = |secs: i64| -> Option<bool> {
        let local = base.checked_add_signed(TimeDelta::seconds(secs))?;
        Some(run_instant(tz, local).is_some_and(|t| t.with_timezone(&Utc) > after))
    };
    let (mut lo, mut hi) = (0i64, 1i64);
    while !runs_later(hi)? {
        lo = hi;
        hi *= 2;
        if hi > MAX_TRANSITION_SECONDS {
            return None;
        }
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if runs_later(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    base.checked_add_signed(TimeDelta::seconds(hi))
}

/// Parses a jitter such as `30s`, `5m`, `1h` or `1h30m`: one or more
/// `<number><unit>` parts with units `h` (hours), `m` (MINUTES, not months)
/// and `s` (seconds), each at most once and in that order.
pub fn parse_jitter(s: &str) -> Result<Duration, ScheduleError> {
    parse_duration(s).map_err(|e| ScheduleError::InvalidJitter {
        value: e.value,
        reason: e.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;
    use chrono_tz::Europe::London;
    use proptest::prelude::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn sched(expr: &str) -> Schedule {
        expr.parse()
            .unwrap_or_else(|e| panic!("{expr:?} should parse: {e}"))
    }

    fn next(expr: &str, after: &str, tz: Tz) -> String {
        sched(expr)
            .next_after(utc(after), tz)
            .unwrap_or_else(|| panic!("{expr:?} has no run after {after}"))
            .to_rfc3339()
    }

    fn upcoming(expr: &str, after: &str, tz: Tz, count: usize) -> Vec<String> {
        sched(expr)
            .upcoming(utc(after), tz, count)
            .iter()
            .map(|t| t.to_rfc3339())
            .collect()
    }

    #[test]
    fn next_after_table_utc() {
        // (expression, after, expected next run), all in UTC.
        let cases = [
            // 5 fields, seconds implied 0.
            (
                "0 0 * * *",
                "2026-05-10T12:00:00Z",
                "2026-05-11T00:00:00+00:00",
            ),
            (
                "30 14 * * *",
                "2026-05-10T14:30:00Z",
                "2026-05-11T14:30:00+00:00",
            ),
            (
                "30 14 * * *",
                "2026-05-10T14:29:59Z",
                "2026-05-10T14:30:00+00:00",
            ),
            (
                "* * * * *",
                "2026-05-10T14:29:59Z",
                "2026-05-10T14:30:00+00:00",
            ),
            (
                "59 23 31 12 *",
                "2026-05-10T00:00:00Z",
                "2026-12-31T23:59:00+00:00",
            ),
            // 6 fields with seconds.
            (
                "15 30 14 * * *",
                "2026-05-10T14:30:00Z",
                "2026-05-10T14:30:15+00:00",
            ),
            (
                "*/20 * * * * *",
                "2026-05-10T14:30:41Z",
                "2026-05-10T14:31:00+00:00",
            ),
            (
                "0 0 0 1 1 *",
                "2026-05-10T00:00:00Z",
                "2027-01-01T00:00:00+00:00",
            ),
            // OR rule: 13th or Friday. 2026-02-13 is a Friday; from the 14th
            // the next are Fri 20th, then Fri 27th, then Fri 6 Mar, then 13 Mar.
            (
                "0 0 13 * 5",
                "2026-02-13T00:00:00Z",
                "2026-02-20T00:00:00+00:00",
            ),
            // 2026-04-13 is a Monday: it runs although it is not a Friday.
            (
                "0 0 13 * 5",
                "2026-04-10T00:00:00Z",
                "2026-04-13T00:00:00+00:00",
            ),
            (
                "0 0 13 * 5",
                "2026-04-13T00:00:00Z",
                "2026-04-17T00:00:00+00:00",
            ),
            (
                "0 0 1 * mon",
                "2026-05-26T00:00:00Z",
                "2026-06-01T00:00:00+00:00",
            ),
            // AND rule when one side is `*`: only the restricted side counts.
            (
                "0 0 13 * *",
                "2026-02-14T00:00:00Z",
                "2026-03-13T00:00:00+00:00",
            ),
            (
                "0 0 * * 5",
                "2026-02-14T00:00:00Z",
                "2026-02-20T00:00:00+00:00",
            ),
            // `*/n` counts as unrestricted: odd days that are also Mondays.
            (
                "0 0 */2 * 1",
                "2026-06-01T00:00:00Z",
                "2026-06-15T00:00:00+00:00",
            ),
            // Names, case-insensitive, and name ranges.
            (
                "0 9 * JAN-Mar mon-fri",
                "2026-03-31T09:00:00Z",
                "2027-01-01T09:00:00+00:00",
            ),
            (
                "0 9 * * SAT",
                "2026-05-10T00:00:00Z",
                "2026-05-16T09:00:00+00:00",
            ),
            (
                "0 9 1 dec *",
                "2026-05-10T00:00:00Z",
                "2026-12-01T09:00:00+00:00",
            ),
            // dow 7 and 0 are both Sunday; 2026-05-10 is a Sunday.
            (
                "0 9 * * 7",
                "2026-05-09T00:00:00Z",
                "2026-05-10T09:00:00+00:00",
            ),
            (
                "0 9 * * 0",
                "2026-05-09T00:00:00Z",
                "2026-05-10T09:00:00+00:00",
            ),
            (
                "0 9 * * 5-7",
                "2026-05-10T10:00:00Z",
                "2026-05-15T09:00:00+00:00",
            ),
            // Steps, ranges, lists.
            (
                "*/15 * * * *",
                "2026-05-10T14:46:00Z",
                "2026-05-10T15:00:00+00:00",
            ),
            (
                "10-30/10 * * * *",
                "2026-05-10T14:30:00Z",
                "2026-05-10T15:10:00+00:00",
            ),
            (
                "5/20 * * * *",
                "2026-05-10T14:46:00Z",
                "2026-05-10T15:05:00+00:00",
            ),
            (
                "0 1,13,22 * * *",
                "2026-05-10T13:00:00Z",
                "2026-05-10T22:00:00+00:00",
            ),
            (
                "0 0-5/2,20 * * *",
                "2026-05-10T04:30:00Z",
                "2026-05-10T20:00:00+00:00",
            ),
            (
                "0 0 * */3 *",
                "2026-05-10T00:00:00Z",
                "2026-07-01T00:00:00+00:00",
            ),
            // Month ends: the 31st skips 30-day months and February.
            (
                "0 0 31 * *",
                "2026-01-31T00:00:00Z",
                "2026-03-31T00:00:00+00:00",
            ),
            (
                "0 0 31 * *",
                "2026-03-31T00:00:00Z",
                "2026-05-31T00:00:00+00:00",
            ),
            (
                "0 0 30 * *",
                "2026-01-30T00:00:00Z",
                "2026-03-30T00:00:00+00:00",
            ),
            // Leap years.
            (
                "0 0 29 2 *",
                "2026-03-01T00:00:00Z",
                "2028-02-29T00:00:00+00:00",
            ),
            (
                "0 0 29 2 *",
                "2028-02-29T00:00:00Z",
                "2032-02-29T00:00:00+00:00",
            ),
            (
                "0 0 29 2 *",
                "2096-03-01T00:00:00Z",
                "2104-02-29T00:00:00+00:00",
            ),
            // 29 Feb on a Sunday (AND: dow starts with `*`): decades apart.
            (
                "0 0 29 2 */7",
                "2032-03-01T00:00:00Z",
                "2060-02-29T00:00:00+00:00",
            ),
            // Macros.
            (
                "@yearly",
                "2026-05-10T00:00:00Z",
                "2027-01-01T00:00:00+00:00",
            ),
            (
                "@annually",
                "2026-05-10T00:00:00Z",
                "2027-01-01T00:00:00+00:00",
            ),
            (
                "@monthly",
                "2026-05-10T00:00:00Z",
                "2026-06-01T00:00:00+00:00",
            ),
            (
                "@weekly",
                "2026-05-10T00:00:00Z",
                "2026-05-17T00:00:00+00:00",
            ),
            (
                "@daily",
                "2026-05-10T00:00:00Z",
                "2026-05-11T00:00:00+00:00",
            ),
            (
                "@midnight",
                "2026-05-10T00:00:00Z",
                "2026-05-11T00:00:00+00:00",
            ),
            (
                "@HOURLY",
                "2026-05-10T00:00:00Z",
                "2026-05-10T01:00:00+00:00",
            ),
            // Year rollover from the last second of the year.
            (
                "* * * * * *",
                "2026-12-31T23:59:59Z",
                "2027-01-01T00:00:00+00:00",
            ),
        ];
        for (expr, after, expected) in cases {
            assert_eq!(
                next(expr, after, Tz::UTC),
                expected,
                "{expr:?} after {after}"
            );
        }
    }

    #[test]
    fn parse_errors_table() {
        let cases = [
            ("", "empty schedule expression"),
            ("   ", "empty schedule expression"),
            ("0 0 * *", "got 4"),
            ("0 0 0 0 * * * *", "got 8"),
            ("0 24 * * *", "hour field: 24 is out of range 0-23"),
            ("60 * * * *", "minute field: 60 is out of range 0-59"),
            ("60 * * * * *", "second field: 60 is out of range 0-59"),
            ("0 0 0 * *", "day-of-month field: 0 is out of range 1-31"),
            ("0 0 32 * *", "day-of-month field: 32 is out of range 1-31"),
            ("0 0 * 13 *", "month field: 13 is out of range 1-12"),
            ("0 0 * * 8", "day-of-week field: 8 is out of range 0-7"),
            (
                "0 0 * foo *",
                "month field: \"foo\" is not a valid value (allowed 1-12 or jan-dec)",
            ),
            (
                "0 0 * * monday",
                "day-of-week field: \"monday\" is not a valid value (allowed 0-7 or sun-sat)",
            ),
            (
                "x * * * *",
                "minute field: \"x\" is not a valid value (allowed 0-59)",
            ),
            (
                "-5 * * * *",
                "minute field: \"-5\" is not a valid value (allowed 0-59)",
            ),
            (
                "+5 * * * *",
                "minute field: \"+5\" is not a valid value (allowed 0-59)",
            ),
            (
                "jan * * * *",
                "minute field: \"jan\" is not a valid value (allowed 0-59)",
            ),
            (
                "*/0 * * * *",
                "minute field: step \"0\" is not a number in range 1-60",
            ),
            (
                "*/61 * * * *",
                "minute field: step \"61\" is not a number in range 1-60",
            ),
            (
                "0 */x * * *",
                "hour field: step \"x\" is not a number in range 1-24",
            ),
            (
                "0 5-3 * * *",
                "hour field: range 5-3 is reversed (allowed 0-23)",
            ),
            (
                "0 0 * * sat-sun",
                "day-of-week field: range 6-0 is reversed",
            ),
            ("1,,2 * * * *", "minute field: empty list item in \"1,,2\""),
            ("@reboot", "unknown macro \"@reboot\""),
            ("@daily 5", "unknown macro \"@daily 5\""),
            ("0 0 30 2 *", "never matches"),
            ("0 0 31 4,6,9,11 *", "never matches"),
            ("0 0 30,31 feb *", "never matches"),
            ("0 0 31 2 */2", "never matches"),
            (
                "99999999999 * * * *",
                "minute field: \"99999999999\" is not a valid value",
            ),
        ];
        for (expr, expected) in cases {
            let Err(err) = expr.parse::<Schedule>() else {
                panic!("{expr:?} should be rejected");
            };
            let message = err.to_string();
            assert!(
                message.contains(expected),
                "{expr:?}: {message:?} does not contain {expected:?}"
            );
            assert_eq!(
                message.chars().next(),
                message.chars().next().map(|c| c.to_ascii_lowercase()),
                "{expr:?}: message should start lowercase: {message:?}"
            );
        }
    }

    #[test]
    fn accepted_edge_expressions() {
        // OR rule keeps these alive even though the day-of-month cannot occur.
        for expr in ["0 0 30 2 1", "0 0 31 2 mon", "0 0 29 2 *", "0 0 29 * *"] {
            assert!(expr.parse::<Schedule>().is_ok(), "{expr:?}");
        }
        assert_eq!(
            next("0 0 30 2 1", "2026-02-03T00:00:00Z", Tz::UTC),
            "2026-02-09T00:00:00+00:00"
        );
    }

    #[test]
    fn display_round_trips_source() {
        for expr in ["0 0 13 * 5", "@weekly", "*/5 0 9 * jan-mar MON-FRI"] {
            let s = sched(expr);
            assert_eq!(s.to_string(), expr);
            assert_eq!(sched(&s.to_string()), s);
        }
        assert_eq!(sched("  @daily \n").to_string(), "@daily");
    }

    #[test]
    fn dow_seven_equals_zero() {
        assert_eq!(
            sched("0 0 * * 7").days_of_week,
            sched("0 0 * * 0").days_of_week
        );
        assert_eq!(
            sched("0 0 * * 0-7").days_of_week,
            sched("0 0 * * *").days_of_week
        );
        // `a/n` stops at Saturday rather than wrapping onto Sunday via 7.
        assert_eq!(
            sched("0 0 * * 1/2").days_of_week,
            sched("0 0 * * 1,3,5").days_of_week
        );
    }

    #[test]
    fn six_field_equals_five_field_with_zero_seconds() {
        let five = sched("*/7 3 * * 1-5");
        let six = sched("0 */7 3 * * 1-5");
        assert_eq!(
            five.upcoming(utc("2026-05-10T00:00:00Z"), London, 20),
            six.upcoming(utc("2026-05-10T00:00:00Z"), London, 20)
        );
    }

    #[test]
    fn london_spring_forward() {
        // 2027-03-28 01:00 UTC: 01:00 GMT jumps to 02:00 BST.
        assert_eq!(
            next("0 2 * * *", "2027-03-28T00:00:00Z", London),
            "2027-03-28T02:00:00+01:00"
        );
        assert_eq!(
            next("0 2 * * *", "2027-03-28T01:00:00Z", London),
            "2027-03-29T02:00:00+01:00"
        );
        assert_eq!(
            next("0 2 * * *", "2027-03-28T12:00:00Z", London),
            "2027-03-29T02:00:00+01:00"
        );
        // 01:30 does not exist that day: runs at the jump, once.
        assert_eq!(
            upcoming("30 1 * * *", "2027-03-27T12:00:00Z", London, 2),
            ["2027-03-28T02:00:00+01:00", "2027-03-29T01:30:00+01:00"]
        );
        // Hourly: 01:00 GMT is in the gap, collapses onto 02:00 BST.
        assert_eq!(
            upcoming("0 * * * *", "2027-03-27T23:30:00Z", London, 4),
            [
                "2027-03-28T00:00:00+00:00",
                "2027-03-28T02:00:00+01:00",
                "2027-03-28T03:00:00+01:00",
                "2027-03-28T04:00:00+01:00",
            ]
        );
        // Every 15 minutes: 01:00-01:45 and 02:00 all collapse onto one run.
        assert_eq!(
            upcoming("*/15 * * * *", "2027-03-28T00:40:00Z", London, 3),
            [
                "2027-03-28T00:45:00+00:00",
                "2027-03-28T02:00:00+01:00",
                "2027-03-28T02:15:00+01:00",
            ]
        );
    }

    #[test]
    fn london_fall_back() {
        // 2026-10-25 01:00 UTC: 02:00 BST goes back to 01:00 GMT.
        assert_eq!(
            upcoming("30 1 * * *", "2026-10-24T12:00:00Z", London, 2),
            ["2026-10-25T01:30:00+01:00", "2026-10-26T01:30:00+00:00"]
        );
        // Hourly: 01:00 runs in BST only; the repeated 01:00 GMT is skipped.
        assert_eq!(
            upcoming("0 * * * *", "2026-10-24T22:30:00Z", London, 4),
            [
                "2026-10-25T00:00:00+01:00",
                "2026-10-25T01:00:00+01:00",
                "2026-10-25T02:00:00+00:00",
                "2026-10-25T03:00:00+00:00",
            ]
        );
        // Starting inside the repeated hour (01:10 GMT, second pass): 01:20
        // already ran in the first pass, so the next run is 02:20 GMT.
        assert_eq!(
            next("20 * * * *", "2026-10-25T01:10:00Z", London),
            "2026-10-25T02:20:00+00:00"
        );
        // Starting inside the first pass: 01:20 BST is still ahead.
        assert_eq!(
            next("20 * * * *", "2026-10-25T00:10:00Z", London),
            "2026-10-25T01:20:00+01:00"
        );
    }

    #[test]
    fn new_york_spring_forward() {
        // 2027-03-14 07:00 UTC: 02:00 EST jumps to 03:00 EDT.
        assert_eq!(
            upcoming("30 2 * * *", "2027-03-13T12:00:00Z", New_York, 3),
            [
                "2027-03-14T03:00:00-04:00",
                "2027-03-15T02:30:00-04:00",
                "2027-03-16T02:30:00-04:00",
            ]
        );
        assert_eq!(
            upcoming("0 * * * *", "2027-03-14T05:30:00Z", New_York, 3),
            [
                "2027-03-14T01:00:00-05:00",
                "2027-03-14T03:00:00-04:00",
                "2027-03-14T04:00:00-04:00",
            ]
        );
        // The gap-end run is not repeated by the 03:00 match that maps to it.
        assert_eq!(
            upcoming("0 2,3 * * *", "2027-03-14T05:00:00Z", New_York, 2),
            ["2027-03-14T03:00:00-04:00", "2027-03-15T02:00:00-04:00"]
        );
    }

    #[test]
    fn new_york_fall_back() {
        // 2026-11-01 06:00 UTC: 02:00 EDT goes back to 01:00 EST.
        assert_eq!(
            upcoming("30 1 * * *", "2026-10-31T12:00:00Z", New_York, 2),
            ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]
        );
        assert_eq!(
            upcoming("0 * * * *", "2026-11-01T03:30:00Z", New_York, 4),
            [
                "2026-11-01T00:00:00-04:00",
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T02:00:00-05:00",
                "2026-11-01T03:00:00-05:00",
            ]
        );
        // From inside the second 01:xx hour, the day's 01:30 is already done.
        assert_eq!(
            next("30 1 * * *", "2026-11-01T06:15:00Z", New_York),
            "2026-11-02T01:30:00-05:00"
        );
    }

    #[test]
    fn upcoming_counts() {
        let s = sched("@daily");
        assert!(s
            .upcoming(utc("2026-01-01T00:00:00Z"), Tz::UTC, 0)
            .is_empty());
        let runs = s.upcoming(utc("2026-01-01T00:00:00Z"), Tz::UTC, 400);
        assert_eq!(runs.len(), 400);
        assert!(runs.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn sparse_schedules_are_cheap() {
        // Field-wise search: thousands of leap-day lookups stay quick even
        // in a debug build (a second-by-second scan would take far longer).
        let s = sched("0 0 0 29 2 *");
        let runs = s.upcoming(utc("2000-01-01T00:00:00Z"), London, 2_000);
        assert_eq!(runs.len(), 2_000);
        assert_eq!(runs[0].to_rfc3339(), "2000-02-29T00:00:00+00:00");
        assert!(runs.iter().all(|t| t.month() == 2 && t.day() == 29));
    }

    #[test]
    fn parse_jitter_table() {
        let ok = [
            ("30s", 30),
            ("5m", 300),
            ("1h", 3600),
            ("1h30m", 5400),
            ("1h30m15s", 5415),
            ("2m5s", 125),
            ("0s", 0),
            (" 90s ", 90),
        ];
        for (text, secs) in ok {
            assert_eq!(
                parse_jitter(text),
                Ok(Duration::from_secs(secs)),
                "{text:?}"
            );
        }
        let bad = [
            ("", "empty"),
            ("30", "missing unit"),
            ("5x", "unknown unit"),
            ("m", "expected a number"),
            ("30m1h", "in the order h, m, s"),
            ("1m1m", "in the order h, m, s"),
            ("-5s", "expected a number"),
            ("99999999999999999999s", "number too large"),
            ("9999999999999999h", "number too large"),
        ];
        for (text, reason) in bad {
            let err = parse_jitter(text).expect_err(text).to_string();
            assert!(err.contains(reason), "{text:?}: {err:?}");
            assert!(err.starts_with("jitter "), "{err:?}");
        }
    }

    /// Whether `run` stands in for a matching local time that was skipped by
    /// a forward jump of the clocks ending exactly at `run`.
    fn is_gap_end_substitute(s: &Schedule, run: DateTime<Tz>) -> bool {
        let tz = run.timezone();
        let Some(before) = run.checked_sub_signed(TimeDelta::seconds(1)) else {
            return false;
        };
        let Some(gap_start) = before
            .with_timezone(&tz)
            .naive_local()
            .checked_add_signed(TimeDelta::seconds(1))
        else {
            return false;
        };
        let gap_end_local = run.naive_local();
        gap_start < gap_end_local
            && s.next_local_match(gap_start, gap_end_local.year())
                .is_some_and(|m| m < gap_end_local)
    }

    const ZONES: [Tz; 7] = [
        Tz::UTC,
        chrono_tz::Europe::London,
        chrono_tz::America::New_York,
        chrono_tz::Australia::Lord_Howe,
        chrono_tz::Asia::Kathmandu,
        chrono_tz::America::Santiago,
        chrono_tz::Pacific::Apia,
    ];

    fn field_strategy(min: u32, max: u32, max_step: u32) -> impl Strategy<Value = String> {
        let value = min..=max;
        prop_oneof![
            Just("*".to_owned()),
            value.clone().prop_map(|v| v.to_string()),
            (value.clone(), value.clone()).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
            (1..=max_step).prop_map(|n| format!("*/{n}")),
            (value.clone(), 1..=max_step).prop_map(|(a, n)| format!("{a}/{n}")),
            (value.clone(), value).prop_map(|(a, b)| format!("{a},{b}")),
        ]
    }

    fn expression_strategy() -> impl Strategy<Value = String> {
        (
            prop::option::of(field_strategy(0, 59, 60)),
            field_strategy(0, 59, 60),
            field_strategy(0, 23, 24),
            field_strategy(1, 31, 31),
            field_strategy(1, 12, 12),
            field_strategy(0, 7, 7),
        )
            .prop_map(|(sec, min, hour, dom, month, dow)| {
                let five = format!("{min} {hour} {dom} {month} {dow}");
                match sec {
                    Some(sec) => format!("{sec} {five}"),
                    None => five,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn runs_increase_and_match(
            expr in expression_strategy(),
            zone in 0..ZONES.len(),
            // 2000-01-01 to 2040-01-01.
            after_secs in 946_684_800i64..2_208_988_800i64,
        ) {
            let Ok(s) = expr.parse::<Schedule>() else {
                // Only the never-matches check may reject generated input.
                let err = expr.parse::<Schedule>().unwrap_err();
                prop_assert!(matches!(err, ScheduleError::NeverMatches(_)), "{}: {}", expr, err);
                return Ok(());
            };
            let tz = ZONES[zone];
            let after = DateTime::from_timestamp(after_secs, 0).unwrap();
            let runs = s.upcoming(after, tz, 8);
            prop_assert_eq!(runs.len(), 8, "{} in {} after {}", expr, tz, after);
            let mut previous = after;
            for run in runs {
                let run_utc = run.with_timezone(&Utc);
                prop_assert!(run_utc > previous, "{} in {}: {} not after {}", expr, tz, run, previous);
                prop_assert_eq!(s.next_after(previous, tz), Some(run));
                prop_assert!(
                    s.matches_local(run.naive_local()) || is_gap_end_substitute(&s, run),
                    "{} in {}: {} neither matches nor ends a gap", expr, tz, run
                );
                previous = run_utc;
            }
        }

        /// Compares against a brute-force minute-by-minute scan of instants
        /// near DST transitions, where the rules are easiest to get wrong.
        #[test]
        fn agrees_with_brute_force_near_transitions(
            min in field_strategy(0, 59, 60),
            hour in field_strategy(0, 23, 24),
            zone in 1..4usize,
            transition in 0..4usize,
            offset_minutes in -180i64..180,
        ) {
            let transitions = [
                // London spring/fall, New York spring/fall.
                ["2027-03-28T01:00:00Z", "2026-10-25T01:00:00Z"],
                ["2027-03-14T07:00:00Z", "2026-11-01T06:00:00Z"],
                // Lord Howe: half-hour shifts.
                ["2026-10-03T15:30:00Z", "2026-04-04T15:00:00Z"],
            ];
            let tz = ZONES[zone];
            let at = utc(transitions[zone - 1][transition % 2]);
            let after = at + TimeDelta::minutes(offset_minutes) + TimeDelta::seconds((transition / 2) as i64 * 17);
            let s = sched(&format!("{min} {hour} * * *"));
            let expected = brute_force_next(&s, after, tz, 3 * 24 * 60);
            prop_assert_eq!(s.next_after(after, tz), expected, "{} in {} after {}", s, tz, after);
        }
    }

    /// Reference implementation of the DST rules in terms of instants: an
    /// instant runs if it is the first occurrence of a matching local time,
    /// or if the clocks jumped forward onto it over a matching local time.
    fn brute_force_next(
        s: &Schedule,
        after: DateTime<Utc>,
        tz: Tz,
        max_minutes: i64,
    ) -> Option<DateTime<Tz>> {
        let first_minute = after.timestamp().div_euclid(60) + 1;
        for m in first_minute..first_minute + max_minutes {
            let t = DateTime::from_timestamp(m * 60, 0)
                .unwrap()
                .with_timezone(&tz);
            let local = t.naive_local();
            let first_occurrence = tz.from_local_datetime(&local).earliest() == Some(t);
            if (s.matches_local(local) && first_occurrence) || is_gap_end_substitute(s, t) {
                return Some(t);
            }
        }
        None
    }
}

/// Why a duration such as `lock_ttl: 90x` was rejected. Says nothing about
/// what the duration is for: the caller names the setting.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{value:?} is not a duration: {reason} (durations look like 30s, 5m, 1h or 1h30m; m = minutes)"
)]
pub struct DurationError {
    pub value: String,
    pub reason: &'static str,
}

/// Parses a duration such as `30s`, `5m`, `1h` or `1h30m`: one or more
/// `<number><unit>` parts with units `h` (hours), `m` (MINUTES, not months)
/// and `s` (seconds), each at most once and in that order. The grammar of
/// every duration setting (jitter, lock_ttl, grace periods, max_age) and of
/// `--wait-lock`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let fail = |reason: &'static str| DurationError {
        value: s.to_owned(),
        reason,
    };
    let text = s.trim();
    if text.is_empty() {
        return Err(fail("empty"));
    }
    let mut total: u64 = 0;
    // Index into "hms" of the last unit seen, to enforce order and no repeats.
    let mut last_unit: Option<usize> = None;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(fail("expected a number"));
        }
        let (number, tail) = rest.split_at(digits);
        let number: u64 = number.parse().map_err(|_| fail("number too large"))?;
        let mut chars = tail.chars();
        let (unit_index, unit_secs) = match chars.next() {
            Some('h') => (0, 3600),
            Some('m') => (1, 60),
            Some('s') => (2, 1),
            Some(_) => return Err(fail("unknown unit")),
            None => return Err(fail("missing unit after number")),
        };
        if last_unit.is_some_and(|last| unit_index <= last) {
            return Err(fail("units must appear at most once, in the order h, m, s"));
        }
        last_unit = Some(unit_index);
        total = number
            .checked_mul(unit_secs)
            .and_then(|secs| total.checked_add(secs))
            .ok_or_else(|| fail("number too large"))?;
        rest = chars.as_str();
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod duration_tests {
    use super::*;

    #[test]
    fn duration_errors_do_not_name_jitter() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        let err = parse_duration("5x").unwrap_err().to_string();
        assert!(
            err.starts_with("\"5x\" is not a duration: unknown unit"),
            "{err}"
        );
        assert!(!err.contains("jitter"), "{err}");
        let jitter = parse_jitter("5x").unwrap_err().to_string();
        assert!(
            jitter.starts_with("jitter \"5x\": unknown unit"),
            "{jitter}"
        );
    }
}

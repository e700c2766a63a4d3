//! Cron expressions and next-run computation.
//!
//! [`croner`] parses the fields and finds the next matching wall-clock time.
//! It is always driven on naive local times (through UTC, which has no
//! DST), so it only answers "which local times match". This module adds
//! what croner does not do the way ccbackup promises: errors that name the
//! field, month/day names only in their own fields, `@midnight`, Vixie's
//! day rule, rejecting expressions that never match, and the DST rules that
//! turn a matching local time into the instant it runs at. The daemon hands
//! `tokio-cron-scheduler` one-shot jobs at the instants computed here. The
//! module is pure: no I/O, no clock, no tokio.
//!
//! # Syntax
//!
//! 5 fields `min hour dom month dow` (seconds = 0), or 6 with a leading
//! seconds field; lists of `*`, `a`, `a-b`, `*/n`, `a-b/n`, `a/n`; month and
//! day-of-week names (case-insensitive); day-of-week 0 and 7 are Sunday, and
//! there `a/n` stops at Saturday (`1/2` is Mon, Wed, Fri). croner's `L`,
//! `W`, `#`, `?` and a leading `+` on day-of-week work as croner defines
//! them. Macros: `@yearly`/`@annually`, `@monthly`, `@weekly`,
//! `@daily`/`@midnight`, `@hourly`.
//!
//! # Day rule (as in Vixie cron)
//!
//! If neither day field starts with `*` (or `?`), a day matches when EITHER
//! matches (`0 0 13 * 5` is "the 13th and every Friday"); otherwise both
//! must. croner would OR `*/2` with a weekday, but Vixie counts `*/2` as
//! unrestricted (`0 0 */2 * 1` is odd days that are also Mondays), so we
//! pick croner's AND mode whenever a day field starts with `*`.
//!
//! # Time zones and DST
//!
//! The expression is matched against the local wall-clock time in the zone
//! passed to [`Schedule::next_after`]. A local time that occurs once runs at
//! that instant; one that occurs twice (clocks going back) runs only at its
//! FIRST occurrence; one that does not exist (clocks going forward) runs at
//! the moment the clocks jump; several matches mapping to the same instant
//! (`*/15` inside a gap) run once. The result carries the offset in force at
//! that instant (e.g. `+01:00` in London summer time).
//!
//! croner's own DST handling for zoned datetimes is not used: it runs
//! interval jobs (`0 * * * *`) twice in a repeated hour and skips their
//! matches in a gap, it can return an instant BEFORE the start when started
//! in the second pass of a repeated hour, and it gives up on gaps longer
//! than two hours (Samoa skipped a whole day in 2011).
//!
//! A search looks at most 400 years ahead, one Gregorian cycle: nothing can
//! match later that did not match within it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Datelike, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

use crate::duration::parse_duration;

/// Most run times [`Schedule::latest_due`] steps over after a stall (a
/// per-second schedule over almost three hours); past it the daemon just
/// runs once and arms the next time after now.
pub const CATCH_UP_LIMIT: u32 = 10_000;

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
    #[error("{field} field: {value:?} is not a valid value (allowed {allowed})")]
    InvalidValue {
        field: Field,
        value: String,
        allowed: &'static str,
    },
    #[error("{field} field: empty list item in {text:?}")]
    EmptyItem { field: Field, text: String },
    /// croner rejected the field; `reason` is its message, tidied.
    #[error("{field} field: {text:?} is invalid: {reason} (allowed {allowed})")]
    Rejected {
        field: Field,
        text: String,
        reason: String,
        allowed: &'static str,
    },
    /// Every field is fine on its own but croner rejected the combination.
    #[error("expression {expression:?} is invalid: {reason}")]
    Combination { expression: String, reason: String },
    #[error(
        "expression {0:?} never matches: no day satisfies the day-of-month, month and \
         day-of-week fields together"
    )]
    NeverMatches(String),
    #[error("jitter {value:?}: {reason} (expected e.g. 30s, 5m, 1h or 1h30m; m = minutes)")]
    InvalidJitter { value: String, reason: String },
}

struct FieldSpec {
    field: Field,
    /// Names for `first_name_value`, `first_name_value + 1`, ...
    names: &'static [&'static str],
    first_name_value: u32,
    /// Letters croner gives a meaning to in this field (besides names).
    extensions: &'static [&'static str],
    allowed: &'static str,
}

const fn spec(
    field: Field,
    allowed: &'static str,
    extensions: &'static [&'static str],
) -> FieldSpec {
    FieldSpec {
        field,
        names: &[],
        first_name_value: 0,
        extensions,
        allowed,
    }
}

/// In expression order, seconds first.
const FIELDS: [FieldSpec; 6] = [
    spec(Field::Second, "0-59", &[]),
    spec(Field::Minute, "0-59", &[]),
    spec(Field::Hour, "0-23", &[]),
    spec(Field::DayOfMonth, "1-31", &["L", "W"]),
    FieldSpec {
        names: &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
        first_name_value: 1,
        ..spec(Field::Month, "1-12 or jan-dec", &[])
    },
    FieldSpec {
        names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
        ..spec(Field::DayOfWeek, "0-7 or sun-sat", &["L"])
    },
];

const DAY_OF_MONTH: usize = 3;
const DAY_OF_WEEK: usize = 5;

/// A parsed cron expression.
#[derive(Clone, Debug)]
pub struct Schedule {
    source: String,
    cron: Cron,
}

/// The source text determines the schedule, and `Cron` is not `Eq`.
impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Schedule {}

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
        let mut fields: Vec<&str> = expanded.split_whitespace().collect();
        match fields.len() {
            5 => fields.insert(0, "0"),
            6 => {}
            n => return Err(ScheduleError::FieldCount(n)),
        }
        let numeric = FIELDS
            .iter()
            .zip(&fields)
            .map(|(spec, text)| numeric_field(spec, text))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, spec) in FIELDS.iter().enumerate() {
            check_alone(spec, fields[i], &numeric, i)?;
        }
        let star = |text: &str| text.starts_with('*') || text.starts_with('?');
        let and_rule = star(fields[DAY_OF_MONTH]) || star(fields[DAY_OF_WEEK]);
        let cron =
            parser(and_rule)
                .parse(&numeric.join(" "))
                .map_err(|e| ScheduleError::Combination {
                    expression: source.to_owned(),
                    reason: croner_reason(&e),
                })?;
        // croner gives up at the year 5000, so searching from 4600 covers
        // exactly one Gregorian cycle: nothing there means nothing ever.
        let cycle_start = Utc
            .with_ymd_and_hms(croner::YEAR_UPPER_LIMIT - HORIZON_YEARS, 1, 1, 0, 0, 0)
            .single()
            .ok_or_else(|| ScheduleError::NeverMatches(source.to_owned()))?;
        if cron.find_next_occurrence(&cycle_start, true).is_err() {
            return Err(ScheduleError::NeverMatches(source.to_owned()));
        }
        Ok(Schedule {
            source: source.to_owned(),
            cron,
        })
    }
}

fn parser(and_rule: bool) -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Required)
        .year(Year::Disallowed)
        .dom_and_dow(and_rule)
        .build()
}

/// croner knows no `@midnight` and passes unknown `@words` on as fields,
/// which would give a confusing error, so macros are expanded here.
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

/// Replaces names by numbers within their own field. croner replaces names
/// anywhere in the expression, so `jan` in the minute field would silently
/// mean minute 1. Also rejects empty list items, which croner skips.
fn numeric_field(spec: &FieldSpec, text: &str) -> Result<String, ScheduleError> {
    if text.split(',').any(str::is_empty) {
        return Err(ScheduleError::EmptyItem {
            field: spec.field,
            text: text.to_owned(),
        });
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic()) {
        out.push_str(&rest[..start]);
        let word_len = rest[start..]
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len() - start);
        let word = &rest[start..start + word_len];
        out.push_str(&name_value(spec, word)?);
        rest = &rest[start + word_len..];
    }
    out.push_str(rest);
    if spec.field == Field::DayOfWeek {
        return Ok(out
            .split(',')
            .map(weekday_step_stops_at_saturday)
            .collect::<Vec<_>>()
            .join(","));
    }
    Ok(out)
}

fn name_value(spec: &FieldSpec, word: &str) -> Result<String, ScheduleError> {
    if let Some(i) = spec.names.iter().position(|n| n.eq_ignore_ascii_case(word)) {
        return Ok((spec.first_name_value + i as u32).to_string());
    }
    if spec.extensions.iter().any(|e| e.eq_ignore_ascii_case(word)) {
        return Ok(word.to_ascii_uppercase());
    }
    Err(ScheduleError::InvalidValue {
        field: spec.field,
        value: word.to_owned(),
        allowed: spec.allowed,
    })
}

/// croner runs `a/n` up to 7, which it then folds onto Sunday (0); Vixie
/// stops at 6, so `1/2` is Mon, Wed, Fri.
fn weekday_step_stops_at_saturday(item: &str) -> String {
    match item.split_once('/') {
        Some((start, step))
            if !start.is_empty()
                && start.bytes().all(|b| b.is_ascii_digit())
                && start.parse::<u32>().is_ok_and(|v| v < 6) =>
        {
            format!("{start}-6/{step}")
        }
        _ => item.to_owned(),
    }
}

/// Parses field `index` on its own (every other field `*`), so that an
/// error names the field it is in; croner's own messages do not.
fn check_alone(
    spec: &FieldSpec,
    text: &str,
    numeric: &[String],
    index: usize,
) -> Result<(), ScheduleError> {
    let probe: Vec<&str> = (0..FIELDS.len())
        .map(|i| if i == index { numeric[i].as_str() } else { "*" })
        .collect();
    parser(false)
        .parse(&probe.join(" "))
        .map(drop)
        .map_err(|e| ScheduleError::Rejected {
            field: spec.field,
            text: text.to_owned(),
            reason: croner_reason(&e),
            allowed: spec.allowed,
        })
}

/// croner's message without its prefix and full stop, starting lowercase.
fn croner_reason(e: &CronError) -> String {
    let message = match e {
        CronError::ComponentError(m) | CronError::InvalidPattern(m) => m.clone(),
        CronError::IllegalCharacters(_) => "contains a character that is not allowed".to_owned(),
        other => other.to_string(),
    };
    let message = message.trim_end_matches('.');
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl Schedule {
    /// Whether a local wall-clock time matches every field.
    pub fn matches_local(&self, t: NaiveDateTime) -> bool {
        self.cron
            .is_time_matching(&Utc.from_utc_datetime(&t))
            .unwrap_or(false)
    }

    /// First matching local time `>= from`, not looking past `last_year`.
    fn next_local_match(&self, from: NaiveDateTime, last_year: i32) -> Option<NaiveDateTime> {
        // UTC has no transitions, so croner searches plain wall-clock times.
        let found = self
            .cron
            .find_next_occurrence(&Utc.from_utc_datetime(&from), true)
            .ok()?
            .naive_utc();
        (found.year() <= last_year).then_some(found)
    }

    /// First run strictly after `after`, in the given zone (see the module
    /// doc for the DST rules).
    ///
    /// Returns `None` only if no run exists within the 400-year search
    /// horizon or before the year 5000 (croner's limit); expressions that
    /// can never match are already rejected by the parser.
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

    /// A tick for `nominal` is handled at `now`: the latest run time in
    /// `[nominal, now]`, and how many earlier run times (from `nominal`
    /// on) were passed over for it. A daemon that stalled (SIGSTOP, a suspended host,
    /// a long pause) runs once for the latest time that has come, not for
    /// a time that is long gone, and never drops the one due right now.
    /// The walk stops after [`CATCH_UP_LIMIT`] run times; the count then
    /// says at least that many.
    pub fn latest_due(
        &self,
        nominal: DateTime<Utc>,
        now: DateTime<Utc>,
        tz: Tz,
    ) -> (DateTime<Utc>, u32) {
        let mut due = nominal;
        // Each step passes over the time before it (`nominal` first).
        let mut passed = 0u32;
        while passed < CATCH_UP_LIMIT {
            match self.next_after(due, tz).map(|t| t.with_timezone(&Utc)) {
                Some(t) if t <= now => {
                    passed += 1;
                    due = t;
                }
                _ => break,
            }
        }
        (due, passed)
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
    let first_real = first_second_where(|secs| Some(!in_gap(secs)?))?;
    tz.from_local_datetime(&local.checked_add_signed(TimeDelta::seconds(first_real))?)
        .earliest()
}

/// The earliest local time whose run instant is strictly after `after`.
///
/// Usually that is one second past `after`'s own local time. When `after`
/// falls in the second pass through a repeated hour, the local times just
/// ahead of it already ran in the first pass, so we search forward for the
/// end of the repeat.
fn first_local_running_after(after: DateTime<Utc>, tz: Tz) -> Option<NaiveDateTime> {
    // Whole seconds: croner keeps the fraction of the time it starts from,
    // so a daemon started at hh:mm:ss.4 would otherwise run every job
    // 0.4 s late, forever.
    let base = after.with_timezone(&tz).naive_local().with_nanosecond(0)?;
    let hi = first_second_where(|secs| {
        let local = base.checked_add_signed(TimeDelta::seconds(secs))?;
        Some(run_instant(tz, local).is_some_and(|t| t.with_timezone(&Utc) > after))
    })?;
    base.checked_add_signed(TimeDelta::seconds(hi))
}

/// Smallest `s` in 1..=MAX_TRANSITION_SECONDS with `holds(s)`, for a
/// predicate that is false up to some point and true from there on (as
/// run_instant is non-decreasing in local time): doubling, then bisection.
fn first_second_where(holds: impl Fn(i64) -> Option<bool>) -> Option<i64> {
    let (mut lo, mut hi) = (0i64, 1i64);
    while !holds(hi)? {
        lo = hi;
        hi *= 2;
        if hi > MAX_TRANSITION_SECONDS {
            return None;
        }
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if holds(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
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

    #[test]
    fn runs_are_on_whole_seconds_whatever_the_fraction_of_after() {
        for (after, want) in [
            ("2027-01-01T04:10:00.010Z", "2027-01-01T05:00:00+00:00"),
            ("2027-01-01T04:59:59.999Z", "2027-01-01T05:00:00+00:00"),
            ("2027-01-01T05:00:00.500Z", "2027-01-01T06:00:00+00:00"),
        ] {
            assert_eq!(next("0 * * * *", after, Tz::UTC), want, "after {after}");
        }
        assert_eq!(
            next("30 1 * * *", "2027-03-27T12:00:00.25Z", London),
            "2027-03-28T02:00:00+01:00"
        );
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
            ("0 24 * * *", "hour field: \"24\" is invalid: number out of bounds (allowed 0-23)"),
            ("60 * * * *", "minute field: \"60\" is invalid: number out of bounds (allowed 0-59)"),
            ("60 * * * * *", "second field: \"60\" is invalid: number out of bounds"),
            ("0 0 0 * *", "day-of-month field: \"0\" is invalid: number out of bounds (allowed 1-31)"),
            ("0 0 32 * *", "day-of-month field: \"32\" is invalid: number out of bounds"),
            ("0 0 * 13 *", "month field: \"13\" is invalid: number out of bounds (allowed 1-12 or jan-dec)"),
            ("0 0 * * 8", "day-of-week field: \"8\" is invalid: number out of bounds (allowed 0-7 or sun-sat)"),
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
                "minute field: \"-5\" is invalid: invalid start of range (allowed 0-59)",
            ),
            (
                "+5 * * * *",
                "minute field: \"+5\" is invalid: contains a character that is not allowed",
            ),
            (
                "jan * * * *",
                "minute field: \"jan\" is not a valid value (allowed 0-59)",
            ),
            (
                "*/0 * * * *",
                "minute field: \"*/0\" is invalid: step cannot be zero",
            ),
            (
                "0 */x * * *",
                "hour field: \"x\" is not a valid value (allowed 0-23)",
            ),
            (
                "0 5-3 * * *",
                "hour field: \"5-3\" is invalid: range out of bounds (allowed 0-23)",
            ),
            (
                "0 0 * * sat-sun",
                "day-of-week field: \"sat-sun\" is invalid: range out of bounds",
            ),
            ("0 0 LW * *", "day-of-month field: \"LW\" is not a valid value"),
            ("0 0 * * 1#6", "day-of-week field: \"1#6\" is invalid: nth specifier out of bounds"),
            ("1,,2 * * * *", "minute field: empty list item in \"1,,2\""),
            ("@reboot", "unknown macro \"@reboot\""),
            ("@daily 5", "unknown macro \"@daily 5\""),
            ("0 0 30 2 *", "never matches"),
            ("0 0 31 4,6,9,11 *", "never matches"),
            ("0 0 30,31 feb *", "never matches"),
            ("0 0 31 2 */2", "never matches"),
            (
                "99999999999 * * * *",
                "minute field: \"99999999999\" is invalid: invalid number",
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
        // croner accepts a step larger than the field (Vixie cron does
        // too): only the start value is left, so this is minute 0.
        assert_eq!(
            next("*/61 * * * *", "2026-05-10T14:46:00Z", Tz::UTC),
            "2026-05-10T15:00:00+00:00"
        );
        // `7/n` is Sunday alone, not a reversed range 7-6.
        assert_eq!(
            next("0 0 * * 7/3", "2026-05-04T00:00:00Z", Tz::UTC),
            "2026-05-10T00:00:00+00:00"
        );
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
    fn a_late_tick_stands_for_the_latest_time_that_has_come() {
        let s = sched("0 * * * *");
        let h = |t: &str| utc(&format!("2027-01-01T{t}Z"));
        // On time, or early: the tick's own time, nothing passed over.
        assert_eq!(
            s.latest_due(h("01:00:00"), h("01:00:00"), Tz::UTC),
            (h("01:00:00"), 0)
        );
        assert_eq!(
            s.latest_due(h("01:00:00"), h("00:59:59"), Tz::UTC),
            (h("01:00:00"), 0)
        );
        assert_eq!(
            s.latest_due(h("01:00:00"), h("01:59:59"), Tz::UTC),
            (h("01:00:00"), 0)
        );
        // Exactly when the next one is due: that one, the 01:00 passed over.
        assert_eq!(
            s.latest_due(h("01:00:00"), h("02:00:00"), Tz::UTC),
            (h("02:00:00"), 1)
        );
        assert_eq!(
            s.latest_due(h("01:00:00"), h("04:10:00"), Tz::UTC),
            (h("04:00:00"), 3)
        );
        // A per-second schedule over a day stops at the limit.
        let every = sched("* * * * * *");
        let (_, n) = every.latest_due(h("00:00:00"), utc("2027-01-02T00:00:00Z"), Tz::UTC);
        assert_eq!(n, CATCH_UP_LIMIT);
    }

    #[test]
    fn dow_seven_equals_zero() {
        let runs = |expr: &str| sched(expr).upcoming(utc("2026-05-01T00:00:00Z"), Tz::UTC, 30);
        assert_eq!(runs("0 0 * * 7"), runs("0 0 * * 0"));
        assert_eq!(runs("0 0 * * 0-7"), runs("0 0 * * *"));
        // `a/n` stops at Saturday rather than wrapping onto Sunday via 7.
        assert_eq!(runs("0 0 * * 1/2"), runs("0 0 * * 1,3,5"));
        assert_eq!(runs("0 0 * * mon/2"), runs("0 0 * * 1,3,5"));
    }

    #[test]
    fn names_only_count_in_their_own_field() {
        // croner alone would read `jan` in the minute field as minute 1.
        assert!("jan * * * *".parse::<Schedule>().is_err());
        assert!("0 0 * mon *".parse::<Schedule>().is_err());
        assert!("0 0 * * jan".parse::<Schedule>().is_err());
    }

    /// Extensions croner understands and this module passes through.
    #[test]
    fn croner_extensions() {
        // Last day of the month.
        assert_eq!(
            next("0 0 L * *", "2026-02-01T00:00:00Z", Tz::UTC),
            "2026-02-28T00:00:00+00:00"
        );
        // Last Friday of the month: 2026-05-29.
        assert_eq!(
            next("0 0 * * 5L", "2026-05-01T00:00:00Z", Tz::UTC),
            "2026-05-29T00:00:00+00:00"
        );
        // Second Friday: 2026-05-08.
        assert_eq!(
            next("0 0 * * fri#2", "2026-05-01T00:00:00Z", Tz::UTC),
            "2026-05-08T00:00:00+00:00"
        );
        // Weekday nearest the 16th: 2026-05-16 is a Saturday, so Friday 15th.
        assert_eq!(
            next("0 0 16W * *", "2026-05-01T00:00:00Z", Tz::UTC),
            "2026-05-15T00:00:00+00:00"
        );
        // `+` forces AND: the 13th only when it is a Friday (2026-11-13).
        assert_eq!(
            next("0 0 13 * +5", "2026-03-14T00:00:00Z", Tz::UTC),
            "2026-11-13T00:00:00+00:00"
        );
        // `?` is `*`.
        assert_eq!(
            next("0 0 ? * 5", "2026-05-10T00:00:00Z", Tz::UTC),
            "2026-05-15T00:00:00+00:00"
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
        // Field-wise search: hundreds of leap-day lookups stay quick even
        // in a debug build (a second-by-second scan would take far longer).
        let s = sched("0 0 0 29 2 *");
        let runs = s.upcoming(utc("2000-01-01T00:00:00Z"), London, 2_000);
        assert_eq!(runs[0].to_rfc3339(), "2000-02-29T00:00:00+00:00");
        assert!(runs.iter().all(|t| t.month() == 2 && t.day() == 29));
        // croner does not search past the year 4999, so the runs stop there
        // (the old hand-written search went on to the year 262143).
        assert_eq!(runs.len(), 728);
        assert_eq!(runs[727].year(), 4996);
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
            ("1m1m", "appears more than once"),
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

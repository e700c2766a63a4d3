//! Retention policies: the YAML form operators write ([`PolicySpec`]), its validation, and the
//! validated model the planner in [`crate::retention::planner`] consumes ([`Policy`]).
//!
//! The rules and their meaning follow restic's `forget` (design notes, section 4) so that a
//! policy means what operators already expect. Validation collects every problem at once, each
//! with its line and column, because fixing a policy one error per run is tedious and a policy
//! that is silently wrong deletes backups.
//!
//! ```yaml
//! keep_daily: 7
//! keep_weekly: 5
//! keep_monthly: unlimited
//! keep_within: 48h
//! timezone: Europe/London
//! ```

use std::fmt;

use chrono_tz::Tz;

mod duration;
mod load;

pub use duration::{KeepDuration, ParseDurationError};
pub use load::{
    load_policy_file, parse_policy_str, plain_message, FieldError, PolicyFileError, PolicyKeys,
    PolicySpec, RawCount,
};

/// How many periods a count rule (`keep_daily` and friends) keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Count {
    /// Keep this many periods; validation guarantees it is at least 1.
    Limited(u32),
    /// Keep one backup for every period that has one, however many there are.
    Unlimited,
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::Limited(n) => write!(f, "{n}"),
            Count::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// A validated retention policy. Build one with [`load_policy_file`], [`parse_policy_str`] or
/// [`PolicySpec::validate`]; those refuse a policy without any rule.
///
/// [`Policy::default`] is such an empty policy (UTC, no rules). It exists for building policies
/// field by field; the planner treats an empty policy as "keep everything" rather than deleting
/// anything, mirroring restic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub keep_last: Option<Count>,
    pub keep_hourly: Option<Count>,
    pub keep_daily: Option<Count>,
    pub keep_weekly: Option<Count>,
    pub keep_monthly: Option<Count>,
    pub keep_yearly: Option<Count>,
    pub keep_within: Option<KeepDuration>,
    pub keep_within_hourly: Option<KeepDuration>,
    pub keep_within_daily: Option<KeepDuration>,
    pub keep_within_weekly: Option<KeepDuration>,
    pub keep_within_monthly: Option<KeepDuration>,
    pub keep_within_yearly: Option<KeepDuration>,
    /// Zone in which hours, days, weeks, months and years are counted.
    pub timezone: Tz,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            keep_last: None,
            keep_hourly: None,
            keep_daily: None,
            keep_weekly: None,
            keep_monthly: None,
            keep_yearly: None,
            keep_within: None,
            keep_within_hourly: None,
            keep_within_daily: None,
            keep_within_weekly: None,
            keep_within_monthly: None,
            keep_within_yearly: None,
            timezone: Tz::UTC,
        }
    }
}

impl Policy {
    /// True when no `keep_*` rule is set at all.
    pub fn is_empty(&self) -> bool {
        let counts = [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ];
        let durations = [
            self.keep_within,
            self.keep_within_hourly,
            self.keep_within_daily,
            self.keep_within_weekly,
            self.keep_within_monthly,
            self.keep_within_yearly,
        ];
        counts.iter().all(Option::is_none) && durations.iter().all(Option::is_none)
    }
}

/// One line per log entry is easier to grep than a struct dump, hence this summary form:
/// `keep last 3, daily 7, within 14d, within daily 30d (Europe/London)`.
impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        let counts = [
            ("last", self.keep_last),
            ("hourly", self.keep_hourly),
            ("daily", self.keep_daily),
            ("weekly", self.keep_weekly),
            ("monthly", self.keep_monthly),
            ("yearly", self.keep_yearly),
        ];
        for (name, count) in counts {
            if let Some(count) = count {
                parts.push(format!("{name} {count}"));
            }
        }
        if let Some(d) = self.keep_within {
            parts.push(format!("within {d}"));
        }
        let withins = [
            ("hourly", self.keep_within_hourly),
            ("daily", self.keep_within_daily),
            ("weekly", self.keep_within_weekly),
            ("monthly", self.keep_within_monthly),
            ("yearly", self.keep_within_yearly),
        ];
        for (name, duration) in withins {
            if let Some(d) = duration {
                parts.push(format!("within {name} {d}"));
            }
        }
        if parts.is_empty() {
            write!(f, "empty policy ({})", self.timezone)
        } else {
            write!(f, "keep {} ({})", parts.join(", "), self.timezone)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone, Utc};
    use serde::Deserialize;
    use std::path::Path;

    fn d(s: &str) -> KeepDuration {
        match s.parse() {
            Ok(d) => d,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn kd(years: u32, months: u32, days: u32, hours: u32) -> KeepDuration {
        KeepDuration {
            years,
            months,
            days,
            hours,
        }
    }

    #[test]
    fn durations_parse_every_unit_and_display_canonically() {
        let cases = [
            ("48h", kd(0, 0, 0, 48), "48h"),
            ("14d", kd(0, 0, 14, 0), "14d"),
            ("6w", kd(0, 0, 42, 0), "42d"),
            ("1y6mo", kd(1, 6, 0, 0), "1y6mo"),
            ("1y2mo3w4d5h", kd(1, 2, 25, 5), "1y2mo25d5h"),
            ("5h1y", kd(1, 0, 0, 5), "1y5h"),
            ("0y3d", kd(0, 0, 3, 0), "3d"),
            ("2y", kd(2, 0, 0, 0), "2y"),
        ];
        for (input, want, shown) in cases {
            assert_eq!(d(input), want, "{input}");
            assert_eq!(d(input).to_string(), shown, "{input}");
            assert_eq!(d(shown), want, "display of {input} parses back");
        }
    }

    #[test]
    fn bare_m_is_rejected_as_ambiguous() {
        let err = "3m".parse::<KeepDuration>().unwrap_err().to_string();
        assert!(err.contains("'m' is ambiguous"), "{err}");
        assert!(err.contains("months or minutes"), "{err}");
        assert!(err.contains("'mo' for months"), "{err}");
        let err = "1y3m".parse::<KeepDuration>().unwrap_err().to_string();
        assert!(err.contains("ambiguous"), "{err}");
    }

    #[test]
    fn bad_durations_are_rejected_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("  ", "empty"),
            ("0d", "zero"),
            ("0y0mo", "zero"),
            ("14", "no unit"),
            ("d", "expected a number"),
            ("3min", "unknown unit"),
            ("3 d", "unknown unit"),
            ("1D", "unknown unit"),
            ("-1d", "expected a number"),
            ("1d2d", "more than once"),
            ("99999999999d", "too large"),
            ("613566757w", "too large"),
        ];
        for (input, needle) in cases {
            match input.parse::<KeepDuration>() {
                Ok(v) => panic!("{input:?} should be rejected, got {v:?}"),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.contains(needle), "{input:?}: {msg}");
                    assert!(
                        msg.contains(&format!("{input:?}")),
                        "names the input: {msg}"
                    );
                }
            }
        }
    }

    fn utc(y: i32, m: u32, day: u32, h: u32, min: u32) -> DateTime<Tz> {
        match Tz::UTC.with_ymd_and_hms(y, m, day, h, min, 0) {
            chrono::LocalResult::Single(t) => t,
            other => panic!("bad test time: {other:?}"),
        }
    }

    #[test]
    fn month_arithmetic_follows_go_add_date() {
        let cases = [
            // 31 Feb 2023 normalises to 3 March.
            (utc(2023, 3, 31, 12, 0), "1mo", utc(2023, 3, 3, 12, 0)),
            // In a leap year "31 Feb" is 2 March.
            (utc(2024, 3, 31, 12, 0), "1mo", utc(2024, 3, 2, 12, 0)),
            (utc(2024, 2, 29, 8, 0), "1y", utc(2023, 3, 1, 8, 0)),
            (utc(2024, 2, 29, 8, 0), "4y", utc(2020, 2, 29, 8, 0)),
            (utc(2024, 1, 15, 0, 0), "1mo", utc(2023, 12, 15, 0, 0)),
            (utc(2024, 1, 15, 0, 0), "13mo", utc(2022, 12, 15, 0, 0)),
            (utc(2024, 3, 1, 0, 30), "1d", utc(2024, 2, 29, 0, 30)),
            (utc(2024, 3, 1, 0, 30), "1h", utc(2024, 2, 29, 23, 30)),
            (
                utc(2024, 3, 10, 6, 0),
                "1y2mo3w4d5h",
                utc(2022, 12, 16, 1, 0),
            ),
            (utc(2024, 5, 31, 0, 0), "3mo", utc(2024, 3, 2, 0, 0)),
        ];
        for (from, dur, want) in cases {
            assert_eq!(d(dur).subtract_from(from), want, "{from} - {dur}");
        }
    }

    #[test]
    fn day_arithmetic_keeps_wall_clock_across_dst() {
        let london: Tz = chrono_tz::Europe::London;
        // 12:00 BST minus one calendar day across the spring change is 12:00 GMT: 23 elapsed hours.
        let from = london
            .with_ymd_and_hms(2024, 3, 31, 12, 0, 0)
            .single()
            .unwrap();
        let got = d("1d").subtract_from(from);
        assert_eq!(got.naive_local().to_string(), "2024-03-30 12:00:00");
        assert_eq!((from - got).num_hours(), 23);
        // Hours are elapsed time, not wall clock.
        let got = d("24h").subtract_from(from);
        assert_eq!(got.naive_local().to_string(), "2024-03-30 11:00:00");
    }

    #[test]
    fn wall_clock_in_dst_gap_or_overlap_resolves_like_go() {
        let london: Tz = chrono_tz::Europe::London;
        let new_york: Tz = chrono_tz::America::New_York;
        let at =
            |tz: Tz, y, m, d, h, min| tz.with_ymd_and_hms(y, m, d, h, min, 0).single().unwrap();
        // 01:30 on 31 Mar 2024 does not exist in London; Go reads it with the GMT offset.
        let got = d("1d").subtract_from(at(london, 2024, 4, 1, 1, 30));
        assert_eq!(
            got.with_timezone(&Utc),
            Utc.with_ymd_and_hms(2024, 3, 31, 1, 30, 0).unwrap()
        );
        // 02:30 on 10 Mar 2024 does not exist in New York; Go reads it with the EDT offset.
        let got = d("1d").subtract_from(at(new_york, 2024, 3, 11, 2, 30));
        assert_eq!(
            got.with_timezone(&Utc),
            Utc.with_ymd_and_hms(2024, 3, 10, 6, 30, 0).unwrap()
        );
        // 01:30 on 27 Oct 2024 happens twice in London; Go picks GMT (the later one).
        let got = d("1d").subtract_from(at(london, 2024, 10, 28, 1, 30));
        assert_eq!(
            got.with_timezone(&Utc),
            Utc.with_ymd_and_hms(2024, 10, 27, 1, 30, 0).unwrap()
        );
        // 01:30 on 3 Nov 2024 happens twice in New York; Go picks EDT (the earlier one).
        let got = d("1d").subtract_from(at(new_york, 2024, 11, 4, 1, 30));
        assert_eq!(
            got.with_timezone(&Utc),
            Utc.with_ymd_and_hms(2024, 11, 3, 5, 30, 0).unwrap()
        );
    }

    #[test]
    fn huge_durations_saturate_instead_of_panicking() {
        let max = kd(u32::MAX, u32::MAX, u32::MAX, u32::MAX);
        let got = max.subtract_from(utc(2024, 1, 1, 0, 0));
        assert_eq!(got.with_timezone(&Utc), DateTime::<Utc>::MIN_UTC);
        let got = d("200000y").subtract_from(utc(2024, 1, 1, 0, 0));
        assert!(got < utc(1, 1, 1, 0, 0));
    }

    fn parse(yaml: &str) -> Result<Policy, PolicyFileError> {
        parse_policy_str(yaml, Path::new("policies/test.yaml"))
    }

    fn problems(yaml: &str) -> Vec<FieldError> {
        match parse(yaml) {
            Err(PolicyFileError::Invalid { problems, .. }) => problems,
            other => panic!("expected validation problems, got {other:?}"),
        }
    }

    #[test]
    fn full_policy_parses() {
        let yaml = "\
keep_last: 3
keep_hourly: 24
keep_daily: 7
keep_weekly: 5
keep_monthly: unlimited
keep_yearly: 2
keep_within: 48h
keep_within_hourly: 2d
keep_within_daily: 2w
keep_within_weekly: 3mo
keep_within_monthly: 1y6mo
keep_within_yearly: 10y
timezone: Europe/London
";
        let policy = parse(yaml).unwrap();
        assert_eq!(
            policy,
            Policy {
                keep_last: Some(Count::Limited(3)),
                keep_hourly: Some(Count::Limited(24)),
                keep_daily: Some(Count::Limited(7)),
                keep_weekly: Some(Count::Limited(5)),
                keep_monthly: Some(Count::Unlimited),
                keep_yearly: Some(Count::Limited(2)),
                keep_within: Some(kd(0, 0, 0, 48)),
                keep_within_hourly: Some(kd(0, 0, 2, 0)),
                keep_within_daily: Some(kd(0, 0, 14, 0)),
                keep_within_weekly: Some(kd(0, 3, 0, 0)),
                keep_within_monthly: Some(kd(1, 6, 0, 0)),
                keep_within_yearly: Some(kd(10, 0, 0, 0)),
                timezone: chrono_tz::Europe::London,
            }
        );
        assert_eq!(
            policy.to_string(),
            "keep last 3, hourly 24, daily 7, weekly 5, monthly unlimited, yearly 2, \
             within 48h, within hourly 2d, within daily 14d, within weekly 3mo, \
             within monthly 1y6mo, within yearly 10y (Europe/London)"
        );
    }

    #[test]
    fn timezone_defaults_to_utc() {
        let policy = parse("keep_daily: 7\n").unwrap();
        assert_eq!(policy.timezone, Tz::UTC);
        assert_eq!(policy.keep_daily, Some(Count::Limited(7)));
        assert!(!policy.is_empty());
        assert!(Policy::default().is_empty());
    }

    #[test]
    fn zero_and_negative_counts_are_rejected_with_their_line() {
        let got = problems("keep_daily: 7\nkeep_weekly: 0\nkeep_monthly: -1\n");
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            (got[0].key.as_str(), got[0].line, got[0].column),
            ("keep_weekly", 2, 14)
        );
        assert!(got[0].message.contains("at least 1"), "{}", got[0].message);
        assert_eq!(
            (got[1].key.as_str(), got[1].line, got[1].column),
            ("keep_monthly", 3, 15)
        );
        assert!(got[1].message.contains("not -1"), "{}", got[1].message);
    }

    #[test]
    fn every_problem_is_reported_at_once_with_lines() {
        let yaml = "\
# nightly policy
keep_last: 0
keep_daily: seven
keep_weekly: 4294967296
keep_within: 3m
keep_within_daily: \"\"
keep_within_weekly: 14
timezone: Europe/Lundon
keep_yearly: 2.5
";
        let got = problems(yaml);
        let summary: Vec<(&str, u64)> = got.iter().map(|p| (p.key.as_str(), p.line)).collect();
        assert_eq!(
            summary,
            vec![
                ("keep_last", 2),
                ("keep_daily", 3),
                ("keep_weekly", 4),
                ("keep_yearly", 9),
                ("keep_within", 5),
                ("keep_within_daily", 6),
                ("keep_within_weekly", 7),
                ("timezone", 8),
            ]
        );
        assert!(got[1].message.contains("\"seven\""), "{}", got[1].message);
        assert!(got[2].message.contains("too large"), "{}", got[2].message);
        assert!(got[3].message.contains("\"2.5\""), "{}", got[3].message);
        assert!(got[4].message.contains("ambiguous"), "{}", got[4].message);
        assert!(got[5].message.contains("empty"), "{}", got[5].message);
        assert!(got[6].message.contains("no unit"), "{}", got[6].message);
        assert!(
            got[7].message.contains("Europe/Lundon"),
            "{}",
            got[7].message
        );
        // No "empty policy" error on top: the rules were written, just wrong.
        assert!(got.iter().all(|p| p.key != "policy"));
    }

    #[test]
    fn display_lists_every_problem_as_file_line_col_key() {
        let err = parse("keep_daily: 0\ntimezone: Mars/Olympus\n").unwrap_err();
        let text = err.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].contains("policies/test.yaml"), "{text}");
        assert!(
            lines[1].starts_with("policies/test.yaml:1:13: keep_daily: must be at least 1"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("policies/test.yaml:2:11: timezone: unknown time zone"),
            "{text}"
        );
    }

    #[test]
    fn unlimited_and_quoted_unlimited_are_accepted() {
        let policy = parse("keep_daily: unlimited\nkeep_weekly: \"unlimited\"\n").unwrap();
        assert_eq!(policy.keep_daily, Some(Count::Unlimited));
        assert_eq!(policy.keep_weekly, Some(Count::Unlimited));
        let got = problems("keep_daily: Unlimited\n");
        assert_eq!(got[0].key, "keep_daily");
    }

    #[test]
    fn unknown_key_is_a_parse_error_with_its_line() {
        let err = parse("keep_daily: 7\n\nkeep_dialy: 3\n").unwrap_err();
        match &err {
            PolicyFileError::Parse {
                line,
                column,
                message,
                ..
            } => {
                assert_eq!((*line, *column), (3, 1));
                assert!(message.contains("keep_dialy"), "{message}");
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains("policies/test.yaml:3:1: unknown field `keep_dialy`"),
            "{text}"
        );
        assert!(!text.contains("-->"), "no snippet: {text}");
    }

    #[test]
    fn wrong_types_and_syntax_errors_have_positions() {
        let got = problems("keep_daily: [1, 2]\nkeep_weekly: {a: 1}\n");
        assert_eq!((got[0].line, got[0].column), (1, 13));
        assert!(
            got[0].message.contains("not \"[...]\""),
            "{}",
            got[0].message
        );
        assert_eq!((got[1].line, got[1].column), (2, 14));
        for (yaml, want) in [
            ("keep_within: {a: 1}\n", (1, 14)),
            ("keep_daily: 7\nkeep_weekly: [\n", (2, 14)),
            ("- keep_daily: 7\n", (1, 1)),
            ("keep_daily: 7\nkeep_daily: 8\n", (2, 1)),
        ] {
            match parse(yaml) {
                Err(PolicyFileError::Parse {
                    line,
                    column,
                    message,
                    ..
                }) => {
                    assert_eq!((line, column), want, "{yaml:?}: {message}")
                }
                other => panic!("{yaml:?}: expected a parse error, got {other:?}"),
            }
        }
    }

    #[test]
    fn empty_policy_is_refused_at_the_mapping_start() {
        for (yaml, at) in [
            ("", (1, 1)),
            ("# nothing here\n", (2, 1)),
            ("{}\n", (1, 1)),
            ("# only a zone\n\ntimezone: UTC\n", (3, 1)),
        ] {
            let got = problems(yaml);
            assert_eq!(got.len(), 1, "{yaml:?}: {got:?}");
            assert_eq!(got[0].key, "policy");
            assert_eq!((got[0].line, got[0].column), at, "{yaml:?}");
            assert!(
                got[0].message.contains("delete every backup"),
                "{}",
                got[0].message
            );
            assert!(got[0].message.contains("refused"), "{}", got[0].message);
        }
        // A spec built by hand (no position known) points at 1:1.
        let got = PolicySpec::default().validate().unwrap_err();
        assert_eq!((got[0].line, got[0].column), (1, 1));
    }

    #[test]
    fn embedded_policy_records_its_own_position() {
        #[derive(Deserialize)]
        struct Job {
            #[allow(dead_code)]
            name: String,
            retention: PolicySpec,
        }
        let yaml = "name: db\nretention:\n  timezone: UTC\n";
        let job: Job = serde_saphyr::from_str(yaml).unwrap();
        let got = job.retention.validate().unwrap_err();
        assert_eq!(
            (got[0].key.as_str(), got[0].line, got[0].column),
            ("policy", 3, 3)
        );
    }

    #[test]
    fn shipped_policies_are_valid() {
        let origin = Path::new("policies");
        let default =
            parse_policy_str(include_str!("../../policies/default.yaml"), origin).unwrap();
        assert_eq!(default.keep_daily, Some(Count::Limited(7)));
        let concertim =
            parse_policy_str(include_str!("../../policies/concertim.yaml"), origin).unwrap();
        assert_eq!(
            (
                concertim.keep_daily,
                concertim.keep_weekly,
                concertim.keep_monthly,
                concertim.keep_yearly
            ),
            (
                Some(Count::Limited(7)),
                Some(Count::Limited(5)),
                Some(Count::Limited(12)),
                Some(Count::Limited(2))
            )
        );
        // The reference documents every key, so every rule must be set in it.
        let reference =
            parse_policy_str(include_str!("../../policies/reference.yaml"), origin).unwrap();
        let counts = [
            reference.keep_last,
            reference.keep_hourly,
            reference.keep_daily,
            reference.keep_weekly,
            reference.keep_monthly,
            reference.keep_yearly,
        ];
        let durations = [
            reference.keep_within,
            reference.keep_within_hourly,
            reference.keep_within_daily,
            reference.keep_within_weekly,
            reference.keep_within_monthly,
            reference.keep_within_yearly,
        ];
        assert!(counts.iter().all(Option::is_some), "{reference:?}");
        assert!(durations.iter().all(Option::is_some), "{reference:?}");
        assert_ne!(
            reference.timezone,
            Tz::UTC,
            "reference shows a non-default zone"
        );
    }

    #[test]
    fn load_policy_file_reads_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.yaml");
        std::fs::write(&path, "keep_daily: 7\nkeep_within: 14d\n").unwrap();
        let policy = load_policy_file(&path).unwrap();
        assert_eq!(policy.keep_within, Some(kd(0, 0, 14, 0)));

        std::fs::write(&path, "keep_daily: -3\n").unwrap();
        let text = load_policy_file(&path).unwrap_err().to_string();
        assert!(
            text.contains(&format!("{}:1:13: keep_daily:", path.display())),
            "{text}"
        );

        let missing = dir.path().join("missing.yaml");
        let err = load_policy_file(&missing).unwrap_err();
        assert!(matches!(err, PolicyFileError::Read { .. }));
        assert!(err.to_string().contains("missing.yaml"), "{err}");
        assert!(std::error::Error::source(&err).is_some());
    }
}

//! The retention planner: a pure function from a [`Policy`] and a job's complete backups to a
//! [`Plan`] that says, for every backup, keep or remove and why.
//!
//! The semantics are restic's `forget` (restic >= 0.16, including the "oldest" rule), as
//! `docs/retention.md` tells operators. Applying a plan (deleting manifests, then data) is the caller's job;
//! keeping the decision pure makes dry runs and tests trivial.
//!
//! # How the plan is made
//!
//! Backups are ordered newest first; equal times are ordered by id, descending, so the plan does
//! not depend on the order the store listed them in. Each backup falls in an hour (`YYYYMMDDHH`),
//! a day (`YYYYMMDD`), an ISO week (ISO week-year and week number: Mon 30 Dec 2024 is in
//! 2025-W01), a month and a year, all on the wall clock of the policy's time zone.
//!
//! Walking from newest to oldest:
//! - each count rule (`keep_last`, `keep_hourly` .. `keep_yearly`) that still has budget keeps a
//!   backup whose period differs from the period of the last backup *that rule* kept, and spends
//!   one; `unlimited` never runs out; `keep_last` treats every backup as its own period. Rules
//!   are independent, so one backup can spend from several budgets;
//! - at the oldest backup, every count rule with budget left keeps it even if its period was
//!   already covered, so that a young history is not thinned below what the policy asks for;
//! - `keep_within D` keeps every backup strictly newer than `latest - D`, where `latest` is the
//!   newest backup's time (not the clock: if backups stop, nothing ages out);
//! - `keep_within_<period> D` keeps, among backups strictly newer than `latest - D`, the newest
//!   of each period, without a budget, and the oldest backup if it is inside the window.
//!
//! Durations are subtracted with [`KeepDuration::subtract_from`] in the policy's zone.
//!
//! Guards: the newest backup is always kept; a policy without any rule keeps everything (a
//! validated [`Policy`] never has no rule, but a hand-built one could).
//!
//! Unlike restic, `latest` is the newest backup even if its time lies in the future: the planner
//! does not read the clock, so that it stays a pure function.
//!
//! # Reasons
//!
//! Each kept backup lists every rule that kept it, in this order, so operators can see why a
//! backup survived (removed backups have no reasons):
//!
//! | reason | rule |
//! | --- | --- |
//! | `within 14d` | `keep_within: 14d` (the duration as [`KeepDuration`] displays it) |
//! | `last`, `hourly`, `daily`, `weekly`, `monthly`, `yearly` | the count rule of that name |
//! | `oldest daily` (etc.) | oldest backup, its day already kept, `keep_daily` budget left |
//! | `within daily 30d` (etc.) | `keep_within_daily: 30d`: newest of its day inside the window |
//! | `oldest within daily 30d` (etc.) | oldest backup, inside that window, day already kept |
//! | `newest` | the guard kept the newest backup, no rule did (hand-built policies only) |
//! | `policy is empty` | no rule at all: everything is kept |
//!
//! `newest` is added only when no rule kept the newest backup, so that it flags the guard doing
//! work rather than appearing on every plan.

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::retention::policy::{Count, KeepDuration, Policy};

/// Reason given when only the newest-backup guard kept a backup.
pub const REASON_NEWEST: &str = "newest";
/// Reason given to every backup when the policy has no rule.
pub const REASON_EMPTY_POLICY: &str = "policy is empty";

/// A complete backup of one job, as far as retention is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub id: String,
    pub time: DateTime<Utc>,
}

/// The decision for one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanEntry {
    pub id: String,
    pub time: DateTime<Utc>,
    pub keep: bool,
    /// Why the backup is kept (see the module documentation); empty when it is removed.
    pub reasons: Vec<String>,
}

/// Decisions for a list of backups, in the same order as the list given to [`plan`], so that
/// `plan.entries[i]` is about `snapshots[i]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub entries: Vec<PlanEntry>,
}

impl Plan {
    /// Backups to keep, in input order.
    pub fn kept(&self) -> impl Iterator<Item = &PlanEntry> {
        self.entries.iter().filter(|e| e.keep)
    }

    /// Backups to remove, in input order.
    pub fn removed(&self) -> impl Iterator<Item = &PlanEntry> {
        self.entries.iter().filter(|e| !e.keep)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    /// Every backup is its own period (`keep_last`).
    Each,
    Hour,
    Day,
    IsoWeek,
    Month,
    Year,
}

impl Period {
    /// A number that is equal for two backups exactly when they share the period. `position` is
    /// the backup's place in the newest-first walk, which makes every backup distinct for `Each`.
    fn key(self, local: &DateTime<Tz>, position: usize) -> i64 {
        let year = i64::from(local.year());
        let month = i64::from(local.month());
        let day = i64::from(local.day());
        match self {
            Period::Each => i64::try_from(position).unwrap_or(i64::MAX),
            Period::Hour => year * 1_000_000 + month * 10_000 + day * 100 + i64::from(local.hour()),
            Period::Day => year * 10_000 + month * 100 + day,
            Period::IsoWeek => {
                let week = local.iso_week();
                i64::from(week.year()) * 100 + i64::from(week.week())
            }
            Period::Month => year * 100 + month,
            Period::Year => year,
        }
    }
}

struct CountRule {
    reason: &'static str,
    period: Period,
    /// `None` is unlimited.
    remaining: Option<u32>,
    last_kept: Option<i64>,
}

impl CountRule {
    fn new(reason: &'static str, period: Period, count: Option<Count>) -> Option<Self> {
        let remaining = match count? {
            Count::Limited(n) => Some(n),
            Count::Unlimited => None,
        };
        Some(CountRule {
            reason,
            period,
            remaining,
            last_kept: None,
        })
    }

    fn has_budget(&self) -> bool {
        self.remaining != Some(0)
    }
}

struct WithinRule {
    reason: String,
    period: Period,
    cutoff: DateTime<Utc>,
    last_kept: Option<i64>,
}

/// The policy's count rules (`keep_last`, `keep_hourly`, ...) that are set.
fn count_rules(policy: &Policy) -> Vec<CountRule> {
    [
        ("last", Period::Each, policy.keep_last),
        ("hourly", Period::Hour, policy.keep_hourly),
        ("daily", Period::Day, policy.keep_daily),
        ("weekly", Period::IsoWeek, policy.keep_weekly),
        ("monthly", Period::Month, policy.keep_monthly),
        ("yearly", Period::Year, policy.keep_yearly),
    ]
    .into_iter()
    .filter_map(|(reason, period, count)| CountRule::new(reason, period, count))
    .collect()
}

/// The policy's `keep_within_*` rules that are set, each with its cutoff.
fn within_rules(
    policy: &Policy,
    cutoff: &dyn Fn(&KeepDuration) -> DateTime<Utc>,
) -> Vec<WithinRule> {
    [
        ("hourly", Period::Hour, policy.keep_within_hourly),
        ("daily", Period::Day, policy.keep_within_daily),
        ("weekly", Period::IsoWeek, policy.keep_within_weekly),
        ("monthly", Period::Month, policy.keep_within_monthly),
        ("yearly", Period::Year, policy.keep_within_yearly),
    ]
    .into_iter()
    .filter_map(|(name, period, duration)| {
        let d = duration?;
        Some(WithinRule {
            reason: format!("within {name} {d}"),
            period,
            cutoff: cutoff(&d),
            last_kept: None,
        })
    })
    .collect()
}

/// Decides which backups to keep. Pure and deterministic: the same policy and the same set of
/// backups give the same plan whatever order the backups come in (apart from the order of the
/// entries, which follows the input).
pub fn plan(policy: &Policy, snapshots: &[Snapshot]) -> Plan {
    let mut entries: Vec<PlanEntry> = snapshots
        .iter()
        .map(|s| PlanEntry {
            id: s.id.clone(),
            time: s.time,
            keep: false,
            reasons: Vec::new(),
        })
        .collect();

    if policy.is_empty() {
        for entry in &mut entries {
            entry.keep = true;
            entry.reasons.push(REASON_EMPTY_POLICY.to_owned());
        }
        return Plan { entries };
    }

    // Newest first; the id breaks ties so the plan does not depend on listing order.
    let mut order: Vec<(usize, &Snapshot)> = snapshots.iter().enumerate().collect();
    order.sort_by(|(_, a), (_, b)| b.time.cmp(&a.time).then_with(|| b.id.cmp(&a.id)));
    let Some(&(_, newest)) = order.first() else {
        return Plan { entries };
    };

    let tz = policy.timezone;
    let latest = newest.time.with_timezone(&tz);
    let cutoff = |d: &KeepDuration| d.subtract_from(latest).with_timezone(&Utc);

    let within = policy
        .keep_within
        .map(|d| (cutoff(&d), format!("within {d}")));

    let mut count_rules = count_rules(policy);
    let mut within_rules = within_rules(policy, &cutoff);

    let oldest_position = order.len().saturating_sub(1);
    for (position, &(index, snapshot)) in order.iter().enumerate() {
        let local = snapshot.time.with_timezone(&tz);
        let is_oldest = position == oldest_position;
        let reasons = &mut entries[index].reasons;

        if let Some((cutoff, reason)) = &within {
            if snapshot.time > *cutoff {
                reasons.push(reason.clone());
            }
        }

        for rule in count_rules.iter_mut().filter(|r| r.has_budget()) {
            let key = rule.period.key(&local, position);
            let new_period = rule.last_kept != Some(key);
            // The oldest backup is kept while budget remains (restic >= 0.16): otherwise a young
            // history, e.g. one week under keep_monthly, would lose its only old restore point.
            if new_period || is_oldest {
                rule.last_kept = Some(key);
                if let Some(remaining) = rule.remaining.as_mut() {
                    *remaining = remaining.saturating_sub(1);
                }
                reasons.push(if new_period {
                    rule.reason.to_owned()
                } else {
                    format!("oldest {}", rule.reason)
                });
            }
        }

        for rule in within_rules.iter_mut().filter(|r| snapshot.time > r.cutoff) {
            let key = rule.period.key(&local, position);
            let new_period = rule.last_kept != Some(key);
            if new_period || is_oldest {
                rule.last_kept = Some(key);
                reasons.push(if new_period {
                    rule.reason.clone()
                } else {
                    format!("oldest {}", rule.reason)
                });
            }
        }

        if position == 0 && reasons.is_empty() {
            reasons.push(REASON_NEWEST.to_owned());
        }
        entries[index].keep = !entries[index].reasons.is_empty();
    }

    Plan { entries }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at(s: &str) -> DateTime<Utc> {
        match DateTime::parse_from_rfc3339(s) {
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => panic!("bad test time {s:?}: {e}"),
        }
    }

    /// Snapshots named `s0`, `s1`, ... in the order given.
    fn history(times: &[&str]) -> Vec<Snapshot> {
        times
            .iter()
            .enumerate()
            .map(|(i, t)| Snapshot {
                id: format!("s{i}"),
                time: at(t),
            })
            .collect()
    }

    fn dur(s: &str) -> KeepDuration {
        match s.parse() {
            Ok(d) => d,
            Err(e) => panic!("bad test duration {s:?}: {e}"),
        }
    }

    /// `(id, reasons)` for every kept backup, in input order.
    fn kept(policy: &Policy, snapshots: &[Snapshot]) -> Vec<(String, Vec<String>)> {
        let plan = plan(policy, snapshots);
        assert_eq!(plan.entries.len(), snapshots.len());
        for (entry, snapshot) in plan.entries.iter().zip(snapshots) {
            assert_eq!(entry.id, snapshot.id, "entries follow input order");
            assert_eq!(entry.time, snapshot.time);
            assert_eq!(entry.keep, !entry.reasons.is_empty(), "{entry:?}");
        }
        plan.kept()
            .map(|e| (e.id.clone(), e.reasons.clone()))
            .collect()
    }

    /// The kept backups a case wants, written `"s0: daily, weekly; s2:
    /// weekly"`: entries apart by `;`, each an id, `:` and its reasons apart
    /// by `,`.
    fn expect(want: &str) -> Vec<(String, Vec<String>)> {
        want.split(';')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|entry| match entry.split_once(':') {
                Some((id, reasons)) => (
                    id.trim().to_owned(),
                    reasons.split(',').map(|r| r.trim().to_owned()).collect(),
                ),
                None => panic!("bad test expectation {entry:?}"),
            })
            .collect()
    }

    struct Case {
        name: &'static str,
        policy: Policy,
        /// Backup times, apart by spaces, named `s0`, `s1`, ... in order.
        times: &'static str,
        /// See [`expect`].
        want: &'static str,
    }

    fn london() -> Tz {
        chrono_tz::Europe::London
    }

    fn new_york() -> Tz {
        chrono_tz::America::New_York
    }

    fn cases() -> Vec<Case> {
        use Count::{Limited, Unlimited};
        let p = Policy::default;
        vec![
            Case {
                name: "last keeps the newest n",
                policy: Policy {
                    keep_last: Some(Limited(2)),
                    ..p()
                },
                times: "2024-01-01T10:00:00Z 2024-01-01T10:01:00Z 2024-01-01T10:02:00Z 2024-01-01T09:00:00Z",
                want: "s1: last; s2: last",
            },
            Case {
                name: "last with more budget than backups keeps all",
                policy: Policy {
                    keep_last: Some(Limited(5)),
                    ..p()
                },
                times: "2024-01-01T10:00:00Z 2024-01-01T10:01:00Z",
                want: "s0: last; s1: last",
            },
            Case {
                name: "hourly keeps the newest of each hour, budget exactly spent",
                policy: Policy {
                    keep_hourly: Some(Limited(2)),
                    ..p()
                },
                times: "2024-05-01T10:50:00Z 2024-05-01T10:10:00Z 2024-05-01T09:30:00Z 2024-05-01T09:05:00Z",
                want: "s0: hourly; s2: hourly",
            },
            Case {
                name: "oldest rule keeps the oldest backup while budget is left",
                policy: Policy {
                    keep_hourly: Some(Limited(10)),
                    ..p()
                },
                times: "2024-05-01T10:50:00Z 2024-05-01T10:10:00Z 2024-05-01T09:30:00Z 2024-05-01T09:05:00Z",
                want: "s0: hourly; s2: hourly; s3: oldest hourly",
            },
            Case {
                name: "oldest in a new period gets the plain reason",
                policy: Policy {
                    keep_daily: Some(Limited(10)),
                    ..p()
                },
                times: "2024-05-02T10:00:00Z 2024-05-01T10:00:00Z",
                want: "s0: daily; s1: daily",
            },
            Case {
                name: "daily splits at UTC midnight",
                policy: Policy {
                    keep_daily: Some(Limited(3)),
                    ..p()
                },
                times: "2024-05-02T00:10:00Z 2024-05-01T23:50:00Z 2024-05-01T12:00:00Z 2024-04-29T12:00:00Z 2024-04-28T12:00:00Z",
                want: "s0: daily; s1: daily; s3: daily",
            },
            Case {
                name: "days only count when they have backups",
                policy: Policy {
                    keep_daily: Some(Limited(2)),
                    ..p()
                },
                times: "2024-05-20T12:00:00Z 2024-05-01T12:00:00Z 2024-04-01T12:00:00Z",
                want: "s0: daily; s1: daily",
            },
            Case {
                name: "ISO week: 30 Dec 2024 and 3 Jan 2025 share 2025-W01; 29 Dec is 2024-W52",
                policy: Policy {
                    keep_weekly: Some(Limited(2)),
                    ..p()
                },
                times: "2025-01-03T12:00:00Z 2024-12-30T12:00:00Z 2024-12-29T12:00:00Z 2024-12-28T12:00:00Z",
                want: "s0: weekly; s2: weekly",
            },
            Case {
                name: "ISO week: Sun 5 Jan 2025 is still W01, Mon 6 Jan starts W02",
                policy: Policy {
                    keep_weekly: Some(Limited(3)),
                    ..p()
                },
                times: "2025-01-06T00:30:00Z 2025-01-05T23:30:00Z 2024-12-30T00:00:00Z 2024-12-29T23:59:00Z",
                want: "s0: weekly; s1: weekly; s3: weekly",
            },
            Case {
                name: "ISO week 53: Thu 31 Dec 2020 and Sun 3 Jan 2021 share 2020-W53",
                policy: Policy {
                    keep_weekly: Some(Limited(2)),
                    ..p()
                },
                times: "2021-01-04T08:00:00Z 2021-01-03T08:00:00Z 2020-12-31T08:00:00Z",
                want: "s0: weekly; s1: weekly",
            },
            Case {
                name: "monthly at month ends",
                policy: Policy {
                    keep_monthly: Some(Limited(3)),
                    ..p()
                },
                times: "2024-03-01T00:05:00Z 2024-02-29T23:55:00Z 2024-02-01T00:00:00Z 2024-01-31T23:59:59Z 2023-12-31T10:00:00Z",
                want: "s0: monthly; s1: monthly; s3: monthly",
            },
            Case {
                name: "leap day is a day of its own",
                policy: Policy {
                    keep_daily: Some(Limited(3)),
                    ..p()
                },
                times: "2024-03-01T06:00:00Z 2024-02-29T18:00:00Z 2024-02-29T06:00:00Z 2024-02-28T18:00:00Z 2024-02-27T18:00:00Z",
                want: "s0: daily; s1: daily; s3: daily",
            },
            Case {
                name: "yearly across new year",
                policy: Policy {
                    keep_yearly: Some(Limited(2)),
                    ..p()
                },
                times: "2024-01-01T00:01:00Z 2023-12-31T23:59:00Z 2023-06-01T00:00:00Z 2022-06-01T00:00:00Z",
                want: "s0: yearly; s1: yearly",
            },
            Case {
                name: "unlimited keeps every period and the oldest",
                policy: Policy {
                    keep_daily: Some(Unlimited),
                    ..p()
                },
                times: "2024-05-03T20:00:00Z 2024-05-03T08:00:00Z 2024-05-02T20:00:00Z 2023-01-01T20:00:00Z 2023-01-01T08:00:00Z",
                want: "s0: daily; s2: daily; s3: daily; s4: oldest daily",
            },
            Case {
                name: "budgets overlap: one backup spends from daily and weekly",
                policy: Policy {
                    keep_daily: Some(Limited(2)),
                    keep_weekly: Some(Limited(2)),
                    ..p()
                },
                // Wed, Tue (same week), Mon of the week before, Sun before that.
                times: "2024-05-15T12:00:00Z 2024-05-14T12:00:00Z 2024-05-06T12:00:00Z 2024-05-05T12:00:00Z",
                want: "s0: daily, weekly; s1: daily; s2: weekly",
            },
            Case {
                name: "each rule remembers its own last kept period",
                policy: Policy {
                    keep_last: Some(Limited(2)),
                    keep_daily: Some(Limited(2)),
                    ..p()
                },
                times: "2024-05-15T12:00:00Z 2024-05-15T06:00:00Z 2024-05-14T12:00:00Z 2024-05-14T06:00:00Z 2024-05-13T06:00:00Z",
                want: "s0: last, daily; s1: last; s2: daily",
            },
            Case {
                name: "ties: newest first by time, then by id descending",
                policy: Policy {
                    keep_last: Some(Limited(1)),
                    ..p()
                },
                times: "2024-05-01T10:00:00Z 2024-05-01T10:00:00Z 2024-05-01T09:00:00Z",
                want: "s1: last",
            },
            Case {
                name: "ties within one day: the higher id is the day's newest",
                policy: Policy {
                    keep_daily: Some(Limited(2)),
                    ..p()
                },
                times: "2024-05-01T10:00:00Z 2024-05-01T10:00:00Z 2024-04-30T10:00:00Z 2024-04-29T10:00:00Z",
                want: "s1: daily; s2: daily",
            },
            Case {
                name: "within is measured from the newest backup, not now, and is strict",
                policy: Policy {
                    keep_within: Some(dur("2d")),
                    ..p()
                },
                times: "2019-06-10T12:00:00Z 2019-06-08T12:00:01Z 2019-06-08T12:00:00Z 2019-06-01T00:00:00Z",
                want: "s0: within 2d; s1: within 2d",
            },
            Case {
                name: "within months use Go AddDate: 31 Mar - 1mo = 3 Mar",
                policy: Policy {
                    keep_within: Some(dur("1mo")),
                    ..p()
                },
                times: "2023-03-31T12:00:00Z 2023-03-03T12:00:01Z 2023-03-03T12:00:00Z 2023-02-28T12:00:00Z",
                want: "s0: within 1mo; s1: within 1mo",
            },
            Case {
                name: "within hourly keeps the newest of each hour inside the window",
                policy: Policy {
                    keep_within_hourly: Some(dur("3h")),
                    ..p()
                },
                times: "2024-05-01T12:10:00Z 2024-05-01T11:40:00Z 2024-05-01T11:20:00Z 2024-05-01T09:30:00Z 2024-05-01T08:00:00Z",
                want: "s0: within hourly 3h; s1: within hourly 3h; s3: within hourly 3h",
            },
            Case {
                name: "within daily has no budget and keeps the oldest inside the window",
                policy: Policy {
                    keep_within_daily: Some(dur("10d")),
                    ..p()
                },
                times: "2024-05-10T20:00:00Z 2024-05-10T08:00:00Z 2024-05-09T20:00:00Z 2024-05-02T20:00:00Z 2024-05-02T08:00:00Z",
                want: "s0: within daily 10d; s2: within daily 10d; s3: within daily 10d; s4: oldest within daily 10d",
            },
            Case {
                name: "within weekly stops at the window",
                policy: Policy {
                    keep_within_weekly: Some(dur("2w")),
                    ..p()
                },
                times: "2024-05-15T12:00:00Z 2024-05-13T12:00:00Z 2024-05-10T12:00:00Z 2024-05-01T11:00:00Z 2024-04-20T12:00:00Z",
                want: "s0: within weekly 14d; s2: within weekly 14d",
            },
            Case {
                name: "within monthly",
                policy: Policy {
                    keep_within_monthly: Some(dur("2mo")),
                    ..p()
                },
                times: "2024-05-15T12:00:00Z 2024-05-01T12:00:00Z 2024-04-30T12:00:00Z 2024-03-16T12:00:00Z 2024-03-15T12:00:00Z",
                want: "s0: within monthly 2mo; s2: within monthly 2mo; s3: within monthly 2mo",
            },
            Case {
                name: "within yearly",
                policy: Policy {
                    keep_within_yearly: Some(dur("1y")),
                    ..p()
                },
                times: "2024-05-15T12:00:00Z 2024-01-01T12:00:00Z 2023-12-31T12:00:00Z 2023-05-16T12:00:00Z 2023-05-14T12:00:00Z",
                want: "s0: within yearly 1y; s2: within yearly 1y",
            },
            Case {
                name: "reasons are listed within, counts, within-periods",
                policy: Policy {
                    keep_within: Some(dur("1d")),
                    keep_daily: Some(Limited(1)),
                    keep_within_weekly: Some(dur("1w")),
                    ..p()
                },
                times: "2024-05-15T12:00:00Z 2024-05-15T06:00:00Z 2024-05-12T06:00:00Z",
                want: "s0: within 1d, daily, within weekly 7d; s1: within 1d; s2: within weekly 7d",
            },
            Case {
                name: "New York: 23:00 EDT is still the previous local day",
                policy: Policy {
                    keep_daily: Some(Limited(5)),
                    timezone: new_york(),
                    ..p()
                },
                // 2024-06-02T03:00Z is 1 June 23:00 EDT, the same local day as 16:00 EDT.
                times: "2024-06-02T03:00:00Z 2024-06-01T20:00:00Z 2024-05-31T20:00:00Z",
                want: "s0: daily; s2: daily",
            },
            Case {
                name: "same history in UTC has three days",
                policy: Policy {
                    keep_daily: Some(Limited(5)),
                    ..p()
                },
                times: "2024-06-02T03:00:00Z 2024-06-01T20:00:00Z 2024-05-31T20:00:00Z",
                want: "s0: daily; s1: daily; s2: daily",
            },
            Case {
                name: "New York fall-back: 01:45 EDT and 01:15 EST are one local hour",
                policy: Policy {
                    keep_hourly: Some(Limited(5)),
                    timezone: new_york(),
                    ..p()
                },
                times: "2024-11-03T06:15:00Z 2024-11-03T05:45:00Z 2024-11-03T04:10:00Z",
                want: "s0: hourly; s2: hourly",
            },
            Case {
                name: "New York fall-back in UTC is two hours",
                policy: Policy {
                    keep_hourly: Some(Limited(5)),
                    ..p()
                },
                times: "2024-11-03T06:15:00Z 2024-11-03T05:45:00Z 2024-11-03T04:10:00Z",
                want: "s0: hourly; s1: hourly; s2: hourly",
            },
            Case {
                name: "London fall-back: 01:30 BST and 01:10 GMT share local hour 01",
                policy: Policy {
                    keep_hourly: Some(Limited(5)),
                    timezone: london(),
                    ..p()
                },
                times: "2024-10-27T01:10:00Z 2024-10-27T00:30:00Z 2024-10-26T23:40:00Z",
                want: "s0: hourly; s2: hourly",
            },
            Case {
                name: "London spring-forward: 00:45 GMT and 02:15 BST are different hours",
                policy: Policy {
                    keep_hourly: Some(Limited(5)),
                    timezone: london(),
                    ..p()
                },
                times: "2024-03-31T01:15:00Z 2024-03-31T00:45:00Z 2024-03-31T00:05:00Z",
                want: "s0: hourly; s1: hourly; s2: oldest hourly",
            },
            Case {
                name: "London: 23:30 UTC in summer is the next local day",
                policy: Policy {
                    keep_daily: Some(Limited(5)),
                    timezone: london(),
                    ..p()
                },
                times: "2024-07-01T23:30:00Z 2024-07-02T10:00:00Z 2024-07-01T10:00:00Z",
                want: "s1: daily; s2: daily",
            },
            Case {
                name: "New York: 1 March 03:00Z is still February locally",
                policy: Policy {
                    keep_monthly: Some(Limited(2)),
                    timezone: new_york(),
                    ..p()
                },
                times: "2024-03-01T12:00:00Z 2024-03-01T03:00:00Z 2024-02-10T12:00:00Z",
                want: "s0: monthly; s1: monthly",
            },
            Case {
                name: "London: ISO week starts at local midnight on Monday",
                policy: Policy {
                    keep_weekly: Some(Limited(2)),
                    timezone: london(),
                    ..p()
                },
                // Sun 23:30Z in summer is Mon 00:30 BST: a new local week.
                times: "2024-07-07T23:30:00Z 2024-07-07T22:30:00Z 2024-07-01T10:00:00Z",
                want: "s0: weekly; s1: weekly",
            },
            Case {
                name: "within in a zone counts calendar days across DST",
                policy: Policy {
                    keep_within: Some(dur("1d")),
                    timezone: london(),
                    ..p()
                },
                // 31 Mar 12:00 BST minus 1d is 30 Mar 12:00 GMT: 23 hours earlier.
                times: "2024-03-31T11:00:00Z 2024-03-30T12:00:01Z 2024-03-30T12:00:00Z 2024-03-30T11:30:00Z",
                want: "s0: within 1d; s1: within 1d",
            },
            Case {
                name: "newest guard when no rule keeps anything",
                policy: Policy {
                    keep_last: Some(Limited(0)),
                    ..p()
                },
                times: "2024-05-01T10:00:00Z 2024-05-02T10:00:00Z",
                want: "s1: newest",
            },
            Case {
                name: "empty policy keeps everything",
                policy: p(),
                times: "2024-05-01T10:00:00Z 2024-05-02T10:00:00Z",
                want: "s0: policy is empty; s1: policy is empty",
            },
        ]
    }

    #[test]
    fn table() {
        let mut failures = Vec::new();
        for case in cases() {
            let times: Vec<&str> = case.times.split_whitespace().collect();
            let got = kept(&case.policy, &history(&times));
            let want = expect(case.want);
            if got != want {
                failures.push(format!("{}:\n  got  {got:?}\n  want {want:?}", case.name));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn empty_history_gives_empty_plan() {
        let policy = Policy {
            keep_daily: Some(Count::Limited(3)),
            ..Policy::default()
        };
        assert!(plan(&policy, &[]).entries.is_empty());
    }

    #[test]
    fn plan_follows_input_order_and_splits_kept_and_removed() {
        let policy = Policy {
            keep_last: Some(Count::Limited(2)),
            ..Policy::default()
        };
        let snapshots = history(&[
            "2024-05-01T10:00:00Z",
            "2024-05-04T10:00:00Z",
            "2024-05-02T10:00:00Z",
            "2024-05-03T10:00:00Z",
        ]);
        let plan = plan(&policy, &snapshots);
        let ids: Vec<&str> = plan.entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["s0", "s1", "s2", "s3"]);
        let kept: Vec<&str> = plan.kept().map(|e| e.id.as_str()).collect();
        let removed: Vec<&str> = plan.removed().map(|e| e.id.as_str()).collect();
        assert_eq!(kept, ["s1", "s3"]);
        assert_eq!(removed, ["s0", "s2"]);
    }

    #[test]
    fn a_daily_year_under_a_typical_policy() {
        // One backup a day at 02:00 for all of 2024 (a leap year), policy 7/5/12/2.
        let policy = Policy {
            keep_daily: Some(Count::Limited(7)),
            keep_weekly: Some(Count::Limited(5)),
            keep_monthly: Some(Count::Limited(12)),
            keep_yearly: Some(Count::Limited(2)),
            ..Policy::default()
        };
        let start = Utc.with_ymd_and_hms(2024, 1, 1, 2, 0, 0).unwrap();
        let snapshots: Vec<Snapshot> = (0..366)
            .map(|i| Snapshot {
                id: format!("{i:03}"),
                time: start + chrono::TimeDelta::days(i),
            })
            .collect();
        let plan = plan(&policy, &snapshots);
        let kept: Vec<String> = plan
            .kept()
            .map(|e| e.time.format("%m-%d").to_string())
            .collect();
        // 7 days (25-31 Dec); 5 ISO weeks: 31 Dec (2025-W01) and the Sundays 29, 22, 15 and 8
        // Dec; 12 month ends (Dec back to Jan); yearly spends one on 31 Dec and, having budget
        // left, keeps 1 Jan as the oldest.
        let want = [
            "01-01", "01-31", "02-29", "03-31", "04-30", "05-31", "06-30", "07-31", "08-31",
            "09-30", "10-31", "11-30", "12-08", "12-15", "12-22", "12-25", "12-26", "12-27",
            "12-28", "12-29", "12-30", "12-31",
        ];
        assert_eq!(kept, want);
        assert_eq!(plan.entries[0].reasons, ["oldest yearly"]);
        assert_eq!(
            plan.entries[365].reasons,
            ["daily", "weekly", "monthly", "yearly"]
        );
    }

    fn arb_count() -> impl Strategy<Value = Option<Count>> {
        prop_oneof![
            3 => Just(None),
            2 => (1u32..6).prop_map(|n| Some(Count::Limited(n))),
            1 => Just(Some(Count::Unlimited)),
        ]
    }

    fn arb_duration() -> impl Strategy<Value = Option<KeepDuration>> {
        prop_oneof![
            4 => Just(None),
            1 => (0u32..2, 0u32..3, 0u32..20, 0u32..30).prop_map(|(years, months, days, hours)| {
                let d = KeepDuration { years, months, days, hours };
                Some(if d.is_zero() { KeepDuration { hours: 1, ..d } } else { d })
            }),
        ]
    }

    fn arb_policy() -> impl Strategy<Value = Policy> {
        let zones = [Tz::UTC, london(), new_york(), chrono_tz::Asia::Kolkata];
        (
            (
                arb_count(),
                arb_count(),
                arb_count(),
                arb_count(),
                arb_count(),
                arb_count(),
            ),
            (
                arb_duration(),
                arb_duration(),
                arb_duration(),
                arb_duration(),
                arb_duration(),
                arb_duration(),
            ),
            0..zones.len(),
        )
            .prop_map(move |(c, d, zone)| Policy {
                keep_last: c.0,
                keep_hourly: c.1,
                keep_daily: c.2,
                keep_weekly: c.3,
                keep_monthly: c.4,
                keep_yearly: c.5,
                keep_within: d.0,
                keep_within_hourly: d.1,
                keep_within_daily: d.2,
                keep_within_weekly: d.3,
                keep_within_monthly: d.4,
                keep_within_yearly: d.5,
                timezone: zones[zone],
            })
    }

    /// Irregular histories: gaps from a minute to ~40 days (so periods are both shared and
    /// skipped), with occasional equal times to exercise the id tie-break.
    fn arb_history() -> impl Strategy<Value = Vec<Snapshot>> {
        proptest::collection::vec(
            prop_oneof![
                Just(0i64),
                60i64..7_200,
                3_600i64..200_000,
                86_400i64..3_500_000
            ],
            1..40,
        )
        .prop_map(|gaps| {
            let base = Utc.with_ymd_and_hms(2024, 12, 31, 23, 0, 0).unwrap();
            let mut elapsed = 0i64;
            gaps.iter()
                .enumerate()
                .map(|(i, gap)| {
                    elapsed += gap;
                    Snapshot {
                        id: format!("{:03}", (i * 7919) % 1000),
                        time: base - chrono::TimeDelta::seconds(elapsed),
                    }
                })
                .collect()
        })
    }

    fn newest_of(snapshots: &[Snapshot]) -> Option<&Snapshot> {
        snapshots
            .iter()
            .max_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)))
    }

    proptest! {
        #[test]
        fn newest_is_always_kept(policy in arb_policy(), snapshots in arb_history()) {
            let plan = plan(&policy, &snapshots);
            let newest = newest_of(&snapshots).map(|s| s.id.clone());
            let entry = plan.entries.iter().find(|e| Some(&e.id) == newest.as_ref());
            prop_assert!(entry.is_some_and(|e| e.keep), "{entry:?}");
        }

        /// Older backups never push out newer ones. The one exception is by design: the backup
        /// that was the oldest loses its "oldest ..." reasons once an older one exists.
        #[test]
        fn adding_an_older_backup_never_removes_a_newer_one(
            policy in arb_policy(),
            snapshots in arb_history(),
            extra_gap in 1i64..5_000_000,
        ) {
            let before = plan(&policy, &snapshots);
            let oldest = snapshots
                .iter()
                .min_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)))
                .cloned();
            let Some(oldest) = oldest else { return Ok(()); };
            let mut longer = snapshots.clone();
            longer.push(Snapshot {
                id: "older".to_owned(),
                time: oldest.time - chrono::TimeDelta::seconds(extra_gap),
            });
            let after = plan(&policy, &longer);
            for (b, a) in before.entries.iter().zip(&after.entries) {
                prop_assert_eq!(&b.id, &a.id);
                if b.id == oldest.id && b.time == oldest.time {
                    let lasting = b.reasons.iter().any(|r| !r.starts_with("oldest "));
                    prop_assert!(!lasting || a.keep, "{:?} -> {:?}", b, a);
                } else {
                    prop_assert_eq!(b, a);
                }
            }
        }

        #[test]
        fn input_order_does_not_change_decisions(
            policy in arb_policy(),
            snapshots in arb_history(),
            seed in any::<u64>(),
        ) {
            let mut unique = snapshots.clone();
            unique.sort_by(|a, b| a.id.cmp(&b.id));
            unique.dedup_by(|a, b| a.id == b.id);
            let mut shuffled = unique.clone();
            let mut state = seed | 1;
            for i in (1..shuffled.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let j = usize::try_from(state % (i as u64 + 1)).unwrap_or(0);
                shuffled.swap(i, j);
            }
            let mut a: Vec<PlanEntry> = plan(&policy, &unique).entries;
            let mut b: Vec<PlanEntry> = plan(&policy, &shuffled).entries;
            a.sort_by(|x, y| x.id.cmp(&y.id));
            b.sort_by(|x, y| x.id.cmp(&y.id));
            prop_assert_eq!(a, b);
        }
    }
}

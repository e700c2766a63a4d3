//! Cross-check of the retention planner against restic's own `forget`.
//!
//! A restic repository gets an irregular, deterministic history of backups (`restic backup
//! --time`), then `restic forget --dry-run --json` is asked what it would keep under a range of
//! policies and the answer is compared, reason by reason, with [`ccbackup::retention::planner::plan`].
//!
//! Debian ships restic 0.14, which predates two things we implement from restic >= 0.16: the
//! "oldest" rule and `unlimited`. The policies here use no `unlimited`, and the comparison drops
//! our `oldest ...` reasons (asserting they only ever appear on the oldest backup), so the rest
//! of the plan must match restic 0.14 exactly.
//!
//! Two groups live in one repository (restic plans each host separately):
//! - host `utc`: 300 backups over about two years with gaps from a minute to eleven days, plus
//!   backups on every keep-within boundary and around two ISO week-year changes, made and
//!   planned in UTC;
//! - host `london`: backups made with `TZ=Europe/London`, dense around both 2023 DST changes,
//!   around local midnight in summer and across ISO week boundaries, planned in Europe/London.
//!   restic buckets a backup in the UTC offset stored with it, which is the London wall clock
//!   when `forget` runs with `TZ=Europe/London`. Only count rules are compared for this group:
//!   restic subtracts `keep-within` durations in the stored fixed offset, not the zone, so a
//!   window crossing a DST change can legitimately differ from ours by an hour.
//!
//! Every restic call derives the repository key with scrypt, tuned at `restic init` to about half
//! a second of CPU, which would make 400 backups cost minutes. So the repository is initialised
//! while the CPUs are busy (see [`with_busy_cpus`]), backups run two at a time, and the finished
//! repository is cached under Cargo's target tmp dir, keyed by the history and restic's version,
//! so later runs only pay for `forget`. The test fails, never skips, when restic is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use ccbackup::retention::planner::{plan, Snapshot};
use ccbackup::retention::policy::{Count, KeepDuration, Policy};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde_json::Value;

const PASSWORD: &str = "ccbackup-retention-cross-check";
const UTC_HOST: &str = "utc";
const LONDON_HOST: &str = "london";
const RANDOM_UTC_BACKUPS: usize = 300;
/// Every `keep_within` duration used by [`checks`]: the history has a backup exactly on each
/// window's boundary (outside: "strictly newer") and one a second later (inside), so a cut-off
/// off by a second either way, or a non-strict comparison, shows.
const WITHIN_PROBES: [&str; 6] = ["30d", "2mo", "11mo", "1y11mo", "2w3d12h", "10d"];
/// Every `keep_within_<period>` duration used by [`checks`]. Only the boundary probe here: a
/// backup a second later would be the newest of the same period and hide it.
const PERIOD_WITHIN_PROBES: [&str; 7] = ["48h", "14d", "8w", "1y", "3y", "3mo", "7mo"];
const WORKERS: usize = 2;

/// One backup to make: the host (group) and the wall-clock time given to `--time`, which restic
/// reads in the zone of `TZ`.
struct Planned {
    host: &'static str,
    tz: &'static str,
    wall: NaiveDateTime,
}

/// splitmix64: a fixed, dependency-free generator, so the history is the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn range(&mut self, low: i64, high: i64) -> i64 {
        let span = u64::try_from(high - low).expect("range is ascending");
        low + i64::try_from(self.next() % span).expect("span fits i64")
    }
}

fn wall(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(y, m, d)
        .and_then(|date| date.and_hms_opt(h, min, 0))
        .expect("valid test date")
}

fn planned_history() -> Vec<Planned> {
    let mut rng = Rng(0x5eed_2024);
    let mut out = Vec::new();

    // UTC group: a third of the gaps are minutes (several backups per hour and day), a quarter
    // hours, the rest days, so every period size sees both shared and skipped periods.
    let utc = |wall: NaiveDateTime| Planned {
        host: UTC_HOST,
        tz: "UTC",
        wall,
    };
    let mut t = wall(2021, 12, 20, 9, 17);
    for _ in 0..RANDOM_UTC_BACKUPS {
        out.push(utc(t));
        let gap_seconds = match rng.range(0, 100) {
            0..35 => rng.range(60, 7_200),
            35..60 => rng.range(7_200, 72_000),
            _ => rng.range(86_400, 950_000),
        };
        t += TimeDelta::seconds(gap_seconds);
    }
    // ISO week-years differ from calendar years here: Sat 1 and Sun 2 Jan 2022 are 2021-W52,
    // Sat 31 Dec 2022 and Sun 1 Jan 2023 are 2022-W52.
    for day in [
        (2022, 1, 1),
        (2022, 1, 2),
        (2022, 1, 3),
        (2022, 12, 31),
        (2023, 1, 1),
        (2023, 1, 2),
    ] {
        out.push(utc(wall(day.0, day.1, day.2, 10, 30)));
    }
    // The newest backup is on the 31st, so that month arithmetic overflows ("11 months before
    // 31 Jan 2024" is "31 Feb 2023", that is 3 March). Then the window probes (see
    // WITHIN_PROBES), where they fall inside the history.
    let newest = wall(2024, 1, 31, 12, 0);
    out.push(utc(newest));
    let probes = WITHIN_PROBES
        .iter()
        .map(|d| (d, true))
        .chain(PERIOD_WITHIN_PROBES.iter().map(|d| (d, false)));
    for (duration, with_inside_probe) in probes {
        let d: KeepDuration = duration.parse().expect("probe duration");
        let cutoff = d
            .subtract_from(newest.and_utc().with_timezone(&Tz::UTC))
            .naive_utc();
        if cutoff > wall(2021, 12, 20, 9, 17) {
            out.push(utc(cutoff));
            if with_inside_probe {
                out.push(utc(cutoff + TimeDelta::seconds(1)));
            }
        }
    }
    // Probes may land on a random backup's time; restic orders ties arbitrarily, so drop them.
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|p| seen.insert(p.wall));

    // London group, in local wall-clock time. The spring-forward gap (01:00-02:00 on 26 March)
    // is skipped: such times do not exist and restic would move them onto real ones.
    let mut london = |start: NaiveDateTime, end: NaiveDateTime, min_gap: i64, max_gap: i64| {
        let mut t = start;
        while t < end {
            let in_gap = t >= wall(2023, 3, 26, 1, 0) && t < wall(2023, 3, 26, 2, 0);
            if !in_gap {
                out.push(Planned {
                    host: LONDON_HOST,
                    tz: "Europe/London",
                    wall: t,
                });
            }
            t += TimeDelta::seconds(rng.range(min_gap, max_gap));
        }
    };
    london(
        wall(2023, 3, 25, 21, 5),
        wall(2023, 3, 26, 4, 0),
        900,
        2_700,
    );
    // Summer nights around local midnight, which is 23:00 UTC: the local day and week differ.
    for night in 0..8 {
        let start = wall(2023, 7, 1, 23, 10) + TimeDelta::days(night);
        london(start, start + TimeDelta::minutes(100), 1_200, 3_000);
    }
    london(
        wall(2023, 4, 3, 12, 0),
        wall(2023, 6, 28, 12, 0),
        500_000,
        1_100_000,
    );
    london(
        wall(2023, 7, 15, 12, 0),
        wall(2023, 10, 27, 12, 0),
        500_000,
        1_100_000,
    );
    london(
        wall(2023, 10, 28, 21, 5),
        wall(2023, 10, 29, 4, 0),
        900,
        2_700,
    );
    out
}

/// Runs restic on `repo` with `TZ=tz`. Read-only commands get `--no-lock`, so that the tests in
/// this file (which run in parallel) do not trip over each other's exclusive `forget` locks.
fn restic(repo: &Path, tz: &str, args: &[&str]) -> Output {
    let read_only = args.first().is_some_and(|c| *c == "snapshots")
        || (args.first().is_some_and(|c| *c == "forget") && args.contains(&"--dry-run"));
    let result = Command::new("restic")
        .arg("--repo")
        .arg(repo)
        .arg("--no-cache")
        .args(read_only.then_some("--no-lock"))
        .args(args)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("TZ", tz)
        .env_remove("RESTIC_REPOSITORY")
        .env_remove("RESTIC_PASSWORD_FILE")
        .env_remove("RESTIC_PASSWORD_COMMAND")
        .output();
    match result {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "restic is not installed (or not on PATH): this cross-check needs it and must not be \
             skipped; install it with `apt-get install -y restic`"
        ),
        Err(e) => panic!("cannot run restic {args:?}: {e}"),
    }
}

fn checked(repo: &Path, tz: &str, args: &[&str]) -> Vec<u8> {
    let output = restic(repo, tz, args);
    assert!(
        output.status.success(),
        "restic {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// FNV-1a: a stable fingerprint for the cache directory name (std's hasher is not stable).
fn fingerprint(parts: &[String]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// Runs `f` while every CPU is kept busy.
///
/// `restic init` tunes its scrypt key derivation so that it takes about half a second on the
/// CPU time it observes, and every later restic call pays that cost again (for 400 backups,
/// minutes). Measured on a busy machine, the derivation comes out several times cheaper. This is
/// a throwaway test repository, so its key strength does not matter.
fn with_busy_cpus<T>(f: impl FnOnce() -> T) -> T {
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stop = AtomicBool::new(false);
    let burners = std::thread::available_parallelism().map_or(2, |n| n.get()) * 3;
    std::thread::scope(|scope| {
        for _ in 0..burners {
            scope.spawn(|| {
                let mut x = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) ^ 1);
                }
            });
        }
        // Stops the burners even if `f` panics, or the scope would wait for them forever.
        let _stop = StopOnDrop(&stop);
        f()
    })
}

fn build_repository(dir: &Path, history: &[Planned]) {
    let repo = dir.join("repo");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("create data dir");
    std::fs::write(data.join("dump.sql"), "-- tiny\n").expect("write data file");
    let init = with_busy_cpus(|| restic(&repo, "UTC", &["init", "--quiet"]));
    if !init.status.success() {
        // Calibrating under load can misjudge; an idle-CPU init is slower to use but fine.
        let _ = std::fs::remove_dir_all(&repo);
        checked(&repo, "UTC", &["init", "--quiet"]);
    }

    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(backup) = history.get(i) else { break };
                let time = backup.wall.format("%Y-%m-%d %H:%M:%S").to_string();
                let output = restic(
                    &repo,
                    backup.tz,
                    &[
                        "backup",
                        "--quiet",
                        "--host",
                        backup.host,
                        "--time",
                        &time,
                        &data.to_string_lossy(),
                    ],
                );
                if !output.status.success() {
                    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
                    failures
                        .lock()
                        .expect("failure list lock")
                        .push(format!("{} {time}: {stderr}", backup.host));
                }
            });
        }
    });
    let failures = failures.into_inner().expect("failure list lock");
    assert!(
        failures.is_empty(),
        "restic backup failed:\n{}",
        failures.join("\n")
    );
}

struct Fixture {
    repo: PathBuf,
    /// Backups per host, as restic recorded them.
    groups: BTreeMap<String, Vec<Snapshot>>,
}

/// Builds (or reuses) the repository once for every test in this binary.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let version =
            String::from_utf8_lossy(&checked(Path::new("/nonexistent"), "UTC", &["version"]))
                .trim()
                .to_owned();
        let history = planned_history();
        let mut parts = vec![version, PASSWORD.to_owned()];
        parts.extend(
            history
                .iter()
                .map(|p| format!("{} {} {}", p.host, p.tz, p.wall)),
        );
        let cache_root = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let cached = cache_root.join(format!("restic-retention-{:016x}", fingerprint(&parts)));
        if !cached.join("complete").exists() {
            std::fs::create_dir_all(cache_root).expect("create cargo tmp dir");
            let building = tempfile::Builder::new()
                .prefix("restic-retention-building-")
                .tempdir_in(cache_root)
                .expect("create build dir");
            build_repository(building.path(), &history);
            std::fs::write(building.path().join("complete"), "").expect("mark build complete");
            let built = building.keep();
            if std::fs::rename(&built, &cached).is_err() {
                // Another test process finished the same repository first; use that one.
                assert!(
                    cached.join("complete").exists(),
                    "cannot move {built:?} to {cached:?}"
                );
                let _ = std::fs::remove_dir_all(&built);
            }
        }
        let repo = cached.join("repo");
        let groups = read_snapshots(&repo);
        for host in [UTC_HOST, LONDON_HOST] {
            let planned = history.iter().filter(|p| p.host == host).count();
            let recorded = groups.get(host).map_or(0, Vec::len);
            assert_eq!(recorded, planned, "backups of host {host} in {repo:?}");
        }
        Fixture { repo, groups }
    })
}

fn restic_time(value: &Value) -> DateTime<Utc> {
    let text = value.as_str().expect("restic time is a string");
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("restic time {text:?}: {e}"))
        .with_timezone(&Utc)
}

fn read_snapshots(repo: &Path) -> BTreeMap<String, Vec<Snapshot>> {
    let json: Value = serde_json::from_slice(&checked(repo, "UTC", &["snapshots", "--json"]))
        .expect("restic snapshots --json output");
    let mut groups: BTreeMap<String, Vec<Snapshot>> = BTreeMap::new();
    for item in json.as_array().expect("snapshot list") {
        let host = item["hostname"].as_str().expect("hostname").to_owned();
        groups.entry(host).or_default().push(Snapshot {
            id: item["id"].as_str().expect("snapshot id").to_owned(),
            time: restic_time(&item["time"]),
        });
    }
    for (host, snapshots) in &groups {
        let mut times: Vec<_> = snapshots.iter().map(|s| s.time).collect();
        times.sort();
        times.dedup();
        // restic orders equal times by listing order, which is arbitrary: avoid ties.
        assert_eq!(
            times.len(),
            snapshots.len(),
            "equal backup times in group {host}"
        );
    }
    groups
}

/// restic spells months `m`; everything else matches our canonical form.
fn restic_duration(d: &KeepDuration) -> String {
    d.to_string().replace("mo", "m")
}

fn forget_args(policy: &Policy) -> Vec<String> {
    let mut args = vec![
        "forget".to_owned(),
        "--dry-run".to_owned(),
        "--json".to_owned(),
    ];
    let counts = [
        ("--keep-last", policy.keep_last),
        ("--keep-hourly", policy.keep_hourly),
        ("--keep-daily", policy.keep_daily),
        ("--keep-weekly", policy.keep_weekly),
        ("--keep-monthly", policy.keep_monthly),
        ("--keep-yearly", policy.keep_yearly),
    ];
    for (flag, count) in counts {
        match count {
            None => {}
            Some(Count::Limited(n)) => args.extend([flag.to_owned(), n.to_string()]),
            Some(Count::Unlimited) => panic!("restic 0.14 has no 'unlimited'"),
        }
    }
    let durations = [
        ("--keep-within", policy.keep_within),
        ("--keep-within-hourly", policy.keep_within_hourly),
        ("--keep-within-daily", policy.keep_within_daily),
        ("--keep-within-weekly", policy.keep_within_weekly),
        ("--keep-within-monthly", policy.keep_within_monthly),
        ("--keep-within-yearly", policy.keep_within_yearly),
    ];
    for (flag, duration) in durations {
        if let Some(d) = duration {
            args.extend([flag.to_owned(), restic_duration(&d)]);
        }
    }
    args
}

/// Our reason in restic 0.14's words, or `None` for the "oldest" rule restic 0.14 lacks.
fn in_restic_words(reason: &str) -> Option<String> {
    if reason.starts_with("oldest ") {
        return None;
    }
    let periods = ["hourly", "daily", "weekly", "monthly", "yearly"];
    if let Some(rest) = reason.strip_prefix("within ") {
        if let Some((period, duration)) = rest.split_once(' ') {
            if periods.contains(&period) {
                return Some(format!("{period} within {}", duration.replace("mo", "m")));
            }
        }
        return Some(format!("within {}", rest.replace("mo", "m")));
    }
    Some(format!("{reason} snapshot"))
}

/// restic's decision per snapshot id for one host: the reasons it kept it (absent: removed).
fn restic_decisions(output: &[u8], host: &str) -> BTreeMap<String, Vec<String>> {
    let json: Value = serde_json::from_slice(output).expect("restic forget --json output");
    let groups = json.as_array().expect("forget groups");
    let group = groups
        .iter()
        .find(|g| g["host"].as_str() == Some(host))
        .unwrap_or_else(|| panic!("no group for host {host} in restic's answer"));
    let keep = group["keep"].as_array().cloned().unwrap_or_default();
    let reasons = group["reasons"].as_array().cloned().unwrap_or_default();
    assert_eq!(keep.len(), reasons.len(), "restic pairs keep and reasons");
    keep.iter()
        .zip(&reasons)
        .map(|(snapshot, reason)| {
            let matches = reason["matches"]
                .as_array()
                .expect("reason matches")
                .iter()
                .map(|m| m.as_str().expect("reason text").to_owned())
                .collect();
            (
                snapshot["id"].as_str().expect("kept id").to_owned(),
                matches,
            )
        })
        .collect()
}

/// Compares one group; returns a description of each disagreement.
fn compare(
    name: &str,
    policy: &Policy,
    snapshots: &[Snapshot],
    restic: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let ours = plan(policy, snapshots);
    let oldest = snapshots.iter().map(|s| s.time).min();
    let mut problems = Vec::new();
    for entry in &ours.entries {
        let translated: Vec<String> = entry
            .reasons
            .iter()
            .filter_map(|r| in_restic_words(r))
            .collect();
        let has_oldest_reason = translated.len() != entry.reasons.len();
        if has_oldest_reason && Some(entry.time) != oldest {
            problems.push(format!(
                "{name}: {} {} has an oldest reason but is not the oldest: {:?}",
                entry.id, entry.time, entry.reasons
            ));
        }
        let theirs = restic.get(&entry.id).cloned().unwrap_or_default();
        if translated != theirs {
            problems.push(format!(
                "{name}: {} {}: ours {:?} (as restic 0.14 would say {:?}), restic {:?}",
                &entry.id[..8],
                entry.time,
                entry.reasons,
                translated,
                theirs
            ));
        }
    }
    let known: Vec<&String> = ours.entries.iter().map(|e| &e.id).collect();
    for id in restic.keys().filter(|id| !known.contains(id)) {
        problems.push(format!("{name}: restic kept {id}, which we were not given"));
    }
    problems
}

struct Check {
    name: &'static str,
    policy: Policy,
}

/// `counts`: keep_last, _hourly, _daily, _weekly, _monthly, _yearly (0: not set).
/// `windows`: keep_within, keep_within_hourly, .. _yearly ("": not set).
fn policy(counts: [u32; 6], windows: [&str; 6]) -> Policy {
    let count = |n: u32| (n > 0).then_some(Count::Limited(n));
    let window = |w: &str| (!w.is_empty()).then(|| w.parse().expect("test duration"));
    Policy {
        keep_last: count(counts[0]),
        keep_hourly: count(counts[1]),
        keep_daily: count(counts[2]),
        keep_weekly: count(counts[3]),
        keep_monthly: count(counts[4]),
        keep_yearly: count(counts[5]),
        keep_within: window(windows[0]),
        keep_within_hourly: window(windows[1]),
        keep_within_daily: window(windows[2]),
        keep_within_weekly: window(windows[3]),
        keep_within_monthly: window(windows[4]),
        keep_within_yearly: window(windows[5]),
        timezone: Tz::UTC,
    }
}

fn checks() -> Vec<Check> {
    const NO_WINDOWS: [&str; 6] = [""; 6];
    let only_counts = |counts| policy(counts, NO_WINDOWS);
    let only_windows = |windows| policy([0; 6], windows);
    let check = |name, policy| Check { name, policy };
    vec![
        check("last 10", only_counts([10, 0, 0, 0, 0, 0])),
        check("hourly 30", only_counts([0, 30, 0, 0, 0, 0])),
        check("daily 14", only_counts([0, 0, 14, 0, 0, 0])),
        check("weekly 10", only_counts([0, 0, 0, 10, 0, 0])),
        check("weekly 120", only_counts([0, 0, 0, 120, 0, 0])),
        check("monthly 12", only_counts([0, 0, 0, 0, 12, 0])),
        check("yearly 3", only_counts([0, 0, 0, 0, 0, 3])),
        check("concertim 7/5/12/2", only_counts([0, 0, 7, 5, 12, 2])),
        check("every count rule", only_counts([3, 12, 10, 6, 4, 5])),
        // Budgets that outlast the history, so the oldest rule fires (and is accounted for).
        check("long budgets", only_counts([0, 400, 400, 400, 400, 0])),
        check("within 30d", only_windows(["30d", "", "", "", "", ""])),
        check("within 2mo", only_windows(["2mo", "", "", "", "", ""])),
        check("within 11mo", only_windows(["11mo", "", "", "", "", ""])),
        check(
            "within 1y11mo",
            only_windows(["1y11mo", "", "", "", "", ""]),
        ),
        check(
            "within 2w3d12h",
            only_windows(["2w3d12h", "", "", "", "", ""]),
        ),
        check(
            "within periods",
            only_windows(["", "48h", "14d", "8w", "1y", "3y"]),
        ),
        check(
            "mixed",
            policy([2, 0, 5, 0, 0, 0], ["10d", "", "", "3mo", "7mo", ""]),
        ),
    ]
}

fn has_within(policy: &Policy) -> bool {
    [
        policy.keep_within,
        policy.keep_within_hourly,
        policy.keep_within_daily,
        policy.keep_within_weekly,
        policy.keep_within_monthly,
        policy.keep_within_yearly,
    ]
    .iter()
    .any(Option::is_some)
}

#[test]
fn plans_match_restic_forget() {
    let fixture = fixture();
    let london: Tz = chrono_tz::Europe::London;
    let mut problems = Vec::new();
    let mut compared = 0;
    for check in checks() {
        let args = forget_args(&check.policy);
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        // Europe/London so that restic reads summer offsets as the London zone; the UTC group's
        // times carry "Z" and stay in UTC whatever TZ says.
        let output = checked(&fixture.repo, "Europe/London", &arg_refs);

        let utc_snapshots = &fixture.groups[UTC_HOST];
        let utc_policy = Policy {
            timezone: Tz::UTC,
            ..check.policy.clone()
        };
        let decisions = restic_decisions(&output, UTC_HOST);
        problems.extend(compare(check.name, &utc_policy, utc_snapshots, &decisions));
        compared += 1;

        if !has_within(&check.policy) {
            let london_snapshots = &fixture.groups[LONDON_HOST];
            let london_policy = Policy {
                timezone: london,
                ..check.policy.clone()
            };
            let decisions = restic_decisions(&output, LONDON_HOST);
            let name = format!("{} (London)", check.name);
            problems.extend(compare(&name, &london_policy, london_snapshots, &decisions));
            compared += 1;
        }
    }
    assert!(compared >= 20, "only {compared} comparisons ran");
    assert!(
        problems.is_empty(),
        "{} disagreement(s) with restic forget:\n{}",
        problems.len(),
        problems
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The comparison above is only worth something if restic really thins the history and the
/// London group really straddles DST; guard against a fixture that makes it vacuous.
#[test]
fn cross_check_history_is_not_trivial() {
    let fixture = fixture();
    let utc = &fixture.groups[UTC_HOST];
    assert!(utc.len() >= 300, "{} UTC backups", utc.len());
    let first = utc.iter().map(|s| s.time).min().expect("utc backups");
    let last = utc.iter().map(|s| s.time).max().expect("utc backups");
    assert!(
        (last - first).num_days() > 600,
        "history spans {} days",
        (last - first).num_days()
    );

    // restic 0.14 keeps one backup per year; we also keep the oldest, as restic >= 0.16 does.
    let policy = Policy {
        keep_yearly: Some(Count::Limited(5)),
        ..Policy::default()
    };
    let output = checked(
        &fixture.repo,
        "UTC",
        &["forget", "--dry-run", "--json", "--keep-yearly", "5"],
    );
    let theirs = restic_decisions(&output, UTC_HOST);
    let years: std::collections::BTreeSet<i32> = utc
        .iter()
        .map(|s| chrono::Datelike::year(&s.time))
        .collect();
    assert!(years.len() >= 2, "history spans years {years:?}");
    assert_eq!(
        theirs.len(),
        years.len(),
        "restic keeps one backup per year"
    );
    let ours = plan(&policy, utc);
    assert_eq!(ours.kept().count(), years.len() + 1);
    let oldest = ours
        .entries
        .iter()
        .min_by_key(|e| e.time)
        .expect("utc backups");
    assert_eq!(oldest.reasons, ["oldest yearly"]);
    assert!(!theirs.contains_key(&oldest.id));

    let london: Tz = chrono_tz::Europe::London;
    let offsets: std::collections::BTreeSet<i32> = fixture.groups[LONDON_HOST]
        .iter()
        .map(|s| {
            use chrono::Offset;
            s.time
                .with_timezone(&london)
                .offset()
                .fix()
                .local_minus_utc()
        })
        .collect();
    assert_eq!(offsets.len(), 2, "London backups in both GMT and BST");
}

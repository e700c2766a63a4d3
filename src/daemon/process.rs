//! The standard `process_*` metrics Prometheus client libraries export,
//! read from `/proc/self`: memory, CPU, open files, start time. Parsing is
//! pure and tested on fixed text; reading is best effort (a missing value
//! is left out, never invented).

use std::fmt::Write;

/// What `/proc/self/stat` and friends say about this process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub start_time_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

/// Fields of `/proc/<pid>/stat` after the command name (which may hold
/// spaces and parentheses, so split at the last `)`).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().collect())
}

/// Parses `/proc/self/stat` given the clock tick rate, the page size and
/// the system boot time (`btime` of `/proc/stat`).
pub fn parse_stat(stat: &str, ticks: f64, page: u64, boot_time: Option<u64>) -> ProcessStats {
    let mut out = ProcessStats::default();
    let Some(f) = stat_fields(stat) else {
        return out;
    };
    // After the name: state is field 3 of the full line, so index = n - 3.
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    if let (Some(u), Some(s)) = (field(14), field(15)) {
        out.cpu_seconds = Some((u + s) as f64 / ticks);
    }
    out.virtual_bytes = field(23);
    out.resident_bytes = field(24).map(|p| p * page);
    if let (Some(start), Some(boot)) = (field(22), boot_time) {
        out.start_time_seconds = Some(boot as f64 + start as f64 / ticks);
    }
    out
}

/// `btime` from `/proc/stat`: seconds since the epoch at boot.
pub fn parse_boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft "Max open files" limit from `/proc/self/limits`.
pub fn parse_max_fds(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
}

/// Reads this process's figures.
pub fn read() -> ProcessStats {
    // From the auxiliary vector (what sysconf reads too).
    let ticks = match rustix::param::clock_ticks_per_second() {
        0 => 100.0,
        t => t as f64,
    };
    let page = u64::try_from(rustix::param::page_size()).unwrap_or(4096);
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| parse_boot_time(&s));
    let mut out = std::fs::read_to_string("/proc/self/stat")
        .map(|s| parse_stat(&s, ticks, page, boot))
        .unwrap_or_default();
    out.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64);
    out.max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| parse_max_fds(&s));
    out
}

/// Appends the `process_*` families for `p` to a Prometheus text body.
pub fn render(out: &mut String, p: &ProcessStats) {
    let mut family = |name: &str, kind: &str, help: &str, value: Option<String>| {
        if let Some(v) = value {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
    };
    family(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        p.cpu_seconds.map(|v| format!("{v:.2}")),
    );
    family(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        p.resident_bytes.map(|v| v.to_string()),
    );
    family(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        p.virtual_bytes.map(|v| v.to_string()),
    );
    family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        p.start_time_seconds.map(|v| format!("{v:.2}")),
    );
    family(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        p.open_fds.map(|v| v.to_string()),
    );
    family(
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors.",
        p.max_fds.map(|v| v.to_string()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_name_holding_spaces_and_parens() {
        // pid (comm) state ppid ... utime=14 stime=15 ... starttime=22 vsize=23 rss=24
        let line = "42 (cc (backup) x) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1000 123456789 2048 18446744073709551615";
        let p = parse_stat(line, 100.0, 4096, Some(1_700_000_000));
        assert_eq!(p.cpu_seconds, Some(3.0));
        assert_eq!(p.virtual_bytes, Some(123456789));
        assert_eq!(p.resident_bytes, Some(2048 * 4096));
        assert_eq!(p.start_time_seconds, Some(1_700_000_010.0));
    }

    #[test]
    fn parses_boot_time_and_fd_limit() {
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1764576000\nprocesses 9\n"),
            Some(1764576000)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        assert_eq!(
            parse_stat("garbage", 100.0, 4096, None),
            ProcessStats::default()
        );
    }

    #[test]
    fn reads_this_process() {
        let p = read();
        assert!(p.resident_bytes.unwrap() > 0);
        assert!(p.open_fds.unwrap() >= 3);
        let mut out = String::new();
        render(&mut out, &p);
        assert!(out.contains("# TYPE process_open_fds gauge"));
        assert!(out.contains("process_resident_memory_bytes "));
    }
}

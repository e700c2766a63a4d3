//! Issue 20 item 1: a backup's memory stays flat. The binary backs up one
//! compressible file (a dump-like text stream, so zstd's worker has full
//! jobs to buffer) of two sizes five times apart; its peak resident set,
//! measured by GNU time, stays under a cap for both and does not grow with
//! the input.

use std::io::Write;

use crate::hardening::run_measuring_rss;
use crate::support::*;

/// Peak RSS allowed for a debug build backing up one file to `file://`:
/// 67 MiB with the 2 MiB zstd jobs tree archives use, 59-60 MiB with the
/// 1 MiB jobs of a dump, 92-93 MiB with zstd's default 8 MiB jobs
/// (measured 2026-12-07; a release build needs about 20 MiB less).
const PEAK_CAP_KIB: i64 = 72 * 1024;
/// How much more the larger input may take: noise, not growth.
const GROWTH_CAP_KIB: i64 = 6 * 1024;

/// Writes `mib` MiB of lines that look like a table's rows: digits and hex
/// that zstd shrinks about threefold, so its output buffers fill too.
fn dump_like(path: &std::path::Path, mib: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut written = 0;
    let mut row = 0u64;
    while written < mib * 1024 * 1024 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let line = format!(
            "{row}\titem-{row}\t{x:016x}\t{}.{:02}\tnote {}\n",
            x % 100_000,
            x % 100,
            x % 97
        );
        f.write_all(line.as_bytes()).unwrap();
        written += line.len();
        row += 1;
    }
    f.flush().unwrap();
}

fn peak_backing_up(mib: usize) -> i64 {
    let data = tempfile::tempdir().unwrap();
    dump_like(&data.path().join("rows.tsv"), mib);
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n      - name: rows\n        files: {{path: {}}}\n",
        ws.store_url(),
        data.path().display()
    ));
    let (code, rss) = run_measuring_rss(&cfg, &["run-now"]);
    assert_eq!(code, 0, "run-now of {mib} MiB failed");
    rss
}

#[test]
fn issue20_backup_peak_memory_is_bounded_and_flat() {
    let small = peak_backing_up(48);
    let large = peak_backing_up(240);
    eprintln!("peak RSS: {small} KiB (48 MiB input), {large} KiB (240 MiB input)");
    assert!(
        small < PEAK_CAP_KIB && large < PEAK_CAP_KIB,
        "peak RSS {} MiB (48 MiB input) and {} MiB (240 MiB input); cap {} MiB",
        small / 1024,
        large / 1024,
        PEAK_CAP_KIB / 1024
    );
    assert!(
        large - small < GROWTH_CAP_KIB,
        "peak RSS grew from {} KiB to {} KiB with five times the input",
        small,
        large
    );
}

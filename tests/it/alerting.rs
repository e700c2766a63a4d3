//! Issue 10: the shipped alert rules and dashboard pass promtool and their
//! unit tests, and name only metrics ccbackup really exports.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use crate::support_s3::find_tool;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/prometheus")
}

/// promtool from PATH or unpacked by scripts/prereqs.sh into the tools dir.
fn promtool_bin() -> PathBuf {
    find_tool("promtool", &["bin/promtool"])
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new(promtool_bin())
        .args(args)
        .current_dir(dir())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    promtool(&["check", "rules", "ccbackup-alerts.yml"]);
    promtool(&["check", "config", "prometheus.yml"]);
    let out = promtool(&[
        "test",
        "rules",
        "ccbackup-alerts.test.yml",
        "ccbackup-alerts-days.test.yml",
    ]);
    assert_eq!(out.matches("SUCCESS").count(), 2, "{out}");
}

/// Metric names (`ccbackup_*`, `process_*`) used in a text.
fn names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["ccbackup_", "process_"] {
        let mut rest = text;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            let name = &tail[..end];
            // Label names such as `ccbackup_job` are not metrics.
            if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && name != "ccbackup_job"
            {
                out.insert(name.to_owned());
            }
            rest = &tail[end..];
        }
    }
    out
}

#[test]
fn rules_and_dashboard_name_only_exported_metrics() {
    let exported = ccbackup::daemon::metrics::Metrics::new(chrono::Utc::now()).render();
    let families: BTreeSet<String> = exported
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    for file in ["ccbackup-alerts.yml", "grafana-dashboard.json"] {
        let text = std::fs::read_to_string(dir().join(file)).unwrap();
        let used = names(&text);
        assert!(used.len() >= 5, "{file}: {used:?}");
        let unknown: Vec<&String> = used.difference(&families).collect();
        assert!(
            unknown.is_empty(),
            "{file} names metrics ccbackup does not export: {unknown:?}\nexported: {families:?}"
        );
    }
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir().join("grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    assert!(dash["panels"].as_array().unwrap().len() >= 8);
}

#[test]
fn exposition_passes_promtool_lint() {
    let promtool = promtool_bin();
    let m = ccbackup::daemon::metrics::Metrics::new(chrono::Utc::now());
    m.update("concertim", |s| {
        *s.runs.entry("success").or_default() += 1;
        s.last_outcome = Some("success");
        s.last_success = Some(chrono::Utc::now());
        s.backups_stored = Some(3);
        s.tampered = Some(vec!["20261207T030000Z-aaaaaa: DELETED".into()]);
    });
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(m.render().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

//! `check-config`: every problem reported at once with file, line and key.

use crate::support::*;

#[test]
fn reports_every_semantic_problem_with_line_and_key() {
    let ws = Workspace::new();
    let body = format!(
        r#"store:
  url: {}
jobs:
  - name: a
    schedule: "61 * * * *"
    timezone: Mars/Olympus
    sources:
      - name: db
        postgres:
          port: 70000
          password_file: /nonexistent/secret
          parallel: 0
      - name: db
        files: {{path: definitely/not/absolute}}
  - name: a
    sources:
      - name: x
        rrd: {{path: /tmp}}
        files: {{path: /tmp}}
"#,
        ws.store_url()
    );
    let cfg = ws.config(&body);
    let run = ccbackup(&cfg, &["check-config"]);
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    let err = run.stderr();
    let file = cfg.display().to_string();
    for (line, key) in [
        (5, "jobs[0].schedule"),
        (6, "jobs[0].timezone"),
        (10, "jobs[0].sources[0].postgres.port"),
        (11, "jobs[0].sources[0].postgres.password_file"),
        (12, "jobs[0].sources[0].postgres.parallel"),
        (13, "jobs[0].sources[1].name"),
        (14, "jobs[0].sources[1].files.path"),
        (15, "jobs[1].name"),
    ] {
        let needle = format!("{file}:{line}:");
        assert!(
            err.lines().any(|l| l.contains(&needle) && l.contains(key)),
            "missing {key} at line {line} in:\n{err}"
        );
    }
    assert!(
        err.contains("exactly one of `postgres`, `rrd` or `files`"),
        "{err}"
    );
    assert!(err.contains("70000 is out of range"), "{err}");
    assert!(err.contains("must be between 1 and 8"), "{err}");
    // The secret file path is named, nothing else about it.
    assert!(err.contains("/nonexistent/secret"), "{err}");
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: a\n    sources:\n      - name: db\n        postgres:\n          prot: 5432\n",
        ws.store_url()
    ));
    let run = ccbackup(&cfg, &["check-config"]);
    assert_eq!(run.code(), Some(2));
    let err = run.stderr();
    assert!(err.contains(&format!("{}:8:", cfg.display())), "{err}");
    assert!(err.contains("prot"), "{err}");
}

#[test]
fn wrong_type_is_reported_with_location() {
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: a\n    sources:\n      - name: db\n        postgres:\n          port: [1, 2]\n",
        ws.store_url()
    ));
    let run = ccbackup(&cfg, &["check-config"]);
    assert_eq!(run.code(), Some(2));
    assert!(
        run.stderr().contains(&format!("{}:8:", cfg.display())),
        "{}",
        run.stderr()
    );
}

#[test]
fn valid_config_passes_and_secrets_stay_out_of_output() {
    let ws = Workspace::new();
    let secret = ws.path().join("pw");
    std::fs::write(&secret, "s3cr3t-value\n").unwrap();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: a\n    schedule: \"0 2 * * *\"\n    retention: {{keep_daily: 7}}\n    sources:\n      - name: db\n        postgres: {{password_file: {}, databases: [ct-vis]}}\n",
        ws.store_url(),
        secret.display()
    ));
    let run = ccbackup(&cfg, &["check-config"]);
    run.expect_ok();
    assert!(!run.stdout().contains("s3cr3t") && !run.stderr().contains("s3cr3t"));
}

#[test]
fn missing_config_file_is_reported() {
    let run = ccbackup(
        std::path::Path::new("/nonexistent/ccbackup.yaml"),
        &["check-config"],
    );
    assert_eq!(run.code(), Some(2));
    assert!(run
        .stderr()
        .contains("cannot read config file /nonexistent/ccbackup.yaml"));
}

#[test]
fn unknown_keys_wrong_types_and_invalid_values_are_reported_together() {
    let ws = Workspace::new();
    let body = format!(
        r#"store:
  url: {}
  bogus: 1
jobs:
  - name: a
    timezone: Mars/Base
    sources:
      - name: db
        postgres:
          prot: 5432
          port: [1]
          host:
            nested: nope
      - name: only
        postgres:
          typo: 1
"#,
        ws.store_url()
    );
    let cfg = ws.config(&body);
    let run = ccbackup(&cfg, &["check-config"]);
    assert_eq!(run.code(), Some(2));
    let err = run.stderr();
    let file = cfg.display().to_string();
    for (line, key) in [
        (3, "bogus"),
        (6, "jobs[0].timezone"),
        (10, "prot"),
        (11, "port"),
        (12, "host"),
        (16, "typo"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("{file}:{line}:")) && l.contains(key)),
            "missing {key} at line {line} in:\n{err}"
        );
    }
    // Blanking `typo` leaves `postgres:` empty; that must not be reported as
    // a source without a kind.
    assert!(!err.contains("exactly one of"), "{err}");
}

#[test]
fn wrongly_typed_value_names_its_key_path_and_what_was_found() {
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: a\n    sources:\n      - name: other\n        files: {{path: /tmp}}\n      - name: db\n        postgres:\n          port: fivefour\n",
        ws.store_url()
    ));
    let run = ccbackup(&cfg, &["check-config"]);
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    let expected = format!(
        "{}:10:17: jobs[0].sources[1].postgres.port: expected an integer, found \"fivefour\"",
        cfg.display()
    );
    assert!(run.stderr().contains(&expected), "{}", run.stderr());
}

#[test]
fn unknown_key_gets_its_path_and_the_nearest_known_key() {
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\n  bogus: 1\njobs:\n  - name: a\n    sources:\n      - name: db\n        postgres:\n          prot: 5432\n",
        ws.store_url()
    ));
    let run = ccbackup(&cfg, &["check-config"]);
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    let err = run.stderr();
    let file = cfg.display();
    assert!(
        err.contains(&format!(
            "{file}:9:11: jobs[0].sources[0].postgres.prot: unknown key `prot`, did you mean `port`?"
        )),
        "{err}"
    );
    // Nothing is close to `bogus`: no guess, but the keys that are allowed.
    let bogus = err
        .lines()
        .find(|l| l.contains(&format!("{file}:3:3: store.bogus: unknown key `bogus`")))
        .unwrap_or_else(|| panic!("no store.bogus line in:\n{err}"));
    assert!(!bogus.contains("did you mean"), "{bogus}");
    assert!(bogus.contains("url, options"), "{bogus}");
}

#[test]
fn bad_durations_name_their_setting_not_jitter() {
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\ndaemon:\n  lock_ttl: 5x\njobs:\n  - name: a\n    max_age: soon\n    orphan_grace: 1m1m\n    sources:\n      - name: etc\n        files: {{path: /tmp}}\n",
        ws.store_url()
    ));
    let run = ccbackup(&cfg, &["check-config"]);
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    let err = run.stderr();
    let file = cfg.display();
    for (line, key, value) in [
        (4, "daemon.lock_ttl", "5x"),
        (7, "jobs[0].max_age", "soon"),
        (8, "jobs[0].orphan_grace", "1m1m"),
    ] {
        assert!(
            err.lines().any(|l| l.contains(&format!("{file}:{line}:"))
                && l.contains(&format!("{key}: \"{value}\" is not a duration"))),
            "missing {key} in:\n{err}"
        );
    }
    assert!(!err.contains("jitter"), "{err}");
}

#[test]
fn forty_bad_entries_and_a_bad_policy_file_are_all_reported_at_once() {
    let ws = Workspace::new();
    let policy = ws.path().join("policy.yaml");
    std::fs::write(&policy, "keep_daly: 7\nkeep_weekly: 0\n").unwrap();
    let mut body = format!(
        "store:\n  url: {}\njobs:\n  - name: a\n    retention: {}\n    sources:\n",
        ws.store_url(),
        policy.display()
    );
    // Sources start on line 7, three lines each; every port is a word.
    for i in 0..40 {
        body.push_str(&format!(
            "      - name: s{i}\n        postgres:\n          port: p{i}\n"
        ));
    }
    let cfg = ws.config(&body);
    let run = ccbackup(&cfg, &["check-config"]);
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    let err = run.stderr();
    let file = cfg.display().to_string();
    assert!(err.contains("has 41 problems"), "{err}");
    for i in 0..40 {
        let needle = format!(
            "{file}:{}:17: jobs[0].sources[{i}].postgres.port: expected an integer, found \"p{i}\"",
            9 + 3 * i
        );
        assert!(err.contains(&needle), "missing {needle} in:\n{err}");
    }
    // The policy file's problems, each with its own file, line and key.
    let policy = policy.display().to_string();
    assert!(
        err.contains(&format!(
            "{policy}:1:1: keep_daly: unknown key `keep_daly`, did you mean `keep_daily`?"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{policy}:2:14: keep_weekly: must be at least 1")),
        "{err}"
    );
}

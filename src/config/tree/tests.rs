//! Reading configurations with many problems at once, through the real
//! loader (`config::parse`) and through `read` on small structs.

use std::path::Path;

use serde::Deserialize;

use super::{parse, read};
use crate::config::Problem;

fn problems(text: &str) -> Vec<Problem> {
    match crate::config::parse(text, Path::new("c.yaml")) {
        Err(crate::config::ConfigError::Invalid { problems, .. }) => problems,
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("config accepted:\n{text}"),
    }
}

fn summary(problems: &[Problem]) -> Vec<(u64, &str)> {
    problems.iter().map(|p| (p.line, p.key.as_str())).collect()
}

/// A job with `n` sources, each written by `source(i)` (indented 6).
fn job_with_sources(n: usize, source: impl Fn(usize) -> String) -> String {
    let mut text =
        "store:\n  url: file:///tmp/ccbackup-test-store\njobs:\n  - name: j\n    sources:\n"
            .to_owned();
    for i in 0..n {
        text.push_str(&source(i));
    }
    text
}

#[test]
fn forty_wrongly_typed_values_and_unknown_keys_are_all_reported() {
    // Sources start on line 6 and take 4 lines each.
    let text = job_with_sources(40, |i| {
        format!("      - name: s{i}\n        postgres:\n          port: p{i}\n          hots: h\n")
    });
    let got = problems(&text);
    assert_eq!(got.len(), 80, "{got:#?}");
    for i in 0..40u64 {
        let port = &got[2 * i as usize];
        assert_eq!(
            (
                port.line,
                port.column,
                port.key.clone(),
                port.message.clone()
            ),
            (
                8 + 4 * i,
                17,
                format!("jobs[0].sources[{i}].postgres.port"),
                format!("expected an integer, found \"p{i}\"")
            )
        );
        let hots = &got[2 * i as usize + 1];
        assert_eq!(
            (hots.line, hots.key.clone()),
            (9 + 4 * i, format!("jobs[0].sources[{i}].postgres.hots"))
        );
        assert!(hots.message.contains("did you mean `host`?"), "{hots:?}");
    }
}

#[test]
fn forty_missing_required_keys_are_all_reported_without_invented_problems() {
    // No names: each source lacks a required key, and the placeholder
    // names must not turn into "duplicate source name" or "not a valid
    // name" problems.
    let text = job_with_sources(40, |_| "      - files: {path: /tmp}\n".to_owned());
    let got = problems(&text);
    assert_eq!(got.len(), 40, "{got:#?}");
    for (i, p) in got.iter().enumerate() {
        assert_eq!(p.line, 6 + i as u64);
        assert_eq!(p.key, format!("jobs[0].sources[{i}].name"));
        assert_eq!(p.message, "required key is missing");
    }
}

#[test]
fn semantic_problems_elsewhere_are_still_reported() {
    let text = "store:\n  url: file:///tmp/x\n  concurrency: lots\njobs:\n  - name: a\n    timezone: Mars/Base\n    sources:\n      - files: {path: /tmp}\n  - name: b\n    max_deletions: 0\n    sources:\n      - name: e\n        files: {path: /tmp}\n";
    let got = problems(text);
    assert_eq!(
        summary(&got),
        [
            (3, "store.concurrency"),
            (8, "jobs[0].sources[0].name"),
            (6, "jobs[0].timezone"),
            (10, "jobs[1].max_deletions"),
        ],
        "{got:#?}"
    );
}

#[test]
fn repeated_keys_are_reported_at_the_repetition() {
    let text = "store:\n  url: file:///tmp/x\n  url: file:///tmp/y\njobs:\n  - name: a\n    sources:\n      - name: e\n        files: {path: /tmp, path: /var}\njobs: []\n";
    let got = problems(text);
    assert_eq!(
        summary(&got),
        [
            (3, "store.url"),
            (8, "jobs[0].sources[0].files.path"),
            (9, "jobs"),
        ],
        "{got:#?}"
    );
    assert_eq!(got[0].message, "`url` is already set on line 2");
    assert_eq!(got[1].column, 29);
}

#[test]
fn a_syntax_error_is_reported_alone_with_its_position() {
    let text = "store:\n  url: file:///tmp/x\n  bogus: 1\njobs: [\n";
    let got = problems(text);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].key, "yaml");
    assert!(got[0].line >= 4, "{got:#?}");
}

#[test]
fn an_empty_file_or_a_list_is_not_a_configuration() {
    for (text, message) in [
        ("", "expected a mapping of keys, found nothing"),
        ("# nothing\n", "expected a mapping of keys, found nothing"),
        ("- a\n", "expected a mapping of keys, found a list"),
    ] {
        let got = problems(text);
        assert_eq!(got.len(), 1, "{text:?}: {got:#?}");
        assert_eq!(
            (got[0].key.as_str(), got[0].message.as_str()),
            ("yaml", message)
        );
    }
    let got = problems("jobs: []\n");
    assert_eq!(summary(&got), [(1, "store")]);
    assert_eq!(got[0].message, "required key is missing");
}

#[test]
fn unknown_keys_of_an_inline_retention_policy_get_a_suggestion() {
    let text = "store:\n  url: file:///tmp/x\njobs:\n  - name: a\n    retention:\n      keep_dialy: 7\n      keep_weekly: 0\n    sources:\n      - name: e\n        files: {path: /tmp}\n  - name: b\n    retention:\n      keep_daily: 0\n    sources:\n      - name: e\n        files: {path: /tmp}\n";
    let got = problems(text);
    assert_eq!(
        summary(&got),
        [
            (6, "jobs[0].retention.keep_dialy"),
            (7, "jobs[0].retention.keep_weekly"),
            (13, "jobs[1].retention.keep_daily"),
        ],
        "{got:#?}"
    );
    assert!(
        got[0].message.contains("did you mean `keep_daily`?"),
        "{got:#?}"
    );
    assert!(got[1].message.contains("at least 1"), "{got:#?}");
    assert_eq!((got[2].line, got[2].column), (13, 19));
}

#[test]
fn values_that_cannot_be_read_are_never_echoed_from_secret_settings() {
    let text = "store:\n  url: s3://b/p\n  options:\n    secret_access_key: [s3cr3t-1]\n    session_token: {t: s3cr3t-2}\njobs:\n  - name: a\n    notify:\n      webhooks: [[https://hooks.example/s3cr3t-3]]\n    sources:\n      - name: e\n        files: {path: /tmp}\n";
    let got = problems(text);
    assert_eq!(
        summary(&got),
        [
            (4, "store.options.secret_access_key"),
            (5, "store.options.session_token"),
            (9, "jobs[0].notify.webhooks[0]"),
        ],
        "{got:#?}"
    );
    let all = format!("{got:?}");
    assert!(!all.contains("s3cr3t"), "{all}");
}

#[test]
fn plain_scalars_read_as_strings_keep_their_spelling() {
    #[derive(Deserialize)]
    struct Names {
        names: Vec<String>,
        flag: bool,
        count: u8,
    }
    let text = "names: [01, yes, 2024_01, 1.50, 0x1F, ~x]\nflag: yes\ncount: 7\n";
    let root = parse(text).unwrap();
    let got = read::<Names>(&root, text);
    assert!(got.problems.is_empty(), "{:?}", got.problems);
    let value = got.value.unwrap();
    assert_eq!(value.names, ["01", "yes", "2024_01", "1.50", "0x1F", "~x"]);
    assert!(value.flag);
    assert_eq!(value.count, 7);
}

#[test]
fn out_of_range_and_negative_numbers_are_wrong_types() {
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Small {
        a: u8,
        b: u64,
        c: Vec<u8>,
    }
    let text = "a: 300\nb: -1\nc: [1, x, 2]\n";
    let root = parse(text).unwrap();
    let got = read::<Small>(&root, text);
    assert!(got.value.is_some());
    let keys: Vec<(&str, &str)> = got
        .problems
        .iter()
        .map(|p| (p.key.as_str(), p.message.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("a", "expected a whole number (0 or more), found \"300\""),
            ("b", "expected a whole number (0 or more), found \"-1\""),
            ("c[1]", "expected a whole number (0 or more), found \"x\""),
        ]
    );
}

/// Every scalar reads as serde-saphyr itself reads it into the same type
/// (the loader used it directly before the tree): accepted or refused
/// alike, and the same value when accepted.
#[test]
fn scalars_read_as_serde_saphyr_reads_them() {
    #[derive(Deserialize, Debug, PartialEq)]
    struct I {
        v: Option<i64>,
    }
    #[derive(Deserialize, Debug, PartialEq)]
    struct B {
        v: Option<bool>,
    }
    #[derive(Deserialize, Debug, PartialEq)]
    struct S {
        v: Option<String>,
    }
    fn both<T: serde::de::DeserializeOwned + std::fmt::Debug + PartialEq>(
        value: &str,
    ) -> (Option<T>, Option<T>) {
        let text = format!("v: {value}\n");
        let direct = serde_saphyr::from_str::<T>(&text).ok();
        let root = parse(&text).unwrap();
        let got = read::<T>(&root, &text);
        let tree = got.value.filter(|_| got.problems.is_empty());
        (direct, tree)
    }
    let values = [
        "5432", "\"5432\"", "'5432'", "-7", "0x10", "0o17", "1.5", "yes", "no", "on", "true",
        "\"true\"", "True", "~", "null", "''", "abc", "[1]", "{a: 1}", "01", "1_000", "\"0x10\"",
        "'-3'", "\"yes\"", "\" 5\"", "\"1.5\"", "'.inf'",
    ];
    let mut differ = Vec::new();
    for v in values {
        let (direct, tree) = both::<I>(v);
        if direct != tree {
            differ.push(format!("i64 from {v}: {direct:?} != {tree:?}"));
        }
        let (direct, tree) = both::<B>(v);
        if direct != tree {
            differ.push(format!("bool from {v}: {direct:?} != {tree:?}"));
        }
        let (direct, tree) = both::<S>(v);
        if direct != tree {
            differ.push(format!("string from {v}: {direct:?} != {tree:?}"));
        }
    }
    assert!(differ.is_empty(), "{differ:#?}");
}

#[test]
fn values_a_hand_written_reader_refuses_are_all_reported() {
    // `databases` takes `all` or a list; its reader refuses a mapping.
    let text = job_with_sources(30, |i| {
        format!("      - name: s{i}\n        postgres:\n          databases: {{a: 1}}\n")
    });
    let got = problems(&text);
    assert_eq!(got.len(), 30, "{got:#?}");
    for (i, p) in got.iter().enumerate() {
        assert_eq!(p.line, 8 + 3 * i as u64);
        assert_eq!(p.key, format!("jobs[0].sources[{i}].postgres.databases"));
        assert_eq!(
            p.message,
            "expected `all` or a list of database names, found a mapping"
        );
    }
}

#[test]
fn a_typo_in_every_inline_policy_is_reported_in_each() {
    let mut text = "store:\n  url: file:///tmp/x\njobs:\n".to_owned();
    for i in 0..20 {
        text.push_str(&format!(
            "  - name: j{i}\n    retention: {{keep_daly: 1}}\n    sources:\n      - name: e\n        files: {{path: /tmp}}\n"
        ));
    }
    let got = problems(&text);
    assert_eq!(got.len(), 20, "{got:#?}");
    for (i, p) in got.iter().enumerate() {
        assert_eq!(p.key, format!("jobs[{i}].retention.keep_daly"));
        assert!(p.message.contains("did you mean `keep_daily`?"), "{p:?}");
    }
}

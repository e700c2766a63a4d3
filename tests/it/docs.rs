//! Issue 23 item 12: the README and `docs/` hang together. Every relative
//! link points at a file that exists, and every `#anchor` at a heading of
//! that file (GitHub's slug rules), so moving a section cannot leave a dead
//! link behind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The documents: README.md and every `docs/*.md`.
fn documents() -> Vec<PathBuf> {
    let mut out = vec![root().join("README.md")];
    if let Ok(rd) = std::fs::read_dir(root().join("docs")) {
        let mut docs: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "md"))
            .collect();
        docs.sort();
        out.extend(docs);
    }
    out
}

/// GitHub's heading anchor: lowercase, punctuation other than `-` and `_`
/// dropped, spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Lines outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|l| {
            if l.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

fn anchors(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap();
    prose(&text)
        .into_iter()
        .filter_map(|l| {
            let t = l.trim_start_matches('#');
            (t.len() < l.len() && t.starts_with(' ')).then(|| slug(t))
        })
        .collect()
}

/// `(target)` of every `[text](target)` on the prose lines.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose(text) {
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            if let Some(end) = rest.find(')') {
                out.push(rest[..end].to_owned());
                rest = &rest[end..];
            }
        }
    }
    out
}

#[test]
fn every_link_in_the_docs_resolves() {
    let mut checked = 0;
    let mut dead = Vec::new();
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        for link in links(&text) {
            if link.starts_with("http://") || link.starts_with("https://") {
                continue;
            }
            checked += 1;
            let (file, anchor) = match link.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if file.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap().join(file)
            };
            let name = doc.strip_prefix(root()).unwrap().display().to_string();
            if !target.exists() {
                dead.push(format!("{name}: ({link}): no such file"));
                continue;
            }
            if let Some(a) = anchor {
                if !anchors(&target).contains(a) {
                    dead.push(format!("{name}: ({link}): no heading with that anchor"));
                }
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} links found: is the parser broken?"
    );
    assert!(dead.is_empty(), "dead links:\n{}", dead.join("\n"));
}

#[test]
fn slugs_follow_github() {
    assert_eq!(slug("Second copies (3-2-1)"), "second-copies-3-2-1");
    assert_eq!(
        slug("`encryption`, `signing`, `copies` (top level)"),
        "encryption-signing-copies-top-level"
    );
    assert_eq!(
        slug("Restore runbook for Concertim"),
        "restore-runbook-for-concertim"
    );
}

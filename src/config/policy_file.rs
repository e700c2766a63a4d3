//! `retention: FILE`: a policy file, read like the configuration itself
//! (parsed once into a tree, every unknown key, repeated key and wrongly
//! typed value reported together with the policy's own problems), and
//! reported in the policy loader's words.

use std::path::Path;

use crate::retention::policy::{
    parse_policy_str, FieldError, Policy, PolicyFileError, PolicyKeys, PolicySpec,
};

use super::tree::{self, Kind};

pub(super) fn load(path: &Path) -> Result<Policy, PolicyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    // After a syntax error the rest of the file's structure is unknown:
    // that error is the only one reported.
    let root = tree::parse(&text).map_err(|e| PolicyFileError::Parse {
        path: path.to_owned(),
        line: e.at.line,
        column: e.at.column,
        message: e.message,
    })?;
    if matches!(root.kind, Kind::Null) {
        // An empty file: the policy loader says why that is refused.
        return parse_policy_str(&text, path);
    }
    let read = tree::read::<PolicyKeys>(&root, &text);
    let semantic = match read.value {
        Some(keys) => {
            let start = Some((root.at.line, root.at.column));
            match PolicySpec::from_keys(keys, start).validate() {
                Ok(policy) if read.problems.is_empty() => return Ok(policy),
                Ok(_) => Vec::new(),
                Err(problems) => problems,
            }
        }
        None => Vec::new(),
    };
    let mut problems: Vec<FieldError> = read
        .problems
        .into_iter()
        .map(|p| FieldError {
            key: p.key,
            line: p.line,
            column: p.column,
            message: p.message,
        })
        .collect();
    problems.extend(
        semantic
            .into_iter()
            .filter(|p| !read.suspect_lines.contains(&p.line)),
    );
    Err(PolicyFileError::Invalid {
        path: path.to_owned(),
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.yaml");
        std::fs::write(&path, text).unwrap();
        let err = load(&path).unwrap_err().to_string();
        err.replace(&path.display().to_string(), "p.yaml")
    }

    #[test]
    fn every_problem_of_a_policy_file_is_reported_at_once() {
        let err = error("keep_dialy: 7\nkeep_weekly: [1]\nkeep_monthly: 0\nkeep_within: 3m\nkeep_yearly: 1\nkeep_yearly: 2\n");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines[0], "invalid retention policy in p.yaml:", "{err}");
        assert!(
            lines[1].starts_with(
                "p.yaml:1:1: keep_dialy: unknown key `keep_dialy`, did you mean `keep_daily`?"
            ),
            "{err}"
        );
        assert!(
            lines[2].starts_with("p.yaml:6:1: keep_yearly: `keep_yearly` is already set on line 5"),
            "{err}"
        );
        assert!(
            lines[3].starts_with("p.yaml:2:14: keep_weekly: expected a positive whole number"),
            "{err}"
        );
        assert!(
            lines[4].starts_with("p.yaml:3:15: keep_monthly: must be at least 1"),
            "{err}"
        );
        assert!(lines[5].starts_with("p.yaml:4:14: keep_within:"), "{err}");
        assert_eq!(lines.len(), 6, "{err}");
    }

    #[test]
    fn empty_files_and_syntax_errors_read_as_before() {
        let err = error("# nothing\n");
        assert!(
            err.contains("p.yaml:2:1: policy: no keep_* rule is set"),
            "{err}"
        );
        let err = error("keep_daily: 7\nkeep_weekly: [\n");
        assert!(
            err.starts_with("cannot parse retention policy file p.yaml:\np.yaml:2:14:"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("ok.yaml");
        std::fs::write(&policy, "keep_daily: 7\ntimezone: Europe/London\n").unwrap();
        let policy = load(&policy).unwrap();
        assert_eq!(policy.timezone, chrono_tz::Europe::London);
    }
}

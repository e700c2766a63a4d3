//! Validation of `copies:`, the further stores every complete backup is
//! copied to. Each entry has the shape of `store:` and is checked by the
//! same code, so option keys, sizes and secret files are judged alike;
//! only the key in messages changes (`copies[1].options.endpiont`).

use serde_saphyr::Spanned;

use super::check::Problems;
use super::raw::RawStore;
use super::store::store;
use crate::repo::store::StoreSpec;

pub(super) fn copies(
    raw: Option<&Spanned<Vec<Spanned<RawStore>>>>,
    primary: Option<&StoreSpec>,
    p: &mut Problems,
) -> Vec<StoreSpec> {
    let Some(raw) = raw else {
        return Vec::new();
    };
    let mut out: Vec<StoreSpec> = Vec::new();
    for (i, s) in raw.value.iter().enumerate() {
        let key = format!("copies[{i}]");
        let mut own = Problems::new();
        let cfg = store(s, &mut own);
        p.0.extend(own.0.into_iter().map(|mut problem| {
            problem.key = renamed(&problem.key, &key);
            problem
        }));
        let Some(cfg) = cfg else { continue };
        let here = comparable(&cfg);
        let clash = if primary.is_some_and(|pr| comparable(pr) == here) {
            Some("is the primary store (store.url): a copy must live elsewhere".to_owned())
        } else {
            out.iter()
                .position(|c| comparable(c) == here)
                .map(|j| format!("is the same store as copies[{j}]"))
        };
        match clash {
            Some(msg) => p.at(&s.value.url.referenced, format!("{key}.url"), msg),
            None => out.push(cfg),
        }
    }
    out
}

/// `store.options.x` becomes `copies[i].options.x`.
fn renamed(problem_key: &str, key: &str) -> String {
    match problem_key.strip_prefix("store") {
        Some(rest) => format!("{key}{rest}"),
        None => problem_key.to_owned(),
    }
}

/// The URL without a trailing slash, so `file:///b` and `file:///b/` match.
fn comparable(c: &StoreSpec) -> String {
    c.url.as_str().trim_end_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn copies_are_validated_like_the_store_with_their_own_keys() {
        let text = "store:\n  url: file:///tmp/a\ncopies:\n  - url: s3://b/p\n    options:\n      endpiont: http://x\n  - url: file:///tmp/a/\n  - url: s3://b/p\n  - url: nope\njobs:\n  - name: j\n    sources:\n      - name: e\n        files: {path: /tmp}\n";
        let err = crate::config::parse(text, Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("c.yaml:6:17: copies[0].options.endpiont: `endpiont` is not an option of s3:// stores"), "{err}");
        assert!(err.contains("copies[1].url: is the primary store"), "{err}");
        assert!(
            err.contains("copies[2].url: is the same store as copies[0]"),
            "{err}"
        );
        assert!(err.contains("copies[3].url: `nope` is not a URL"), "{err}");
    }

    #[test]
    fn a_url_that_does_not_parse_is_shown_without_its_password() {
        let text = "store:\n  url: \"s3://key:s3cr3t pass@bucket:99999/p\"\njobs:\n  - name: j\n    sources:\n      - name: e\n        files: {path: /tmp}\n";
        let err = crate::config::parse(text, Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("store.url: `s3://***@bucket:99999/p` is not a URL"),
            "{err}"
        );
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn copies_parse_with_options() {
        let text = "store:\n  url: file:///tmp/a\ncopies:\n  - url: s3://b/p\n    part_size: 8MiB\n    options:\n      endpoint: http://x\n      allow_http: true\njobs:\n  - name: j\n    sources:\n      - name: e\n        files: {path: /tmp}\n";
        let cfg = crate::config::parse(text, Path::new("c.yaml")).unwrap();
        assert_eq!(cfg.copies.len(), 1);
        assert_eq!(cfg.copies[0].part_size, 8 * 1024 * 1024);
        assert_eq!(cfg.copies[0].options.len(), 2);
    }

    #[test]
    fn copy_credentials_stay_out_of_debug_output() {
        let text = "store:\n  url: file:///tmp/a\ncopies:\n  - url: s3://b/p\n    options:\n      secret_access_key: Copy-S3cret-77\njobs:\n  - name: j\n    sources:\n      - name: e\n        files: {path: /tmp}\n";
        let cfg = crate::config::parse(text, Path::new("c.yaml")).unwrap();
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("Copy-S3cret-77"), "{dbg}");
        assert!(dbg.contains("s3://b/p"), "{dbg}");
    }
}

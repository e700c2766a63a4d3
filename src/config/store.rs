//! Validation of the `store:` section (and of each copy's store): the URL,
//! the object-store options (with `<key>_file` secrets), upload sizes and
//! the clock-skew allowance.

use std::path::Path;

use serde_saphyr::Spanned;
use url::Url;

use super::check::{interval, parse_size, Problems};
use super::raw::{self, Scalar};
use super::{DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE};
use crate::repo::store::StoreSpec;
use crate::secret::{read_secret_file, Secret};

/// A store URL that did not parse, for an error message: whatever sits
/// between `//` and the last `@` may be a user and password.
fn without_userinfo(url: &str) -> String {
    match (url.find("//"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => format!("{}//***{}", &url[..start], &url[at..]),
        _ => url.to_owned(),
    }
}

pub(super) fn store(s: &Spanned<raw::RawStore>, p: &mut Problems) -> Option<StoreSpec> {
    let raw = &s.value;
    let url = match Url::parse(&raw.url.value) {
        Ok(u) => Some(u),
        Err(e) => {
            p.at(
                &raw.url.referenced,
                "store.url",
                format!("`{}` is not a URL: {e}", without_userinfo(&raw.url.value)),
            );
            None
        }
    };
    let mut options = Vec::new();
    if let Some(url) = &url {
        let scheme = url.scheme();
        if !matches!(
            scheme,
            "file" | "s3" | "s3a" | "az" | "azure" | "abfs" | "abfss" | "gs"
        ) {
            p.at(
                &raw.url.referenced,
                "store.url",
                format!("unsupported scheme `{scheme}`: use file://, s3://, az:// or gs://"),
            );
        }
        for (k, v) in &raw.options {
            let key = format!("store.options.{k}");
            match option_value(scheme, k, &v.value) {
                Ok((name, value)) => {
                    if let Err(msg) = crate::repo::store::check_option_key(scheme, &name) {
                        p.at(&v.referenced, key, msg);
                    } else {
                        options.push((name, value));
                    }
                }
                Err(msg) => p.at(&v.referenced, key, msg),
            }
        }
    }
    let part_size = match &raw.part_size {
        None => DEFAULT_PART_SIZE,
        Some(v) => match parse_size(&v.value.0) {
            Ok(n) if (5 * 1024 * 1024..=5 * 1024 * 1024 * 1024).contains(&n) => n as usize,
            Ok(_) => {
                p.at(
                    &v.referenced,
                    "store.part_size",
                    "must be between 5MiB (the S3 minimum) and 5GiB",
                );
                DEFAULT_PART_SIZE
            }
            Err(msg) => {
                p.at(&v.referenced, "store.part_size", msg);
                DEFAULT_PART_SIZE
            }
        },
    };
    let concurrency = match &raw.concurrency {
        None => DEFAULT_CONCURRENCY,
        Some(v) if (1..=64).contains(&v.value) => v.value as usize,
        Some(v) => {
            p.at(
                &v.referenced,
                "store.concurrency",
                "must be between 1 and 64",
            );
            DEFAULT_CONCURRENCY
        }
    };
    let max_clock_skew = raw
        .max_clock_skew
        .as_ref()
        .and_then(|v| interval(v, "store.max_clock_skew", p))
        .unwrap_or(crate::repo::store::DEFAULT_MAX_CLOCK_SKEW);
    let object_lock = super::object_lock::object_lock(raw.object_lock.as_ref(), url.as_ref(), p);
    Some(StoreSpec {
        url: url?,
        options,
        part_size,
        concurrency,
        max_clock_skew,
        object_lock,
    })
}

/// `<key>_file: PATH` reads the value from a file (docker secrets); the
/// object-store key is the name without the suffix. Keys that are options
/// in their own right (Azure's `federated_token_file`) are passed as they are.
fn option_value(scheme: &str, key: &str, v: &Scalar) -> Result<(String, Secret), String> {
    if crate::repo::store::check_option_key(scheme, key).is_ok() {
        return Ok((key.to_owned(), Secret::new(v.0.clone())));
    }
    match key.strip_suffix("_file") {
        Some(base) if !base.is_empty() => read_secret_file(Path::new(&v.0))
            .map(|s| (base.to_owned(), s))
            .map_err(|e| format!("cannot read `{}`: {e}", v.0)),
        _ => Ok((key.to_owned(), Secret::new(v.0.clone()))),
    }
}

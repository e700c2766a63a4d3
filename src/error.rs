//! Rendering an error for a person: the error and its causes, once each.
//!
//! Our error types keep their cause as `source()` and leave it out of their
//! own message, so the chain is intact for code that walks it and a cause
//! is never printed twice. Every edge that shows an error to an operator
//! (CLI exit, run report, logs, notifications) renders it with [`chain`].

use std::error::Error as StdError;
use std::fmt;

/// Displays an error followed by each cause, joined with ": ".
///
/// A cause whose text the previous level already ends with is skipped:
/// some foreign errors (object_store's, for one) print their cause in their
/// own message and return it from `source()` too.
pub struct Chain<'a>(pub &'a (dyn StdError + 'static));

/// The error and its causes as one line; see [`Chain`].
pub fn chain<'a>(e: &'a (dyn StdError + 'static)) -> Chain<'a> {
    Chain(e)
}

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut prev = self.0.to_string();
        f.write_str(&prev)?;
        let mut cur = self.0.source();
        while let Some(e) = cur {
            let text = e.to_string();
            if !text.is_empty() && !prev.ends_with(&text) {
                write!(f, ": {text}")?;
                prev = text;
            }
            cur = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {key}")]
    struct Outer {
        key: &'static str,
        source: object_store::Error,
    }

    #[test]
    fn prints_each_cause_once() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let e = Outer {
            key: "a/b",
            source: object_store::Error::Generic {
                store: "S3",
                source: Box::new(inner),
            },
        };
        // object_store's message already ends with its cause.
        assert_eq!(
            chain(&e).to_string(),
            "cannot read a/b: Generic S3 error: reset by peer"
        );
        let plain = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(chain(&plain).to_string(), plain.to_string());
    }
}

//! Reading policies: the YAML form ([`PolicySpec`]), its validation with a
//! position for every problem, and loading policy files.

use std::fmt;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_saphyr::{MessageFormatter, Spanned};

use super::{Count, KeepDuration, Policy};

/// A count as written in YAML, kept loose so that validation (not the parser) reports bad values
/// together with every other problem and its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawCount {
    /// Any integer, including zero and negatives, which validation refuses.
    Number(i128),
    /// The string `unlimited`.
    Unlimited,
    /// Anything else (a word, a quoted number, a float, a boolean, a list), as text.
    Other(String),
}

impl<'de> Deserialize<'de> for RawCount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawCountVisitor)
    }
}

struct RawCountVisitor;

impl<'de> Visitor<'de> for RawCountVisitor {
    type Value = RawCount;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a positive whole number or \"unlimited\"")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawCount, E> {
        Ok(RawCount::Number(i128::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawCount, E> {
        Ok(RawCount::Number(i128::from(v)))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<RawCount, E> {
        Ok(RawCount::Number(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<RawCount, E> {
        Ok(RawCount::Number(i128::try_from(v).unwrap_or(i128::MAX)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawCount, E> {
        Ok(RawCount::Other(v.to_string()))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawCount, E> {
        Ok(RawCount::Other(v.to_string()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawCount, E> {
        if v == "unlimited" {
            Ok(RawCount::Unlimited)
        } else {
            Ok(RawCount::Other(v.to_owned()))
        }
    }

    // Collections are accepted here too, only to be refused by validation: an error raised from
    // inside this visitor would lose the value's position.
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawCount, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(RawCount::Other("[...]".to_owned()))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<RawCount, A::Error> {
        while map
            .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
            .is_some()
        {}
        Ok(RawCount::Other("{...}".to_owned()))
    }
}

/// The policy as written in YAML, before validation. Unknown keys are an error (a misspelt
/// `keep_dialy` silently ignored would delete backups). Every value keeps its position so that
/// [`PolicySpec::validate`] can point at it.
///
/// Deserializing a `PolicySpec` with serde-saphyr also records where its mapping starts, so the
/// "empty policy" error points at the policy even when it is embedded in a larger file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PolicySpec {
    pub keep_last: Option<Spanned<RawCount>>,
    pub keep_hourly: Option<Spanned<RawCount>>,
    pub keep_daily: Option<Spanned<RawCount>>,
    pub keep_weekly: Option<Spanned<RawCount>>,
    pub keep_monthly: Option<Spanned<RawCount>>,
    pub keep_yearly: Option<Spanned<RawCount>>,
    pub keep_within: Option<Spanned<String>>,
    pub keep_within_hourly: Option<Spanned<String>>,
    pub keep_within_daily: Option<Spanned<String>>,
    pub keep_within_weekly: Option<Spanned<String>>,
    pub keep_within_monthly: Option<Spanned<String>>,
    pub keep_within_yearly: Option<Spanned<String>>,
    pub timezone: Option<Spanned<String>>,
    /// Line and column where the policy mapping starts, when known.
    pub start: Option<(u64, u64)>,
}

/// The keys as serde sees them. A separate struct because the mapping's own position is only
/// available by wrapping the whole mapping in [`Spanned`], which a derive cannot do for itself.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyKeys {
    keep_last: Option<Spanned<RawCount>>,
    keep_hourly: Option<Spanned<RawCount>>,
    keep_daily: Option<Spanned<RawCount>>,
    keep_weekly: Option<Spanned<RawCount>>,
    keep_monthly: Option<Spanned<RawCount>>,
    keep_yearly: Option<Spanned<RawCount>>,
    keep_within: Option<Spanned<String>>,
    keep_within_hourly: Option<Spanned<String>>,
    keep_within_daily: Option<Spanned<String>>,
    keep_within_weekly: Option<Spanned<String>>,
    keep_within_monthly: Option<Spanned<String>>,
    keep_within_yearly: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
}

impl<'de> Deserialize<'de> for PolicySpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<PolicyKeys>::deserialize(deserializer)?;
        let start = known_position(&spanned.referenced);
        Ok(PolicySpec::from_keys(spanned.value, start))
    }
}

impl PolicySpec {
    /// Builds a spec from keys deserialized without their enclosing span: the
    /// config loader reads an inline `retention:` mapping this way, because it
    /// must first see whether the value is a mapping or a file path.
    pub fn from_keys(keys: PolicyKeys, start: Option<(u64, u64)>) -> Self {
        PolicySpec {
            keep_last: keys.keep_last,
            keep_hourly: keys.keep_hourly,
            keep_daily: keys.keep_daily,
            keep_weekly: keys.keep_weekly,
            keep_monthly: keys.keep_monthly,
            keep_yearly: keys.keep_yearly,
            keep_within: keys.keep_within,
            keep_within_hourly: keys.keep_within_hourly,
            keep_within_daily: keys.keep_within_daily,
            keep_within_weekly: keys.keep_within_weekly,
            keep_within_monthly: keys.keep_within_monthly,
            keep_within_yearly: keys.keep_within_yearly,
            timezone: keys.timezone,
            start,
        }
    }
}

/// serde-saphyr reports line 0 for positions it does not know (e.g. values that went through
/// another deserializer); those are treated as unknown rather than printed as `0:0`.
fn known_position(location: &serde_saphyr::Location) -> Option<(u64, u64)> {
    (location.line() > 0).then(|| (location.line(), location.column()))
}

/// One problem found in a policy, with the position of the offending value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The policy key, e.g. `keep_daily`; `policy` for problems with the policy as a whole.
    pub key: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.line, self.column, self.key, self.message
        )
    }
}

impl PolicySpec {
    /// Checks every rule and returns the validated policy, or every problem found (not just the
    /// first), in the order the keys are documented.
    pub fn validate(&self) -> Result<Policy, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut policy = Policy {
            keep_last: count(&mut errors, "keep_last", &self.keep_last),
            keep_hourly: count(&mut errors, "keep_hourly", &self.keep_hourly),
            keep_daily: count(&mut errors, "keep_daily", &self.keep_daily),
            keep_weekly: count(&mut errors, "keep_weekly", &self.keep_weekly),
            keep_monthly: count(&mut errors, "keep_monthly", &self.keep_monthly),
            keep_yearly: count(&mut errors, "keep_yearly", &self.keep_yearly),
            keep_within: duration(&mut errors, "keep_within", &self.keep_within),
            keep_within_hourly: duration(
                &mut errors,
                "keep_within_hourly",
                &self.keep_within_hourly,
            ),
            keep_within_daily: duration(&mut errors, "keep_within_daily", &self.keep_within_daily),
            keep_within_weekly: duration(
                &mut errors,
                "keep_within_weekly",
                &self.keep_within_weekly,
            ),
            keep_within_monthly: duration(
                &mut errors,
                "keep_within_monthly",
                &self.keep_within_monthly,
            ),
            keep_within_yearly: duration(
                &mut errors,
                "keep_within_yearly",
                &self.keep_within_yearly,
            ),
            timezone: Tz::UTC,
        };
        if let Some(tz) = &self.timezone {
            match tz.value.parse::<Tz>() {
                Ok(zone) => policy.timezone = zone,
                Err(_) => errors.push(field_error(
                    "timezone",
                    tz,
                    format!(
                        "unknown time zone {:?}; use an IANA name such as \"Europe/London\" or \
                         \"UTC\"",
                        tz.value
                    ),
                )),
            }
        }
        if self.has_no_rules() {
            let (line, column) = self.start.unwrap_or((1, 1));
            errors.push(FieldError {
                key: "policy".to_owned(),
                line,
                column,
                message: "no keep_* rule is set; an empty policy would delete every backup and \
                          is refused (set at least one rule, e.g. keep_daily: 7)"
                    .to_owned(),
            });
        }
        if errors.is_empty() {
            Ok(policy)
        } else {
            Err(errors)
        }
    }

    /// Emptiness is judged on what was written, not on what validated: a policy whose only rule
    /// is invalid gets that rule's error, not a second, confusing "empty policy" error.
    fn has_no_rules(&self) -> bool {
        let counts = [
            &self.keep_last,
            &self.keep_hourly,
            &self.keep_daily,
            &self.keep_weekly,
            &self.keep_monthly,
            &self.keep_yearly,
        ];
        let durations = [
            &self.keep_within,
            &self.keep_within_hourly,
            &self.keep_within_daily,
            &self.keep_within_weekly,
            &self.keep_within_monthly,
            &self.keep_within_yearly,
        ];
        counts.iter().all(|c| c.is_none()) && durations.iter().all(|d| d.is_none())
    }
}

fn field_error<T>(key: &str, at: &Spanned<T>, message: String) -> FieldError {
    let (line, column) = known_position(&at.referenced).unwrap_or((1, 1));
    FieldError {
        key: key.to_owned(),
        line,
        column,
        message,
    }
}

fn count(
    errors: &mut Vec<FieldError>,
    key: &str,
    raw: &Option<Spanned<RawCount>>,
) -> Option<Count> {
    let spanned = raw.as_ref()?;
    let problem = match &spanned.value {
        RawCount::Unlimited => return Some(Count::Unlimited),
        RawCount::Number(n) => match u32::try_from(*n) {
            Ok(0) => "must be at least 1; 0 would keep nothing from this rule (leave the key \
                      out instead)"
                .to_owned(),
            Ok(n) => return Some(Count::Limited(n)),
            Err(_) if *n < 0 => {
                format!("must be a positive whole number or \"unlimited\", not {n}")
            }
            Err(_) => format!(
                "{n} is too large (at most {}); use \"unlimited\" to keep every period",
                u32::MAX
            ),
        },
        RawCount::Other(text) => {
            format!("expected a positive whole number or \"unlimited\", not {text:?}")
        }
    };
    errors.push(field_error(key, spanned, problem));
    None
}

fn duration(
    errors: &mut Vec<FieldError>,
    key: &str,
    raw: &Option<Spanned<String>>,
) -> Option<KeepDuration> {
    let spanned = raw.as_ref()?;
    match spanned.value.parse::<KeepDuration>() {
        Ok(d) => Some(d),
        Err(e) => {
            errors.push(field_error(key, spanned, e.to_string()));
            None
        }
    }
}

/// A policy file that could not be read, parsed or validated.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    #[error("cannot read retention policy file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// YAML syntax errors, unknown keys and values of the wrong type.
    #[error(
        "cannot parse retention policy file {}:\n{}:{line}:{column}: {message}",
        path.display(),
        path.display()
    )]
    Parse {
        path: PathBuf,
        line: u64,
        column: u64,
        message: String,
    },
    #[error(
        "invalid retention policy in {}:{}",
        path.display(),
        problems.iter().map(|p| format!("\n{}:{p}", path.display())).collect::<String>()
    )]
    Invalid {
        path: PathBuf,
        problems: Vec<FieldError>,
    },
}

/// Reads, parses and validates a policy file.
pub fn load_policy_file(path: &Path) -> Result<Policy, PolicyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_policy_str(&text, path)
}

/// Parses and validates a policy from YAML text; `origin` names it in error messages.
///
/// An empty document (or one with only comments) is an empty policy and refused as such.
pub fn parse_policy_str(yaml: &str, origin: &Path) -> Result<Policy, PolicyFileError> {
    let spec: PolicySpec = serde_saphyr::from_str(yaml).map_err(|e| {
        let (line, column) = e
            .location()
            .and_then(|l| known_position(&l))
            .unwrap_or((1, 1));
        PolicyFileError::Parse {
            path: origin.to_owned(),
            line,
            column,
            message: plain_message(&e),
        }
    })?;
    spec.validate()
        .map_err(|problems| PolicyFileError::Invalid {
            path: origin.to_owned(),
            problems,
        })
}

/// serde-saphyr's `Display` adds a source snippet and its own position; we print the position
/// in `FILE:LINE:COL` form ourselves, so only the message is wanted. The library asks callers of
/// this low-level formatter to neutralise control characters, which could come from the file.
pub fn plain_message(e: &serde_saphyr::Error) -> String {
    let message = serde_saphyr::DefaultMessageFormatter.format_message(e.without_snippet());
    message
        .chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

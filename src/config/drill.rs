//! Validation of `jobs[].verify` (scheduled restore drills) and
//! `jobs[].run_at_start`.

use std::str::FromStr;

use serde_saphyr::Spanned;

use super::check::{interval, Problems};
use super::raw::RawDrill;
use super::{DrillConfig, RunAtStart};
use crate::schedule::Schedule;

pub(super) fn drill(d: &Spanned<RawDrill>, key: &str, p: &mut Problems) -> Option<DrillConfig> {
    let schedule = match Schedule::from_str(&d.value.schedule.value) {
        Ok(s) => Some(s),
        Err(e) => {
            p.at(
                &d.value.schedule.referenced,
                format!("{key}.schedule"),
                e.to_string(),
            );
            None
        }
    };
    let max_age = d
        .value
        .max_age
        .as_ref()
        .and_then(|v| interval(v, &format!("{key}.max_age"), p));
    Some(DrillConfig {
        schedule: schedule?,
        restore_test: d.value.restore_test.unwrap_or(true),
        max_age,
    })
}

pub(super) fn run_at_start(v: Option<&Spanned<String>>, key: &str, p: &mut Problems) -> RunAtStart {
    let Some(v) = v else {
        return RunAtStart::default();
    };
    match v.value.as_str() {
        "missed" => RunAtStart::Missed,
        "always" => RunAtStart::Always,
        "never" => RunAtStart::Never,
        other => {
            p.at(
                &v.referenced,
                key,
                format!(
                    "`{}` is not one of missed, always, never",
                    other.escape_debug()
                ),
            );
            RunAtStart::default()
        }
    }
}

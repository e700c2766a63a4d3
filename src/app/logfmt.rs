//! The JSON log format: tracing-subscriber's own JSON lines, with one
//! addition. tracing's fields hold only strings, numbers and booleans, so a
//! report with nulls and lists travels as one JSON text in the
//! [`LOG_REPORT_FIELD`] field; here its members become the event's fields
//! with their own types. Fields the event names itself win over the
//! report's (a drill's `outcome` is `skipped`, which a run report cannot say).

use std::fmt;

use serde_json::{Map, Value};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::backup::report::LOG_REPORT_FIELD;

/// tracing-subscriber's JSON event format with reports lifted into fields.
pub struct JsonWithReports(Format<Json>);

impl Default for JsonWithReports {
    fn default() -> Self {
        JsonWithReports(tracing_subscriber::fmt::format().json())
    }
}

impl<S, N> FormatEvent<S, N> for JsonWithReports
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        writer.write_str(&lift_report(&line))
    }
}

/// `line` (one JSON object and a newline) with the report's members moved
/// into `fields`; any line that is not shaped so is returned as it was.
pub fn lift_report(line: &str) -> String {
    // Most events carry no report: spare them the parse.
    if !line.contains(&format!("\"{LOG_REPORT_FIELD}\":")) {
        return line.to_owned();
    }
    let Ok(Value::Object(mut event)) = serde_json::from_str::<Value>(line) else {
        return line.to_owned();
    };
    let Some(Value::Object(fields)) = event.get_mut("fields") else {
        return line.to_owned();
    };
    let Some(Value::String(text)) = fields.get(LOG_REPORT_FIELD) else {
        return line.to_owned();
    };
    let Ok(Value::Object(report)) = serde_json::from_str::<Value>(text) else {
        return line.to_owned();
    };
    fields.remove(LOG_REPORT_FIELD);
    merge_missing(fields, report);
    match serde_json::to_string(&event) {
        Ok(mut s) => {
            s.push('\n');
            s
        }
        Err(_) => line.to_owned(),
    }
}

fn merge_missing(fields: &mut Map<String, Value>, report: Map<String, Value>) {
    for (k, v) in report {
        fields.entry(k).or_insert(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_becomes_typed_fields_and_the_event_s_own_fields_win() {
        let report = serde_json::json!({
            "backup_id": null, "reasons": [], "outcome": "success", "stored_bytes": 3
        })
        .to_string();
        let line = serde_json::json!({
            "level": "INFO",
            "fields": { "message": "restore drill skipped", "outcome": "skipped", "report": report },
        })
        .to_string()
            + "\n";
        let out: Value = serde_json::from_str(&lift_report(&line)).unwrap();
        let f = &out["fields"];
        assert_eq!(f["backup_id"], Value::Null);
        assert_eq!(f["reasons"], serde_json::json!([]));
        assert_eq!(f["stored_bytes"], 3);
        assert_eq!(f["outcome"], "skipped");
        assert!(f.get("report").is_none(), "{f}");
        assert!(lift_report(&line).ends_with('\n'));
    }

    #[test]
    fn other_lines_pass_unchanged() {
        for line in [
            "not json\n",
            "{\"fields\":{\"message\":\"hi\"}}\n",
            "{\"fields\":{\"report\":\"plain words\"}}\n",
            "{\"fields\":{\"report\":\"[1,2]\"}}\n",
        ] {
            assert_eq!(lift_report(line), line);
        }
    }
}

//! Generic webhooks: the run report as JSON, POSTed.

use std::time::Duration;

use serde::Serialize;

use super::{log_http, Event, Start};
use crate::backup::report::Report;
use crate::secret::Secret;

/// The body: `event` says which, the rest is the report's own fields.
/// `bytes` and `time` are the names of the previous release (stored bytes,
/// start time), kept for one release.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Body<'a> {
    Start {
        event: &'static str,
        #[serde(flatten)]
        start: &'a Start,
    },
    Finish {
        event: &'static str,
        #[serde(flatten)]
        report: &'a Report,
        bytes: u64,
        time: &'a str,
    },
}

fn body(event: Event<'_>) -> Body<'_> {
    match event {
        Event::Start(start) => Body::Start {
            event: "start",
            start,
        },
        Event::Finish(report) => Body::Finish {
            event: "finish",
            report,
            bytes: report.stored_bytes,
            time: &report.started_at,
        },
    }
}

pub(super) async fn send(
    client: &reqwest::Client,
    url: &Secret,
    event: Event<'_>,
    timeout: Duration,
) {
    let body = match serde_json::to_vec(&body(event)) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode the webhook notification");
            return;
        }
    };
    let r = client
        .post(url.expose())
        .header("content-type", "application/json")
        .timeout(timeout)
        .body(body)
        .send()
        .await;
    log_http("webhook", url, r);
}

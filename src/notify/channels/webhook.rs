//! Generic webhooks: the run report as JSON, POSTed.

use std::time::Duration;

use serde::Serialize;

use super::url_channel::post_json;
use crate::backup::report::Report;
use crate::notify::channel::Role;
use crate::notify::{Event, Start};
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

async fn send(client: &reqwest::Client, url: &Secret, event: Event<'_>, timeout: Duration) {
    let body = match serde_json::to_vec(&body(event)) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode the webhook notification");
            return;
        }
    };
    post_json(client, "webhook", url, body, timeout).await;
}

url_channel!(
    /// One webhook URL of a `notify` block.
    Webhook,
    "webhook",
    Role::Messenger
);

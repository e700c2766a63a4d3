//! Slack-compatible incoming webhooks (Slack, Mattermost, Rocket.Chat):
//! `{"text": ...}` a person can read.

use super::{log_http, truncate, Event, MAX_BODY};
use std::time::Duration;

use crate::secret::Secret;

pub(super) fn text(event: Event<'_>) -> String {
    match event {
        Event::Start(s) => format!(
            "ccbackup job {} started on {} at {} (run ID {})",
            s.job, s.host, s.started_at, s.run_id
        ),
        Event::Finish(r) => truncate(&r.text(), MAX_BODY),
    }
}

pub(super) async fn send(
    client: &reqwest::Client,
    url: &Secret,
    event: Event<'_>,
    timeout: Duration,
) {
    let body = serde_json::json!({ "text": text(event) }).to_string();
    let r = client
        .post(url.expose())
        .header("content-type", "application/json")
        .timeout(timeout)
        .body(body)
        .send()
        .await;
    log_http("slack", url, r);
}

//! Slack-compatible incoming webhooks (Slack, Mattermost, Rocket.Chat):
//! `{"text": ...}` a person can read.

use super::url_channel::post_json;
use crate::notify::channel::Role;
use crate::notify::{truncate, Event, MAX_BODY};
use std::time::Duration;

use crate::secret::Secret;

pub(in crate::notify) fn text(event: Event<'_>) -> String {
    match event {
        Event::Start(s) => format!(
            "ccbackup job {} started on {} at {} (run ID {})",
            s.job, s.host, s.started_at, s.run_id
        ),
        Event::Finish(r) => truncate(&r.text(), MAX_BODY),
    }
}

async fn send(client: &reqwest::Client, url: &Secret, event: Event<'_>, timeout: Duration) {
    let body = serde_json::json!({ "text": text(event) }).to_string();
    post_json(client, "slack", url, body, timeout).await;
}

url_channel!(
    /// One slack URL of a `notify` block.
    Slack,
    "slack",
    Role::Messenger
);

//! Slack-compatible incoming webhooks (Slack, Mattermost, Rocket.Chat):
//! `{"text": ...}` a person can read.

use std::any::Any;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::notify::channel::{url_endpoint, Channel, Role};
use crate::notify::redact;

use crate::notify::{log_http, truncate, Event, MAX_BODY};
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
    let r = client
        .post(url.expose())
        .header("content-type", "application/json")
        .timeout(timeout)
        .body(body)
        .send()
        .await;
    log_http("slack", url, r);
}

/// One slack URL of a `notify` block.
pub(in crate::notify) struct Slack {
    url: Secret,
}

impl Slack {
    pub(in crate::notify) fn new(url: &Secret) -> Arc<Slack> {
        Arc::new(Slack { url: url.clone() })
    }
}

impl Channel for Slack {
    fn kind(&self) -> &'static str {
        "slack"
    }

    fn target(&self) -> String {
        redact(&self.url)
    }

    fn role(&self) -> Role {
        Role::Messenger
    }

    fn endpoint(&self) -> Option<(String, u16)> {
        url_endpoint(self.url.expose())
    }

    fn same_destination(&self, other: &dyn Channel) -> bool {
        other
            .as_any()
            .downcast_ref::<Slack>()
            .is_some_and(|o| o.url.expose() == self.url.expose())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn send<'a>(
        &'a self,
        client: &'a reqwest::Client,
        event: Event<'a>,
        timeout: Duration,
    ) -> BoxFuture<'a, ()> {
        send(client, &self.url, event, timeout).boxed()
    }
}

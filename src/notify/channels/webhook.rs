//! Generic webhooks: the run report as JSON, POSTed.

use std::any::Any;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::notify::channel::{url_endpoint, Channel, Role};
use crate::notify::redact;

use std::time::Duration;

use serde::Serialize;

use crate::backup::report::Report;
use crate::notify::{log_http, Event, Start};
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
    let r = client
        .post(url.expose())
        .header("content-type", "application/json")
        .timeout(timeout)
        .body(body)
        .send()
        .await;
    log_http("webhook", url, r);
}

/// One webhook URL of a `notify` block.
pub(in crate::notify) struct Webhook {
    url: Secret,
}

impl Webhook {
    pub(in crate::notify) fn new(url: &Secret) -> Arc<Webhook> {
        Arc::new(Webhook { url: url.clone() })
    }
}

impl Channel for Webhook {
    fn kind(&self) -> &'static str {
        "webhook"
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
            .downcast_ref::<Webhook>()
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

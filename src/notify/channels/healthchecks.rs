//! The healthchecks.io ping protocol (also self-hosted healthchecks and
//! compatible monitors): `URL/start` when a run begins, `URL` after a
//! success, `URL/fail` after anything else, each with `rid=<run ID>` so the
//! monitor pairs start and end and measures the run. Locked, cancelled
//! and suspicious runs ping `/fail`: the scheduled backup did not happen
//! or needs a look, and a monitor must never count that as a success.

use std::any::Any;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::notify::channel::{url_endpoint, Channel, Role};
use crate::notify::redact;

use crate::notify::{log_http, truncate, Event, MAX_BODY};
use std::time::Duration;

use crate::secret::Secret;

/// The ping URL for `event`: the check's URL with `/start` or `/fail`
/// appended to its path and the run ID as `rid`.
pub(in crate::notify) fn ping_url(base: &str, event: Event<'_>) -> Option<url::Url> {
    let mut u = url::Url::parse(base).ok()?;
    let (suffix, rid) = match event {
        Event::Start(s) => (Some("start"), &s.run_id),
        Event::Finish(r) if r.outcome.is_success() => (None, &r.run_id),
        Event::Finish(r) => (Some("fail"), &r.run_id),
    };
    if let Some(s) = suffix {
        u.path_segments_mut().ok()?.pop_if_empty().push(s);
    }
    u.query_pairs_mut().append_pair("rid", rid);
    Some(u)
}

async fn send(client: &reqwest::Client, url: &Secret, event: Event<'_>, timeout: Duration) {
    let Some(ping) = ping_url(url.expose(), event) else {
        tracing::warn!(channel = "healthchecks", "cannot build the ping URL");
        return;
    };
    let body = match event {
        Event::Start(_) => String::new(),
        Event::Finish(r) => truncate(&r.text(), MAX_BODY),
    };
    let r = client
        .post(ping)
        .header("content-type", "text/plain; charset=utf-8")
        .timeout(timeout)
        .body(body)
        .send()
        .await;
    log_http("healthchecks", url, r);
}

/// One healthchecks URL of a `notify` block.
pub(in crate::notify) struct Healthchecks {
    url: Secret,
}

impl Healthchecks {
    pub(in crate::notify) fn new(url: &Secret) -> Arc<Healthchecks> {
        Arc::new(Healthchecks { url: url.clone() })
    }
}

impl Channel for Healthchecks {
    fn kind(&self) -> &'static str {
        "healthchecks"
    }

    fn target(&self) -> String {
        redact(&self.url)
    }

    fn role(&self) -> Role {
        Role::Monitor
    }

    fn endpoint(&self) -> Option<(String, u16)> {
        url_endpoint(self.url.expose())
    }

    fn same_destination(&self, other: &dyn Channel) -> bool {
        other
            .as_any()
            .downcast_ref::<Healthchecks>()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Start;

    #[test]
    fn suffixes_go_on_the_path_and_the_run_id_in_the_query() {
        let s = Start {
            run_id: "r1".into(),
            job: "j".into(),
            host: "h".into(),
            started_at: "t".into(),
        };
        let u = ping_url("https://hc.example/ping/abc/", Event::Start(&s)).unwrap();
        assert_eq!(u.as_str(), "https://hc.example/ping/abc/start?rid=r1");
        let u = ping_url(
            "https://hc.example/ping/key/slug?create=1",
            Event::Start(&s),
        )
        .unwrap();
        assert_eq!(
            u.as_str(),
            "https://hc.example/ping/key/slug/start?create=1&rid=r1"
        );
    }
}

//! The healthchecks.io ping protocol (also self-hosted healthchecks and
//! compatible monitors): `URL/start` when a run begins, `URL` after a
//! success, `URL/fail` after anything else, each with `rid=<run ID>` so the
//! monitor pairs start and end and measures the run. Locked, cancelled
//! and suspicious runs ping `/fail`: the scheduled backup did not happen
//! or needs a look, and a monitor must never count that as a success.

use super::url_channel::post;
use crate::notify::channel::Role;
use crate::notify::{truncate, Event, MAX_BODY};
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
    post(
        client,
        "healthchecks",
        url,
        ping.as_str(),
        "text/plain; charset=utf-8",
        body,
        timeout,
    )
    .await;
}

url_channel!(
    /// One healthchecks URL of a `notify` block.
    Healthchecks,
    "healthchecks",
    Role::Monitor
);

//! Notifications about runs: generic webhooks, healthchecks.io pings,
//! Slack-compatible incoming webhooks and email, one file per channel.
//!
//! `run-now` and the daemon call the same two functions: [`begin`] when a
//! run starts (before any retry) and [`Pending::finish`] with the run's
//! [`Report`]. Which channels an event reaches: the job's `notify` block
//! first, then the global one, duplicates removed. healthchecks URLs get
//! every event (the monitor needs the start and the success ping to see a
//! missing run); webhooks, Slack and email get every non-success outcome,
//! and `start` / `success` only when their block lists them in `on`.
//!
//! Notification trouble never fails a run: every call has [`TIMEOUT`],
//! start notifications run alongside the run, and errors are only logged,
//! with URLs reduced to scheme and host (they carry tokens and check UUIDs).

mod email;
mod healthchecks;
mod slack;
mod webhook;

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::Serialize;

use crate::backup::report::{self, Report};
use crate::config::{Config, EmailConfig, JobConfig, Notify};
use crate::error::chain;
use crate::secret::Secret;

/// One notification may take this long, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// healthchecks and Slack show a few KB at most; errors can be long
/// (a pg_dump stderr tail), so bodies are cut to this many bytes.
pub const MAX_BODY: usize = 4000;

/// The start of a run, before anything is known about how it ends.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Start {
    pub run_id: String,
    pub job: String,
    pub host: String,
    /// RFC 3339, UTC.
    pub started_at: String,
}

impl Start {
    pub fn new(run_id: &str, job: &str, started_at: DateTime<Utc>) -> Start {
        Start {
            run_id: run_id.to_owned(),
            job: job.to_owned(),
            host: crate::sys::hostname(),
            started_at: report::rfc3339(started_at),
        }
    }
}

/// What is being notified.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    Start(&'a Start),
    Finish(&'a Report),
}

impl Event<'_> {
    fn wanted_by(&self, n: &Notify) -> bool {
        match self {
            Event::Start(_) => n.on.start,
            Event::Finish(r) => !r.outcome.is_success() || n.on.success,
        }
    }
}

/// The channels one event goes to, owned so a start notification can run
/// in its own task.
#[derive(Debug, Default, Clone)]
pub struct Targets {
    pub webhooks: Vec<Secret>,
    pub healthchecks: Vec<Secret>,
    pub slack: Vec<Secret>,
    pub email: Vec<EmailConfig>,
}

fn push_new(out: &mut Vec<Secret>, from: &[Secret]) {
    for url in from {
        if !out.iter().any(|u| u.expose() == url.expose()) {
            out.push(url.clone());
        }
    }
}

/// The job's block first, then the global one, duplicates removed.
pub fn targets(cfg: &Config, job: &JobConfig, event: Event<'_>) -> Targets {
    let mut t = Targets::default();
    for n in [&job.notify, &cfg.notify] {
        push_new(&mut t.healthchecks, &n.healthchecks);
        if !event.wanted_by(n) {
            continue;
        }
        push_new(&mut t.webhooks, &n.webhooks);
        push_new(&mut t.slack, &n.slack);
        if let Some(e) = &n.email {
            if !t.email.iter().any(|o| o.same_destination(e)) {
                t.email.push(e.clone());
            }
        }
    }
    t
}

/// Every channel of the configuration (global and every job's), for an
/// event about the daemon itself rather than one job.
pub fn targets_everywhere(cfg: &Config, event: Event<'_>) -> Targets {
    let mut t = Targets::default();
    for n in std::iter::once(&cfg.notify).chain(cfg.jobs.iter().map(|j| &j.notify)) {
        push_new(&mut t.healthchecks, &n.healthchecks);
        if !event.wanted_by(n) {
            continue;
        }
        push_new(&mut t.webhooks, &n.webhooks);
        push_new(&mut t.slack, &n.slack);
        if let Some(e) = &n.email {
            if !t.email.iter().any(|o| o.same_destination(e)) {
                t.email.push(e.clone());
            }
        }
    }
    t
}

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.webhooks.is_empty()
            && self.healthchecks.is_empty()
            && self.slack.is_empty()
            && self.email.is_empty()
    }
}

/// Sends `event` to every target at once, each call bounded by
/// [`TIMEOUT`]. Never fails; problems are logged.
pub async fn send(client: &reqwest::Client, targets: &Targets, event: Event<'_>) {
    // (channel, redacted target, call)
    let mut calls: Vec<(&str, String, BoxFuture<'_, ()>)> = Vec::new();
    for url in &targets.webhooks {
        calls.push((
            "webhook",
            redact(url),
            webhook::send(client, url, event).boxed(),
        ));
    }
    for url in &targets.healthchecks {
        calls.push((
            "healthchecks",
            redact(url),
            healthchecks::send(client, url, event).boxed(),
        ));
    }
    for url in &targets.slack {
        calls.push((
            "slack",
            redact(url),
            slack::send(client, url, event).boxed(),
        ));
    }
    for mail in &targets.email {
        calls.push((
            "email",
            email::target(mail),
            email::send(mail, event).boxed(),
        ));
    }
    let bounded = calls.into_iter().map(|(channel, target, call)| async move {
        // The channels' own timeouts bound each network operation; this
        // bounds the whole exchange (an SMTP dialogue is several).
        if tokio::time::timeout(TIMEOUT, call).await.is_err() {
            tracing::warn!(channel, target = %target, timeout_s = TIMEOUT.as_secs(), "notification did not finish in time; abandoned");
        }
    });
    futures::future::join_all(bounded).await;
}

/// The start notification of a run, running alongside it.
pub struct Pending {
    client: reqwest::Client,
    start: Option<tokio::task::JoinHandle<()>>,
}

/// Announces a run (healthchecks `/start`, and `on: [start]` channels)
/// without delaying it: the calls run in their own task.
pub fn begin(client: &reqwest::Client, cfg: &Config, job: &JobConfig, start: Start) -> Pending {
    let t = targets(cfg, job, Event::Start(&start));
    let task = (!t.is_empty()).then(|| {
        let client = client.clone();
        tokio::spawn(async move { send(&client, &t, Event::Start(&start)).await })
    });
    Pending {
        client: client.clone(),
        start: task,
    }
}

impl Pending {
    /// Sends the report of the finished run, after the start notification
    /// is through, so monitors see start before the end.
    pub async fn finish(self, cfg: &Config, job: &JobConfig, report: &Report) {
        if let Some(task) = self.start {
            let _ = task.await;
        }
        let t = targets(cfg, job, Event::Finish(report));
        send(&self.client, &t, Event::Finish(report)).await;
    }
}

/// Scheme and host of a URL: enough to tell which one failed.
pub fn redact(url: &Secret) -> String {
    match url::Url::parse(url.expose()) {
        Ok(u) => format!(
            "{}://{}/<redacted>",
            u.scheme(),
            u.host_str().unwrap_or("?")
        ),
        Err(_) => "<unparsable url>".to_owned(),
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary, saying so.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    const MARK: &str = "\n[truncated]";
    let mut end = max.saturating_sub(MARK.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &s[..end])
}

/// Logs the fate of one HTTP notification.
fn log_http(channel: &str, url: &Secret, r: Result<reqwest::Response, reqwest::Error>) {
    let target = redact(url);
    match r {
        Ok(resp) if resp.status().is_success() => {
            tracing::debug!(channel, target = %target, "notification sent");
        }
        Ok(resp) => {
            tracing::warn!(channel, target = %target, status = resp.status().as_u16(), "notification rejected");
        }
        Err(e) => {
            // reqwest errors embed the full URL: strip it.
            let e = e.without_url();
            tracing::warn!(channel, target = %target, error = %chain(&e), "could not send notification");
        }
    }
}

/// A client for HTTP notifications (rustls, proxies from the env).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_keeps_only_scheme_and_host() {
        let s = Secret::new("https://hooks.example.com/services/T000/B000/XXXXSECRET?token=abc");
        let r = redact(&s);
        assert_eq!(r, "https://hooks.example.com/<redacted>");
        assert!(!r.contains("SECRET") && !r.contains("abc"));
    }

    #[test]
    fn truncation_respects_the_limit_and_characters() {
        let s = "é".repeat(3000);
        let t = truncate(&s, MAX_BODY);
        assert!(t.len() <= MAX_BODY && t.ends_with("[truncated]"));
        assert_eq!(truncate("short", MAX_BODY), "short");
    }
}

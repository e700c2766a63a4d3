//! Notifications about runs: generic webhooks, healthchecks.io pings,
//! Slack-compatible incoming webhooks and email, one file per channel in
//! `channels/`, each implementing [`Channel`].
//!
//! `run-now` and the daemon call the same two functions: [`begin`] when a
//! run starts (before any retry) and [`Pending::finish`] with the run's
//! [`Report`]. Which channels an event reaches: the job's `notify` block
//! first, then the global one, duplicates removed. healthchecks URLs get
//! every event (the monitor needs the start and the success ping to see a
//! missing run); webhooks, Slack and email get every non-success outcome,
//! and `start` / `success` only when their block lists them in `on`.
//!
//! Notification trouble never fails a run: every call is bounded by the
//! block's `timeout` ([`TIMEOUT`] unless configured), start notifications
//! run alongside the run, and errors are only logged, with URLs reduced to
//! scheme and host (they carry tokens and check UUIDs).

mod channel;
mod channels;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use self::channel::{Channel, Role};
use crate::backup::report::{self, Report};
use crate::config::{Config, JobConfig, Notify};
use crate::error::chain;
use crate::secret::Secret;

/// One notification may take this long, connection included, unless the
/// configuration's `notify.timeout` says otherwise.
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
    /// Whether `channel`, configured in block `n`, gets this event.
    fn reaches(&self, channel: &dyn Channel, n: &Notify) -> bool {
        match (channel.role(), self) {
            (Role::Monitor, _) => true,
            (Role::Messenger, Event::Start(_)) => n.on.start,
            (Role::Messenger, Event::Finish(r)) => !r.outcome.is_success() || n.on.success,
        }
    }
}

/// The channels one event goes to, owned so a start notification can run
/// in its own task.
#[derive(Debug, Clone)]
pub struct Targets {
    pub channels: Vec<Arc<dyn Channel>>,
    /// Bound of each call, connection included.
    pub timeout: Duration,
}

impl Default for Targets {
    fn default() -> Self {
        Targets {
            channels: Vec::new(),
            timeout: TIMEOUT,
        }
    }
}

/// The first block that sets `timeout` decides; none does: [`TIMEOUT`].
fn timeout_of<'a>(blocks: impl IntoIterator<Item = &'a Notify>) -> Duration {
    blocks
        .into_iter()
        .find_map(|n| n.timeout)
        .unwrap_or(TIMEOUT)
}

/// How long one notification about `job` may take: the job's `notify.timeout`,
/// else the global one, else [`TIMEOUT`].
pub fn timeout(cfg: &Config, job: &JobConfig) -> Duration {
    timeout_of([&job.notify, &cfg.notify])
}

/// Every destination of `blocks`, in order, each once: a later block naming
/// a destination an earlier one has adds nothing.
pub fn destinations<'a>(blocks: impl IntoIterator<Item = &'a Notify>) -> Vec<Arc<dyn Channel>> {
    let mut out = Vec::new();
    for n in blocks {
        push_new(&mut out, channels::channels(n));
    }
    out
}

fn push_new(out: &mut Vec<Arc<dyn Channel>>, from: Vec<Arc<dyn Channel>>) {
    for c in from {
        if !out.iter().any(|o| o.same_destination(c.as_ref())) {
            out.push(c);
        }
    }
}

/// The channels of `blocks` that `event` reaches, each once.
fn chosen<'a>(
    blocks: impl IntoIterator<Item = &'a Notify>,
    event: Event<'_>,
) -> Vec<Arc<dyn Channel>> {
    let mut out = Vec::new();
    for n in blocks {
        let wanted = channels::channels(n)
            .into_iter()
            .filter(|c| event.reaches(c.as_ref(), n))
            .collect();
        push_new(&mut out, wanted);
    }
    out
}

/// The job's block first, then the global one, duplicates removed.
pub fn targets(cfg: &Config, job: &JobConfig, event: Event<'_>) -> Targets {
    Targets {
        channels: chosen([&job.notify, &cfg.notify], event),
        timeout: timeout(cfg, job),
    }
}

/// Every channel of the configuration (global and every job's), for an
/// event about the daemon itself rather than one job. No job is involved,
/// so the global block's `timeout` bounds every call.
pub fn targets_everywhere(cfg: &Config, event: Event<'_>) -> Targets {
    let blocks = std::iter::once(&cfg.notify).chain(cfg.jobs.iter().map(|j| &j.notify));
    Targets {
        channels: chosen(blocks, event),
        timeout: timeout_of([&cfg.notify]),
    }
}

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }
}

/// Sends `event` to every target at once, each call bounded by
/// `targets.timeout`. Never fails; problems are logged.
pub async fn send(client: &reqwest::Client, targets: &Targets, event: Event<'_>) {
    let timeout = targets.timeout;
    let bounded = targets.channels.iter().map(|c| async move {
        // The channels' own timeouts bound each network operation; this
        // bounds the whole exchange (an SMTP dialogue is several).
        if tokio::time::timeout(timeout, c.send(client, event, timeout))
            .await
            .is_err()
        {
            tracing::warn!(channel = c.kind(), target = %c.target(), timeout_s = timeout.as_secs_f64(), "notification did not finish in time; abandoned");
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

/// A client for HTTP notifications (rustls, proxies from the env). Its
/// timeout is the default; each request sets the configured one.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(global: &str, job: &str) -> Config {
        let text = format!(
            "store:\n  url: file:///tmp/x\nnotify:\n  healthchecks: [\"http://hc/a\"]\n{global}jobs:\n  - name: j\n    notify:\n      slack: [\"http://s/b\"]\n{job}    sources:\n      - name: e\n        files: {{path: /tmp}}\n"
        );
        crate::config::parse(&text, std::path::Path::new("c.yaml")).unwrap()
    }

    fn start() -> Start {
        Start::new("r", "j", Utc::now())
    }

    #[test]
    fn the_timeout_is_the_jobs_then_the_global_then_ten_seconds() {
        let s = start();
        let at = |c: &Config| targets(c, &c.jobs[0], Event::Start(&s)).timeout;
        assert_eq!(TIMEOUT, Duration::from_secs(10));
        assert_eq!(at(&config("", "")), TIMEOUT);
        assert_eq!(Targets::default().timeout, TIMEOUT);
        let c = config("  timeout: 3s\n", "");
        assert_eq!(at(&c), Duration::from_secs(3));
        let c = config("  timeout: 3s\n", "      timeout: 1m\n");
        assert_eq!(at(&c), Duration::from_secs(60));
        assert_eq!(timeout(&c, &c.jobs[0]), Duration::from_secs(60));
        // Daemon-wide events have no job: the global block decides.
        let e = targets_everywhere(&c, Event::Start(&s));
        assert_eq!(e.timeout, Duration::from_secs(3));
        let c = config("", "      timeout: 1m\n");
        assert_eq!(targets_everywhere(&c, Event::Start(&s)).timeout, TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_target_is_abandoned_after_the_timeout() {
        // Accepts the connection and never answers.
        let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = hole.local_addr().unwrap();
        let keep = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = hole.accept().await {
                held.push(s);
            }
        });
        let t = Targets {
            channels: destinations([&Notify {
                healthchecks: vec![Secret::new(format!("http://{addr}/ping/x"))],
                ..Notify::default()
            }]),
            timeout: Duration::from_secs(7),
        };
        let s = start();
        let before = tokio::time::Instant::now();
        send(&client(), &t, Event::Start(&s)).await;
        // Paused time: the only way forward is a timer firing, so the call
        // ended when the configured bound did, not the default one.
        let took = before.elapsed();
        assert!(took >= Duration::from_secs(7) && took < TIMEOUT, "{took:?}");
        keep.abort();
    }

    fn kinds(t: &Targets) -> Vec<String> {
        t.channels.iter().map(|c| format!("{c:?}")).collect()
    }

    #[test]
    fn each_destination_is_notified_once_and_monitors_get_every_event() {
        // The job names the global healthchecks URL again, and the same URL
        // as a webhook: a kind's duplicate goes, another kind's stays.
        let c = config(
            "",
            "      healthchecks: [\"http://hc/a\"]\n      webhooks: [\"http://hc/a\"]\n",
        );
        let s = start();
        let t = targets(&c, &c.jobs[0], Event::Start(&s));
        // `on` lists no start: only the monitor hears of it.
        assert_eq!(kinds(&t), ["healthchecks http://hc/<redacted>"]);
        let c = config(
            "",
            "      healthchecks: [\"http://hc/a\"]\n      webhooks: [\"http://hc/a\"]\n      on: [start]\n",
        );
        let t = targets(&c, &c.jobs[0], Event::Start(&s));
        assert_eq!(
            kinds(&t),
            [
                "webhook http://hc/<redacted>",
                "healthchecks http://hc/<redacted>",
                "slack http://s/<redacted>",
            ]
        );
        let every = targets_everywhere(&c, Event::Start(&s));
        assert_eq!(every.channels.len(), 3);
    }

    #[test]
    fn a_channels_debug_shows_no_secret() {
        let n = Notify {
            webhooks: vec![Secret::new("https://h.example/T0KEN")],
            ..Notify::default()
        };
        let shown = format!("{:?}", destinations([&n]));
        assert!(
            shown.contains("webhook https://h.example/<redacted>"),
            "{shown}"
        );
        assert!(!shown.contains("T0KEN"), "{shown}");
    }

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

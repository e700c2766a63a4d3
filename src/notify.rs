//! Webhook notifications after a run.
//!
//! Every webhook of the job plus every global one receives a JSON POST on
//! failure, and on success when `on_success` is set (either list's flag).
//! Notification trouble never fails a run: each call has a timeout and
//! errors are only logged, with the URL reduced to scheme and host because
//! webhook URLs often carry tokens in their path or query.

use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, JobConfig};
use crate::secret::Secret;

/// One webhook call may take this long, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The JSON body posted to webhooks.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    pub job: String,
    pub backup_id: Option<String>,
    /// `success`, `failure`, `locked` or `cancelled`.
    pub outcome: String,
    pub error: Option<String>,
    pub duration_seconds: f64,
    pub bytes: u64,
    pub host: String,
    /// RFC 3339, UTC.
    pub time: String,
}

impl Event {
    pub fn is_success(&self) -> bool {
        self.outcome == "success"
    }
}

/// The webhooks an event for `job` goes to (job's own first, duplicates
/// removed), honouring the success switches.
pub fn targets<'a>(cfg: &'a Config, job: &'a JobConfig, success: bool) -> Vec<&'a Secret> {
    let mut out: Vec<&Secret> = Vec::new();
    for n in [&job.notify, &cfg.notify] {
        if success && !n.on_success {
            continue;
        }
        for url in &n.webhooks {
            if !out.iter().any(|u| u.expose() == url.expose()) {
                out.push(url);
            }
        }
    }
    out
}

/// Scheme and host of a webhook URL: enough to tell which one failed.
pub fn redact(url: &Secret) -> String {
    match url::Url::parse(url.expose()) {
        Ok(u) => format!(
            "{}://{}/<redacted>",
            u.scheme(),
            u.host_str().unwrap_or("?")
        ),
        Err(_) => "<unparsable webhook url>".to_owned(),
    }
}

/// Sends `event` to the job's and the global webhooks. Never fails.
pub async fn send(client: &reqwest::Client, cfg: &Config, job: &JobConfig, event: &Event) {
    let urls = targets(cfg, job, event.is_success());
    if urls.is_empty() {
        return;
    }
    let body = match serde_json::to_vec(event) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode notification");
            return;
        }
    };
    let calls = urls.into_iter().map(|url| {
        let body = body.clone();
        async move {
            let r = client
                .post(url.expose())
                .header("content-type", "application/json")
                .timeout(TIMEOUT)
                .body(body)
                .send()
                .await;
            let target = redact(url);
            match r {
                Ok(resp) if resp.status().is_success() => {
                    tracing::debug!(webhook = %target, "notification sent");
                }
                Ok(resp) => {
                    tracing::warn!(webhook = %target, status = resp.status().as_u16(), "webhook rejected the notification");
                }
                Err(e) => {
                    // reqwest errors embed the full URL: strip it.
                    let e = e.without_url();
                    tracing::warn!(webhook = %target, error = %e, "could not send notification");
                }
            }
        }
    });
    futures::future::join_all(calls).await;
}

/// A client for webhooks (rustls, no proxy surprises beyond the env).
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
}

//! Notification endpoints: each one reachable (a TCP connection to its host
//! and port, nothing sent). With `--notify-test`, webhooks, Slack and email
//! also get a start event; healthchecks never do, since a ping changes the
//! check's state.

use super::{bounded, timed_out, About, Check, Options};
use crate::config::{Config, JobConfig};
use crate::notify::{self, Event, Start, Targets};
use crate::secret::Secret;

pub(super) async fn check(cfg: &Config, job: &JobConfig, opts: Options) -> Vec<Check> {
    let mut out = Vec::new();
    let about = About::new(&job.name, "notify");
    let mut urls: Vec<(&str, &Secret)> = Vec::new();
    for n in [&job.notify, &cfg.notify] {
        for (kind, list) in [
            ("webhook", &n.webhooks),
            ("healthchecks", &n.healthchecks),
            ("slack", &n.slack),
        ] {
            for u in list {
                if !urls.iter().any(|(_, o)| o.expose() == u.expose()) {
                    urls.push((kind, u));
                }
            }
        }
    }
    for (kind, url) in &urls {
        let shown = notify::redact(url);
        let check = format!("{kind} {shown}");
        let Some((host, port)) = url::Url::parse(url.expose())
            .ok()
            .and_then(|u| Some((u.host_str()?.to_owned(), u.port_or_known_default()?)))
        else {
            out.push(about.fail(&check, "not a URL with a host", "correct the URL"));
            continue;
        };
        out.push(reach(&about, &check, &host, port).await);
    }
    for n in [&job.notify, &cfg.notify] {
        if let Some(e) = &n.email {
            let check = format!("email {}:{}", e.server, e.port);
            out.push(reach(&about, &check, &e.server, e.port).await);
        }
    }
    if opts.notify_test {
        out.push(send_test(cfg, job, &about).await);
    }
    out
}

async fn reach(about: &About, check: &str, host: &str, port: u16) -> Check {
    match bounded(tokio::net::TcpStream::connect((host, port))).await {
        Some(Ok(_)) => about.ok(check, format!("{host}:{port} accepts connections")),
        Some(Err(e)) => about.fail(
            check,
            format!("{host}:{port}: {e}"),
            "check the URL, DNS, the network and any proxy between the sidecar and the endpoint",
        ),
        None => about.fail(check, timed_out(), "check the network and firewall"),
    }
}

async fn send_test(cfg: &Config, job: &JobConfig, about: &About) -> Check {
    let mut targets = Targets {
        timeout: notify::timeout(cfg, job),
        ..Targets::default()
    };
    for n in [&job.notify, &cfg.notify] {
        targets.webhooks.extend(n.webhooks.iter().cloned());
        targets.slack.extend(n.slack.iter().cloned());
        targets.email.extend(n.email.iter().cloned());
    }
    if targets.is_empty() {
        return about.info("test message", "no webhook, Slack or email to send to");
    }
    let start = Start::new("doctor-test", &job.name, chrono::Utc::now());
    notify::send(&notify::client(), &targets, Event::Start(&start)).await;
    about.ok(
        "test message",
        "a start event was sent to every webhook, Slack and email target (delivery problems are logged)",
    )
}

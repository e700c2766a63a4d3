//! Notification endpoints: each one reachable (a TCP connection to its host
//! and port, nothing sent). With `--notify-test`, webhooks, Slack and email
//! also get a start event; healthchecks never do, since a ping changes the
//! check's state.

use super::{bounded, timed_out, About, Check, Options};
use crate::config::{Config, JobConfig};
use crate::notify::{self, Event, Role, Start, Targets};

pub(super) async fn check(cfg: &Config, job: &JobConfig, opts: Options) -> Vec<Check> {
    let mut out = Vec::new();
    let about = About::new(&job.name, "notify");
    for channel in notify::destinations([&job.notify, &cfg.notify]) {
        let check = format!("{} {}", channel.kind(), channel.target());
        let Some((host, port)) = channel.endpoint() else {
            out.push(about.fail(&check, "not a URL with a host", "correct the URL"));
            continue;
        };
        out.push(reach(&about, &check, &host, port).await);
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
    // A monitor's state would change: only messengers get the test.
    let targets = Targets {
        channels: notify::destinations([&job.notify, &cfg.notify])
            .into_iter()
            .filter(|c| c.role() == Role::Messenger)
            .collect(),
        timeout: notify::timeout(cfg, job),
    };
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

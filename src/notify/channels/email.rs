//! Email over SMTP (lettre, tokio, rustls): on-premises sites often have a
//! mail relay and nothing else. Subject `[ccbackup] JOB: OUTCOME`.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::slack;
use crate::config::{EmailConfig, SmtpSecurity};
use crate::error::chain;
use crate::notify::channel::{Channel, Role};
use crate::notify::Event;

#[derive(Debug, thiserror::Error)]
enum MailError {
    #[error("invalid address `{addr}`")]
    Address {
        addr: String,
        source: lettre::address::AddressError,
    },
    #[error("cannot build the message")]
    Build(#[from] lettre::error::Error),
    #[error("SMTP")]
    Smtp(#[from] lettre::transport::smtp::Error),
}

fn mailbox(addr: &str) -> Result<Mailbox, MailError> {
    addr.parse().map_err(|source| MailError::Address {
        addr: addr.to_owned(),
        source,
    })
}

fn subject(event: Event<'_>) -> String {
    match event {
        Event::Start(s) => format!("[ccbackup] {}: started", s.job),
        Event::Finish(r) => format!("[ccbackup] {}", r.title()),
    }
}

fn body(event: Event<'_>) -> String {
    match event {
        Event::Finish(r) => r.text(),
        Event::Start(_) => slack::text(event),
    }
}

fn message(cfg: &EmailConfig, event: Event<'_>) -> Result<Message, MailError> {
    let mut b = Message::builder()
        .from(mailbox(&cfg.from)?)
        .subject(subject(event))
        .header(ContentType::TEXT_PLAIN);
    for to in &cfg.to {
        b = b.to(mailbox(to)?);
    }
    Ok(b.body(body(event))?)
}

fn transport(
    cfg: &EmailConfig,
    timeout: Duration,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
    let builder = match cfg.security {
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.server)?,
        SmtpSecurity::StartTls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.server)?
        }
        SmtpSecurity::Plain => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.server),
    };
    let mut builder = builder.port(cfg.port).timeout(Some(timeout));
    if let (Some(user), Some(pw)) = (&cfg.username, &cfg.password) {
        builder = builder.credentials(Credentials::new(user.clone(), pw.expose().to_owned()));
    }
    Ok(builder.build())
}

async fn deliver(cfg: &EmailConfig, event: Event<'_>, timeout: Duration) -> Result<(), MailError> {
    let msg = message(cfg, event)?;
    transport(cfg, timeout)?.send(msg).await?;
    Ok(())
}

/// The server and port say which relay failed; credentials never appear.
fn target(cfg: &EmailConfig) -> String {
    format!("smtp://{}:{}", cfg.server, cfg.port)
}

async fn send(cfg: &EmailConfig, event: Event<'_>, timeout: Duration) {
    let target = target(cfg);
    match deliver(cfg, event, timeout).await {
        Ok(()) => tracing::debug!(channel = "email", target = %target, "notification sent"),
        Err(e) => {
            tracing::warn!(channel = "email", target = %target, error = %chain(&e), "could not send notification")
        }
    }
}

/// The `email` block of a `notify` block.
pub(in crate::notify) struct Email {
    cfg: EmailConfig,
}

impl Email {
    pub(in crate::notify) fn new(cfg: &EmailConfig) -> Arc<Email> {
        Arc::new(Email { cfg: cfg.clone() })
    }
}

impl Channel for Email {
    fn kind(&self) -> &'static str {
        "email"
    }

    fn target(&self) -> String {
        target(&self.cfg)
    }

    fn role(&self) -> Role {
        Role::Messenger
    }

    fn endpoint(&self) -> Option<(String, u16)> {
        Some((self.cfg.server.clone(), self.cfg.port))
    }

    fn same_destination(&self, other: &dyn Channel) -> bool {
        other
            .as_any()
            .downcast_ref::<Email>()
            .is_some_and(|o| o.cfg.same_destination(&self.cfg))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn send<'a>(
        &'a self,
        _client: &'a reqwest::Client,
        event: Event<'a>,
        timeout: Duration,
    ) -> BoxFuture<'a, ()> {
        send(&self.cfg, event, timeout).boxed()
    }
}

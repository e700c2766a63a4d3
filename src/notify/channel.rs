//! The one interface every notification channel implements, so the rest of
//! `notify` (choosing targets, removing duplicates, bounding calls, logging)
//! and `doctor` never name a channel kind.

use std::any::Any;
use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;

use super::Event;

/// Which events a channel gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A monitor (healthchecks): every event, since it needs the start and
    /// the success to notice a missing run. It never gets a `doctor
    /// --notify-test` message, which would change the check's state.
    Monitor,
    /// A message to people (webhook, Slack, email): every non-success
    /// outcome, and start / success when the block's `on` lists them.
    Messenger,
}

/// One configured destination of one channel kind.
///
/// Implementations hold their secrets (URLs with tokens, SMTP passwords)
/// and must never show them: [`Channel::target`] is what logs and `doctor`
/// print, and `Debug` of a `dyn Channel` prints only kind and target.
pub trait Channel: Send + Sync + 'static {
    /// The channel's name in logs and `doctor` (`webhook`, `email`, ...).
    fn kind(&self) -> &'static str;

    /// Which destination this is, with every secret removed.
    fn target(&self) -> String;

    fn role(&self) -> Role;

    /// Host and port `doctor` tries to connect to; `None` when the
    /// configured destination has none (an unparsable URL).
    fn endpoint(&self) -> Option<(String, u16)>;

    /// Whether `other` reaches the same destination, so a job block and the
    /// global block naming one target notify it once.
    fn same_destination(&self, other: &dyn Channel) -> bool;

    /// For [`Channel::same_destination`]: compare with another of one's own
    /// kind.
    fn as_any(&self) -> &dyn Any;

    /// Delivers `event`. Each network operation is bounded by `timeout`
    /// (the caller also bounds the whole call by it). Never fails: the
    /// outcome is logged with [`Channel::target`], never the secret.
    fn send<'a>(
        &'a self,
        client: &'a reqwest::Client,
        event: Event<'a>,
        timeout: Duration,
    ) -> BoxFuture<'a, ()>;
}

impl fmt::Debug for dyn Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.target())
    }
}

/// Host and port of a URL, for [`Channel::endpoint`].
pub(super) fn url_endpoint(url: &str) -> Option<(String, u16)> {
    let u = url::Url::parse(url).ok()?;
    Some((u.host_str()?.to_owned(), u.port_or_known_default()?))
}

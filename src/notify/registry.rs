//! The single place that knows every channel kind: it turns a `notify`
//! block of the configuration into channels. Adding a channel means a file
//! implementing [`Channel`], one line here, and its key in the `notify`
//! block of the configuration.

use std::sync::Arc;

use super::channel::Channel;
use super::{email, healthchecks, slack, webhook};
use crate::config::Notify;

/// Every destination of one `notify` block, in the block's order of kinds.
pub(super) fn channels(n: &Notify) -> Vec<Arc<dyn Channel>> {
    let mut out: Vec<Arc<dyn Channel>> = Vec::new();
    out.extend(n.webhooks.iter().map(|u| webhook::Webhook::new(u) as _));
    out.extend(
        n.healthchecks
            .iter()
            .map(|u| healthchecks::Healthchecks::new(u) as _),
    );
    out.extend(n.slack.iter().map(|u| slack::Slack::new(u) as _));
    out.extend(n.email.iter().map(|e| email::Email::new(e) as _));
    out
}

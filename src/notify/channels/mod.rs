//! Every channel kind, one file each, and the registry: the single place
//! that turns a `notify` block of the configuration into channels. Adding a
//! channel means a file here implementing [`Channel`], its `mod` and one
//! line in [`channels`], and its key in the `notify` block of the
//! configuration.

#[macro_use]
mod url_channel;

mod email;
mod healthchecks;
mod slack;
mod webhook;

use std::sync::Arc;

use super::channel::Channel;
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

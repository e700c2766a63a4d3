//! What the channels that are one HTTP URL share: the POST with its log
//! line, and (by [`url_channel!`]) the struct holding the URL with its
//! `Channel` impl, whose methods differ only in the kind, the role and the
//! file's own `send`. One place, so a fix to redaction or same-destination
//! reaches every URL channel at once.

use std::time::Duration;

use crate::notify::log_http;
use crate::secret::Secret;

/// POSTs `body` to `to` and logs the outcome under `kind`, naming the
/// channel by its configured `url` (redacted), never by `to`, which may
/// carry the same secrets.
pub(super) async fn post(
    client: &reqwest::Client,
    kind: &'static str,
    url: &Secret,
    to: &str,
    content_type: &'static str,
    body: impl Into<reqwest::Body>,
    timeout: Duration,
) {
    let r = client
        .post(to)
        .header("content-type", content_type)
        .timeout(timeout)
        .body(body)
        .send()
        .await;
    log_http(kind, url, r);
}

/// Defines `$name`, one URL of a `notify` block, and its [`Channel`]
/// impl: `kind` is `$kind`, the role `$role`, and sending calls the
/// invoking file's `send(client, url, event, timeout)`.
///
/// [`Channel`]: crate::notify::channel::Channel
macro_rules! url_channel {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $role:expr) => {
        $(#[$doc])*
        pub(in crate::notify) struct $name {
            url: $crate::secret::Secret,
        }

        impl $name {
            pub(in crate::notify) fn new(url: &$crate::secret::Secret) -> ::std::sync::Arc<$name> {
                ::std::sync::Arc::new($name { url: url.clone() })
            }
        }

        impl $crate::notify::channel::Channel for $name {
            fn kind(&self) -> &'static str {
                $kind
            }

            fn target(&self) -> String {
                $crate::notify::redact(&self.url)
            }

            fn role(&self) -> $crate::notify::channel::Role {
                $role
            }

            fn endpoint(&self) -> Option<(String, u16)> {
                $crate::notify::channel::url_endpoint(self.url.expose())
            }

            fn same_destination(&self, other: &dyn $crate::notify::channel::Channel) -> bool {
                other
                    .as_any()
                    .downcast_ref::<$name>()
                    .is_some_and(|o| o.url.expose() == self.url.expose())
            }

            fn as_any(&self) -> &dyn ::std::any::Any {
                self
            }

            fn send<'a>(
                &'a self,
                client: &'a reqwest::Client,
                event: $crate::notify::Event<'a>,
                timeout: ::std::time::Duration,
            ) -> ::futures::future::BoxFuture<'a, ()> {
                ::futures::FutureExt::boxed(send(client, &self.url, event, timeout))
            }
        }
    };
}

/// [`post`]s a JSON `body` to the configured URL itself.
pub(super) async fn post_json(
    client: &reqwest::Client,
    kind: &'static str,
    url: &Secret,
    body: impl Into<reqwest::Body>,
    timeout: Duration,
) {
    post(
        client,
        kind,
        url,
        url.expose(),
        "application/json",
        body,
        timeout,
    )
    .await;
}

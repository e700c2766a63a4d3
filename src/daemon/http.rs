//! `/healthz`, `/readyz`, `/metrics` and the status page (`/`,
//! `/status.json`) over plain HTTP/1.1.
//!
//! A deliberately tiny server: a few GET (and HEAD) routes for a compose
//! healthcheck, a Prometheus scraper and an operator's browser on a private
//! network. A framework would add more code than it saves here.
//!
//! A stuck or hostile client must never make `/healthz` fail:
//! * one request per connection (`Connection: close`); the request head is
//!   capped at [`MAX_HEAD`] and must arrive within [`HEAD_TIMEOUT`]; the
//!   answer must be taken within [`WRITE_TIMEOUT`];
//! * at most [`MAX_CONNECTIONS`] connections are served at once, so idle
//!   clients cannot use up the process's file descriptors. When all slots
//!   are taken, a new connection is still accepted and the **oldest
//!   connection still sending its request head** is closed to make room. A
//!   real client (curl, wget, Prometheus) sends its head in one packet and
//!   so is never the oldest reader; idle or trickling clients are. Waiting
//!   instead (not accepting) would queue a healthcheck behind every idle
//!   client for up to a header timeout each. Only when every slot is busy
//!   writing an answer is the new connection closed at once.

use crate::error::chain;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use super::status::{self, Page};

pub const MAX_HEAD: usize = 8 * 1024;
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
pub const MAX_CONNECTIONS: usize = 64;
/// How long a new connection waits for an evicted one to let go of its slot.
const EVICT_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for health and metrics")]
pub struct BindError {
    pub addr: String,
    pub source: std::io::Error,
}

/// Binds `addr` (e.g. `0.0.0.0:9465`, or port 0 for any free port).
pub async fn bind(addr: &str) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError {
        addr: addr.to_owned(),
        source,
    })
}

/// Connection slots, and which connections may be evicted.
struct Slots {
    permits: Arc<Semaphore>,
    /// Connections still reading their request head, by accept order.
    reading: Mutex<BTreeMap<u64, CancellationToken>>,
}

impl Slots {
    fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            permits: Arc::new(Semaphore::new(max)),
            reading: Mutex::new(BTreeMap::new()),
        })
    }

    fn readers(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, CancellationToken>> {
        // The map stays consistent even if a holder panicked.
        self.reading.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection, evicting the oldest reader if all are
    /// taken; `None` when every slot is busy answering.
    async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Some(p);
        }
        let (_, victim) = self.readers().pop_first()?;
        victim.cancel();
        tokio::time::timeout(EVICT_WAIT, self.permits.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// Marks connection `id` as reading its head (evictable) until the
    /// returned guard is dropped.
    fn reading(self: &Arc<Self>, id: u64) -> Reading {
        let token = CancellationToken::new();
        self.readers().insert(id, token.clone());
        Reading {
            slots: self.clone(),
            id,
            evicted: token,
        }
    }
}

struct Reading {
    slots: Arc<Slots>,
    id: u64,
    evicted: CancellationToken,
}

impl Drop for Reading {
    fn drop(&mut self) {
        self.slots.readers().remove(&self.id);
    }
}

/// Serves until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    page: Arc<Page>,
    stop: CancellationToken,
) {
    let slots = Slots::new(MAX_CONNECTIONS);
    let mut next_id = 0u64;
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %chain(&e), "accepting an http connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(permit) = slots.admit().await else {
            tracing::debug!(%peer, "http connection closed: every slot is busy answering");
            continue;
        };
        next_id += 1;
        let reading = slots.reading(next_id);
        let metrics = metrics.clone();
        let page = page.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &metrics, &page, reading).await {
                tracing::debug!(%peer, error = %e, "http connection failed");
            }
            drop(permit);
        });
    }
}

/// One answer, before it is written.
struct Reply {
    status: u16,
    content_type: &'static str,
    /// Further header lines, each ending in CRLF.
    headers: &'static str,
    body: Vec<u8>,
}

/// The status page runs no script and loads nothing: a policy that forbids
/// both makes markup that slipped through escaping inert, and the page
/// cannot be framed by another site.
const PAGE_HEADERS: &str = "content-security-policy: default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\nx-content-type-options: nosniff\r\ncache-control: no-store\r\n";

impl Reply {
    fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            content_type: "text/plain",
            headers: "",
            body: body.as_bytes().to_vec(),
        }
    }
}

async fn handle(
    mut stream: TcpStream,
    metrics: &Metrics,
    page: &Page,
    reading: Reading,
) -> std::io::Result<()> {
    let head = tokio::select! {
        _ = reading.evicted.cancelled() => return Ok(()),
        r = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)) => match r {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        },
    };
    // Answering now: no longer the idle kind of connection.
    drop(reading);
    let (reply, head_only) = match head {
        None => (Reply::text(431, "request header too large\n"), false),
        Some(head) => route(&head, metrics, page),
    };
    match tokio::time::timeout(WRITE_TIMEOUT, respond(&mut stream, &reply, head_only)).await {
        Ok(r) => r,
        Err(_) => Ok(()),
    }
}

/// The reply to a request head, and whether to leave the body out (HEAD).
fn route(head: &str, metrics: &Metrics, page: &Page) -> (Reply, bool) {
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return (Reply::text(405, "method not allowed\n"), false),
    };
    let reply = match path {
        "/healthz" => Reply::text(200, "ok\n"),
        "/readyz" => {
            let r = metrics.readiness(metrics.now());
            let mut body = serde_json::to_vec_pretty(&r).unwrap_or_default();
            body.push(b'\n');
            Reply {
                status: if r.ready { 200 } else { 503 },
                content_type: "application/json",
                headers: "",
                body,
            }
        }
        "/metrics" => Reply {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            headers: "",
            body: metrics.render().into_bytes(),
        },
        "/" | "/status.json" => status_reply(path, metrics, page),
        _ => Reply::text(404, "not found\n"),
    };
    (reply, head_only)
}

/// The status page or its JSON, from memory only; 404 when
/// `daemon.status_page` is off.
fn status_reply(path: &str, metrics: &Metrics, page: &Page) -> Reply {
    let setup = page.setup();
    if !setup.enabled {
        return Reply::text(404, "not found (daemon.status_page is off)\n");
    }
    let view = status::view(metrics, &setup, metrics.now());
    if path == "/" {
        return Reply {
            status: 200,
            content_type: "text/html; charset=utf-8",
            headers: PAGE_HEADERS,
            body: status::html::render(&view).into_bytes(),
        };
    }
    let mut body = serde_json::to_vec_pretty(&view).unwrap_or_default();
    body.push(b'\n');
    Reply {
        status: 200,
        content_type: "application/json",
        headers: "cache-control: no-store\r\n",
        body,
    }
}

/// Reads up to the blank line ending the request head; `None` if too big.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            break;
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

async fn respond(stream: &mut TcpStream, reply: &Reply, head_only: bool) -> std::io::Result<()> {
    let reason = match reply.status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let allow = if reply.status == 405 {
        "allow: GET, HEAD\r\n"
    } else {
        ""
    };
    // HEAD gets the headers GET would, Content-Length included.
    let head = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: {}\r\ncontent-length: {}\r\n{allow}{}connection: close\r\n\r\n",
        reply.status,
        reply.content_type,
        reply.body.len(),
        reply.headers
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(&reply.body).await?;
    }
    stream.shutdown().await
}

/// The address actually bound (port 0 resolved).
pub fn local_addr(l: &TcpListener) -> Option<SocketAddr> {
    l.local_addr().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_page_is_served_with_a_strict_policy_unless_turned_off() {
        let metrics = Metrics::default();
        let on = Page::with_setup(status::Setup {
            enabled: true,
            ..Default::default()
        });
        let (r, head_only) = route("GET / HTTP/1.1\r\n\r\n", &metrics, &on);
        assert_eq!(
            (r.status, r.content_type, head_only),
            (200, "text/html; charset=utf-8", false)
        );
        assert!(r.headers.contains("default-src 'none'"));
        assert!(String::from_utf8_lossy(&r.body).starts_with("<!DOCTYPE html>"));
        let (r, head_only) = route("HEAD /status.json?x=1 HTTP/1.1\r\n\r\n", &metrics, &on);
        assert!(head_only);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["jobs"], serde_json::json!([]));
        let off = Page::default();
        for path in ["/", "/status.json"] {
            let (r, _) = route(&format!("GET {path} HTTP/1.1\r\n\r\n"), &metrics, &off);
            assert_eq!(r.status, 404);
        }
        assert_eq!(
            route("GET /healthz HTTP/1.1\r\n\r\n", &metrics, &off)
                .0
                .status,
            200
        );
    }

    #[tokio::test]
    async fn full_slots_evict_the_oldest_reader_and_refuse_when_all_answer() {
        let slots = Slots::new(2);
        let p1 = slots.admit().await.unwrap();
        let r1 = slots.reading(1);
        let p2 = slots.admit().await.unwrap();
        let r2 = slots.reading(2);
        // Its task lets go of the slot once evicted.
        let evicted = r1.evicted.clone();
        let holder = tokio::spawn(async move {
            evicted.cancelled().await;
            drop(p1);
        });
        let p3 = slots.admit().await.expect("room made by evicting #1");
        holder.await.unwrap();
        assert!(r1.evicted.is_cancelled() && !r2.evicted.is_cancelled());
        // #2 and #3 are answering (no longer reading): nobody to evict.
        drop(r2);
        assert!(slots.admit().await.is_none());
        drop((p2, p3, r1));
        assert!(slots.admit().await.is_some());
    }
}

//! A TCP proxy in front of a real HTTP server that can stall chosen
//! requests: it reads the whole request, answers nothing (so the client
//! times out with the request sent), and forwards it to the server later.
//! That is how a store applies a put the client already gave up on.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

type Matcher = dyn Fn(&str) -> bool + Send + Sync;

/// When a held request is forwarded.
#[derive(Clone, Copy, Debug)]
pub enum Release {
    /// This long after it arrived.
    After(Duration),
    /// When the test calls [`StallProxy::release`].
    Manual,
}

pub struct StallProxy {
    pub port: u16,
    shared: Arc<Shared>,
}

struct Shared {
    upstream: u16,
    hold: Box<Matcher>,
    release: Release,
    released: Mutex<bool>,
    wake: Condvar,
    held: AtomicUsize,
    landed: Mutex<usize>,
    landed_cv: Condvar,
}

impl StallProxy {
    /// Proxies to `127.0.0.1:upstream`; requests whose request line
    /// matches `hold` are stalled until `release`.
    pub fn start(
        upstream: u16,
        hold: impl Fn(&str) -> bool + Send + Sync + 'static,
        release: Release,
    ) -> StallProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let shared = Arc::new(Shared {
            upstream,
            hold: Box::new(hold),
            release,
            released: Mutex::new(false),
            wake: Condvar::new(),
            held: AtomicUsize::new(0),
            landed: Mutex::new(0),
            landed_cv: Condvar::new(),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || serve(&s, client));
            }
        });
        StallProxy { port, shared }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests stalled so far.
    pub fn held(&self) -> usize {
        self.shared.held.load(Ordering::SeqCst)
    }

    /// Forwards every held request (and any held later) now.
    pub fn release(&self) {
        *self.shared.released.lock().unwrap() = true;
        self.shared.wake.notify_all();
    }

    /// Waits until `n` held requests have been forwarded and answered.
    pub fn wait_landed(&self, n: usize, limit: Duration) {
        let guard = self.shared.landed.lock().unwrap();
        let (guard, _) = self
            .shared
            .landed_cv
            .wait_timeout_while(guard, limit, |l| *l < n)
            .unwrap();
        assert!(*guard >= n, "only {} held request(s) landed", *guard);
    }
}

/// One client connection: requests go upstream one by one; responses are
/// copied back as raw bytes by a second thread.
fn serve(s: &Arc<Shared>, client: TcpStream) {
    let Ok(up) = TcpStream::connect(("127.0.0.1", s.upstream)) else {
        return;
    };
    let (Ok(mut up_read), Ok(mut client_write)) = (up.try_clone(), client.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_read, &mut client_write);
        let _ = client_write.shutdown(std::net::Shutdown::Write);
    });
    let mut up = up;
    let mut reader = BufReader::new(client);
    loop {
        let Some(request) = read_request(&mut reader) else {
            let _ = up.shutdown(std::net::Shutdown::Write);
            return;
        };
        let line = String::from_utf8_lossy(&request)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        if (s.hold)(&line) {
            s.held.fetch_add(1, Ordering::SeqCst);
            // Keep the client's connection open and silent, so it sees a
            // timeout rather than a closed connection.
            let client = reader.into_inner();
            forward_later(s, request);
            drop(client);
            return;
        }
        if up.write_all(&request).is_err() {
            return;
        }
    }
}

fn forward_later(s: &Arc<Shared>, request: Vec<u8>) {
    match s.release {
        Release::After(d) => std::thread::sleep(d),
        Release::Manual => {
            let g = s.released.lock().unwrap();
            let _g = s.wake.wait_while(g, |r| !*r).unwrap();
        }
    }
    if let Ok(mut up) = TcpStream::connect(("127.0.0.1", s.upstream)) {
        up.set_read_timeout(Some(Duration::from_secs(30))).ok();
        if up.write_all(&request).is_ok() {
            // Read the status line: the server has applied the request
            // once it answers.
            let mut first = [0u8; 12];
            let _ = up.read_exact(&mut first);
        }
    }
    *s.landed.lock().unwrap() += 1;
    s.landed_cv.notify_all();
}

/// Reads one HTTP/1.1 request (headers and a Content-Length body).
fn read_request(r: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut raw = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        raw.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line).to_ascii_lowercase();
        if let Some(v) = text.strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
        assert!(
            !text.starts_with("transfer-encoding:"),
            "the stalling proxy only handles Content-Length bodies"
        );
        if line == b"\r\n" {
            break;
        }
    }
    let start = raw.len();
    raw.resize(start + length, 0);
    r.read_exact(&mut raw[start..]).ok()?;
    Some(raw)
}

//! `ccbackup healthcheck`: the container HEALTHCHECK. It asks the daemon's
//! `/healthz` at the address the configuration gives (`daemon.listen`), so
//! moving the port in the configuration cannot leave a stale check behind.
//! Plain HTTP/1.0 over std's TCP: no HTTP client is needed in the image.

use super::out::say;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use super::AppError;
use crate::config;

const TIMEOUT: Duration = Duration::from_secs(5);

pub async fn check(config_path: &Path, listen: Option<&str>) -> Result<(), AppError> {
    let listen = match listen {
        Some(l) => l.to_owned(),
        None => config::listen_address(config_path)?,
    };
    let addr = probe_address(&listen)?;
    tokio::task::spawn_blocking(move || ask(addr))
        .await
        .map_err(|e| AppError::Failed(anyhow::anyhow!("health check task failed: {e}")))?
        .map_err(AppError::Failed)?;
    say!("ok: http://{addr}/healthz");
    Ok(())
}

/// The address to connect to: a wildcard listen address is asked on
/// loopback of the same family.
fn probe_address(listen: &str) -> Result<SocketAddr, AppError> {
    let mut a: SocketAddr = listen.parse().map_err(|_| {
        AppError::Usage(format!(
            "daemon.listen `{listen}` is not an address like 127.0.0.1:9465"
        ))
    })?;
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Ok(a)
}

fn ask(addr: SocketAddr) -> anyhow::Result<()> {
    let ctx = || format!("health check of http://{addr}/healthz");
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| anyhow::anyhow!("{}: cannot connect: {e}", ctx()))?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    s.write_all(b"GET /healthz HTTP/1.0\r\nHost: ccbackup\r\n\r\n")
        .map_err(|e| anyhow::anyhow!("{}: {e}", ctx()))?;
    // The status line is all we need; a small cap keeps a strange peer
    // from making us read forever.
    let mut head = Vec::new();
    s.take(4096)
        .read_to_end(&mut head)
        .map_err(|e| anyhow::anyhow!("{}: {e}", ctx()))?;
    let status = String::from_utf8_lossy(&head);
    let line = status.lines().next().unwrap_or("");
    match line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        _ => anyhow::bail!("{}: answered `{}`", ctx(), line.escape_debug()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_addresses_are_asked_on_loopback() {
        assert_eq!(
            probe_address("0.0.0.0:9465").unwrap(),
            "127.0.0.1:9465".parse().unwrap()
        );
        assert_eq!(
            probe_address("[::]:9465").unwrap(),
            "[::1]:9465".parse().unwrap()
        );
        assert_eq!(
            probe_address("10.0.0.5:1234").unwrap(),
            "10.0.0.5:1234".parse().unwrap()
        );
        assert!(probe_address("localhost:9465").is_err());
    }
}

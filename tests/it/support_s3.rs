//! Real object-store servers on loopback for the S3 and Azure tests: moto
//! (S3) and Azurite (Azure Blob), each started per test on a free port and
//! killed when its guard drops. A server that is missing or does not come up
//! fails the test: `bash scripts/prereqs.sh` installs both.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{bin, free_port, poll_for, Run};

/// Where `scripts/prereqs.sh` installs the emulators when they are not on PATH.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("CCBACKUP_TEST_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/ccbackup-test"))
}

/// Finds a tool on PATH or in the prereqs cache, or fails the test saying how
/// to install it.
pub fn find_tool(name: &str, cached: &[&str]) -> PathBuf {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    for rel in cached {
        let p = tools_dir().join(rel);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "`{name}` is not installed (looked on PATH and under {}); run `bash scripts/prereqs.sh`",
        tools_dir().display()
    );
}

/// A server process in its own process group; the whole group is killed on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(what: &str, mut cmd: Command, port: u16, dir: tempfile::TempDir) -> Server {
        let log = dir.path().join("server.log");
        let out = std::fs::File::create(&log).expect("create server log");
        let err = out.try_clone().expect("clone log handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let mut s = Server {
            child,
            port,
            log,
            _dir: dir,
        };
        let up = poll_for(Duration::from_secs(60), || {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!(
                    "{what} exited ({status}) before answering on port {port}:\n{}",
                    s.log_text()
                );
            }
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            up.is_ok(),
            "{what} did not answer on port {port} within 60 s:\n{}",
            s.log_text()
        );
        s
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this guard created.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// Starts moto's S3 server. With `check_credentials`, moto refuses every
/// request whose access key it does not know (all of them: none are created),
/// which stands in for "wrong credentials".
pub fn start_moto(check_credentials: bool) -> Server {
    let exe = find_tool("moto_server", &["venv/bin/moto_server"]);
    let port = free_port();
    let mut cmd = Command::new(exe);
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    if check_credentials {
        cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
    }
    Server::start(
        "moto_server",
        cmd,
        port,
        tempfile::tempdir().expect("tempdir"),
    )
}

/// Starts Azurite's blob service with its data in a temp dir.
pub fn start_azurite() -> Server {
    let exe = find_tool("azurite-blob", &["node_modules/.bin/azurite-blob"]);
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(exe);
    cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .arg("--location")
        .arg(dir.path())
        .args(["--skipApiVersionCheck", "--silent"]);
    Server::start("azurite-blob", cmd, port, dir)
}

/// A minimal HTTP/1.1 exchange; returns (status, body).
pub fn http(port: u16, method: &str, target: &str, headers: &[(&str, String)]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: 0\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Creates a bucket on moto (it accepts unsigned requests).
pub fn create_bucket(server: &Server, bucket: &str) {
    let (status, body) = http(server.port, "PUT", &format!("/{bucket}"), &[]);
    assert_eq!(status, 200, "create bucket {bucket}: {body}");
}

/// Multipart uploads still open in a bucket (S3 ListMultipartUploads).
pub fn open_uploads(server: &Server, bucket: &str) -> Vec<String> {
    let (status, body) = http(server.port, "GET", &format!("/{bucket}?uploads"), &[]);
    assert_eq!(status, 200, "list multipart uploads: {body}");
    body.split("<Key>")
        .skip(1)
        .filter_map(|s| s.split_once("</Key>").map(|(k, _)| k.to_owned()))
        .collect()
}

/// Every object key in a bucket (S3 ListObjectsV2, first 1000).
pub fn object_keys(server: &Server, bucket: &str) -> Vec<String> {
    let (status, body) = http(server.port, "GET", &format!("/{bucket}?list-type=2"), &[]);
    assert_eq!(status, 200, "list objects: {body}");
    body.split("<Key>")
        .skip(1)
        .filter_map(|s| s.split_once("</Key>").map(|(k, _)| k.to_owned()))
        .collect()
}

// --- Azure SharedKey signing, for creating a container ----------------------

pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's documented development key (public, not a secret).
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// HMAC-SHA256 (RFC 2104) for Azure SharedKey requests the tests send
/// themselves (ccbackup signs nothing by hand; object_store does).
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = B64.iter().position(|b| *b == c).expect("base64 digit") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// Creates a blob container on Azurite with a SharedKey-signed request.
pub fn create_container(server: &Server, container: &str) {
    let date = chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let version = "2021-08-06";
    let path = format!("/{AZURITE_ACCOUNT}/{container}");
    // Path-style (emulator) URLs carry the account twice in the canonical resource.
    let string_to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}{path}\nrestype:container"
    );
    let sig = base64_encode(&hmac_sha256(
        &base64_decode(AZURITE_KEY),
        string_to_sign.as_bytes(),
    ));
    let (status, body) = http(
        server.port,
        "PUT",
        &format!("{path}?restype=container"),
        &[
            ("x-ms-date", date),
            ("x-ms-version", version.to_owned()),
            (
                "Authorization",
                format!("SharedKey {AZURITE_ACCOUNT}:{sig}"),
            ),
        ],
    );
    assert_eq!(status, 201, "create container {container}: {body}");
}

// --- Running the binary with a controlled environment -----------------------

/// Cloud credential variables a developer's shell may hold; removed so the
/// tests see only what they set.
const CLOUD_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ALLOW_HTTP",
    "AWS_PROFILE",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_USE_EMULATOR",
    "AZURITE_BLOB_STORAGE_URL",
];

pub fn ccbackup_cmd(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("--config")
        .arg(config)
        .arg("--log-format")
        .arg("text")
        .args(args)
        .env_remove("CCBACKUP_CONFIG");
    for v in CLOUD_VARS {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

pub fn ccbackup_env(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = ccbackup_cmd(config, args, env)
        .output()
        .expect("run ccbackup");
    Run { out }
}

/// Writes `n` bytes of incompressible data to `path`.
pub fn random_file(path: &Path, n: usize) {
    use rand::RngCore;
    let mut buf = vec![0u8; n];
    rand::rng().fill_bytes(&mut buf);
    std::fs::write(path, buf).expect("write random file");
}

#[test]
fn hmac_and_base64_match_known_vectors() {
    // RFC 4231 test case 2.
    assert_eq!(
        hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(base64_encode(b"foob"), "Zm9vYg==");
    assert_eq!(base64_encode(b"fooba"), "Zm9vYmE=");
    assert_eq!(base64_decode("Zm9vYmFy"), b"foobar");
    assert_eq!(base64_decode(AZURITE_KEY).len(), 64);
}

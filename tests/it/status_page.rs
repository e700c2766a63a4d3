//! Issue 19 part 1: the daemon's status page (`GET /`) and its data
//! (`GET /status.json`), served by the real binary from what it keeps in
//! memory, checked in headless Chromium at desktop and phone width and in
//! print, safe against a crafted store, and cheap enough to hammer while a
//! backup runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// Markup, a script, an event handler, quotes and a terminal escape
/// sequence: what a crafted manifest puts in every text field.
pub const HOSTILE: &str =
    "<script>alert(1)</script><img src=x onerror=alert(2)>\u{1b}[31mRED\"'&amp;";

/// The daemon binary; killed when dropped.
pub struct Daemon {
    child: Child,
    pub port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    pub fn start(cfg: &Path, port: u16) -> Daemon {
        let child = Command::new(bin())
            .args(["--log-format", "json", "--config"])
            .arg(cfg)
            .arg("daemon")
            .env_remove("CCBACKUP_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Daemon { child, port }
    }

    /// Polls `/status.json` until `done` holds for it, and returns it.
    pub fn status_when(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        wait_until(
            &format!("/status.json to show {what}"),
            Duration::from_secs(60),
            || match http_get(self.port, "/status.json") {
                Some((200, body)) => {
                    let v: Value = serde_json::from_str(&body).unwrap();
                    if done(&v) {
                        Ok(v)
                    } else {
                        Err(format!("{v:#}"))
                    }
                }
                other => Err(format!("{other:?}")),
            },
        )
    }

    /// `/status.json` once the store has been listed for every job.
    pub fn listed(&self) -> Value {
        self.status_when("the store listed", |v| {
            v["jobs"]
                .as_array()
                .is_some_and(|j| j.iter().all(|j| !j["backups_total"].is_null()))
        })
    }
}

/// A files job `site` (yearly, no start-up run) with retention and a
/// shrink guard, its source, and `extra` YAML at job level.
pub struct Site {
    pub ws: Workspace,
    pub data: PathBuf,
    pub port: u16,
}

impl Site {
    pub fn new() -> Site {
        let ws = Workspace::new();
        let data = ws.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("a.txt"), vec![b'a'; 40_000]).unwrap();
        std::fs::write(data.join("b.txt"), vec![b'b'; 30_000]).unwrap();
        Site {
            ws,
            data,
            port: free_port(),
        }
    }

    pub fn config(&self, daemon_extra: &str, job_extra: &str) -> PathBuf {
        self.ws.config(&format!(
            "store:\n  url: {}\ndaemon:\n  listen: 127.0.0.1:{}\n{daemon_extra}jobs:\n  - name: site\n    schedule: \"0 3 1 1 *\"\n    run_at_start: never\n    max_age: 26h\n    retention: {{keep_last: 2, keep_daily: 7}}\n    guard: {{min_files: 2}}\n{job_extra}    sources:\n      - name: etc\n        files: {{path: {}}}\n",
            self.ws.store_url(),
            self.port,
            self.data.display()
        ))
    }

    pub fn job_dir(&self) -> PathBuf {
        self.ws.store_dir().join("site")
    }
}

/// `run-now`: the backup's ID.
fn run_now(cfg: &Path) -> (Option<i32>, String) {
    let run = ccbackup(cfg, &["run-now"]);
    (run.code(), run.stdout().trim().to_owned())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Two good backups, a suspicious one (the guard's own), a crafted one
/// whose manifest carries [`HOSTILE`] in every text field, and two
/// damaged ones (junk manifest; a directory named with markup). Returns
/// the good IDs, newest first, and the suspicious one.
fn store_with_every_kind(site: &Site, cfg: &Path) -> (Vec<String>, String) {
    let (c1, good1) = run_now(cfg);
    let (c2, good2) = run_now(cfg);
    assert_eq!((c1, c2), (Some(0), Some(0)));
    std::fs::remove_file(site.data.join("b.txt")).unwrap();
    let (c3, suspicious) = run_now(cfg);
    assert_eq!(c3, Some(1), "one file is below min_files 2");

    let crafted = "20260101T000000Z-c0ffee";
    copy_dir(&site.job_dir().join(&good1), &site.job_dir().join(crafted));
    let p = site.job_dir().join(crafted).join("manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    m["id"] = crafted.into();
    m["started_at"] = "2026-01-01T00:00:00Z".into();
    m["finished_at"] = "2026-01-01T00:00:09Z".into();
    m["host"] = HOSTILE.into();
    m["tool_version"] = HOSTILE.into();
    m["guard"] = serde_json::json!({"suspicious": [HOSTILE], "accepted": [HOSTILE]});
    std::fs::write(&p, serde_json::to_vec(&m).unwrap()).unwrap();

    // A manifest that claims another place, named in the problem shown.
    let elsewhere = site.job_dir().join("20260102T000000Z-dddddd");
    copy_dir(&site.job_dir().join(&good1), &elsewhere);
    m["id"] = HOSTILE.into();
    std::fs::write(
        elsewhere.join("manifest.json"),
        serde_json::to_vec(&m).unwrap(),
    )
    .unwrap();
    let junk = site.job_dir().join("20260103T000000Z-eeeeee");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join("manifest.json"), HOSTILE).unwrap();
    (vec![good2, good1], suspicious)
}

pub(crate) fn chromium_dir() -> tempfile::TempDir {
    require_tool("chromium");
    tempfile::tempdir().unwrap()
}

/// Headless Chromium with its own profile (tests run in parallel), at
/// most two minutes.
pub(crate) fn chromium(profile: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new("timeout")
        .args([
            "120",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args([
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Width and height of a PNG file.
fn png_size(p: &Path) -> (u32, u32) {
    let b = std::fs::read(p).unwrap();
    assert_eq!(&b[1..4], b"PNG", "{} is not a PNG", p.display());
    let n = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (n(16), n(20))
}

/// The page as saved bytes plus a wrapper that shows it in a 390 px
/// frame. Chromium's headless window is never narrower than 500 px, so the
/// phone's width comes from the frame; `measure` adds a script (to the
/// wrapper, never to the page) that reports what overflows it.
fn phone_wrapper(dir: &Path, page: &str, measure: bool) -> PathBuf {
    std::fs::write(dir.join("page.html"), page).unwrap();
    let script = if measure {
        r#"<script>
document.getElementById('f').addEventListener('load', function () {
  var d = this.contentDocument, w = d.documentElement.clientWidth, bad = [];
  d.querySelectorAll('body *').forEach(function (e) {
    var r = e.getBoundingClientRect();
    if (r.width > 0 && (r.right > w + 0.5 || r.left < -0.5)) bad.push(e.tagName + '.' + e.className);
  });
  var print = false;
  for (var s of d.styleSheets) for (var r of s.cssRules)
    if (r.media && r.media.mediaText === 'print' && r.cssRules.length > 5) print = true;
  var thead = d.querySelector('table.rows thead');
  var out = {width: w, scroll: d.documentElement.scrollWidth, overflowing: bad,
    cards: thead ? getComputedStyle(thead).display : 'no table', print: print};
  var pre = document.createElement('pre'); pre.id = 'result';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});
</script>"#
    } else {
        ""
    };
    let p = dir.join(if measure {
        "measure.html"
    } else {
        "phone.html"
    });
    std::fs::write(
        &p,
        format!(
            "<!DOCTYPE html><html><body style=\"margin:0\"><iframe id=\"f\" src=\"page.html\" style=\"border:0;width:390px;height:3000px\"></iframe>{script}</body></html>"
        ),
    )
    .unwrap();
    p
}

#[test]
fn regression_issue19_the_status_page_in_a_real_browser_at_desktop_and_phone_width() {
    let profile = chromium_dir();
    let site = Site::new();
    let cfg = site.config("", "");
    let (good, suspicious) = store_with_every_kind(&site, &cfg);
    let d = Daemon::start(&cfg, site.port);
    let v = d.listed();
    assert_eq!(v["jobs"][0]["backups_total"], 6, "{v:#}");
    let url = format!("http://127.0.0.1:{}/", site.port);

    // The rendered DOM, as the browser built it from the daemon's answer.
    let out = chromium(profile.path(), &["--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let cfg_abs = cfg.display().to_string();
    for want in [
        "ccbackup status".to_owned(),
        "Backups in the store".to_owned(),
        "6 backups as listed".to_owned(),
        format!("ccbackup</span> <span>--config</span> <span>{cfg_abs}</span> <span>restore</span> <span>--job</span> <span>site</span> <span>--backup</span> <span>{}</span>", good[0]),
        good[1].clone(),
        format!("newest backup in the store: <span class=\"id\">{suspicious}</span>"),
        "files is 1, below min_files 2".to_owned(),
        ">suspicious<".to_owned(),
        ">damaged<".to_owned(),
        "cannot be restored".to_owned(),
        "kept: last, daily".to_owned(),
        "never pruned automatically".to_owned(),
        "<svg class=\"chart\"".to_owned(),
        // The crafted text, shown as text.
        "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;\\u{1b}[31mRED\"'&amp;amp;".to_owned(),
    ] {
        assert!(dom.contains(&want), "the page lacks {want:?}:\n{dom}");
    }
    // Nothing crafted became an element.
    for tag in ["<script", "<img", "<iframe", "<object"] {
        assert!(!dom.contains(tag), "{tag} in the page:\n{dom}");
    }
    assert!(!dom.contains('\u{1b}'));

    let shots = tempfile::tempdir().unwrap();
    let desktop = shots.path().join("desktop.png");
    chromium(
        profile.path(),
        &[
            &format!("--screenshot={}", desktop.display()),
            "--window-size=1280,1800",
            &url,
        ],
    );
    assert_eq!(png_size(&desktop), (1280, 1800));

    // Phone width: the exact bytes the daemon serves, in a 390 px frame.
    let (code, page) = http_get(site.port, "/").unwrap();
    assert_eq!(code, 200);
    let measure = phone_wrapper(shots.path(), &page, true);
    let out = chromium(
        profile.path(),
        &[
            "--allow-file-access-from-files",
            "--virtual-time-budget=10000",
            "--window-size=600,3000",
            "--dump-dom",
            &format!("file://{}", measure.display()),
        ],
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    let result = dom
        .split("<pre id=\"result\">")
        .nth(1)
        .and_then(|r| r.split("</pre>").next())
        .unwrap_or_else(|| panic!("the measuring script did not report:\n{dom}"));
    let m: Value = serde_json::from_str(&result.replace("&quot;", "\"")).unwrap();
    assert_eq!(m["width"], 390, "{m}");
    assert_eq!(m["scroll"], 390, "the page is wider than the phone: {m}");
    assert_eq!(m["overflowing"], serde_json::json!([]), "{m}");
    assert_eq!(m["cards"], "none", "tables are not cards on a phone: {m}");
    assert_eq!(m["print"], true, "no print stylesheet: {m}");
    let phone = shots.path().join("phone.png");
    let wrapper = phone_wrapper(shots.path(), &page, false);
    chromium(
        profile.path(),
        &[
            &format!("--screenshot={}", phone.display()),
            "--window-size=390,3000",
            &format!("file://{}", wrapper.display()),
        ],
    );
    assert_eq!(png_size(&phone), (390, 3000));

    // Print: a PDF with the print stylesheet applied.
    let pdf = shots.path().join("page.pdf");
    chromium(
        profile.path(),
        &[
            &format!("--print-to-pdf={}", pdf.display()),
            "--no-pdf-header-footer",
            &url,
        ],
    );
    let bytes = std::fs::read(&pdf).unwrap();
    assert!(bytes.starts_with(b"%PDF"), "not a PDF");
    assert!(bytes.len() > 5_000, "an empty PDF ({} bytes)", bytes.len());

    // `CCBACKUP_STATUS_SCREENSHOTS=DIR` keeps the pictures (docs/).
    if let Some(keep) = std::env::var_os("CCBACKUP_STATUS_SCREENSHOTS") {
        for f in ["desktop.png", "phone.png", "page.pdf"] {
            std::fs::copy(shots.path().join(f), Path::new(&keep).join(f)).unwrap();
        }
    }
}

#[test]
fn regression_issue19_status_page_false_turns_the_page_off_and_is_validated() {
    let site = Site::new();
    let cfg = site.config("  status_page: false\n", "");
    ccbackup(&cfg, &["check-config"]).expect_ok();
    let d = Daemon::start(&cfg, site.port);
    wait_until("the daemon to answer", Duration::from_secs(30), || {
        http_get(d.port, "/healthz")
    });
    for path in ["/", "/status.json"] {
        let (code, body) = http_get(d.port, path).unwrap();
        assert_eq!(code, 404, "{path}: {body}");
        assert!(body.contains("daemon.status_page"), "{body}");
    }
    assert_eq!(http_get(d.port, "/metrics").unwrap().0, 200);
    drop(d);

    let bad = site.config("  status_page: maybe\n", "");
    let run = ccbackup(&bad, &["check-config"]);
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    let line = format!("{}:5:", bad.display());
    assert!(
        run.stderr()
            .lines()
            .any(|l| l.contains(&line) && l.contains("daemon.status_page")),
        "no file, line and key in:\n{}",
        run.stderr()
    );
}

/// Many clients reloading the page and its JSON while a backup runs: the
/// backup completes, and every request is answered.
#[test]
fn regression_issue19_hammering_the_page_during_a_backup_leaves_the_backup_alone() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    let site = Site::new();
    // Enough to read for a while: 200 files of 256 KiB of varied bytes.
    for i in 0..200u32 {
        let body: Vec<u8> = (0..256 * 1024u32)
            .map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i) >> 13) as u8)
            .collect();
        std::fs::write(site.data.join(format!("f{i:03}.bin")), body).unwrap();
    }
    let cfg = site.config("", "").to_owned();
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("run_at_start: never", "run_at_start: always");
    std::fs::write(&cfg, text).unwrap();
    let d = Daemon::start(&cfg, site.port);

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let hammers: Vec<_> = (0..6)
        .map(|i| {
            let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
            let port = d.port;
            std::thread::spawn(move || {
                let path = if i % 2 == 0 { "/" } else { "/status.json" };
                while !stop.load(Ordering::SeqCst) {
                    match http_get(port, path) {
                        Some((200, _)) => {
                            served.fetch_add(1, Ordering::SeqCst);
                        }
                        // Before the listener is up nothing answers.
                        None if served.load(Ordering::SeqCst) == 0 => {
                            std::thread::sleep(Duration::from_millis(20))
                        }
                        other => failed
                            .lock()
                            .unwrap()
                            .push(format!("{path}: {:?}", other.map(|o| o.0))),
                    }
                }
            })
        })
        .collect();
    let v = d.status_when("the start-up backup finished", |v| {
        !v["jobs"][0]["last_run"].is_null() && !v["jobs"][0]["running"].as_bool().unwrap_or(true)
    });
    stop.store(true, Ordering::SeqCst);
    for h in hammers {
        h.join().unwrap();
    }
    let run = &v["jobs"][0]["last_run"];
    assert_eq!(run["outcome"], "success", "{v:#}");
    assert!(
        run["raw_bytes"].as_u64().unwrap() >= 200 * 256 * 1024,
        "{run}"
    );
    let id = run["backup_id"].as_str().unwrap();
    assert_eq!(v["jobs"][0]["backups"][0]["backup_id"], id, "{v:#}");
    assert_eq!(v["jobs"][0]["backups"][0]["status"], "complete");
    let failed = failed.lock().unwrap();
    assert!(failed.is_empty(), "requests failed: {failed:?}");
    assert!(served.load(Ordering::SeqCst) > 0);
    eprintln!(
        "served {} during a run of {} s",
        served.load(Ordering::SeqCst),
        run["duration_seconds"]
    );
    // The backup restores: what the hammering might have disturbed.
    let list = ccbackup(&cfg, &["verify", "--backup", id]);
    list.expect_ok();
}

/// A SIGHUP that sets `status_page: false` turns the page off without a
/// restart, and one that sets it back turns it on.
#[test]
fn regression_issue19_a_reload_switches_the_page() {
    let site = Site::new();
    let cfg = site.config("", "");
    let d = Daemon::start(&cfg, site.port);
    d.listed();
    assert_eq!(http_get(d.port, "/").unwrap().0, 200);
    let pid = d.child.id().to_string();
    let wait_for = |want: u16| {
        wait_until(
            &format!("/ to answer {want}"),
            Duration::from_secs(30),
            || {
                let got = http_get(d.port, "/").map(|r| r.0);
                if got == Some(want) {
                    Ok(())
                } else {
                    Err(format!("{got:?}"))
                }
            },
        )
    };
    site.config("  status_page: false\n", "");
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    wait_for(404);
    site.config("", "");
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    wait_for(200);
}

/// On a signed store, a manifest planted without the key shows as
/// `untrusted`, with no restore command, and the good backups as signed.
#[test]
fn regression_issue19_a_planted_unsigned_backup_is_untrusted_on_the_page() {
    let site = Site::new();
    let keys = tempfile::tempdir().unwrap();
    let kd = keys.path().join("k");
    keys_generate(&kd);
    let public = std::fs::read_to_string(kd.join("minisign.pub")).unwrap();
    let signing = format!(
        "signing:\n  secret_key_file: {}\n  public_key: \"{}\"\n",
        kd.join("minisign.key").display(),
        public.lines().last().unwrap().trim()
    );
    let cfg = site.config("", "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("jobs:\n", &format!("{signing}jobs:\n"));
    std::fs::write(&cfg, text).unwrap();
    let (code, good) = run_now(&cfg);
    assert_eq!(code, Some(0));
    let planted = "20260101T000000Z-bad51e";
    copy_dir(&site.job_dir().join(&good), &site.job_dir().join(planted));
    let _ = std::fs::remove_file(site.job_dir().join(planted).join("manifest.json.minisig"));
    let p = site.job_dir().join(planted).join("manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    m["id"] = planted.into();
    m["started_at"] = "2026-01-01T00:00:00Z".into();
    m["finished_at"] = "2026-01-01T00:00:01Z".into();
    std::fs::write(&p, serde_json::to_vec(&m).unwrap()).unwrap();

    let d = Daemon::start(&cfg, site.port);
    let v = d.listed();
    assert_eq!(v["authenticated"], true);
    let rows = v["jobs"][0]["backups"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v:#}");
    assert_eq!(
        (&rows[0]["backup_id"], &rows[0]["status"], &rows[0]["trust"]),
        (
            &Value::from(good.as_str()),
            &Value::from("complete"),
            &Value::from("signed")
        )
    );
    assert_eq!(rows[1]["status"], "untrusted", "{v:#}");
    assert_eq!(rows[1]["restore_command"], Value::Null);
    assert_eq!(rows[1]["retention"]["decision"], "never_pruned");
    let (_, page) = http_get(d.port, "/").unwrap();
    assert!(page.contains("st-untrusted"), "{page}");
    assert!(
        page.contains("manifests checked against the signing key"),
        "{page}"
    );
}

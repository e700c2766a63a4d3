//! The status page as one HTML document: no script, no external asset, the
//! CSS inline. A pure function of [`StatusView`].
//!
//! Every string that reaches the page goes through [`esc`], whatever its
//! origin: job names come from the configuration, but IDs, reasons,
//! problems and source names can come from a manifest someone else wrote.
//! Dynamic text appears only as element content or inside double-quoted
//! attributes, never in a URL, a style or a script, so escaping the five
//! HTML metacharacters is enough.
//!
//! At a phone's width the tables turn into one card per row (each cell
//! labelled from its `data-label`), long IDs and commands wrap, and the
//! chart scales with the page: nothing is wider than the screen. The print
//! stylesheet drops colours and the job index and keeps the restore
//! commands.

use std::fmt::Write as _;

use super::escape::esc;
use super::{
    chart_points, retention_words, svg, BackupView, CopyView, DrillView, JobView, RunView,
    StatusView,
};
use crate::backup::report::human_duration;
use crate::progress::human;

/// Backups the chart shows.
pub const CHART_BACKUPS: usize = 30;

const CSS: &str = r#"
:root{--ok:#1a7f37;--bad:#b42318;--warn:#9a6700;--muted:#57606a;--line:#d0d7de;--soft:#f6f8fa}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;background:#fff}
header,main,footer{max-width:1200px;margin:0 auto;padding:10px 16px}
h1{font-size:1.45rem;margin:.2rem 0}
h2{font-size:1.2rem;margin:0 0 .6rem;overflow-wrap:anywhere}
h3{font-size:1rem;margin:1.1rem 0 .4rem}
p{margin:.3rem 0}
nav a{margin-right:.8rem;overflow-wrap:anywhere}
.badge{display:inline-block;padding:0 8px;border-radius:10px;font-size:.8rem;font-weight:600;border:1px solid currentColor;white-space:nowrap;vertical-align:middle}
.ok{color:var(--ok)}.bad{color:var(--bad)}.warn{color:var(--warn)}.muted{color:var(--muted)}
section.job{border:1px solid var(--line);border-radius:8px;padding:12px 16px;margin:16px 0}
dl.facts{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:4px 16px;margin:0}
dt{font-weight:600;color:var(--muted)}
dd{margin:0;overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top;overflow-wrap:break-word}
td div{min-width:0;overflow-wrap:anywhere}
th{background:var(--soft);white-space:nowrap}
tr.st-damaged,tr.st-untrusted,tr.st-future,tr.st-deleted,tr.st-tampered{background:#fff1f0}
tr.st-suspicious{background:#fff8e6}
code.cmd{display:block;white-space:pre-wrap;overflow-wrap:anywhere;background:var(--soft);border:1px solid var(--line);padding:4px 6px;border-radius:4px;font-size:.78rem;user-select:all}
.id{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85rem;overflow-wrap:anywhere}
td.id,td.num{white-space:nowrap}
.when{font-family:system-ui,sans-serif;color:var(--muted);font-size:.82rem}
td.ret{min-width:8em}
td.restore{min-width:15em;width:30%}
td.status{min-width:14em}
code.cmd span{display:inline-block;max-width:100%}
ul.reasons{margin:.2rem 0;padding-left:1.2rem}
figure{margin:0}
figcaption{font-size:.8rem;color:var(--muted)}
svg.chart{display:block;width:100%;max-width:640px;height:auto}
svg.chart .size{fill:#0969da}svg.chart .dur{fill:#8250df}svg.chart .sus{fill:var(--bad)}
svg.chart .axis{font-size:11px;fill:var(--muted)}
.scroll{overflow-x:auto}svg.chart .base{stroke:var(--line)}
@media (max-width:720px){
body{font-size:14px}
header,main,footer{padding:8px 10px}
section.job{padding:10px}
dl.facts{grid-template-columns:minmax(0,1fr)}
dt{margin-top:6px}
table.rows thead{display:none}
table.rows,table.rows tbody,table.rows tr,table.rows td{display:block;width:100%}
table.rows tr{border:1px solid var(--line);border-radius:6px;margin:8px 0;padding:4px 0}
table.rows td{border:0;padding:3px 8px;display:grid;grid-template-columns:6.5em minmax(0,1fr);gap:8px}
table.rows td::before{content:attr(data-label);font-size:.72rem;font-weight:600;color:var(--muted);text-transform:uppercase;padding-top:2px}
table.rows td.restore{grid-template-columns:minmax(0,1fr)}
td.num,td.id{white-space:normal}
svg.chart .axis{font-size:19px}
td.restore,td.status{min-width:0;width:100%}
}
@media print{
@page{margin:1.5cm}
body{font-size:9.5pt;color:#000}
header,main,footer{max-width:none;padding:0}
nav,.noprint{display:none}
section.job{border:0;border-top:2px solid #000;border-radius:0;padding:6px 0;margin:10px 0}
.ok,.bad,.warn,.muted,dt{color:#000}
.badge{border:1px solid #000}
th{background:none;border-bottom:1px solid #000}
tr.st-damaged,tr.st-untrusted,tr.st-future,tr.st-deleted,tr.st-tampered,tr.st-suspicious{background:none}
tr{break-inside:avoid}
code.cmd{background:none;border:1px solid #888;font-size:8pt}
svg.chart{max-width:12cm}
svg.chart .size,svg.chart .dur{fill:#666}svg.chart .sus{fill:#000}
a{color:#000;text-decoration:none}
}
"#;

fn badge(ok: bool, yes: &str, no: &str) -> String {
    if ok {
        format!(r#"<span class="badge ok">{yes}</span>"#)
    } else {
        format!(r#"<span class="badge bad">{no}</span>"#)
    }
}

/// The class of an outcome: green for success, red for the rest.
fn outcome_badge(outcome: &str) -> String {
    let class = match outcome {
        "success" => "ok",
        "suspicious" | "locked" | "skipped" | "cancelled" => "warn",
        _ => "bad",
    };
    format!(r#"<span class="badge {class}">{}</span>"#, esc(outcome))
}

/// The whole page.
pub fn render(v: &StatusView) -> String {
    let mut o = String::with_capacity(16 * 1024);
    o.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    o.push_str(r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#);
    o.push_str(r#"<meta name="robots" content="noindex">"#);
    let _ = write!(
        o,
        "<title>ccbackup status: {}</title><style>{CSS}</style></head><body>",
        if v.ready { "ready" } else { "NOT READY" }
    );
    header(&mut o, v);
    o.push_str("<main>");
    if v.jobs.is_empty() {
        o.push_str("<p>No jobs are configured.</p>");
    }
    for (i, j) in v.jobs.iter().enumerate() {
        job(&mut o, i, j);
    }
    o.push_str(
        "</main><footer class=\"muted\"><p>Read-only. The same data as JSON: <a href=\"/status.json\">/status.json</a>; \
         readiness: <a href=\"/readyz\">/readyz</a>; metrics: <a href=\"/metrics\">/metrics</a>. \
         Run errors are in the daemon's log and notifications, not here.</p></footer></body></html>\n",
    );
    o
}

fn header(o: &mut String, v: &StatusView) {
    let _ = write!(
        o,
        "<header><h1>ccbackup status {}</h1>",
        badge(v.ready, "ready", "not ready")
    );
    if let Some(r) = &v.ready_reason {
        let _ = write!(o, "<p class=\"bad\">{}</p>", esc(r));
    }
    let _ = write!(
        o,
        "<p class=\"muted\">Page made {} · daemon started {} · ccbackup {} · manifests {}</p>",
        esc(&v.generated_at),
        esc(&v.daemon_started_at),
        esc(v.version),
        if v.authenticated {
            "checked against the signing key"
        } else {
            "not signed (anyone who can write to the store can plant backups)"
        }
    );
    if v.jobs.len() > 1 {
        o.push_str("<nav aria-label=\"Jobs\">Jobs: ");
        for (i, j) in v.jobs.iter().enumerate() {
            let _ = write!(o, "<a href=\"#job-{i}\">{}</a>", esc(&j.job));
        }
        o.push_str("</nav>");
    }
    o.push_str("</header>");
}

fn job(o: &mut String, i: usize, j: &JobView) {
    let _ = write!(
        o,
        "<section class=\"job\" id=\"job-{i}\"><h2>Job <span class=\"id\">{}</span> {}{}</h2><dl class=\"facts\">",
        esc(&j.job),
        badge(j.ready, "ready", "not ready"),
        if j.running {
            " <span class=\"badge warn\">running now</span>"
        } else {
            ""
        }
    );
    let _ = write!(o, "<dt>Readiness</dt><dd>{}", esc(&j.readiness_reason));
    tampering(o, j);
    o.push_str("</dd>");
    o.push_str("<dt>Last run</dt><dd>");
    match &j.last_run {
        Some(r) => last_run(o, r),
        None => {
            o.push_str("none since the daemon started");
            // After a restart the store still tells how the last backup went.
            let newest = j
                .backups
                .iter()
                .map(|b| &b.held)
                .find(|b| b.status.restorable());
            if let Some(b) = newest {
                let _ = write!(
                    o,
                    "<br><span class=\"muted\">newest backup in the store: <span class=\"id\">{}</span>, {}, took {}, stored {} ({} read)</span>",
                    esc(&b.backup_id),
                    b.started_at.map_or("time unknown".to_owned(), super::ts),
                    b.duration_seconds
                        .map_or("?".to_owned(), |d| esc(&human_duration(d))),
                    human(b.stored_bytes),
                    human(b.raw_bytes)
                );
            }
        }
    }
    if !j.runs.is_empty() || j.skipped_runs > 0 {
        let mut counts: Vec<String> = j
            .runs
            .iter()
            .map(|(outcome, n)| format!("{n} {}", esc(outcome)))
            .collect();
        if j.skipped_runs > 0 {
            counts.push(format!("{} skipped", j.skipped_runs));
        }
        let _ = write!(
            o,
            "<br><span class=\"muted\">runs since the daemon started: {}</span>",
            counts.join(", ")
        );
    }
    let _ = write!(
        o,
        "</dd><dt>Last good backup</dt><dd>{}</dd>",
        j.last_success.as_deref().map_or("none".to_owned(), esc)
    );
    let _ = write!(
        o,
        "<dt>Next run</dt><dd>{}",
        j.next_run
            .as_deref()
            .map_or("not scheduled".to_owned(), esc)
    );
    if let Some(s) = &j.schedule {
        let _ = write!(
            o,
            " <span class=\"muted\">(schedule <code>{}</code>, {})</span>",
            esc(s),
            esc(&j.timezone)
        );
    }
    o.push_str("</dd><dt>Last restore drill</dt><dd>");
    match (&j.last_drill, &j.drill_schedule) {
        (Some(d), _) => last_drill(o, d),
        (None, Some(s)) => {
            let _ = write!(
                o,
                "none since the daemon started (schedule <code>{}</code>)",
                esc(s)
            );
        }
        (None, None) => o.push_str("no drills configured (<code>verify:</code>)"),
    }
    let _ = write!(
        o,
        "</dd><dt>Retention</dt><dd>{}</dd></dl>",
        j.retention_policy
            .as_deref()
            .map_or("no policy: nothing is pruned".to_owned(), esc)
    );
    copies(o, &j.copies);
    chart(o, j);
    backups(o, j);
    o.push_str("</section>");
}

/// The tamper check's verdict, under the job's readiness.
fn tampering(o: &mut String, j: &JobView) {
    match &j.tampering {
        None => {}
        Some(t) if t.tampered_backups == 0 => {
            o.push_str("<br><span class=\"ok\">No tampering in the store's version history.</span>")
        }
        Some(t) => {
            let _ = write!(
                o,
                "<br><span class=\"bad\">TAMPERING: {} backup{} deleted or rewritten by someone other than ccbackup.</span>",
                t.tampered_backups,
                if t.tampered_backups == 1 { "" } else { "s" }
            );
            if let Some(at) = &t.recover_as_of {
                let _ = write!(
                    o,
                    " See the store as it was with <code class=\"cmd\">ccbackup list --as-of {0}</code> and restore with <code class=\"cmd\">restore --as-of {0}</code> (below, per backup).",
                    esc(at)
                );
            }
        }
    }
}

fn last_run(o: &mut String, r: &RunView) {
    let _ = write!(
        o,
        "{} started {}, took {}; stored {} ({} read)",
        outcome_badge(&r.outcome),
        esc(&r.started_at),
        esc(&human_duration(r.duration_seconds)),
        human(r.stored_bytes),
        human(r.raw_bytes),
    );
    if r.attempts > 1 {
        let _ = write!(o, " after {} attempts", r.attempts);
    }
    if let Some(id) = &r.backup_id {
        let _ = write!(o, "; backup <span class=\"id\">{}</span>", esc(id));
    }
    if !r.reasons.is_empty() {
        list(o, &r.reasons);
    }
    let _ = write!(
        o,
        "<br><span class=\"muted\">run ID <span class=\"id\">{}</span> (its log lines and notifications carry it)</span>",
        esc(&r.run_id)
    );
}

fn last_drill(o: &mut String, d: &DrillView) {
    let _ = write!(
        o,
        "{} finished {}, took {}",
        outcome_badge(&d.outcome),
        esc(&d.finished_at),
        esc(&human_duration(d.duration_seconds))
    );
    if let Some(id) = &d.backup_id {
        let _ = write!(o, "; backup <span class=\"id\">{}</span>", esc(id));
    }
    if let Some(t) = &d.last_success {
        let _ = write!(o, "; last success {}", esc(t));
    }
}

fn list(o: &mut String, items: &[String]) {
    o.push_str("<ul class=\"reasons\">");
    for r in items {
        let _ = write!(o, "<li>{}</li>", esc(r));
    }
    o.push_str("</ul>");
}

fn copies(o: &mut String, cs: &[CopyView]) {
    o.push_str("<h3>Copy stores</h3>");
    if cs.is_empty() {
        o.push_str("<p class=\"muted\">No copy stores (<code>copies:</code>).</p>");
        return;
    }
    o.push_str("<div class=\"scroll\"><table class=\"rows\"><thead><tr><th>Store</th><th>Newest backup copied</th><th>Lag</th><th>Failed copies</th></tr></thead><tbody>");
    for c in cs {
        let lag = match c.lag_seconds {
            Some(0) => "<span class=\"ok\">up to date</span>".to_owned(),
            Some(s) => format!(
                "<span class=\"warn\">{} behind</span>",
                esc(&human_duration(s as f64))
            ),
            None => "unknown".to_owned(),
        };
        let _ = write!(
            o,
            "<tr><td data-label=\"Store\" class=\"id\"><div>{}</div></td><td data-label=\"Newest backup copied\"><div>{}</div></td><td data-label=\"Lag\"><div>{lag}</div></td><td data-label=\"Failed copies\" class=\"num\"><div>{}</div></td></tr>",
            esc(&c.store),
            c.newest_copied
                .as_deref()
                .map_or("none since the daemon started".to_owned(), esc),
            c.failures
        );
    }
    o.push_str("</tbody></table></div>");
}

fn chart(o: &mut String, j: &JobView) {
    let pts = chart_points(j, CHART_BACKUPS);
    if pts.is_empty() {
        return;
    }
    let _ = write!(
        o,
        "<h3>Stored size and duration</h3><figure>{}<figcaption>The last {} complete backups, oldest on the left; red bars are suspicious backups.</figcaption></figure>",
        svg::chart(&pts),
        pts.len()
    );
}

fn backups(o: &mut String, j: &JobView) {
    o.push_str("<h3>Backups in the store</h3>");
    let Some(total) = j.backups_total else {
        o.push_str("<p class=\"muted\">The store has not been listed yet, or could not be (see Readiness).</p>");
        return;
    };
    let _ = write!(
        o,
        "<p class=\"muted\">{total} backup{} as listed {}",
        if total == 1 { "" } else { "s" },
        j.listed_at.as_deref().map_or(String::new(), esc)
    );
    if total > j.backups.len() {
        let _ = write!(
            o,
            "; the newest {} shown (<code>ccbackup list</code> shows all)",
            j.backups.len()
        );
    }
    o.push_str(".</p>");
    if j.backups.is_empty() {
        return;
    }
    o.push_str("<div class=\"scroll\"><table class=\"rows\"><thead><tr><th>Backup</th><th>Size stored / read, time taken</th><th>Status</th><th>Retention</th><th>Restore</th></tr></thead><tbody>");
    for b in &j.backups {
        backup_row(o, b);
    }
    o.push_str("</tbody></table></div>");
}

fn backup_row(o: &mut String, b: &BackupView) {
    let h = &b.held;
    let status = h.status.as_str();
    let _ = write!(
        o,
        "<tr class=\"st-{status}\"><td data-label=\"Backup\" class=\"id\"><div>{}<br><span class=\"when\">{}</span></div></td>",
        esc(&h.backup_id),
        h.started_at.map_or("time unknown".to_owned(), |t| t
            .format("%Y-%m-%d %H:%M:%SZ")
            .to_string())
    );
    if h.status.restorable() {
        let _ = write!(
            o,
            "<td data-label=\"Size, time\" class=\"num\"><div>{} / {}<br>{}</div></td>",
            human(h.stored_bytes),
            human(h.raw_bytes),
            h.duration_seconds
                .map_or("?".to_owned(), |d| esc(&human_duration(d)))
        );
    } else {
        o.push_str("<td data-label=\"Size, time\"><div>-</div></td>");
    }
    let class = match status {
        "complete" => "ok",
        "suspicious" => "warn",
        _ => "bad",
    };
    let _ = write!(
        o,
        "<td data-label=\"Status\" class=\"status\"><div><span class=\"badge {class}\">{status}</span>"
    );
    if let Some(t) = h.trust.filter(|t| *t == "legacy") {
        let _ = write!(
            o,
            " <span class=\"muted\">{t} (unsigned, from before signing)</span>"
        );
    }
    if !h.sources.is_empty() {
        let _ = write!(
            o,
            "<br><span class=\"muted\">sources: {}</span>",
            esc(&h.sources.join(", "))
        );
    }
    if let Some(p) = &h.problem {
        let _ = write!(o, "<br>{}", esc(p));
    }
    if !h.suspicious.is_empty() {
        list(o, &h.suspicious);
    }
    if !h.shrink_accepted.is_empty() {
        let _ = write!(
            o,
            "<br><span class=\"muted\">shrink accepted: {}</span>",
            esc(&h.shrink_accepted.join("; "))
        );
    }
    let _ = write!(
        o,
        "</div></td><td data-label=\"Retention\" class=\"ret\"><div>{}</div></td><td data-label=\"Restore\" class=\"restore\"><div>",
        esc(&retention_words(&h.retention))
    );
    match &b.restore_command {
        Some(c) => {
            // Each word kept whole where it fits, so a line never breaks
            // inside `--job`; the text copied is the command as it is.
            let words: Vec<String> = c
                .split(' ')
                .map(|w| format!("<span>{}</span>", esc(w)))
                .collect();
            let _ = write!(o, "<code class=\"cmd\">{}</code>", words.join(" "));
        }
        None => o.push_str("<span class=\"muted\">cannot be restored</span>"),
    }
    o.push_str("</div></td></tr>");
}

#[cfg(test)]
mod tests {
    use super::super::held::{BackupStatus, HeldBackup, Retention};
    use super::*;

    const HOSTILE: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'&\x1b[2J";

    fn view() -> StatusView {
        let row = |id: &str, status, text: &str| BackupView {
            held: HeldBackup {
                backup_id: id.into(),
                started_at: crate::repo::store::backup_id_time(id),
                duration_seconds: Some(12.5),
                stored_bytes: 2048,
                raw_bytes: 8192,
                sources: vec![text.into()],
                status,
                problem: (status == BackupStatus::Damaged).then(|| text.into()),
                suspicious: if status == BackupStatus::Suspicious {
                    vec![text.into()]
                } else {
                    Vec::new()
                },
                shrink_accepted: Vec::new(),
                trust: Some("unchecked"),
                retention: Retention::Kept {
                    rules: vec![text.into()],
                },
            },
            restore_command: status
                .restorable()
                .then(|| super::super::restore_command("/c.yaml", "j", id)),
            tampered_at: None,
            recover_as_of: None,
        };
        StatusView {
            generated_at: "2026-12-07T10:00:00Z".into(),
            version: "0.0.0",
            daemon_started_at: "2026-12-07T09:00:00Z".into(),
            ready: false,
            ready_reason: Some(HOSTILE.into()),
            authenticated: false,
            jobs: vec![JobView {
                job: HOSTILE.into(),
                schedule: Some("0 3 * * *".into()),
                timezone: "UTC".into(),
                retention_policy: Some(HOSTILE.into()),
                running: true,
                next_run: Some("2026-12-08T03:00:00Z".into()),
                ready: false,
                tampering: Some(super::super::tampering::TamperingView {
                    tampered_backups: 1,
                    recover_as_of: Some(HOSTILE.into()),
                }),
                readiness_reason: HOSTILE.into(),
                last_success: None,
                runs: [("success".to_owned(), 4), ("suspicious".to_owned(), 1)].into(),
                skipped_runs: 2,
                last_run: Some(RunView {
                    run_id: "r-1".into(),
                    outcome: "suspicious".into(),
                    started_at: "2026-12-07T03:00:00Z".into(),
                    finished_at: "2026-12-07T03:00:12Z".into(),
                    duration_seconds: 12.5,
                    stored_bytes: 2048,
                    raw_bytes: 8192,
                    attempts: 2,
                    backup_id: Some(HOSTILE.into()),
                    reasons: vec![HOSTILE.into()],
                }),
                drill_schedule: None,
                last_drill: None,
                copies: vec![CopyView {
                    store: HOSTILE.into(),
                    newest_copied: None,
                    lag_seconds: Some(3600),
                    failures: 1,
                }],
                listed_at: Some("2026-12-07T03:00:13Z".into()),
                backups_total: Some(3),
                backups: vec![
                    row("20261207T030000Z-cccccc", BackupStatus::Suspicious, HOSTILE),
                    row(HOSTILE, BackupStatus::Damaged, HOSTILE),
                    row("20261206T030000Z-aaaaaa", BackupStatus::Complete, "etc"),
                ],
            }],
        }
    }

    #[test]
    fn nothing_from_the_store_or_the_configuration_reaches_the_page_raw() {
        let page = render(&view());
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains('\x1b'));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        // Every tag on the page is one the renderer writes itself.
        let allowed = [
            "html",
            "head",
            "meta",
            "title",
            "style",
            "body",
            "header",
            "h1",
            "h2",
            "h3",
            "p",
            "span",
            "div",
            "main",
            "section",
            "dl",
            "dt",
            "dd",
            "br",
            "code",
            "ul",
            "li",
            "table",
            "thead",
            "tbody",
            "tr",
            "th",
            "td",
            "figure",
            "figcaption",
            "svg",
            "text",
            "line",
            "rect",
            "footer",
            "a",
            "nav",
            "!DOCTYPE",
        ];
        for tag in page.split('<').skip(1) {
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '!' || *c == 'D')
                .collect();
            assert!(
                allowed.contains(&name.as_str()),
                "unexpected <{name}> in {tag}"
            );
        }
    }

    #[test]
    fn the_page_shows_each_part_of_the_job() {
        let page = render(&view());
        for want in [
            "ccbackup status",
            "not ready",
            "running now",
            "took 12.5 s",
            "stored 2.0 KiB (8.0 KiB read)",
            "after 2 attempts",
            "runs since the daemon started: 4 success, 1 suspicious, 2 skipped",
            "1 h 00 min behind",
            "3 backups as listed",
            "<span>--backup</span> <span>20261206T030000Z-aaaaaa</span></code>",
            "cannot be restored",
            "<svg class=\"chart\"",
            "st-suspicious",
            "st-damaged",
            "@media print",
            "@media (max-width:720px)",
            "data-label=\"Restore\"",
        ] {
            assert!(page.contains(want), "no {want:?} in the page");
        }
        assert!(!page.contains("<script"));
    }

    #[test]
    fn after_a_restart_the_newest_backup_stands_in_for_the_last_run() {
        let mut v = view();
        v.jobs[0].last_run = None;
        let page = render(&v);
        assert!(page.contains("none since the daemon started<br><span class=\"muted\">newest backup in the store: <span class=\"id\">20261207T030000Z-cccccc</span>, 2026-12-07T03:00:00Z, took 12.5 s, stored 2.0 KiB (8.0 KiB read)"), "{page}");
    }

    #[test]
    fn esc_shows_reordering_and_invisible_characters_as_escapes() {
        assert_eq!(
            esc("a\u{202e}gpj.exe\u{200f}"),
            "a\\u{202e}gpj.exe\\u{200f}"
        );
    }

    #[test]
    fn esc_replaces_the_five_metacharacters() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}

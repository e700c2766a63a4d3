//! The status page's chart: stored size and duration of a job's last
//! backups as two rows of bars in one inline SVG, so a shrink or a
//! slow-down stands out at a glance. Pure; colours come from the page's
//! CSS classes (`size`, `dur`, `sus`), so the print stylesheet can change
//! them.

use std::fmt::Write as _;

use super::escape::esc;

/// One backup in the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The backup ID (store content: escaped when drawn).
    pub label: String,
    /// When it started, as the axis shows it.
    pub when: String,
    pub stored_bytes: u64,
    pub duration_seconds: f64,
    pub suspicious: bool,
}

const WIDTH: f64 = 640.0;
const PANEL: f64 = 80.0;
const TOP: f64 = 26.0;
const GAP: f64 = 42.0;
const LEFT: f64 = 4.0;

/// The chart of `points` (oldest first); an empty string for none.
pub fn chart(points: &[Point]) -> String {
    if points.is_empty() {
        return String::new();
    }
    let height = TOP + PANEL + GAP + PANEL + 26.0;
    let mut out = String::with_capacity(512 + points.len() * 400);
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="Stored size and duration of the last {n} backups, oldest on the left" xmlns="http://www.w3.org/2000/svg">"#,
        n = points.len()
    );
    let max_size = points.iter().map(|p| p.stored_bytes).max().unwrap_or(0);
    let max_dur = points
        .iter()
        .map(|p| p.duration_seconds)
        .fold(0.0_f64, f64::max);
    panel(
        &mut out,
        points,
        TOP,
        &format!("stored size (max {})", crate::progress::human(max_size)),
        "size",
        |p| ratio(p.stored_bytes as f64, max_size as f64),
        |p| crate::progress::human(p.stored_bytes),
    );
    panel(
        &mut out,
        points,
        TOP + PANEL + GAP,
        &format!(
            "duration (max {})",
            crate::backup::report::human_duration(max_dur)
        ),
        "dur",
        |p| ratio(p.duration_seconds, max_dur),
        |p| crate::backup::report::human_duration(p.duration_seconds),
    );
    // The time axis: the oldest and the newest backup drawn.
    let y = height - 6.0;
    if let (Some(first), Some(last)) = (points.first(), points.last()) {
        let _ = write!(
            out,
            r#"<text class="axis" x="{LEFT}" y="{y:.1}">{}</text>"#,
            esc(&first.when)
        );
        if points.len() > 1 {
            let _ = write!(
                out,
                r#"<text class="axis" x="{x:.1}" y="{y:.1}" text-anchor="end">{}</text>"#,
                esc(&last.when),
                x = WIDTH - LEFT
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// Part of the panel's height a value takes (0 when the maximum is 0).
fn ratio(v: f64, max: f64) -> f64 {
    if max > 0.0 && v.is_finite() {
        (v / max).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

fn panel(
    out: &mut String,
    points: &[Point],
    top: f64,
    title: &str,
    class: &str,
    height_of: impl Fn(&Point) -> f64,
    value_of: impl Fn(&Point) -> String,
) {
    let base = top + PANEL;
    let _ = write!(
        out,
        r#"<text class="axis" x="{LEFT}" y="{y:.1}">{t}</text><line class="base" x1="{LEFT}" y1="{base:.1}" x2="{x2:.1}" y2="{base:.1}"/>"#,
        y = top - 5.0,
        t = esc(title),
        x2 = WIDTH - LEFT
    );
    let slot = (WIDTH - 2.0 * LEFT) / points.len() as f64;
    let bar = (slot * 0.7).clamp(1.0, 36.0);
    for (i, p) in points.iter().enumerate() {
        // A bar of at least a pixel, so a backup of zero bytes still shows.
        let h = (height_of(p) * PANEL).max(1.0);
        let x = LEFT + i as f64 * slot + (slot - bar) / 2.0;
        let sus = if p.suspicious { " sus" } else { "" };
        let _ = write!(
            out,
            r#"<rect class="{class}{sus}" x="{x:.1}" y="{y:.1}" width="{bar:.1}" height="{h:.1}"><title>{id}: {v}{note}</title></rect>"#,
            y = base - h,
            id = esc(&p.label),
            v = esc(&value_of(p)),
            note = if p.suspicious { " (suspicious)" } else { "" },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(label: &str, bytes: u64, secs: f64, suspicious: bool) -> Point {
        Point {
            label: label.into(),
            when: format!("t-{label}"),
            stored_bytes: bytes,
            duration_seconds: secs,
            suspicious,
        }
    }

    #[test]
    fn bars_scale_to_the_largest_and_suspicious_ones_are_marked() {
        let svg = chart(&[
            p("a", 100, 1.0, false),
            p("b", 50, 4.0, false),
            p("c", 0, 0.0, true),
        ]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 6);
        assert!(svg.contains(r#"class="size" x="#));
        assert!(
            svg.contains(r#"height="80.0"><title>a: 100 B</title>"#),
            "{svg}"
        );
        assert!(
            svg.contains(r#"height="40.0"><title>b: 50 B</title>"#),
            "{svg}"
        );
        assert!(svg.contains(r#"class="size sus""#));
        assert!(svg.contains("c: 0 B (suspicious)"));
        assert!(svg.contains("duration (max 4.0 s)"));
        assert!(svg.contains(">t-a</text>") && svg.contains(">t-c</text>"));
        assert_eq!(chart(&[]), "");
    }

    #[test]
    fn labels_are_escaped() {
        let svg = chart(&[p("<script>alert(1)</script>&\"'", 1, 0.0, false)]);
        assert!(!svg.contains("<script"), "{svg}");
        assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#39;"));
    }
}

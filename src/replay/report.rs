//! `replay --report DIR`: one self-contained HTML page (inline SVG and script, no network) with
//! what an analyst would rather look at than read: alerts over time per detector, the
//! off_pattern score distribution for fraud and legitimate swipes, precision and recall, the
//! cards with most alerts, and the alerts with their subjects' timelines ([`super::timeline`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use swipeguard_detectors::{DetectorName, PerDetector};

use super::drill::DrillDown;
use super::scoring::{AlertRow, ScoreHistogram, Scoring};
use super::summary::{thousands, Summary};
use super::timeline;

/// Name of the page inside the report directory.
pub const PAGE: &str = "index.html";

/// One colour per registered detector, by registry position (the first five as before).
const COLORS: [&str; swipeguard_detectors::registry::MAX_DETECTORS] = [
    "#d62728", "#ff7f0e", "#1f77b4", "#9467bd", "#2ca02c", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
];
const DAY_MS: i64 = 86_400_000;
/// Days are counted in China Standard Time.
pub(super) const CST_MS: i64 = 8 * 3_600_000;

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn day_label(day: i64) -> String {
    chrono::DateTime::from_timestamp_millis(day * DAY_MS)
        .map(|d| d.format("%m-%d").to_string())
        .unwrap_or_default()
}

/// Stacked bars of alerts per day (CST) and detector.
fn alerts_over_time(alerts: &[AlertRow]) -> String {
    let mut per_day: BTreeMap<i64, PerDetector> = BTreeMap::new();
    for a in alerts {
        per_day
            .entry((a.ts.0 + CST_MS).div_euclid(DAY_MS))
            .or_default()[a.detector.index()] += 1;
    }
    let (Some(first), Some(last)) = (
        per_day.keys().next().copied(),
        per_day.keys().last().copied(),
    ) else {
        return "<p>No alerts.</p>".into();
    };
    let days = (last - first + 1) as usize;
    let max = per_day
        .values()
        .map(|c| c.iter().sum::<u64>())
        .max()
        .unwrap_or(1)
        .max(1);
    let (w, h, left, bottom) = (900.0, 280.0, 50.0, 30.0);
    let bar_w = (w - left) / days as f64;
    let mut svg = format!(
        r#"<svg id="alerts-over-time" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="alerts per day by detector">"#
    );
    let plot_h = h - bottom - 10.0;
    let step = max.div_ceil(4).max(1);
    let max = step * 4;
    for tick in 0..=4u64 {
        let v = (step * tick) as f64;
        let y = 10.0 + plot_h - plot_h * tick as f64 / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{w}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end">{:.0}</text>"##,
            left - 4.0,
            y + 3.0,
            v
        );
    }
    for (day, counts) in &per_day {
        let x = left + (day - first) as f64 * bar_w;
        let mut y = 10.0 + plot_h;
        for d in DetectorName::all() {
            let n = counts[d.index()];
            if n == 0 {
                continue;
            }
            let bh = plot_h * n as f64 / max as f64;
            y -= bh;
            let _ = write!(
                svg,
                r#"<rect class="bar" data-detector="{}" x="{x:.1}" y="{y:.1}" width="{:.1}" height="{bh:.1}" fill="{}"><title>{} {}: {n}</title></rect>"#,
                d.as_str(),
                (bar_w * 0.85).max(1.0),
                COLORS[d.index()],
                day_label(*day),
                d.as_str()
            );
        }
    }
    let step = (days / 10).max(1);
    for i in (0..days).step_by(step) {
        let x = left + i as f64 * bar_w + bar_w / 2.0;
        let _ = write!(
            svg,
            r#"<text x="{x:.1}" y="{}" font-size="10" text-anchor="middle">{}</text>"#,
            h - 12.0,
            day_label(first + i as i64)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Histogram of off_pattern scores of every scored event (alerted or not), fraud against
/// legitimate; bar heights on a log scale, since legitimate events outnumber fraud by far.
fn score_distribution(h: &ScoreHistogram, threshold: f64) -> String {
    if h.is_empty() {
        return "<p>No event was scored by off_pattern.</p>".into();
    }
    let bins = h.fraud.len();
    let max = h
        .fraud
        .iter()
        .chain(&h.legit)
        .copied()
        .max()
        .unwrap_or(1)
        .max(1);
    let height = |n: u64| (1.0 + n as f64).log10() / (1.0 + max as f64).log10();
    let (w, hh, left, bottom) = (900.0, 240.0, 50.0, 30.0);
    let plot_h = hh - bottom - 10.0;
    let bw = (w - left) / bins as f64;
    let mut svg = format!(
        r#"<svg id="score-distribution" viewBox="0 0 {w} {hh}" width="{w}" height="{hh}" role="img" aria-label="off_pattern score distribution">"#
    );
    for (i, (f, l)) in h.fraud.iter().zip(&h.legit).enumerate() {
        let x = left + i as f64 * bw;
        let lo = i as f64 * ScoreHistogram::BIN;
        for (n, color, class, dx) in [
            (*f, "#d62728", "fraud", 0.0),
            (*l, "#7f7f7f", "legit", bw * 0.42),
        ] {
            if n == 0 {
                continue;
            }
            let bh = plot_h * height(n);
            let _ = write!(
                svg,
                r#"<rect class="{class}" x="{:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="{color}"><title>score {lo:.1}–{:.1}: {n} {class}</title></rect>"#,
                x + dx,
                10.0 + plot_h - bh,
                bw * 0.4,
                lo + ScoreHistogram::BIN,
            );
        }
        if i % 4 == 0 {
            let _ = write!(
                svg,
                r#"<text x="{x:.1}" y="{}" font-size="10">{lo:.0}</text>"#,
                hh - 12.0
            );
        }
    }
    // Where the amount test fires with the configured alert_p_value.
    let tx = left + (threshold / ScoreHistogram::BIN) * bw;
    let _ = write!(
        svg,
        r##"<line id="alert-threshold" x1="{tx:.1}" x2="{tx:.1}" y1="10" y2="{:.1}" stroke="#000" stroke-dasharray="4 3"/><text x="{left}" y="{}" font-size="10">score (−log10 p, every scored swipe; log-scaled counts; dashed: alert_p_value) →   largest bin {max}</text></svg>"##,
        10.0 + plot_h,
        hh - 1.0
    );
    svg
}

fn quality_table(summary: &Summary) -> String {
    let Some(l) = &summary.labels else {
        return "<p>The input carries no labels, so precision and recall cannot be measured.</p>"
            .into();
    };
    let pct = |x: Option<f64>| x.map_or_else(|| "–".into(), |v| format!("{:.1}%", v * 100.0));
    let mut t = String::from(
        r#"<table id="quality"><tr><th>detector</th><th>alerts</th><th>precision</th><th>recall</th></tr>"#,
    );
    for (d, q) in &l.per_detector {
        let _ = write!(
            t,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            d.as_str(),
            thousands(q.alerts),
            pct(q.precision()),
            pct(q.recall())
        );
    }
    let o = &l.overall;
    let _ = write!(
        t,
        "<tr><th>all detectors</th><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        thousands(o.alerts),
        pct(o.precision()),
        pct(o.recall())
    );
    let _ = write!(
        t,
        "<p>{} fraud events, {} legitimate. False alerts per 1,000 legitimate events: {:.3}.</p>",
        thousands(l.fraud_events),
        thousands(l.legit_events),
        l.false_alerts_per_1000_legit
    );
    t.push_str(
        r#"<table id="scenarios"><tr><th>scenario</th><th>events</th><th>any detector</th>"#,
    );
    for d in DetectorName::all() {
        let _ = write!(t, "<th>{}</th>", d.as_str());
    }
    t.push_str("</tr>");
    for (name, n, by, any) in &l.per_scenario {
        let _ = write!(
            t,
            "<tr><td>{}</td><td>{}</td><td>{}</td>",
            esc(name),
            thousands(*n),
            pct(Some(*any as f64 / *n as f64))
        );
        for k in by {
            let _ = write!(t, "<td>{}</td>", pct(Some(*k as f64 / *n as f64)));
        }
        t.push_str("</tr>");
    }
    t.push_str("</table>");
    t
}

fn top_cards(alerts: &[AlertRow]) -> String {
    let mut by_card: HashMap<&str, (u64, PerDetector)> = HashMap::new();
    for a in alerts {
        let e = by_card.entry(a.card.as_str()).or_default();
        e.0 += 1;
        e.1[a.detector.index()] += 1;
    }
    let mut cards: Vec<_> = by_card.into_iter().collect();
    cards.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(b.0)));
    let mut t = String::from(
        r#"<table id="top-cards"><tr><th>card</th><th>alerts</th><th>by detector</th></tr>"#,
    );
    for (card, (n, by)) in cards.into_iter().take(20) {
        let detail: Vec<String> = DetectorName::all()
            .filter(|d| by[d.index()] > 0)
            .map(|d| format!("{} {}", d.as_str(), by[d.index()]))
            .collect();
        let _ = write!(
            t,
            r#"<tr><td><a href="{}">{}</a></td><td>{n}</td><td>{}</td></tr>"#,
            esc(&timeline::subject_link("card", card, None)),
            esc(card),
            detail.join(", ")
        );
    }
    t.push_str("</table>");
    t
}

/// Renders the page.
pub fn render(summary: &Summary, scoring: &Scoring, drill: &DrillDown) -> String {
    let legend: String = DetectorName::all()
        .map(|d| {
            format!(
                r#"<span class="key"><i style="background:{}"></i>{}</span>"#,
                COLORS[d.index()],
                d.as_str()
            )
        })
        .collect();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>swipeguard replay report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.key {{ margin-right: 1.5em; font-size: 0.9em; }} .key i {{ display: inline-block; width: 12px; height: 12px; margin-right: 4px; }}
pre {{ background: #f6f6f6; padding: 1em; }}
.hint {{ background: #fff3cd; padding: 0.5em 1em; }}
{drill_css}</style></head><body>
<h1>swipeguard replay report</h1>
<p id="headline">{files}: {rows} rows, {alerts} alerts in {secs:.2} s.</p>
{notes}<h2>Alerts per day by detector</h2><div>{legend}</div>
{over_time}
<h2>off_pattern score of every scored swipe: fraud vs legitimate</h2>
<div><span class="key"><i style="background:#d62728"></i>fraud</span><span class="key"><i style="background:#7f7f7f"></i>legitimate</span></div>
{scores}
<h2>Precision and recall</h2>
{quality}
<h2>Cards with most alerts</h2>
{cards}
{drill}
{sweep}
<h2>Summary</h2>
<pre>{text}</pre>
</body></html>
"#,
        files = esc(&summary.files.join(", ")),
        rows = thousands(summary.rows),
        alerts = thousands(summary.total_alerts()),
        secs = summary.wall.as_secs_f64(),
        // What went wrong in the input, above everything it spoils.
        notes = summary
            .mapping_hints()
            .iter()
            .map(|h| format!("<p class=\"hint\">{}</p>\n", esc(h.trim())))
            .collect::<String>(),
        over_time = alerts_over_time(&scoring.alerts),
        scores = score_distribution(&scoring.scores, -summary.alert_p_value.log10()),
        quality = quality_table(summary),
        cards = top_cards(&scoring.alerts),
        drill_css = timeline::CSS,
        drill = timeline::section(drill, scoring.has_labels()),
        sweep = summary.sweep.as_ref().map_or_else(String::new, |sw| format!(
            r#"<h2>Sweep of {}</h2><div><span class="key"><i style="background:#1f77b4"></i>precision</span><span class="key"><i style="background:#d62728"></i>event recall</span><span class="key"><i style="background:#2ca02c"></i>card recall</span></div>{}"#,
            esc(&sw.key),
            sw.curve_svg()
        )),
        text = esc(&summary.to_string()),
    )
}

/// Writes `DIR/index.html`.
pub fn write(
    dir: &Path,
    summary: &Summary,
    scoring: &Scoring,
    drill: &DrillDown,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(PAGE), render(summary, scoring, drill))
}

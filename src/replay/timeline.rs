//! The report's drill-down section: a search box, the timeline view and the alerts table.
//!
//! The table is plain HTML; each row links to its subject's timeline by a URL fragment,
//! `#subject=<kind>:<id>&alert=<alert id>`, and the search box goes through a fragment too,
//! `#search=<id>`, so a link, a bookmark, the back button and a headless browser all reach a
//! timeline the same way. The timelines travel as one JSON document in a
//! `<script type="application/json">` element and are drawn by a small inline script that builds
//! the DOM with `textContent` only: ids come from input files, and no value of theirs is ever
//! parsed as markup. Search takes an id of any kind (`card:` … `trace_code:` to pick one) and
//! shows every subject with that id, or says the report has none. Times are China Standard Time.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use swipeguard_detectors::EventTime;

use super::drill::{AlertNote, DrillDown, EventRow, SubjectPlan, SUBJECTS};
use super::report::{esc, CST_MS};
use super::summary::thousands;

/// Styles of the section, for the page's `<style>`.
pub const CSS: &str = r#"
#timeline table td, #alerts td { text-align: left; vertical-align: top; }
#timeline tr.evidence { background: #fff1a8; }
#timeline tr.evidence.focus { background: #ffd23f; font-weight: bold; }
#timeline tr.alert-mark td { color: #b31b1b; border-left: 4px solid #d62728; }
#timeline tr.alert-mark.current td, #timeline tr.alert.current { background: #fde0e0; }
#timeline tr.gap td { text-align: center; color: #999; }
#timeline ul.features { margin: 0; padding-left: 1.2em; }
.none, .note { color: #555; }
#search-form input { width: 22em; }
"#;

/// Draws a subject's timeline from the embedded data; see the module doc.
const SCRIPT: &str = r##"
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("drill-data").textContent);
  var view = document.getElementById("timeline");
  var box = document.getElementById("search");
  var KINDS = ["card", "terminal", "account", "trace_code"];
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function row(cells, cls) {
    var tr = el("tr", cls);
    cells.forEach(function (c) {
      var td = el("td");
      if (c instanceof Node) td.appendChild(c); else td.textContent = c === null || c === undefined ? "" : String(c);
      tr.appendChild(td);
    });
    return tr;
  }
  function head(names) {
    var tr = el("tr");
    names.forEach(function (n) { tr.appendChild(el("th", null, n)); });
    return tr;
  }
  function wide(cls, text) {
    var tr = el("tr", cls), td = el("td", null, text);
    td.colSpan = 8;
    tr.appendChild(td);
    return tr;
  }
  function say(text) { view.replaceChildren(el("p", "none", text)); }
  function missing(what) {
    if (data.unavailable) return say("Timelines are unavailable: " + data.unavailable + ".");
    var more = data.left_out > 0 ? " (it keeps the timelines of the " + data.cap +
      " most-alerted subjects; " + data.left_out + " other alerted subjects have none)" : "";
    say("No timeline for " + what + " in this report" + more + ".");
  }
  function draw(key, alertId) {
    var s = data.subjects[key];
    var div = el("div", "subject-timeline");
    div.setAttribute("data-subject", key);
    div.appendChild(el("h3", null, s.kind + " " + s.id + ": " + s.alerts + (s.alerts === 1 ? " alert" : " alerts")));
    if (s.alerts > s.shown.length)
      div.appendChild(el("p", "note", "Drawn around its " + s.shown.length + " most severe, newest alerts."));
    var evidenceOf = {}, focus = {}, found = false;
    var alerts = el("table", "timeline-alerts");
    alerts.appendChild(head(["time", "detector", "severity", "score", "explanation", "surprising features"]));
    s.shown.forEach(function (a) {
      var current = a.id === alertId;
      found = found || current;
      a.ev.forEach(function (id) {
        (evidenceOf[id] = evidenceOf[id] || []).push(a.d);
        if (current) focus[id] = true;
      });
      var features = el("ul", "features");
      a.f.forEach(function (f) {
        features.appendChild(el("li", "feature", f.n + ": " + f.o + " (usual " + f.u + "), surprise " + f.s + " (p = " + f.p + ")"));
      });
      var tr = row([a.t, a.d + (a.r ? " / " + a.r : ""), a.s, a.sc, a.x, a.f.length ? features : ""], current ? "alert current" : "alert");
      tr.setAttribute("data-alert", a.id);
      alerts.appendChild(tr);
    });
    div.appendChild(alerts);
    if (alertId && !found)
      div.appendChild(el("p", "note", "Alert " + alertId + " is not among those this timeline is drawn around."));
    var events = el("table", "timeline-events");
    events.appendChild(head(["time", "event", "card", "amount", "merchant", "outcome", "label", "evidence of"]));
    var marks = s.shown.slice().sort(function (x, y) { return x.ms - y.ms; }), m = 0;
    function mark(a) {
      return wide("alert-mark" + (a.id === alertId ? " current" : ""), "\u25b2 " + a.t + " " + a.d + " (" + a.s + "): " + a.x);
    }
    s.events.forEach(function (e) {
      while (m < marks.length && marks[m].ms < e.ms) events.appendChild(mark(marks[m++]));
      if (e.g) events.appendChild(wide("gap", "\u22ef"));
      var cls = "event" + (evidenceOf[e.id] ? " evidence" : "") + (focus[e.id] ? " focus" : "");
      var outcome = e.o + (e.dr ? " (" + e.dr + ")" : "") + (e.k ? ", " + e.k : "");
      var tr = row([e.t, e.id, e.c, e.a, e.m, outcome, e.l, evidenceOf[e.id] ? evidenceOf[e.id].join(", ") : ""], cls);
      tr.setAttribute("data-event", e.id);
      events.appendChild(tr);
    });
    while (m < marks.length) events.appendChild(mark(marks[m++]));
    div.appendChild(events);
    return div;
  }
  function show(key, alertId) {
    if (!data.subjects[key]) return missing(key);
    view.replaceChildren(draw(key, alertId));
    view.scrollIntoView();
  }
  function search(q) {
    q = q.trim();
    if (!q) return say("Type a card, terminal, person or traceability code id.");
    var keys = KINDS.map(function (k) { return k + ":" + q; });
    keys.unshift(q);
    keys = keys.filter(function (k, i) { return data.subjects[k] && keys.indexOf(k) === i; });
    if (!keys.length) return missing(q);
    view.replaceChildren.apply(view, keys.map(function (k) { return draw(k, null); }));
    view.scrollIntoView();
  }
  function route() {
    var p = new URLSearchParams(location.hash.slice(1));
    if (p.has("subject")) show(p.get("subject"), p.get("alert"));
    else if (p.has("search")) { box.value = p.get("search"); search(p.get("search")); }
  }
  document.getElementById("search-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var h = "#search=" + encodeURIComponent(box.value.trim());
    if (location.hash === h) route(); else location.hash = h;
  });
  window.addEventListener("hashchange", route);
  route();
})();
"##;

/// `2024-03-01 08:15:00`, China Standard Time.
pub fn cst(ts: EventTime) -> String {
    chrono::DateTime::from_timestamp_millis(ts.0.saturating_add(CST_MS))
        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ts.0.to_string())
}

/// Percent-encodes all but unreserved characters, for a URL fragment.
fn fragment_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The fragment that shows a subject's timeline (at one of its alerts).
pub fn subject_link(kind: &str, id: &str, alert: Option<&str>) -> String {
    let mut f = format!("#subject={kind}:{}", fragment_value(id));
    if let Some(a) = alert {
        let _ = write!(f, "&alert={}", fragment_value(a));
    }
    f
}

#[derive(Serialize)]
struct Data<'a> {
    /// By `kind:id`.
    subjects: BTreeMap<String, SubjectJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unavailable: Option<&'a str>,
    left_out: usize,
    cap: usize,
}

#[derive(Serialize)]
struct SubjectJson<'a> {
    kind: &'static str,
    id: &'a str,
    alerts: u64,
    shown: Vec<AlertJson<'a>>,
    events: Vec<EventJson<'a>>,
}

#[derive(Serialize)]
struct AlertJson<'a> {
    id: &'a str,
    t: String,
    ms: i64,
    d: &'static str,
    s: &'static str,
    sc: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    r: Option<&'a str>,
    x: &'a str,
    ev: Vec<&'a str>,
    f: Vec<FeatureJson<'a>>,
}

#[derive(Serialize)]
struct FeatureJson<'a> {
    n: &'a str,
    o: &'a str,
    u: &'a str,
    /// The p-value.
    p: String,
    /// −log10 p: how surprising, on the scale of the score chart.
    s: String,
}

#[derive(Serialize)]
struct EventJson<'a> {
    id: &'a str,
    t: String,
    ms: i64,
    c: &'a str,
    a: String,
    m: &'a str,
    o: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dr: Option<&'static str>,
    /// The event type when not a settlement.
    #[serde(skip_serializing_if = "Option::is_none")]
    k: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    l: Option<&'a str>,
    /// Events of the subject may be missing between this one and the one before.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    g: bool,
}

fn alert_json(a: &AlertNote) -> AlertJson<'_> {
    let mut features: Vec<&swipeguard_detectors::FeatureSurprise> = a.features.iter().collect();
    features.sort_by(|x, y| x.p_value.total_cmp(&y.p_value));
    AlertJson {
        id: &a.alert_id,
        t: cst(a.ts),
        ms: a.ts.0,
        d: a.detector.as_str(),
        s: a.severity.as_str(),
        sc: format!("{:.2}", a.score),
        r: a.reason.as_deref(),
        x: &a.explanation,
        ev: a.evidence.iter().map(|e| e.as_str()).collect(),
        f: features
            .into_iter()
            .map(|f| FeatureJson {
                n: &f.feature,
                o: &f.observed,
                u: &f.usual,
                p: format!("{:.1e}", f.p_value),
                // `+ 0.0`: p = 1 reads 0.0, not -0.0.
                s: format!(
                    "{:.1}",
                    (-f.p_value.max(f64::MIN_POSITIVE).log10()).max(0.0) + 0.0
                ),
            })
            .collect(),
    }
}

fn subject_json<'a>(s: &'a SubjectPlan, events: &'a [EventRow]) -> SubjectJson<'a> {
    let mut prev: Option<u16> = None;
    let events = events
        .iter()
        .map(|e| {
            let gap = prev.is_some_and(|p| p & e.windows == 0);
            prev = Some(e.windows);
            EventJson {
                id: e.id.as_str(),
                t: cst(e.ts),
                ms: e.ts.0,
                c: e.card.as_str(),
                a: e.amount.to_string(),
                m: &e.merchant,
                o: e.outcome.as_str(),
                dr: e.decline_reason.map(|r| r.as_str()),
                k: (e.event_type != swipeguard_detectors::EventType::Settlement)
                    .then(|| e.event_type.as_str()),
                l: e.label.as_deref(),
                g: gap,
            }
        })
        .collect();
    SubjectJson {
        kind: s.subject.kind.as_str(),
        id: &s.subject.id,
        alerts: s.alerts,
        shown: s.shown.iter().map(alert_json).collect(),
        events,
    }
}

/// The data document, safe inside a `<script>` element: no `<`, `>` or `&` left in it (JSON
/// escapes them in strings, the only place they can be).
fn data_json(d: &DrillDown) -> String {
    let subjects = match &d.timelines {
        Ok(timelines) => d
            .plan
            .subjects
            .iter()
            .zip(timelines)
            .map(|(s, events)| {
                (
                    format!("{}:{}", s.subject.kind.as_str(), s.subject.id),
                    subject_json(s, events),
                )
            })
            .collect(),
        Err(_) => BTreeMap::new(),
    };
    let data = Data {
        subjects,
        unavailable: d.timelines.as_ref().err().map(String::as_str),
        left_out: d.plan.subjects_left_out,
        cap: SUBJECTS,
    };
    serde_json::to_string(&data)
        .unwrap_or_else(|_| r#"{"subjects":{},"left_out":0,"cap":0}"#.into())
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

fn alerts_table(d: &DrillDown, labelled: bool) -> String {
    let p = &d.plan;
    if p.table.is_empty() {
        return "<p>No alerts.</p>".into();
    }
    let mut t = format!(
        r#"<p id="alerts-note">{} alerts, most severe first, then newest{}.</p><table id="alerts"><tr><th>time</th><th>severity</th><th>detector</th><th>subject</th><th>score</th><th>explanation</th>"#,
        thousands(p.total_alerts),
        if p.table_left_out > 0 {
            format!(
                "; the first {} are listed, {} left out",
                thousands(p.table.len() as u64),
                thousands(p.table_left_out)
            )
        } else {
            String::new()
        }
    );
    if labelled {
        t.push_str("<th>fraud evidence</th>");
    }
    t.push_str("</tr>");
    for a in &p.table {
        let kind = a.subject.kind.as_str();
        let detector = match &a.reason {
            Some(r) => format!("{} / {}", a.detector.as_str(), esc(r)),
            None => a.detector.as_str().to_string(),
        };
        let _ = write!(
            t,
            r#"<tr class="sev-{sev}"><td>{time}</td><td>{sev}</td><td>{detector}</td><td><a class="subject" href="{href}">{kind} {id}</a></td><td>{score:.2}</td><td>{x}</td>"#,
            sev = a.severity.as_str(),
            time = cst(a.ts),
            href = esc(&subject_link(kind, &a.subject.id, Some(&a.alert_id))),
            id = esc(&a.subject.id),
            score = a.score,
            x = esc(&a.explanation),
        );
        if labelled {
            let yes = match a.true_positive {
                Some(true) => "yes",
                Some(false) => "no",
                None => "",
            };
            let _ = write!(t, "<td>{yes}</td>");
        }
        t.push_str("</tr>");
    }
    t.push_str("</table>");
    t
}

/// The section's HTML: search box, timeline view, alerts table, data and script.
pub fn section(d: &DrillDown, labelled: bool) -> String {
    let mut s = String::from(
        r#"<h2 id="drill">Alerts and timelines</h2>
<form id="search-form" role="search"><label for="search">Card or subject id </label><input id="search" type="search" autocomplete="off" placeholder="card, terminal, person or traceability code"> <button type="submit">Show timeline</button></form>
"#,
    );
    match &d.timelines {
        Err(why) => {
            let _ = write!(
                s,
                r#"<p id="timelines-unavailable">Timelines are unavailable: {}.</p>"#,
                esc(why)
            );
        }
        Ok(_) => {
            let _ = write!(
                s,
                r#"<p class="note">Each alert links to its subject's timeline: the events around the alert (evidence highlighted, the linked alert's in bold), times in China Standard Time. Timelines are kept for the {} most-alerted subjects{}.</p>"#,
                SUBJECTS,
                if d.plan.subjects_left_out > 0 {
                    format!(
                        "; {} other alerted subjects have none",
                        thousands(d.plan.subjects_left_out as u64)
                    )
                } else {
                    String::new()
                }
            );
        }
    }
    s.push_str(
        r#"<div id="timeline"><p class="none">Pick an alert below, or search for an id.</p></div>
"#,
    );
    s.push_str(&alerts_table(d, labelled));
    let _ = write!(
        s,
        "\n<script type=\"application/json\" id=\"drill-data\">{}</script>\n<script>{SCRIPT}</script>\n",
        data_json(d)
    );
    s
}

#[cfg(test)]
#[path = "timeline_tests.rs"]
mod tests;

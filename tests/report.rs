//! `replay --report`: the page renders in headless Chromium and shows its charts, and its
//! alerts drill down to their subjects' timelines.
//!
//! The page is drawn to a PNG by Chromium and the picture is checked for the colours the charts
//! use: bars of every detector in the alerts-per-day chart, fraud and legitimate bars in the
//! score histogram. The drill-down is clicked through: a table row's link is a URL fragment,
//! so loading the page at that fragment and dumping the DOM after its script ran is what a click
//! shows. `.ci/run` installs Debian's chromium; without it these tests fail, they do not skip.

use std::path::Path;
use std::process::{Command, Stdio};

fn chromium() -> &'static str {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("chromium")
}

/// Pixels of each colour in a PNG.
fn count_colours(png_path: &Path, colours: &[[u8; 3]]) -> Vec<usize> {
    let decoder = png::Decoder::new(std::fs::File::open(png_path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let mut counts = vec![0; colours.len()];
    for px in buf[..info.buffer_size()].chunks(channels) {
        for (i, c) in colours.iter().enumerate() {
            if px[0] == c[0] && px[1] == c[1] && px[2] == c[2] {
                counts[i] += 1;
            }
        }
    }
    counts
}

const CHROMIUM_FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

#[test]
fn the_report_renders_with_its_charts() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let out = Command::new(env!("CARGO_BIN_EXE_swipeguard"))
        .args(["replay", "--out"])
        .arg(dir.path().join("alerts.jsonl"))
        .arg("--report")
        .arg(&report)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = report.join("index.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page must not need the network"
    );
    assert!(html.contains(r#"<table id="quality">"#) && html.contains(r#"<table id="top-cards">"#));

    let shot = dir.path().join("page.png");
    let status = Command::new(chromium())
        .args(CHROMIUM_FLAGS)
        .args(["--hide-scrollbars", "--window-size=1000,1400"])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium must be installed (apt-get install chromium); .ci/run installs it");
    assert!(
        shot.exists(),
        "chromium drew nothing: {}",
        String::from_utf8_lossy(&status.stderr)
    );

    // Bars of every detector's colour, well beyond the legend's 12×12 swatches (the bundled
    // sample has alerts of every detector; red is also the fraud colour of the histogram).
    let colours = [
        [0xd6, 0x27, 0x28],
        [0xff, 0x7f, 0x0e],
        [0x1f, 0x77, 0xb4],
        [0x94, 0x67, 0xbd],
        [0x2c, 0xa0, 0x2c],
    ];
    let counts = count_colours(&shot, &colours);
    for (i, n) in counts.iter().enumerate() {
        assert!(
            *n > 600,
            "colour {:02x?} barely on the page ({n} px): {counts:?}",
            colours[i]
        );
    }
}

fn swipeguard(dir: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_swipeguard"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "swipeguard {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The page's DOM after its script ran, loaded at `fragment` (what clicking a link to it shows),
/// cut to the timeline view.
fn timeline_at(dir: &Path, page: &Path, fragment: &str) -> String {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out = Command::new(chromium())
        .args(CHROMIUM_FLAGS)
        .arg("--virtual-time-budget=5000")
        .arg(format!(
            "--user-data-dir={}",
            dir.join(format!("profile-{run}")).display()
        ))
        .arg("--dump-dom")
        .arg(format!("file://{}#{fragment}", page.display()))
        .output()
        .expect("chromium must be installed (apt-get install chromium); .ci/run installs it");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let start = dom.find(r#"id="timeline""#).unwrap_or_else(|| {
        panic!(
            "no timeline view in the DOM: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let end = dom[start..]
        .find(r#"id="alerts-note""#)
        .map_or(dom.len(), |i| start + i);
    dom[start..end].to_string()
}

/// The class of the timeline row of event `id`.
fn row_class<'a>(timeline: &'a str, id: &str) -> &'a str {
    let at = timeline
        .find(&format!(r#"data-event="{id}""#))
        .unwrap_or_else(|| panic!("event {id} not in the timeline: {timeline}"));
    let tr = timeline[..at].rfind("<tr").unwrap();
    let row = &timeline[tr..at];
    let class = row.find(r#"class=""#).map_or("", |c| &row[c + 7..]);
    class.split('"').next().unwrap_or("")
}

#[test]
fn alerts_drill_down_to_their_subjects_timelines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = |p: &str| d.join(p).display().to_string();
    // Small, and with every detector firing (among them off_pattern, and detectors keyed by
    // terminal and by traceability code): few enough subjects that each has a timeline.
    swipeguard(
        d,
        &[
            "simulate",
            "--cards",
            "300",
            "--days",
            "14",
            "--seed",
            "3",
            "--fraud-share",
            "0.1",
            "--out",
            &s("sim.jsonl"),
        ],
    );
    swipeguard(
        d,
        &[
            "replay",
            &s("sim.jsonl"),
            "--out",
            &s("alerts.jsonl"),
            "--report",
            &s("report"),
            "--no-progress",
        ],
    );
    let page = d.join("report").join("index.html");
    let html = std::fs::read_to_string(&page).unwrap();
    println!("report size: {} bytes", html.len());
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(
        !html.contains("event evidence"),
        "evidence is marked by the page's script, not in the file"
    );
    let alerts: Vec<serde_json::Value> = std::fs::read_to_string(d.join("alerts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let off_pattern = alerts
        .iter()
        .find(|a| a["detector"] == "off_pattern" && !a["features"].as_array().unwrap().is_empty())
        .expect("an off_pattern alert with features");
    let elsewhere = alerts
        .iter()
        .find(|a| a["subject"]["kind"] == "terminal")
        .expect("an alert about a terminal");
    let resold = alerts
        .iter()
        .find(|a| a["subject"]["kind"] == "trace_code")
        .expect("an alert about a traceability code");

    for alert in [off_pattern, elsewhere, resold] {
        let (kind, id) = (
            alert["subject"]["kind"].as_str().unwrap(),
            alert["subject"]["id"].as_str().unwrap(),
        );
        let alert_id = alert["alert_id"].as_str().unwrap();
        // The table row's link (simulated ids need no percent-encoding).
        let fragment = format!("subject={kind}:{id}&alert={alert_id}");
        assert!(
            html.contains(&format!(r##"href="#{}""##, fragment.replace('&', "&amp;"))),
            "no table row links to {fragment}"
        );
        let timeline = timeline_at(d, &page, &fragment);
        assert!(
            timeline.contains(&format!(r#"data-subject="{kind}:{id}""#)),
            "{fragment}: {timeline}"
        );
        for evidence in alert["evidence"].as_array().unwrap() {
            let class = row_class(&timeline, evidence.as_str().unwrap());
            assert!(
                class.contains("evidence") && class.contains("focus"),
                "{fragment}: evidence {evidence} marked {class:?}"
            );
        }
        // A traceability code may have no events but its evidence; a card and a terminal do.
        assert!(
            kind == "trace_code"
                || timeline.matches(r#"<tr class="event"#).count()
                    > alert["evidence"].as_array().unwrap().len(),
            "{fragment}: the events around the alert, not only its evidence"
        );
        assert!(
            timeline.contains(r#"<tr class="alert current""#),
            "{fragment}"
        );
    }
    let timeline = timeline_at(
        d,
        &page,
        &format!(
            "subject=card:{}&alert={}",
            off_pattern["subject"]["id"].as_str().unwrap(),
            off_pattern["alert_id"].as_str().unwrap()
        ),
    );
    for f in off_pattern["features"].as_array().unwrap() {
        let name = f["feature"].as_str().unwrap();
        assert!(
            timeline.contains(&format!(r#"<li class="feature">{name}: "#)),
            "feature {name} not named: {timeline}"
        );
    }

    // The search box, through the fragment it sets: a known id of any kind, and an unknown one.
    let card = off_pattern["card_id"].as_str().unwrap();
    let found = timeline_at(d, &page, &format!("search={card}"));
    assert!(
        found.contains(&format!(r#"data-subject="card:{card}""#)),
        "{found}"
    );
    let missing = timeline_at(d, &page, "search=no-such-card-4711");
    assert!(
        missing.contains("No timeline for no-such-card-4711 in this report"),
        "{missing}"
    );
    assert!(!missing.contains("data-subject"), "{missing}");
}

#[test]
fn input_that_cannot_be_read_twice_gets_no_timelines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = d.join("sim.jsonl");
    swipeguard(
        d,
        &[
            "simulate",
            "--cards",
            "200",
            "--days",
            "7",
            "--seed",
            "4",
            "--out",
            &sim.display().to_string(),
        ],
    );
    let report = d.join("report");
    let out = Command::new(env!("CARGO_BIN_EXE_swipeguard"))
        .args(["replay", "/dev/stdin", "--no-progress", "--out"])
        .arg(d.join("alerts.jsonl"))
        .arg("--report")
        .arg(&report)
        .current_dir(d)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            let mut stdin = child.stdin.take().unwrap();
            std::io::copy(&mut std::fs::File::open(&sim)?, &mut stdin)?;
            drop(stdin);
            child.wait_with_output()
        })
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(
        html.contains(r#"<p id="timelines-unavailable">Timelines are unavailable: /dev/stdin is not a regular file"#),
        "the page says why there are no timelines"
    );
    assert!(
        html.contains(r#"<table id="alerts">"#),
        "the alerts are still listed"
    );
}

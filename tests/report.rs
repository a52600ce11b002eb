//! `replay --report`: the page renders in headless Chromium and shows its charts.
//!
//! The page is drawn to a PNG by Chromium and the picture is checked for the colours the charts
//! use: bars of every detector in the alerts-per-day chart, fraud and legitimate bars in the
//! score histogram. `.ci/run` installs Debian's chromium; without it this test fails, it does not
//! skip.

use std::path::Path;
use std::process::Command;

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
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1000,1400",
        ])
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

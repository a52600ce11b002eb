//! The deployment files under `deploy/` agree with the code they deploy:
//!
//! - the example configuration writes out every key, each at its default (brokers aside), and
//!   `swipeguard check-config` accepts it;
//! - the Prometheus rules and the Grafana dashboard name only metrics of the catalogue
//!   (`swipeguard::metrics::NAMES`), the dashboard names all of them, and every panel queries the
//!   `${datasource}` variable;
//! - every alert rule has a promtool unit test where it fires and one where it does not;
//! - the systemd unit checks the configuration before starting, outlasts the shutdown grace and
//!   is hardened;
//! - `scripts/promtool-check.sh` passes (promtool's own checks and rule tests, systemd-analyze),
//!   and every dashboard query parses as PromQL.
//!
//! YAML is read by scanning lines: the project has no YAML parser and promtool parses it for real.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use swipeguard::config::Config;
use swipeguard::metrics::{Metrics, NAMES};

const EXAMPLE: &str = "deploy/config/swipeguard.toml";
const RULES: &str = "deploy/prometheus/rules.yml";
const RULES_TEST: &str = "deploy/prometheus/rules_test.yml";
const DASHBOARD: &str = "deploy/grafana/dashboards/swipeguard.json";
const UNIT: &str = "deploy/systemd/swipeguard.service";
const DS: &str = "${datasource}";
/// Keys whose default is "unset", and the TLS/SASL example: commented out in the example.
const COMMENTED: [&str; 4] = [
    "key_file",
    "key_env",
    "\"security.protocol\"",
    "\"sasl.password\"",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The defaults, with the one key that has none set as in the example.
fn expected_config() -> Config {
    let mut c = Config::default();
    c.kafka.brokers = Some("127.0.0.1:9092".into());
    c
}

/// Dotted paths of every table and value in `table`.
fn key_paths(table: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
    for (k, v) in table {
        if let toml::Value::Table(t) = v {
            key_paths(t, &format!("{prefix}{k}."), out);
        }
        out.insert(format!("{prefix}{k}"));
    }
}

#[test]
fn example_config_is_every_key_at_its_default() {
    let text = read(EXAMPLE);
    let parsed = Config::parse(&text, EXAMPLE, std::iter::empty()).unwrap();
    assert_eq!(parsed, expected_config());

    // Written out, not merely defaulted: every key the configuration serialises is in the file.
    let (mut written, mut all) = (BTreeSet::new(), BTreeSet::new());
    key_paths(&toml::from_str(&text).unwrap(), "", &mut written);
    let full = toml::Value::try_from(expected_config()).unwrap();
    key_paths(full.as_table().unwrap(), "", &mut all);
    let missing: Vec<_> = all.difference(&written).collect();
    assert!(missing.is_empty(), "{EXAMPLE} lacks {missing:?}");
    for key in COMMENTED {
        assert!(
            text.contains(&format!("#   {key} = ")),
            "no commented {key}"
        );
    }
}

#[test]
fn check_config_accepts_the_example_and_prints_it_back() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swipeguard"));
    cmd.arg("check-config").arg(root().join(EXAMPLE));
    for (var, _) in std::env::vars().filter(|(v, _)| v.starts_with("SWIPEGUARD_")) {
        cmd.env_remove(var);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "check-config: {}", output_text(&out));
    let printed = String::from_utf8(out.stdout).unwrap();
    let reparsed = Config::parse(&printed, "stdout", std::iter::empty()).unwrap();
    assert_eq!(reparsed, expected_config());
}

/// Names of histograms, whose series carry `_bucket`, `_sum` and `_count` suffixes.
fn histograms() -> BTreeSet<String> {
    let text = Metrics::new().unwrap().render();
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" histogram"))
        .map(str::to_string)
        .collect()
}

/// Every `swipeguard_*` word in `text`, histogram series mapped to their metric's name.
fn metric_names(text: &str) -> BTreeSet<String> {
    let hist = histograms();
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("swipeguard_"))
        .map(|w| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|s| w.strip_suffix(s))
                .find(|base| hist.contains(*base))
                .unwrap_or(w)
                .to_string()
        })
        .collect()
}

fn assert_in_catalogue(file: &str, names: &BTreeSet<String>) {
    assert!(!names.is_empty(), "{file} names no metric");
    let unknown: Vec<_> = names.iter().filter(|n| !NAMES.contains(&&***n)).collect();
    assert!(
        unknown.is_empty(),
        "{file}: not in src/metrics.rs: {unknown:?}"
    );
}

#[test]
fn rules_use_only_catalogued_metrics() {
    assert_in_catalogue(RULES, &metric_names(&read(RULES)));
}

/// Alert names of rules.yml, in order.
fn alert_names() -> Vec<String> {
    read(RULES)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_string())
        .collect()
}

#[test]
fn every_rule_has_a_firing_and_a_quiet_unit_test() {
    // alertname → (cases where it fires, cases where it does not)
    let mut cases: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let text = read(RULES_TEST);
    let mut current = None;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("alertname:") {
            current = Some(name.trim().to_string());
        } else if let (Some(rest), Some(name)) = (line.strip_prefix("exp_alerts:"), current.take())
        {
            let entry = cases.entry(name).or_default();
            if rest.trim() == "[]" {
                entry.1 += 1;
            } else {
                entry.0 += 1;
            }
        }
    }
    let alerts = alert_names();
    assert_eq!(alerts.len(), 10, "{alerts:?}");
    for alert in &alerts {
        let (fires, quiet) = cases.get(alert).copied().unwrap_or_default();
        assert!(fires > 0, "{RULES_TEST}: no case where {alert} fires");
        assert!(quiet > 0, "{RULES_TEST}: no case where {alert} stays quiet");
    }
    let tested: Vec<_> = cases.into_keys().filter(|a| !alerts.contains(a)).collect();
    assert!(tested.is_empty(), "tests of unknown alerts: {tested:?}");
}

/// Every panel, rows and the panels of collapsed rows included.
fn panels(v: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    for p in v["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(panels(p));
    }
    out
}

fn dashboard_exprs(dash: &serde_json::Value) -> Vec<String> {
    panels(dash)
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .map(|t| t["expr"].as_str().unwrap_or("(no expr)").to_string())
        .collect()
}

#[test]
fn dashboard_covers_exactly_the_catalogue_through_the_datasource_variable() {
    let text = read(DASHBOARD);
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let vars = dash["templating"]["list"].as_array().unwrap();
    assert!(
        vars.iter().any(|v| v["type"] == "datasource"
            && v["name"] == "datasource"
            && v["query"] == "prometheus"),
        "no ${{datasource}} variable of type prometheus"
    );
    for v in vars.iter().filter(|v| v.get("datasource").is_some()) {
        assert_eq!(v["datasource"]["uid"], DS, "variable {}", v["name"]);
    }
    for p in panels(&dash) {
        let title = p["title"].as_str().unwrap_or("?");
        assert_eq!(p["datasource"]["uid"], DS, "panel {title:?}");
        for t in p["targets"].as_array().into_iter().flatten() {
            assert_eq!(t["datasource"]["uid"], DS, "a target of {title:?}");
        }
    }
    assert_in_catalogue(DASHBOARD, &metric_names(&text));
    let queried = metric_names(&dashboard_exprs(&dash).join("\n"));
    let missing: Vec<_> = NAMES.iter().filter(|n| !queried.contains(**n)).collect();
    assert!(missing.is_empty(), "{DASHBOARD}: no panel for {missing:?}");
}

/// `[section]` → key → values (a key may repeat).
fn unit_file() -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut sections: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section = String::new();
    for line in read(UNIT).lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        } else {
            let (k, v) = line.split_once('=').expect(line);
            let (k, v) = (k.trim(), v.trim());
            let values = sections.entry(section.clone()).or_default().entry(k.into());
            values.or_default().push(v.into());
        }
    }
    sections
}

#[test]
fn systemd_unit_checks_the_config_outlasts_the_grace_and_is_hardened() {
    let unit = unit_file();
    let service = &unit["Service"];
    let one = |k: &str| match service.get(k).map(Vec::as_slice) {
        Some([v]) => v.as_str(),
        other => panic!("{UNIT}: [Service] {k} = {other:?}, expected one value"),
    };
    let stop = humantime::parse_duration(one("TimeoutStopSec")).unwrap();
    assert!(stop > Config::default().daemon.shutdown_grace, "{stop:?}");
    let conf = "/etc/swipeguard/swipeguard.toml";
    let pre = format!("/usr/local/bin/swipeguard check-config {conf}");
    let start = format!("/usr/local/bin/swipeguard run --config {conf}");
    for (key, value) in [
        ("ExecStartPre", pre.as_str()),
        ("ExecStart", &start),
        ("EnvironmentFile", "-/etc/swipeguard/swipeguard.env"),
        ("KillSignal", "SIGTERM"),
        ("Restart", "on-failure"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("CapabilityBoundingSet", ""),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
    ] {
        assert_eq!(one(key), value, "{UNIT}: [Service] {key}");
    }
    let dynamic = service.get("DynamicUser").is_some_and(|v| v == &["yes"]);
    assert!(
        dynamic || service.contains_key("User"),
        "no DynamicUser=yes or User="
    );
    assert!(
        !service.contains_key("ReadWritePaths"),
        "it writes nothing to disk"
    );
    assert!(unit["Install"].contains_key("WantedBy"));
}

/// Restart what a restart may fix, forever; stop on what it cannot (the daemon's exit codes).
#[test]
fn systemd_unit_never_gives_up_on_a_transient_fault_and_stops_on_a_permanent_one() {
    use swipeguard::exit;
    let unit = unit_file();
    let get = |section: &str, key: &str| unit[section].get(key).map(|v| v.join(" "));
    assert_eq!(get("Unit", "StartLimitIntervalSec").as_deref(), Some("0"));
    assert_eq!(get("Unit", "StartLimitBurst"), None);
    assert_eq!(get("Service", "Restart").as_deref(), Some("on-failure"));
    let prevented: BTreeSet<u8> = get("Service", "RestartPreventExitStatus")
        .unwrap_or_default()
        .split_whitespace()
        .map(|c| c.parse().unwrap())
        .collect();
    assert_eq!(
        prevented,
        BTreeSet::from([exit::CONFIG, exit::KAFKA_REFUSED, exit::KAFKA_RESOURCE])
    );
    assert!(!prevented.contains(&exit::FAILURE));
    // check-config runs before each start: a bad file must exit with the code that stops retries.
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "[kafka]\nbrokerz = \"x\"\n").unwrap();
    for args in [vec!["check-config"], vec!["run", "--config"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_swipeguard"))
            .args(&args)
            .arg(bad.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(exit::CONFIG as i32), "{args:?}");
        assert!(
            output_text(&out).contains("kafka.brokerz"),
            "{}",
            output_text(&out)
        );
    }
}

fn output_text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&[&out.stdout[..], &out.stderr[..]].concat()).into_owned()
}

#[test]
fn promtool_checks_pass_and_dashboard_queries_parse() {
    // From another directory: the script must find the repository itself.
    let script = root().join("scripts/promtool-check.sh");
    let out = Command::new("bash")
        .arg(&script)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let log = output_text(&out);
    assert!(out.status.success(), "{} failed:\n{log}", script.display());
    assert!(log.contains("SUCCESS"), "{log}");

    // The script has installed promtool; check each dashboard query as a recording rule, with
    // Grafana's variables replaced by values.
    let dash: serde_json::Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in dashboard_exprs(&dash).iter().enumerate() {
        let expr = expr.replace("$__rate_interval", "1m");
        let expr = expr.replace("$instance", ".*");
        // A JSON string is a YAML double-quoted scalar.
        let quoted = serde_json::to_string(&expr).unwrap();
        rules += &format!("      - record: dashboard:query{i}\n        expr: {quoted}\n");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard_queries.yml");
    std::fs::write(&file, rules).unwrap();
    let mut promtool = Command::new("promtool");
    let out = promtool
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    let log = output_text(&out);
    assert!(out.status.success(), "a query is not PromQL:\n{log}");
}

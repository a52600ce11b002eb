use super::*;

fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::parse(
        text,
        "test.toml",
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

#[test]
fn an_empty_file_is_the_defaults() {
    let c = parse("", &[]).unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.engine.allowed_lateness, Duration::from_secs(30));
    assert_eq!(c.kafka.swipes_topic, "swipes");
    assert_eq!(c.http.listen, "127.0.0.1:9464");
}

#[test]
fn the_design_example_parses() {
    let text = r#"
[kafka]
brokers = "127.0.0.1:9092"
group_id = "swipeguard"
swipes_topic = "swipes"
alerts_topic = "swipeguard.alerts"
dead_letter_topic = "swipeguard.dead-letter"
snapshot_topic = "swipeguard.snapshots"

[kafka.client]
"session.timeout.ms" = "6000"

[engine]
allowed_lateness = "30s"
idle_watermark_after = "60s"
max_tracked_cards = 1000000
snapshot_every_events = 100000
snapshot_every = "30s"

[detectors.failed_pin]
enabled = true
min_failures = 3
window = "10m"
lock_for = "24h"
cooldown = "10m"

[ingest.card_hash]
enabled = false
key_file = "/etc/swipeguard/card-hash.key"
fields = ["card_id"]

[http]
listen = "127.0.0.1:9464"

[log]
format = "text"
level = "info"
"#;
    let c = parse(text, &[]).unwrap();
    assert_eq!(c.kafka.brokers.as_deref(), Some("127.0.0.1:9092"));
    assert_eq!(
        c.kafka.client.get("session.timeout.ms").map(String::as_str),
        Some("6000")
    );
    assert_eq!(c.detectors.failed_pin.lock_for, Duration::from_secs(86_400));
}

#[test]
fn unknown_keys_and_bad_values_name_the_key() {
    let err = parse("[engine]\nallowed_latenes = \"30s\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("engine"), "{err}");
    assert!(err.contains("unknown field `allowed_latenes`"), "{err}");

    let err = parse("[detectors.rapid_fire]\nwindow = \"soon\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("detectors.rapid_fire.window:"), "{err}");

    let err = parse("[detectors.failed_pin]\nmin_failures = 0\n", &[])
        .unwrap_err()
        .to_string();
    assert_eq!(err, "detectors.failed_pin.min_failures: must be at least 1");

    let err = parse("[log]\nformat = \"xml\"\n", &[])
        .unwrap_err()
        .to_string();
    assert_eq!(err, "log.format: must be \"text\" or \"json\"");

    let err = parse("[kafka.client]\n\"statistics.interval.ms\" = \"0\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("kafka.client.statistics.interval.ms: must not be 0"),
        "{err}"
    );

    let err = parse("[daemon]\npipeline_realtime_priority = 100\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("daemon.pipeline_realtime_priority: must be 0 (off) or"),
        "{err}"
    );

    let err = parse("[engine\n", &[]).unwrap_err().to_string();
    assert!(err.starts_with("test.toml:"), "{err}");
}

#[test]
fn environment_overrides_win_and_are_checked_like_the_file() {
    let c = parse(
        "[engine]\nallowed_lateness = \"30s\"\n",
        &[
            ("SWIPEGUARD_ENGINE__ALLOWED_LATENESS", "45s"),
            ("SWIPEGUARD_KAFKA__BROKERS", "10.0.0.1:9092,10.0.0.2:9092"),
            ("SWIPEGUARD_ENGINE__MAX_TRACKED_CARDS", "5000"),
            ("SWIPEGUARD_DETECTORS__OFF_PATTERN__ENABLED", "false"),
            ("SWIPEGUARD_CARD_HASH_KEY", "not-an-override"),
            ("HOME", "/root"),
        ],
    )
    .unwrap();
    assert_eq!(c.engine.allowed_lateness, Duration::from_secs(45));
    assert_eq!(
        c.kafka.brokers.as_deref(),
        Some("10.0.0.1:9092,10.0.0.2:9092")
    );
    assert_eq!(c.engine.max_tracked_cards, 5000);
    assert!(!c.detectors.off_pattern.enabled);

    let err = parse("", &[("SWIPEGUARD_ENGINE__NO_SUCH_KEY", "1")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `no_such_key`"), "{err}");
}

#[test]
fn secrets_are_masked_when_printed() {
    let c = parse(
        "[kafka.client]\n\"sasl.password\" = \"hunter2\"\n\"ssl.key.password\" = \"s3cret\"\n\"session.timeout.ms\" = \"6000\"\n",
        &[],
    )
    .unwrap();
    let printed = c.to_toml_masked();
    assert!(
        !printed.contains("hunter2") && !printed.contains("s3cret"),
        "{printed}"
    );
    assert!(printed.contains("6000"));
    // What is printed parses back (with the masks) as a valid configuration.
    parse(&printed, &[]).unwrap();
}

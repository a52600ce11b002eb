//! The configuration file (DESIGN §10): one TOML file, then environment overrides.
//!
//! Every key has a default except `kafka.brokers`, which only the daemon needs. Unknown keys are
//! an error; so is a bad value, reported by its full path (`engine.allowed_lateness: …`) — the
//! program refuses to start rather than fall back. An environment variable
//! `SWIPEGUARD_<PATH>` with path segments joined by `__` overrides one key
//! (`SWIPEGUARD_ENGINE__ALLOWED_LATENESS=45s`); its value is read as a TOML value when it parses
//! as one (numbers, booleans) and as a string otherwise. Variables without `__` (such as the
//! card-hash key variable) are not overrides. `kafka.client` keys contain dots and can only be
//! set in the file.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use swipeguard_detectors::{DetectorsConfig, Engine, EngineConfig};

use crate::codec::DecodeLimits;

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// `[kafka]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port…]`. Required by `run` and `produce`.
    pub brokers: Option<String>,
    /// Consumer group shared by every daemon of one deployment.
    pub group_id: String,
    /// Topic of swipes (key = card_id).
    pub swipes_topic: String,
    /// Topic alerts are written to (key = card_id).
    pub alerts_topic: String,
    /// Topic invalid and late events are forwarded to, unchanged, with the reason in a header.
    pub dead_letter_topic: String,
    /// Compacted topic of per-partition engine snapshots (key = partition).
    pub snapshot_topic: String,
    /// Prefix of the internal re-keyed topics `<prefix>.by-<key>` that feed the stages keyed by
    /// something other than the card (DESIGN §11), when `daemon.live_stages` is on.
    pub internal_topic_prefix: String,
    /// Any librdkafka property, passed through untouched (TLS, SASL, timeouts…).
    pub client: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: None,
            group_id: "swipeguard".into(),
            swipes_topic: "swipes".into(),
            alerts_topic: "swipeguard.alerts".into(),
            dead_letter_topic: "swipeguard.dead-letter".into(),
            snapshot_topic: "swipeguard.snapshots".into(),
            internal_topic_prefix: "swipeguard".into(),
            client: BTreeMap::new(),
        }
    }
}

/// `[engine]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSection {
    /// How far behind the newest event time an event may arrive and still be detected.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// Daemon: a partition that receives nothing this long, and that the broker reports read to
    /// its end, advances its watermark to the newest event time seen, releasing buffered events.
    /// A partition whose records the broker holds back is stalled, not idle, and waits.
    #[serde(with = "humantime_serde")]
    pub idle_watermark_after: Duration,
    /// Most cards tracked per partition; past it the least recently seen card is forgotten.
    pub max_tracked_cards: usize,
    /// The same ceiling for the other stages' keys (terminals, insured persons, traceability
    /// codes), per partition.
    pub max_tracked_keys: swipeguard_detectors::MaxTrackedKeys,
    /// Daemon: snapshot a partition after this many events…
    pub snapshot_every_events: u64,
    /// …or after this much wall time with new events, whichever comes first.
    #[serde(with = "humantime_serde")]
    pub snapshot_every: Duration,
}

impl Default for EngineSection {
    fn default() -> Self {
        EngineSection {
            allowed_lateness: Duration::from_secs(30),
            idle_watermark_after: Duration::from_secs(60),
            max_tracked_cards: 1_000_000,
            max_tracked_keys: Default::default(),
            snapshot_every_events: 100_000,
            snapshot_every: Duration::from_secs(30),
        }
    }
}

/// `[daemon]`: how `swipeguard run` behaves beside the bus.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// On SIGTERM/SIGINT: time allowed to flush alerts, snapshot and commit before exiting.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// On partition revocation: time allowed to flush and snapshot before letting go anyway.
    #[serde(with = "humantime_serde")]
    pub revoke_timeout: Duration,
    /// Alerts and dead letters awaiting broker acknowledgement before consumption pauses.
    pub max_in_flight: usize,
    /// `/readyz` reports not ready while any partition lags more messages than this.
    pub ready_max_lag: i64,
    /// Largest piece a snapshot is cut into on the snapshot topic, bytes.
    pub snapshot_chunk_bytes: usize,
    /// Run the detectors keyed by terminal, account and traceability code live, as stages fed
    /// through `<kafka.internal_topic_prefix>.by-<key>` topics (DESIGN §11). Off: they run in
    /// replay only. Off by default: every event then makes a round trip through the broker per
    /// other stage and is decoded again, which about halves the daemon's rate (BENCHMARKS.md);
    /// replay ≡ live, crash and scale-out with the stages on are tested in `kafka_stages`.
    pub live_stages: bool,
    /// Linux: run every thread but the pipeline's in `SCHED_BATCH` — the same share of CPU, but
    /// librdkafka's and the runtime's wake-ups no longer preempt the pipeline thread while it
    /// hands an alert over (`src/daemon/os_tuning.rs`). Off: every thread runs ordinary.
    pub batch_other_threads: bool,
    /// Linux: let the allocator use transparent huge pages. Off (the default), the daemon
    /// turns them off for itself: first touching a 2 MiB page stalls the thread for
    /// milliseconds on a VM.
    pub transparent_huge_pages: bool,
    /// Linux: 1–99 runs the pipeline thread `SCHED_FIFO` at this priority, so that no ordinary
    /// thread preempts it (needs `CAP_SYS_NICE`; refused, the daemon does not start). 0 (the
    /// default): off.
    pub pipeline_realtime_priority: u8,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            shutdown_grace: Duration::from_secs(20),
            revoke_timeout: Duration::from_secs(30),
            max_in_flight: 100_000,
            ready_max_lag: 100_000,
            snapshot_chunk_bytes: 512 * 1024,
            live_stages: false,
            batch_other_threads: true,
            transparent_huge_pages: false,
            pipeline_realtime_priority: 0,
        }
    }
}

/// `[ingest.card_hash]`: keyed hash of raw card numbers before anything else sees them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CardHashConfig {
    /// Replace the configured fields with HMAC-SHA256 under the key.
    pub enabled: bool,
    /// File holding the key (never the TOML itself).
    pub key_file: Option<String>,
    /// Environment variable holding the key, when there is no key file.
    pub key_env: Option<String>,
    /// Event fields to hash.
    pub fields: Vec<String>,
}

impl Default for CardHashConfig {
    fn default() -> Self {
        CardHashConfig {
            enabled: false,
            key_file: None,
            key_env: None,
            // The card number and the person number (`psn_no`): both are personal data.
            fields: vec!["card_id".into(), "account_id".into()],
        }
    }
}

/// `[ingest]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest accepted event (Kafka message or input line), bytes.
    pub max_event_bytes: usize,
    /// Largest accepted `amount_minor` (fen).
    pub max_amount_minor: u64,
    /// Most line items in one event (DESIGN §12); more is an invalid event (`bad_value`).
    pub max_items: usize,
    /// Most traceability codes over all items of one event; more is an invalid event.
    pub max_trace_codes: usize,
    pub card_hash: CardHashConfig,
}

impl Default for IngestConfig {
    fn default() -> Self {
        let limits = DecodeLimits::default();
        IngestConfig {
            max_event_bytes: limits.max_bytes,
            max_amount_minor: limits.max_amount_minor,
            max_items: limits.max_items,
            max_trace_codes: limits.max_trace_codes,
            card_hash: CardHashConfig::default(),
        }
    }
}

/// `[http]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of `/metrics`, `/healthz` and `/readyz`; loopback unless deliberately opened.
    pub listen: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

/// `[log]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (human-readable) or `json`.
    pub format: String,
    /// `error`, `warn`, `info`, `debug` or `trace`, or a tracing filter directive.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub engine: EngineSection,
    pub daemon: DaemonConfig,
    pub detectors: DetectorsConfig,
    pub ingest: IngestConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    /// The card-number hasher built from `[ingest.card_hash]` and its key (never serialized).
    #[serde(skip)]
    pub hasher: Option<std::sync::Arc<crate::ingest::CardHasher>>,
}

/// Prefix of override variables.
pub const ENV_PREFIX: &str = "SWIPEGUARD_";

impl Config {
    /// Reads `path` (or defaults when `None`), applies `SWIPEGUARD_…` overrides from the process
    /// environment, and validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.display().to_string(),
                source,
            })?,
            None => String::new(),
        };
        let name = path.map_or_else(|| "(defaults)".to_string(), |p| p.display().to_string());
        Config::parse(&text, &name, std::env::vars())
    }

    /// Parses TOML text, applies overrides from `env`, and validates.
    pub fn parse(
        text: &str,
        name: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: name.into(),
            message: e.to_string(),
        })?;
        let env: Vec<(String, String)> = env.into_iter().collect();
        for (var, value) in &env {
            apply_override(&mut table, var, value)?;
        }
        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let key = e.path().to_string();
                invalid(
                    if key == "." { "config".into() } else { key },
                    e.into_inner().to_string(),
                )
            })?;
        config.validate()?;
        let lookup = |var: &str| env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone());
        config.hasher = crate::ingest::CardHasher::from_config(&config.ingest.card_hash, &lookup)?
            .map(std::sync::Arc::new);
        Ok(config)
    }

    /// Checks what types alone cannot; every error names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Engine::new(self.engine_config()).map_err(|e| invalid(e.key, e.reason))?;
        if self.daemon.pipeline_realtime_priority > 99 {
            return Err(invalid(
                "daemon.pipeline_realtime_priority",
                "must be 0 (off) or a SCHED_FIFO priority from 1 to 99",
            ));
        }
        if self.ingest.max_items == 0 {
            return Err(invalid("ingest.max_items", "must be at least 1"));
        }
        if self.ingest.max_trace_codes == 0 {
            return Err(invalid("ingest.max_trace_codes", "must be at least 1"));
        }
        if self.ingest.max_event_bytes == 0 {
            return Err(invalid("ingest.max_event_bytes", "must be at least 1"));
        }
        if self.engine.snapshot_every_events == 0 {
            return Err(invalid(
                "engine.snapshot_every_events",
                "must be at least 1",
            ));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid("log.format", "must be \"text\" or \"json\""));
        }
        if self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "http.listen",
                "must be an address such as 127.0.0.1:9464",
            ));
        }
        if self
            .kafka
            .brokers
            .as_deref()
            .is_some_and(|b| b.trim().is_empty())
        {
            return Err(invalid("kafka.brokers", "must not be empty"));
        }
        // The lag gauges and the idle advance (which needs to know a partition is read to its
        // end) come from the consumer's statistics.
        if self
            .kafka
            .client
            .get("statistics.interval.ms")
            .is_some_and(|v| v.trim() == "0")
        {
            return Err(invalid(
                "kafka.client.statistics.interval.ms",
                "must not be 0: the consumer lag gauges and the idle advance read the client's statistics",
            ));
        }
        Ok(())
    }

    /// The detectors the daemon runs, every stage's: the card stage reads the swipes topic;
    /// with `daemon.live_stages` the other stages run too, each partition of each stage with
    /// this configuration restricted to its key ([`stage_engine_config`]). Without it they run
    /// in replay only.
    pub fn live_engine_config(&self) -> EngineConfig {
        let mut c = self.engine_config();
        c.detectors = c.detectors.only_keys(&self.live_kinds());
        c
    }

    /// The key kinds whose stages the daemon runs: the card's, and with `daemon.live_stages`
    /// every other kind with an enabled detector.
    pub fn live_kinds(&self) -> Vec<swipeguard_detectors::KeyKind> {
        use swipeguard_detectors::KeyKind;
        KeyKind::ALL
            .iter()
            .copied()
            .filter(|k| {
                *k == KeyKind::Card
                    || self.daemon.live_stages
                        && self.detectors.enabled().iter().any(|d| d.key() == *k)
            })
            .collect()
    }

    /// Enabled detectors that the daemon does not run (see [`Config::live_engine_config`]).
    pub fn replay_only_detectors(&self) -> Vec<swipeguard_detectors::DetectorName> {
        let live = self.live_kinds();
        self.detectors
            .enabled()
            .into_iter()
            .filter(|d| !live.contains(&d.key()))
            .collect()
    }

    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            allowed_lateness: self.engine.allowed_lateness,
            max_tracked_cards: self.engine.max_tracked_cards,
            max_tracked_keys: self.engine.max_tracked_keys.clone(),
            detectors: self.detectors.clone(),
        }
    }

    pub fn decode_limits(&self) -> DecodeLimits {
        DecodeLimits {
            hasher: self.hasher.clone(),
            max_bytes: self.ingest.max_event_bytes,
            max_amount_minor: self.ingest.max_amount_minor,
            max_items: self.ingest.max_items,
            max_trace_codes: self.ingest.max_trace_codes,
            ..DecodeLimits::default()
        }
    }

    /// The effective configuration as TOML, with secrets masked.
    pub fn to_toml_masked(&self) -> String {
        let mut masked = self.clone();
        for (key, value) in masked.kafka.client.iter_mut() {
            if is_secret_key(key) {
                *value = "********".into();
            }
        }
        toml::to_string(&masked).unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }
}

/// librdkafka properties that hold secrets.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "sasl.oauthbearer.config",
        "ssl.key.pem",
        "ssl_key",
    ]
    .iter()
    .any(|s| k.contains(s))
}

fn apply_override(table: &mut toml::Table, var: &str, value: &str) -> Result<(), ConfigError> {
    let Some(path) = var.strip_prefix(ENV_PREFIX) else {
        return Ok(());
    };
    if !path.contains("__") {
        return Ok(());
    }
    let segments: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
    let key = segments.join(".");
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let (last, parents) = segments
        .split_last()
        .ok_or_else(|| invalid(var, "empty override path"))?;
    let mut node = table;
    for seg in parents {
        let entry = node
            .entry(seg.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry.as_table_mut().ok_or_else(|| {
            invalid(
                key.clone(),
                format!("{var} overrides a value that is not a table"),
            )
        })?;
    }
    node.insert(last.clone(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests;

/// One stage's share of the daemon's engine configuration: its detectors only.
pub fn stage_engine_config(
    live: &EngineConfig,
    kind: swipeguard_detectors::KeyKind,
) -> EngineConfig {
    let mut c = live.clone();
    c.detectors = c.detectors.only_keys(&[kind]);
    c
}

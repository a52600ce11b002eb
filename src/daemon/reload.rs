//! Reloading the configuration on SIGHUP (DESIGN §14).
//!
//! On SIGHUP the daemon reads its configuration file again and validates it whole. A file that
//! does not load, that changes anything but the `[detectors]` tables, or that (with live
//! stages) starts or stops a stage by switching a key kind's detectors on or off, is refused
//! — logged with the key at fault, counted (`swipeguard_config_reloads_total{result="refused"}`)
//! — and the running configuration is kept: the daemon never runs a configuration its file
//! does not describe, and changes that need new connections, topics or stages need a restart.
//! A valid change becomes the next *generation* of the live configuration; each partition
//! applies it at its next snapshot position (a snapshot is taken at once for it): the state is
//! carried over exactly as that snapshot restored under the new configuration would be (a
//! retuned detector starts empty, the rest continue), so `replay --reconfigure-at
//! POSITION=FILE` with the position the daemon logs gives the same alerts. New alerts carry the
//! new `detector_version`; the snapshots after the change carry the new configuration's
//! fingerprint.
//!
//! A crash between the reload and a partition's next snapshot applies the change at the
//! position of the snapshot the partition restores from (the file already holds it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use swipeguard_detectors::{DetectorsConfig, Engine, EngineConfig};
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::config::Config;

/// The live detection configuration and how many changes it has seen.
#[derive(Clone, Debug)]
pub struct Live {
    pub generation: u64,
    /// What the partitions run (the daemon's stages only).
    pub engine: EngineConfig,
}

impl Live {
    pub fn new(config: &Config) -> Live {
        Live {
            generation: 0,
            engine: config.live_engine_config(),
        }
    }
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadRefused {
    #[error("{0}")]
    Invalid(String),
    #[error("{key} changed: only [detectors] tables apply without a restart")]
    NeedsRestart { key: String },
    #[error("{key} changed which stages run (detectors keyed by {kind}): that needs a restart")]
    StagesChanged { key: String, kind: &'static str },
    #[error("detectors with shadow = true send to {topic}, which does not exist: create it first")]
    NoShadowTopic { topic: String },
}

/// The first key outside `[detectors]` whose value differs between `running` and `new`.
pub fn outside_detectors(running: &Config, new: &Config) -> Option<String> {
    let as_table = |c: &Config| -> Option<toml::Table> {
        match toml::Value::try_from(c).ok()? {
            toml::Value::Table(mut t) => {
                t.remove("detectors");
                Some(t)
            }
            _ => None,
        }
    };
    let (Some(a), Some(b)) = (as_table(running), as_table(new)) else {
        return Some("config".into());
    };
    first_difference(&a, &b, "")
}

/// With live stages, the first detector whose switching on or off starts or stops a stage
/// (the first enabled, or the last disabled, of its key kind), and that kind: a stage's topics
/// and partitions are set up at start-up, so such a change needs a restart.
pub fn stages_changed(running: &Config, new: &Config) -> Option<(String, &'static str)> {
    let (before, after) = (running.live_kinds(), new.live_kinds());
    let changed: Vec<_> = before
        .iter()
        .filter(|k| !after.contains(k))
        .chain(after.iter().filter(|k| !before.contains(k)))
        .copied()
        .collect();
    let kind = *changed.first()?;
    let detector = swipeguard_detectors::registry::REGISTRY
        .iter()
        .filter(|r| r.key == kind)
        .find(|r| (r.enabled)(&running.detectors) != (r.enabled)(&new.detectors))?;
    Some((
        format!("detectors.{}.enabled", detector.name),
        kind.as_str(),
    ))
}

fn first_difference(a: &toml::Table, b: &toml::Table, prefix: &str) -> Option<String> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let path = format!("{prefix}{k}");
        match (a.get(k), b.get(k)) {
            (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
                if let Some(d) = first_difference(x, y, &format!("{path}.")) {
                    return Some(d);
                }
            }
            (x, y) if x != y => return Some(path),
            _ => {}
        }
    }
    None
}

/// Whether any enabled detector of `detectors` is in shadow mode (pass the daemon's own:
/// `Config::live_engine_config`, so that a replay-only detector asks for no topic).
pub fn any_shadow(detectors: &DetectorsConfig) -> bool {
    swipeguard_detectors::registry::REGISTRY
        .iter()
        .any(|r| (r.enabled)(detectors) && (r.shadow)(detectors))
}

/// The shadow topic of `alerts_topic`.
pub fn shadow_topic(alerts_topic: &str) -> String {
    format!("{alerts_topic}.shadow")
}

/// Reads and checks the file; `Ok(None)` when its `[detectors]` are unchanged.
fn candidate(path: &Path, shared: &Shared) -> Result<Option<Live>, ReloadRefused> {
    let new = Config::load(Some(path)).map_err(|e| ReloadRefused::Invalid(e.to_string()))?;
    if let Some(key) = outside_detectors(&shared.config, &new) {
        return Err(ReloadRefused::NeedsRestart { key });
    }
    if let Some((key, kind)) = stages_changed(&shared.config, &new) {
        return Err(ReloadRefused::StagesChanged { key, kind });
    }
    let live = shared.live();
    let engine = new.live_engine_config();
    // Only what the daemon runs matters: a change to a replay-only detector is no change here.
    if engine == live.engine {
        return Ok(None);
    }
    Engine::new(engine.clone()).map_err(|e| ReloadRefused::Invalid(e.to_string()))?;
    if any_shadow(&engine.detectors) {
        let topic = shadow_topic(&shared.alerts_topic);
        if !topic_exists(shared, &topic) {
            return Err(ReloadRefused::NoShadowTopic { topic });
        }
    }
    Ok(Some(Live {
        generation: live.generation + 1,
        engine,
    }))
}

/// Whether the broker knows `topic` (a metadata request on the producer's connection).
pub fn topic_exists(shared: &Shared, topic: &str) -> bool {
    use rdkafka::producer::Producer as _;
    shared
        .producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .is_ok_and(|m| {
            m.topics()
                .iter()
                .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        })
}

/// One reload: refused (logged, counted, nothing changes), unchanged, or a new generation.
pub fn reload_once(path: &Path, shared: &Shared) {
    let result = |r: &str| shared.metrics.config_reloads.with_label_values(&[r]).inc();
    match candidate(path, shared) {
        Err(e) => {
            result("refused");
            tracing::error!(file = %path.display(), error = %e, "configuration reload refused; the running configuration is kept");
        }
        Ok(None) => {
            result("unchanged");
            tracing::info!(file = %path.display(), "configuration reloaded: [detectors] unchanged");
        }
        Ok(Some(next)) => {
            result("accepted");
            let generation = next.generation;
            *shared.live.lock().unwrap_or_else(|p| p.into_inner()) = next;
            tracing::info!(
                file = %path.display(),
                generation,
                "configuration reload accepted; each partition applies it at its next snapshot position"
            );
        }
    }
}

/// SIGHUPs, listened for from the start: one that arrives while the daemon still waits for
/// its broker must not kill it (the signal's default), and is acted on once it runs.
#[cfg(unix)]
pub type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
pub type Hangups = Option<()>;

/// Starts listening for SIGHUP.
pub fn listen() -> Hangups {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let hup = signal(SignalKind::hangup()).ok();
        if hup.is_none() {
            tracing::warn!("cannot listen for SIGHUP; configuration reload is off");
        }
        hup
    }
    #[cfg(not(unix))]
    None
}

/// Reloads `path` on every SIGHUP until `shutdown`.
pub async fn on_sighup(
    hangups: Hangups,
    path: PathBuf,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    #[cfg(unix)]
    {
        let Some(mut hup) = hangups else {
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    let (path, shared) = (path.clone(), shared.clone());
                    // Reading the file and asking the broker block: off the async threads.
                    let _ = tokio::task::spawn_blocking(move || reload_once(&path, &shared)).await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (hangups, path, shared);
        shutdown.cancelled().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text, "test", Vec::<(String, String)>::new()).unwrap()
    }

    #[test]
    fn only_the_detectors_tables_change_without_a_restart() {
        let running = parse("[kafka]\nbrokers = \"a:9092\"\n");
        let retuned = parse(
            "[kafka]\nbrokers = \"a:9092\"\n\n[detectors.rapid_fire]\nmin_swipes = 6\nshadow = true\n",
        );
        assert_eq!(outside_detectors(&running, &retuned), None);
        let moved = parse("[kafka]\nbrokers = \"b:9092\"\n");
        assert_eq!(
            outside_detectors(&running, &moved).as_deref(),
            Some("kafka.brokers")
        );
        let lateness =
            parse("[kafka]\nbrokers = \"a:9092\"\n\n[engine]\nallowed_lateness = \"1m\"\n");
        assert_eq!(
            outside_detectors(&running, &lateness).as_deref(),
            Some("engine.allowed_lateness")
        );
        assert!(any_shadow(&retuned.detectors) && !any_shadow(&running.detectors));
        let replay_only = parse("[detectors.early_refill]\nshadow = true\n");
        assert!(!any_shadow(&replay_only.live_engine_config().detectors));
    }

    #[test]
    fn switching_a_stage_on_or_off_needs_a_restart_and_names_the_detector() {
        let stages = "[daemon]\nlive_stages = true\n";
        let no_terminal = parse(&format!(
            "{stages}\n[detectors.terminal_pin_probe]\nenabled = false\n"
        ));
        let all = parse(stages);
        let expected = Some((
            "detectors.terminal_pin_probe.enabled".to_string(),
            "terminal",
        ));
        assert_eq!(stages_changed(&no_terminal, &all), expected);
        assert_eq!(stages_changed(&all, &no_terminal), expected);
        // Retuning a running stage's detector, or any change without live stages, starts none.
        let retuned = parse(&format!(
            "{stages}\n[detectors.terminal_pin_probe]\nmin_cards = 9\n"
        ));
        assert_eq!(stages_changed(&all, &retuned), None);
        let card_only = parse("[detectors.terminal_pin_probe]\nenabled = false\n");
        assert_eq!(stages_changed(&card_only, &parse("")), None);
    }
}

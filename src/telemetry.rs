//! Logging: `tracing`, human-readable by default, JSON on request (`log.format`), filtered by
//! `log.level` (or `RUST_LOG`). Messages are lowercase with structured fields; the pipeline logs
//! per batch or per event of note (assignment, snapshot, error), never per swipe.

use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// Installs the global subscriber; `json_override` forces JSON (the `--log-json` flag).
pub fn init(log: &LogConfig, json_override: bool) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: the journal and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let result = if json_override || log.format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}

/// Lets a kind of log message through at most once per interval, so that an outage or a flood
/// of bad input cannot flood the log. Suppressed occurrences are counted and reported with the
/// next one that passes.
#[derive(Debug)]
pub struct LogLimiter {
    every: std::time::Duration,
    last: std::sync::Mutex<std::collections::HashMap<&'static str, (std::time::Instant, u64)>>,
}

impl LogLimiter {
    pub fn new(every: std::time::Duration) -> LogLimiter {
        LogLimiter {
            every,
            last: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// `Some(suppressed since the last one)` when a message of `kind` may be logged now.
    pub fn allow(&self, kind: &'static str) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        match last.get_mut(kind) {
            Some((at, suppressed)) if now.duration_since(*at) < self.every => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                let n = *suppressed;
                *at = now;
                *suppressed = 0;
                Some(n)
            }
            None => {
                last.insert(kind, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_lets_one_through_per_interval_and_counts_the_rest() {
        let l = LogLimiter::new(std::time::Duration::from_millis(50));
        assert_eq!(l.allow("a"), Some(0));
        assert_eq!(l.allow("a"), None);
        assert_eq!(l.allow("a"), None);
        assert_eq!(l.allow("b"), Some(0));
        std::thread::sleep(std::time::Duration::from_millis(60));
        assert_eq!(l.allow("a"), Some(2));
    }
}

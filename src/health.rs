//! Liveness and readiness, shared between the pipeline (which knows) and the HTTP endpoints
//! (which tell). Ready means: the daemon has joined its group, every assigned partition is
//! restored, the broker is reachable, and no partition lags more than the configured threshold.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Health {
    joined: AtomicBool,
    restoring: AtomicUsize,
    broker_up: AtomicBool,
    max_lag: AtomicI64,
    lag_threshold: AtomicI64,
    /// Set while start-up waits for the brokers: what it waits for and why.
    waiting: Mutex<Option<String>>,
}

/// Why the daemon is not ready, for `/readyz`.
pub fn reasons(h: &Health) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(waiting) = h.waiting.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        out.push(waiting.clone());
    }
    if !h.joined.load(Ordering::Relaxed) {
        out.push("not yet assigned partitions by the consumer group".into());
    }
    let restoring = h.restoring.load(Ordering::Relaxed);
    if restoring > 0 {
        out.push(format!("{restoring} partition(s) restoring"));
    }
    if !h.broker_up.load(Ordering::Relaxed) {
        out.push("broker unreachable".into());
    }
    let lag = h.max_lag.load(Ordering::Relaxed);
    let threshold = h.lag_threshold.load(Ordering::Relaxed);
    if lag > threshold {
        out.push(format!("consumer lag {lag} over {threshold}"));
    }
    out
}

impl Health {
    pub fn new(lag_threshold: i64) -> Health {
        let h = Health::default();
        h.lag_threshold.store(lag_threshold, Ordering::Relaxed);
        h
    }

    pub fn is_ready(&self) -> bool {
        reasons(self).is_empty()
    }

    pub fn set_joined(&self) {
        self.joined.store(true, Ordering::Relaxed);
    }

    pub fn restoring_started(&self) {
        self.restoring.fetch_add(1, Ordering::Relaxed);
    }

    pub fn restoring_done(&self) {
        self.restoring.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn set_broker_up(&self, up: bool) {
        self.broker_up.store(up, Ordering::Relaxed);
    }

    pub fn broker_up(&self) -> bool {
        self.broker_up.load(Ordering::Relaxed)
    }

    pub fn set_waiting(&self, reason: Option<String>) {
        *self.waiting.lock().unwrap_or_else(|p| p.into_inner()) = reason;
    }

    pub fn set_max_lag(&self, lag: i64) {
        self.max_lag.store(lag, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_joined_restored_connected_and_caught_up() {
        let h = Health::new(100);
        assert_eq!(
            reasons(&h),
            [
                "not yet assigned partitions by the consumer group",
                "broker unreachable"
            ]
        );
        h.set_joined();
        h.set_broker_up(true);
        assert!(h.is_ready());
        h.restoring_started();
        assert_eq!(reasons(&h), ["1 partition(s) restoring"]);
        h.restoring_done();
        h.set_max_lag(101);
        assert_eq!(reasons(&h), ["consumer lag 101 over 100"]);
        h.set_max_lag(0);
        h.set_broker_up(false);
        assert_eq!(reasons(&h), ["broker unreachable"]);
        h.set_waiting(Some("waiting for kafka.brokers k:9092: refused".into()));
        assert_eq!(
            reasons(&h),
            [
                "waiting for kafka.brokers k:9092: refused",
                "broker unreachable"
            ]
        );
    }
}

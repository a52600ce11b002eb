//! `card_lock` (key: card): the card's PIN lock modelled as the issuer keeps it (DESIGN §12),
//! and the uses of a card that should have been locked.
//!
//! Wrong PINs count **consecutively**, whatever the time between them; an approval resets the
//! count. The `max_failures`-th wrong PIN locks the card for `lock_for` of event time, after which
//! it unlocks by itself and the count starts again at 0. A card that draws alerts from at least
//! `abnormal_alerts` other card detectors within `abnormal_window` is locked the same way for
//! `temporary_lock_for` (the fund's "短期内多次异常交易导致临时锁定"). A lock covers
//! [start, start + duration): at its end the card is unlocked.
//!
//! Only PIN attempts move the count, and only swipes with the card (`cert_type` `card` or absent)
//! are uses of it: an e-voucher settlement neither counts nor uses the card. Reasons, each at most
//! once per lock: `pin_locked` and `temporary_lock` when a lock starts (high, `lock_card` for the
//! lock's duration); `used_while_locked` for the first swipe on a locked card (medium,
//! `verify_cardholder`); `approved_while_locked` for an approval while locked — a lock that did
//! not hold (high, `lock_card` for what is left of it). A first swipe that is approved raises
//! `approved_while_locked` only.
//!
//! The other detectors' alerts are those raised before this one, in registry order, on the same
//! card for the same event ([`Emitter::earlier_alerts`]), so the temporary lock is as
//! deterministic as they are. Evidence starts with the event that raised the alert, except for
//! `pin_locked`, whose evidence is the run of wrong PINs: alert ids never collide.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{positive, ConfigError};
use crate::detector::{heap_block, Detector, Emitter, Finding};
use crate::model::{
    Action, DetectorName, EventId, EventTime, KeyKind, Millis, Severity, Transaction,
};

/// `[detectors.card_lock]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CardLockConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Most alerts per hour of event time, per partition; beyond it alerts are withheld and
    /// counted, and one `budget_exceeded` alert says so (DESIGN §14). Absent: no budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_alerts_per_hour: Option<u32>,
    /// Send its alerts to `<kafka.alerts_topic>.shadow` only, to watch a change before it reaches
    /// the analysts (DESIGN §14).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
    /// Consecutive wrong PINs that lock the card.
    pub max_failures: u32,
    /// How long a PIN lock lasts (event time).
    #[serde(with = "humantime_serde")]
    pub lock_for: Duration,
    /// Alerts from this many distinct other card detectors lock the card temporarily.
    pub abnormal_alerts: u32,
    /// Within this window, (t − window, t].
    #[serde(with = "humantime_serde")]
    pub abnormal_window: Duration,
    /// How long a temporary lock lasts.
    #[serde(with = "humantime_serde")]
    pub temporary_lock_for: Duration,
    /// A run of wrong PINs not completed within this time is forgotten (a card otherwise
    /// never seen again would be remembered for ever).
    #[serde(with = "humantime_serde")]
    pub forget_failures_after: Duration,
}

impl Default for CardLockConfig {
    fn default() -> Self {
        CardLockConfig {
            enabled: true,
            max_alerts_per_hour: None,
            shadow: false,
            max_failures: 3,
            lock_for: Duration::from_secs(24 * 3600),
            abnormal_alerts: 2,
            abnormal_window: Duration::from_secs(24 * 3600),
            temporary_lock_for: Duration::from_secs(24 * 3600),
            forget_failures_after: Duration::from_secs(365 * 86_400),
        }
    }
}

impl CardLockConfig {
    pub(crate) fn build(&self, key: &str) -> Result<CardLock, ConfigError> {
        if self.max_failures < 1 {
            return Err(ConfigError::new(
                format!("{key}.max_failures"),
                "must be at least 1",
            ));
        }
        if self.abnormal_alerts < 1 {
            return Err(ConfigError::new(
                format!("{key}.abnormal_alerts"),
                "must be at least 1",
            ));
        }
        Ok(CardLock {
            max_failures: self.max_failures as usize,
            lock_for: positive(&format!("{key}.lock_for"), self.lock_for)?,
            abnormal_alerts: self.abnormal_alerts as usize,
            abnormal_window: positive(&format!("{key}.abnormal_window"), self.abnormal_window)?,
            temporary_lock_for: positive(
                &format!("{key}.temporary_lock_for"),
                self.temporary_lock_for,
            )?,
            forget_failures_after: positive(
                &format!("{key}.forget_failures_after"),
                self.forget_failures_after,
            )?,
        })
    }
}

#[derive(Clone, Debug)]
pub struct CardLock {
    max_failures: usize,
    lock_for: Millis,
    abnormal_alerts: usize,
    abnormal_window: Millis,
    temporary_lock_for: Millis,
    forget_failures_after: Millis,
}

/// A lock in force.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Lock {
    until: EventTime,
    /// The event that started it (evidence of the alerts it leads to).
    cause: EventId,
    used: bool,
    approved: bool,
}

/// Another card detector's latest alert on this card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Other {
    detector: DetectorName,
    ts: EventTime,
    id: EventId,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CardLockState {
    /// The current run of wrong PINs, oldest first (never longer than `max_failures`).
    failures: Vec<(EventTime, EventId)>,
    lock: Option<Lock>,
    others: Vec<Other>,
}

impl CardLock {
    /// Ends a lock whose time is up (the count starts again) and forgets what is too old.
    fn expire_at(&self, state: &mut CardLockState, now: EventTime) {
        if state.lock.as_ref().is_some_and(|l| now >= l.until) {
            state.lock = None;
            state.failures.clear();
        }
        if state
            .failures
            .last()
            .is_some_and(|(t, _)| *t <= now.saturating_sub(self.forget_failures_after))
        {
            state.failures.clear();
        }
        let cutoff = now.saturating_sub(self.abnormal_window);
        state.others.retain(|o| o.ts > cutoff);
        if state.failures.is_empty() {
            state.failures = Vec::new();
        }
        if state.others.is_empty() {
            state.others = Vec::new();
        }
    }

    fn start_lock(state: &mut CardLockState, tx: &Transaction, cause: EventId, length: Millis) {
        state.lock = Some(Lock {
            until: tx.ts.saturating_add(length),
            cause,
            used: false,
            approved: false,
        });
    }

    /// A swipe with the card while it is locked.
    fn used_while_locked(
        &self,
        state: &mut CardLockState,
        tx: &Transaction,
        emit: &mut Emitter<'_>,
    ) {
        let Some(lock) = state.lock.as_mut() else {
            return;
        };
        let approved = tx.outcome == crate::model::Outcome::Approved;
        let (reason, severity, action, action_for) = if approved && !lock.approved {
            lock.approved = true;
            lock.used = true;
            let left = Millis(lock.until.0.saturating_sub(tx.ts.0));
            (
                "approved_while_locked",
                Severity::High,
                Action::LockCard,
                Some(left),
            )
        } else if !lock.used {
            lock.used = true;
            (
                "used_while_locked",
                Severity::Medium,
                Action::VerifyCardholder,
                None,
            )
        } else {
            return;
        };
        let mut f = Finding::new(severity, action, tx.ts);
        f.evidence = vec![tx.event_id.clone(), lock.cause.clone()];
        f.action_for = action_for;
        f.score = 1.0;
        f.reason = Some(reason.into());
        f.explanation = format!(
            "{} while the card is locked ({} of the lock left)",
            if approved { "approved" } else { "swiped" },
            Millis(lock.until.0.saturating_sub(tx.ts.0))
        );
        emit.fire_always(tx, f);
    }

    /// Counts a PIN attempt; the `max_failures`-th consecutive wrong PIN locks the card.
    fn count_pin(&self, state: &mut CardLockState, tx: &Transaction, emit: &mut Emitter<'_>) {
        if !tx.is_bad_pin() {
            state.failures = Vec::new();
            return;
        }
        state.failures.push((tx.ts, tx.event_id.clone()));
        if state.failures.len() < self.max_failures {
            return;
        }
        let run = std::mem::take(&mut state.failures);
        let first = run.first().map_or(tx.ts, |(t, _)| *t);
        let mut f = Finding::new(Severity::High, Action::LockCard, first);
        f.evidence = run.iter().map(|(_, id)| id.clone()).collect();
        f.action_for = Some(self.lock_for);
        f.score = run.len() as f64;
        f.reason = Some("pin_locked".into());
        f.explanation = format!(
            "{} wrong PINs in a row over {}: locked for {}",
            run.len(),
            tx.ts.since(first),
            self.lock_for
        );
        let cause = f.evidence[0].clone();
        Self::start_lock(state, tx, cause, self.lock_for);
        emit.fire_always(tx, f);
    }

    /// Remembers the other detectors' alerts on this event; enough of them lock the card.
    fn abnormal(&self, state: &mut CardLockState, tx: &Transaction, emit: &mut Emitter<'_>) {
        let own = emit.detector;
        let mut seen = false;
        for a in emit.earlier_alerts() {
            if a.detector == own || a.subject.kind != KeyKind::Card {
                continue;
            }
            seen = true;
            state.others.retain(|o| o.detector != a.detector);
            state.others.push(Other {
                detector: a.detector,
                ts: tx.ts,
                id: tx.event_id.clone(),
            });
        }
        if !seen || state.lock.is_some() || state.others.len() < self.abnormal_alerts {
            return;
        }
        let mut others = state.others.clone();
        others.sort_by(|a, b| (a.ts, &a.id, a.detector).cmp(&(b.ts, &b.id, b.detector)));
        let start = others.first().map_or(tx.ts, |o| o.ts);
        let mut f = Finding::new(Severity::High, Action::LockCard, start);
        f.evidence = vec![tx.event_id.clone()];
        for o in &others {
            if !f.evidence.contains(&o.id) {
                f.evidence.push(o.id.clone());
            }
        }
        f.action_for = Some(self.temporary_lock_for);
        f.score = others.len() as f64;
        f.reason = Some("temporary_lock".into());
        let names: Vec<&str> = others.iter().map(|o| o.detector.as_str()).collect();
        f.explanation = format!(
            "alerts from {} detectors within {} ({}): locked for {}",
            others.len(),
            tx.ts.since(start),
            names.join(", "),
            self.temporary_lock_for
        );
        Self::start_lock(state, tx, tx.event_id.clone(), self.temporary_lock_for);
        state.others = Vec::new();
        emit.fire_always(tx, f);
    }
}

impl Detector for CardLock {
    const NAME: &'static str = "card_lock";
    const VERSION: u32 = 1;
    const EXPIRES: bool = true;
    const KEY: KeyKind = KeyKind::Card;
    type State = CardLockState;

    fn observe(&self, state: &mut CardLockState, tx: &Transaction, emit: &mut Emitter<'_>) {
        self.expire_at(state, tx.ts);
        if tx.uses_card() {
            if state.lock.is_some() {
                self.used_while_locked(state, tx, emit);
            } else if tx.is_pin_attempt() {
                self.count_pin(state, tx, emit);
            }
        }
        self.abnormal(state, tx, emit);
    }

    fn expire(&self, state: &mut CardLockState, now: EventTime) {
        self.expire_at(state, now);
    }

    fn expires_after(&self) -> Millis {
        self.abnormal_window
            .min(self.lock_for)
            .min(self.temporary_lock_for)
    }

    fn horizon(&self) -> Millis {
        self.forget_failures_after
            .max(self.lock_for)
            .max(self.temporary_lock_for)
            .max(self.abnormal_window)
    }

    fn is_idle(state: &CardLockState) -> bool {
        state.failures.is_empty() && state.lock.is_none() && state.others.is_empty()
    }

    fn heap_bytes(state: &CardLockState) -> usize {
        heap_block(state.failures.capacity() * std::mem::size_of::<(EventTime, EventId)>())
            + state
                .failures
                .iter()
                .map(|(_, id)| id.heap_share())
                .sum::<usize>()
            + heap_block(state.others.capacity() * std::mem::size_of::<Other>())
            + state.lock.as_ref().map_or(0, |l| l.cause.heap_share())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settlement::CertType;
    use crate::testing::{config_for, proptest_detector, run, run_config, tx, TxBuilder};

    const MIN: i64 = 60_000;
    const DAY: i64 = 86_400_000;

    fn wrong(id: &str, ms: i64) -> TxBuilder {
        tx(id, ms).bad_pin()
    }

    fn reasons(alerts: &[crate::Alert]) -> Vec<(&str, Vec<&str>)> {
        alerts
            .iter()
            .map(|a| {
                (
                    a.reason.as_deref().unwrap_or(""),
                    a.evidence.iter().map(|e| e.as_str()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn three_wrong_pins_days_apart_lock_the_card_and_an_approval_resets_the_count() {
        // Two wrong PINs, an approval, then three spread over three days.
        let events = vec![
            wrong("w1", 0),
            wrong("w2", MIN),
            tx("ok", 2 * MIN),
            wrong("w3", DAY),
            wrong("w4", 2 * DAY),
            wrong("w5", 3 * DAY),
        ];
        let alerts = run(CardLock::NAME, events);
        assert_eq!(reasons(&alerts), [("pin_locked", vec!["w3", "w4", "w5"])]);
        let a = &alerts[0];
        assert_eq!((a.severity, a.action), (Severity::High, Action::LockCard));
        assert_eq!(a.action_for, Some(Millis(DAY)));
        // Two wrong PINs only: no lock.
        assert!(run(CardLock::NAME, vec![wrong("a", 0), wrong("b", DAY)]).is_empty());
    }

    #[test]
    fn a_locked_card_raises_use_once_approval_once_and_unlocks_by_itself() {
        let events = vec![
            wrong("w1", 0),
            wrong("w2", MIN),
            wrong("w3", 2 * MIN),
            wrong("u1", 3 * MIN),
            wrong("u2", 4 * MIN),
            tx("a1", 5 * MIN),
            tx("a2", 6 * MIN),
            // The lock covers [w3, w3 + 24 h): at its end the card is unlocked and counts anew.
            wrong("x1", 2 * MIN + DAY),
            wrong("x2", 3 * MIN + DAY),
            wrong("x3", 4 * MIN + DAY),
        ];
        let alerts = run(CardLock::NAME, events);
        assert_eq!(
            reasons(&alerts),
            [
                ("pin_locked", vec!["w1", "w2", "w3"]),
                ("used_while_locked", vec!["u1", "w1"]),
                ("approved_while_locked", vec!["a1", "w1"]),
                ("pin_locked", vec!["x1", "x2", "x3"]),
            ]
        );
        assert_eq!(alerts[1].severity, Severity::Medium);
        assert_eq!(alerts[1].action, Action::VerifyCardholder);
        assert_eq!(alerts[2].action_for, Some(Millis(DAY - 3 * MIN)));
    }

    #[test]
    fn a_first_swipe_that_is_approved_raises_approved_while_locked_only() {
        let events = vec![
            wrong("w1", 0),
            wrong("w2", MIN),
            wrong("w3", 2 * MIN),
            tx("a1", DAY + 2 * MIN - 1),
            tx("a2", DAY + 2 * MIN),
        ];
        let alerts = run(CardLock::NAME, events);
        assert_eq!(
            reasons(&alerts),
            [
                ("pin_locked", vec!["w1", "w2", "w3"]),
                ("approved_while_locked", vec!["a1", "w1"]),
            ]
        );
    }

    #[test]
    fn e_vouchers_refunds_and_other_declines_neither_count_nor_use_the_card() {
        let events = vec![
            wrong("w1", 0),
            tx("ev", MIN).cert(CertType::EVoucher),
            tx("rf", 2 * MIN).refunded(),
            tx("nf", 3 * MIN).declined(crate::model::DeclineReason::InsufficientFunds),
            wrong("w2", 4 * MIN),
            wrong("w3", 5 * MIN),
            tx("ev2", 6 * MIN).cert(CertType::EVoucher),
        ];
        let alerts = run(CardLock::NAME, events);
        assert_eq!(reasons(&alerts), [("pin_locked", vec!["w1", "w2", "w3"])]);
    }

    #[test]
    fn alerts_from_two_other_detectors_within_a_day_lock_the_card_for_a_while() {
        // rapid_fire (5 swipes in 60 s), then impossible_travel (Beijing 30 min later).
        let mut events: Vec<_> = (0..5)
            .map(|i| tx(&format!("r{i}"), i * 10_000).geo(31.23, 121.47))
            .collect();
        events.push(tx("far", 30 * MIN).geo(39.90, 116.40));
        events.push(tx("after", 60 * MIN).bad_pin());
        let mut cfg = config_for(CardLock::NAME);
        cfg.detectors = crate::config::DetectorsConfig::default().only(&[
            DetectorName::named("rapid_fire"),
            DetectorName::named("impossible_travel"),
            DetectorName::named("card_lock"),
        ]);
        let (alerts, _, _) = run_config(cfg, events.into_iter().map(TxBuilder::build));
        let mine: Vec<_> = alerts
            .iter()
            .filter(|a| a.detector.as_str() == CardLock::NAME)
            .cloned()
            .collect();
        assert_eq!(
            reasons(&mine),
            [
                ("temporary_lock", vec!["far", "r4"]),
                ("used_while_locked", vec!["after", "far"]),
            ]
        );
        assert_eq!(mine[0].action_for, Some(Millis(DAY)));
        // Alone, card_lock never sees the others' alerts: no temporary lock.
        let alone = run(
            CardLock::NAME,
            (0..5)
                .map(|i| tx(&format!("r{i}"), i * 10_000).geo(31.23, 121.47))
                .collect(),
        );
        assert!(alone.is_empty());
    }

    #[test]
    fn a_run_of_wrong_pins_is_forgotten_after_a_year_and_state_is_dropped_when_reset() {
        let events = vec![
            wrong("w1", 0),
            wrong("w2", 366 * DAY),
            wrong("w3", 367 * DAY),
        ];
        assert!(run(CardLock::NAME, events).is_empty());
        let (_, _, engine) = run_config(
            config_for(CardLock::NAME),
            [wrong("w1", 0).build(), tx("ok", MIN).build()],
        );
        assert_eq!(engine.state_size().tracked_cards, 0);
    }

    #[test]
    fn card_lock_passes_the_property_harness() {
        proptest_detector(CardLock::NAME);
    }
}

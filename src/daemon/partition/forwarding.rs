//! What a card partition sends the live stages (DESIGN §11; [`crate::daemon::stages`] states
//! the protocol): each admitted event, once per owning partition of every other stage, and its
//! watermark as markers into every partition of every internal topic.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use swipeguard_detectors::{EventTime, KeyKind, Transaction};

use super::{Ctx, Partition, SendError};
use crate::daemon::kafka::OwnedRecord;
use crate::daemon::stages;
use crate::encode::encode_event;

/// How often a card partition feeding live stages republishes an unchanged watermark.
const MARKER_HEARTBEAT: Duration = Duration::from_secs(2);
/// Least time between two markers of a busy partition (each is one record per partition of
/// every internal topic): the downstream stages' latency floor, against the broker's load.
const MARKER_EVERY: Duration = Duration::from_millis(250);

impl Partition {
    /// A card partition feeding live stages publishes its watermark when it moved, when the
    /// partition fell idle or woke, and at least every [`MARKER_HEARTBEAT`].
    pub fn publish_watermark(&mut self, ctx: &Ctx<'_>) -> Result<(), SendError> {
        if self.stage != KeyKind::Card || ctx.downstreams.is_empty() {
            return Ok(());
        }
        let now = (self.engine.watermark(), self.idle_advanced);
        let quiet = |(w, idle, at): (EventTime, bool, Instant)| {
            let since = at.elapsed();
            // Falling idle or waking is told at once; a moving watermark at most every
            // MARKER_EVERY; an unchanged one every MARKER_HEARTBEAT.
            idle == now.1 && (since < MARKER_EVERY || w == now.0 && since < MARKER_HEARTBEAT)
        };
        if self.published.is_some_and(quiet) {
            return Ok(());
        }
        self.publish_markers(ctx)
    }

    /// Publishes the watermark into every partition of every internal topic, now.
    pub(super) fn publish_markers(&mut self, ctx: &Ctx<'_>) -> Result<(), SendError> {
        let (watermark, idle) = (self.engine.watermark(), self.idle_advanced);
        for to in ctx.downstreams {
            for record in stages::markers(to, ctx.partitions, self.id, watermark, idle) {
                self.push(ctx, record, None)?;
            }
        }
        self.published = Some((watermark, idle, Instant::now()));
        Ok(())
    }

    /// What a card partition forwards of `tx` (read at `offset` as `raw`) if it admits it: the
    /// message's own bytes when ids are not hashed (they decode to `tx` again), else `tx`
    /// re-encoded with its hashed ids.
    pub(super) fn forwards(
        &self,
        ctx: &Ctx<'_>,
        tx: &Transaction,
        offset: i64,
        raw: Option<&[u8]>,
    ) -> Vec<(KeyKind, OwnedRecord)> {
        if self.stage != KeyKind::Card || ctx.downstreams.is_empty() {
            return Vec::new();
        }
        let payload: Cow<'_, [u8]> = match raw {
            Some(raw) if ctx.limits.hasher.is_none() => Cow::Borrowed(raw),
            _ => {
                let mut payload = Vec::with_capacity(512);
                encode_event(tx, &mut payload);
                payload.pop();
                Cow::Owned(payload)
            }
        };
        ctx.downstreams
            .iter()
            .flat_map(|to| {
                stages::forwards(to, ctx.partitions, tx, self.id, offset, &payload)
                    .into_iter()
                    .map(|r| (to.kind, r))
            })
            .collect()
    }
}

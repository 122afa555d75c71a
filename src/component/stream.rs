//! The receiving half of a component: one bounded channel fed by every upstream output.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Semaphore, mpsc};

use crate::acks::EventStatus;
use crate::event::EventArray;
use crate::telemetry::{BufferMetrics, ComponentMetrics, Throttle};

/// Batches (not events) each channel holds before its writer waits. A batch is at most one
/// request body or one read of stdin, so memory per edge is bounded by this many of them.
pub const CHANNEL_CAPACITY: usize = 16;

/// Events queued for one component and not yet taken by it: counted to
/// report what a forced shutdown could not flush, and, for a sink with
/// `buffer.max_events`, bounded (writers wait for room).
#[derive(Clone, Default)]
pub struct Backlog {
    queued: Arc<AtomicU64>,
    limit: Option<(Arc<Semaphore>, usize)>,
    /// `when_full = "drop_newest"`: where discarded batches are counted.
    drop_newest: Option<Arc<Discards>>,
}

/// Batches a full `drop_newest` queue discarded: counted, and logged at most
/// once every 10 s so an overloaded pipeline does not also flood its log.
struct Discards {
    metrics: BufferMetrics,
    log: Throttle,
}

impl Backlog {
    /// A backlog that holds at most `max_events` events (a larger batch
    /// waits until the queue is empty). With `drop_newest`, a batch that does
    /// not fit is discarded instead of waiting.
    pub(crate) fn bounded(max_events: usize, drop_newest: Option<BufferMetrics>) -> Self {
        Self {
            queued: Arc::default(),
            limit: Some((Arc::new(Semaphore::new(max_events)), max_events)),
            drop_newest: drop_newest.map(|metrics| {
                Arc::new(Discards {
                    metrics,
                    log: Throttle::new(10),
                })
            }),
        }
    }

    /// Whether a full queue discards new batches rather than waiting.
    pub(crate) fn drops_newest(&self) -> bool {
        self.drop_newest.is_some()
    }

    /// Discard a batch that found the queue full: its events count as
    /// dropped on purpose, since the configuration asked for it.
    pub(crate) fn discard(&self, batch: EventArray) {
        if let Some(discards) = &self.drop_newest {
            discards.metrics.discarded(batch.len());
            if discards.log.ready() {
                tracing::warn!(
                    events = batch.len(),
                    "buffer full: discarding the newest events (when_full = \"drop_newest\"); see buffer_discarded_events_total"
                );
            }
        }
        for event in batch {
            event.finalize(EventStatus::Dropped);
        }
    }

    /// Count `n` events as queued if there is room for them now.
    pub(crate) fn try_reserve(&self, n: usize) -> bool {
        if let Some((room, max)) = &self.limit {
            match room.try_acquire_many(n.min(*max) as u32) {
                Ok(p) => p.forget(),
                Err(_) => return false,
            }
        }
        self.queued.fetch_add(n as u64, Ordering::Relaxed);
        true
    }

    /// Wait for room for `n` events, then count them as queued.
    pub(crate) async fn reserve(&self, n: usize) {
        if let Some((room, max)) = &self.limit {
            let permits = n.min(*max) as u32;
            if let Ok(p) = room.acquire_many(permits).await {
                p.forget();
            }
        }
        self.queued.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `n` events left the queue (taken by the reader, or never sent).
    pub(crate) fn release(&self, n: usize) {
        self.queued.fetch_sub(n as u64, Ordering::Relaxed);
        if let Some((room, max)) = &self.limit {
            room.add_permits(n.min(*max));
        }
    }

    /// Events queued right now.
    pub fn get(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }
}

/// What a transform or sink reads: batches of events, ending when every
/// upstream component has finished.
pub struct EventStream {
    rx: mpsc::Receiver<EventArray>,
    backlog: Backlog,
    metrics: ComponentMetrics,
}

impl EventStream {
    pub(crate) fn new(
        rx: mpsc::Receiver<EventArray>,
        backlog: Backlog,
        metrics: ComponentMetrics,
    ) -> Self {
        Self {
            rx,
            backlog,
            metrics,
        }
    }

    /// The next batch, counted as received; `None` once all inputs are done.
    pub async fn next(&mut self) -> Option<EventArray> {
        let events = self.rx.recv().await?;
        self.backlog.release(events.len());
        let bytes = events.iter().map(|e| e.size_hint()).sum();
        self.metrics.received(events.len(), bytes);
        Some(events)
    }

    /// The counters of the component reading this stream.
    pub fn metrics(&self) -> &ComponentMetrics {
        &self.metrics
    }
}

//! The receiving half of a component: one bounded channel fed by every upstream output.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Semaphore, mpsc};

use crate::event::EventArray;
use crate::telemetry::ComponentMetrics;

/// Events queued for one component and not yet taken by it: counted to
/// report what a forced shutdown could not flush, and, for a sink with
/// `buffer.max_events`, bounded (writers wait for room).
#[derive(Clone, Default)]
pub struct Backlog {
    queued: Arc<AtomicU64>,
    limit: Option<(Arc<Semaphore>, usize)>,
}

impl Backlog {
    /// A backlog that holds at most `max_events` events (a larger batch
    /// waits until the queue is empty).
    pub fn bounded(max_events: usize) -> Self {
        Self {
            queued: Arc::default(),
            limit: Some((Arc::new(Semaphore::new(max_events)), max_events)),
        }
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

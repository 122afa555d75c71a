//! The receiving half of a component: one bounded channel fed by every upstream output.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::event::EventArray;
use crate::telemetry::ComponentMetrics;

/// Events queued for one component and not yet taken by it; read at a
/// forced shutdown to report what could not be flushed.
#[derive(Clone, Default)]
pub struct Backlog(Arc<AtomicU64>);

impl Backlog {
    pub(crate) fn add(&self, n: usize) {
        self.0.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn sub(&self, n: usize) {
        self.0.fetch_sub(n as u64, Ordering::Relaxed);
    }

    /// Events queued right now.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
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
        self.backlog.sub(events.len());
        let bytes = events.iter().map(|e| e.size_hint()).sum();
        self.metrics.received(events.len(), bytes);
        Some(events)
    }

    /// The counters of the component reading this stream.
    pub fn metrics(&self) -> &ComponentMetrics {
        &self.metrics
    }
}

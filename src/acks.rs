//! End-to-end acknowledgements: how a source learns what became of the
//! events it emitted.
//!
//! A source that answers its sender (an HTTP request) creates one
//! [`BatchNotifier`] per request and attaches a clone of it to every event.
//! Each event reports its own [`EventStatus`] once, when a sink has handled
//! it or a transform has dropped it on purpose; when the last event of the
//! request reports (or is dropped), the source receives the combined
//! [`BatchStatus`]. An event dropped without reporting counts as a failure,
//! so an event lost to a crash or a forced shutdown is never acknowledged
//! as delivered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use serde::Deserialize;
use tokio::sync::oneshot;

/// `acknowledgements`: `true`, or `{ enabled = true }` as in Vector.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "`true`, `false` or a table `{ enabled = true }`"
)]
pub enum AcknowledgementsConfig {
    /// `acknowledgements = true`
    Flag(bool),
    /// `acknowledgements.enabled = true`
    Table(AcknowledgementsTable),
}

/// The table form of [`AcknowledgementsConfig`].
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcknowledgementsTable {
    /// Whether enabled.
    pub enabled: bool,
}

impl Default for AcknowledgementsConfig {
    fn default() -> Self {
        Self::Flag(false)
    }
}

impl AcknowledgementsConfig {
    /// Whether the setting enables acknowledgements.
    pub fn enabled(self) -> bool {
        matches!(
            self,
            Self::Flag(true) | Self::Table(AcknowledgementsTable { enabled: true })
        )
    }
}

/// What became of one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventStatus {
    /// A sink delivered it.
    Delivered,
    /// A transform dropped it on purpose (a filter, a VRL `abort`).
    Dropped,
    /// It was written to a dead letter: handled, not delivered.
    DeadLettered,
    /// It could not be delivered now; the sender should retry.
    Errored,
    /// It can never be delivered as it is; the sender should not retry.
    Rejected,
}

/// What became of a whole batch (one HTTP request's events).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum BatchStatus {
    /// Every event was delivered, dead-lettered or intentionally dropped.
    Delivered = 0,
    /// At least one event was rejected and none errored.
    Rejected = 1,
    /// At least one event failed (or was lost before it was handled).
    Errored = 2,
}

impl EventStatus {
    fn batch_status(self) -> BatchStatus {
        match self {
            EventStatus::Delivered | EventStatus::Dropped | EventStatus::DeadLettered => {
                BatchStatus::Delivered
            }
            EventStatus::Rejected => BatchStatus::Rejected,
            EventStatus::Errored => BatchStatus::Errored,
        }
    }
}

/// Created by a source for one batch; resolves when every event of the
/// batch has reported.
pub struct BatchNotifier;

impl BatchNotifier {
    /// A new batch: the finalizer to attach (cloned) to each of its events,
    /// and the receiver that yields the batch's status once all clones are gone.
    pub fn new() -> (EventFinalizer, BatchStatusReceiver) {
        let (tx, rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            status: AtomicU8::new(BatchStatus::Delivered as u8),
            tx: Some(tx),
        });
        (
            EventFinalizer {
                shared: Some(shared),
            },
            BatchStatusReceiver(rx),
        )
    }
}

struct Shared {
    status: AtomicU8,
    tx: Option<oneshot::Sender<BatchStatus>>,
}

impl Drop for Shared {
    // The last event has reported: tell the source.
    fn drop(&mut self) {
        let status = match self.status.load(Ordering::Acquire) {
            0 => BatchStatus::Delivered,
            1 => BatchStatus::Rejected,
            _ => BatchStatus::Errored,
        };
        if let Some(tx) = self.tx.take() {
            // The source may have given up waiting (its client went away).
            let _ = tx.send(status);
        }
    }
}

/// Awaited by the source: the combined status of its batch.
pub struct BatchStatusReceiver(oneshot::Receiver<BatchStatus>);

impl BatchStatusReceiver {
    /// Wait until every event of the batch has reported.
    pub async fn wait(self) -> BatchStatus {
        // The sender lives in the shared state, which always sends on drop.
        self.0.await.unwrap_or(BatchStatus::Errored)
    }
}

/// One event's share of its batch. Cloned when an event is copied to several
/// outputs, so the batch completes only when every copy has reported.
#[derive(Clone, Default)]
pub struct EventFinalizer {
    shared: Option<Arc<Shared>>,
}

impl EventFinalizer {
    /// A finalizer that reports to no one (sources without acknowledgements).
    pub fn none() -> Self {
        Self { shared: None }
    }

    /// Whether anyone waits for this event's status.
    pub fn is_tracked(&self) -> bool {
        self.shared.is_some()
    }

    /// Report this event's status; later reports of the same event are ignored.
    pub fn update(&mut self, status: EventStatus) {
        if let Some(shared) = self.shared.take() {
            shared
                .status
                .fetch_max(status.batch_status() as u8, Ordering::AcqRel);
        }
    }
}

impl Drop for EventFinalizer {
    // Dropped without a report: the event was lost, so the batch failed.
    fn drop(&mut self) {
        self.update(EventStatus::Errored);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batch_is_delivered_when_every_copy_reports_success() {
        let (mut a, rx) = BatchNotifier::new();
        let mut b = a.clone();
        let mut c = a.clone();
        a.update(EventStatus::Delivered);
        b.update(EventStatus::DeadLettered);
        c.update(EventStatus::Dropped);
        drop((a, b, c));
        assert_eq!(rx.wait().await, BatchStatus::Delivered);
    }

    #[tokio::test]
    async fn one_failure_fails_the_batch_and_rejection_ranks_below_error() {
        let (mut a, rx) = BatchNotifier::new();
        let mut b = a.clone();
        let mut c = a.clone();
        a.update(EventStatus::Rejected);
        b.update(EventStatus::Errored);
        c.update(EventStatus::Delivered);
        drop((a, b, c));
        assert_eq!(rx.wait().await, BatchStatus::Errored);

        let (mut a, rx) = BatchNotifier::new();
        a.update(EventStatus::Rejected);
        drop(a);
        assert_eq!(rx.wait().await, BatchStatus::Rejected);
    }

    #[tokio::test]
    async fn an_event_dropped_without_a_report_fails_its_batch() {
        let (mut a, rx) = BatchNotifier::new();
        let b = a.clone();
        a.update(EventStatus::Delivered);
        drop(b);
        assert_eq!(rx.wait().await, BatchStatus::Errored);
    }

    #[tokio::test]
    async fn the_status_waits_for_the_last_copy() {
        let (mut a, rx) = BatchNotifier::new();
        let mut b = a.clone();
        a.update(EventStatus::Delivered);
        let waiter = tokio::spawn(rx.wait());
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        b.update(EventStatus::Delivered);
        assert_eq!(waiter.await.unwrap(), BatchStatus::Delivered);
    }
}

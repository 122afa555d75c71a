//! A component's output: every downstream component gets every event.
//!
//! The readers an output sends to live behind an [`OutputHandle`], which the topology re-points
//! when a configuration reload adds, removes or replaces a reader. Each send loads the current
//! list (one atomic load, no lock: the list is swapped whole, never edited in place) and holds
//! it only while sending, so an idle clone of an output keeps no stale reader alive: once the
//! sends in flight are done, a reader taken out of every list sees its input end and drains.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use super::stream::Backlog;
use super::tap::TapPoint;
use crate::acks::EventStatus;
use crate::event::EventArray;

/// One reader of an output: its channel and its queue's count.
pub type Reader = (mpsc::Sender<EventArray>, Backlog);

/// The readers of an output as the topology last wired them.
struct Readers {
    list: Vec<Reader>,
    /// Nothing is wired to read this output (the config loader warns about it): its events are
    /// discarded as configured, not failed. `false` with no reader: the component was removed
    /// by a reload, and what it still sends fails, so its senders retry.
    unread: bool,
}

/// Where the topology points an output: shared by every clone of it, swapped whole.
#[derive(Clone)]
pub struct OutputHandle(Arc<ArcSwap<Readers>>);

impl OutputHandle {
    /// A handle sending to `readers` (none: the output is unread).
    pub(crate) fn new(readers: Vec<Reader>) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(Readers::wired(readers))))
    }

    /// Send to `readers` from the next batch on (a batch being sent finishes with the old list).
    pub(crate) fn set(&self, readers: Vec<Reader>) {
        self.0.store(Arc::new(Readers::wired(readers)));
    }

    /// The component was removed: from now on its sends fail (their events' acknowledgements
    /// fail, so their senders retry), and it keeps no reader alive.
    pub(crate) fn close(&self) {
        self.0.store(Arc::new(Readers {
            list: Vec::new(),
            unread: false,
        }));
    }

    /// The output a component sends through.
    pub(crate) fn output(&self) -> Output {
        Output {
            handle: self.clone(),
            tap: None,
        }
    }
}

impl Readers {
    fn wired(list: Vec<Reader>) -> Self {
        let unread = list.is_empty();
        Self { list, unread }
    }
}

/// The sending half of a component: one bounded channel per downstream
/// component. Sending waits while the slowest reader is full (backpressure).
#[derive(Clone)]
pub struct Output {
    handle: OutputHandle,
    /// Where open taps see what leaves the component (see [`super::Taps`]).
    tap: Option<TapPoint>,
}

/// Every downstream component has stopped; nothing more can be sent.
#[derive(Debug)]
pub struct Closed;

impl Output {
    /// An output wired once, to `readers`.
    #[cfg(test)]
    pub(crate) fn new(readers: Vec<Reader>) -> Self {
        OutputHandle::new(readers).output()
    }

    /// The same output, offering what it sends to the open taps.
    pub fn with_tap(mut self, tap: TapPoint) -> Self {
        self.tap = Some(tap);
        self
    }

    /// Send a batch to every reader: copies to all but the last, the batch
    /// itself to the last. A copy for a reader that has stopped is dropped,
    /// which fails the events' acknowledgements.
    pub async fn send(&mut self, events: EventArray) -> Result<(), Closed> {
        if events.is_empty() {
            return Ok(());
        }
        if let Some(tap) = &self.tap {
            tap.offer(&events);
        }
        let readers = self.handle.0.load_full();
        if readers.unread {
            for event in events {
                event.finalize(EventStatus::Dropped);
            }
            return Ok(());
        }
        let last = readers.list.len().saturating_sub(1);
        let mut events = Some(events);
        let mut delivered = false;
        for (i, (sender, backlog)) in readers.list.iter().enumerate() {
            let batch = if i == last {
                events
                    .take()
                    .expect("the batch is sent to the last reader only")
            } else {
                let all = events.as_ref().expect("kept until the last reader");
                all.iter().map(|e| e.clone_for_fanout()).collect()
            };
            let n = batch.len();
            if backlog.drops_newest() {
                delivered |= !matches!(
                    try_send(sender, backlog, batch),
                    Err(mpsc::error::TrySendError::Closed(_))
                );
                continue;
            }
            backlog.reserve(n).await;
            if sender.send(batch).await.is_err() {
                backlog.release(n);
            } else {
                delivered = true;
            }
        }
        if delivered { Ok(()) } else { Err(Closed) }
    }
}

/// Queue `batch` for a reader whose buffer is set to `when_full =
/// "drop_newest"`: when there is no room, the batch is discarded as
/// configured (counted by the reader's buffer metrics, and not failed, so its
/// senders are not asked to send it again).
fn try_send(
    sender: &mpsc::Sender<EventArray>,
    backlog: &Backlog,
    batch: EventArray,
) -> Result<(), mpsc::error::TrySendError<()>> {
    let n = batch.len();
    if !backlog.try_reserve(n) {
        backlog.discard(batch);
        return Err(mpsc::error::TrySendError::Full(()));
    }
    match sender.try_send(batch) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(batch)) => {
            backlog.release(n);
            backlog.discard(batch);
            Err(mpsc::error::TrySendError::Full(()))
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            backlog.release(n);
            Err(mpsc::error::TrySendError::Closed(()))
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::acks::BatchStatus;
    use crate::event::{Event, track};

    #[tokio::test]
    async fn an_output_nothing_reads_discards_as_configured_and_does_not_fail_the_batch() {
        let mut events: Vec<Event> = (0..2)
            .map(|_| Event::from_json(Bytes::from_static(b"{}")))
            .collect();
        let status = track(&mut events);
        Output::new(Vec::new()).send(events).await.unwrap();
        assert_eq!(status.wait().await, BatchStatus::Delivered);
    }

    #[tokio::test]
    async fn a_re_pointed_output_sends_to_the_new_reader_and_no_clone_keeps_the_old_one_open() {
        let (old_tx, mut old_rx) = mpsc::channel(4);
        let (new_tx, mut new_rx) = mpsc::channel(4);
        let handle = OutputHandle::new(vec![(old_tx, Backlog::default())]);
        let mut out = handle.output();
        let idle = out.clone();
        out.send(vec![Event::from_json(Bytes::from_static(b"{}"))])
            .await
            .unwrap();
        handle.set(vec![(new_tx, Backlog::default())]);
        out.send(vec![Event::from_json(Bytes::from_static(b"{}"))])
            .await
            .unwrap();
        assert_eq!(old_rx.recv().await.map(|b| b.len()), Some(1));
        assert!(
            old_rx.recv().await.is_none(),
            "the old reader's input ends although clones of the output live"
        );
        assert_eq!(new_rx.recv().await.map(|b| b.len()), Some(1));
        drop(idle);
    }

    #[tokio::test]
    async fn a_closed_output_fails_what_it_sends_instead_of_discarding_it() {
        let (tx, _rx) = mpsc::channel(4);
        let handle = OutputHandle::new(vec![(tx, Backlog::default())]);
        handle.close();
        let mut events = vec![Event::from_json(Bytes::from_static(b"{}"))];
        let status = track(&mut events);
        assert!(handle.output().send(events).await.is_err());
        assert_eq!(status.wait().await, BatchStatus::Errored);
    }

    #[tokio::test]
    async fn an_output_whose_readers_stopped_fails_the_batch() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let mut events = vec![Event::from_json(Bytes::from_static(b"{}"))];
        let status = track(&mut events);
        assert!(
            Output::new(vec![(tx, Backlog::default())])
                .send(events)
                .await
                .is_err()
        );
        assert_eq!(status.wait().await, BatchStatus::Errored);
    }

    #[tokio::test]
    async fn a_full_drop_newest_queue_discards_the_batch_as_configured_and_a_block_queue_waits() {
        use crate::telemetry::{BufferMetrics, ComponentInfo, ComponentMetrics};
        let metrics = BufferMetrics::new(&ComponentMetrics::new(ComponentInfo {
            id: "s".into(),
            kind: "sink",
            type_name: "test".into(),
        }));
        let batch = |n| -> Vec<Event> {
            (0..n)
                .map(|_| Event::from_json(Bytes::from_static(b"{}")))
                .collect()
        };
        let (tx, mut rx) = mpsc::channel(16);
        let backlog = Backlog::bounded(3, Some(metrics));
        let mut out = Output::new(vec![(tx, backlog.clone())]);
        out.send(batch(2)).await.unwrap();
        let mut second = batch(2);
        let status = track(&mut second);
        out.send(second).await.unwrap();
        assert_eq!(
            status.wait().await,
            BatchStatus::Delivered,
            "dropped, not failed"
        );
        assert_eq!(
            backlog.get(),
            2,
            "only the first batch is counted as queued"
        );
        assert_eq!(rx.recv().await.unwrap().len(), 2);
        assert!(rx.try_recv().is_err(), "the second batch was discarded");

        let (tx, mut rx) = mpsc::channel(16);
        let backlog = Backlog::bounded(3, None);
        let mut out = Output::new(vec![(tx, backlog)]);
        out.send(batch(2)).await.unwrap();
        let blocked =
            tokio::time::timeout(std::time::Duration::from_millis(100), out.send(batch(2))).await;
        assert!(blocked.is_err(), "a blocking queue waits for room");
        assert_eq!(rx.recv().await.unwrap().len(), 2);
    }
}

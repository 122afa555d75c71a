//! A component's output: every downstream component gets every event.

use tokio::sync::mpsc;

use super::stream::Backlog;
use super::tap::TapPoint;
use crate::acks::EventStatus;
use crate::event::EventArray;

/// The sending half of a component: one bounded channel per downstream
/// component. Sending waits while the slowest reader is full (backpressure).
#[derive(Clone)]
pub struct Output {
    senders: Vec<(mpsc::Sender<EventArray>, Backlog)>,
    /// Nothing was ever wired to read this output (the config loader warns
    /// about it): its events are discarded as configured, not failed.
    unread: bool,
    /// Where open taps see what leaves the component (see [`super::Taps`]).
    tap: Option<TapPoint>,
}

/// Every downstream component has stopped; nothing more can be sent.
#[derive(Debug)]
pub struct Closed;

impl Output {
    pub(crate) fn new(senders: Vec<(mpsc::Sender<EventArray>, Backlog)>) -> Self {
        let unread = senders.is_empty();
        Self {
            senders,
            unread,
            tap: None,
        }
    }

    /// The same output, offering what it sends to the open taps.
    pub fn with_tap(mut self, tap: TapPoint) -> Self {
        self.tap = Some(tap);
        self
    }

    /// Send a batch to every reader: copies to all but the last, the batch
    /// itself to the last. A reader that has stopped is removed; its copy is
    /// dropped, which fails the events' acknowledgements.
    pub async fn send(&mut self, events: EventArray) -> Result<(), Closed> {
        if events.is_empty() {
            return Ok(());
        }
        if let Some(tap) = &self.tap {
            tap.offer(&events);
        }
        if self.unread {
            for event in events {
                event.finalize(EventStatus::Dropped);
            }
            return Ok(());
        }
        let mut i = 0;
        let mut events = Some(events);
        while i < self.senders.len() {
            let batch = if i + 1 == self.senders.len() {
                events
                    .take()
                    .expect("the batch is sent to the last reader only")
            } else {
                let all = events.as_ref().expect("kept until the last reader");
                all.iter().map(|e| e.clone_for_fanout()).collect()
            };
            let (sender, backlog) = &self.senders[i];
            let n = batch.len();
            if backlog.drops_newest() {
                match try_send(sender, backlog, batch) {
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        self.senders.remove(i);
                        if i == self.senders.len() {
                            break;
                        }
                        continue;
                    }
                    _ => {
                        i += 1;
                        continue;
                    }
                }
            }
            backlog.reserve(n).await;
            if sender.send(batch).await.is_err() {
                backlog.release(n);
                self.senders.remove(i);
                if i == self.senders.len() {
                    break;
                }
                continue;
            }
            i += 1;
        }
        if self.senders.is_empty() {
            Err(Closed)
        } else {
            Ok(())
        }
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

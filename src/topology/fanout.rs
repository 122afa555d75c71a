//! A component's output: every downstream component gets every event.

use tokio::sync::mpsc;

use super::stream::Backlog;
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
}

/// Every downstream component has stopped; nothing more can be sent.
#[derive(Debug)]
pub struct Closed;

impl Output {
    pub(crate) fn new(senders: Vec<(mpsc::Sender<EventArray>, Backlog)>) -> Self {
        let unread = senders.is_empty();
        Self { senders, unread }
    }

    /// An output connected to nothing (its events are dropped as failed).
    pub fn detached() -> Self {
        Self {
            senders: Vec::new(),
            unread: false,
        }
    }

    /// Send a batch to every reader: copies to all but the last, the batch
    /// itself to the last. A reader that has stopped is removed; its copy is
    /// dropped, which fails the events' acknowledgements.
    pub async fn send(&mut self, events: EventArray) -> Result<(), Closed> {
        if events.is_empty() {
            return Ok(());
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
}

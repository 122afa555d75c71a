//! Batches of mapped events, cut by count, by size and by time.

use std::ops::Range;

use bytes::Bytes;
use tokio::time::{Duration, Instant};

use crate::acks::EventFinalizer;

/// One mapped event of a batch.
pub struct Entry {
    /// The event as it entered the sink, for the dead letter.
    pub original: Bytes,
    /// Reports the event's fate to its source.
    pub finalizer: EventFinalizer,
    /// Its server event's JSON in [`Batch::json`].
    range: Range<usize>,
}

/// Mapped events ready for one request: their server events' JSON back to back.
#[derive(Default)]
pub struct Batch {
    json: Vec<u8>,
    /// The events, in order.
    pub entries: Vec<Entry>,
}

impl Batch {
    /// The server event JSON of entry `i`.
    pub fn event_json(&self, i: usize) -> &[u8] {
        &self.json[self.entries[i].range.clone()]
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of server event JSON.
    pub fn json_bytes(&self) -> usize {
        self.json.len()
    }
}

/// Collects mapped events until a batch is full or old enough.
pub struct BatchBuilder {
    max_events: usize,
    max_bytes: usize,
    timeout: Duration,
    current: Batch,
    deadline: Option<Instant>,
}

impl BatchBuilder {
    /// A builder cutting at `max_events`, `max_bytes` of event JSON, or
    /// `timeout` after a batch's first event.
    pub fn new(max_events: usize, max_bytes: usize, timeout: Duration) -> Self {
        Self {
            max_events,
            max_bytes,
            timeout,
            current: Batch::default(),
            deadline: None,
        }
    }

    /// Where the next event's JSON goes; call [`BatchBuilder::commit`] after
    /// writing one, or leave it untouched.
    pub fn json(&mut self) -> &mut Vec<u8> {
        &mut self.current.json
    }

    /// The length of [`BatchBuilder::json`], to pass to `commit`.
    pub fn mark(&self) -> usize {
        self.current.json.len()
    }

    /// Add the event whose JSON was written after `mark`. Returns a batch
    /// that is ready to send, if this event filled one.
    pub fn commit(
        &mut self,
        mark: usize,
        original: Bytes,
        finalizer: EventFinalizer,
    ) -> Option<Batch> {
        let end = self.current.json.len();
        if end > mark + 1 && self.current.json.len() > self.max_bytes && !self.current.is_empty() {
            // This event would push the batch over max_bytes: it starts the next one.
            let json = self.current.json.split_off(mark);
            let full = std::mem::take(&mut self.current);
            self.current.json = json;
            self.push(0..end - mark, original, finalizer);
            return Some(full);
        }
        self.push(mark..end, original, finalizer);
        if self.current.len() >= self.max_events || self.current.json.len() >= self.max_bytes {
            return self.take();
        }
        None
    }

    fn push(&mut self, range: Range<usize>, original: Bytes, finalizer: EventFinalizer) {
        if self.current.is_empty() {
            self.deadline = Some(Instant::now() + self.timeout);
        }
        self.current.entries.push(Entry {
            original,
            finalizer,
            range,
        });
    }

    /// When the current batch must be sent even if not full.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The current batch, if it has events; the builder starts a new one.
    pub fn take(&mut self) -> Option<Batch> {
        self.deadline = None;
        if self.current.is_empty() {
            self.current.json.clear();
            return None;
        }
        let capacity = self.current.json.capacity();
        Some(std::mem::replace(
            &mut self.current,
            Batch {
                json: Vec::with_capacity(capacity),
                entries: Vec::with_capacity(self.max_events.min(1024)),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(b: &mut BatchBuilder, json: &str) -> Option<Batch> {
        let mark = b.mark();
        b.json().extend_from_slice(json.as_bytes());
        b.commit(mark, Bytes::from(json.to_owned()), EventFinalizer::none())
    }

    fn events(batch: &Batch) -> Vec<String> {
        (0..batch.len())
            .map(|i| String::from_utf8(batch.event_json(i).to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn a_batch_is_cut_at_max_events() {
        let mut b = BatchBuilder::new(2, 1 << 20, Duration::from_secs(1));
        assert!(add(&mut b, "{\"a\":1}").is_none());
        let full = add(&mut b, "{\"a\":2}").unwrap();
        assert_eq!(events(&full), ["{\"a\":1}", "{\"a\":2}"]);
        assert!(b.take().is_none());
    }

    #[test]
    fn an_event_that_would_pass_max_bytes_starts_the_next_batch() {
        let mut b = BatchBuilder::new(100, 20, Duration::from_secs(1));
        assert!(add(&mut b, "{\"a\":\"12345\"}").is_none()); // 13 bytes
        let full = add(&mut b, "{\"b\":\"123456\"}").unwrap(); // 27 > 20
        assert_eq!(events(&full), ["{\"a\":\"12345\"}"]);
        let rest = b.take().unwrap();
        assert_eq!(events(&rest), ["{\"b\":\"123456\"}"]);
    }

    #[test]
    fn an_event_larger_than_max_bytes_goes_alone() {
        let mut b = BatchBuilder::new(100, 5, Duration::from_secs(1));
        let alone = add(&mut b, "{\"big\":true}").unwrap();
        assert_eq!(events(&alone), ["{\"big\":true}"]);
    }

    #[tokio::test]
    async fn the_deadline_starts_with_the_first_event() {
        let mut b = BatchBuilder::new(10, 1000, Duration::from_millis(500));
        assert!(b.deadline().is_none());
        let before = Instant::now();
        add(&mut b, "{}");
        let deadline = b.deadline().unwrap();
        assert!(deadline >= before + Duration::from_millis(500));
        b.take();
        assert!(b.deadline().is_none());
    }
}

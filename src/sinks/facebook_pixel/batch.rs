//! Batches of mapped events, cut by count, by size and by time.
//!
//! A batch is built as the request body itself: `{"data":[` then each server
//! event's JSON as mapping writes it, comma-separated, closed by `]`, the
//! request's other fields and `}` when the batch is taken. Sending the whole
//! batch therefore copies nothing; only the halves of a bisected batch are
//! assembled again.

use std::ops::Range;

use bytes::Bytes;
use tokio::time::{Duration, Instant};

use super::capi::UserDataKeys;
use crate::acks::EventFinalizer;

const PREFIX: &[u8] = b"{\"data\":[";

/// One mapped event of a batch.
pub struct Entry {
    /// The event as it entered the sink, for the dead letter.
    pub original: Bytes,
    /// Reports the event's fate to its source.
    pub finalizer: EventFinalizer,
    /// Its server event's JSON in the body.
    range: Range<usize>,
    /// The user_data keys it carries, and those enrichment added: for the ledger.
    pub keys: (UserDataKeys, UserDataKeys),
}

/// Mapped events ready for one request.
pub struct Batch {
    body: Bytes,
    /// The events, in order.
    pub entries: Vec<Entry>,
}

impl Batch {
    /// The server event JSON of entry `i`.
    pub fn event_json(&self, i: usize) -> &[u8] {
        &self.body[self.entries[i].range.clone()]
    }

    /// Where entry `i`'s server event is in [`Batch::body`].
    pub fn range(&self, i: usize) -> Range<usize> {
        self.entries[i].range.clone()
    }

    /// The request body carrying every event of the batch.
    pub fn body(&self) -> Bytes {
        self.body.clone()
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Where the next event's JSON starts; from [`BatchBuilder::begin`].
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    start: usize,
    comma: bool,
}

/// Collects mapped events until a batch is full or old enough.
pub struct BatchBuilder {
    max_events: usize,
    max_bytes: usize,
    timeout: Duration,
    /// What closes a body after the events: `]`, the request's other fields, `}`.
    closing: Vec<u8>,
    json: Vec<u8>,
    entries: Vec<Entry>,
    deadline: Option<Instant>,
}

impl BatchBuilder {
    /// A builder cutting at `max_events`, `max_bytes` of body, or `timeout`
    /// after a batch's first event. `suffix` is what follows the `data` array
    /// in a request body (`,"test_event_code":…`), without the closing brace.
    pub fn new(max_events: usize, max_bytes: usize, timeout: Duration, suffix: &[u8]) -> Self {
        let mut closing = b"]".to_vec();
        closing.extend_from_slice(suffix);
        closing.push(b'}');
        Self {
            max_events,
            max_bytes,
            timeout,
            closing,
            json: PREFIX.to_vec(),
            entries: Vec::new(),
            deadline: None,
        }
    }

    /// An empty builder with the same limits and request fields: each mapping worker
    /// builds its own batches.
    pub fn empty_like(&self) -> Self {
        Self {
            max_events: self.max_events,
            max_bytes: self.max_bytes,
            timeout: self.timeout,
            closing: self.closing.clone(),
            json: PREFIX.to_vec(),
            entries: Vec::new(),
            deadline: None,
        }
    }

    /// Prepare for the next event, whose JSON is then written to
    /// [`BatchBuilder::json`]; follow with `commit` or `abandon`.
    pub fn begin(&mut self) -> Mark {
        let comma = !self.entries.is_empty();
        if comma {
            self.json.push(b',');
        }
        Mark {
            start: self.json.len(),
            comma,
        }
    }

    /// Where the next event's JSON goes.
    pub fn json(&mut self) -> &mut Vec<u8> {
        &mut self.json
    }

    /// The event begun at `mark` was not mapped: forget it.
    pub fn abandon(&mut self, mark: Mark) {
        self.json.truncate(mark.start - usize::from(mark.comma));
    }

    /// Add the event whose JSON was written after `mark`. Returns a batch
    /// that is ready to send, if this event filled one.
    pub fn commit(
        &mut self,
        mark: Mark,
        original: Bytes,
        finalizer: EventFinalizer,
        keys: (UserDataKeys, UserDataKeys),
    ) -> Option<Batch> {
        let end = self.json.len();
        let projected = end + self.closing.len();
        if projected > self.max_bytes && !self.entries.is_empty() {
            // This event would push the body over max_bytes: it starts the next batch.
            let event = self.json.split_off(mark.start);
            self.json.truncate(mark.start - usize::from(mark.comma));
            let full = self.take();
            self.json.extend_from_slice(&event);
            self.push(
                PREFIX.len()..PREFIX.len() + event.len(),
                original,
                finalizer,
                keys,
            );
            return full;
        }
        self.push(mark.start..end, original, finalizer, keys);
        if self.entries.len() >= self.max_events || projected >= self.max_bytes {
            return self.take();
        }
        None
    }

    fn push(
        &mut self,
        range: Range<usize>,
        original: Bytes,
        finalizer: EventFinalizer,
        keys: (UserDataKeys, UserDataKeys),
    ) {
        if self.entries.is_empty() {
            self.deadline = Some(Instant::now() + self.timeout);
        }
        self.entries.push(Entry {
            original,
            finalizer,
            range,
            keys,
        });
    }

    /// When the current batch must be sent even if not full.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The current batch, if it has events; the builder starts a new one.
    pub fn take(&mut self) -> Option<Batch> {
        self.deadline = None;
        if self.entries.is_empty() {
            self.json.truncate(PREFIX.len());
            return None;
        }
        let mut next = Vec::with_capacity(self.json.capacity());
        next.extend_from_slice(PREFIX);
        let mut body = std::mem::replace(&mut self.json, next);
        body.extend_from_slice(&self.closing);
        let entries = std::mem::replace(
            &mut self.entries,
            Vec::with_capacity(self.max_events.min(1024)),
        );
        Some(Batch {
            body: body.into(),
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder(max_events: usize, max_bytes: usize) -> BatchBuilder {
        BatchBuilder::new(
            max_events,
            max_bytes,
            Duration::from_secs(1),
            b",\"test_event_code\":\"T\"",
        )
    }

    fn add(b: &mut BatchBuilder, json: &str) -> Option<Batch> {
        let mark = b.begin();
        b.json().extend_from_slice(json.as_bytes());
        b.commit(
            mark,
            Bytes::from(json.to_owned()),
            EventFinalizer::none(),
            Default::default(),
        )
    }

    fn events(batch: &Batch) -> Vec<String> {
        (0..batch.len())
            .map(|i| String::from_utf8(batch.event_json(i).to_vec()).unwrap())
            .collect()
    }

    fn body(batch: &Batch) -> String {
        String::from_utf8(batch.body().to_vec()).unwrap()
    }

    #[test]
    fn a_batch_is_cut_at_max_events_and_is_its_own_request_body() {
        let mut b = builder(2, 1 << 20);
        assert!(add(&mut b, "{\"a\":1}").is_none());
        let full = add(&mut b, "{\"a\":2}").unwrap();
        assert_eq!(events(&full), ["{\"a\":1}", "{\"a\":2}"]);
        assert_eq!(
            body(&full),
            r#"{"data":[{"a":1},{"a":2}],"test_event_code":"T"}"#
        );
        assert!(b.take().is_none());
        // The next batch starts clean.
        add(&mut b, "{\"a\":3}");
        assert_eq!(
            body(&b.take().unwrap()),
            r#"{"data":[{"a":3}],"test_event_code":"T"}"#
        );
    }

    #[test]
    fn an_abandoned_event_leaves_no_trace() {
        let mut b = builder(10, 1 << 20);
        add(&mut b, "{\"a\":1}");
        let mark = b.begin();
        b.abandon(mark);
        let mark = b.begin();
        b.abandon(mark);
        add(&mut b, "{\"a\":2}");
        let batch = b.take().unwrap();
        assert_eq!(
            body(&batch),
            r#"{"data":[{"a":1},{"a":2}],"test_event_code":"T"}"#
        );
        let mut b = builder(10, 1 << 20);
        let mark = b.begin();
        b.abandon(mark);
        assert!(b.take().is_none());
    }

    #[test]
    fn an_event_that_would_pass_max_bytes_starts_the_next_batch() {
        // prefix 9 + closing 24 = 33 bytes of overhead.
        let mut b = builder(100, 60);
        assert!(add(&mut b, "{\"a\":\"12345\"}").is_none()); // 33 + 13 = 46
        let full = add(&mut b, "{\"b\":\"123456\"}").unwrap(); // 46 + 1 + 14 = 61 > 60
        assert_eq!(events(&full), ["{\"a\":\"12345\"}"]);
        assert_eq!(
            body(&full),
            r#"{"data":[{"a":"12345"}],"test_event_code":"T"}"#
        );
        let rest = b.take().unwrap();
        assert_eq!(events(&rest), ["{\"b\":\"123456\"}"]);
        assert_eq!(
            body(&rest),
            r#"{"data":[{"b":"123456"}],"test_event_code":"T"}"#
        );
    }

    #[test]
    fn an_event_larger_than_max_bytes_goes_alone() {
        let mut b = builder(100, 5);
        let alone = add(&mut b, "{\"big\":true}").unwrap();
        assert_eq!(events(&alone), ["{\"big\":true}"]);
    }

    #[tokio::test]
    async fn the_deadline_starts_with_the_first_event() {
        let mut b = builder(10, 1000);
        assert!(b.deadline().is_none());
        let before = Instant::now();
        add(&mut b, "{}");
        let deadline = b.deadline().unwrap();
        assert!(deadline >= before + Duration::from_secs(1));
        b.take();
        assert!(b.deadline().is_none());
    }
}

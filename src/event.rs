//! The one event type that flows from sources through transforms to sinks.
//!
//! An event starts as the raw bytes of one JSON object, exactly as the source
//! received it (minus line breaks), and stays that way unless a VRL transform
//! needs to read or change it: only then is it parsed into a [`vrl::value::Value`].
//! A pipeline without transforms therefore parses each event once, in the sink.

use std::borrow::Cow;

use bytes::Bytes;
use vrl::value::Value;

use crate::acks::{BatchNotifier, BatchStatusReceiver, EventFinalizer, EventStatus};

/// One Segment message (or any JSON object) on its way through the pipeline.
pub struct Event {
    data: EventData,
    finalizer: EventFinalizer,
}

enum EventData {
    /// One JSON object on one line, validated by the source.
    Json(Bytes),
    /// The object after a VRL transform touched it.
    Value(Value),
}

// Hand-written: an event holds personal data, which must not reach a log
// line or a panic message through `{:?}`.
impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let form = match &self.data {
            EventData::Json(bytes) => format!("json, {} bytes", bytes.len()),
            EventData::Value(_) => "value".to_owned(),
        };
        f.debug_struct("Event")
            .field("data", &format_args!("<{form}>"))
            .field("acknowledged", &self.finalizer.is_tracked())
            .finish()
    }
}

/// A batch of events: what channels between components carry, so that the
/// cost of a channel hop is paid per batch, not per event.
pub type EventArray = Vec<Event>;

/// Why an event's JSON could not become a VRL value.
#[derive(Debug, thiserror::Error)]
#[error("the event is not valid JSON: {0}")]
pub struct ToValueError(String);

impl Event {
    /// An event from the bytes of one JSON object. The caller has validated
    /// them (see [`crate::sources::decode`]); they hold no line break.
    pub fn from_json(json: Bytes) -> Self {
        Self {
            data: EventData::Json(json),
            finalizer: EventFinalizer::none(),
        }
    }

    /// Attach the finalizer of the batch this event belongs to.
    pub fn with_finalizer(mut self, finalizer: EventFinalizer) -> Self {
        self.finalizer = finalizer;
        self
    }

    /// A copy for a second output; both copies must report before the batch completes.
    pub fn clone_for_fanout(&self) -> Self {
        Self {
            data: match &self.data {
                EventData::Json(bytes) => EventData::Json(bytes.clone()),
                EventData::Value(value) => EventData::Value(value.clone()),
            },
            finalizer: self.finalizer.clone(),
        }
    }

    /// Report what became of this event (to the source, if it waits).
    pub fn finalize(mut self, status: EventStatus) {
        self.finalizer.update(status);
    }

    /// The event as a VRL value, parsing its JSON on first use.
    pub fn value_mut(&mut self) -> Result<&mut Value, ToValueError> {
        if let EventData::Json(bytes) = &self.data {
            let value: Value =
                serde_json::from_slice(bytes).map_err(|e| ToValueError(e.to_string()))?;
            self.data = EventData::Value(value);
        }
        match &mut self.data {
            EventData::Value(value) => Ok(value),
            EventData::Json(_) => unreachable!("converted above"),
        }
    }

    /// Run `read` on the event as a VRL value without converting the event:
    /// raw JSON is parsed into a temporary and stays raw. `read` must not
    /// change the value (a read-only VRL program, say).
    pub fn read_value<R>(&mut self, read: impl FnOnce(&mut Value) -> R) -> Result<R, ToValueError> {
        match &mut self.data {
            EventData::Value(value) => Ok(read(value)),
            EventData::Json(bytes) => {
                let mut value: Value =
                    serde_json::from_slice(bytes).map_err(|e| ToValueError(e.to_string()))?;
                Ok(read(&mut value))
            }
        }
    }

    /// Replace the event's content, keeping its finalizer.
    pub fn set_value(&mut self, value: Value) {
        self.data = EventData::Value(value);
    }

    /// The event as one line of JSON (no trailing newline).
    pub fn to_json(&self) -> Cow<'_, [u8]> {
        match &self.data {
            EventData::Json(bytes) => Cow::Borrowed(bytes),
            EventData::Value(value) => Cow::Owned(value_to_json(value)),
        }
    }

    /// The JSON bytes and the finalizer, for a sink that parses the event
    /// itself. The bytes are copied only when another output shares them.
    pub fn into_json_parts(self) -> (Vec<u8>, EventFinalizer) {
        let Event { data, finalizer } = self;
        let json = match data {
            EventData::Json(bytes) => match bytes.try_into_mut() {
                Ok(unique) => unique.into(),
                Err(shared) => shared.to_vec(),
            },
            EventData::Value(value) => value_to_json(&value),
        };
        (json, finalizer)
    }

    /// The JSON bytes (shared, not copied) and the finalizer.
    pub fn into_bytes_parts(self) -> (Bytes, EventFinalizer) {
        let Event { data, finalizer } = self;
        let json = match data {
            EventData::Json(bytes) => bytes,
            EventData::Value(value) => Bytes::from(value_to_json(&value)),
        };
        (json, finalizer)
    }

    /// The size of the event's JSON when it is still raw; an estimate otherwise.
    pub fn size_hint(&self) -> usize {
        match &self.data {
            EventData::Json(bytes) => bytes.len(),
            EventData::Value(_) => 0,
        }
    }
}

/// Make `events` one acknowledged batch: returns what resolves once every
/// one of them (and every copy of them) has reported.
pub fn track(events: &mut [Event]) -> BatchStatusReceiver {
    let (finalizer, status) = BatchNotifier::new();
    // A finalizer dropped without a report fails its batch, so the original
    // goes to the last event instead of being dropped here.
    if let Some((last, rest)) = events.split_last_mut() {
        for event in rest {
            event.finalizer = finalizer.clone();
        }
        last.finalizer = finalizer;
    }
    status
}

fn value_to_json(value: &Value) -> Vec<u8> {
    // Serializing a VRL value cannot fail: every variant has a JSON form
    // (timestamps and regexes become strings, non-finite floats cannot exist).
    serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acks::{BatchNotifier, BatchStatus};

    #[test]
    fn raw_json_is_parsed_only_when_a_value_is_asked_for() {
        let mut event = Event::from_json(Bytes::from_static(br#"{"type":"track","n":1}"#));
        assert_eq!(event.to_json().as_ref(), br#"{"type":"track","n":1}"#);
        let value = event.value_mut().unwrap();
        value
            .as_object_mut()
            .unwrap()
            .insert("n".into(), Value::from(2));
        assert_eq!(event.to_json().as_ref(), br#"{"n":2,"type":"track"}"#);
    }

    #[test]
    fn unique_bytes_are_handed_to_the_sink_and_shared_ones_copied() {
        let event = Event::from_json(Bytes::from(br#"{"a":1}"#.to_vec()));
        let copy = event.clone_for_fanout();
        let (json, _) = event.into_json_parts();
        assert_eq!(json, br#"{"a":1}"#);
        let (json, _) = copy.into_json_parts();
        assert_eq!(json, br#"{"a":1}"#);
    }

    #[tokio::test]
    async fn a_tracked_batch_resolves_when_its_last_event_reports() {
        let mut events: Vec<Event> = (0..3)
            .map(|_| Event::from_json(Bytes::from_static(b"{}")))
            .collect();
        let status = track(&mut events);
        for e in events {
            e.finalize(EventStatus::Delivered);
        }
        assert_eq!(status.wait().await, BatchStatus::Delivered);
    }

    #[tokio::test]
    async fn fanout_copies_share_one_finalizer() {
        let (finalizer, rx) = BatchNotifier::new();
        let event = Event::from_json(Bytes::from_static(b"{}")).with_finalizer(finalizer);
        let copy = event.clone_for_fanout();
        event.finalize(EventStatus::Delivered);
        drop(copy);
        assert_eq!(rx.wait().await, BatchStatus::Errored);
    }
}

//! Where events leave the pipeline: one module per sink type.

pub mod blackhole;
pub mod console;
pub mod facebook_pixel;
pub mod file;

use serde::Deserialize;

use crate::acks::EventStatus;
use crate::event::EventArray;

/// `encoding` of the `console` and `file` sinks. Only JSON exists; the key is
/// accepted so configs written for Vector (which requires it) load unchanged.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodingConfig {
    /// Must be `json`.
    pub codec: Codec,
}

/// The one supported codec.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Codec {
    /// One JSON object per line.
    #[default]
    Json,
}

/// Append each event as one JSON line to `buf`; returns the events' total size.
pub(crate) fn write_ndjson(events: &EventArray, buf: &mut Vec<u8>) -> usize {
    let start = buf.len();
    for event in events {
        buf.extend_from_slice(&event.to_json());
        buf.push(b'\n');
    }
    buf.len() - start - events.len()
}

/// Report every event of a batch with one status.
pub(crate) fn finalize_all(events: EventArray, status: EventStatus) {
    for event in events {
        event.finalize(status);
    }
}

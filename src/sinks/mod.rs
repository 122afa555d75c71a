//! Where events leave the pipeline: one module per sink type.

pub(crate) mod blackhole;
pub(crate) mod console;
pub mod facebook_pixel;
pub(crate) mod file;
pub(crate) mod nats;

use serde::Deserialize;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::acks::EventStatus;
use crate::event::EventArray;
use crate::telemetry::{ComponentMetrics, Stage};

/// `encoding` of the `console` and `file` sinks. Only JSON exists; the key is
/// accepted so configs written for Vector (which requires it) load unchanged.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EncodingConfig {
    /// Must be `json`. Only parsed, never read: JSON is the one codec.
    #[expect(
        dead_code,
        reason = "accepted for Vector compatibility; JSON is the only codec"
    )]
    pub(crate) codec: Codec,
}

/// The one supported codec.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Codec {
    /// One JSON object per line.
    #[default]
    Json,
}

/// Write a batch as JSON lines to `out` with one write, and flush: the events
/// are then delivered, or, when the write fails, failed (so their senders retry).
pub(crate) async fn write_lines<W: AsyncWrite + Unpin>(
    out: &mut W,
    events: EventArray,
    buf: &mut Vec<u8>,
    metrics: &ComponentMetrics,
) -> std::io::Result<()> {
    buf.clear();
    let bytes = write_ndjson(&events, buf);
    let written = async {
        out.write_all(buf).await?;
        out.flush().await
    };
    let result = written.await;
    match result {
        Ok(()) => {
            metrics.sent(events.len(), bytes);
            finalize_all(events, EventStatus::Delivered);
        }
        Err(_) => {
            metrics.error("write_failed", Stage::Sending);
            finalize_all(events, EventStatus::Errored);
        }
    }
    result
}

/// Append each event as one JSON line to `buf`; returns the events' total size.
fn write_ndjson(events: &EventArray, buf: &mut Vec<u8>) -> usize {
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

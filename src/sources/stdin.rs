//! The `stdin` source: NDJSON on standard input, one Segment message per line.
//!
//! A bad line is logged with its line number and skipped; the rest of the
//! input goes on. The source finishes at end of input, which lets a pipeline
//! run as a batch job (`fbpixel --config x.toml < events.ndjson`).

use async_trait::async_trait;
use bytes::BytesMut;
use serde::Deserialize;
use tokio::io::AsyncReadExt;

use super::decode;
use crate::component::{
    BuildContext, BuildError, ComponentError, Source, SourceConfig, SourceContext, ValidSource,
    ValidateContext,
};
use crate::telemetry::Stage;

/// Events per batch handed downstream.
const BATCH: usize = 512;

/// Settings of the `stdin` source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {
    /// Longest accepted line in bytes; longer lines are skipped (as Vector's `max_length`).
    #[serde(default = "default_max_length")]
    pub max_length: usize,
}

/// Every setting, at its default, for `fbpixel generate`: a comment line before each; one
/// unset by default is commented out. `tests/generate.rs` fails when a setting is missing.
pub const EXAMPLE: &str = r#"
# Longest accepted line, in bytes; a longer one is logged with its line number and skipped.
max_length = 102400
"#;

fn default_max_length() -> usize {
    100 * 1024
}

impl SourceConfig for StdinConfig {
    fn validate(&self, _cx: &ValidateContext) -> Result<Box<dyn ValidSource>, BuildError> {
        if self.max_length == 0 {
            return Err(BuildError("`max_length` must be at least 1".into()));
        }
        Ok(Box::new(self.clone()))
    }
}

#[async_trait]
impl ValidSource for StdinConfig {
    async fn build(self: Box<Self>, _cx: BuildContext) -> Result<Box<dyn Source>, BuildError> {
        Ok(Box::new(StdinSource {
            max_length: self.max_length,
        }))
    }
}

struct StdinSource {
    max_length: usize,
}

#[async_trait]
impl Source for StdinSource {
    async fn run(self: Box<Self>, cx: SourceContext) -> Result<(), ComponentError> {
        read_lines(tokio::io::stdin(), self.max_length, cx).await
    }
}

/// Read NDJSON from `input` until its end or shutdown.
pub(crate) async fn read_lines(
    mut input: impl tokio::io::AsyncRead + Unpin,
    max_length: usize,
    mut cx: SourceContext,
) -> Result<(), ComponentError> {
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let mut line_no: u64 = 0;
    // Skipping the rest of an over-long line (already reported).
    let mut skipping = false;
    let mut eof = false;
    let id = cx.metrics.info().id.clone();
    while !eof {
        if buf.capacity() - buf.len() < 64 * 1024 {
            buf.reserve(256 * 1024);
        }
        let read = tokio::select! {
            read = input.read_buf(&mut buf) => read,
            () = cx.shutdown.wait() => break,
        };
        let n = read.map_err(|e| ComponentError(format!("cannot read standard input: {e}")))?;
        cx.metrics.received_wire_bytes(n);
        eof = n == 0;
        if eof && !buf.is_empty() && !buf.ends_with(b"\n") {
            buf.extend_from_slice(b"\n"); // the last line has no newline
        }

        let mut events = Vec::with_capacity(BATCH);
        while let Some(pos) = memchr(b'\n', &buf) {
            let mut line = buf.split_to(pos + 1).freeze();
            line.truncate(pos);
            line_no += 1;
            if std::mem::take(&mut skipping) {
                continue;
            }
            if line.len() > max_length {
                report(
                    &cx,
                    &id,
                    line_no,
                    &format!("longer than max_length ({max_length} bytes)"),
                );
                continue;
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match decode::object(line) {
                Ok(event) => events.push(event),
                Err(e) => report(&cx, &id, line_no, &e.to_string()),
            }
            if events.len() == BATCH {
                send(
                    &mut cx,
                    std::mem::replace(&mut events, Vec::with_capacity(BATCH)),
                )
                .await?;
            }
        }
        if buf.len() > max_length && !skipping {
            // A line already longer than allowed and not finished: drop what
            // we have and the rest of it when its newline comes.
            report(
                &cx,
                &id,
                line_no + 1,
                &format!("longer than max_length ({max_length} bytes)"),
            );
            skipping = true;
            buf.clear();
        } else if skipping {
            buf.clear();
        }
        send(&mut cx, events).await?;
    }
    Ok(())
}

fn report(cx: &SourceContext, id: &str, line: u64, problem: &str) {
    cx.metrics.error("decode_failed", Stage::Processing);
    cx.metrics.discarded(1, false);
    tracing::warn!(component = %id, "line {line}: {problem}; line skipped");
}

async fn send(
    cx: &mut SourceContext,
    events: Vec<crate::event::Event>,
) -> Result<(), ComponentError> {
    if events.is_empty() {
        return Ok(());
    }
    let (n, bytes) = (events.len(), events.iter().map(|e| e.size_hint()).sum());
    cx.metrics.received(n, bytes);
    cx.out
        .send(events)
        .await
        .map_err(|_| ComponentError("every downstream component has stopped".into()))?;
    cx.metrics.sent(n, bytes);
    Ok(())
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    memchr::memchr(needle, haystack)
}

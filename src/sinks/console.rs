//! The `console` sink: each event as one JSON line on stdout (or stderr).

use async_trait::async_trait;
use serde::Deserialize;

use super::{EncodingConfig, write_lines};
use crate::component::{
    BuildContext, BuildError, ComponentError, EventStream, Healthcheck, Sink, SinkConfig,
    ValidSink, ValidateContext, healthy,
};

/// Settings of the `console` sink.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// `stdout` (default) or `stderr`.
    #[serde(default)]
    pub target: Target,
    /// Accepted for Vector compatibility; always JSON.
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "accepted for Vector compatibility; JSON is the only codec"
    )]
    pub encoding: EncodingConfig,
}

/// Every setting, at its default, for `fbpixel generate`: a comment line before each; one
/// unset by default is commented out. `tests/generate.rs` fails when a setting is missing.
pub const EXAMPLE: &str = r#"
# `stdout` or `stderr`.
target = "stdout"
# Accepted for Vector compatibility; `json`, the only codec: one JSON line per event.
encoding.codec = "json"
"#;

/// The stream written to.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Standard output.
    #[default]
    Stdout,
    /// Standard error.
    Stderr,
}

impl SinkConfig for ConsoleConfig {
    fn validate(&self, _cx: &ValidateContext) -> Result<Box<dyn ValidSink>, BuildError> {
        Ok(Box::new(self.clone()))
    }
}

#[async_trait]
impl ValidSink for ConsoleConfig {
    async fn build(
        self: Box<Self>,
        _cx: BuildContext,
    ) -> Result<(Box<dyn Sink>, Healthcheck), BuildError> {
        Ok((
            Box::new(ConsoleSink {
                target: self.target,
            }),
            healthy(),
        ))
    }
}

struct ConsoleSink {
    target: Target,
}

#[async_trait]
impl Sink for ConsoleSink {
    async fn run(self: Box<Self>, mut input: EventStream) -> Result<(), ComponentError> {
        let mut out: Box<dyn tokio::io::AsyncWrite + Send + Unpin> = match self.target {
            Target::Stdout => Box::new(tokio::io::stdout()),
            Target::Stderr => Box::new(tokio::io::stderr()),
        };
        let mut buf = Vec::new();
        while let Some(events) = input.next().await {
            if let Err(e) = write_lines(&mut out, events, &mut buf, input.metrics()).await {
                // A closed stdout (`| head`) will not reopen: stop here.
                return Err(ComponentError(format!(
                    "cannot write to {:?}: {e}",
                    self.target
                )));
            }
        }
        Ok(())
    }
}

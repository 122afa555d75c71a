//! The `blackhole` sink: counts events and discards them (benchmarks, tests).

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::time::Instant;

use super::finalize_all;
use crate::acks::EventStatus;
use crate::component::{
    BuildContext, BuildError, ComponentError, EventStream, Healthcheck, Sink, SinkConfig,
    ValidSink, ValidateContext, healthy,
};

/// Settings of the `blackhole` sink.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {
    /// Seconds between log lines with the running totals; 0 logs only the final total.
    #[serde(default = "default_interval")]
    pub print_interval_secs: u64,
    /// Take at most this many events per second (simulates a slow destination).
    pub rate: Option<u64>,
}

/// Every setting, at its default, for `fbpixel generate`: a comment line before each; one
/// unset by default is commented out. `tests/generate.rs` fails when a setting is missing.
pub const EXAMPLE: &str = r#"
# Seconds between log lines with the running totals; 0 logs only the final total.
print_interval_secs = 1
# Take at most this many events per second (simulates a slow destination); unset: no limit.
# rate = 1000
"#;

fn default_interval() -> u64 {
    1
}

impl SinkConfig for BlackholeConfig {
    fn validate(&self, _cx: &ValidateContext) -> Result<Box<dyn ValidSink>, BuildError> {
        if self.rate == Some(0) {
            return Err(BuildError(
                "`rate` must be at least 1 event per second".into(),
            ));
        }
        Ok(Box::new(self.clone()))
    }
}

#[async_trait]
impl ValidSink for BlackholeConfig {
    async fn build(
        self: Box<Self>,
        _cx: BuildContext,
    ) -> Result<(Box<dyn Sink>, Healthcheck), BuildError> {
        Ok((Box::new(Blackhole { config: *self }), healthy()))
    }
}

struct Blackhole {
    config: BlackholeConfig,
}

#[async_trait]
impl Sink for Blackhole {
    async fn run(self: Box<Self>, mut input: EventStream) -> Result<(), ComponentError> {
        let id = input.metrics().info().id.clone();
        let (mut events_total, mut bytes_total) = (0u64, 0u64);
        let interval = Duration::from_secs(self.config.print_interval_secs);
        let mut next_print = Instant::now() + interval;
        // When the next event may pass. Idle time earns no credit: after a
        // pause, events are again spaced 1/rate apart rather than let through
        // in a burst.
        let mut next_due = Instant::now();
        while let Some(events) = input.next().await {
            let Some(rate) = self.config.rate else {
                let bytes: usize = events.iter().map(|e| e.size_hint()).sum();
                events_total += events.len() as u64;
                bytes_total += bytes as u64;
                input.metrics().sent(events.len(), bytes);
                finalize_all(events, EventStatus::Delivered);
                continue;
            };
            let period = Duration::from_secs_f64(1.0 / rate as f64);
            for event in events {
                let due = next_due.max(Instant::now());
                tokio::time::sleep_until(due).await;
                next_due = due + period;
                let bytes = event.size_hint();
                events_total += 1;
                bytes_total += bytes as u64;
                input.metrics().sent(1, bytes);
                event.finalize(EventStatus::Delivered);
            }
            if !interval.is_zero() && Instant::now() >= next_print {
                tracing::info!(component = %id, events = events_total, bytes = bytes_total, "collected events");
                next_print = Instant::now() + interval;
            }
        }
        tracing::info!(component = %id, events = events_total, bytes = bytes_total, "collected events (total)");
        Ok(())
    }
}

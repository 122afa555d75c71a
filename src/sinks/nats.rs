//! The `nats` sink: publishes each event's JSON as one message to a subject
//! of a JetStream stream and waits for the stream's PubAck, so an event is
//! delivered only once it is stored (and its source's acknowledgement means
//! just that). Many publishes are in flight at once; a failed one is retried
//! with backoff until it succeeds. A Segment `messageId` becomes the
//! `Nats-Msg-Id` header, so JetStream drops a copy republished within its
//! duplicate window (a sender retrying a whole request, say).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Subject;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, ContextBuilder};
use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::Deserialize;

use crate::acks::EventStatus;
use crate::backoff::Backoff;
use crate::component::{
    BuildContext, BuildError, ComponentError, EventStream, Healthcheck, Sink, SinkConfig,
    ValidSink, ValidateContext,
};
use crate::event::Event;
use crate::nats::{self as shared, Connect, NatsAuth};
use crate::telemetry::{ComponentMetrics, Stage, Throttle};

/// Settings of the `nats` sink.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// Server URL, or a comma-separated list of them.
    pub url: String,
    /// The subject every event is published to (no wildcards).
    pub subject: String,
    /// The stream that stores `subject`: checked at start (or created).
    #[serde(default)]
    pub stream: Option<String>,
    /// Create `stream` (with `subjects = [subject]`) when it does not exist.
    #[serde(default)]
    pub create_stream: bool,
    /// How to authenticate.
    #[serde(default)]
    pub auth: Option<NatsAuth>,
    /// The name the server shows for this connection (default `fbpixel`).
    #[serde(default)]
    pub connection_name: Option<String>,
    /// Publishing limits and retries.
    #[serde(default)]
    pub request: NatsRequestConfig,
}

/// `request`: how many publishes wait for their PubAck at once, and retries.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsRequestConfig {
    /// Most events published and not yet acknowledged by the stream.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Seconds to wait for a PubAck before the publish is retried.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: f64,
    /// First wait before a failed publish is retried.
    #[serde(default = "default_initial_backoff")]
    pub retry_initial_backoff_secs: f64,
    /// Longest wait between two attempts.
    #[serde(default = "default_max_backoff")]
    pub retry_max_duration_secs: f64,
}

/// Every setting, at its default, for `fbpixel generate`: a comment line before each; one
/// unset by default is commented out. `tests/generate.rs` fails when a setting is missing.
pub const EXAMPLE: &str = r#"
# Server URL, or a comma-separated list of them (required).
url = "nats://127.0.0.1:4222"
# The subject every event is published to (required; no wildcards).
subject = "events.segment"
# The stream that stores `subject`, checked at start (or created); unset: not checked.
# stream = "EVENTS"
# Create `stream` (with `subjects = [subject]`) when it does not exist.
create_stream = false
# How to authenticate; unset: no authentication. One of a .creds file, user and password, a token, an NKey seed.
# auth = { credentials_file = "/etc/fbpixel/nats.creds" }
# auth = { user = "fbpixel", password = "${NATS_PASSWORD}" }
# auth = { token = "${NATS_TOKEN}" }
# auth = { nkey_seed = "${NATS_NKEY_SEED}" }
# The name the server shows for this connection; unset: `fbpixel`.
# connection_name = "fbpixel"
# Most events published and not yet acknowledged by the stream.
request.concurrency = 500
# Seconds to wait for a PubAck before the publish is retried.
request.timeout_secs = 10.0
# First wait, in seconds, before a failed publish is retried.
request.retry_initial_backoff_secs = 0.1
# Longest wait, in seconds, between two attempts.
request.retry_max_duration_secs = 10.0
"#;

fn default_concurrency() -> usize {
    500
}
fn default_timeout_secs() -> f64 {
    10.0
}
fn default_initial_backoff() -> f64 {
    0.1
}
fn default_max_backoff() -> f64 {
    10.0
}

impl Default for NatsRequestConfig {
    fn default() -> Self {
        Self {
            concurrency: default_concurrency(),
            timeout_secs: default_timeout_secs(),
            retry_initial_backoff_secs: default_initial_backoff(),
            retry_max_duration_secs: default_max_backoff(),
        }
    }
}

impl NatsSinkConfig {
    /// Every setting checked without connecting.
    pub fn check(&self) -> Result<(), String> {
        shared::server_urls(&self.url)?;
        shared::check_subject("subject", &self.subject, false)?;
        match &self.stream {
            Some(stream) => shared::check_name("stream", stream)?,
            None if self.create_stream => {
                return Err("`create_stream` needs `stream`: the stream to create".into());
            }
            None => {}
        }
        if let Some(auth) = &self.auth {
            auth.check()?;
        }
        if self.connection_name.as_deref() == Some("") {
            return Err("`connection_name` is empty".into());
        }
        if self.request.concurrency == 0 {
            return Err("`request.concurrency` must be at least 1".into());
        }
        for (key, secs) in [
            ("request.timeout_secs", self.request.timeout_secs),
            (
                "request.retry_initial_backoff_secs",
                self.request.retry_initial_backoff_secs,
            ),
            (
                "request.retry_max_duration_secs",
                self.request.retry_max_duration_secs,
            ),
        ] {
            if !(secs.is_finite() && secs > 0.0) {
                return Err(format!("`{key}` must be a positive number of seconds"));
            }
        }
        Ok(())
    }
}

impl SinkConfig for NatsSinkConfig {
    fn validate(&self, _cx: &ValidateContext) -> Result<Box<dyn ValidSink>, BuildError> {
        self.check().map_err(BuildError)?;
        Ok(Box::new(self.clone()))
    }
}

#[async_trait]
impl ValidSink for NatsSinkConfig {
    // Does not connect: the healthcheck is where the server is reached, and the sink connects
    // when it starts.
    async fn build(
        self: Box<Self>,
        cx: BuildContext,
    ) -> Result<(Box<dyn Sink>, Healthcheck), BuildError> {
        let component = cx.metrics.info().id.clone();
        let config = (*self).clone();
        let healthcheck = Box::pin(async move { healthcheck(&config, &component).await });
        Ok((Box::new(NatsSink { config: *self }), healthcheck))
    }
}

/// The server answers, and the stream is there (or will be created).
async fn healthcheck(config: &NatsSinkConfig, component: &str) -> Result<(), String> {
    let client = shared::connect(&connect(config, component)).await?;
    if let Some(stream) = &config.stream {
        let js = jetstream::new(client);
        // Not created here: a healthcheck only looks.
        shared::ensure_stream(&js, stream, Some(&config.subject), false, component)
            .await
            .map(drop)
            .or_else(|e| if config.create_stream { Ok(()) } else { Err(e) })?;
    }
    Ok(())
}

fn connect<'a>(config: &'a NatsSinkConfig, component: &'a str) -> Connect<'a> {
    Connect {
        url: &config.url,
        auth: config.auth.as_ref(),
        name: config.connection_name.as_deref().unwrap_or("fbpixel"),
        component,
    }
}

struct NatsSink {
    config: NatsSinkConfig,
}

/// What every publish shares.
struct Publisher {
    js: jetstream::Context,
    subject: Subject,
    metrics: ComponentMetrics,
    initial_backoff: Duration,
    max_backoff: Duration,
    /// Unix seconds of the last publish failure logged (one per interval).
    failure_log: Throttle,
}

/// How often a persisting publish failure is logged again.
const FAILURE_LOG_INTERVAL_SECS: u64 = 10;

#[async_trait]
impl Sink for NatsSink {
    async fn run(self: Box<Self>, mut input: EventStream) -> Result<(), ComponentError> {
        let config = self.config;
        let metrics = input.metrics().clone();
        let component = metrics.info().id.clone();
        let client = shared::connect(&connect(&config, &component))
            .await
            .map_err(ComponentError)?;
        let limit = config.request.concurrency;
        let js = ContextBuilder::new()
            .timeout(Duration::from_secs_f64(config.request.timeout_secs))
            // Room for every publish this sink awaits, so the context never refuses one.
            .max_ack_inflight(limit + 1)
            .backpressure_on_inflight(true)
            .build(client.clone());
        if let Some(stream) = &config.stream {
            shared::ensure_stream(
                &js,
                stream,
                Some(&config.subject),
                config.create_stream,
                &component,
            )
            .await
            .map_err(ComponentError)?;
        }
        tracing::info!(component = %component, subject = %config.subject, "publishing to NATS JetStream");
        let publisher = Arc::new(Publisher {
            js,
            subject: Subject::from(config.subject.as_str()),
            metrics,
            initial_backoff: Duration::from_secs_f64(config.request.retry_initial_backoff_secs),
            max_backoff: Duration::from_secs_f64(config.request.retry_max_duration_secs),
            failure_log: Throttle::new(FAILURE_LOG_INTERVAL_SECS),
        });

        let mut queue: VecDeque<Event> = VecDeque::new();
        let mut in_flight = FuturesUnordered::new();
        let mut input_done = false;
        loop {
            while in_flight.len() < limit
                && let Some(event) = queue.pop_front()
            {
                in_flight.push(publisher.clone().publish(event));
            }
            if input_done && queue.is_empty() && in_flight.is_empty() {
                break;
            }
            tokio::select! {
                Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                batch = input.next(), if queue.is_empty() && !input_done => match batch {
                    Some(events) => queue.extend(events),
                    None => input_done = true,
                },
            }
        }
        if let Err(e) = client.flush().await {
            tracing::debug!(component = %component, "cannot flush the NATS connection: {e}");
        }
        Ok(())
    }
}

impl Publisher {
    /// Publish one event until the stream has stored it, then finalize it.
    async fn publish(self: Arc<Self>, event: Event) {
        let (json, mut finalizer) = event.into_bytes_parts();
        let message_id = message_id(&json);
        let mut backoff = Backoff::new(self.initial_backoff, self.max_backoff);
        loop {
            let mut message = PublishMessage::build().payload(json.clone());
            if let Some(id) = &message_id {
                message = message.message_id(id);
            }
            let stored = match self.js.send_publish(self.subject.clone(), message).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match stored {
                Ok(_) => {
                    self.metrics.sent(1, json.len());
                    finalizer.update(EventStatus::Delivered);
                    return;
                }
                Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    // The same bytes can never fit: not retried.
                    self.metrics.error("message_too_large", Stage::Sending);
                    tracing::error!(component = %self.metrics.info().id, bytes = json.len(), "an event is larger than the NATS server's max_payload; rejected");
                    finalizer.update(EventStatus::Rejected);
                    return;
                }
                Err(e) => {
                    self.metrics.error("publish_failed", Stage::Sending);
                    self.log_failure(&e);
                    tokio::time::sleep(backoff.next_wait()).await;
                }
            }
        }
    }

    fn log_failure(&self, e: &jetstream::context::PublishError) {
        if self.failure_log.ready() {
            let hint = if e.kind() == PublishErrorKind::StreamNotFound {
                " (no stream stores this subject)"
            } else {
                ""
            };
            tracing::warn!(component = %self.metrics.info().id, subject = %self.subject, "publishing to NATS failed: {e}{hint}; retrying with backoff");
        }
    }
}

/// The top-level Segment `messageId`, when the event has one. Events without
/// the key are not parsed at all.
fn message_id(json: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Ids<'a> {
        #[serde(rename = "messageId", borrow)]
        message_id: Option<std::borrow::Cow<'a, str>>,
    }
    memchr::memmem::find(json, b"\"messageId\"")?;
    let ids: Ids<'_> = serde_json::from_slice(json).ok()?;
    ids.message_id
        .filter(|id| !id.is_empty())
        .map(|id| id.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<NatsSinkConfig, String> {
        let text =
            format!("url = \"nats://127.0.0.1:4222\"\nsubject = \"events.segment\"\n{extra}");
        let config: NatsSinkConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
        config.check().map(|()| config)
    }

    #[test]
    fn defaults_and_a_minimal_config() {
        let c = parse("").unwrap();
        assert_eq!(c.request.concurrency, 500);
        assert_eq!(c.request.timeout_secs, 10.0);
        assert!(!c.create_stream && c.stream.is_none());
    }

    #[test]
    fn each_bad_setting_is_named() {
        for (extra, key) in [
            ("request.concurrency = 0", "`request.concurrency`"),
            ("request.timeout_secs = 0.0", "`request.timeout_secs`"),
            ("create_stream = true", "`create_stream` needs `stream`"),
            ("stream = \"a.b\"", "`stream`"),
            ("auth.token = \"\"", "`auth.token`"),
            ("connection_name = \"\"", "`connection_name`"),
        ] {
            let e = parse(extra).unwrap_err();
            assert!(e.contains(key), "{extra}: {e}");
        }
        let e = toml::from_str::<NatsSinkConfig>("url = \"x\"\nsubject = \"a.>\"")
            .unwrap()
            .check()
            .unwrap_err();
        assert!(e.contains("`subject`") && e.contains("wildcard"), "{e}");
        let e = toml::from_str::<NatsSinkConfig>("url = \"\"\nsubject = \"a\"")
            .unwrap()
            .check()
            .unwrap_err();
        assert!(e.contains("`url`"), "{e}");
    }

    #[test]
    fn message_id_is_the_top_level_field_only() {
        assert_eq!(
            message_id(br#"{"type":"track","messageId":"m-1"}"#).as_deref(),
            Some("m-1")
        );
        assert_eq!(
            message_id(br#"{"properties":{"messageId":"nested"}}"#),
            None
        );
        assert_eq!(message_id(br#"{"messageId":""}"#), None);
        assert_eq!(message_id(br#"{"messageId":7}"#), None);
        assert_eq!(message_id(br#"{"type":"track"}"#), None);
    }
}

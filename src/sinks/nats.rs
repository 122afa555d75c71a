//! The `nats` sink: publishes each event's JSON as one message to a subject
//! of a JetStream stream (or, with `batch.max_events` above 1, up to that many
//! events as one NDJSON message) and waits for the stream's PubAck, so an
//! event is delivered only once it is stored (and its source's acknowledgement
//! means just that). Many publishes are in flight at once; a failed one is
//! retried with backoff until it succeeds. A Segment `messageId` becomes the
//! `Nats-Msg-Id` header of a one-event message, the SHA-256 of the payload
//! that of a batch, so JetStream drops a copy republished within its duplicate
//! window (a sender retrying a whole request, say).
//!
//! Batches exist because each JetStream message costs nats-server a store, a
//! PubAck, a delivery and an ack: with one event a message, nats-server used
//! half of a 2-core machine at 10k–65k events/s (README, "Durability and
//! scale-out under load").

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Subject;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, ContextBuilder};
use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use smallvec::{SmallVec, smallvec};

use crate::acks::{EventFinalizer, EventStatus};
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
    /// How many events share one message.
    #[serde(default)]
    pub batch: NatsBatchConfig,
}

/// `batch`: events published together as one NDJSON message (one event a line). Only events
/// already waiting are grouped: nothing waits for a batch to fill.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsBatchConfig {
    /// Most events in one message; 1 (the default) publishes each event as its own message,
    /// which a `nats` source of any version reads. Above 1 needs `nats` sources that read
    /// NDJSON messages (this version on): upgrade the back tier first.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// Most bytes in one message; also held below the server's `max_payload`.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
}

fn default_max_events() -> usize {
    1
}
fn default_max_bytes() -> usize {
    256 * 1024
}

impl Default for NatsBatchConfig {
    fn default() -> Self {
        Self {
            max_events: default_max_events(),
            max_bytes: default_max_bytes(),
        }
    }
}

/// `request`: how many messages wait for their PubAck at once, and retries.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsRequestConfig {
    /// Most messages published and not yet acknowledged by the stream.
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
# Most messages published and not yet acknowledged by the stream.
request.concurrency = 500
# Seconds to wait for a PubAck before the publish is retried.
request.timeout_secs = 10.0
# First wait, in seconds, before a failed publish is retried.
request.retry_initial_backoff_secs = 0.1
# Longest wait, in seconds, between two attempts.
request.retry_max_duration_secs = 10.0
# Most events in one message (NDJSON, one event a line); 1: a message per event, which nats sources of any version read. Above 1 needs this version's nats source: upgrade the back tier first.
batch.max_events = 1
# Most bytes in one message; also held below the server's max_payload.
batch.max_bytes = 262144
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
        if self.batch.max_events == 0 {
            return Err("`batch.max_events` must be at least 1 (1: a message per event)".into());
        }
        if self.batch.max_bytes == 0 {
            return Err("`batch.max_bytes` must be at least 1".into());
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

/// Bytes of a message's `max_payload` left for its headers.
const HEADER_ROOM: usize = 1024;

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
        // Room for the headers (a Nats-Msg-Id of 64 hex digits) below the server's limit.
        let max_payload = client.server_info().max_payload;
        let max_bytes = config
            .batch
            .max_bytes
            .min(max_payload.saturating_sub(HEADER_ROOM))
            .max(1);
        let max_events = config.batch.max_events;
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
            while in_flight.len() < limit && !queue.is_empty() {
                let message = Outgoing::take(&mut queue, max_events, max_bytes);
                in_flight.push(publisher.clone().publish(message));
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

/// One message to publish: one event's JSON, or several as NDJSON (a line each), with the
/// finalizers of its events.
struct Outgoing {
    payload: Bytes,
    /// The Nats-Msg-Id header.
    message_id: Option<String>,
    finalizers: SmallVec<[EventFinalizer; 1]>,
    /// The events' JSON bytes, without the line breaks between them.
    bytes: usize,
}

impl Outgoing {
    fn single(json: Bytes, finalizer: EventFinalizer) -> Self {
        Self {
            message_id: message_id(&json),
            bytes: json.len(),
            payload: json,
            finalizers: smallvec![finalizer],
        }
    }

    /// The next message from the front of `queue` (not empty): up to `max_events` events and
    /// `max_bytes` bytes, or the first event alone, whatever its size. An event whose JSON has a
    /// line break (which no source here makes) goes alone, so a batch's lines are its events.
    fn take(queue: &mut VecDeque<Event>, max_events: usize, max_bytes: usize) -> Self {
        let (json, finalizer) = queue
            .pop_front()
            .expect("take is called with a queued event")
            .into_bytes_parts();
        if max_events == 1 || json.len() >= max_bytes || has_line_break(&json) {
            return Self::single(json, finalizer);
        }
        // Take events while they fit; the one that does not goes back to the front.
        let mut size = json.len();
        let mut parts: SmallVec<[(Bytes, EventFinalizer); 8]> = smallvec![(json, finalizer)];
        while parts.len() < max_events
            && let Some(event) = queue.pop_front()
        {
            let (json, finalizer) = event.into_bytes_parts();
            if size + 1 + json.len() > max_bytes || has_line_break(&json) {
                queue.push_front(Event::from_json(json).with_finalizer(finalizer));
                break;
            }
            size += 1 + json.len();
            parts.push((json, finalizer));
        }
        if parts.len() == 1 {
            let (json, finalizer) = parts.pop().expect("one part");
            return Self::single(json, finalizer);
        }
        let mut payload = BytesMut::with_capacity(size);
        let mut finalizers = SmallVec::with_capacity(parts.len());
        for (json, finalizer) in parts {
            if !payload.is_empty() {
                payload.put_u8(b'\n');
            }
            payload.extend_from_slice(&json);
            finalizers.push(finalizer);
        }
        let payload = payload.freeze();
        Self {
            message_id: Some(hex::encode(Sha256::digest(&payload))),
            bytes: size + 1 - finalizers.len(),
            payload,
            finalizers,
        }
    }

    /// Each event of a batch as its own message.
    fn split(self) -> Vec<Outgoing> {
        let lines = self.payload.split(|b| *b == b'\n');
        lines
            .zip(self.finalizers)
            .map(|(line, finalizer)| Self::single(self.payload.slice_ref(line), finalizer))
            .collect()
    }
}

fn has_line_break(json: &[u8]) -> bool {
    memchr::memchr2(b'\n', b'\r', json).is_some()
}

impl Publisher {
    /// Publish one message until the stream has stored it, then finalize its events.
    async fn publish(self: Arc<Self>, message: Outgoing) {
        let mut backoff = Backoff::new(self.initial_backoff, self.max_backoff);
        loop {
            let mut publish = PublishMessage::build().payload(message.payload.clone());
            if let Some(id) = &message.message_id {
                publish = publish.message_id(id);
            }
            let stored = match self.js.send_publish(self.subject.clone(), publish).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match stored {
                Ok(_) => {
                    self.metrics.sent(message.finalizers.len(), message.bytes);
                    for mut finalizer in message.finalizers {
                        finalizer.update(EventStatus::Delivered);
                    }
                    return;
                }
                Err(e)
                    if e.kind() == PublishErrorKind::MaxPayloadExceeded
                        && message.finalizers.len() > 1 =>
                {
                    // A server with a smaller max_payload than the one met at start: each
                    // event on its own, so only an event too large by itself is refused.
                    for single in message.split() {
                        Box::pin(self.clone().publish(single)).await;
                    }
                    return;
                }
                Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    // The same bytes can never fit: not retried.
                    self.metrics.error("message_too_large", Stage::Sending);
                    tracing::error!(component = %self.metrics.info().id, bytes = message.bytes, "an event is larger than the NATS server's max_payload; rejected");
                    for mut finalizer in message.finalizers {
                        finalizer.update(EventStatus::Rejected);
                    }
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
            ("batch.max_events = 0", "`batch.max_events`"),
            ("batch.max_bytes = 0", "`batch.max_bytes`"),
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

    fn queue(jsons: &[&str]) -> VecDeque<Event> {
        jsons
            .iter()
            .map(|j| Event::from_json(Bytes::copy_from_slice(j.as_bytes())))
            .collect()
    }

    #[test]
    fn a_batch_takes_what_fits_as_ndjson_named_by_its_digest() {
        let events = [
            r#"{"messageId":"a"}"#,
            r#"{"messageId":"b"}"#,
            r#"{"messageId":"c"}"#,
            r#"{"n":1}"#,
            "{\"n\":\n2}",
            r#"{"n":3}"#,
        ];
        let mut q = queue(&events);
        let m = Outgoing::take(&mut q, 2, 1000);
        assert_eq!(
            &m.payload[..],
            b"{\"messageId\":\"a\"}\n{\"messageId\":\"b\"}"
        );
        assert_eq!((m.finalizers.len(), m.bytes), (2, 34));
        assert_eq!(m.message_id, Some(hex::encode(Sha256::digest(&m.payload))));
        // The byte limit ends a batch; an event that breaks a line goes alone.
        let m = Outgoing::take(&mut q, 10, 24);
        assert_eq!(
            &m.payload[..],
            b"{\"messageId\":\"c\"}",
            "one that fits alone keeps its id"
        );
        assert_eq!(m.message_id.as_deref(), Some("c"));
        let m = Outgoing::take(&mut q, 10, 1000);
        assert_eq!((&m.payload[..], m.message_id), (&b"{\"n\":1}"[..], None));
        let m = Outgoing::take(&mut q, 10, 1000);
        assert_eq!(&m.payload[..], b"{\"n\":\n2}");
        let m = Outgoing::take(&mut q, 10, 1000);
        assert_eq!(&m.payload[..], b"{\"n\":3}");
        assert!(q.is_empty());
        // The same events make the same message, so a resent request is dropped as a duplicate.
        let again = Outgoing::take(&mut queue(&events[..2]), 2, 1000);
        let first = Outgoing::take(&mut queue(&events[..2]), 2, 1000);
        assert_eq!(again.message_id, first.message_id);
    }

    #[test]
    fn one_event_a_message_by_default_and_a_split_batch_gives_each_its_own() {
        let events = [r#"{"messageId":"a"}"#, r#"{"n":1}"#, r#"{"messageId":"c"}"#];
        let m = Outgoing::take(&mut queue(&events), 1, 1000);
        assert_eq!(
            (&m.payload[..], m.message_id.as_deref()),
            (&br#"{"messageId":"a"}"#[..], Some("a"))
        );
        let parts = Outgoing::take(&mut queue(&events), 3, 1000).split();
        let parts: Vec<_> = parts
            .iter()
            .map(|m| {
                (
                    std::str::from_utf8(&m.payload).unwrap(),
                    m.message_id.as_deref(),
                    m.finalizers.len(),
                )
            })
            .collect();
        assert_eq!(
            parts,
            [
                (events[0], Some("a"), 1),
                (events[1], None, 1),
                (events[2], Some("c"), 1)
            ]
        );
    }
}

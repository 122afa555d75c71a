//! The `nats` source: a JetStream durable pull consumer. Instances sharing a
//! `durable` name share its messages, so back-tier instances scale out.
//!
//! A message is one event, or several (NDJSON or a JSON array, as a `nats`
//! sink with `batch.max_events` writes them), with one acknowledgement: it is
//! acked once every sink has delivered, dead-lettered or dropped all its
//! events, terminated when a sink rejected one for good and none failed (or it
//! is not JSON objects), and nak'd with a delay when a delivery failed, so
//! JetStream redelivers it, maybe to another instance (its events that had
//! been delivered go again; Meta deduplicates them by `event_id`). While an event waits in the pipeline its message is kept alive
//! with progress acks, so a slow sink does not cause redeliveries; when an
//! instance dies, its messages come back after `ack_wait_secs`.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind};
use async_nats::{Client, Subject};
use async_trait::async_trait;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use serde::Deserialize;
use tokio::time::{Instant, MissedTickBehavior};

use super::decode::{self, DecodeError};
use crate::acks::{BatchStatus, BatchStatusReceiver};
use crate::backoff::Backoff;
use crate::component::{
    Acknowledgements, BuildContext, BuildError, ComponentError, Source, SourceConfig,
    SourceContext, ValidSource, ValidateContext,
};
use crate::event::{self, Event, EventArray};
use crate::nats::{self as shared, Connect, NatsAuth};
use crate::telemetry::{ComponentMetrics, Stage};

/// Settings of the `nats` source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSourceConfig {
    /// Server URL, or a comma-separated list of them.
    pub url: String,
    /// The JetStream stream to consume.
    pub stream: String,
    /// Filter subject (wildcards allowed); unset: every subject of the stream.
    #[serde(default)]
    pub subject: Option<String>,
    /// The durable consumer's name; instances with the same name share the work.
    pub durable: String,
    /// Most messages asked for per pull request.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Seconds JetStream waits for an acknowledgement before redelivering.
    #[serde(default = "default_ack_wait_secs")]
    pub ack_wait_secs: u64,
    /// Most messages delivered and not yet acknowledged, over all instances.
    #[serde(default = "default_max_ack_pending")]
    pub max_ack_pending: usize,
    /// Seconds before a message whose delivery failed is redelivered.
    #[serde(default = "default_nak_delay_secs")]
    pub nak_delay_secs: u64,
    /// Create the stream (with `subjects = [subject]`) when it does not exist.
    #[serde(default)]
    pub create_stream: bool,
    /// How to authenticate.
    #[serde(default)]
    pub auth: Option<NatsAuth>,
    /// The name the server shows for this connection (default `fbpixel`).
    #[serde(default)]
    pub connection_name: Option<String>,
}

/// Every setting, at its default, for `fbpixel generate`: a comment line before each; one
/// unset by default is commented out. `tests/generate.rs` fails when a setting is missing.
pub const EXAMPLE: &str = r#"
# Server URL, or a comma-separated list of them (required).
url = "nats://127.0.0.1:4222"
# The JetStream stream to consume (required).
stream = "EVENTS"
# Filter subject (wildcards allowed); unset: every subject of the stream.
# subject = "events.>"
# The durable consumer's name (required); instances with the same name share the work.
durable = "fbpixel"
# Most messages asked for per pull request.
batch = 500
# Seconds JetStream waits for an acknowledgement before redelivering.
ack_wait_secs = 30
# Most messages delivered and not yet acknowledged, over all instances.
max_ack_pending = 10000
# Seconds before a message whose delivery failed is redelivered.
nak_delay_secs = 5
# Create the stream (with `subjects = [subject]`) when it does not exist.
create_stream = false
# How to authenticate; unset: no authentication. One of a .creds file, user and password, a token, an NKey seed.
# auth = { credentials_file = "/etc/fbpixel/nats.creds" }
# auth = { user = "fbpixel", password = "${NATS_PASSWORD}" }
# auth = { token = "${NATS_TOKEN}" }
# auth = { nkey_seed = "${NATS_NKEY_SEED}" }
# The name the server shows for this connection; unset: `fbpixel`.
# connection_name = "fbpixel"
"#;

fn default_batch() -> usize {
    500
}
fn default_ack_wait_secs() -> u64 {
    30
}
fn default_max_ack_pending() -> usize {
    10_000
}
fn default_nak_delay_secs() -> u64 {
    5
}

impl NatsSourceConfig {
    fn consumer_config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(self.durable.clone()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(self.ack_wait_secs),
            max_ack_pending: i64::try_from(self.max_ack_pending).unwrap_or(i64::MAX),
            filter_subject: self.subject.clone().unwrap_or_default(),
            ..Default::default()
        }
    }

    async fn open(&self, js: &jetstream::Context) -> Result<PullConsumer, String> {
        js.create_consumer_on_stream(self.consumer_config(), &self.stream)
            .await
            .map_err(|e| {
                format!(
                    "cannot create or update consumer `{}` on stream `{}`: {e}",
                    self.durable, self.stream
                )
            })
    }
}

impl SourceConfig for NatsSourceConfig {
    fn validate(&self, _cx: &ValidateContext) -> Result<Box<dyn ValidSource>, BuildError> {
        shared::server_urls(&self.url).map_err(BuildError)?;
        shared::check_name("stream", &self.stream).map_err(BuildError)?;
        shared::check_name("durable", &self.durable).map_err(BuildError)?;
        if let Some(subject) = &self.subject {
            shared::check_subject("subject", subject, true).map_err(BuildError)?;
        }
        if self.create_stream && self.subject.is_none() {
            return Err(BuildError(
                "`create_stream` needs `subject`: the stream is created with subjects = [subject]"
                    .into(),
            ));
        }
        for (key, value) in [
            ("batch", self.batch as u64),
            ("ack_wait_secs", self.ack_wait_secs),
            ("max_ack_pending", self.max_ack_pending as u64),
        ] {
            if value == 0 {
                return Err(BuildError(format!("`{key}` must be at least 1")));
            }
        }
        if let Some(auth) = &self.auth {
            auth.check().map_err(BuildError)?;
        }
        if self.connection_name.as_deref() == Some("") {
            return Err(BuildError("`connection_name` is empty".into()));
        }
        Ok(Box::new(self.clone()))
    }

    // Acknowledging messages is the point of this source, so it always waits.
    fn acknowledgements(&self) -> Acknowledgements {
        Acknowledgements::Supported(true)
    }
}

#[async_trait]
impl ValidSource for NatsSourceConfig {
    async fn build(self: Box<Self>, cx: BuildContext) -> Result<Box<dyn Source>, BuildError> {
        let component = cx.metrics.info().id.clone();
        let client = shared::connect(&Connect {
            url: &self.url,
            auth: self.auth.as_ref(),
            name: self.connection_name.as_deref().unwrap_or("fbpixel"),
            component: &component,
        })
        .await
        .map_err(BuildError)?;
        let js = jetstream::new(client.clone());
        shared::ensure_stream(
            &js,
            &self.stream,
            self.subject.as_deref(),
            self.create_stream,
            &component,
        )
        .await
        .map_err(BuildError)?;
        let consumer = self.open(&js).await.map_err(BuildError)?;
        Ok(Box::new(NatsSource {
            config: *self,
            client,
            js,
            consumer,
        }))
    }
}

struct NatsSource {
    config: NatsSourceConfig,
    client: Client,
    js: jetstream::Context,
    consumer: PullConsumer,
}

/// How long a pull request waits on the server, and how often an idle server
/// proves it is alive; a missed heartbeat makes the client pull again.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
const PULL_HEARTBEAT: Duration = Duration::from_secs(5);

async fn messages(consumer: &PullConsumer, batch: usize) -> Result<pull::Stream, String> {
    consumer
        .stream()
        .max_messages_per_batch(batch)
        .expires(PULL_EXPIRES)
        .heartbeat(PULL_HEARTBEAT)
        .messages()
        .await
        .map_err(|e| format!("cannot pull messages: {e}"))
}

/// Messages handed on and waiting for their events' fate: the reply subject
/// each is acknowledged on, by id. The statuses themselves are awaited in one
/// `FuturesUnordered`, not a task per message.
struct Pending {
    client: Client,
    replies: HashMap<u64, Subject>,
    next_id: u64,
    nak_delay: Duration,
    component: String,
}

async fn status_of(id: u64, status: BatchStatusReceiver) -> (u64, BatchStatus) {
    (id, status.wait().await)
}

impl Pending {
    async fn settle(&mut self, id: u64, status: BatchStatus) {
        let Some(reply) = self.replies.remove(&id) else {
            return;
        };
        let kind = match status {
            BatchStatus::Delivered => AckKind::Ack,
            // Redelivering an event a sink refused for good would only repeat the refusal.
            BatchStatus::Rejected => AckKind::Term,
            BatchStatus::Errored => AckKind::Nak(Some(self.nak_delay)),
        };
        self.send(reply, kind).await;
    }

    async fn send(&self, reply: Subject, kind: AckKind) {
        // Fails only when the client is closed; the message then comes back
        // after ack_wait, which is the best that can be done.
        if let Err(e) = self.client.publish(reply, kind.into()).await {
            tracing::debug!(component = %self.component, "cannot acknowledge a message: {e}");
        }
    }

    /// Extend every pending message's ack_wait.
    async fn progress(&self) {
        for reply in self.replies.values() {
            self.send(reply.clone(), AckKind::Progress).await;
        }
    }
}

#[async_trait]
impl Source for NatsSource {
    async fn run(self: Box<Self>, cx: SourceContext) -> Result<(), ComponentError> {
        let NatsSource {
            config,
            client,
            js,
            consumer,
        } = *self;
        let SourceContext {
            mut out,
            mut shutdown,
            metrics,
            ..
        } = cx;
        let component = metrics.info().id.clone();
        let mut pending = Pending {
            client,
            replies: HashMap::new(),
            next_id: 0,
            nak_delay: Duration::from_secs(config.nak_delay_secs),
            component: component.clone(),
        };
        let mut statuses = FuturesUnordered::new();
        let ack_wait = Duration::from_secs(config.ack_wait_secs);
        // Twice per ack_wait, so one late tick does not let a message expire.
        let mut progress = tokio::time::interval_at(Instant::now() + ack_wait / 2, ack_wait / 2);
        progress.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let mut stream = Some(
            messages(&consumer, config.batch)
                .await
                .map_err(ComponentError)?,
        );
        let mut reopen_at = Instant::now();
        tracing::info!(component = %component, stream = %config.stream, durable = %config.durable, "consuming from NATS JetStream");

        loop {
            tokio::select! {
                biased;
                () = shutdown.wait() => break,
                Some((id, status)) = statuses.next(), if !statuses.is_empty() => {
                    pending.settle(id, status).await;
                }
                _ = progress.tick() => pending.progress().await,
                () = tokio::time::sleep_until(reopen_at), if stream.is_none() => {
                    match reopen(&config, &js).await {
                        Ok(s) => {
                            tracing::info!(component = %component, "pulling messages again");
                            stream = Some(s);
                            backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
                        }
                        Err(e) => {
                            metrics.error("consumer_failed", Stage::Receiving);
                            let wait = backoff.next_wait().max(Duration::from_millis(100));
                            tracing::warn!(component = %component, "{e}; retrying in {wait:?}");
                            reopen_at = Instant::now() + wait;
                        }
                    }
                }
                item = next_message(&mut stream) => {
                    let first = match item {
                        Some(Ok(message)) => message,
                        Some(Err(e)) => {
                            metrics.error("pull_failed", Stage::Receiving);
                            tracing::warn!(component = %component, "pulling from NATS: {e}");
                            continue;
                        }
                        None => {
                            tracing::warn!(component = %component, "the pull consumer ended; opening it again");
                            stream = None;
                            reopen_at = Instant::now();
                            continue;
                        }
                    };
                    let mut events: EventArray = Vec::new();
                    let mut next = Some(first);
                    while let Some(message) = next.take() {
                        if let Some((id, status)) = pending.take(message, &mut events, &metrics).await {
                            statuses.push(status_of(id, status));
                        }
                        // Whatever else has already arrived goes in the same batch.
                        if events.len() < config.batch
                            && let Some(s) = stream.as_mut()
                            && let Some(Some(Ok(message))) = s.next().now_or_never()
                        {
                            next = Some(message);
                        }
                    }
                    if events.is_empty() {
                        continue;
                    }
                    let (n, bytes) = (events.len(), events.iter().map(Event::size_hint).sum());
                    metrics.received(n, bytes);
                    let sent = {
                        let send = out.send(events);
                        tokio::pin!(send);
                        // Acks keep flowing while the pipeline is full.
                        loop {
                            tokio::select! {
                                sent = &mut send => break sent,
                                Some((id, status)) = statuses.next(), if !statuses.is_empty() => {
                                    pending.settle(id, status).await;
                                }
                                _ = progress.tick() => pending.progress().await,
                            }
                        }
                    };
                    if sent.is_err() {
                        tracing::warn!(component = %component, "every downstream component has stopped; no longer pulling");
                        break;
                    }
                    metrics.sent(n, bytes);
                }
            }
        }

        // Stop pulling; messages the client had buffered but not handed on
        // come back after ack_wait.
        drop(stream);
        drop(out);
        tracing::info!(component = %component, pending = pending.replies.len(), "stopped pulling; waiting for pending acknowledgements");
        loop {
            tokio::select! {
                next = statuses.next() => match next {
                    Some((id, status)) => pending.settle(id, status).await,
                    None => break,
                },
                _ = progress.tick() => pending.progress().await,
            }
        }
        // Acks are written to the connection's buffer; make sure they left.
        if let Err(e) = pending.client.flush().await {
            tracing::debug!(component = %component, "cannot flush acknowledgements: {e}");
        }
        Ok(())
    }
}

async fn reopen(
    config: &NatsSourceConfig,
    js: &jetstream::Context,
) -> Result<pull::Stream, String> {
    let consumer = config.open(js).await?;
    messages(&consumer, config.batch).await
}

async fn next_message(
    stream: &mut Option<pull::Stream>,
) -> Option<Result<jetstream::Message, pull::MessagesError>> {
    match stream {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

impl Pending {
    /// Append one message's events to `events`, all with one finalizer; returns the id its
    /// status settles. A message that is not events is terminated here, so it is not
    /// redelivered forever.
    async fn take(
        &mut self,
        message: jetstream::Message,
        events: &mut EventArray,
        metrics: &ComponentMetrics,
    ) -> Option<(u64, BatchStatusReceiver)> {
        let payload = message.message.payload.clone();
        metrics.received_wire_bytes(payload.len());
        let start = events.len();
        let decoded = match decode::append(&payload, events) {
            Ok(0) => Err(DecodeError::Syntax("the message is empty".into())),
            other => other,
        };
        // Only its stream sequence is logged, should it not be events.
        let sequence = decoded
            .is_err()
            .then(|| message.info().map(|i| i.stream_sequence).ok())
            .flatten();
        let Some(reply) = message.message.reply else {
            // Not from a JetStream consumer (nothing to acknowledge), so not ours.
            events.truncate(start);
            tracing::debug!(component = %self.component, "a message without a reply subject was ignored");
            return None;
        };
        match decoded {
            Ok(_) => {
                let status = event::track(&mut events[start..]);
                let id = self.next_id;
                self.next_id += 1;
                self.replies.insert(id, reply);
                Some((id, status))
            }
            Err(e) => {
                // The error describes the shape, never the content (personal data).
                metrics.error("decode_failed", Stage::Receiving);
                tracing::warn!(component = %self.component, stream_sequence = ?sequence, "message is not an event ({e}); terminated, it will not be redelivered");
                self.send(reply, AckKind::Term).await;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> ValidateContext {
        ValidateContext {
            id: "nats".into(),
            data_dir: None,
        }
    }

    fn parse(extra: &str) -> Result<NatsSourceConfig, String> {
        let text = format!(
            "url = \"nats://127.0.0.1:4222\"\nstream = \"SEGMENT\"\ndurable = \"capi\"\n{extra}"
        );
        let config: NatsSourceConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
        config.validate(&cx()).map_err(|e| e.0).map(|_| config)
    }

    #[test]
    fn defaults_and_the_consumer_they_make() {
        let c = parse("").unwrap();
        assert_eq!(
            (
                c.batch,
                c.ack_wait_secs,
                c.max_ack_pending,
                c.nak_delay_secs
            ),
            (500, 30, 10_000, 5)
        );
        assert!(!c.create_stream && c.subject.is_none());
        let consumer = c.consumer_config();
        assert_eq!(consumer.durable_name.as_deref(), Some("capi"));
        assert_eq!(consumer.ack_policy, AckPolicy::Explicit);
        assert_eq!(consumer.ack_wait, Duration::from_secs(30));
        assert_eq!(consumer.max_ack_pending, 10_000);
        assert_eq!(consumer.filter_subject, "", "the whole stream");
        assert_eq!(
            NatsSourceConfig::acknowledgements(&c),
            Acknowledgements::Supported(true)
        );
    }

    #[test]
    fn each_bad_setting_is_named() {
        for (extra, message) in [
            ("batch = 0", "`batch` must be at least 1"),
            ("ack_wait_secs = 0", "`ack_wait_secs` must be at least 1"),
            (
                "max_ack_pending = 0",
                "`max_ack_pending` must be at least 1",
            ),
            ("create_stream = true", "`create_stream` needs `subject`"),
            ("subject = \"a..b\"", "`subject`"),
            ("auth = {}", "`auth` is empty"),
            ("auth.user = \"u\"", "`auth.user` needs `auth.password`"),
            ("connection_name = \"\"", "`connection_name` is empty"),
        ] {
            let e = parse(extra).unwrap_err();
            assert!(e.contains(message), "{extra}: {e}");
        }
        let e =
            toml::from_str::<NatsSourceConfig>("url = \"x\"\nstream = \"A.B\"\ndurable = \"d\"")
                .unwrap()
                .validate(&cx())
                .err()
                .unwrap();
        assert!(e.0.starts_with("`stream` \"A.B\""), "{e}");
        let e = toml::from_str::<NatsSourceConfig>("url = \"x\"\nstream = \"A\"\ndurable = \"\"")
            .unwrap()
            .validate(&cx())
            .err()
            .unwrap();
        assert_eq!(e.0, "`durable` is empty");
        assert!(
            parse("batchsize = 1")
                .unwrap_err()
                .contains("unknown field")
        );
        assert!(parse("subject = \"segment.>\"\ncreate_stream = true").is_ok());
    }
}

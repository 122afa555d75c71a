//! The sink as a pipeline component: events in → mapping → batches →
//! concurrent, retried requests to the Graph API.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::batch::{Batch, BatchBuilder};
use super::capi::UserDataKeys;
use super::dead_letter::{DeadLetter, Failed, Stage};
use super::enrichment::disk::DiskStore;
use super::enrichment::nats_kv::NatsKvStore;
use super::enrichment::{self, EnrichmentConfig, EnrichmentMetrics, Identities, StoreKind};
use super::mapping::{Mapper, Outcome, SkipReason};
use super::retry::{Delivery, dead_letter_events};
use super::service::GraphClient;
use crate::acks::EventStatus;
use crate::component::{BuildContext, ComponentError, EventStream, Sink};
use crate::telemetry::{self, KeyCoverage, Throttle};

/// The users remembered for `enrichment`, loaded from its store. A store that cannot be
/// opened is logged and counted, and the sink goes on with memory alone: enrichment must never
/// stop delivery.
fn open_enrichment(config: &EnrichmentConfig, cx: &BuildContext) -> Identities {
    let identities = Identities::new(config.max_users, config.ttl_secs);
    let now = Utc::now().timestamp();
    let ttl = i64::try_from(config.ttl_secs).unwrap_or(i64::MAX);
    let info = cx.metrics.info().clone();
    match config.store {
        StoreKind::Memory => identities,
        StoreKind::Disk => {
            let opened = EnrichmentConfig::disk_dir(cx.data_dir.as_deref(), &info.id)
                .and_then(|dir| DiskStore::open(&dir, now, ttl, info.clone()));
            match opened {
                Ok((store, profiles)) => identities.with_store(Box::new(store), profiles, now),
                Err(e) => {
                    enrichment::store_error(&info);
                    tracing::error!(
                        component = %info.id,
                        "{e}; enrichment goes on in memory only until a restart"
                    );
                    identities
                }
            }
        }
        // Connects in the background (and keeps trying); until then, memory only.
        StoreKind::NatsKv => {
            identities.with_store(Box::new(NatsKvStore::start(config, info)), Vec::new(), now)
        }
    }
}

/// How batches are sent: `request.concurrency` and the retry settings.
#[derive(Clone, Copy, Debug)]
pub struct Delivering {
    /// Requests in flight at most.
    pub concurrency: usize,
    /// First wait between attempts.
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Give up on a transient failure after this many attempts (`None`: never).
    pub max_attempts: Option<u32>,
}

/// The running sink: maps what arrives, batches it, and delivers the batches.
pub struct FacebookPixelSink {
    mapper: Mapper,
    /// `enrichment`, when enabled: its store is opened when the sink starts.
    enrichment: Option<EnrichmentConfig>,
    /// The users remembered, once opened.
    identities: Option<Identities>,
    client: Option<GraphClient>,
    dead_letter_path: Option<std::path::PathBuf>,
    builder: BatchBuilder,
    delivering: Delivering,
    cx: BuildContext,
}

impl FacebookPixelSink {
    /// A sink from validated settings; nothing is opened until it runs.
    pub fn new(
        mapper: Mapper,
        client: GraphClient,
        builder: BatchBuilder,
        delivering: Delivering,
        dead_letter_path: Option<std::path::PathBuf>,
        enrichment: Option<EnrichmentConfig>,
        cx: BuildContext,
    ) -> Self {
        Self {
            mapper,
            enrichment,
            identities: None,
            client: Some(client),
            dead_letter_path,
            builder,
            delivering,
            cx,
        }
    }
}

#[async_trait]
impl Sink for FacebookPixelSink {
    async fn run(mut self: Box<Self>, mut input: EventStream) -> Result<(), ComponentError> {
        let metrics = self.cx.metrics.clone();
        let dead_letter = match &self.dead_letter_path {
            Some(path) => Some(DeadLetter::open(path).map_err(ComponentError)?),
            None => None,
        };
        let client = self.client.take().expect("built with a client");
        let delivery = Arc::new(Delivery::new(
            client,
            dead_letter,
            metrics.clone(),
            self.delivering.initial_backoff,
            self.delivering.max_backoff,
            self.delivering.max_attempts,
        ));
        telemetry::healthy(&metrics, true);
        telemetry::register_delivery_counters(&metrics);
        let coverage = KeyCoverage::new(&metrics, &UserDataKeys::NAMES);
        self.identities = self
            .enrichment
            .as_ref()
            .map(|config| open_enrichment(config, &self.cx));
        let enrichment = self
            .identities
            .as_ref()
            .map(|_| EnrichmentMetrics::new(&metrics));
        let permits = Arc::new(Semaphore::new(self.delivering.concurrency));
        let mut tasks = JoinSet::new();
        let mut scratch = Vec::new();
        let rejection_log = Throttle::new(REJECTION_LOG_INTERVAL_SECS);
        loop {
            let deadline = self.builder.deadline();
            let events = tokio::select! {
                events = input.next() => events,
                () = sleep_until(deadline), if deadline.is_some() => {
                    if let Some(batch) = self.builder.take() {
                        dispatch(&delivery, &permits, &mut tasks, batch).await;
                    }
                    continue;
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            };
            let Some(events) = events else { break };
            let now = Utc::now();
            if let Some(identities) = &mut self.identities {
                identities.sync();
            }
            let mut counts = [0u64; UserDataKeys::NAMES.len()];
            // Mapping rejections of this input batch, dead-lettered together.
            let mut rejected: Vec<(String, bytes::Bytes, crate::acks::EventFinalizer)> = Vec::new();
            for event in events {
                let (original, mut finalizer) = event.into_bytes_parts();
                // Mapping unescapes strings in place, and the original must
                // stay whole for the dead letter: map a copy.
                scratch.clear();
                scratch.extend_from_slice(&original);
                let mark = self.builder.begin();
                let out = self.builder.json();
                let (outcome, notes) = match &mut self.identities {
                    Some(memory) => {
                        self.mapper
                            .map_json_remembering(&mut scratch, now, out, memory)
                    }
                    None => self.mapper.map_json(&mut scratch, now, out),
                };
                if let Some(enrichment) = &enrichment {
                    enrichment.enriched(notes.enriched);
                }
                match outcome {
                    Outcome::Mapped(()) => {
                        for (i, count) in counts.iter_mut().enumerate() {
                            *count += u64::from(notes.user_data_keys.has(i));
                        }
                        if let Some(batch) = self.builder.commit(mark, original, finalizer) {
                            dispatch(&delivery, &permits, &mut tasks, batch).await;
                        }
                    }
                    Outcome::Skipped(reason) => {
                        self.builder.abandon(mark);
                        telemetry::skipped(&metrics, skip_label(&reason));
                        metrics.discarded(1, true);
                        finalizer.update(EventStatus::Dropped);
                    }
                    Outcome::Rejected(rejection) => {
                        self.builder.abandon(mark);
                        let reason = format!("{}: {}", rejection.field, rejection.problem);
                        rejected.push((reason, original, finalizer));
                    }
                }
            }
            coverage.add(&counts);
            if let (Some(enrichment), Some(identities)) = (&enrichment, &self.identities) {
                enrichment.users(identities.len());
            }
            if !rejected.is_empty() {
                let failed: Vec<Failed<'_>> = rejected
                    .iter()
                    .map(|(reason, original, _)| Failed {
                        reason,
                        error: None,
                        event: original,
                    })
                    .collect();
                let status =
                    dead_letter_events(&delivery.dead_letter, &metrics, Stage::Mapping, &failed);
                if status == EventStatus::DeadLettered && rejection_log.ready() {
                    log_dead_lettered_rejections(&delivery, &metrics, &failed);
                }
                drop(failed);
                for (_, _, mut finalizer) in rejected {
                    finalizer.update(status);
                }
            }
        }
        if let Some(batch) = self.builder.take() {
            dispatch(&delivery, &permits, &mut tasks, batch).await;
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}

/// How often mapping rejections that went to the dead letter are logged again.
const REJECTION_LOG_INTERVAL_SECS: u64 = 10;

/// One line for mapping rejections kept in the dead letter, so they are not silent: how many,
/// where, and the first one's messageId and reason. Reasons name a field and a problem, never a
/// value (see `Rejection`), and a messageId is Segment's random id, so no personal data is logged.
fn log_dead_lettered_rejections(
    delivery: &Delivery,
    metrics: &telemetry::ComponentMetrics,
    failed: &[Failed<'_>],
) {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(rename = "messageId", borrow, default)]
        message_id: Option<std::borrow::Cow<'a, str>>,
    }
    let Some(first) = failed.first() else { return };
    // The error path only: reading the id again costs nothing on delivery.
    let id = serde_json::from_slice::<Id<'_>>(first.event)
        .ok()
        .and_then(|i| i.message_id)
        .map_or_else(
            || "(no messageId)".to_owned(),
            |id| id.chars().take(128).collect(),
        );
    let path = delivery
        .dead_letter
        .as_ref()
        .map(|d| d.path().display().to_string())
        .unwrap_or_default();
    tracing::warn!(
        component = %metrics.info().id,
        events = failed.len(),
        "{} event(s) rejected by the mapping were written to the dead letter {path}; first: messageId {id}: {} (fix the input or the settings, then `fbpixel replay`; logged at most every {REJECTION_LOG_INTERVAL_SECS} s, counted in fbpixel_dead_lettered_events_total{{stage=\"mapping\"}})",
        failed.len(),
        first.reason,
    );
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Start delivering a batch once fewer than `request.concurrency` are in
/// flight; waiting here is the sink's backpressure.
async fn dispatch(
    delivery: &Arc<Delivery>,
    permits: &Arc<Semaphore>,
    tasks: &mut JoinSet<()>,
    batch: Batch,
) {
    let permit = permits
        .clone()
        .acquire_owned()
        .await
        .expect("the semaphore is never closed");
    let delivery = delivery.clone();
    tasks.spawn(async move {
        delivery.deliver(batch).await;
        drop(permit);
    });
}

fn skip_label(reason: &SkipReason) -> &'static str {
    match reason {
        SkipReason::NotSent(_) => "not_sent",
        SkipReason::PageViewOff => "page_view_off",
        SkipReason::DisabledByIntegrations => "disabled_by_integrations",
    }
}

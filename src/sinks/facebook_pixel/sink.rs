//! The sink as a pipeline component: events in → mapping → batches per pixel →
//! concurrent, retried requests to the Graph API.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tokio::task::JoinSet;

use super::batch::{Batch, BatchBuilder, Mark};
use super::capi::UserDataKeys;
use super::concurrency::Concurrency;
use super::dead_letter::{DeadLetter, Failed, Stage};
use super::enrichment::disk::DiskStore;
use super::enrichment::nats_kv::NatsKvStore;
use super::enrichment::{self, EnrichmentConfig, EnrichmentMetrics, Identities, StoreKind};
use super::flow::Flow;
use super::ledger::{self, Ledger, LedgerConfig, Verdict};
use super::mapping::{Buffers, Mapper, Outcome, SkipReason, UserMemory};
use super::quality;
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

/// The sink's ledger, opened under `data_dir`. One that cannot be opened is logged and the
/// sink goes on without it: the ledger must never stop delivery.
fn open_ledger(config: &LedgerConfig, cx: &BuildContext) -> Option<Arc<Ledger>> {
    let id = &cx.metrics.info().id;
    match Ledger::open(config, cx.data_dir.as_deref(), cx.metrics.clone()) {
        Ok(ledger) => Some(Arc::new(ledger)),
        Err(e) => {
            cx.metrics
                .error("ledger_open_failed", telemetry::Stage::Processing);
            tracing::error!(component = %id, "{e}; the sink runs without its ledger until a restart (`fbpixel explain` will not know these events)");
            None
        }
    }
}

/// How batches are sent: `request.concurrency` and the retry settings.
#[derive(Clone, Debug)]
pub struct Delivering {
    /// Requests in flight at most: fixed, or adaptive.
    pub concurrency: Concurrency,
    /// First wait between attempts.
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Give up on a transient failure after this many attempts (`None`: never).
    pub max_attempts: Option<u32>,
    /// `request.shared_budget`, when instances share the pixels' budgets.
    pub shared_budget: Option<super::shared_budget::SharedBudgetConfig>,
}

/// One pixel the sink delivers to: its ID, its Graph API client and its batches.
pub struct Pixel {
    /// The pixel's ID.
    pub id: String,
    /// Its client (token, URL, request tail).
    pub client: GraphClient,
    /// Its batches: a request carries one pixel's events.
    pub batches: BatchBuilder,
}

/// A pixel while the sink runs: its batches, its delivery and its flow control.
struct Lane {
    batches: BatchBuilder,
    delivery: Arc<Delivery>,
}

/// Every pixel's batches, as the mapping writes into them: it asks for the buffer of the
/// event's pixel once the event is mapped, and the event is begun there.
struct Lanes {
    lanes: Vec<Lane>,
    /// The lane the current event was begun in.
    begun: Option<(usize, Mark)>,
}

impl Buffers for Lanes {
    fn buffer(&mut self, pixel: usize) -> &mut Vec<u8> {
        let lane = &mut self.lanes[pixel];
        self.begun = Some((pixel, lane.batches.begin()));
        lane.batches.json()
    }
}

impl Lanes {
    /// The earliest batch deadline.
    fn deadline(&self) -> Option<tokio::time::Instant> {
        self.lanes.iter().filter_map(|l| l.batches.deadline()).min()
    }
}

/// The running sink: maps what arrives, batches it per pixel, and delivers the batches.
pub struct FacebookPixelSink {
    mapper: Mapper,
    /// `enrichment`, when enabled: its store is opened when the sink starts.
    enrichment: Option<EnrichmentConfig>,
    /// The users remembered, once opened.
    identities: Option<Identities>,
    /// The pixels, in the mapping's pixel order, until the sink runs.
    pixels: Vec<Pixel>,
    dead_letter_path: Option<std::path::PathBuf>,
    /// `ledger`, when kept: opened when the sink starts.
    ledger: Option<LedgerConfig>,
    delivering: Delivering,
    cx: BuildContext,
    /// `quality`, when enabled: started with the sink, stopped when it returns.
    quality: Option<quality::Poller>,
}

impl FacebookPixelSink {
    /// A sink from validated settings; nothing is opened until it runs.
    pub fn new(
        mapper: Mapper,
        pixels: Vec<Pixel>,
        delivering: Delivering,
        dead_letter_path: Option<std::path::PathBuf>,
        enrichment: Option<EnrichmentConfig>,
        ledger: Option<LedgerConfig>,
        cx: BuildContext,
    ) -> Self {
        Self {
            mapper,
            enrichment,
            identities: None,
            pixels,
            dead_letter_path,
            ledger,
            delivering,
            cx,
            quality: None,
        }
    }

    /// Poll Meta's Dataset Quality API while the sink runs.
    pub fn with_quality(mut self, quality: Option<quality::Poller>) -> Self {
        self.quality = quality;
        self
    }
}

#[async_trait]
impl Sink for FacebookPixelSink {
    async fn run(mut self: Box<Self>, mut input: EventStream) -> Result<(), ComponentError> {
        let metrics = self.cx.metrics.clone();
        let dead_letter = match &self.dead_letter_path {
            Some(path) => Some(Arc::new(DeadLetter::open(path).map_err(ComponentError)?)),
            None => None,
        };
        telemetry::register_delivery_counters(&metrics);
        let ledger = self
            .ledger
            .as_ref()
            .and_then(|config| open_ledger(config, &self.cx));
        let _quality = self.quality.take().map(|poller| poller.spawn(&metrics));
        let lanes = std::mem::take(&mut self.pixels)
            .into_iter()
            .map(|pixel| {
                let pixel_metrics = metrics.with_label("pixel", pixel.id.clone());
                telemetry::healthy(&pixel_metrics, true);
                telemetry::register_pixel_counters(&pixel_metrics);
                let flow = Flow::new(self.delivering.concurrency, &pixel.id, &pixel_metrics);
                if let Some(shared) = &self.delivering.shared_budget {
                    super::shared_budget::start(shared, &pixel.id, &flow, &pixel_metrics);
                }
                Lane {
                    batches: pixel.batches,
                    delivery: Arc::new(Delivery::new(
                        pixel.id,
                        pixel.client,
                        dead_letter.clone(),
                        ledger.clone(),
                        pixel_metrics,
                        self.delivering.initial_backoff,
                        self.delivering.max_backoff,
                        self.delivering.max_attempts,
                        flow,
                    )),
                }
            })
            .collect();
        let mut lanes = Lanes { lanes, begun: None };
        let coverage = KeyCoverage::new(&metrics, &UserDataKeys::NAMES);
        self.identities = self
            .enrichment
            .as_ref()
            .map(|config| open_enrichment(config, &self.cx));
        let enrichment = self
            .identities
            .as_ref()
            .map(|_| EnrichmentMetrics::new(&metrics));
        let mut tasks = JoinSet::new();
        let mut scratch = Vec::new();
        let rejection_log = Throttle::new(REJECTION_LOG_INTERVAL_SECS);
        loop {
            let deadline = lanes.deadline();
            let events = tokio::select! {
                events = input.next() => events,
                () = sleep_until(deadline), if deadline.is_some() => {
                    let now = tokio::time::Instant::now();
                    for lane in &mut lanes.lanes {
                        if lane.batches.deadline().is_some_and(|d| d <= now)
                            && let Some(batch) = lane.batches.take()
                        {
                            dispatch(&lane.delivery, &mut tasks, batch).await;
                        }
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
            // Skipped messages of this input batch, for the ledger.
            let mut skipped: Vec<(bytes::Bytes, String)> = Vec::new();
            for event in events {
                let (original, mut finalizer) = event.into_bytes_parts();
                // Mapping unescapes strings in place, and the original must
                // stay whole for the dead letter: map a copy.
                scratch.clear();
                scratch.extend_from_slice(&original);
                let memory = self
                    .identities
                    .as_mut()
                    .map(|memory| memory as &mut dyn UserMemory);
                let (outcome, notes) =
                    self.mapper
                        .map_json_into(&mut scratch, now, &mut lanes, memory);
                let begun = lanes.begun.take();
                if let Some(enrichment) = &enrichment {
                    enrichment.enriched(notes.enriched);
                }
                match (outcome, begun) {
                    (Outcome::Mapped(()), Some((pixel, mark))) => {
                        for (i, count) in counts.iter_mut().enumerate() {
                            *count += u64::from(notes.user_data_keys.has(i));
                        }
                        let lane = &mut lanes.lanes[pixel];
                        let keys = (notes.user_data_keys, notes.enriched);
                        if let Some(batch) = lane.batches.commit(mark, original, finalizer, keys) {
                            dispatch(&lane.delivery, &mut tasks, batch).await;
                        }
                    }
                    (Outcome::Mapped(()), None) => {
                        unreachable!("a mapped event is written to its pixel's buffer")
                    }
                    (Outcome::Skipped(reason), begun) => {
                        abandon(&mut lanes, begun);
                        telemetry::skipped(&metrics, skip_label(&reason));
                        metrics.discarded(1, true);
                        finalizer.update(EventStatus::Dropped);
                        if ledger.is_some() {
                            skipped.push((original, format!("{}: {reason}", skip_label(&reason))));
                        }
                    }
                    (Outcome::Rejected(rejection), begun) => {
                        abandon(&mut lanes, begun);
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
                        pixel: None,
                        reason,
                        error: None,
                        event: original,
                    })
                    .collect();
                let status =
                    dead_letter_events(dead_letter.as_deref(), &metrics, Stage::Mapping, &failed);
                if status == EventStatus::DeadLettered && rejection_log.ready() {
                    log_dead_lettered_rejections(dead_letter.as_deref(), &metrics, &failed);
                }
                drop(failed);
                let mut messages = Vec::new();
                for (reason, original, mut finalizer) in rejected {
                    finalizer.update(status);
                    if ledger.is_some() {
                        messages.push((original, reason));
                    }
                }
                if let Some(ledger) = &ledger {
                    let outcome = super::retry::outcome(status);
                    ledger.record(ledger::Entry::Mapping {
                        at_ms: now.timestamp_millis(),
                        verdict: Verdict::failed(outcome, ledger::Stage::Mapping, None),
                        messages,
                    });
                }
            }
            if let (Some(ledger), false) = (&ledger, skipped.is_empty()) {
                ledger.record(ledger::Entry::Mapping {
                    at_ms: now.timestamp_millis(),
                    verdict: Verdict::failed(
                        ledger::Outcome::Skipped,
                        ledger::Stage::Mapping,
                        None,
                    ),
                    messages: skipped,
                });
            }
        }
        for lane in &mut lanes.lanes {
            if let Some(batch) = lane.batches.take() {
                dispatch(&lane.delivery, &mut tasks, batch).await;
            }
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}

/// Forget an event begun in a lane but not mapped after all.
fn abandon(lanes: &mut Lanes, begun: Option<(usize, Mark)>) {
    if let Some((pixel, mark)) = begun {
        lanes.lanes[pixel].batches.abandon(mark);
    }
}

/// How often mapping rejections that went to the dead letter are logged again.
const REJECTION_LOG_INTERVAL_SECS: u64 = 10;

/// One line for mapping rejections kept in the dead letter, so they are not silent: how many,
/// where, and the first one's messageId and reason. Reasons name a field and a problem, never a
/// value (see `Rejection`), and a messageId is Segment's random id, so no personal data is logged.
fn log_dead_lettered_rejections(
    dead_letter: Option<&DeadLetter>,
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
    let path = dead_letter
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

/// Start delivering a batch once its pixel's flow control lets one more request go;
/// waiting here is the sink's backpressure.
async fn dispatch(delivery: &Arc<Delivery>, tasks: &mut JoinSet<()>, batch: Batch) {
    let permit = delivery.flow.acquire().await;
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
        SkipReason::Consent => "consent",
    }
}

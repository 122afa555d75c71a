//! One mapping worker: maps chunks of events straight into its own batches per pixel and starts
//! each full batch through the pixel's [`Delivery`], which every worker shares (so flow control
//! and concurrency stay per pixel, whatever the number of workers).
//!
//! The sink runs one worker reading its input, or several fed by [`super::shards`] when mapping
//! on one core cannot keep up. A worker owns everything it writes to (batches, scratch buffer,
//! delivery tasks, the remembered users); what it shares ([`Shared`]) is read-only or
//! thread-safe.

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::batch::{Batch, BatchBuilder, Mark};
use super::capi::UserDataKeys;
use super::dead_letter::{DeadLetter, Failed, Stage};
use super::enrichment::{EnrichmentMetrics, Identities};
use super::ledger::{self, Ledger, Verdict};
use super::mapping::{Buffers, Mapper, Outcome, SkipReason, UserMemory};
use super::retry::{Delivery, dead_letter_events};
use crate::acks::{EventFinalizer, EventStatus};
use crate::component::EventStream;
use crate::event::EventArray;
use crate::telemetry::{self, KeyCoverage, Throttle};

/// What every worker of a sink shares.
pub(super) struct Shared {
    pub mapper: Mapper,
    pub metrics: telemetry::ComponentMetrics,
    pub dead_letter: Option<Arc<DeadLetter>>,
    pub ledger: Option<Arc<Ledger>>,
    /// One throttle for the sink, so several workers do not log rejections more often.
    pub rejection_log: Throttle,
}

/// A pixel as one worker sees it: the worker's batches, the pixel's shared delivery.
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

    /// Forget an event begun in a lane but not mapped after all.
    fn abandon(&mut self, begun: Option<(usize, Mark)>) {
        if let Some((pixel, mark)) = begun {
            self.lanes[pixel].batches.abandon(mark);
        }
    }
}

/// Where a worker's chunks come from: the sink's input itself (one worker: no hop), or its
/// queue from the dispatcher. (The stream is boxed: it is much the larger, and boxed once.)
pub(super) enum Chunks {
    Input(Box<EventStream>),
    Queue(mpsc::Receiver<EventArray>),
}

impl Chunks {
    async fn next(&mut self) -> Option<EventArray> {
        match self {
            Chunks::Input(stream) => stream.next().await,
            Chunks::Queue(rx) => rx.recv().await,
        }
    }
}

/// A mapping worker, ready to run.
pub(super) struct Worker {
    shared: Arc<Shared>,
    lanes: Lanes,
    /// `enrichment`'s remembered users: one store, so a sink with enrichment has one worker.
    identities: Option<Identities>,
    enrichment: Option<EnrichmentMetrics>,
    coverage: KeyCoverage,
    /// Each event is mapped in a copy (the mapping unescapes in place).
    scratch: Vec<u8>,
    /// This worker's requests in flight.
    tasks: JoinSet<()>,
}

impl Worker {
    /// A worker with its own empty batches for each pixel (`lanes`, in the mapping's pixel
    /// order).
    pub(super) fn new(
        shared: Arc<Shared>,
        lanes: Vec<(BatchBuilder, Arc<Delivery>)>,
        identities: Option<Identities>,
    ) -> Self {
        let coverage = KeyCoverage::new(&shared.metrics, &UserDataKeys::NAMES);
        let enrichment = identities
            .as_ref()
            .map(|_| EnrichmentMetrics::new(&shared.metrics));
        Self {
            lanes: Lanes {
                lanes: lanes
                    .into_iter()
                    .map(|(batches, delivery)| Lane { batches, delivery })
                    .collect(),
                begun: None,
            },
            shared,
            identities,
            enrichment,
            coverage,
            scratch: Vec::new(),
            tasks: JoinSet::new(),
        }
    }

    /// Map every chunk until the input ends, then send what is left and wait for every request
    /// this worker started.
    pub(super) async fn run(mut self, mut input: Chunks) {
        loop {
            let deadline = self.lanes.deadline();
            let events = tokio::select! {
                events = input.next() => events,
                () = sleep_until(deadline), if deadline.is_some() => {
                    let now = tokio::time::Instant::now();
                    for lane in &mut self.lanes.lanes {
                        if lane.batches.deadline().is_some_and(|d| d <= now)
                            && let Some(batch) = lane.batches.take()
                        {
                            dispatch(&lane.delivery, &mut self.tasks, batch).await;
                        }
                    }
                    continue;
                }
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => continue,
            };
            let Some(events) = events else { break };
            self.map(events).await;
        }
        for lane in &mut self.lanes.lanes {
            if let Some(batch) = lane.batches.take() {
                dispatch(&lane.delivery, &mut self.tasks, batch).await;
            }
        }
        while self.tasks.join_next().await.is_some() {}
    }

    /// Map one chunk into the batches, starting those it fills; rejections and skips are
    /// reported for the chunk together.
    async fn map(&mut self, events: EventArray) {
        let shared = &*self.shared;
        let metrics = &shared.metrics;
        let now = Utc::now();
        if let Some(identities) = &mut self.identities {
            identities.sync();
        }
        let mut counts = [0u64; UserDataKeys::NAMES.len()];
        // Mapping rejections of this chunk, dead-lettered together.
        let mut rejected: Vec<(String, bytes::Bytes, EventFinalizer)> = Vec::new();
        // Skipped messages of this chunk, for the ledger.
        let mut skipped: Vec<(bytes::Bytes, String)> = Vec::new();
        for event in events {
            let (original, mut finalizer) = event.into_bytes_parts();
            // Mapping unescapes strings in place, and the original must
            // stay whole for the dead letter: map a copy.
            self.scratch.clear();
            self.scratch.extend_from_slice(&original);
            let memory = self
                .identities
                .as_mut()
                .map(|memory| memory as &mut dyn UserMemory);
            let (outcome, notes) =
                shared
                    .mapper
                    .map_json_into(&mut self.scratch, now, &mut self.lanes, memory);
            let begun = self.lanes.begun.take();
            if let Some(enrichment) = &self.enrichment {
                enrichment.enriched(notes.enriched);
            }
            match (outcome, begun) {
                (Outcome::Mapped(()), Some((pixel, mark))) => {
                    for (i, count) in counts.iter_mut().enumerate() {
                        *count += u64::from(notes.user_data_keys.has(i));
                    }
                    let lane = &mut self.lanes.lanes[pixel];
                    let keys = (notes.user_data_keys, notes.enriched);
                    if let Some(batch) = lane.batches.commit(mark, original, finalizer, keys) {
                        dispatch(&lane.delivery, &mut self.tasks, batch).await;
                    }
                }
                (Outcome::Mapped(()), None) => {
                    unreachable!("a mapped event is written to its pixel's buffer")
                }
                (Outcome::Skipped(reason), begun) => {
                    self.lanes.abandon(begun);
                    telemetry::skipped(metrics, skip_label(&reason));
                    metrics.discarded(1, true);
                    finalizer.update(EventStatus::Dropped);
                    if shared.ledger.is_some() {
                        skipped.push((original, format!("{}: {reason}", skip_label(&reason))));
                    }
                }
                (Outcome::Rejected(rejection), begun) => {
                    self.lanes.abandon(begun);
                    let reason = format!("{}: {}", rejection.field, rejection.problem);
                    rejected.push((reason, original, finalizer));
                }
            }
        }
        self.coverage.add(&counts);
        if let (Some(enrichment), Some(identities)) = (&self.enrichment, &self.identities) {
            enrichment.users(identities.len());
        }
        if !rejected.is_empty() {
            shared.rejected(rejected, now);
        }
        if let (Some(ledger), false) = (&shared.ledger, skipped.is_empty()) {
            ledger.record(ledger::Entry::Mapping {
                at_ms: now.timestamp_millis(),
                verdict: Verdict::failed(ledger::Outcome::Skipped, ledger::Stage::Mapping, None),
                messages: skipped,
            });
        }
    }
}

impl Shared {
    /// The mapping rejections of one chunk: to the dead letter (logged now and then), each
    /// finalized with the outcome, and into the ledger.
    fn rejected(
        &self,
        rejected: Vec<(String, bytes::Bytes, EventFinalizer)>,
        now: chrono::DateTime<Utc>,
    ) {
        let dead_letter = self.dead_letter.as_deref();
        let failed: Vec<Failed<'_>> = rejected
            .iter()
            .map(|(reason, original, _)| Failed {
                pixel: None,
                reason,
                error: None,
                event: original,
            })
            .collect();
        let status = dead_letter_events(dead_letter, &self.metrics, Stage::Mapping, &failed);
        if status == EventStatus::DeadLettered && self.rejection_log.ready() {
            log_dead_lettered_rejections(dead_letter, &self.metrics, &failed);
        }
        drop(failed);
        let mut messages = Vec::new();
        for (reason, original, mut finalizer) in rejected {
            finalizer.update(status);
            if self.ledger.is_some() {
                messages.push((original, reason));
            }
        }
        if let Some(ledger) = &self.ledger {
            let outcome = super::retry::outcome(status);
            ledger.record(ledger::Entry::Mapping {
                at_ms: now.timestamp_millis(),
                verdict: Verdict::failed(outcome, ledger::Stage::Mapping, None),
                messages,
            });
        }
    }
}

/// How often mapping rejections that went to the dead letter are logged again.
pub(super) const REJECTION_LOG_INTERVAL_SECS: u64 = 10;

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

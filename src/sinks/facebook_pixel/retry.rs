//! Delivering one batch whatever Meta answers: retries with backoff for
//! transient failures, holding on for credential errors, and bisection of
//! rejected batches so each bad event ends alone in the dead letter while
//! every good one is delivered.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::batch::Batch;
use super::dead_letter::{DeadLetter, Failed, Stage};
use super::flow::Flow;
use super::ledger::{self, Ledger, MetaError, Outcome, SentEvent, Verdict};
use super::service::{Answer, GraphClient, GraphError, advice};
use crate::acks::EventStatus;
use crate::backoff::Backoff;
use crate::telemetry::{self, ComponentMetrics, Throttle};

/// What every delivery task of one pixel shares.
pub struct Delivery {
    /// The pixel's ID (shared with the ledger's records of its requests).
    pub pixel: Arc<str>,
    /// The Graph API client of the pixel.
    pub client: GraphClient,
    /// The sink's dead letter, if configured (shared by its pixels).
    pub dead_letter: Option<Arc<DeadLetter>>,
    /// The sink's ledger, if kept (shared by its pixels).
    pub ledger: Option<Arc<Ledger>>,
    /// The sink's counters, labelled with the pixel.
    pub metrics: ComponentMetrics,
    /// First wait between attempts.
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Give up on a transient failure after this many attempts (`None`: never).
    pub max_attempts: Option<u32>,
    /// False while the Graph API refuses the credentials.
    pub healthy: AtomicBool,
    /// The pixel's flow control, told of every attempt.
    pub flow: Arc<Flow>,
    /// Unix seconds of the last credentials error logged (one per interval).
    credentials_log: Throttle,
    /// The same for transient failures: a storm of 5xx answers, or a proxy answering every
    /// request with its own page, is one line per interval, not one per request.
    transient_log: Throttle,
}

/// How often a persisting credentials error is logged again.
const CREDENTIALS_LOG_INTERVAL_SECS: u64 = 60;

/// How often transient failures are logged again (every retry is counted).
const TRANSIENT_LOG_INTERVAL_SECS: u64 = 10;

/// How sending a range ended, and after how many requests.
enum Final {
    Delivered {
        fbtrace_id: Option<String>,
        events_received: Option<u64>,
        attempts: u32,
    },
    Rejected(GraphError, u32),
    GaveUp(String, u32),
}

impl Delivery {
    /// Shared delivery state; healthy until told otherwise.
    // One argument per setting of the pixel's delivery, each named at the one call site.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        pixel: String,
        client: GraphClient,
        dead_letter: Option<Arc<DeadLetter>>,
        ledger: Option<Arc<Ledger>>,
        metrics: ComponentMetrics,
        initial_backoff: Duration,
        max_backoff: Duration,
        max_attempts: Option<u32>,
        flow: Arc<Flow>,
    ) -> Self {
        Self {
            pixel: Arc::from(pixel),
            client,
            dead_letter,
            ledger,
            metrics,
            initial_backoff,
            max_backoff,
            max_attempts,
            healthy: AtomicBool::new(true),
            flow,
            credentials_log: Throttle::new(CREDENTIALS_LOG_INTERVAL_SECS),
            transient_log: Throttle::new(TRANSIENT_LOG_INTERVAL_SECS),
        }
    }

    /// Deliver a batch, finalizing every event: delivered, or dead-lettered
    /// (or, without a dead letter, rejected) when Meta refuses it.
    pub async fn deliver(self: Arc<Self>, batch: Batch) {
        telemetry::batch_size(&self.metrics, batch.len());
        let mut batch = batch;
        // Ranges still to send; popped from the end, so halves go left first.
        let mut pending: Vec<Range<usize>> = vec![0..batch.len()];
        let mut statuses: Vec<Option<EventStatus>> = vec![None; batch.len()];
        while let Some(range) = pending.pop() {
            match self.send(&batch, range.clone()).await {
                Final::Delivered {
                    fbtrace_id,
                    events_received,
                    attempts,
                } => {
                    let bytes: usize = range.clone().map(|i| batch.event_json(i).len()).sum();
                    self.metrics.sent(range.len(), bytes);
                    let verdict = Verdict::delivered(fbtrace_id, events_received);
                    self.record(&batch, range.clone(), verdict, attempts);
                    for i in range {
                        statuses[i] = Some(EventStatus::Delivered);
                    }
                }
                Final::Rejected(error, _) if range.len() > 1 => {
                    telemetry::bisection(&self.metrics);
                    let mid = range.start + range.len() / 2;
                    tracing::debug!(component = %self.metrics.info().id, pixel = %self.pixel, events = range.len(), "Meta rejected a batch ({error}); bisecting to find the bad events");
                    pending.push(mid..range.end);
                    pending.push(range.start..mid);
                }
                Final::Rejected(error, attempts) => {
                    let i = range.start;
                    let reason = format!("Meta rejected the event: {error}");
                    let status = self.dead_letter(&batch, i..i + 1, &reason, Some(&error));
                    let mut verdict =
                        Verdict::failed(outcome(status), ledger::Stage::Delivery, None);
                    verdict.fbtrace_id = error.fbtrace_id.clone();
                    verdict.error = Some(MetaError {
                        code: error.code,
                        subcode: error.error_subcode,
                        message: error.message.clone(),
                        user_message: error.error_user_msg.clone(),
                    });
                    self.record(&batch, i..i + 1, verdict, attempts);
                    statuses[i] = Some(status);
                }
                Final::GaveUp(reason, attempts) => {
                    let status = self.dead_letter(&batch, range.clone(), &reason, None);
                    let verdict =
                        Verdict::failed(outcome(status), ledger::Stage::Delivery, Some(reason));
                    self.record(&batch, range.clone(), verdict, attempts);
                    for i in range {
                        statuses[i] = Some(status);
                    }
                }
            }
        }
        for (entry, status) in batch.entries.drain(..).zip(statuses) {
            let mut finalizer = entry.finalizer;
            finalizer.update(status.unwrap_or(EventStatus::Errored));
        }
    }

    /// Tell the ledger how the events of `range` ended: the body and their ranges in it, the
    /// work of reading them is the ledger thread's.
    fn record(&self, batch: &Batch, range: Range<usize>, verdict: Verdict, attempts: u32) {
        let Some(ledger) = &self.ledger else { return };
        let events = range
            .map(|i| {
                let (keys, enriched) = batch.entries[i].keys;
                SentEvent {
                    range: batch.range(i),
                    keys: keys.bits(),
                    enriched: enriched.bits(),
                }
            })
            .collect();
        ledger.record(ledger::Entry::Sent {
            at_ms: chrono::Utc::now().timestamp_millis(),
            pixel: self.pixel.clone(),
            body: batch.body(),
            events,
            verdict,
            attempts,
        });
    }

    fn dead_letter(
        &self,
        batch: &Batch,
        range: Range<usize>,
        reason: &str,
        error: Option<&GraphError>,
    ) -> EventStatus {
        let events: Vec<Failed<'_>> = range
            .map(|i| Failed {
                pixel: Some(&*self.pixel),
                reason,
                error,
                event: &batch.entries[i].original,
            })
            .collect();
        dead_letter_events(
            self.dead_letter.as_deref(),
            &self.metrics,
            Stage::Delivery,
            &events,
        )
    }

    /// Send `range` of the batch until it is delivered, rejected, or (with an
    /// attempt limit) given up on.
    async fn send(&self, batch: &Batch, range: Range<usize>) -> Final {
        let body = if range.len() == batch.len() {
            batch.body()
        } else {
            self.client.body(range.clone().map(|i| batch.event_json(i)))
        };
        let mut backoff = Backoff::new(self.initial_backoff, self.max_backoff);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            // A retry keeps its slot, but waits out a pause Meta asked for like a new request.
            self.flow.ready().await;
            let (answer, took, usage) = self.client.send(body.clone()).await;
            self.flow.observe(took, &answer, &usage);
            telemetry::request(&self.metrics, answer_label(&answer), took);
            match answer {
                Answer::Accepted {
                    events_received,
                    fbtrace_id,
                } => {
                    if !self.healthy.swap(true, Ordering::Relaxed) {
                        telemetry::healthy(&self.metrics, true);
                        tracing::info!(component = %self.metrics.info().id, pixel = %self.pixel, "the Graph API accepts requests again");
                    }
                    if let Some(received) = events_received.filter(|&n| n < range.len() as u64) {
                        telemetry::unconfirmed(&self.metrics, range.len() as u64 - received);
                        tracing::warn!(component = %self.metrics.info().id, pixel = %self.pixel, sent = range.len(), received, "Meta confirmed fewer events than were sent");
                    }
                    return Final::Delivered {
                        fbtrace_id,
                        events_received,
                        attempts,
                    };
                }
                Answer::Rejected(error) => return Final::Rejected(error, attempts),
                Answer::Transient { reason, detail } => {
                    if self.max_attempts.is_some_and(|max| attempts >= max) {
                        return Final::GaveUp(
                            format!("gave up after {attempts} attempts: {detail}"),
                            attempts,
                        );
                    }
                    telemetry::retry(&self.metrics, reason);
                    let wait = backoff.next_wait();
                    if self.transient_log.ready() {
                        tracing::warn!(component = %self.metrics.info().id, pixel = %self.pixel, events = range.len(), attempt = attempts, wait_ms = wait.as_millis() as u64, "transient failure ({detail}); the events are held and retried (logged at most every {TRANSIENT_LOG_INTERVAL_SECS} s; fbpixel_retries_total{{reason=\"{reason}\"}} counts every retry)");
                    }
                    tokio::time::sleep(wait).await;
                }
                Answer::Credentials(error) => {
                    if self.healthy.swap(false, Ordering::Relaxed) {
                        telemetry::healthy(&self.metrics, false);
                    }
                    telemetry::retry(&self.metrics, "credentials");
                    self.log_credentials(&error);
                    tokio::time::sleep(backoff.next_wait()).await;
                }
            }
        }
    }

    fn log_credentials(&self, error: &GraphError) {
        if self.credentials_log.ready() {
            tracing::error!(component = %self.metrics.info().id, pixel = %self.pixel, "{}; events are held and retried until this is fixed", advice(error));
        }
    }
}

/// Write events to the dead letter (or, without one, log and count them),
/// returning the status to report for each of them.
pub fn dead_letter_events(
    dead_letter: Option<&DeadLetter>,
    metrics: &ComponentMetrics,
    stage: Stage,
    events: &[Failed<'_>],
) -> EventStatus {
    let sink = &metrics.info().id;
    match dead_letter {
        Some(dl) => match dl.write_many(sink, stage, events) {
            Ok(()) => {
                telemetry::dead_lettered(metrics, stage.as_str(), events.len());
                EventStatus::DeadLettered
            }
            Err(e) => {
                metrics.error("dead_letter_write_failed", telemetry::Stage::Sending);
                tracing::error!(component = %sink, path = %dl.path().display(), events = events.len(), "cannot write to the dead letter: {e}; the events are failed so their senders retry");
                EventStatus::Errored
            }
        },
        None => {
            for failed in events {
                metrics.error(
                    if stage == Stage::Mapping {
                        "mapping_rejected"
                    } else {
                        "delivery_rejected"
                    },
                    telemetry::Stage::Processing,
                );
                tracing::warn!(component = %sink, stage = stage.as_str(), "event not sent: {} (set dead_letter.path to keep such events for replay)", failed.reason);
            }
            metrics.discarded(events.len(), false);
            EventStatus::Rejected
        }
    }
}

/// The ledger's name for an event's final status.
pub fn outcome(status: EventStatus) -> Outcome {
    match status {
        EventStatus::Delivered => Outcome::Delivered,
        EventStatus::DeadLettered => Outcome::DeadLettered,
        EventStatus::Rejected => Outcome::Rejected,
        EventStatus::Dropped => Outcome::Skipped,
        EventStatus::Errored => Outcome::Errored,
    }
}

fn answer_label(answer: &Answer) -> &'static str {
    match answer {
        Answer::Accepted { .. } => "accepted",
        Answer::Transient { .. } => "transient",
        Answer::Credentials(_) => "credentials",
        Answer::Rejected(_) => "rejected",
    }
}

//! The sink as a pipeline component: events in → mapping → batches per pixel →
//! concurrent, retried requests to the Graph API.
//!
//! This file opens what the sink keeps (dead letter, ledger, enrichment store) and builds one
//! delivery per pixel; the mapping loop is [`super::worker`], run once or, with
//! `mapping.workers`, several times over by [`super::shards`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;

use super::batch::BatchBuilder;
use super::concurrency::Concurrency;
use super::dead_letter::DeadLetter;
use super::enrichment::disk::DiskStore;
use super::enrichment::nats_kv::NatsKvStore;
use super::enrichment::{self, EnrichmentConfig, Identities, StoreKind};
use super::flow::Flow;
use super::ledger::{Ledger, LedgerConfig};
use super::mapping::Mapper;
use super::quality;
use super::retry::Delivery;
use super::service::GraphClient;
use super::shards;
use super::worker::{REJECTION_LOG_INTERVAL_SECS, Shared, Worker};
use crate::component::{BuildContext, ComponentError, EventStream, Sink};
use crate::telemetry::{self, Throttle};

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

/// The running sink: maps what arrives, batches it per pixel, and delivers the batches.
pub struct FacebookPixelSink {
    mapper: Mapper,
    /// `enrichment`, when enabled: its store is opened when the sink starts.
    enrichment: Option<EnrichmentConfig>,
    /// `mapping.workers`, resolved: how many tasks map events (1 with enrichment).
    workers: usize,
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
            workers: 1,
            pixels,
            dead_letter_path,
            ledger,
            delivering,
            cx,
            quality: None,
        }
    }

    /// Map on `workers` tasks (`mapping.workers`, resolved); 1 when not called.
    pub fn with_workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// Poll Meta's Dataset Quality API while the sink runs.
    pub fn with_quality(mut self, quality: Option<quality::Poller>) -> Self {
        self.quality = quality;
        self
    }
}

#[async_trait]
impl Sink for FacebookPixelSink {
    async fn run(self: Box<Self>, input: EventStream) -> Result<(), ComponentError> {
        let this = *self;
        let metrics = this.cx.metrics.clone();
        let dead_letter = match &this.dead_letter_path {
            Some(path) => Some(Arc::new(DeadLetter::open(path).map_err(ComponentError)?)),
            None => None,
        };
        telemetry::register_delivery_counters(&metrics);
        let ledger = this
            .ledger
            .as_ref()
            .and_then(|config| open_ledger(config, &this.cx));
        let _quality = this.quality.map(|poller| poller.spawn(&metrics));
        // One delivery per pixel, whatever the number of workers: flow control is the pixel's.
        let lanes: Vec<(BatchBuilder, Arc<Delivery>)> = this
            .pixels
            .into_iter()
            .map(|pixel| {
                let pixel_metrics = metrics.with_label("pixel", pixel.id.clone());
                telemetry::healthy(&pixel_metrics, true);
                telemetry::register_pixel_counters(&pixel_metrics);
                let flow = Flow::new(this.delivering.concurrency, &pixel.id, &pixel_metrics);
                if let Some(shared) = &this.delivering.shared_budget {
                    super::shared_budget::start(shared, &pixel.id, &flow, &pixel_metrics);
                }
                let delivery = Delivery::new(
                    pixel.id,
                    pixel.client,
                    dead_letter.clone(),
                    ledger.clone(),
                    pixel_metrics,
                    this.delivering.initial_backoff,
                    this.delivering.max_backoff,
                    this.delivering.max_attempts,
                    flow,
                );
                (pixel.batches, Arc::new(delivery))
            })
            .collect();
        let mut identities = this
            .enrichment
            .as_ref()
            .map(|config| open_enrichment(config, &this.cx));
        let shared = Arc::new(Shared {
            mapper: this.mapper,
            metrics,
            dead_letter,
            ledger,
            rejection_log: Throttle::new(REJECTION_LOG_INTERVAL_SECS),
        });
        // The remembered users are one store that mapping updates: one worker (validation
        // refuses more workers with enrichment; this holds it whatever the caller asked).
        let count = if identities.is_some() {
            1
        } else {
            this.workers.max(1)
        };
        let workers = (0..count)
            .map(|_| {
                let lanes = lanes
                    .iter()
                    .map(|(batches, delivery)| (batches.empty_like(), delivery.clone()))
                    .collect();
                Worker::new(shared.clone(), lanes, identities.take())
            })
            .collect();
        shards::run(input, workers).await;
        Ok(())
    }
}

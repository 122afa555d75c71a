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
use super::config::FacebookPixelConfig;
use super::dead_letter::{DeadLetter, Failed, Stage};
use super::enrichment::disk::{self, DiskStore};
use super::enrichment::nats_kv::NatsKvStore;
use super::enrichment::{self, EnrichmentConfig, EnrichmentMetrics, Identities, StoreKind};
use super::mapping::{Mapper, Outcome, SkipReason};
use super::retry::{Delivery, dead_letter_events};
use super::service::GraphClient;
use crate::acks::EventStatus;
use crate::buffers::BufferConfig;
use crate::telemetry::{self, KeyCoverage};
use crate::topology::{
    BuildContext, BuildError, ComponentError, EventStream, Healthcheck, Sink, SinkConfig, healthy,
};

#[async_trait]
impl SinkConfig for FacebookPixelConfig {
    async fn build(&self, cx: BuildContext) -> Result<(Box<dyn Sink>, Healthcheck), BuildError> {
        let mapper = Mapper::new(self).map_err(|e| BuildError(e.0.join("; ")))?;
        let client = GraphClient::new(self).map_err(|e| BuildError(e.to_string()))?;
        let healthcheck: Healthcheck = if self.healthcheck.enabled {
            let check = GraphClient::new(self).map_err(|e| BuildError(e.to_string()))?;
            Box::pin(async move { check.healthcheck().await })
        } else {
            healthy()
        };
        let builder = BatchBuilder::new(
            self.batch.max_events,
            self.batch.max_bytes,
            Duration::from_secs_f64(self.batch.timeout_secs),
            client.body_suffix(),
        );
        self.check_enrichment(&cx).map_err(BuildError)?;
        self.check_state_files(&cx).map_err(BuildError)?;
        let sink = FacebookPixelSink {
            mapper,
            enrichment: self.enrichment.enabled.then(|| self.enrichment.clone()),
            identities: None,
            client: Some(client),
            dead_letter_path: self.dead_letter.as_ref().map(|d| d.path.clone()),
            builder,
            concurrency: self.request.concurrency,
            initial_backoff: Duration::from_secs_f64(self.request.retry_initial_backoff_secs),
            max_backoff: Duration::from_secs_f64(self.request.retry_max_duration_secs),
            max_attempts: self.request.retry_attempts,
            cx,
        };
        Ok((Box::new(sink), healthcheck))
    }

    fn acknowledgements(&self) -> bool {
        self.acknowledgements.enabled
    }

    fn buffer(&self) -> Option<&BufferConfig> {
        Some(&self.buffer)
    }
}

impl FacebookPixelConfig {
    /// What `validate` can check of `enrichment` without opening its store (a running
    /// instance holds it).
    fn check_enrichment(&self, cx: &BuildContext) -> Result<(), String> {
        let e = &self.enrichment;
        if e.enabled && e.store == StoreKind::Disk {
            EnrichmentConfig::disk_dir(cx.data_dir.as_deref(), &cx.metrics.info().id)?;
        }
        if e.enabled && e.store == StoreKind::NatsKv {
            crate::nats::server_urls(e.url.as_deref().unwrap_or_default())
                .map_err(|problem| format!("enrichment: {problem}"))?;
        }
        Ok(())
    }

    /// Check the modes of the state files that already exist (the dead letter, the enrichment
    /// store and its folder) before anything starts: one other users can open is reported,
    /// or refused with `--strict-permissions`. The disk buffer is checked when it is opened.
    fn check_state_files(&self, cx: &BuildContext) -> Result<(), String> {
        if let Some(dead_letter) = &self.dead_letter {
            crate::state::check(&dead_letter.path, cx.permissions)
                .map_err(|e| format!("dead_letter.path: {e}"))?;
        }
        let e = &self.enrichment;
        if e.enabled && e.store == StoreKind::Disk {
            let dir = EnrichmentConfig::disk_dir(cx.data_dir.as_deref(), &cx.metrics.info().id)?;
            for path in [disk::file_path(&dir), dir] {
                crate::state::check(&path, cx.permissions)
                    .map_err(|e| format!("enrichment: {e}"))?;
            }
        }
        Ok(())
    }
}

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

struct FacebookPixelSink {
    mapper: Mapper,
    /// `enrichment`, when enabled: its store is opened when the sink starts.
    enrichment: Option<EnrichmentConfig>,
    /// The users remembered, once opened.
    identities: Option<Identities>,
    client: Option<GraphClient>,
    dead_letter_path: Option<std::path::PathBuf>,
    builder: BatchBuilder,
    concurrency: usize,
    initial_backoff: Duration,
    max_backoff: Duration,
    max_attempts: Option<u32>,
    cx: BuildContext,
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
            self.initial_backoff,
            self.max_backoff,
            self.max_attempts,
        ));
        telemetry::healthy(&metrics, true);
        let coverage = KeyCoverage::new(&metrics, &UserDataKeys::NAMES);
        self.identities = self
            .enrichment
            .as_ref()
            .map(|config| open_enrichment(config, &self.cx));
        let enrichment = self
            .identities
            .as_ref()
            .map(|_| EnrichmentMetrics::new(&metrics));
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let mut tasks = JoinSet::new();
        let mut scratch = Vec::new();
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

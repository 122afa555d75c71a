//! The delivery ledger: for every message the sink handled, what became of it — delivered
//! (with Meta's `fbtrace_id` and `events_received`), dead-lettered or rejected (with the stage
//! and Meta's error), skipped (with the reason) — so that `fbpixel explain` and
//! `fbpixel reconcile` can answer "it said success, but Events Manager shows fewer events".
//!
//! The hot path only hands over what it already holds: the request body (a reference-counted
//! [`Bytes`]), each event's range in it and its key bits. Everything costly — reading the ids
//! back from the events, masking the values that were sent unhashed, writing redb — happens on
//! the ledger's own thread ([`store`]), in batches. The queue to it is bounded: when the thread
//! cannot keep up, records are dropped and counted (`fbpixel_ledger_dropped_events_total`),
//! never waited for, so the ledger can slow delivery down by its CPU only.
//!
//! What is kept is [`record::Record`]: ids, outcome, times, Meta's answer, key names and the
//! server event with every customer-information value as a SHA-256 hash (see
//! [`record::mask_event`]). No raw personal data.

mod id_index;
pub mod nats_kv;
pub mod record;
mod scan;
pub mod store;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc::{self, error::TrySendError};

use bytes::Bytes;
use metrics::counter;
use serde::Deserialize;

use crate::telemetry::{ComponentMetrics, Throttle};

pub use record::{MetaError, Outcome, Record, Stage, Verdict};
pub use store::{Found, Reader};

/// The `ledger` settings of a sink.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// Keep the ledger; default: on when `data_dir` is set.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Largest size of what the ledger keeps, in bytes; the oldest records go first.
    #[serde(default = "default_max_size")]
    pub max_size: u64,
    /// How long a record is kept, in seconds.
    #[serde(default = "default_retention_secs")]
    pub retention_secs: u64,
    /// Where records are kept: `disk` (under `data_dir`) or `nats_kv` (a bucket every instance
    /// shares).
    #[serde(default)]
    pub store: LedgerStore,
    /// `nats_kv`: the NATS server(s).
    #[serde(default)]
    pub url: Option<String>,
    /// `nats_kv`: the key-value bucket (created when missing).
    #[serde(default = "default_bucket")]
    pub bucket: String,
    /// `nats_kv`: how to authenticate, as the `nats` source and sink do.
    #[serde(default)]
    pub auth: Option<crate::nats::NatsAuth>,
}

/// Where the ledger's records are kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerStore {
    /// A redb file under `data_dir`, one per sink and instance.
    #[default]
    Disk,
    /// A JetStream key-value bucket shared by every instance.
    NatsKv,
}

fn default_bucket() -> String {
    "fbpixel_ledger".to_owned()
}

fn default_max_size() -> u64 {
    1 << 30
}

fn default_retention_secs() -> u64 {
    7 * 24 * 3600
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            max_size: default_max_size(),
            retention_secs: default_retention_secs(),
            store: LedgerStore::default(),
            url: None,
            bucket: default_bucket(),
            auth: None,
        }
    }
}

/// The smallest `max_size`: below this, a few requests' records would not fit.
const MIN_MAX_SIZE: u64 = 1 << 20;

impl LedgerConfig {
    /// Whether the ledger is kept, given the config's `data_dir`: by default, when there is
    /// somewhere to keep it (a `data_dir`, or a bucket named by `store = "nats_kv"`).
    pub fn is_enabled(&self, data_dir: Option<&Path>) -> bool {
        self.enabled
            .unwrap_or(data_dir.is_some() || self.store == LedgerStore::NatsKv)
    }

    /// Problems with the settings, each naming its key.
    pub fn problems(&self, data_dir: Option<&Path>) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.is_enabled(data_dir) {
            return problems;
        }
        if self.store == LedgerStore::NatsKv {
            if self.url.as_deref().is_none_or(|u| u.trim().is_empty()) {
                problems.push(
                    "ledger.url: the nats_kv store needs the NATS server's URL (nats://host:4222)"
                        .to_owned(),
                );
            } else if let Some(Err(e)) = self.url.as_deref().map(crate::nats::server_urls) {
                problems.push(format!("ledger.url: {e}"));
            }
            if let Err(e) = crate::nats::check_name("ledger.bucket", &self.bucket) {
                problems.push(e);
            }
            if let Some(Err(e)) = self.auth.as_ref().map(crate::nats::NatsAuth::check) {
                problems.push(format!("ledger.auth: {e}"));
            }
        } else if data_dir.is_none() {
            problems.push(
                "ledger.enabled: the ledger keeps its file under `data_dir`: set `data_dir = \"/var/lib/fbpixel\"` at the top of the config, or `ledger.enabled = false`"
                    .to_owned(),
            );
        }
        if self.max_size < MIN_MAX_SIZE {
            problems.push(format!(
                "ledger.max_size: {} bytes is too small; give at least {MIN_MAX_SIZE} (1 MiB)",
                self.max_size
            ));
        }
        if self.retention_secs == 0 {
            problems.push("ledger.retention_secs: must be at least 1".to_owned());
        }
        problems
    }

    /// The folder of the ledger of sink `id` under `data_dir`.
    pub fn dir(data_dir: Option<&Path>, id: &str) -> Result<PathBuf, String> {
        crate::config::state_dir(data_dir, "ledger", "ledger", id)
    }
}

/// What share of the events delivered to one pixel under one name carried each key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coverage {
    /// The pixel.
    pub pixel: String,
    /// The Conversions API event name.
    pub event_name: String,
    /// Events delivered.
    pub events: u64,
    /// Per key, in [`super::capi::UserDataKeys::NAMES`] order, the events that carried it.
    pub keys: [u64; super::capi::UserDataKeys::NAMES.len()],
}

/// Our own per-key coverage of what the ledger says was delivered, per pixel and event name
/// (for `fbpixel quality`), sorted by pixel then name.
pub fn coverage(reader: &Reader) -> Result<Vec<Coverage>, String> {
    use std::collections::BTreeMap;
    let mut by: BTreeMap<(String, String), Coverage> = BTreeMap::new();
    reader.for_each(|record| {
        if record.outcome != Outcome::Delivered {
            return;
        }
        let pixel = record.pixel.unwrap_or_default();
        for event in record.events {
            let name = event.event_name.unwrap_or_default();
            let c = by
                .entry((pixel.clone(), name.clone()))
                .or_insert_with(|| Coverage {
                    pixel: pixel.clone(),
                    event_name: name,
                    events: 0,
                    keys: [0; super::capi::UserDataKeys::NAMES.len()],
                });
            c.events += 1;
            let keys = super::capi::UserDataKeys::from_bits(event.keys);
            for (i, count) in c.keys.iter_mut().enumerate() {
                *count += u64::from(keys.has(i));
            }
        }
    })?;
    Ok(by.into_values().collect())
}

/// One event of a request, as the ledger is told of it: where its server event is in the
/// body, and its key bits.
#[derive(Clone, Debug)]
pub struct SentEvent {
    /// Its server event's JSON in the body.
    pub range: Range<usize>,
    /// The user_data keys it carries ([`super::capi::UserDataKeys`] bits).
    pub keys: u32,
    /// Those enrichment added.
    pub enriched: u32,
}

/// What the ledger is told, on the hot path: references to what the sink already holds.
pub enum Entry {
    /// A request's events reached their end together: delivered, or given up on.
    Sent {
        /// Unix milliseconds.
        at_ms: i64,
        /// The pixel it went to.
        pixel: Arc<str>,
        /// The body the events are in.
        body: Bytes,
        /// The events.
        events: Vec<SentEvent>,
        /// What became of them.
        verdict: Verdict,
        /// Requests made for them.
        attempts: u32,
    },
    /// Messages that ended in the mapping (skipped, rejected): their originals, each with why.
    Mapping {
        /// Unix milliseconds.
        at_ms: i64,
        /// What became of them.
        verdict: Verdict,
        /// Each message as it entered the sink, and the reason.
        messages: Vec<(Bytes, String)>,
    },
}

impl Entry {
    pub(crate) fn events(&self) -> usize {
        match self {
            Entry::Sent { events, .. } => events.len(),
            Entry::Mapping { messages, .. } => messages.len(),
        }
    }
}

/// Requests whose records wait for the ledger's thread; beyond this, records are dropped and
/// counted. Each holds its request body until written (a megabyte for a full batch), so this
/// bounds the ledger's memory too: 64 requests are 16 s of a pixel at 4 requests a second.
const MAX_PENDING: usize = 64;

/// How often dropped records are logged again.
const DROP_LOG_INTERVAL_SECS: u64 = 60;

/// The sink's handle on its ledger: queues entries for the writer thread.
pub struct Ledger {
    queue: Option<mpsc::Sender<Entry>>,
    writer: Option<std::thread::JoinHandle<()>>,
    metrics: ComponentMetrics,
    drop_log: Throttle,
}

impl Ledger {
    /// Open the ledger and start its writer thread: the redb file under `data_dir` (created,
    /// and pruned of what is past `retention_secs`), or the bucket, connected in the background.
    pub fn open(
        config: &LedgerConfig,
        data_dir: Option<&Path>,
        metrics: ComponentMetrics,
    ) -> Result<Self, String> {
        let (queue, entries) = mpsc::channel(MAX_PENDING);
        let thread = std::thread::Builder::new().name("fbpixel-ledger".into());
        let writer = match config.store {
            LedgerStore::Disk => {
                let dir = LedgerConfig::dir(data_dir, &metrics.info().id)?;
                let store = store::Store::open(&dir, config, metrics.clone())?;
                thread.spawn(move || store.run(entries))
            }
            LedgerStore::NatsKv => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("ledger: {e}"))?;
                let (config, metrics) = (config.clone(), metrics.clone());
                thread.spawn(move || runtime.block_on(nats_kv::run(config, entries, metrics)))
            }
        }
        .map_err(|e| format!("ledger: cannot start its writer: {e}"))?;
        register_counters(&metrics);
        Ok(Self {
            queue: Some(queue),
            writer: Some(writer),
            metrics,
            drop_log: Throttle::new(DROP_LOG_INTERVAL_SECS),
        })
    }

    /// Queue an entry; never waits.
    pub fn record(&self, entry: Entry) {
        let Some(queue) = &self.queue else { return };
        let events = entry.events();
        match queue.try_send(entry) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.dropped(events, "queue_full"),
            Err(TrySendError::Closed(_)) => self.dropped(events, "writer_stopped"),
        }
    }

    fn dropped(&self, events: usize, reason: &'static str) {
        dropped(&self.metrics, events, reason);
        if self.drop_log.ready() {
            tracing::warn!(
                component = %self.metrics.info().id,
                events,
                "ledger: records dropped ({reason}): the ledger's writer cannot keep up; delivery is not affected, but `fbpixel explain` will not know these events (counted in fbpixel_ledger_dropped_events_total; logged at most every {DROP_LOG_INTERVAL_SECS} s)"
            );
        }
    }
}

impl Drop for Ledger {
    /// Write what is queued and close the file, so that a clean stop loses no record and
    /// `explain` can open the file at once.
    fn drop(&mut self) {
        self.queue.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

const EVENTS: &str = "fbpixel_ledger_events_total";
const DROPPED: &str = "fbpixel_ledger_dropped_events_total";

fn register_counters(metrics: &ComponentMetrics) {
    counter!(EVENTS, metrics.labels()).absolute(0);
    for reason in ["queue_full", "writer_stopped", "write_failed"] {
        let mut labels = metrics.labels();
        labels.push(metrics::Label::new("reason", reason));
        counter!(DROPPED, labels).absolute(0);
    }
}

/// Count records written.
fn written(metrics: &ComponentMetrics, events: usize) {
    counter!(EVENTS, metrics.labels()).increment(events as u64);
}

/// Count records lost.
fn dropped(metrics: &ComponentMetrics, events: usize, reason: &'static str) {
    let mut labels = metrics.labels();
    labels.push(metrics::Label::new("reason", reason));
    counter!(DROPPED, labels).increment(events as u64);
}

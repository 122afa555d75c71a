//! The `nats_kv` ledger: records in a JetStream key-value bucket that every instance of a
//! scaled-out deployment writes to, so that `explain` and `reconcile` see them all in one place.
//!
//! One key per event id, `e.{hex}`, and one per order id, `o.{hex}` (the first 20 bytes of the
//! id's SHA-256, since bucket keys allow few characters); each revision is one time the event
//! was handled ([`Found`] as JSON), so the bucket's history (16) is the event's. The bucket's
//! `max_age` is `retention_secs` and its `max_bytes` `max_size`, so NATS itself keeps the
//! bounds. A bucket that is down only loses records (counted), never delays delivery.

use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::Receiver;

use super::store::{Found, build, found};
use super::{Entry, LedgerConfig};
use crate::backoff::Backoff;
use crate::nats::{Connect, key_value};
use crate::telemetry::{ComponentMetrics, Throttle};

/// Revisions kept per key: the times one event (or one order's events) was handled.
const HISTORY: i64 = 16;

/// Puts in flight at once.
const MAX_IN_FLIGHT: usize = 256;

/// The bucket key of an event id (`e`) or an order id (`o`).
fn key(kind: char, id: &str) -> String {
    format!(
        "{kind}.{}",
        hex::encode(&Sha256::digest(id.as_bytes())[..20])
    )
}

async fn bucket(config: &LedgerConfig, component: &str, create: bool) -> Result<kv::Store, String> {
    let connect = Connect {
        url: config.url.as_deref().unwrap_or_default(),
        auth: config.auth.as_ref(),
        name: "fbpixel-ledger",
        component,
    };
    let bucket = kv::Config {
        bucket: config.bucket.clone(),
        history: HISTORY,
        max_age: Duration::from_secs(config.retention_secs),
        max_bytes: i64::try_from(config.max_size).unwrap_or(i64::MAX),
        description: "fbpixel delivery ledger: what became of every message (hashes only)".into(),
        ..Default::default()
    };
    key_value(&connect, bucket, create).await
}

/// The writer: connect (retrying, while records wait in the queue), then put every record
/// that arrives until the sink stops.
pub async fn run(config: LedgerConfig, mut entries: Receiver<Entry>, metrics: ComponentMetrics) {
    let id = metrics.info().id.clone();
    let log = Throttle::new(60);
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let store = loop {
        match bucket(&config, &id, true).await {
            Ok(store) => break store,
            Err(e) => {
                if log.ready() {
                    tracing::error!(component = %id, "ledger: {e}; retrying (records wait in a bounded queue; delivery is not affected)");
                }
                if entries.is_closed() {
                    let mut lost = 0;
                    while let Ok(entry) = entries.try_recv() {
                        lost += entry.events();
                    }
                    super::dropped(&metrics, lost, "write_failed");
                    return;
                }
                tokio::time::sleep(backoff.next_wait().max(Duration::from_millis(100))).await;
            }
        }
    };
    let mut events = Vec::new();
    while let Some(entry) = entries.recv().await {
        let record = build(&entry, &mut events);
        let mut puts = FuturesUnordered::new();
        let (mut written, mut failed) = (0, 0);
        for item in found(record, &events) {
            let value = Bytes::from(serde_json::to_vec(&item).expect("a record serializes"));
            let mut keys = vec![key('e', &item.event.id)];
            keys.extend(item.event.order_id.as_deref().map(|o| key('o', o)));
            for k in keys {
                if puts.len() >= MAX_IN_FLIGHT
                    && let Some(result) = puts.next().await
                {
                    tally(result, &mut written, &mut failed);
                }
                let store = store.clone();
                let value = value.clone();
                puts.push(async move { store.put(k, value).await.map(drop) });
            }
        }
        while let Some(result) = puts.next().await {
            tally(result, &mut written, &mut failed);
        }
        if written > 0 {
            super::written(&metrics, entry.events());
        }
        if failed > 0 {
            super::dropped(&metrics, entry.events(), "write_failed");
            if log.ready() {
                tracing::warn!(component = %id, "ledger: cannot write {failed} record(s) to the bucket `{}` (delivery is not affected)", config.bucket);
            }
        }
    }
}

fn tally<E>(result: Result<(), E>, written: &mut usize, failed: &mut usize) {
    match result {
        Ok(()) => *written += 1,
        Err(_) => *failed += 1,
    }
}

/// A ledger bucket opened for reading, by `explain` and `reconcile`.
pub struct KvReader {
    runtime: tokio::runtime::Runtime,
    store: kv::Store,
    bucket: String,
}

impl KvReader {
    /// Open the bucket `config` names (it is not created).
    pub fn open(config: &LedgerConfig) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let store = runtime.block_on(bucket(config, "ledger reader", false))?;
        Ok(Self {
            runtime,
            store,
            bucket: config.bucket.clone(),
        })
    }

    /// Every event the bucket holds under `id` (an event id, a messageId or an order id).
    pub fn find(&self, id: &str) -> Result<Vec<Found>, String> {
        self.runtime.block_on(async {
            let mut found = Vec::new();
            for k in [key('e', id), key('o', id)] {
                let mut history = match self.store.history(&k).await {
                    Ok(h) => h,
                    Err(e) if e.to_string().contains("no messages") => continue,
                    Err(e) => return Err(format!("ledger bucket `{}`: {e}", self.bucket)),
                };
                while let Some(entry) = history.next().await {
                    let Ok(entry) = entry else { break };
                    if entry.operation != kv::Operation::Put {
                        continue;
                    }
                    if let Ok(item) = serde_json::from_slice::<Found>(&entry.value)
                        && (item.event.id == id || item.event.order_id.as_deref() == Some(id))
                    {
                        found.push(item);
                    }
                }
            }
            Ok(found)
        })
    }

    /// How many revisions the bucket holds.
    pub fn summary(&self) -> Result<(u64, Option<i64>), String> {
        self.runtime.block_on(async {
            let store = self.store.clone();
            let status = store
                .status()
                .await
                .map_err(|e| format!("ledger bucket `{}`: {e}", self.bucket))?;
            Ok((status.values(), None))
        })
    }
}

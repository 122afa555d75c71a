//! The `nats_kv` store: profiles in a JetStream key-value bucket that every instance of a
//! scaled-out deployment shares.
//!
//! Each instance keeps its own bounded copy in memory (lookups never wait on the network). It
//! watches the bucket, so what another instance learns reaches this one's memory within
//! milliseconds, and writes what it learns in the background. The bucket's `max_age` is
//! `ttl_secs`, so NATS itself drops profiles nobody has refreshed. A bucket that is down only
//! delays sharing: writes that fail are counted and logged, and lookups go on from memory.
//!
//! Orders remembered for AppendValue ([`super::order`]) share the bucket under keys of their
//! own, `order.{hex of the order key}` beside the profiles' bare hex, so the AppendValue of an
//! order one instance sent may reach another. An older version watching the same bucket skips
//! those keys, as `fbpixel enrichment forget` does: neither reads them as profiles.

use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::profile::{Key, Profile, user_key};
use super::{Change, EnrichmentConfig, Persist, order, store_error};
use crate::backoff::Backoff;
use crate::nats::{Connect, key_value};
use crate::sinks::facebook_pixel::mapping::OriginalEvent;
use crate::telemetry::{ComponentInfo, Throttle};

/// Changes waiting to be written; beyond this, new ones are dropped (and counted), so a bucket
/// that is down cannot take the process's memory.
const MAX_PENDING: usize = 100_000;

/// Writes changes to the bucket and reads what others wrote.
pub struct NatsKvStore {
    writes: mpsc::Sender<(Entry, Key, Option<Bytes>)>,
    remote: mpsc::Receiver<Change>,
    component: ComponentInfo,
}

/// What a bucket key holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Entry {
    Profile,
    Order,
}

/// Before the hex of an order's key; never hex itself, so it cannot be taken for a profile's.
const ORDER_PREFIX: &str = "order.";

/// The bucket key of `key`.
pub(super) fn entry_name(entry: Entry, key: &Key) -> String {
    match entry {
        Entry::Profile => hex::encode(key),
        Entry::Order => format!("{ORDER_PREFIX}{}", hex::encode(key)),
    }
}

/// The change a bucket entry named `name` stands for: its `value` written, or (`None`) erased.
/// `None` for a key or value this version cannot read.
pub(super) fn change(name: &str, value: Option<&[u8]>) -> Option<Change> {
    match name.strip_prefix(ORDER_PREFIX) {
        Some(order_hex) => {
            let key = decode_key(order_hex)?;
            let order = match value {
                Some(bytes) => Some(order::decode(bytes)?),
                None => None,
            };
            Some(Change::Order(key, order))
        }
        None => {
            let key = decode_key(name)?;
            let profile = match value {
                Some(bytes) => Some(Profile::decode(bytes)?),
                None => None,
            };
            Some(Change::Profile(key, profile))
        }
    }
}

async fn bucket(config: &EnrichmentConfig, component: &str) -> Result<kv::Store, String> {
    let connect = Connect {
        url: config.url.as_deref().unwrap_or_default(),
        auth: config.auth.as_ref(),
        name: "fbpixel-enrichment",
        component,
    };
    let bucket = kv::Config {
        bucket: config.bucket.clone(),
        history: 1,
        max_age: Duration::from_secs(config.ttl_secs),
        description: "fbpixel enrichment: hashed user_data keys by user".into(),
        ..Default::default()
    };
    key_value(&connect, bucket, true).await
}

impl NatsKvStore {
    /// Start connecting in the background: open (or create) the bucket, retrying with backoff
    /// while NATS is unreachable, then watch it; the bucket's current profiles arrive through
    /// [`Persist::remote_changes`] like every later change. Until connected, changes queue (up
    /// to [`MAX_PENDING`]) and lookups use what this instance learned itself.
    pub fn start(config: &EnrichmentConfig, component: ComponentInfo) -> Self {
        let (remote_tx, remote) = mpsc::channel(MAX_PENDING);
        let (writes, pending) = mpsc::channel::<(Entry, Key, Option<Bytes>)>(MAX_PENDING);
        let (config_copy, task_component) = (config.clone(), component.clone());
        tokio::spawn(async move {
            let stopped = remote_tx.clone();
            let Some(store) =
                connect_until_open(&config_copy, &task_component, || stopped.is_closed()).await
            else {
                return;
            };
            tokio::spawn(watch(store.clone(), remote_tx, task_component.clone()));
            write(store, pending, task_component).await;
        });
        Self {
            writes,
            remote,
            component,
        }
    }
}

/// The bucket, once NATS answers; `None` when the sink stopped first.
async fn connect_until_open(
    config: &EnrichmentConfig,
    component: &ComponentInfo,
    stopped: impl Fn() -> bool,
) -> Option<kv::Store> {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        if stopped() {
            return None;
        }
        match bucket(config, &component.id).await {
            Ok(store) => {
                tracing::info!(component = %component.id, bucket = %config.bucket, "enrichment: using the NATS key-value bucket");
                return Some(store);
            }
            Err(e) => {
                let wait = backoff.next_wait().max(Duration::from_millis(100));
                store_error(component);
                tracing::error!(
                    component = %component.id,
                    "enrichment: {e}; retrying in {wait:?} (events are sent meanwhile, enriched from memory only)"
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Forward what the bucket holds and every later change to the sink.
async fn watch(store: kv::Store, remote: mpsc::Sender<Change>, component: ComponentInfo) {
    let mut watch = match store.watch_with_history(">").await {
        Ok(watch) => watch,
        Err(e) => {
            store_error(&component);
            tracing::error!(component = %component.id, "enrichment: cannot watch the bucket: {e}; other instances' profiles will not arrive");
            return;
        }
    };
    while let Some(entry) = watch.next().await {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                store_error(&component);
                tracing::warn!(component = %component.id, "enrichment: bucket watch: {e}");
                continue;
            }
        };
        let value = match entry.operation {
            kv::Operation::Put => Some(&entry.value[..]),
            kv::Operation::Delete | kv::Operation::Purge => None,
        };
        let Some(change) = change(&entry.key, value) else {
            continue;
        };
        // Bounded: a watch that outruns the sink waits (NATS keeps the rest).
        if remote.send(change).await.is_err() {
            return; // The sink has stopped.
        }
    }
}

/// Write queued changes to the bucket until the sink stops.
async fn write(
    store: kv::Store,
    mut pending: mpsc::Receiver<(Entry, Key, Option<Bytes>)>,
    component: ComponentInfo,
) {
    let failure_log = Throttle::new(10);
    while let Some((entry, key, value)) = pending.recv().await {
        let name = entry_name(entry, &key);
        let result = match value {
            Some(value) => store
                .put(&name, value)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            None => store.purge(&name).await.map_err(|e| e.to_string()),
        };
        if let Err(e) = result {
            store_error(&component);
            if failure_log.ready() {
                tracing::warn!(component = %component.id, "enrichment: cannot write to the bucket: {e}");
            }
        }
    }
}

/// The key of a profile's bucket key (bare hex); `None` for anything else, an order's included.
fn decode_key(name: &str) -> Option<Key> {
    hex::decode(name).ok()?.try_into().ok()
}

impl NatsKvStore {
    fn queue(&self, entry: Entry, key: &Key, value: Option<Bytes>) {
        if self.writes.try_send((entry, *key, value)).is_err() {
            store_error(&self.component);
        }
    }
}

impl Persist for NatsKvStore {
    fn save(&mut self, key: &Key, profile: Option<&Profile>) {
        let value = profile.map(|p| Bytes::from(p.encode()));
        self.queue(Entry::Profile, key, value);
    }

    /// Other instances may still need a profile this one no longer has room for.
    fn evict(&mut self, _key: &Key) {}

    fn save_order(&mut self, key: &Key, order: &OriginalEvent) {
        self.queue(Entry::Order, key, Some(Bytes::from(order::encode(order))));
    }

    /// Left in the bucket: another instance may have room for it still, and one past the window
    /// is dropped by every instance that reads it and by the bucket's `max_age`; a purge from
    /// each instance would only add a delete marker per order.
    fn drop_order(&mut self, _key: &Key) {}

    fn remote_changes(&mut self, max: usize) -> Vec<Change> {
        let mut changes = Vec::new();
        while changes.len() < max
            && let Ok(change) = self.remote.try_recv()
        {
            changes.push(change);
        }
        changes
    }
}

/// Erase a user and the profiles linked to it from the bucket, for `fbpixel enrichment
/// forget`. Running instances drop them from memory as the purges reach their watches.
pub fn forget_blocking(config: &EnrichmentConfig, user_id: &str) -> Result<usize, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let store = bucket(config, "enrichment forget").await?;
        let mut links = Vec::new();
        let mut keys = store.keys().await.map_err(|e| e.to_string())?;
        while let Some(name) = keys.next().await {
            let name = name.map_err(|e| e.to_string())?;
            let Some(key) = decode_key(&name) else {
                continue;
            };
            let value = store.get(&name).await.map_err(|e| e.to_string())?;
            let link = value
                .as_deref()
                .and_then(Profile::decode)
                .and_then(|p| p.link_target().copied());
            links.push((key, link));
        }
        let doomed = super::linked_to(user_key(user_id), &links);
        let removed = doomed
            .iter()
            .filter(|k| links.iter().any(|(key, _)| key == *k))
            .count();
        // Twice, a moment apart: a running instance may write a profile back between the
        // purge and the moment its watch sees it.
        for pass in 0..2 {
            if pass == 1 {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            for key in &doomed {
                store
                    .purge(hex::encode(key))
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(removed)
    })
}

//! Match-quality enrichment: remember what users told us (an `identify`'s email and phone, a
//! browser's `fbp`, `fbc`, IP and user agent), hashed, and add it to their later events.
//!
//! Meta matches a server event to a person by its customer information, and most `track`
//! calls carry little of it: the email arrives once, in an `identify`, and later purchases
//! carry only `userId` or `anonymousId`. With `enrichment.enabled`, every message the sink
//! reads teaches [`Identities`] what its user_data holds (after normalization and hashing,
//! SPEC §4), filed under the message's `userId` and `anonymousId`; every event sent gets the
//! keys it lacks from what is remembered, its own values winning, except an `fbc` or `fbp`
//! that repeats a remembered click (or cookie) with a later creation time: that one is sent
//! with the remembered, first time ([`profile`]), and counts as enriched.
//!
//! Lookups are in memory, in the sink's own task: no lock, no I/O on the event path. The
//! `disk` and `nats_kv` stores persist (and, for `nats_kv`, share) the same profiles behind
//! it, written in the background; a store that fails is counted and logged, never waited on.
//!
//! Apart from the profiles, [`Identities`] remembers the conversions sent with an `order_id`
//! ([`order`]) for Meta's window of 7 days, so that a later `AppendValue` of the order can say
//! which event it adds value to; the same stores keep them.

pub(crate) mod disk;
pub(crate) mod nats_kv;
pub(crate) mod order;
pub(crate) mod profile;
#[cfg(test)]
mod tests;

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use lru::LruCache;
use metrics::{Counter, Gauge};
use serde::Deserialize;

use self::order::order_key;
use self::profile::{Key, Profile, anonymous_key, user_key};
use super::capi::{UserData, UserDataKeys};
use super::mapping::{OriginalEvent, UserIds, UserMemory};

/// The `enrichment` table of the sink.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnrichmentConfig {
    /// Off unless asked for: it keeps (hashed) personal data, which carries duties.
    #[serde(default)]
    pub enabled: bool,
    /// How long a remembered value is used after it was last seen.
    #[serde(default = "default_ttl")]
    pub ttl_secs: u64,
    /// Most users kept; the least recently seen are forgotten first. Orders remembered for
    /// AppendValue have a bound of their own of the same size (one knob for the memory the
    /// sink may take), the oldest forgotten first.
    #[serde(default = "default_max_users")]
    pub max_users: usize,
    /// Where profiles are kept.
    #[serde(default)]
    pub store: StoreKind,
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

/// Where profiles are kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StoreKind {
    /// In this process only; lost at restart.
    #[default]
    Memory,
    /// A redb file under `data_dir`; survives restarts.
    Disk,
    /// A JetStream key-value bucket shared by every instance.
    NatsKv,
}

fn default_ttl() -> u64 {
    30 * 24 * 3600
}
fn default_max_users() -> usize {
    1_000_000
}
fn default_bucket() -> String {
    "fbpixel_users".to_owned()
}

impl Default for EnrichmentConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            ttl_secs: default_ttl(),
            max_users: default_max_users(),
            store: StoreKind::default(),
            url: None,
            bucket: default_bucket(),
            auth: None,
        }
    }
}

impl EnrichmentConfig {
    /// Problems with the settings, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.enabled {
            return problems;
        }
        if self.ttl_secs == 0 {
            problems.push("enrichment.ttl_secs: must be at least 1".to_owned());
        }
        if self.max_users == 0 {
            problems.push("enrichment.max_users: must be at least 1".to_owned());
        }
        if let Some(Err(e)) = self.auth.as_ref().map(crate::nats::NatsAuth::check) {
            problems.push(format!("enrichment.auth: {e}"));
        }
        if self.store == StoreKind::NatsKv {
            if self.url.as_deref().is_none_or(|u| u.trim().is_empty()) {
                problems.push(
                    "enrichment.url: the nats_kv store needs the NATS server's URL (nats://host:4222)"
                        .to_owned(),
                );
            }
            if self.bucket.is_empty()
                || !self
                    .bucket
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                problems.push(
                    "enrichment.bucket: letters, digits, `_` and `-` only (a JetStream bucket name)"
                        .to_owned(),
                );
            }
        }
        problems
    }

    /// The folder of the disk store of sink `id` under `data_dir`.
    pub fn disk_dir(data_dir: Option<&Path>, id: &str) -> Result<PathBuf, String> {
        crate::config::state_dir(data_dir, "enrichment.store = \"disk\"", "enrichment", id)
    }
}

/// Where changed profiles and orders go to be kept (and, for `nats_kv`, shared). Writing never
/// blocks: an implementation queues the change and reports failures through its own counters.
pub(crate) trait Persist: Send {
    /// Keep `profile` under `key`; `None`: forget `key`.
    fn save(&mut self, key: &Key, profile: Option<&Profile>);

    /// `key` no longer fits in memory (`max_users`).
    fn evict(&mut self, key: &Key) {
        self.save(key, None);
    }

    /// Keep `order` under `key` (an [`order_key`]).
    fn save_order(&mut self, key: &Key, order: &OriginalEvent);

    /// This instance no longer keeps the order `key`: it is past Meta's window, or there is no
    /// room for it. A store of this instance's own drops it; a shared one may leave it to age.
    fn drop_order(&mut self, key: &Key);

    /// The orders the store held when it was opened, oldest first; those past the window are
    /// left out.
    fn loaded_orders(&mut self) -> Vec<(Key, OriginalEvent)> {
        Vec::new()
    }

    /// Up to `max` changes other instances made since the last call, to merge into memory.
    fn remote_changes(&mut self, max: usize) -> Vec<Change> {
        let _ = max;
        Vec::new()
    }
}

/// A change another instance made to a shared store.
#[derive(Debug)]
// Profiles arrived as `(Key, Option<Profile>)` before orders did, as large: boxing them now
// would add an allocation per change for nothing the small order variant needs.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Change {
    /// The profile of a key, written (`Some`) or erased.
    Profile(Key, Option<Profile>),
    /// The order of a key, written or erased.
    Order(Key, Option<OriginalEvent>),
}

/// Most remote changes merged per input batch, so that a large bucket's initial replay is
/// spread over many batches instead of stalling one.
const MAX_SYNC: usize = 10_000;

/// Most orders past their window dropped per call: the dropping is spread over calls (each adds
/// at most one order, so it keeps up) instead of stalling the one after a long quiet spell.
const MAX_PRUNE: usize = 64;

/// The remembered users of one sink: an LRU map in memory, optionally persisted.
pub struct Identities {
    users: LruCache<Key, Profile>,
    ttl: i64,
    /// A value seen again is rewritten to the store only this long after its last write, so
    /// steady traffic does not turn into a write per event.
    refresh: i64,
    persist: Option<Box<dyn Persist>>,
    /// Conversions sent with an `order_id`, by [`order_key`], for a later AppendValue. Apart
    /// from the profiles: they belong to no user, and live by Meta's window, not `ttl`. The
    /// recency is that of the first remembering (a recall does not promote), so the entry
    /// dropped for room or pruned first is the one with the least of its window left.
    orders: LruCache<Key, OriginalEvent>,
    /// The bound of `orders`, kept here: the cache itself is unbounded because
    /// `LruCache::new` reserves its whole capacity up front, and most sinks never see an order.
    max_orders: usize,
    /// The latest `now` this memory was given: [`Identities::sync`] is handed no clock, and
    /// judges the orders other instances wrote by it.
    now: i64,
}

impl Identities {
    /// Remember at most `max_users` users for `ttl_secs`, in memory only.
    pub fn new(max_users: usize, ttl_secs: u64) -> Self {
        let ttl = i64::try_from(ttl_secs).unwrap_or(i64::MAX);
        Self {
            users: LruCache::new(NonZeroUsize::new(max_users).unwrap_or(NonZeroUsize::MIN)),
            ttl,
            refresh: (ttl / 100).clamp(1, 3600),
            persist: None,
            orders: LruCache::unbounded(),
            max_orders: max_users.max(1),
            now: i64::MIN,
        }
    }

    /// Persist changes through `persist`, starting from `profiles` (oldest first).
    pub(crate) fn with_store(
        mut self,
        persist: Box<dyn Persist>,
        profiles: Vec<(Key, Profile)>,
        now: i64,
    ) -> Self {
        self.persist = Some(persist);
        self.tick(now);
        for (key, profile) in profiles {
            if !profile.is_expired(now, self.ttl) {
                self.insert(key, profile);
            }
        }
        let orders = self
            .persist
            .as_mut()
            .map(|p| p.loaded_orders())
            .unwrap_or_default();
        for (key, order) in orders {
            if order::fresh(&order, now) {
                self.insert_order(key, order);
            }
        }
        self
    }

    /// Users remembered now.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether no user is remembered.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Merge what other instances wrote since the last call.
    pub(crate) fn sync(&mut self) {
        let Some(persist) = &mut self.persist else {
            return;
        };
        for change in persist.remote_changes(MAX_SYNC) {
            match change {
                Change::Profile(key, Some(theirs)) => match self.users.get_mut(&key) {
                    Some(mine) => mine.merge(theirs),
                    None => {
                        self.users.push(key, theirs);
                    }
                },
                Change::Profile(key, None) => {
                    self.users.pop(&key);
                }
                Change::Order(key, Some(theirs)) => self.merge_order(key, theirs),
                Change::Order(key, None) => {
                    self.orders.pop(&key);
                }
            }
        }
    }

    /// An order another instance wrote. Not written back: it came from the store.
    fn merge_order(&mut self, key: Key, theirs: OriginalEvent) {
        // The bucket's history replayed at start holds orders long past the window.
        if !order::fresh(&theirs, self.now) {
            return;
        }
        let now = self.now;
        if self
            .orders
            .peek(&key)
            .is_some_and(|mine| order::keeps(mine, &theirs, now))
        {
            return;
        }
        self.insert_order(key, theirs);
    }

    fn tick(&mut self, now: i64) {
        self.now = self.now.max(now);
    }

    /// Keep `order` under `key`, first dropping the oldest order when there is no room.
    fn insert_order(&mut self, key: Key, order: OriginalEvent) {
        if !self.orders.contains(&key)
            && self.orders.len() >= self.max_orders
            && let Some((evicted, _)) = self.orders.pop_lru()
            && let Some(persist) = &mut self.persist
        {
            persist.drop_order(&evicted);
        }
        self.orders.push(key, order);
    }

    /// Drop (up to [`MAX_PRUNE`]) orders past Meta's window, oldest first.
    fn prune_orders(&mut self, now: i64) {
        for _ in 0..MAX_PRUNE {
            if self
                .orders
                .peek_lru()
                .is_none_or(|(_, order)| order::fresh(order, now))
            {
                return;
            }
            if let Some((key, _)) = self.orders.pop_lru()
                && let Some(persist) = &mut self.persist
            {
                persist.drop_order(&key);
            }
        }
    }

    fn insert(&mut self, key: Key, profile: Profile) {
        if let Some((evicted, _)) = self.users.push(key, profile)
            && evicted != key
            && let Some(persist) = &mut self.persist
        {
            persist.evict(&evicted);
        }
    }

    /// Apply `change` to the profile of `key` (a new one only if the change put something in
    /// it, so ids that taught nothing take no room); a persistent store learns the result when
    /// `change` says it changed.
    fn update(&mut self, key: Key, change: impl FnOnce(&mut Profile) -> bool) {
        let changed = match self.users.get_mut(&key) {
            Some(profile) => change(profile),
            None => {
                let mut profile = Profile::default();
                if !change(&mut profile) {
                    return;
                }
                self.insert(key, profile);
                true
            }
        };
        if changed
            && let Some(persist) = &mut self.persist
            && let Some(profile) = self.users.peek(&key)
        {
            persist.save(&key, Some(profile));
        }
    }
}

/// The store keys of a message's ids, computed once per message.
struct Keys {
    user: Option<Key>,
    anonymous: Option<Key>,
}

impl Keys {
    fn of(ids: &UserIds<'_>) -> Self {
        Keys {
            user: ids.user_id.as_deref().map(user_key),
            anonymous: ids.anonymous_id.as_deref().map(anonymous_key),
        }
    }
}

impl Identities {
    fn learn_keys(&mut self, keys: &Keys, user: &UserData<'_>, now: i64) {
        self.tick(now);
        let refresh = self.refresh;
        if let Some(key) = keys.user {
            self.update(key, |p| p.learn(user, now, refresh));
        }
        if let Some(anonymous) = keys.anonymous {
            self.update(anonymous, |p| {
                // Link first: a new owner of this anonymous id clears what the last one left.
                let linked = keys.user.is_some_and(|k| p.link(k, now, refresh));
                let learned = p.learn(user, now, refresh);
                learned | linked
            });
        }
    }

    fn recall_keys<'m>(&'m self, keys: &Keys, user: &mut UserData<'m>, now: i64) -> UserDataKeys {
        let ttl = self.ttl;
        let profile = |key: &Key| self.users.peek(key);
        let mut order: [Option<&'m Profile>; 4] = [None; 4];
        if let Some(key) = &keys.user {
            order[0] = profile(key);
            order[1] = order[0].and_then(|p| p.linked(now, ttl)).and_then(profile);
        }
        if let Some(key) = &keys.anonymous {
            let anonymous = profile(key);
            // An anonymous id last seen with someone else (a shared device) says nothing
            // about this user.
            let someone_else = anonymous
                .and_then(Profile::link_target)
                .is_some_and(|to| keys.user.is_some_and(|k| k != *to));
            if !someone_else {
                order[2] = anonymous;
                order[3] = anonymous.and_then(|p| p.linked(now, ttl)).and_then(profile);
            }
        }
        let mut added = UserDataKeys::default();
        // Each profile only fills what is missing, so the first in `order` wins; an `fbc` or
        // `fbp` is the exception, taking the earliest time any of them has for its id.
        for p in order.into_iter().flatten() {
            added = added | p.fill(user, now, ttl);
        }
        added
    }
}

impl UserMemory for Identities {
    fn learn(&mut self, ids: &UserIds<'_>, user: &UserData<'_>, now: i64) {
        self.learn_keys(&Keys::of(ids), user, now);
    }

    fn link(&mut self, previous_id: &str, user_id: &str, now: i64) {
        let (refresh, to) = (self.refresh, user_key(user_id));
        self.update(anonymous_key(previous_id), |p| p.link(to, now, refresh));
        let previous_user = user_key(previous_id);
        if self.users.contains(&previous_user) {
            self.update(previous_user, |p| p.link(to, now, refresh));
        }
    }

    fn learn_and_recall<'m>(
        &'m mut self,
        ids: &UserIds<'_>,
        user: &mut UserData<'m>,
        now: i64,
    ) -> UserDataKeys {
        let keys = Keys::of(ids);
        self.learn_keys(&keys, user, now);
        // What was learned is in; from here the memory is only read.
        let this: &'m Self = self;
        this.recall_keys(&keys, user, now)
    }

    fn remember_order(&mut self, order_id: &str, original: OriginalEvent, now: i64) {
        self.tick(now);
        self.prune_orders(now);
        if !order::fresh(&original, now) {
            return; // Nothing could name it any more.
        }
        let key = order_key(order_id);
        // The first conversion is the one an AppendValue updates: a repeat (a retry, a replay,
        // another event naming the same order) changes nothing while the first can still be
        // named.
        if self.orders.peek(&key).is_some_and(|o| order::fresh(o, now)) {
            return;
        }
        if let Some(persist) = &mut self.persist {
            persist.save_order(&key, &original);
        }
        self.insert_order(key, original);
    }

    fn recall_order(&mut self, order_id: &str, now: i64) -> Option<OriginalEvent> {
        self.tick(now);
        self.prune_orders(now);
        let key = order_key(order_id);
        let order = self.orders.peek(&key)?;
        if order::fresh(order, now) {
            return Some(order.clone());
        }
        // Past the window, though not yet at the oldest end (written late by another instance).
        self.orders.pop(&key);
        if let Some(persist) = &mut self.persist {
            persist.drop_order(&key);
        }
        None
    }
}

/// `user` and every key whose profile links to it, directly or through profiles that do
/// (an alias's previous id, and the anonymous ids linked to that), given each key's link.
pub(crate) fn linked_to(user: Key, links: &[(Key, Option<Key>)]) -> Vec<Key> {
    let mut doomed = vec![user];
    loop {
        let before = doomed.len();
        for (key, link) in links {
            if link.is_some_and(|to| doomed.contains(&to)) && !doomed.contains(key) {
                doomed.push(*key);
            }
        }
        if doomed.len() == before {
            return doomed;
        }
    }
}

/// The enrichment counters of one sink, registered once.
pub(crate) struct EnrichmentMetrics {
    enriched: Counter,
    keys: Vec<Counter>,
    users: Gauge,
}

/// Events that got at least one key from enrichment.
pub(crate) const ENRICHED_EVENTS: &str = "fbpixel_enriched_events_total";
/// Keys added by enrichment, by user_data key.
pub(crate) const ENRICHED_KEYS: &str = "fbpixel_enriched_keys_total";
/// Users remembered (gauge).
pub(crate) const ENRICHMENT_USERS: &str = "fbpixel_enrichment_users";
/// Store operations that failed (reads at start, writes, the shared bucket's updates).
pub(crate) const ENRICHMENT_STORE_ERRORS: &str = "fbpixel_enrichment_store_errors_total";

impl EnrichmentMetrics {
    /// Register the counters for the sink `metrics` belong to.
    pub fn new(metrics: &crate::telemetry::ComponentMetrics) -> Self {
        let labels = crate::telemetry::component_labels(metrics.info());
        let keys = UserDataKeys::NAMES
            .iter()
            .map(|key| {
                let mut l = labels.clone();
                l.push(metrics::Label::new("key", *key));
                metrics::counter!(ENRICHED_KEYS, l)
            })
            .collect();
        // Registered now so that a healthy store shows 0 rather than nothing.
        metrics::counter!(ENRICHMENT_STORE_ERRORS, labels.clone()).absolute(0);
        Self {
            enriched: metrics::counter!(ENRICHED_EVENTS, labels.clone()),
            keys,
            users: metrics::gauge!(ENRICHMENT_USERS, labels),
        }
    }

    /// One event got `added` keys.
    pub fn enriched(&self, added: UserDataKeys) {
        if added == UserDataKeys::default() {
            return;
        }
        self.enriched.increment(1);
        for (i, counter) in self.keys.iter().enumerate() {
            if added.has(i) {
                counter.increment(1);
            }
        }
    }

    /// The store holds `users` users.
    pub fn users(&self, users: usize) {
        self.users.set(users as f64);
    }
}

/// Count one failed store operation of the sink `info` names.
pub(crate) fn store_error(info: &crate::telemetry::ComponentInfo) {
    metrics::counter!(
        ENRICHMENT_STORE_ERRORS,
        crate::telemetry::component_labels(info)
    )
    .increment(1);
}

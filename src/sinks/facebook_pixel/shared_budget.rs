//! `request.shared_budget`: instances sending to the same pixel share Meta's budget through a
//! NATS key-value bucket, so N of them do not hit the limit together.
//!
//! Each instance writes, per pixel, `{pixel}.{instance}` → its latest [`Report`] (usage read
//! from Meta's headers, until when Meta asked it to wait, how often it was pushed back, its
//! limit) whenever that changes and at least every `ttl_secs / 4`, and watches `{pixel}.*`. A
//! peer not heard of for `ttl_secs` is gone (the bucket's `max_age` is `ttl_secs` too, so NATS
//! forgets it as well). From the live peers, each instance takes the most restrictive reading
//! (highest usage, latest pause), treats a peer's pushback as its own, and keeps to its share
//! of the growth and of `adaptive_concurrency.max` (see [`super::concurrency`]).
//!
//! A bucket that is down only loses the sharing: each instance goes on with its own readings.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::concurrency::Peers;
use super::flow::{Flow, Report};
use crate::backoff::Backoff;
use crate::nats::{Connect, NatsAuth, key_value};
use crate::telemetry::{self, ComponentMetrics};

/// The shortest time between two writes of one pixel's report.
const MIN_WRITE_INTERVAL: Duration = Duration::from_millis(50);

/// `request.shared_budget`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedBudgetConfig {
    /// The NATS server(s), as the nats source and sink take them.
    #[serde(default)]
    pub url: String,
    /// The key-value bucket, created when missing.
    #[serde(default = "default_bucket")]
    pub bucket: String,
    /// How to authenticate; unset: none.
    #[serde(default)]
    pub auth: Option<NatsAuth>,
    /// Seconds after which an instance not heard of counts as gone.
    #[serde(default = "default_ttl")]
    pub ttl_secs: f64,
}

fn default_bucket() -> String {
    "fbpixel_budget".into()
}
fn default_ttl() -> f64 {
    5.0
}

impl SharedBudgetConfig {
    /// Every invalid value, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = crate::nats::server_urls(&self.url) {
            problems.push(format!("request.shared_budget.url: {e}"));
        }
        if self.bucket.is_empty()
            || !self
                .bucket
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            problems.push(
                "request.shared_budget.bucket: letters, digits, `_` and `-` only (a JetStream bucket name)"
                    .to_owned(),
            );
        }
        if let Some(Err(e)) = self.auth.as_ref().map(NatsAuth::check) {
            problems.push(format!("request.shared_budget.auth: {e}"));
        }
        if !(self.ttl_secs.is_finite() && self.ttl_secs >= 1.0) {
            problems.push(
                "request.shared_budget.ttl_secs: must be at least 1 (seconds before a silent instance counts as gone)"
                    .to_owned(),
            );
        }
        problems
    }
}

/// One instance's report as the bucket holds it: times as Unix milliseconds, so other hosts
/// can read them.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Entry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_until_ms: Option<u64>,
    #[serde(default)]
    pub pushbacks: u64,
    #[serde(default)]
    pub limit: usize,
}

fn unix_ms(at: Instant, now: Instant, wall: SystemTime) -> u64 {
    let wall = wall + at.saturating_duration_since(now);
    wall.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn instant_of(ms: u64, now: Instant, wall: SystemTime) -> Instant {
    let wall_ms = wall
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    now + Duration::from_millis(ms.saturating_sub(wall_ms))
}

impl Entry {
    fn of(report: &Report) -> Entry {
        let now = Instant::now();
        Entry {
            usage_percent: report.usage_percent,
            paused_until_ms: report
                .paused_until
                .filter(|&u| u > now)
                .map(|u| unix_ms(u, now, SystemTime::now())),
            pushbacks: report.pushbacks,
            limit: report.limit,
        }
    }
}

/// The peers' latest entries, by instance, with when each arrived.
#[derive(Default)]
struct Peerage {
    entries: HashMap<String, (Entry, Instant)>,
    /// The pushbacks of each peer already taken in.
    seen_pushbacks: HashMap<String, u64>,
}

impl Peerage {
    /// What the live peers (not `me`) say, `me` counted among the live.
    fn peers(&mut self, me: &str, now: Instant, ttl: Duration) -> Peers {
        self.entries
            .retain(|_, (_, at)| now.duration_since(*at) < ttl);
        self.seen_pushbacks
            .retain(|id, _| self.entries.contains_key(id));
        let wall = SystemTime::now();
        let mut peers = Peers {
            live: 1,
            ..Peers::default()
        };
        for (id, (entry, _)) in &self.entries {
            if id == me {
                continue;
            }
            peers.live += 1;
            if let Some(u) = entry.usage_percent {
                peers.usage_percent = Some(peers.usage_percent.map_or(u, |p: f64| p.max(u)));
            }
            if let Some(ms) = entry.paused_until_ms {
                let until = instant_of(ms, now, wall);
                peers.paused_until = Some(peers.paused_until.map_or(until, |p| p.max(until)));
            }
            let seen = self
                .seen_pushbacks
                .entry(id.clone())
                .or_insert(entry.pushbacks);
            if entry.pushbacks > *seen {
                peers.back_pressure = true;
                *seen = entry.pushbacks;
            }
        }
        peers
    }
}

/// Share `flow`'s pixel budget through the bucket, in the background, until the sink stops.
pub fn start(
    config: &SharedBudgetConfig,
    pixel: &str,
    flow: &std::sync::Arc<Flow>,
    metrics: &ComponentMetrics,
) {
    let config = config.clone();
    let me = format!("{:016x}", fastrand::u64(..));
    let pixel = pixel.to_owned();
    let flow = std::sync::Arc::downgrade(flow);
    let instances = metrics::gauge!(telemetry::SHARED_INSTANCES, metrics.labels());
    instances.set(1.0);
    let component = metrics.info().id.clone();
    let mut reports = match flow.upgrade() {
        Some(flow) => flow.reports(),
        None => return,
    };
    tokio::spawn(async move {
        let Some(store) = open(&config, &component, &flow).await else {
            return;
        };
        let ttl = Duration::from_secs_f64(config.ttl_secs);
        let mut watch = match store.watch_with_history(format!("{pixel}.*")).await {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(component = %component, "request.shared_budget: cannot watch the bucket `{}`: {e}; this instance goes on with its own readings", config.bucket);
                return;
            }
        };
        let key = format!("{pixel}.{me}");
        let mut peerage = Peerage::default();
        let mut refresh = tokio::time::interval(ttl / 4);
        let mut failing = false;
        // A report changes with every answer: written at most every MIN_WRITE_INTERVAL.
        let mut last_write = tokio::time::Instant::now();
        let mut dirty = false;
        loop {
            let publish = tokio::select! {
                entry = watch.next() => {
                    match entry {
                        Some(Ok(entry)) => {
                            let id = entry.key.rsplit('.').next().unwrap_or_default().to_owned();
                            match entry.operation {
                                kv::Operation::Put => {
                                    if let Ok(e) = serde_json::from_slice::<Entry>(&entry.value) {
                                        peerage.entries.insert(id, (e, Instant::now()));
                                    }
                                }
                                kv::Operation::Delete | kv::Operation::Purge => {
                                    peerage.entries.remove(&id);
                                }
                            }
                        }
                        Some(Err(e)) => tracing::debug!(component = %component, "request.shared_budget: watch: {e}"),
                        None => return,
                    }
                    false
                }
                changed = reports.changed(), if !dirty => {
                    if changed.is_err() {
                        return; // The sink has stopped.
                    }
                    dirty = true;
                    false
                }
                () = tokio::time::sleep_until(last_write + MIN_WRITE_INTERVAL), if dirty => true,
                _ = refresh.tick() => true,
            };
            let Some(flow) = flow.upgrade() else { return };
            let peers = peerage.peers(&me, Instant::now(), ttl);
            instances.set(peers.live as f64);
            flow.set_peers(peers);
            drop(flow);
            if publish {
                dirty = false;
                last_write = tokio::time::Instant::now();
                let entry = Entry::of(&reports.borrow_and_update());
                let value = serde_json::to_vec(&entry).expect("an entry serializes");
                match store.put(&key, value.into()).await {
                    Ok(_) => failing = false,
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(component = %component, "request.shared_budget: cannot write to the bucket `{}`: {e}; the other instances do not see this one's readings until it can", config.bucket);
                    }
                    Err(_) => {}
                }
            }
        }
    });
}

/// The bucket, once NATS answers (retrying with backoff); `None` once the sink is gone.
async fn open(
    config: &SharedBudgetConfig,
    component: &str,
    flow: &std::sync::Weak<Flow>,
) -> Option<kv::Store> {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        flow.upgrade()?;
        match bucket(config, component).await {
            Ok(store) => return Some(store),
            Err(e) => {
                let wait = backoff.next_wait().max(Duration::from_millis(100));
                tracing::error!(component = %component, "request.shared_budget: {e}; retrying in {wait:?} (this instance goes on with its own readings meanwhile)");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

async fn bucket(config: &SharedBudgetConfig, component: &str) -> Result<kv::Store, String> {
    let connect = Connect {
        url: &config.url,
        auth: config.auth.as_ref(),
        name: "fbpixel-shared-budget",
        component,
    };
    let bucket = kv::Config {
        bucket: config.bucket.clone(),
        history: 1,
        max_age: Duration::from_secs_f64(config.ttl_secs),
        description: "fbpixel shared budget: each instance's Meta usage per pixel".into(),
        ..Default::default()
    };
    key_value(&connect, bucket, true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(usage: Option<f64>, pushbacks: u64) -> Entry {
        Entry {
            usage_percent: usage,
            pushbacks,
            limit: 4,
            ..Entry::default()
        }
    }

    #[test]
    fn live_peers_give_the_most_restrictive_reading_and_silent_ones_drop_out() {
        let ttl = Duration::from_secs(5);
        let start = Instant::now();
        let mut p = Peerage::default();
        p.entries.insert("me".into(), (entry(Some(99.0), 0), start));
        p.entries.insert("a".into(), (entry(Some(40.0), 3), start));
        let pause = unix_ms(start + Duration::from_secs(60), start, SystemTime::now());
        p.entries.insert(
            "b".into(),
            (
                Entry {
                    paused_until_ms: Some(pause),
                    ..entry(Some(80.0), 0)
                },
                start + Duration::from_secs(3),
            ),
        );
        let peers = p.peers("me", start + Duration::from_secs(1), ttl);
        assert_eq!(peers.live, 3);
        // Its own reading is not a peer's.
        assert_eq!(peers.usage_percent, Some(80.0));
        let until = peers.paused_until.expect("b's pause");
        assert!(until > start + Duration::from_secs(55), "{until:?}");
        // Pushbacks count once they rise, not for what a peer had before it was seen.
        assert!(!peers.back_pressure);
        p.entries.insert(
            "a".into(),
            (entry(Some(40.0), 4), start + Duration::from_secs(2)),
        );
        assert!(
            p.peers("me", start + Duration::from_secs(2), ttl)
                .back_pressure
        );
        assert!(
            !p.peers("me", start + Duration::from_secs(2), ttl)
                .back_pressure
        );
        // 7.5 s on, only b (heard of at 3 s) is still live.
        let peers = p.peers("me", start + Duration::from_millis(7500), ttl);
        assert_eq!(peers.live, 2);
        assert_eq!(peers.usage_percent, Some(80.0));
    }

    #[test]
    fn settings_are_checked_and_named() {
        let config = SharedBudgetConfig {
            url: String::new(),
            bucket: "a.b".into(),
            auth: None,
            ttl_secs: 0.0,
        };
        let problems = config.problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("request.shared_budget.url:"));
        assert!(problems[1].starts_with("request.shared_budget.bucket:"));
        assert!(problems[2].starts_with("request.shared_budget.ttl_secs:"));
    }
}

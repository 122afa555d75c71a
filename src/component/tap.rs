//! Taps: copies of a sample of the events leaving components, for `fbpixel tap` (the `[api]`'s
//! `GET /tap`), in the role of Vector's tap.
//!
//! Every [`Output`](super::Output) holds a [`TapPoint`]. While nobody taps, sending a batch costs
//! one relaxed atomic load ([`Taps::is_active`]); only while a tap is open does the output take
//! the registry's lock, once per batch, to offer the batch to each matching [`Subscription`].
//! Each subscription takes at most `rate` events per second (the first ones of each second) and
//! counts the rest as skipped; what it takes is copied as JSON bytes, so a tap never holds an
//! event's acknowledgement nor shares its buffer with the sink that parses it.
//!
//! The registry outlives any one running topology (it is [`Taps::global`], as the metrics
//! recorder is), so a tap stays open while the pipeline it watches is rebuilt.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::event::Event;
use crate::telemetry::ComponentInfo;

/// Events a subscription may have queued before further ones are skipped: a slow client loses
/// events, it never slows the pipeline.
const QUEUE: usize = 1024;

/// The registry of open taps and of the components that can be tapped.
#[derive(Clone, Default)]
pub struct Taps {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Open subscriptions: what outputs read, once per batch, before anything else.
    active: AtomicUsize,
    sessions: Mutex<Vec<Arc<Session>>>,
    /// The components whose outputs exist, for telling a tap which ids matched.
    points: Mutex<Vec<Weak<ComponentInfo>>>,
    next_id: AtomicU64,
}

/// One event copied out of a component's output.
#[derive(Debug)]
pub struct Tapped {
    /// The component it left.
    pub component: Arc<ComponentInfo>,
    /// Its JSON, as it left.
    pub json: Vec<u8>,
}

/// What a tap asks for.
#[derive(Clone, Debug, Default)]
pub struct TapRequest {
    /// Component ids whose outputs to sample; empty: every component.
    pub outputs_of: Vec<String>,
    /// Events per second, at most (at least 1).
    pub rate: u32,
}

struct Session {
    id: u64,
    outputs_of: Vec<String>,
    rate: u32,
    window: Mutex<Window>,
    skipped: AtomicU64,
    tx: mpsc::Sender<Tapped>,
}

/// The current one-second window of a subscription's rate limit.
struct Window {
    started: Instant,
    taken: u32,
}

impl Taps {
    /// The registry of this process, shared by every topology it runs and by the `[api]`.
    pub fn global() -> Taps {
        static GLOBAL: LazyLock<Taps> = LazyLock::new(Taps::default);
        GLOBAL.clone()
    }

    /// Whether any tap is open: the one check an output makes per batch when none is.
    #[inline]
    pub fn is_active(&self) -> bool {
        self.inner.active.load(Ordering::Relaxed) > 0
    }

    /// The tap point of one component's output.
    pub fn point(&self, info: ComponentInfo) -> TapPoint {
        let info = Arc::new(info);
        let mut points = self.inner.points.lock().expect("tap points lock");
        points.retain(|p| p.strong_count() > 0);
        points.push(Arc::downgrade(&info));
        TapPoint {
            taps: self.clone(),
            info,
        }
    }

    /// The components that can be tapped now (sources and transforms of running topologies).
    pub fn components(&self) -> Vec<Arc<ComponentInfo>> {
        let points = self.inner.points.lock().expect("tap points lock");
        let mut all: Vec<Arc<ComponentInfo>> = points.iter().filter_map(Weak::upgrade).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all.dedup_by(|a, b| a.id == b.id);
        all
    }

    /// Open a tap; it stays open until the subscription is dropped.
    pub fn subscribe(&self, request: TapRequest) -> Subscription {
        let (tx, rx) = mpsc::channel(QUEUE);
        let session = Arc::new(Session {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            outputs_of: request.outputs_of,
            rate: request.rate.max(1),
            window: Mutex::new(Window {
                started: Instant::now(),
                taken: 0,
            }),
            skipped: AtomicU64::new(0),
            tx,
        });
        self.inner
            .sessions
            .lock()
            .expect("tap sessions lock")
            .push(session.clone());
        self.inner.active.fetch_add(1, Ordering::Relaxed);
        Subscription {
            taps: self.clone(),
            session,
            rx,
        }
    }

    #[cold]
    fn offer(&self, component: &Arc<ComponentInfo>, events: &[Event], now: Instant) {
        let sessions = self.inner.sessions.lock().expect("tap sessions lock");
        for session in sessions.iter() {
            if session.matches(&component.id) {
                session.offer(component, events, now);
            }
        }
    }
}

impl Session {
    fn matches(&self, id: &str) -> bool {
        self.outputs_of.is_empty() || self.outputs_of.iter().any(|pattern| pattern == id)
    }

    /// Take what the rate allows of `events`, skip the rest.
    fn offer(&self, component: &Arc<ComponentInfo>, events: &[Event], now: Instant) {
        let allowed = {
            let mut window = self.window.lock().expect("tap window lock");
            if now.duration_since(window.started) >= Duration::from_secs(1) {
                window.started = now;
                window.taken = 0;
            }
            let room = (self.rate - window.taken) as usize;
            let n = events.len().min(room);
            window.taken += n as u32;
            n
        };
        let mut skipped = (events.len() - allowed) as u64;
        for event in &events[..allowed] {
            let tapped = Tapped {
                component: component.clone(),
                json: event.to_json().into_owned(),
            };
            if self.tx.try_send(tapped).is_err() {
                skipped += 1;
            }
        }
        if skipped > 0 {
            self.skipped.fetch_add(skipped, Ordering::Relaxed);
        }
    }
}

/// Where one component's output offers its batches to the open taps.
#[derive(Clone)]
pub struct TapPoint {
    taps: Taps,
    info: Arc<ComponentInfo>,
}

impl TapPoint {
    /// Offer a batch leaving the component: a relaxed load when nobody taps.
    #[inline]
    pub fn offer(&self, events: &[Event]) {
        if self.taps.is_active() {
            self.taps.offer(&self.info, events, Instant::now());
        }
    }

    /// [`TapPoint::offer`] at a given instant, so the rate limit's windows can be tested.
    #[cfg(test)]
    fn offer_at(&self, events: &[Event], now: Instant) {
        if self.taps.is_active() {
            self.taps.offer(&self.info, events, now);
        }
    }
}

/// An open tap: its events arrive on [`Subscription::recv`]; dropping it closes the tap.
pub struct Subscription {
    taps: Taps,
    session: Arc<Session>,
    rx: mpsc::Receiver<Tapped>,
}

impl Subscription {
    /// The next event taken; never ends while the subscription lives.
    pub async fn recv(&mut self) -> Tapped {
        match self.rx.recv().await {
            Some(tapped) => tapped,
            // The session holds its own sender, so the channel never closes first.
            None => std::future::pending().await,
        }
    }

    /// Events skipped since the last call (beyond the rate, or while the client was slow).
    pub fn take_skipped(&self) -> u64 {
        self.session.skipped.swap(0, Ordering::Relaxed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut sessions = self.taps.inner.sessions.lock().expect("tap sessions lock");
        sessions.retain(|s| s.id != self.session.id);
        self.taps.inner.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::acks::BatchStatus;
    use crate::event::track;

    fn info(id: &str) -> ComponentInfo {
        ComponentInfo {
            id: id.into(),
            kind: "source",
            type_name: "http_server".into(),
        }
    }

    fn batch(n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| Event::from_json(Bytes::from(format!(r#"{{"n":{i}}}"#))))
            .collect()
    }

    #[tokio::test]
    async fn a_tap_takes_at_most_rate_events_per_second_and_counts_the_rest_as_skipped() {
        let taps = Taps::default();
        let point = taps.point(info("in"));
        let mut tap = taps.subscribe(TapRequest {
            outputs_of: vec![],
            rate: 3,
        });
        let start = Instant::now();
        point.offer_at(&batch(2), start);
        point.offer_at(&batch(2), start);
        point.offer_at(&batch(5), start + Duration::from_millis(999));
        point.offer_at(&batch(2), start + Duration::from_millis(1000));
        let mut seen = Vec::new();
        for _ in 0..5 {
            let tapped = tap.recv().await;
            assert_eq!(tapped.component.id, "in");
            seen.push(String::from_utf8(tapped.json).unwrap());
        }
        assert_eq!(
            seen,
            [
                r#"{"n":0}"#,
                r#"{"n":1}"#,
                r#"{"n":0}"#,
                r#"{"n":0}"#,
                r#"{"n":1}"#
            ],
            "the first 3 of the first second, then the next second's"
        );
        assert_eq!(tap.take_skipped(), 1 + 5);
        assert_eq!(tap.take_skipped(), 0, "the count restarts once read");
        assert!(
            tap.rx.try_recv().is_err(),
            "nothing beyond the rate was queued"
        );
    }

    #[tokio::test]
    async fn a_tap_sees_only_the_components_it_names() {
        let taps = Taps::default();
        let (a, b) = (taps.point(info("a")), taps.point(info("b")));
        let mut tap = taps.subscribe(TapRequest {
            outputs_of: vec!["b".into()],
            rate: 100,
        });
        a.offer(&batch(1));
        b.offer(&batch(1));
        assert_eq!(tap.recv().await.component.id, "b");
        assert!(tap.rx.try_recv().is_err());
    }

    #[test]
    fn only_open_taps_make_outputs_do_more_than_a_load_and_dropping_one_closes_it() {
        let taps = Taps::default();
        assert!(!taps.is_active());
        let tap = taps.subscribe(TapRequest::default());
        let second = taps.subscribe(TapRequest::default());
        assert!(taps.is_active());
        drop(tap);
        assert!(taps.is_active());
        drop(second);
        assert!(!taps.is_active());
        assert!(taps.inner.sessions.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_tapped_copy_holds_no_acknowledgement() {
        let taps = Taps::default();
        let point = taps.point(info("in"));
        let mut tap = taps.subscribe(TapRequest {
            outputs_of: vec![],
            rate: 10,
        });
        let mut events = batch(1);
        let status = track(&mut events);
        point.offer(&events);
        for event in events {
            event.finalize(crate::acks::EventStatus::Delivered);
        }
        assert_eq!(status.wait().await, BatchStatus::Delivered);
        assert_eq!(tap.recv().await.json, br#"{"n":0}"#);
    }

    #[test]
    fn the_components_listed_are_those_whose_outputs_still_exist() {
        let taps = Taps::default();
        let a = taps.point(info("a"));
        let b = taps.point(info("b"));
        let ids = |taps: &Taps| -> Vec<String> {
            taps.components().iter().map(|c| c.id.clone()).collect()
        };
        assert_eq!(ids(&taps), ["a", "b"]);
        drop(b);
        assert_eq!(ids(&taps), ["a"]);
        drop(a);
        assert!(ids(&taps).is_empty());
    }
}

//! One pixel's flow control while the sink runs: the [`Controller`] behind a lock taken once
//! per request (never per event), the gauges that show it, and what it reports to the other
//! instances when the budget is shared.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use metrics::Gauge;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::concurrency::{Attempt, Concurrency, Controller, Outcome, Peers, Wait};
use super::service::Answer;
use super::usage::{self, Usage};
use crate::telemetry::{self, ComponentMetrics};

/// What this instance tells its peers of one pixel (see `shared_budget`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Report {
    /// The highest usage figure of the latest answer with usage headers.
    pub usage_percent: Option<f64>,
    /// Until when Meta asked this instance to wait.
    pub paused_until: Option<std::time::Instant>,
    /// Answers that pushed back so far (peers see it rise).
    pub pushbacks: u64,
    /// The concurrency limit now.
    pub limit: usize,
}

/// The flow control of one pixel, shared by its delivery tasks.
pub struct Flow {
    controller: Mutex<Controller>,
    /// Woken when a request ends or the limit or a pause changes.
    changed: Notify,
    report: watch::Sender<Report>,
    gauges: Gauges,
}

struct Gauges {
    limit: Gauge,
    in_flight: Gauge,
    regain: Gauge,
    /// `X-Business-Use-Case-Usage` and `X-App-Usage`: call_count, total_cputime, total_time.
    percents: [[Gauge; 3]; 2],
    ad_account: Gauge,
    component: String,
    pixel: String,
}

/// A request slot; gives it back when dropped.
pub struct Permit {
    flow: Arc<Flow>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.flow.lock();
        c.finish();
        self.flow.gauges.in_flight.set(c.in_flight() as f64);
        drop(c);
        self.flow.changed.notify_waiters();
    }
}

impl Flow {
    /// Flow control for the pixel whose `metrics` carry its `pixel` label.
    pub fn new(concurrency: Concurrency, pixel: &str, metrics: &ComponentMetrics) -> Arc<Self> {
        let controller = Controller::new(concurrency, Instant::now().into_std());
        let gauges = Gauges::new(pixel, metrics);
        gauges.limit.set(controller.limit() as f64);
        gauges.in_flight.set(0.0);
        gauges.regain.set(0.0);
        let (report, _) = watch::channel(Report {
            limit: controller.limit(),
            ..Report::default()
        });
        Arc::new(Flow {
            controller: Mutex::new(controller),
            changed: Notify::new(),
            report,
            gauges,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Controller> {
        // The controller is plain data: one that panicked mid-update is still usable.
        self.controller.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What this instance reports to its peers, as it changes.
    pub fn reports(&self) -> watch::Receiver<Report> {
        self.report.subscribe()
    }

    /// Wait for a request slot: until fewer than the limit are in flight and Meta's wait, if
    /// any, is over. Waiting here is the sink's backpressure.
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait = {
                let mut c = self.lock();
                match c.try_start(Instant::now().into_std()) {
                    Ok(()) => {
                        self.gauges.in_flight.set(c.in_flight() as f64);
                        return Permit { flow: self.clone() };
                    }
                    Err(wait) => wait,
                }
            };
            self.wait(wait, notified).await;
        }
    }

    /// Wait out a pause Meta asked for (a retry holds its slot, so it waits here).
    pub async fn ready(&self) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let paused = self.lock().paused_until(Instant::now().into_std());
            match paused {
                Some(until) => self.wait(Wait::Paused(until), notified).await,
                None => return,
            }
        }
    }

    async fn wait(
        &self,
        wait: Wait,
        notified: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
    ) {
        match wait {
            Wait::Full => notified.await,
            Wait::Paused(until) => {
                tokio::select! {
                    () = tokio::time::sleep_until(Instant::from_std(until)) => {}
                    () = notified => {}
                }
                self.gauges.regain.set(0.0);
            }
        }
    }

    /// Learn from one attempt: how long it took, what its answer meant, its usage headers.
    pub fn observe(&self, took: Duration, answer: &Answer, usage: &Usage) {
        let outcome = match answer {
            Answer::Accepted { .. } => Outcome::Accepted,
            Answer::Transient { reason, .. } if pushes_back(reason) => Outcome::BackPressure,
            _ => Outcome::Other,
        };
        let usage_percent = usage.max_percent();
        let now = Instant::now().into_std();
        let (before, limit, paused) = {
            let mut c = self.lock();
            let before = c.paused_until(now);
            c.observe(
                now,
                Attempt {
                    rtt: took,
                    outcome,
                    usage_percent,
                    wait: usage.wait,
                },
            );
            (before, c.limit(), c.paused_until(now))
        };
        self.gauges.usage(usage);
        self.gauges.limit.set(limit as f64);
        if let Some(until) = paused {
            let secs = until.saturating_duration_since(now).as_secs_f64();
            self.gauges.regain.set(secs);
            if before.is_none() {
                tracing::warn!(component = %self.gauges.component, pixel = %self.gauges.pixel, wait_secs = secs.round() as u64, "Meta asks to wait before the next request (estimated_time_to_regain_access or Retry-After); this pixel's events are held, not dropped, until then (fbpixel_meta_regain_access_seconds)");
            }
        }
        self.report.send_modify(|r| {
            if usage_percent.is_some() {
                r.usage_percent = usage_percent;
            }
            if usage.wait.is_some() {
                r.paused_until = paused;
            }
            r.pushbacks += u64::from(outcome == Outcome::BackPressure);
            r.limit = limit;
        });
        self.changed.notify_waiters();
    }

    /// Take in what the other instances sharing this pixel report.
    pub fn set_peers(&self, peers: Peers) {
        let now = Instant::now().into_std();
        let (before, limit, paused) = {
            let mut c = self.lock();
            let before = c.paused_until(now);
            c.set_peers(now, peers);
            (before, c.limit(), c.paused_until(now))
        };
        self.gauges.limit.set(limit as f64);
        if let Some(until) = paused {
            let secs = until.saturating_duration_since(now).as_secs_f64();
            self.gauges.regain.set(secs);
            if before.is_none() {
                tracing::warn!(component = %self.gauges.component, pixel = %self.gauges.pixel, wait_secs = secs.round() as u64, "Meta asked another instance sharing this pixel's budget to wait; this one holds its events too until then (request.shared_budget)");
            }
        }
        self.report.send_if_modified(|r| {
            let changed = r.limit != limit;
            r.limit = limit;
            changed
        });
        self.changed.notify_waiters();
    }
}

/// Whether a transient answer asks to slow down (rather than being a fault on the way).
fn pushes_back(reason: &str) -> bool {
    matches!(reason, "throttled" | "http_429" | "http_5xx" | "timeout")
}

impl Gauges {
    fn new(pixel: &str, metrics: &ComponentMetrics) -> Self {
        let percent = |header: &'static str, metric: &'static str| {
            let mut labels = metrics.labels();
            labels.push(metrics::Label::new("header", header));
            labels.push(metrics::Label::new("metric", metric));
            metrics::gauge!(telemetry::META_USAGE, labels)
        };
        let row = |header| {
            [
                percent(header, "call_count"),
                percent(header, "total_cputime"),
                percent(header, "total_time"),
            ]
        };
        Gauges {
            limit: metrics::gauge!(telemetry::CONCURRENCY_LIMIT, metrics.labels()),
            in_flight: metrics::gauge!(telemetry::IN_FLIGHT, metrics.labels()),
            regain: metrics::gauge!(telemetry::REGAIN_ACCESS, metrics.labels()),
            percents: [row(usage::BUSINESS_USE_CASE), row(usage::APP)],
            ad_account: percent(usage::AD_ACCOUNT, "acc_id_util_pct"),
            component: metrics.info().id.clone(),
            pixel: pixel.to_owned(),
        }
    }

    fn usage(&self, usage: &Usage) {
        for (gauges, percents) in self
            .percents
            .iter()
            .zip([usage.business_use_case, usage.app])
        {
            if let Some(percents) = percents {
                for (gauge, (_, value)) in gauges.iter().zip(percents.figures()) {
                    gauge.set(value);
                }
            }
        }
        if let Some(pct) = usage.ad_account {
            self.ad_account.set(pct);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::ComponentInfo;

    fn flow(concurrency: Concurrency) -> Arc<Flow> {
        let metrics = ComponentMetrics::new(ComponentInfo {
            id: "facebook".into(),
            kind: "sink",
            type_name: "facebook_pixel_server_side".into(),
        });
        Flow::new(concurrency, "123", &metrics)
    }

    #[tokio::test]
    async fn a_request_waits_for_a_slot_and_gets_the_one_given_back() {
        let flow = flow(Concurrency::Fixed(1));
        let first = flow.acquire().await;
        let second = tokio::spawn({
            let flow = flow.clone();
            async move { flow.acquire().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "the only slot is taken");
        drop(first);
        let _second = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the slot given back is taken")
            .unwrap();
        assert_eq!(flow.lock().in_flight(), 1);
    }

    #[tokio::test]
    async fn metas_wait_holds_new_requests_and_retries_until_it_is_over() {
        let flow = flow(Concurrency::Fixed(4));
        let throttled = Answer::Transient {
            reason: "throttled",
            detail: String::new(),
        };
        let usage = Usage {
            wait: Some(Duration::from_millis(300)),
            ..Usage::default()
        };
        let asked = Instant::now();
        flow.observe(Duration::from_millis(10), &throttled, &usage);
        assert_eq!(flow.reports().borrow().pushbacks, 1);
        flow.ready().await;
        assert!(
            asked.elapsed() >= Duration::from_millis(290),
            "{:?}",
            asked.elapsed()
        );
        let _permit = flow.acquire().await;
        assert!(asked.elapsed() >= Duration::from_millis(290));
    }
}

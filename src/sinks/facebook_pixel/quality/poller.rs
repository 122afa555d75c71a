//! The background task that reads Meta's Dataset Quality API every `quality.interval_secs` for
//! each pixel and sets the `fbpixel_meta_*` gauges from its answer.
//!
//! It shares the sink's connection pool and each pixel's token but nothing of delivery: a poll
//! that fails is counted in `fbpixel_meta_quality_polls_total{outcome}` and logged once per
//! failure streak (and once more when it recovers), and the events flow as before.

use std::time::Duration;

use hyper::Uri;
use metrics::{Label, counter, gauge};

use super::dataset::{self, EventQuality};
use crate::sinks::facebook_pixel::capi::UserDataKeys;
use crate::sinks::facebook_pixel::service::{Answer, GraphClient, advice};
use crate::telemetry::ComponentMetrics;

/// `fbpixel_meta_event_match_quality{pixel, event_name}`: Meta's EMQ score, 0 to 10.
pub const EVENT_MATCH_QUALITY: &str = "fbpixel_meta_event_match_quality";
/// `fbpixel_meta_match_key_coverage{pixel, event_name, key, identifier}`: percent of events
/// carrying the key, as Meta counts them.
pub const MATCH_KEY_COVERAGE: &str = "fbpixel_meta_match_key_coverage";
/// `fbpixel_meta_dedupe_key_coverage{pixel, event_name, dedupe_key, measure}`: percent, by
/// Meta's three measures of deduplication.
pub const DEDUPE_KEY_COVERAGE: &str = "fbpixel_meta_dedupe_key_coverage";
/// `fbpixel_meta_event_coverage{pixel, event_name}`: percent of Pixel events the Conversions API
/// covers (7-day average).
pub const EVENT_COVERAGE: &str = "fbpixel_meta_event_coverage";
/// `fbpixel_meta_data_freshness_seconds{pixel, event_name, upload_frequency}`: the delay Meta's
/// upload frequency allows.
pub const DATA_FRESHNESS: &str = "fbpixel_meta_data_freshness_seconds";
/// `fbpixel_meta_diagnostics{pixel, event_name, kind}`: percent of events a diagnostic affects.
pub const DIAGNOSTICS: &str = "fbpixel_meta_diagnostics";
/// `fbpixel_meta_quality_polls_total{pixel, outcome}`: polls of the Dataset Quality API.
pub const POLLS: &str = "fbpixel_meta_quality_polls_total";

/// Every `outcome` of [`POLLS`].
pub const OUTCOMES: [&str; 5] = [
    "ok",
    "transient",
    "credentials",
    "rejected",
    "invalid_answer",
];

/// One pixel to poll: its Dataset Quality URL and the client holding its token.
#[derive(Clone)]
pub struct Target {
    /// The pixel's ID.
    pub pixel: String,
    /// `GET …/dataset_quality?dataset_id=…`.
    pub url: Uri,
    /// The pixel's client (token, timeout, the sink's pool).
    pub client: GraphClient,
}

impl Target {
    /// Ask Meta once: its answer, or a sentence saying why there is none (with the
    /// [`OUTCOMES`] label). The sentence holds Meta's error, never the token or the URL.
    pub async fn fetch(&self) -> Result<Vec<EventQuality>, (&'static str, String)> {
        let body =
            self.client
                .get_object(self.url.clone())
                .await
                .map_err(|answer| match answer {
                    Answer::Transient { detail, .. } => ("transient", detail),
                    Answer::Credentials(e) => ("credentials", credentials_advice(&e)),
                    Answer::Rejected(e) => ("rejected", e.to_string()),
                    Answer::Accepted { .. } => unreachable!("an accepted answer is a body"),
                })?;
        dataset::Answer::parse(&body)
            .map(|answer| answer.web)
            .map_err(|e| ("invalid_answer", e))
    }
}

/// Meta's Dataset Quality API asks more of a token than sending events does.
fn credentials_advice(e: &crate::sinks::facebook_pixel::service::GraphError) -> String {
    match e.code {
        Some(10 | 200..=299) => format!(
            "the access token may send events but not read the Dataset Quality API: it needs the ads_read and ads_management (or business_management) permissions, and its user \"Use events dataset\" access to the pixel ({e})"
        ),
        _ => advice(e),
    }
}

/// The poller of one sink, not started yet.
pub struct Poller {
    interval: Duration,
    targets: Vec<Target>,
}

/// A started poller; stops when dropped (when the sink's `run` returns).
pub struct Running(tokio::task::JoinHandle<()>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Poller {
    /// Poll `targets` every `interval`, the first time right away.
    pub fn new(interval: Duration, targets: Vec<Target>) -> Self {
        Self { interval, targets }
    }

    /// Start polling in the background; `metrics` are the sink's.
    pub fn spawn(self, metrics: &ComponentMetrics) -> Running {
        let pixels: Vec<(Target, ComponentMetrics)> = self
            .targets
            .into_iter()
            .map(|t| {
                let m = metrics.with_label("pixel", t.pixel.clone());
                for outcome in OUTCOMES {
                    counter!(POLLS, with(&m, &[("outcome", outcome)])).increment(0);
                }
                (t, m)
            })
            .collect();
        let interval = self.interval;
        Running(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = vec![false; pixels.len()];
            loop {
                ticker.tick().await;
                for ((target, metrics), failing) in pixels.iter().zip(&mut failing) {
                    poll(target, metrics, failing, interval).await;
                }
            }
        }))
    }
}

/// The log line a poll calls for: the first failure of a streak, or the first success after one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    Failing,
    Recovered,
}

/// Which line, if any, a poll that succeeded (`ok`) calls for; `failing` is the pixel's streak.
fn line(failing: &mut bool, ok: bool) -> Option<Line> {
    match (ok, std::mem::replace(failing, !ok)) {
        (false, false) => Some(Line::Failing),
        (true, true) => Some(Line::Recovered),
        _ => None,
    }
}

/// One poll of one pixel: gauges set, outcome counted, a streak of failures logged once.
/// Returns the line it logged.
async fn poll(
    target: &Target,
    metrics: &ComponentMetrics,
    failing: &mut bool,
    every: Duration,
) -> Option<Line> {
    let component = &metrics.info().id;
    let result = target.fetch().await;
    let outcome = result
        .as_ref()
        .map_or_else(|(outcome, _)| *outcome, |_| "ok");
    counter!(POLLS, with(metrics, &[("outcome", outcome)])).increment(1);
    let logged = line(failing, result.is_ok());
    match (&result, logged) {
        (Ok(events), _) => {
            set_gauges(metrics, events);
            if logged.is_some() {
                tracing::info!(
                    component = %component,
                    pixel = %target.pixel,
                    "Meta's Dataset Quality API answers again; the fbpixel_meta_* gauges are current"
                );
            }
        }
        (Err((outcome, why)), Some(_)) => tracing::warn!(
            component = %component,
            pixel = %target.pixel,
            "reading Meta's Dataset Quality API failed: {why}. Delivery is not affected; the fbpixel_meta_* gauges keep their last values. Asked again every {} s, logged again once it answers; counted in {POLLS}{{outcome=\"{outcome}\"}}",
            every.as_secs()
        ),
        (Err(_), None) => {}
    }
    logged
}

fn with(metrics: &ComponentMetrics, extra: &[(&'static str, &str)]) -> Vec<Label> {
    let mut labels = metrics.labels();
    labels.extend(extra.iter().map(|(k, v)| Label::new(*k, (*v).to_owned())));
    labels
}

/// One gauge sample: a metric name, its extra labels and value.
pub type Sample = (&'static str, Vec<(&'static str, String)>, f64);

/// The gauges Meta's answer sets, besides the sink's and pixel's labels: pure, so the mapping
/// is tested without a recorder. Metrics Meta left out set nothing.
pub fn samples(events: &[EventQuality]) -> Vec<Sample> {
    let mut out = Vec::new();
    for event in events {
        let name = || ("event_name", event.event_name.clone());
        if let Some(emq) = &event.event_match_quality {
            if let Some(score) = emq.composite_score {
                out.push((EVENT_MATCH_QUALITY, vec![name()], score));
            }
            for key in &emq.match_key_feedback {
                if let Some(p) = key.coverage.and_then(|c| c.percentage) {
                    let ours = dataset::our_key(&key.identifier, &UserDataKeys::NAMES)
                        .map_or_else(|| key.identifier.clone(), str::to_owned);
                    out.push((
                        MATCH_KEY_COVERAGE,
                        vec![
                            name(),
                            ("key", ours),
                            ("identifier", key.identifier.clone()),
                        ],
                        p,
                    ));
                }
            }
            for d in &emq.diagnostics {
                if let Some(p) = d.percentage {
                    out.push((DIAGNOSTICS, vec![name(), ("kind", d.name.clone())], p));
                }
            }
        }
        if let Some(p) = event.event_coverage.and_then(|c| c.percentage) {
            out.push((EVENT_COVERAGE, vec![name()], p));
        }
        for key in &event.dedupe_key_feedback {
            for (measure, p) in key.shares() {
                if let Some(p) = p {
                    out.push((
                        DEDUPE_KEY_COVERAGE,
                        vec![
                            name(),
                            ("dedupe_key", key.dedupe_key.clone()),
                            ("measure", measure.to_owned()),
                        ],
                        p,
                    ));
                }
            }
        }
        if let Some(freshness) = &event.data_freshness
            && let Some(seconds) = freshness.seconds()
        {
            out.push((
                DATA_FRESHNESS,
                vec![
                    name(),
                    ("upload_frequency", freshness.upload_frequency.clone()),
                ],
                seconds,
            ));
        }
    }
    out
}

fn set_gauges(metrics: &ComponentMetrics, events: &[EventQuality]) {
    for (metric, labels, value) in samples(events) {
        let labels: Vec<(&'static str, &str)> =
            labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        gauge!(metric, with(metrics, &labels)).set(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::facebook_pixel::quality::dataset::Answer as Dataset;

    const ANSWER: &str = r#"{"web":[{"event_name":"Purchase","event_match_quality":{"composite_score":6.2,"match_key_feedback":[{"identifier":"email","coverage":{"percentage":100}},{"identifier":"phone","coverage":{"percentage":40}}],"diagnostics":[{"name":"Server sending mismatched IP addresses","percentage":61.5}]},"event_coverage":{"percentage":34.1,"goal_percentage":75},"dedupe_key_feedback":[{"dedupe_key":"event_id","server_events_with_dedupe_key":{"percentage":100}}],"data_freshness":{"upload_frequency":"hourly"}},{"event_name":"Lead","data_freshness":{"upload_frequency":"monthly"}}]}"#;

    fn find<'s>(samples: &'s [Sample], metric: &str, label: (&str, &str)) -> Option<&'s Sample> {
        samples.iter().find(|(m, labels, _)| {
            *m == metric && labels.iter().any(|(k, v)| *k == label.0 && v == label.1)
        })
    }

    #[test]
    fn each_documented_metric_becomes_its_gauge_with_its_labels() {
        let events = Dataset::parse(ANSWER.as_bytes()).unwrap().web;
        let s = samples(&events);
        assert_eq!(
            find(&s, EVENT_MATCH_QUALITY, ("event_name", "Purchase"))
                .unwrap()
                .2,
            6.2
        );
        let email = find(&s, MATCH_KEY_COVERAGE, ("key", "em")).unwrap();
        assert_eq!(email.2, 100.0);
        assert!(email.1.contains(&("identifier", "email".to_owned())));
        // An identifier Meta's examples do not name keeps Meta's name as its key.
        assert_eq!(
            find(&s, MATCH_KEY_COVERAGE, ("key", "phone")).unwrap().2,
            40.0
        );
        assert_eq!(
            find(
                &s,
                DIAGNOSTICS,
                ("kind", "Server sending mismatched IP addresses")
            )
            .unwrap()
            .2,
            61.5
        );
        assert_eq!(
            find(&s, EVENT_COVERAGE, ("event_name", "Purchase"))
                .unwrap()
                .2,
            34.1
        );
        let dedupe = find(
            &s,
            DEDUPE_KEY_COVERAGE,
            ("measure", "server_events_with_dedupe_key"),
        )
        .unwrap();
        assert_eq!(dedupe.2, 100.0);
        assert!(dedupe.1.contains(&("dedupe_key", "event_id".to_owned())));
        // Measures Meta left out set no gauge.
        assert!(
            find(
                &s,
                DEDUPE_KEY_COVERAGE,
                ("measure", "browser_events_with_dedupe_key")
            )
            .is_none()
        );
        let fresh = find(&s, DATA_FRESHNESS, ("event_name", "Purchase")).unwrap();
        assert_eq!(fresh.2, 3600.0);
        // A frequency Meta does not list has no number of seconds.
        assert!(find(&s, DATA_FRESHNESS, ("event_name", "Lead")).is_none());
    }

    #[tokio::test]
    async fn failures_are_counted_every_time_and_logged_once_per_streak() {
        // A port nothing listens on: every poll fails with a connection error.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let settings = crate::sinks::facebook_pixel::service::GraphSettings::new(
            &crate::sinks::facebook_pixel::service::GraphTarget {
                endpoint: &format!("http://127.0.0.1:{port}"),
                api_version: "v26.0",
                pixel_id: "1",
                access_token: "TOKEN-x",
                token_key: "access_token",
                app_secret: None,
                test_event_code: None,
                partner_agent: None,
                upload: [
                    ("upload_tag", None),
                    ("upload_source", None),
                    ("namespace_id", None),
                ],
                timeout: Duration::from_secs(2),
            },
        )
        .unwrap();
        let target = Target {
            pixel: "1".into(),
            url: dataset::url(
                &format!("http://127.0.0.1:{port}"),
                "v26.0",
                "1",
                None,
                None,
            )
            .unwrap(),
            client: GraphClient::new(settings).unwrap(),
        };
        let err = target.fetch().await.unwrap_err();
        assert_eq!(err.0, "transient");
        assert!(!err.1.contains("TOKEN-x"), "{}", err.1);
        let metrics = ComponentMetrics::new(crate::telemetry::ComponentInfo {
            id: "q".into(),
            kind: "sink",
            type_name: "facebook_pixel_server_side".into(),
        });
        let mut failing = false;
        let every = Duration::from_secs(1);
        assert_eq!(
            poll(&target, &metrics, &mut failing, every).await,
            Some(Line::Failing)
        );
        assert_eq!(
            poll(&target, &metrics, &mut failing, every).await,
            None,
            "logged once"
        );
    }

    #[test]
    fn a_streak_is_logged_when_it_begins_and_when_it_ends() {
        let mut failing = false;
        let lines: Vec<Option<Line>> = [true, false, false, false, true, true, false]
            .into_iter()
            .map(|ok| line(&mut failing, ok))
            .collect();
        assert_eq!(
            lines,
            [
                None,
                Some(Line::Failing),
                None,
                None,
                Some(Line::Recovered),
                None,
                Some(Line::Failing)
            ]
        );
    }
}

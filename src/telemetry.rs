//! Metric names, per-component metric handles and log set-up, in one place.
//!
//! Metric names follow Vector's component specification so that dashboards
//! built for Vector work here: every component counts what it received and
//! sent, its errors by `error_type` and `stage`, and what it discarded,
//! labelled by `component_id`, `component_kind` and `component_type`.

use metrics::{Counter, Label, counter};

/// `component_received_events_total`
pub(crate) const RECEIVED_EVENTS: &str = "component_received_events_total";
/// `component_received_event_bytes_total`
pub(crate) const RECEIVED_EVENT_BYTES: &str = "component_received_event_bytes_total";
/// `component_received_bytes_total`: bytes read from the wire by a source.
pub(crate) const RECEIVED_BYTES: &str = "component_received_bytes_total";
/// `component_sent_events_total`
pub(crate) const SENT_EVENTS: &str = "component_sent_events_total";
/// `component_sent_event_bytes_total`
pub(crate) const SENT_EVENT_BYTES: &str = "component_sent_event_bytes_total";
/// `component_errors_total{error_type, stage}`
pub(crate) const ERRORS: &str = "component_errors_total";
/// `component_discarded_events_total{intentional}`
pub(crate) const DISCARDED_EVENTS: &str = "component_discarded_events_total";

/// `fbpixel_config_reloads_total{outcome="applied"|"refused"}`
pub(crate) const CONFIG_RELOADS: &str = "fbpixel_config_reloads_total";

/// Count configuration reloads by outcome (`n` = 0 registers the counter).
pub fn config_reloaded(outcome: &'static str, n: u64) {
    counter!(CONFIG_RELOADS, "outcome" => outcome).increment(n);
}

/// Where in a component an error happened (the `stage` label).
#[derive(Clone, Copy, Debug)]
pub enum Stage {
    /// Reading from the outside world.
    Receiving,
    /// Decoding, transforming, mapping.
    Processing,
    /// Writing to the outside world.
    Sending,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::Receiving => "receiving",
            Stage::Processing => "processing",
            Stage::Sending => "sending",
        }
    }
}

/// The identity of a running component, as its metrics and logs name it.
#[derive(Clone, Debug)]
pub struct ComponentInfo {
    /// Its id: the table key in the config.
    pub id: String,
    /// `source`, `transform` or `sink`.
    pub kind: &'static str,
    /// Its `type`.
    pub type_name: String,
}

/// Counters registered once per component, so the hot path only adds.
#[derive(Clone)]
pub struct ComponentMetrics {
    info: ComponentInfo,
    /// Labels this component's own (`fbpixel_*`) metrics carry besides its name, such as the
    /// Conversions API sink's `pixel`. Vector's `component_*` metrics never do.
    extra: Vec<Label>,
    received_events: Counter,
    received_event_bytes: Counter,
    sent_events: Counter,
    sent_event_bytes: Counter,
    discarded_intentional: Counter,
    discarded_unintentional: Counter,
    received_bytes: Counter,
}

impl ComponentMetrics {
    /// Register the counters of one component.
    pub fn new(info: ComponentInfo) -> Self {
        let labels = labels(&info);
        let with = |extra: (&'static str, &'static str)| {
            let mut l = labels.clone();
            l.push(Label::new(extra.0, extra.1));
            l
        };
        Self {
            received_events: counter!(RECEIVED_EVENTS, labels.clone()),
            received_event_bytes: counter!(RECEIVED_EVENT_BYTES, labels.clone()),
            sent_events: counter!(SENT_EVENTS, labels.clone()),
            sent_event_bytes: counter!(SENT_EVENT_BYTES, labels.clone()),
            discarded_intentional: counter!(DISCARDED_EVENTS, with(("intentional", "true"))),
            discarded_unintentional: counter!(DISCARDED_EVENTS, with(("intentional", "false"))),
            received_bytes: counter!(RECEIVED_BYTES, labels.clone()),
            info,
            extra: Vec::new(),
        }
    }

    /// The same component's counters, with `key = value` on its own metrics (see
    /// [`ComponentMetrics::labels`]).
    pub fn with_label(&self, key: &'static str, value: impl Into<String>) -> Self {
        let mut this = self.clone();
        this.extra.push(Label::new(key, value.into()));
        this
    }

    /// The labels of this component's own metrics: its name, and any added with
    /// [`ComponentMetrics::with_label`].
    pub(crate) fn labels(&self) -> Vec<Label> {
        let mut l = labels(&self.info);
        l.extend(self.extra.iter().cloned());
        l
    }

    /// The component these counters belong to.
    pub fn info(&self) -> &ComponentInfo {
        &self.info
    }

    /// Count events received (and their size in bytes, when known).
    pub fn received(&self, events: usize, bytes: usize) {
        self.received_events.increment(events as u64);
        if bytes > 0 {
            self.received_event_bytes.increment(bytes as u64);
        }
    }

    /// Count events passed on or delivered.
    pub fn sent(&self, events: usize, bytes: usize) {
        self.sent_events.increment(events as u64);
        if bytes > 0 {
            self.sent_event_bytes.increment(bytes as u64);
        }
    }

    /// Count events dropped; `intentional` when the configuration asked for it.
    pub fn discarded(&self, events: usize, intentional: bool) {
        if intentional {
            self.discarded_intentional.increment(events as u64);
        } else {
            self.discarded_unintentional.increment(events as u64);
        }
    }

    /// Count one error. Errors are rare, so the counter is looked up each time.
    pub fn error(&self, error_type: &'static str, stage: Stage) {
        let mut l = labels(&self.info);
        l.push(Label::new("error_type", error_type));
        l.push(Label::new("stage", stage.as_str()));
        counter!(ERRORS, l).increment(1);
    }

    /// Register an error counter at 0 (see `register_delivery_counters`).
    pub fn register_error(&self, error_type: &'static str, stage: Stage) {
        let mut l = labels(&self.info);
        l.push(Label::new("error_type", error_type));
        l.push(Label::new("stage", stage.as_str()));
        counter!(ERRORS, l).increment(0);
    }

    /// Count bytes read from the wire (before decoding).
    pub fn received_wire_bytes(&self, bytes: usize) {
        self.received_bytes.increment(bytes as u64);
    }
}

/// The labels that name a component in every metric.
pub(crate) fn component_labels(info: &ComponentInfo) -> Vec<Label> {
    labels(info)
}

fn labels(info: &ComponentInfo) -> Vec<Label> {
    vec![
        Label::new("component_id", info.id.clone()),
        Label::new("component_kind", info.kind),
        Label::new("component_type", info.type_name.clone()),
    ]
}

/// The format of log lines on stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Install the global `tracing` subscriber: level from `FBPIXEL_LOG` (an
/// `EnvFilter` directive, default `info`), lines on stderr.
pub(crate) fn init_logs(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("FBPIXEL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    // A second call (tests running several pipelines) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

// ---- The Conversions API sink's own metrics (besides the component ones). ----

/// `fbpixel_requests_total{outcome}`: Graph API requests by what their answer meant.
pub(crate) const REQUESTS: &str = "fbpixel_requests_total";
/// `fbpixel_request_duration_seconds`: Graph API request latency (histogram).
pub(crate) const REQUEST_DURATION: &str = "fbpixel_request_duration_seconds";
/// `fbpixel_retries_total{reason}`: attempts repeated, by why.
pub(crate) const RETRIES: &str = "fbpixel_retries_total";
/// `fbpixel_batch_events`: events per batch (histogram).
pub(crate) const BATCH_EVENTS: &str = "fbpixel_batch_events";
/// `fbpixel_bisections_total`: rejected batches split in two.
pub(crate) const BISECTIONS: &str = "fbpixel_bisections_total";
/// `fbpixel_events_unconfirmed_total`: events sent beyond Meta's `events_received`.
pub(crate) const UNCONFIRMED: &str = "fbpixel_events_unconfirmed_total";
/// `fbpixel_dead_lettered_events_total{stage}`: events written to the dead letter.
pub(crate) const DEAD_LETTERED: &str = "fbpixel_dead_lettered_events_total";
/// `fbpixel_skipped_events_total{reason}`: messages intentionally not sent.
pub(crate) const SKIPPED: &str = "fbpixel_skipped_events_total";
/// `fbpixel_user_data_key_events_total{key}`: mapped events carrying each user_data key.
pub(crate) const USER_DATA_KEYS: &str = "fbpixel_user_data_key_events_total";
/// `fbpixel_healthy`: 1 while the Graph API accepts the sink's credentials, else 0.
pub(crate) const HEALTHY: &str = "fbpixel_healthy";

/// Histogram buckets, set when the Prometheus recorder is installed.
pub(crate) const HISTOGRAM_BUCKETS: [(&str, &[f64]); 2] = [
    (
        REQUEST_DURATION,
        &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
    ),
    (
        BATCH_EVENTS,
        &[1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 750.0, 1000.0],
    ),
];

fn with(metrics: &ComponentMetrics, key: &'static str, value: &'static str) -> Vec<Label> {
    let mut l = metrics.labels();
    l.push(Label::new(key, value));
    l
}

/// Why the Conversions API sink repeats a request: every `reason` of `fbpixel_retries_total`.
pub(crate) const RETRY_REASONS: [&str; 9] = [
    "connection",
    "timeout",
    "http_5xx",
    "http_429",
    "throttled",
    "graph_transient",
    "invalid_answer",
    "oversized_answer",
    "credentials",
];

/// Register the Conversions API sink's counters at 0 when it starts, so that alerts on
/// `rate()` or `absent()` see them before the first retry, bisection or error: those of the
/// sink itself here, those of each pixel with [`register_pixel_counters`].
pub(crate) fn register_delivery_counters(metrics: &ComponentMetrics) {
    counter!(DEAD_LETTERED, with(metrics, "stage", "mapping")).increment(0);
    for (error_type, stage) in [
        ("mapping_rejected", Stage::Processing),
        ("delivery_rejected", Stage::Processing),
        ("dead_letter_write_failed", Stage::Sending),
    ] {
        metrics.register_error(error_type, stage);
    }
}

/// Register one pixel's delivery counters at 0; `metrics` carries its `pixel` label.
pub(crate) fn register_pixel_counters(metrics: &ComponentMetrics) {
    for reason in RETRY_REASONS {
        counter!(RETRIES, with(metrics, "reason", reason)).increment(0);
    }
    for outcome in ["accepted", "transient", "credentials", "rejected"] {
        counter!(REQUESTS, with(metrics, "outcome", outcome)).increment(0);
    }
    counter!(DEAD_LETTERED, with(metrics, "stage", "delivery")).increment(0);
    counter!(BISECTIONS, metrics.labels()).increment(0);
    counter!(UNCONFIRMED, metrics.labels()).increment(0);
}

/// Count one Graph API request and its latency.
pub(crate) fn request(
    metrics: &ComponentMetrics,
    outcome: &'static str,
    took: std::time::Duration,
) {
    counter!(REQUESTS, with(metrics, "outcome", outcome)).increment(1);
    metrics::histogram!(REQUEST_DURATION, metrics.labels()).record(took.as_secs_f64());
}

/// Count one retry.
pub(crate) fn retry(metrics: &ComponentMetrics, reason: &'static str) {
    counter!(RETRIES, with(metrics, "reason", reason)).increment(1);
}

/// Record a batch's size.
pub(crate) fn batch_size(metrics: &ComponentMetrics, events: usize) {
    metrics::histogram!(BATCH_EVENTS, metrics.labels()).record(events as f64);
}

/// Count one bisection.
pub(crate) fn bisection(metrics: &ComponentMetrics) {
    counter!(BISECTIONS, metrics.labels()).increment(1);
}

/// Count events Meta did not confirm.
pub(crate) fn unconfirmed(metrics: &ComponentMetrics, events: u64) {
    counter!(UNCONFIRMED, metrics.labels()).increment(events);
}

/// Count dead-lettered events.
pub(crate) fn dead_lettered(metrics: &ComponentMetrics, stage: &'static str, events: usize) {
    counter!(DEAD_LETTERED, with(metrics, "stage", stage)).increment(events as u64);
}

/// Count one skipped message.
pub(crate) fn skipped(metrics: &ComponentMetrics, reason: &'static str) {
    counter!(SKIPPED, with(metrics, "reason", reason)).increment(1);
}

/// Set the sink's health gauge.
pub(crate) fn healthy(metrics: &ComponentMetrics, healthy: bool) {
    metrics::gauge!(HEALTHY, metrics.labels()).set(if healthy { 1.0 } else { 0.0 });
}

/// Per user_data key, how many mapped events carried it; registered once,
/// added to once per batch of input.
pub(crate) struct KeyCoverage {
    counters: Vec<Counter>,
}

impl KeyCoverage {
    /// Register one counter per key name.
    pub fn new(metrics: &ComponentMetrics, keys: &[&'static str]) -> Self {
        Self {
            counters: keys
                .iter()
                .map(|key| counter!(USER_DATA_KEYS, with(metrics, "key", key)))
                .collect(),
        }
    }

    /// Add counts, in the order of the key names given to `new`.
    pub fn add(&self, counts: &[u64]) {
        for (counter, &n) in self.counters.iter().zip(counts) {
            if n > 0 {
                counter.increment(n);
            }
        }
    }
}

/// Events in a sink's buffer (gauge).
pub(crate) const BUFFER_EVENTS: &str = "buffer_events";
/// Bytes in a sink's buffer (gauge).
pub(crate) const BUFFER_BYTES: &str = "buffer_byte_size";
/// Events written into a sink's buffer.
pub(crate) const BUFFER_RECEIVED: &str = "buffer_received_events_total";
/// Events read from a sink's buffer by the sink.
pub(crate) const BUFFER_SENT: &str = "buffer_sent_events_total";
/// Events a full buffer discarded (`when_full = "drop_newest"`).
pub(crate) const BUFFER_DISCARDED: &str = "buffer_discarded_events_total";

/// The buffer counters of one sink, registered once (Vector's names).
#[derive(Clone)]
pub(crate) struct BufferMetrics {
    events: metrics::Gauge,
    bytes: metrics::Gauge,
    received: Counter,
    sent: Counter,
    discarded: Counter,
}

impl BufferMetrics {
    /// Register the buffer counters of the sink `metrics` belong to.
    pub fn new(metrics: &ComponentMetrics) -> Self {
        let labels = metrics.labels();
        Self {
            events: metrics::gauge!(BUFFER_EVENTS, labels.clone()),
            bytes: metrics::gauge!(BUFFER_BYTES, labels.clone()),
            received: counter!(BUFFER_RECEIVED, labels.clone()),
            sent: counter!(BUFFER_SENT, labels.clone()),
            discarded: counter!(BUFFER_DISCARDED, with(metrics, "intentional", "true")),
        }
    }

    /// The buffer now holds `events` events of `bytes` bytes.
    pub fn size(&self, events: u64, bytes: u64) {
        self.events.set(events as f64);
        self.bytes.set(bytes as f64);
    }

    /// `n` events were written into the buffer.
    pub fn received(&self, n: usize) {
        self.received.increment(n as u64);
    }

    /// `n` events were handed to the sink.
    pub fn sent(&self, n: usize) {
        self.sent.increment(n as u64);
    }

    /// `n` events did not fit and were discarded.
    pub fn discarded(&self, n: usize) {
        self.discarded.increment(n as u64);
    }
}

/// At most one log line per interval for a condition that repeats (a full buffer, a store or
/// server that is down), so an outage is reported without flooding the log. Lock-free: many
/// tasks may ask at once, and one of them wins each interval.
pub(crate) struct Throttle {
    interval_secs: u64,
    /// Unix seconds of the last line; 0: never.
    last: std::sync::atomic::AtomicU64,
}

impl Throttle {
    /// One line per `interval_secs`.
    pub const fn new(interval_secs: u64) -> Self {
        Self {
            interval_secs,
            last: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether a line may be logged now (and, if so, the interval starts again).
    pub fn ready(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        use std::sync::atomic::Ordering;
        let last = self.last.load(Ordering::Relaxed);
        (last == 0 || now >= last + self.interval_secs)
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

// ---- Flow control of the Conversions API sink, per pixel. ----

/// `fbpixel_request_concurrency_limit{pixel}`: requests allowed in flight now.
pub(crate) const CONCURRENCY_LIMIT: &str = "fbpixel_request_concurrency_limit";
/// `fbpixel_requests_in_flight{pixel}`: requests in flight now.
pub(crate) const IN_FLIGHT: &str = "fbpixel_requests_in_flight";
/// `fbpixel_meta_usage_percent{pixel,header,metric}`: the latest figure of Meta's usage headers.
pub(crate) const META_USAGE: &str = "fbpixel_meta_usage_percent";
/// `fbpixel_meta_regain_access_seconds{pixel}`: how long Meta last asked to wait (0: no wait).
pub(crate) const REGAIN_ACCESS: &str = "fbpixel_meta_regain_access_seconds";
/// `fbpixel_shared_budget_instances{pixel}`: live instances sharing the pixel's budget.
pub(crate) const SHARED_INSTANCES: &str = "fbpixel_shared_budget_instances";

#[cfg(test)]
mod throttle_tests {
    use super::Throttle;

    #[test]
    fn a_throttle_lets_one_line_through_per_interval() {
        let throttle = Throttle::new(3600);
        assert!(throttle.ready(), "the first line is logged");
        assert!(!throttle.ready(), "the next ones within the hour are not");
        assert!(!throttle.ready());
        let every_time = Throttle::new(0);
        assert!(every_time.ready() && every_time.ready());
    }
}

//! Settings of the `facebook_pixel_server_side` sink, mirroring Segment's "Facebook Pixel
//! Server-Side" destination; their validation, in one place ([`FacebookPixelConfig::problems`]
//! and the [`SinkConfig`] impl); and the build of the sink from the validated settings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::capi::ActionSource;
use super::concurrency::{AdaptiveSettings, Concurrency};
pub(crate) use super::enrichment::{EnrichmentConfig, StoreKind};
use super::ledger::LedgerConfig;
use super::mapping::consent::ConsentRules;
use super::mapping::{Mapper, MappingSettings, Paths, StandardEvent, ValueField, money};
use super::normalize::Normalizer;
use super::quality::{self, QualityConfig};
use super::service::{GraphClient, GraphSettings, GraphTarget};
use super::shared_budget::SharedBudgetConfig;
use super::sink::{Delivering, FacebookPixelSink, Pixel};
use crate::component::{
    BuildContext, BuildError, Healthcheck, Sink, SinkConfig, ValidSink, ValidateContext,
};
use crate::config::Secret;

/// The sink type name in a pipeline config.
pub const SINK_TYPE: &str = "facebook_pixel_server_side";

/// Every setting of the sink. Names follow SPEC §8; the README's settings table lists them with
/// their Segment names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FacebookPixelConfig {
    /// Segment: "Pixel ID".
    #[serde(default)]
    pub(crate) pixel_id: String,
    /// Segment: "Access Token". Only delivery needs it; `fbpixel map` runs without one.
    #[serde(default)]
    pub(crate) access_token: Secret,
    /// Optional: sends `appsecret_proof`.
    #[serde(default)]
    pub(crate) app_secret: Option<Secret>,
    /// Segment: "Map Your Events to Standard FB Events".
    #[serde(default)]
    pub(crate) standard_events: BTreeMap<String, String>,
    /// Segment: "Map Categories to FB Content Types".
    #[serde(default)]
    pub(crate) content_types: BTreeMap<String, String>,
    /// Segment: "Alternative External ID Field" — a dotted path into the whole message.
    #[serde(default)]
    pub(crate) external_id_field: Option<String>,
    /// Segment: "Value Field Identifier".
    #[serde(default)]
    pub(crate) value_field: ValueField,
    #[serde(default = "default_currency")]
    pub(crate) default_currency: String,
    #[serde(default = "default_action_source")]
    pub(crate) action_source: ActionSource,
    /// Segment: "Limited Data Use".
    #[serde(default)]
    pub(crate) limited_data_use: bool,
    /// With `limited_data_use`: Meta's country code (1 = USA; 0 = let Meta geolocate).
    #[serde(default)]
    pub(crate) ldu_country: i64,
    /// With `limited_data_use`: Meta's state code (1000 = California …; 0 = geolocate).
    #[serde(default)]
    pub(crate) ldu_state: i64,
    /// Every event is for attribution only, never for ad delivery optimisation.
    #[serde(default)]
    pub(crate) opt_out: bool,
    /// Send only events whose visitor granted these consent categories.
    #[serde(default)]
    pub(crate) consent: ConsentRules,
    /// A dotted path to a per-event pixel ID (`context.pixel_id`); `pixel_id` when absent.
    #[serde(default)]
    pub(crate) pixel_id_field: Option<String>,
    /// The other pixels `pixel_id_field` may name: pixel ID → its access token.
    #[serde(default)]
    pub(crate) pixels: BTreeMap<String, Secret>,
    /// Send `page` calls as PageView.
    #[serde(default)]
    pub(crate) page_view: bool,
    /// Send `screen` calls as custom events named `Viewed {name} Screen`.
    #[serde(default)]
    pub(crate) screen_events: bool,
    /// `action_source = "app"` for messages from Segment's mobile libraries (`context.app`)
    /// that name no action source.
    #[serde(default)]
    pub(crate) app_action_source: bool,
    /// Conversion Leads: the CRM the lead stages come from (`HubSpot`, `Salesforce`), sent as
    /// `custom_data.lead_event_source` on `system_generated` events with a `lead_id`.
    #[serde(default)]
    pub(crate) lead_event_source: Option<String>,
    /// ISO 3166-1 region for phone numbers written without a country code.
    #[serde(default)]
    pub(crate) phone_country: Option<String>,
    #[serde(default = "yes")]
    pub(crate) hash_external_id: bool,
    #[serde(default)]
    pub(crate) allow_pii_properties: Vec<String>,
    #[serde(default)]
    pub(crate) hash_properties: Vec<String>,
    /// Events Manager → Test Events.
    #[serde(default)]
    pub(crate) test_event_code: Option<String>,
    #[serde(default)]
    pub(crate) partner_agent: Option<String>,
    /// Request fields of offline and CRM uploads: a name for the upload, where it came from,
    /// and the Meta namespace (offline event set) it belongs to.
    #[serde(default)]
    pub(crate) upload_tag: Option<String>,
    #[serde(default)]
    pub(crate) upload_source: Option<String>,
    #[serde(default)]
    pub(crate) namespace_id: Option<String>,
    #[serde(default = "default_api_version")]
    pub(crate) api_version: String,
    #[serde(default = "default_endpoint")]
    pub(crate) endpoint: String,
    #[serde(default = "default_max_future_secs")]
    pub(crate) max_future_secs: u64,
    #[serde(default)]
    pub(crate) batch: BatchConfig,
    /// How many tasks map events.
    #[serde(default)]
    pub(crate) mapping: MappingConfig,
    #[serde(default)]
    pub(crate) request: RequestConfig,
    #[serde(default)]
    pub(crate) dead_letter: Option<DeadLetterConfig>,
    /// Remember users' hashed keys and add them to their later events.
    #[serde(default)]
    pub(crate) enrichment: EnrichmentConfig,
    /// What became of every message, for `fbpixel explain` and `reconcile`.
    #[serde(default)]
    pub(crate) ledger: LedgerConfig,
    /// Poll Meta's Dataset Quality API into the `fbpixel_meta_*` gauges.
    #[serde(default)]
    pub(crate) quality: QualityConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    #[serde(default = "default_batch_timeout")]
    pub timeout_secs: f64,
    /// Largest request body, in bytes.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
}

/// The most workers `mapping.workers` accepts: beyond the cores there is nothing to gain, only
/// more partly filled batches.
const MAX_WORKERS: usize = 64;

/// `mapping`: how the sink spreads its mapping over cores.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    /// Tasks mapping events in parallel, each with its own batches; unset: one per core, or
    /// one with `enrichment` (its remembered users are one store).
    #[serde(default)]
    pub workers: Option<usize>,
}

impl MappingConfig {
    /// What is wrong with `mapping.workers`, given whether enrichment is on.
    fn problems(&self, enrichment: bool) -> Vec<String> {
        let mut problems = Vec::new();
        match self.workers {
            Some(0) => problems.push(
                "mapping.workers: must be at least 1 (1 maps on one task; leave it unset for one per core)"
                    .to_string(),
            ),
            Some(n) if n > MAX_WORKERS => problems.push(format!(
                "mapping.workers: {n} is more than {MAX_WORKERS}; more workers than cores only cut batches smaller (leave it unset for one per core)"
            )),
            Some(n) if n > 1 && enrichment => problems.push(format!(
                "mapping.workers: {n} with enrichment.enabled, whose remembered users are one store that one worker updates; set mapping.workers = 1 or leave it unset"
            )),
            _ => {}
        }
        problems
    }

    /// The number of workers: as set, else one per core (one with enrichment).
    fn resolved(&self, enrichment: bool) -> usize {
        match self.workers {
            Some(n) => n,
            None if enrichment => 1,
            None => std::thread::available_parallelism().map_or(1, usize::from),
        }
        .clamp(1, MAX_WORKERS)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    /// `"adaptive"` (the default) or a fixed number of requests in flight per pixel.
    #[serde(default)]
    pub concurrency: ConcurrencySetting,
    /// Tuning of adaptive concurrency, in Vector's names; rarely needed.
    #[serde(default)]
    pub adaptive_concurrency: AdaptiveConcurrencyConfig,
    /// Instances sending to the same pixels share Meta's budget through a NATS bucket.
    #[serde(default)]
    pub shared_budget: Option<SharedBudgetConfig>,
    #[serde(default = "default_request_timeout")]
    pub timeout_secs: f64,
    #[serde(default = "default_initial_backoff")]
    pub retry_initial_backoff_secs: f64,
    /// Longest wait between two attempts (as Vector's `retry_max_duration_secs`).
    #[serde(default = "default_retry_max_duration")]
    pub retry_max_duration_secs: f64,
    /// Attempts before a transiently failing batch is dead-lettered; unset:
    /// retry for as long as it takes, so nothing is dropped while Meta is down.
    #[serde(default)]
    pub retry_attempts: Option<u32>,
}

/// `request.concurrency` as written: checked by [`FacebookPixelConfig::problems`], so a wrong
/// value is reported with the others and with its key.
#[derive(Clone, Debug, PartialEq)]
pub enum ConcurrencySetting {
    /// A number.
    Fixed(i64),
    /// A word (only `"adaptive"` is one).
    Word(String),
    /// Anything else, described.
    Other(String),
}

impl Default for ConcurrencySetting {
    fn default() -> Self {
        ConcurrencySetting::Word(ADAPTIVE.into())
    }
}

const ADAPTIVE: &str = "adaptive";

impl<'de> Deserialize<'de> for ConcurrencySetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ConcurrencySetting;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"adaptive\" or a number of requests")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(ConcurrencySetting::Fixed(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ConcurrencySetting::Fixed(
                    i64::try_from(v).unwrap_or(i64::MAX),
                ))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(ConcurrencySetting::Other(format!("{v}")))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(ConcurrencySetting::Other(format!("{v}")))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ConcurrencySetting::Word(v.to_owned()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `request.adaptive_concurrency`: Vector's settings of the same name and defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveConcurrencyConfig {
    #[serde(default = "default_initial_concurrency")]
    pub initial_concurrency: usize,
    #[serde(default = "default_max_concurrency_limit")]
    pub max_concurrency_limit: usize,
    #[serde(default = "default_decrease_ratio")]
    pub decrease_ratio: f64,
    #[serde(default = "default_ewma_alpha")]
    pub ewma_alpha: f64,
    #[serde(default = "default_rtt_deviation_scale")]
    pub rtt_deviation_scale: f64,
}

impl Default for AdaptiveConcurrencyConfig {
    fn default() -> Self {
        AdaptiveConcurrencyConfig {
            initial_concurrency: default_initial_concurrency(),
            max_concurrency_limit: default_max_concurrency_limit(),
            decrease_ratio: default_decrease_ratio(),
            ewma_alpha: default_ewma_alpha(),
            rtt_deviation_scale: default_rtt_deviation_scale(),
        }
    }
}

fn default_initial_concurrency() -> usize {
    AdaptiveSettings::default().initial
}
fn default_max_concurrency_limit() -> usize {
    AdaptiveSettings::default().max
}
fn default_decrease_ratio() -> f64 {
    AdaptiveSettings::default().decrease_ratio
}
fn default_ewma_alpha() -> f64 {
    AdaptiveSettings::default().ewma_alpha
}
fn default_rtt_deviation_scale() -> f64 {
    AdaptiveSettings::default().rtt_deviation_scale
}

impl RequestConfig {
    /// The concurrency to deliver with; call once [`Self::concurrency_problems`] is empty.
    fn concurrency(&self) -> Concurrency {
        match &self.concurrency {
            ConcurrencySetting::Fixed(n) => Concurrency::Fixed(usize::try_from(*n).unwrap_or(1)),
            _ => {
                let a = &self.adaptive_concurrency;
                Concurrency::Adaptive(AdaptiveSettings {
                    initial: a.initial_concurrency,
                    max: a.max_concurrency_limit,
                    decrease_ratio: a.decrease_ratio,
                    ewma_alpha: a.ewma_alpha,
                    rtt_deviation_scale: a.rtt_deviation_scale,
                })
            }
        }
    }

    /// What is wrong with `concurrency`, `adaptive_concurrency` and `shared_budget`.
    fn concurrency_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match &self.concurrency {
            ConcurrencySetting::Fixed(n) if *n < 1 => problems.push(format!(
                "request.concurrency: {n} must be at least 1 (or \"{ADAPTIVE}\", the default)"
            )),
            ConcurrencySetting::Fixed(_) => {}
            ConcurrencySetting::Word(w) if w == ADAPTIVE => {}
            ConcurrencySetting::Word(w) => problems.push(format!(
                "request.concurrency: {w:?} is neither \"{ADAPTIVE}\" nor a number of requests (e.g. 4)"
            )),
            ConcurrencySetting::Other(v) => problems.push(format!(
                "request.concurrency: {v} is neither \"{ADAPTIVE}\" nor a whole number of requests (e.g. 4)"
            )),
        }
        let a = &self.adaptive_concurrency;
        if a.max_concurrency_limit == 0 {
            problems.push(
                "request.adaptive_concurrency.max_concurrency_limit: must be at least 1".into(),
            );
        }
        if a.initial_concurrency == 0 || a.initial_concurrency > a.max_concurrency_limit.max(1) {
            problems.push(format!(
                "request.adaptive_concurrency.initial_concurrency: {} must be between 1 and max_concurrency_limit ({})",
                a.initial_concurrency, a.max_concurrency_limit
            ));
        }
        for (key, value) in [
            ("decrease_ratio", a.decrease_ratio),
            ("ewma_alpha", a.ewma_alpha),
        ] {
            if !(value > 0.0 && value < 1.0) {
                problems.push(format!(
                    "request.adaptive_concurrency.{key}: {value} must be between 0 and 1, both excluded"
                ));
            }
        }
        if !(a.rtt_deviation_scale.is_finite() && a.rtt_deviation_scale >= 0.0) {
            problems.push(
                "request.adaptive_concurrency.rtt_deviation_scale: must be a number of 0 or more"
                    .into(),
            );
        }
        if let Some(shared) = &self.shared_budget {
            problems.extend(shared.problems());
        }
        problems
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    pub path: PathBuf,
}

/// Every setting, at its default, for `fbpixel generate`: a comment line before each; one
/// unset by default is commented out. `tests/generate.rs` fails when a setting is missing.
pub const EXAMPLE: &str = r#"
# Your pixel, all digits (required for delivery); the pixel of every event unless pixel_id_field names another.
pixel_id = "${FB_PIXEL_ID}"
# Conversions API access token (required for delivery); sent as a bearer token, never printed.
access_token = "${FB_ACCESS_TOKEN}"
# Adds appsecret_proof to every request; unset: none.
# app_secret = "${FB_APP_SECRET}"
# Segment event name -> Meta standard event, e.g. { "Order Completed" = "Purchase" }.
standard_events = {}
# Segment `category` -> Meta `content_type`, matched exactly, e.g. { Shoes = "product" }.
content_types = {}
# Dotted path into the message for external_id; unset: userId, then anonymousId.
# external_id_field = "context.traits.crm_id"
# `price` or `value`: which property is the value of Product Viewed / Product Added.
value_field = "price"
# ISO 4217 currency of an event that has a value but no currency.
default_currency = "USD"
# Default action_source (website, app, email, phone_call, chat, physical_store, system_generated, business_messaging, other).
action_source = "website"
# Send data_processing_options ["LDU"] with ldu_country and ldu_state.
limited_data_use = false
# With limited_data_use: Meta's country code (1 = USA; 0 = let Meta geolocate).
ldu_country = 0
# With limited_data_use: Meta's state code (1000 California ... 1013 Rhode Island; 0 = geolocate).
ldu_state = 0
# Send every event with opt_out: true (attribution only, not ad delivery optimisation).
opt_out = false
# Consent categories the visitor must have granted, e.g. ["Advertising"]; empty: no gating.
consent.required_categories = []
# `all`: every required category granted; `any`: one is enough.
consent.match = "all"
# An event with no consent preferences at all: `send` or `skip`.
consent.when_missing = "send"
# Dotted path to a per-event pixel ID; unset: pixel_id for every event. Needs `pixels`.
# pixel_id_field = "context.pixel_id"
# The other pixels pixel_id_field may name: pixel ID -> its access token.
pixels = {}
# Send `page` calls as PageView.
page_view = false
# Send `screen` calls as custom events named `Viewed {name} Screen`.
screen_events = false
# Use action_source "app" for messages from Segment's mobile libraries that name none.
app_action_source = false
# Conversion Leads: the CRM the lead stages come from; unset: none.
# lead_event_source = "HubSpot"
# ISO region for phone numbers written without a country code; unset: none.
# phone_country = "US"
# Hash external_id (it is always normalized).
hash_external_id = true
# Personal-data property names allowed into custom_data unhashed.
allow_pii_properties = []
# Property names hashed into custom_data (wins over allow_pii_properties).
hash_properties = []
# Events Manager -> Test Events code; unset: live events.
# test_event_code = "TEST12345"
# Sent as partner_agent; unset: none.
# partner_agent = "my-platform"
# Name of an offline or CRM upload, sent with every request; unset: none.
# upload_tag = "crm-2024-06"
# Where an offline or CRM upload came from; unset: none.
# upload_source = "salesforce"
# The Meta namespace (offline event set) of the upload; unset: none.
# namespace_id = "123456789"
# Graph API version.
api_version = "v26.0"
# Graph API base URL.
endpoint = "https://graph.facebook.com"
# Events further in the future than this many seconds are rejected; nearer ones clamped to now.
max_future_secs = 60
# Most events per request (Meta's cap is 1000).
batch.max_events = 1000
# Seconds after its first event a batch is sent.
batch.timeout_secs = 1.0
# Largest request body, in bytes.
batch.max_bytes = 10485760
# Tasks mapping events in parallel, each with its own batches; unset: one per core (1 with enrichment).
# mapping.workers = 2
# Requests in flight per pixel: "adaptive" (found from Meta's answers and usage headers) or a fixed number.
request.concurrency = "adaptive"
# Adaptive: requests in flight to start from.
request.adaptive_concurrency.initial_concurrency = 1
# Adaptive: the most requests in flight it may reach.
request.adaptive_concurrency.max_concurrency_limit = 200
# Adaptive: what a cut multiplies the limit by.
request.adaptive_concurrency.decrease_ratio = 0.9
# Adaptive: weight of the newest round-trip times in their moving average.
request.adaptive_concurrency.ewma_alpha = 0.4
# Adaptive: standard deviations above the mean round-trip time that count as Meta slowing down.
request.adaptive_concurrency.rtt_deviation_scale = 2.5
# Instances sending to the same pixels share Meta's budget through NATS (this server); unset: none.
# request.shared_budget.url = "nats://127.0.0.1:4222"
# With shared_budget: the key-value bucket, created when missing.
# request.shared_budget.bucket = "fbpixel_budget"
# With shared_budget: seconds after which an instance not heard of counts as gone.
# request.shared_budget.ttl_secs = 5.0
# With shared_budget: how to authenticate, as the nats source and sink do; unset: none.
# request.shared_budget.auth = { credentials_file = "/etc/fbpixel/nats.creds" }
# request.shared_budget.auth = { user = "fbpixel", password = "${NATS_PASSWORD}" }
# request.shared_budget.auth = { token = "${NATS_TOKEN}" }
# request.shared_budget.auth = { nkey_seed = "${NATS_NKEY_SEED}" }
# Seconds per request.
request.timeout_secs = 10.0
# First wait, in seconds, before a failed request is retried (exponential backoff, full jitter).
request.retry_initial_backoff_secs = 1.0
# Longest wait, in seconds, between two attempts.
request.retry_max_duration_secs = 60.0
# Attempts before a transiently failing batch is dead-lettered; unset: retry for as long as it takes.
# request.retry_attempts = 10
# NDJSON file (mode 0600, raw personal data) for events that cannot be delivered; unset: none.
# dead_letter.path = "/var/lib/fbpixel/dead_letter.ndjson"
# Remember users' hashed keys and add them to their later events (keeps personal data).
enrichment.enabled = false
# Seconds a remembered value is used after it was last seen (30 days).
enrichment.ttl_secs = 2592000
# Most users kept; the least recently seen are forgotten first.
enrichment.max_users = 1000000
# Where profiles are kept: `memory`, `disk` (under data_dir) or `nats_kv` (shared).
enrichment.store = "memory"
# With store = "nats_kv": the NATS server(s).
# enrichment.url = "nats://127.0.0.1:4222"
# With store = "nats_kv": the key-value bucket, created when missing.
enrichment.bucket = "fbpixel_users"
# With store = "nats_kv": how to authenticate, as the nats source and sink do; unset: none.
# enrichment.auth = { credentials_file = "/etc/fbpixel/nats.creds" }
# enrichment.auth = { user = "fbpixel", password = "${NATS_PASSWORD}" }
# enrichment.auth = { token = "${NATS_TOKEN}" }
# enrichment.auth = { nkey_seed = "${NATS_NKEY_SEED}" }
# Keep what became of every message (for `fbpixel explain`/`reconcile`): ids, outcome, Meta's answer, hashes only; unset: on when data_dir is set.
# ledger.enabled = true
# Most bytes the ledger keeps under data_dir; the oldest records go first (1 GiB).
ledger.max_size = 1073741824
# Seconds a ledger record is kept (7 days).
ledger.retention_secs = 604800
# Where ledger records are kept: `disk` (under data_dir, one file per instance) or `nats_kv` (one bucket all instances share).
ledger.store = "disk"
# With store = "nats_kv": the NATS server(s).
# ledger.url = "nats://127.0.0.1:4222"
# With store = "nats_kv": the key-value bucket, created when missing.
ledger.bucket = "fbpixel_ledger"
# With store = "nats_kv": how to authenticate, as the nats source and sink do; unset: none.
# ledger.auth = { credentials_file = "/etc/fbpixel/nats.creds" }
# ledger.auth = { user = "fbpixel", password = "${NATS_PASSWORD}" }
# ledger.auth = { token = "${NATS_TOKEN}" }
# ledger.auth = { nkey_seed = "${NATS_NKEY_SEED}" }
# Poll Meta's Dataset Quality API (EMQ, match-key coverage, freshness) into the fbpixel_meta_* gauges.
quality.enabled = false
# Seconds between two polls of each pixel (at least 60).
quality.interval_secs = 3600
"#;

fn split_path(path: Option<&str>) -> Option<Vec<String>> {
    path.map(|path| path.split('.').map(String::from).collect())
}

/// Meta's Limited Data Use state codes ("Data Processing Options for US Users"): 1000
/// California through 1013 Rhode Island.
const LDU_STATES: std::ops::RangeInclusive<i64> = 1000..=1013;

/// What is wrong with `ldu_country` / `ldu_state`: Meta knows country 1 (USA) and the states
/// in [`LDU_STATES`], 0 meaning "geolocate"; a country needs its state.
fn ldu_problems(on: bool, country: i64, state: i64) -> Vec<String> {
    let mut problems = Vec::new();
    if !on && (country, state) != (0, 0) {
        problems.push(
            "ldu_country / ldu_state: only used with limited_data_use = true; turn it on or remove them"
                .to_string(),
        );
    }
    if country != 0 && country != 1 {
        problems.push(format!(
            "ldu_country: {country} is not one of Meta's codes (1 = USA, or 0 to let Meta geolocate)"
        ));
    }
    if state != 0 && !LDU_STATES.contains(&state) {
        problems.push(format!(
            "ldu_state: {state} is not one of Meta's state codes (1000 California, 1001 Colorado, 1002 Connecticut, 1003 Florida, 1004 Oregon, 1005 Texas, 1006 Montana, 1007 Delaware, 1008 Nebraska, 1009 New Hampshire, 1010 New Jersey, 1011 Minnesota, 1012 Maryland, 1013 Rhode Island; or 0 to let Meta geolocate)"
        ));
    } else if country == 1 && state == 0 {
        problems.push(
            "ldu_state: Meta needs a state with ldu_country = 1 (e.g. 1000 for California), or set both to 0 to let Meta geolocate"
                .to_string(),
        );
    } else if country == 0 && state != 0 {
        problems.push(format!(
            "ldu_country: a state ({state}) needs its country: set ldu_country = 1"
        ));
    }
    problems
}

/// Meta's limit of events per request.
pub const MAX_EVENTS_PER_REQUEST: usize = 1000;

fn yes() -> bool {
    true
}
fn default_currency() -> String {
    "USD".into()
}
fn default_action_source() -> ActionSource {
    ActionSource::Website
}
/// The Graph API version of Meta's newest Business SDK on the registries: facebook_business
/// 26.0.3 on PyPI (`apiconfig.py`: `API_VERSION = 'v26.0'`).
fn default_api_version() -> String {
    "v26.0".into()
}
fn default_endpoint() -> String {
    "https://graph.facebook.com".into()
}
fn default_max_future_secs() -> u64 {
    60
}
fn default_max_events() -> usize {
    MAX_EVENTS_PER_REQUEST
}
fn default_max_bytes() -> usize {
    10 * 1024 * 1024
}
fn default_batch_timeout() -> f64 {
    1.0
}
fn default_request_timeout() -> f64 {
    10.0
}
fn default_initial_backoff() -> f64 {
    1.0
}
fn default_retry_max_duration() -> f64 {
    60.0
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: default_max_events(),
            timeout_secs: default_batch_timeout(),
            max_bytes: default_max_bytes(),
        }
    }
}

impl Default for RequestConfig {
    fn default() -> Self {
        RequestConfig {
            concurrency: ConcurrencySetting::default(),
            adaptive_concurrency: AdaptiveConcurrencyConfig::default(),
            shared_budget: None,
            timeout_secs: default_request_timeout(),
            retry_initial_backoff_secs: default_initial_backoff(),
            retry_max_duration_secs: default_retry_max_duration(),
            retry_attempts: None,
        }
    }
}

impl FacebookPixelConfig {
    /// The mapping's settings, or every invalid one, each naming its key. `fbpixel map` needs
    /// only these (no token).
    pub fn mapping_settings(&self) -> Result<MappingSettings, Vec<String>> {
        let mut problems = Vec::new();
        let mut standard_events = BTreeMap::new();
        for (name, target) in &self.standard_events {
            match target.parse::<StandardEvent>() {
                Ok(event) => {
                    standard_events.insert(name.clone(), event);
                }
                Err(why) => problems.push(format!("standard_events.{name:?}: {why}")),
            }
        }
        let default_currency = money::currency_code(&self.default_currency);
        if default_currency.is_none() {
            problems.push(format!(
                "default_currency: {:?} is not an ISO 4217 currency code (e.g. \"USD\", \"EUR\")",
                self.default_currency
            ));
        }
        let normalizer = Normalizer::new(self.phone_country.as_deref())
            .map_err(|why| problems.push(format!("phone_country: {why}")))
            .ok();
        if let Some(path) = &self.external_id_field
            && (path.is_empty() || path.split('.').any(str::is_empty))
        {
            problems.push(format!(
                "external_id_field: {path:?} is not a dotted path such as \"context.traits.customer_id\""
            ));
        }
        if let Some(path) = &self.pixel_id_field
            && (path.is_empty() || path.split('.').any(str::is_empty))
        {
            problems.push(format!(
                "pixel_id_field: {path:?} is not a dotted path such as \"context.pixel_id\""
            ));
        }
        for id in self.pixels.keys() {
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                problems.push(format!(
                    "pixels.{id:?}: a pixel ID is all digits (Events Manager → Data sources → your pixel)"
                ));
            } else if *id == self.pixel_id {
                problems.push(format!(
                    "pixels.{id:?}: is the sink's pixel_id, whose token is access_token; remove it from `pixels`"
                ));
            }
        }
        match (&self.pixel_id_field, self.pixels.is_empty()) {
            (Some(_), true) => problems.push(
                "pixel_id_field: set, but `pixels` is empty: add each other pixel with its token (pixels = { \"123\" = \"${TOKEN_123}\" })"
                    .to_string(),
            ),
            (None, false) => problems.push(
                "pixels: no event can reach these pixels without pixel_id_field (e.g. \"context.pixel_id\")"
                    .to_string(),
            ),
            _ => {}
        }
        problems.extend(self.consent.problems());
        problems.extend(ldu_problems(
            self.limited_data_use,
            self.ldu_country,
            self.ldu_state,
        ));
        match (default_currency, normalizer) {
            (Some(default_currency), Some(normalizer)) if problems.is_empty() => {
                Ok(MappingSettings {
                    standard_events,
                    content_types: self.content_types.clone(),
                    paths: Paths {
                        external_id: split_path(self.external_id_field.as_deref()),
                        pixel_id: split_path(self.pixel_id_field.as_deref()),
                    },
                    pixels: std::iter::once(self.pixel_id.clone())
                        .chain(self.pixels.keys().cloned())
                        .collect(),
                    value_field: self.value_field,
                    default_currency,
                    action_source: self.action_source,
                    limited_data_use: self.limited_data_use,
                    ldu_country: self.ldu_country,
                    ldu_state: self.ldu_state,
                    opt_out: self.opt_out,
                    consent: self.consent.clone(),
                    page_view: self.page_view,
                    screen_events: self.screen_events,
                    app_action_source: self.app_action_source,
                    lead_event_source: self.lead_event_source.clone(),
                    normalizer,
                    hash_external_id: self.hash_external_id,
                    allow_pii_properties: self.allow_pii_properties.clone(),
                    hash_properties: self.hash_properties.clone(),
                    max_future_secs: self.max_future_secs,
                })
            }
            _ => Err(problems),
        }
    }

    /// The mapping, compiled from valid settings.
    pub fn mapper(&self) -> Result<Mapper, Vec<String>> {
        self.mapping_settings().map(Mapper::new)
    }

    /// Every invalid value, each naming its key (without the component prefix, which the caller
    /// adds), apart from the access token and `data_dir`, which [`SinkConfig::validate`] adds.
    /// Checks what can be known without the network; the healthcheck does the rest.
    pub fn problems(&self) -> Vec<String> {
        self.checked().1
    }

    /// The mapping settings when they are valid, and every problem [`Self::problems`] names.
    fn checked(&self) -> (Option<MappingSettings>, Vec<String>) {
        let mut problems = Vec::new();
        if !self.pixel_id.chars().all(|c| c.is_ascii_digit()) {
            problems.push(
                "pixel_id: a pixel ID is all digits (Events Manager → Data sources → your pixel)"
                    .to_string(),
            );
        }
        let mapping = self
            .mapping_settings()
            .map_err(|mapping| problems.extend(mapping))
            .ok();
        if self.batch.max_events == 0 || self.batch.max_events > MAX_EVENTS_PER_REQUEST {
            problems.push(format!(
                "batch.max_events: {} is outside 1..={MAX_EVENTS_PER_REQUEST} (Meta accepts at most {MAX_EVENTS_PER_REQUEST} events a request)",
                self.batch.max_events
            ));
        }
        if self.batch.max_bytes == 0 {
            problems.push("batch.max_bytes: must be at least 1".to_string());
        }
        if self.request.retry_attempts == Some(0) {
            problems.push("request.retry_attempts: must be at least 1 (leave it unset to retry without limit)".to_string());
        }
        problems.extend(self.request.concurrency_problems());
        problems.extend(self.mapping.problems(self.enrichment.enabled));
        for (key, secs) in [
            ("batch.timeout_secs", self.batch.timeout_secs),
            ("request.timeout_secs", self.request.timeout_secs),
            (
                "request.retry_initial_backoff_secs",
                self.request.retry_initial_backoff_secs,
            ),
            (
                "request.retry_max_duration_secs",
                self.request.retry_max_duration_secs,
            ),
        ] {
            if !(secs.is_finite() && secs > 0.0) {
                problems.push(format!("{key}: must be a positive number of seconds"));
            }
        }
        problems.extend(self.enrichment.problems());
        problems.extend(self.quality.problems());
        if !self.endpoint.starts_with("http://") && !self.endpoint.starts_with("https://") {
            problems.push(format!(
                "endpoint: {:?} is not an http(s) URL (default \"https://graph.facebook.com\")",
                self.endpoint
            ));
        }
        if !self.api_version.starts_with('v') || self.api_version.len() < 2 {
            problems.push(format!(
                "api_version: {:?} is not a Graph API version such as \"v26.0\"",
                self.api_version
            ));
        }
        (mapping, problems)
    }
}

impl FacebookPixelConfig {
    /// The Graph API target of one pixel: `pixel_id` with `access_token`, or an entry of
    /// `pixels`.
    fn graph_target<'a>(
        &'a self,
        pixel_id: &'a str,
        token: &'a Secret,
        token_key: &'a str,
    ) -> GraphTarget<'a> {
        GraphTarget {
            endpoint: &self.endpoint,
            api_version: &self.api_version,
            pixel_id,
            access_token: token.expose(),
            token_key,
            app_secret: self.app_secret.as_ref().map(|s| s.expose()),
            test_event_code: self.test_event_code.as_deref(),
            partner_agent: self.partner_agent.as_deref(),
            upload: [
                ("upload_tag", self.upload_tag.as_deref()),
                ("upload_source", self.upload_source.as_deref()),
                ("namespace_id", self.namespace_id.as_deref()),
            ],
            timeout: Duration::from_secs_f64(self.request.timeout_secs),
        }
    }

    /// Every pixel's Graph API settings, in the mapping's pixel order (`pixel_id` first), or
    /// what is wrong with each.
    fn graph_settings(&self) -> Result<Vec<GraphSettings>, Vec<String>> {
        let keys: Vec<String> = self
            .pixels
            .keys()
            .map(|id| format!("pixels.{id:?}"))
            .collect();
        let targets =
            std::iter::once(self.graph_target(&self.pixel_id, &self.access_token, "access_token"))
                .chain(
                    self.pixels
                        .iter()
                        .zip(&keys)
                        .map(|((id, token), key)| self.graph_target(id, token, key)),
                );
        let mut problems = Vec::new();
        let settings: Vec<GraphSettings> = targets
            .filter_map(|target| {
                GraphSettings::new(&target)
                    .map_err(|e| problems.push(e))
                    .ok()
            })
            .collect();
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(problems)
        }
    }

    /// Every pixel's Dataset Quality API request, in the mapping's pixel order, with
    /// `agent_name` from `partner_agent` and `appsecret_proof` when `app_secret` is set.
    fn quality_urls(&self) -> Result<Vec<hyper::Uri>, String> {
        let agent = self
            .partner_agent
            .as_deref()
            .map(quality::dataset::agent_name);
        let secret = self
            .app_secret
            .as_ref()
            .map(|s| s.expose())
            .filter(|s| !s.is_empty());
        std::iter::once((&self.pixel_id, &self.access_token))
            .chain(&self.pixels)
            .map(|(id, token)| {
                let proof = secret.map(|s| super::service::appsecret_proof(token.expose(), s));
                quality::dataset::url(
                    &self.endpoint,
                    &self.api_version,
                    id,
                    agent.as_deref(),
                    proof.as_deref(),
                )
            })
            .collect()
    }

    /// Every pixel's Dataset Quality API target with its own client, for `fbpixel quality`
    /// (a running sink shares its delivery clients instead).
    pub(crate) fn quality_targets(&self) -> Result<Vec<quality::Target>, Vec<String>> {
        let settings = self.graph_settings()?;
        let urls = self.quality_urls().map_err(|e| vec![e])?;
        let mut settings = settings.into_iter();
        let first = GraphClient::new(settings.next().expect("pixel_id's settings"))
            .map_err(|e| vec![e.to_string()])?;
        let clients = std::iter::once(first.clone()).chain(settings.map(|s| first.for_pixel(s)));
        Ok(std::iter::once(&self.pixel_id)
            .chain(self.pixels.keys())
            .zip(urls)
            .zip(clients)
            .map(|((pixel, url), client)| quality::Target {
                pixel: pixel.clone(),
                url,
                client,
            })
            .collect())
    }

    /// What `validate` can check of `enrichment` without opening its store (a running
    /// instance holds it).
    fn check_enrichment(&self, cx: &ValidateContext) -> Result<(), String> {
        let e = &self.enrichment;
        if e.enabled && e.store == StoreKind::Disk {
            EnrichmentConfig::disk_dir(cx.data_dir.as_deref(), &cx.id)?;
        }
        if e.enabled && e.store == StoreKind::NatsKv {
            crate::nats::server_urls(e.url.as_deref().unwrap_or_default())
                .map_err(|problem| format!("enrichment: {problem}"))?;
        }
        Ok(())
    }
}

/// The sink's settings, every one checked: what the sink is built from.
pub struct ValidFacebookPixel {
    mapping: MappingSettings,
    /// One per pixel, in the mapping's pixel order.
    graph: Vec<GraphSettings>,
    batch_max_events: usize,
    batch_max_bytes: usize,
    batch_timeout: Duration,
    /// `mapping.workers`, resolved.
    workers: usize,
    delivering: Delivering,
    dead_letter: Option<PathBuf>,
    enrichment: Option<EnrichmentConfig>,
    ledger: Option<LedgerConfig>,
    /// With `quality.enabled`: the interval, and each pixel's Dataset Quality URL.
    quality: Option<(Duration, Vec<hyper::Uri>)>,
}

impl SinkConfig for FacebookPixelConfig {
    fn validate(&self, cx: &ValidateContext) -> Result<Box<dyn ValidSink>, BuildError> {
        self.validated(cx)
            .map(|v| Box::new(v) as Box<dyn ValidSink>)
    }

    /// Sources wait for Meta's answer unless told otherwise: an event is acknowledged only
    /// once it is delivered or dead-lettered.
    fn acknowledgements_by_default(&self) -> bool {
        true
    }
}

impl FacebookPixelConfig {
    /// Every check of the sink's settings, in one place; the validated settings on success.
    pub fn validated(&self, cx: &ValidateContext) -> Result<ValidFacebookPixel, BuildError> {
        let (mapping, mut problems) = self.checked();
        let graph = self
            .graph_settings()
            .map_err(|graph| problems.extend(graph));
        if let Err(e) = self.check_enrichment(cx) {
            problems.push(e);
        }
        problems.extend(self.ledger.problems(cx.data_dir.as_deref()));
        let quality = if self.quality.enabled {
            self.quality_urls()
                .map(|urls| Some((Duration::from_secs(self.quality.interval_secs), urls)))
                .unwrap_or_else(|e| {
                    problems.push(e);
                    None
                })
        } else {
            None
        };
        match (mapping, graph) {
            (Some(mapping), Ok(graph)) if problems.is_empty() => Ok(ValidFacebookPixel {
                mapping,
                graph,
                batch_max_events: self.batch.max_events,
                batch_max_bytes: self.batch.max_bytes,
                batch_timeout: Duration::from_secs_f64(self.batch.timeout_secs),
                workers: self.mapping.resolved(self.enrichment.enabled),
                delivering: Delivering {
                    concurrency: self.request.concurrency(),
                    initial_backoff: Duration::from_secs_f64(
                        self.request.retry_initial_backoff_secs,
                    ),
                    max_backoff: Duration::from_secs_f64(self.request.retry_max_duration_secs),
                    max_attempts: self.request.retry_attempts,
                    shared_budget: self.request.shared_budget.clone(),
                },
                dead_letter: self.dead_letter.as_ref().map(|d| d.path.clone()),
                enrichment: self.enrichment.enabled.then(|| self.enrichment.clone()),
                ledger: self
                    .ledger
                    .is_enabled(cx.data_dir.as_deref())
                    .then(|| self.ledger.clone()),
                quality,
            }),
            _ => Err(BuildError(problems.join("; "))),
        }
    }
}

impl ValidFacebookPixel {
    /// Check the modes of the state files that already exist (the dead letter, the enrichment
    /// store and its folder) before anything starts: one other users can open is reported,
    /// or refused with `--strict-permissions`. The disk buffer is checked when it is opened.
    fn check_state_files(&self, cx: &BuildContext) -> Result<(), String> {
        if let Some(dead_letter) = &self.dead_letter {
            crate::state::check(dead_letter, cx.permissions)
                .map_err(|e| format!("dead_letter.path: {e}"))?;
        }
        if self
            .enrichment
            .as_ref()
            .is_some_and(|e| e.store == StoreKind::Disk)
        {
            let dir = EnrichmentConfig::disk_dir(cx.data_dir.as_deref(), &cx.metrics.info().id)?;
            for path in [super::enrichment::disk::file_path(&dir), dir] {
                crate::state::check(&path, cx.permissions)
                    .map_err(|e| format!("enrichment: {e}"))?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ValidSink for ValidFacebookPixel {
    async fn build(
        self: Box<Self>,
        cx: BuildContext,
    ) -> Result<(Box<dyn Sink>, Healthcheck), BuildError> {
        let this = *self;
        this.check_state_files(&cx).map_err(BuildError)?;
        // One connection pool: every pixel's deliveries and healthcheck share it.
        let mut settings = this.graph.into_iter();
        let first = GraphClient::new(settings.next().expect("pixel_id's settings"))
            .map_err(|e| BuildError(e.to_string()))?;
        let mut clients = vec![first.clone()];
        clients.extend(settings.map(|s| first.for_pixel(s)));
        let pixels: Vec<Pixel> = this
            .mapping
            .pixels
            .iter()
            .zip(clients)
            .map(|(id, client)| Pixel {
                id: id.clone(),
                batches: super::batch::BatchBuilder::new(
                    this.batch_max_events,
                    this.batch_max_bytes,
                    this.batch_timeout,
                    client.body_suffix(),
                ),
                client,
            })
            .collect();
        let checks: Vec<(String, GraphClient)> = pixels
            .iter()
            .map(|p| (p.id.clone(), p.client.clone()))
            .collect();
        let healthcheck: Healthcheck = Box::pin(async move {
            let several = checks.len() > 1;
            for (id, client) in &checks {
                client.healthcheck().await.map_err(|e| {
                    if several {
                        format!("pixel {id}: {e}")
                    } else {
                        e
                    }
                })?;
            }
            Ok(())
        });
        let quality = this.quality.map(|(interval, urls)| {
            let targets = pixels.iter().zip(urls).map(|(p, url)| quality::Target {
                pixel: p.id.clone(),
                url,
                client: p.client.clone(),
            });
            quality::Poller::new(interval, targets.collect())
        });
        let sink = FacebookPixelSink::new(
            Mapper::new(this.mapping),
            pixels,
            this.delivering,
            this.dead_letter,
            this.enrichment,
            this.ledger,
            cx,
        )
        .with_workers(this.workers)
        .with_quality(quality);
        Ok((Box::new(sink), healthcheck))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<FacebookPixelConfig, String> {
        toml::from_str(toml_text).map_err(|e| e.message().to_string())
    }

    #[test]
    fn defaults_match_the_spec() {
        let config = parse(r#"pixel_id = "123""#).unwrap();
        assert_eq!(config.value_field, ValueField::Price);
        assert_eq!(config.default_currency, "USD");
        assert_eq!(config.action_source, ActionSource::Website);
        assert!(!config.limited_data_use);
        assert!(!config.page_view);
        assert!(config.hash_external_id);
        assert_eq!(config.api_version, "v26.0");
        assert_eq!(config.endpoint, "https://graph.facebook.com");
        assert_eq!(config.max_future_secs, 60);
        assert_eq!(config.batch.max_events, 1000);
        assert_eq!(
            config.request.concurrency(),
            Concurrency::Adaptive(AdaptiveSettings::default())
        );
        assert!(config.problems().is_empty(), "{:?}", config.problems());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse("pixel_id = \"1\"\npixel = \"2\"").unwrap_err();
        assert!(err.contains("unknown field `pixel`"), "{err}");
    }

    #[test]
    fn value_field_other_than_price_or_value_is_an_error() {
        let err = parse("value_field = \"revenue\"").unwrap_err();
        assert!(err.contains("revenue") && err.contains("price"), "{err}");
        assert_eq!(
            parse("value_field = \"value\"").unwrap().value_field,
            ValueField::Value
        );
    }

    #[test]
    fn action_source_outside_metas_list_is_an_error() {
        let err = parse("action_source = \"web\"").unwrap_err();
        assert!(
            err.contains("web") && err.contains("system_generated"),
            "{err}"
        );
    }

    #[test]
    fn standard_event_target_must_be_a_meta_standard_event() {
        let config = parse(
            r#"standard_events = { "Signed Up" = "CompleteRegistration", "Bought" = "purchase", "X" = "Foo" }"#,
        )
        .unwrap();
        let problems = config.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("standard_events.\"Bought\""));
        assert!(
            problems[0].contains("did you mean \"Purchase\""),
            "{problems:?}"
        );
        assert!(problems[1].starts_with("standard_events.\"X\""));
    }

    #[test]
    fn unknown_currency_is_an_error() {
        let config = parse(r#"default_currency = "DOLLARS""#).unwrap();
        assert!(config.problems()[0].starts_with("default_currency:"));
        let config = parse(r#"default_currency = "eur""#).unwrap();
        assert!(config.problems().is_empty());
    }

    #[test]
    fn phone_country_must_be_a_region() {
        let config = parse(r#"phone_country = "XX""#).unwrap();
        assert!(config.problems()[0].starts_with("phone_country:"));
    }

    #[test]
    fn batch_size_is_capped_at_metas_limit() {
        let config = parse("batch.max_events = 1001").unwrap();
        assert!(config.problems()[0].starts_with("batch.max_events:"));
    }

    #[test]
    fn mapping_workers_are_checked_naming_the_key() {
        let problems = |text: &str| parse(text).unwrap().problems();
        for text in ["mapping.workers = 0", "mapping.workers = 65"] {
            let problems = problems(text);
            assert_eq!(problems.len(), 1, "{text}: {problems:?}");
            assert!(problems[0].starts_with("mapping.workers: "), "{problems:?}");
        }
        // The remembered users are one store: one worker.
        let with_enrichment = problems("mapping.workers = 2\nenrichment.enabled = true");
        assert_eq!(with_enrichment.len(), 1, "{with_enrichment:?}");
        assert!(
            with_enrichment[0].starts_with("mapping.workers: 2 with enrichment.enabled"),
            "{with_enrichment:?}"
        );
        assert!(problems("mapping.workers = 1\nenrichment.enabled = true").is_empty());
        assert!(problems("mapping.workers = 64").is_empty());
        let err = parse("mapping.workers = -1").unwrap_err();
        assert!(err.contains("invalid value"), "{err}");
        let err = parse("mapping.threads = 2").unwrap_err();
        assert!(err.contains("unknown field `threads`"), "{err}");
    }

    #[test]
    fn mapping_workers_default_to_one_per_core_and_to_one_with_enrichment() {
        let resolved = |text: &str| {
            let config = parse(text).unwrap();
            config.mapping.resolved(config.enrichment.enabled)
        };
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(resolved(""), cores.min(MAX_WORKERS));
        assert_eq!(resolved("enrichment.enabled = true"), 1);
        assert_eq!(resolved("mapping.workers = 3"), 3);
    }

    #[test]
    fn pixel_id_must_be_digits() {
        let config = parse(r#"pixel_id = "abc""#).unwrap();
        assert!(config.problems()[0].starts_with("pixel_id:"));
    }

    #[test]
    fn secrets_never_print() {
        let config = parse(
            r#"access_token = "EAAB-secret"
app_secret = "app-secret""#,
        )
        .unwrap();
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("EAAB-secret") && !debug.contains("app-secret"),
            "{debug}"
        );
        assert_eq!(config.access_token.expose(), "EAAB-secret");
        assert_eq!(
            config.app_secret.as_ref().map(|s| s.expose()),
            Some("app-secret")
        );
    }

    #[test]
    fn endpoint_and_api_version_are_checked() {
        let config = parse(
            r#"endpoint = "graph.facebook.com"
api_version = "25.0""#,
        )
        .unwrap();
        let problems = config.problems();
        assert!(problems[0].starts_with("endpoint:"), "{problems:?}");
        assert!(problems[1].starts_with("api_version:"), "{problems:?}");
        let config = parse(r#"endpoint = "http://127.0.0.1:8080""#).unwrap();
        assert!(config.problems().is_empty());
    }

    #[test]
    fn ldu_codes_are_metas() {
        let problems = |text: &str| parse(text).unwrap().problems();
        assert!(problems("limited_data_use = true\nldu_country = 1\nldu_state = 1013").is_empty());
        let bad = problems("limited_data_use = true\nldu_country = 1\nldu_state = 1020");
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(
            bad[0].starts_with("ldu_state: 1020 is not one of Meta's state codes"),
            "{bad:?}"
        );
        let bad = problems("limited_data_use = true\nldu_country = 2\nldu_state = 1000");
        assert!(bad[0].starts_with("ldu_country: 2 is not"), "{bad:?}");
        let bad = problems("limited_data_use = true\nldu_country = 1");
        assert!(
            bad[0].starts_with("ldu_state: Meta needs a state"),
            "{bad:?}"
        );
        let bad = problems("ldu_country = 1\nldu_state = 1000");
        assert!(
            bad[0].contains("only used with limited_data_use = true"),
            "{bad:?}"
        );
    }

    #[test]
    fn consent_settings_are_checked() {
        let err = parse("consent.match = \"some\"").unwrap_err();
        assert!(err.contains("some") || err.contains("variant"), "{err}");
        assert!(err.contains("all") && err.contains("any"), "{err}");
        let err = parse("consent.when_missing = \"drop\"").unwrap_err();
        assert!(err.contains("send") && err.contains("skip"), "{err}");
        let config = parse("consent.required_categories = [\"\"]").unwrap();
        assert!(config.problems()[0].starts_with("consent.required_categories[0]:"));
    }

    #[test]
    fn every_pixel_needs_a_token_and_a_way_to_be_chosen() {
        let config = parse(
            "pixel_id = \"1\"\naccess_token = \"t\"\npixel_id_field = \"context.pixel_id\"\npixels = { \"2\" = \"\" }",
        )
        .unwrap();
        let cx = ValidateContext {
            id: "fb".into(),
            data_dir: None,
        };
        let err = config
            .validate(&cx)
            .err()
            .expect("a pixel without a token is refused")
            .0;
        assert!(err.contains("pixels.\"2\": missing"), "{err}");
        let problems = parse("pixel_id_field = \"context.pixel_id\"")
            .unwrap()
            .problems();
        assert!(
            problems[0].starts_with("pixel_id_field: set, but `pixels` is empty"),
            "{problems:?}"
        );
        let problems = parse("pixels = { \"2\" = \"t\" }").unwrap().problems();
        assert!(
            problems[0].starts_with("pixels: no event can reach"),
            "{problems:?}"
        );
        let problems = parse(
            "pixel_id = \"1\"\npixel_id_field = \"p\"\npixels = { \"x\" = \"t\", \"1\" = \"t\" }",
        )
        .unwrap()
        .problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("pixels.\"x\": a pixel ID is all digits"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("pixels.\"1\": is the sink's pixel_id"))
        );
    }

    #[test]
    fn concurrency_is_adaptive_or_a_number_and_wrong_values_are_named() {
        let fixed = parse("request.concurrency = 16").unwrap();
        assert_eq!(fixed.request.concurrency(), Concurrency::Fixed(16));
        assert!(fixed.problems().is_empty());
        let tuned = parse(
            "request.concurrency = \"adaptive\"\nrequest.adaptive_concurrency.initial_concurrency = 4\nrequest.adaptive_concurrency.max_concurrency_limit = 32",
        )
        .unwrap();
        match tuned.request.concurrency() {
            Concurrency::Adaptive(s) => assert_eq!((s.initial, s.max), (4, 32)),
            other => panic!("{other:?}"),
        }
        for (text, problem) in [
            (
                "request.concurrency = \"fast\"",
                "request.concurrency: \"fast\" is neither",
            ),
            (
                "request.concurrency = 2.5",
                "request.concurrency: 2.5 is neither",
            ),
            (
                "request.concurrency = -1",
                "request.concurrency: -1 must be at least 1",
            ),
            (
                "request.adaptive_concurrency.decrease_ratio = 1.5",
                "request.adaptive_concurrency.decrease_ratio: 1.5 must be between 0 and 1",
            ),
            (
                "request.adaptive_concurrency.initial_concurrency = 300",
                "request.adaptive_concurrency.initial_concurrency: 300 must be between 1 and",
            ),
            (
                "request.shared_budget = { url = \"\" }",
                "request.shared_budget.url:",
            ),
        ] {
            let problems = parse(text).unwrap().problems();
            assert_eq!(problems.len(), 1, "{text}: {problems:?}");
            assert!(problems[0].starts_with(problem), "{text}: {problems:?}");
        }
        let err = parse("request.adaptive_concurrency.initial = 2").unwrap_err();
        assert!(err.contains("unknown field `initial`"), "{err}");
    }

    #[test]
    fn delivery_settings_are_checked() {
        let config = parse("request.concurrency = 0\nrequest.timeout_secs = -1").unwrap();
        let problems = config.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        // `buffer` is every sink's, split off before the sink reads its own settings.
        assert!(parse("buffer.type = \"disk\"").is_err());
    }
}

//! Settings of the `facebook_pixel_server_side` sink, mirroring Segment's "Facebook Pixel
//! Server-Side" destination, and their validation.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::capi::ActionSource;
pub use super::enrichment::{EnrichmentConfig, StoreKind};
use super::mapping::StandardEvent;
use super::normalize::Normalizer;
pub use crate::component::{BufferConfig, BufferType};
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
    pub pixel_id: String,
    /// Segment: "Access Token". Only delivery needs it; `fbpixel map` runs without one.
    #[serde(default)]
    pub access_token: Secret,
    /// Optional: sends `appsecret_proof`.
    #[serde(default)]
    pub app_secret: Option<Secret>,
    /// Segment: "Map Your Events to Standard FB Events".
    #[serde(default)]
    pub standard_events: BTreeMap<String, String>,
    /// Segment: "Map Categories to FB Content Types".
    #[serde(default)]
    pub content_types: BTreeMap<String, String>,
    /// Segment: "Alternative External ID Field" — a dotted path into the whole message.
    #[serde(default)]
    pub external_id_field: Option<String>,
    /// Segment: "Value Field Identifier".
    #[serde(default)]
    pub value_field: ValueField,
    #[serde(default = "default_currency")]
    pub default_currency: String,
    #[serde(default = "default_action_source")]
    pub action_source: ActionSource,
    /// Segment: "Limited Data Use".
    #[serde(default)]
    pub limited_data_use: bool,
    /// Send `page` calls as PageView.
    #[serde(default)]
    pub page_view: bool,
    /// ISO 3166-1 region for phone numbers written without a country code.
    #[serde(default)]
    pub phone_country: Option<String>,
    #[serde(default = "yes")]
    pub hash_external_id: bool,
    #[serde(default)]
    pub allow_pii_properties: Vec<String>,
    #[serde(default)]
    pub hash_properties: Vec<String>,
    /// Events Manager → Test Events.
    #[serde(default)]
    pub test_event_code: Option<String>,
    #[serde(default)]
    pub partner_agent: Option<String>,
    #[serde(default = "default_api_version")]
    pub api_version: String,
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    #[serde(default = "default_max_future_secs")]
    pub max_future_secs: u64,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub request: RequestConfig,
    #[serde(default)]
    pub dead_letter: Option<DeadLetterConfig>,
    #[serde(default)]
    pub buffer: BufferConfig,
    #[serde(default)]
    pub acknowledgements: AcknowledgementsConfig,
    #[serde(default)]
    pub healthcheck: HealthcheckConfig,
    /// Remember users' hashed keys and add them to their later events.
    #[serde(default)]
    pub enrichment: EnrichmentConfig,
}

/// `healthcheck.enabled`: check the token and pixel at start (default true).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthcheckConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for HealthcheckConfig {
    fn default() -> Self {
        HealthcheckConfig { enabled: true }
    }
}

/// Which property carries the value of Product Viewed / Product Added.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueField {
    #[default]
    Price,
    Value,
}

impl ValueField {
    pub fn property(self) -> &'static str {
        match self {
            ValueField::Price => "price",
            ValueField::Value => "value",
        }
    }
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    pub path: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcknowledgementsConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
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
fn default_api_version() -> String {
    "v25.0".into()
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
fn default_concurrency() -> usize {
    4
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
            concurrency: default_concurrency(),
            timeout_secs: default_request_timeout(),
            retry_initial_backoff_secs: default_initial_backoff(),
            retry_max_duration_secs: default_retry_max_duration(),
            retry_attempts: None,
        }
    }
}

impl Default for AcknowledgementsConfig {
    fn default() -> Self {
        AcknowledgementsConfig { enabled: true }
    }
}

impl FacebookPixelConfig {
    /// Every invalid value, each naming its key (without the component prefix, which the caller
    /// adds). Checks what can be known without the network; the healthcheck does the rest.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.pixel_id.chars().all(|c| c.is_ascii_digit()) {
            problems.push(
                "pixel_id: a pixel ID is all digits (Events Manager → Data sources → your pixel)"
                    .to_string(),
            );
        }
        for (name, target) in &self.standard_events {
            if let Err(why) = target.parse::<StandardEvent>() {
                problems.push(format!("standard_events.{name:?}: {why}"));
            }
        }
        if iso_currency::Currency::from_code(&self.default_currency.trim().to_ascii_uppercase())
            .is_none()
        {
            problems.push(format!(
                "default_currency: {:?} is not an ISO 4217 currency code (e.g. \"USD\", \"EUR\")",
                self.default_currency
            ));
        }
        if let Err(why) = Normalizer::new(self.phone_country.as_deref()) {
            problems.push(format!("phone_country: {why}"));
        }
        if let Some(path) = &self.external_id_field
            && (path.is_empty() || path.split('.').any(str::is_empty))
        {
            problems.push(format!(
                "external_id_field: {path:?} is not a dotted path such as \"context.traits.customer_id\""
            ));
        }
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
        if self.request.concurrency == 0 {
            problems.push("request.concurrency: must be at least 1".to_string());
        }
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
        if !self.endpoint.starts_with("http://") && !self.endpoint.starts_with("https://") {
            problems.push(format!(
                "endpoint: {:?} is not an http(s) URL (default \"https://graph.facebook.com\")",
                self.endpoint
            ));
        }
        if !self.api_version.starts_with('v') || self.api_version.len() < 2 {
            problems.push(format!(
                "api_version: {:?} is not a Graph API version such as \"v25.0\"",
                self.api_version
            ));
        }
        problems
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
        assert_eq!(config.api_version, "v25.0");
        assert_eq!(config.endpoint, "https://graph.facebook.com");
        assert_eq!(config.max_future_secs, 60);
        assert_eq!(config.batch.max_events, 1000);
        assert_eq!(config.request.concurrency, 4);
        assert_eq!(config.buffer.kind, BufferType::Memory);
        assert!(config.acknowledgements.enabled);
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
    fn delivery_settings_are_checked() {
        let config = parse(
            "request.concurrency = 0\nrequest.timeout_secs = -1\nbuffer.max_events = 0\nbuffer.type = \"disk\"",
        )
        .unwrap();
        let problems = config.problems();
        // The buffer's own settings are checked by the topology, for every sink.
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(config.buffer.kind, BufferType::Disk);
        assert!(parse("buffer.type = \"tape\"").is_err());
    }
}

//! Meta's Dataset Quality API as documented: the request (`GET /{api_version}/dataset_quality`
//! with `dataset_id`, `agent_name` and `fields`) and its answer (`{"web": [...]}`, one entry per
//! event name), read leniently: Meta adds metrics over time and leaves out those it has none for,
//! so every field is optional and unknown ones are ignored.
//!
//! Source: <https://developers.facebook.com/documentation/ads-commerce/conversions-api/dataset-quality-api>
//! and the reference pages of its nodes (AdsPixelCAPIEMQ, AdsDatasetDataFreshness, …); the
//! Business SDK's `AdsPixelCAPIIntegrationQuality` names the same `web` fields.

use hyper::Uri;
use serde::{Deserialize, Serialize};

/// The `fields` asked for: every metric the sink exports or `fbpixel quality` reports, each
/// spelled as Meta's examples spell it (the field table says `dedup_key_feedback`, but every
/// example and the Business SDK say `dedupe_key_feedback`).
pub const FIELDS: &str = "web{event_name,\
event_match_quality{composite_score,match_key_feedback,diagnostics},\
event_coverage{percentage,goal_percentage},\
dedupe_key_feedback{dedupe_key,browser_events_with_dedupe_key{percentage},server_events_with_dedupe_key{percentage},overall_browser_coverage_from_dedupe_key{percentage}},\
data_freshness{upload_frequency}}";

/// `agent_name` for a `partner_agent`: Meta filters by "the normalized value of the
/// `partner_agent` field": for `[partner_name]_[majorversion]_[minorVersion]`, `partner_name` in
/// lowercase. So up to two trailing all-digit `_` parts go, and the rest is lowercased.
pub fn agent_name(partner_agent: &str) -> String {
    let mut name = partner_agent.trim();
    for _ in 0..2 {
        match name.rsplit_once('_') {
            Some((head, tail))
                if !head.is_empty()
                    && !tail.is_empty()
                    && tail.bytes().all(|b| b.is_ascii_digit()) =>
            {
                name = head;
            }
            _ => break,
        }
    }
    name.to_lowercase()
}

/// The request of one pixel. The token goes in the `Authorization` header, as the sink's other
/// requests send it, so it is never part of a URL a proxy or a log could keep.
pub fn url(
    endpoint: &str,
    api_version: &str,
    pixel_id: &str,
    agent_name: Option<&str>,
    appsecret_proof: Option<&str>,
) -> Result<Uri, String> {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("dataset_id", pixel_id);
    if let Some(agent) = agent_name.filter(|a| !a.is_empty()) {
        query.append_pair("agent_name", agent);
    }
    query.append_pair("fields", FIELDS);
    if let Some(proof) = appsecret_proof {
        query.append_pair("appsecret_proof", proof);
    }
    let base = endpoint.trim_end_matches('/');
    format!("{base}/{api_version}/dataset_quality?{}", query.finish())
        .parse()
        .map_err(|_| format!("endpoint: {endpoint:?} does not make a valid URL"))
}

/// Meta's answer: `web`, one entry per event name.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Answer {
    /// The website events' metrics.
    #[serde(default)]
    pub web: Vec<EventQuality>,
}

impl Answer {
    /// Meta's answer from its JSON body, or why it is not one.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(body).map_err(|e| {
            format!("the answer is not the Dataset Quality API's (`web`: a list of events): {e}")
        })
    }
}

/// What Meta says of one event name of a dataset.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct EventQuality {
    /// A standard or custom event name.
    #[serde(default)]
    pub event_name: String,
    /// Event Match Quality (AdsPixelCAPIEMQ).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_match_quality: Option<MatchQuality>,
    /// The 7-day average share of Pixel events the Conversions API covers (AdsDatasetEventCoverage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_coverage: Option<EventCoverage>,
    /// Per deduplication key, the share of events carrying it (AdsDatasetDedupKeyFeedback).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dedupe_key_feedback: Vec<DedupeKey>,
    /// How often events arrive (AdsDatasetDataFreshness).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_freshness: Option<DataFreshness>,
}

/// AdsPixelCAPIEMQ: the score and what it is made of.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct MatchQuality {
    /// The score out of 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composite_score: Option<f64>,
    /// Per match key, the share of events that carry it.
    #[serde(default)]
    pub match_key_feedback: Vec<MatchKey>,
    /// Issues Meta found, with its recommendations.
    #[serde(default)]
    pub diagnostics: Vec<Diagnostic>,
}

/// One match key of [`MatchQuality`].
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct MatchKey {
    /// Meta's name of the key (`email`, `ip_address`, …).
    #[serde(default)]
    pub identifier: String,
    /// The share of events carrying it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<Percentage>,
}

/// `{"percentage": …}`, 0 to 100.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Percentage {
    /// The share, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<f64>,
}

/// One EMQ diagnostic, as Meta words it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Diagnostic {
    /// Its title ("Server sending mismatched IP addresses").
    #[serde(default)]
    pub name: String,
    /// What Meta saw.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// What Meta recommends.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub solution: String,
    /// The share of events affected, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<f64>,
    /// Events affected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affected_event_count: Option<u64>,
    /// Events looked at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_event_count: Option<u64>,
}

/// AdsDatasetEventCoverage.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct EventCoverage {
    /// Server events against unique browser events, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<f64>,
    /// Meta's goal (75 in its examples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal_percentage: Option<f64>,
}

/// One key of AdsDatasetDedupKeyFeedback.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct DedupeKey {
    /// `event_id`, `external_id`, `fbp`.
    #[serde(default)]
    pub dedupe_key: String,
    /// Browser events carrying the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser_events_with_dedupe_key: Option<Percentage>,
    /// Server events carrying the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_events_with_dedupe_key: Option<Percentage>,
    /// Browser events deduplicated with server events by this key (incremental per key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overall_browser_coverage_from_dedupe_key: Option<Percentage>,
}

impl DedupeKey {
    /// Each share with its Meta field name, as the `measure` label of the gauge.
    pub fn shares(&self) -> [(&'static str, Option<f64>); 3] {
        [
            (
                "browser_events_with_dedupe_key",
                self.browser_events_with_dedupe_key
                    .and_then(|p| p.percentage),
            ),
            (
                "server_events_with_dedupe_key",
                self.server_events_with_dedupe_key
                    .and_then(|p| p.percentage),
            ),
            (
                "overall_browser_coverage_from_dedupe_key",
                self.overall_browser_coverage_from_dedupe_key
                    .and_then(|p| p.percentage),
            ),
        ]
    }
}

/// AdsDatasetDataFreshness.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct DataFreshness {
    /// `real_time`, `hourly`, `daily` or `weekly`.
    #[serde(default)]
    pub upload_frequency: String,
}

impl DataFreshness {
    /// Meta reports a frequency, not a delay: this is the longest delay the frequency it names
    /// allows (`real_time` 0, `hourly` 3600, `daily` 86400, `weekly` 604800 seconds, the
    /// values the reference page lists); `None` for a value it does not list.
    pub fn seconds(&self) -> Option<f64> {
        match self.upload_frequency.as_str() {
            "real_time" => Some(0.0),
            "hourly" => Some(3_600.0),
            "daily" => Some(86_400.0),
            "weekly" => Some(604_800.0),
            _ => None,
        }
    }
}

/// Our user_data key for Meta's match key `identifier`. Meta's examples name `email`,
/// `ip_address`, `user_agent` and `external_id`; an identifier spelled as a Conversions API key
/// (`fbc`, `fbp`, …) is that key. Any other is reported under Meta's name only: its
/// list of identifiers is not documented, and a guessed pairing would mislead.
pub fn our_key(identifier: &str, keys: &[&'static str]) -> Option<&'static str> {
    let ours = match identifier {
        "email" => "em",
        "ip_address" => "client_ip_address",
        "user_agent" => "client_user_agent",
        other => other,
    };
    keys.iter().copied().find(|k| *k == ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The "API Response" examples of Meta's Dataset Quality API page, each a part of one
    /// answer: EMQ with match keys, diagnostics, event coverage, deduplication, freshness.
    const EMQ: &str = r#"{"web":[{"event_match_quality":{"composite_score":6.2,"match_key_feedback":[{"identifier":"user_agent","coverage":{"percentage":100}},{"identifier":"external_id","coverage":{"percentage":100}}]},"event_name":"pLTVPurchase"},{"event_match_quality":{"composite_score":7.2,"match_key_feedback":[{"identifier":"email","coverage":{"percentage":100}},{"identifier":"ip_address","coverage":{"percentage":99.9}}]},"event_name":"CompleteRegistration"}]}"#;
    const DIAGNOSTICS: &str = r#"{"web":[{"event_match_quality":{"diagnostics":[{"name":"Server sending mismatched IP addresses","description":"Your server is sending client IP addresses that do not match those from Meta Pixel.","solution":"In your server payload, send the client_ip_address retrieved from customer interactions.","percentage":61.5,"affected_event_count":19567,"total_event_count":31830}]},"event_name":"Purchase"}]}"#;
    const OTHERS: &str = r#"{"web":[{"event_coverage":{"percentage":34.1,"goal_percentage":75,"description":"The percentage of events received from your Conversions API compared to unique browser events from the Meta Pixel."},"dedupe_key_feedback":[{"dedupe_key":"event_id","browser_events_with_dedupe_key":{"percentage":100,"description":"x"},"server_events_with_dedupe_key":{"percentage":100},"overall_browser_coverage_from_dedupe_key":{"percentage":14.8}}],"data_freshness":{"upload_frequency":"hourly","description":"The average frequency with which instances of this event are received through the Conversions API."},"event_name":"AddToCart"}]}"#;

    #[test]
    fn metas_documented_examples_parse_into_every_metric() {
        let emq = Answer::parse(EMQ.as_bytes()).unwrap();
        assert_eq!(emq.web.len(), 2);
        let registration = &emq.web[1];
        assert_eq!(registration.event_name, "CompleteRegistration");
        let quality = registration.event_match_quality.as_ref().unwrap();
        assert_eq!(quality.composite_score, Some(7.2));
        assert_eq!(quality.match_key_feedback[1].identifier, "ip_address");
        assert_eq!(
            quality.match_key_feedback[1].coverage.unwrap().percentage,
            Some(99.9)
        );

        let diagnostics = Answer::parse(DIAGNOSTICS.as_bytes()).unwrap();
        let d = &diagnostics.web[0]
            .event_match_quality
            .as_ref()
            .unwrap()
            .diagnostics[0];
        assert_eq!(d.name, "Server sending mismatched IP addresses");
        assert_eq!(
            (d.percentage, d.affected_event_count, d.total_event_count),
            (Some(61.5), Some(19567), Some(31830))
        );
        assert!(d.solution.starts_with("In your server payload"));

        let others = Answer::parse(OTHERS.as_bytes()).unwrap();
        let cart = &others.web[0];
        assert_eq!(cart.event_match_quality, None);
        assert_eq!(
            cart.event_coverage,
            Some(EventCoverage {
                percentage: Some(34.1),
                goal_percentage: Some(75.0)
            })
        );
        assert_eq!(
            cart.dedupe_key_feedback[0].shares(),
            [
                ("browser_events_with_dedupe_key", Some(100.0)),
                ("server_events_with_dedupe_key", Some(100.0)),
                ("overall_browser_coverage_from_dedupe_key", Some(14.8)),
            ]
        );
        assert_eq!(
            cart.data_freshness.as_ref().unwrap().seconds(),
            Some(3600.0)
        );
    }

    #[test]
    fn an_answer_that_is_not_metas_is_refused_with_why() {
        assert!(
            Answer::parse(b"<html>")
                .unwrap_err()
                .contains("not the Dataset Quality API's")
        );
        assert!(Answer::parse(br#"{"web":{"event_name":"x"}}"#).is_err());
        // An empty answer (a new pixel) is an answer.
        assert!(Answer::parse(b"{}").unwrap().web.is_empty());
    }

    #[test]
    fn freshness_in_seconds_only_for_the_values_meta_lists() {
        let at = |f: &str| {
            DataFreshness {
                upload_frequency: f.into(),
            }
            .seconds()
        };
        assert_eq!(at("real_time"), Some(0.0));
        assert_eq!(at("daily"), Some(86_400.0));
        assert_eq!(at("weekly"), Some(604_800.0));
        assert_eq!(at("monthly"), None);
    }

    #[test]
    fn the_agent_name_is_the_normalized_partner_agent() {
        assert_eq!(agent_name("Acme_1_2"), "acme");
        assert_eq!(agent_name("my-platform"), "my-platform");
        assert_eq!(agent_name("my_shop_3"), "my_shop");
        assert_eq!(agent_name("shop_v2"), "shop_v2");
    }

    #[test]
    fn the_request_names_the_pixel_agent_fields_and_proof_but_not_the_token() {
        let uri = url(
            "http://127.0.0.1:9/",
            "v26.0",
            "123",
            Some("acme"),
            Some("abc"),
        )
        .unwrap();
        assert_eq!(uri.path(), "/v26.0/dataset_quality");
        let query: Vec<(String, String)> = form_urlencoded::parse(uri.query().unwrap().as_bytes())
            .into_owned()
            .collect();
        let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("dataset_id"), Some("123"));
        assert_eq!(get("agent_name"), Some("acme"));
        assert_eq!(get("fields"), Some(FIELDS));
        assert_eq!(get("appsecret_proof"), Some("abc"));
        assert_eq!(get("access_token"), None);
        let without = url("https://graph.facebook.com", "v26.0", "1", None, None).unwrap();
        assert!(!without.query().unwrap().contains("agent_name"));
    }

    #[test]
    fn metas_identifiers_pair_with_our_keys_only_where_documented() {
        let keys = [
            "em",
            "ph",
            "client_ip_address",
            "client_user_agent",
            "external_id",
            "fbc",
        ];
        assert_eq!(our_key("email", &keys), Some("em"));
        assert_eq!(our_key("ip_address", &keys), Some("client_ip_address"));
        assert_eq!(our_key("fbc", &keys), Some("fbc"));
        assert_eq!(our_key("phone", &keys), None);
    }
}

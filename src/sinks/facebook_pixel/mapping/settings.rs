//! What the mapping needs to know of the sink's settings, already validated: the sink's config
//! builds it (and reports every invalid value), so the mapping neither sees nor re-checks the
//! config.

use std::collections::BTreeMap;

use serde::Deserialize;

pub use super::consent::ConsentRules;
use super::event_name::StandardEvent;
pub use super::message::Paths;
use crate::sinks::facebook_pixel::capi::ActionSource;
use crate::sinks::facebook_pixel::normalize::Normalizer;

/// The mapping's settings (SPEC §8), each one valid.
#[derive(Debug)]
pub struct MappingSettings {
    /// `standard_events`: Segment event name → Meta standard event.
    pub standard_events: BTreeMap<String, StandardEvent>,
    /// `content_types`: Segment category → Meta content type.
    pub content_types: BTreeMap<String, String>,
    /// `external_id_field` and `pixel_id_field`, split at their dots.
    pub paths: Paths,
    /// Every pixel an event may go to: `pixel_id` first, then the keys of `pixels`. An event's
    /// pixel is its index here.
    pub pixels: Vec<String>,
    /// `value_field`.
    pub value_field: ValueField,
    /// `default_currency`, as the ISO 4217 code.
    pub default_currency: &'static str,
    /// `action_source`.
    pub action_source: ActionSource,
    /// `limited_data_use`.
    pub limited_data_use: bool,
    /// `ldu_country`: Meta's country code, 0 = let Meta geolocate.
    pub ldu_country: i64,
    /// `ldu_state`: Meta's state code, 0 = let Meta geolocate.
    pub ldu_state: i64,
    /// `opt_out`: every event is for attribution only.
    pub opt_out: bool,
    /// `consent`.
    pub consent: ConsentRules,
    /// `page_view`.
    pub page_view: bool,
    /// `screen_events`: send screen calls as `Viewed {name} Screen`.
    pub screen_events: bool,
    /// `app_action_source`: `app` for messages with `context.app` and no action source.
    pub app_action_source: bool,
    /// `lead_event_source`: the CRM named on Conversion Leads events.
    pub lead_event_source: Option<String>,
    /// Normalizes user_data; holds `phone_country`.
    pub normalizer: Normalizer,
    /// `hash_external_id`.
    pub hash_external_id: bool,
    /// `allow_pii_properties`.
    pub allow_pii_properties: Vec<String>,
    /// `hash_properties`.
    pub hash_properties: Vec<String>,
    /// `max_future_secs`.
    pub max_future_secs: u64,
}

impl Default for MappingSettings {
    /// The defaults of SPEC §8 (website events, USD, no phone region).
    fn default() -> Self {
        Self {
            standard_events: BTreeMap::new(),
            content_types: BTreeMap::new(),
            paths: Paths::default(),
            pixels: Vec::new(),
            value_field: ValueField::default(),
            default_currency: "USD",
            action_source: ActionSource::Website,
            limited_data_use: false,
            ldu_country: 0,
            ldu_state: 0,
            opt_out: false,
            consent: ConsentRules::default(),
            page_view: false,
            screen_events: false,
            app_action_source: false,
            lead_event_source: None,
            normalizer: Normalizer::new(None).expect("no region is always valid"),
            hash_external_id: true,
            allow_pii_properties: Vec::new(),
            hash_properties: Vec::new(),
            max_future_secs: 60,
        }
    }
}

/// Which property carries the value of Product Viewed / Product Added (`value_field`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueField {
    /// `properties.price`.
    #[default]
    Price,
    /// `properties.value`.
    Value,
}

impl ValueField {
    /// The property's name.
    pub fn property(self) -> &'static str {
        match self {
            ValueField::Price => "price",
            ValueField::Value => "value",
        }
    }
}

//! The Conversions API server event, as typed structs so that field names cannot drift.
//!
//! Everything borrows from the input message and the settings: an event is built, serialized
//! into its request and dropped, without copying the strings it carries.

use std::borrow::Cow;
use std::fmt;

use serde::{Serialize, Serializer};
use smallvec::SmallVec;

use super::normalize::Sha256Hex;
use crate::json::Json;

/// One element of the request's `data` array.
#[derive(Debug, Serialize)]
pub struct ServerEvent<'a> {
    /// A Meta standard event (`Purchase`) or a custom event name, which Events Manager groups by.
    pub event_name: Cow<'a, str>,
    /// Unix seconds.
    pub event_time: i64,
    /// The message id, so Meta deduplicates this event against the browser pixel's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Cow<'a, str>>,
    /// The page the event happened on (required by Meta for website events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_source_url: Option<&'a str>,
    /// The page the visitor came from (`context.page.referrer`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrer_url: Option<&'a str>,
    /// Use the event for attribution only, not for ad delivery optimisation. Sent only when
    /// true: Meta's default is false.
    #[serde(skip_serializing_if = "is_false")]
    pub opt_out: bool,
    /// Where the conversion happened.
    pub action_source: ActionSource,
    /// The customer information Meta matches the event to a person with, hashed.
    pub user_data: UserData<'a>,
    /// The event's business data: value, currency, contents.
    #[serde(skip_serializing_if = "CustomData::is_empty")]
    pub custom_data: CustomData<'a>,
    /// Limited Data Use options, present only when `limited_data_use` is on.
    #[serde(flatten)]
    pub data_processing: Option<DataProcessing<'a>>,
    /// The app and device of an `app` event. Boxed: it is 400 bytes, and web events, which
    /// never have one, move the event several times on their way to the request body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_data: Option<Box<AppData<'a>>>,
    /// The channel of a `business_messaging` event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messaging_channel: Option<MessagingChannel>,
    /// The conversion an `AppendValue` event adds value to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_event_data: Option<OriginalEventData<'a>>,
}

/// Meta's `app_data` of an app event.
#[derive(Debug, PartialEq, Serialize)]
pub struct AppData<'a> {
    /// The person allows ad tracking on the device (Apple's ATT, Android's ad id setting).
    pub advertiser_tracking_enabled: bool,
    /// The person allows tracking by the app itself.
    pub application_tracking_enabled: bool,
    /// Meta's 16 device slots, in Meta's order, `""` where the message says nothing.
    pub extinfo: [Cow<'a, str>; 16],
}

/// `messaging_channel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MessagingChannel {
    Whatsapp,
    Messenger,
    Instagram,
}

impl MessagingChannel {
    /// Every channel.
    pub const ALL: [MessagingChannel; 3] = [
        MessagingChannel::Whatsapp,
        MessagingChannel::Messenger,
        MessagingChannel::Instagram,
    ];

    /// Meta's name.
    pub fn as_str(self) -> &'static str {
        match self {
            MessagingChannel::Whatsapp => "whatsapp",
            MessagingChannel::Messenger => "messenger",
            MessagingChannel::Instagram => "instagram",
        }
    }
}

/// `original_event_data` of an `AppendValue` event.
#[derive(Debug, PartialEq, Serialize)]
pub struct OriginalEventData<'a> {
    pub event_name: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Cow<'a, str>>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Where the conversion happened (Meta's `action_source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionSource {
    Email,
    Website,
    App,
    PhoneCall,
    Chat,
    PhysicalStore,
    SystemGenerated,
    BusinessMessaging,
    Other,
}

impl ActionSource {
    pub const ALL: [ActionSource; 9] = [
        ActionSource::Email,
        ActionSource::Website,
        ActionSource::App,
        ActionSource::PhoneCall,
        ActionSource::Chat,
        ActionSource::PhysicalStore,
        ActionSource::SystemGenerated,
        ActionSource::BusinessMessaging,
        ActionSource::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionSource::Email => "email",
            ActionSource::Website => "website",
            ActionSource::App => "app",
            ActionSource::PhoneCall => "phone_call",
            ActionSource::Chat => "chat",
            ActionSource::PhysicalStore => "physical_store",
            ActionSource::SystemGenerated => "system_generated",
            ActionSource::BusinessMessaging => "business_messaging",
            ActionSource::Other => "other",
        }
    }

    /// Exact (trimmed, case-insensitive) match of Meta's name.
    pub fn parse(text: &str) -> Option<ActionSource> {
        let text = text.trim();
        Self::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for ActionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The values of one hashed key. Almost always one, so it is kept inline: an allocation per key
/// was a measurable share of mapping time.
pub type Hashes = SmallVec<[Sha256Hex; 1]>;

fn none<T: smallvec::Array>(values: &SmallVec<T>) -> bool {
    values.is_empty()
}

/// Customer information. Hashed keys are arrays, as Meta's SDKs send them.
#[derive(Debug, Default, Serialize)]
pub struct UserData<'a> {
    #[serde(skip_serializing_if = "none")]
    pub em: Hashes,
    #[serde(skip_serializing_if = "none")]
    pub ph: Hashes,
    #[serde(rename = "fn", skip_serializing_if = "none")]
    pub first_name: Hashes,
    #[serde(rename = "ln", skip_serializing_if = "none")]
    pub last_name: Hashes,
    #[serde(skip_serializing_if = "none")]
    pub ge: Hashes,
    #[serde(skip_serializing_if = "none")]
    pub db: Hashes,
    #[serde(skip_serializing_if = "none")]
    pub ct: Hashes,
    #[serde(skip_serializing_if = "none")]
    pub st: Hashes,
    #[serde(skip_serializing_if = "none")]
    pub zp: Hashes,
    #[serde(skip_serializing_if = "none")]
    pub country: Hashes,
    #[serde(skip_serializing_if = "none")]
    pub external_id: SmallVec<[ExternalId<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip_address: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fbc: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fbp: Option<&'a str>,
    /// The ids below are sent unhashed, as Meta requires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fb_login_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lead_id: Option<Cow<'a, str>>,
    /// The app's install id (app events only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anon_id: Option<Cow<'a, str>>,
    /// The mobile advertiser id, IDFA or AAID (app events only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub madid: Option<&'a str>,
    /// Business-messaging ids (`business_messaging` events only), unhashed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctwa_clid: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_scoped_user_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ig_account_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ig_sid: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whatsapp_business_account_id: Option<Cow<'a, str>>,
}

/// Which user_data keys an event carries, as bits in [`UserDataKeys::NAMES`] order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserDataKeys(u32);

impl UserDataKeys {
    /// The CAPI user_data keys, in bit order.
    pub const NAMES: [&'static str; 26] = [
        "em",
        "ph",
        "fn",
        "ln",
        "ge",
        "db",
        "ct",
        "st",
        "zp",
        "country",
        "external_id",
        "client_ip_address",
        "client_user_agent",
        "fbc",
        "fbp",
        "subscription_id",
        "fb_login_id",
        "lead_id",
        "anon_id",
        "madid",
        "ctwa_clid",
        "page_id",
        "page_scoped_user_id",
        "ig_account_id",
        "ig_sid",
        "whatsapp_business_account_id",
    ];

    /// The names of the keys present.
    pub fn iter(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .into_iter()
            .enumerate()
            .filter(move |(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, name)| name)
    }

    /// The bits, as [`UserDataKeys::from_bits`] takes them.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Whether the key at bit `i` is present.
    pub fn has(self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }

    /// The keys whose bits are set in `bits`.
    pub fn from_bits(bits: u32) -> Self {
        Self(bits & ((1 << Self::NAMES.len()) - 1))
    }
}

impl std::ops::BitOr for UserDataKeys {
    type Output = Self;
    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl UserData<'_> {
    /// The keys this user_data carries.
    pub fn keys(&self) -> UserDataKeys {
        let present = [
            !self.em.is_empty(),
            !self.ph.is_empty(),
            !self.first_name.is_empty(),
            !self.last_name.is_empty(),
            !self.ge.is_empty(),
            !self.db.is_empty(),
            !self.ct.is_empty(),
            !self.st.is_empty(),
            !self.zp.is_empty(),
            !self.country.is_empty(),
            !self.external_id.is_empty(),
            self.client_ip_address.is_some(),
            self.client_user_agent.is_some(),
            self.fbc.is_some(),
            self.fbp.is_some(),
            self.subscription_id.is_some(),
            self.fb_login_id.is_some(),
            self.lead_id.is_some(),
            self.anon_id.is_some(),
            self.madid.is_some(),
            self.ctwa_clid.is_some(),
            self.page_id.is_some(),
            self.page_scoped_user_id.is_some(),
            self.ig_account_id.is_some(),
            self.ig_sid.is_some(),
            self.whatsapp_business_account_id.is_some(),
        ];
        UserDataKeys(
            present
                .iter()
                .enumerate()
                .fold(0, |bits, (i, &p)| bits | (u32::from(p) << i)),
        )
    }

    /// Meta rejects a whole request when one event has none of these.
    pub fn has_customer_information(&self) -> bool {
        !self.em.is_empty()
            || !self.ph.is_empty()
            || !self.external_id.is_empty()
            || self.fbp.is_some()
            || self.fbc.is_some()
            || (self.client_ip_address.is_some() && self.client_user_agent.is_some())
            || self.lead_id.is_some()
            || self.subscription_id.is_some()
            || self.fb_login_id.is_some()
            || self.anon_id.is_some()
            || self.madid.is_some()
            || self.ctwa_clid.is_some()
            || self.page_scoped_user_id.is_some()
            || self.ig_sid.is_some()
    }
}

/// `external_id` is hashed unless the setting `hash_external_id` is off.
#[derive(Debug, PartialEq)]
pub enum ExternalId<'a> {
    Hashed(Sha256Hex),
    Plain(Cow<'a, str>),
}

impl Serialize for ExternalId<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ExternalId::Hashed(hash) => serializer.serialize_str(hash.as_str()),
            ExternalId::Plain(text) => serializer.serialize_str(text),
        }
    }
}

/// Event details: value, currency, products, and the properties that pass through.
#[derive(Debug, Default, Serialize)]
pub struct CustomData<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub content_ids: Vec<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contents: Vec<Content<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_name: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_category: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_items: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_string: Option<Cow<'a, str>>,
    /// The margin of a purchase (value minus costs), for value optimisation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net_revenue: Option<serde_json::Number>,
    /// The customer's predicted lifetime value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicted_ltv: Option<serde_json::Number>,
    /// Conversion Leads: `crm` for a CRM stage of a lead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_source: Option<&'static str>,
    /// Conversion Leads: the CRM the lead's stages come from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lead_event_source: Option<&'a str>,
    /// Properties passed through unchanged (or hashed), after the computed keys.
    #[serde(flatten)]
    pub properties: Properties<'a>,
}

impl CustomData<'_> {
    pub fn is_empty(&self) -> bool {
        self.value.is_none()
            && self.currency.is_none()
            && self.content_ids.is_empty()
            && self.contents.is_empty()
            && self.content_type.is_none()
            && self.content_name.is_none()
            && self.content_category.is_none()
            && self.num_items.is_none()
            && self.order_id.is_none()
            && self.search_string.is_none()
            && self.net_revenue.is_none()
            && self.predicted_ltv.is_none()
            && self.event_source.is_none()
            && self.lead_event_source.is_none()
            && self.properties.0.is_empty()
    }

    /// Whether a computed key of this name is set (computed keys win over pass-through ones).
    pub fn has_computed(&self, key: &str) -> bool {
        match key {
            "value" => self.value.is_some(),
            "currency" => self.currency.is_some(),
            "content_ids" => !self.content_ids.is_empty(),
            "contents" => !self.contents.is_empty(),
            "content_type" => self.content_type.is_some(),
            "content_name" => self.content_name.is_some(),
            "content_category" => self.content_category.is_some(),
            "num_items" => self.num_items.is_some(),
            "order_id" => self.order_id.is_some(),
            "search_string" => self.search_string.is_some(),
            "net_revenue" => self.net_revenue.is_some(),
            "predicted_ltv" => self.predicted_ltv.is_some(),
            "event_source" => self.event_source.is_some(),
            "lead_event_source" => self.lead_event_source.is_some(),
            _ => false,
        }
    }
}

/// One product line.
#[derive(Debug, PartialEq, Serialize)]
pub struct Content<'a> {
    pub id: Cow<'a, str>,
    pub quantity: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_price: Option<serde_json::Number>,
}

/// Pass-through properties, serialized as members of `custom_data`.
#[derive(Debug, Default)]
pub struct Properties<'a>(pub Vec<(&'a str, Property<'a>)>);

/// A pass-through property value.
#[derive(Debug, PartialEq)]
pub enum Property<'a> {
    Raw(&'a Json<'a>),
    /// Listed in `hash_properties`: normalized and hashed.
    Hashed(Sha256Hex),
    HashedList(Vec<Sha256Hex>),
}

impl Serialize for Properties<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            match value {
                Property::Raw(json) => map.serialize_entry(key, json)?,
                Property::Hashed(hash) => map.serialize_entry(key, hash)?,
                Property::HashedList(hashes) => map.serialize_entry(key, hashes)?,
            }
        }
        map.end()
    }
}

/// Limited Data Use: `data_processing_options` with its country and state.
#[derive(Debug, PartialEq, Serialize)]
pub struct DataProcessing<'a> {
    pub data_processing_options: Vec<Cow<'a, str>>,
    pub data_processing_options_country: i64,
    pub data_processing_options_state: i64,
}

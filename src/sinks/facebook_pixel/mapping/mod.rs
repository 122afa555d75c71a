//! Segment message → Conversions API server event (SPEC §1–6).
//!
//! Pure: no I/O, no clock (the caller passes `now`), no globals. Every message ends as exactly
//! one of [`Outcome::Mapped`], [`Outcome::Skipped`] or [`Outcome::Rejected`].

pub mod custom_data;
mod data_processing;
pub mod event_name;
pub mod event_time;
pub mod message;
pub mod money;
pub mod user_data;

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Datelike, Utc};

pub use event_name::StandardEvent;

use self::custom_data::CustomDataRules;
use self::event_name::{MAX_CUSTOM_NAME_CHARS, Naming, StandardEventMap, name_event, squash};
pub use self::message::{Part, SegmentMessage};
use self::user_data::UserDataRules;
use super::capi::{ActionSource, ServerEvent};
use super::config::FacebookPixelConfig;
use super::normalize::{HashedField, Normalizer};
use crate::json::{Json, member};

/// The keys under `integrations` that address this destination (Segment renamed it twice).
pub const DESTINATION_KEYS: [&str; 3] = [
    "Facebook Pixel Server Side",
    "Facebook Pixel Server-Side",
    "Facebook Conversions API",
];

/// The sink's mapping settings, compiled once from its configuration.
#[derive(Debug)]
pub struct Mapper {
    standard_events: StandardEventMap,
    action_source: ActionSource,
    page_view: bool,
    limited_data_use: bool,
    max_future_secs: u64,
    /// `external_id_field`, split at its dots.
    external_id_path: Option<Vec<String>>,
    user_data: UserDataRules,
    custom_data: CustomDataRules,
}

/// Invalid settings, one problem a line, each naming its key.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct SettingsError(pub Vec<String>);

/// What became of one message, with the notes mapping took on the way.
#[derive(Debug)]
pub struct Mapping<'j> {
    pub outcome: Outcome<ServerEvent<'j>>,
    pub notes: Notes,
}

/// Every message ends as exactly one of these.
#[derive(Debug, PartialEq)]
pub enum Outcome<T> {
    Mapped(T),
    /// Intentionally not sent; counted, never dead-lettered.
    Skipped(SkipReason),
    /// Cannot be sent; goes to the dead letter with the reason.
    Rejected(Rejection),
}

/// Why a message was intentionally not sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// identify, screen, group, alias… calls.
    NotSent(String),
    /// A page call while `page_view` is off.
    PageViewOff,
    /// The message's `integrations` switch this destination off.
    DisabledByIntegrations,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NotSent(kind) => {
                write!(
                    f,
                    "{} calls are not sent to the Conversions API",
                    quote(kind)
                )
            }
            SkipReason::PageViewOff => {
                f.write_str("page calls are sent only with page_view = true")
            }
            SkipReason::DisabledByIntegrations => {
                f.write_str("the message's integrations switch this destination off")
            }
        }
    }
}

/// Why a message cannot be sent: the field at fault and what is wrong with it. Never contains
/// personal data (trait values are dropped, not rejected).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct Rejection {
    pub field: Cow<'static, str>,
    pub problem: String,
}

impl Rejection {
    pub fn new(field: impl Into<Cow<'static, str>>, problem: impl Into<String>) -> Self {
        Rejection {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// What mapping noticed about a message besides its outcome, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Notes {
    /// user_data values that normalized to nothing, per field.
    pub dropped: DroppedValues,
    /// A Purchase without a value was sent with value 0.
    pub purchase_value_defaulted: bool,
    /// Properties left out of custom_data because they are personal data.
    pub properties_dropped: u32,
}

/// The user_data fields whose values can be dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserDataField {
    Hashed(HashedField),
    ClientIpAddress,
}

const DROPPABLE: usize = HashedField::ALL.len() + 1;

/// Dropped user_data values, counted per field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DroppedValues([u32; DROPPABLE]);

impl DroppedValues {
    fn index(field: UserDataField) -> usize {
        match field {
            UserDataField::Hashed(f) => HashedField::ALL.iter().position(|x| *x == f).unwrap_or(0),
            UserDataField::ClientIpAddress => DROPPABLE - 1,
        }
    }

    pub fn add(&mut self, field: UserDataField) {
        self.0[Self::index(field)] += 1;
    }

    pub fn get(&self, field: UserDataField) -> u32 {
        self.0[Self::index(field)]
    }

    pub fn merge(&mut self, other: &DroppedValues) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }

    pub fn total(&self) -> u32 {
        self.0.iter().sum()
    }

    /// `(CAPI key, count)` for each field with drops.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u32)> + '_ {
        HashedField::ALL
            .iter()
            .map(|f| f.key())
            .chain(["client_ip_address"])
            .zip(self.0)
            .filter(|(_, n)| *n > 0)
    }
}

/// Rejects a message whose structural parts are not objects: what they carried would otherwise
/// be silently lost.
fn check_structure(message: &SegmentMessage<'_>) -> Result<(), Rejection> {
    let context_traits = match &message.context {
        Part::Object(context) => kind_of(&context.traits),
        _ => None,
    };
    let problems = [
        ("context", kind_of(&message.context)),
        ("context.traits", context_traits),
        ("traits", kind_of(&message.traits)),
        ("properties", kind_of(&message.properties)),
        ("integrations", kind_of(&message.integrations)),
    ];
    match problems
        .into_iter()
        .find_map(|(field, kind)| Some((field, kind?)))
    {
        Some((field, kind)) => Err(Rejection::new(
            field,
            format!("expected an object, got {kind}"),
        )),
        None => Ok(()),
    }
}

fn kind_of<T>(part: &Part<T>) -> Option<&'static str> {
    match part {
        Part::Not(kind) => Some(kind),
        _ => None,
    }
}

/// This destination's entry under `integrations`, when it is an object.
fn destination_settings<'j, 'a>(message: &'j SegmentMessage<'a>) -> Option<&'j Json<'a>> {
    let integrations = message.integrations.as_object()?;
    DESTINATION_KEYS
        .iter()
        .filter_map(|key| member(integrations, key))
        .find(|v| v.as_object().is_some())
}

/// Segment's per-destination switches (SPEC §1).
fn disabled_by_integrations(message: &SegmentMessage<'_>) -> bool {
    let Some(integrations) = message.integrations.as_object() else {
        return false;
    };
    let mut ours = DESTINATION_KEYS
        .iter()
        .filter_map(|key| member(integrations, key));
    if ours.clone().any(|v| matches!(v, Json::Bool(false))) {
        return true;
    }
    let all_off = matches!(member(integrations, "All"), Some(Json::Bool(false)));
    all_off && !ours.any(|v| matches!(v, Json::Bool(true) | Json::Object(_)))
}

/// `context.page.url`, else `properties.url`.
fn page_url<'j>(message: &'j SegmentMessage<'_>) -> Option<&'j str> {
    let usable = |url: &'j Json<'_>| url.as_str().map(str::trim).filter(|u| !u.is_empty());
    message
        .context
        .as_object()
        .and_then(|c| c.page_url.as_ref())
        .and_then(usable)
        .or_else(|| member(message.properties.as_object()?, "url").and_then(usable))
}

enum CallType {
    Track,
    Page,
}

impl Mapper {
    /// Compiles validated settings; every invalid one is reported, each naming its key.
    pub fn new(config: &FacebookPixelConfig) -> Result<Mapper, SettingsError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(SettingsError(problems));
        }
        let normalizer = Normalizer::new(config.phone_country.as_deref())
            .map_err(|e| SettingsError(vec![format!("phone_country: {e}")]))?;
        let default_currency = money::currency_code(&config.default_currency).ok_or_else(|| {
            SettingsError(vec!["default_currency: not an ISO 4217 code".to_string()])
        })?;
        Ok(Mapper {
            standard_events: StandardEventMap::new(&config.standard_events),
            action_source: config.action_source,
            page_view: config.page_view,
            limited_data_use: config.limited_data_use,
            max_future_secs: config.max_future_secs,
            external_id_path: config
                .external_id_field
                .as_ref()
                .map(|path| path.split('.').map(String::from).collect()),
            user_data: UserDataRules {
                normalizer,
                hash_external_id: config.hash_external_id,
            },
            custom_data: CustomDataRules {
                content_types: config
                    .content_types
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                value_field: config.value_field,
                default_currency,
                allow_pii: config
                    .allow_pii_properties
                    .iter()
                    .map(|p| squash(p))
                    .collect(),
                hash: config.hash_properties.iter().map(|p| squash(p)).collect(),
            },
        })
    }

    /// Reads a message for [`Mapper::map`]; not a JSON object is a rejection like any other.
    /// Strings with escapes are unescaped in place in `bytes`, which the message borrows.
    pub fn parse<'a>(&self, bytes: &'a mut [u8]) -> Result<SegmentMessage<'a>, Rejection> {
        SegmentMessage::parse(bytes, self.external_id_path.as_deref())
            .map_err(|e| Rejection::new("message", e.to_string()))
    }

    /// Maps one parsed message. `now` is the clock for the event-time window.
    pub fn map<'j>(&'j self, message: &'j SegmentMessage<'_>, now: DateTime<Utc>) -> Mapping<'j> {
        let mut notes = Notes::default();
        let outcome = Stop::outcome(self.map_inner(message, now, &mut notes));
        Mapping { outcome, notes }
    }

    /// Parses, maps and serializes one message, appending the server event's JSON to `out` when
    /// it is mapped. Invalid JSON is a rejection like any other. `bytes` is parsed in place
    /// (strings with escapes are unescaped into it), so it is left unspecified afterwards.
    pub fn map_json(
        &self,
        bytes: &mut [u8],
        now: DateTime<Utc>,
        out: &mut Vec<u8>,
    ) -> (Outcome<()>, Notes) {
        let message = match self.parse(bytes) {
            Ok(message) => message,
            Err(rejection) => return (Outcome::Rejected(rejection), Notes::default()),
        };
        // Not through `map`: a server event is over a kilobyte, and wrapping it in an `Outcome`
        // only to unwrap it again copied it twice.
        let mut notes = Notes::default();
        let start = out.len();
        let written = self.map_inner(&message, now, &mut notes).and_then(|event| {
            // sonic-rs serializes the same serde structs as serde_json would, with SIMD string
            // escaping: serialization is a quarter of the time to map an event.
            sonic_rs::to_writer(&mut *out, &event).map_err(|e| {
                out.truncate(start);
                Stop::Reject(Rejection::new("message", format!("cannot serialize: {e}")))
            })
        });
        let outcome = Stop::outcome(written);
        (outcome, notes)
    }

    fn map_inner<'j>(
        &'j self,
        message: &'j SegmentMessage<'_>,
        now: DateTime<Utc>,
        notes: &mut Notes,
    ) -> Result<ServerEvent<'j>, Stop> {
        // Skips first: a message that is not sent is never rejected (nor dead-lettered) for
        // what it carries.
        if disabled_by_integrations(message) {
            return Err(Stop::Skip(SkipReason::DisabledByIntegrations));
        }
        let call = call_type(message)?;
        if matches!(call, CallType::Page) && !self.page_view {
            return Err(Stop::Skip(SkipReason::PageViewOff));
        }
        check_structure(message)?;
        let (event_name, naming) = match call {
            CallType::Page => (
                Cow::Borrowed("PageView"),
                Naming {
                    standard: None,
                    ecommerce: None,
                },
            ),
            CallType::Track => self.name(message)?,
        };

        let action_source = self.action_source(message)?;
        let time = event_time::read(message, now)?;
        let event_time = event_time::check_window(time, now, action_source, self.max_future_secs)?;
        let event_id = match &message.message_id {
            None => None,
            Some(id) => Some(id.to_text().ok_or_else(|| {
                Rejection::new("messageId", format!("expected a string, got {}", id.kind()))
            })?),
        }
        .filter(|id| !id.trim().is_empty());

        let current_year = now.year();
        let fbc_millis = time.millis.min(now.timestamp_millis());
        let page_url = page_url(message);
        let (user_data, facts) = user_data::build(
            message,
            page_url,
            &self.user_data,
            fbc_millis,
            current_year,
            &mut notes.dropped,
        );
        if action_source == ActionSource::Website {
            let missing = match (user_data.client_user_agent, page_url) {
                (None, None) => Some("context.userAgent and context.page.url"),
                (None, Some(_)) => Some("context.userAgent"),
                (Some(_), None) => Some("context.page.url"),
                (Some(_), Some(_)) => None,
            };
            if let Some(missing) = missing {
                return Err(Rejection::new(
                    "action_source",
                    format!(
                        "website events need client_user_agent and event_source_url, and this one has no {missing}; \
                         for events your servers send, set the sink's action_source (e.g. \"system_generated\") \
                         or properties.action_source"
                    ),
                )
                .into());
            }
        }
        if !user_data.has_customer_information() {
            return Err(Rejection::new(
                "user_data",
                "nothing identifies the customer after normalization; send one of traits.email, \
                 traits.phone, userId or anonymousId, fbp or fbc, or context.ip with context.userAgent",
            )
            .into());
        }
        let custom_data = custom_data::build(
            message,
            &naming,
            &self.custom_data,
            &self.user_data.normalizer,
            facts,
            notes,
        )?;
        Ok(ServerEvent {
            event_name,
            event_time,
            event_id,
            event_source_url: page_url,
            action_source,
            user_data,
            custom_data,
            data_processing: data_processing::options(
                destination_settings(message),
                self.limited_data_use,
            ),
        })
    }

    fn name<'j>(&self, message: &'j SegmentMessage<'_>) -> Result<(Cow<'j, str>, Naming), Stop> {
        let event = match &message.event {
            Some(Json::String(name)) if !name.trim().is_empty() => name.as_ref(),
            Some(Json::String(_)) => return Err(Rejection::new("event", "is empty").into()),
            Some(other) => {
                return Err(Rejection::new(
                    "event",
                    format!("expected a string, got {}", other.kind()),
                )
                .into());
            }
            None => {
                return Err(
                    Rejection::new("event", "missing: a track call needs an event name").into(),
                );
            }
        };
        let naming = name_event(event, &self.standard_events);
        let name = match naming.standard {
            Some(standard) => Cow::Borrowed(standard.as_str()),
            None => {
                let chars = event.chars().count();
                if chars > MAX_CUSTOM_NAME_CHARS {
                    return Err(Rejection::new(
                        "event",
                        format!(
                            "custom event names are limited to {MAX_CUSTOM_NAME_CHARS} characters by Meta and this one has {chars}; \
                             shorten it or map it with standard_events"
                        ),
                    )
                    .into());
                }
                Cow::Borrowed(event)
            }
        };
        Ok((name, naming))
    }

    fn action_source(&self, message: &SegmentMessage<'_>) -> Result<ActionSource, Rejection> {
        let properties = message.properties.as_object();
        let given = [
            ("action_source", "properties.action_source"),
            ("actionSource", "properties.actionSource"),
        ]
        .into_iter()
        .find_map(|(key, path)| Some((member(properties?, key)?, path)));
        let Some((value, path)) = given else {
            return Ok(self.action_source);
        };
        value.as_str().and_then(ActionSource::parse).ok_or_else(|| {
            let shown = match value {
                Json::String(text) => quote(text),
                other => other.kind().to_string(),
            };
            Rejection::new(
                path,
                format!(
                    "{shown} is not a Meta action source (one of {})",
                    ActionSource::ALL.map(ActionSource::as_str).join(", ")
                ),
            )
        })
    }
}

fn call_type(message: &SegmentMessage<'_>) -> Result<CallType, Stop> {
    match &message.kind {
        Some(Json::String(kind)) => {
            let kind = kind.trim();
            if kind.eq_ignore_ascii_case("track") {
                Ok(CallType::Track)
            } else if kind.eq_ignore_ascii_case("page") {
                Ok(CallType::Page)
            } else {
                Err(Stop::Skip(SkipReason::NotSent(kind.to_string())))
            }
        }
        Some(other) => {
            Err(Rejection::new("type", format!("expected a string, got {}", other.kind())).into())
        }
        None if matches!(message.event, Some(Json::String(_))) => Ok(CallType::Track),
        None => Err(Rejection::new(
            "type",
            "missing: a Segment message needs `type` (or at least `event`, for a track call)",
        )
        .into()),
    }
}

/// Why mapping stopped early.
enum Stop {
    Skip(SkipReason),
    Reject(Rejection),
}

impl Stop {
    fn outcome<T>(result: Result<T, Stop>) -> Outcome<T> {
        match result {
            Ok(value) => Outcome::Mapped(value),
            Err(Stop::Skip(reason)) => Outcome::Skipped(reason),
            Err(Stop::Reject(rejection)) => Outcome::Rejected(rejection),
        }
    }
}

impl From<Rejection> for Stop {
    fn from(rejection: Rejection) -> Self {
        Stop::Reject(rejection)
    }
}

/// A value quoted for an error message, cut short: these are field values like `"abc"` for a
/// revenue, never trait values (which are dropped, not rejected).
pub(crate) fn quote(text: &str) -> String {
    const MAX_CHARS: usize = 40;
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests;

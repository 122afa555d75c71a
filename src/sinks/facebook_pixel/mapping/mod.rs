//! Segment message → Conversions API server event (SPEC §1–6).
//!
//! Pure: no I/O, no clock (the caller passes `now`), no globals. Every message ends as exactly
//! one of [`Outcome::Mapped`], [`Outcome::Skipped`] or [`Outcome::Rejected`].

mod app_data;
pub mod append_value;
pub mod consent;
pub mod custom_data;
mod data_processing;
pub mod event_name;
pub mod event_time;
pub mod message;
mod messaging;
pub mod money;
mod outcome;
mod settings;
pub mod user_data;

use std::borrow::Cow;

use chrono::{DateTime, Datelike, Utc};

pub use event_name::StandardEvent;
pub use settings::{MappingSettings, Paths, ValueField};

use self::consent::ConsentRules;
use self::custom_data::CustomDataRules;
use self::event_name::{MAX_CUSTOM_NAME_CHARS, Naming, StandardEventMap, name_event, squash};
#[cfg(test)]
pub(crate) use self::message::DESTINATION_KEYS;
pub use self::message::SegmentMessage;
use self::message::{
    Part, check_structure, destination_settings, disabled_by_integrations, page_url, referrer_url,
};
pub(crate) use self::outcome::quote;
pub use self::outcome::{
    DroppedValues, Mapping, Notes, Outcome, Rejection, SkipReason, UserDataField,
};
use self::user_data::UserDataRules;
use super::capi::{ActionSource, ServerEvent, UserData, UserDataKeys};
use crate::json::{Json, member};

/// The sink's mapping settings, compiled once from its configuration.
#[derive(Debug)]
pub struct Mapper {
    standard_events: StandardEventMap,
    action_source: ActionSource,
    page_view: bool,
    screen_events: bool,
    app_action_source: bool,
    lead_event_source: Option<String>,
    limited_data_use: bool,
    ldu_country: i64,
    ldu_state: i64,
    opt_out: bool,
    consent: ConsentRules,
    max_future_secs: u64,
    /// `external_id_field` and `pixel_id_field`, split at their dots.
    paths: Paths,
    /// `pixel_id_field` as written, for rejections.
    pixel_field: Option<String>,
    /// `pixel_id` then the keys of `pixels`; an event's pixel is its index.
    pixels: Vec<String>,
    user_data: UserDataRules,
    custom_data: CustomDataRules,
}

enum CallType {
    Track,
    Page,
    Screen,
}

impl Mapper {
    /// Compiles validated settings (built by the sink's config, which reports every invalid
    /// one).
    pub fn new(settings: MappingSettings) -> Mapper {
        let config = settings;
        let pixel_path = config.paths.pixel_id.as_deref();
        let pixel_property = match pixel_path {
            Some([first, property]) if first == "properties" => Some(property.clone()),
            _ => None,
        };
        Mapper {
            standard_events: StandardEventMap::new(&config.standard_events),
            action_source: config.action_source,
            page_view: config.page_view,
            screen_events: config.screen_events,
            app_action_source: config.app_action_source,
            lead_event_source: config.lead_event_source,
            limited_data_use: config.limited_data_use,
            ldu_country: config.ldu_country,
            ldu_state: config.ldu_state,
            opt_out: config.opt_out,
            consent: config.consent,
            max_future_secs: config.max_future_secs,
            pixel_field: pixel_path.map(|path| path.join(".")),
            paths: config.paths,
            pixels: config.pixels,
            user_data: UserDataRules {
                normalizer: config.normalizer,
                hash_external_id: config.hash_external_id,
            },
            custom_data: CustomDataRules {
                content_types: config.content_types.into_iter().collect(),
                value_field: config.value_field,
                default_currency: config.default_currency,
                allow_pii: config
                    .allow_pii_properties
                    .iter()
                    .map(|p| squash(p))
                    .collect(),
                hash: config.hash_properties.iter().map(|p| squash(p)).collect(),
                pixel_property,
            },
        }
    }

    /// Every pixel an event may go to, `pixel_id` first: [`Notes::pixel`] indexes it.
    pub fn pixels(&self) -> &[String] {
        &self.pixels
    }

    /// Reads a message for [`Mapper::map`]; not a JSON object is a rejection like any other.
    /// Strings with escapes are unescaped in place in `bytes`, which the message borrows.
    pub fn parse<'a>(&self, bytes: &'a mut [u8]) -> Result<SegmentMessage<'a>, Rejection> {
        SegmentMessage::parse(bytes, &self.paths)
            .map_err(|e| Rejection::new("message", e.to_string()))
    }

    /// Maps one parsed message. `now` is the clock for the event-time window.
    pub fn map<'j>(&'j self, message: &'j SegmentMessage<'_>, now: DateTime<Utc>) -> Mapping<'j> {
        let mut notes = Notes::default();
        let outcome = Stop::outcome(self.map_inner(message, now, &mut notes, None, &mut None));
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
        self.map_json_into(bytes, now, out, None)
    }

    /// [`Mapper::map_json`] with enrichment: the message teaches `memory` about its user
    /// (identify and alias calls too, which are still not sent), and the server event gets
    /// the user_data keys it lacks from what `memory` remembers.
    pub fn map_json_remembering(
        &self,
        bytes: &mut [u8],
        now: DateTime<Utc>,
        out: &mut Vec<u8>,
        memory: &mut dyn UserMemory,
    ) -> (Outcome<()>, Notes) {
        self.map_json_into(bytes, now, out, Some(memory))
    }

    /// [`Mapper::map_json`] into the buffer of the event's pixel ([`Notes::pixel`]), asked
    /// for only once the event is mapped, with enrichment when `memory` is given.
    pub fn map_json_into(
        &self,
        bytes: &mut [u8],
        now: DateTime<Utc>,
        buffers: &mut dyn Buffers,
        mut memory: Option<&mut dyn UserMemory>,
    ) -> (Outcome<()>, Notes) {
        let message = match self.parse(bytes) {
            Ok(message) => message,
            Err(rejection) => return (Outcome::Rejected(rejection), Notes::default()),
        };
        // Not through `map`: a server event is over a kilobyte, and wrapping it in an `Outcome`
        // only to unwrap it again copied it twice.
        let mut notes = Notes::default();
        let mut order = None;
        let written = self
            .map_inner(&message, now, &mut notes, memory.as_deref_mut(), &mut order)
            .and_then(|event| {
                let out = buffers.buffer(notes.pixel);
                let start = out.len();
                // sonic-rs serializes the same serde structs as serde_json would, with SIMD string
                // escaping: serialization is a quarter of the time to map an event.
                sonic_rs::to_writer(&mut *out, &event).map_err(|e| {
                    out.truncate(start);
                    Stop::Reject(Rejection::new("message", format!("cannot serialize: {e}")))
                })
            });
        // Remembered once the event is written: until then it holds values borrowed from memory.
        if let (Ok(()), Some(memory), Some((order_id, original))) = (&written, memory, order) {
            memory.remember_order(&order_id, original, now.timestamp());
        }
        let outcome = Stop::outcome(written);
        (outcome, notes)
    }

    fn map_inner<'j, 'm: 'j>(
        &'j self,
        message: &'j SegmentMessage<'_>,
        now: DateTime<Utc>,
        notes: &mut Notes,
        mut memory: Option<&'j mut (dyn UserMemory + 'm)>,
        order: &mut Option<(String, OriginalEvent)>,
    ) -> Result<ServerEvent<'j>, Stop> {
        // Skips first: a message that is not sent is never rejected (nor dead-lettered) for
        // what it carries. A message switched off for this destination teaches nothing either.
        if disabled_by_integrations(message) {
            return Err(Stop::Skip(SkipReason::DisabledByIntegrations));
        }
        // Nor does a message whose sender did not consent: it is neither sent nor learned.
        if !self.consent.allows(message) {
            return Err(Stop::Skip(SkipReason::Consent));
        }
        let call = match call_type(message) {
            Err(Stop::Skip(SkipReason::NotSent(kind))) => {
                if let Some(memory) = memory {
                    if kind.eq_ignore_ascii_case("identify") {
                        self.learn(message, now, memory);
                    } else if kind.eq_ignore_ascii_case("alias") {
                        let ids = UserIds::of(message);
                        let previous = message.previous_id.as_ref().and_then(id_text);
                        if let (Some(previous), Some(user)) = (previous, ids.user_id) {
                            memory.link(&previous, &user, now.timestamp());
                        }
                    }
                }
                return Err(Stop::Skip(SkipReason::NotSent(kind)));
            }
            other => other?,
        };
        if matches!(call, CallType::Page) && !self.page_view {
            if let Some(memory) = memory {
                self.learn(message, now, memory);
            }
            return Err(Stop::Skip(SkipReason::PageViewOff));
        }
        if matches!(call, CallType::Screen) && !self.screen_events {
            if let Some(memory) = memory {
                self.learn(message, now, memory);
            }
            return Err(Stop::Skip(SkipReason::NotSent("screen".to_string())));
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
            CallType::Screen => self.screen_name(message)?,
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

        notes.pixel = self.pixel(message)?;
        let opt_out = self.opt_out(message)?;
        let append = event_name == StandardEvent::AppendValue.as_str();
        if append && action_source == ActionSource::App {
            return Err(Rejection::new(
                "action_source",
                "Meta's predicted lifetime value (AppendValue) does not support app events; send it with the conversion's web or server action source",
            )
            .into());
        }
        let original_event_data = if append {
            let recalled = append_value::order_id(message).and_then(|order_id| {
                memory
                    .as_deref_mut()?
                    .recall_order(&order_id, now.timestamp())
            });
            Some(append_value::original_event_data(
                message, event_time, now, recalled,
            )?)
        } else {
            None
        };
        let app_data = match action_source {
            ActionSource::App => Some(Box::new(app_data::build(message)?)),
            _ => None,
        };
        let current_year = now.year();
        let page_url = page_url(message);
        // The click's own time, even when event_time was clamped to now: Meta reads fbc's
        // creation time as when the click was first seen.
        let (mut user_data, facts) = user_data::build(
            message,
            page_url,
            &self.user_data,
            time.millis,
            current_year,
            &mut notes.dropped,
        );
        if action_source == ActionSource::App {
            // Meta's anon_id is "Your install ID"; Segment's mobile libraries make anonymousId
            // once per install, so it is one unless the message names its own.
            if user_data.anon_id.is_none() {
                user_data.anon_id = message.anonymous_id.as_ref().and_then(id_text);
            }
        } else {
            // Meta: "This parameter is for app events only".
            user_data.anon_id = None;
            user_data.madid = None;
        }
        let messaging_channel = match action_source {
            ActionSource::BusinessMessaging => Some(messaging::build(message, &mut user_data)?),
            _ => None,
        };
        let remembering = memory.is_some();
        if let Some(memory) = memory.take() {
            let ids = UserIds::of(message);
            notes.enriched = memory.learn_and_recall(&ids, &mut user_data, now.timestamp());
        }
        notes.user_data_keys = user_data.keys();
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
        let mut custom_data = custom_data::build(
            message,
            &naming,
            &self.custom_data,
            &self.user_data.normalizer,
            facts,
            notes,
        )?;
        if action_source == ActionSource::SystemGenerated && user_data.lead_id.is_some() {
            // Meta's Conversion Leads: a CRM stage of a lead says so, and names its CRM.
            let given = |key: &str| custom_data.properties.0.iter().any(|(k, _)| *k == key);
            if !given("event_source") {
                custom_data.event_source = Some("crm");
            }
            if !given("lead_event_source") {
                custom_data.lead_event_source = self.lead_event_source.as_deref();
            }
        }
        if append {
            let positive = custom_data
                .predicted_ltv
                .as_ref()
                .and_then(serde_json::Number::as_f64)
                .is_some_and(|v| v > 0.0);
            if !positive {
                return Err(Rejection::new(
                    "properties.predicted_ltv",
                    "an AppendValue event carries the predicted lifetime value, a positive amount (Meta requires it)",
                )
                .into());
            }
            custom_data
                .currency
                .get_or_insert(self.custom_data.default_currency);
        } else if remembering && let Some(order_id) = &custom_data.order_id {
            *order = Some((
                order_id.to_string(),
                OriginalEvent {
                    event_name: event_name.to_string(),
                    event_time,
                    event_id: event_id.as_ref().map(|id| id.to_string()),
                    sent_at: now.timestamp(),
                },
            ));
        }
        Ok(ServerEvent {
            event_name,
            event_time,
            event_id,
            event_source_url: page_url,
            referrer_url: referrer_url(message),
            opt_out,
            action_source,
            user_data,
            custom_data,
            data_processing: data_processing::options(
                destination_settings(message),
                self.limited_data_use
                    .then_some((self.ldu_country, self.ldu_state)),
            ),
            app_data,
            messaging_channel,
            original_event_data,
        })
    }

    /// Teach `memory` what a message that is not sent says of its user.
    fn learn(&self, message: &SegmentMessage<'_>, now: DateTime<Utc>, memory: &mut dyn UserMemory) {
        let millis = event_time::read(message, now).map_or(now.timestamp_millis(), |t| t.millis);
        let (user, _) = user_data::build(
            message,
            page_url(message),
            &self.user_data,
            millis,
            now.year(),
            &mut DroppedValues::default(),
        );
        memory.learn(&UserIds::of(message), &user, now.timestamp());
    }

    /// A screen call as Segment names it for event destinations: `Viewed {name} Screen`
    /// (`name`, else `properties.name`; `Viewed Screen` without one), then named as a track
    /// call's event, so `standard_events` may map it.
    fn screen_name<'j>(
        &self,
        message: &'j SegmentMessage<'_>,
    ) -> Result<(Cow<'j, str>, Naming), Stop> {
        let given = message
            .name
            .as_ref()
            .or_else(|| member(message.properties.as_object()?, "name"))
            .and_then(Json::as_str)
            .map(str::trim)
            .filter(|n| !n.is_empty());
        let event = match given {
            Some(name) => format!("Viewed {name} Screen"),
            None => "Viewed Screen".to_string(),
        };
        let naming = name_event(&event, &self.standard_events);
        let name = match naming.standard {
            Some(standard) => Cow::Borrowed(standard.as_str()),
            None => Cow::Owned(check_custom_name("name", event)?),
        };
        Ok((name, naming))
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
            None => Cow::Borrowed(check_custom_name("event", event)?),
        };
        Ok((name, naming))
    }

    /// The pixel the message goes to: the one `pixel_id_field` names, else `pixel_id`.
    fn pixel(&self, message: &SegmentMessage<'_>) -> Result<usize, Rejection> {
        let (Some(field), Some(value)) = (&self.pixel_field, &message.pixel_id) else {
            return Ok(0);
        };
        let reject = |problem: String| Rejection::new(field.clone(), problem);
        let id = match value {
            Json::String(text) => Cow::Borrowed(text.trim()),
            Json::Number(_) => value.to_text().unwrap_or_default(),
            other => return Err(reject(format!("expected a pixel ID, got {}", other.kind()))),
        };
        if id.is_empty() {
            return Ok(0);
        }
        // Only digits are quoted back: whatever else sits at that path may be personal data.
        if id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(reject(
                "is not a pixel ID (all digits, Events Manager → Data sources)".to_string(),
            ));
        }
        self.pixels.iter().position(|p| *p == *id).ok_or_else(|| {
            reject(format!(
                "pixel {id} has no access token: add it to the sink's `pixels` table (pixel ID = token), or fix the event"
            ))
        })
    }

    /// `properties.opt_out`, else `context.opt_out`; the setting turns it on for every event.
    fn opt_out(&self, message: &SegmentMessage<'_>) -> Result<bool, Rejection> {
        let given = message
            .properties
            .as_object()
            .and_then(|p| member(p, "opt_out"))
            .filter(|v| !v.is_null())
            .map(|v| (v, "properties.opt_out"))
            .or_else(|| {
                let context = message.context.as_object()?;
                Some((context.opt_out.as_ref()?, "context.opt_out"))
            });
        match given {
            None => Ok(self.opt_out),
            Some((Json::Bool(flag), _)) => Ok(self.opt_out || *flag),
            // Guessing would either drop an opt-out or invent one.
            Some((other, path)) => Err(Rejection::new(
                path,
                format!("expected true or false, got {}", other.kind()),
            )),
        }
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
            let from_an_app = match &message.context {
                Part::Object(context) => context.app.is_some(),
                _ => false,
            };
            return Ok(if self.app_action_source && from_an_app {
                ActionSource::App
            } else {
                self.action_source
            });
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

/// Where mapped events are serialized: a buffer per pixel.
pub trait Buffers {
    /// The buffer for an event to `pixel` (an index in [`MappingSettings::pixels`]).
    fn buffer(&mut self, pixel: usize) -> &mut Vec<u8>;
}

impl Buffers for Vec<u8> {
    /// One buffer for every pixel.
    fn buffer(&mut self, _pixel: usize) -> &mut Vec<u8> {
        self
    }
}

/// A custom event name within Meta's limit; `field` is where it came from.
fn check_custom_name<T: AsRef<str>>(field: &'static str, name: T) -> Result<T, Rejection> {
    let chars = name.as_ref().chars().count();
    if chars > MAX_CUSTOM_NAME_CHARS {
        return Err(Rejection::new(
            field,
            format!(
                "custom event names are limited to {MAX_CUSTOM_NAME_CHARS} characters by Meta and this one has {chars}; \
                 shorten it or map it with standard_events"
            ),
        ));
    }
    Ok(name)
}

/// Customer information remembered across events (the sink's `enrichment`): what mapping
/// learns from each message and what it asks for the keys an event lacks. Implemented by
/// `enrichment::Identities`; mapping itself stays free of I/O.
pub trait UserMemory {
    /// Remember the keys `user` (already normalized and hashed) carries, under the message's ids.
    fn learn(&mut self, ids: &UserIds<'_>, user: &UserData<'_>, now: i64);

    /// An `alias` call: `previous_id` is now known as `user_id`.
    fn link(&mut self, previous_id: &str, user_id: &str, now: i64);

    /// [`UserMemory::learn`] from an event that is sent, then add to `user` the remembered keys
    /// it lacks (its own values win, except that a remembered `fbc` or `fbp` of the same click
    /// or cookie replaces a later-dated one); returns those added. One call, so the ids are looked up
    /// once; the memory stays borrowed for as long as `user` holds values from it.
    fn learn_and_recall<'m>(
        &'m mut self,
        ids: &UserIds<'_>,
        user: &mut UserData<'m>,
        now: i64,
    ) -> UserDataKeys;

    /// An event with an `order_id` was sent: remember what a later `AppendValue` of that order
    /// needs of it (Meta's `original_event_data`). `now` is Unix seconds.
    fn remember_order(&mut self, order_id: &str, original: OriginalEvent, now: i64) {
        let _ = (order_id, original, now);
    }

    /// What was remembered of the event sent with `order_id`, if anything (and still fresh).
    fn recall_order(&mut self, order_id: &str, now: i64) -> Option<OriginalEvent> {
        let _ = (order_id, now);
        None
    }
}

/// What an `AppendValue` event needs of the conversion it adds value to (Meta's
/// `original_event_data`), remembered when that conversion was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginalEvent {
    /// Its `event_name` (`Purchase`).
    pub event_name: String,
    /// Its `event_time`, Unix seconds.
    pub event_time: i64,
    /// Its `event_id` (the message id), when it had one.
    pub event_id: Option<String>,
    /// When the sink sent it, Unix seconds: Meta takes an AppendValue within 7 days of that.
    pub sent_at: i64,
}

/// The ids a message is filed under.
#[derive(Debug, Default)]
pub struct UserIds<'t> {
    pub user_id: Option<Cow<'t, str>>,
    pub anonymous_id: Option<Cow<'t, str>>,
}

impl<'t> UserIds<'t> {
    /// `userId` and `anonymousId`, when they are usable text (or numbers).
    pub fn of(message: &'t SegmentMessage<'_>) -> Self {
        UserIds {
            user_id: message.user_id.as_ref().and_then(id_text),
            anonymous_id: message.anonymous_id.as_ref().and_then(id_text),
        }
    }
}

fn id_text<'t>(value: &'t Json<'_>) -> Option<Cow<'t, str>> {
    match value {
        Json::String(_) | Json::Number(_) => value.to_text().filter(|t| !t.trim().is_empty()),
        _ => None,
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
            } else if kind.eq_ignore_ascii_case("screen") {
                Ok(CallType::Screen)
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

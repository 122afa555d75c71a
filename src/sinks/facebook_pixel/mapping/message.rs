//! A Segment message as mapping reads it: the fields mapping uses, borrowed from the input, and
//! everything else skipped while parsing.
//!
//! Parsing is most of the cost of mapping an event. The message is read from the parser's tape
//! ([`crate::json::tape`]) into fixed slots, stepping over what no rule reads (`context.library`,
//! `page.title`, unknown trait keys) without building it. Every slot is lenient — a value of the wrong type is kept and reported by field, never
//! turned into a parser error that would echo it.

use std::borrow::Cow;

use simd_json::{Node, StaticNode};

use super::outcome::Rejection;
use crate::json::{self, Json, Object, ParseError, member, members};

/// A part of the message that should be an object.
#[derive(Debug, Default)]
pub enum Part<T> {
    #[default]
    Absent,
    Object(T),
    /// Present but not an object; holds the kind, e.g. "a string".
    Not(&'static str),
}

impl<T> Part<T> {
    pub fn as_object(&self) -> Option<&T> {
        match self {
            Part::Object(value) => Some(value),
            _ => None,
        }
    }
}

/// The trait keys user_data reads, matched ignoring case and `_`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trait {
    Email,
    Phone,
    FirstName,
    LastName,
    Name,
    Gender,
    Birthday,
    City,
    State,
    PostalCode,
    Zip,
    ZipCode,
    Country,
    /// The ids Meta takes unhashed.
    SubscriptionId,
    LeadId,
    FbLoginId,
    AnonId,
}

const TRAIT_COUNT: usize = 17;

/// Trait values of one object; `null` counts as absent, a later duplicate wins.
#[derive(Debug, Default)]
pub struct Traits<'a> {
    values: [Option<Json<'a>>; TRAIT_COUNT],
    /// `address`, when it is an object: its city, state, postal code and country.
    pub address: Option<Box<Traits<'a>>>,
}

impl<'a> Traits<'a> {
    pub fn get(&self, key: Trait) -> Option<&Json<'a>> {
        self.values[key as usize].as_ref()
    }
}

/// What `context` holds that mapping reads.
#[derive(Debug, Default)]
pub struct Context<'a> {
    pub ip: Option<Json<'a>>,
    pub user_agent: Option<Json<'a>>,
    pub fbp: Option<Json<'a>>,
    pub fbc: Option<Json<'a>>,
    /// `context.page.url`.
    pub page_url: Option<Json<'a>>,
    /// `context.page.referrer`.
    pub page_referrer: Option<Json<'a>>,
    pub opt_out: Option<Json<'a>>,
    /// `context.consent.categoryPreferences` (Segment's consent management).
    pub consent: Part<Object<'a>>,
    /// `context.device.advertisingId`.
    pub advertising_id: Option<Json<'a>>,
    /// `context.device.adTrackingEnabled`.
    pub ad_tracking_enabled: Option<Json<'a>>,
    /// `context.app`, when it is an object: the message comes from an app.
    pub app: Option<Box<AppContext<'a>>>,
    /// What Segment's mobile libraries say of the device.
    pub device: DeviceContext<'a>,
    /// `context.messaging_channel` and the business-messaging ids, by [`MessagingId`].
    pub messaging_channel: Option<Json<'a>>,
    pub messaging_ids: [Option<Json<'a>>; MESSAGING_IDS],
    pub traits: Part<Box<Traits<'a>>>,
}

/// The device fields app events read (`app_data.extinfo`), wherever they sit in `context`.
#[derive(Debug, Default)]
pub struct DeviceContext<'a> {
    /// `context.os.name` and `.version`.
    pub os_name: Option<Json<'a>>,
    pub os_version: Option<Json<'a>>,
    /// `context.device.model` and `.manufacturer`.
    pub model: Option<Json<'a>>,
    pub manufacturer: Option<Json<'a>>,
    /// `context.screen.width`, `.height`, `.density`.
    pub screen_width: Option<Json<'a>>,
    pub screen_height: Option<Json<'a>>,
    pub screen_density: Option<Json<'a>>,
    /// `context.network.carrier`.
    pub carrier: Option<Json<'a>>,
    /// `context.locale` (`en-US`) and `context.timezone` (`Europe/Paris`).
    pub locale: Option<Json<'a>>,
    pub timezone: Option<Json<'a>>,
}

/// `context.app`.
#[derive(Debug, Default)]
pub struct AppContext<'a> {
    /// `context.app.name`, `.version`, `.build`, `.namespace` (the bundle id / package name).
    pub name: Option<Json<'a>>,
    pub version: Option<Json<'a>>,
    pub build: Option<Json<'a>>,
    pub namespace: Option<Json<'a>>,
}

/// The ids of a business-messaging event (Meta sends them unhashed in user_data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessagingId {
    CtwaClid,
    PageId,
    PageScopedUserId,
    IgAccountId,
    IgSid,
    WhatsappBusinessAccountId,
}

/// How many [`MessagingId`]s there are.
pub const MESSAGING_IDS: usize = 6;

impl MessagingId {
    /// Every id, in slot order.
    pub const ALL: [MessagingId; MESSAGING_IDS] = [
        MessagingId::CtwaClid,
        MessagingId::PageId,
        MessagingId::PageScopedUserId,
        MessagingId::IgAccountId,
        MessagingId::IgSid,
        MessagingId::WhatsappBusinessAccountId,
    ];

    /// Meta's name, which is also the snake_case key read.
    pub fn key(self) -> &'static str {
        match self {
            MessagingId::CtwaClid => "ctwa_clid",
            MessagingId::PageId => "page_id",
            MessagingId::PageScopedUserId => "page_scoped_user_id",
            MessagingId::IgAccountId => "ig_account_id",
            MessagingId::IgSid => "ig_sid",
            MessagingId::WhatsappBusinessAccountId => "whatsapp_business_account_id",
        }
    }

    /// The camelCase spelling also read.
    pub fn camel(self) -> &'static str {
        match self {
            MessagingId::CtwaClid => "ctwaClid",
            MessagingId::PageId => "pageId",
            MessagingId::PageScopedUserId => "pageScopedUserId",
            MessagingId::IgAccountId => "igAccountId",
            MessagingId::IgSid => "igSid",
            MessagingId::WhatsappBusinessAccountId => "whatsappBusinessAccountId",
        }
    }

    fn of_key(key: &str) -> Option<MessagingId> {
        // A match: every context key no other rule reads comes here.
        Some(match key {
            "ctwa_clid" | "ctwaClid" => MessagingId::CtwaClid,
            "page_id" | "pageId" => MessagingId::PageId,
            "page_scoped_user_id" | "pageScopedUserId" => MessagingId::PageScopedUserId,
            "ig_account_id" | "igAccountId" => MessagingId::IgAccountId,
            "ig_sid" | "igSid" => MessagingId::IgSid,
            "whatsapp_business_account_id" | "whatsappBusinessAccountId" => {
                MessagingId::WhatsappBusinessAccountId
            }
            _ => return None,
        })
    }
}

/// The fields of a Segment message that mapping reads.
#[derive(Debug, Default)]
pub struct SegmentMessage<'a> {
    pub kind: Option<Json<'a>>,
    pub event: Option<Json<'a>>,
    /// A screen (or page) call's `name`.
    pub name: Option<Json<'a>>,
    pub message_id: Option<Json<'a>>,
    /// `timestamp`, `originalTimestamp`, `sentAt`, `receivedAt`, in that order.
    pub times: [Option<Json<'a>>; 4],
    pub user_id: Option<Json<'a>>,
    pub anonymous_id: Option<Json<'a>>,
    /// An `alias` call's former id.
    pub previous_id: Option<Json<'a>>,
    // Boxed: the message is moved several times on its way out of the parser, and trait slots
    // are most of its size.
    pub context: Part<Box<Context<'a>>>,
    pub traits: Part<Box<Traits<'a>>>,
    pub properties: Part<Object<'a>>,
    pub integrations: Part<Object<'a>>,
    /// The value at `external_id_field`, when the caller asked for one.
    pub external_id: Option<Json<'a>>,
    /// The value at `pixel_id_field`, when the caller asked for one.
    pub pixel_id: Option<Json<'a>>,
}

/// Dotted paths the sink's settings point into the message with, each split at its dots.
#[derive(Debug, Default)]
pub struct Paths {
    /// `external_id_field`.
    pub external_id: Option<Vec<String>>,
    /// `pixel_id_field`.
    pub pixel_id: Option<Vec<String>>,
}

/// The keys under `integrations` that address this destination (Segment renamed it twice).
pub const DESTINATION_KEYS: [&str; 3] = [
    "Facebook Pixel Server Side",
    "Facebook Pixel Server-Side",
    "Facebook Conversions API",
];

/// The message fields that may carry the event's time, in order of preference.
pub const TIME_FIELDS: [&str; 4] = ["timestamp", "originalTimestamp", "sentAt", "receivedAt"];

/// Why bytes are not a message mapping can read. The text never contains input values.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error(transparent)]
    Json(#[from] ParseError),
    #[error("expected a JSON object, got {0}")]
    NotAnObject(&'static str),
}

impl<'a> SegmentMessage<'a> {
    /// Reads a message; the `paths` are looked up in the whole message. `bytes` is the JSON
    /// text; strings with escapes are unescaped in place, so it is taken mutably, and the
    /// message borrows from it.
    pub fn parse(bytes: &'a mut [u8], paths: &Paths) -> Result<Self, MessageError> {
        let nodes = json::tape(bytes)?;
        let nodes = nodes.as_slice();
        if !matches!(nodes.first(), Some(Node::Object { .. })) {
            return Err(MessageError::NotAnObject(json::kind_at(nodes, 0)));
        }
        let mut m = SegmentMessage::default();
        for (key, at) in members(nodes, 0) {
            let value = || value(nodes, at, 0);
            match key {
                "type" => set(&mut m.kind, value()?),
                "event" => set(&mut m.event, value()?),
                "name" => set(&mut m.name, value()?),
                "messageId" => set(&mut m.message_id, value()?),
                "timestamp" => set(&mut m.times[0], value()?),
                "originalTimestamp" => set(&mut m.times[1], value()?),
                "sentAt" => set(&mut m.times[2], value()?),
                "receivedAt" => set(&mut m.times[3], value()?),
                "userId" => set(&mut m.user_id, value()?),
                "anonymousId" => set(&mut m.anonymous_id, value()?),
                "previousId" => set(&mut m.previous_id, value()?),
                "context" => set_part(&mut m.context, part(nodes, at, context)?),
                "traits" => set_part(&mut m.traits, part(nodes, at, traits)?),
                "properties" => set_part(
                    &mut m.properties,
                    part(nodes, at, |n, i| json::object_at(n, i, 1))?,
                ),
                "integrations" => set_part(
                    &mut m.integrations,
                    part(nodes, at, |n, i| json::object_at(n, i, 1))?,
                ),
                _ => {}
            }
        }
        if let Some(path) = &paths.external_id {
            m.external_id = find(nodes, 0, path)?;
        }
        if let Some(path) = &paths.pixel_id {
            m.pixel_id = find(nodes, 0, path)?;
        }
        Ok(m)
    }
}

/// Rejects a message whose structural parts are not objects: what they carried would otherwise
/// be silently lost.
pub(super) fn check_structure(message: &SegmentMessage<'_>) -> Result<(), Rejection> {
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
pub(super) fn destination_settings<'j, 'a>(
    message: &'j SegmentMessage<'a>,
) -> Option<&'j Json<'a>> {
    let integrations = message.integrations.as_object()?;
    DESTINATION_KEYS
        .iter()
        .filter_map(|key| member(integrations, key))
        .find(|v| v.as_object().is_some())
}

/// Segment's per-destination switches (SPEC §1).
pub(super) fn disabled_by_integrations(message: &SegmentMessage<'_>) -> bool {
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
pub(super) fn page_url<'j>(message: &'j SegmentMessage<'_>) -> Option<&'j str> {
    page_field(message, |c| c.page_url.as_ref(), "url")
}

/// `context.page.referrer`, else `properties.referrer`.
pub(super) fn referrer_url<'j>(message: &'j SegmentMessage<'_>) -> Option<&'j str> {
    page_field(message, |c| c.page_referrer.as_ref(), "referrer")
}

/// A `context.page` field, else the property `property`: trimmed text, blank as absent.
fn page_field<'j, 'a>(
    message: &'j SegmentMessage<'a>,
    in_context: impl FnOnce(&'j Context<'a>) -> Option<&'j Json<'a>>,
    property: &str,
) -> Option<&'j str> {
    let usable = |url: &'j Json<'a>| url.as_str().map(str::trim).filter(|u| !u.is_empty());
    message
        .context
        .as_object()
        .and_then(|c| in_context(c))
        .and_then(usable)
        .or_else(|| member(message.properties.as_object()?, property).and_then(usable))
}

/// A value that is sent as text: a string, trimmed (blank counts as absent), or a number in
/// its decimal form. Ids, names and device fields are read this way.
pub(super) fn plain_text<'j>(value: &'j Json<'_>) -> Option<Cow<'j, str>> {
    match value {
        Json::String(text) => Some(Cow::Borrowed(text.trim())).filter(|t| !t.is_empty()),
        Json::Number(_) => value.to_text(),
        _ => None,
    }
}

/// The value at `at`, with null as absent.
fn value<'a>(nodes: &[Node<'a>], at: usize, depth: usize) -> Result<Option<Json<'a>>, ParseError> {
    Ok(Some(json::value_at(nodes, at, depth)?).filter(|v| !v.is_null()))
}

/// A [`Part`]: an object read by `read`, anything else as its kind.
fn part<'a, T>(
    nodes: &[Node<'a>],
    at: usize,
    read: impl FnOnce(&[Node<'a>], usize) -> Result<T, ParseError>,
) -> Result<Part<T>, ParseError> {
    Ok(match nodes.get(at) {
        Some(Node::Object { .. }) => Part::Object(read(nodes, at)?),
        Some(Node::Static(StaticNode::Null)) | None => Part::Absent,
        Some(_) => Part::Not(json::kind_at(nodes, at)),
    })
}

/// Stores a present value; a null leaves an earlier one in place.
fn set<'a>(slot: &mut Option<Json<'a>>, new: Option<Json<'a>>) {
    if new.is_some() {
        *slot = new;
    }
}

/// Stores a present part; a null leaves an earlier one in place.
fn set_part<T>(slot: &mut Part<T>, new: Part<T>) {
    if !matches!(new, Part::Absent) {
        *slot = new;
    }
}

fn context<'a>(nodes: &[Node<'a>], at: usize) -> Result<Box<Context<'a>>, ParseError> {
    let mut c = Context::default();
    for (key, i) in members(nodes, at) {
        match key {
            "ip" => set(&mut c.ip, value(nodes, i, 2)?),
            "userAgent" => set(&mut c.user_agent, value(nodes, i, 2)?),
            "fbp" => set(&mut c.fbp, value(nodes, i, 2)?),
            "fbc" => set(&mut c.fbc, value(nodes, i, 2)?),
            "traits" => set_part(&mut c.traits, part(nodes, i, traits)?),
            "page" => {
                for (key, j) in members(nodes, i) {
                    match key {
                        "url" => set(&mut c.page_url, value(nodes, j, 3)?),
                        "referrer" => set(&mut c.page_referrer, value(nodes, j, 3)?),
                        _ => {}
                    }
                }
            }
            "opt_out" => set(&mut c.opt_out, value(nodes, i, 2)?),
            "consent" => {
                for (key, j) in members(nodes, i) {
                    if key == "categoryPreferences" {
                        set_part(
                            &mut c.consent,
                            part(nodes, j, |n, k| json::object_at(n, k, 3))?,
                        );
                    }
                }
            }
            "device" => {
                for (key, j) in members(nodes, i) {
                    match key {
                        "advertisingId" => set(&mut c.advertising_id, value(nodes, j, 3)?),
                        "adTrackingEnabled" => set(&mut c.ad_tracking_enabled, value(nodes, j, 3)?),
                        "model" => set(&mut c.device.model, value(nodes, j, 3)?),
                        "manufacturer" => set(&mut c.device.manufacturer, value(nodes, j, 3)?),
                        _ => {}
                    }
                }
            }
            "app" => {
                if let Part::Object(app) = part(nodes, i, app)? {
                    c.app = Some(Box::new(app));
                }
            }
            "os" => {
                for (key, j) in members(nodes, i) {
                    match key {
                        "name" => set(&mut c.device.os_name, value(nodes, j, 3)?),
                        "version" => set(&mut c.device.os_version, value(nodes, j, 3)?),
                        _ => {}
                    }
                }
            }
            "screen" => {
                for (key, j) in members(nodes, i) {
                    let slot = match key {
                        "width" => &mut c.device.screen_width,
                        "height" => &mut c.device.screen_height,
                        "density" => &mut c.device.screen_density,
                        _ => continue,
                    };
                    set(slot, value(nodes, j, 3)?);
                }
            }
            "network" => {
                for (key, j) in members(nodes, i) {
                    if key == "carrier" {
                        set(&mut c.device.carrier, value(nodes, j, 3)?);
                    }
                }
            }
            "locale" => set(&mut c.device.locale, value(nodes, i, 2)?),
            "timezone" => set(&mut c.device.timezone, value(nodes, i, 2)?),
            "messaging_channel" | "messagingChannel" => {
                set(&mut c.messaging_channel, value(nodes, i, 2)?)
            }
            other => {
                if let Some(id) = MessagingId::of_key(other) {
                    set(&mut c.messaging_ids[id as usize], value(nodes, i, 2)?);
                }
            }
        }
    }
    Ok(Box::new(c))
}

/// `context.app`.
fn app<'a>(nodes: &[Node<'a>], at: usize) -> Result<AppContext<'a>, ParseError> {
    let mut app = AppContext::default();
    for (key, i) in members(nodes, at) {
        let slot = match key {
            "name" => &mut app.name,
            "version" => &mut app.version,
            "build" => &mut app.build,
            "namespace" => &mut app.namespace,
            _ => continue,
        };
        set(slot, value(nodes, i, 3)?);
    }
    Ok(app)
}

/// Built in its box: a `Traits` is half a kilobyte, and moving it into one was a measurable
/// share of reading a message.
fn traits<'a>(nodes: &[Node<'a>], at: usize) -> Result<Box<Traits<'a>>, ParseError> {
    let mut found = Box::<Traits<'a>>::default();
    for (key, i) in members(nodes, at) {
        match classify(key) {
            Some(Slot::Trait(t)) => set(&mut found.values[t as usize], value(nodes, i, 3)?),
            Some(Slot::Address) => {
                if let Part::Object(address) = part(nodes, i, traits)? {
                    found.address = Some(address);
                }
            }
            None => {}
        }
    }
    Ok(found)
}

/// The value at a dotted path below the object at `at`; the last non-null duplicate wins.
fn find<'a>(
    nodes: &[Node<'a>],
    at: usize,
    path: &[String],
) -> Result<Option<Json<'a>>, ParseError> {
    let Some((head, rest)) = path.split_first() else {
        return value(nodes, at, 0);
    };
    let mut found = None;
    for (key, i) in members(nodes, at) {
        if key == head {
            set(&mut found, find(nodes, i, rest)?);
        }
    }
    Ok(found)
}

enum Slot {
    Trait(Trait),
    Address,
}

/// Trait keys match ignoring case and `_`: `firstName` = `first_name` = `firstname`.
fn classify(key: &str) -> Option<Slot> {
    let mut buf = [0u8; 14];
    let mut len = 0;
    for b in key.bytes() {
        if b == b'_' {
            continue;
        }
        // Longer or non-ASCII keys cannot be trait names.
        if len == buf.len() || !b.is_ascii() {
            return None;
        }
        buf[len] = b.to_ascii_lowercase();
        len += 1;
    }
    Some(Slot::Trait(match &buf[..len] {
        b"email" => Trait::Email,
        b"phone" => Trait::Phone,
        b"firstname" => Trait::FirstName,
        b"lastname" => Trait::LastName,
        b"name" => Trait::Name,
        b"gender" => Trait::Gender,
        b"birthday" => Trait::Birthday,
        b"city" => Trait::City,
        b"state" => Trait::State,
        b"postalcode" => Trait::PostalCode,
        b"zip" => Trait::Zip,
        b"zipcode" => Trait::ZipCode,
        b"country" => Trait::Country,
        b"subscriptionid" => Trait::SubscriptionId,
        b"leadid" => Trait::LeadId,
        b"fbloginid" => Trait::FbLoginId,
        b"anonid" => Trait::AnonId,
        b"address" => return Some(Slot::Address),
        _ => return None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> SegmentMessage<'static> {
        let bytes: &'static mut [u8] = Box::leak(text.as_bytes().to_vec().into_boxed_slice());
        SegmentMessage::parse(bytes, &Paths::default()).unwrap()
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let m = parse(r#"{"event":"a\"b\u00e9","properties":{"k\n":"v"}}"#);
        assert_eq!(m.event.as_ref().and_then(Json::as_str), Some("a\"bé"));
        let props = m.properties.as_object().unwrap();
        assert_eq!(props[0].0, "k\n");
    }

    #[test]
    fn reads_the_fields_mapping_uses_and_skips_the_rest() {
        let m = parse(
            r#"{"type":"track","event":"E","messageId":"m","sentAt":"t","userId":7,
                "context":{"library":{"name":"x"},"ip":"1.2.3.4","page":{"title":"T","url":"u"},
                           "traits":{"First_Name":"Ada","nickname":"skipped","address":{"city":"C"}}},
                "properties":{"a":1},"integrations":{"All":false},"version":2}"#,
        );
        assert_eq!(m.kind.as_ref().and_then(Json::as_str), Some("track"));
        assert_eq!(m.times[2].as_ref().and_then(Json::as_str), Some("t"));
        assert_eq!(m.user_id, Some(Json::Number(7.into())));
        let context = m.context.as_object().unwrap();
        assert_eq!(context.ip.as_ref().and_then(Json::as_str), Some("1.2.3.4"));
        assert_eq!(context.page_url.as_ref().and_then(Json::as_str), Some("u"));
        let traits = context.traits.as_object().unwrap();
        assert_eq!(
            traits.get(Trait::FirstName).and_then(Json::as_str),
            Some("Ada")
        );
        let address = traits.address.as_ref().unwrap();
        assert_eq!(address.get(Trait::City).and_then(Json::as_str), Some("C"));
        assert_eq!(m.properties.as_object().map(Vec::len), Some(1));
        assert!(m.integrations.as_object().is_some());
    }

    #[test]
    fn wrong_types_are_kept_as_their_kind() {
        let m = parse(r#"{"context":"x","traits":[1,[2]],"properties":5,"integrations":true}"#);
        assert!(matches!(m.context, Part::Not("a string")));
        assert!(matches!(m.traits, Part::Not("an array")));
        assert!(matches!(m.properties, Part::Not("a number")));
        assert!(matches!(m.integrations, Part::Not("a boolean")));
        let m = parse(r#"{"context":null}"#);
        assert!(matches!(m.context, Part::Absent));
    }

    #[test]
    fn null_keeps_an_earlier_value_and_later_duplicates_win() {
        let m = parse(r#"{"properties":{"a":1},"properties":null}"#);
        assert_eq!(m.properties.as_object().map(Vec::len), Some(1));
        let m = parse(r#"{"event":"a","event":null,"userId":"1","userId":"2"}"#);
        assert_eq!(m.event.as_ref().and_then(Json::as_str), Some("a"));
        assert_eq!(m.user_id.as_ref().and_then(Json::as_str), Some("2"));
    }

    #[test]
    fn root_must_be_an_object() {
        let err = SegmentMessage::parse(&mut b"[1]".to_vec(), &Paths::default()).unwrap_err();
        assert_eq!(err.to_string(), "expected a JSON object, got an array");
        let err = SegmentMessage::parse(&mut b"{} x".to_vec(), &Paths::default()).unwrap_err();
        assert!(err.to_string().starts_with("not valid JSON"), "{err}");
        let err = SegmentMessage::parse(
            &mut br#"{"email":"secret@x.com""#.to_vec(),
            &Paths::default(),
        )
        .unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        for depth in [200, 100_000] {
            let deep = format!(
                "{{\"properties\":{{\"a\":{}{}}}}}",
                "[".repeat(depth),
                "]".repeat(depth)
            );
            let err = SegmentMessage::parse(&mut deep.into_bytes(), &Paths::default()).unwrap_err();
            assert!(matches!(err, MessageError::Json(_)), "{err}");
        }
    }

    #[test]
    fn external_id_path_reaches_anywhere() {
        let path = Paths {
            external_id: Some(["context", "device", "id"].map(String::from).to_vec()),
            pixel_id: None,
        };
        let mut text =
            br#"{"context":{"device":{"id":"D-1","x":[1]},"ip":"1"},"context2":{}}"#.to_vec();
        let m = SegmentMessage::parse(&mut text, &path).unwrap();
        assert_eq!(m.external_id.as_ref().and_then(Json::as_str), Some("D-1"));
        let mut text = br#"{"context":{"device":"flat"}}"#.to_vec();
        let m = SegmentMessage::parse(&mut text, &path).unwrap();
        assert_eq!(m.external_id, None);
        let mut text =
            br#"{"context":{"device":{"id":"A"}},"context":{"device":{"id":null}}}"#.to_vec();
        let m = SegmentMessage::parse(&mut text, &path).unwrap();
        assert_eq!(m.external_id.as_ref().and_then(Json::as_str), Some("A"));
    }

    #[test]
    fn trait_keys_ignore_case_and_underscores() {
        for key in ["firstName", "first_name", "FIRSTNAME", "first_Name"] {
            assert!(
                matches!(classify(key), Some(Slot::Trait(Trait::FirstName))),
                "{key}"
            );
        }
        assert!(matches!(
            classify("postal_code"),
            Some(Slot::Trait(Trait::PostalCode))
        ));
        assert!(matches!(
            classify("zipCode"),
            Some(Slot::Trait(Trait::ZipCode))
        ));
        assert!(matches!(classify("Address"), Some(Slot::Address)));
        assert!(classify("emailAddressVerified").is_none());
        assert!(classify("émail").is_none());
        assert!(classify("").is_none());
    }
}

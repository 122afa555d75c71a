//! A Segment message as mapping reads it: the fields mapping uses, borrowed from the input, and
//! everything else skipped while parsing.
//!
//! Parsing is most of the cost of mapping an event. Building a tree of the whole message and
//! then looking fields up spent time on parts no rule reads (`context.library`, `page.title`,
//! unknown trait keys), so the message is read into fixed slots in one pass instead. Every slot
//! is lenient — a value of the wrong type is kept and reported by field, never turned into a
//! deserializer error that would echo it.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserializer;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::json::{Json, Key, Object, ParseError, utf8};

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
}

const TRAIT_COUNT: usize = 13;

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
    pub traits: Part<Box<Traits<'a>>>,
}

/// The fields of a Segment message that mapping reads.
#[derive(Debug, Default)]
pub struct SegmentMessage<'a> {
    pub kind: Option<Json<'a>>,
    pub event: Option<Json<'a>>,
    pub message_id: Option<Json<'a>>,
    /// `timestamp`, `originalTimestamp`, `sentAt`, `receivedAt`, in that order.
    pub times: [Option<Json<'a>>; 4],
    pub user_id: Option<Json<'a>>,
    pub anonymous_id: Option<Json<'a>>,
    // Boxed: the message is moved several times on its way out of the parser, and trait slots
    // are most of its size.
    pub context: Part<Box<Context<'a>>>,
    pub traits: Part<Box<Traits<'a>>>,
    pub properties: Part<Object<'a>>,
    pub integrations: Part<Object<'a>>,
    /// The value at `external_id_field`, when the caller asked for one.
    pub external_id: Option<Json<'a>>,
}

/// The message fields that may carry the event's time, in order of preference.
pub const TIME_FIELDS: [&str; 4] = ["timestamp", "originalTimestamp", "sentAt", "receivedAt"];

/// Why bytes are not a message mapping can read.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error(transparent)]
    Json(#[from] ParseError),
    #[error("expected a JSON object, got {0}")]
    NotAnObject(&'static str),
}

impl<'a> SegmentMessage<'a> {
    /// Reads a message; `external_id_path` (a dotted path) is looked up in the whole message.
    pub fn parse(
        bytes: &'a [u8],
        external_id_path: Option<&[String]>,
    ) -> Result<Self, MessageError> {
        let text = utf8(bytes)?;
        let part: Part<SegmentMessage<'a>> = parse_json(text, PartSeed(PhantomData))?;
        let mut message = match part {
            Part::Object(message) => message,
            Part::Not(kind) => return Err(MessageError::NotAnObject(kind)),
            Part::Absent => return Err(MessageError::NotAnObject("null")),
        };
        if let Some(path) = external_id_path {
            message.external_id = parse_json(text, PathSeed(path))?;
        }
        Ok(message)
    }
}

fn parse_json<'a, S: DeserializeSeed<'a>>(text: &'a str, seed: S) -> Result<S::Value, ParseError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = seed
        .deserialize(&mut deserializer)
        .map_err(ParseError::from)?;
    deserializer.end().map_err(ParseError::from)?;
    Ok(value)
}

/// Builds a value from the members of a JSON object.
trait FromMembers<'de>: Sized {
    fn from_members<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
}

/// Reads a [`Part`]: an object through `T`, anything else as its kind (skipped).
struct PartSeed<T>(PhantomData<T>);

impl<'de, T: FromMembers<'de>> DeserializeSeed<'de> for PartSeed<T> {
    type Value = Part<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Part<T>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, T: FromMembers<'de>> Visitor<'de> for PartSeed<T> {
    type Value = Part<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Part<T>, A::Error> {
        T::from_members(map).map(Part::Object)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Part<T>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Part::Not("an array"))
    }
    fn visit_unit<E>(self) -> Result<Part<T>, E> {
        Ok(Part::Absent)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Part<T>, E> {
        Ok(Part::Not("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Part<T>, E> {
        Ok(Part::Not("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Part<T>, E> {
        Ok(Part::Not("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Part<T>, E> {
        Ok(Part::Not("a number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Part<T>, E> {
        Ok(Part::Not("a string"))
    }
}

fn part<'de, A: MapAccess<'de>, T: FromMembers<'de>>(map: &mut A) -> Result<Part<T>, A::Error> {
    map.next_value_seed(PartSeed(PhantomData))
}

/// A value, with null as absent.
fn value<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<Json<'de>>, A::Error> {
    Ok(Some(map.next_value::<Json<'de>>()?).filter(|v| !v.is_null()))
}

/// Stores a present value; a null leaves an earlier one in place.
fn set<'de>(slot: &mut Option<Json<'de>>, new: Option<Json<'de>>) {
    if new.is_some() {
        *slot = new;
    }
}

impl<'de> FromMembers<'de> for SegmentMessage<'de> {
    fn from_members<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut m = SegmentMessage::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match key.as_str() {
                "type" => set(&mut m.kind, value(&mut map)?),
                "event" => set(&mut m.event, value(&mut map)?),
                "messageId" => set(&mut m.message_id, value(&mut map)?),
                "timestamp" => set(&mut m.times[0], value(&mut map)?),
                "originalTimestamp" => set(&mut m.times[1], value(&mut map)?),
                "sentAt" => set(&mut m.times[2], value(&mut map)?),
                "receivedAt" => set(&mut m.times[3], value(&mut map)?),
                "userId" => set(&mut m.user_id, value(&mut map)?),
                "anonymousId" => set(&mut m.anonymous_id, value(&mut map)?),
                "context" => m.context = part(&mut map)?,
                "traits" => m.traits = part(&mut map)?,
                "properties" => m.properties = part(&mut map)?,
                "integrations" => m.integrations = part(&mut map)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(m)
    }
}

impl<'de> FromMembers<'de> for Context<'de> {
    fn from_members<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut c = Context::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match key.as_str() {
                "ip" => set(&mut c.ip, value(&mut map)?),
                "userAgent" => set(&mut c.user_agent, value(&mut map)?),
                "fbp" => set(&mut c.fbp, value(&mut map)?),
                "fbc" => set(&mut c.fbc, value(&mut map)?),
                "traits" => c.traits = part(&mut map)?,
                "page" => {
                    if let Part::Object(Page(url)) = part(&mut map)? {
                        set(&mut c.page_url, url);
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(c)
    }
}

/// `context.page`: only its `url` is read.
struct Page<'a>(Option<Json<'a>>);

impl<'de> FromMembers<'de> for Page<'de> {
    fn from_members<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut url = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if key.as_str() == "url" {
                set(&mut url, value(&mut map)?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Page(url))
    }
}

impl<'de> FromMembers<'de> for Traits<'de> {
    fn from_members<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut traits = Traits::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match classify(key.as_str()) {
                Some(Slot::Trait(t)) => set(&mut traits.values[t as usize], value(&mut map)?),
                Some(Slot::Address) => match part::<A, Traits<'de>>(&mut map)? {
                    Part::Object(address) => traits.address = Some(Box::new(address)),
                    Part::Not(_) | Part::Absent => {}
                },
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(traits)
    }
}

impl<'de, T: FromMembers<'de>> FromMembers<'de> for Box<T> {
    fn from_members<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        T::from_members(map).map(Box::new)
    }
}

impl<'de> FromMembers<'de> for Object<'de> {
    fn from_members<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        crate::json::collect_members(map)
    }
}

enum Slot {
    Trait(Trait),
    Address,
}

/// Trait keys match ignoring case and `_`: `firstName` = `first_name` = `firstname`.
fn classify(key: &str) -> Option<Slot> {
    let mut buf = [0u8; 12];
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
        b"address" => return Some(Slot::Address),
        _ => return None,
    }))
}

/// Finds the value at a dotted path, skipping everything else.
struct PathSeed<'p>(&'p [String]);

impl<'de> DeserializeSeed<'de> for PathSeed<'_> {
    type Value = Option<Json<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PathSeed<'_> {
    type Value = Option<Json<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let Some((head, rest)) = self.0.split_first() else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(None);
        };
        let mut found = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if key.as_str() != head {
                map.next_value::<IgnoredAny>()?;
            } else if rest.is_empty() {
                set(&mut found, value(&mut map)?);
            } else {
                set(&mut found, map.next_value_seed(PathSeed(rest))?);
            }
        }
        Ok(found)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> SegmentMessage<'_> {
        SegmentMessage::parse(text.as_bytes(), None).unwrap()
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
        let m = parse(r#"{"event":"a","event":null,"userId":"1","userId":"2"}"#);
        assert_eq!(m.event.as_ref().and_then(Json::as_str), Some("a"));
        assert_eq!(m.user_id.as_ref().and_then(Json::as_str), Some("2"));
    }

    #[test]
    fn root_must_be_an_object() {
        let err = SegmentMessage::parse(b"[1]", None).unwrap_err();
        assert_eq!(err.to_string(), "expected a JSON object, got an array");
        let err = SegmentMessage::parse(b"{} x", None).unwrap_err();
        assert!(err.to_string().starts_with("not valid JSON"), "{err}");
    }

    #[test]
    fn external_id_path_reaches_anywhere() {
        let path: Vec<String> = ["context", "device", "id"].map(String::from).to_vec();
        let text = r#"{"context":{"device":{"id":"D-1","x":[1]},"ip":"1"},"context2":{}}"#;
        let m = SegmentMessage::parse(text.as_bytes(), Some(&path)).unwrap();
        assert_eq!(m.external_id.as_ref().and_then(Json::as_str), Some("D-1"));
        let text = r#"{"context":{"device":"flat"}}"#;
        let m = SegmentMessage::parse(text.as_bytes(), Some(&path)).unwrap();
        assert_eq!(m.external_id, None);
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

//! A borrowed, lenient JSON tree: how events are read without copying.
//!
//! Segment messages are loosely typed (a phone may be a number, `properties` may hold anything), so
//! mapping must look at every value's actual type and report problems by field, never by a
//! deserializer's message (which would echo the value, and values can be personal data). This
//! tree accepts any JSON, borrows every string that has no escapes from the input, and keeps
//! objects as small vectors: far cheaper than `serde_json::Value`, which allocates every string
//! and builds a sorted map per object.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use smallvec::SmallVec;

/// One JSON value, borrowing from the input where it can.
#[derive(Clone, Debug, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Object<'a>),
}

/// Object members in input order. Duplicate keys are kept; lookups see the last one, as
/// `serde_json` would.
pub type Object<'a> = Vec<(Cow<'a, str>, Json<'a>)>;

/// Why bytes could not be read as JSON. The text never contains input values.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("not valid JSON: {0}")]
    Syntax(#[from] serde_json::Error),
    #[error("not valid UTF-8 (byte {0})")]
    Utf8(usize),
}

/// The bytes as text. JSON is UTF-8; checking the whole input once lets the parser skip
/// checking every string in it.
pub fn utf8(bytes: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(bytes).map_err(|e| ParseError::Utf8(e.valid_up_to()))
}

impl<'a> Json<'a> {
    /// Parses one JSON document, borrowing strings from `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Json<'a>, ParseError> {
        Ok(serde_json::from_str(utf8(bytes)?)?)
    }

    /// The member `key` of an object, `None` when absent, null, or `self` is not an object.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        member(self.as_object()?, key)
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object<'a>> {
        match self {
            Json::Object(members) => Some(members),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Json<'a>]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }

    /// Text of a string, or the decimal text of a number (identifiers and phones are often sent
    /// as numbers). Other types have no text.
    pub fn to_text(&self) -> Option<Cow<'_, str>> {
        match self {
            Json::String(s) => Some(Cow::Borrowed(s)),
            // `1.6505550134e10` is the phone 16505550134, not "16505550134.0".
            Json::Number(n) => Some(Cow::Owned(match n.as_f64() {
                Some(f) if !n.is_i64() && !n.is_u64() && f.fract() == 0.0 && f.abs() < 9e15 => {
                    format!("{}", f as i64)
                }
                _ => n.to_string(),
            })),
            _ => None,
        }
    }

    /// The type as a reader would name it in an error message: "a string", "an object", ….
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }
}

impl fmt::Display for Json<'_> {
    /// Compact JSON text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => serializer.serialize_unit(),
            Json::Bool(b) => serializer.serialize_bool(*b),
            Json::Number(n) => n.serialize(serializer),
            Json::String(s) => serializer.serialize_str(s),
            Json::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(members) => {
                let mut map = serializer.serialize_map(Some(members.len()))?;
                for (i, (key, value)) in members.iter().enumerate() {
                    // The last duplicate wins, as in lookups; emitting both would make the
                    // output ambiguous to its reader.
                    if members[i + 1..].iter().any(|(k, _)| k == key) {
                        continue;
                    }
                    map.serialize_entry(key.as_ref(), value)?;
                }
                map.end()
            }
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Json<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        serde_json::Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Json::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // Gather on the stack, then allocate once at the exact size: growing a Vec member by
        // member cost several reallocations per object.
        let mut items: SmallVec<[Json<'de>; 8]> = SmallVec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items.into_vec()))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        collect_members(map).map(Json::Object)
    }
}

/// The members of an object, in input order.
pub fn collect_members<'de, A: MapAccess<'de>>(mut map: A) -> Result<Object<'de>, A::Error> {
    // Gather on the stack, then allocate once at the exact size: growing a Vec member by member
    // cost several reallocations per object.
    let mut members: SmallVec<[(Cow<'de, str>, Json<'de>); 16]> = SmallVec::new();
    while let Some(key) = map.next_key::<Key<'de>>()? {
        let value = map.next_value()?;
        members.push((key.0, value));
    }
    Ok(members.into_vec())
}

/// The member `key` of an object's members; `None` when absent or null.
pub fn member<'j, 'a>(members: &'j Object<'a>, key: &str) -> Option<&'j Json<'a>> {
    // The last non-null duplicate, as for the message's own fields: a later null does not
    // erase an earlier value.
    members
        .iter()
        .rev()
        .find(|(k, v)| k == key && !v.is_null())
        .map(|(_, v)| v)
}

/// An object key, borrowed when it has no escapes.
pub struct Key<'a>(Cow<'a, str>);

impl Key<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrows_unescaped_strings_and_owns_escaped_ones() {
        let input = br#"{"a":"plain","b":"esc\"aped"}"#;
        let json = Json::parse(input).unwrap();
        let Json::Object(members) = &json else {
            panic!("not an object")
        };
        assert!(matches!(members[0].0, Cow::Borrowed("a")));
        assert!(matches!(members[0].1, Json::String(Cow::Borrowed("plain"))));
        assert!(matches!(&members[1].1, Json::String(Cow::Owned(s)) if s == "esc\"aped"));
    }

    #[test]
    fn get_treats_null_as_absent_and_sees_the_last_duplicate() {
        let json = Json::parse(br#"{"a":1,"a":2,"n":null,"b":3,"b":null}"#).unwrap();
        assert_eq!(json.get("a"), Some(&Json::Number(2.into())));
        assert_eq!(json.get("b"), Some(&Json::Number(3.into())));
        assert_eq!(json.get("n"), None);
        assert_eq!(json.get("missing"), None);
        assert_eq!(json.to_string(), r#"{"a":2,"n":null,"b":null}"#);
    }

    #[test]
    fn round_trips_any_document() {
        let text = r#"{"a":[1,-2,3.5,true,null,"s"],"b":{"c":{}},"d":[]}"#;
        assert_eq!(Json::parse(text.as_bytes()).unwrap().to_string(), text);
    }

    #[test]
    fn parse_errors_do_not_echo_input() {
        let err = Json::parse(br#"{"email":"secret@example.com""#).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(err.to_string().starts_with("not valid JSON"));
    }

    #[test]
    fn numbers_render_as_text() {
        let json = Json::parse(br#"[16505551234, 2.5, "x", true, 1.6505550134e10, -3.0]"#).unwrap();
        let items = json.as_array().unwrap();
        assert_eq!(items[0].to_text().as_deref(), Some("16505551234"));
        assert_eq!(items[1].to_text().as_deref(), Some("2.5"));
        assert_eq!(items[2].to_text().as_deref(), Some("x"));
        assert_eq!(items[3].to_text(), None);
        assert_eq!(items[4].to_text().as_deref(), Some("16505550134"));
        assert_eq!(items[5].to_text().as_deref(), Some("-3"));
    }
}

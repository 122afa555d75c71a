//! A borrowed, lenient JSON tree: how events are read without copying.
//!
//! Segment messages are loosely typed (a phone may be a number, `properties` may hold anything), so
//! mapping must look at every value's actual type and report problems by field, never by a
//! parser's message (which could quote the input, and values can be personal data). This tree
//! accepts any JSON, borrows every string from the input, and keeps objects as small vectors: far
//! cheaper than `serde_json::Value`, which allocates every string and builds a map per object.
//!
//! There is one parser: simd-json (SIMD, chosen at run time for the CPU) indexes the input into a
//! flat tape of nodes, in which every object and array records how many nodes it spans. Trees are
//! built from the tape ([`Json::parse`]), and readers that want only a few fields walk the tape
//! directly, stepping over the rest ([`members`], [`value_at`]).

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use simd_json::{Node, StaticNode};

/// One JSON value, borrowing from the input where it can.
#[derive(Clone, Debug, PartialEq)]
pub enum Json<'a> {
    /// `null`, which lookups treat as absent.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, kept as written so no precision is lost.
    Number(serde_json::Number),
    /// A string, borrowed unless it had escapes.
    String(Cow<'a, str>),
    /// An array.
    Array(Vec<Json<'a>>),
    /// An object, members in input order.
    Object(Object<'a>),
}

/// Object members in input order. Duplicate keys are kept; lookups see the last non-null one.
pub type Object<'a> = Vec<(Cow<'a, str>, Json<'a>)>;

/// How deeply values may nest, as serde_json allows.
pub(crate) const MAX_DEPTH: usize = 128;

/// Why bytes could not be read as JSON. The text never contains input values.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not JSON: what the parser expected and the byte offset, so senders can find the fault.
    #[error("not valid JSON: {0} (at byte {1})")]
    Syntax(&'static str, usize),
    /// Nested deeper than serde_json allows, refused so a hostile body cannot exhaust the stack.
    #[error("nested more than {MAX_DEPTH} levels deep")]
    TooDeep,
}

/// Indexes `bytes` into simd-json's tape. Strings with escapes are unescaped in place, so the
/// buffer is taken mutably and the nodes borrow from it.
pub(crate) fn tape(bytes: &mut [u8]) -> Result<Vec<Node<'_>>, ParseError> {
    // simd-json's working buffers are kept per thread: allocating them for every message was a
    // tenth of the parse. A thread-local is not shared, so this is not a lock.
    thread_local! {
        static BUFFERS: RefCell<simd_json::Buffers> = RefCell::new(simd_json::Buffers::default());
    }
    let tape = BUFFERS
        .with_borrow_mut(|buffers| simd_json::to_tape_with_buffers(bytes, buffers))
        .map_err(|e| ParseError::Syntax(describe(e.error()), e.index()))?;
    if tape.0.is_empty() {
        return Err(ParseError::Syntax("empty input", 0));
    }
    Ok(tape.0)
}

/// What is wrong, in words; simd-json's own message may quote a character of the input.
fn describe(error: &simd_json::ErrorType) -> &'static str {
    use simd_json::ErrorType as E;
    match error {
        E::Eof => "unexpected end of input",
        E::InvalidUtf8 => "not UTF-8",
        E::InvalidEscape | E::InvalidUnicodeEscape | E::InvalidUnicodeCodepoint => {
            "invalid escape in a string"
        }
        E::InvalidNumber | E::InvalidExponent | E::Overflow => "invalid number",
        E::UnterminatedString => "unterminated string",
        E::TrailingData => "trailing characters after the value",
        E::InputTooLarge => "input too large",
        _ => "syntax error",
    }
}

/// How many tape nodes the value at `at` spans.
fn span(nodes: &[Node<'_>], at: usize) -> usize {
    match nodes.get(at) {
        Some(Node::Object { count, .. } | Node::Array { count, .. }) => 1 + count,
        _ => 1,
    }
}

/// The members of the object at `at`: each key with the tape index of its value. Nothing for
/// anything that is not an object.
pub(crate) fn members<'t, 'a>(
    nodes: &'t [Node<'a>],
    at: usize,
) -> impl Iterator<Item = (&'a str, usize)> + 't {
    let len = match nodes.get(at) {
        Some(Node::Object { len, .. }) => *len,
        _ => 0,
    };
    let mut next = at + 1;
    (0..len).map_while(move |_| {
        let key = match nodes.get(next)? {
            Node::String(key) => *key,
            _ => return None,
        };
        let value = next + 1;
        next = value + span(nodes, value);
        Some((key, value))
    })
}

/// The elements of the array at `at`, as tape indexes.
fn elements<'t>(nodes: &'t [Node<'_>], at: usize) -> impl Iterator<Item = usize> + 't {
    let len = match nodes.get(at) {
        Some(Node::Array { len, .. }) => *len,
        _ => 0,
    };
    let mut next = at + 1;
    (0..len).map(move |_| {
        let element = next;
        next += span(nodes, element);
        element
    })
}

/// The kind of the node at `at`, as [`Json::kind`] names it.
pub(crate) fn kind_at(nodes: &[Node<'_>], at: usize) -> &'static str {
    match nodes.get(at) {
        Some(Node::String(_)) => "a string",
        Some(Node::Object { .. }) => "an object",
        Some(Node::Array { .. }) => "an array",
        Some(Node::Static(StaticNode::Bool(_))) => "a boolean",
        Some(Node::Static(StaticNode::Null)) | None => "null",
        Some(Node::Static(_)) => "a number",
    }
}

/// The value at `at` as a tree; `depth` is how deeply it is nested already.
pub(crate) fn value_at<'a>(
    nodes: &[Node<'a>],
    at: usize,
    depth: usize,
) -> Result<Json<'a>, ParseError> {
    if depth > MAX_DEPTH {
        return Err(ParseError::TooDeep);
    }
    Ok(match nodes.get(at) {
        Some(Node::String(text)) => Json::String(Cow::Borrowed(text)),
        Some(Node::Object { .. }) => Json::Object(object_at(nodes, at, depth + 1)?),
        Some(Node::Array { len, .. }) => {
            let mut items = Vec::with_capacity(*len);
            for i in elements(nodes, at) {
                items.push(value_at(nodes, i, depth + 1)?);
            }
            Json::Array(items)
        }
        Some(Node::Static(StaticNode::Bool(b))) => Json::Bool(*b),
        Some(Node::Static(StaticNode::I64(n))) => Json::Number((*n).into()),
        Some(Node::Static(StaticNode::U64(n))) => Json::Number((*n).into()),
        Some(Node::Static(StaticNode::F64(f))) => {
            serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number)
        }
        Some(Node::Static(StaticNode::Null)) | None => Json::Null,
    })
}

/// The members of the object at `at`, in input order.
pub(crate) fn object_at<'a>(
    nodes: &[Node<'a>],
    at: usize,
    depth: usize,
) -> Result<Object<'a>, ParseError> {
    let len = match nodes.get(at) {
        Some(Node::Object { len, .. }) => *len,
        _ => 0,
    };
    // Sized up front: collecting from the iterator regrew the vector member by member.
    let mut out = Vec::with_capacity(len);
    for (key, i) in members(nodes, at) {
        out.push((Cow::Borrowed(key), value_at(nodes, i, depth)?));
    }
    Ok(out)
}

impl<'a> Json<'a> {
    /// Parses one JSON document. Strings with escapes are unescaped in place in `bytes`, which
    /// the tree borrows from.
    pub fn parse(bytes: &'a mut [u8]) -> Result<Json<'a>, ParseError> {
        value_at(&tape(bytes)?, 0, 0)
    }

    /// The member `key` of an object, `None` when absent, null, or `self` is not an object.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        member(self.as_object()?, key)
    }

    /// Whether it is `null`, which the mapping treats as an absent field.
    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    /// The text of a string (not of a number: see [`Json::to_text`]).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// The members of an object, for walking them in input order.
    pub fn as_object(&self) -> Option<&Object<'a>> {
        match self {
            Json::Object(members) => Some(members),
            _ => None,
        }
    }

    /// The items of an array.
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

/// The member `key` of an object's members; `None` when absent or null.
pub(crate) fn member<'j, 'a>(members: &'j Object<'a>, key: &str) -> Option<&'j Json<'a>> {
    // The last non-null duplicate, as for the message's own fields: a later null does not
    // erase an earlier value.
    members
        .iter()
        .rev()
        .find(|(k, v)| k == key && !v.is_null())
        .map(|(_, v)| v)
}

/// Parses test input that must be valid, keeping it for the rest of the test run.
#[cfg(test)]
pub(crate) fn parse_for_test(text: &str) -> Json<'static> {
    let bytes: &'static mut [u8] = Box::leak(text.as_bytes().to_vec().into_boxed_slice());
    Json::parse(bytes).expect("test input is valid JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Json<'static> {
        parse_for_test(text)
    }

    #[test]
    fn borrows_every_string_including_unescaped_ones() {
        let json = parse(r#"{"a":"plain","b":"esc\"aped\u00e9"}"#);
        let Json::Object(members) = &json else {
            panic!("not an object")
        };
        assert!(matches!(members[0].0, Cow::Borrowed("a")));
        assert!(matches!(members[0].1, Json::String(Cow::Borrowed("plain"))));
        assert!(matches!(
            &members[1].1,
            Json::String(Cow::Borrowed("esc\"apedé"))
        ));
    }

    #[test]
    fn get_treats_null_as_absent_and_sees_the_last_duplicate() {
        let json = parse(r#"{"a":1,"a":2,"n":null,"b":3,"b":null}"#);
        assert_eq!(json.get("a"), Some(&Json::Number(2.into())));
        assert_eq!(json.get("b"), Some(&Json::Number(3.into())));
        assert_eq!(json.get("n"), None);
        assert_eq!(json.get("missing"), None);
        assert_eq!(json.to_string(), r#"{"a":2,"n":null,"b":null}"#);
    }

    #[test]
    fn round_trips_any_document() {
        let text = r#"{"a":[1,-2,3.5,true,null,"s"],"b":{"c":{}},"d":[]}"#;
        assert_eq!(parse(text).to_string(), text);
    }

    #[test]
    fn parse_errors_do_not_echo_input() {
        for text in [
            r#"{"email":"secret@example.com""#,
            r#"{"email":"secret\q"}"#,
            "",
            "{} x",
        ] {
            let err = Json::parse(&mut text.as_bytes().to_vec()).unwrap_err();
            assert!(!err.to_string().contains("secret"), "{err}");
            assert!(err.to_string().starts_with("not valid JSON"), "{err}");
        }
        let err = Json::parse(&mut [b'"', 0xff, b'"']).unwrap_err();
        assert!(err.to_string().starts_with("not valid JSON"), "{err}");
    }

    #[test]
    fn nesting_is_limited() {
        for depth in [200, 100_000] {
            let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let err = Json::parse(&mut text.into_bytes()).unwrap_err();
            assert!(
                matches!(err, ParseError::TooDeep | ParseError::Syntax(..)),
                "{err}"
            );
        }
        let text = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(Json::parse(&mut text.into_bytes()).is_ok());
    }

    #[test]
    fn walking_the_tape_steps_over_unread_values() {
        let mut text = br#"{"skip":{"deep":[1,{"x":2}]},"keep":"k","n":3}"#.to_vec();
        let nodes = tape(&mut text).unwrap();
        let keys: Vec<_> = members(&nodes, 0).map(|(key, _)| key).collect();
        assert_eq!(keys, ["skip", "keep", "n"]);
        let (_, keep) = members(&nodes, 0).nth(1).unwrap();
        assert_eq!(value_at(&nodes, keep, 0).unwrap(), Json::String("k".into()));
        assert_eq!(kind_at(&nodes, 0), "an object");
        assert_eq!(members(&nodes, keep).count(), 0, "a string has no members");
    }

    #[test]
    fn numbers_render_as_text() {
        let json = parse(r#"[16505551234, 2.5, "x", true, 1.6505550134e10, -3.0]"#);
        let items = json.as_array().unwrap();
        assert_eq!(items[0].to_text().as_deref(), Some("16505551234"));
        assert_eq!(items[1].to_text().as_deref(), Some("2.5"));
        assert_eq!(items[2].to_text().as_deref(), Some("x"));
        assert_eq!(items[3].to_text(), None);
        assert_eq!(items[4].to_text().as_deref(), Some("16505550134"));
        assert_eq!(items[5].to_text().as_deref(), Some("-3"));
    }
}

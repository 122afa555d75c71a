//! Segment messages as their top-level members with the values left as raw JSON text, and each
//! message written out again with the fields the source adds: how `receivedAt`, `messageId`,
//! `type`, the batch's `context`/`integrations` and `context.ip` get in without building a
//! `serde_json` tree and serializing it again (which ran the source at half the speed of
//! `http_server`).
//!
//! The body is read in one pass by serde_json (so it is validated exactly as before, with the
//! same error texts); a message's values are copied as they came, only the members the source
//! changes are written anew. Duplicate keys behave as a map's: the last one wins.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// A JSON object's members in input order, each value as its raw text.
#[derive(Default)]
pub struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Members<'a> {
    /// The last member called `key`, as a map would keep it.
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// Each member that no later one of the same name overrides.
    fn live(&self) -> impl Iterator<Item = (&Cow<'a, str>, &'a RawValue)> {
        self.0.iter().enumerate().filter_map(|(i, (k, v))| {
            let overridden = self.0[i + 1..].iter().any(|(later, _)| later == k);
            (!overridden).then_some((k, *v))
        })
    }

    fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }
}

/// A value where an object is wanted: its members, or what it is instead ("an array", …).
pub enum MaybeObject<'a> {
    /// It is an object.
    Object(Members<'a>),
    /// It is not; the kind, in words.
    Not(&'static str),
}

/// A request body: the top-level members, and for a batch call the `batch` member read into
/// its messages in the same pass (it is not among `members` then).
pub struct Body<'a> {
    /// Every top-level member but `batch` (when it was read as the batch).
    pub members: Members<'a>,
    /// The last `batch` member, when reading a batch call.
    pub batch: Option<Batch<'a>>,
}

/// The `batch` member of a batch call.
pub enum Batch<'a> {
    /// An array: each element, object or not.
    Items(Vec<MaybeObject<'a>>),
    /// Not an array.
    Not,
}

/// `bytes` as a body, validated as serde_json validates: `Ok(None)` when it is valid JSON but
/// not an object. With `batch`, the `batch` member is read as [`Batch`].
pub fn parse_body(bytes: &[u8], batch: bool) -> Result<Option<Body<'_>>, serde_json::Error> {
    // UTF-8 checked once for the whole body: read from bytes, serde_json checks every raw
    // value again on its own, a sixth of this function's time.
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            let mut de = serde_json::Deserializer::from_str(text);
            let body = BodySeed { batch }.deserialize(&mut de)?;
            de.end()?;
            Ok(body)
        }
        // From bytes, for serde_json's own error: the line and column of the bad byte.
        Err(_) => {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let body = BodySeed { batch }.deserialize(&mut de)?;
            de.end()?;
            Ok(body)
        }
    }
}

/// `raw` read as an object's members (`raw` is valid JSON: it came from the parser).
pub fn object(raw: &RawValue) -> MaybeObject<'_> {
    serde_json::from_str(raw.get()).unwrap_or(MaybeObject::Not("invalid JSON"))
}

/// `raw` as a string, if it is one.
pub fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    if !text.starts_with('"') {
        return None;
    }
    let inner = &text[1..text.len() - 1];
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

/// Whether `raw` is a string with at least one character.
pub fn is_non_empty_string(raw: &RawValue) -> bool {
    let text = raw.get();
    text.starts_with('"') && text != "\"\""
}

/// What [`write`] adds to or changes in a message.
pub struct Additions<'s, 'a> {
    /// `type`, set from the path of a single call (replacing the message's own).
    pub kind: Option<&'s str>,
    /// The batch's `context`, whose members the message's own lacks are added.
    pub shared_context: Option<&'s Members<'a>>,
    /// The batch's `integrations`, likewise.
    pub shared_integrations: Option<&'s Members<'a>>,
    /// `receivedAt`, always set.
    pub received_at: &'s str,
    /// `context.ip` when the message has no non-empty one.
    pub ip: Option<&'s str>,
    /// The `messageId` given to a message without a non-empty one (called only then).
    pub new_message_id: &'s dyn Fn() -> String,
}

/// Appends `message` to `out` as one line of compact-enough JSON: its members as they came
/// (without `writeKey`, a credential, not event data), then what `additions` adds.
pub fn write(out: &mut Vec<u8>, message: &Members<'_>, additions: &Additions<'_, '_>) {
    let start = out.len();
    out.push(b'{');
    let mut first = true;
    let mut has_message_id = false;
    let mut wrote_context = false;
    let mut wrote_integrations = false;
    for (key, value) in message.live() {
        match key.as_ref() {
            "writeKey" | "receivedAt" => continue,
            "type" if additions.kind.is_some() => continue,
            "messageId" if !is_non_empty_string(value) => continue,
            _ => {}
        }
        input_key(out, &mut first, key);
        match key.as_ref() {
            "messageId" => {
                has_message_id = true;
                out.extend_from_slice(value.get().as_bytes());
            }
            "context" => {
                wrote_context = true;
                merged(out, value, additions.shared_context, additions.ip);
            }
            "integrations" => {
                wrote_integrations = true;
                merged(out, value, additions.shared_integrations, None);
            }
            _ => out.extend_from_slice(value.get().as_bytes()),
        }
    }
    if !wrote_context && (additions.shared_context.is_some() || additions.ip.is_some()) {
        member_key(out, &mut first, "context");
        object_with(
            out,
            &Members::default(),
            additions.shared_context,
            additions.ip,
        );
    }
    if !wrote_integrations && let Some(shared) = additions.shared_integrations {
        member_key(out, &mut first, "integrations");
        object_with(out, &Members::default(), Some(shared), None);
    }
    if let Some(kind) = additions.kind {
        member_key(out, &mut first, "type");
        string_value(out, kind);
    }
    member_key(out, &mut first, "receivedAt");
    string_value(out, additions.received_at);
    if !has_message_id {
        member_key(out, &mut first, "messageId");
        string_value(out, &(additions.new_message_id)());
    }
    out.push(b'}');
    one_line(out, start);
}

/// The value of `context` or `integrations`: an object gains the shared members it lacks (and
/// `ip`, for `context`); anything else stays as it is, as a map merge would leave it.
fn merged(out: &mut Vec<u8>, own: &RawValue, shared: Option<&Members<'_>>, ip: Option<&str>) {
    if shared.is_none() && ip.is_none() {
        out.extend_from_slice(own.get().as_bytes());
        return;
    }
    match object(own) {
        MaybeObject::Object(members) => object_with(out, &members, shared, ip),
        MaybeObject::Not(_) => out.extend_from_slice(own.get().as_bytes()),
    }
}

/// `{own members, then shared members own lacks}`, with `ip` unless the result has a
/// non-empty `ip` already.
fn object_with(
    out: &mut Vec<u8>,
    own: &Members<'_>,
    shared: Option<&Members<'_>>,
    ip: Option<&str>,
) {
    out.push(b'{');
    let mut first = true;
    // The `ip` the merged object would have: its own, else the shared one.
    let kept_ip = own
        .get("ip")
        .or_else(|| shared.and_then(|s| s.get("ip")))
        .is_some_and(is_non_empty_string);
    let replace_ip = ip.is_some() && !kept_ip;
    for (key, value) in own.live() {
        if replace_ip && key == "ip" {
            continue;
        }
        input_key(out, &mut first, key);
        out.extend_from_slice(value.get().as_bytes());
    }
    if let Some(shared) = shared {
        for (key, value) in shared.live() {
            if own.has(key) || (replace_ip && key == "ip") {
                continue;
            }
            input_key(out, &mut first, key);
            out.extend_from_slice(value.get().as_bytes());
        }
    }
    if let Some(ip) = ip.filter(|_| replace_ip) {
        member_key(out, &mut first, "ip");
        string_value(out, ip);
    }
    out.push(b'}');
}

fn member_key(out: &mut Vec<u8>, first: &mut bool, key: &str) {
    if !std::mem::take(first) {
        out.push(b',');
    }
    string_value(out, key);
    out.push(b':');
}

/// A key read from the input: one borrowed had no escapes, so it needs none and is copied
/// between quotes (escaping every key again was a twentieth of the source's time).
#[allow(clippy::ptr_arg)] // the Cow itself is the point: whether the key had escapes
fn input_key(out: &mut Vec<u8>, first: &mut bool, key: &Cow<'_, str>) {
    match key {
        Cow::Borrowed(key) => {
            if !std::mem::take(first) {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
        }
        Cow::Owned(key) => member_key(out, first, key),
    }
}

fn string_value(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *out, text).expect("writing to a Vec cannot fail");
}

/// Line breaks in valid JSON can only be whitespace between tokens (inside strings they are
/// escaped), so dropping them keeps the value and makes the event one line, as `http_server`'s.
fn one_line(out: &mut Vec<u8>, start: usize) {
    if memchr::memchr2(b'\n', b'\r', &out[start..]).is_none() {
        return;
    }
    let mut kept = start;
    for read in start..out.len() {
        let byte = out[read];
        if byte != b'\n' && byte != b'\r' {
            out[kept] = byte;
            kept += 1;
        }
    }
    out.truncate(kept);
}

/// A key, borrowed from the input unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

fn members<'de, A: MapAccess<'de>>(mut map: A) -> Result<Members<'de>, A::Error> {
    let mut members = Vec::with_capacity(map.size_hint().unwrap_or(16));
    while let Some(Key(key)) = map.next_key()? {
        members.push((key, map.next_value::<&RawValue>()?));
    }
    Ok(Members(members))
}

/// Reads any value, keeping its members if it is an object and its kind otherwise.
struct KindVisitor<T>(std::marker::PhantomData<T>);

/// What [`KindVisitor`] makes of an object, and of anything else.
trait FromKind<'de>: Sized {
    fn object<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
    fn array<A: SeqAccess<'de>>(seq: A) -> Result<Self, A::Error>;
    fn other(kind: &'static str) -> Self;
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

impl<'de> FromKind<'de> for MaybeObject<'de> {
    fn object<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        members(map).map(MaybeObject::Object)
    }
    fn array<A: SeqAccess<'de>>(seq: A) -> Result<Self, A::Error> {
        drain_seq(seq).map(|()| MaybeObject::Not("an array"))
    }
    fn other(kind: &'static str) -> Self {
        MaybeObject::Not(kind)
    }
}

impl<'de> FromKind<'de> for Batch<'de> {
    fn object<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Batch::Not)
    }
    fn array<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(128));
        while let Some(item) = seq.next_element::<MaybeObject<'de>>()? {
            items.push(item);
        }
        Ok(Batch::Items(items))
    }
    fn other(_: &'static str) -> Self {
        Batch::Not
    }
}

impl<'de, T: FromKind<'de>> Visitor<'de> for KindVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<T, E> {
        Ok(T::other("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<T, E> {
        Ok(T::other("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<T, E> {
        Ok(T::other("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<T, E> {
        Ok(T::other("a number"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<T, E> {
        Ok(T::other("a string"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Ok(T::other("null"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        T::array(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::object(map)
    }
}

impl<'de> de::Deserialize<'de> for MaybeObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KindVisitor(std::marker::PhantomData))
    }
}

impl<'de> de::Deserialize<'de> for Batch<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KindVisitor(std::marker::PhantomData))
    }
}

/// Reads a body; with `batch`, its `batch` member as a [`Batch`].
struct BodySeed {
    batch: bool,
}

impl<'de> DeserializeSeed<'de> for BodySeed {
    type Value = Option<Body<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BodySeed {
    type Value = Option<Body<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain_seq(seq).map(|()| None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut body = Body {
            members: Members(Vec::with_capacity(8)),
            batch: None,
        };
        while let Some(Key(key)) = map.next_key()? {
            if self.batch && key == "batch" {
                body.batch = Some(map.next_value()?);
            } else {
                body.members.0.push((key, map.next_value::<&RawValue>()?));
            }
        }
        Ok(Some(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(message: &str, additions: &Additions<'_, '_>) -> serde_json::Value {
        let MaybeObject::Object(members) = serde_json::from_str(message).unwrap() else {
            panic!("an object");
        };
        let mut out = b"x".to_vec();
        write(&mut out, &members, additions);
        assert_eq!(out[0], b'x', "appended");
        assert!(!out.contains(&b'\n'), "one line");
        serde_json::from_slice(&out[1..]).unwrap()
    }

    fn additions<'s, 'a>(received_at: &'s str) -> Additions<'s, 'a> {
        Additions {
            kind: None,
            shared_context: None,
            shared_integrations: None,
            received_at,
            ip: None,
            new_message_id: &|| "new-id".into(),
        }
    }

    #[test]
    fn received_at_is_set_and_a_missing_or_empty_message_id_is_generated() {
        let plain = additions("2026-12-03T00:00:00.000Z");
        let out = rewrite(
            r#"{"type":"track","receivedAt":"old","writeKey":"k","messageId":"m-1","event":"E"}"#,
            &plain,
        );
        assert_eq!(
            out,
            serde_json::json!({"type":"track","event":"E","receivedAt":"2026-12-03T00:00:00.000Z","messageId":"m-1"})
        );
        for id in [r#""""#, "null", "7", "{}"] {
            let out = rewrite(&format!(r#"{{"messageId":{id}}}"#), &plain);
            assert_eq!(out["messageId"], "new-id", "{id}");
        }
    }

    #[test]
    fn the_path_type_replaces_the_messages_and_the_last_duplicate_wins() {
        let single = Additions {
            kind: Some("page"),
            ..additions("t")
        };
        let out = rewrite(
            "{\"type\":\"track\",\n \"name\":\"A\",\"name\":\"B\",\"p\":{\"x\":\n1}}",
            &single,
        );
        assert_eq!(
            out,
            serde_json::json!({"name":"B","p":{"x":1},"type":"page","receivedAt":"t","messageId":"new-id"})
        );
    }

    #[test]
    fn shared_context_fills_in_without_overriding_and_ip_only_when_missing() {
        let MaybeObject::Object(shared) =
            serde_json::from_str(r#"{"ip":"9.9.9.9","library":{"name":"x"}}"#).unwrap()
        else {
            panic!()
        };
        let with = |ip| Additions {
            shared_context: Some(&shared),
            shared_integrations: Some(&shared),
            ip,
            ..additions("t")
        };
        let out = rewrite(r#"{"context":{"ip":"1.1.1.1","a":1}}"#, &with(None));
        assert_eq!(
            out["context"],
            serde_json::json!({"ip":"1.1.1.1","a":1,"library":{"name":"x"}})
        );
        assert_eq!(
            out["integrations"],
            serde_json::json!({"ip":"9.9.9.9","library":{"name":"x"}})
        );
        let out = rewrite(r#"{"context":{"ip":""}}"#, &with(Some("5.5.5.5")));
        assert_eq!(out["context"]["ip"], "5.5.5.5", "an empty ip is replaced");
        let out = rewrite(r#"{}"#, &with(Some("5.5.5.5")));
        assert_eq!(
            out["context"]["ip"], "9.9.9.9",
            "the batch's ip counts as the message's"
        );
        let out = rewrite(
            r#"{"context":"odd","integrations":3}"#,
            &with(Some("5.5.5.5")),
        );
        assert_eq!(
            out["context"], "odd",
            "a context that is not an object is left alone"
        );
        assert_eq!(out["integrations"], 3);
        let alone = Additions {
            ip: Some("5.5.5.5"),
            ..additions("t")
        };
        assert_eq!(
            rewrite("{}", &alone)["context"],
            serde_json::json!({"ip":"5.5.5.5"})
        );
    }

    #[test]
    fn bodies_are_read_in_one_pass_with_serde_jsons_errors() {
        let body = parse_body(br#"{"batch":[{"a":1},3,[1]],"context":{"b":2}}"#, true)
            .unwrap()
            .unwrap();
        let Some(Batch::Items(items)) = &body.batch else {
            panic!("items")
        };
        assert!(matches!(&items[0], MaybeObject::Object(m) if m.get("a").unwrap().get() == "1"));
        assert!(matches!(items[1], MaybeObject::Not("a number")));
        assert!(matches!(items[2], MaybeObject::Not("an array")));
        assert_eq!(body.members.get("context").unwrap().get(), r#"{"b":2}"#);
        assert!(matches!(
            parse_body(br#"{"batch":{"a":[]}}"#, true)
                .unwrap()
                .unwrap()
                .batch,
            Some(Batch::Not)
        ));
        assert!(parse_body(b"[1,2]", false).unwrap().is_none());
        let err = parse_body(br#"{"a":"#, false).err().unwrap();
        assert!(err.is_eof(), "{err}");
        assert!(
            parse_body(br#"{"a":1} x"#, false).is_err(),
            "trailing characters"
        );
    }

    #[test]
    fn keys_with_escapes_are_written_escaped_and_others_as_they_came() {
        let out = rewrite(
            r#"{"a\"b":1,"caf\u00e9":2,"plain":3,"ünï":4}"#,
            &additions("t"),
        );
        assert_eq!(out["a\"b"], 1);
        assert_eq!(out["café"], 2);
        assert_eq!(out["plain"], 3);
        assert_eq!(out["ünï"], 4);
    }

    #[test]
    fn a_body_that_is_not_utf8_gets_serde_jsons_error() {
        let err = parse_body(b"{\"a\":\"\xff\"}", false).err().unwrap();
        assert!(err.to_string().contains("line 1 column"), "{err}");
    }

    #[test]
    fn strings_are_read_with_escapes() {
        let raw: &RawValue = serde_json::from_str(r#""tr\u0061ck""#).unwrap();
        assert_eq!(string(raw).as_deref(), Some("track"));
        let raw: &RawValue = serde_json::from_str("3").unwrap();
        assert_eq!(string(raw), None);
    }
}

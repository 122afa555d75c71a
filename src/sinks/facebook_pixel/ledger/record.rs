//! What the ledger keeps of a request (or of messages that ended in the mapping), how it is
//! laid out in the store, and how it is made from what the hot path handed over — off the hot
//! path, on the ledger's thread.
//!
//! A stored value is `[at_ms: i64 LE][header length: u32 LE][header: JSON Record][events]`:
//! the time first, so pruning by age reads 8 bytes; the events, masked, after the header,
//! each found by its range, so the header stays small and the events are not escaped again.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sonic_rs::JsonValueTrait;

pub use super::scan::{Masked, SentIds};

/// What became of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Meta accepted the request that carried it.
    Delivered,
    /// Kept in the dead letter, for `fbpixel replay`.
    DeadLettered,
    /// Refused, and no dead letter is configured: logged, counted and dropped.
    Rejected,
    /// Not sent, on purpose (a setting, consent, `integrations`).
    Skipped,
    /// Could not be written to the dead letter: its sender was told to send it again.
    Errored,
}

impl Outcome {
    /// The name used in reports and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Rejected => "rejected",
            Outcome::Skipped => "skipped",
            Outcome::Errored => "errored",
        }
    }
}

/// Where a message ended, when it did not reach Meta.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The mapping refused it (or skipped it).
    Mapping,
    /// Meta refused it, or delivery gave up.
    Delivery,
}

/// Meta's error, as its answer gave it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaError {
    /// `code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    /// `error_subcode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subcode: Option<i64>,
    /// `message`.
    #[serde(default)]
    pub message: String,
    /// `error_user_msg`, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_message: Option<String>,
}

/// What the sink knows of how a request (or a mapping batch) ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The outcome of every event it carried.
    pub outcome: Outcome,
    /// Where it ended, when not delivered.
    pub stage: Option<Stage>,
    /// Meta's request id of the answer, when there was an answer.
    pub fbtrace_id: Option<String>,
    /// Meta's `events_received`.
    pub events_received: Option<u64>,
    /// Meta's error.
    pub error: Option<MetaError>,
    /// Why, in our words (`gave up after 5 attempts: …`).
    pub reason: Option<String>,
}

impl Verdict {
    /// Delivered, with Meta's answer.
    pub fn delivered(fbtrace_id: Option<String>, events_received: Option<u64>) -> Self {
        Self {
            outcome: Outcome::Delivered,
            stage: None,
            fbtrace_id,
            events_received,
            error: None,
            reason: None,
        }
    }

    /// Ended at `stage` with `outcome`, for `reason`.
    pub fn failed(outcome: Outcome, stage: Stage, reason: Option<String>) -> Self {
        Self {
            outcome,
            stage: Some(stage),
            fbtrace_id: None,
            events_received: None,
            error: None,
            reason,
        }
    }
}

/// One request's record (or one mapping batch's): how it ended, and its events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// When it ended, Unix milliseconds.
    pub at_ms: i64,
    /// The pixel it went to (none for messages that ended in the mapping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pixel: Option<String>,
    /// What became of its events.
    pub outcome: Outcome,
    /// Where it ended, when not delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    /// Requests made for these events (0: none, they ended in the mapping).
    #[serde(default)]
    pub attempts: u32,
    /// Meta's request id of the last answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbtrace_id: Option<String>,
    /// Meta's `events_received` for the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_received: Option<u64>,
    /// Meta's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<MetaError>,
    /// Why, in our words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its events.
    pub events: Vec<EventRecord>,
}

/// One event of a record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Its `event_id` (Segment's `messageId`); a digest of the message when it had none.
    pub id: String,
    /// `properties.order_id`, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// The Conversions API event name (or, for messages that ended in the mapping, Segment's
    /// event name or call type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
    /// The user_data keys it carried ([`crate::sinks::facebook_pixel::capi::UserDataKeys`]).
    #[serde(default)]
    pub keys: u32,
    /// Those enrichment added.
    #[serde(default)]
    pub enriched: u32,
    /// Why this event ended so, when it is its own (mapping rejections and skips).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where its server event, masked, is after the header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<(u32, u32)>,
}

impl Record {
    /// A record with these events, as `verdict` says.
    pub fn new(
        at_ms: i64,
        pixel: Option<String>,
        attempts: u32,
        verdict: Verdict,
        events: Vec<EventRecord>,
    ) -> Self {
        Self {
            at_ms,
            pixel,
            outcome: verdict.outcome,
            stage: verdict.stage,
            attempts,
            fbtrace_id: verdict.fbtrace_id,
            events_received: verdict.events_received,
            error: verdict.error,
            reason: verdict.reason,
            events,
        }
    }

    /// The stored value (see the module doc), appended to `out`: the writer reuses one
    /// buffer for a commit's values, so they cost no fresh pages.
    pub fn encode_into(&self, events: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.at_ms.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        serde_json::to_writer(&mut *out, self).expect("a record serializes");
        let header = (out.len() - start - 12) as u32;
        out[start + 8..start + 12].copy_from_slice(&header.to_le_bytes());
        out.extend_from_slice(events);
    }

    /// A stored value's time, without reading the rest.
    pub fn at_ms(value: &[u8]) -> Option<i64> {
        Some(i64::from_le_bytes(value.get(..8)?.try_into().ok()?))
    }

    /// A stored value read back: the record, and the masked events its ranges point into.
    pub fn decode(value: &[u8]) -> Option<(Record, &[u8])> {
        let len = u32::from_le_bytes(value.get(8..12)?.try_into().ok()?) as usize;
        let header = value.get(12..12 + len)?;
        let record = serde_json::from_slice(header).ok()?;
        Some((record, &value[12 + len..]))
    }

    /// The masked server event of `event`, from the events [`Record::decode`] returned.
    pub fn event_json<'e>(event: &EventRecord, events: &'e [u8]) -> Option<&'e str> {
        let (start, end) = event.sent?;
        std::str::from_utf8(events.get(start as usize..end as usize)?).ok()
    }
}

/// Copy the server event `json` into `out` with every user_data value that is not already a
/// SHA-256 hash (client_ip_address, client_user_agent, fbc, fbp, the unhashed ids…) replaced
/// by the hex SHA-256 of its text, and read its ids. `None` when `json` is not an object (then
/// nothing is written): the ledger keeps the record without the event, never a raw value.
///
/// What this sink's serializer wrote is read by [`super::scan`], which knows its layout; anything
/// else (or anything that scan does not recognise) by sonic-rs's general reader, which gives the
/// same answer, only slower (a test holds the two to it).
pub fn mask_event(json: &[u8], out: &mut Vec<u8>) -> Option<SentIds> {
    let (ids, masked) = super::scan::scan(json).or_else(|| scan_general(json))?;
    let mut at = 0;
    let mut hex = [0u8; 64];
    for (start, end, digest) in &masked {
        out.extend_from_slice(&json[at..*start]);
        hex::encode_to_slice(digest, &mut hex).expect("64 hex digits for 32 bytes");
        out.push(b'"');
        out.extend_from_slice(&hex);
        out.push(b'"');
        at = *end;
    }
    out.extend_from_slice(&json[at..]);
    Some(ids)
}

/// The ids and the values to mask of any JSON object, read with sonic-rs.
pub(super) fn scan_general(json: &[u8]) -> Option<(SentIds, Masked)> {
    let text = std::str::from_utf8(json).ok()?;
    let mut ids = SentIds::default();
    let mut masked = Masked::new();
    for item in sonic_rs::to_object_iter(text) {
        let (key, value) = item.ok()?;
        match key.as_ref() {
            "event_id" => ids.event_id = text_of(&value),
            "event_name" => ids.event_name = text_of(&value),
            "custom_data" => {
                for field in sonic_rs::to_object_iter(value.as_raw_str()) {
                    let Ok((name, v)) = field else { break };
                    if name.as_ref() == "order_id" {
                        ids.order_id = text_of(&v);
                        break;
                    }
                }
            }
            "user_data" => {
                for field in sonic_rs::to_object_iter(value.as_raw_str()) {
                    let (_, v) = field.ok()?;
                    let raw = v.as_raw_str();
                    if super::scan::hashed(raw.as_bytes()) {
                        continue;
                    }
                    let start = offset_in(text, raw)?;
                    let digest = Sha256::digest(v.as_str().unwrap_or(raw).as_bytes());
                    masked.push((start, start + raw.len(), digest.into()));
                }
            }
            _ => {}
        }
    }
    Some((ids, masked))
}

/// A string, or a number as text.
fn text_of(value: &sonic_rs::LazyValue<'_>) -> Option<String> {
    match value.as_str() {
        Some(s) => Some(s.to_owned()),
        None => {
            let raw = value.as_raw_str();
            raw.bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
                .then(|| raw.to_owned())
        }
    }
}

/// Where `part` (a slice of `whole`, as sonic-rs's lazy values are) starts in `whole`.
fn offset_in(whole: &str, part: &str) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (start + part.len() <= whole.len()).then_some(start)
}

/// The id of what has none of its own: `sha256:` and the digest of its bytes, so the ledger
/// files it without keeping any of its contents.
pub fn digest_id(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// What the ledger reads of a message that ended in the mapping.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MessageIds {
    /// `messageId`; a digest of the message when it has none.
    pub id: String,
    /// `properties.order_id` (or `orderId`).
    pub order_id: Option<String>,
    /// `event`, else the call `type`.
    pub name: Option<String>,
}

/// Read a Segment message's ids (on the ledger's thread; only for messages that never reached
/// a request, so the cost is off the common path).
pub fn message_ids(original: &[u8]) -> MessageIds {
    #[derive(Deserialize)]
    struct Message<'a> {
        #[serde(rename = "messageId", borrow, default)]
        message_id: Option<Id<'a>>,
        #[serde(borrow, default)]
        event: Option<Cow<'a, str>>,
        #[serde(rename = "type", borrow, default)]
        kind: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        properties: Option<Properties<'a>>,
    }
    #[derive(Deserialize)]
    struct Properties<'a> {
        #[serde(borrow, default)]
        order_id: Option<Id<'a>>,
        #[serde(rename = "orderId", borrow, default)]
        order_id_camel: Option<Id<'a>>,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id<'a> {
        Text(#[serde(borrow)] Cow<'a, str>),
        Number(serde_json::Number),
        Other(serde::de::IgnoredAny),
    }
    impl Id<'_> {
        fn text(self) -> Option<String> {
            match self {
                Id::Text(s) if !s.trim().is_empty() => Some(s.into_owned()),
                Id::Number(n) => Some(n.to_string()),
                _ => None,
            }
        }
    }
    let parsed = serde_json::from_slice::<Message<'_>>(original).ok();
    let (id, order_id, name) = match parsed {
        Some(m) => {
            let order_id = m.properties.and_then(|p| {
                p.order_id
                    .and_then(Id::text)
                    .or_else(|| p.order_id_camel.and_then(Id::text))
            });
            (
                m.message_id.and_then(Id::text),
                order_id,
                m.event.or(m.kind).map(Cow::into_owned),
            )
        }
        None => (None, None, None),
    };
    MessageIds {
        // Never the message itself: a digest, so the ledger stays free of its contents.
        id: id.unwrap_or_else(|| digest_id(original)),
        order_id,
        name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256_hex(text: &str) -> String {
        hex::encode(Sha256::digest(text.as_bytes()))
    }

    const EVENT: &str = r#"{"event_name":"Purchase","event_time":1,"event_id":"m-1","action_source":"website","user_data":{"em":["b4c9a289323b21a01c3e940f150eb9b8c542587f1abfd8f0e1cc1ffc5e475514"],"ph":["254aa248acb47dd654ca3ea53f48c2c26d641d23d7e2e93a1ec56258df7674c4"],"client_ip_address":"203.0.113.9","client_user_agent":"Mozilla/5.0 (X11)","fbp":"fb.1.1.2","external_id":["8d969eef6ecad3c29a3a629280e686cf0c3f5d5a86aff3ca12020c923adc6c92"]},"custom_data":{"currency":"USD","value":10,"order_id":"o-7"}}"#;

    #[test]
    fn masking_hashes_every_unhashed_user_data_value_and_keeps_the_rest_as_sent() {
        let mut out = Vec::new();
        let ids = mask_event(EVENT.as_bytes(), &mut out).unwrap();
        assert_eq!(
            ids,
            SentIds {
                event_id: Some("m-1".into()),
                event_name: Some("Purchase".into()),
                order_id: Some("o-7".into()),
            }
        );
        let text = String::from_utf8(out).unwrap();
        for raw in ["203.0.113.9", "Mozilla", "fb.1.1.2"] {
            assert!(!text.contains(raw), "{raw} kept in {text}");
        }
        let masked: serde_json::Value = serde_json::from_str(&text).unwrap();
        let original: serde_json::Value = serde_json::from_str(EVENT).unwrap();
        assert_eq!(
            masked["user_data"]["client_ip_address"],
            sha256_hex("203.0.113.9")
        );
        assert_eq!(masked["user_data"]["fbp"], sha256_hex("fb.1.1.2"));
        // Hashes and everything outside user_data are as sent.
        assert_eq!(masked["user_data"]["em"], original["user_data"]["em"]);
        assert_eq!(
            masked["user_data"]["external_id"],
            original["user_data"]["external_id"]
        );
        assert_eq!(masked["custom_data"], original["custom_data"]);
        assert_eq!(masked["event_time"], 1);
    }

    #[test]
    fn an_escaped_unhashed_value_is_hashed_as_its_text() {
        let json = r#"{"event_id":"x","user_data":{"client_user_agent":"a\"b"}}"#;
        let mut out = Vec::new();
        mask_event(json.as_bytes(), &mut out).unwrap();
        let masked: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(masked["user_data"]["client_user_agent"], sha256_hex("a\"b"));
    }

    #[test]
    fn what_is_not_an_object_is_not_kept() {
        let mut out = Vec::new();
        assert!(mask_event(b"[1,2]", &mut out).is_none());
        assert!(mask_event(b"{\"user_data\":", &mut out).is_none());
    }

    #[test]
    fn a_record_reads_back_with_its_events() {
        let record = Record::new(
            1_700_000_000_123,
            Some("123".into()),
            2,
            Verdict::delivered(Some("trace".into()), Some(1)),
            vec![EventRecord {
                id: "m-1".into(),
                sent: Some((0, 7)),
                keys: 0b11,
                ..EventRecord::default()
            }],
        );
        let mut value = Vec::new();
        record.encode_into(b"{\"a\":1}", &mut value);
        assert_eq!(Record::at_ms(&value), Some(1_700_000_000_123));
        let (back, events) = Record::decode(&value).unwrap();
        assert_eq!(back, record);
        assert_eq!(
            Record::event_json(&back.events[0], events),
            Some("{\"a\":1}")
        );
    }

    #[test]
    fn a_message_s_ids_are_read_and_one_without_a_message_id_gets_a_digest() {
        let ids = message_ids(
            br#"{"type":"track","event":"Order Completed","messageId":"m-9","properties":{"orderId":42,"email":"a@b.c"}}"#,
        );
        assert_eq!(ids.id, "m-9");
        assert_eq!(ids.order_id.as_deref(), Some("42"));
        assert_eq!(ids.name.as_deref(), Some("Order Completed"));
        let none = message_ids(br#"{"type":"page","properties":{"email":"a@b.c"}}"#);
        assert!(none.id.starts_with("sha256:") && !none.id.contains('@'));
        assert_eq!(none.name.as_deref(), Some("page"));
        assert!(message_ids(b"not json").id.starts_with("sha256:"));
    }
}

#[cfg(test)]
mod scan_tests {
    use super::super::scan::scan;
    use super::*;

    /// Every server event of the golden cases (the serializer's own output), and shapes it
    /// could write: escapes, numbers, empty and mixed arrays, a custom_data property named like
    /// the keys the scan looks for.
    fn events() -> Vec<String> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
        let mut events = Vec::new();
        for case in std::fs::read_dir(root).unwrap() {
            let path = case.unwrap().path().join("stdout.ndjson");
            if let Ok(text) = std::fs::read_to_string(path) {
                events.extend(text.lines().filter(|l| !l.is_empty()).map(str::to_owned));
            }
        }
        assert!(events.len() >= 30, "{} golden events", events.len());
        let h = "a".repeat(64);
        events.extend([
            format!(r#"{{"event_name":"Purch\"ase","event_time":1,"event_id":"id\u00e9,\"event_id\":\"x","event_source_url":"https://a/?q=,\"user_data\":{{","action_source":"website","user_data":{{"em":["{h}","{h}"],"ph":[],"client_user_agent":"Mozilla \"5\" \\","fbc":"fb.1.2.3","madid":["x","{h}"],"db":"{h}"}},"custom_data":{{"contents":[{{"id":"p","order_id":"inner"}}],"user_data":{{"em":"raw"}},"order_id":12345,"value":1}}}}"#),
            format!(r#"{{"event_name":"Lead","event_time":1,"event_id":"n","action_source":"system_generated","user_data":{{"lead_id":"123","external_id":["{h}"]}},"custom_data":{{"order_id":"o-\"1"}},"app_data":{{"extinfo":["i2"]}}}}"#),
            format!(r#"{{"event_name":"X","event_time":1,"user_data":{{}},"custom_data":{{}}}}"#),
            format!(r#"{{"event_name":"X","event_time":1,"event_id":"e","user_data":{{"client_ip_address":"::1"}}}}"#),
            // Not the serializer's layout: both readers must still agree (the scan says None).
            format!(r#"{{ "event_name": "X", "user_data": {{ "fbp": "fb.1.2" }} }}"#),
            format!(r#"{{"custom_data":{{"order_id":"o"}},"user_data":{{"fbp":"fb.1.2"}}}}"#),
        ]);
        events
    }

    #[test]
    fn the_scan_reads_what_the_general_reader_reads_or_leaves_it_to_it() {
        let mut fast = 0;
        for event in events() {
            let general = scan_general(event.as_bytes()).expect("the general reader reads it");
            match scan(event.as_bytes()) {
                Some(scanned) => {
                    fast += 1;
                    assert_eq!(scanned.0, general.0, "ids of {event}");
                    assert_eq!(scanned.1, general.1, "masked values of {event}");
                }
                None => assert!(
                    event.contains(": ") || event.starts_with("{\"custom_data\""),
                    "the scan gave up on the serializer's layout: {event}"
                ),
            }
        }
        assert!(fast >= 30, "only {fast} events took the fast path");
    }

    #[test]
    fn a_masked_event_has_no_unhashed_value_left_whichever_reader_read_it() {
        for event in events() {
            let mut out = Vec::new();
            mask_event(event.as_bytes(), &mut out).unwrap();
            let masked: serde_json::Value = serde_json::from_slice(&out).unwrap();
            for (key, value) in masked["user_data"].as_object().unwrap() {
                let strings: Vec<&serde_json::Value> = match value {
                    serde_json::Value::Array(items) => items.iter().collect(),
                    other => vec![other],
                };
                for s in strings {
                    let s = s.as_str().unwrap_or_default();
                    assert!(
                        s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()),
                        "{key} = {s} left unhashed in {event}"
                    );
                }
            }
        }
    }
}

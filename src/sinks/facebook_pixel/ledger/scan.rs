//! The ledger's fast reading of a server event as this sink's serializer writes it: compact
//! JSON whose top-level keys come in [`crate::sinks::facebook_pixel::capi::ServerEvent`]'s
//! order — `event_name` first, `event_id` before `user_data`, `custom_data` right after it.
//!
//! It finds its way by byte patterns where that layout makes them unambiguous: inside a JSON
//! string every `"` is escaped, so `,"user_data":{` can only be a key, and the first one is the
//! top-level one, since only later members (custom_data's own properties) could hold another.
//! Only user_data (every value) and custom_data (its top-level keys, for `order_id`) are walked.
//! Whatever does not match the layout returns `None`, and the caller reads the event with
//! sonic-rs instead ([`super::record::scan_general`]); a test holds both to the same answer.

use std::sync::LazyLock;

use memchr::memmem::Finder;
use sha2::{Digest, Sha256};

/// The patterns looked for in every event, their searchers built once (building one is a
/// noticeable share of a short search).
static USER_DATA_AT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b",\"user_data\":{"));
static EVENT_ID_AT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b",\"event_id\":\""));
static CUSTOM_DATA_KEY: LazyLock<Finder<'static>> =
    LazyLock::new(|| Finder::new(b"\"custom_data\":"));

/// What the ledger reads back from a server event the sink wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SentIds {
    /// `event_id`.
    pub event_id: Option<String>,
    /// `event_name`.
    pub event_name: Option<String>,
    /// `custom_data.order_id`.
    pub order_id: Option<String>,
}

/// The values of a server event to replace: byte ranges of it, in order, each with the
/// SHA-256 of what it holds.
pub type Masked = smallvec::SmallVec<[(usize, usize, [u8; 32]); 8]>;

/// The ids of a server event and the user_data values to mask; `None` when `json` is not laid
/// out as this sink writes it.
pub fn scan(json: &[u8]) -> Option<(SentIds, Masked)> {
    const EVENT_NAME: &[u8] = b"{\"event_name\":\"";
    const CUSTOM_DATA: &[u8] = b",\"custom_data\":{";
    // No UTF-8 check of the whole event: the serializer wrote it from Rust strings, and the
    // texts read out of it are checked one by one.
    let user_data = USER_DATA_AT.find(json)? + USER_DATA_AT.needle().len() - 1;
    let head = &json[..user_data];
    // custom_data first: not this layout, and the user_data found may be one of its properties.
    if CUSTOM_DATA_KEY.find(head).is_some() {
        return None;
    }
    let mut ids = SentIds::default();
    if head.starts_with(EVENT_NAME) {
        ids.event_name = Some(text(json, EVENT_NAME.len() - 1)?.0);
    }
    if let Some(at) = EVENT_ID_AT.find(head) {
        ids.event_id = Some(text(json, at + EVENT_ID_AT.needle().len() - 1)?.0);
    }
    let mut masked = Masked::new();
    let after_user_data = members(json, user_data, |_, value, end| {
        if !hashed(&json[value..end]) {
            let digest = match json[value] {
                b'"' => Sha256::digest(text(json, value)?.0.as_bytes()),
                _ => Sha256::digest(&json[value..end]),
            };
            masked.push((value, end, digest.into()));
        }
        Some(())
    })?;
    if json[after_user_data..].starts_with(CUSTOM_DATA) {
        let custom_data = after_user_data + CUSTOM_DATA.len() - 1;
        members(json, custom_data, |key, value, end| {
            if key == b"order_id" && ids.order_id.is_none() {
                ids.order_id = match json[value] {
                    b'"' => Some(text(json, value)?.0),
                    // A number, as the general reader takes one: digits, `.` and `-` only.
                    _ if json[value..end]
                        .iter()
                        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-')) =>
                    {
                        Some(std::str::from_utf8(&json[value..end]).ok()?.to_owned())
                    }
                    _ => None,
                };
            }
            Some(())
        })?;
    } else if CUSTOM_DATA_KEY.find(&json[after_user_data..]).is_some() {
        return None;
    }
    Some((ids, masked))
}

/// Call `each(key, value start, value end)` for every member of the object at `open` (its `{`);
/// the index just after its `}`.
fn members(
    json: &[u8],
    open: usize,
    mut each: impl FnMut(&[u8], usize, usize) -> Option<()>,
) -> Option<usize> {
    let mut i = open + 1;
    if *json.get(i)? == b'}' {
        return Some(i + 1);
    }
    loop {
        if *json.get(i)? != b'"' {
            return None;
        }
        let key_end = i + 1 + memchr::memchr(b'"', json.get(i + 1..)?)?;
        let key = &json[i + 1..key_end];
        if key.contains(&b'\\') || *json.get(key_end + 1)? != b':' {
            return None;
        }
        let value = key_end + 2;
        let end = skip(json, value)?;
        each(key, value, end)?;
        match *json.get(end)? {
            b',' => i = end + 1,
            b'}' => return Some(end + 1),
            _ => return None,
        }
    }
}

/// The index just after the value starting at `i`.
fn skip(json: &[u8], i: usize) -> Option<usize> {
    match *json.get(i)? {
        b'"' => Some(string_end(json, i)? + 1),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match *json.get(j)? {
                    b'"' => j = string_end(json, j)?,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let rest = json.get(i..)?;
            let len = rest.iter().position(|b| matches!(b, b',' | b'}' | b']'))?;
            (len > 0).then_some(i + len)
        }
    }
}

/// The index of the `"` closing the string whose opening `"` is at `open`.
fn string_end(json: &[u8], open: usize) -> Option<usize> {
    let mut j = open + 1;
    loop {
        j += memchr::memchr2(b'"', b'\\', json.get(j..)?)?;
        if json[j] == b'"' {
            return Some(j);
        }
        j += 2;
    }
}

/// The text of the string at `open`, unescaped, and the index after it.
fn text(json: &[u8], open: usize) -> Option<(String, usize)> {
    let close = string_end(json, open)?;
    let raw = &json[open + 1..close];
    let text = if raw.contains(&b'\\') {
        serde_json::from_slice(&json[open..=close]).ok()?
    } else {
        std::str::from_utf8(raw).ok()?.to_owned()
    };
    Some((text, close + 1))
}

/// Whether a user_data value (its JSON text) is what Meta is sent hashed: a string of 64 hex
/// digits, or an array of only such strings, written compactly (as the serializer writes them;
/// anything else is masked, which can only mask more).
pub(super) fn hashed(value: &[u8]) -> bool {
    fn hex64(s: &[u8]) -> bool {
        // A fixed length and no short-circuit, so the 64 bytes are checked together
        // (vectorized): this runs for every user_data value the ledger keeps.
        let Some((b'"', [digits @ .., b'"'])) = s.split_first() else {
            return false;
        };
        let Ok(digits) = <&[u8; 64]>::try_from(digits) else {
            return false;
        };
        digits.iter().fold(true, |all, &b| {
            all & ((b.wrapping_sub(b'0') < 10) | ((b | 0x20).wrapping_sub(b'a') < 6))
        })
    }
    match value.first() {
        Some(b'"') => hex64(value),
        Some(b'[') => {
            let inner = &value[1..value.len() - 1];
            inner.is_empty() || inner.split(|&b| b == b',').all(hex64)
        }
        _ => false,
    }
}

//! SPEC §4: customer information, read from traits and context, normalized and hashed.

use std::borrow::Cow;
use std::net::IpAddr;

use super::{DroppedValues, Message, UserDataField};
use crate::json::Json;
use smallvec::SmallVec;

use crate::sinks::facebook_pixel::capi::{ExternalId, Hashes, UserData};
use crate::sinks::facebook_pixel::normalize::{EventFacts, HashedField, Normalizer};

/// The settings that shape user_data.
#[derive(Debug)]
pub struct UserDataRules {
    pub normalizer: Normalizer,
    /// `external_id_field`, a dotted path into the whole message.
    pub external_id_path: Option<String>,
    pub hash_external_id: bool,
}

/// Builds user_data. Values that normalize to nothing are left out and counted in `dropped`.
pub fn build<'j>(
    message: &Message<'j, '_>,
    rules: &UserDataRules,
    event_millis: i64,
    current_year: i32,
    dropped: &mut DroppedValues,
) -> UserData<'j> {
    let traits = Traits::read(message);
    let mut user = UserData::default();
    let mut facts = EventFacts {
        current_year,
        country_is_us: false,
    };
    let normalizer = &rules.normalizer;

    // Country first: the ZIP rule depends on it.
    if let Some(country) = traits.country {
        facts.country_is_us = first_text(country).is_some_and(|text| {
            normalizer.normalize(HashedField::Country, &text, facts).as_deref() == Some("us")
        });
        hash_all(&mut user.country, HashedField::Country, country, normalizer, facts, dropped);
    }
    let hashed = [
        (&mut user.em, HashedField::Em, traits.email),
        (&mut user.ph, HashedField::Ph, traits.phone),
        (&mut user.ge, HashedField::Ge, traits.gender),
        (&mut user.db, HashedField::Db, traits.birthday),
        (&mut user.ct, HashedField::Ct, traits.city),
        (&mut user.st, HashedField::St, traits.state),
        (&mut user.zp, HashedField::Zp, traits.zip),
    ];
    for (out, field, value) in hashed {
        if let Some(value) = value {
            hash_all(out, field, value, normalizer, facts, dropped);
        }
    }

    // `name` fills only the part of the name that is missing.
    let (name_first, name_last) = traits
        .name
        .and_then(Json::as_str)
        .map(split_name)
        .unwrap_or_default();
    match traits.first_name {
        Some(value) => hash_all(&mut user.first_name, HashedField::Fn, value, normalizer, facts, dropped),
        None => hash_text(&mut user.first_name, HashedField::Fn, name_first, normalizer, facts, dropped),
    }
    match traits.last_name {
        Some(value) => hash_all(&mut user.last_name, HashedField::Ln, value, normalizer, facts, dropped),
        None => hash_text(&mut user.last_name, HashedField::Ln, name_last, normalizer, facts, dropped),
    }

    let external = match &rules.external_id_path {
        Some(path) => message.root.path(path),
        None => None,
    }
    .or_else(|| message.root.get("userId"))
    .or_else(|| message.root.get("anonymousId"));
    if let Some(value) = external {
        external_ids(&mut user.external_id, value, rules, facts, dropped);
    }

    let context = message.context;
    if let Some(ip) = context.and_then(|c| c.get("ip")) {
        match ip.as_str().map(str::trim) {
            Some(text) if text.parse::<IpAddr>().is_ok() => user.client_ip_address = Some(text),
            _ => dropped.add(UserDataField::ClientIpAddress),
        }
    }
    user.client_user_agent = context
        .and_then(|c| c.get("userAgent"))
        .and_then(non_empty_str);
    let from_properties_or_context = |key: &str| {
        message
            .properties
            .and_then(|p| p.get(key))
            .and_then(non_empty_str)
            .or_else(|| context.and_then(|c| c.get(key)).and_then(non_empty_str))
    };
    user.fbp = from_properties_or_context("fbp");
    user.fbc = from_properties_or_context("fbc")
        .map(Cow::Borrowed)
        .or_else(|| fbc_from_click_id(message.page_url?, event_millis).map(Cow::Owned));
    user
}

/// The trait values of one event, each the first present of its sources.
#[derive(Default)]
struct Traits<'j, 'a> {
    email: Option<&'j Json<'a>>,
    phone: Option<&'j Json<'a>>,
    first_name: Option<&'j Json<'a>>,
    last_name: Option<&'j Json<'a>>,
    name: Option<&'j Json<'a>>,
    gender: Option<&'j Json<'a>>,
    birthday: Option<&'j Json<'a>>,
    city: Option<&'j Json<'a>>,
    state: Option<&'j Json<'a>>,
    zip: Option<&'j Json<'a>>,
    country: Option<&'j Json<'a>>,
}

impl<'j, 'a> Traits<'j, 'a> {
    /// Plain fields from `context.traits`, then `traits`; address fields from
    /// `context.traits.address`, `context.traits`, `traits.address`, `traits`.
    fn read(message: &Message<'j, 'a>) -> Self {
        let context = Slots::read(message.context_traits);
        let context_address = Slots::read(context.address);
        let top = Slots::read(message.traits);
        let top_address = Slots::read(top.address);
        let plain = |slot: usize| context.get(slot).or_else(|| top.get(slot));
        let address = |slot: usize| {
            [&context_address, &context, &top_address, &top]
                .into_iter()
                .find_map(|s| s.get(slot))
        };
        let zip = || {
            [&context_address, &context, &top_address, &top]
                .into_iter()
                .find_map(|s| s.get(POSTAL_CODE).or(s.get(ZIP)).or(s.get(ZIP_CODE)))
        };
        Traits {
            email: plain(EMAIL),
            phone: plain(PHONE),
            first_name: plain(FIRST_NAME),
            last_name: plain(LAST_NAME),
            name: plain(NAME),
            gender: plain(GENDER),
            birthday: plain(BIRTHDAY),
            city: address(CITY),
            state: address(STATE),
            zip: zip(),
            country: address(COUNTRY),
        }
    }
}

const EMAIL: usize = 0;
const PHONE: usize = 1;
const FIRST_NAME: usize = 2;
const LAST_NAME: usize = 3;
const NAME: usize = 4;
const GENDER: usize = 5;
const BIRTHDAY: usize = 6;
const CITY: usize = 7;
const STATE: usize = 8;
const POSTAL_CODE: usize = 9;
const ZIP: usize = 10;
const ZIP_CODE: usize = 11;
const COUNTRY: usize = 12;
const SLOT_COUNT: usize = 13;

/// The trait keys of one object, classified in a single pass over its members.
struct Slots<'j, 'a> {
    values: [Option<&'j Json<'a>>; SLOT_COUNT],
    address: Option<&'j Json<'a>>,
}

impl<'j, 'a> Slots<'j, 'a> {
    fn read(object: Option<&'j Json<'a>>) -> Self {
        let mut slots = Slots {
            values: [None; SLOT_COUNT],
            address: None,
        };
        for (key, value) in object.and_then(Json::as_object).into_iter().flatten() {
            if value.is_null() {
                continue;
            }
            match classify(key) {
                Some(Key::Slot(i)) => slots.values[i] = Some(value),
                Some(Key::Address) if value.as_object().is_some() => slots.address = Some(value),
                _ => {}
            }
        }
        slots
    }

    fn get(&self, slot: usize) -> Option<&'j Json<'a>> {
        self.values[slot]
    }
}

enum Key {
    Slot(usize),
    Address,
}

/// Trait keys match ignoring case and `_`: `firstName` = `first_name` = `firstname`.
fn classify(key: &str) -> Option<Key> {
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
    Some(Key::Slot(match &buf[..len] {
        b"email" => EMAIL,
        b"phone" => PHONE,
        b"firstname" => FIRST_NAME,
        b"lastname" => LAST_NAME,
        b"name" => NAME,
        b"gender" => GENDER,
        b"birthday" => BIRTHDAY,
        b"city" => CITY,
        b"state" => STATE,
        b"postalcode" => POSTAL_CODE,
        b"zip" => ZIP,
        b"zipcode" => ZIP_CODE,
        b"country" => COUNTRY,
        b"address" => return Some(Key::Address),
        _ => return None,
    }))
}

/// Hashes a value or each element of an array, without duplicates.
fn hash_all(
    out: &mut Hashes,
    field: HashedField,
    value: &Json<'_>,
    normalizer: &Normalizer,
    facts: EventFacts,
    dropped: &mut DroppedValues,
) {
    match value {
        Json::Array(items) => {
            for item in items.iter().filter(|item| !item.is_null()) {
                hash_one(out, field, item, normalizer, facts, dropped);
            }
        }
        other => hash_one(out, field, other, normalizer, facts, dropped),
    }
}

fn hash_one(
    out: &mut Hashes,
    field: HashedField,
    value: &Json<'_>,
    normalizer: &Normalizer,
    facts: EventFacts,
    dropped: &mut DroppedValues,
) {
    match value.to_text() {
        Some(text) => hash_text(out, field, Some(&text), normalizer, facts, dropped),
        // Booleans and objects carry no customer information.
        None => dropped.add(UserDataField::Hashed(field)),
    }
}

fn hash_text(
    out: &mut Hashes,
    field: HashedField,
    text: Option<&str>,
    normalizer: &Normalizer,
    facts: EventFacts,
    dropped: &mut DroppedValues,
) {
    let Some(text) = text else { return };
    match normalizer.hash(field, text, facts) {
        Some(hash) if !out.contains(&hash) => out.push(hash),
        Some(_) => {}
        None => dropped.add(UserDataField::Hashed(field)),
    }
}

fn external_ids<'j>(
    out: &mut SmallVec<[ExternalId<'j>; 1]>,
    value: &'j Json<'_>,
    rules: &UserDataRules,
    facts: EventFacts,
    dropped: &mut DroppedValues,
) {
    let items = match value {
        Json::Array(items) => items.as_slice(),
        single => std::slice::from_ref(single),
    };
    for item in items.iter().filter(|item| !item.is_null()) {
        let id = match item {
            Json::String(text) => plain_or_hashed(text, rules, facts),
            Json::Number(n) => {
                let text = n.to_string();
                plain_or_hashed(&text, rules, facts).map(|id| match id {
                    ExternalId::Plain(text) => ExternalId::Plain(Cow::Owned(text.into_owned())),
                    ExternalId::Hashed(hash) => ExternalId::Hashed(hash),
                })
            }
            _ => None,
        };
        match id {
            Some(id) if !out.contains(&id) => out.push(id),
            Some(_) => {}
            None => dropped.add(UserDataField::Hashed(HashedField::ExternalId)),
        }
    }
}

fn plain_or_hashed<'t>(
    text: &'t str,
    rules: &UserDataRules,
    facts: EventFacts,
) -> Option<ExternalId<'t>> {
    if rules.hash_external_id {
        rules
            .normalizer
            .hash(HashedField::ExternalId, text, facts)
            .map(ExternalId::Hashed)
    } else {
        rules
            .normalizer
            .normalize(HashedField::ExternalId, text, facts)
            .map(ExternalId::Plain)
    }
}

/// `name` split at the first whitespace; one word is a first name.
fn split_name(name: &str) -> (Option<&str>, Option<&str>) {
    let name = name.trim();
    match name.split_once(char::is_whitespace) {
        Some((first, rest)) => (Some(first), Some(rest.trim()).filter(|r| !r.is_empty())),
        None => (Some(name).filter(|n| !n.is_empty()), None),
    }
}

fn first_text<'j>(value: &'j Json<'_>) -> Option<Cow<'j, str>> {
    match value {
        Json::Array(items) => items.iter().find_map(Json::to_text),
        other => other.to_text(),
    }
}

fn non_empty_str<'j>(value: &'j Json<'_>) -> Option<&'j str> {
    value.as_str().map(str::trim).filter(|s| !s.is_empty())
}

/// `fbc` from an ad click: `fb.1.<event time in ms>.<fbclid>` when the page URL carries one.
fn fbc_from_click_id(url: &str, event_millis: i64) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    let query = query.split('#').next().unwrap_or(query);
    let (_, click_id) = form_urlencoded::parse(query.as_bytes())
        .find(|(key, value)| key == "fbclid" && !value.is_empty())?;
    Some(format!("fb.1.{event_millis}.{click_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trait_keys_ignore_case_and_underscores() {
        for key in ["firstName", "first_name", "FIRSTNAME", "first_Name"] {
            assert!(matches!(classify(key), Some(Key::Slot(FIRST_NAME))), "{key}");
        }
        assert!(matches!(classify("postal_code"), Some(Key::Slot(POSTAL_CODE))));
        assert!(matches!(classify("zipCode"), Some(Key::Slot(ZIP_CODE))));
        assert!(matches!(classify("Address"), Some(Key::Address)));
        assert!(classify("emailAddressVerified").is_none());
        assert!(classify("émail").is_none());
        assert!(classify("").is_none());
    }

    #[test]
    fn name_splits_at_the_first_whitespace() {
        assert_eq!(split_name("Ada Lovelace"), (Some("Ada"), Some("Lovelace")));
        assert_eq!(
            split_name(" Mary  Ann Smith "),
            (Some("Mary"), Some("Ann Smith"))
        );
        assert_eq!(split_name("Cher"), (Some("Cher"), None));
        assert_eq!(split_name("  "), (None, None));
    }

    #[test]
    fn fbc_is_built_from_fbclid() {
        assert_eq!(
            fbc_from_click_id("https://shop.example/p?utm=x&fbclid=AbC%2D1#top", 1718449200123),
            Some("fb.1.1718449200123.AbC-1".to_string())
        );
        assert_eq!(fbc_from_click_id("https://shop.example/p?fbclid=", 1), None);
        assert_eq!(fbc_from_click_id("https://shop.example/p", 1), None);
    }
}

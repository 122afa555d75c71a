//! SPEC §4: customer information, read from traits and context, normalized and hashed.

use std::borrow::Cow;
use std::net::IpAddr;

use super::message::{Part, SegmentMessage, Trait, Traits, plain_text};
use smallvec::SmallVec;

use super::{DroppedValues, UserDataField};
use crate::json::{Json, member};
use crate::sinks::facebook_pixel::capi::{ExternalId, Hashes, UserData};
use crate::sinks::facebook_pixel::normalize::{EventFacts, HashedField, Normalizer};

/// The settings that shape user_data.
#[derive(Debug)]
pub struct UserDataRules {
    pub normalizer: Normalizer,
    pub hash_external_id: bool,
}

/// Builds user_data, and the facts about the event it learned (its country). Values that
/// normalize to nothing are left out and counted in `dropped`.
pub fn build<'j>(
    message: &'j SegmentMessage<'_>,
    page_url: Option<&str>,
    rules: &UserDataRules,
    event_millis: i64,
    current_year: i32,
    dropped: &mut DroppedValues,
) -> (UserData<'j>, EventFacts) {
    let traits = TraitValues::read(message);
    let mut user = UserData::default();
    let mut hasher = Hasher {
        normalizer: &rules.normalizer,
        facts: EventFacts {
            current_year,
            country_is_us: false,
        },
        dropped,
    };

    // Country first: the ZIP rule depends on it.
    if let Some(country) = traits.country {
        hasher.facts.country_is_us = first_text(country).is_some_and(|text| {
            hasher
                .normalizer
                .normalize(HashedField::Country, &text, hasher.facts)
                .as_deref()
                == Some("us")
        });
        hasher.all(&mut user.country, HashedField::Country, country);
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
            hasher.all(out, field, value);
        }
    }

    // `name` fills only the part of the name that is missing.
    let (name_first, name_last) = traits
        .name
        .and_then(Json::as_str)
        .map(split_name)
        .unwrap_or_default();
    match traits.first_name {
        Some(value) => hasher.all(&mut user.first_name, HashedField::Fn, value),
        None => hasher.text(&mut user.first_name, HashedField::Fn, name_first),
    }
    match traits.last_name {
        Some(value) => hasher.all(&mut user.last_name, HashedField::Ln, value),
        None => hasher.text(&mut user.last_name, HashedField::Ln, name_last),
    }

    let facts = hasher.facts;
    let external = [
        &message.external_id,
        &message.user_id,
        &message.anonymous_id,
    ]
    .into_iter()
    .flatten()
    .find(|value| usable(value));
    if let Some(value) = external {
        external_ids(&mut user.external_id, value, rules, facts, hasher.dropped);
    }

    let context = message.context.as_object();
    if let Some(ip) = context.and_then(|c| c.ip.as_ref()) {
        match ip.as_str().map(str::trim) {
            Some(text) if text.parse::<IpAddr>().is_ok() => user.client_ip_address = Some(text),
            _ => dropped.add(UserDataField::ClientIpAddress),
        }
    }
    user.client_user_agent = context
        .and_then(|c| c.user_agent.as_ref())
        .and_then(non_empty_str);
    let properties = message.properties.as_object();
    let from_properties_or_context = |key: &str, in_context: Option<&'j Json<'_>>| {
        properties
            .and_then(|p| member(p, key))
            .and_then(non_empty_str)
            .or_else(|| in_context.and_then(non_empty_str))
    };
    user.fbp = from_properties_or_context("fbp", context.and_then(|c| c.fbp.as_ref()));
    user.fbc = from_properties_or_context("fbc", context.and_then(|c| c.fbc.as_ref()))
        .map(Cow::Borrowed)
        .or_else(|| fbc_from_click_id(page_url?, event_millis).map(Cow::Owned));

    // Ids Meta takes as they are: traits first, then properties, in either spelling.
    let plain_id = |from_traits: Option<&'j Json<'_>>, snake: &str, camel: &str| {
        from_traits
            .or_else(|| {
                let properties = properties?;
                member(properties, snake)
                    .filter(|v| usable(v))
                    .or_else(|| member(properties, camel).filter(|v| usable(v)))
            })
            .and_then(plain_text)
    };
    user.subscription_id = plain_id(traits.subscription_id, "subscription_id", "subscriptionId");
    user.lead_id = plain_id(traits.lead_id, "lead_id", "leadId");
    user.fb_login_id = plain_id(traits.fb_login_id, "fb_login_id", "fbLoginId");
    user.anon_id = plain_id(traits.anon_id, "anon_id", "anonId");
    // The advertising id only while the person allows ad tracking (Apple's ATT, Android's
    // "opt out of ads personalization"): a zeroed or refused id identifies no one.
    let tracking_allowed = !matches!(
        context.and_then(|c| c.ad_tracking_enabled.as_ref()),
        Some(Json::Bool(false))
    );
    user.madid = context
        .and_then(|c| c.advertising_id.as_ref())
        .and_then(non_empty_str)
        .filter(|id| tracking_allowed && !is_zeroed_advertising_id(id));
    (user, facts)
}

/// iOS answers `00000000-0000-0000-0000-000000000000` when tracking is not authorized.
fn is_zeroed_advertising_id(id: &str) -> bool {
    id.bytes().all(|b| b == b'0' || b == b'-')
}

/// The trait values of one event, each the first present of its sources.
#[derive(Default)]
struct TraitValues<'j, 'a> {
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
    subscription_id: Option<&'j Json<'a>>,
    lead_id: Option<&'j Json<'a>>,
    fb_login_id: Option<&'j Json<'a>>,
    anon_id: Option<&'j Json<'a>>,
}

impl<'j, 'a> TraitValues<'j, 'a> {
    /// Plain fields from `context.traits`, then `traits`; address fields from
    /// `context.traits.address`, `context.traits`, `traits.address`, `traits`.
    fn read(message: &'j SegmentMessage<'a>) -> Self {
        let context = match &message.context {
            Part::Object(context) => context.traits.as_object().map(|t| &**t),
            _ => None,
        };
        let top = message.traits.as_object().map(|t| &**t);
        let address = |traits: Option<&'j Traits<'a>>| traits.and_then(|t| t.address.as_deref());
        let plain = [context, top];
        let with_address = [address(context), context, address(top), top];
        let first = |sources: &[Option<&'j Traits<'a>>], key: Trait| {
            sources
                .iter()
                .flatten()
                .find_map(|traits| traits.get(key).filter(|v| usable(v)))
        };
        TraitValues {
            email: first(&plain, Trait::Email),
            phone: first(&plain, Trait::Phone),
            first_name: first(&plain, Trait::FirstName),
            last_name: first(&plain, Trait::LastName),
            name: first(&plain, Trait::Name),
            gender: first(&plain, Trait::Gender),
            birthday: first(&plain, Trait::Birthday),
            city: first(&with_address, Trait::City),
            state: first(&with_address, Trait::State),
            zip: with_address.iter().flatten().find_map(|traits| {
                [Trait::PostalCode, Trait::Zip, Trait::ZipCode]
                    .into_iter()
                    .find_map(|key| traits.get(key).filter(|v| usable(v)))
            }),
            country: first(&with_address, Trait::Country),
            subscription_id: first(&plain, Trait::SubscriptionId),
            lead_id: first(&plain, Trait::LeadId),
            fb_login_id: first(&plain, Trait::FbLoginId),
            anon_id: first(&plain, Trait::AnonId),
        }
    }
}

/// Normalizes and hashes trait values into user_data keys, counting what it drops.
struct Hasher<'r> {
    normalizer: &'r Normalizer,
    facts: EventFacts,
    dropped: &'r mut DroppedValues,
}

impl Hasher<'_> {
    /// A value, or each element of an array, without duplicates.
    fn all(&mut self, out: &mut Hashes, field: HashedField, value: &Json<'_>) {
        for item in values(value) {
            match item.to_text() {
                Some(text) => self.text(out, field, Some(&text)),
                // Booleans and objects carry no customer information.
                None => self.dropped.add(UserDataField::Hashed(field)),
            }
        }
    }

    fn text(&mut self, out: &mut Hashes, field: HashedField, text: Option<&str>) {
        let Some(text) = text else { return };
        match self.normalizer.hash(field, text, self.facts) {
            Some(hash) if !out.contains(&hash) => out.push(hash),
            Some(_) => {}
            None => self.dropped.add(UserDataField::Hashed(field)),
        }
    }
}

/// Whether a value can carry customer information: text, a number, or an array. Booleans,
/// objects, blank strings and empty arrays count as absent, so the next source is read.
fn usable(value: &Json<'_>) -> bool {
    match value {
        Json::String(text) => !text.trim().is_empty(),
        Json::Number(_) => true,
        Json::Array(items) => !items.is_empty(),
        Json::Null | Json::Bool(_) | Json::Object(_) => false,
    }
}

/// A value, or the elements of an array; nulls are absent values.
fn values<'j, 'a>(value: &'j Json<'a>) -> impl Iterator<Item = &'j Json<'a>> {
    let items = match value {
        Json::Array(items) => items.as_slice(),
        single => std::slice::from_ref(single),
    };
    items.iter().filter(|item| !item.is_null())
}

fn external_ids<'j>(
    out: &mut SmallVec<[ExternalId<'j>; 1]>,
    value: &'j Json<'_>,
    rules: &UserDataRules,
    facts: EventFacts,
    dropped: &mut DroppedValues,
) {
    for item in values(value) {
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
    // Not `format!`: its machinery was a measurable share of mapping an ad-click event.
    let mut millis = itoa::Buffer::new();
    let millis = millis.format(event_millis);
    let mut fbc = String::with_capacity(6 + millis.len() + click_id.len());
    fbc.push_str("fb.1.");
    fbc.push_str(millis);
    fbc.push('.');
    fbc.push_str(&click_id);
    Some(fbc)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            fbc_from_click_id(
                "https://shop.example/p?utm=x&fbclid=AbC%2D1#top",
                1718449200123
            ),
            Some("fb.1.1718449200123.AbC-1".to_string())
        );
        assert_eq!(fbc_from_click_id("https://shop.example/p?fbclid=", 1), None);
        assert_eq!(fbc_from_click_id("https://shop.example/p", 1), None);
    }
}

//! Customer information masked out of a tapped event, before it leaves the process: the value
//! of every personal-data key, anywhere in the event, becomes `"***"` (its key stays, and so does
//! the shape of an object or array under it, so the user sees what the event carries).
//!
//! The keys are those the Conversions API sink reads customer information from, or refuses to
//! pass on: the Segment traits it hashes into `user_data` (`Trait` in
//! `sinks/facebook_pixel/mapping/message.rs`), the property names it never passes as custom data
//! (`PII_NAMES` in `mapping/custom_data.rs`), the context fields it sends as they are (`ip`,
//! `userAgent`, `device.advertisingId`), the ids it sends as `external_id` (`userId`,
//! `anonymousId`) and the user-scoped ids it passes through (`fbp`, `fbc`, `lead_id`, …). Keys are
//! compared squashed, as the mapping compares them (case and `_`, `-`, spaces ignored:
//! `First_Name` is `firstname`), and a string anywhere that looks like an email address is masked
//! too. Values a transform has moved under keys of its own choosing are not recognised; that is
//! what `--raw` on the pipeline's own machine is for.

use serde_json::Value;

/// What a masked value becomes.
pub const MASK: &str = "***";

/// Squashed keys whose values are customer information wherever they appear.
const PERSONAL: [&str; 42] = [
    // Segment traits and the property names the mapping treats as personal data.
    "email",
    "emails",
    "phone",
    "phones",
    "phonenumber",
    "mobile",
    "firstname",
    "lastname",
    "fullname",
    "gender",
    "birthday",
    "dateofbirth",
    "address",
    "street",
    "city",
    "state",
    "zip",
    "zipcode",
    "postalcode",
    "country",
    // Context fields sent as they are.
    "ip",
    "clientipaddress",
    "useragent",
    "clientuseragent",
    "advertisingid",
    "madid",
    // Ids of the person.
    "userid",
    "anonymousid",
    "previousid",
    "externalid",
    "fbp",
    "fbc",
    "fbclid",
    "ctwaclid",
    "subscriptionid",
    "leadid",
    "fbloginid",
    "anonid",
    "pagescopeduserid",
    "igsid",
    // Meta's own names, in an event a transform has already shaped as `user_data`.
    "em",
    "ph",
];

/// Squashed keys that are customer information only in a person's traits or `user_data`
/// (elsewhere `name` is an event's or a library's name, `st` and `ct` are not words).
const PERSONAL_IN_TRAITS: [&str; 8] = ["name", "fn", "ln", "ge", "db", "ct", "st", "zp"];

/// Where in the event a key is.
#[derive(Clone, Copy, PartialEq)]
enum Scope {
    Anywhere,
    /// Under `traits`, `context.traits` or `user_data`.
    Person,
}

/// Mask the customer information in `event` in place.
pub fn mask(event: &mut Value) {
    walk(event, Scope::Anywhere);
}

fn walk(value: &mut Value, scope: Scope) {
    match value {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                let key = squash(key);
                if is_personal(&key, scope) {
                    mask_all(value);
                } else {
                    let inner = if matches!(key.as_str(), "traits" | "userdata") {
                        Scope::Person
                    } else {
                        scope
                    };
                    walk(value, inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| walk(item, scope)),
        Value::String(text) if looks_like_email(text) => *value = Value::String(MASK.into()),
        _ => {}
    }
}

fn is_personal(key: &str, scope: Scope) -> bool {
    PERSONAL.contains(&key) || (scope == Scope::Person && PERSONAL_IN_TRAITS.contains(&key))
}

/// Every value under a personal key, keeping objects and arrays (a `null` says nothing).
fn mask_all(value: &mut Value) {
    match value {
        Value::Null => {}
        Value::Object(map) => map.values_mut().for_each(mask_all),
        Value::Array(items) => items.iter_mut().for_each(mask_all),
        _ => *value = Value::String(MASK.into()),
    }
}

/// A key as the mapping compares it: lower case, without `_`, `-` or white space.
fn squash(key: &str) -> String {
    key.chars()
        .filter(|c| !c.is_whitespace() && *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// `local@domain.tld` somewhere in the text, with no white space around the `@`.
fn looks_like_email(text: &str) -> bool {
    text.match_indices('@').any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = &text[at + 1..];
        let domain = after
            .split(|c: char| c.is_whitespace())
            .next()
            .unwrap_or("");
        before.is_some_and(|c| !c.is_whitespace())
            && domain
                .find('.')
                .is_some_and(|dot| dot > 0 && dot + 1 < domain.len())
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn personal_values_are_masked_anywhere_and_their_keys_and_shapes_kept() {
        let mut event = json!({
            "type": "identify",
            "userId": "u-42",
            "anonymousId": 7,
            "traits": {
                "Email": "ada@example.com",
                "phone": 33612345678u64,
                "First_Name": "Ada",
                "name": "Ada Lovelace",
                "address": {"city": "London", "street": ["12 St James's Sq"]},
                "plan": "pro",
                "nickname": null
            },
            "context": {
                "ip": "203.0.113.9",
                "userAgent": "Mozilla/5.0",
                "library": {"name": "analytics.js"},
                "device": {"advertisingId": "ad-1", "model": "Pixel"},
                "traits": {"last-name": "Lovelace"}
            },
            "properties": {"zip_code": "SW1", "note": "call ada@example.com back", "total": 5},
            "user_data": {"em": ["h1"], "ct": "london", "fn": "ada"}
        });
        mask(&mut event);
        assert_eq!(
            event,
            json!({
                "type": "identify",
                "userId": MASK,
                "anonymousId": MASK,
                "traits": {
                    "Email": MASK,
                    "phone": MASK,
                    "First_Name": MASK,
                    "name": MASK,
                    "address": {"city": MASK, "street": [MASK]},
                    "plan": "pro",
                    "nickname": null
                },
                "context": {
                    "ip": MASK,
                    "userAgent": MASK,
                    "library": {"name": "analytics.js"},
                    "device": {"advertisingId": MASK, "model": "Pixel"},
                    "traits": {"last-name": MASK}
                },
                "properties": {"zip_code": MASK, "note": MASK, "total": 5},
                "user_data": {"em": [MASK], "ct": MASK, "fn": MASK}
            })
        );
    }

    #[test]
    fn a_name_is_masked_only_where_it_names_a_person() {
        let mut event =
            json!({"name": "Home", "event": "Signed Up", "properties": {"name": "Plan"}});
        let before = event.clone();
        mask(&mut event);
        assert_eq!(event, before);
    }

    #[test]
    fn only_strings_shaped_like_an_email_address_are_masked_by_their_value() {
        for (text, masked) in [
            ("ada@example.com", true),
            ("write to a.b@mail.example.org today", true),
            ("@handle", false),
            ("user@localhost", false),
            ("a @ b.c", false),
            ("x@y.", false),
        ] {
            assert_eq!(looks_like_email(text), masked, "{text}");
        }
    }
}

//! Meta Conversions API normalization and SHA-256 hashing of `user_data` fields.
//!
//! Meta matches hashed customer information only when both sides normalized the raw
//! value the same way before hashing, so every rule here follows Meta's published
//! normalization guidance (and the test vectors in `tests/data`). The hot path runs
//! about ten times per event, so the rules avoid regexes, avoid allocating anything
//! but the output, and return borrowed text when the input is already normalized.

mod birthday;
mod region;
mod text;
#[cfg(test)]
mod vectors;

use std::borrow::Cow;
use std::fmt;

use sha2::{Digest, Sha256};

/// A user_data key Meta hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashedField {
    /// Email address (`em`).
    Em,
    /// Phone number (`ph`).
    Ph,
    /// First name (`fn`).
    Fn,
    /// Last name (`ln`).
    Ln,
    /// Gender (`ge`).
    Ge,
    /// Date of birth (`db`).
    Db,
    /// City (`ct`).
    Ct,
    /// State or province (`st`).
    St,
    /// Zip or postal code (`zp`).
    Zp,
    /// Country (`country`).
    Country,
    /// Advertiser-side user id (`external_id`).
    ExternalId,
}

impl HashedField {
    /// Every hashed field, in CAPI documentation order.
    pub const ALL: [HashedField; 11] = [
        HashedField::Em,
        HashedField::Ph,
        HashedField::Fn,
        HashedField::Ln,
        HashedField::Ge,
        HashedField::Db,
        HashedField::Ct,
        HashedField::St,
        HashedField::Zp,
        HashedField::Country,
        HashedField::ExternalId,
    ];

    /// The CAPI key: "em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id".
    pub fn key(self) -> &'static str {
        match self {
            HashedField::Em => "em",
            HashedField::Ph => "ph",
            HashedField::Fn => "fn",
            HashedField::Ln => "ln",
            HashedField::Ge => "ge",
            HashedField::Db => "db",
            HashedField::Ct => "ct",
            HashedField::St => "st",
            HashedField::Zp => "zp",
            HashedField::Country => "country",
            HashedField::ExternalId => "external_id",
        }
    }

    /// The field whose CAPI key is exactly `key` (the inverse of [`HashedField::key`]).
    pub fn from_key(key: &str) -> Option<HashedField> {
        HashedField::ALL
            .into_iter()
            .find(|field| field.key() == key)
    }
}

/// The two lowercase hex digits of every byte value.
static HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut table = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [DIGITS[i >> 4], DIGITS[i & 0xf]];
        i += 1;
    }
    table
};

/// Lowercase hex SHA-256, stored inline (no heap).
///
/// Invariant: the 64 bytes are ASCII `0-9a-f`, so they are always valid UTF-8.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Hex([u8; 64]);

impl Sha256Hex {
    /// The 64 lowercase hex characters.
    pub fn as_str(&self) -> &str {
        debug_assert!(self.0.iter().all(u8::is_ascii_hexdigit));
        // SAFETY: both constructors (`of`, `parse`) store only ASCII hex digits, which are
        // valid UTF-8. Checking on every call cost ~6% of mapping time: each event serializes
        // about ten hashes.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// SHA-256 of the UTF-8 bytes of `value`.
    pub fn of(value: &str) -> Sha256Hex {
        let digest = Sha256::digest(value.as_bytes());
        let mut out = [0u8; 64];
        // Two hex digits per table lookup: `hex::encode_to_slice` took as long as the
        // SHA-256 itself for these 32 bytes (benches/mapping.rs).
        for (pair, byte) in out.chunks_exact_mut(2).zip(digest.iter()) {
            pair.copy_from_slice(&HEX_PAIRS[usize::from(*byte)]);
        }
        Sha256Hex(out)
    }

    /// A value that is already a SHA-256: exactly 64 ASCII hex characters after trimming
    /// whitespace, returned lowercased. Anything else is `None`.
    pub fn parse(already_hashed: &str) -> Option<Sha256Hex> {
        let bytes = already_hashed.trim().as_bytes();
        let bytes: &[u8; 64] = bytes.try_into().ok()?;
        if !bytes.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let mut out = *bytes;
        out.make_ascii_lowercase();
        Some(Sha256Hex(out))
    }
}

impl fmt::Debug for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Sha256Hex {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Per-event facts some rules depend on.
#[derive(Clone, Copy, Debug)]
pub struct EventFacts {
    /// The current calendar year; birthdays after it are dropped.
    pub current_year: i32,
    /// The event's country is the United States, so zip codes keep only the 5-digit ZIP.
    pub country_is_us: bool,
}

/// The configured phone region is not one libphonenumber knows.
#[derive(Debug)]
pub struct UnknownRegion(pub String);

impl fmt::Display for UnknownRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not an ISO 3166-1 alpha-2 region that has phone numbers (e.g. \"US\", \"GB\")",
            self.0
        )
    }
}

impl std::error::Error for UnknownRegion {}

/// Normalizes and hashes `user_data` values.
///
/// Built once from settings (the phone region), then shared read-only across threads;
/// every call is independent and cheap.
#[derive(Clone, Copy, Debug, Default)]
pub struct Normalizer {
    /// Region used to read phone numbers written without an international prefix.
    phone_region: Option<text::PhoneRegion>,
}

impl Normalizer {
    /// A normalizer that reads national phone numbers as numbers of `phone_country`
    /// (an ISO 3166-1 alpha-2 code, any case). `None`, or a blank string, means phone
    /// numbers are used as written (digits only).
    pub fn new(phone_country: Option<&str>) -> Result<Normalizer, UnknownRegion> {
        let phone_region = match phone_country.map(str::trim) {
            None | Some("") => None,
            Some(code) => Some(phone_region(code).ok_or_else(|| UnknownRegion(code.to_owned()))?),
        };
        Ok(Normalizer { phone_region })
    }

    /// Normalized text for `field`, or None when the value is dropped. A value that is already
    /// 64 hex characters (after trim) is returned lowercased, untouched by the field rule.
    pub fn normalize<'a>(
        &self,
        field: HashedField,
        raw: &'a str,
        facts: EventFacts,
    ) -> Option<Cow<'a, str>> {
        if let Some(hashed) = already_hashed(raw) {
            return Some(hashed);
        }
        match field {
            HashedField::Em => text::email(raw),
            HashedField::Ph => text::phone(raw, self.phone_region),
            HashedField::Fn | HashedField::Ln => text::name(raw),
            HashedField::Ge => text::gender(raw).map(Cow::Borrowed),
            HashedField::Db => birthday::birthday(raw, facts.current_year),
            HashedField::Ct => text::city(raw),
            HashedField::St => region::state(raw),
            HashedField::Zp => text::zip(raw, facts.country_is_us),
            HashedField::Country => region::country(raw).map(Cow::Borrowed),
            HashedField::ExternalId => text::external_id(raw),
        }
    }

    /// normalize + SHA-256; an already-hashed value passes through (lowercased, never hashed twice).
    pub fn hash(&self, field: HashedField, raw: &str, facts: EventFacts) -> Option<Sha256Hex> {
        if let Some(hashed) = Sha256Hex::parse(raw) {
            return Some(hashed);
        }
        self.normalize(field, raw, facts)
            .map(|normalized| Sha256Hex::of(&normalized))
    }
}

/// The libphonenumber region for an alpha-2 code, if it has phone number metadata.
fn phone_region(code: &str) -> Option<text::PhoneRegion> {
    let bytes: [u8; 2] = code.as_bytes().try_into().ok()?;
    if !bytes.iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    let upper = bytes.map(|b| b.to_ascii_uppercase());
    let id: phonenumber::country::Id = std::str::from_utf8(&upper).ok()?.parse().ok()?;
    let metadata = phonenumber::metadata::DATABASE.by_id(id.as_ref())?;
    Some(text::PhoneRegion {
        id,
        north_american: metadata.country_code() == 1,
    })
}

/// An already-hashed value (64 hex characters after trim), lowercased.
fn already_hashed(raw: &str) -> Option<Cow<'_, str>> {
    let trimmed = raw.trim();
    if trimmed.len() != 64 || !trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(trimmed.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(trimmed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FACTS: EventFacts = EventFacts {
        current_year: 2025,
        country_is_us: false,
    };
    const US_FACTS: EventFacts = EventFacts {
        current_year: 2025,
        country_is_us: true,
    };
    /// Meta's documented example: sha256("john_smith@gmail.com").
    const JOHN_SMITH: &str = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f";

    fn norm(field: HashedField, raw: &str) -> Option<String> {
        Normalizer::default()
            .normalize(field, raw, FACTS)
            .map(Cow::into_owned)
    }

    #[test]
    fn keys_round_trip_and_are_unique() {
        for field in HashedField::ALL {
            assert_eq!(HashedField::from_key(field.key()), Some(field));
        }
        let mut keys: Vec<_> = HashedField::ALL.iter().map(|f| f.key()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), HashedField::ALL.len());
        assert_eq!(HashedField::from_key("EM"), None);
    }

    #[test]
    fn meta_documented_email_hash() {
        let n = Normalizer::default();
        let hash = n.hash(HashedField::Em, "  John_Smith@gmail.com ", FACTS);
        assert_eq!(
            hash.map(|h| h.as_str().to_owned()).as_deref(),
            Some(JOHN_SMITH)
        );
        assert_eq!(Sha256Hex::of("john_smith@gmail.com").as_str(), JOHN_SMITH);
    }

    #[test]
    fn already_hashed_passes_through_every_field() {
        let upper = JOHN_SMITH.to_ascii_uppercase();
        let padded = format!(" \t{upper}\n");
        let n = Normalizer::default();
        for field in HashedField::ALL {
            assert_eq!(
                norm(field, &padded).as_deref(),
                Some(JOHN_SMITH),
                "{field:?}"
            );
            let hash = n.hash(field, &padded, FACTS);
            assert_eq!(
                hash.map(|h| h.as_str().to_owned()).as_deref(),
                Some(JOHN_SMITH)
            );
        }
        // Already lowercase and trimmed: no allocation.
        assert!(matches!(
            n.normalize(HashedField::Fn, JOHN_SMITH, FACTS),
            Some(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn sha256hex_parse() {
        assert!(Sha256Hex::parse(&JOHN_SMITH[1..]).is_none());
        assert!(Sha256Hex::parse(&format!("{JOHN_SMITH}0")).is_none());
        assert!(Sha256Hex::parse(&format!("g{}", &JOHN_SMITH[1..])).is_none());
        assert!(Sha256Hex::parse("").is_none());
        // 64 bytes but not 64 ASCII characters.
        assert!(Sha256Hex::parse(&"é".repeat(32)).is_none());
        let parsed = Sha256Hex::parse(&JOHN_SMITH.to_ascii_uppercase());
        assert_eq!(
            parsed.map(|h| h.as_str().to_owned()).as_deref(),
            Some(JOHN_SMITH)
        );
    }

    #[test]
    fn sha256hex_debug_and_serialize() {
        let h = Sha256Hex::of("john_smith@gmail.com");
        assert_eq!(format!("{h:?}"), JOHN_SMITH);
        assert_eq!(h.to_string(), JOHN_SMITH);
        assert_eq!(
            serde_json::to_string(&h).ok().as_deref(),
            Some(format!("\"{JOHN_SMITH}\"").as_str())
        );
    }

    #[test]
    fn hash_is_sha256_of_normalized_value() {
        let n = Normalizer::default();
        let cases = [
            (HashedField::Ph, "+1 (650) 123-4567", "16501234567"),
            (HashedField::Fn, "  Jöhn ", "jöhn"),
            (HashedField::Ge, "Female", "f"),
            (HashedField::Db, "1990-12-31", "19901231"),
            (HashedField::Country, "United States", "us"),
        ];
        for (field, raw, normalized) in cases {
            assert_eq!(
                n.hash(field, raw, FACTS),
                Some(Sha256Hex::of(normalized)),
                "{field:?}"
            );
        }
        assert_eq!(n.hash(HashedField::Em, "not-an-email", FACTS), None);
    }

    #[test]
    fn dispatches_each_field_to_its_rule() {
        let n = Normalizer::default();
        let cases = [
            (HashedField::Em, " A@B.Co ", Some("a@b.co")),
            (HashedField::Ph, "(555) 123-4567", Some("5551234567")),
            (HashedField::Fn, "Mary-Jane", Some("maryjane")),
            (HashedField::Ln, "O'Brien", Some("obrien")),
            (HashedField::Ge, "MALE", Some("m")),
            (HashedField::Db, "January 15, 1990", Some("19900115")),
            (HashedField::Ct, "New York", Some("newyork")),
            (HashedField::St, "New York", Some("ny")),
            (HashedField::Zp, "12345-6789", Some("12345")),
            (HashedField::Country, "UNITED STATES", Some("us")),
            (HashedField::ExternalId, " User 42 ", Some("user42")),
        ];
        for (field, raw, want) in cases {
            assert_eq!(n.normalize(field, raw, FACTS).as_deref(), want, "{field:?}");
        }
    }

    #[test]
    fn zip_is_cut_to_five_for_us_only() {
        let n = Normalizer::default();
        let zp = |raw, facts| {
            n.normalize(HashedField::Zp, raw, facts)
                .map(Cow::into_owned)
        };
        assert_eq!(zp("123456789", US_FACTS).as_deref(), Some("12345"));
        assert_eq!(zp("123456789", FACTS).as_deref(), Some("123456789"));
        assert_eq!(zp("SW1A 1AA", FACTS).as_deref(), Some("sw1a1aa"));
    }

    #[test]
    fn birthday_uses_current_year() {
        let n = Normalizer::default();
        let facts = |current_year| EventFacts {
            current_year,
            country_is_us: false,
        };
        assert_eq!(
            n.normalize(HashedField::Db, "2024-02-29", facts(2024))
                .as_deref(),
            Some("20240229")
        );
        assert_eq!(
            n.normalize(HashedField::Db, "2024-02-29", facts(2023)),
            None
        );
    }

    #[test]
    fn new_accepts_known_regions_in_any_case() {
        assert!(Normalizer::new(Some("US")).is_ok());
        assert!(Normalizer::new(Some("us")).is_ok());
        assert!(Normalizer::new(Some(" gb ")).is_ok());
        assert!(Normalizer::new(None).is_ok());
        assert!(Normalizer::new(Some("")).is_ok());
    }

    #[test]
    fn new_rejects_unknown_regions() {
        for bad in ["XX", "USA", "U", "1", "ü", "001"] {
            let err = Normalizer::new(Some(bad)).err();
            assert!(err.is_some(), "{bad:?} accepted");
        }
        let err = Normalizer::new(Some("XX")).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "`XX` is not an ISO 3166-1 alpha-2 region that has phone numbers (e.g. \"US\", \"GB\")"
            )
        );
    }

    #[test]
    fn phone_region_is_applied() {
        let us = Normalizer::new(Some("US")).ok();
        let gb = Normalizer::new(Some("GB")).ok();
        let ph = |n: &Option<Normalizer>, raw| {
            n.and_then(|n| {
                n.normalize(HashedField::Ph, raw, FACTS)
                    .map(Cow::into_owned)
            })
        };
        // A US national number gains its country code.
        assert_eq!(ph(&us, "(650) 123-4567").as_deref(), Some("16501234567"));
        assert_eq!(ph(&us, "1 650 123 4567").as_deref(), Some("16501234567"));
        // A GB national number loses its trunk 0 and gains 44.
        assert_eq!(ph(&gb, "020 7946 0958").as_deref(), Some("442079460958"));
        assert_eq!(
            ph(&gb, "0044 20 7946 0958").as_deref(),
            Some("442079460958")
        );
        // An international number keeps its own country code whatever the region.
        assert_eq!(ph(&us, "+44 20 7946 0958").as_deref(), Some("442079460958"));
        assert_eq!(ph(&gb, " +1 650 123 4567").as_deref(), Some("16501234567"));
        // Digits that already carry another country's code keep it.
        assert_eq!(ph(&us, "442079460958").as_deref(), Some("442079460958"));
        // Unparseable text falls back to the digits rule.
        assert_eq!(ph(&us, "x1").as_deref(), Some("1"));
        assert_eq!(ph(&us, "HELP"), None);
        // Without a region only the digits rule applies.
        assert_eq!(
            norm(HashedField::Ph, "(650) 123-4567").as_deref(),
            Some("6501234567")
        );
    }

    #[test]
    fn normalizer_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Normalizer>();
        assert_send_sync::<Sha256Hex>();
    }

    #[test]
    fn no_field_panics_on_odd_input() {
        let long = "Ab1-é😀 ".repeat(10_000);
        let odd = [
            "",
            " ",
            "\u{0}",
            "é",
            "😀",
            "\u{301}",
            "İ",
            "ß",
            "ΣΑΣ",
            "1/2/",
            "--",
            "@",
            "a@",
            "0",
            "+",
            "2024-02-3é",
            "é2024-02-03",
            "1990-12-31T",
            "31.12.1990 é",
            long.as_str(),
        ];
        let us = Normalizer::new(Some("US")).ok().unwrap_or_default();
        for n in [Normalizer::default(), us] {
            for field in HashedField::ALL {
                for raw in odd {
                    let _ = n.normalize(field, raw, US_FACTS);
                    let _ = n.hash(field, raw, FACTS);
                }
            }
        }
    }
}

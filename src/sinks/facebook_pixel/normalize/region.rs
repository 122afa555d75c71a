//! `st` and `country`: names to codes.
//!
//! Names are matched on a folded key (ASCII letters only, lowercase, accents stripped)
//! built in a stack buffer, so "New York", "NEW-YORK" and "Québec"/"Quebec" hit the same
//! table entry without allocating.

use std::borrow::Cow;

use celes::Country;
use unicode_normalization::char::decompose_canonical;

use super::text::letters_only;

/// Longer than every key in the tables below and in celes (its longest is 48 bytes).
const KEY_CAPACITY: usize = 64;

/// US states, DC, US territories, and Canadian provinces and territories, by folded name.
/// Sorted by name (checked by a test) for binary search.
static STATES: [(&str, &str); 74] = [
    ("alabama", "al"),
    ("alaska", "ak"),
    ("alberta", "ab"),
    ("americansamoa", "as"),
    ("arizona", "az"),
    ("arkansas", "ar"),
    ("britishcolumbia", "bc"),
    ("california", "ca"),
    ("colorado", "co"),
    ("connecticut", "ct"),
    ("delaware", "de"),
    ("districtofcolumbia", "dc"),
    ("florida", "fl"),
    ("georgia", "ga"),
    ("guam", "gu"),
    ("hawaii", "hi"),
    ("idaho", "id"),
    ("illinois", "il"),
    ("indiana", "in"),
    ("iowa", "ia"),
    ("kansas", "ks"),
    ("kentucky", "ky"),
    ("louisiana", "la"),
    ("maine", "me"),
    ("manitoba", "mb"),
    ("maryland", "md"),
    ("massachusetts", "ma"),
    ("michigan", "mi"),
    ("minnesota", "mn"),
    ("mississippi", "ms"),
    ("missouri", "mo"),
    ("montana", "mt"),
    ("nebraska", "ne"),
    ("nevada", "nv"),
    ("newbrunswick", "nb"),
    ("newfoundland", "nl"),
    ("newfoundlandandlabrador", "nl"),
    ("newhampshire", "nh"),
    ("newjersey", "nj"),
    ("newmexico", "nm"),
    ("newyork", "ny"),
    ("northcarolina", "nc"),
    ("northdakota", "nd"),
    ("northernmarianaislands", "mp"),
    ("northwestterritories", "nt"),
    ("novascotia", "ns"),
    ("nunavut", "nu"),
    ("ohio", "oh"),
    ("oklahoma", "ok"),
    ("ontario", "on"),
    ("oregon", "or"),
    ("pennsylvania", "pa"),
    ("princeedwardisland", "pe"),
    ("puertorico", "pr"),
    ("quebec", "qc"),
    ("rhodeisland", "ri"),
    ("saskatchewan", "sk"),
    ("southcarolina", "sc"),
    ("southdakota", "sd"),
    ("tennessee", "tn"),
    ("texas", "tx"),
    ("unitedstatesvirginislands", "vi"),
    ("usvirginislands", "vi"),
    ("utah", "ut"),
    ("vermont", "vt"),
    ("virginia", "va"),
    ("virginislands", "vi"),
    ("washington", "wa"),
    ("washingtondc", "dc"),
    ("westvirginia", "wv"),
    ("wisconsin", "wi"),
    ("wyoming", "wy"),
    ("yukon", "yt"),
    ("yukonterritory", "yt"),
];

/// Common English country names celes does not know, by folded name. Sorted by name.
static COUNTRY_ALIASES: [(&str, &str); 6] = [
    ("britain", "gb"),
    ("eire", "ie"),
    ("republicofireland", "ie"),
    ("uae", "ae"),
    ("uk", "gb"),
    ("wales", "gb"),
];

/// Every pair of lowercase ASCII letters ("aaabac…zz"), so any alpha-2 code can be
/// returned as a lowercase `&'static str` although celes stores codes uppercase.
static LETTER_PAIRS: &str = {
    const BYTES: [u8; 26 * 26 * 2] = {
        let mut bytes = [0u8; 26 * 26 * 2];
        let mut i = 0;
        while i < 26 * 26 {
            bytes[2 * i] = b'a' + (i / 26) as u8;
            bytes[2 * i + 1] = b'a' + (i % 26) as u8;
            i += 1;
        }
        bytes
    };
    match std::str::from_utf8(&BYTES) {
        Ok(pairs) => pairs,
        Err(_) => panic!("letter pairs are ASCII"),
    }
};

/// `code` (two ASCII letters, any case) as a lowercase `&'static str`.
fn lowercase_alpha2(code: &str) -> Option<&'static str> {
    let &[a, b] = code.as_bytes() else {
        return None;
    };
    if !a.is_ascii_alphabetic() || !b.is_ascii_alphabetic() {
        return None;
    }
    let index = usize::from(a.to_ascii_lowercase() - b'a') * 26
        + usize::from(b.to_ascii_lowercase() - b'a');
    LETTER_PAIRS.get(2 * index..2 * index + 2)
}

/// A stack buffer holding a folded key.
struct Key {
    bytes: [u8; KEY_CAPACITY],
    len: usize,
}

impl Key {
    fn as_str(&self) -> &str {
        self.bytes
            .get(..self.len)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .unwrap_or_default()
    }

    fn push(&mut self, byte: u8) -> Option<()> {
        *self.bytes.get_mut(self.len)? = byte;
        self.len += 1;
        Some(())
    }
}

/// ASCII letters of `raw`, lowercased, with accents stripped ("Québec" -> "quebec");
/// everything that is not a letter is skipped. `None` when a letter outside the Latin
/// alphabet remains (no table entry can match it) or the key would not fit.
fn folded_key(raw: &str) -> Option<Key> {
    let mut key = Key {
        bytes: [0; KEY_CAPACITY],
        len: 0,
    };
    for c in raw.chars() {
        if c.is_ascii() {
            if c.is_ascii_alphabetic() {
                key.push(c.to_ascii_lowercase() as u8)?;
            }
        } else if c.is_alphabetic() {
            let mut latin = true;
            let mut overflow = false;
            decompose_canonical(c, |part| {
                if part.is_ascii_alphabetic() {
                    overflow |= key.push(part.to_ascii_lowercase() as u8).is_none();
                } else if part.is_alphabetic() {
                    latin = false;
                }
            });
            if !latin || overflow {
                return None;
            }
        }
    }
    Some(key)
}

fn lookup(table: &'static [(&'static str, &'static str)], key: &str) -> Option<&'static str> {
    table
        .binary_search_by(|(name, _)| name.cmp(&key))
        .ok()
        .and_then(|i| table.get(i))
        .map(|&(_, code)| code)
}

/// `st`: a US state, US territory or Canadian province name becomes its two-letter code;
/// anything else is reduced to its lowercase letters.
pub(super) fn state(raw: &str) -> Option<Cow<'_, str>> {
    if let Some(code) = folded_key(raw).and_then(|key| lookup(&STATES, key.as_str())) {
        return Some(Cow::Borrowed(code));
    }
    letters_only(raw)
}

/// `country`: lowercase ISO 3166-1 alpha-2 from an alpha-2 or alpha-3 code or an English
/// name or alias; `None` when unknown. Numeric codes are not accepted: they are rare in
/// customer data and a stray number is more likely a mistake than a country.
pub(super) fn country(raw: &str) -> Option<&'static str> {
    let key = folded_key(raw)?;
    let key = key.as_str();
    let found = match key.len() {
        0 => return None,
        2 => Country::from_alpha2(key).ok(),
        3 => Country::from_alpha3(key).ok(),
        _ => None,
    };
    if let Some(country) = found {
        return lowercase_alpha2(country.alpha2);
    }
    if let Some(code) = lookup(&COUNTRY_ALIASES, key) {
        return Some(code);
    }
    let country = Country::from_name(key)
        .or_else(|_| Country::from_alias(key))
        .ok()
        .or_else(|| with_the(key))?;
    lowercase_alpha2(country.alpha2)
}

/// celes spells some official names with a leading "the" ("thefalklandislandsmalvinas").
fn with_the(key: &str) -> Option<Country> {
    let mut prefixed = Key {
        bytes: [0; KEY_CAPACITY],
        len: 0,
    };
    for &byte in b"the".iter().chain(key.as_bytes()) {
        prefixed.push(byte)?;
    }
    Country::from_name(prefixed.as_str()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(raw: &str) -> Option<String> {
        state(raw).map(Cow::into_owned)
    }

    #[test]
    fn tables_are_sorted_and_unique() {
        for table in [&STATES[..], &COUNTRY_ALIASES[..]] {
            for pair in table.windows(2) {
                if let [(a, _), (b, _)] = pair {
                    assert!(a < b, "{a} must sort before {b}");
                }
            }
            for (name, code) in table {
                assert!(name.bytes().all(|b| b.is_ascii_lowercase()), "{name}");
                assert_eq!(code.len(), 2);
            }
        }
    }

    #[test]
    fn aliases_are_not_shadowed_by_celes() {
        for (name, _) in COUNTRY_ALIASES {
            let known = Country::from_name(name).is_ok()
                || Country::from_alias(name).is_ok()
                || (name.len() == 2 && Country::from_alpha2(name).is_ok())
                || (name.len() == 3 && Country::from_alpha3(name).is_ok());
            assert!(!known, "{name} is already known to celes");
        }
    }

    #[test]
    fn state_names_become_codes() {
        let cases = [
            ("NeW yOrK", "ny"),
            ("BRITISH COLUMBIA", "bc"),
            ("Québec", "qc"),
            ("Que\u{301}bec", "qc"),
            ("Quebec", "qc"),
            ("District of Columbia", "dc"),
            ("Washington, D.C.", "dc"),
            ("Puerto Rico", "pr"),
            ("U.S. Virgin Islands", "vi"),
            ("Newfoundland and Labrador", "nl"),
            ("Northern Mariana Islands", "mp"),
            ("West Virginia", "wv"),
        ];
        for (raw, want) in cases {
            assert_eq!(st(raw).as_deref(), Some(want), "{raw:?}");
        }
    }

    #[test]
    fn other_states_are_letters_only() {
        let cases = [
            ("N.Y.", Some("ny")),
            ("123ab", Some("ab")),
            ("  TE", Some("te")),
            ("Bayern", Some("bayern")),
            ("Île-de-France", Some("îledefrance")),
            ("广东", Some("广东")),
            ("999", None),
            ("", None),
        ];
        for (raw, want) in cases {
            assert_eq!(st(raw).as_deref(), want, "{raw:?}");
        }
    }

    #[test]
    fn countries() {
        let cases = [
            ("US", Some("us")),
            ("  us ", Some("us")),
            ("U.S.", Some("us")),
            ("USA", Some("us")),
            ("gbr", Some("gb")),
            ("UK", Some("gb")),
            ("Great Britain", Some("gb")),
            ("United Kingdom", Some("gb")),
            ("United States of America", Some("us")),
            ("Russian Federation", Some("ru")),
            ("South Korea", Some("kr")),
            ("North Korea", Some("kp")),
            ("Vietnam", Some("vn")),
            ("Ivory Coast", Some("ci")),
            ("Côte d'Ivoire", Some("ci")),
            ("Czechia", Some("cz")),
            ("Holland", Some("nl")),
            ("The Netherlands", Some("nl")),
            ("Falkland Islands (Malvinas)", Some("fk")),
            ("Türkiye", Some("tr")),
            ("Åland Islands", Some("ax")),
            ("UAE", Some("ae")),
            ("Kosovo", Some("xk")),
            ("840", None),
            ("XX", None),
            ("Atlantis", None),
            ("日本", None),
            ("", None),
        ];
        for (raw, want) in cases {
            assert_eq!(country(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn lowercase_alpha2_covers_all_pairs() {
        assert_eq!(lowercase_alpha2("US"), Some("us"));
        assert_eq!(lowercase_alpha2("aa"), Some("aa"));
        assert_eq!(lowercase_alpha2("ZZ"), Some("zz"));
        assert_eq!(lowercase_alpha2("a1"), None);
        assert_eq!(lowercase_alpha2("abc"), None);
    }

    #[test]
    fn very_long_input_is_dropped_not_truncated() {
        let long = "a".repeat(KEY_CAPACITY + 1);
        assert_eq!(country(&long), None);
        assert_eq!(st(&long).map(|s| s.len()), Some(long.len()));
    }
}

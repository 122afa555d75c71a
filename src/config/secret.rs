//! A string that must not end up in logs or error messages.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A secret string (access token, app secret): Debug and Display print
/// `***`; [`Secret::expose`] returns the text.
///
/// Deserializes only from a string, and its error for any other type never
/// echoes the value (serde's default `invalid_type` would print it).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret text; call only where it is actually sent somewhere.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string (e.g. `${VAR:-}` with VAR unset).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_string(SecretVisitor)
    }
}

struct SecretVisitor;

fn not_a_string<E: de::Error>() -> E {
    E::custom("expected a string")
}

// Every non-string visit is overridden so no default `invalid_type` (which
// formats the unexpected value) can be reached.
impl<'de> Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret::new(v))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret(v))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(not_a_string())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Secret, E> {
        Err(not_a_string())
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Secret, E> {
        Err(not_a_string())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Secret, E> {
        Err(not_a_string())
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Secret, E> {
        Err(not_a_string())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(not_a_string())
    }

    fn visit_char<E: de::Error>(self, _: char) -> Result<Secret, E> {
        Err(not_a_string())
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Secret, E> {
        Err(not_a_string())
    }

    fn visit_none<E: de::Error>(self) -> Result<Secret, E> {
        Err(not_a_string())
    }

    fn visit_some<D: Deserializer<'de>>(self, _: D) -> Result<Secret, D::Error> {
        Err(not_a_string())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Secret, E> {
        Err(not_a_string())
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, _: D) -> Result<Secret, D::Error> {
        Err(not_a_string())
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(not_a_string())
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(not_a_string())
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(not_a_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Settings {
        token: Secret,
    }

    #[test]
    fn debug_and_display_print_stars() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(
            format!("{:?}", Settings { token: s }),
            "Settings { token: *** }"
        );
    }

    #[test]
    fn expose_and_is_empty() {
        assert_eq!(Secret::new("hunter2").expose(), "hunter2");
        assert!(Secret::default().is_empty());
        assert!(!Secret::new("x").is_empty());
    }

    #[test]
    fn deserializes_from_a_string() {
        let s: Settings = toml::from_str(r#"token = "hunter2""#).unwrap();
        assert_eq!(s.token.expose(), "hunter2");
    }

    #[test]
    fn deserialize_error_for_a_number_does_not_contain_the_number() {
        for text in [
            "token = 987654321",
            "token = 98765.4321",
            "token = true",
            "token = [987654321]",
        ] {
            let err = toml::from_str::<Settings>(text).unwrap_err();
            let shown = format!("{} {:?}", err.message(), err.message());
            assert!(shown.contains("expected a string"), "{shown}");
            assert!(!shown.contains("98765"), "{shown}");
            assert!(!shown.contains("true"), "{shown}");
        }
    }

    #[test]
    fn deserialize_error_from_a_table_value_does_not_contain_the_number() {
        let table: toml::Table = toml::from_str("token = 987654321").unwrap();
        let err = table.try_into::<Settings>().unwrap_err();
        assert!(!err.to_string().contains("987654321"), "{err}");
    }
}

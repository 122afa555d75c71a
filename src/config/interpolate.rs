//! Environment interpolation in string values.
//!
//! Runs after TOML parsing, on string values only (never keys), so a
//! variable's value can never change the structure of the file.
//!
//! Syntax: `${VAR}`, `${VAR:-default}` (default when VAR is unset or empty),
//! `${VAR:?message}` (error when VAR is unset or empty), `$$` for a literal
//! `$`. Any other `$` is literal, so "$5" survives. Defaults and messages are
//! taken literally and cannot contain `}`. Substituted values are never
//! interpolated again.
//!
//! `fbpixel validate --no-environment` checks a config in CI, where the
//! secrets are not set: there [`MissingVars::Placeholder`] turns every
//! reference that would fail into [`PLACEHOLDER`], with a warning naming it.

use super::{ConfigError, join_key};

/// What a reference to an unset variable does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingVars {
    /// `${VAR}` and `${VAR:?msg}` are errors naming the variable and the key path.
    Error,
    /// `${VAR}` becomes an empty string, with a warning; `${VAR:?msg}` is still an error.
    Empty,
    /// `${VAR}`, and `${VAR:?msg}` with VAR unset or empty, become [`PLACEHOLDER`], with a
    /// warning; `${VAR:-default}` still takes its default, as a run would.
    Placeholder,
}

/// What an unset variable becomes in [`MissingVars::Placeholder`] mode. Digits only, so it
/// passes where any non-empty identifier or secret does (a pixel ID, an access token, a write
/// key), yet fails wherever a structured value is expected (an address, a URL, a currency, a
/// region, a `type`, any enumerated value): a placeholder cannot make such a setting valid.
/// It never leaves the process: `--no-environment` also skips the healthchecks.
pub const PLACEHOLDER: &str = "000000000000000";

/// Interpolate one string value found at `key_path`.
///
/// Returns the first problem; warnings (unset variables in
/// [`MissingVars::Empty`] and [`MissingVars::Placeholder`] modes) are appended to `warnings`.
pub fn interpolate(
    value: &str,
    env: &dyn Fn(&str) -> Option<String>,
    mode: MissingVars,
    key_path: &str,
    warnings: &mut Vec<String>,
) -> Result<String, ConfigError> {
    interpolate_all(value, env, mode, key_path, warnings)
        .map_err(|mut errors| errors.swap_remove(0))
}

/// Like [`interpolate`], but reports every problem in the string.
fn interpolate_all(
    value: &str,
    env: &dyn Fn(&str) -> Option<String>,
    mode: MissingVars,
    key_path: &str,
    warnings: &mut Vec<String>,
) -> Result<String, Vec<ConfigError>> {
    let mut out = String::with_capacity(value.len());
    let mut errors = Vec::new();
    let mut rest = value;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let position = value[..value.len() - rest.len() + dollar].chars().count() + 1;
        let after = &rest[dollar + 1..];
        if let Some(after) = after.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let malformed = |problem| ConfigError::MalformedReference {
            path: key_path.to_owned(),
            position,
            problem,
        };
        let Some(end) = body.find('}') else {
            errors.push(malformed("no closing `}`"));
            rest = "";
            break;
        };
        rest = &body[end + 1..];
        match parse_reference(&body[..end]) {
            Ok(reference) => match resolve(&reference, env, mode, key_path, warnings) {
                Ok(text) => out.push_str(&text),
                Err(error) => errors.push(error),
            },
            Err(problem) => errors.push(malformed(problem)),
        }
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// What follows the variable name inside `${...}`.
enum Fallback<'a> {
    None,
    Default(&'a str),
    Required(&'a str),
}

struct Reference<'a> {
    name: &'a str,
    fallback: Fallback<'a>,
}

// Problems are static texts: echoing the body could print part of an inline
// secret that merely happened to contain `${`.
fn parse_reference(body: &str) -> Result<Reference<'_>, &'static str> {
    let name_len = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    let (name, tail) = body.split_at(name_len);
    match name.chars().next() {
        None => return Err("missing variable name"),
        Some(c) if c.is_ascii_digit() => {
            return Err("variable names must start with a letter or `_`");
        }
        Some(_) => {}
    }
    let fallback = if tail.is_empty() {
        Fallback::None
    } else if let Some(default) = tail.strip_prefix(":-") {
        Fallback::Default(default)
    } else if let Some(message) = tail.strip_prefix(":?") {
        Fallback::Required(message)
    } else {
        return Err("expected `}`, `:-` or `:?` after the variable name");
    };
    Ok(Reference { name, fallback })
}

fn resolve(
    reference: &Reference<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    mode: MissingVars,
    key_path: &str,
    warnings: &mut Vec<String>,
) -> Result<String, ConfigError> {
    let value = env(reference.name);
    match reference.fallback {
        Fallback::None => match (value, mode) {
            (Some(value), _) => Ok(value),
            (None, MissingVars::Placeholder) => Ok(placeholder(reference, key_path, warnings)),
            (None, mode) => {
                let error = ConfigError::UnsetVariable {
                    path: key_path.to_owned(),
                    var: reference.name.to_owned(),
                };
                match mode {
                    MissingVars::Empty => {
                        warnings.push(format!("{error}; using an empty value"));
                        Ok(String::new())
                    }
                    _ => Err(error),
                }
            }
        },
        Fallback::Default(default) => Ok(value
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_owned())),
        Fallback::Required(message) => match value.filter(|v| !v.is_empty()) {
            Some(value) => Ok(value),
            None if mode == MissingVars::Placeholder => {
                Ok(placeholder(reference, key_path, warnings))
            }
            None => Err(ConfigError::RequiredVariable {
                path: key_path.to_owned(),
                var: reference.name.to_owned(),
                message: message.to_owned(),
            }),
        },
    }
}

fn placeholder(reference: &Reference<'_>, key_path: &str, warnings: &mut Vec<String>) -> String {
    warnings.push(format!(
        "{key_path}: environment variable {} is not set; checked with the placeholder {PLACEHOLDER:?}",
        reference.name
    ));
    PLACEHOLDER.to_owned()
}

/// Interpolate every string value in `value` (found at `path`), recursing
/// into arrays and tables; keys are left alone. A string that fails keeps its
/// original text and the problems go to `errors`.
pub(super) fn interpolate_value(
    value: &mut toml::Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    mode: MissingVars,
    warnings: &mut Vec<String>,
    errors: &mut Vec<ConfigError>,
) {
    match value {
        toml::Value::String(s) => match interpolate_all(s, env, mode, path, warnings) {
            Ok(new) => *s = new,
            Err(problems) => errors.extend(problems),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let path = format!("{path}[{i}]");
                interpolate_value(item, &path, env, mode, warnings, errors);
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let path = join_key(path, key);
                interpolate_value(item, &path, env, mode, warnings, errors);
            }
        }
        toml::Value::Integer(_)
        | toml::Value::Float(_)
        | toml::Value::Boolean(_)
        | toml::Value::Datetime(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("example.com".into()),
            "PORT" => Some("8080".into()),
            "EMPTY" => Some(String::new()),
            "TOKEN" => Some("s3cr3t-value".into()),
            "DOLLARS" => Some("a$$b${HOST}".into()),
            "EVIL" => Some("\"] \n[sinks.evil]\ntype = \"x\"".into()),
            _ => None,
        }
    }

    fn run(value: &str, mode: MissingVars) -> (Result<String, ConfigError>, Vec<String>) {
        let mut warnings = Vec::new();
        let result = interpolate(value, &env, mode, "sinks.s.key", &mut warnings);
        (result, warnings)
    }

    fn ok(value: &str) -> String {
        let (result, warnings) = run(value, MissingVars::Error);
        assert!(warnings.is_empty(), "{warnings:?}");
        result.unwrap()
    }

    fn err(value: &str) -> String {
        run(value, MissingVars::Error).0.unwrap_err().to_string()
    }

    #[test]
    fn plain_reference_is_substituted() {
        assert_eq!(ok("http://${HOST}:${PORT}/"), "http://example.com:8080/");
    }

    #[test]
    fn default_used_when_unset() {
        assert_eq!(ok("${NOPE:-fallback}"), "fallback");
        assert_eq!(ok("${HOST:-fallback}"), "example.com");
    }

    #[test]
    fn default_used_when_set_but_empty() {
        assert_eq!(ok("${EMPTY:-fallback}"), "fallback");
    }

    #[test]
    fn empty_default_gives_empty_string() {
        assert_eq!(ok("a${NOPE:-}b"), "ab");
    }

    #[test]
    fn plain_reference_to_set_but_empty_var_is_empty_without_error() {
        assert_eq!(ok("[${EMPTY}]"), "[]");
    }

    #[test]
    fn required_reference_errors_with_its_message() {
        assert_eq!(ok("${HOST:?need a host}"), "example.com");
        assert_eq!(
            err("${NOPE:?set NOPE to the pixel id}"),
            "sinks.s.key: environment variable NOPE is not set or empty: set NOPE to the pixel id"
        );
        assert_eq!(
            err("${EMPTY:?must not be empty}"),
            "sinks.s.key: environment variable EMPTY is not set or empty: must not be empty"
        );
    }

    #[test]
    fn required_reference_errors_even_in_empty_mode() {
        let (result, _) = run("${NOPE:?needed}", MissingVars::Empty);
        assert!(matches!(
            result,
            Err(ConfigError::RequiredVariable { ref var, .. }) if var == "NOPE"
        ));
    }

    #[test]
    fn placeholder_mode_replaces_every_failing_reference_and_says_so() {
        let (result, warnings) = run(
            "${NOPE} ${NEED:?set NEED} ${EMPTY:?set EMPTY} ${HOST:?x}",
            MissingVars::Placeholder,
        );
        assert_eq!(
            result.unwrap(),
            format!("{PLACEHOLDER} {PLACEHOLDER} {PLACEHOLDER} example.com")
        );
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert_eq!(
            warnings[0],
            format!(
                "sinks.s.key: environment variable NOPE is not set; checked with the placeholder {PLACEHOLDER:?}"
            )
        );
        assert!(warnings[1].contains(" NEED "), "{warnings:?}");
    }

    #[test]
    fn placeholder_mode_still_takes_defaults_and_set_values() {
        let (result, warnings) = run("${NOPE:-} ${NOPE:-x} ${EMPTY}", MissingVars::Placeholder);
        // As a run would: the default (even an empty one) and the empty value that is set.
        assert_eq!(result.unwrap(), " x ");
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn placeholder_is_not_a_structured_value() {
        assert!(PLACEHOLDER.parse::<std::net::SocketAddr>().is_err());
        assert!(!PLACEHOLDER.is_empty() && PLACEHOLDER.chars().all(|c| c.is_ascii_digit()));
    }

    #[test]
    fn double_dollar_is_a_literal_dollar() {
        assert_eq!(ok("cost: $$5 and $${HOST}"), "cost: $5 and ${HOST}");
    }

    #[test]
    fn lone_dollar_stays_literal() {
        assert_eq!(ok("$5"), "$5");
        assert_eq!(ok("price $5.00, $HOST, end$"), "price $5.00, $HOST, end$");
    }

    #[test]
    fn substituted_values_are_not_interpolated_again() {
        assert_eq!(ok("${DOLLARS}"), "a$$b${HOST}");
    }

    #[test]
    fn unterminated_reference_is_an_error_naming_the_key_path() {
        let e = err("abc${HOST");
        assert_eq!(
            e,
            "sinks.s.key: malformed `${` at character 4: no closing `}`"
        );
    }

    #[test]
    fn name_starting_with_digit_is_malformed() {
        let (result, _) = run("${1BAD}", MissingVars::Error);
        let e = result.unwrap_err();
        assert!(matches!(
            e,
            ConfigError::MalformedReference { position: 1, .. }
        ));
        assert!(
            e.to_string().starts_with("sinks.s.key: malformed `${`"),
            "{e}"
        );
        assert!(!e.to_string().contains("1BAD"), "{e}");
    }

    #[test]
    fn empty_name_and_bad_operator_are_malformed() {
        assert!(err("${}").contains("missing variable name"));
        assert!(err("${HOST-x}").contains("after the variable name"));
        assert!(err("${HO ST}").contains("after the variable name"));
    }

    #[test]
    fn missing_var_in_error_mode_names_var_and_path() {
        let (result, warnings) = run("Bearer ${FB_ACCESS_TOKEN}", MissingVars::Error);
        assert_eq!(
            result.unwrap_err().to_string(),
            "sinks.s.key: environment variable FB_ACCESS_TOKEN is not set"
        );
        assert!(warnings.is_empty());
    }

    #[test]
    fn missing_var_in_empty_mode_is_empty_with_warning() {
        let (result, warnings) = run("Bearer ${FB_ACCESS_TOKEN}", MissingVars::Empty);
        assert_eq!(result.unwrap(), "Bearer ");
        assert_eq!(
            warnings,
            vec![
                "sinks.s.key: environment variable FB_ACCESS_TOKEN is not set; using an empty value"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn all_problems_in_one_string_are_reported_without_values() {
        let mut warnings = Vec::new();
        let errors = interpolate_all(
            "${TOKEN} ${A} ${B:?} ${",
            &env,
            MissingVars::Error,
            "p",
            &mut warnings,
        )
        .unwrap_err();
        assert_eq!(errors.len(), 3);
        for e in &errors {
            assert!(!e.to_string().contains("s3cr3t"), "{e}");
        }
    }

    #[test]
    fn arrays_and_inline_tables_are_interpolated_with_their_paths() {
        let mut value: toml::Value = toml::from_str::<toml::Table>(
            r#"k = { list = ["${HOST}", 1, ["${PORT}"]], "Signed Up" = "${NOPE}" }"#,
        )
        .unwrap()
        .remove("k")
        .unwrap();
        let mut warnings = Vec::new();
        let mut errors = Vec::new();
        interpolate_value(
            &mut value,
            "sinks.s.k",
            &env,
            MissingVars::Error,
            &mut warnings,
            &mut errors,
        );
        assert_eq!(value["list"][0].as_str(), Some("example.com"));
        assert_eq!(value["list"][2][0].as_str(), Some("8080"));
        assert_eq!(value["Signed Up"].as_str(), Some("${NOPE}"));
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            r#"sinks.s.k."Signed Up": environment variable NOPE is not set"#
        );
    }

    #[test]
    fn keys_are_not_interpolated() {
        let mut value =
            toml::Value::Table(toml::from_str(r#"t = { "${HOST}" = "${PORT}" }"#).unwrap());
        let mut errors = Vec::new();
        interpolate_value(
            &mut value,
            "",
            &env,
            MissingVars::Error,
            &mut Vec::new(),
            &mut errors,
        );
        assert!(errors.is_empty());
        let t = value["t"].as_table().unwrap();
        assert_eq!(t.keys().collect::<Vec<_>>(), ["${HOST}"]);
        assert_eq!(t["${HOST}"].as_str(), Some("8080"));
    }

    #[test]
    fn value_with_toml_syntax_stays_one_literal_string() {
        let mut value = toml::Value::Table(
            toml::from_str("[sinks.s]\ntype = \"x\"\nkey = \"${EVIL}\"").unwrap(),
        );
        interpolate_value(
            &mut value,
            "",
            &env,
            MissingVars::Error,
            &mut Vec::new(),
            &mut Vec::new(),
        );
        let sinks = value["sinks"].as_table().unwrap();
        assert_eq!(sinks.len(), 1, "no sink was added");
        assert_eq!(sinks["s"].as_table().unwrap().len(), 2);
        assert_eq!(sinks["s"]["key"].as_str(), env("EVIL").as_deref());
    }
}

//! SPEC §5 "Money": amounts and currencies.

use serde_json::Number;

use super::quote;
use crate::json::Json;

/// An amount: a JSON number as sent (never rounded), or a string such as `"$1,234.50"`. The
/// error text describes what was wrong without the field name.
pub fn parse_amount(value: &Json<'_>) -> Result<Number, String> {
    match value {
        Json::Number(n) => Ok(n.clone()),
        Json::String(text) => {
            parse_amount_text(text).ok_or_else(|| format!("{} is not a number", quote(text)))
        }
        Json::Bool(b) => Err(format!("{b} is not a number")),
        other => Err(format!("expected a number, got {}", other.kind())),
    }
}

/// Surrounding whitespace, every `,` and one leading or trailing currency symbol removed; what
/// remains must be a plain decimal (no exponent, no `inf`).
fn parse_amount_text(text: &str) -> Option<Number> {
    let text = text.trim();
    let text = match (text.chars().next(), text.chars().next_back()) {
        (Some(c), _) if is_currency_symbol(c) => &text[c.len_utf8()..],
        (_, Some(c)) if is_currency_symbol(c) => &text[..text.len() - c.len_utf8()],
        _ => text,
    };
    let cleaned: String = text.trim().chars().filter(|&c| c != ',').collect();
    let digits = cleaned.strip_prefix(['-', '+']).unwrap_or(&cleaned);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = !(whole.is_empty() && fraction.is_empty())
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit());
    if !plain {
        return None;
    }
    // Whole amounts stay integers so that "$7" is sent as 7, not 7.0.
    if !cleaned.contains('.')
        && let Ok(n) = cleaned.parse::<i64>()
    {
        return Some(n.into());
    }
    Number::from_f64(cleaned.parse().ok()?)
}

/// Unicode's currency symbols (general category Sc).
fn is_currency_symbol(c: char) -> bool {
    matches!(c,
        '$' | '\u{a2}'..='\u{a5}' | '\u{58f}' | '\u{60b}' | '\u{7fe}' | '\u{7ff}'
        | '\u{9f2}' | '\u{9f3}' | '\u{9fb}' | '\u{af1}' | '\u{bf9}' | '\u{e3f}' | '\u{17db}'
        | '\u{20a0}'..='\u{20c0}' | '\u{a838}' | '\u{fdfc}' | '\u{fe69}' | '\u{ff04}'
        | '\u{ffe0}' | '\u{ffe1}' | '\u{ffe5}' | '\u{ffe6}')
}

/// A positive amount, for `item_price`: anything else is left out rather than rejected.
pub fn positive_amount(value: &Json<'_>) -> Option<Number> {
    parse_amount(value)
        .ok()
        .filter(|n| n.as_f64().is_some_and(|f| f > 0.0))
}

/// An ISO 4217 code, trimmed and uppercased.
pub fn parse_currency(value: &Json<'_>) -> Result<&'static str, String> {
    let Json::String(text) = value else {
        return Err(format!(
            "expected an ISO 4217 currency code, got {}",
            value.kind()
        ));
    };
    currency_code(text).ok_or_else(|| format!("{} is not an ISO 4217 currency code", quote(text)))
}

/// The canonical code for `text` (any case, surrounding whitespace ignored).
pub fn currency_code(text: &str) -> Option<&'static str> {
    let text = text.trim();
    if text.len() != 3 {
        return None;
    }
    iso_currency::Currency::from_code(&text.to_ascii_uppercase()).map(|c| c.code())
}

/// `quantity`: a positive whole number (numeric strings too), else 1.
pub fn quantity(value: Option<&Json<'_>>) -> u64 {
    let n = match value {
        Some(Json::Number(n)) => n.as_u64().or_else(|| whole(n.as_f64()?)),
        Some(Json::String(text)) => {
            let text = text.trim();
            text.parse::<u64>()
                .ok()
                .or_else(|| whole(text.parse().ok()?))
        }
        _ => None,
    };
    n.filter(|&n| n > 0).unwrap_or(1)
}

fn whole(f: f64) -> Option<u64> {
    (f.is_finite() && f.fract() == 0.0 && f >= 1.0 && f < u64::MAX as f64).then_some(f as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Json<'_> {
        crate::json::parse_for_test(text)
    }

    fn amount(text: &str) -> Result<String, String> {
        parse_amount(&json(text)).map(|n| n.to_string())
    }

    #[test]
    fn numbers_pass_unrounded() {
        assert_eq!(amount("19.99").as_deref(), Ok("19.99"));
        assert_eq!(amount("100").as_deref(), Ok("100"));
        assert_eq!(amount("0.1234567").as_deref(), Ok("0.1234567"));
        assert_eq!(amount("-5").as_deref(), Ok("-5"));
    }

    #[test]
    fn strings_with_symbols_and_separators_parse() {
        assert_eq!(amount(r#""$1,234.50""#).as_deref(), Ok("1234.5"));
        assert_eq!(amount(r#"" 12.5 ""#).as_deref(), Ok("12.5"));
        assert_eq!(amount(r#""12.50€""#).as_deref(), Ok("12.5"));
        assert_eq!(amount(r#""£ 7""#).as_deref(), Ok("7"));
        assert_eq!(amount(r#""1,000,000""#).as_deref(), Ok("1000000"));
        assert_eq!(amount(r#"".5""#).as_deref(), Ok("0.5"));
    }

    #[test]
    fn anything_else_is_an_error_naming_the_value() {
        assert_eq!(amount(r#""abc""#), Err(r#""abc" is not a number"#.into()));
        assert_eq!(amount(r#""""#), Err(r#""" is not a number"#.into()));
        assert_eq!(amount("true"), Err("true is not a number".into()));
        assert_eq!(amount("{}"), Err("expected a number, got an object".into()));
        for bad in [
            r#""1e5""#,
            r#""inf""#,
            r#""NaN""#,
            r#""$$5""#,
            r#""1.2.3""#,
            r#""$""#,
            r#"".""#,
        ] {
            assert!(amount(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn item_price_must_be_positive() {
        assert_eq!(positive_amount(&json("5")), Some(5.into()));
        assert_eq!(positive_amount(&json("0")), None);
        assert_eq!(positive_amount(&json("-1")), None);
        assert_eq!(positive_amount(&json(r#""x""#)), None);
    }

    #[test]
    fn currency_is_iso_4217() {
        assert_eq!(parse_currency(&json(r#"" usd ""#)), Ok("USD"));
        assert_eq!(parse_currency(&json(r#""eur""#)), Ok("EUR"));
        assert_eq!(
            parse_currency(&json(r#""XYZ""#)),
            Err(r#""XYZ" is not an ISO 4217 currency code"#.into())
        );
        assert!(parse_currency(&json("840")).is_err());
    }

    #[test]
    fn quantity_is_a_positive_whole_number_else_one() {
        let q = |text: &str| quantity(Some(&json(text)));
        assert_eq!(q("3"), 3);
        assert_eq!(q(r#""4""#), 4);
        assert_eq!(q("2.0"), 2);
        assert_eq!(q("2.5"), 1);
        assert_eq!(q("0"), 1);
        assert_eq!(q("-2"), 1);
        assert_eq!(q(r#""many""#), 1);
        assert_eq!(quantity(None), 1);
    }
}

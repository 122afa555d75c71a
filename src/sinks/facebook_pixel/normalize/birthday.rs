//! `db`: dates of birth in the common written forms, normalized to `YYYYMMDD`.
//!
//! A hand-written tokenizer instead of a date library: the accepted forms are few, the
//! ambiguous ones (`A/B/YYYY`) need a rule of their own, and nothing may allocate except
//! the output.

use std::borrow::Cow;

/// Oldest birth year accepted; earlier years are typos, not customers.
const MIN_YEAR: i32 = 1800;
/// More tokens than any accepted form has ("January 15th, 1990" is 6 with separators).
const MAX_TOKENS: usize = 8;

/// A calendar date, not yet checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Date {
    year: i32,
    month: u32,
    day: u32,
}

impl Date {
    /// Whether this day exists and the year is a plausible birth year.
    fn is_valid(self, current_year: i32) -> bool {
        (MIN_YEAR..=current_year).contains(&self.year)
            && (1..=12).contains(&self.month)
            && (1..=days_in_month(self.year, self.month)).contains(&self.day)
    }

    /// Whether the day exists, ignoring the year range (used to pick between readings).
    fn exists(self) -> bool {
        (1..=12).contains(&self.month)
            && (1..=days_in_month(self.year, self.month)).contains(&self.day)
    }

    fn to_yyyymmdd(self) -> String {
        let mut out = String::with_capacity(8);
        push_padded(&mut out, self.year, 4);
        push_padded(&mut out, self.month as i32, 2);
        push_padded(&mut out, self.day as i32, 2);
        out
    }
}

/// Appends `value` (non-negative, at most `width` digits) zero-padded to `width`.
fn push_padded(out: &mut String, value: i32, width: u32) {
    for exp in (0..width).rev() {
        let digit = (value / 10_i32.pow(exp)) % 10;
        out.push(char::from(b'0' + digit.unsigned_abs().min(9) as u8));
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Normalized `YYYYMMDD`, or `None` for anything that is not a real date of birth.
pub(super) fn birthday(raw: &str, current_year: i32) -> Option<Cow<'_, str>> {
    let s = raw.trim();
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
        let date = compact(s)?;
        return date.is_valid(current_year).then_some(Cow::Borrowed(s));
    }
    let date = date_before_time(s).or_else(|| parse(s))?;
    date.is_valid(current_year)
        .then(|| Cow::Owned(date.to_yyyymmdd()))
}

/// `YYYYMMDD`.
fn compact(s: &str) -> Option<Date> {
    Some(Date {
        year: number(s.get(0..4)?)? as i32,
        month: number(s.get(4..6)?)?,
        day: number(s.get(6..8)?)?,
    })
}

/// The date part of a datetime such as `1990-12-31T08:30:00Z` or `1990-12-31 08:30`.
fn date_before_time(s: &str) -> Option<Date> {
    let split = s.find(['T', 't', ' '])?;
    let (date, time) = (s.get(..split)?, s.get(split + 1..)?);
    if !time.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    match tokenize(date)?.as_slice() {
        [Token::Num(n)] if n.len() == 8 => compact(n),
        tokens => numeric(tokens),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token<'a> {
    /// A run of ASCII digits.
    Num(&'a str),
    /// A run of ASCII letters.
    Word(&'a str),
    /// A run of separator characters.
    Sep(&'a str),
}

/// Fixed-capacity token list, so tokenizing never allocates.
struct Tokens<'a> {
    items: [Token<'a>; MAX_TOKENS],
    len: usize,
}

impl<'a> Tokens<'a> {
    fn as_slice(&self) -> &[Token<'a>] {
        self.items.get(..self.len).unwrap_or_default()
    }
}

fn is_separator(b: u8) -> bool {
    matches!(b, b' ' | b',' | b'-' | b'/' | b'.' | b'\t')
}

/// Splits `s` into digit, letter and separator runs; `None` on any other character or
/// when there are more tokens than any accepted form has.
fn tokenize(s: &str) -> Option<Tokens<'_>> {
    let mut tokens = Tokens {
        items: [Token::Sep(""); MAX_TOKENS],
        len: 0,
    };
    let bytes = s.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        let class = |b: u8| -> Option<u8> {
            if b.is_ascii_digit() {
                Some(0)
            } else if b.is_ascii_alphabetic() {
                Some(1)
            } else if is_separator(b) {
                Some(2)
            } else {
                None
            }
        };
        let kind = class(*bytes.get(start)?)?;
        let len = bytes
            .get(start..)?
            .iter()
            .position(|&b| class(b) != Some(kind))
            .unwrap_or(bytes.len() - start);
        // Runs are pure ASCII, so both ends are char boundaries.
        let text = s.get(start..start + len)?;
        let token = match kind {
            0 => Token::Num(text),
            1 => Token::Word(text),
            _ => Token::Sep(text),
        };
        *tokens.items.get_mut(tokens.len)? = token;
        tokens.len += 1;
        start += len;
    }
    Some(tokens)
}

/// Parses every accepted form except the compact and datetime ones.
fn parse(s: &str) -> Option<Date> {
    let tokens = tokenize(s)?;
    let tokens = tokens.as_slice();
    numeric(tokens).or_else(|| with_month_name(tokens))
}

/// `YYYY-MM-DD`, `YYYY/MM/DD`, `YYYY.MM.DD`; `A/B/YYYY` and `A-B-YYYY` month first;
/// `A.B.YYYY` day first. The ambiguous forms fall back to the other reading only when the
/// preferred one is not a real date (`31/12/1990` can only be day first).
fn numeric(tokens: &[Token<'_>]) -> Option<Date> {
    let &[
        Token::Num(a),
        Token::Sep(s1),
        Token::Num(b),
        Token::Sep(s2),
        Token::Num(c),
    ] = tokens
    else {
        return None;
    };
    if s1 != s2 || !matches!(s1, "-" | "/" | ".") {
        return None;
    }
    let short = |n: &str| (1..=2).contains(&n.len());
    if a.len() == 4 && short(b) && short(c) {
        return Some(Date {
            year: number(a)? as i32,
            month: number(b)?,
            day: number(c)?,
        });
    }
    if !(short(a) && short(b) && c.len() == 4) {
        return None;
    }
    let (a, b, year) = (number(a)?, number(b)?, number(c)? as i32);
    let month_first = Date {
        year,
        month: a,
        day: b,
    };
    let day_first = Date {
        year,
        month: b,
        day: a,
    };
    let (preferred, other) = if s1 == "." {
        (day_first, month_first)
    } else {
        (month_first, day_first)
    };
    Some(if preferred.exists() { preferred } else { other })
}

/// An English month name with a day and a 4-digit year: "January 15, 1990",
/// "15 January 1990", "Jan 15 1990", "15-Jan-1990", "1990 Jan 15", "Jan 15th, 1990".
fn with_month_name(tokens: &[Token<'_>]) -> Option<Date> {
    // The three values in order, skipping separators and an ordinal suffix on the day.
    let mut values: [Token<'_>; 3] = [Token::Sep(""); 3];
    let mut count = 0;
    let mut previous: Option<Token<'_>> = None;
    for &token in tokens {
        match token {
            Token::Sep(_) => {}
            Token::Word(w)
                if matches!(previous, Some(Token::Num(n)) if n.len() <= 2) && is_ordinal(w) => {}
            value => {
                *values.get_mut(count)? = value;
                count += 1;
            }
        }
        previous = Some(token);
    }
    if count != 3 {
        return None;
    }
    let (month, day, year) = match values {
        [Token::Word(m), Token::Num(d), Token::Num(y)] => (m, d, y),
        [Token::Num(d), Token::Word(m), Token::Num(y)] if y.len() == 4 => (m, d, y),
        [Token::Num(y), Token::Word(m), Token::Num(d)] if y.len() == 4 => (m, d, y),
        _ => return None,
    };
    if year.len() != 4 || !(1..=2).contains(&day.len()) {
        return None;
    }
    Some(Date {
        year: number(year)? as i32,
        month: month_number(month)?,
        day: number(day)?,
    })
}

fn is_ordinal(word: &str) -> bool {
    ["st", "nd", "rd", "th"]
        .iter()
        .any(|o| o.eq_ignore_ascii_case(word))
}

/// 1-12 for an English month name or its abbreviation (3 letters, or "Sept"), any case.
fn month_number(word: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    if word.eq_ignore_ascii_case("sept") {
        return Some(9);
    }
    MONTHS
        .iter()
        .position(|full| {
            word.eq_ignore_ascii_case(full)
                || (word.len() == 3
                    && full
                        .get(..3)
                        .is_some_and(|abbr| abbr.eq_ignore_ascii_case(word)))
        })
        .and_then(|i| u32::try_from(i + 1).ok())
}

/// An ASCII digit run of at most 4 digits as a number.
fn number(digits: &str) -> Option<u32> {
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        digits
            .bytes()
            .fold(0, |acc, b| acc * 10 + u32::from(b - b'0')),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const YEAR: i32 = 2025;

    fn db(raw: &str) -> Option<String> {
        birthday(raw, YEAR).map(Cow::into_owned)
    }

    #[test]
    fn iso_and_compact() {
        assert_eq!(db("1990-12-31").as_deref(), Some("19901231"));
        assert_eq!(db("\t1990-12-31\n").as_deref(), Some("19901231"));
        assert_eq!(db("1990/12/31").as_deref(), Some("19901231"));
        assert_eq!(db("1990.1.5").as_deref(), Some("19900105"));
        assert_eq!(db("19901231").as_deref(), Some("19901231"));
        assert!(matches!(
            birthday(" 19901231 ", YEAR),
            Some(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn datetime_keeps_date_part() {
        assert_eq!(db("1990-12-31T08:30:00Z").as_deref(), Some("19901231"));
        assert_eq!(
            db("1990-12-31t08:30:00.000+02:00").as_deref(),
            Some("19901231")
        );
        assert_eq!(db("1990-12-31 08:30").as_deref(), Some("19901231"));
        assert_eq!(db("12/31/1990 00:00:00").as_deref(), Some("19901231"));
        assert_eq!(db("1990-12-31T"), None);
        assert_eq!(db("1990-02-30T00:00"), None);
    }

    #[test]
    fn ambiguous_numeric_forms() {
        // Month first for `/` and `-`, swapped only when impossible.
        assert_eq!(db("01/02/1990").as_deref(), Some("19900102"));
        assert_eq!(db("1-2-1990").as_deref(), Some("19900102"));
        assert_eq!(db("31/12/1990").as_deref(), Some("19901231"));
        assert_eq!(db("12-31-1990").as_deref(), Some("19901231"));
        // Day first for `.`, swapped only when impossible.
        assert_eq!(db("01.02.1990").as_deref(), Some("19900201"));
        assert_eq!(db("31.12.1990").as_deref(), Some("19901231"));
        assert_eq!(db("12.31.1990").as_deref(), Some("19901231"));
        // Neither reading is a date.
        for bad in [
            "00-15-1990",
            "01-00-1990",
            "13-13-1990",
            "32-05-1990",
            "01/02-1990",
        ] {
            assert_eq!(db(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn month_names() {
        for raw in [
            "January 15, 1990",
            "15 January 1990",
            "Jan 15 1990",
            "15-Jan-1990",
            "jan. 15, 1990",
            "JANUARY 15TH, 1990",
            "15th January 1990",
            "1990 Jan 15",
            "15JAN1990",
        ] {
            assert_eq!(db(raw).as_deref(), Some("19900115"), "{raw:?}");
        }
        assert_eq!(db("Sept 3, 1990").as_deref(), Some("19900903"));
        assert_eq!(db("3 sep 1990").as_deref(), Some("19900903"));
        assert_eq!(db("May 1 2000").as_deref(), Some("20000501"));
        for bad in [
            "Janu 15 1990",
            "Jan 1990",
            "Jan 15 90",
            "Jan 15 1990 Feb",
            "Foo 15 1990",
            "Feb 30 2000",
        ] {
            assert_eq!(db(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn leap_years() {
        assert_eq!(db("2000-02-29").as_deref(), Some("20000229"));
        assert_eq!(db("1996-02-29").as_deref(), Some("19960229"));
        assert_eq!(db("1900-02-29"), None);
        assert_eq!(db("1999-02-29"), None);
        assert_eq!(db("02/29/1999"), None);
        assert_eq!(db("1999-02-28").as_deref(), Some("19990228"));
    }

    #[test]
    fn year_range() {
        assert_eq!(db("1800-01-01").as_deref(), Some("18000101"));
        assert_eq!(db("1799-12-31"), None);
        assert_eq!(birthday("2025-06-01", 2025).as_deref(), Some("20250601"));
        assert_eq!(birthday("2026-01-01", 2025), None);
        assert_eq!(birthday("20260101", 2025), None);
    }

    #[test]
    fn impossible_or_partial_dates() {
        for bad in [
            "",
            "1990",
            "1990123",
            "abc",
            "1990-13-01",
            "1990-00-10",
            "1990-01-32",
            "1990-01-00",
            "1990-04-31",
            "---",
            "...",
            "199012311",
            "1990-12-31-01",
            "1990-12-3é",
            "1990–12–31",
            "15 January 1990 10:00",
        ] {
            assert_eq!(db(bad), None, "{bad:?}");
        }
    }
}

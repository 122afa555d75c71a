//! SPEC §2 `event_time`: which timestamp, how it is read, and Meta's time window.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use super::message::{SegmentMessage, TIME_FIELDS};
use super::{Rejection, quote};
use crate::json::Json;
use crate::sinks::facebook_pixel::capi::ActionSource;

/// Numbers above this are milliseconds (10^11 seconds is the year 5138).
const MILLIS_THRESHOLD: f64 = 1e11;
const DAY_SECS: i64 = 86_400;

/// When the event happened, and which field said so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventTime {
    /// Unix milliseconds.
    pub millis: i64,
    /// `None` when no source was present and the time is `now`.
    pub source: Option<&'static str>,
}

/// The event's time, read from the first present source; `now` when none.
pub fn read(message: &SegmentMessage<'_>, now: DateTime<Utc>) -> Result<EventTime, Rejection> {
    for (field, value) in TIME_FIELDS.into_iter().zip(&message.times) {
        if let Some(value) = value {
            let millis = parse(value).ok_or_else(|| {
                let problem = match value {
                    Json::String(text) => format!(
                        "{} is not an ISO-8601 time or a Unix timestamp",
                        quote(text)
                    ),
                    other => format!(
                        "expected an ISO-8601 string or a Unix timestamp, got {}",
                        other.kind()
                    ),
                };
                Rejection::new(field, problem)
            })?;
            return Ok(EventTime {
                millis,
                source: Some(field),
            });
        }
    }
    Ok(EventTime {
        millis: now.timestamp_millis(),
        source: None,
    })
}

/// Unix seconds for `event_time`, checked against Meta's window: older than 7 days (62 for
/// physical stores) is rejected, as is more than `max_future_secs` ahead; less ahead than that is
/// clock skew and clamped to now.
pub fn check_window(
    time: EventTime,
    now: DateTime<Utc>,
    action_source: ActionSource,
    max_future_secs: u64,
) -> Result<i64, Rejection> {
    let secs = time.millis.div_euclid(1000);
    let field = time.source.unwrap_or("event_time");
    let now_secs = now.timestamp();
    let max_age_days = match action_source {
        ActionSource::PhysicalStore => 62,
        _ => 7,
    };
    if now_secs.saturating_sub(secs) > max_age_days * DAY_SECS {
        return Err(Rejection::new(
            field,
            format!(
                "{} is older than {max_age_days} days, Meta's limit for {action_source} events",
                describe(secs)
            ),
        ));
    }
    let ahead = secs.saturating_sub(now_secs);
    if ahead > i64::try_from(max_future_secs).unwrap_or(i64::MAX) {
        return Err(Rejection::new(
            field,
            format!(
                "{} is {ahead} s in the future (max_future_secs = {max_future_secs}); check the sender's clock",
                describe(secs)
            ),
        ));
    }
    Ok(secs.min(now_secs))
}

fn describe(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| format!("Unix time {secs}"))
}

/// Unix milliseconds from an ISO-8601 string (no zone = UTC), or seconds / milliseconds given as
/// a number or numeric string.
pub fn parse(value: &Json<'_>) -> Option<i64> {
    match value {
        Json::Number(n) => from_number(n.as_f64()?),
        Json::String(text) => parse_text(text.trim()),
        _ => None,
    }
}

fn from_number(n: f64) -> Option<i64> {
    if !n.is_finite() {
        return None;
    }
    let millis = if n.abs() > MILLIS_THRESHOLD {
        n
    } else {
        n * 1000.0
    };
    // Out-of-range values saturate; the window check then rejects them.
    Some(millis.trunc() as i64)
}

fn parse_text(text: &str) -> Option<i64> {
    if text.is_empty() {
        return None;
    }
    let numeric = text
        .strip_prefix('-')
        .unwrap_or(text)
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'.');
    if numeric {
        return from_number(text.parse().ok()?);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis());
    }
    // Other ISO-8601 spellings: `Z` as an offset, offsets without minutes or colon (`+02`,
    // `+0200`), times without seconds.
    let zoned = match text.strip_suffix(['Z', 'z']) {
        Some(local) => Cow::Owned(format!("{local}+00:00")),
        None => Cow::Borrowed(text),
    };
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f%#z",
        "%Y-%m-%d %H:%M:%S%.f%#z",
        "%Y-%m-%dT%H:%M%#z",
        "%Y-%m-%d %H:%M%#z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(&zoned, format) {
            return Some(t.timestamp_millis());
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    let text = text.strip_suffix('Z').unwrap_or(text);
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().map(|d| {
        d.and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_millis()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2024-06-15T12:00:00Z".parse().unwrap()
    }

    fn ms(text: &str) -> i64 {
        text.parse::<DateTime<Utc>>().unwrap().timestamp_millis()
    }

    fn parse_json(text: &str) -> Option<i64> {
        parse(&crate::json::parse_for_test(text))
    }

    #[test]
    fn iso_strings_with_and_without_zone() {
        let expected = ms("2024-06-15T11:00:00.250Z");
        assert_eq!(parse_json(r#""2024-06-15T11:00:00.250Z""#), Some(expected));
        assert_eq!(
            parse_json(r#""2024-06-15T13:00:00.250+02:00""#),
            Some(expected)
        );
        assert_eq!(
            parse_json(r#""2024-06-15T13:00:00.250+0200""#),
            Some(expected)
        );
        let minute = ms("2024-06-15T11:00:00Z");
        assert_eq!(parse_json(r#""2024-06-15T11:00Z""#), Some(minute));
        assert_eq!(parse_json(r#""2024-06-15T13:00:00+02""#), Some(minute));
        assert_eq!(parse_json(r#""2024-06-15T13:00+02:00""#), Some(minute));
        assert_eq!(parse_json(r#""2024-06-15 11:00:00Z""#), Some(minute));
        // No zone means UTC.
        assert_eq!(parse_json(r#""2024-06-15T11:00:00.250""#), Some(expected));
        assert_eq!(parse_json(r#""2024-06-15 11:00:00.250""#), Some(expected));
        assert_eq!(
            parse_json(r#""2024-06-15""#),
            Some(ms("2024-06-15T00:00:00Z"))
        );
    }

    #[test]
    fn numbers_are_seconds_unless_above_1e11() {
        let expected = ms("2024-06-15T11:00:00Z");
        assert_eq!(parse_json("1718449200"), Some(expected));
        assert_eq!(parse_json("1718449200.9"), Some(expected + 900));
        assert_eq!(parse_json("1718449200000"), Some(expected));
        assert_eq!(parse_json(r#""1718449200""#), Some(expected));
        assert_eq!(parse_json(r#""1718449200000""#), Some(expected));
    }

    #[test]
    fn garbage_does_not_parse() {
        for text in [r#""yesterday""#, r#""""#, "true", "{}", r#""2024-13-45""#] {
            assert_eq!(parse_json(text), None, "{text}");
        }
    }

    #[test]
    fn first_present_source_must_parse() {
        let mut text =
            br#"{"timestamp":null,"originalTimestamp":"nope","sentAt":"2024-06-15T11:00:00Z"}"#
                .to_vec();
        let message = SegmentMessage::parse(&mut text, &Default::default()).unwrap();
        let err = read(&message, now()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "originalTimestamp: \"nope\" is not an ISO-8601 time or a Unix timestamp"
        );
        let mut text = br#"{"sentAt":"2024-06-15T11:00:00Z"}"#.to_vec();
        let message = SegmentMessage::parse(&mut text, &Default::default()).unwrap();
        assert_eq!(
            read(&message, now()),
            Ok(EventTime {
                millis: ms("2024-06-15T11:00:00Z"),
                source: Some("sentAt")
            })
        );
        let mut text = b"{}".to_vec();
        let message = SegmentMessage::parse(&mut text, &Default::default()).unwrap();
        assert_eq!(
            read(&message, now()),
            Ok(EventTime {
                millis: now().timestamp_millis(),
                source: None
            })
        );
    }

    fn at(millis: i64) -> EventTime {
        EventTime {
            millis,
            source: Some("timestamp"),
        }
    }

    #[test]
    fn fractions_are_truncated_to_seconds() {
        let t = ms("2024-06-15T11:00:00.999Z");
        assert_eq!(
            check_window(at(t), now(), ActionSource::Website, 60),
            Ok(t.div_euclid(1000))
        );
    }

    #[test]
    fn window_is_seven_days_or_62_for_physical_stores() {
        let eight_days_ago = now().timestamp_millis() - 8 * DAY_SECS * 1000;
        let err = check_window(at(eight_days_ago), now(), ActionSource::Website, 60).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("timestamp: 2024-06-07T12:00:00Z is older than 7 days")
        );
        assert!(check_window(at(eight_days_ago), now(), ActionSource::PhysicalStore, 60).is_ok());
        let seven_days_ago = now().timestamp_millis() - 7 * DAY_SECS * 1000;
        assert!(check_window(at(seven_days_ago), now(), ActionSource::Website, 60).is_ok());
        let old = now().timestamp_millis() - 63 * DAY_SECS * 1000;
        assert!(check_window(at(old), now(), ActionSource::PhysicalStore, 60).is_err());
    }

    #[test]
    fn near_future_is_clamped_far_future_rejected() {
        let now_ms = now().timestamp_millis();
        assert_eq!(
            check_window(at(now_ms + 30_000), now(), ActionSource::Website, 60),
            Ok(now().timestamp())
        );
        let err =
            check_window(at(now_ms + 3_600_000), now(), ActionSource::Website, 60).unwrap_err();
        assert!(err.to_string().contains("3600 s in the future"), "{err}");
        assert!(check_window(at(now_ms + 3_600_000), now(), ActionSource::Website, 7200).is_ok());
    }
}

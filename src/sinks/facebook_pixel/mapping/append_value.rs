//! Value updates: an `AppendValue` event adds a predicted lifetime value to a conversion sent
//! earlier, named by `original_event_data`.
//!
//! Meta's pLTV guide: `original_event_data.event_name` is required, with the original's
//! `order_id` and/or `event_id`; the AppendValue's `event_time` "must be later than the
//! conversion event's `event_time`"; it is sent "within 7 days of sending the conversion event";
//! `custom_data.predicted_ltv` is required and positive, with a `currency`.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use super::OriginalEvent;
use super::event_time;
use super::message::{SegmentMessage, plain_text};
use super::outcome::Rejection;
use crate::json::{Json, Object, member};
use crate::sinks::facebook_pixel::capi::OriginalEventData;

/// Meta's window for an AppendValue after its conversion was sent.
pub const WINDOW_SECS: i64 = 7 * 86_400;

/// The `order_id` (or `orderId`) property, the key of remembered conversions.
pub fn order_id<'j>(message: &'j SegmentMessage<'_>) -> Option<Cow<'j, str>> {
    let properties = message.properties.as_object()?;
    first(properties, &["order_id", "orderId"]).and_then(plain_text)
}

/// `original_event_data` from the message's `original_event_*` properties, completed by what
/// the sink remembered of the conversion (`recalled`), checked against Meta's rules.
pub fn original_event_data<'j>(
    message: &'j SegmentMessage<'_>,
    event_time: i64,
    now: DateTime<Utc>,
    recalled: Option<OriginalEvent>,
) -> Result<OriginalEventData<'j>, Rejection> {
    static NONE: Object<'static> = Vec::new();
    let properties = message.properties.as_object().unwrap_or(&NONE);
    let order_id = order_id(message);
    let event_id = first(properties, &["original_event_id", "originalEventId"])
        .and_then(plain_text)
        .or_else(|| Some(Cow::Owned(recalled.as_ref()?.event_id.clone()?)));
    if order_id.is_none() && event_id.is_none() {
        return Err(Rejection::new(
            "properties.order_id",
            "missing: an AppendValue event names its conversion by order_id or original_event_id",
        ));
    }
    let event_name = match first(properties, &["original_event_name", "originalEventName"]) {
        Some(name) => plain_text(name).ok_or_else(|| {
            Rejection::new(
                "properties.original_event_name",
                "expected the conversion's event name",
            )
        })?,
        None => match &recalled {
            Some(original) => Cow::Owned(original.event_name.clone()),
            None => {
                return Err(Rejection::new(
                    "properties.original_event_name",
                    "missing, and no conversion with this order_id was remembered: send the original's event name (\"Purchase\"), or turn on enrichment so the sink remembers what it sent",
                ));
            }
        },
    };
    let original_time = match first(properties, &["original_event_time", "originalEventTime"]) {
        Some(value) => Some(
            event_time::parse(value)
                .map(|ms| ms.div_euclid(1000))
                .ok_or_else(|| {
                    Rejection::new(
                        "properties.original_event_time",
                        "is not an ISO-8601 time or a Unix timestamp",
                    )
                })?,
        ),
        None => recalled.as_ref().map(|o| o.event_time),
    };
    if let Some(original) = original_time
        && original >= event_time
    {
        return Err(Rejection::new(
            "timestamp",
            "an AppendValue must be later than the conversion it adds value to (Meta refuses it otherwise)",
        ));
    }
    // Sent time when the sink remembers it; else the conversion's own time, which is no later.
    let since = recalled.as_ref().map(|o| o.sent_at).or(original_time);
    if let Some(since) = since {
        let age = now.timestamp() - since;
        if age > WINDOW_SECS {
            return Err(Rejection::new(
                "timestamp",
                format!(
                    "the conversion was sent {} days ago; Meta takes an AppendValue within 7 days of it",
                    age / 86_400
                ),
            ));
        }
    }
    Ok(OriginalEventData {
        event_name,
        event_time: original_time,
        order_id,
        event_id,
    })
}

fn first<'j, 'a>(properties: &'j Object<'a>, keys: &[&str]) -> Option<&'j Json<'a>> {
    keys.iter()
        .find_map(|key| member(properties, key))
        .filter(|v| !v.is_null())
}

//! What is remembered of one order: the conversion sent with its `custom_data.order_id`, so
//! that a later `AppendValue` of that order (Meta's delayed predicted-LTV update) can name it in
//! `original_event_data`.
//!
//! An order is keyed by SHA-256 of `order:ID`, as users are ([`super::profile::user_key`]), so no
//! order id is stored in the clear. What is kept of it is not personal data: the event's name,
//! its time and the time it was sent, and its `event_id` (Segment's random `messageId`). It is
//! useful only within Meta's window ([`ORDER_WINDOW_SECS`]), and dropped after it.

use serde::{Deserialize, Serialize};

use super::profile::{Key, hashed_key};
use crate::sinks::facebook_pixel::mapping::OriginalEvent;

/// How long after the conversion was sent an order is recalled. Meta: "Send the AppendValue
/// event within 7 days of sending the conversion event to Meta"
/// (developers.facebook.com/documentation/ads-commerce/conversions-api/guides/predicted-lifetime-value);
/// an AppendValue naming an older one would be refused, so past this it is forgotten.
pub const ORDER_WINDOW_SECS: i64 = 7 * 24 * 3600;

/// The store key of an `order_id`.
pub fn order_key(id: &str) -> Key {
    hashed_key("order:", id)
}

/// Whether `order` may still be named by an AppendValue at `now`. Saturating: times come from
/// stores another instance (or a clock set otherwise) may have written.
pub fn fresh(order: &OriginalEvent, now: i64) -> bool {
    now.saturating_sub(order.sent_at) < ORDER_WINDOW_SECS
}

/// Whether `mine` stays when another instance wrote `theirs` for the same order: the first
/// conversion is the one AppendValue updates, so the earlier send wins, unless `mine` is past
/// the window (at `now`, or already when `theirs` was sent: that instance replaced it because
/// it had expired, and this one may not have seen that much time pass yet).
pub fn keeps(mine: &OriginalEvent, theirs: &OriginalEvent, now: i64) -> bool {
    fresh(mine, now) && fresh(mine, theirs.sent_at) && mine.sent_at <= theirs.sent_at
}

/// The order as stored: compact JSON, as profiles are.
pub fn encode(order: &OriginalEvent) -> Vec<u8> {
    let stored = Stored {
        name: order.event_name.clone(),
        time: order.event_time,
        id: order.event_id.clone(),
        sent: order.sent_at,
    };
    serde_json::to_vec(&stored).expect("an order serializes")
}

/// A stored order; `None` when it cannot be read (it is then dropped, not guessed at).
pub fn decode(bytes: &[u8]) -> Option<OriginalEvent> {
    let stored: Stored = serde_json::from_slice(bytes).ok()?;
    Some(OriginalEvent {
        event_name: stored.name,
        event_time: stored.time,
        event_id: stored.id,
        sent_at: stored.sent,
    })
}

#[derive(Serialize, Deserialize)]
struct Stored {
    /// `event_name`.
    #[serde(rename = "n")]
    name: String,
    /// `event_time`, Unix seconds.
    #[serde(rename = "t")]
    time: i64,
    /// `event_id`, when it had one.
    #[serde(default, rename = "i", skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    /// When it was sent, Unix seconds: the start of the window.
    #[serde(rename = "s")]
    sent: i64,
}

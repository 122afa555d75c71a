//! Business messaging: `messaging_channel` and the ids Meta matches a conversation with.
//!
//! Meta's "Conversions API for Business Messaging": the event is `business_messaging`, names its
//! channel, and carries the channel's ids in user_data, unhashed: WhatsApp `ctwa_clid` (which
//! Meta calls required) and `whatsapp_business_account_id`, Messenger `page_id` and
//! `page_scoped_user_id`, Instagram `ig_account_id` and `ig_sid`.

use std::borrow::Cow;

use super::message::{MessagingId, Part, SegmentMessage, plain_text};
use super::outcome::{Rejection, quote};
use crate::json::{Json, member};
use crate::sinks::facebook_pixel::capi::{MessagingChannel, UserData};

/// The ids each channel cannot go without.
fn required(channel: MessagingChannel) -> &'static [MessagingId] {
    match channel {
        MessagingChannel::Whatsapp => &[MessagingId::CtwaClid],
        MessagingChannel::Messenger => &[MessagingId::PageId, MessagingId::PageScopedUserId],
        MessagingChannel::Instagram => &[MessagingId::IgAccountId, MessagingId::IgSid],
    }
}

/// The channel of a `business_messaging` event, with its ids added to `user`; or what Meta
/// would refuse.
pub fn build<'j>(
    message: &'j SegmentMessage<'_>,
    user: &mut UserData<'j>,
) -> Result<MessagingChannel, Rejection> {
    let properties = message.properties.as_object();
    let context = match &message.context {
        Part::Object(context) => Some(&**context),
        _ => None,
    };
    let (given, field) = properties
        .and_then(|p| member(p, "messaging_channel").map(|v| (v, "properties.messaging_channel")))
        .or_else(|| Some((context?.messaging_channel.as_ref()?, "context.messaging_channel")))
        .ok_or_else(|| {
            Rejection::new(
                "properties.messaging_channel",
                "missing: business_messaging events need their channel (whatsapp, messenger or instagram)",
            )
        })?;
    let channel = given
        .as_str()
        .and_then(|name| {
            MessagingChannel::ALL
                .into_iter()
                .find(|c| c.as_str().eq_ignore_ascii_case(name.trim()))
        })
        .ok_or_else(|| {
            let shown = match given {
                Json::String(text) => quote(text),
                other => other.kind().to_string(),
            };
            Rejection::new(
                field,
                format!(
                    "{shown} is not a Meta messaging channel (whatsapp, messenger or instagram)"
                ),
            )
        })?;
    for id in MessagingId::ALL {
        let value = properties
            .and_then(|p| member(p, id.key()).or_else(|| member(p, id.camel())))
            .or_else(|| context?.messaging_ids[id as usize].as_ref())
            .and_then(plain_text);
        if value.is_some() {
            *slot(user, id) = value;
        }
    }
    let missing: Vec<&str> = required(channel)
        .iter()
        .filter(|&&id| slot(user, id).is_none())
        .map(|id| id.key())
        .collect();
    if !missing.is_empty() {
        return Err(Rejection::new(
            "properties",
            format!(
                "{} events need {} (in properties or context), as Meta matches them by it",
                channel.as_str(),
                missing.join(" and ")
            ),
        ));
    }
    Ok(channel)
}

/// Where `id` goes in user_data.
fn slot<'u, 'j>(user: &'u mut UserData<'j>, id: MessagingId) -> &'u mut Option<Cow<'j, str>> {
    match id {
        MessagingId::CtwaClid => &mut user.ctwa_clid,
        MessagingId::PageId => &mut user.page_id,
        MessagingId::PageScopedUserId => &mut user.page_scoped_user_id,
        MessagingId::IgAccountId => &mut user.ig_account_id,
        MessagingId::IgSid => &mut user.ig_sid,
        MessagingId::WhatsappBusinessAccountId => &mut user.whatsapp_business_account_id,
    }
}

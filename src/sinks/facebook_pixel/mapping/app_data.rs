//! App events: Meta's `app_data` from what Segment's mobile libraries put in `context`.
//!
//! Meta's "App Data Parameters": `extinfo` is 16 strings in a fixed order, all present, `""`
//! where a value is missing; slot 0 (`i2` for iOS, `a2` for Android) and slot 4 (the OS
//! version) are required. Meta's own examples send every slot as a string, so numbers
//! (screen sizes) are sent as their text.

use std::borrow::Cow;

use super::message::{Part, SegmentMessage, plain_text};
use super::outcome::Rejection;
use crate::json::Json;
use crate::sinks::facebook_pixel::capi::AppData;

/// `app_data` for an app event, or why Meta would refuse it.
pub fn build<'j>(message: &'j SegmentMessage<'_>) -> Result<AppData<'j>, Rejection> {
    let Part::Object(context) = &message.context else {
        return Err(missing_os());
    };
    let device = &context.device;
    let version = match device.os_name.as_ref().and_then(plain_text).as_deref() {
        Some(os) if is_ios(os) => "i2",
        Some(os) if os.eq_ignore_ascii_case("android") => "a2",
        Some(_) => {
            return Err(Rejection::new(
                "context.os.name",
                "app events need an iOS or Android device (Meta's app_data.extinfo knows no other)",
            ));
        }
        None => return Err(missing_os()),
    };
    let os_version = device
        .os_version
        .as_ref()
        .and_then(plain_text)
        .ok_or_else(|| {
            Rejection::new(
                "context.os.version",
                "missing: Meta requires the OS version in an app event's app_data.extinfo",
            )
        })?;
    let app = context.app.as_deref();
    let slot = |value: Option<&'j Json<'_>>| value.and_then(plain_text).unwrap_or_default();
    // Segment writes `en-US`; Meta's examples are `en_US`.
    let locale = match device.locale.as_ref().and_then(plain_text) {
        Some(Cow::Borrowed(l)) if l.contains('-') => Cow::Owned(l.replace('-', "_")),
        Some(l) => l,
        None => Cow::Borrowed(""),
    };
    let empty = || Cow::Borrowed("");
    // Segment's tracking flag is the device's (ATT / the Android ad id setting); without the
    // advertising-id plugin it is absent, and then tracking is not assumed.
    let advertiser_tracking_enabled = matches!(context.ad_tracking_enabled, Some(Json::Bool(true)));
    Ok(AppData {
        advertiser_tracking_enabled,
        // An app that lets people opt out of its own tracking stops Segment from sending:
        // a message that arrives was tracked with the app's consent.
        application_tracking_enabled: true,
        extinfo: [
            Cow::Borrowed(version),
            slot(app.and_then(|a| a.namespace.as_ref())),
            slot(app.and_then(|a| a.build.as_ref())),
            slot(app.and_then(|a| a.version.as_ref())),
            os_version,
            slot(device.model.as_ref()),
            locale,
            // No time zone database here to abbreviate `context.timezone` with.
            empty(),
            slot(device.carrier.as_ref()),
            slot(device.screen_width.as_ref()),
            slot(device.screen_height.as_ref()),
            slot(device.screen_density.as_ref()),
            // CPU cores and storage sizes: Segment's libraries do not collect them.
            empty(),
            empty(),
            empty(),
            slot(device.timezone.as_ref()),
        ],
    })
}

fn missing_os() -> Rejection {
    Rejection::new(
        "context.os",
        "app events need context.os.name (iOS or Android) and context.os.version for Meta's app_data.extinfo, as Segment's mobile libraries send them",
    )
}

fn is_ios(os: &str) -> bool {
    ["ios", "ipados"]
        .iter()
        .any(|name| os.eq_ignore_ascii_case(name))
}

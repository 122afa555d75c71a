//! SPEC §6: Limited Data Use.

use std::borrow::Cow;

use crate::json::Json;
use crate::sinks::facebook_pixel::capi::DataProcessing;

/// The per-event override, `integrations[<destination>].dataProcessingOptions =
/// [[options], country, state]`, applies whether the setting is on or off: the sender asked for
/// it explicitly. A malformed override falls back to the setting.
/// `destination` is the message's `integrations` entry for this destination.
/// `limited_data_use` is the setting's `(ldu_country, ldu_state)` when it is on.
pub fn options<'j>(
    destination: Option<&'j Json<'_>>,
    limited_data_use: Option<(i64, i64)>,
) -> Option<DataProcessing<'j>> {
    destination
        .and_then(|settings| settings.get("dataProcessingOptions"))
        .and_then(parse_override)
        .or_else(|| {
            limited_data_use.map(|(country, state)| DataProcessing {
                data_processing_options: vec![Cow::Borrowed("LDU")],
                data_processing_options_country: country,
                data_processing_options_state: state,
            })
        })
}

/// `[[options…], country?, state?]`; a missing country or state is 0 ("geolocate"), as in
/// Meta's own examples.
fn parse_override<'j>(value: &'j Json<'_>) -> Option<DataProcessing<'j>> {
    let parts = value.as_array()?;
    if parts.is_empty() || parts.len() > 3 {
        return None;
    }
    let options = parts[0]
        .as_array()?
        .iter()
        .map(|o| o.as_str().map(Cow::Borrowed))
        .collect::<Option<Vec<_>>>()?;
    let integer = |i: usize| match parts.get(i) {
        None => Some(0),
        Some(Json::Number(n)) => n.as_i64(),
        Some(_) => None,
    };
    Some(DataProcessing {
        data_processing_options: options,
        data_processing_options_country: integer(1)?,
        data_processing_options_state: integer(2)?,
    })
}

//! What becomes of a message: mapped, skipped or rejected, and what mapping noticed on the way.

use std::borrow::Cow;
use std::fmt;

pub use super::super::capi::UserDataKeys;

use crate::sinks::facebook_pixel::capi::ServerEvent;
use crate::sinks::facebook_pixel::normalize::HashedField;

/// What became of one message, with the notes mapping took on the way.
#[derive(Debug)]
pub struct Mapping<'j> {
    /// Whether the message is sent, and the event it is sent as.
    pub outcome: Outcome<ServerEvent<'j>>,
    /// What was dropped or defaulted on the way, for the sink's metrics.
    pub notes: Notes,
}

/// Every message ends as exactly one of these.
#[derive(Debug, PartialEq)]
pub enum Outcome<T> {
    /// Sent as `T` (the server event, or `()` once written into a request body).
    Mapped(T),
    /// Intentionally not sent; counted, never dead-lettered.
    Skipped(SkipReason),
    /// Cannot be sent; goes to the dead letter with the reason.
    Rejected(Rejection),
}

/// Why a message was intentionally not sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// identify, screen, group, alias… calls.
    NotSent(String),
    /// A page call while `page_view` is off.
    PageViewOff,
    /// The message's `integrations` switch this destination off.
    DisabledByIntegrations,
    /// The visitor did not grant the categories `consent.required_categories` names.
    Consent,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NotSent(kind) => {
                write!(
                    f,
                    "{} calls are not sent to the Conversions API",
                    quote(kind)
                )
            }
            SkipReason::PageViewOff => {
                f.write_str("page calls are sent only with page_view = true")
            }
            SkipReason::DisabledByIntegrations => {
                f.write_str("the message's integrations switch this destination off")
            }
            SkipReason::Consent => f.write_str(
                "context.consent.categoryPreferences does not grant the categories the sink's consent.required_categories names",
            ),
        }
    }
}

/// Why a message cannot be sent: the field at fault and what is wrong with it. Never contains
/// personal data (trait values are dropped, not rejected).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct Rejection {
    /// The message's field at fault (a dotted path), so the sender knows where to look.
    pub field: Cow<'static, str>,
    /// What is wrong with it, without its value.
    pub problem: String,
}

impl Rejection {
    /// A rejection of `field` for `problem`.
    pub fn new(field: impl Into<Cow<'static, str>>, problem: impl Into<String>) -> Self {
        Rejection {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// What mapping noticed about a message besides its outcome, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Notes {
    /// user_data values that normalized to nothing, per field.
    pub dropped: DroppedValues,
    /// A Purchase without a value was sent with value 0.
    pub purchase_value_defaulted: bool,
    /// Properties left out of custom_data because they are personal data.
    pub properties_dropped: u32,
    /// The user_data keys the server event carries (match-key coverage).
    pub user_data_keys: UserDataKeys,
    /// The keys of those that enrichment added.
    pub enriched: UserDataKeys,
    /// The pixel the event goes to: its index in [`super::MappingSettings::pixels`] (0, the
    /// sink's `pixel_id`, unless `pixel_id_field` picks another).
    pub pixel: usize,
}

/// The user_data fields whose values can be dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserDataField {
    Hashed(HashedField),
    ClientIpAddress,
}

const DROPPABLE: usize = HashedField::ALL.len() + 1;

/// Dropped user_data values, counted per field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DroppedValues([u32; DROPPABLE]);

impl DroppedValues {
    fn index(field: UserDataField) -> usize {
        match field {
            UserDataField::Hashed(f) => HashedField::ALL.iter().position(|x| *x == f).unwrap_or(0),
            UserDataField::ClientIpAddress => DROPPABLE - 1,
        }
    }

    pub fn add(&mut self, field: UserDataField) {
        self.0[Self::index(field)] += 1;
    }

    pub fn get(&self, field: UserDataField) -> u32 {
        self.0[Self::index(field)]
    }

    pub fn merge(&mut self, other: &DroppedValues) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }

    pub fn total(&self) -> u32 {
        self.0.iter().sum()
    }

    /// `(CAPI key, count)` for each field with drops.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u32)> + '_ {
        HashedField::ALL
            .iter()
            .map(|f| f.key())
            .chain(["client_ip_address"])
            .zip(self.0)
            .filter(|(_, n)| *n > 0)
    }
}

/// A value quoted for an error message, cut short: these are field values like `"abc"` for a
/// revenue, never trait values (which are dropped, not rejected).
pub(crate) fn quote(text: &str) -> String {
    const MAX_CHARS: usize = 40;
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

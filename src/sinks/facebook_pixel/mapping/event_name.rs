//! SPEC §3: which CAPI event a Segment event name becomes.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// Meta's standard events that `standard_events` may target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StandardEvent {
    ViewContent,
    Search,
    AddToCart,
    AddToWishlist,
    InitiateCheckout,
    AddPaymentInfo,
    Purchase,
    Lead,
    CompleteRegistration,
    Contact,
    CustomizeProduct,
    Donate,
    FindLocation,
    Schedule,
    StartTrial,
    SubmitApplication,
    Subscribe,
    /// Not a Pixel standard event but Meta's fixed name for a value update (pLTV) of an
    /// earlier conversion; `standard_events` may target it.
    AppendValue,
}

impl StandardEvent {
    pub const ALL: [StandardEvent; 18] = [
        StandardEvent::ViewContent,
        StandardEvent::Search,
        StandardEvent::AddToCart,
        StandardEvent::AddToWishlist,
        StandardEvent::InitiateCheckout,
        StandardEvent::AddPaymentInfo,
        StandardEvent::Purchase,
        StandardEvent::Lead,
        StandardEvent::CompleteRegistration,
        StandardEvent::Contact,
        StandardEvent::CustomizeProduct,
        StandardEvent::Donate,
        StandardEvent::FindLocation,
        StandardEvent::Schedule,
        StandardEvent::StartTrial,
        StandardEvent::SubmitApplication,
        StandardEvent::Subscribe,
        StandardEvent::AppendValue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StandardEvent::ViewContent => "ViewContent",
            StandardEvent::Search => "Search",
            StandardEvent::AddToCart => "AddToCart",
            StandardEvent::AddToWishlist => "AddToWishlist",
            StandardEvent::InitiateCheckout => "InitiateCheckout",
            StandardEvent::AddPaymentInfo => "AddPaymentInfo",
            StandardEvent::Purchase => "Purchase",
            StandardEvent::Lead => "Lead",
            StandardEvent::CompleteRegistration => "CompleteRegistration",
            StandardEvent::Contact => "Contact",
            StandardEvent::CustomizeProduct => "CustomizeProduct",
            StandardEvent::Donate => "Donate",
            StandardEvent::FindLocation => "FindLocation",
            StandardEvent::Schedule => "Schedule",
            StandardEvent::StartTrial => "StartTrial",
            StandardEvent::SubmitApplication => "SubmitApplication",
            StandardEvent::Subscribe => "Subscribe",
            StandardEvent::AppendValue => "AppendValue",
        }
    }
}

impl fmt::Display for StandardEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StandardEvent {
    type Err = String;

    /// Exact names only: Events Manager shows them exactly so, and a near miss is more likely a
    /// typo worth pointing out than a spelling to guess at.
    fn from_str(name: &str) -> Result<Self, String> {
        if let Some(event) = Self::ALL.into_iter().find(|e| e.as_str() == name) {
            return Ok(event);
        }
        // A near miss is suggested: first one differing only in case, spaces or underscores,
        // then a misspelling (a letter dropped, swapped or mistyped).
        let wanted = squash(name);
        let near = Self::ALL
            .into_iter()
            .find(|e| squash(e.as_str()) == wanted)
            .map(StandardEvent::as_str)
            .or_else(|| crate::config::did_you_mean(&wanted, Self::ALL.map(StandardEvent::as_str)));
        match near {
            Some(event) => Err(format!(
                "{name:?} is not a Meta standard event; did you mean \"{event}\"?"
            )),
            None => Err(format!(
                "{name:?} is not a Meta standard event (one of {})",
                Self::ALL.map(StandardEvent::as_str).join(", ")
            )),
        }
    }
}

/// The Segment e-commerce events whose payload SPEC §5 shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcommerceEvent {
    OrderCompleted,
    ProductAdded,
    ProductListViewed,
    ProductViewed,
    ProductsSearched,
    CheckoutStarted,
}

impl EcommerceEvent {
    /// Recognizes Segment's names forgivingly: any case, spaces and underscores ignored, and the
    /// legacy word order of Segment's v1 spec (`Completed Order`, `Viewed Product`).
    pub fn recognize(squashed_name: &str) -> Option<EcommerceEvent> {
        Some(match squashed_name {
            "ordercompleted" | "completedorder" => EcommerceEvent::OrderCompleted,
            "productadded" | "addedproduct" => EcommerceEvent::ProductAdded,
            "productlistviewed" | "viewedproductlist" | "viewedproductcategory" => {
                EcommerceEvent::ProductListViewed
            }
            "productviewed" | "viewedproduct" => EcommerceEvent::ProductViewed,
            "productssearched" | "searchedproducts" => EcommerceEvent::ProductsSearched,
            "checkoutstarted" | "startedcheckout" => EcommerceEvent::CheckoutStarted,
            _ => return None,
        })
    }

    pub fn standard_event(self) -> StandardEvent {
        match self {
            EcommerceEvent::OrderCompleted => StandardEvent::Purchase,
            EcommerceEvent::ProductAdded => StandardEvent::AddToCart,
            EcommerceEvent::ProductListViewed | EcommerceEvent::ProductViewed => {
                StandardEvent::ViewContent
            }
            EcommerceEvent::ProductsSearched => StandardEvent::Search,
            EcommerceEvent::CheckoutStarted => StandardEvent::InitiateCheckout,
        }
    }
}

/// The setting `standard_events`, keyed by squashed Segment name.
#[derive(Debug, Default)]
pub struct StandardEventMap(HashMap<String, StandardEvent>);

impl StandardEventMap {
    /// From the validated setting.
    pub fn new<'a>(entries: impl IntoIterator<Item = (&'a String, &'a StandardEvent)>) -> Self {
        StandardEventMap(
            entries
                .into_iter()
                .map(|(name, target)| (squash(name), *target))
                .collect(),
        )
    }

    pub fn get(&self, squashed_name: &str) -> Option<StandardEvent> {
        self.0.get(squashed_name).copied()
    }
}

/// The name Meta will see and the payload shape it gets.
#[derive(Debug, PartialEq)]
pub struct Naming {
    /// `None`: a custom event, sent under its own name.
    pub standard: Option<StandardEvent>,
    pub ecommerce: Option<EcommerceEvent>,
}

/// Meta's cap on custom event names.
pub const MAX_CUSTOM_NAME_CHARS: usize = 50;

pub fn name_event(event: &str, mapping: &StandardEventMap) -> Naming {
    let mut buf = [0u8; 32];
    let squashed: std::borrow::Cow<'_, str> = match squash_ascii(event, &mut buf) {
        Some(short) => short.into(),
        None => squash(event).into(),
    };
    let ecommerce = EcommerceEvent::recognize(&squashed);
    let standard = mapping
        .get(&squashed)
        .or_else(|| ecommerce.map(EcommerceEvent::standard_event));
    Naming {
        standard,
        ecommerce,
    }
}

/// Lowercase with whitespace and `_` removed: `Order_Completed` = `order completed`.
pub fn squash(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_whitespace() && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// [`squash`] into `buf`, without allocating, for the common case of a short ASCII name; `None`
/// otherwise. This runs for every property of every event.
pub fn squash_ascii<'b>(name: &str, buf: &'b mut [u8; 32]) -> Option<&'b str> {
    let mut len = 0;
    for b in name.bytes() {
        if b == b'_' || b.is_ascii_whitespace() {
            continue;
        }
        if !b.is_ascii() || len == buf.len() {
            return None;
        }
        buf[len] = b.to_ascii_lowercase();
        len += 1;
    }
    std::str::from_utf8(&buf[..len]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_of(entries: &[(&str, &str)]) -> StandardEventMap {
        let owned: Vec<(String, String)> = entries
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let parsed: Vec<(String, StandardEvent)> = owned
            .into_iter()
            .map(|(a, b)| (a, b.parse().unwrap()))
            .collect();
        StandardEventMap::new(parsed.iter().map(|(a, b)| (a, b)))
    }

    #[test]
    fn ecommerce_names_match_forgivingly_and_in_legacy_order() {
        let none = StandardEventMap::default();
        for name in [
            "Order Completed",
            "order_completed",
            "OrderCompleted",
            "ORDER COMPLETED",
            "Completed Order",
        ] {
            let naming = name_event(name, &none);
            assert_eq!(naming.standard, Some(StandardEvent::Purchase), "{name}");
            assert_eq!(naming.ecommerce, Some(EcommerceEvent::OrderCompleted));
        }
        let cases = [
            ("Product Added", StandardEvent::AddToCart),
            ("Added Product", StandardEvent::AddToCart),
            ("Product List Viewed", StandardEvent::ViewContent),
            ("product_viewed", StandardEvent::ViewContent),
            ("Viewed Product", StandardEvent::ViewContent),
            ("Products Searched", StandardEvent::Search),
            ("Searched Products", StandardEvent::Search),
            ("Checkout Started", StandardEvent::InitiateCheckout),
            ("Started Checkout", StandardEvent::InitiateCheckout),
        ];
        for (name, expected) in cases {
            assert_eq!(name_event(name, &none).standard, Some(expected), "{name}");
        }
    }

    #[test]
    fn other_names_are_custom() {
        let naming = name_event("Video Played", &StandardEventMap::default());
        assert_eq!(
            naming,
            Naming {
                standard: None,
                ecommerce: None
            }
        );
    }

    #[test]
    fn standard_events_setting_matches_ignoring_case_spaces_underscores() {
        let mapping = map_of(&[("Signed Up", "CompleteRegistration")]);
        for name in ["Signed Up", "signed_up", "SIGNEDUP"] {
            assert_eq!(
                name_event(name, &mapping).standard,
                Some(StandardEvent::CompleteRegistration)
            );
        }
    }

    #[test]
    fn explicit_mapping_wins_for_the_name_but_payload_stays_ecommerce() {
        let mapping = map_of(&[("Order Completed", "Subscribe")]);
        let naming = name_event("order_completed", &mapping);
        assert_eq!(naming.standard, Some(StandardEvent::Subscribe));
        assert_eq!(naming.ecommerce, Some(EcommerceEvent::OrderCompleted));
    }

    #[test]
    fn squash_ascii_agrees_with_squash() {
        for name in [
            "first_Name",
            "FirstName",
            " first name\t",
            "email",
            "zip_code",
            "",
            "Order_Completed",
        ] {
            let mut buf = [0u8; 32];
            assert_eq!(
                squash_ascii(name, &mut buf),
                Some(squash(name).as_str()),
                "{name}"
            );
        }
        let mut buf = [0u8; 32];
        assert_eq!(squash_ascii("Émail", &mut buf), None);
        assert_eq!(squash_ascii(&"x".repeat(33), &mut buf), None);
    }

    #[test]
    fn targets_must_be_exact_standard_names() {
        assert_eq!("Lead".parse::<StandardEvent>(), Ok(StandardEvent::Lead));
        let err = "add_to_cart".parse::<StandardEvent>().unwrap_err();
        assert!(err.contains("did you mean \"AddToCart\""), "{err}");
        let err = "Signup".parse::<StandardEvent>().unwrap_err();
        assert!(err.contains("one of ViewContent"), "{err}");
        let err = "CompleteRegistraton".parse::<StandardEvent>().unwrap_err();
        assert!(
            err.contains("did you mean \"CompleteRegistration\""),
            "{err}"
        );
        let err = "Add To Chart".parse::<StandardEvent>().unwrap_err();
        assert!(err.contains("did you mean \"AddToCart\""), "{err}");
    }
}

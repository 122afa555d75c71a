//! SPEC §5: custom_data — value, currency, products, and the properties that pass through.

use std::borrow::Cow;
use std::collections::HashMap;

use super::event_name::{EcommerceEvent, Naming, StandardEvent, squash, squash_ascii};
use super::message::SegmentMessage;
use super::money::{parse_amount, parse_currency, positive_amount, quantity};
use super::settings::ValueField;
use super::{Notes, Rejection};
use crate::json::{Json, Object, member};
use crate::sinks::facebook_pixel::capi::{Content, CustomData, Properties, Property};
use crate::sinks::facebook_pixel::normalize::{EventFacts, HashedField, Normalizer};

/// The settings that shape custom_data.
#[derive(Debug)]
pub struct CustomDataRules {
    /// `content_types`: Segment category → Meta content type, matched exactly.
    pub content_types: HashMap<String, String>,
    pub value_field: ValueField,
    pub default_currency: &'static str,
    /// Squashed names (lowercase, no `_`) from `allow_pii_properties`.
    pub allow_pii: Vec<String>,
    /// Squashed names from `hash_properties`.
    pub hash: Vec<String>,
    /// The property `pixel_id_field` names, when it is one (`properties.pixel_id`): it picks
    /// the pixel, and is not event data.
    pub pixel_property: Option<String>,
}

/// Properties read for standard fields of each event, so not repeated (SPEC §5).
fn read_for_standard_fields(kind: Option<EcommerceEvent>) -> &'static [&'static str] {
    match kind {
        Some(EcommerceEvent::ProductViewed | EcommerceEvent::ProductAdded) => &[
            "product_id",
            "productId",
            "id",
            "sku",
            "name",
            "category",
            "price",
            "value",
            "quantity",
            "currency",
        ],
        Some(EcommerceEvent::ProductListViewed) => &["products", "category", "currency"],
        Some(EcommerceEvent::OrderCompleted) => &[
            "products", "revenue", "total", "value", "currency", "order_id", "orderId", "category",
        ],
        Some(EcommerceEvent::CheckoutStarted) => &[
            "products", "revenue", "currency", "category", "order_id", "orderId",
        ],
        Some(EcommerceEvent::ProductsSearched) => &["query", "currency"],
        None => &["revenue", "currency"],
    }
}

/// Never passed through: they are read for user_data or the event itself.
fn never_passed(key: &str) -> bool {
    // A match, not a scan of a list: every pass-through property is checked, and the compiler
    // sorts the comparisons by length.
    matches!(
        key,
        "fbp"
            | "fbc"
            | "action_source"
            | "actionSource"
            | "url"
            | "referrer"
            | "opt_out"
            | "subscription_id"
            | "subscriptionId"
            | "lead_id"
            | "leadId"
            | "fb_login_id"
            | "fbLoginId"
            | "anon_id"
            | "anonId"
            | "original_event_id"
            | "originalEventId"
            | "original_event_name"
            | "originalEventName"
            | "original_event_time"
            | "originalEventTime"
            | "messaging_channel"
            | "ctwa_clid"
            | "ctwaClid"
            | "page_id"
            | "pageId"
            | "page_scoped_user_id"
            | "pageScopedUserId"
            | "ig_account_id"
            | "igAccountId"
            | "ig_sid"
            | "igSid"
            | "whatsapp_business_account_id"
            | "whatsappBusinessAccountId"
    )
}

/// Property names that are personal data, squashed.
const PII_NAMES: [&str; 13] = [
    "email",
    "phone",
    "firstname",
    "lastname",
    "gender",
    "birthday",
    "address",
    "city",
    "state",
    "zip",
    "zipcode",
    "postalcode",
    "country",
];

pub fn build<'j>(
    message: &'j SegmentMessage<'_>,
    naming: &Naming,
    rules: &'j CustomDataRules,
    normalizer: &Normalizer,
    facts: EventFacts,
    notes: &mut Notes,
) -> Result<CustomData<'j>, Rejection> {
    static NO_PROPERTIES: Object<'static> = Vec::new();
    let props = Props(message.properties.as_object().unwrap_or(&NO_PROPERTIES));
    let mut data = CustomData::default();

    if let Some(currency) = props.get("currency") {
        data.currency = Some(parse_currency(currency).map_err(|p| reject("currency", p))?);
    }
    let products = match props.get("products") {
        None => None,
        Some(Json::Array(items)) => Some(items.as_slice()),
        Some(other) => {
            return Err(reject(
                "products",
                format!("expected an array of products, got {}", other.kind()),
            ));
        }
    };
    let product_objects = || products.unwrap_or(&[]).iter().filter_map(Json::as_object);
    let text = |value: &'j Json<'_>| value.to_text().filter(|t| !t.trim().is_empty());
    let category = props.get("category").and_then(text).or_else(|| {
        let first = products?.first()?.as_object()?;
        Props(first).get("category").and_then(text)
    });
    let mapped_type = category
        .as_deref()
        .and_then(|c| rules.content_types.get(c))
        .map(String::as_str);

    match naming.ecommerce {
        Some(EcommerceEvent::ProductViewed | EcommerceEvent::ProductAdded) => {
            if let Some(id) = props.product_id() {
                data.contents.push(Content {
                    id: id.clone(),
                    quantity: quantity(props.get("quantity")),
                    item_price: props.get("price").and_then(positive_amount),
                });
                data.content_ids.push(id);
            }
            data.content_type = Some(mapped_type.unwrap_or("product"));
            data.content_name = props.get("name").and_then(Json::to_text);
            data.content_category = props.get("category").and_then(Json::to_text);
            data.value = props.amount(rules.value_field.property())?;
        }
        Some(EcommerceEvent::ProductListViewed) => {
            add_products(&mut data, product_objects(), false);
            if data.content_ids.is_empty() {
                data.content_ids
                    .extend(props.get("category").and_then(text));
                data.content_type = Some(mapped_type.unwrap_or("product_group"));
            } else {
                data.content_type = Some(mapped_type.unwrap_or("product"));
            }
        }
        Some(kind @ (EcommerceEvent::OrderCompleted | EcommerceEvent::CheckoutStarted)) => {
            add_products(&mut data, product_objects(), true);
            if products.is_some() {
                data.num_items = Some(product_objects().count() as u64);
            }
            data.content_type = Some(mapped_type.unwrap_or("product"));
            data.order_id = props
                .get("order_id")
                .or_else(|| props.get("orderId"))
                .and_then(Json::to_text);
            if kind == EcommerceEvent::OrderCompleted {
                data.value = match props.amount("revenue")? {
                    Some(v) => Some(v),
                    None => match props.amount("total")? {
                        Some(v) => Some(v),
                        None => props.amount("value")?,
                    },
                };
            } else {
                data.value = props.amount("revenue")?;
                data.content_category = category.clone();
            }
        }
        Some(EcommerceEvent::ProductsSearched) => {
            data.search_string = props.get("query").and_then(Json::to_text);
        }
        None => data.value = props.amount("revenue")?,
    }

    let purchase = naming.standard == Some(StandardEvent::Purchase);
    if purchase && data.value.is_none() && naming.ecommerce.is_none() {
        // A custom event mapped to Purchase: its own `value` (which would otherwise pass
        // through) is the purchase value.
        data.value = props.amount("value")?;
    }
    if purchase && data.value.is_none() {
        // Meta requires a value on Purchase; 0 keeps the event instead of failing its batch.
        data.value = Some(0.into());
        notes.purchase_value_defaulted = true;
    }
    // A `value` passing through counts: Meta reads it with the currency.
    let carries_value = data.value.is_some()
        || (!read_for_standard_fields(naming.ecommerce).contains(&"value")
            && props.get("value").is_some());
    if carries_value && data.currency.is_none() {
        data.currency = Some(rules.default_currency);
    }

    // Meta's value-optimisation fields, on any event that has them, read as money.
    data.net_revenue = props.amount("net_revenue")?;
    data.predicted_ltv = props.amount("predicted_ltv")?;

    pass_through(
        &mut data,
        props.0,
        naming.ecommerce,
        rules,
        normalizer,
        facts,
        notes,
    );
    Ok(data)
}

/// `contents` and `content_ids` from `products[]`; a product without an id is left out.
fn add_products<'j, 'a: 'j>(
    data: &mut CustomData<'j>,
    products: impl Iterator<Item = &'j Object<'a>>,
    with_price: bool,
) {
    for product in products.map(Props) {
        if let Some(id) = product.product_id() {
            data.content_ids.push(id.clone());
            data.contents.push(Content {
                id,
                quantity: quantity(product.get("quantity")),
                item_price: with_price
                    .then(|| product.get("price").and_then(positive_amount))
                    .flatten(),
            });
        }
    }
}

fn pass_through<'j>(
    data: &mut CustomData<'j>,
    props: &'j Object<'_>,
    kind: Option<EcommerceEvent>,
    rules: &CustomDataRules,
    normalizer: &Normalizer,
    facts: EventFacts,
    notes: &mut Notes,
) {
    let read = read_for_standard_fields(kind);
    let mut passed = Vec::new();
    for (i, (key, value)) in props.iter().enumerate() {
        let key: &'j str = key;
        if read.contains(&key)
            || never_passed(key)
            || rules.pixel_property.as_deref() == Some(key)
            || data.has_computed(key)
            // A later duplicate wins, as in every lookup.
            || props[i + 1..].iter().any(|(k, _)| k == key)
        {
            continue;
        }
        let mut buf = [0u8; 32];
        let squashed: Cow<'_, str> = match squash_ascii(key, &mut buf) {
            Some(short) => Cow::Borrowed(short),
            None => Cow::Owned(squash(key)),
        };
        let listed = |names: &[String]| names.iter().any(|n| *n == squashed);
        let property = if listed(&rules.hash) {
            match hash_property(&squashed, value, normalizer, facts) {
                Some(hashed) => hashed,
                None => {
                    notes.properties_dropped += 1;
                    continue;
                }
            }
        } else if PII_NAMES.contains(&squashed.as_ref()) && !listed(&rules.allow_pii) {
            notes.properties_dropped += 1;
            continue;
        } else {
            Property::Raw(value)
        };
        passed.push((key, property));
    }
    data.properties = Properties(passed);
}

/// A property listed in `hash_properties`, normalized by the rule of the user_data key its name
/// stands for (anything else as an identifier: trimmed, lowercased), then hashed.
fn hash_property<'j>(
    squashed_name: &str,
    value: &Json<'_>,
    normalizer: &Normalizer,
    facts: EventFacts,
) -> Option<Property<'j>> {
    let field = match squashed_name {
        "email" => HashedField::Em,
        "phone" => HashedField::Ph,
        "firstname" => HashedField::Fn,
        "lastname" => HashedField::Ln,
        "gender" => HashedField::Ge,
        "birthday" => HashedField::Db,
        "city" => HashedField::Ct,
        "state" => HashedField::St,
        "zip" | "zipcode" | "postalcode" => HashedField::Zp,
        "country" => HashedField::Country,
        _ => HashedField::ExternalId,
    };
    let hash = |v: &Json<'_>| normalizer.hash(field, &v.to_text()?, facts);
    match value {
        Json::Array(items) => {
            let hashes: Vec<_> = items.iter().filter_map(hash).collect();
            (!hashes.is_empty()).then_some(Property::HashedList(hashes))
        }
        other => hash(other).map(Property::Hashed),
    }
}

fn reject(property: &str, problem: String) -> Rejection {
    Rejection::new(format!("properties.{property}"), problem)
}

/// An object's members with the lookups custom_data needs.
#[derive(Clone, Copy)]
struct Props<'j, 'a>(&'j Object<'a>);

impl<'j, 'a> Props<'j, 'a> {
    fn get(self, key: &str) -> Option<&'j Json<'a>> {
        member(self.0, key)
    }

    /// `product_id`, else `productId`, else `id`, else `sku`; `""` falls through like null.
    fn product_id(self) -> Option<Cow<'j, str>> {
        ["product_id", "productId", "id", "sku"]
            .into_iter()
            .filter_map(|key| self.get(key)?.to_text())
            .find(|id| !id.trim().is_empty())
    }

    /// A money property: absent is `None`, unreadable is a rejection naming it.
    fn amount(self, key: &str) -> Result<Option<serde_json::Number>, Rejection> {
        self.get(key)
            .map(|v| parse_amount(v).map_err(|p| reject(key, p)))
            .transpose()
    }
}

//! Property: whatever arrives, mapping never panics and every input ends as exactly one of
//! mapped, skipped or rejected — and a mapped event is a well-formed CAPI server event.

use chrono::{DateTime, Utc};
use fbpixel::sinks::facebook_pixel::{FacebookPixelConfig, Mapper, Outcome};
use proptest::prelude::*;
use serde_json::{Map, Value};

const NOW: &str = "2024-06-15T12:00:00Z";

/// Keys a Segment message uses, so that generated objects reach deep into the mapping rather
/// than bouncing off the first missing field.
const KEYS: &[&str] = &[
    "type",
    "event",
    "messageId",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "receivedAt",
    "userId",
    "anonymousId",
    "context",
    "traits",
    "properties",
    "integrations",
    "All",
    "Facebook Pixel Server Side",
    "Facebook Conversions API",
    "dataProcessingOptions",
    "ip",
    "userAgent",
    "page",
    "url",
    "email",
    "phone",
    "firstName",
    "last_name",
    "name",
    "gender",
    "birthday",
    "address",
    "city",
    "state",
    "postalCode",
    "zip",
    "country",
    "products",
    "product_id",
    "sku",
    "id",
    "price",
    "quantity",
    "revenue",
    "total",
    "value",
    "currency",
    "order_id",
    "category",
    "query",
    "action_source",
    "fbp",
    "fbc",
    "status",
    "crm_id",
];

const STRINGS: &[&str] = &[
    "track",
    "page",
    "identify",
    "Order Completed",
    "Product Viewed",
    "Product List Viewed",
    "Checkout Started",
    "Products Searched",
    "Product Added",
    "Signed Up",
    "$1,234.50",
    "abc",
    "",
    " ",
    "2024-06-15T11:00:00Z",
    "2024-06-15",
    "1718449200",
    "US",
    "usd",
    "XYZ",
    "website",
    "system_generated",
    "physical_store",
    "a@b.co",
    "+1 650 555 0100",
    "female",
    "31/12/1990",
    "https://x.example/?fbclid=abc",
    "203.0.113.9",
    "::1",
    "Mozilla/5.0",
    "Hotels",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "é",
    "😀",
    "\u{0}",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN and infinities become null
        prop::sample::select(STRINGS).prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        prop::sample::select(KEYS).prop_map(String::from),
                        "\\PC{0,8}"
                    ],
                    inner
                ),
                0..8
            )
            .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A Segment-shaped message: the top-level keys are real ones, their values arbitrary.
fn message() -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(KEYS), json_value()), 0..12).prop_map(|members| {
        Value::Object(
            members
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    })
}

fn mappers() -> Vec<Mapper> {
    [
        "",
        "page_view = true\nlimited_data_use = true\naction_source = \"system_generated\"",
        "phone_country = \"US\"\nhash_external_id = false\nexternal_id_field = \"context.traits.crm_id\"\nhash_properties = [\"email\", \"status\"]\nallow_pii_properties = [\"city\"]\nvalue_field = \"value\"\nstandard_events = { \"Order Completed\" = \"Lead\", \"x\" = \"Purchase\" }",
    ]
    .iter()
    .map(|settings| {
        let config: FacebookPixelConfig = toml::from_str(settings).unwrap();
        config.mapper().unwrap()
    })
    .collect()
}

fn check(mappers: &[Mapper], bytes: &[u8]) -> Result<(), TestCaseError> {
    let now: DateTime<Utc> = NOW.parse().unwrap();
    for mapper in mappers {
        let mut out = Vec::new();
        let (outcome, _) = mapper.map_json(&mut bytes.to_vec(), now, &mut out);
        match outcome {
            Outcome::Mapped(()) => {
                let event: Value = serde_json::from_slice(&out)
                    .map_err(|e| TestCaseError::fail(format!("output is not JSON: {e}")))?;
                prop_assert!(event["event_name"].as_str().is_some_and(|n| !n.is_empty()));
                prop_assert!(event["event_time"].is_i64());
                prop_assert!(event["action_source"].is_string());
                prop_assert!(event["user_data"].is_object());
                let time = event["event_time"].as_i64().unwrap();
                prop_assert!(time <= now.timestamp() && time >= now.timestamp() - 62 * 86_400);
            }
            Outcome::Skipped(reason) => prop_assert!(!reason.to_string().is_empty()),
            Outcome::Rejected(rejection) => {
                prop_assert!(out.is_empty(), "a rejected message wrote output");
                prop_assert!(!rejection.field.is_empty() && !rejection.problem.is_empty());
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn any_segment_shaped_message_ends_mapped_skipped_or_rejected(message in message()) {
        let mappers = mappers();
        check(&mappers, &serde_json::to_vec(&message).unwrap())?;
    }

    #[test]
    fn any_json_value_ends_mapped_skipped_or_rejected(value in json_value()) {
        let mappers = mappers();
        check(&mappers, &serde_json::to_vec(&value).unwrap())?;
    }

    #[test]
    fn any_bytes_end_mapped_skipped_or_rejected(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let mappers = mappers();
        check(&mappers, &bytes)?;
    }
}

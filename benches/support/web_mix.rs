//! The web mix of `benches/mapping.rs`, shared with `benches/reference.rs` so both map the
//! same messages.

use serde_json::json;

/// How much customer information a message carries.
#[derive(Clone, Copy)]
enum Traits {
    /// Every PII field (checkout flows collect them).
    Full,
    /// An identified visitor: email only.
    Email,
    /// An anonymous visitor: none (anonymousId and the browser's IP and user agent).
    None,
}

fn traits(i: usize, kind: Traits) -> serde_json::Value {
    match kind {
        Traits::Full => json!({
            "email": format!("Customer.{i}@Example.com"),
            // Half international, half national: the national ones exercise `phone_country`.
            "phone": if i.is_multiple_of(2) {
                format!("+1 (650) 555-{:04}", i % 10_000)
            } else {
                format!("(650) 555-{:04}", i % 10_000)
            },
            "firstName": "Jane",
            "lastName": format!("Doe-{i}"),
            "gender": if i.is_multiple_of(2) { "female" } else { "male" },
            "birthday": "1990-04-23",
            "address": {
                "city": "San Francisco",
                "state": "California",
                "postalCode": "94105-1804",
                "country": "United States"
            }
        }),
        Traits::Email => json!({"email": format!("customer.{i}@example.com")}),
        Traits::None => json!({}),
    }
}

/// `n` distinct messages as analytics.js sends them, in a fixed mix:
/// - 25% Order Completed with three products, and 10% Checkout Started with two, both with
///   every PII trait;
/// - 30% Product Viewed / Product Added by visitors who gave their email;
/// - 10% Products Searched by anonymous visitors;
/// - 25% custom events (Video Played, Signed Up), half with an email.
///
/// With `all_pii`, every message carries every PII trait instead (the worst case).
pub fn messages(n: usize, all_pii: bool) -> Vec<Vec<u8>> {
    let product = |id: &str, name: &str, price: f64, quantity: u32, category: &str| {
        json!({"product_id": id, "sku": format!("{id}-BLK"), "name": name, "price": price,
               "quantity": quantity, "category": category})
    };
    (0..n)
        .map(|i| {
            let (event, properties, kind) = match i % 20 {
                0..=4 => (
                    "Order Completed",
                    json!({
                        "order_id": format!("ord-{i}"),
                        "total": 107.97, "revenue": 99.98, "shipping": 7.99, "tax": 0,
                        "coupon": "SUMMER10", "currency": "USD",
                        "products": [
                            product("KET-01", "Kettle", 39.99, 2, "Kitchen"),
                            product("MUG-07", "Mug", 9.99, 1, "Kitchen"),
                            product("TEA-11", "Green tea", 10.01, 1, "Groceries")
                        ]
                    }),
                    Traits::Full,
                ),
                5 | 6 => (
                    "Checkout Started",
                    json!({
                        "order_id": format!("ord-{i}"), "revenue": 49.98, "currency": "USD",
                        "products": [
                            product("KET-01", "Kettle", 39.99, 1, "Kitchen"),
                            product("MUG-07", "Mug", 9.99, 1, "Kitchen")
                        ]
                    }),
                    Traits::Full,
                ),
                7..=12 => (
                    if i % 2 == 0 { "Product Viewed" } else { "Product Added" },
                    json!({
                        "product_id": format!("P-{i}"), "sku": "KET-01-BLK", "name": "Kettle",
                        "category": "Kitchen", "brand": "Acme", "variant": "black",
                        "price": 39.99, "quantity": 1, "currency": "USD",
                        "url": "https://shop.example/p/ket-01"
                    }),
                    Traits::Email,
                ),
                13 | 14 => ("Products Searched", json!({"query": "electric kettle"}), Traits::None),
                15..=17 => (
                    "Video Played",
                    json!({"video_id": format!("v-{i}"), "position": 31.5, "length": 240, "quality": "hd"}),
                    if i % 2 == 0 { Traits::Email } else { Traits::None },
                ),
                _ => ("Signed Up", json!({"plan": "pro", "trial_days": 14}), Traits::Email),
            };
            let kind = if all_pii { Traits::Full } else { kind };
            let message = json!({
                "type": "track",
                "event": event,
                "messageId": format!("ajs-next-{i:08}-4c7a-9d2e-5f1b8a3c6e0d"),
                "anonymousId": format!("anon-{i:08}-b7e1-4e6f"),
                "userId": if matches!(kind, Traits::None) { serde_json::Value::Null } else { json!(format!("user-{i}")) },
                "timestamp": "2024-06-15T11:58:00.120Z",
                "sentAt": "2024-06-15T11:58:00.480Z",
                "context": {
                    "ip": "203.0.113.42",
                    "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
                    "library": {"name": "analytics.js", "version": "next-1.70.0"},
                    "locale": "en-US",
                    "page": {"path": "/p/ket-01", "referrer": "https://www.google.com/", "title": "Kettle", "url": "https://shop.example/p/ket-01?fbclid=IwAR2xYz"},
                    "traits": traits(i, kind)
                },
                "properties": properties,
                "integrations": {}
            });
            serde_json::to_vec(&message).unwrap()
        })
        .collect()
}

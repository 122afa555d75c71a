//! JSON bytes in → CAPI JSON bytes out, over a realistic mix of Segment messages: orders with
//! several products, traits with every PII field, product views, searches and custom events.
//!
//!     cargo bench --bench mapping
//!
//! Goal (issue #2): at least 150,000 events per second on one core.

use std::hint::black_box;

use chrono::{DateTime, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fbpixel::sinks::facebook_pixel::{FacebookPixelConfig, Mapper, Outcome};
use serde_json::json;

const NOW: &str = "2024-06-15T12:00:00Z";

/// `n` distinct messages in a fixed mix: 30% orders, 30% product views/adds, 10% searches,
/// 30% custom events; every one carries full traits.
fn messages(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let traits = json!({
                "email": format!("Customer.{i}@Example.com"),
                "phone": format!("+1 (650) 555-{:04}", i % 10_000),
                "firstName": "Jane",
                "lastName": format!("Doe-{i}"),
                "gender": if i % 2 == 0 { "female" } else { "male" },
                "birthday": "1990-04-23",
                "address": {
                    "city": "San Francisco",
                    "state": "California",
                    "postalCode": "94105-1804",
                    "country": "United States"
                }
            });
            let (event, properties) = match i % 10 {
                0..=2 => (
                    "Order Completed",
                    json!({
                        "order_id": format!("ord-{i}"),
                        "total": 107.97, "revenue": 99.98, "shipping": 7.99, "tax": 0,
                        "coupon": "SUMMER10", "currency": "USD",
                        "products": [
                            {"product_id": "KET-01", "sku": "KET-01-BLK", "name": "Kettle", "price": 39.99, "quantity": 2, "category": "Kitchen"},
                            {"product_id": "MUG-07", "sku": "MUG-07-WHT", "name": "Mug", "price": 9.99, "quantity": 1, "category": "Kitchen"},
                            {"product_id": "TEA-11", "sku": "TEA-11-GRN", "name": "Green tea", "price": 10.01, "quantity": 1, "category": "Groceries"}
                        ]
                    }),
                ),
                3..=5 => (
                    if i % 2 == 0 { "Product Viewed" } else { "Product Added" },
                    json!({
                        "product_id": format!("P-{i}"), "sku": "KET-01-BLK", "name": "Kettle",
                        "category": "Kitchen", "brand": "Acme", "variant": "black",
                        "price": 39.99, "quantity": 1, "currency": "USD", "url": "https://shop.example/p/ket-01"
                    }),
                ),
                6 => ("Products Searched", json!({"query": "electric kettle"})),
                _ => (
                    "Video Played",
                    json!({"video_id": format!("v-{i}"), "position": 31.5, "length": 240, "quality": "hd"}),
                ),
            };
            let message = json!({
                "type": "track",
                "event": event,
                "messageId": format!("ajs-next-{i:08}-4c7a-9d2e-5f1b8a3c6e0d"),
                "anonymousId": format!("anon-{i:08}-b7e1-4e6f"),
                "userId": format!("user-{i}"),
                "timestamp": "2024-06-15T11:58:00.120Z",
                "sentAt": "2024-06-15T11:58:00.480Z",
                "context": {
                    "ip": "203.0.113.42",
                    "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
                    "library": {"name": "analytics.js", "version": "next-1.70.0"},
                    "locale": "en-US",
                    "page": {"path": "/p/ket-01", "referrer": "https://www.google.com/", "title": "Kettle", "url": "https://shop.example/p/ket-01?fbclid=IwAR2xYz"},
                    "traits": traits
                },
                "properties": properties,
                "integrations": {}
            });
            serde_json::to_vec(&message).unwrap()
        })
        .collect()
}

fn mapper(settings: &str) -> Mapper {
    let config: FacebookPixelConfig = toml::from_str(settings).unwrap();
    Mapper::new(&config).unwrap()
}

fn bench(c: &mut Criterion) {
    let now: DateTime<Utc> = NOW.parse().unwrap();
    let inputs = messages(1_000);
    let bytes: usize = inputs.iter().map(Vec::len).sum();
    eprintln!(
        "{} messages, {} bytes on average",
        inputs.len(),
        bytes / inputs.len()
    );

    let mut group = c.benchmark_group("map_json");
    group.throughput(Throughput::Elements(inputs.len() as u64));
    for (name, settings) in [
        ("default_settings", r#"content_types = { "Kitchen" = "product" }"#),
        ("phone_country_us", r#"phone_country = "US""#),
    ] {
        let mapper = mapper(settings);
        let mut out = Vec::with_capacity(4096);
        // Every message must map, or the benchmark measures rejections.
        for input in &inputs {
            out.clear();
            let (outcome, _) = mapper.map_json(input, now, &mut out);
            assert_eq!(outcome, Outcome::Mapped(()), "{name}");
        }
        group.bench_function(name, |b| {
            b.iter(|| {
                for input in &inputs {
                    out.clear();
                    black_box(mapper.map_json(black_box(input), now, &mut out));
                }
            })
        });
    }
    group.finish();

    // Where the time goes: parsing alone, into our borrowed tree and into serde_json::Value.
    let mut group = c.benchmark_group("parse_only");
    group.throughput(Throughput::Elements(inputs.len() as u64));
    group.bench_function("borrowed_json", |b| {
        b.iter(|| {
            for input in &inputs {
                black_box(fbpixel::json::Json::parse(black_box(input)).unwrap());
            }
        })
    });
    group.bench_function("serde_json_value", |b| {
        b.iter(|| {
            for input in &inputs {
                black_box(serde_json::from_slice::<serde_json::Value>(black_box(input)).unwrap());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! JSON bytes in → CAPI JSON bytes out, over a realistic mix of Segment messages (see
//! `messages`): orders with several products, traits with every PII field, product views,
//! searches and custom events — and the worst case, every message with every PII trait. Beside
//! them, an app mix (`app_messages`, issue 14) as Segment's iOS, Android and React Native
//! libraries send it, which reads `context.app`, the device, OS and screen for `app_data`.
//!
//!     cargo bench --bench mapping
//!
//! Goal (issue #2): at least 150,000 events per second on one core.

use std::hint::black_box;

use chrono::{DateTime, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fbpixel::sinks::facebook_pixel::enrichment::Identities;
use fbpixel::sinks::facebook_pixel::{FacebookPixelConfig, Mapper, Outcome};
use serde_json::json;

const NOW: &str = "2024-06-15T12:00:00Z";

/// The allocator the `fbpixel` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
fn messages(n: usize, all_pii: bool) -> Vec<Vec<u8>> {
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

/// A Segment mobile library, and how it writes what differs between them (see
/// `tests/data/segment-mobile/README.md`).
#[derive(Clone, Copy)]
enum Library {
    /// analytics-swift on iOS: upper-case UUIDs, a WebKit user agent, screen in points.
    Swift,
    /// analytics-kotlin on Android: lower-case UUIDs, `device.id` = `anonymousId`, a Dalvik
    /// user agent, screen in pixels with a density.
    Kotlin,
    /// analytics-react-native on iOS: no user agent, and identify's traits in `context.traits`.
    ReactNative,
}

/// A UUID-shaped id, distinct for each `i` and `salt`, upper-case as Apple's `UUID()` writes
/// them or lower-case as Java's and JavaScript's do.
fn uuid(i: usize, salt: u32, upper: bool) -> String {
    let id = format!(
        "{salt:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        i & 0xffff,
        (i >> 4) & 0xfff,
        i & 0xfff,
        i.wrapping_mul(2_654_435_761) & 0xffff_ffff_ffff
    );
    if upper { id.to_uppercase() } else { id }
}

/// `n` distinct messages as Segment's mobile libraries send them, in the shape of the fixtures
/// in `tests/data/segment-mobile/` (a third each from the iOS, Android and React Native
/// libraries), in a fixed mix:
/// - 20% Order Completed with two products (the fixtures' order);
/// - 30% Product Viewed;
/// - 25% screen calls (Product Detail, Cart, Home);
/// - 25% custom events (Level Completed, Push Notification Tapped), half by signed-in users.
fn app_messages(n: usize) -> Vec<Vec<u8>> {
    let product = |id: &str, sku: &str, name: &str, price: f64, quantity: u32, brand: &str| {
        json!({"product_id": id, "sku": sku, "name": name, "price": price,
               "quantity": quantity, "category": "Games", "brand": brand})
    };
    (0..n)
        .map(|i| {
            let library = [Library::Swift, Library::Kotlin, Library::ReactNative][i % 3];
            let upper = matches!(library, Library::Swift);
            let anonymous_id = uuid(i, 0x3e5f_9c2a, upper);
            let signed_in = i % 20 < 15 || i % 2 == 0;
            let (kind, name, properties) = match i % 20 {
                0..=3 => (
                    "track",
                    "Order Completed",
                    json!({
                        "order_id": format!("{:024x}", i), "checkout_id": format!("co-{i}"),
                        "affiliation": "Acme App", "total": 27.5, "subtotal": 25.0,
                        "revenue": 22.5, "shipping": 3.0, "tax": 2.0, "discount": 2.5,
                        "coupon": "hasbros", "currency": "USD",
                        "products": [
                            product("507f1f77bcf86cd799439011", "45790-32", "Monopoly: 3rd Edition", 19.0, 1, "Hasbro"),
                            product("505bd76785ebb509fc183733", "46493-32", "Uno Card Game", 3.0, 2, "Mattel")
                        ]
                    }),
                ),
                4..=9 => (
                    "track",
                    "Product Viewed",
                    json!({
                        "product_id": format!("P-{i}"), "sku": "45790-32",
                        "name": "Monopoly: 3rd Edition", "category": "Games", "brand": "Hasbro",
                        "price": 19.0, "currency": "USD", "position": 1
                    }),
                ),
                10..=14 => (
                    "screen",
                    ["Product Detail", "Cart", "Home"][i % 3],
                    json!({"product_id": "507f1f77bcf86cd799439011", "name": "Monopoly: 3rd Edition"}),
                ),
                15..=17 => (
                    "track",
                    "Level Completed",
                    json!({"level": i % 40, "score": 1200 + i % 500, "duration_secs": 95.5}),
                ),
                _ => (
                    "track",
                    "Push Notification Tapped",
                    json!({"campaign": "spring-sale", "message_id": format!("push-{i}")}),
                ),
            };
            let (device, os, screen, user_agent) = match library {
                Library::Kotlin => (
                    json!({"id": anonymous_id, "manufacturer": "Google", "model": "Pixel 8",
                           "name": "shiba", "type": "android",
                           "advertisingId": uuid(i, 0x3840_0000, false),
                           "adTrackingEnabled": i % 4 != 0}),
                    json!({"name": "Android", "version": "14"}),
                    json!({"density": 2.625, "height": 2204, "width": 1080}),
                    Some("Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8 Build/AP2A.240805.005)"),
                ),
                Library::Swift | Library::ReactNative => (
                    json!({"manufacturer": "Apple", "type": "ios", "model": "iPhone16,1",
                           "name": "iPhone", "id": uuid(i, 0x6d1c_2b77, true),
                           "adTrackingEnabled": i % 4 != 0,
                           "advertisingId": uuid(i, 0xa1b2_c3d4, true),
                           "trackingStatus": if i % 4 != 0 { "authorized" } else { "denied" }}),
                    json!({"name": "iOS", "version": "17.4.1"}),
                    json!({"width": 393, "height": 852}),
                    matches!(library, Library::Swift).then_some(
                        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
                    ),
                ),
            };
            let library_name = match library {
                Library::Swift => json!({"name": "analytics-swift", "version": "1.9.4"}),
                Library::Kotlin => json!({"name": "analytics-kotlin", "version": "1.24.1"}),
                Library::ReactNative => json!({"name": "analytics-react-native", "version": "2.21.4"}),
            };
            let mut context = json!({
                "library": library_name,
                "instanceId": uuid(i, 0x0f4e_8d1a, upper),
                "app": {"name": "Acme Shop", "version": "4.12.0", "build": "4120", "namespace": "com.acme.shop"},
                "device": device,
                "os": os,
                "screen": screen,
                "network": {"bluetooth": false, "cellular": i % 3 == 1, "wifi": i % 3 != 1},
                "locale": "en-US",
                "timezone": "America/New_York"
            });
            if let Some(user_agent) = user_agent {
                context["userAgent"] = json!(user_agent);
            }
            if matches!(library, Library::ReactNative) {
                context["traits"] = if signed_in {
                    json!({"email": format!("customer.{i}@example.com")})
                } else {
                    json!({})
                };
            }
            let mut message = json!({
                "type": kind,
                "messageId": uuid(i, 0xb7d3_a1e9, upper),
                "anonymousId": anonymous_id,
                "timestamp": "2024-06-15T11:58:00.120Z",
                "context": context,
                "integrations": {},
                "properties": properties,
                "_metadata": {"bundled": [], "unbundled": [], "bundledIds": []}
            });
            message[if kind == "screen" { "name" } else { "event" }] = json!(name);
            if kind == "screen" && matches!(library, Library::Kotlin) {
                // analytics-kotlin always writes a screen's category.
                message["category"] = json!("");
            }
            if signed_in {
                message["userId"] = json!(format!("user_{i:08x}"));
            }
            serde_json::to_vec(&message).unwrap()
        })
        .collect()
}

fn mapper(settings: &str) -> Mapper {
    let config: FacebookPixelConfig = toml::from_str(settings).unwrap();
    config.mapper().unwrap()
}

fn bench(c: &mut Criterion) {
    let now: DateTime<Utc> = NOW.parse().unwrap();
    let mixes = [
        ("mix", messages(1_000, false)),
        ("all_pii", messages(1_000, true)),
    ];
    let app = app_messages(1_000);
    let web_settings: &[(&str, &str)] = &[
        ("default", r#"content_types = { "Kitchen" = "product" }"#),
        ("phone_country", r#"phone_country = "US""#),
    ];
    // Without these, an app's messages would be website events lacking a URL, and screens
    // would be skipped: neither is what an app's pipeline runs.
    let app_settings: &[(&str, &str)] = &[(
        "default",
        "app_action_source = true\nscreen_events = true\ncontent_types = { \"Games\" = \"product\" }",
    )];
    let runs = [
        ("mix", &mixes[0].1, web_settings),
        ("all_pii", &mixes[1].1, web_settings),
        ("app", &app, app_settings),
    ];
    for (name, inputs, _) in &runs {
        let bytes: usize = inputs.iter().map(Vec::len).sum();
        eprintln!(
            "{name}: {} messages, {} bytes on average",
            inputs.len(),
            bytes / inputs.len()
        );
    }

    let mut group = c.benchmark_group("map_json");
    for (name, inputs, settings_list) in runs {
        group.throughput(Throughput::Elements(inputs.len() as u64));
        for &(settings_name, settings) in settings_list {
            let mapper = mapper(settings);
            let mut out = Vec::with_capacity(4096);
            // Messages are parsed in place, as the pipeline does with the buffer it received
            // them in; here each is first copied into one reused buffer.
            let mut buffer = Vec::with_capacity(4096);
            // Every message must map, or the benchmark measures rejections.
            for input in inputs {
                out.clear();
                buffer.clear();
                buffer.extend_from_slice(input);
                let (outcome, _) = mapper.map_json(&mut buffer, now, &mut out);
                assert_eq!(outcome, Outcome::Mapped(()), "{name}");
            }
            group.bench_function(format!("{name}/{settings_name}"), |b| {
                b.iter(|| {
                    for input in inputs {
                        out.clear();
                        buffer.clear();
                        buffer.extend_from_slice(input);
                        black_box(mapper.map_json(black_box(&mut buffer), now, &mut out));
                    }
                })
            });
        }
    }
    group.finish();

    // Enrichment (issue #7): the same mix with a memory store, off and on. "returning_users"
    // files the mix under 50 users, so most events get keys from what earlier ones taught.
    let returning: Vec<Vec<u8>> = mixes[0]
        .1
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let mut m: serde_json::Value = serde_json::from_slice(input).unwrap();
            m["anonymousId"] = json!(format!("anon-{}", i % 50));
            if !m["userId"].is_null() {
                m["userId"] = json!(format!("user-{}", i % 50));
            }
            serde_json::to_vec(&m).unwrap()
        })
        .collect();
    let mut group = c.benchmark_group("enrichment");
    let mapper = mapper(r#"content_types = { "Kitchen" = "product" }"#);
    let mut out = Vec::with_capacity(4096);
    let mut buffer = Vec::with_capacity(4096);
    for (name, inputs) in [("mix", &mixes[0].1), ("returning_users", &returning)] {
        group.throughput(Throughput::Elements(inputs.len() as u64));
        group.bench_function(format!("{name}/off"), |b| {
            b.iter(|| {
                for input in inputs {
                    out.clear();
                    buffer.clear();
                    buffer.extend_from_slice(input);
                    black_box(mapper.map_json(black_box(&mut buffer), now, &mut out));
                }
            })
        });
        let mut memory = Identities::new(1_000_000, 30 * 24 * 3600);
        group.bench_function(format!("{name}/memory"), |b| {
            b.iter(|| {
                for input in inputs {
                    out.clear();
                    buffer.clear();
                    buffer.extend_from_slice(input);
                    black_box(mapper.map_json_remembering(
                        black_box(&mut buffer),
                        now,
                        &mut out,
                        &mut memory,
                    ));
                }
            })
        });
        eprintln!("{name}: {} users remembered", memory.len());
    }
    group.finish();

    // Where the time goes: parsing alone, into our borrowed tree and into serde_json::Value.
    let inputs = &mixes[0].1;
    let mut group = c.benchmark_group("parse_only");
    group.throughput(Throughput::Elements(inputs.len() as u64));
    let mut buffer = Vec::with_capacity(4096);
    group.bench_function("borrowed_json", |b| {
        b.iter(|| {
            for input in inputs {
                buffer.clear();
                buffer.extend_from_slice(input);
                black_box(fbpixel::json::Json::parse(black_box(&mut buffer)).is_ok());
            }
        })
    });
    group.bench_function("serde_json_value", |b| {
        b.iter(|| {
            for input in inputs {
                black_box(serde_json::from_slice::<serde_json::Value>(black_box(input)).unwrap());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

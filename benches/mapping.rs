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

/// The web mix, shared with `benches/reference.rs`.
#[path = "support/web_mix.rs"]
mod web_mix;
use web_mix::messages;

const NOW: &str = "2024-06-15T12:00:00Z";

/// The allocator the `fbpixel` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

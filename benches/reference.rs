//! The real mapping beside a typed-serde reference of the same mapping, over the same messages
//! in one run, so that their ratio is reproducible (issue 16: the mapping should run at 75% of
//! such a reference or better).
//!
//! The reference is what a hand-written mapping for exactly these messages would be: typed serde
//! structs borrowing from the input (read by serde_json, and again by sonic-rs), the same normalization rules for the fields
//! the mix carries (ASCII only), SHA-256 of the same fields with `sha2`, and the same CAPI JSON
//! written with sonic-rs, as the sink writes it. It knows nothing of what the real mapping must
//! also do (lenient types, rejections by field, settings, app events, consent, …). Before
//! measuring, every message's reference output is checked equal (as JSON) to the real one, so
//! both do the same work.
//!
//!     cargo bench --bench reference
//!
//! The messages are `benches/mapping.rs`'s web mix (`support/web_mix.rs`), mapped with
//! `content_types = { "Kitchen" = "product" }` as there.

use std::borrow::Cow;
use std::hint::black_box;

use chrono::{DateTime, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fbpixel::sinks::facebook_pixel::{FacebookPixelConfig, Mapper, Outcome};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[path = "support/web_mix.rs"]
mod web_mix;

/// The allocator the `fbpixel` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NOW: &str = "2024-06-15T12:00:00Z";

// ---- The input, as typed structs borrowing from it ----

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(rename = "messageId", borrow)]
    message_id: Option<Cow<'a, str>>,
    #[serde(rename = "anonymousId", borrow)]
    anonymous_id: Option<Cow<'a, str>>,
    #[serde(rename = "userId", borrow)]
    user_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    context: Context<'a>,
    #[serde(default, borrow)]
    properties: Properties<'a>,
}

#[derive(Default, Deserialize)]
struct Context<'a> {
    #[serde(borrow)]
    ip: Option<Cow<'a, str>>,
    #[serde(rename = "userAgent", borrow)]
    user_agent: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    page: Page<'a>,
    #[serde(default, borrow)]
    traits: Traits<'a>,
}

#[derive(Default, Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    url: Option<Cow<'a, str>>,
    #[serde(borrow)]
    referrer: Option<Cow<'a, str>>,
}

#[derive(Default, Deserialize)]
struct Traits<'a> {
    #[serde(borrow)]
    email: Option<Cow<'a, str>>,
    #[serde(borrow)]
    phone: Option<Cow<'a, str>>,
    #[serde(rename = "firstName", borrow)]
    first_name: Option<Cow<'a, str>>,
    #[serde(rename = "lastName", borrow)]
    last_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    gender: Option<Cow<'a, str>>,
    #[serde(borrow)]
    birthday: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    address: Address<'a>,
}

#[derive(Default, Deserialize)]
struct Address<'a> {
    #[serde(borrow)]
    city: Option<Cow<'a, str>>,
    #[serde(borrow)]
    state: Option<Cow<'a, str>>,
    #[serde(rename = "postalCode", borrow)]
    postal_code: Option<Cow<'a, str>>,
    #[serde(borrow)]
    country: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Product<'a> {
    #[serde(borrow)]
    product_id: Option<Cow<'a, str>>,
    price: Option<f64>,
    quantity: Option<u64>,
    #[serde(borrow)]
    category: Option<Cow<'a, str>>,
}

/// The properties the mapping reads, and every other one as it came (custom data passes
/// them on).
#[derive(Default)]
struct Properties<'a> {
    revenue: Option<f64>,
    price: Option<f64>,
    quantity: Option<u64>,
    currency: Option<Cow<'a, str>>,
    products: Option<Vec<Product<'a>>>,
    product_id: Option<Cow<'a, str>>,
    name: Option<Cow<'a, str>>,
    category: Option<Cow<'a, str>>,
    order_id: Option<Cow<'a, str>>,
    query: Option<Cow<'a, str>>,
    /// Read but not sent (`total`, `sku`, `url`).
    dropped: usize,
    rest: Vec<(Cow<'a, str>, Scalar<'a>)>,
}

/// A property passed on as it came; the mix's other properties are all strings or numbers.
enum Scalar<'a> {
    String(Cow<'a, str>),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Bool(bool),
    Null,
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Scalar<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, number, boolean or null")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Scalar<'a>, E> {
                Ok(Scalar::String(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Scalar<'a>, E> {
                Ok(Scalar::String(Cow::Owned(v.to_owned())))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Unsigned(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Signed(v))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Null)
            }
        }
        deserializer.deserialize_any(V(std::marker::PhantomData))
    }
}

impl Serialize for Scalar<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Scalar::String(v) => s.serialize_str(v),
            Scalar::Unsigned(v) => s.serialize_u64(*v),
            Scalar::Signed(v) => s.serialize_i64(*v),
            Scalar::Float(v) => s.serialize_f64(*v),
            Scalar::Bool(v) => s.serialize_bool(*v),
            Scalar::Null => s.serialize_unit(),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Properties<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Properties<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("properties")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut p = Properties::default();
                while let Some(key) = map.next_key::<&'de str>()? {
                    match key {
                        "revenue" => p.revenue = map.next_value()?,
                        "price" => p.price = map.next_value()?,
                        "quantity" => p.quantity = map.next_value()?,
                        "currency" => p.currency = map.next_value()?,
                        "products" => p.products = map.next_value()?,
                        "product_id" => p.product_id = map.next_value()?,
                        "name" => p.name = map.next_value()?,
                        "category" => p.category = map.next_value()?,
                        "order_id" => p.order_id = map.next_value()?,
                        "query" => p.query = map.next_value()?,
                        "total" | "sku" | "url" => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                            p.dropped += 1;
                        }
                        _ => p.rest.push((Cow::Borrowed(key), map.next_value()?)),
                    }
                }
                Ok(p)
            }
        }
        deserializer.deserialize_map(V(std::marker::PhantomData))
    }
}

// ---- The output: the CAPI server event ----

/// Lowercase hex SHA-256, inline.
struct Hex([u8; 64]);

impl Hex {
    fn of(text: &str) -> Hex {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let digest = Sha256::digest(text.as_bytes());
        let mut out = [0u8; 64];
        for (i, byte) in digest.iter().enumerate() {
            out[2 * i] = DIGITS[(byte >> 4) as usize];
            out[2 * i + 1] = DIGITS[(byte & 15) as usize];
        }
        Hex(out)
    }
}

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(std::str::from_utf8(&self.0).expect("hex is ASCII"))
    }
}

#[derive(Serialize)]
struct ServerEvent<'a> {
    event_name: &'a str,
    event_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_source_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    referrer_url: Option<&'a str>,
    action_source: &'static str,
    user_data: UserData<'a>,
    custom_data: CustomData<'a>,
}

#[derive(Default, Serialize)]
struct UserData<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    em: Option<[Hex; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ph: Option<[Hex; 1]>,
    #[serde(rename = "fn", skip_serializing_if = "Option::is_none")]
    first_name: Option<[Hex; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ln: Option<[Hex; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ge: Option<[Hex; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    db: Option<[Hex; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ct: Option<[Hex; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    st: Option<[Hex; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    zp: Option<[Hex; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    country: Option<[Hex; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_id: Option<[Hex; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ip_address: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fbc: Option<String>,
}

#[derive(Serialize)]
struct Content<'a> {
    id: &'a str,
    quantity: u64,
    item_price: f64,
}

#[derive(Default)]
struct CustomData<'a> {
    value: Option<f64>,
    currency: Option<String>,
    content_ids: Vec<&'a str>,
    contents: Vec<Content<'a>>,
    content_type: Option<&'a str>,
    content_name: Option<&'a str>,
    content_category: Option<&'a str>,
    num_items: Option<usize>,
    order_id: Option<&'a str>,
    search_string: Option<&'a str>,
    rest: &'a [(Cow<'a, str>, Scalar<'a>)],
}

impl Serialize for CustomData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if let Some(v) = self.value {
            map.serialize_entry("value", &v)?;
        }
        if let Some(v) = &self.currency {
            map.serialize_entry("currency", v)?;
        }
        if !self.content_ids.is_empty() {
            map.serialize_entry("content_ids", &self.content_ids)?;
            map.serialize_entry("contents", &self.contents)?;
        }
        if let Some(v) = self.content_type {
            map.serialize_entry("content_type", v)?;
        }
        if let Some(v) = self.content_name {
            map.serialize_entry("content_name", v)?;
        }
        if let Some(v) = self.content_category {
            map.serialize_entry("content_category", v)?;
        }
        if let Some(v) = self.num_items {
            map.serialize_entry("num_items", &v)?;
        }
        if let Some(v) = self.order_id {
            map.serialize_entry("order_id", v)?;
        }
        if let Some(v) = self.search_string {
            map.serialize_entry("search_string", v)?;
        }
        for (key, value) in self.rest {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

// ---- The mapping, for what the mix carries ----

/// `text` trimmed and lowercased, borrowed when it already is.
fn lower(text: &str) -> Cow<'_, str> {
    let text = text.trim();
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(text.to_ascii_lowercase())
    } else {
        Cow::Borrowed(text)
    }
}

/// Letters only, lowercased (`fn`, `ln`, `ct`).
fn letters(text: &str) -> String {
    text.bytes()
        .filter(u8::is_ascii_alphabetic)
        .map(|b| (b.to_ascii_lowercase()) as char)
        .collect()
}

/// Digits only, without leading zeros (`ph` without a phone region).
fn digits(text: &str) -> String {
    let all: String = text.chars().filter(char::is_ascii_digit).collect();
    all.trim_start_matches('0').to_owned()
}

fn state(name: &str) -> Option<&'static str> {
    Some(match lower(name).as_ref() {
        "california" | "ca" => "ca",
        "new york" | "ny" => "ny",
        "texas" | "tx" => "tx",
        "washington" | "wa" => "wa",
        _ => return None,
    })
}

fn country(name: &str) -> Option<&'static str> {
    Some(match lower(name).as_ref() {
        "united states" | "us" | "usa" => "us",
        "canada" | "ca" => "ca",
        "germany" | "de" => "de",
        "france" | "fr" => "fr",
        _ => return None,
    })
}

fn gender(text: &str) -> Option<&'static str> {
    match lower(text).as_ref() {
        "female" | "f" => Some("f"),
        "male" | "m" => Some("m"),
        _ => None,
    }
}

fn hashed(value: Option<&str>) -> Option<[Hex; 1]> {
    value.filter(|v| !v.is_empty()).map(|v| [Hex::of(v)])
}

/// `fb.1.{event time in ms}.{fbclid}` when the page URL carries one.
fn fbc(url: Option<&str>, time_ms: i64) -> Option<String> {
    let url = url?;
    let start = url.find("fbclid=")? + "fbclid=".len();
    let id = &url[start..];
    let id = &id[..id.find('&').unwrap_or(id.len())];
    (!id.is_empty()).then(|| format!("fb.1.{time_ms}.{id}"))
}

/// Which parser reads the typed structs.
#[derive(Clone, Copy, Debug)]
enum Parser {
    SerdeJson,
    SonicRs,
}

/// [`reference`] read by serde_json; a function of its own so profiles tell the parsers apart.
#[inline(never)]
fn reference_serde_json(bytes: &[u8], content_types: &[(&str, &str)], out: &mut Vec<u8>) {
    reference(Parser::SerdeJson, bytes, content_types, out)
}

/// [`reference`] read by sonic-rs.
#[inline(never)]
fn reference_sonic_rs(bytes: &[u8], content_types: &[(&str, &str)], out: &mut Vec<u8>) {
    reference(Parser::SonicRs, bytes, content_types, out)
}

/// The reference mapping: message bytes → server event JSON appended to `out`.
fn reference(parser: Parser, bytes: &[u8], content_types: &[(&str, &str)], out: &mut Vec<u8>) {
    let m: Message = match parser {
        Parser::SerdeJson => serde_json::from_slice(bytes).expect("the mix is valid"),
        Parser::SonicRs => sonic_rs::from_slice(bytes).expect("the mix is valid"),
    };
    let time: DateTime<Utc> = m
        .timestamp
        .as_deref()
        .expect("a timestamp")
        .parse()
        .unwrap();
    let event = m.event.as_deref().unwrap_or("");
    let event_name = match event {
        "Order Completed" => "Purchase",
        "Checkout Started" => "InitiateCheckout",
        "Product Viewed" => "ViewContent",
        "Product Added" => "AddToCart",
        "Products Searched" => "Search",
        other => other,
    };
    let traits = &m.context.traits;
    let address = &traits.address;
    let country_code = address.country.as_deref().and_then(country);
    let zip = address.postal_code.as_deref().map(|z| {
        let z = lower(z);
        let end = z.find('-').unwrap_or(z.len());
        let end = if country_code == Some("us") {
            end.min(5)
        } else {
            end
        };
        z[..end].to_owned()
    });
    let external_id = m
        .user_id
        .as_deref()
        .or(m.anonymous_id.as_deref())
        .map(lower);
    let user_data = UserData {
        em: hashed(traits.email.as_deref().map(lower).as_deref()),
        ph: hashed(traits.phone.as_deref().map(digits).as_deref()),
        first_name: hashed(traits.first_name.as_deref().map(letters).as_deref()),
        ln: hashed(traits.last_name.as_deref().map(letters).as_deref()),
        ge: hashed(traits.gender.as_deref().and_then(gender)),
        db: hashed(
            traits
                .birthday
                .as_deref()
                .map(|b| b.replace('-', ""))
                .as_deref(),
        ),
        ct: hashed(address.city.as_deref().map(letters).as_deref()),
        st: hashed(address.state.as_deref().and_then(state)),
        zp: hashed(zip.as_deref()),
        country: hashed(country_code),
        external_id: hashed(external_id.as_deref()),
        client_ip_address: m.context.ip.as_deref(),
        client_user_agent: m.context.user_agent.as_deref(),
        fbc: fbc(m.context.page.url.as_deref(), time.timestamp_millis()),
    };

    let p = &m.properties;
    let content_type = |category: Option<&str>| {
        let mapped =
            category.and_then(|c| content_types.iter().find(|(k, _)| *k == c).map(|(_, v)| *v));
        Some(mapped.unwrap_or("product"))
    };
    let currency = || p.currency.as_deref().map(str::to_ascii_uppercase);
    let custom_data = match event_name {
        "Purchase" | "InitiateCheckout" => {
            let products = p.products.as_deref().unwrap_or_default();
            let first = products.first().and_then(|p| p.category.as_deref());
            let same = products.iter().all(|p| p.category.as_deref() == first);
            CustomData {
                value: p.revenue,
                currency: currency(),
                content_ids: products
                    .iter()
                    .filter_map(|p| p.product_id.as_deref())
                    .collect(),
                contents: products
                    .iter()
                    .map(|p| Content {
                        id: p.product_id.as_deref().unwrap_or(""),
                        quantity: p.quantity.unwrap_or(1),
                        item_price: p.price.unwrap_or(0.0),
                    })
                    .collect(),
                content_type: content_type(first),
                content_category: if same { first } else { None },
                num_items: Some(products.len()),
                order_id: p.order_id.as_deref(),
                rest: &p.rest,
                ..CustomData::default()
            }
        }
        "ViewContent" | "AddToCart" => {
            let id = p.product_id.as_deref().unwrap_or("");
            let quantity = p.quantity.unwrap_or(1);
            let price = p.price.unwrap_or(0.0);
            CustomData {
                value: Some(price * quantity as f64),
                currency: currency(),
                content_ids: vec![id],
                contents: vec![Content {
                    id,
                    quantity,
                    item_price: price,
                }],
                content_type: content_type(p.category.as_deref()),
                content_name: p.name.as_deref(),
                content_category: p.category.as_deref(),
                rest: &p.rest,
                ..CustomData::default()
            }
        }
        "Search" => CustomData {
            search_string: p.query.as_deref(),
            rest: &p.rest,
            ..CustomData::default()
        },
        _ => CustomData {
            rest: &p.rest,
            ..CustomData::default()
        },
    };
    let server_event = ServerEvent {
        event_name,
        event_time: time.timestamp(),
        event_id: m.message_id.as_deref(),
        event_source_url: m.context.page.url.as_deref(),
        referrer_url: m.context.page.referrer.as_deref(),
        action_source: "website",
        user_data,
        custom_data,
    };
    sonic_rs::to_writer(&mut *out, &server_event).expect("writing to a Vec");
}

fn bench(c: &mut Criterion) {
    let now: DateTime<Utc> = NOW.parse().unwrap();
    let content_types = [("Kitchen", "product")];
    let config: FacebookPixelConfig =
        toml::from_str(r#"content_types = { "Kitchen" = "product" }"#).unwrap();
    let mapper: Mapper = config.mapper().unwrap();
    let inputs = web_mix::messages(1_000, false);

    // Both must write the same server events, or the ratio compares different work.
    let (mut out, mut expected, mut buffer) = (Vec::new(), Vec::new(), Vec::new());
    for input in &inputs {
        out.clear();
        expected.clear();
        buffer.clear();
        buffer.extend_from_slice(input);
        let (outcome, _) = mapper.map_json(&mut buffer, now, &mut expected);
        assert_eq!(outcome, Outcome::Mapped(()));
        let real: serde_json::Value = serde_json::from_slice(&expected).unwrap();
        for parser in [Parser::SerdeJson, Parser::SonicRs] {
            out.clear();
            reference(parser, input, &content_types, &mut out);
            let ours: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(
                ours,
                real,
                "the reference ({parser:?}) differs from the mapping for {}",
                String::from_utf8_lossy(input)
            );
        }
    }

    interleaved(&mapper, &inputs, &content_types, now);

    let mut group = c.benchmark_group("reference");
    group.throughput(Throughput::Elements(inputs.len() as u64));
    // As benches/mapping.rs: each message copied into one reused buffer, parsed in place.
    group.bench_function("mapping/mix", |b| {
        b.iter(|| {
            for input in &inputs {
                out.clear();
                buffer.clear();
                buffer.extend_from_slice(input);
                black_box(mapper.map_json_into(black_box(&mut buffer), now, &mut out, None));
            }
        })
    });
    type Reference = fn(&[u8], &[(&str, &str)], &mut Vec<u8>);
    let references: [(&str, Reference); 2] = [
        ("typed_serde_json/mix", reference_serde_json),
        ("typed_sonic_rs/mix", reference_sonic_rs),
    ];
    for (name, reference) in references {
        group.bench_function(name, |b| {
            b.iter(|| {
                for input in &inputs {
                    out.clear();
                    buffer.clear();
                    buffer.extend_from_slice(input);
                    reference(black_box(&buffer), &content_types, &mut out);
                    black_box(&out);
                }
            })
        });
    }
    group.finish();
}

/// The ratios measured interleaved: each round times one pass over the messages with each
/// implementation in turn, so that this machine's drift (±15% between runs, more when it is
/// shared) hits all of them alike; criterion's groups, run one after the other, do not pair.
/// Prints the median pass of each and the median of the per-round ratios.
fn interleaved(
    mapper: &Mapper,
    inputs: &[Vec<u8>],
    content_types: &[(&str, &str)],
    now: DateTime<Utc>,
) {
    let rounds: usize = std::env::var("REFERENCE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let (mut out, mut buffer) = (Vec::with_capacity(4096), Vec::with_capacity(4096));
    let mut pass = |which: usize| {
        let start = std::time::Instant::now();
        for input in inputs {
            out.clear();
            buffer.clear();
            buffer.extend_from_slice(input);
            match which {
                0 => {
                    black_box(mapper.map_json_into(black_box(&mut buffer), now, &mut out, None));
                }
                1 => reference_serde_json(black_box(&buffer), content_types, &mut out),
                _ => reference_sonic_rs(black_box(&buffer), content_types, &mut out),
            }
            black_box(&out);
        }
        start.elapsed().as_secs_f64()
    };
    let mut times = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..rounds {
        // The order turns each round, so neither always runs with a warm cache.
        for k in 0..3 {
            let which = (round + k) % 3;
            times[which].push(pass(which));
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ratios = |i: usize, times: &[Vec<f64>; 3]| -> Vec<f64> {
        // The mapping's rate over the reference's: reference time / mapping time.
        times[i].iter().zip(&times[0]).map(|(r, m)| r / m).collect()
    };
    let (mut serde_ratio, mut sonic_ratio) = (ratios(1, &times), ratios(2, &times));
    let n = inputs.len() as f64;
    let [mut mapping, mut serde, mut sonic] = times;
    eprintln!(
        "interleaved, {rounds} rounds of {} messages: mapping {:.0} events/s, typed_serde_json {:.0}, typed_sonic_rs {:.0}; mapping at {:.1}% of typed_serde_json and {:.1}% of typed_sonic_rs (median of per-round ratios)",
        inputs.len(),
        n / median(&mut mapping),
        n / median(&mut serde),
        n / median(&mut sonic),
        100.0 * median(&mut serde_ratio),
        100.0 * median(&mut sonic_ratio),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);

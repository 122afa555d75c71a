//! Delivery tests of the sink against an in-process stand-in for the Graph API:
//! the sink is built from TOML through the real path, fed Segment messages
//! through an [`EventStream`], and what reaches the stand-in, the dead letter
//! and the acknowledgements is checked (SPEC §7).

mod flow;
mod mapping;
mod workers;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{FacebookPixelConfig, SINK_TYPE};
use crate::acks::{BatchNotifier, BatchStatus};
use crate::component::{Backlog, BuildContext, EventStream, SinkConfig, ValidateContext};
use crate::config::{ComponentConfig, ComponentKind};
use crate::event::Event;
use crate::telemetry::{ComponentInfo, ComponentMetrics};

const TOKEN: &str = "TOKEN-SECRET-abc";
const EVENTS_PATH: &str = "/v26.0/123/events";
/// Every await on the sink is bounded by this, so a bug cannot hang the suite.
const LIMIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// The stand-in for the Graph API.
// ---------------------------------------------------------------------------

// The stand-in shared with the integration tests and examples/graph_standin.rs, which use
// other parts of it: plain threads, so awaiting the sink here never blocks it.
#[allow(dead_code)]
#[path = "../../../../tests/support/graph.rs"]
mod graph;

use graph::{GraphStandin, RateLimit, Recorded};

/// How many times each event_id was in a request answered with 2xx.
fn delivered(graph: &GraphStandin) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in graph.requests() {
        if (200..300).contains(&r.status) {
            for id in r.event_ids() {
                *counts.entry(id).or_insert(0) += 1;
            }
        }
    }
    counts
}

fn ok(body: &Value) -> (u16, Value) {
    let n = body["data"].as_array().map_or(0, Vec::len);
    (200, json!({ "events_received": n, "fbtrace_id": "OK" }))
}

fn graph_error(status: u16, code: i64, message: &str) -> (u16, Value) {
    (
        status,
        json!({ "error": { "code": code, "message": message, "type": "OAuthException", "fbtrace_id": "T" } }),
    )
}

// ---------------------------------------------------------------------------
// Building and running the sink.
// ---------------------------------------------------------------------------

/// A fresh, empty directory for one test's dead letter.
fn temp_dir(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "fbpixel-sink-tests-{}-{n}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The sink's settings, parsed from TOML as a pipeline's `[sinks.facebook]` table is.
/// `extra` adds lines (it must not repeat a key of the base settings).
fn config(port: u16, dead_letter: Option<&Path>, extra: &str) -> FacebookPixelConfig {
    let mut text = format!(
        r#"
endpoint = "http://127.0.0.1:{port}"
pixel_id = "123"
access_token = "{TOKEN}"
request.retry_initial_backoff_secs = 0.05
request.retry_max_duration_secs = 0.2
batch.timeout_secs = 0.05
"#
    );
    if let Some(path) = dead_letter {
        text.push_str(&format!(
            "dead_letter.path = {:?}\n",
            path.display().to_string()
        ));
    }
    text.push_str(extra);
    let component = ComponentConfig {
        id: "facebook".into(),
        kind: ComponentKind::Sink,
        type_name: SINK_TYPE.into(),
        inputs: vec!["in".into()],
        options: toml::from_str(&text).unwrap(),
        file: PathBuf::new(),
    };
    // The registry accepts it under its type name...
    let (_, parsed, errors) = crate::components::sink(&component);
    assert!(parsed.is_some() && errors.is_empty(), "{errors:?}");
    // ...and these are the settings it parses.
    let (_, own, errors) = crate::component::SinkOptions::split(&component);
    assert!(errors.is_empty(), "{errors:?}");
    let config: FacebookPixelConfig = own.parse_options().unwrap();
    assert!(config.problems().is_empty(), "{:?}", config.problems());
    config
}

/// Validate and build the sink, as the topology does.
async fn build(
    config: &FacebookPixelConfig,
    metrics: ComponentMetrics,
) -> Result<
    (
        Box<dyn crate::component::Sink>,
        crate::component::Healthcheck,
    ),
    String,
> {
    let cx = ValidateContext {
        id: "facebook".into(),
        data_dir: None,
    };
    let valid = config.validate(&cx).map_err(|e| e.0)?;
    valid
        .build(BuildContext {
            metrics,
            data_dir: None,
            permissions: Default::default(),
        })
        .await
        .map_err(|e| e.0)
}

fn metrics() -> ComponentMetrics {
    ComponentMetrics::new(ComponentInfo {
        id: "facebook".into(),
        kind: "sink",
        type_name: SINK_TYPE.into(),
    })
}

/// Build the sink, feed it `batches` (each one `EventArray`, each with its own
/// acknowledgement), end the stream, wait for the sink to finish, and return
/// each batch's status.
async fn run(config: &FacebookPixelConfig, batches: Vec<Vec<Value>>) -> Vec<BatchStatus> {
    let metrics = metrics();
    let (sink, _healthcheck) = build(config, metrics.clone())
        .await
        .unwrap_or_else(|e| panic!("build: {e}"));
    let (tx, rx) = mpsc::channel(16);
    let backlog = Backlog::default();
    let stream = EventStream::new(rx, backlog.clone(), metrics);
    let running = tokio::spawn(sink.run(stream));
    let mut receivers = Vec::new();
    for messages in batches {
        let (finalizer, receiver) = BatchNotifier::new();
        // A finalizer dropped without a report fails its batch: the original
        // goes to the last event, clones to the others.
        let mut finalizer = Some(finalizer);
        let last = messages.len().saturating_sub(1);
        let events: Vec<Event> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let f = if i == last {
                    finalizer.take()
                } else {
                    finalizer.clone()
                };
                Event::from_json(Bytes::from(serde_json::to_vec(m).unwrap()))
                    .with_finalizer(f.expect("one finalizer per event"))
            })
            .collect();
        backlog.reserve(events.len()).await;
        tx.send(events).await.unwrap();
        receivers.push(receiver);
    }
    drop(tx);
    tokio::time::timeout(LIMIT, running)
        .await
        .expect("the sink finishes once its input ends")
        .expect("the sink task does not panic")
        .expect("the sink runs without error");
    let mut statuses = Vec::new();
    for receiver in receivers {
        statuses.push(
            tokio::time::timeout(LIMIT, receiver.wait())
                .await
                .expect("every event is finalized"),
        );
    }
    statuses
}

/// A recent time, inside Meta's window.
fn recent() -> String {
    (Utc::now() - chrono::Duration::seconds(60)).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A track call that maps, shaped like examples/segment-events.ndjson.
fn track(message_id: &str) -> Value {
    json!({
        "type": "track",
        "messageId": message_id,
        "anonymousId": "a1b2c3d4-anon",
        "userId": "user-7731",
        "timestamp": recent(),
        "context": {
            "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
            "ip": "203.0.113.42",
            "page": { "url": "https://shop.example/products/kettle?utm_source=fb&fbclid=IwAR2xYz" },
            "traits": {
                "email": "  Jane.Doe@Example.COM ",
                "phone": "(650) 555-0134",
                "firstName": "Jane",
                "lastName": "Doe",
                "address": { "city": "San Francisco", "state": "California", "postalCode": "94105-1804", "country": "United States" }
            }
        },
        "event": "Product Viewed",
        "properties": {
            "product_id": "KET-01",
            "sku": "KET-01-BLK",
            "name": "Kettle",
            "category": "Kitchen",
            "price": 39.99,
            "currency": "usd"
        }
    })
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:02}")).collect()
}

fn tracks(ids: &[String]) -> Vec<Value> {
    ids.iter().map(|id| track(id)).collect()
}

/// Each id exactly once, and nothing else.
fn assert_each_once(delivered: &BTreeMap<String, usize>, ids: &[String]) {
    let expected: BTreeMap<String, usize> = ids.iter().map(|id| (id.clone(), 1)).collect();
    assert_eq!(delivered, &expected, "delivered event_id counts");
}

fn dead_letter_lines(path: &Path) -> Vec<Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each dead-letter line is JSON"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

fn assert_events_requests(requests: &[Recorded]) {
    for r in requests {
        assert_eq!(r.method, "POST", "{r:?}");
        assert_eq!(r.target, EVENTS_PATH, "{r:?}");
    }
}

// ---------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_events_are_delivered_once_in_batches_with_the_token_only_in_the_header() {
    let graph = GraphStandin::start(|_, r| ok(&r.json()));
    let dir = temp_dir("ok");
    let dead_letter = dir.join("dead.ndjson");
    let config = config(graph.port, Some(&dead_letter), "batch.max_events = 4\n");
    let ids = ids("ok", 10);
    let statuses = run(&config, vec![tracks(&ids)]).await;

    assert_eq!(statuses, [BatchStatus::Delivered]);
    let requests = graph.requests();
    assert_each_once(&delivered(&graph), &ids);
    assert_events_requests(&requests);
    let sizes: Vec<usize> = requests.iter().map(|r| r.event_ids().len()).collect();
    assert!(sizes.iter().all(|&n| (1..=4).contains(&n)), "{sizes:?}");
    assert_eq!(sizes.len(), 3, "10 events at 4 a request: {sizes:?}");
    for r in &requests {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str()),
            "{r:?}"
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(!r.target.contains(TOKEN), "token in the URL: {}", r.target);
        assert!(!r.target.contains("access_token"), "{}", r.target);
        assert!(!r.body.contains(TOKEN), "token in the body");
        assert!(r.json()["data"].is_array(), "{}", r.body);
        for event in r.json()["data"].as_array().unwrap() {
            assert_eq!(event["event_name"], "ViewContent", "{event}");
            assert_eq!(event["action_source"], "website");
        }
    }
    assert!(dead_letter_lines(&dead_letter).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_is_retried_and_the_events_delivered_once() {
    let graph = GraphStandin::start(|n, r| {
        if n == 0 {
            (500, json!({}))
        } else {
            ok(&r.json())
        }
    });
    let dir = temp_dir("5xx");
    let dead_letter = dir.join("dead.ndjson");
    let config = config(graph.port, Some(&dead_letter), "");
    let ids = ids("r5", 3);
    let statuses = run(&config, vec![tracks(&ids)]).await;

    let requests = graph.requests();
    assert_eq!(requests.len(), 2, "one failure, one retry");
    assert_events_requests(&requests);
    assert_eq!(requests[0].status, 500);
    assert_eq!(
        requests[0].json(),
        requests[1].json(),
        "the retry resends the batch"
    );
    assert_each_once(&delivered(&graph), &ids);
    assert_eq!(statuses, [BatchStatus::Delivered]);
    assert!(dead_letter_lines(&dead_letter).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_code_17_is_retried_and_the_events_delivered_once() {
    let graph = GraphStandin::start(|n, r| {
        let body = &r.json();
        if n == 0 {
            graph_error(400, 17, "User request limit reached")
        } else {
            ok(body)
        }
    });
    let dir = temp_dir("throttled");
    let dead_letter = dir.join("dead.ndjson");
    let config = config(graph.port, Some(&dead_letter), "");
    let ids = ids("r17", 3);
    let statuses = run(&config, vec![tracks(&ids)]).await;

    let requests = graph.requests();
    assert_eq!(requests.len(), 2, "one throttled, one retry");
    assert_events_requests(&requests);
    assert_each_once(&delivered(&graph), &ids);
    assert_eq!(statuses, [BatchStatus::Delivered]);
    assert!(dead_letter_lines(&dead_letter).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_holds_the_events_until_accepted_without_dead_lettering() {
    let graph = GraphStandin::start(|n, r| {
        let body = &r.json();
        if n < 3 {
            graph_error(
                400,
                190,
                "Invalid OAuth access token - Cannot parse access token",
            )
        } else {
            ok(body)
        }
    });
    let dir = temp_dir("token");
    let dead_letter = dir.join("dead.ndjson");
    let config = config(graph.port, Some(&dead_letter), "");
    let ids = ids("r190", 4);
    let statuses = run(&config, vec![tracks(&ids)]).await;

    let requests = graph.requests();
    assert_eq!(requests.len(), 4, "three refused, then accepted");
    assert_events_requests(&requests);
    for r in &requests {
        assert_eq!(r.event_ids(), ids, "the whole batch is held and resent");
    }
    assert_each_once(&delivered(&graph), &ids);
    assert!(
        dead_letter_lines(&dead_letter).is_empty(),
        "a credentials error must not dead-letter events"
    );
    assert_eq!(statuses, [BatchStatus::Delivered]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_batch_is_bisected_until_each_bad_event_is_alone_in_the_dead_letter() {
    let ids = ids("bis", 10);
    let bad: HashSet<String> = [ids[2].clone(), ids[7].clone()].into();
    let bad_in_script = bad.clone();
    let graph = GraphStandin::start(move |_, r| {
        let body = &r.json();
        let has_bad = body["data"].as_array().is_some_and(|data| {
            data.iter().any(|e| {
                e["event_id"]
                    .as_str()
                    .is_some_and(|id| bad_in_script.contains(id))
            })
        });
        if has_bad {
            (
                400,
                json!({"error":{"code":100,"error_subcode":2804003,"message":"Invalid parameter","fbtrace_id":"TRACE1"}}),
            )
        } else {
            ok(body)
        }
    });
    let dir = temp_dir("bisect");
    let dead_letter = dir.join("dead.ndjson");
    let config = config(graph.port, Some(&dead_letter), "");
    let statuses = run(&config, vec![tracks(&ids)]).await;

    let requests = graph.requests();
    assert_events_requests(&requests);
    assert_eq!(
        requests[0].event_ids(),
        ids,
        "the first request is the whole batch"
    );
    let good: Vec<String> = ids
        .iter()
        .filter(|id| !bad.contains(*id))
        .cloned()
        .collect();
    assert_each_once(&delivered(&graph), &good);
    for id in &bad {
        assert!(
            requests.iter().any(|r| r.event_ids() == [id.clone()]),
            "{id} was never sent alone"
        );
    }

    let lines = dead_letter_lines(&dead_letter);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let mut dead: Vec<String> = Vec::new();
    for line in &lines {
        assert_eq!(line["stage"], "delivery", "{line}");
        assert_eq!(line["error"]["code"], 100, "{line}");
        assert_eq!(line["error"]["error_subcode"], 2804003, "{line}");
        assert_eq!(line["error"]["message"], "Invalid parameter", "{line}");
        assert_eq!(line["error"]["fbtrace_id"], "TRACE1", "{line}");
        assert!(line["reason"].is_string(), "{line}");
        assert!(line["time"].is_string(), "{line}");
        let id = line["event"]["messageId"].as_str().unwrap().to_string();
        assert_eq!(
            line["event"],
            track_like(&line["event"], &id),
            "the original event is kept whole"
        );
        dead.push(id);
    }
    dead.sort();
    let mut expected: Vec<String> = bad.iter().cloned().collect();
    expected.sort();
    assert_eq!(dead, expected);
    let text = std::fs::read_to_string(&dead_letter).unwrap();
    assert!(!text.contains(TOKEN), "the dead letter holds the token");
    assert_eq!(
        statuses,
        [BatchStatus::Delivered],
        "dead-lettered events count as handled"
    );
}

/// `track(id)` with the timestamp of `original`, to compare a dead-lettered event with what was sent.
fn track_like(original: &Value, id: &str) -> Value {
    let mut expected = track(id);
    expected["timestamp"] = original["timestamp"].clone();
    expected
}

fn mapping_rejects() -> Vec<Value> {
    let mut no_name = track("map-no-name");
    no_name.as_object_mut().unwrap().remove("event");
    let mut old = track("map-old");
    old["timestamp"] = json!(
        (Utc::now() - chrono::Duration::days(30)).to_rfc3339_opts(SecondsFormat::Millis, true)
    );
    vec![no_name, old]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_rejections_go_to_the_dead_letter_and_count_as_handled() {
    let graph = GraphStandin::start(|_, r| ok(&r.json()));
    let dir = temp_dir("mapping");
    let dead_letter = dir.join("dead.ndjson");
    let config = config(graph.port, Some(&dead_letter), "");
    let good = ids("map-good", 1);
    let statuses = run(&config, vec![mapping_rejects(), tracks(&good)]).await;

    assert_eq!(
        statuses,
        [BatchStatus::Delivered, BatchStatus::Delivered],
        "dead-lettered counts as handled"
    );
    assert_each_once(&delivered(&graph), &good);
    let lines = dead_letter_lines(&dead_letter);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let by_id: BTreeMap<&str, &Value> = lines
        .iter()
        .map(|l| (l["event"]["messageId"].as_str().unwrap(), l))
        .collect();
    for line in &lines {
        assert_eq!(line["stage"], "mapping", "{line}");
        assert!(line.get("error").is_none(), "{line}");
    }
    let reason = |id: &str| by_id[id]["reason"].as_str().unwrap().to_string();
    assert!(
        reason("map-no-name").starts_with("event:"),
        "{}",
        reason("map-no-name")
    );
    assert!(
        reason("map-old").contains("older than 7 days"),
        "{}",
        reason("map-old")
    );
    assert!(by_id["map-no-name"]["event"].get("event").is_none());
    assert!(
        !std::fs::read_to_string(&dead_letter)
            .unwrap()
            .contains(TOKEN)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_rejections_without_a_dead_letter_are_rejected() {
    let graph = GraphStandin::start(|_, r| ok(&r.json()));
    let config = config(graph.port, None, "");
    let statuses = run(&config, vec![mapping_rejects()]).await;

    assert_eq!(statuses, [BatchStatus::Rejected]);
    assert!(graph.requests().is_empty(), "nothing to send");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_retry_attempts_a_failing_batch_ends_in_the_dead_letter() {
    let graph = GraphStandin::start(|_, _| (500, json!({})));
    let dir = temp_dir("give-up");
    let dead_letter = dir.join("dead.ndjson");
    let config = config(
        graph.port,
        Some(&dead_letter),
        "request.retry_attempts = 2\n",
    );
    let ids = ids("give-up", 3);
    let statuses = run(&config, vec![tracks(&ids)]).await;

    assert_eq!(graph.requests().len(), 2, "two attempts, no more");
    assert!(delivered(&graph).is_empty());
    let lines = dead_letter_lines(&dead_letter);
    assert_eq!(lines.len(), 3, "{lines:?}");
    let mut dead: Vec<String> = lines
        .iter()
        .map(|l| {
            assert_eq!(l["stage"], "delivery", "{l}");
            let reason = l["reason"].as_str().unwrap();
            assert!(reason.contains("gave up after 2 attempts"), "{reason}");
            l["event"]["messageId"].as_str().unwrap().to_string()
        })
        .collect();
    dead.sort();
    assert_eq!(dead, ids);
    assert_eq!(statuses, [BatchStatus::Delivered]);
}

async fn healthcheck(graph: &GraphStandin) -> Result<(), String> {
    let config = config(graph.port, None, "");
    let (_sink, healthcheck) = build(&config, metrics())
        .await
        .unwrap_or_else(|e| panic!("build: {e}"));
    tokio::time::timeout(LIMIT, healthcheck)
        .await
        .expect("the healthcheck answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_passes_when_the_graph_api_returns_the_pixel() {
    let graph = GraphStandin::start(|_, _| (200, json!({ "id": "123" })));
    assert_eq!(healthcheck(&graph).await, Ok(()));
    let requests = graph.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].target, "/v26.0/123?fields=id");
    assert_eq!(
        requests[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_names_access_token_on_a_bad_token_without_printing_it() {
    let graph = GraphStandin::start(|_, _| {
        graph_error(
            400,
            190,
            "Invalid OAuth access token - Cannot parse access token",
        )
    });
    let error = healthcheck(&graph).await.unwrap_err();
    assert!(error.contains("`access_token`"), "{error}");
    assert!(!error.contains(TOKEN), "{error}");
    let requests = graph.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].target, "/v26.0/123?fields=id");
}

// ---------------------------------------------------------------------------
// Several pixels in one sink (`pixel_id_field`, `pixels`).
// ---------------------------------------------------------------------------

const OTHER_TOKEN: &str = "TOKEN-456-def";

fn two_pixels() -> String {
    format!(
        "pixel_id_field = \"context.pixel_id\"\npixels = {{ \"456\" = \"{OTHER_TOKEN}\" }}\napp_secret = \"s3cret\"\n"
    )
}

fn to_pixel(message_id: &str, pixel: Option<&str>) -> Value {
    let mut message = track(message_id);
    if let Some(pixel) = pixel {
        message["context"]["pixel_id"] = json!(pixel);
    }
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pixels_get_separate_requests_with_their_own_tokens() {
    // Pixel 456's requests are refused one event at a time, to see its dead-letter entries.
    let graph = GraphStandin::start(|_, r| {
        if r.target.starts_with("/v26.0/456/") && r.event_ids().iter().any(|id| id == "p456-bad") {
            graph_error(400, 100, "Invalid parameter")
        } else {
            ok(&r.json())
        }
    });
    let dir = temp_dir("pixels");
    let dead_letter = dir.join("dead.ndjson");
    let config = config(graph.port, Some(&dead_letter), &two_pixels());
    let mut messages = Vec::new();
    for i in 0..3 {
        messages.push(to_pixel(&format!("p123-{i}"), None));
        messages.push(to_pixel(&format!("p456-{i}"), Some("456")));
    }
    messages.push(to_pixel("p456-bad", Some("456")));
    messages.push(to_pixel("p999", Some("999")));
    run(&config, vec![messages]).await;

    let requests = graph.requests();
    let accepted: Vec<&Recorded> = requests.iter().filter(|r| r.status == 200).collect();
    let ids_to = |pixel: &str| -> HashSet<String> {
        accepted
            .iter()
            .filter(|r| r.target == format!("/v26.0/{pixel}/events"))
            .flat_map(|r| r.event_ids())
            .collect()
    };
    assert_eq!(
        ids_to("123"),
        ["p123-0", "p123-1", "p123-2"].map(String::from).into()
    );
    assert_eq!(
        ids_to("456"),
        ["p456-0", "p456-1", "p456-2"].map(String::from).into()
    );
    for r in &requests {
        let (token, proof) = if r.target.starts_with("/v26.0/456/") {
            (
                OTHER_TOKEN,
                super::service::appsecret_proof(OTHER_TOKEN, "s3cret"),
            )
        } else {
            assert!(r.target.starts_with("/v26.0/123/"), "{}", r.target);
            (TOKEN, super::service::appsecret_proof(TOKEN, "s3cret"))
        };
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {token}").as_str())
        );
        assert_eq!(r.json()["appsecret_proof"], proof, "each pixel's own proof");
    }
    let lines = dead_letter_lines(&dead_letter);
    let by_id = |id: &str| {
        lines
            .iter()
            .find(|l| l["event"]["messageId"] == id)
            .unwrap_or_else(|| panic!("{id} in the dead letter: {lines:?}"))
    };
    let refused = by_id("p456-bad");
    assert_eq!(refused["stage"], "delivery");
    assert_eq!(refused["pixel"], "456");
    let unknown = by_id("p999");
    assert_eq!(unknown["stage"], "mapping");
    assert!(unknown.get("pixel").is_none());
    assert!(
        unknown["reason"]
            .as_str()
            .unwrap()
            .starts_with("context.pixel_id: pixel 999 has no access token"),
        "{unknown}"
    );
    assert_eq!(lines.len(), 2, "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthcheck_checks_every_pixel_with_its_token() {
    let graph = GraphStandin::start(|_, r| {
        if r.header("authorization") == Some(&format!("Bearer {OTHER_TOKEN}")) {
            graph_error(400, 190, "Invalid OAuth access token")
        } else {
            (200, json!({ "id": "123" }))
        }
    });
    let config = config(graph.port, None, &two_pixels());
    let (_sink, healthcheck) = build(&config, metrics()).await.unwrap();
    let error = tokio::time::timeout(LIMIT, healthcheck)
        .await
        .unwrap()
        .unwrap_err();
    assert!(error.starts_with("pixel 456: "), "{error}");
    assert!(!error.contains(OTHER_TOKEN), "{error}");
    let targets: Vec<String> = graph.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(targets, ["/v26.0/123?fields=id", "/v26.0/456?fields=id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_fields_are_sent_with_every_request() {
    let graph = GraphStandin::start(|_, r| ok(&r.json()));
    let config = config(
        graph.port,
        None,
        "upload_tag = \"store-2024-06\"\nupload_source = \"pos\"\nnamespace_id = \"987\"\n",
    );
    run(&config, vec![tracks(&ids("up", 2))]).await;
    let requests = graph.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        let body = r.json();
        assert_eq!(body["upload_tag"], "store-2024-06", "{}", r.body);
        assert_eq!(body["upload_source"], "pos");
        assert_eq!(body["namespace_id"], "987");
    }
}

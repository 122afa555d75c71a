//! Flow control through the binary: two `fbpixel` processes sending to the same pixel share its
//! budget through a NATS key-value bucket (`request.shared_budget`) and keep, together, under
//! the rate limit a stand-in enforces the way Meta does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::graph::{GraphStandin, RateLimit, Reply};
use crate::support::nats::NatsServer;
use crate::support::{self, Proc, free_port, get, metric, temp_file, track_event, wait_until};

/// Events a second the stand-in accepts for the pixel, both instances together.
const LIMIT_PER_SEC: u64 = 600;

fn config(port: u16, api_port: u16, endpoint: &str, nats: &str) -> String {
    format!(
        r#"
[api]
address = "127.0.0.1:{api_port}"

[sources.web]
type = "http_server"
address = "127.0.0.1:{port}"

[sinks.capi]
type = "facebook_pixel_server_side"
inputs = ["web"]
pixel_id = "123"
access_token = "t"
endpoint = "{endpoint}"
healthcheck.enabled = false
batch.max_events = 5
batch.timeout_secs = 0.05
request.retry_initial_backoff_secs = 0.05
request.retry_max_duration_secs = 0.2
request.shared_budget = {{ url = "{nats}", bucket = "fbpixel_budget_test", ttl_secs = 2.0 }}
"#
    )
}

/// Two instances sharing the pixel's budget, each seeing the other before this returns.
fn two_instances(graph: &GraphStandin, nats: &NatsServer) -> Vec<(u16, u16, Proc)> {
    let instances: Vec<(u16, u16, Proc)> = (0..2)
        .map(|i| {
            let (port, api_port) = (free_port(), free_port());
            let path = temp_file(
                &format!("flow-{i}.toml"),
                &config(port, api_port, &graph.endpoint, &nats.url),
            );
            let mut p = Proc::spawn(&["--config", path.to_str().unwrap()], &[], None);
            p.wait_for_port(port);
            (port, api_port, p)
        })
        .collect();
    // Each instance sees the other before the load starts.
    for (_, api_port, _) in &instances {
        let sees_two = wait_until(Duration::from_secs(20), || {
            let text = get(*api_port, "/metrics").text();
            metric(
                &text,
                "fbpixel_shared_budget_instances",
                &[("pixel", "123")],
            ) == Some(2.0)
        });
        assert!(sees_two, "{}", get(*api_port, "/metrics").text());
    }
    instances
}

/// Post `batches` posts of 25 events from four senders per instance (each post is answered
/// once delivered); the ids sent, `i{instance}-…`.
fn send(instances: &[(u16, u16, Proc)], batches: usize) -> Vec<String> {
    let senders: Vec<_> = instances
        .iter()
        .enumerate()
        .flat_map(|(i, (port, _, _))| {
            (0..4).map(move |t| {
                let port = *port;
                std::thread::spawn(move || {
                    let mut ids = Vec::new();
                    for b in 0..batches {
                        let batch: Vec<String> =
                            (0..25).map(|e| format!("i{i}-t{t}-b{b}-{e}")).collect();
                        let body: String = batch
                            .iter()
                            .map(|id| track_event(id, "jane@example.com") + "\n")
                            .collect();
                        let answer = support::post(port, &[], body.as_bytes());
                        assert_eq!(answer.status, 200, "{}", answer.text());
                        ids.extend(batch);
                    }
                    ids
                })
            })
        })
        .collect();
    senders
        .into_iter()
        .flat_map(|s| s.join().unwrap())
        .collect()
}

/// Nothing lost, nothing twice: what was throttled or held was sent again.
fn assert_each_delivered_once(graph: &GraphStandin, sent: &[String]) {
    let mut delivered: HashMap<String, usize> = HashMap::new();
    for r in graph.requests() {
        if r.status == 200 {
            for id in r.event_ids() {
                *delivered.entry(id).or_default() += 1;
            }
        }
    }
    assert_eq!(delivered.len(), sent.len(), "every event delivered");
    assert!(delivered.values().all(|&n| n == 1), "each exactly once");
}

#[test]
fn two_instances_sharing_a_pixel_and_a_bucket_keep_together_under_metas_limit() {
    let Some(nats) = NatsServer::start("flow_control", &[]) else {
        return;
    };
    let limit = RateLimit::new(LIMIT_PER_SEC);
    let answers = Arc::clone(&limit);
    let graph = GraphStandin::builder()
        .delay(Duration::from_millis(100))
        .start(move |_, r| answers.reply(r));
    let instances = two_instances(&graph, &nats);
    let started = Instant::now();
    let sent = send(&instances, 15);
    let took = started.elapsed();
    assert_each_delivered_once(&graph, &sent);

    let log = limit.log();
    let steady_from = log[0].at + Duration::from_secs(2);
    let steady: Vec<_> = log.iter().filter(|t| t.at >= steady_from).collect();
    let throttled = steady.iter().filter(|t| t.throttled).count() as f64 / steady.len() as f64;
    let accepted: u64 = steady
        .iter()
        .filter(|t| !t.throttled)
        .map(|t| t.events)
        .sum();
    let span = steady.last().unwrap().at.duration_since(steady_from);
    eprintln!(
        "two instances, shared budget: {} events in {took:?}; after 2 s, {} requests, {:.2}% throttled, together {:.1}% of the limit ({LIMIT_PER_SEC} events/s)",
        sent.len(),
        steady.len(),
        throttled * 100.0,
        accepted as f64 / span.as_secs_f64() / LIMIT_PER_SEC as f64 * 100.0
    );
    assert!(
        throttled <= 0.05,
        "together, at most 5% of requests throttled after warm-up: {:.2}%",
        throttled * 100.0
    );
    // The gauges show the limit and what Meta's headers said.
    let text = get(instances[0].1, "/metrics").text();
    let pixel = [("pixel", "123")];
    let limit = metric(&text, "fbpixel_request_concurrency_limit", &pixel);
    assert!(limit.is_some_and(|l| l >= 1.0), "{text}");
    let usage = metric(
        &text,
        "fbpixel_meta_usage_percent",
        &[
            ("pixel", "123"),
            ("header", "x-business-use-case-usage"),
            ("metric", "call_count"),
        ],
    );
    assert!(usage.is_some_and(|u| u > 0.0 && u <= 100.0), "{text}");
    assert!(
        metric(&text, "fbpixel_requests_in_flight", &pixel).is_some(),
        "{text}"
    );
    drop(instances);
}

#[test]
fn a_wait_meta_asks_of_one_instance_holds_the_other_too() {
    let Some(nats) = NatsServer::start("flow_control_wait", &[]) else {
        return;
    };
    // The 40th request is refused with Meta's throttling error and a Retry-After of 2 s; every
    // other is accepted. Each request is logged with when it came and from which instance.
    let log: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let paused: Arc<Mutex<Option<(Instant, String)>>> = Arc::default();
    let (requests, pause) = (Arc::clone(&log), Arc::clone(&paused));
    let graph = GraphStandin::builder()
        .delay(Duration::from_millis(20))
        .start(move |n, r| {
            let from = r.event_ids().first().map_or(String::new(), |id| id[..2].to_owned());
            requests.lock().unwrap().push((Instant::now(), from.clone()));
            let mut pause = pause.lock().unwrap();
            if n >= 40 && pause.is_none() && r.is_events() {
                *pause = Some((Instant::now(), from));
                let body = r#"{"error":{"message":"(#17) User request limit reached","type":"OAuthException","code":17,"error_subcode":2446079,"fbtrace_id":"StandinWait"}}"#;
                return Reply::Headed(400, body.to_owned(), vec![("retry-after", "2".to_owned())]);
            }
            Reply::Json(200, format!(r#"{{"events_received":{}}}"#, r.events))
        });
    let instances = two_instances(&graph, &nats);
    let sent = send(&instances, 10);
    assert_each_delivered_once(&graph, &sent);

    let (at, told) = paused
        .lock()
        .unwrap()
        .clone()
        .expect("a wait was asked for");
    let other = if told == "i0" { "i1" } else { "i0" };
    // What was in flight when Meta answered, and the time the word takes to spread, aside.
    let (from, to) = (
        at + Duration::from_millis(500),
        at + Duration::from_millis(1800),
    );
    let during = |who: &str| {
        log.lock()
            .unwrap()
            .iter()
            .filter(|(t, f)| *t >= from && *t < to && f == who)
            .count()
    };
    let after = log.lock().unwrap().iter().filter(|(t, _)| *t >= to).count();
    assert_eq!(
        (during(&told), during(other)),
        (0, 0),
        "neither instance sends while Meta asked one of them to wait"
    );
    assert!(after > 0, "both go on once the wait is over");
    drop(instances);
}

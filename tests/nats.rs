//! NATS JetStream between two tiers of fbpixel, through the real binary and a real nats-server
//! on 127.0.0.1: a front tier (`http_server` → `nats` sink) stores events in a stream, back-tier
//! instances sharing one durable consumer (`nats` source → Conversions API sink → the Graph API
//! stand-in) deliver them. Skipped without `FBPIXEL_NATS_SERVER` (see `support/nats.rs`).

use crate::support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::support::graph::GraphStandin;
use crate::support::nats::NatsServer;
use crate::support::{Proc, free_port, post, temp_dir, temp_file, track_event, wait_until};

const STREAM: &str = "SEGMENT";
const SUBJECT: &str = "segment.events";
const EVENTS: usize = 3000;

fn spawn(config: &str) -> Proc {
    let path = temp_file("pipeline.toml", config);
    Proc::spawn(&["--config", path.to_str().unwrap()], &[], None)
}

/// Waits until `p` has logged `text`; panics with its stderr when it does not or exits.
fn wait_for_log(p: &mut Proc, text: &str) {
    let found = wait_until(Duration::from_secs(20), || {
        p.stderr().contains(text) || p.wait_timeout(Duration::ZERO).is_some()
    });
    assert!(
        found && p.stderr().contains(text),
        "no {text:?} in the log:\n{}",
        p.stderr()
    );
}

/// The front tier: events POSTed to `port` are answered 200 once stored in the stream;
/// `extra`: more settings of its `nats` sink.
fn front(nats: &str, port: u16, extra: &str) -> Proc {
    let mut p = spawn(&format!(
        r#"
[sources.web]
type = "http_server"
address = "127.0.0.1:{port}"
acknowledgements = true

[sinks.queue]
type = "nats"
inputs = ["web"]
url = "{nats}"
subject = "{SUBJECT}"
stream = "{STREAM}"
create_stream = true
acknowledgements = true
{extra}
"#
    ));
    p.wait_for_port(port);
    wait_for_log(&mut p, "publishing to NATS JetStream");
    p
}

/// A back-tier instance delivering as pixel `pixel` to the stand-in.
fn back(nats: &str, graph: &str, pixel: &str, ack_wait_secs: u64) -> Proc {
    let mut p = spawn(&format!(
        r#"
[sources.queue]
type = "nats"
url = "{nats}"
stream = "{STREAM}"
subject = "{SUBJECT}"
durable = "capi"
create_stream = true
batch = 50
max_ack_pending = 50
ack_wait_secs = {ack_wait_secs}
nak_delay_secs = 1

[sinks.facebook]
type = "facebook_pixel_server_side"
inputs = ["queue"]
pixel_id = "{pixel}"
access_token = "token"
endpoint = "{graph}"
batch.timeout_secs = 0.05
request.retry_initial_backoff_secs = 0.05
request.retry_max_duration_secs = 0.2
buffer.type = "memory"
"#
    ));
    wait_for_log(&mut p, "consuming from NATS JetStream");
    p
}

fn graph() -> GraphStandin {
    graph_after(Duration::ZERO)
}

/// A stand-in answering each request after `delay`.
fn graph_after(delay: Duration) -> GraphStandin {
    GraphStandin::builder().delay(delay).start(|_, r| {
        (
            200,
            format!(r#"{{"events_received":{},"id":"1"}}"#, r.event_ids().len()),
        )
    })
}

/// How often each event id reached the stand-in, and how many deliveries came from `pixel`.
fn deliveries(graph: &GraphStandin) -> (HashMap<String, usize>, HashMap<String, usize>) {
    let mut counts = HashMap::new();
    let mut by_pixel = HashMap::new();
    for r in graph.requests().iter().filter(|r| r.method == "POST") {
        let pixel = r.target.split('/').nth(2).unwrap_or_default().to_owned();
        let ids = r.event_ids();
        *by_pixel.entry(pixel).or_insert(0) += ids.len();
        for id in ids {
            *counts.entry(id).or_insert(0) += 1;
        }
    }
    (counts, by_pixel)
}

/// POSTs `EVENTS` distinct events, 100 a request; each answer means "stored in the stream".
fn post_events(port: u16) {
    for chunk in 0..EVENTS / 100 {
        let body: Vec<String> = (chunk * 100..(chunk + 1) * 100)
            .map(|i| track_event(&format!("evt-{i:05}"), &format!("user{i}@example.com")))
            .collect();
        let r = post(
            port,
            &[("Content-Type", "application/json")],
            format!("[{}]", body.join(",")).as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

fn stop(mut p: Proc, name: &str) {
    p.signal("TERM");
    let status = p.wait_exit(Duration::from_secs(30));
    assert!(
        status.success(),
        "{name} exited with {status}:\n{}",
        p.stderr()
    );
}

/// How many messages the stream holds.
fn stored_messages(nats: &str) -> u64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(nats).await.unwrap());
        let mut stream = js.get_stream(STREAM).await.unwrap();
        stream.info().await.unwrap().state.messages
    })
}

#[test]
fn two_back_tier_instances_share_the_stream_and_deliver_every_event_exactly_once() {
    let Some(nats) = NatsServer::start("scale-out", &[]) else {
        return;
    };
    share_the_stream_and_deliver_exactly_once(&nats, "");
    assert_eq!(
        stored_messages(&nats.url),
        EVENTS as u64,
        "a message per event"
    );
}

#[test]
fn with_batched_messages_two_back_tier_instances_deliver_every_event_exactly_once() {
    let Some(nats) = NatsServer::start("scale-out-batch", &[]) else {
        return;
    };
    share_the_stream_and_deliver_exactly_once(&nats, "batch.max_events = 25");
    // Each request of 100 events is 4 messages of 25 (more only if the sink took a request
    // in parts).
    let messages = stored_messages(&nats.url);
    assert!(
        (EVENTS as u64 / 25..EVENTS as u64 / 5).contains(&messages),
        "{messages} messages for {EVENTS} events"
    );
}

fn share_the_stream_and_deliver_exactly_once(nats: &NatsServer, front_extra: &str) {
    let graph = graph();
    let port = free_port();
    let front = front(&nats.url, port, front_extra);
    let a = back(&nats.url, &graph.endpoint, "111", 30);
    let b = back(&nats.url, &graph.endpoint, "222", 30);

    let started = Instant::now();
    post_events(port);
    let all = wait_until(Duration::from_secs(120), || {
        deliveries(&graph).0.len() == EVENTS
    });
    let took = started.elapsed();
    // Room for a late duplicate to show up.
    std::thread::sleep(Duration::from_secs(1));
    let (counts, by_pixel) = deliveries(&graph);
    assert!(
        all,
        "{} of {EVENTS} events delivered\nA:\n{}\nB:\n{}",
        counts.len(),
        a.stderr(),
        b.stderr()
    );
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "delivered more than once: {repeated:?}"
    );
    for i in 0..EVENTS {
        assert_eq!(counts.get(&format!("evt-{i:05}")), Some(&1), "evt-{i:05}");
    }
    let (from_a, from_b) = (by_pixel.get("111"), by_pixel.get("222"));
    println!("{EVENTS} events in {took:?}: instance A {from_a:?}, instance B {from_b:?}");
    assert!(
        from_a.is_some_and(|n| *n > 0) && from_b.is_some_and(|n| *n > 0),
        "both instances deliver: {by_pixel:?}"
    );
    for (p, name) in [(a, "A"), (b, "B"), (front, "front")] {
        stop(p, name);
    }
}

#[test]
fn when_a_back_tier_instance_is_killed_the_other_delivers_what_it_held() {
    let Some(nats) = NatsServer::start("kill", &[]) else {
        return;
    };
    // Slow answers, so that the kill lands while events are still in flight however fast the
    // back tier maps (with quick ones, batched messages had all 3,000 delivered before it).
    let graph = graph_after(Duration::from_millis(300));
    let port = free_port();
    // Batches, so a killed instance held messages of several events each.
    let front = front(&nats.url, port, "batch.max_events = 10");
    let a = back(&nats.url, &graph.endpoint, "111", 2);
    let b = back(&nats.url, &graph.endpoint, "222", 2);

    post_events(port);
    let some = wait_until(Duration::from_secs(60), || {
        deliveries(&graph).0.len() >= 300
    });
    assert!(some, "no deliveries:\nA:\n{}", a.stderr());
    a.signal("KILL");
    let (at_kill, by_pixel_at_kill) = deliveries(&graph);
    assert!(
        at_kill.len() < EVENTS,
        "every event was delivered before the kill; the test proves nothing"
    );

    let all = wait_until(Duration::from_secs(120), || {
        deliveries(&graph).0.len() == EVENTS
    });
    std::thread::sleep(Duration::from_secs(1));
    let (counts, by_pixel) = deliveries(&graph);
    assert!(
        all,
        "{} of {EVENTS} events delivered after the kill\nB:\n{}",
        counts.len(),
        b.stderr()
    );
    for i in 0..EVENTS {
        assert!(counts.contains_key(&format!("evt-{i:05}")), "evt-{i:05}");
    }
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    println!(
        "killed A after {} of {EVENTS} events (by pixel: {by_pixel_at_kill:?}); \
         in the end by pixel {by_pixel:?}, {duplicates} duplicates",
        at_kill.len()
    );
    assert!(
        by_pixel.get("222") > by_pixel_at_kill.get("222"),
        "B took over after the kill"
    );
    stop(b, "B");
    stop(front, "front");
}

#[test]
fn a_message_that_is_not_a_json_object_is_terminated_and_its_content_never_logged() {
    let Some(nats) = NatsServer::start("bad-payload", &[]) else {
        return;
    };
    let out = temp_dir("nats-file").join("out.ndjson");
    let mut p = spawn(&format!(
        r#"
[sources.queue]
type = "nats"
url = "{}"
stream = "{STREAM}"
subject = "{SUBJECT}"
durable = "files"
create_stream = true
ack_wait_secs = 1

[sinks.out]
type = "file"
inputs = ["queue"]
path = "{}"
"#,
        nats.url,
        out.display()
    ));
    wait_for_log(&mut p, "consuming from NATS JetStream");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let info = runtime.block_on(async {
        let client = async_nats::connect(&nats.url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        for payload in [
            &b"\"jane@example.com\""[..],
            b"{\"email\": \"jane@example.com\"",
            br#"{"type":"track","n":1}"#,
        ] {
            js.publish(SUBJECT, payload.to_vec().into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
        // Longer than ack_wait: a message not acknowledged would be redelivered by now.
        let written = || std::fs::read_to_string(&out).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(10);
        while written().lines().count() < 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let consumer: async_nats::jetstream::consumer::PullConsumer =
            js.get_consumer_from_stream("files", STREAM).await.unwrap();
        consumer.get_info().await.unwrap()
    });

    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "{\"type\":\"track\",\"n\":1}\n"
    );
    assert_eq!(info.num_ack_pending, 0, "{info:?}");
    assert_eq!(info.num_pending, 0, "{info:?}");
    assert_eq!(info.num_redelivered, 0, "{info:?}");
    let log = p.stderr();
    assert_eq!(
        log.matches("terminated, it will not be redelivered")
            .count(),
        2,
        "{log}"
    );
    assert!(!log.contains("jane"), "{log}");
    stop(p, "the instance");
}

#[test]
fn a_source_that_cannot_connect_names_the_url_without_its_credentials() {
    let port = free_port();
    let mut p = spawn(&format!(
        r#"
[sources.queue]
type = "nats"
url = "nats://app:hunter2@127.0.0.1:{port}"
stream = "{STREAM}"
durable = "capi"

[sinks.out]
type = "blackhole"
inputs = ["queue"]
"#
    ));
    let status = p.wait_exit(Duration::from_secs(30));
    let log = p.stderr();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "sources.queue: cannot connect to NATS at nats://***@127.0.0.1:{port}"
        )),
        "{log}"
    );
    assert!(!log.contains("hunter2"), "{log}");
}

#[test]
fn a_missing_stream_without_create_stream_says_how_to_create_it() {
    let Some(nats) = NatsServer::start("missing-stream", &[]) else {
        return;
    };
    let mut p = spawn(&format!(
        r#"
[sources.queue]
type = "nats"
url = "{}"
stream = "NOPE"
subject = "nope.events"
durable = "capi"

[sinks.out]
type = "blackhole"
inputs = ["queue"]
"#,
        nats.url
    ));
    let status = p.wait_exit(Duration::from_secs(30));
    let log = p.stderr();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("JetStream stream `NOPE` does not exist; create it (e.g. `nats stream add NOPE --subjects 'nope.events' --defaults`) or set `create_stream = true`"),
        "{log}"
    );
}

#[test]
fn validate_accepts_nats_components_and_names_a_bad_key() {
    let good = r#"
[sources.queue]
type = "nats"
url = "nats://a:4222,nats://b:4222"
stream = "SEGMENT"
subject = "segment.>"
durable = "capi"
auth.token = "${NATS_TOKEN}"

[sinks.queue_out]
type = "nats"
inputs = ["queue"]
url = "nats://127.0.0.1:4222"
subject = "copied.events"
stream = "COPIED"
create_stream = true
auth = { user = "app", password = "${NATS_PASSWORD}" }
request.concurrency = 100
"#;
    let run = |text: &str| {
        let path = temp_file("nats.toml", text);
        support::fbpixel(
            &["validate", "--no-environment", path.to_str().unwrap()],
            b"",
            &[("NATS_TOKEN", "tok"), ("NATS_PASSWORD", "hunter2")],
        )
    };
    let out = run(good);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.ends_with("Validated\n"), "{stdout}");

    for (from, to, message) in [
        (
            "durable = \"capi\"",
            "durable = \"\"",
            "sources.queue: `durable` is empty",
        ),
        (
            "durable = \"capi\"",
            "durable = \"capi\"\nbatch = 0",
            "sources.queue: `batch` must be at least 1",
        ),
        (
            "request.concurrency = 100",
            "request.concurrency = 0",
            "sinks.queue_out: `request.concurrency` must be at least 1",
        ),
        (
            "subject = \"copied.events\"",
            "subject = \"copied.>\"",
            "sinks.queue_out: `subject` \"copied.>\" has a wildcard",
        ),
        (
            "auth.token = \"${NATS_TOKEN}\"",
            "auth.token = \"${NATS_TOKEN}\"\nauth.nkey_seed = \"SUX\"",
            "sources.queue: `auth` sets more than one method",
        ),
    ] {
        let out = run(&good.replace(from, to));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{to}: {stdout}");
        assert!(stdout.contains(message), "{to}: {stdout}");
        assert!(!stdout.contains("hunter2"), "{stdout}");
    }
}

#[test]
fn the_sink_retries_until_a_stream_stores_the_events_and_a_resent_message_id_is_stored_once() {
    let Some(nats) = NatsServer::start("sink-retry", &[]) else {
        return;
    };
    let port = free_port();
    // No `stream`: nothing checks for it at start, so the first publishes find no stream.
    let mut p = spawn(&format!(
        r#"
[sources.web]
type = "http_server"
address = "127.0.0.1:{port}"

[sinks.queue]
type = "nats"
inputs = ["web"]
url = "{}"
subject = "{SUBJECT}"
acknowledgements = true
request.retry_initial_backoff_secs = 0.05
request.retry_max_duration_secs = 0.2
"#,
        nats.url
    ));
    p.wait_for_port(port);
    let body: Vec<String> = (0..10)
        .map(|i| track_event(&format!("retry-{i}"), "jane@example.com"))
        .collect();
    let body = format!("[{}]", body.join(","));
    let sender = {
        let body = body.clone();
        std::thread::spawn(move || post(port, &[], body.as_bytes()))
    };
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!sender.is_finished(), "answered before any stream existed");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let js = runtime.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(&nats.url).await.unwrap());
        js.create_stream(async_nats::jetstream::stream::Config {
            name: STREAM.into(),
            subjects: vec![SUBJECT.into()],
            ..Default::default()
        })
        .await
        .unwrap();
        js
    });
    let r = sender.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // The same events again (a sender retrying): JetStream drops them by Nats-Msg-Id.
    let r = post(port, &[], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let stored = runtime.block_on(async {
        let mut stream = js.get_stream(STREAM).await.unwrap();
        stream.info().await.unwrap().state.messages
    });
    assert_eq!(stored, 10);
    let log = p.stderr();
    assert!(log.contains("publishing to NATS failed"), "{log}");
    assert!(!log.contains("jane"), "{log}");
    stop(p, "the instance");
}

#[test]
fn a_resent_batch_is_stored_once() {
    let Some(nats) = NatsServer::start("sink-batch", &[]) else {
        return;
    };
    let port = free_port();
    let front = front(&nats.url, port, "batch.max_events = 10");
    let body: Vec<String> = (0..10)
        .map(|i| track_event(&format!("batch-{i}"), "jane@example.com"))
        .collect();
    let body = format!("[{}]", body.join(","));
    for _ in 0..2 {
        let r = post(port, &[], body.as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // One message of ten events; the copy had the same Nats-Msg-Id (the payload's digest).
    assert_eq!(stored_messages(&nats.url), 1);
    stop(front, "front");
}

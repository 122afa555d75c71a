//! Enrichment through the whole binary: an identify's hashed email reaches a later track, the
//! disk store survives a restart and `fbpixel enrichment forget` erases a user, and two
//! instances share what they learn through a NATS key-value bucket.

use crate::support;

use std::path::Path;
use std::time::Duration;

use crate::support::graph::GraphStandin;
use crate::support::nats::NatsServer;
use crate::support::{Proc, free_port, post, temp_dir, temp_file, wait_until};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const EMAIL: &str = "Jane.Doe@Example.com";

fn sha(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn graph() -> GraphStandin {
    GraphStandin::start(|_, r| {
        (
            200,
            format!(r#"{{"events_received":{}}}"#, r.event_ids().len()),
        )
    })
}

/// The sink's settings, delivering to `endpoint` with `enrichment`.
fn sink(endpoint: &str, pixel: &str, enrichment: &str) -> String {
    format!(
        r#"
[sinks.capi]
type = "facebook_pixel_server_side"
inputs = ["in"]
pixel_id = "{pixel}"
access_token = "token"
endpoint = "{endpoint}"
action_source = "system_generated"
healthcheck.enabled = false
batch.timeout_secs = 0.05
enrichment = {{ enabled = true, {enrichment} }}
"#
    )
}

fn identify(user_id: &str, anonymous_id: &str) -> String {
    json!({"type": "identify", "userId": user_id, "anonymousId": anonymous_id,
           "traits": {"email": EMAIL, "phone": "+1 650 555 0134"}})
    .to_string()
}

fn track(event_id: &str, ids: Value) -> String {
    let mut m = json!({"type": "track", "event": "Order Completed", "messageId": event_id,
                       "properties": {"revenue": 10, "currency": "USD"}});
    for (k, v) in ids.as_object().unwrap() {
        m[k] = v.clone();
    }
    m.to_string()
}

/// Runs a stdin pipeline over `lines` to the end of its input.
fn run_stdin(config: &Path, lines: &[String]) -> Proc {
    let input = lines.join("\n") + "\n";
    let mut p = Proc::spawn(
        &["--config", config.to_str().unwrap()],
        &[],
        Some(input.as_bytes()),
    );
    let status = p.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{}", p.stderr());
    p
}

/// The user_data of the event with `event_id` the stand-in received.
fn user_data(graph: &GraphStandin, event_id: &str) -> Option<Value> {
    graph.requests().iter().find_map(|r| {
        let body: Value = serde_json::from_str(&r.body).ok()?;
        body["data"]
            .as_array()?
            .iter()
            .find(|e| e["event_id"] == event_id)
            .map(|e| e["user_data"].clone())
    })
}

#[test]
fn an_identify_teaches_the_sink_the_email_a_later_track_lacks() {
    let graph = graph();
    let config = temp_file(
        "enrich-memory.toml",
        &format!(
            "[sources.in]\ntype = \"stdin\"\n{}",
            sink(&graph.endpoint, "1", "store = \"memory\"")
        ),
    );
    let p = run_stdin(
        &config,
        &[
            track("before", json!({"userId": "u1"})),
            identify("u1", "anon-1"),
            track("by-user", json!({"userId": "u1"})),
            track("by-anonymous-id", json!({"anonymousId": "anon-1"})),
        ],
    );
    let before = user_data(&graph, "before").expect("delivered");
    assert!(
        before.get("em").is_none(),
        "nothing is known before the identify"
    );
    for id in ["by-user", "by-anonymous-id"] {
        let ud = user_data(&graph, id).expect("delivered");
        assert_eq!(ud["em"], json!([sha("jane.doe@example.com")]), "{id}");
        assert_eq!(ud["ph"], json!([sha("16505550134")]), "{id}");
    }
    let sent: usize = graph.requests().iter().map(|r| r.event_ids().len()).sum();
    assert_eq!(sent, 3, "the identify itself is not sent");
    assert!(!p.stderr().contains(EMAIL) && !p.stderr().contains("jane.doe"));
}

#[test]
fn the_disk_store_survives_a_restart_and_forget_erases_the_user() {
    let graph = graph();
    let dir = temp_dir("enrich-disk");
    let config = temp_file(
        "enrich-disk.toml",
        &format!(
            "data_dir = \"{}\"\n[sources.in]\ntype = \"stdin\"\n{}",
            dir.display(),
            sink(&graph.endpoint, "1", "store = \"disk\"")
        ),
    );
    run_stdin(
        &config,
        &[identify("u1", "anon-1"), identify("u2", "anon-2")],
    );
    let file = std::fs::read(dir.join("enrichment/capi/users.redb")).expect("the store file");
    let contains = |needle: &str| file.windows(needle.len()).any(|w| w == needle.as_bytes());
    for raw in [EMAIL, "jane.doe@example.com", "6505550134", "anon-1"] {
        assert!(!contains(raw), "the store file holds {raw:?}");
    }

    // A new process remembers.
    run_stdin(
        &config,
        &[track("after-restart", json!({"anonymousId": "anon-1"}))],
    );
    let ud = user_data(&graph, "after-restart").expect("delivered");
    assert_eq!(ud["em"], json!([sha("jane.doe@example.com")]));

    let out = support::fbpixel(
        &[
            "enrichment",
            "forget",
            "--config",
            config.to_str().unwrap(),
            "--user-id",
            "u1",
        ],
        b"",
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("erased 2 profile(s)"), "{stdout}");

    run_stdin(
        &config,
        &[
            track("forgotten-user", json!({"userId": "u1"})),
            track("forgotten-anonymous", json!({"anonymousId": "anon-1"})),
            track("other-user", json!({"userId": "u2"})),
        ],
    );
    for id in ["forgotten-user", "forgotten-anonymous"] {
        assert!(user_data(&graph, id).unwrap().get("em").is_none(), "{id}");
    }
    assert!(user_data(&graph, "other-user").unwrap().get("em").is_some());
}

#[test]
fn forget_explains_when_there_is_nothing_it_can_erase() {
    let config = temp_file(
        "enrich-forget-memory.toml",
        &format!(
            "[sources.in]\ntype = \"stdin\"\n{}",
            sink("http://127.0.0.1:9", "1", "store = \"memory\"")
        ),
    );
    let out = support::fbpixel(
        &[
            "enrichment",
            "forget",
            "--config",
            config.to_str().unwrap(),
            "--user-id",
            "u1",
        ],
        b"",
        &[],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sinks.capi.enrichment.store is \"memory\""),
        "{stderr}"
    );
}

#[test]
fn two_instances_share_what_they_learn_through_a_nats_kv_bucket() {
    let Some(nats) = NatsServer::start("two_instances_share_what_they_learn", &[]) else {
        return;
    };
    let graph = graph();
    let start = |pixel: &str| {
        let port = free_port();
        let config = temp_file(
            "enrich-kv.toml",
            &format!(
                "[sources.in]\ntype = \"http_server\"\naddress = \"127.0.0.1:{port}\"\n{}",
                sink(
                    &graph.endpoint,
                    pixel,
                    &format!(
                        "store = \"nats_kv\", url = \"{}\", bucket = \"users_test\"",
                        nats.url
                    )
                )
            ),
        );
        let mut p = Proc::spawn(&["--config", config.to_str().unwrap()], &[], None);
        p.wait_for_port(port);
        (p, port)
    };
    let (first, first_port) = start("111");
    let (second, second_port) = start("222");

    let r = post(first_port, &[], identify("u1", "anon-1").as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    // The second instance learns it through its watch of the bucket, within moments.
    let mut attempt = 0;
    let enriched = wait_until(Duration::from_secs(15), || {
        attempt += 1;
        let id = format!("via-second-{attempt}");
        let r = post(
            second_port,
            &[],
            track(&id, json!({"userId": "u1"})).as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        user_data(&graph, &id).is_some_and(|ud| ud["em"] == json!([sha("jane.doe@example.com")]))
    });
    assert!(
        enriched,
        "a track through the second instance never carried the identify's email\nfirst:\n{}\nsecond:\n{}",
        first.stderr(),
        second.stderr()
    );
    let delivered_by_second = graph
        .requests()
        .iter()
        .any(|r| r.target.contains("/222/events"));
    assert!(delivered_by_second);
    println!("nats_kv: the second instance enriched after {attempt} attempt(s) (one every ~20 ms)");
}

#[test]
fn a_nats_kv_store_that_is_down_never_stops_delivery() {
    let graph = graph();
    let closed = free_port();
    let config = temp_file(
        "enrich-kv-down.toml",
        &format!(
            "[sources.in]\ntype = \"stdin\"\n{}",
            sink(
                &graph.endpoint,
                "1",
                &format!("store = \"nats_kv\", url = \"nats://127.0.0.1:{closed}\"")
            )
        ),
    );
    let p = run_stdin(
        &config,
        &[
            identify("u1", "anon-1"),
            track("while-down", json!({"userId": "u1"})),
        ],
    );
    let ud = user_data(&graph, "while-down").expect("delivered although the store is down");
    assert_eq!(
        ud["em"],
        json!([sha("jane.doe@example.com")]),
        "enriched from memory meanwhile"
    );
    assert!(p.stderr().contains("retrying"), "{}", p.stderr());
}

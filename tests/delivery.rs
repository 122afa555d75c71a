//! The Conversions API sink through the whole binary, against a Graph API stand-in on 127.0.0.1:
//! what reaches the logs, and replaying the dead letter.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::{GraphStandin, Proc, temp_dir, track_event};

const TOKEN: &str = "SECRET-TOKEN-8c1f";
const APP_SECRET: &str = "APP-SECRET-77aa";

fn config(endpoint: &str, dead_letter: &std::path::Path) -> String {
    format!(
        r#"
[sources.in]
type = "stdin"

[sinks.facebook]
type = "facebook_pixel_server_side"
inputs = ["in"]
pixel_id = "123"
access_token = "${{FB_ACCESS_TOKEN}}"
app_secret = "${{FB_APP_SECRET}}"
endpoint = "{endpoint}"
batch.timeout_secs = 0.05
request.retry_initial_backoff_secs = 0.05
request.retry_max_duration_secs = 0.2
dead_letter.path = "{}"
"#,
        dead_letter.display()
    )
}

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("FB_ACCESS_TOKEN", TOKEN),
        ("FB_APP_SECRET", APP_SECRET),
        ("FBPIXEL_LOG", "debug"),
    ]
}

const BAD_TOKEN: &str = r#"{"error":{"message":"Invalid OAuth access token - Cannot parse access token","type":"OAuthException","code":190,"fbtrace_id":"TRACE190"}}"#;

#[test]
fn a_bad_token_holds_the_events_and_neither_secrets_nor_personal_data_reach_the_logs() {
    for format in ["text", "json"] {
        // The healthcheck and the first two deliveries meet a bad token, then it is "fixed".
        let posts = Arc::new(AtomicUsize::new(0));
        let seen = posts.clone();
        let graph = GraphStandin::start(move |_, r| {
            if r.method == "GET" || seen.fetch_add(1, Ordering::SeqCst) < 2 {
                (400, BAD_TOKEN.to_owned())
            } else {
                (
                    200,
                    format!(r#"{{"events_received":{}}}"#, r.event_ids().len()),
                )
            }
        });
        let dir = temp_dir("bad-token");
        let dead_letter = dir.join("dead.ndjson");
        let config = support::temp_file("bad-token.toml", &config(&graph.endpoint, &dead_letter));
        let input: String = ["a", "b", "c"]
            .iter()
            .map(|id| track_event(id, "jane.doe@example.com") + "\n")
            .collect();
        let mut proc = Proc::spawn(
            &["--config", config.to_str().unwrap(), "--log-format", format],
            &env(),
            Some(input.as_bytes()),
        );
        let status = proc.wait_exit(Duration::from_secs(30));
        let logs = proc.stderr();
        assert!(status.success(), "{logs}");
        for secret in [TOKEN, APP_SECRET, "jane.doe@example.com", "Jane.Doe"] {
            assert!(!logs.contains(secret), "{secret} reached the logs:\n{logs}");
        }
        assert!(
            logs.contains("access_token"),
            "no actionable error:\n{logs}"
        );
        assert!(logs.contains("held and retried"), "{logs}");

        let requests = graph.requests();
        for r in &requests {
            assert!(
                r.headers
                    .contains(&format!("authorization: Bearer {TOKEN}")),
                "{:?}",
                r.headers
            );
            assert!(
                !r.target.contains(TOKEN) && !r.body.contains(TOKEN),
                "token outside the header"
            );
            assert!(!r.body.contains(APP_SECRET), "app secret in the body");
        }
        let posts: Vec<_> = requests.iter().filter(|r| r.method == "POST").collect();
        assert!(posts.len() >= 3, "{posts:?}");
        assert!(posts.iter().all(|r| r.target == "/v25.0/123/events"));
        assert!(
            posts
                .iter()
                .all(|r| r.body.contains("\"appsecret_proof\":\""))
        );
        // Held, not dropped: a, b and c delivered exactly once, after the token was accepted.
        let mut delivered: Vec<String> = posts[2..].iter().flat_map(|r| r.event_ids()).collect();
        delivered.sort();
        assert_eq!(delivered, ["a", "b", "c"]);
        let dead = std::fs::read_to_string(&dead_letter).unwrap_or_default();
        assert!(dead.is_empty(), "held events were dead-lettered: {dead}");
    }
}

#[test]
fn replay_delivers_the_dead_lettered_events_and_removes_the_replayed_file() {
    let fixed = Arc::new(AtomicBool::new(false));
    let accept_all = fixed.clone();
    let graph = GraphStandin::start(move |_, r| {
        let rejected =
            !accept_all.load(Ordering::SeqCst) && r.event_ids().iter().any(|id| id == "bad");
        if r.method == "POST" && rejected {
            (400, r#"{"error":{"message":"Invalid parameter","code":100,"error_subcode":2804003,"fbtrace_id":"TRACE1"}}"#.to_owned())
        } else {
            (200, r#"{"events_received":1,"id":"123"}"#.to_owned())
        }
    });
    let dir = temp_dir("replay");
    let dead_letter = dir.join("dead.ndjson");
    let config = support::temp_file("replay.toml", &config(&graph.endpoint, &dead_letter));
    let input: String = ["good1", "bad", "good2"]
        .iter()
        .map(|id| track_event(id, "x@example.com") + "\n")
        .collect();
    let mut run = Proc::spawn(
        &["--config", config.to_str().unwrap()],
        &env(),
        Some(input.as_bytes()),
    );
    assert!(
        run.wait_exit(Duration::from_secs(30)).success(),
        "{}",
        run.stderr()
    );
    let dead = std::fs::read_to_string(&dead_letter).unwrap();
    assert_eq!(dead.lines().count(), 1, "{dead}");
    let line: serde_json::Value = serde_json::from_str(dead.lines().next().unwrap()).unwrap();
    assert_eq!(line["event"]["messageId"], "bad");
    assert_eq!(line["error"]["error_subcode"], 2804003);

    // The data is "fixed" on Meta's side; replay sends the event again.
    fixed.store(true, Ordering::SeqCst);
    let before = graph.requests().len();
    let mut replay = Proc::spawn(
        &[
            "replay",
            "--config",
            config.to_str().unwrap(),
            dead_letter.to_str().unwrap(),
        ],
        &env(),
        None,
    );
    let status = replay.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{}", replay.stderr());
    let resent: Vec<String> = graph.requests()[before..]
        .iter()
        .filter(|r| r.method == "POST")
        .flat_map(|r| r.event_ids())
        .collect();
    assert_eq!(resent, ["bad"]);
    assert!(
        replay
            .stderr()
            .contains("1 events sent again; 0 dead-lettered again"),
        "{}",
        replay.stderr()
    );
    // The replayed file was moved aside and removed; the dead letter is fresh and empty.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(leftovers, ["dead.ndjson"], "{leftovers:?}");
    assert_eq!(std::fs::read_to_string(&dead_letter).unwrap(), "");
}

#[test]
fn a_vector_http_sink_request_is_delivered_and_answered_200_only_after_delivery() {
    // What Vector's `http` sink sends with framing.method = "newline_delimited" and
    // compression = "gzip": NDJSON without a trailing newline, gzipped, Vector's user agent.
    let graph = GraphStandin::start(|n, r| {
        // The first delivery attempt fails (5xx): the HTTP answer must wait for the retry.
        if r.method == "POST" && n == 0 {
            (503, "{}".to_owned())
        } else {
            (
                200,
                format!(r#"{{"events_received":{}}}"#, r.event_ids().len()),
            )
        }
    });
    let port = support::free_port();
    let config = format!(
        r#"
[sources.vector_in]
type = "http_server"
address = "127.0.0.1:{port}"

[sinks.facebook]
type = "facebook_pixel_server_side"
inputs = ["vector_in"]
pixel_id = "123"
access_token = "t"
endpoint = "{}"
healthcheck.enabled = false
batch.timeout_secs = 0.05
request.retry_initial_backoff_secs = 0.3
request.retry_max_duration_secs = 0.3
"#,
        graph.endpoint
    );
    let path = support::temp_file("vector-in.toml", &config);
    let mut proc = Proc::spawn(&["--config", path.to_str().unwrap()], &[], None);
    proc.wait_for_port(port);
    let ndjson = ["v1", "v2", "v3"]
        .map(|id| track_event(id, "v@example.com"))
        .join("\n");
    let body = support::gzip(ndjson.as_bytes());
    let response = support::http_request(
        port,
        "POST",
        "/",
        &[
            ("content-type", "application/x-ndjson"),
            ("content-encoding", "gzip"),
            ("user-agent", "Vector/0.51.0 (x86_64-unknown-linux-gnu)"),
        ],
        &body,
    )
    .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    // 200 came after the retry that delivered the events, never before.
    let posts: Vec<_> = graph
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert_eq!(posts[1].event_ids(), ["v1", "v2", "v3"]);
    // A body that is not JSON objects is refused with a 4xx, which Vector does not retry.
    let bad = support::http_request(
        port,
        "POST",
        "/",
        &[("content-type", "application/x-ndjson")],
        b"{\"ok\":1}\n42",
    )
    .unwrap();
    assert_eq!(bad.status, 400, "{}", bad.text());
    proc.signal("TERM");
    assert!(
        proc.wait_exit(Duration::from_secs(15)).success(),
        "{}",
        proc.stderr()
    );
}

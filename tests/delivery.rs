//! The Conversions API sink through the whole binary, against a Graph API stand-in on 127.0.0.1:
//! what reaches the logs, and replaying the dead letter.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::graph::GraphStandin;
use crate::support::{Proc, temp_dir, track_event};

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
        assert!(posts.iter().all(|r| r.target == "/v26.0/123/events"));
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

/// Answers that are not the Graph API's success object, as a proxy, a captive portal or a broken
/// network gives them.
fn lying_answers() -> Vec<(&'static str, support::graph::Reply)> {
    use support::graph::Reply;
    vec![
        (
            "html",
            Reply::Raw(
                200,
                "text/html; charset=utf-8",
                b"<html><body>Welcome to the hotel wifi</body></html>".to_vec(),
            ),
        ),
        (
            "garbage",
            Reply::Raw(
                200,
                "application/octet-stream",
                vec![0xde, 0xad, 0xbe, 0xef],
            ),
        ),
        (
            "truncated",
            Reply::Truncated(200, 40, br#"{"events_received":"#.to_vec()),
        ),
        (
            "cut json",
            Reply::Raw(200, "application/json", br#"{"events_rec"#.to_vec()),
        ),
        ("empty", Reply::Raw(200, "application/json", Vec::new())),
        ("other json", Reply::Json(200, r#"{"ok":true}"#.to_owned())),
        ("endless", Reply::Endless),
    ]
}

#[test]
fn a_2xx_that_is_not_the_graph_apis_answer_delivers_nothing_until_the_graph_api_answers() {
    for (kind, lie) in lying_answers() {
        // The stand-in lies until `honest` is set; the ids it answered honestly are recorded.
        let honest = Arc::new(AtomicBool::new(false));
        let delivered = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let (is_honest, confirmed) = (honest.clone(), delivered.clone());
        let graph = GraphStandin::start(move |_, r| {
            if r.method != "POST" {
                return support::graph::Reply::Json(200, r#"{"id":"123"}"#.to_owned());
            }
            if !is_honest.load(Ordering::SeqCst) {
                return lie.clone();
            }
            let ids = r.event_ids();
            let n = ids.len();
            confirmed.lock().unwrap().extend(ids);
            support::graph::Reply::Json(200, format!(r#"{{"events_received":{n}}}"#))
        });
        let (port, api_port) = (support::free_port(), support::free_port());
        let config = format!(
            r#"
[api]
address = "127.0.0.1:{api_port}"

[sources.web]
type = "http_server"
address = "127.0.0.1:{port}"
acknowledgements = true

[sinks.facebook]
type = "facebook_pixel_server_side"
inputs = ["web"]
pixel_id = "123"
access_token = "t"
endpoint = "{}"
batch.timeout_secs = 0.05
request.retry_initial_backoff_secs = 0.05
request.retry_max_duration_secs = 0.2
"#,
            graph.endpoint
        );
        let path = support::temp_file("lying-graph.toml", &config);
        let mut proc = Proc::spawn(&["--config", path.to_str().unwrap()], &[], None);
        proc.wait_for_port(port);
        proc.wait_for_port(api_port);
        let ids: Vec<String> = (0..50).map(|i| format!("{kind}-{i}")).collect();
        let body = format!(
            "[{}]",
            ids.iter()
                .map(|id| track_event(id, "lie@example.com"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let answered = Arc::new(AtomicBool::new(false));
        let done = answered.clone();
        let client = std::thread::spawn(move || {
            let r = support::post(
                port,
                &[("content-type", "application/json")],
                body.as_bytes(),
            );
            done.store(true, Ordering::SeqCst);
            r
        });
        let posts = || {
            graph
                .requests()
                .iter()
                .filter(|r| r.method == "POST")
                .count()
        };
        assert!(
            support::wait_until(Duration::from_secs(30), || posts() >= 4),
            "{kind}: the sink did not retry the lying answers; stderr:\n{}",
            proc.stderr()
        );
        // Lied to four times: nothing is reported delivered, the client still waits.
        let metrics = support::get(api_port, "/metrics").text();
        let of_sink = |name: &str, extra: &[(&str, &str)]| {
            let mut labels = vec![("component_id", "facebook")];
            labels.extend_from_slice(extra);
            support::metric(&metrics, name, &labels)
        };
        assert_eq!(
            of_sink("component_sent_events_total", &[]),
            Some(0.0),
            "{kind}: {metrics}"
        );
        // A body cut short of its content-length is a broken connection to hyper.
        // Counters alerts rely on exist before they first move.
        for name in [
            "fbpixel_bisections_total",
            "fbpixel_events_unconfirmed_total",
        ] {
            assert_eq!(of_sink(name, &[]), Some(0.0), "{name}: {metrics}");
        }
        assert_eq!(
            of_sink(
                "component_errors_total",
                &[("error_type", "delivery_rejected")]
            ),
            Some(0.0),
            "{metrics}"
        );
        assert_eq!(
            of_sink("fbpixel_retries_total", &[("reason", "http_5xx")]),
            Some(0.0),
            "{metrics}"
        );
        let reason = match kind {
            "endless" => "oversized_answer",
            "truncated" => "connection",
            _ => "invalid_answer",
        };
        // Delivery metrics are per pixel.
        let retries = of_sink(
            "fbpixel_retries_total",
            &[("reason", reason), ("pixel", "123")],
        )
        .unwrap_or(0.0);
        assert!(
            retries >= 3.0,
            "{kind}: {retries} retries counted: {metrics}"
        );
        assert!(
            !answered.load(Ordering::SeqCst),
            "{kind}: acknowledged before delivery"
        );
        if kind == "endless" {
            let peak = support::peak_rss(proc.pid()).unwrap();
            eprintln!("endless answers: peak RSS {} MiB", peak >> 20);
            assert!(
                peak < 150 << 20,
                "peak RSS {} MiB reading endless answers",
                peak >> 20
            );
        }

        honest.store(true, Ordering::SeqCst);
        let response = client.join().unwrap();
        assert_eq!(response.status, 200, "{kind}: {}", response.text());
        let mut got = delivered.lock().unwrap().clone();
        got.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(
            got, want,
            "{kind}: each event delivered once, after the lies"
        );
        let logs = proc.stderr();
        let lines = logs
            .lines()
            .filter(|l| {
                l.contains("not the Graph API's")
                    || l.contains("HTTP 200 OK with content-type application/json, cut short")
            })
            .count();
        assert!(
            lines >= 1,
            "{kind}: no log line names the bad answer:\n{logs}"
        );
        // Throttled: one line per 10 s, however many requests met the lie.
        assert!(
            lines <= 2,
            "{kind}: {lines} lines for one kind of lie:\n{logs}"
        );
        if kind == "html" {
            assert!(logs.contains("content-type text/html"), "{logs}");
            assert!(logs.contains("HTTP 200"), "{logs}");
        }
        proc.signal("TERM");
        proc.wait_exit(Duration::from_secs(15));
    }
}

#[test]
fn a_mapping_rejection_kept_in_the_dead_letter_is_logged_without_personal_data() {
    let graph = GraphStandin::start(|_, r| {
        (
            200,
            format!(r#"{{"events_received":{}}}"#, r.event_ids().len()),
        )
    });
    let dir = temp_dir("mapping-rejection");
    let dead_letter = dir.join("dead.ndjson");
    let config = support::temp_file(
        "mapping-rejection.toml",
        &config(&graph.endpoint, &dead_letter),
    );
    // A currency Meta does not know is a mapping rejection (SPEC §5).
    let bad = track_event("bad-currency", "jane.doe@example.com").replace("\"USD\"", "\"XYZ\"");
    let input = format!("{}\n{bad}\n", track_event("fine", "jane.doe@example.com"));
    let mut proc = Proc::spawn(
        &["--config", config.to_str().unwrap()],
        &env(),
        Some(input.as_bytes()),
    );
    assert!(
        proc.wait_exit(Duration::from_secs(30)).success(),
        "{}",
        proc.stderr()
    );
    let logs = proc.stderr();
    let line = logs
        .lines()
        .find(|l| l.contains("rejected by the mapping were written to the dead letter"))
        .unwrap_or_else(|| panic!("no log line for the rejection:\n{logs}"));
    assert!(line.contains("messageId bad-currency"), "{line}");
    assert!(line.contains("currency"), "{line}");
    assert!(!logs.contains("jane.doe@example.com"), "{logs}");
    let dead = std::fs::read_to_string(&dead_letter).unwrap();
    assert_eq!(dead.lines().count(), 1, "{dead}");
}

//! Meta's verdict through the binary: the sink's `quality` poller against the stand-in's
//! Dataset Quality API (the gauges on `/metrics`, a failing answer that leaves delivery alone),
//! every metric the Grafana dashboard queries present after a run, and `fbpixel quality`.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::graph::{GraphStandin, QualityEvent, Reply, dataset_quality, strict_reply};
use crate::support::{
    Proc, fbpixel, free_port, get, metric, post, root, temp_dir, temp_file, track_event, wait_until,
};

const TOKEN: &str = "EAAB-quality-token";
const SECRET: &str = "app-secret-quality";

fn config(port: u16, api_port: u16, data_dir: &Path, endpoint: &str) -> String {
    format!(
        r#"
data_dir = "{dir}"

[api]
address = "127.0.0.1:{api_port}"

[sources.web]
type = "http_server"
address = "127.0.0.1:{port}"

[sinks.capi]
type = "facebook_pixel_server_side"
inputs = ["web"]
pixel_id = "123"
access_token = "${{FB_ACCESS_TOKEN}}"
app_secret = "${{FB_APP_SECRET}}"
partner_agent = "Acme_1_0"
standard_events = {{ "Order Completed" = "Purchase" }}
endpoint = "{endpoint}"
healthcheck.enabled = false
batch.max_events = 10
batch.timeout_secs = 0.05
request.retry_initial_backoff_secs = 0.05
dead_letter.path = "{dir}/dead_letter.ndjson"
buffer.type = "disk"
quality.enabled = true
quality.interval_secs = 1
"#,
        dir = data_dir.display()
    )
}

fn start(graph: &GraphStandin, name: &str) -> (Proc, u16, u16) {
    let (port, api_port) = (free_port(), free_port());
    let dir = temp_dir(name);
    let path = temp_file(
        &format!("{name}.toml"),
        &config(port, api_port, &dir, &graph.endpoint),
    );
    let mut p = Proc::spawn(
        &["--config", path.to_str().unwrap()],
        &[
            ("FB_ACCESS_TOKEN", TOKEN),
            ("FB_APP_SECRET", SECRET),
            ("FBPIXEL_QUALITY_MIN_INTERVAL_SECS", "1"),
        ],
        None,
    );
    p.wait_for_port(port);
    p.wait_for_port(api_port);
    (p, port, api_port)
}

/// Three good events, one the mapping rejects (too far in the future), one it skips (a page
/// call with `page_view` off).
fn send_events(port: u16) {
    let future = r#"{"type":"track","event":"Order Completed","messageId":"future","userId":"u","timestamp":"2100-01-01T00:00:00Z","properties":{"revenue":1}}"#;
    let page = r#"{"type":"page","name":"Home","messageId":"page-1","userId":"u"}"#;
    let body = format!(
        "[{},{},{},{future},{page}]",
        track_event("good-1", "a@example.com"),
        track_event("good-2", "b@example.com"),
        track_event("good-3", "c@example.com"),
    );
    let r = post(
        port,
        &[("content-type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

fn sent(metrics: &str) -> Option<f64> {
    metric(
        metrics,
        "component_sent_events_total",
        &[("component_id", "capi")],
    )
}

fn polls(metrics: &str, outcome: &str) -> f64 {
    metric(
        metrics,
        "fbpixel_meta_quality_polls_total",
        &[("pixel", "123"), ("outcome", outcome)],
    )
    .unwrap_or(0.0)
}

/// Every metric name the dashboard's queries select (`name{…}`).
fn dashboard_metrics() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("examples/grafana/fbpixel.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut names = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let bytes = expr.as_bytes();
            for (i, _) in expr.match_indices('{') {
                let start = bytes[..i]
                    .iter()
                    .rposition(|b| !(b.is_ascii_alphanumeric() || *b == b'_' || *b == b':'))
                    .map_or(0, |p| p + 1);
                if start < i {
                    names.insert(expr[start..i].to_owned());
                }
            }
        }
    }
    names
}

#[test]
fn the_gauges_carry_metas_answer_and_every_metric_the_dashboard_queries_is_on_metrics() {
    let events_requests = AtomicUsize::new(0);
    let graph = GraphStandin::start(move |_, request| {
        // The first batch is answered 500: retried, then delivered.
        if request.is_events() && events_requests.fetch_add(1, Ordering::SeqCst) == 0 {
            return Reply::Json(500, "{}".into());
        }
        if request.is_events() {
            let sent = request.events;
            return (
                200,
                serde_json::json!({"events_received": sent, "fbtrace_id": "T"}),
            )
                .into();
        }
        strict_reply(request)
    });
    let (mut p, port, api_port) = start(&graph, "quality-gauges");
    send_events(port);
    let mut metrics = String::new();
    let done = wait_until(Duration::from_secs(20), || {
        metrics = get(api_port, "/metrics").text();
        sent(&metrics) == Some(3.0) && polls(&metrics, "ok") >= 1.0
    });
    assert!(done, "{metrics}\nstderr:\n{}", p.stderr());

    let gauge = |name: &str, labels: &[(&str, &str)]| {
        let mut all = vec![
            ("component_id", "capi"),
            ("pixel", "123"),
            ("event_name", "Purchase"),
        ];
        all.extend_from_slice(labels);
        metric(&metrics, name, &all)
    };
    assert_eq!(
        gauge("fbpixel_meta_event_match_quality", &[]),
        Some(6.2),
        "{metrics}"
    );
    assert_eq!(
        gauge(
            "fbpixel_meta_match_key_coverage",
            &[("key", "client_ip_address"), ("identifier", "ip_address")]
        ),
        Some(99.9)
    );
    assert_eq!(
        gauge("fbpixel_meta_match_key_coverage", &[("key", "em")]),
        Some(100.0)
    );
    assert_eq!(gauge("fbpixel_meta_event_coverage", &[]), Some(34.1));
    assert_eq!(
        gauge(
            "fbpixel_meta_data_freshness_seconds",
            &[("upload_frequency", "hourly")]
        ),
        Some(3600.0)
    );
    assert_eq!(
        gauge(
            "fbpixel_meta_diagnostics",
            &[("kind", "Server sending mismatched IP addresses")]
        ),
        Some(61.5)
    );
    assert_eq!(
        gauge(
            "fbpixel_meta_dedupe_key_coverage",
            &[
                ("dedupe_key", "event_id"),
                ("measure", "overall_browser_coverage_from_dedupe_key")
            ]
        ),
        Some(14.8)
    );
    // The run had what the dashboard shows: a retry, a rejection in the dead letter, a skip.
    assert_eq!(
        metric(&metrics, "fbpixel_retries_total", &[("reason", "http_5xx")]),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "fbpixel_dead_lettered_events_total",
            &[("stage", "mapping")]
        ),
        Some(1.0),
        "{metrics}"
    );
    let missing: Vec<String> = dashboard_metrics()
        .into_iter()
        .filter(|name| !metrics.lines().any(|l| l.starts_with(&format!("{name}{{"))))
        .collect();
    assert!(
        missing.is_empty(),
        "not on /metrics: {missing:?}\n{metrics}"
    );
    assert!(dashboard_metrics().len() >= 20, "{:?}", dashboard_metrics());

    // The request as Meta documents it: the pixel, the normalized partner_agent, the fields,
    // appsecret_proof; the token in the header, never in the URL.
    let asked = graph
        .requests()
        .into_iter()
        .find(|r| r.is_dataset_quality())
        .expect("the poller asked");
    assert_eq!(asked.method, "GET");
    assert!(
        asked.target.starts_with("/v26.0/dataset_quality?"),
        "{}",
        asked.target
    );
    assert_eq!(asked.query("dataset_id").as_deref(), Some("123"));
    assert_eq!(asked.query("agent_name").as_deref(), Some("acme"));
    assert!(
        asked
            .query("fields")
            .unwrap()
            .starts_with("web{event_name,event_match_quality{")
    );
    let proof = asked.query("appsecret_proof").unwrap();
    assert!(
        proof.len() == 64 && proof.bytes().all(|b| b.is_ascii_hexdigit()),
        "{proof}"
    );
    assert_eq!(
        asked.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert!(!asked.target.contains(TOKEN));
    assert!(!metrics.contains(TOKEN) && !p.stderr().contains(TOKEN));
    p.signal("TERM");
    p.wait_exit(Duration::from_secs(15));
}

#[test]
fn a_failing_dataset_quality_answer_leaves_delivery_alone_and_is_counted_and_logged_once() {
    let polls_seen = AtomicUsize::new(0);
    let graph = GraphStandin::start(move |_, request| {
        // A 500 first, then Meta's OAuth error: one streak of failures of two kinds.
        if request.is_dataset_quality() && polls_seen.fetch_add(1, Ordering::SeqCst) == 0 {
            return Reply::Json(500, "{}".into());
        }
        if request.is_dataset_quality() {
            return (
                400,
                serde_json::json!({"error": {"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190, "fbtrace_id": "QualityTrace"}}),
            )
                .into();
        }
        strict_reply(request)
    });
    let (mut p, port, api_port) = start(&graph, "quality-failing");
    send_events(port);
    let mut metrics = String::new();
    let done = wait_until(Duration::from_secs(20), || {
        metrics = get(api_port, "/metrics").text();
        sent(&metrics) == Some(3.0) && polls(&metrics, "credentials") >= 2.0
    });
    assert!(done, "{metrics}\nstderr:\n{}", p.stderr());
    assert_eq!(polls(&metrics, "transient"), 1.0);
    assert_eq!(polls(&metrics, "ok"), 0.0);
    assert_eq!(
        metric(
            &metrics,
            "fbpixel_requests_total",
            &[("outcome", "accepted")]
        ),
        Some(1.0),
        "the events went out in one accepted request: {metrics}"
    );
    assert_eq!(
        metric(&metrics, "fbpixel_healthy", &[("pixel", "123")]),
        Some(1.0)
    );
    assert!(metric(&metrics, "fbpixel_meta_event_match_quality", &[]).is_none());
    let stderr = p.stderr();
    assert_eq!(
        stderr
            .matches("reading Meta's Dataset Quality API failed")
            .count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("Delivery is not affected"), "{stderr}");
    assert!(
        stderr.contains("HTTP 500"),
        "the first failure is the one logged: {stderr}"
    );
    assert!(
        !stderr.contains(TOKEN) && !stderr.contains(SECRET),
        "{stderr}"
    );
    p.signal("TERM");
    p.wait_exit(Duration::from_secs(15));
}

fn quality_config(endpoint: &str) -> std::path::PathBuf {
    temp_file(
        "quality-command.toml",
        &format!(
            r#"
[sources.in]
type = "stdin"

[sinks.capi]
type = "facebook_pixel_server_side"
inputs = ["in"]
pixel_id = "123"
access_token = "${{FB_ACCESS_TOKEN}}"
endpoint = "{endpoint}"
"#
        ),
    )
}

#[test]
fn the_quality_command_reports_metas_verdict_with_hints_and_says_the_ledger_is_off() {
    let graph = GraphStandin::start(|_, request| {
        if !request.is_dataset_quality() {
            return strict_reply(request);
        }
        let mut purchase = QualityEvent::new("Purchase");
        purchase.match_keys.push(("fbc".into(), 20.0));
        (200, dataset_quality(&[purchase, QualityEvent::new("Lead")])).into()
    });
    let config = quality_config(&graph.endpoint);
    let out = fbpixel(
        &["quality", "--config", config.to_str().unwrap()],
        b"",
        &[("FB_ACCESS_TOKEN", TOKEN)],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Sink capi:"), "{stdout}");
    assert!(
        stdout.contains("the delivery ledger, which is off"),
        "{stdout}"
    );
    assert!(stdout.contains("Pixel 123"), "{stdout}");
    assert!(stdout.contains("Purchase: Meta's EMQ 6.2/10"), "{stdout}");
    assert!(stdout.contains("Lead: Meta's EMQ 6.2/10"), "{stdout}");
    assert!(
        stdout.contains(
            "hint: Meta sees fbc on only 20% of Purchase events: map context.fbc or properties.fbc"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "Meta's diagnostic: \"Server sending mismatched IP addresses\" (61.5% of events"
        ),
        "{stdout}"
    );

    let out = fbpixel(
        &[
            "quality",
            "--config",
            config.to_str().unwrap(),
            "--json",
            "--sink",
            "capi",
        ],
        b"",
        &[("FB_ACCESS_TOKEN", TOKEN)],
    );
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(json[0]["sink"], "capi");
    assert_eq!(json[0]["own_coverage"], false);
    assert_eq!(
        json[0]["pixels"][0]["events"][0]["event_match_quality"],
        6.2
    );
    assert_eq!(json[0]["pixels"][0]["events"][1]["event_name"], "Lead");
}

#[test]
fn the_quality_command_exits_1_with_metas_error_and_what_to_do_when_the_token_cannot_read_it() {
    let graph = GraphStandin::start(|_, _| {
        (
            403,
            serde_json::json!({"error": {"message": "(#200) Permissions error", "type": "OAuthException", "code": 200}}),
        )
    });
    let config = quality_config(&graph.endpoint);
    let out = fbpixel(
        &["quality", "--config", config.to_str().unwrap()],
        b"",
        &[("FB_ACCESS_TOKEN", TOKEN)],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("Meta's Dataset Quality API:"), "{stdout}");
    assert!(stdout.contains("ads_read"), "{stdout}");
    assert!(stdout.contains("Permissions error"), "{stdout}");
    assert!(!stdout.contains(TOKEN));
}

#[test]
fn the_quality_command_puts_our_coverage_from_the_ledger_beside_metas() {
    let graph = GraphStandin::start(|_, request| {
        if !request.is_dataset_quality() {
            return strict_reply(request);
        }
        let mut purchase = QualityEvent::new("Purchase");
        purchase.match_keys = vec![("email".into(), 60.0)];
        (200, dataset_quality(&[purchase])).into()
    });
    let dir = crate::support::temp_dir("quality-own");
    let config = temp_file(
        "quality-own.toml",
        &format!(
            "data_dir = \"{}\"\n{}",
            dir.display(),
            std::fs::read_to_string(quality_config(&graph.endpoint)).unwrap()
        ),
    );
    // Two purchases with an email, one without: em on 2 of 3.
    let input = [
        crate::support::track_event("q-1", "jane.doe@example.com"),
        crate::support::track_event("q-2", "john.roe@example.com"),
        crate::support::track_event("q-3", "x")
            .replace(r#""traits":{"email":"x"}"#, r#""traits":{}"#),
    ]
    .join("\n");
    let run = fbpixel(
        &["--config", config.to_str().unwrap()],
        input.as_bytes(),
        &[("FB_ACCESS_TOKEN", TOKEN)],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out = fbpixel(
        &["quality", "--config", config.to_str().unwrap(), "--json"],
        b"",
        &[("FB_ACCESS_TOKEN", TOKEN)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["own_coverage"], true, "{json}");
    let purchase = &json[0]["pixels"][0]["events"][0];
    assert_eq!(purchase["event_name"], "Purchase", "{json}");
    assert_eq!(purchase["events_sent"], 3, "{json}");
    let em = purchase["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key"] == "em")
        .unwrap_or_else(|| panic!("no em row: {json}"));
    let ours = em["own_coverage"].as_f64().unwrap();
    assert!((ours - 200.0 / 3.0).abs() < 0.1, "{em}");
    assert_eq!(em["meta_coverage"], 60.0, "{em}");
}

//! The `segment` source with Segment's real client libraries (Python and Node, installed by
//! `.ci/run` into `target/ci-clients`), TLS on the HTTP sources, and malformed requests.
//!
//! Without the client libraries the client tests say so and pass, unless
//! `FBPIXEL_REQUIRE_CLIENTS=1` (set by `.ci/run`) makes their absence a failure.

use crate::support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::support::graph::GraphStandin;
use crate::support::{Proc, free_port, http_request, root, temp_dir, wait_until};

const KEY: &str = "write-key-1";

fn clients(lang: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("FBPIXEL_CLIENTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/ci-clients"))
        .join(lang);
    let marker = match lang {
        "python" => dir.join("segment/analytics/__init__.py"),
        _ => dir.join("node_modules/@segment/analytics-node/package.json"),
    };
    if marker.exists() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("FBPIXEL_REQUIRE_CLIENTS").is_none(),
        "{} is missing; .ci/run installs Segment's {lang} client there",
        marker.display()
    );
    eprintln!(
        "skipped: Segment's {lang} client is not installed in {} (see .ci/run)",
        dir.display()
    );
    None
}

fn accept_all() -> GraphStandin {
    GraphStandin::start(|_, r| {
        (
            200,
            format!(r#"{{"events_received":{},"id":"1"}}"#, r.event_ids().len()),
        )
    })
}

/// fbpixel with a `segment` source on `port` → the Conversions API sink → `graph`.
fn pipeline(graph: &GraphStandin, port: u16, extra_source: &str) -> (Proc, PathBuf) {
    let dir = temp_dir("segment");
    let config = format!(
        r#"
[sources.web]
type = "segment"
address = "127.0.0.1:{port}"
write_keys = ["{KEY}"]
{extra_source}

[sinks.facebook]
type = "facebook_pixel_server_side"
inputs = ["web"]
pixel_id = "1"
access_token = "t"
endpoint = "{}"
batch.timeout_secs = 0.05
dead_letter.path = "{}"
"#,
        graph.endpoint,
        dir.join("dead.ndjson").display()
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, config).unwrap();
    let mut proc = Proc::spawn(&["--config", path.to_str().unwrap()], &[], None);
    proc.wait_for_port(port);
    (proc, dir)
}

fn delivered(graph: &GraphStandin) -> BTreeSet<String> {
    graph
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .flat_map(|r| r.event_ids())
        .collect()
}

fn run_client(
    lang: &str,
    dir: &PathBuf,
    port: u16,
    key: &str,
    count: usize,
    prefix: &str,
) -> (bool, String) {
    let host = format!("http://127.0.0.1:{port}");
    let (program, script) = match lang {
        "python" => ("python3", root().join("tests/clients/send_python.py")),
        _ => ("node", root().join("tests/clients/send_node.js")),
    };
    let output = Command::new(program)
        .arg(script)
        .args([
            dir.to_str().unwrap(),
            &host,
            key,
            &count.to_string(),
            prefix,
        ])
        .output()
        .expect("the client runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn client_delivers_every_event(lang: &str) {
    let Some(dir) = clients(lang) else { return };
    let graph = accept_all();
    let port = free_port();
    let (mut proc, _) = pipeline(&graph, port, "");
    let count = 300;
    let (ok, stderr) = run_client(lang, &dir, port, KEY, count, lang);
    assert!(ok, "{lang} client failed: {stderr}");
    assert!(
        !stderr.contains("error"),
        "{lang} client reported: {stderr}"
    );
    let expected: BTreeSet<String> = (0..count).map(|i| format!("{lang}-{i}")).collect();
    assert!(
        wait_until(Duration::from_secs(20), || delivered(&graph)
            .is_superset(&expected)),
        "missing: {:?}\n{}",
        expected
            .difference(&delivered(&graph))
            .take(5)
            .collect::<Vec<_>>(),
        proc.stderr()
    );
    // Each mapped event was delivered once, with the library's context (a server event, mapped).
    let posts = graph.requests();
    let all: Vec<String> = posts.iter().flat_map(|r| r.event_ids()).collect();
    assert_eq!(all.len(), count, "duplicates were sent");
    let body: serde_json::Value =
        serde_json::from_str(&posts.iter().find(|r| r.method == "POST").unwrap().body).unwrap();
    assert_eq!(body["data"][0]["event_name"], "Purchase");
    assert_eq!(
        body["data"][0]["user_data"]["client_ip_address"],
        "203.0.113.7"
    );

    // A wrong write key is refused: the library reports it and nothing reaches Meta.
    let before = graph.requests().len();
    let (_, stderr) = run_client(lang, &dir, port, "not-the-key", 5, &format!("{lang}-wrong"));
    assert!(
        stderr.contains("error"),
        "{lang} client did not see the refusal: {stderr}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        graph.requests().len(),
        before,
        "events with a wrong key were delivered"
    );
    proc.signal("TERM");
    assert!(
        proc.wait_exit(Duration::from_secs(15)).success(),
        "{}",
        proc.stderr()
    );
}

#[test]
fn segment_python_library_events_all_reach_the_graph_api() {
    client_delivers_every_event("python");
}

#[test]
fn segment_node_library_events_all_reach_the_graph_api() {
    client_delivers_every_event("node");
}

fn segment_post(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> support::HttpResponse {
    http_request(port, "POST", path, headers, body).expect("the server answers")
}

fn basic(key: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    )
}

#[test]
fn malformed_requests_get_clear_4xx_answers_and_the_server_keeps_serving() {
    let graph = accept_all();
    let port = free_port();
    let (mut proc, _) = pipeline(&graph, port, "");
    let auth = basic(KEY);
    let h: &[(&str, &str)] = &[
        ("authorization", &auth),
        ("content-type", "application/json"),
    ];
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("/v1/batch", b"{\"batch\": [".to_vec(), 400, "invalid JSON"),
        (
            "/v1/batch",
            b"{\"batch\": {}}".to_vec(),
            400,
            "`batch` must be an array",
        ),
        (
            "/v1/batch",
            b"{\"batch\": []}".to_vec(),
            400,
            "`batch` is empty",
        ),
        ("/v1/batch", b"[1,2]".to_vec(), 400, "must be a JSON object"),
        (
            "/v1/batch",
            format!(
                "{{\"batch\":[{{\"type\":\"track\",\"p\":\"{}\"}}]}}",
                "x".repeat(600 * 1024)
            )
            .into_bytes(),
            400,
            "limit of 500 KB",
        ),
        (
            "/v1/track",
            format!("{{\"event\":\"x\",\"p\":\"{}\"}}", "x".repeat(40 * 1024)).into_bytes(),
            400,
            "limit of 32 KB",
        ),
        (
            "/v1/batch",
            format!(
                "{{\"batch\":[{{\"type\":\"track\",\"p\":\"{}\"}}]}}",
                "x".repeat(40 * 1024)
            )
            .into_bytes(),
            400,
            "batch[0] is larger than Segment's limit of 32 KB",
        ),
        ("/v1/nope", b"{}".to_vec(), 404, "/v1/track"),
    ];
    for (path, body, status, needle) in cases {
        let response = segment_post(port, path, h, &body);
        assert_eq!(response.status, status, "{path}: {}", response.text());
        assert!(
            response.text().contains(needle),
            "{path}: {}",
            response.text()
        );
        assert!(
            response.text().contains("\"success\":false"),
            "{}",
            response.text()
        );
    }
    // No write key at all: 401.
    let response = segment_post(port, "/v1/track", &[], b"{\"event\":\"x\"}");
    assert_eq!(response.status, 401, "{}", response.text());

    // Still serving: a good single call (write key in the body) is accepted and delivered.
    let now = chrono::Utc::now().to_rfc3339();
    let good = format!(
        r#"{{"writeKey":"{KEY}","userId":"u1","event":"Signed Up","messageId":"after-errors","timestamp":"{now}","context":{{"userAgent":"UA","page":{{"url":"https://x.example/"}}}}}}"#
    );
    let response = segment_post(
        port,
        "/v1/track",
        &[("content-type", "application/json")],
        good.as_bytes(),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.text().trim(), r#"{"success":true}"#);
    assert!(wait_until(Duration::from_secs(10), || delivered(&graph)
        .contains("after-errors")));
    proc.signal("TERM");
    assert!(
        proc.wait_exit(Duration::from_secs(15)).success(),
        "{}",
        proc.stderr()
    );
}

#[test]
fn single_calls_get_type_received_at_message_id_and_optionally_the_peer_ip() {
    let port = free_port();
    let dir = temp_dir("segment-enrich");
    let out = dir.join("out.ndjson");
    let config = format!(
        r#"
[sources.web]
type = "segment"
address = "127.0.0.1:{port}"
write_keys = ["{KEY}"]
infer_ip = true
trust_forwarded_for = true

[sinks.out]
type = "file"
inputs = ["web"]
path = "{}"
"#,
        out.display()
    );
    let path = dir.join("p.toml");
    std::fs::write(&path, config).unwrap();
    let mut proc = Proc::spawn(&["--config", path.to_str().unwrap()], &[], None);
    proc.wait_for_port(port);
    let auth = basic(KEY);
    let r = segment_post(
        port,
        "/v1/page",
        &[
            ("authorization", &auth),
            ("x-forwarded-for", "198.51.100.4, 10.0.0.1"),
        ],
        br#"{"type":"track","name":"Home"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let gz = support::gzip(br#"{"event":"Kept","context":{"ip":"192.0.2.1"},"messageId":"m-1"}"#);
    let r = segment_post(
        port,
        "/v1/t",
        &[("authorization", &auth), ("content-encoding", "gzip")],
        &gz,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    proc.signal("TERM");
    assert!(
        proc.wait_exit(Duration::from_secs(15)).success(),
        "{}",
        proc.stderr()
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["type"], "page", "the path decides the type");
    assert_eq!(
        lines[0]["context"]["ip"], "198.51.100.4",
        "the public X-Forwarded-For hop (10.0.0.1 is private)"
    );
    assert_eq!(
        lines[0]["messageId"].as_str().unwrap().len(),
        36,
        "a messageId is added"
    );
    assert!(lines[0]["receivedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(lines[1]["type"], "track");
    assert_eq!(
        lines[1]["context"]["ip"], "192.0.2.1",
        "an IP the message has is kept"
    );
    assert_eq!(lines[1]["messageId"], "m-1");
}

/// `trust_forwarded_for` picks the address as Meta's Parameter Builder does (a public hop, IPv6
/// first), skips `trusted_proxies` hops, and ignores the header from a peer outside them.
#[test]
fn forwarded_for_gives_metas_choice_and_only_from_trusted_proxies() {
    let (port_proxied, port_direct) = (free_port(), free_port());
    let dir = temp_dir("segment-forwarded");
    let out = dir.join("out.ndjson");
    let config = format!(
        r#"
[sources.proxied]
type = "segment"
address = "127.0.0.1:{port_proxied}"
write_keys = ["{KEY}"]
infer_ip = true
trust_forwarded_for = true
trusted_proxies = ["127.0.0.1", "203.0.113.0/24"]

[sources.direct]
type = "segment"
address = "127.0.0.1:{port_direct}"
write_keys = ["{KEY}"]
infer_ip = true
trust_forwarded_for = true
trusted_proxies = ["10.0.0.0/8"]

[sinks.out]
type = "file"
inputs = ["proxied", "direct"]
path = "{}"
"#,
        out.display()
    );
    let path = dir.join("p.toml");
    std::fs::write(&path, config).unwrap();
    let mut proc = Proc::spawn(&["--config", path.to_str().unwrap()], &[], None);
    proc.wait_for_port(port_proxied);
    proc.wait_for_port(port_direct);
    let auth = basic(KEY);
    for (port, forwarded_for, event) in [
        // 10.0.0.1 is private and 203.0.113.9 one of our proxies: 2001:db8::1 is left.
        (port_proxied, "10.0.0.1, 2001:db8::1, 203.0.113.9", "Chain"),
        // Nothing public in the header, and the peer (loopback) is not either: no IP, as Meta.
        (port_proxied, "10.0.0.1, 192.168.0.2", "Private"),
        // 127.0.0.1 is not in this source's trusted_proxies: its header is not read.
        (port_direct, "198.51.100.4", "Direct"),
    ] {
        let r = segment_post(
            port,
            "/v1/track",
            &[("authorization", &auth), ("x-forwarded-for", forwarded_for)],
            format!(r#"{{"event":"{event}"}}"#).as_bytes(),
        );
        assert_eq!(r.status, 200, "{event}: {}", r.text());
    }
    proc.signal("TERM");
    assert!(
        proc.wait_exit(Duration::from_secs(15)).success(),
        "{}",
        proc.stderr()
    );
    let ips: std::collections::BTreeMap<String, serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|m| {
            (
                m["event"].as_str().unwrap().to_owned(),
                m["context"]["ip"].clone(),
            )
        })
        .collect();
    assert_eq!(ips.len(), 3, "{ips:?}");
    assert_eq!(ips["Chain"], "2001:db8::1");
    assert_eq!(ips["Private"], serde_json::Value::Null);
    assert_eq!(ips["Direct"], serde_json::Value::Null);
}

#[test]
fn http_sources_serve_tls_with_the_given_certificate() {
    let dir = temp_dir("tls");
    let (crt, key) = (dir.join("crt.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl runs");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let (port_http, port_segment) = (free_port(), free_port());
    let out = dir.join("out.ndjson");
    let config = format!(
        r#"
[sources.vector_in]
type = "http_server"
address = "127.0.0.1:{port_http}"
tls = {{ crt_file = "{crt}", key_file = "{key}" }}

[sources.web]
type = "segment"
address = "127.0.0.1:{port_segment}"
write_keys = ["{KEY}"]
tls.crt_file = "{crt}"
tls.key_file = "{key}"

[sinks.out]
type = "file"
inputs = ["vector_in", "web"]
path = "{out}"
"#,
        crt = crt.display(),
        key = key.display(),
        out = out.display()
    );
    let path = dir.join("p.toml");
    std::fs::write(&path, config).unwrap();
    let mut proc = Proc::spawn(&["--config", path.to_str().unwrap()], &[], None);
    proc.wait_for_port(port_http);
    proc.wait_for_port(port_segment);
    let curl = |url: String, extra: &[&str], body: &str| {
        let output = Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(&crt)
            .args(extra)
            .args([
                "-H",
                "content-type: application/json",
                "--data-binary",
                body,
                "-w",
                " %{http_code} %{http_version}",
                &url,
            ])
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr)
    };
    let a = curl(
        format!("https://localhost:{port_http}/"),
        &["--http2"],
        r#"[{"type":"track","n":1}]"#,
    );
    assert!(a.ends_with(" 200 2"), "{a}");
    let b = curl(
        format!("https://127.0.0.1:{port_segment}/v1/track"),
        &["-u", &format!("{KEY}:")],
        r#"{"event":"x","n":2}"#,
    );
    assert!(
        b.contains(r#"{"success":true}"#) && b.contains(" 200 "),
        "{b}"
    );
    // Plain HTTP on a TLS port is not served.
    let plain = http_request(port_http, "POST", "/", &[], b"[]");
    assert!(plain.map(|r| r.status != 200).unwrap_or(true));
    proc.signal("TERM");
    assert!(
        proc.wait_exit(Duration::from_secs(15)).success(),
        "{}",
        proc.stderr()
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 2);
}

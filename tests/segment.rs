//! The `segment` source with Segment's real client libraries (Python and Node, installed by
//! `.ci/run` into `target/ci-clients`), TLS on the HTTP sources, and malformed requests,
//! refused as Segment's API refuses them so that the libraries report the message.
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

    // A wrong write key is refused: the library reports it, with our message, and nothing
    // reaches Meta. Python reads `code` and `message` from the body (`[Segment] code: message
    // (status)`); Node reads only the status line (`[status] reason phrase`).
    let before = graph.requests().len();
    let (_, stderr) = run_client(lang, &dir, port, "not-the-key", 5, &format!("{lang}-wrong"));
    let expected = match lang {
        "python" => {
            "[Segment] invalid_write_key: missing or unknown write key; send it as the HTTP basic user or as `writeKey` (401)"
        }
        _ => {
            "[401] Unauthorized: missing or unknown write key; send it as the HTTP basic user or as `writeKey`"
        }
    };
    assert!(
        stderr.contains(expected),
        "{lang} client did not report the refusal's message {expected:?}: {stderr}"
    );
    assert!(
        !stderr.contains("'code'"),
        "{lang} client could not parse the refusal: {stderr}"
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

/// `response` is a refusal as Segment's API shapes one: a JSON object with `success: false`,
/// `code` and a `message` containing `needle`, as `application/json`.
fn assert_refusal(response: &support::HttpResponse, code: &str, needle: &str) {
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{}",
        response.text()
    );
    let body: serde_json::Value = serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", response.text()));
    let keys: Vec<&str> = body
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 3, "success, message and code only: {body}");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["code"], code, "{body}");
    let message = body["message"].as_str().expect("a message");
    assert!(message.contains(needle), "{needle:?} not in {body}");
}

/// The status line of the answer to `request`, sent as is on a new connection.
fn status_line(port: u16, request: &[u8]) -> String {
    use std::io::{BufRead, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut line)
        .unwrap();
    line.trim_end().to_owned()
}

// The 32 KB and 500 KB limits are 400s, not 413: Segment's API answers 400 (its HTTP API
// documentation, "Max request size"), and analytics-swift without its retry settings drops a
// batch only on 400 (`HTTPClient.shouldDropBatch`), so a 413 would have it resend an
// oversized batch for good.
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
        let code = if status == 404 {
            "not_found"
        } else {
            "invalid_request"
        };
        assert_refusal(&response, code, needle);
    }
    // No write key at all, or a wrong one: 401, with the same shape.
    let response = segment_post(port, "/v1/track", &[], b"{\"event\":\"x\"}");
    assert_eq!(response.status, 401, "{}", response.text());
    assert_refusal(
        &response,
        "invalid_write_key",
        "missing or unknown write key",
    );
    assert!(response.header("www-authenticate").is_some());
    let wrong = basic("not-the-key");
    let response = segment_post(
        port,
        "/v1/batch",
        &[("authorization", &wrong)],
        br#"{"batch":[{"type":"track","event":"x"}]}"#,
    );
    assert_eq!(response.status, 401, "{}", response.text());
    assert_refusal(
        &response,
        "invalid_write_key",
        "missing or unknown write key",
    );
    // Not a POST: 405, saying what to use.
    let response = http_request(port, "GET", "/v1/track", h, b"").unwrap();
    assert_eq!(response.status, 405, "{}", response.text());
    assert_refusal(&response, "method_not_allowed", "use POST");
    assert_eq!(response.header("allow"), Some("POST, OPTIONS"));

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

/// Over HTTP/1.1 the refusal's message is in the reason phrase too: the only part of an
/// answer @segment/analytics-node reports. A success keeps the plain `200 OK`.
#[test]
fn refusals_carry_the_message_in_the_reason_phrase_and_lowercase_basic_is_accepted() {
    let dir = temp_dir("segment-reason");
    let port = free_port();
    let out = dir.join("out.ndjson");
    let config = format!(
        r#"
[sources.web]
type = "segment"
address = "127.0.0.1:{port}"
write_keys = ["{KEY}"]

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
    let request = |auth: &str, body: &str| {
        format!(
            "POST /v1/track HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {auth}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let wrong = basic("not-the-key");
    assert_eq!(
        status_line(port, &request(&wrong, r#"{"event":"x"}"#)),
        "HTTP/1.1 401 Unauthorized: missing or unknown write key; send it as the HTTP basic user or as `writeKey`"
    );
    let good = basic(KEY);
    let line = status_line(port, &request(&good, "{"));
    assert!(
        line.starts_with("HTTP/1.1 400 Bad Request: invalid JSON: "),
        "{line}"
    );
    // RFC 7235: the scheme in any case, and more than one space before the credentials.
    let lower = good.replacen("Basic ", "basic   ", 1);
    assert_eq!(
        status_line(port, &request(&lower, r#"{"event":"Lower"}"#)),
        "HTTP/1.1 200 OK"
    );
    let upper = good.replacen("Basic ", "BASIC ", 1);
    assert_eq!(
        status_line(port, &request(&upper, r#"{"event":"Upper"}"#)),
        "HTTP/1.1 200 OK"
    );
    proc.signal("TERM");
    assert!(
        proc.wait_exit(Duration::from_secs(15)).success(),
        "{}",
        proc.stderr()
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 2);
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

/// fbpixel with a `segment` source on `port` (with `extra` settings) → a file sink; the file.
fn to_file(port: u16, extra: &str) -> (Proc, PathBuf) {
    let dir = temp_dir("segment-cors");
    let out = dir.join("out.ndjson");
    let config = format!(
        r#"
[sources.web]
type = "segment"
address = "127.0.0.1:{port}"
write_keys = ["{KEY}"]
{extra}

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
    (proc, out)
}

/// The `event`s the file sink wrote, once fbpixel has stopped.
fn events_written(mut proc: Proc, out: &std::path::Path) -> Vec<String> {
    proc.signal("TERM");
    assert!(
        proc.wait_exit(Duration::from_secs(15)).success(),
        "{}",
        proc.stderr()
    );
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].to_string())
        .collect()
}

/// The preflight of analytics.js from `origin`: since @segment/analytics-next 1.84.0 it sends
/// `Authorization` and, on retries, `X-Retry-Count`, which are not CORS-safelisted.
fn preflight(port: u16, path: &str, origin: &str) -> support::HttpResponse {
    http_request(
        port,
        "OPTIONS",
        path,
        &[
            ("origin", origin),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization,content-type,x-retry-count",
            ),
        ],
        b"",
    )
    .expect("the server answers")
}

/// A POST as analytics.js sends it (`text/plain`, the write key as the basic user) from `origin`.
fn browser_post(port: u16, origin: Option<&str>, event: &str) -> support::HttpResponse {
    let auth = basic(KEY);
    let mut headers = vec![("content-type", "text/plain"), ("authorization", &*auth)];
    if let Some(origin) = origin {
        headers.push(("origin", origin));
    }
    segment_post(
        port,
        "/v1/t",
        &headers,
        format!(r#"{{"event":"{event}","writeKey":"{KEY}"}}"#).as_bytes(),
    )
}

fn assert_allows_what_analytics_js_sends(response: &support::HttpResponse) {
    assert_eq!(response.status, 204, "{}", response.text());
    assert!(response.body.is_empty());
    assert_eq!(
        response.header("access-control-allow-methods"),
        Some("POST")
    );
    let allowed = response
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for name in ["authorization", "content-type", "x-retry-count"] {
        assert!(
            allowed.split(", ").any(|a| a == name),
            "{name} not in {allowed}"
        );
    }
    assert_eq!(response.header("access-control-max-age"), Some("7200"));
}

#[test]
fn segment_cors_allows_any_origin_by_default_on_preflights_and_every_answer() {
    let port = free_port();
    let (proc, out) = to_file(port, "");
    for path in ["/v1/t", "/v1/batch", "/v1/track/"] {
        let response = preflight(port, path, "https://shop.example");
        assert_allows_what_analytics_js_sends(&response);
        assert_eq!(
            response.header("access-control-allow-origin"),
            Some("*"),
            "{path}"
        );
        assert_eq!(response.header("vary"), None, "`*` does not vary");
    }
    let response = browser_post(port, Some("https://shop.example"), "Browser");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    // Refusals too, or the page could not read them.
    let response = segment_post(
        port,
        "/v1/t",
        &[("origin", "https://shop.example")],
        b"{\"event\":\"x\"}",
    );
    assert_eq!(response.status, 401, "{}", response.text());
    assert_refusal(
        &response,
        "invalid_write_key",
        "missing or unknown write key",
    );
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    // An OPTIONS that is no preflight gets the methods; one on another path, the 404.
    let response = http_request(port, "OPTIONS", "/v1/track", &[], b"").unwrap();
    assert_eq!(response.status, 204, "{}", response.text());
    assert_eq!(response.header("allow"), Some("POST, OPTIONS"));
    let response = preflight(port, "/v1/nope", "https://shop.example");
    assert_eq!(response.status, 404, "{}", response.text());
    assert_refusal(&response, "not_found", "/v1/track");
    assert_eq!(
        events_written(proc, &out),
        ["\"Browser\""],
        "a preflight delivers nothing"
    );
}

#[test]
fn segment_cors_echoes_listed_origins_and_refuses_others_without_cors_headers() {
    let port = free_port();
    let (proc, out) = to_file(
        port,
        r#"cors.allowed_origins = ["https://shop.example", "http://localhost:3000"]"#,
    );
    let response = preflight(port, "/v1/t", "https://shop.example");
    assert_allows_what_analytics_js_sends(&response);
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    assert_eq!(response.header("vary"), Some("Origin"));
    assert_eq!(response.header("access-control-allow-credentials"), None);

    let response = browser_post(port, Some("http://localhost:3000"), "Local");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    assert_eq!(response.header("vary"), Some("Origin"));

    // Another origin: no CORS headers, so the browser stops there, and a Segment-shaped 403.
    let response = preflight(port, "/v1/t", "https://evil.example");
    assert_eq!(response.status, 403, "{}", response.text());
    assert_refusal(
        &response,
        "origin_not_allowed",
        "origin https://evil.example is not in cors.allowed_origins",
    );
    assert_eq!(response.header("access-control-allow-origin"), None);
    assert_eq!(response.header("access-control-allow-methods"), None);
    assert_eq!(response.header("vary"), Some("Origin"));
    // Its POST (a simple one needs no preflight) is refused, not delivered.
    let response = browser_post(port, Some("https://evil.example"), "Evil");
    assert_eq!(response.status, 403, "{}", response.text());
    assert_refusal(&response, "origin_not_allowed", "https://evil.example");
    assert_eq!(response.header("access-control-allow-origin"), None);

    // A server library sends no Origin: served as before.
    let response = browser_post(port, None, "Server");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("access-control-allow-origin"), None);
    assert_eq!(response.header("vary"), Some("Origin"));
    assert_eq!(events_written(proc, &out), ["\"Local\"", "\"Server\""]);
}

//! Connections that never send a request, as an adversary opens them: the real binary must
//! close them after `header_timeout_secs`, keep at most `max_connections` open per listener
//! (saying so in its log), keep serving real clients and `/health` on the API's own port,
//! and survive a low open-file limit. Busy kept-alive connections are retired after
//! `keepalive.max_connection_age_secs`, never in the middle of a request.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{Proc, free_port, http_request, temp_file, wait_until};

/// Generous: the machine running the tests may be loaded; each wait polls and ends early.
const LIMIT: Duration = Duration::from_secs(45);

/// An `[api]` on `api_port` and an `http_server` source `web` on `port` with `options`,
/// feeding a `blackhole`.
fn config(port: u16, api_port: u16, api_options: &str, options: &str) -> String {
    let text = format!(
        r#"
[api]
address = "127.0.0.1:{api_port}"
{api_options}

[sources.web]
type = "http_server"
address = "127.0.0.1:{port}"
{options}

[sinks.hole]
type = "blackhole"
inputs = ["web"]
print_interval_secs = 0
"#
    );
    temp_file("connections.toml", &text)
        .to_str()
        .expect("a UTF-8 path")
        .to_owned()
}

fn start(port: u16, api_port: u16, api_options: &str, options: &str) -> Proc {
    let path = config(port, api_port, api_options, options);
    let mut p = Proc::spawn(&["--config", &path], &[], None);
    p.wait_for_port(port);
    p.wait_for_port(api_port);
    p
}

/// `n` connections to `port` that send nothing.
fn silent(port: u16, n: usize) -> Vec<(TcpStream, Instant)> {
    (0..n)
        .map(|i| {
            let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                .unwrap_or_else(|e| panic!("silent connection {i}: {e}"));
            (stream, Instant::now())
        })
        .collect()
}

/// Reads until the server closes `stream` (end of file or reset) and returns how long after
/// `since` that was; panics when it stays open past `limit`.
fn wait_closed(stream: &mut TcpStream, since: Instant, limit: Duration, what: &str) -> Duration {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{what}: still open {limit:?} later; the server must close it"
        );
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return since.elapsed(),
            // Whatever the server says first (HTTP/2 settings, a 408) is fine; keep reading.
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return since.elapsed(),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("{what}: still open {limit:?} later; the server must close it")
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// POSTs one event from another thread; the answer comes on the returned channel.
fn post_in_background(port: u16) -> mpsc::Receiver<std::io::Result<u16>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let answer = http_request(port, "POST", "/", &[], br#"{"event":"x"}"#).map(|r| r.status);
        let _ = tx.send(answer);
    });
    rx
}

/// Sockets the process has open (from /proc), to see the limit hold from outside.
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn silent_connections_beyond_max_connections_wait_are_closed_after_the_header_timeout_and_neither_a_client_nor_health_is_locked_out()
 {
    let (port, api_port) = (free_port(), free_port());
    let p = start(
        port,
        api_port,
        "",
        "max_connections = 20\nheader_timeout_secs = 1",
    );
    let before = open_sockets(p.pid());

    let mut flood = silent(port, 60);
    let answer = post_in_background(port);

    // The API has its own listener and limit: it answers while the source is saturated.
    let health = http_request(api_port, "GET", "/health", &[], b"").expect("GET /health");
    assert_eq!(health.status, 200, "{}", health.text());

    // The source never holds more than its limit (plus the listeners and whatever else was
    // open before, with a little room for the client being accepted as another closes).
    let mut most = 0;
    let sampling = Instant::now();
    while sampling.elapsed() < Duration::from_secs(3) {
        most = most.max(open_sockets(p.pid()));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        most <= before + 20 + 3,
        "{most} sockets open with max_connections = 20 ({before} before the flood)"
    );

    // Every silent connection is closed by the server, and not before the header timeout.
    for (i, (stream, since)) in flood.iter_mut().enumerate() {
        let after = wait_closed(stream, *since, LIMIT, &format!("silent connection {i}"));
        assert!(
            after >= Duration::from_millis(900),
            "silent connection {i} closed after {after:?}, before header_timeout_secs = 1"
        );
    }

    // The client queued behind them is served once they are gone.
    let status = answer
        .recv_timeout(LIMIT)
        .expect("the POST is answered")
        .expect("the POST gets an answer, not an error");
    assert_eq!(status, 200);

    let stderr = p.stderr();
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("max_connections") && l.contains("source `web`"))
        .collect();
    assert!(
        !lines.is_empty(),
        "the limit is logged, naming the source and the setting; stderr:\n{stderr}"
    );
    assert!(
        lines[0].contains("[sources.web]") && lines[0].contains("20"),
        "{}",
        lines[0]
    );
    assert!(
        lines.len() <= 3,
        "the limit line is throttled, got {}:\n{stderr}",
        lines.len()
    );
}

#[test]
fn a_flood_on_the_api_port_is_closed_after_its_header_timeout_and_health_answers_again() {
    let (port, api_port) = (free_port(), free_port());
    let p = start(
        port,
        api_port,
        "max_connections = 4\nheader_timeout_secs = 1",
        "",
    );
    let mut flood = silent(api_port, 12);
    let started = Instant::now();
    let health = http_request(api_port, "GET", "/health", &[], b"").expect("GET /health");
    assert_eq!(health.status, 200, "{}", health.text());
    assert!(
        started.elapsed() < LIMIT,
        "/health took {:?}",
        started.elapsed()
    );
    for (i, (stream, since)) in flood.iter_mut().enumerate() {
        wait_closed(stream, *since, LIMIT, &format!("silent API connection {i}"));
    }
    assert!(
        p.stderr().contains("api: 4 connections are open"),
        "{}",
        p.stderr()
    );
}

#[test]
fn a_connection_that_sends_only_the_http2_preface_or_half_a_request_head_is_closed() {
    let (port, api_port) = (free_port(), free_port());
    let _p = start(port, api_port, "", "header_timeout_secs = 1");

    let mut h2 = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    let since = Instant::now();
    // The client preface and an empty SETTINGS frame, then no request.
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    let after = wait_closed(&mut h2, since, LIMIT, "HTTP/2 connection without a request");
    assert!(
        after >= Duration::from_millis(900),
        "closed after {after:?}"
    );

    let mut partial = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    let since = Instant::now();
    partial
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let after = wait_closed(&mut partial, since, LIMIT, "half a request head");
    assert!(
        after >= Duration::from_millis(900),
        "closed after {after:?}"
    );
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout_and_served_before() {
    let (port, api_port) = (free_port(), free_port());
    let _p = start(port, api_port, "", "header_timeout_secs = 2");
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let body = br#"{"event":"x"}"#;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    for round in 0..2 {
        stream.write_all(request.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        // The answer of the `http_server` source has an empty body: the head is all of it.
        let mut head = Vec::new();
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(
                stream.read(&mut byte).unwrap(),
                1,
                "answer {round} cut short"
            );
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("content-length: 0"),
            "{head}"
        );
    }
    let answered = Instant::now();
    let after = wait_closed(&mut stream, answered, LIMIT, "idle keep-alive connection");
    assert!(
        after >= Duration::from_millis(1900),
        "closed {after:?} after the answer, before header_timeout_secs = 2"
    );
}

#[test]
fn under_a_low_open_file_limit_accept_errors_are_logged_once_and_clients_are_served_once_silent_ones_close()
 {
    let (port, api_port) = (free_port(), free_port());
    // A limit far above what 64 open files allow, so that accept itself fails.
    let path = config(
        port,
        api_port,
        "",
        "max_connections = 1000\nheader_timeout_secs = 2",
    );
    let mut p = Proc::spawn_with_open_file_limit(&["--config", &path], 64);
    p.wait_for_port(port);
    p.wait_for_port(api_port);

    let mut flood = silent(port, 100);
    let logged = wait_until(LIMIT, || p.stderr().contains("cannot accept connections"));
    assert!(logged, "accept errors are logged; stderr:\n{}", p.stderr());
    let answer = post_in_background(port);
    for (i, (stream, since)) in flood.iter_mut().enumerate() {
        wait_closed(stream, *since, LIMIT, &format!("silent connection {i}"));
    }
    let status = answer
        .recv_timeout(LIMIT)
        .expect("the POST is answered")
        .expect("the POST gets an answer, not an error");
    assert_eq!(status, 200);

    let stderr = p.stderr();
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("cannot accept connections"))
        .collect();
    assert!(
        lines[0].contains("open files") && lines[0].contains("ulimit -n"),
        "{}",
        lines[0]
    );
    assert!(
        lines.len() <= 3,
        "accept errors are throttled, got {}:\n{stderr}",
        lines.len()
    );
}

#[test]
fn under_a_low_open_file_limit_the_default_max_connections_stays_below_it() {
    let (port, api_port) = (free_port(), free_port());
    let path = config(port, api_port, "", "header_timeout_secs = 2");
    let mut p = Proc::spawn_with_open_file_limit(&["--config", &path], 64);
    p.wait_for_port(port);
    p.wait_for_port(api_port);
    let mut flood = silent(port, 40);
    // A quarter of 64: the listener stops accepting before the process runs out of files.
    let logged = wait_until(LIMIT, || {
        p.stderr().contains("source `web`: 16 connections are open")
    });
    assert!(logged, "stderr:\n{}", p.stderr());
    let health = http_request(api_port, "GET", "/health", &[], b"").expect("GET /health");
    assert_eq!(health.status, 200);
    for (i, (stream, since)) in flood.iter_mut().enumerate() {
        wait_closed(stream, *since, LIMIT, &format!("silent connection {i}"));
    }
    assert!(
        !p.stderr().contains("cannot accept connections"),
        "{}",
        p.stderr()
    );
}

/// Options of a source whose connections are retired after `secs` (no jitter), and not for
/// being idle (the header timeout is far longer than the tests).
fn max_age(secs: u64) -> String {
    format!(
        "header_timeout_secs = 60\nkeepalive.max_connection_age_secs = {secs}\nkeepalive.max_connection_age_jitter_factor = 0.0"
    )
}

/// The head of one answer on `stream` (the `http_server` source answers with an empty body).
fn read_head(stream: &mut TcpStream, what: &str) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream
            .read(&mut byte)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            n,
            1,
            "{what}: the answer was cut short: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).to_ascii_lowercase()
}

const EVENT: &[u8] = br#"{"event":"x"}"#;

fn request_head(body_len: usize) -> String {
    format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {body_len}\r\n\r\n")
}

#[test]
fn a_busy_keep_alive_connection_is_closed_after_the_answer_following_its_max_age() {
    let (port, api_port) = (free_port(), free_port());
    let _p = start(port, api_port, "", &max_age(2));
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    let connected = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut answers = 0;
    let closed_at = loop {
        assert!(
            connected.elapsed() < LIMIT,
            "still kept alive {:?} after connecting, with max_connection_age_secs = 2",
            connected.elapsed()
        );
        stream
            .write_all(request_head(EVENT.len()).as_bytes())
            .unwrap();
        stream.write_all(EVENT).unwrap();
        let head = read_head(&mut stream, &format!("answer {answers}"));
        let at = connected.elapsed();
        answers += 1;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        if head.contains("connection: close") {
            break at;
        }
        assert!(
            at < Duration::from_millis(2100),
            "answer {answers} at {at:?} is past the age of 2 s and does not close: {head}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        closed_at >= Duration::from_secs(2),
        "closed at {closed_at:?}, before max_connection_age_secs = 2"
    );
    assert!(answers > 3, "kept alive until then: {answers} answers");
    // And then it is closed by the server, long before the header timeout (60 s).
    let after = wait_closed(
        &mut stream,
        Instant::now(),
        Duration::from_secs(10),
        "retired connection",
    );
    assert!(after < Duration::from_secs(10), "{after:?}");
}

#[test]
fn a_request_under_way_at_the_max_age_is_answered_before_the_connection_closes() {
    let (port, api_port) = (free_port(), free_port());
    let _p = start(port, api_port, "", &max_age(1));
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // The head and half the body before the age is reached, the rest after it.
    stream
        .write_all(request_head(EVENT.len()).as_bytes())
        .unwrap();
    stream.write_all(&EVENT[..5]).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    stream.write_all(&EVENT[5..]).unwrap();
    let head = read_head(&mut stream, "the request spanning the age");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    wait_closed(
        &mut stream,
        Instant::now(),
        Duration::from_secs(10),
        "retired connection",
    );
}

/// A self-signed certificate for 127.0.0.1 and its key, in `dir`.
fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (crt, key) = (dir.join("crt.pem"), dir.join("key.pem"));
    let output = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (crt, key)
}

// Over TLS (HTTP/2 chosen by ALPN): curl 7.88 does not reuse a cleartext prior-knowledge
// HTTP/2 connection for a second request at all, whatever the server.
#[test]
fn an_http2_connection_gets_a_goaway_at_its_max_age_and_the_client_reconnects() {
    let (port, api_port) = (free_port(), free_port());
    let dir = crate::support::temp_dir("max-age-h2");
    let (crt, key) = certificate(&dir);
    let options = format!(
        "{}\ntls = {{ crt_file = \"{}\", key_file = \"{}\" }}",
        max_age(1),
        crt.display(),
        key.display()
    );
    let _p = start(port, api_port, "", &options);
    let url = format!("https://127.0.0.1:{port}/");
    // Nine POSTs at three a second over one HTTP/2 connection while it lasts; curl says for
    // each whether it had to connect anew.
    let output = std::process::Command::new("curl")
        .args([
            "-sS",
            "--http2",
            "--rate",
            "3/s",
            "-o",
            "/dev/null",
            "--cacert",
        ])
        .arg(&crt)
        .args([
            "-H",
            "content-type: application/json",
            "--data-binary",
            r#"{"event":"x"}"#,
        ])
        .args(["-w", "%{num_connects} %{http_code} %{http_version}\n"])
        .args(std::iter::repeat_n(url.as_str(), 9))
        .output()
        .expect("curl runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 9, "{stdout}");
    assert!(
        lines.iter().all(|l| l.ends_with(" 200 2")),
        "every POST answered over HTTP/2: {stdout}"
    );
    let connects = lines.iter().filter(|l| l.starts_with("1 ")).count();
    assert!(
        (2..=5).contains(&connects),
        "over 3 s with max_connection_age_secs = 1, curl connects a few times: {stdout}"
    );
}

#[test]
fn keepalive_settings_are_checked_by_validate_for_both_http_sources() {
    let (port, api_port) = (free_port(), free_port());
    for (kind, extra) in [("http_server", ""), ("segment", "write_keys = [\"k\"]\n")] {
        let path = temp_file(
            "keepalive.toml",
            &format!(
                "[api]\naddress = \"127.0.0.1:{api_port}\"\n\n[sources.web]\ntype = \"{kind}\"\naddress = \"127.0.0.1:{port}\"\n{extra}keepalive.max_connection_age_jitter_factor = 1.5\n\n[sinks.hole]\ntype = \"blackhole\"\ninputs = [\"web\"]\n"
            ),
        );
        let out = crate::support::fbpixel(
            &["validate", "--no-environment", path.to_str().unwrap()],
            b"",
            &[],
        );
        let stderr = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{kind}: {stderr}");
        assert!(
            stderr.contains("keepalive.max_connection_age_jitter_factor")
                && stderr.contains("from 0 to 1"),
            "{kind}: {stderr}"
        );
    }
}

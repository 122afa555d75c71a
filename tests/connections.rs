//! Connections that never send a request, as an adversary opens them: the real binary must
//! close them after `header_timeout_secs`, keep at most `max_connections` open per listener
//! (saying so in its log), keep serving real clients and `/health` on the API's own port,
//! and survive a low open-file limit.

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

//! A load generator for the HTTP sources: POSTs Segment messages as JSON
//! arrays over keep-alive HTTP/1.1 connections and reports events per second.
//!
//! ```text
//! cargo run --release --example http_load -- --address 127.0.0.1:8081 \
//!     --events 1000000 --batch 500 --connections 4 [--path /] [--header 'authorization: …']
//!     [--segment WRITE_KEY]      # Segment's batch API: {"batch": [...]} to /v1/batch
//! ```
//!
//! Messages are the ones of `examples/segment-events.ndjson` (or `--input FILE`) that the sink
//! sends (skipped and rejected samples are left out),
//! each copy with a distinct `messageId` and its `timestamp` set to now. With acknowledgements enabled on the
//! receiving side, a 200 means every event of the request was delivered, so
//! the rate printed is end to end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use fbpixel::sinks::facebook_pixel::{FacebookPixelConfig, Outcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Args {
    address: String,
    path: String,
    events: u64,
    batch: usize,
    connections: usize,
    input: String,
    headers: Vec<String>,
    segment_write_key: Option<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        address: "127.0.0.1:8081".into(),
        path: "/".into(),
        events: 1_000_000,
        batch: 500,
        connections: 4,
        input: "examples/segment-events.ndjson".into(),
        headers: Vec::new(),
        segment_write_key: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--address" => args.address = value(),
            "--path" => args.path = value(),
            "--events" => args.events = value().parse().expect("--events N"),
            "--batch" => args.batch = value().parse().expect("--batch N"),
            "--connections" => args.connections = value().parse().expect("--connections N"),
            "--input" => args.input = value(),
            "--header" => args.headers.push(value()),
            "--segment" => args.segment_write_key = Some(value()),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// Every `"timestamp": "…"` set to now, so the messages are inside Meta's 7-day window.
fn refresh_timestamps(text: &str) -> String {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let key = "\"timestamp\":";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(key) {
        let after = &rest[i + key.len()..];
        let Some(open) = after.find('"') else { break };
        let Some(close) = after[open + 1..].find('"') else {
            break;
        };
        out.push_str(&rest[..i + key.len() + open + 1]);
        out.push_str(&now);
        rest = &after[open + 1 + close..];
    }
    out.push_str(rest);
    out
}

/// Request bodies: JSON arrays of `batch` distinct messages.
fn bodies(input: &str, batch: usize, count: usize, segment: bool) -> Vec<Vec<u8>> {
    let text = refresh_timestamps(&std::fs::read_to_string(input).expect("read the input file"));
    // Only messages the sink sends: the sample file also shows skips and rejections.
    let settings: FacebookPixelConfig =
        toml::from_str("pixel_id = \"1\"\npage_view = true").expect("settings");
    let mapper = settings.mapper().expect("a mapper");
    let now = chrono::Utc::now();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            let mut bytes = l.as_bytes().to_vec();
            let mut out = Vec::new();
            matches!(
                mapper.map_json(&mut bytes, now, &mut out).0,
                Outcome::Mapped(())
            )
        })
        .collect();
    assert!(
        !lines.is_empty(),
        "no message of {input} maps to a server event"
    );
    let mut n = 0usize;
    (0..count)
        .map(|_| {
            let mut body = if segment {
                b"{\"batch\":[".to_vec()
            } else {
                b"[".to_vec()
            };
            for i in 0..batch {
                if i > 0 {
                    body.push(b',');
                }
                let line = lines[n % lines.len()];
                // `r000000` is the round: rewritten on each reuse of the body (see `unique`).
                body.extend_from_slice(
                    line.replace("\"ajs-msg-", &format!("\"load{n}r000000-"))
                        .as_bytes(),
                );
                n += 1;
            }
            body.extend_from_slice(if segment { b"]}" } else { b"]" });
            body
        })
        .collect()
}

/// `template` with its round marker set to `round`, so that every request's messageIds are
/// distinct (a NATS stream deduplicates repeated ids, as Meta does); round 0 is the template.
fn unique<'b>(template: &'b [u8], round: usize, scratch: &'b mut Vec<u8>) -> &'b [u8] {
    if round == 0 {
        return template;
    }
    scratch.clear();
    scratch.extend_from_slice(template);
    let digits = format!("{:06}", round % 1_000_000);
    let mut at = 0;
    while let Some(i) = memchr::memmem::find(&scratch[at..], b"r000000-") {
        let start = at + i + 1;
        scratch[start..start + 6].copy_from_slice(digits.as_bytes());
        at = start + 6;
    }
    scratch
}

async fn post(conn: &mut TcpStream, head: &[u8], body: &[u8], buf: &mut Vec<u8>) -> u16 {
    let length = format!("Content-Length: {}\r\n\r\n", body.len());
    conn.write_all(head).await.expect("write");
    conn.write_all(length.as_bytes()).await.expect("write");
    conn.write_all(body).await.expect("write");
    buf.clear();
    // Read the head, then as many body bytes as Content-Length says.
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head_text = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let status: u16 = head_text[9..12].parse().expect("a status code");
    let length: usize = head_text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0));
    while buf.len() < end + length {
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
    status
}

#[tokio::main]
async fn main() {
    let mut args = parse_args();
    let segment = args.segment_write_key.is_some();
    if let Some(key) = &args.segment_write_key {
        // Segment's batch API: {"batch": [...]} to /v1/batch, the write key as the basic user.
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{key}:"));
        args.headers.push(format!("Authorization: Basic {token}"));
        if args.path == "/" {
            args.path = "/v1/batch".into();
        }
    }
    let bodies = Arc::new(bodies(&args.input, args.batch, 64, segment));
    let requests = args.events.div_ceil(args.batch as u64);
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n",
        args.path, args.address
    );
    for h in &args.headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    let head = Arc::new(head.into_bytes());
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let (bodies, head, next, failed) =
            (bodies.clone(), head.clone(), next.clone(), failed.clone());
        let address = args.address.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = TcpStream::connect(&address).await.expect("connect");
            conn.set_nodelay(true).unwrap();
            let (mut buf, mut scratch) = (Vec::new(), Vec::new());
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let template = &bodies[i as usize % bodies.len()];
                let round = i as usize / bodies.len();
                let body = unique(template, round, &mut scratch);
                let status = post(&mut conn, &head, body, &mut buf).await;
                if status != 200 {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("a connection task");
    }
    let secs = started.elapsed().as_secs_f64();
    let events = requests * args.batch as u64;
    let failed = failed.load(Ordering::Relaxed);
    println!(
        "{events} events in {requests} requests of {} over {} connections: {secs:.2} s, {:.0} events/s, {failed} requests not answered 200",
        args.batch,
        args.connections,
        events as f64 / secs
    );
    if failed > 0 {
        std::process::exit(1);
    }
}

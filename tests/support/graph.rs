//! The one stand-in for Meta's Graph API, shared by the integration tests (`support::graph`),
//! the load scripts' `examples/graph_standin.rs` and the sink's unit tests
//! (`src/sinks/facebook_pixel/tests/mod.rs`), the last two including this file with
//! `#[path = …] mod graph;`.
//!
//! Plain threads, one per connection (none per request), HTTP/1.1 with keep-alive: the sink talks
//! HTTP/1.1 to an `http://` endpoint. Every request is answered by `answer(n, request)` (`n`
//! counts requests from 0), after an optional delay; requests to a path ending in `/events` are
//! counted with their server events and the times of the first and the latest one. Requests are
//! also recorded, with the status answered, unless recording is turned off (the load stand-in
//! must not grow with the load). It runs on its own threads, so an async test awaiting the sink
//! never blocks it; it stops accepting connections when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the stand-in received.
#[derive(Clone, Debug)]
pub struct Request {
    /// `GET`, `POST`.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Header lines as `name: value`, names lowercased.
    pub headers: Vec<String>,
    /// The body as text.
    pub body: String,
    /// How many server events (`"event_id":` keys) the body holds, for a request to a path
    /// ending in `/events`; 0 for any other.
    pub events: usize,
}

impl Request {
    /// The value of the first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|h| {
            let (n, v) = h.split_once(": ")?;
            n.eq_ignore_ascii_case(name).then_some(v)
        })
    }

    /// Whether this is a request to a path ending in `/events` (the query aside).
    pub fn is_events(&self) -> bool {
        let path = self.target.split('?').next().unwrap_or_default();
        path.ends_with("/events")
    }

    /// The body parsed as JSON (`Null` when empty or not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_default()
    }

    /// The `event_id`s of the request's `data` (`<none>` for an event without one).
    pub fn event_ids(&self) -> Vec<String> {
        self.json()["data"]
            .as_array()
            .map(|data| {
                data.iter()
                    .map(|e| e["event_id"].as_str().unwrap_or("<none>").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A recorded request and the status it was answered with. Dereferences to the [`Request`].
#[derive(Clone, Debug)]
pub struct Recorded {
    /// What was received.
    pub request: Request,
    /// The status answered.
    pub status: u16,
}

impl Deref for Recorded {
    type Target = Request;

    fn deref(&self) -> &Request {
        &self.request
    }
}

/// How the stand-in answers one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A status and a JSON body, as the Graph API answers.
    Json(u16, String),
    /// A status, a content type and a body, whatever they are (a proxy's HTML page, garbage).
    Raw(u16, &'static str, Vec<u8>),
    /// A head announcing `declared` bytes, then only `body`, then the connection closes.
    Truncated(u16, usize, Vec<u8>),
    /// A chunked 200 that never ends: 64 KiB chunks until the client goes away.
    Endless,
}

impl Reply {
    /// The status it answers with.
    pub fn status(&self) -> u16 {
        match self {
            Reply::Json(status, _) | Reply::Raw(status, _, _) | Reply::Truncated(status, _, _) => {
                *status
            }
            Reply::Endless => 200,
        }
    }
}

impl From<(u16, String)> for Reply {
    fn from((status, body): (u16, String)) -> Self {
        Reply::Json(status, body)
    }
}

impl From<(u16, serde_json::Value)> for Reply {
    fn from((status, body): (u16, serde_json::Value)) -> Self {
        Reply::Json(status, body.to_string())
    }
}

/// What the stand-in counted of the requests to `…/events`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    /// Server events in them.
    pub events: u64,
    /// How many there were.
    pub requests: u64,
    /// When the first arrived.
    pub first: Option<Instant>,
    /// When the latest arrived.
    pub latest: Option<Instant>,
}

impl Counts {
    /// The time from the first to the latest, zero before two.
    pub fn span(&self) -> Duration {
        match (self.first, self.latest) {
            (Some(first), Some(latest)) => latest - first,
            _ => Duration::ZERO,
        }
    }
}

type Answer = dyn Fn(usize, &Request) -> Reply + Send + Sync;

/// State shared by the listener's and the connections' threads.
struct Shared {
    answer: Box<Answer>,
    delay: Duration,
    /// Requests answered so far, for `n`.
    seen: AtomicUsize,
    /// Every request, when recording.
    recorded: Option<Mutex<Vec<Recorded>>>,
    counts: Mutex<Counts>,
    stopped: AtomicBool,
}

/// How to start a [`GraphStandin`]: where it listens, how long it waits before answering,
/// whether it records requests.
pub struct Builder {
    address: String,
    delay: Duration,
    record: bool,
}

impl Builder {
    /// Listen on `address` (default `127.0.0.1:0`, a free port).
    pub fn address(mut self, address: &str) -> Self {
        self.address = address.to_owned();
        self
    }

    /// Wait this long before each answer (default none).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Whether to keep every request for [`GraphStandin::requests`] (default yes).
    pub fn record(mut self, record: bool) -> Self {
        self.record = record;
        self
    }

    /// Binds (panicking when it cannot) and serves from background threads.
    pub fn start<R: Into<Reply>>(
        self,
        answer: impl Fn(usize, &Request) -> R + Send + Sync + 'static,
    ) -> GraphStandin {
        let listener = TcpListener::bind(&self.address)
            .unwrap_or_else(|e| panic!("the Graph API stand-in cannot bind {}: {e}", self.address));
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            answer: Box::new(move |n, r| answer(n, r).into()),
            delay: self.delay,
            seen: AtomicUsize::new(0),
            recorded: self.record.then(|| Mutex::new(Vec::new())),
            counts: Mutex::new(Counts::default()),
            stopped: AtomicBool::new(false),
        });
        let state = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if state.stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let state = state.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        GraphStandin {
            endpoint: format!("http://{addr}"),
            port: addr.port(),
            addr,
            shared,
        }
    }
}

/// A stand-in for the Graph API; stops accepting connections when dropped.
pub struct GraphStandin {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The port it listens on.
    pub port: u16,
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl GraphStandin {
    /// A recording stand-in on a free port of 127.0.0.1 answering with `answer(n, request)`:
    /// a [`Reply`], or `(status, body)` with the body a JSON `String` or `serde_json::Value`.
    pub fn start<R: Into<Reply>>(
        answer: impl Fn(usize, &Request) -> R + Send + Sync + 'static,
    ) -> Self {
        Self::builder().start(answer)
    }

    /// Other settings: the address, a delay, no recording.
    pub fn builder() -> Builder {
        Builder {
            address: "127.0.0.1:0".to_owned(),
            delay: Duration::ZERO,
            record: true,
        }
    }

    /// Every request so far, in the order they were answered (none when not recording).
    pub fn requests(&self) -> Vec<Recorded> {
        match &self.shared.recorded {
            Some(recorded) => recorded.lock().unwrap().clone(),
            None => Vec::new(),
        }
    }

    /// What it counted of the requests to `…/events` so far.
    pub fn counts(&self) -> Counts {
        *self.shared.counts.lock().unwrap()
    }
}

impl Drop for GraphStandin {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wakes the listener's thread, which then sees `stopped` and lets the port go.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Serves one connection until the client closes it, asks to, or the stand-in stops. Reads
/// through one buffer, each body straight into a vector of its length.
fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    let mut writer = stream;
    let mut line = String::new();
    loop {
        // The request line and the headers.
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let mut request_line = line.trim_end().split(' ');
        let method = request_line.next().unwrap_or_default().to_owned();
        let target = request_line.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            headers.push(match header.split_once(':') {
                Some((n, v)) => format!("{}: {}", n.to_ascii_lowercase(), v.trim()),
                None => header.to_owned(),
            });
        }
        let mut request = Request {
            method,
            target,
            headers,
            body: String::new(),
            events: 0,
        };
        let length: usize = request
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let close = request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        request.body = String::from_utf8(body)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());

        if request.is_events() {
            let events =
                memchr::memmem::find_iter(request.body.as_bytes(), b"\"event_id\":").count();
            request.events = events;
            let now = Instant::now();
            let mut counts = shared.counts.lock().unwrap();
            counts.events += events as u64;
            counts.requests += 1;
            counts.first.get_or_insert(now);
            counts.latest = Some(now);
        }
        let reply = match &shared.recorded {
            // Numbered and answered under the lock, so `n` is the request's place in the record.
            Some(recorded) => {
                let mut all = recorded.lock().unwrap();
                let n = shared.seen.fetch_add(1, Ordering::SeqCst);
                let reply = (shared.answer)(n, &request);
                all.push(Recorded {
                    request,
                    status: reply.status(),
                });
                reply
            }
            None => (shared.answer)(shared.seen.fetch_add(1, Ordering::SeqCst), &request),
        };
        if !shared.delay.is_zero() {
            std::thread::sleep(shared.delay);
        }
        if !write_reply(&mut writer, reply) || close {
            return;
        }
    }
}

/// Writes `reply`; false when the connection is to be closed (or the write failed).
fn write_reply(stream: &mut TcpStream, reply: Reply) -> bool {
    let head = |status: u16, content_type: &str, length: usize| {
        format!(
            "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {length}\r\n\r\n"
        )
        .into_bytes()
    };
    let (response, keep) = match reply {
        Reply::Json(status, body) => {
            let mut r = head(status, "application/json", body.len());
            r.extend_from_slice(body.as_bytes());
            (r, true)
        }
        Reply::Raw(status, content_type, body) => {
            let mut r = head(status, content_type, body.len());
            r.extend_from_slice(&body);
            (r, true)
        }
        Reply::Truncated(status, declared, body) => {
            let mut r = head(status, "application/json", declared);
            r.extend_from_slice(&body);
            (r, false)
        }
        Reply::Endless => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
            if stream.write_all(head.as_bytes()).is_err() {
                return false;
            }
            let mut chunk = format!("{:x}\r\n", 65536).into_bytes();
            chunk.extend(std::iter::repeat_n(b' ', 65536));
            chunk.extend_from_slice(b"\r\n");
            while stream.write_all(&chunk).is_ok() {}
            return false;
        }
    };
    stream.write_all(&response).is_ok() && keep
}

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
//!
//! [`GraphStandin::strict`] answers the way Meta does once it has read the events: each event of
//! a POSTed `data` array is held to Meta's rules for app events, business messaging and value
//! updates ([`check_event`]), and a request breaking one is refused whole with Meta's "Invalid
//! parameter" error, so a test catches a mapping Meta would refuse without asking Meta.

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

    /// Whether this is a request to Meta's Dataset Quality API (`…/dataset_quality`).
    pub fn is_dataset_quality(&self) -> bool {
        let path = self.target.split('?').next().unwrap_or_default();
        path.ends_with("/dataset_quality")
    }

    /// The first query parameter with this name, decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        let query = self.target.split_once('?')?.1;
        form_urlencoded::parse(query.as_bytes())
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.into_owned())
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
    /// A status, a JSON body and more headers (Meta's usage headers).
    Headed(u16, String, Vec<(&'static str, String)>),
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
            Reply::Json(status, _)
            | Reply::Headed(status, _, _)
            | Reply::Raw(status, _, _)
            | Reply::Truncated(status, _, _) => *status,
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

    /// Like [`Builder::start`], answering with [`strict_reply`].
    pub fn start_strict(self) -> GraphStandin {
        self.start(|_, request| strict_reply(request))
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

    /// A recording stand-in on a free port of 127.0.0.1 answering with [`strict_reply`]: Meta's
    /// rules checked on every event, Meta's answers.
    pub fn strict() -> Self {
        Self::builder().start_strict()
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
        Reply::Headed(status, body, headers) => {
            let mut r = head(status, "application/json", body.len());
            // The extra headers go before the blank line that ends the head.
            r.truncate(r.len() - 2);
            for (name, value) in headers {
                r.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
            r.extend_from_slice(b"\r\n");
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

// ---------------------------------------------------------------------------
// Rate-limited mode: Meta's throttling, with its usage headers.
// ---------------------------------------------------------------------------

/// What [`RateLimit`] logged of one request to `…/events`.
#[derive(Clone, Copy, Debug)]
pub struct Throttling {
    /// When it arrived.
    pub at: Instant,
    /// Its server events.
    pub events: u64,
    /// Whether it was refused with Meta's throttling error.
    pub throttled: bool,
}

/// A rate limit of `per_second` events a second per pixel (the path), over a sliding second.
/// A request within it is accepted; one beyond it is refused whole, as Meta refuses a call past
/// its limit: HTTP 400 with error code 17, subcode 2446079, "User request limit reached" (the
/// Marketing API's "Rate Limiting" page). Every answer carries `X-Business-Use-Case-Usage` in
/// the shape of Meta's "Rate Limits" page, its figures the share of the second's allowance used
/// (the `type` is the stand-in's own; Meta's answers to the Conversions API name theirs).
/// Refused requests do not count against the limit.
pub struct RateLimit {
    per_second: u64,
    windows: Mutex<std::collections::HashMap<String, std::collections::VecDeque<(Instant, u64)>>>,
    log: Mutex<Vec<Throttling>>,
}

impl RateLimit {
    /// A limit of `per_second` events a second per pixel.
    pub fn new(per_second: u64) -> Arc<Self> {
        Arc::new(RateLimit {
            per_second,
            windows: Mutex::default(),
            log: Mutex::default(),
        })
    }

    /// The answer to `request` under the limit.
    pub fn reply(&self, request: &Request) -> Reply {
        let now = Instant::now();
        let events = request.events as u64;
        let path = request.target.split('?').next().unwrap_or_default();
        let pixel = path.rsplit('/').nth(1).unwrap_or_default().to_owned();
        let (throttled, used) = {
            let mut windows = self.windows.lock().unwrap();
            let window = windows.entry(path.to_owned()).or_default();
            while window
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) >= Duration::from_secs(1))
            {
                window.pop_front();
            }
            let used: u64 = window.iter().map(|(_, n)| n).sum();
            let throttled = used + events > self.per_second;
            if !throttled {
                window.push_back((now, events));
            }
            (throttled, used + if throttled { 0 } else { events })
        };
        self.log.lock().unwrap().push(Throttling {
            at: now,
            events,
            throttled,
        });
        let percent = if throttled {
            100
        } else {
            used * 100 / self.per_second
        };
        let usage = format!(
            r#"{{"{pixel}":[{{"type":"standin","call_count":{percent},"total_cputime":{},"total_time":{},"estimated_time_to_regain_access":0}}]}}"#,
            percent / 2,
            percent / 2
        );
        let headers = vec![("x-business-use-case-usage", usage)];
        if throttled {
            let body = r#"{"error":{"message":"(#17) User request limit reached","type":"OAuthException","code":17,"error_subcode":2446079,"fbtrace_id":"StandinThrottled"}}"#;
            Reply::Headed(400, body.to_owned(), headers)
        } else {
            Reply::Headed(
                200,
                format!(r#"{{"events_received":{events},"fbtrace_id":"StandinLimited"}}"#),
                headers,
            )
        }
    }

    /// Every request to `…/events` so far, in arrival order.
    pub fn log(&self) -> Vec<Throttling> {
        self.log.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------
// Strict mode: Meta's rules for app events, business messaging and value updates.
// ---------------------------------------------------------------------------

/// The `error_subcode` of a strict refusal. Meta documents no subcode for these rules; 2804019
/// is the one other Conversions API clients handle as a server event's bad parameter, titled
/// "Server Side Api Parameter Error", which no answer of Meta's at hand confirms. The sink treats
/// every code-100 subcode but 33 alike, so the choice changes no outcome.
pub const INVALID_PARAMETER_SUBCODE: i64 = 2804019;

/// The `fbtrace_id` of the strict stand-in's answers.
pub const STRICT_TRACE: &str = "StandinStrict";

/// How one event breaks one of Meta's rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// The parameter, within the event, as Meta's messages name it: `['app_data']['extinfo'][4]`.
    pub parameter: String,
    /// What is wrong with it.
    pub problem: String,
}

impl Invalid {
    fn new(parameter: &[&dyn std::fmt::Display], problem: impl Into<String>) -> Self {
        Invalid {
            parameter: parameter.iter().map(|p| p.to_string()).collect(),
            problem: problem.into(),
        }
    }
}

/// A path segment in Meta's notation: `['key']` for a member, `[n]` for an element.
struct Key<'a>(&'a str);

impl std::fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "['{}']", self.0)
    }
}

/// An element's path segment, `[n]`.
struct Index(usize);

impl std::fmt::Display for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}]", self.0)
    }
}

/// The `extinfo` versions Meta takes, by platform.
const EXTINFO_VERSIONS: [&str; 2] = ["i2", "a2"];

/// How many slots `extinfo` has, every one required (an empty string when unknown).
const EXTINFO_SLOTS: usize = 16;

/// The messaging channels and the unhashed `user_data` ids each one needs.
const MESSAGING_CHANNELS: [(&str, &[&str]); 3] = [
    ("whatsapp", &["ctwa_clid"]),
    ("messenger", &["page_id", "page_scoped_user_id"]),
    ("instagram", &["ig_account_id", "ig_sid"]),
];

/// Whether `event` keeps Meta's rules for app events (`action_source = "app"`), business
/// messaging (`action_source = "business_messaging"`) and value updates
/// (`event_name = "AppendValue"`); other events pass, the stand-in checks nothing else of them.
pub fn check_event(event: &serde_json::Value) -> Result<(), Invalid> {
    if !event.is_object() {
        return Err(Invalid::new(&[], "must be an object"));
    }
    match event["action_source"].as_str() {
        Some("app") => check_app_data(&event["app_data"])?,
        Some("business_messaging") => check_messaging(event)?,
        _ => {}
    }
    if event["event_name"] == "AppendValue" {
        check_append_value(event)?;
    }
    Ok(())
}

fn check_app_data(app_data: &serde_json::Value) -> Result<(), Invalid> {
    let at = Key("app_data");
    if !app_data.is_object() {
        return Err(Invalid::new(&[&at], "is required for app events"));
    }
    for flag in [
        "advertiser_tracking_enabled",
        "application_tracking_enabled",
    ] {
        // Meta types these as booleans and its own examples send 1 and 0: the Graph API takes
        // either, and nothing else.
        let value = &app_data[flag];
        if !(value.is_boolean() || value == 0 || value == 1) {
            return Err(Invalid::new(
                &[&at, &Key(flag)],
                format!("is required for app events and must be a boolean, got {value}"),
            ));
        }
    }
    let extinfo_at = Key("extinfo");
    let Some(extinfo) = app_data["extinfo"].as_array() else {
        return Err(Invalid::new(
            &[&at, &extinfo_at],
            format!("is required for app events and must be an array of {EXTINFO_SLOTS} strings"),
        ));
    };
    if extinfo.len() != EXTINFO_SLOTS {
        return Err(Invalid::new(
            &[&at, &extinfo_at],
            format!(
                "must have exactly {EXTINFO_SLOTS} values, empty strings for those unknown; got {}",
                extinfo.len()
            ),
        ));
    }
    for (i, slot) in extinfo.iter().enumerate() {
        if !slot.is_string() {
            return Err(Invalid::new(
                &[&at, &extinfo_at, &Index(i)],
                format!("must be a string, got {slot}"),
            ));
        }
    }
    if !EXTINFO_VERSIONS.contains(&extinfo[0].as_str().unwrap_or_default()) {
        return Err(Invalid::new(
            &[&at, &extinfo_at, &Index(0)],
            format!(
                "is the extinfo version: \"i2\" for iOS, \"a2\" for Android; got {}",
                extinfo[0]
            ),
        ));
    }
    if extinfo[4].as_str().is_none_or(str::is_empty) {
        return Err(Invalid::new(
            &[&at, &extinfo_at, &Index(4)],
            "is the OS version, required",
        ));
    }
    Ok(())
}

fn check_messaging(event: &serde_json::Value) -> Result<(), Invalid> {
    let channel = &event["messaging_channel"];
    let Some((_, ids)) = MESSAGING_CHANNELS
        .iter()
        .find(|(name, _)| channel.as_str() == Some(name))
    else {
        let names: Vec<&str> = MESSAGING_CHANNELS.iter().map(|(name, _)| *name).collect();
        return Err(Invalid::new(
            &[&Key("messaging_channel")],
            format!(
                "is required for business messaging events and must be one of {}; got {channel}",
                names.join(", ")
            ),
        ));
    };
    let user_data = &event["user_data"];
    for id in *ids {
        let value = &user_data[*id];
        let Some(text) = value.as_str().filter(|t| !t.is_empty()) else {
            return Err(Invalid::new(
                &[&Key("user_data"), &Key(id)],
                format!("is required for {channel} events, as a non-empty string; got {value}"),
            ));
        };
        // Meta matches these ids as it issued them; a SHA-256 of one matches nothing.
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Invalid::new(
                &[&Key("user_data"), &Key(id)],
                "must not be hashed",
            ));
        }
    }
    Ok(())
}

fn check_append_value(event: &serde_json::Value) -> Result<(), Invalid> {
    let original_at = Key("original_event_data");
    let original = &event["original_event_data"];
    if !original.is_object() {
        return Err(Invalid::new(
            &[&original_at],
            "is required for AppendValue events and must be an object",
        ));
    }
    let non_empty = |v: &serde_json::Value| v.as_str().is_some_and(|t| !t.is_empty());
    if !non_empty(&original["event_name"]) {
        return Err(Invalid::new(
            &[&original_at, &Key("event_name")],
            format!("is required, a string; got {}", original["event_name"]),
        ));
    }
    if !non_empty(&original["order_id"]) && !non_empty(&original["event_id"]) {
        return Err(Invalid::new(
            &[&original_at],
            "must carry order_id or event_id, naming the event whose value this adds to",
        ));
    }
    let custom_at = Key("custom_data");
    let custom = &event["custom_data"];
    let ltv = &custom["predicted_ltv"];
    if !ltv.as_f64().is_some_and(|v| v > 0.0) {
        return Err(Invalid::new(
            &[&custom_at, &Key("predicted_ltv")],
            format!("is required for AppendValue events and must be a positive number; got {ltv}"),
        ));
    }
    let currency = &custom["currency"];
    if !currency
        .as_str()
        .is_some_and(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()))
    {
        return Err(Invalid::new(
            &[&custom_at, &Key("currency")],
            format!("is required for AppendValue events, an ISO 4217 code; got {currency}"),
        ));
    }
    Ok(())
}

/// Checks every event of a request body's `data` array: how many there are, or the first that
/// breaks a rule, with its index in `data`. A body with no `data` array is refused with no index:
/// what is wrong is then `data` itself.
pub fn check_body(body: &serde_json::Value) -> Result<usize, (Option<usize>, Invalid)> {
    let Some(data) = body["data"].as_array() else {
        return Err((
            None,
            Invalid::new(&[], "is required and must be an array of events"),
        ));
    };
    for (i, event) in data.iter().enumerate() {
        check_event(event).map_err(|invalid| (Some(i), invalid))?;
    }
    Ok(data.len())
}

/// The error Meta answers a request with an invalid parameter in: its envelope (`message`,
/// `type`, `code`, `error_subcode`, `is_transient`, `error_user_title`, `error_user_msg`,
/// `fbtrace_id`), with the parameter named in `error_user_msg` as Meta names it,
/// `$['data'][3]['app_data']['extinfo']`.
pub fn invalid_parameter(parameter: &str, problem: &str) -> serde_json::Value {
    serde_json::json!({
        "error": {
            "message": "Invalid parameter",
            "type": "OAuthException",
            "code": 100,
            "error_subcode": INVALID_PARAMETER_SUBCODE,
            "is_transient": false,
            "error_user_title": "Server Side Api Parameter Error",
            "error_user_msg": format!("The parameter {parameter} {problem}."),
            "fbtrace_id": STRICT_TRACE,
        }
    })
}

/// How the strict stand-in answers a request: for one to `…/events`, a 400 with
/// [`invalid_parameter`] when the body or one of its events breaks a rule, else Meta's 200
/// (`events_received`, `messages`, `fbtrace_id`); for one to `…/dataset_quality`, a
/// [`dataset_quality`] answer for Purchase; for any other (the sink's health check, a GET of the
/// pixel's `id`), the pixel as Meta shows it, `{"id": …}`.
pub fn strict_reply(request: &Request) -> Reply {
    if request.is_dataset_quality() {
        return (200, dataset_quality(&[QualityEvent::new("Purchase")])).into();
    }
    if !request.is_events() {
        let path = request.target.split('?').next().unwrap_or_default();
        let id = path
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default();
        return (200, serde_json::json!({ "id": id })).into();
    }
    match check_body(&request.json()) {
        Ok(n) => (
            200,
            serde_json::json!({ "events_received": n, "messages": [], "fbtrace_id": STRICT_TRACE }),
        )
            .into(),
        Err((index, invalid)) => {
            let parameter = match index {
                Some(i) => format!("$['data'][{i}]{}", invalid.parameter),
                None => "$['data']".to_owned(),
            };
            (400, invalid_parameter(&parameter, &invalid.problem)).into()
        }
    }
}

// ---------------------------------------------------------------------------
// Meta's Dataset Quality API.
// ---------------------------------------------------------------------------

/// What the stand-in's Dataset Quality API says of one event name; [`QualityEvent::new`] gives
/// realistic values, which a test changes as it needs.
#[derive(Clone, Debug)]
pub struct QualityEvent {
    /// `event_name`.
    pub event_name: String,
    /// `event_match_quality.composite_score`.
    pub composite_score: f64,
    /// `match_key_feedback`: Meta's identifier and its coverage, in percent.
    pub match_keys: Vec<(String, f64)>,
    /// `diagnostics`: name and percentage of affected events.
    pub diagnostics: Vec<(String, f64)>,
    /// `event_coverage.percentage` (goal 75).
    pub event_coverage: f64,
    /// `dedupe_key_feedback` for `event_id`: server events carrying it, in percent.
    pub server_event_id: f64,
    /// `data_freshness.upload_frequency`.
    pub upload_frequency: String,
}

impl QualityEvent {
    /// An event as Meta's own examples describe one.
    pub fn new(event_name: &str) -> Self {
        Self {
            event_name: event_name.to_owned(),
            composite_score: 6.2,
            match_keys: vec![
                ("email".into(), 100.0),
                ("ip_address".into(), 99.9),
                ("user_agent".into(), 100.0),
                ("external_id".into(), 100.0),
            ],
            diagnostics: vec![("Server sending mismatched IP addresses".into(), 61.5)],
            event_coverage: 34.1,
            server_event_id: 100.0,
            upload_frequency: "hourly".into(),
        }
    }
}

/// The answer of `GET /{version}/dataset_quality` in the shape of Meta's documented examples:
/// `{"web": [...]}`, one entry per event with every metric the sink asks for.
pub fn dataset_quality(events: &[QualityEvent]) -> serde_json::Value {
    let pct = |p: f64| serde_json::json!({ "percentage": p });
    let web: Vec<serde_json::Value> = events
        .iter()
        .map(|e| {
            let total = 31830_u64;
            serde_json::json!({
                "event_name": e.event_name,
                "event_match_quality": {
                    "composite_score": e.composite_score,
                    "match_key_feedback": e.match_keys.iter().map(|(identifier, p)| {
                        serde_json::json!({ "identifier": identifier, "coverage": pct(*p) })
                    }).collect::<Vec<_>>(),
                    "diagnostics": e.diagnostics.iter().map(|(name, p)| serde_json::json!({
                        "name": name,
                        "description": "Your server is sending client IP addresses that do not match those from Meta Pixel.",
                        "solution": "In your server payload, send the client_ip_address retrieved from customer interactions.",
                        "percentage": p,
                        "affected_event_count": (total as f64 * p / 100.0).round() as u64,
                        "total_event_count": total,
                    })).collect::<Vec<_>>(),
                },
                "event_coverage": {
                    "percentage": e.event_coverage,
                    "goal_percentage": 75,
                    "description": "The percentage of events received from your Conversions API compared to unique browser events from the Meta Pixel."
                },
                "dedupe_key_feedback": [{
                    "dedupe_key": "event_id",
                    "browser_events_with_dedupe_key": pct(100.0),
                    "server_events_with_dedupe_key": pct(e.server_event_id),
                    "overall_browser_coverage_from_dedupe_key": pct(14.8),
                }],
                "data_freshness": {
                    "upload_frequency": e.upload_frequency,
                    "description": "The average frequency with which instances of this event are received through the Conversions API."
                },
            })
        })
        .collect();
    serde_json::json!({ "web": web })
}

//! How many connections a listener keeps open, how long a quiet one may stay and how
//! long a busy one may live: `max_connections`, `header_timeout_secs` and
//! `keepalive.max_connection_age_secs`, shared by the HTTP sources and the `[api]`.
//!
//! A connection must deliver a complete request head within the header
//! timeout: counted from the moment it is accepted (so the TLS handshake and
//! hyper-util's HTTP version detection, which reads the first bytes before
//! hyper's own HTTP/1 timer starts, are inside it), and again from the end of
//! each answer on a kept-alive connection (HTTP/1.1 and HTTP/2 alike). One that
//! does not is closed, so silent or idle clients cannot pile up until the
//! process runs out of file descriptors.
//!
//! A connection that keeps busy is retired once it is older than its maximum age
//! (`keepalive.max_connection_age_secs`, ± `max_connection_age_jitter_factor`, as Vector's
//! HTTP server sources), so that clients behind a TCP load balancer spread again over
//! the instances, new ones included. Never mid-request: an HTTP/1 connection's first
//! answer past that age carries `Connection: close` (Vector's way: the client knows not to
//! reuse it, so no request of its races the close), and an HTTP/2 one gets a GOAWAY, after
//! which its streams under way finish.
//!
//! A connection whose answer is still being written (a stream, such as the `[api]`'s `/tap`)
//! is not quiet; once asked to finish (shutdown), a client that has stopped reading it is given
//! one header timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hyper::Version;
use serde::Deserialize;
use tokio::time::Instant;

use crate::component::ShutdownSignal;

/// Default `header_timeout_secs`.
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 30;
/// Default `keepalive.max_connection_age_secs`: Vector's (5 minutes).
pub const DEFAULT_MAX_CONNECTION_AGE_SECS: u64 = 300;
/// Default `keepalive.max_connection_age_jitter_factor`: Vector's (90 % to 110 % of the age).
pub const DEFAULT_MAX_CONNECTION_AGE_JITTER_FACTOR: f64 = 0.1;
/// Default `max_connections` of a source, unless the open-file limit is lower (see
/// [`default_max_connections`]).
pub const SOURCE_MAX_CONNECTIONS: usize = 1024;
/// Default `max_connections` of the `[api]`: a few scrapers and health checkers.
pub const API_MAX_CONNECTIONS: usize = 128;
/// The largest `max_connections` accepted (the listener waits for all of them with one
/// semaphore call, which counts in `u32`).
const MAX_MAX_CONNECTIONS: usize = 1_000_000;

/// `serde` default of `header_timeout_secs`.
pub fn default_header_timeout_secs() -> u64 {
    DEFAULT_HEADER_TIMEOUT_SECS
}

/// The `keepalive` table of an HTTP source, spelled as Vector's (`vector::http::KeepaliveConfig`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepaliveConfig {
    /// Seconds after which a connection is retired once its current answer is sent (see the
    /// module documentation). A large value such as 100000000 keeps connections for good.
    #[serde(default = "default_max_connection_age_secs")]
    pub max_connection_age_secs: u64,
    /// Each connection's age is this much shorter or longer at random (0.1: 90 % to 110 %),
    /// so that clients connected together do not all reconnect together.
    #[serde(default = "default_max_connection_age_jitter_factor")]
    pub max_connection_age_jitter_factor: f64,
}

impl Default for KeepaliveConfig {
    fn default() -> Self {
        Self {
            max_connection_age_secs: DEFAULT_MAX_CONNECTION_AGE_SECS,
            max_connection_age_jitter_factor: DEFAULT_MAX_CONNECTION_AGE_JITTER_FACTOR,
        }
    }
}

fn default_max_connection_age_secs() -> u64 {
    DEFAULT_MAX_CONNECTION_AGE_SECS
}

fn default_max_connection_age_jitter_factor() -> f64 {
    DEFAULT_MAX_CONNECTION_AGE_JITTER_FACTOR
}

impl KeepaliveConfig {
    /// Check the settings as written.
    pub fn check(&self) -> Result<(), String> {
        let factor = self.max_connection_age_jitter_factor;
        if !(0.0..=1.0).contains(&factor) {
            return Err(format!(
                "`keepalive.max_connection_age_jitter_factor` = {factor}: give a number from 0 to 1 (0.1, the default, spreads ages over 90 % to 110 %)"
            ));
        }
        Ok(())
    }
}

/// `fixed`, or a quarter of the process's open-file limit (`ulimit -n`) when that is
/// lower, so that one flooded listener stops accepting before the whole process (its other
/// listeners, disk buffers, outgoing connections) gets "Too many open files".
pub fn default_max_connections(fixed: usize) -> usize {
    match open_file_limit() {
        Some(limit) => fixed.min(limit / 4).max(8),
        None => fixed,
    }
}

/// The soft `RLIMIT_NOFILE`, when there is a finite one.
#[cfg(unix)]
fn open_file_limit() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, which lives for the call.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY)
        .then(|| usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX))
}

#[cfg(not(unix))]
fn open_file_limit() -> Option<usize> {
    None
}

/// Check the two settings as written (`None`: the default).
pub fn check_settings(
    max_connections: Option<usize>,
    header_timeout_secs: u64,
) -> Result<(), String> {
    if let Some(n) = max_connections
        && (n == 0 || n > MAX_MAX_CONNECTIONS)
    {
        return Err(format!(
            "`max_connections` = {n}: give a number from 1 to {MAX_MAX_CONNECTIONS} (leave it out for the default)"
        ));
    }
    if header_timeout_secs == 0 {
        return Err("`header_timeout_secs` must be at least 1 (the default is 30)".into());
    }
    Ok(())
}

/// The connection settings of one listener, with the names its log lines use.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// Who listens, for log lines: ``source `web` ``, `api`.
    pub owner: String,
    /// The config table the settings go in, for log lines: `sources.web`, `api`.
    pub table: String,
    /// Most connections open at once.
    pub max_connections: usize,
    /// See the module documentation.
    pub header_timeout: Duration,
    /// `keepalive.max_connection_age_secs`, before jitter.
    pub max_connection_age: Duration,
    /// `keepalive.max_connection_age_jitter_factor`.
    pub max_connection_age_jitter: f64,
}

impl ConnectionLimits {
    /// Checked settings; `max_connections` `None` takes [`default_max_connections`]`(fixed_default)`.
    pub fn new(
        owner: impl Into<String>,
        table: impl Into<String>,
        max_connections: Option<usize>,
        header_timeout_secs: u64,
        fixed_default: usize,
    ) -> Result<Self, String> {
        check_settings(max_connections, header_timeout_secs)?;
        Ok(Self {
            owner: owner.into(),
            table: table.into(),
            max_connections: max_connections
                .unwrap_or_else(|| default_max_connections(fixed_default)),
            header_timeout: Duration::from_secs(header_timeout_secs),
            max_connection_age: Duration::from_secs(DEFAULT_MAX_CONNECTION_AGE_SECS),
            max_connection_age_jitter: DEFAULT_MAX_CONNECTION_AGE_JITTER_FACTOR,
        })
    }

    /// These limits with the maximum connection age of `keepalive` (checked) instead of
    /// the default one.
    pub fn with_keepalive(mut self, keepalive: &KeepaliveConfig) -> Result<Self, String> {
        keepalive.check()?;
        self.max_connection_age = Duration::from_secs(keepalive.max_connection_age_secs);
        self.max_connection_age_jitter = keepalive.max_connection_age_jitter_factor;
        Ok(self)
    }

    /// The limits of source `id`, from its `max_connections`, `header_timeout_secs` and
    /// `keepalive`.
    pub fn source(
        id: &str,
        max_connections: Option<usize>,
        header_timeout_secs: u64,
        keepalive: &KeepaliveConfig,
    ) -> Result<Self, String> {
        Self::new(
            format!("source `{id}`"),
            format!("sources.{id}"),
            max_connections,
            header_timeout_secs,
            SOURCE_MAX_CONNECTIONS,
        )?
        .with_keepalive(keepalive)
    }

    /// The maximum age of one new connection: the configured one, jittered. `None` when it
    /// is too large to count (the connection is never retired for its age).
    pub fn connection_age(&self) -> Option<Duration> {
        let jitter = self.max_connection_age_jitter;
        let factor = 1.0 + jitter * (2.0 * fastrand::f64() - 1.0);
        Duration::try_from_secs_f64(self.max_connection_age.as_secs_f64() * factor).ok()
    }
}

/// What one connection's requests are doing, updated without locks by its requests and
/// read by its watchdog ([`drive`]).
pub struct Activity {
    accepted: Instant,
    /// When it is old enough to be retired (see the module documentation); `None`: never.
    retire_at: Option<Instant>,
    /// Whether its requests came over HTTP/2 (one connection speaks one version).
    http2: AtomicBool,
    /// Requests whose head has arrived, ever.
    requests: AtomicU64,
    /// Requests being handled now.
    in_flight: AtomicUsize,
    /// Answers being written now (a streamed one, such as the `[api]`'s `/tap`, for long).
    writing: AtomicUsize,
    /// When the last handled request was answered, in milliseconds after `accepted`.
    last_answered_ms: AtomicU64,
}

/// Held while a request is handled; see [`Activity::begin`].
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_answered_ms.store(ms, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Release);
    }
}

/// Held while an answer is written; see [`Activity::writing`].
pub struct Writing(Arc<Activity>);

impl Drop for Writing {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_answered_ms.store(ms, Ordering::Relaxed);
        self.0.writing.fetch_sub(1, Ordering::Release);
    }
}

enum State {
    /// A request is being handled.
    Busy,
    /// An answer is being written: not idle, but not to be waited for once asked to finish.
    Writing,
    /// No request head has arrived yet.
    Fresh,
    /// Quiet since this instant.
    IdleSince(Instant),
}

impl Activity {
    /// A connection accepted now, to be retired once `max_age` old (`None`: never).
    pub fn new(max_age: Option<Duration>) -> Arc<Self> {
        let accepted = Instant::now();
        Arc::new(Self {
            accepted,
            retire_at: max_age.and_then(|age| accepted.checked_add(age)),
            http2: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            writing: AtomicUsize::new(0),
            last_answered_ms: AtomicU64::new(0),
        })
    }

    /// A request head in `version` has arrived; the connection counts as busy until the guard
    /// is dropped.
    pub fn begin(self: &Arc<Self>, version: Version) -> Busy {
        if version == Version::HTTP_2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::Acquire);
        self.requests.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// An answer's body is being written; the connection is not idle until the guard is
    /// dropped (when hyper has written the body, or given up on it).
    pub fn writing(self: &Arc<Self>) -> Writing {
        self.writing.fetch_add(1, Ordering::Acquire);
        Writing(self.clone())
    }

    /// Whether the connection is past its maximum age, so that an HTTP/1 answer should close
    /// it (`Connection: close`).
    pub fn is_past_max_age(&self) -> bool {
        self.retire_at.is_some_and(|at| Instant::now() >= at)
    }

    fn state(&self) -> State {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            State::Busy
        } else if self.writing.load(Ordering::Acquire) > 0 {
            State::Writing
        } else if self.requests.load(Ordering::Relaxed) == 0 {
            State::Fresh
        } else {
            let ms = self.last_answered_ms.load(Ordering::Relaxed);
            State::IdleSince(self.accepted + Duration::from_millis(ms))
        }
    }
}

/// Run `conn` to its end, closing it when it stays quiet past the header timeout (see the
/// module documentation), when an HTTP/2 one reaches its maximum age and, at `shutdown`,
/// once its requests under way are answered.
///
/// A quiet connection that has served requests is first asked to finish (HTTP/2 gets a
/// GOAWAY, an idle HTTP/1.1 one closes at once) and dropped if it is still open one header
/// timeout later; one that never sent a request is dropped at once. An HTTP/1 connection past
/// its maximum age is left to its next answer, which closes it (`Connection: close`, set by
/// [`crate::http::serve`]), or to the header timeout if no request comes: closing it here
/// could cut a request the client is sending at that moment.
pub async fn drive<C, E>(
    conn: C,
    graceful_shutdown: impl Fn(Pin<&mut C>),
    activity: Arc<Activity>,
    header_timeout: Duration,
    mut shutdown: ShutdownSignal,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut conn = std::pin::pin!(conn);
    let mut deadline = activity.accepted + header_timeout;
    let mut finishing = false;
    let mut finishing_since = None;
    let mut retire_at = activity.retire_at;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("connection ended: {e}");
                }
                return;
            }
            () = shutdown.wait(), if !finishing => {
                if matches!(activity.state(), State::Fresh) {
                    return;
                }
                graceful_shutdown(conn.as_mut());
                finishing = true;
                finishing_since = Some(Instant::now());
            }
            () = sleep_until_some(retire_at), if !finishing && retire_at.is_some() => {
                retire_at = None;
                if activity.http2.load(Ordering::Relaxed) {
                    tracing::debug!("closing: past its maximum age (keepalive.max_connection_age_secs); GOAWAY sent, streams under way finish");
                    graceful_shutdown(conn.as_mut());
                    finishing = true;
                    deadline = deadline.max(Instant::now() + header_timeout);
                }
            }
            () = tokio::time::sleep_until(deadline) => match activity.state() {
                // Slow handlers (acknowledgements) are bounded elsewhere; look again later.
                State::Busy => deadline = Instant::now() + header_timeout,
                // A streamed answer goes on as long as its client reads it; at shutdown, a
                // client that has stopped reading is given one header timeout.
                State::Writing => match finishing_since {
                    Some(since) if since + header_timeout <= Instant::now() => {
                        tracing::debug!("closed: an answer was still being written one header timeout after being asked to finish");
                        return;
                    }
                    Some(since) => deadline = since + header_timeout,
                    None => deadline = Instant::now() + header_timeout,
                },
                State::Fresh => {
                    tracing::debug!("closed: no request within {} s (header_timeout_secs)", header_timeout.as_secs());
                    return;
                }
                State::IdleSince(since) if since + header_timeout > Instant::now() => {
                    deadline = since + header_timeout;
                }
                State::IdleSince(_) if finishing => {
                    tracing::debug!("closed: still open one header timeout after being asked to finish");
                    return;
                }
                State::IdleSince(_) => {
                    tracing::debug!("closing: no new request within {} s (header_timeout_secs)", header_timeout.as_secs());
                    graceful_shutdown(conn.as_mut());
                    finishing = true;
                    deadline = Instant::now() + header_timeout;
                }
            },
        }
    }
}

/// Sleep until `at`; never return when it is `None` (the branch is disabled then anyway).
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_out_of_range_are_refused_with_what_to_write() {
        assert!(check_settings(None, 30).is_ok());
        assert!(check_settings(Some(1), 1).is_ok());
        let e = check_settings(Some(0), 30).unwrap_err();
        assert!(e.contains("max_connections") && e.contains("from 1"), "{e}");
        let e = check_settings(None, 0).unwrap_err();
        assert!(e.contains("header_timeout_secs"), "{e}");
    }

    #[test]
    fn the_default_limit_is_the_fixed_one_or_a_quarter_of_the_open_file_limit() {
        let n = default_max_connections(SOURCE_MAX_CONNECTIONS);
        assert!((8..=SOURCE_MAX_CONNECTIONS).contains(&n), "{n}");
        if let Some(limit) = open_file_limit() {
            assert!(n <= (limit / 4).max(8), "{n} with ulimit -n {limit}");
        }
    }

    #[tokio::test]
    async fn activity_tells_fresh_busy_and_idle_apart() {
        let activity = Activity::new(None);
        assert!(matches!(activity.state(), State::Fresh));
        let busy = activity.begin(Version::HTTP_11);
        assert!(matches!(activity.state(), State::Busy));
        drop(busy);
        assert!(matches!(activity.state(), State::IdleSince(_)));
        assert!(!activity.is_past_max_age());
    }

    fn limits(keepalive: &KeepaliveConfig) -> Result<ConnectionLimits, String> {
        ConnectionLimits::source("web", None, 30, keepalive)
    }

    #[test]
    fn keepalive_defaults_are_vectors_and_a_jitter_out_of_range_is_refused() {
        let parsed: KeepaliveConfig = toml::from_str("").unwrap();
        assert_eq!(parsed, KeepaliveConfig::default());
        assert_eq!(parsed.max_connection_age_secs, 300);
        assert_eq!(parsed.max_connection_age_jitter_factor, 0.1);
        let api = ConnectionLimits::new("api", "api", None, 30, API_MAX_CONNECTIONS).unwrap();
        assert_eq!(api.max_connection_age, Duration::from_secs(300));
        for factor in [-0.1, 1.5, f64::NAN] {
            let e = limits(&KeepaliveConfig {
                max_connection_age_jitter_factor: factor,
                ..KeepaliveConfig::default()
            })
            .unwrap_err();
            assert!(
                e.contains("max_connection_age_jitter_factor") && e.contains("from 0 to 1"),
                "{e}"
            );
        }
        let e = toml::from_str::<KeepaliveConfig>("max_age = 3").unwrap_err();
        assert!(e.to_string().contains("max_age"), "{e}");
    }

    #[test]
    fn each_connection_gets_an_age_within_the_jitter_and_a_huge_one_never_expires() {
        let keepalive = |secs, factor| KeepaliveConfig {
            max_connection_age_secs: secs,
            max_connection_age_jitter_factor: factor,
        };
        let exact = limits(&keepalive(10, 0.0)).unwrap();
        assert_eq!(exact.connection_age(), Some(Duration::from_secs(10)));
        let jittered = limits(&keepalive(100, 0.1)).unwrap();
        let ages: Vec<Duration> = (0..200).filter_map(|_| jittered.connection_age()).collect();
        assert_eq!(ages.len(), 200);
        assert!(
            ages.iter()
                .all(|a| (Duration::from_secs(90)..=Duration::from_secs(110)).contains(a)),
            "{ages:?}"
        );
        assert!(ages.iter().any(|a| *a != ages[0]), "the ages differ");
        let huge = limits(&keepalive(u64::MAX, 1.0)).unwrap();
        assert!(!Activity::new(huge.connection_age()).is_past_max_age());
        let closes_every_answer =
            Activity::new(limits(&keepalive(0, 0.1)).unwrap().connection_age());
        assert!(closes_every_answer.is_past_max_age());
    }

    /// A connection that ends once asked to finish, recording when that was.
    struct FakeConn {
        asked: Arc<std::sync::Mutex<Option<Instant>>>,
    }

    impl Future for FakeConn {
        type Output = Result<(), String>;
        fn poll(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Self::Output> {
            match *self.asked.lock().unwrap() {
                Some(_) => std::task::Poll::Ready(Ok(())),
                None => std::task::Poll::Pending,
            }
        }
    }

    /// Drives a fake connection whose requests came over `version`, one request under way
    /// from the start; returns when it was asked to finish, counted from its acceptance.
    async fn asked_to_finish_after(version: Version, max_age: Duration) -> Option<Duration> {
        let (_trigger, shutdown) = crate::component::shutdown_pair();
        let activity = Activity::new(Some(max_age));
        let busy = activity.begin(version);
        let asked = Arc::new(std::sync::Mutex::new(None));
        let conn = FakeConn {
            asked: asked.clone(),
        };
        let accepted = activity.accepted;
        let driving = drive(
            conn,
            |c: Pin<&mut FakeConn>| {
                c.asked.lock().unwrap().get_or_insert_with(Instant::now);
            },
            activity.clone(),
            Duration::from_secs(30),
            shutdown,
        );
        // The request is answered well after the connection's age: 100 s in.
        let answer = async {
            tokio::time::sleep(Duration::from_secs(100)).await;
            assert!(activity.is_past_max_age());
            drop(busy);
        };
        let _ = tokio::time::timeout(Duration::from_secs(1000), async {
            tokio::join!(driving, answer)
        })
        .await;
        let at = *asked.lock().unwrap();
        at.map(|at| at - accepted)
    }

    #[tokio::test(start_paused = true)]
    async fn an_http2_connection_is_asked_to_finish_at_its_max_age_even_while_busy() {
        // GOAWAY at 10 s: the stream under way goes on to its answer.
        let at = asked_to_finish_after(Version::HTTP_2, Duration::from_secs(10)).await;
        assert_eq!(at, Some(Duration::from_secs(10)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_http1_connection_is_not_cut_at_its_max_age_but_left_to_its_answer() {
        // Not at 10 s (the request under way is answered at 100 s, with `Connection: close`
        // from `serve`); only the header timeout after that answer, had hyper not closed it.
        let at = asked_to_finish_after(Version::HTTP_11, Duration::from_secs(10)).await;
        assert_eq!(at, Some(Duration::from_secs(130)));
    }

    /// A connection that never ends by itself, even when asked to finish: a client that has
    /// stopped reading an answer.
    struct StuckConn;

    impl Future for StuckConn {
        type Output = Result<(), String>;
        fn poll(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Self::Output> {
            std::task::Poll::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_streamed_answer_is_never_idle_and_at_shutdown_gets_one_header_timeout() {
        let (trigger, shutdown) = crate::component::shutdown_pair();
        let activity = Activity::new(None);
        drop(activity.begin(Version::HTTP_11));
        let writing = activity.writing();
        assert!(matches!(activity.state(), State::Writing));
        let start = Instant::now();
        let driving = drive(
            StuckConn,
            |_: Pin<&mut StuckConn>| {},
            activity.clone(),
            Duration::from_secs(30),
            shutdown,
        );
        let stop_later = async {
            tokio::time::sleep(Duration::from_secs(1000)).await;
            trigger.trigger();
            std::future::pending::<()>().await;
        };
        tokio::select! {
            () = driving => {}
            () = stop_later => unreachable!(),
        }
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(1030),
            "kept while written, then dropped one header timeout after shutdown"
        );
        drop(writing);
        assert!(matches!(activity.state(), State::IdleSince(_)));
    }
}

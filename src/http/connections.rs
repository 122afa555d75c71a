//! How many connections a listener keeps open and how long a quiet one may
//! stay: `max_connections` and `header_timeout_secs`, shared by the HTTP
//! sources and the `[api]`.
//!
//! A connection must deliver a complete request head within the header
//! timeout: counted from the moment it is accepted (so the TLS handshake and
//! hyper-util's HTTP version detection, which reads the first bytes before
//! hyper's own HTTP/1 timer starts, are inside it), and again from the end of
//! each answer on a kept-alive connection (HTTP/1.1 and HTTP/2 alike). One that
//! does not is closed, so silent or idle clients cannot pile up until the
//! process runs out of file descriptors.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::component::ShutdownSignal;

/// Default `header_timeout_secs`.
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 30;
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
        })
    }

    /// The limits of source `id`, from its `max_connections` and `header_timeout_secs`.
    pub fn source(
        id: &str,
        max_connections: Option<usize>,
        header_timeout_secs: u64,
    ) -> Result<Self, String> {
        Self::new(
            format!("source `{id}`"),
            format!("sources.{id}"),
            max_connections,
            header_timeout_secs,
            SOURCE_MAX_CONNECTIONS,
        )
    }
}

/// What one connection's requests are doing, updated without locks by its requests and
/// read by its watchdog ([`drive`]).
pub struct Activity {
    accepted: Instant,
    /// Requests whose head has arrived, ever.
    requests: AtomicU64,
    /// Requests being handled now.
    in_flight: AtomicUsize,
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

enum State {
    /// A request is being handled.
    Busy,
    /// No request head has arrived yet.
    Fresh,
    /// Quiet since this instant.
    IdleSince(Instant),
}

impl Activity {
    /// A connection accepted now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            accepted: Instant::now(),
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            last_answered_ms: AtomicU64::new(0),
        })
    }

    /// A request head has arrived; the connection counts as busy until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Acquire);
        self.requests.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    fn state(&self) -> State {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            State::Busy
        } else if self.requests.load(Ordering::Relaxed) == 0 {
            State::Fresh
        } else {
            let ms = self.last_answered_ms.load(Ordering::Relaxed);
            State::IdleSince(self.accepted + Duration::from_millis(ms))
        }
    }
}

/// Run `conn` to its end, closing it when it stays quiet past the header timeout (see the
/// module documentation) and, at `shutdown`, once its requests under way are answered.
///
/// A quiet connection that has served requests is first asked to finish (HTTP/2 gets a
/// GOAWAY, an idle HTTP/1.1 one closes at once) and dropped if it is still open one header
/// timeout later; one that never sent a request is dropped at once.
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
            }
            () = tokio::time::sleep_until(deadline) => match activity.state() {
                // Slow handlers (acknowledgements) are bounded elsewhere; look again later.
                State::Busy => deadline = Instant::now() + header_timeout,
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
        let activity = Activity::new();
        assert!(matches!(activity.state(), State::Fresh));
        let busy = activity.begin();
        assert!(matches!(activity.state(), State::Busy));
        drop(busy);
        assert!(matches!(activity.state(), State::IdleSince(_)));
    }
}

//! The disk buffer: a sink's events in a redb file under `data_dir`, so that
//! what a source acknowledged survives `kill -9` and power loss.
//!
//! Three parts, one job each:
//!
//! - the **writer** task takes the batches sent to the sink, waits for room
//!   under `max_size`, hands them to the store and only then reports them
//!   delivered, which is when their sources acknowledge them;
//! - the **store** thread owns every write to the file. It gathers whatever
//!   appends and deletions are waiting into one transaction and commits it
//!   with an fsync, so one disk flush covers many batches (group commit);
//! - the **reader** task reads stored events in order and hands them to the
//!   sink in chunks, each tracked by one acknowledgement. A chunk whose every
//!   event was delivered, dead-lettered, dropped or rejected is deleted; a
//!   chunk with an event that errored (the sink was stopped before it was
//!   done) stays, and is read again after a restart.
//!
//! Events are stored under increasing sequence numbers, so a restart resends
//! in the original order. Delivery is at least once: an event delivered just
//! before a crash, whose deletion was not yet committed, is sent again (Meta
//! deduplicates by `event_id`).
//!
//! The file holds raw events, personal data included, until they are
//! delivered: its folder is created 0700 and the file 0600 before redb opens
//! it ([`crate::state`]), and an existing one others can open is reported (or
//! refused). Deleted events leave their bytes in freed pages, so once the
//! buffer is empty the store compacts the file (see [`Compaction`]).

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::acks::{BatchStatus, EventFinalizer, EventStatus};
use crate::component::Backlog;
use crate::component::WhenFull;
use crate::event::{Event, EventArray, track};
use crate::state::{self, Permissions};
use crate::telemetry::{BufferMetrics, Throttle};

/// Sequence number → one event's JSON.
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");

/// Most events handed to the sink in one batch.
const READ_CHUNK: usize = 1000;

/// Most events gathered into one append.
const MAX_APPEND: usize = 10_000;

/// redb's page cache for the buffer.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// The file's name inside the buffer's folder.
const FILE_NAME: &str = "buffer.redb";

/// The least time between two compactions of an emptied buffer: each costs a few fsync'd
/// commits and holds appends meanwhile, so a buffer that empties after every chunk does not
/// pay it every time. Deleted bytes linger in freed pages at most about this long once the
/// buffer is empty.
const COMPACT_EVERY: Duration = Duration::from_secs(30);

/// redb's database, shared by the store thread (writes, through `read()`) and the reader
/// (reads, through `read()`); compaction takes `write()`, as redb needs `&mut Database` and no
/// live transaction.
type Db = Arc<RwLock<Database>>;

/// An opened disk buffer, not yet running.
pub struct DiskBuffer {
    db: Db,
    path: PathBuf,
    max_size: u64,
    when_full: WhenFull,
    /// The lowest sequence number stored (where the reader starts).
    first: u64,
    /// The next sequence number to assign.
    next: u64,
    stored: Arc<Stored>,
    /// The least time between two compactions.
    compact_every: Duration,
}

/// What the buffer holds now; updated by the store after each commit.
#[derive(Default)]
struct Stored {
    events: AtomicU64,
    bytes: AtomicU64,
    /// Signalled when a commit removed events (room for a blocked writer).
    room: Notify,
}

/// The running buffer's end: resolves once everything the sink finished
/// with has been removed from the file and the file is closed, or as soon
/// as the file cannot be written any more.
pub struct Closing {
    closed: oneshot::Receiver<()>,
    written: watch::Receiver<Written>,
}

impl Closing {
    /// Wait until the store has committed its last change; an error when the
    /// buffer failed (the component must fail, so that a restart reopens,
    /// and repairs, the file).
    pub async fn wait(mut self) -> Result<(), String> {
        tokio::select! {
            _ = self.closed => Ok(()),
            failed = self.written.wait_for(|w| w.failed.is_some()) => match failed {
                Ok(w) => Err(w.failed.clone().unwrap_or_default()),
                Err(_) => Ok(()),
            },
        }
    }
}

enum Command {
    /// Store these events; answer once they are on disk.
    Append(Vec<Bytes>, oneshot::Sender<Result<(), String>>),
    /// The sink is done with these sequence numbers.
    Delete(Range<u64>),
    /// The writer has no more input: the reader may finish once it has read
    /// everything stored.
    InputEnded,
    /// A timer's tick: compact the file if it is empty and a compaction was
    /// held back by [`COMPACT_EVERY`].
    Compact,
}

impl DiskBuffer {
    /// Open (or create) the buffer in `dir`, finding what a previous run left.
    /// A folder or file that other users can open is reported, or refused
    /// with [`Permissions::Strict`].
    pub fn open(
        dir: &Path,
        max_size: u64,
        when_full: WhenFull,
        permissions: Permissions,
    ) -> Result<Self, String> {
        state::create_dir(dir)
            .map_err(|e| format!("buffer: cannot create {}: {e}", dir.display()))?;
        let path = dir.join(FILE_NAME);
        // redb's `create` opens an existing file as it is, and would create a
        // missing one with the umask's mode (0644): create it 0600 first.
        state::create_file(&path)
            .map_err(|e| format!("buffer: cannot create {}: {e}", path.display()))?;
        for p in [dir, path.as_path()] {
            state::check(p, permissions).map_err(|e| format!("buffer: {e}"))?;
        }
        // redb caches up to 1 GiB by default; a queue read once, in order, needs little.
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => format!(
                "buffer: {} is in use by another fbpixel process; give each instance its own data_dir",
                path.display()
            ),
            e => format!("buffer: cannot open {}: {e}", path.display()),
        })?;
        let fail = |e: &dyn std::fmt::Display| format!("buffer: {}: {e}", path.display());
        let (mut first, mut next, mut events, mut bytes) = (0, 0, 0, 0);
        {
            // Create the table so that readers never find it missing.
            let txn = db.begin_write().map_err(|e| fail(&e))?;
            txn.open_table(EVENTS).map_err(|e| fail(&e))?;
            txn.commit().map_err(|e| fail(&e))?;
            let txn = db.begin_read().map_err(|e| fail(&e))?;
            let table = txn.open_table(EVENTS).map_err(|e| fail(&e))?;
            for entry in table.iter().map_err(|e| fail(&e))? {
                let (key, value) = entry.map_err(|e| fail(&e))?;
                if events == 0 {
                    first = key.value();
                }
                next = key.value() + 1;
                events += 1;
                bytes += value.value().len() as u64;
            }
        }
        if events > 0 {
            tracing::info!(
                path = %path.display(),
                events,
                bytes,
                "buffer: resuming with events a previous run did not deliver"
            );
        }
        Ok(Self {
            db: Arc::new(RwLock::new(db)),
            path,
            max_size,
            when_full,
            first,
            next,
            stored: Arc::new(Stored {
                events: AtomicU64::new(events),
                bytes: AtomicU64::new(bytes),
                room: Notify::new(),
            }),
            compact_every: COMPACT_EVERY,
        })
    }

    /// Compact at most once per `every` (tests use a short one).
    #[cfg(test)]
    fn compact_every(mut self, every: Duration) -> Self {
        self.compact_every = every;
        self
    }

    /// Events stored now.
    pub fn len(&self) -> u64 {
        self.stored.events.load(Ordering::Relaxed)
    }

    /// Whether nothing is stored.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Start the buffer between `input` (the sink's channel) and the sink:
    /// returns what the sink reads, and what resolves once the buffer has
    /// recorded the sink's last deliveries.
    pub fn start(
        self,
        input: mpsc::Receiver<EventArray>,
        backlog: Backlog,
        metrics: BufferMetrics,
    ) -> (mpsc::Receiver<EventArray>, Closing) {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (written_tx, written) = watch::channel(Written {
            end: self.next,
            input_ended: false,
            failed: None,
        });
        let (closed_tx, closed_rx) = oneshot::channel();
        let (out, sink_rx) = mpsc::channel(crate::component::CHANNEL_CAPACITY);
        metrics.size(self.len(), self.stored.bytes.load(Ordering::Relaxed));

        let store = Store {
            db: self.db.clone(),
            path: self.path.clone(),
            next: self.next,
            stored: self.stored.clone(),
            written: written_tx,
            metrics: metrics.clone(),
            failed: None,
            compaction: Compaction {
                freed: 0,
                last: Instant::now(),
                every: self.compact_every,
            },
        };
        std::thread::Builder::new()
            .name("fbpixel-buffer".into())
            .spawn(move || {
                store.run(command_rx);
                let _ = closed_tx.send(());
            })
            .expect("the buffer's store thread starts");
        // The tick that lets a held-back compaction happen while nothing else is
        // written. Its weak sender does not keep the store running: once every
        // other sender is gone, the tick ends.
        let tick = commands.downgrade();
        let every = self.compact_every;
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                match tick.upgrade() {
                    Some(commands) if commands.send(Command::Compact).is_ok() => {}
                    _ => return,
                }
            }
        });

        let writer = Writer {
            input,
            backlog,
            commands: commands.clone(),
            stored: self.stored.clone(),
            max_size: self.max_size,
            when_full: self.when_full,
            metrics: metrics.clone(),
            full_log: Throttle::new(10),
        };
        tokio::spawn(writer.run());
        let (retry_tx, retries) = mpsc::unbounded_channel();
        let closing = Closing {
            closed: closed_rx,
            written: written.clone(),
        };
        let reader = Reader {
            db: self.db,
            from: self.first,
            written,
            out,
            commands,
            retries,
            retry_tx,
            metrics,
        };
        tokio::spawn(reader.run());
        (sink_rx, closing)
    }
}

/// How far the store has written, as the reader sees it.
#[derive(Clone)]
struct Written {
    /// One past the last sequence number committed.
    end: u64,
    /// No more appends will come.
    input_ended: bool,
    /// The file cannot be written: why.
    failed: Option<String>,
}

struct Store {
    db: Db,
    path: PathBuf,
    next: u64,
    stored: Arc<Stored>,
    written: watch::Sender<Written>,
    metrics: BufferMetrics,
    /// Set by the first failed commit: redb refuses every later write after
    /// an I/O error, so from then on appends are refused at once.
    failed: Option<String>,
    compaction: Compaction,
}

/// When to compact the file: once it is empty after deletions, at most once
/// per `every`, on the store thread between two commits (so no transaction is
/// live), and once more when the buffer closes.
///
/// What it achieves: redb never overwrites a freed page until it reuses it,
/// so a drained buffer's file still holds the bytes of delivered events.
/// `Database::compact` commits until no page can move down any more and
/// truncates the file to the pages in use (`ShrinkPolicy::Maximum`): with
/// nothing stored, that is a few pages of redb's own, and the old events are
/// cut off the end of the file. What it does not: it does not overwrite the
/// bytes it cuts off, so the filesystem (or an SSD's flash, a snapshot, a
/// backup) may keep the old blocks until they are reused; only encrypted
/// storage closes that. Events still stored are never compacted away, and a
/// freed page redb keeps inside the file is not zeroed either.
struct Compaction {
    /// Bytes of events deleted since the last compaction.
    freed: u64,
    /// When the file was last compacted (or a compaction was last tried);
    /// the start counts as one, so a start is never slowed by one.
    last: Instant,
    every: Duration,
}

impl Store {
    /// Commit what is waiting, one transaction at a time, until every
    /// sender (writer, reader, pending acknowledgements) is gone.
    fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut waiting = Vec::new();
        while let Some(first) = commands.blocking_recv() {
            waiting.push(first);
            while let Ok(more) = commands.try_recv() {
                waiting.push(more);
            }
            self.commit(&mut waiting);
            self.compact_if_due(false);
        }
        // Closing: what was delivered leaves the file now, whatever the rate.
        self.compact_if_due(true);
    }

    /// Compact the file if it holds no event and events were deleted since
    /// the last compaction, at most once per `every` unless `closing`.
    fn compact_if_due(&mut self, closing: bool) {
        let c = &mut self.compaction;
        let due = c.last.elapsed() >= c.every;
        if self.failed.is_some()
            || c.freed == 0
            || self.stored.events.load(Ordering::Relaxed) != 0
            || !(due || closing)
        {
            return;
        }
        c.last = Instant::now();
        let before = file_len(&self.path);
        // Waits for a read in progress; the reader reads nothing while the
        // buffer is empty, and appends wait on this thread meanwhile.
        let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
        match db.compact() {
            Ok(_) => {
                c.freed = 0;
                tracing::debug!(
                    path = %self.path.display(),
                    bytes_before = before,
                    bytes_after = file_len(&self.path),
                    "buffer: empty; compacted the file so delivered events do not linger in it"
                );
            }
            // Tried again after `every`; the buffer works on uncompacted.
            Err(e) => tracing::warn!(
                path = %self.path.display(),
                "buffer: cannot compact the emptied file: {e}; delivered events stay in its free pages until the next try"
            ),
        }
    }

    fn commit(&mut self, waiting: &mut Vec<Command>) {
        let commands = std::mem::take(waiting);
        let input_ended = commands.iter().any(|c| matches!(c, Command::InputEnded));
        let (mut appends, mut answers, mut deletes) = (Vec::new(), Vec::new(), Vec::new());
        for command in commands {
            match command {
                Command::Append(events, answer) => {
                    appends.push(events);
                    answers.push(answer);
                }
                Command::Delete(range) => deletes.push(range),
                Command::InputEnded | Command::Compact => {}
            }
        }
        let start = self.next;
        let result = match &self.failed {
            Some(message) => Err(message.clone()),
            // A tick, or the end of input: nothing to commit (and fsync).
            None if appends.is_empty() && deletes.is_empty() => Ok((0, 0)),
            None => self.write(&appends, deletes).map_err(|e| {
                self.next = start;
                let message = format!(
                    "buffer: cannot write {}: {e}; events are refused until fbpixel is restarted",
                    self.path.display()
                );
                tracing::error!("{message}");
                self.failed = Some(message.clone());
                message
            }),
        };
        match result {
            Ok((removed, removed_bytes)) => {
                let added = self.next - start;
                let added_bytes: u64 = appends.iter().flatten().map(|e| e.len() as u64).sum();
                let events = self.stored.events.fetch_add(added, Ordering::Relaxed) + added;
                let bytes =
                    self.stored.bytes.fetch_add(added_bytes, Ordering::Relaxed) + added_bytes;
                self.stored.events.fetch_sub(removed, Ordering::Relaxed);
                self.compaction.freed += removed_bytes;
                self.stored
                    .bytes
                    .fetch_sub(removed_bytes, Ordering::Relaxed);
                self.metrics.size(events - removed, bytes - removed_bytes);
                if removed > 0 {
                    self.stored.room.notify_waiters();
                }
                for answer in answers {
                    let _ = answer.send(Ok(()));
                }
            }
            // Nothing of this transaction is on disk: the appends fail (their
            // sources answer with an error, so senders retry), and deletions
            // are lost (those events are sent again after the restart, which
            // Meta deduplicates).
            Err(message) => {
                for answer in answers {
                    let _ = answer.send(Err(message.clone()));
                }
            }
        }
        let (end, failed) = (self.next, self.failed.clone());
        self.written.send_modify(|w| {
            w.end = end;
            w.input_ended |= input_ended;
            w.failed = failed;
        });
    }

    /// One transaction: the appends, then the deletions. Returns the events
    /// and bytes removed.
    fn write(
        &mut self,
        appends: &[Vec<Bytes>],
        deletes: Vec<Range<u64>>,
    ) -> Result<(u64, u64), redb::Error> {
        let (mut removed, mut removed_bytes) = (0, 0);
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let txn = db.begin_write()?;
        {
            let mut table = txn.open_table(EVENTS)?;
            for event in appends.iter().flatten() {
                table.insert(self.next, event.as_ref())?;
                self.next += 1;
            }
            for range in deletes {
                for entry in table.extract_from_if(range, |_, _| true)? {
                    let (_, value) = entry?;
                    removed += 1;
                    removed_bytes += value.value().len() as u64;
                }
            }
        }
        txn.commit()?;
        Ok((removed, removed_bytes))
    }
}

struct Writer {
    input: mpsc::Receiver<EventArray>,
    backlog: Backlog,
    commands: mpsc::UnboundedSender<Command>,
    stored: Arc<Stored>,
    max_size: u64,
    when_full: WhenFull,
    metrics: BufferMetrics,
    full_log: Throttle,
}

impl Writer {
    async fn run(mut self) {
        while let Some(mut events) = self.input.recv().await {
            // Whatever else is queued joins this append: one fsync for all.
            while events.len() < MAX_APPEND {
                match self.input.try_recv() {
                    Ok(more) => events.extend(more),
                    Err(_) => break,
                }
            }
            self.backlog.release(events.len());
            let n = events.len();
            let mut payloads = Vec::with_capacity(n);
            let mut finalizers = Vec::with_capacity(n);
            let mut size = 0;
            for event in events {
                let (json, finalizer) = event.into_bytes_parts();
                size += json.len() as u64;
                payloads.push(json);
                finalizers.push(finalizer);
            }
            if !self.wait_for_room(size).await {
                self.metrics.discarded(n);
                if self.full_log.ready() {
                    tracing::warn!(
                        events = n,
                        "buffer full: discarding the newest events (when_full = \"drop_newest\"); see buffer_discarded_events_total"
                    );
                }
                report(finalizers, EventStatus::Dropped);
                continue;
            }
            let (answer, stored) = oneshot::channel();
            if self
                .commands
                .send(Command::Append(payloads, answer))
                .is_err()
            {
                break;
            }
            // On an error (already logged by the store), dropping the
            // finalizers fails the events, so their senders are told to retry.
            if let Ok(Ok(())) = stored.await {
                self.metrics.received(n);
                report(finalizers, EventStatus::Delivered);
            }
        }
        let _ = self.commands.send(Command::InputEnded);
    }

    /// Wait until `size` more bytes fit under `max_size` (an empty buffer
    /// takes any batch); `false` when the batch is to be discarded instead.
    async fn wait_for_room(&self, size: u64) -> bool {
        loop {
            let room = self.stored.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let stored = self.stored.bytes.load(Ordering::Relaxed);
            if stored == 0 || stored + size <= self.max_size {
                return true;
            }
            if self.when_full == WhenFull::DropNewest {
                return false;
            }
            room.await;
        }
    }
}

fn report(finalizers: Vec<EventFinalizer>, status: EventStatus) {
    for mut finalizer in finalizers {
        finalizer.update(status);
    }
}

struct Reader {
    db: Db,
    /// The next sequence number to read.
    from: u64,
    written: watch::Receiver<Written>,
    out: mpsc::Sender<EventArray>,
    commands: mpsc::UnboundedSender<Command>,
    /// Chunks the sink could not finish, to read again.
    retries: mpsc::UnboundedReceiver<Range<u64>>,
    retry_tx: mpsc::UnboundedSender<Range<u64>>,
    metrics: BufferMetrics,
}

/// How long a chunk the sink could not finish (its dead letter could not be
/// written, say) waits before it is read again.
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_secs(5);

impl Reader {
    async fn run(mut self) {
        loop {
            let from = self.from;
            let (range, again) = tokio::select! {
                biased;
                Some(range) = self.retries.recv() => (range, true),
                written = self
                    .written
                    .wait_for(|w| w.end > from || w.input_ended || w.failed.is_some()) =>
                {
                    let Ok(written) = written else { return };
                    if written.failed.is_some() || written.end <= from {
                        // The file failed, or the input has ended and
                        // everything stored has been read.
                        return;
                    }
                    (from..written.end, false)
                }
            };
            let db = self.db.clone();
            let wanted = range.clone();
            let chunk = tokio::task::spawn_blocking(move || read_chunk(&db, wanted))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            let (payloads, next) = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    tracing::error!("buffer: cannot read: {e}; trying again in 1 s");
                    if again {
                        let _ = self.retry_tx.send(range);
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            };
            if !again {
                self.from = next;
            }
            if payloads.is_empty() {
                continue;
            }
            let mut events: EventArray = payloads.into_iter().map(Event::from_json).collect();
            let status = track(&mut events);
            let (commands, retry) = (self.commands.clone(), self.retry_tx.clone());
            let range = range.start..next;
            tokio::spawn(async move {
                if status.wait().await == BatchStatus::Errored {
                    // Kept; read again after a pause while the process runs
                    // (and after a restart otherwise).
                    drop(commands);
                    tokio::time::sleep(RETRY_PAUSE).await;
                    let _ = retry.send(range);
                } else {
                    let _ = commands.send(Command::Delete(range));
                }
            });
            self.metrics.sent(events.len());
            if self.out.send(events).await.is_err() {
                // The sink has stopped; what it did not take stays stored.
                return;
            }
        }
    }
}

/// Up to [`READ_CHUNK`] stored events from `range`, and where to read next.
fn read_chunk(db: &RwLock<Database>, range: Range<u64>) -> Result<(Vec<Bytes>, u64), redb::Error> {
    let db = db.read().unwrap_or_else(PoisonError::into_inner);
    let txn = db.begin_read()?;
    let table = txn.open_table(EVENTS)?;
    let mut next = range.end;
    let mut payloads = Vec::new();
    for entry in table.range(range)? {
        let (key, value) = entry?;
        if payloads.len() == READ_CHUNK {
            next = key.value();
            break;
        }
        payloads.push(Bytes::copy_from_slice(value.value()));
    }
    Ok((payloads, next))
}

/// The file's size, for log lines (0 when it cannot be read).
fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[cfg(test)]
mod tests;

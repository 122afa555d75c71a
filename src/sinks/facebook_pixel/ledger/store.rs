//! The ledger's redb file under `data_dir` (`ledger/<sink id>/ledger.redb`): the writer thread
//! of a running sink ([`Store`]), and the reader `explain`, `reconcile` and `quality` use
//! ([`Reader`]) — also while the sink runs, which is why the file is opened in redb's
//! single-writer mode (one process writes, others may read its commits).
//!
//! Tables: `records` (a sequence number → a [`Record`] as [`Record::encode_into`] lays it
//! out), `index` (a commit's first sequence number → the [`id_index`] block of every event id
//! and order id in its records; an id sent twice, or an order with a Purchase and an
//! AppendValue, is in several) and `meta` (the next sequence number and the bytes kept, so the
//! bounds hold across restarts). Records are pruned oldest first, by age (`retention_secs`)
//! and by size (`max_size`), in the same transaction that adds new ones, and at open; a block
//! goes with the last record it points at.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use redb::{
    Builder, ConcurrencyMode, Database, DatabaseError, ReadOnlyDatabase, ReadableDatabase,
    ReadableTable, ReadableTableMetadata, TableDefinition,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::Receiver;
use tokio::sync::mpsc::error::TryRecvError;

use super::id_index::{self, BlockBuilder};
use super::record::{EventRecord, Record, digest_id, mask_event, message_ids};
use super::{Entry, LedgerConfig};
use crate::telemetry::{ComponentMetrics, Throttle};

const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records");
const INDEX: TableDefinition<u64, &[u8]> = TableDefinition::new("index");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// redb's page cache for the writer.
const CACHE_BYTES: usize = 16 << 20;

/// The file's name in the ledger's folder.
pub const FILE_NAME: &str = "ledger.redb";

/// The least time between two commits: entries that arrive meanwhile wait in the queue and go
/// in the next one (this is also how stale a reader's view of a running sink can be).
const COMMIT_INTERVAL: Duration = Duration::from_millis(250);

/// Most entries in one commit.
const MAX_ENTRIES_PER_COMMIT: usize = 512;

/// How long the writer sleeps when the queue is empty before a commit is due.
const STAGE_POLL: Duration = Duration::from_millis(5);

/// A request's record is stored as several values, each with at most this many bytes of
/// masked events or this many events: redb copies a value whole whenever its leaf splits,
/// and reads back the pages of a transaction that outgrew its write buffer, so one value of a
/// thousand events (half a megabyte) was written twice and read once; and each value costs a
/// copy of the path to its leaf, so values of a few events made that the larger cost.
const CHUNK_BYTES: usize = 64 << 10;
const CHUNK_EVENTS: usize = 128;

/// What a table entry costs besides its value, counted against `max_size` (its key and the
/// B-tree's share).
const ENTRY_OVERHEAD: u64 = 16;

/// The file in a ledger folder.
pub fn file_path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The writer side: owned by the ledger's thread.
pub struct Store {
    db: Database,
    path: PathBuf,
    max_size: u64,
    retention_ms: i64,
    next_seq: u64,
    bytes: u64,
    metrics: ComponentMetrics,
    error_log: Throttle,
    /// The masked events of the record being staged (a buffer reused from record to record).
    events: Vec<u8>,
    /// What the next commit adds.
    staged: Staged,
}

/// The records of the next commit, encoded: their values one after the other (each ends at
/// the next of `ends`), and the index block of their ids.
#[derive(Default)]
struct Staged {
    values: Vec<u8>,
    ends: Vec<usize>,
    block: BlockBuilder,
}

impl Store {
    /// Open or create the file in `dir` (folder 0700, file 0600: hashes are still the users'),
    /// and prune what is past `retention_secs`.
    pub fn open(
        dir: &Path,
        config: &LedgerConfig,
        metrics: ComponentMetrics,
    ) -> Result<Self, String> {
        Self::open_at(dir, config, metrics, now_ms())
    }

    fn open_at(
        dir: &Path,
        config: &LedgerConfig,
        metrics: ComponentMetrics,
        now: i64,
    ) -> Result<Self, String> {
        crate::state::create_dir(dir)
            .map_err(|e| format!("ledger: cannot create {}: {e}", dir.display()))?;
        let path = file_path(dir);
        crate::state::create_file(&path)
            .map_err(|e| format!("ledger: cannot create {}: {e}", path.display()))?;
        let db = Builder::new()
            .set_concurrency_mode(ConcurrencyMode::SingleWriter)
            // redb's default cache is 1 GiB, and a ledger is written, not read back: a small one
            // keeps the process's memory flat however large the file grows.
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| match e {
                DatabaseError::DatabaseAlreadyOpen => format!(
                    "ledger: {} is in use by another fbpixel process (give each instance its own data_dir)",
                    path.display()
                ),
                e => format!("ledger: cannot open {}: {e}", path.display()),
            })?;
        let mut store = Store {
            db,
            path,
            max_size: config.max_size,
            retention_ms: i64::try_from(config.retention_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            next_seq: 0,
            bytes: 0,
            metrics,
            error_log: Throttle::new(60),
            events: Vec::new(),
            staged: Staged::default(),
        };
        let shown = store.path.display().to_string();
        let fail = |e: &dyn std::fmt::Display| format!("ledger: {shown}: {e}");
        // The counters as the last process left them; the writer keeps them from here on.
        {
            let txn = store.db.begin_read().map_err(|e| fail(&e))?;
            match txn.open_table(META) {
                Ok(meta) => {
                    let read = |key| -> Result<u64, String> {
                        Ok(meta
                            .get(key)
                            .map_err(|e| fail(&e))?
                            .map_or(0, |v| v.value()))
                    };
                    store.next_seq = read("next_seq")?;
                    store.bytes = read("bytes")?;
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(fail(&e)),
            }
        }
        store.commit(now).map_err(|e| fail(&e))?;
        Ok(store)
    }

    /// Write what arrives until every sender is gone, at most one transaction per
    /// [`COMMIT_INTERVAL`]. Runs on a thread of its own (redb is blocking). Each entry is
    /// masked and encoded as soon as it arrives, so the request body it holds (the events as
    /// sent, larger than what is kept) is freed at once rather than when the commit is due.
    pub fn run(mut self, mut entries: Receiver<Entry>) {
        while let Some(first) = entries.blocking_recv() {
            let started = Instant::now();
            let mut staged = 1;
            let mut events = first.events();
            self.stage(&first);
            drop(first);
            // Disconnected comes only once the queue is empty: what was sent is all staged.
            while staged < MAX_ENTRIES_PER_COMMIT {
                match entries.try_recv() {
                    Ok(entry) => {
                        staged += 1;
                        events += entry.events();
                        self.stage(&entry);
                    }
                    Err(TryRecvError::Disconnected) => break,
                    Err(TryRecvError::Empty) => {
                        match COMMIT_INTERVAL.checked_sub(started.elapsed()) {
                            Some(rest) => std::thread::sleep(rest.min(STAGE_POLL)),
                            None => break,
                        }
                    }
                }
            }
            match self.commit(now_ms()) {
                Ok(()) => super::written(&self.metrics, events),
                Err(e) => {
                    super::dropped(&self.metrics, events, "write_failed");
                    if self.error_log.ready() {
                        tracing::error!(component = %self.metrics.info().id, "ledger: cannot write {}: {e}; {events} records lost (delivery is not affected)", self.path.display());
                    }
                }
            }
        }
    }

    /// Stage the records of `batch` and commit them.
    #[cfg(test)]
    fn write(&mut self, batch: &[Entry], now: i64) -> Result<(), redb::Error> {
        for entry in batch {
            self.stage(entry);
        }
        self.commit(now)
    }

    /// Mask and encode the record of `entry` for the next commit, in stored values of at most
    /// [`CHUNK_BYTES`], and index its ids.
    fn stage(&mut self, entry: &Entry) {
        let staged = &mut self.staged;
        let mut whole = build(entry, &mut self.events);
        let mut rest = std::mem::take(&mut whole.events).into_iter();
        loop {
            let (chunk, blob) = split_chunk(&mut rest, &self.events);
            let record = Record {
                events: chunk,
                ..whole.clone()
            };
            // At most MAX_ENTRIES_PER_COMMIT entries of at most a thousand events.
            let offset = staged.ends.len() as u32;
            for id in ids_of(&record) {
                staged.block.add(id, offset);
            }
            record.encode_into(blob, &mut staged.values);
            staged.ends.push(staged.values.len());
            if rest.len() == 0 {
                break;
            }
        }
    }

    /// Add the staged records and prune, in one transaction. The counters move only when it
    /// commits; the staged records are gone either way.
    fn commit(&mut self, now: i64) -> Result<(), redb::Error> {
        let result = self.commit_staged(now);
        let staged = &mut self.staged;
        staged.values.clear();
        staged.ends.clear();
        staged.block.clear();
        result
    }

    fn commit_staged(&mut self, now: i64) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        let (mut next_seq, mut bytes) = (self.next_seq, self.bytes);
        {
            let mut meta = txn.open_table(META)?;
            let mut records = txn.open_table(RECORDS)?;
            let mut index = txn.open_table(INDEX)?;
            let staged = &mut self.staged;
            let first = next_seq;
            let mut start = 0;
            for &end in &staged.ends {
                let value = &staged.values[start..end];
                records.insert(next_seq, value)?;
                next_seq += 1;
                bytes += value.len() as u64 + ENTRY_OVERHEAD;
                start = end;
            }
            let block = &mut staged.block;
            if !block.is_empty() {
                let encoded = block.encode();
                index.insert(first, encoded)?;
                bytes += encoded.len() as u64 + ENTRY_OVERHEAD;
            }
            let cutoff = now.saturating_sub(self.retention_ms);
            loop {
                let old = match records.first()? {
                    Some((_, value)) => Record::at_ms(value.value()).is_none_or(|at| at < cutoff),
                    None => break,
                };
                if !old && bytes <= self.max_size {
                    break;
                }
                let Some((_, value)) = records.pop_first()? else {
                    break;
                };
                bytes = bytes.saturating_sub(value.value().len() as u64 + ENTRY_OVERHEAD);
            }
            // A block goes once the next one starts at or before the oldest record kept (every
            // record it points at is gone); all of them when no record is left.
            let oldest = records.first()?.map(|(seq, _)| seq.value());
            loop {
                let next = {
                    let mut blocks = index.iter()?;
                    match (blocks.next(), blocks.next()) {
                        (Some(_), Some(second)) => Some(second?.0.value()),
                        (Some(_), None) => None,
                        (None, _) => break,
                    }
                };
                let gone = match (oldest, next) {
                    (None, _) => true,
                    (Some(oldest), Some(next)) => next <= oldest,
                    (Some(_), None) => false,
                };
                if !gone {
                    break;
                }
                if let Some((_, block)) = index.pop_first()? {
                    bytes = bytes.saturating_sub(block.value().len() as u64 + ENTRY_OVERHEAD);
                }
            }
            if oldest.is_none() {
                bytes = 0;
            }
            meta.insert("next_seq", next_seq)?;
            meta.insert("bytes", bytes)?;
        }
        txn.commit()?;
        self.next_seq = next_seq;
        self.bytes = bytes;
        Ok(())
    }
}

/// The first events of `rest` that make one stored value (taken out of it), their ranges
/// rebased onto the slice of `events` returned. Events are masked into `events` in order, so
/// a run of them is one slice.
fn split_chunk<'e>(
    rest: &mut std::vec::IntoIter<EventRecord>,
    events: &'e [u8],
) -> (Vec<EventRecord>, &'e [u8]) {
    let mut start = None;
    let mut end = 0;
    let mut count = 0;
    for event in rest.as_slice().iter().take(CHUNK_EVENTS) {
        if let Some((from, to)) = event.sent {
            let from = start.unwrap_or(from as usize);
            if count > 0 && to as usize - from > CHUNK_BYTES {
                break;
            }
            start = Some(from);
            end = to as usize;
        }
        count += 1;
    }
    let start = start.unwrap_or(0);
    let mut chunk: Vec<EventRecord> = rest.take(count).collect();
    for event in &mut chunk {
        if let Some((from, to)) = &mut event.sent {
            *from -= start as u32;
            *to -= start as u32;
        }
    }
    (chunk, events.get(start..end).unwrap_or_default())
}

/// The ids a record is found by: each event's id and order id.
fn ids_of(record: &Record) -> impl Iterator<Item = &str> {
    record
        .events
        .iter()
        .flat_map(|e| std::iter::once(e.id.as_str()).chain(e.order_id.as_deref()))
}

/// The record of an entry, its masked events written to `events`.
pub(super) fn build(entry: &Entry, events: &mut Vec<u8>) -> Record {
    events.clear();
    match entry {
        Entry::Sent {
            at_ms,
            pixel,
            body,
            events: sent,
            verdict,
            attempts,
        } => {
            let records = sent
                .iter()
                .map(|e| {
                    let json = body.get(e.range.clone()).unwrap_or_default();
                    let start = events.len();
                    let mut record = EventRecord {
                        keys: e.keys,
                        enriched: e.enriched,
                        ..EventRecord::default()
                    };
                    match mask_event(json, events) {
                        Some(ids) => {
                            record.sent = Some((start as u32, events.len() as u32));
                            record.id = ids.event_id.unwrap_or_else(|| digest_id(json));
                            record.order_id = ids.order_id;
                            record.event_name = ids.event_name;
                        }
                        None => {
                            events.truncate(start);
                            record.id = digest_id(json);
                        }
                    }
                    record
                })
                .collect();
            Record::new(
                *at_ms,
                Some(pixel.to_string()),
                *attempts,
                verdict.clone(),
                records,
            )
        }
        Entry::Mapping {
            at_ms,
            verdict,
            messages,
        } => {
            let records = messages
                .iter()
                .map(|(original, reason)| {
                    let ids = message_ids(original);
                    EventRecord {
                        id: ids.id,
                        order_id: ids.order_id,
                        event_name: ids.name,
                        reason: Some(reason.clone()),
                        ..EventRecord::default()
                    }
                })
                .collect();
            Record::new(*at_ms, None, 0, verdict.clone(), records)
        }
    }
}

/// One event found in the ledger: the record it is in (its `events` left empty) and the event
/// with its server event as sent, masked.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Found {
    /// How the request (or mapping batch) carrying it ended.
    pub record: Record,
    /// The event.
    pub event: EventRecord,
    /// Its server event as sent, customer information hashed.
    pub sent: Option<String>,
}

/// A record's events, each with the record (its `events` left empty) and its masked server
/// event out of `events`.
pub(super) fn found(mut record: Record, events: &[u8]) -> Vec<Found> {
    let items = std::mem::take(&mut record.events);
    items
        .into_iter()
        .map(|mut event| {
            let sent = Record::event_json(&event, events).map(str::to_owned);
            event.sent = None;
            Found {
                record: record.clone(),
                event,
                sent,
            }
        })
        .collect()
}

/// A ledger opened for reading.
pub struct Reader {
    db: ReadOnlyDatabase,
    path: PathBuf,
}

impl Reader {
    /// Open the ledger at `path`: its folder or the file itself.
    pub fn open(path: &Path) -> Result<Self, String> {
        let file = if path.is_dir() {
            file_path(path)
        } else {
            path.to_owned()
        };
        if !file.exists() {
            return Err(format!(
                "there is no ledger at {}: the sink writes one under data_dir/ledger/<sink id>/ while `ledger.enabled` (default: on when data_dir is set)",
                file.display()
            ));
        }
        let db = Builder::new()
            .set_concurrency_mode(ConcurrencyMode::SingleWriter)
            .open_read_only(&file)
            .map_err(|e| format!("ledger: cannot open {}: {e}", file.display()))?;
        Ok(Self { db, path: file })
    }

    fn fail(&self, e: impl std::fmt::Display) -> String {
        format!("ledger: {}: {e}", self.path.display())
    }

    /// Every event the ledger holds under `id` (an event id, a messageId or an order id),
    /// oldest first.
    pub fn find(&self, id: &str) -> Result<Vec<Found>, String> {
        Ok(self.find_many(&[id])?.remove(id).unwrap_or_default())
    }

    /// [`Reader::find`] for many ids in one pass over the index: each id found, with its
    /// events oldest first (an id never seen is not in the map).
    pub fn find_many(&self, ids: &[&str]) -> Result<HashMap<String, Vec<Found>>, String> {
        let mut found: HashMap<String, Vec<Found>> = HashMap::new();
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let (records, index) = match (txn.open_table(RECORDS), txn.open_table(INDEX)) {
            (Ok(records), Ok(index)) => (records, index),
            (Err(redb::TableError::TableDoesNotExist(_)), _)
            | (_, Err(redb::TableError::TableDoesNotExist(_))) => return Ok(found),
            (Err(e), _) | (_, Err(e)) => return Err(self.fail(e)),
        };
        let wanted: HashSet<u64> = ids.iter().map(|id| id_index::id_hash(id)).collect();
        let wanted_ids: HashSet<&str> = ids.iter().copied().collect();
        let mut seqs = Vec::new();
        for item in index.iter().map_err(|e| self.fail(e))? {
            let (first, block) = item.map_err(|e| self.fail(e))?;
            let first = first.value();
            seqs.extend(id_index::candidates(block.value(), &wanted).map(|o| first + u64::from(o)));
        }
        seqs.sort_unstable();
        seqs.dedup();
        for seq in seqs {
            let Some(value) = records.get(seq).map_err(|e| self.fail(e))? else {
                continue;
            };
            let Some((mut record, events)) = Record::decode(value.value()) else {
                continue;
            };
            for event in std::mem::take(&mut record.events) {
                let mut keys = std::iter::once(event.id.as_str())
                    .chain(event.order_id.as_deref())
                    .filter(|id| wanted_ids.contains(id))
                    .peekable();
                if keys.peek().is_none() {
                    continue;
                }
                let keys: Vec<String> = keys.map(str::to_owned).collect();
                let sent = Record::event_json(&event, events).map(str::to_owned);
                let item = Found {
                    record: record.clone(),
                    event,
                    sent,
                };
                for key in keys {
                    found.entry(key).or_default().push(item.clone());
                }
            }
        }
        Ok(found)
    }

    /// Call `each` with every record (its masked events aside), oldest first.
    pub fn for_each(&self, mut each: impl FnMut(Record)) -> Result<(), String> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let records = match txn.open_table(RECORDS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(self.fail(e)),
        };
        for item in records.iter().map_err(|e| self.fail(e))? {
            let (_, value) = item.map_err(|e| self.fail(e))?;
            if let Some((record, _)) = Record::decode(value.value()) {
                each(record);
            }
        }
        Ok(())
    }

    /// How many records it holds, and the time of the oldest.
    pub fn summary(&self) -> Result<(u64, Option<i64>), String> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let records = match txn.open_table(RECORDS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok((0, None)),
            Err(e) => return Err(self.fail(e)),
        };
        let oldest = records
            .first()
            .map_err(|e| self.fail(e))?
            .and_then(|(_, v)| Record::at_ms(v.value()));
        Ok((records.len().map_err(|e| self.fail(e))?, oldest))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::super::record::{Outcome, Stage, Verdict};
    use super::super::{Entry, SentEvent};
    use super::*;
    use crate::telemetry::ComponentInfo;

    fn metrics() -> ComponentMetrics {
        ComponentMetrics::new(ComponentInfo {
            id: "fb".into(),
            kind: "sink",
            type_name: "facebook_pixel_server_side".into(),
        })
    }

    fn sent(at_ms: i64, ids: &[&str]) -> Entry {
        let mut body = b"{\"data\":[".to_vec();
        let mut events = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            let start = body.len();
            body.extend_from_slice(
                format!(r#"{{"event_name":"Purchase","event_id":"{id}","user_data":{{"client_ip_address":"198.51.100.{i}"}},"custom_data":{{"order_id":"o-{id}"}}}}"#)
                    .as_bytes(),
            );
            events.push(SentEvent {
                range: start..body.len(),
                keys: 1 << 11,
                enriched: 0,
            });
        }
        body.extend_from_slice(b"]}");
        Entry::Sent {
            at_ms,
            pixel: Arc::from("123"),
            body: Bytes::from(body),
            events,
            verdict: Verdict::delivered(Some("trace-1".into()), Some(ids.len() as u64)),
            attempts: 1,
        }
    }

    fn config(max_size: u64, retention_secs: u64) -> LedgerConfig {
        LedgerConfig {
            enabled: Some(true),
            max_size,
            retention_secs,
            ..LedgerConfig::default()
        }
    }

    #[test]
    fn records_are_found_by_event_id_and_order_id_with_the_event_masked() {
        let dir = tempdir("find");
        let mut store = Store::open_at(&dir, &config(1 << 30, 3600), metrics(), 1_000).unwrap();
        let skipped = Entry::Mapping {
            at_ms: 1_500,
            verdict: Verdict::failed(Outcome::Skipped, Stage::Mapping, None),
            messages: vec![(
                Bytes::from_static(br#"{"type":"track","event":"Viewed","messageId":"m-3"}"#),
                "consent".to_owned(),
            )],
        };
        store
            .write(&[sent(1_000, &["m-1", "m-2"]), skipped], 2_000)
            .unwrap();
        drop(store);
        let reader = Reader::open(&dir).unwrap();
        let found = reader.find("m-2").unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].record.outcome, Outcome::Delivered);
        assert_eq!(found[0].record.fbtrace_id.as_deref(), Some("trace-1"));
        assert_eq!(found[0].event.order_id.as_deref(), Some("o-m-2"));
        let sent = found[0].sent.as_deref().unwrap();
        assert!(sent.contains("\"event_id\":\"m-2\"") && !sent.contains("198.51.100"));
        assert_eq!(reader.find("o-m-1").unwrap()[0].event.id, "m-1");
        let skipped = reader.find("m-3").unwrap();
        assert_eq!(skipped[0].record.outcome, Outcome::Skipped);
        assert_eq!(skipped[0].event.reason.as_deref(), Some("consent"));
        assert!(reader.find("never").unwrap().is_empty());
        assert_eq!(reader.summary().unwrap(), (2, Some(1_000)));
        let raw = std::fs::read(file_path(&dir)).unwrap();
        assert!(!raw.windows(10).any(|w| w == b"198.51.100"));
    }

    #[test]
    fn records_past_their_retention_are_pruned_at_the_next_write_and_at_open() {
        let dir = tempdir("age");
        let mut store = Store::open_at(&dir, &config(1 << 30, 10), metrics(), 0).unwrap();
        store.write(&[sent(1_000, &["old"])], 1_000).unwrap();
        store.write(&[sent(20_000, &["new"])], 20_000).unwrap();
        drop(store);
        let reader = Reader::open(&dir).unwrap();
        assert!(reader.find("old").unwrap().is_empty());
        assert!(reader.find("o-old").unwrap().is_empty());
        assert_eq!(reader.find("new").unwrap().len(), 1);
        drop(reader);
        Store::open_at(&dir, &config(1 << 30, 10), metrics(), 40_000).unwrap();
        assert_eq!(Reader::open(&dir).unwrap().summary().unwrap(), (0, None));
    }

    #[test]
    fn the_oldest_records_go_when_the_ledger_is_over_its_size() {
        let dir = tempdir("size");
        let mut store = Store::open_at(&dir, &config(4_000, 3600), metrics(), 0).unwrap();
        for i in 0..40 {
            store.write(&[sent(i, &[&format!("e-{i}")])], 100).unwrap();
        }
        assert!(store.bytes <= 4_000, "{} bytes kept", store.bytes);
        drop(store);
        let reader = Reader::open(&dir).unwrap();
        assert!(reader.find("e-0").unwrap().is_empty());
        assert_eq!(reader.find("e-39").unwrap().len(), 1);
        let (kept, oldest) = reader.summary().unwrap();
        assert!(
            kept > 1 && kept < 40 && oldest > Some(0),
            "{kept} {oldest:?}"
        );
    }

    #[test]
    fn a_running_ledger_can_be_read_by_another_handle_that_sees_its_later_commits() {
        let dir = tempdir("concurrent");
        let mut store = Store::open_at(&dir, &config(1 << 30, 3600), metrics(), 0).unwrap();
        store.write(&[sent(10, &["a"])], 10).unwrap();
        let reader = Reader::open(&dir).unwrap();
        assert_eq!(reader.find("a").unwrap().len(), 1);
        store.write(&[sent(20, &["b"])], 20).unwrap();
        assert_eq!(
            reader.find("b").unwrap().len(),
            1,
            "a commit after the reader opened"
        );
    }

    #[test]
    fn a_reopened_ledger_numbers_its_records_after_the_last_ones() {
        let dir = tempdir("reopen");
        let mut store = Store::open_at(&dir, &config(1 << 30, 3600), metrics(), 0).unwrap();
        store.write(&[sent(10, &["a"])], 10).unwrap();
        let bytes = store.bytes;
        drop(store);
        let mut store = Store::open_at(&dir, &config(1 << 30, 3600), metrics(), 20).unwrap();
        assert_eq!((store.next_seq, store.bytes), (1, bytes));
        store.write(&[sent(20, &["b"])], 20).unwrap();
        drop(store);
        let reader = Reader::open(&dir).unwrap();
        assert_eq!(
            reader.find("a").unwrap().len(),
            1,
            "overwritten by the next process"
        );
        assert_eq!(reader.summary().unwrap(), (2, Some(10)));
    }

    #[test]
    fn a_large_request_is_stored_in_several_values_and_every_event_is_found_with_its_own_json() {
        let dir = tempdir("chunks");
        let mut store = Store::open_at(&dir, &config(1 << 30, 3600), metrics(), 0).unwrap();
        let ids: Vec<String> = (0..300).map(|i| format!("e-{i}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        store.write(&[sent(10, &refs)], 10).unwrap();
        drop(store);
        let reader = Reader::open(&dir).unwrap();
        let (values, _) = reader.summary().unwrap();
        assert_eq!(values, 300_usize.div_ceil(CHUNK_EVENTS) as u64);
        let wanted = ["e-0", "e-127", "e-128", "e-299", "o-e-200", "never"];
        let found = reader.find_many(&wanted).unwrap();
        assert_eq!(found.len(), 5, "{:?}", found.keys());
        for id in ["e-0", "e-127", "e-128", "e-299"] {
            let event = &found[id][0];
            assert_eq!(event.event.id, id);
            let sent = event.sent.as_deref().unwrap();
            assert!(
                sent.contains(&format!("\"event_id\":\"{id}\"")),
                "{id}: {sent}"
            );
            assert_eq!(event.record.fbtrace_id.as_deref(), Some("trace-1"));
        }
        assert_eq!(found["o-e-200"][0].event.id, "e-200");
        assert!(!found.contains_key("never"));
        assert_eq!(reader.find("e-250").unwrap().len(), 1);
    }

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "fbpixel-ledger-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }
}

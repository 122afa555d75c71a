//! What `explain`, `reconcile` and `quality` share: finding the ledgers to read — the sink's
//! own under `data_dir`, or the folders `--ledger` names (one per instance, with NATS scale-out)
//! — and looking an id up in all of them.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::bail;

use super::config_args::ConfigArgs;
use super::sink::load_sink;
use crate::config::MissingVars;
use crate::sinks::facebook_pixel::ledger::nats_kv::KvReader;
use crate::sinks::facebook_pixel::ledger::{Found, LedgerConfig, LedgerStore, Reader};

/// One ledger to read.
pub enum Source {
    /// A redb file.
    Disk(Reader),
    /// The bucket of `ledger.store = "nats_kv"`.
    NatsKv(Box<KvReader>),
}

impl Source {
    fn find_many(&self, ids: &[&str]) -> Result<HashMap<String, Vec<Found>>, String> {
        match self {
            Source::Disk(r) => r.find_many(ids),
            // A key per id in the bucket: a lookup each.
            Source::NatsKv(r) => {
                let mut found = HashMap::new();
                for id in ids {
                    let events = r.find(id)?;
                    if !events.is_empty() {
                        found.insert((*id).to_owned(), events);
                    }
                }
                Ok(found)
            }
        }
    }

    fn summary(&self) -> Result<(u64, Option<i64>), String> {
        match self {
            Source::Disk(r) => r.summary(),
            Source::NatsKv(r) => r.summary(),
        }
    }
}

/// Where the ledgers are: a config's sink, or folders.
#[derive(Debug, clap::Args)]
pub struct LedgerArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Which `facebook_pixel_server_side` sink, when the config has several.
    #[arg(long, value_name = "ID")]
    pub sink: Option<String>,
    /// Read this ledger (a folder such as data_dir/ledger/<sink id>, or its ledger.redb) instead
    /// of the config's; repeat it to read every instance's of a scaled-out pipeline.
    #[arg(long = "ledger", value_name = "DIR")]
    pub ledgers: Vec<PathBuf>,
}

/// The ledgers opened, each with where it is, and the name to report them by.
pub struct Ledgers {
    /// Every ledger read.
    pub readers: Vec<Source>,
    /// `sinks.ID`, or the folders.
    pub name: String,
}

impl LedgerArgs {
    /// Open every ledger named: `--ledger`, else the sink's of the config.
    pub fn open(&self) -> anyhow::Result<Ledgers> {
        if !self.ledgers.is_empty() {
            let readers = self
                .ledgers
                .iter()
                .map(|path| {
                    Reader::open(path)
                        .map(Source::Disk)
                        .map_err(anyhow::Error::msg)
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let name = self
                .ledgers
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return Ok(Ledgers { readers, name });
        }
        let sink = load_sink(&self.config, self.sink.as_deref(), MissingVars::Placeholder)?;
        let path = sink.component.path();
        let data_dir = sink.pipeline.data_dir.as_deref();
        if !sink.settings.ledger.is_enabled(data_dir) {
            bail!(
                "{path} keeps no ledger: {}",
                if data_dir.is_none() {
                    "the config sets no data_dir and no ledger.store = \"nats_kv\" (set one, or pass --ledger DIR)"
                } else {
                    "its ledger.enabled is false"
                }
            );
        }
        let ledger = &sink.settings.ledger;
        let reader = match ledger.store {
            LedgerStore::Disk => {
                let dir =
                    LedgerConfig::dir(data_dir, &sink.component.id).map_err(anyhow::Error::msg)?;
                Source::Disk(Reader::open(&dir).map_err(|e| anyhow::anyhow!("{path}: {e}"))?)
            }
            LedgerStore::NatsKv => Source::NatsKv(Box::new(
                KvReader::open(ledger).map_err(|e| anyhow::anyhow!("{path}.ledger: {e}"))?,
            )),
        };
        Ok(Ledgers {
            readers: vec![reader],
            name: path,
        })
    }
}

impl Ledgers {
    /// Every event held under `id` in any of the ledgers, oldest first.
    pub fn find(&self, id: &str) -> anyhow::Result<Vec<Found>> {
        Ok(self.find_many(&[id])?.remove(id).unwrap_or_default())
    }

    /// [`Ledgers::find`] for many ids, reading each ledger once: each id found, with its
    /// events oldest first (an id never seen is not in the map).
    pub fn find_many(&self, ids: &[&str]) -> anyhow::Result<HashMap<String, Vec<Found>>> {
        let mut found: HashMap<String, Vec<Found>> = HashMap::new();
        for reader in &self.readers {
            for (id, events) in reader.find_many(ids).map_err(anyhow::Error::msg)? {
                found.entry(id).or_default().extend(events);
            }
        }
        if self.readers.len() > 1 {
            for events in found.values_mut() {
                events.sort_by_key(|f| f.record.at_ms);
            }
        }
        Ok(found)
    }

    /// How many records they hold, and the oldest time.
    pub fn summary(&self) -> anyhow::Result<(u64, Option<i64>)> {
        let mut total = 0;
        let mut oldest: Option<i64> = None;
        for reader in &self.readers {
            let (n, first) = reader.summary().map_err(anyhow::Error::msg)?;
            total += n;
            oldest = match (oldest, first) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok((total, oldest))
    }
}

/// A Unix-milliseconds time as RFC 3339, UTC.
pub fn time(at_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at_ms).map_or_else(
        || format!("{at_ms} ms"),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

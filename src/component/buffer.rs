//! The `buffer` table every sink takes, as in Vector: where a sink's events wait between its
//! inputs and the sink, and what happens when that place is full. The settings live here, below
//! every sink; `crate::buffers` implements them.
//!
//! - `type = "memory"` (default): a bounded queue in front of the sink, `max_events` deep. Lost
//!   at a crash; the sources that acknowledged nothing yet answer their senders with an error,
//!   so the senders retry.
//! - `type = "disk"`: events are written to a store under `data_dir` and fsync'd before their
//!   sources acknowledge them; a restart sends what was not yet delivered (at least once).
//!   Bounded by `max_size` bytes.
//!
//! `when_full` says what happens when the bound is reached: `"block"` (wait, pushing back on the
//! sources) or `"drop_newest"` (discard the incoming batch, counted in
//! `buffer_discarded_events_total`).

use serde::Deserialize;

/// The `buffer` table of a sink.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// Where the events wait.
    #[serde(default, rename = "type")]
    pub kind: BufferType,
    /// Most events queued (memory buffer).
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// Most bytes stored (disk buffer).
    #[serde(default = "default_max_size")]
    pub max_size: u64,
    /// What to do when the bound is reached.
    #[serde(default)]
    pub when_full: WhenFull,
}

/// Where a sink's events wait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BufferType {
    /// A bounded queue in memory.
    #[default]
    Memory,
    /// A durable store under `data_dir`.
    Disk,
}

/// What a full buffer does with more events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room: the sources slow down (and their senders with them).
    #[default]
    Block,
    /// Discard the batch that does not fit; its events count as dropped.
    DropNewest,
}

fn default_max_events() -> usize {
    10_000
}

/// 256 MiB, as Vector's smallest disk buffer.
fn default_max_size() -> u64 {
    256 * 1024 * 1024
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self {
            kind: BufferType::default(),
            max_events: default_max_events(),
            max_size: default_max_size(),
            when_full: WhenFull::default(),
        }
    }
}

impl BufferConfig {
    /// Problems with the settings, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self.kind {
            BufferType::Memory if self.max_events == 0 => {
                problems.push("buffer.max_events: must be at least 1".to_owned());
            }
            BufferType::Disk if self.max_size < MIN_DISK_SIZE => problems.push(format!(
                "buffer.max_size: must be at least {MIN_DISK_SIZE} bytes (1 MiB)"
            )),
            _ => {}
        }
        problems
    }
}

/// The smallest disk buffer accepted: smaller ones would block on every batch.
pub const MIN_DISK_SIZE: u64 = 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<BufferConfig, toml::de::Error> {
        toml::from_str(toml_text)
    }

    #[test]
    fn defaults_are_a_blocking_memory_queue_of_ten_thousand_events() {
        let c = parse("").unwrap();
        assert_eq!(c, BufferConfig::default());
        assert_eq!(c.kind, BufferType::Memory);
        assert_eq!(c.max_events, 10_000);
        assert_eq!(c.when_full, WhenFull::Block);
        assert!(c.problems().is_empty());
    }

    #[test]
    fn every_setting_parses_and_unknown_ones_are_refused() {
        let c =
            parse("type = \"disk\"\nmax_size = 1073741824\nwhen_full = \"drop_newest\"").unwrap();
        assert_eq!(c.kind, BufferType::Disk);
        assert_eq!(c.max_size, 1 << 30);
        assert_eq!(c.when_full, WhenFull::DropNewest);
        assert!(parse("type = \"tape\"").is_err());
        assert!(parse("when_full = \"overflow\"").is_err());
        assert!(parse("max_bytes = 1").is_err());
    }

    #[test]
    fn bounds_that_cannot_work_are_named() {
        let zero = parse("max_events = 0").unwrap();
        assert_eq!(zero.problems(), ["buffer.max_events: must be at least 1"]);
        let tiny = parse("type = \"disk\"\nmax_size = 1000").unwrap();
        assert!(tiny.problems()[0].starts_with("buffer.max_size: must be at least"));
    }
}

//! How the ledger finds a record by an id without a B-tree entry per id: each commit adds one
//! index block (keyed by the commit's first sequence number) listing a 64-bit hash of every id
//! in it with the record's offset from that number, sorted. A lookup reads every block — a
//! block is 12 bytes an id against the hundreds a record takes, so that is a small fraction of
//! the file — and then only the records a hash points at, where the ids are compared exactly.
//!
//! Why not one entry per id: ids are random strings, so every commit dirtied leaves all over
//! the id tree and rewrote them (most of the ledger thread's time under load, and the reason
//! it slowed delivery by 15–20%); blocks are appended in sequence order, like the records.

use std::collections::HashSet;

/// Bytes of one entry: the id's hash (u64) and the record's offset in the block (u32), both
/// little-endian.
const ENTRY: usize = 12;

/// The hash an id is indexed by. FNV-1a, spelled out here because the file outlives the
/// binary: std's hashers may change between Rust versions, and a changed hash would make
/// every existing block unreadable.
pub fn id_hash(id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The block of one commit, filled as its records are added.
#[derive(Default)]
pub struct BlockBuilder {
    entries: Vec<(u64, u32)>,
    bytes: Vec<u8>,
}

impl BlockBuilder {
    /// Start a new block (the buffers are kept).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// `id` is in the record `offset` records after the block's first.
    pub fn add(&mut self, id: &str, offset: u32) {
        self.entries.push((id_hash(id), offset));
    }

    /// No id was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The block as stored: entries sorted, an id twice in one record once.
    pub fn encode(&mut self) -> &[u8] {
        self.entries.sort_unstable();
        self.entries.dedup();
        self.bytes.clear();
        self.bytes.reserve(self.entries.len() * ENTRY);
        for (hash, offset) in &self.entries {
            self.bytes.extend_from_slice(&hash.to_le_bytes());
            self.bytes.extend_from_slice(&offset.to_le_bytes());
        }
        &self.bytes
    }
}

fn entry(block: &[u8], i: usize) -> (u64, u32) {
    let at = i * ENTRY;
    let hash = u64::from_le_bytes(block[at..at + 8].try_into().expect("8 bytes"));
    let offset = u32::from_le_bytes(block[at + 8..at + ENTRY].try_into().expect("4 bytes"));
    (hash, offset)
}

/// The offsets of the records in `block` that may hold an id hashed into `wanted` (a hash can
/// collide: the caller compares the ids). A block of the wrong length yields nothing.
pub fn candidates<'a>(
    block: &'a [u8],
    wanted: &'a HashSet<u64>,
) -> Box<dyn Iterator<Item = u32> + 'a> {
    if block.len() % ENTRY != 0 {
        return Box::new(std::iter::empty());
    }
    let len = block.len() / ENTRY;
    if wanted.len() <= 4 {
        // A few ids (`explain`): a binary search each.
        Box::new(wanted.iter().flat_map(move |hash| {
            let start = partition_point(len, |i| entry(block, i).0 < *hash);
            (start..len)
                .map(move |i| entry(block, i))
                .take_while(move |(h, _)| h == hash)
                .map(|(_, offset)| offset)
        }))
    } else {
        // Many (`reconcile`): one pass over the block.
        Box::new(
            (0..len)
                .map(move |i| entry(block, i))
                .filter(|(hash, _)| wanted.contains(hash))
                .map(|(_, offset)| offset),
        )
    }
}

/// The first `i` in `0..len` for which `before(i)` is false (`before` true, then false).
fn partition_point(len: usize, before: impl Fn(usize) -> bool) -> usize {
    let (mut low, mut high) = (0, len);
    while low < high {
        let mid = low + (high - low) / 2;
        if before(mid) {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    low
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(ids: &[(&str, u32)]) -> Vec<u8> {
        let mut builder = BlockBuilder::default();
        for (id, offset) in ids {
            builder.add(id, *offset);
        }
        builder.encode().to_vec()
    }

    fn find(block: &[u8], ids: &[&str]) -> Vec<u32> {
        let wanted = ids.iter().map(|id| id_hash(id)).collect();
        let mut found: Vec<u32> = candidates(block, &wanted).collect();
        found.sort_unstable();
        found
    }

    #[test]
    fn the_hash_is_fnv_1a_so_existing_files_stay_readable() {
        // FNV-1a 64's published test vectors.
        assert_eq!(id_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(id_hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(id_hash("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn a_block_finds_every_record_an_id_is_in_by_search_and_by_scan() {
        let mut ids: Vec<(String, u32)> = (0..100).map(|i| (format!("e-{i}"), i / 3)).collect();
        ids.push(("order-7".into(), 2));
        ids.push(("order-7".into(), 30));
        ids.push(("order-7".into(), 30));
        let refs: Vec<(&str, u32)> = ids.iter().map(|(id, o)| (id.as_str(), *o)).collect();
        let block = block(&refs);
        assert_eq!(block.len(), 102 * ENTRY, "the repeated pair is kept once");
        assert_eq!(find(&block, &["e-10"]), [3]);
        assert_eq!(find(&block, &["order-7"]), [2, 30]);
        assert_eq!(find(&block, &["never"]), Vec::<u32>::new());
        let many = ["e-0", "e-1", "e-2", "e-99", "order-7", "never"];
        assert_eq!(find(&block, &many), [0, 0, 0, 2, 30, 33]);
    }

    #[test]
    fn a_damaged_block_yields_nothing() {
        let mut damaged = block(&[("a", 0)]);
        damaged.pop();
        assert!(find(&damaged, &["a"]).is_empty());
    }
}

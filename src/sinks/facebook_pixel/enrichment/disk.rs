//! The `disk` store: profiles in a redb file under `data_dir` (the same embedded store as the
//! disk buffer), loaded at start and written in the background by one thread that commits
//! whatever changes are waiting in one transaction.
//!
//! Orders remembered for AppendValue ([`super::order`]) have a table of their own, so the
//! profiles' table and format stay as they were; a file written before it just gains the table.
//!
//! The folder is created 0700 and the file 0600 before redb opens it ([`crate::state`]): what it
//! holds (hashed keys, but also IP addresses and user agents in clear) is for this user only.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition};

use super::Persist;
use super::order;
use super::profile::{Key, Profile, user_key};
use crate::sinks::facebook_pixel::mapping::OriginalEvent;
use crate::telemetry::ComponentInfo;

/// Store key → encoded profile.
const USERS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("users");
/// Order key → encoded order.
const ORDERS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("orders");

/// A change for the writer: the table, the key, and the encoded value (`None`: remove it).
type Write = (Table, Key, Option<Vec<u8>>);

#[derive(Clone, Copy, Debug)]
enum Table {
    Users,
    Orders,
}

const FILE_NAME: &str = "users.redb";

/// Changes waiting for the writer thread; beyond this, changes are dropped and counted.
const MAX_PENDING: usize = 100_000;

/// Writes changed profiles to the file from a background thread.
pub struct DiskStore {
    changes: Option<mpsc::SyncSender<Write>>,
    component: ComponentInfo,
    writer: Option<std::thread::JoinHandle<()>>,
    /// The orders read at open, until [`Persist::loaded_orders`] takes them.
    orders: Vec<(Key, OriginalEvent)>,
}

impl Drop for DiskStore {
    /// Write what is still queued and close the file, so that a clean stop loses nothing and
    /// the next process (or `fbpixel enrichment forget`) can open it at once.
    fn drop(&mut self) {
        self.changes.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The store's file in `dir`.
pub fn file_path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

fn open_database(dir: &Path) -> Result<(Database, PathBuf), String> {
    crate::state::create_dir(dir)
        .map_err(|e| format!("enrichment: cannot create {}: {e}", dir.display()))?;
    let path = file_path(dir);
    // redb would create a missing file with the umask's mode (0644): create it 0600 first, and
    // redb opens it as it is.
    crate::state::create_file(&path)
        .map_err(|e| format!("enrichment: cannot create {}: {e}", path.display()))?;
    let db = Database::create(&path).map_err(|e| match e {
        DatabaseError::DatabaseAlreadyOpen => format!(
            "enrichment: {} is in use by another fbpixel process (stop it first, or give each instance its own data_dir)",
            path.display()
        ),
        e => format!("enrichment: cannot open {}: {e}", path.display()),
    })?;
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    txn.open_table(USERS).map_err(|e| e.to_string())?;
    txn.open_table(ORDERS).map_err(|e| e.to_string())?;
    txn.commit().map_err(|e| e.to_string())?;
    Ok((db, path))
}

impl DiskStore {
    /// Open the store in `dir`: the profiles seen within `ttl` seconds of `now`, oldest
    /// first (expired and unreadable ones are deleted), and the writer for changes. The orders
    /// still within Meta's window of `now` are read too, and handed over by
    /// [`Persist::loaded_orders`]; the others are deleted.
    pub fn open(
        dir: &Path,
        now: i64,
        ttl: i64,
        component: ComponentInfo,
    ) -> Result<(DiskStore, Vec<(Key, Profile)>), String> {
        let (db, path) = open_database(dir)?;
        let fail = |e: &dyn std::fmt::Display| format!("enrichment: {}: {e}", path.display());
        let mut profiles = Vec::new();
        let mut orders = Vec::new();
        let mut stale = Vec::new();
        {
            let txn = db.begin_read().map_err(|e| fail(&e))?;
            let table = txn.open_table(USERS).map_err(|e| fail(&e))?;
            for entry in table.iter().map_err(|e| fail(&e))? {
                let (key, value) = entry.map_err(|e| fail(&e))?;
                match Profile::decode(value.value()) {
                    Some(p) if !p.is_expired(now, ttl) => profiles.push((*key.value(), p)),
                    _ => stale.push((Table::Users, *key.value())),
                }
            }
            let table = txn.open_table(ORDERS).map_err(|e| fail(&e))?;
            for entry in table.iter().map_err(|e| fail(&e))? {
                let (key, value) = entry.map_err(|e| fail(&e))?;
                match order::decode(value.value()) {
                    Some(o) if order::fresh(&o, now) => orders.push((*key.value(), o)),
                    _ => stale.push((Table::Orders, *key.value())),
                }
            }
        }
        profiles.sort_by_key(|(_, p)| p.last_seen());
        orders.sort_by_key(|(_, o)| o.sent_at);
        // Bounded: a file that cannot keep up loses changes (counted), not memory.
        let (changes, rx) = mpsc::sync_channel(MAX_PENDING);
        for (table, key) in stale {
            let _ = changes.try_send((table, key, None));
        }
        let writer_component = component.clone();
        let writer = std::thread::Builder::new()
            .name("fbpixel-enrichment".into())
            .spawn(move || write(db, path, rx, writer_component))
            .map_err(|e| format!("enrichment: cannot start its writer: {e}"))?;
        let store = DiskStore {
            changes: Some(changes),
            writer: Some(writer),
            component,
            orders,
        };
        Ok((store, profiles))
    }
}

impl DiskStore {
    fn queue(&self, change: Write) {
        if let Some(changes) = &self.changes
            && changes.try_send(change).is_err()
        {
            super::store_error(&self.component);
        }
    }
}

impl Persist for DiskStore {
    fn save(&mut self, key: &Key, profile: Option<&Profile>) {
        self.queue((Table::Users, *key, profile.map(Profile::encode)));
    }

    fn save_order(&mut self, key: &Key, order: &OriginalEvent) {
        self.queue((Table::Orders, *key, Some(order::encode(order))));
    }

    /// The file holds what memory holds: past the window or out of room, an order goes from
    /// both, so the file stays bounded however long the process runs.
    fn drop_order(&mut self, key: &Key) {
        self.queue((Table::Orders, *key, None));
    }

    fn loaded_orders(&mut self) -> Vec<(Key, OriginalEvent)> {
        std::mem::take(&mut self.orders)
    }
}

fn write(db: Database, path: PathBuf, changes: mpsc::Receiver<Write>, component: ComponentInfo) {
    while let Ok(first) = changes.recv() {
        let mut batch = vec![first];
        batch.extend(changes.try_iter());
        let result = (|| -> Result<(), redb::Error> {
            let txn = db.begin_write()?;
            {
                let mut users = txn.open_table(USERS)?;
                let mut orders = txn.open_table(ORDERS)?;
                for (table, key, value) in &batch {
                    let table = match table {
                        Table::Users => &mut users,
                        Table::Orders => &mut orders,
                    };
                    match value {
                        Some(value) => {
                            table.insert(key, value.as_slice())?;
                        }
                        None => {
                            table.remove(key)?;
                        }
                    }
                }
            }
            txn.commit()?;
            Ok(())
        })();
        if let Err(e) = result {
            super::store_error(&component);
            tracing::error!(
                component = %component.id,
                "enrichment: cannot write {}: {e}; {} changes lost (the profiles and orders stay in memory)",
                path.display(),
                batch.len()
            );
        }
    }
}

/// Erase a user (`userId`) and every profile linked to it from the store in `dir`, for
/// `fbpixel enrichment forget`. Returns how many profiles were removed.
pub fn forget(dir: &Path, user_id: &str) -> Result<usize, String> {
    let (db, path) = open_database(dir)?;
    let fail = |e: &dyn std::fmt::Display| format!("enrichment: {}: {e}", path.display());
    let mut links = Vec::new();
    {
        let txn = db.begin_read().map_err(|e| fail(&e))?;
        let table = txn.open_table(USERS).map_err(|e| fail(&e))?;
        for entry in table.iter().map_err(|e| fail(&e))? {
            let (key, value) = entry.map_err(|e| fail(&e))?;
            let link = Profile::decode(value.value()).and_then(|p| p.link_target().copied());
            links.push((*key.value(), link));
        }
    }
    let txn = db.begin_write().map_err(|e| fail(&e))?;
    let mut removed = 0;
    {
        let mut table = txn.open_table(USERS).map_err(|e| fail(&e))?;
        for key in super::linked_to(user_key(user_id), &links) {
            if table.remove(&key).map_err(|e| fail(&e))?.is_some() {
                removed += 1;
            }
        }
    }
    txn.commit().map_err(|e| fail(&e))?;
    Ok(removed)
}

//! [`SledStore`]: the [`Store`] on sled 0.34 plus an append-only transaction log.
//!
//! Layout: this file holds the store's state, opening and the sled and log primitives;
//! `index` the in-memory index over the log, `disk_sync` the log syncs, the physical flush
//! and the `fsync` step of power-loss durability, `store_impl` the [`Store`] operations.

mod disk_sync;
mod index;
mod store_impl;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};

#[cfg(doc)]
use dag_core::store::Store;
use dag_core::store::{Result, StoreError};
use dag_core::{Digest, MilestoneIndex, NetworkId, TxId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::{Batch, IVec, Tree};

use super::group_commit::GroupCommit;
use super::txlog::TxLog;
use disk_sync::DiskSync;
use index::{Index, Slot};
use node_proto::layout::{self, Frame, TxEntryHeader, TX_ENTRY_HEADER_LEN};

/// What [`Store::flush`] makes the data survive (see the [module](super) docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Writes reach the kernel (the log by `pwrite`, sled by its flush's `pwrite` +
    /// `sync_file_range`): survives a crash of the process, not reliably a power loss or
    /// kernel crash.
    ProcessCrash,
    /// Also `fdatasync` of the transaction log and of sled's log, and `fsync` of new files
    /// and of the database directory: survives a power loss too.
    #[default]
    PowerLoss,
}

/// The ledger header stored under [`layout::LEDGER_KEY`].
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct LedgerHeader {
    network_id: NetworkId,
    supply: u64,
    confirmed_index: MilestoneIndex,
    digest: Digest,
}

/// State only log writers touch, behind [`SledStore::log_writer`].
#[derive(Debug)]
struct Writer {
    /// Where the next log frame goes.
    end: u64,
}

/// A [`Store`] on an embedded sled database and an append-only transaction log.
///
/// Transactions' bytes go to the log, one checksummed frame per `put_transactions` batch,
/// and an in-memory index maps ids and payload ids to them; everything else (ledger,
/// milestones, confirmations) lives in one sled tree ([`layout`]), so every sled write is
/// one `apply_batch`: atomic for concurrent readers and for a restart after a crash.
/// Log writers are serialised by one mutex and sled writers by another, so storing
/// transactions never waits for a milestone being written; readers wait for neither. [`Store::flush`] is the
/// durability point, shared between concurrent callers (group commit);
/// [`Store::for_each_transaction`] visits transactions **in the order they were first
/// stored**, so a node reloading its Tangle sees parents before children as it did live.
/// Cloning is not offered: share it in an `Arc`.
///
/// Dropping the store flushes it (best effort, errors ignored); call [`Store::flush`]
/// first to see errors.
pub struct SledStore {
    db: sled::Db,
    tree: Tree,
    log: TxLog,
    index: RwLock<Index>,
    /// Serialises log appends.
    log_writer: Mutex<Writer>,
    /// Serialises sled batches (each reads what it is about to change).
    sled_writer: Mutex<()>,
    /// End of the last log append, and the end the last completed log sync covered (held
    /// while syncing, so concurrent callers share one `fdatasync`).
    log_written: AtomicU64,
    log_synced: Mutex<u64>,
    /// Whether sled has writes not yet made durable.
    sled_dirty: AtomicBool,
    group: GroupCommit,
    sync: Option<DiskSync>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("durability", &self.durability())
            .field("physical_flushes", &self.group.physical_flushes())
            .finish_non_exhaustive()
    }
}

fn backend(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Corruption { .. } => StoreError::Corrupt(e.to_string()),
        other => StoreError::Backend(other.to_string()),
    }
}

/// Encodes a MessagePack record. Our plain structs always serialise; should one not, the
/// batch fails with a backend error instead of writing a bad value.
fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    rmp_serde::to_vec(value).map_err(|e| StoreError::Backend(format!("encoding a record: {e}")))
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    rmp_serde::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// sled's page cache, bounded below sled's 1 GiB default so a small device's node stays
/// small; the hot reads are served by the in-memory Tangle, ledger and index.
pub(crate) const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// The sled configuration: sled's defaults but a bounded page cache. `flush_every_ms(None)`
/// is left alone on purpose: it would also stop sled's log cleaning, which runs only in
/// that background flusher, so sled's log would grow without bound.
fn config() -> sled::Config {
    sled::Config::new().cache_capacity(CACHE_BYTES)
}

impl SledStore {
    /// Opens (or creates) the database in directory `path`, with
    /// [`Durability::PowerLoss`].
    pub fn open(path: impl AsRef<Path>) -> Result<SledStore> {
        Self::open_with(path, Durability::PowerLoss)
    }

    /// Opens (or creates) the database in directory `path` with the given durability.
    ///
    /// Fails with [`StoreError::Corrupt`] on a database of another format (for instance
    /// one written by an earlier version, which kept transactions in sled), and with
    /// [`StoreError::Backend`] if another process has it open.
    pub fn open_with(path: impl AsRef<Path>, durability: Durability) -> Result<SledStore> {
        let path = path.as_ref();
        let db = open_db(path)?;
        let tree = db.open_tree(layout::TREE).map_err(backend)?;
        let new = check_format(&db, &tree)?;
        let log_path = path.join(layout::LOG_FILE);
        if new && log_path.exists() {
            return Err(StoreError::Corrupt(format!(
                "{} exists without its database",
                log_path.display()
            )));
        }
        let durable = durability == Durability::PowerLoss;
        let mut index = Index::default();
        let opened = TxLog::open(&log_path, new, durable, &mut |at, frame| {
            match frame {
                Frame::Transactions(entries) => index.add_frame(at, &entries),
                Frame::Solid(ids) => index.mark_solid(&ids),
            }
            Ok(())
        })
        .map_err(|e| match e {
            StoreError::Backend(m) if !new && !log_path.exists() => StoreError::Corrupt(format!(
                "the transaction log {} is missing: {m}",
                log_path.display()
            )),
            e => e,
        })?;
        if opened.dropped > 0 {
            tracing::warn!(
                bytes = opened.dropped,
                "the transaction log ended in a torn write (a crash during an append); \
                 it was cut back to its last complete batch"
            );
        }
        // sled and the log exist now: make the files durable before anything relies on
        // them (the empty name set differs from any listing, so the directory is synced).
        let sync = if durable {
            Some(DiskSync::open(path)?)
        } else {
            None
        };
        let store = SledStore {
            db,
            tree,
            log: opened.log,
            index: RwLock::new(index),
            log_writer: Mutex::new(Writer { end: opened.end }),
            sled_writer: Mutex::new(()),
            log_written: AtomicU64::new(opened.end),
            log_synced: Mutex::new(opened.end),
            sled_dirty: AtomicBool::new(false),
            group: GroupCommit::default(),
            sync,
        };
        store.load_confirmations()?;
        Ok(store)
    }

    /// A database in a temporary location, deleted when the store is dropped (tests).
    /// Flushing it skips the `fsync` step: there is nothing to keep.
    pub fn open_temporary() -> Result<SledStore> {
        let db = config().temporary(true).open().map_err(backend)?;
        let tree = db.open_tree(layout::TREE).map_err(backend)?;
        check_format(&db, &tree)?;
        let opened = TxLog::temporary()?;
        Ok(SledStore {
            db,
            tree,
            log: opened.log,
            index: RwLock::new(Index::default()),
            log_writer: Mutex::new(Writer { end: opened.end }),
            sled_writer: Mutex::new(()),
            log_written: AtomicU64::new(opened.end),
            log_synced: Mutex::new(opened.end),
            sled_dirty: AtomicBool::new(false),
            group: GroupCommit::default(),
            sync: None,
        })
    }

    /// The durability this store's flush gives.
    pub fn durability(&self) -> Durability {
        if self.sync.is_some() {
            Durability::PowerLoss
        } else {
            Durability::ProcessCrash
        }
    }

    /// Number of physical flushes run so far; with concurrent callers of
    /// [`Store::flush`] it grows slower than the number of calls (group commit).
    pub fn physical_flushes(&self) -> u64 {
        self.group.physical_flushes()
    }

    /// Bytes the database occupies on disk: sled's count plus the transaction log.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk().map_err(backend)? + self.log.size()?)
    }

    fn log_writer(&self) -> MutexGuard<'_, Writer> {
        // The writer state is only changed after a write succeeded, in one assignment, so
        // a poisoned lock still holds consistent data.
        self.log_writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sled_writer(&self) -> MutexGuard<'_, ()> {
        self.sled_writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn raw(&self, key: &[u8]) -> Result<Option<IVec>> {
        self.tree.get(key).map_err(backend)
    }

    fn get<T: DeserializeOwned>(&self, what: &str, key: &[u8]) -> Result<Option<T>> {
        match self.raw(key)? {
            None => Ok(None),
            Some(v) => decode(what, &v).map(Some),
        }
    }

    fn ledger_header(&self) -> Result<Option<LedgerHeader>> {
        self.get("ledger header", layout::LEDGER_KEY)
    }

    fn apply(&self, batch: Batch) -> Result<()> {
        self.tree.apply_batch(batch).map_err(backend)?;
        self.sled_dirty.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Appends one frame body to the log, as a frame.
    fn append(&self, w: &mut Writer, mut buf: Vec<u8>) -> Result<u64> {
        // `buf` starts with room for the frame header.
        let header = layout::frame_header(&buf[layout::FRAME_HEADER_LEN..]);
        buf[..layout::FRAME_HEADER_LEN].copy_from_slice(&header);
        let at = w.end;
        self.log.append(at, &buf)?;
        w.end = at + buf.len() as u64;
        self.log_written.fetch_max(w.end, Ordering::SeqCst);
        Ok(at + layout::FRAME_HEADER_LEN as u64)
    }

    /// The log entry of a transaction: its fixed header, checked against the id.
    fn entry_header(&self, id: &TxId, slot: &Slot) -> Result<TxEntryHeader> {
        let mut buf = [0u8; TX_ENTRY_HEADER_LEN];
        self.log.read_at(slot.offset, &mut buf)?;
        let h = layout::decode_tx_entry_header(&buf)?;
        if h.id != *id || h.len != slot.len {
            return Err(StoreError::Corrupt(format!(
                "the log entry of {id} holds another transaction"
            )));
        }
        Ok(h)
    }
}

/// Opens sled at `path`. sled releases its file lock when its last background write ends,
/// which can be a moment after a store of this process was dropped, so a lock held
/// elsewhere is retried for up to two seconds before it is reported.
fn open_db(path: &Path) -> Result<sled::Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match config().path(path).open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => return r.map_err(backend),
        }
    }
}

/// Checks the format key, writing it into a new database. Returns whether the database is
/// new.
fn check_format(db: &sled::Db, tree: &Tree) -> Result<bool> {
    match tree.get(layout::FORMAT_KEY).map_err(backend)? {
        Some(v) if v.as_ref() == [layout::FORMAT] => Ok(false),
        Some(v) => Err(StoreError::Corrupt(format!(
            "database format {v:?}, this version reads format {} (start from an empty data \
             directory and sync from peers)",
            layout::FORMAT
        ))),
        None => {
            // Only the default tree and ours may exist in a database we create.
            let foreign = db
                .tree_names()
                .into_iter()
                .any(|n| n != b"__sled__default" && n != layout::TREE.as_bytes());
            if foreign || !tree.is_empty() {
                return Err(StoreError::Corrupt(
                    "not a database of this format (written by an earlier version?)".into(),
                ));
            }
            tree.insert(layout::FORMAT_KEY, &[layout::FORMAT][..])
                .map_err(backend)?;
            Ok(true)
        }
    }
}

//! [`SledStore`]: the [`Store`] on sled 0.34 plus an append-only transaction log.
//!
//! Layout: this file holds the store's state, opening and the sled and log primitives;
//! `index` the in-memory index over the log, `disk_sync` the log syncs, the physical flush
//! and the `fsync` step of power-loss durability, `store_impl` the [`Store`] operations,
//! `prune` pruning (tombstones, the sled clean-up, deleting log segments) and `recovery`
//! what opening does after the log scan (confirmations, a prune's clean-up redone).

mod accounts;
#[cfg(test)]
mod accounts_tests;
mod disk_sync;
mod index;
mod prune;
mod recovery;
mod store_impl;
#[cfg(test)]
mod tests;
mod upgrade;

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
use super::txlog::{LogPos, Segment, TxLog, MAX_SEGMENT_BYTES};
use accounts::AccountTable;
use disk_sync::DiskSync;
use index::{Index, Slot};
use node_proto::layout::{self, TxEntryHeader, LOG_MAGIC, TX_ENTRY_HEADER_LEN};

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

/// Default size at which the transaction log moves on to a new segment file (an archive
/// node's: few files, each kept open).
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Segment size of a node that prunes: its disk use moves in steps of one segment, so a
/// smaller one keeps the data directory within a few percent of the window it holds (a
/// 64 MiB step was ±7% of a 500 MB window), and a disk target can be met down to a lower
/// floor. At 30,000 payments/s (about 10 MB/s of log) a new file every ~1.6 s.
pub const PRUNED_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

/// How [`SledStore::open_with_options`] opens a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// What a flush makes the data survive.
    pub durability: Durability,
    /// The transaction log starts a new segment file once the active one holds this many
    /// bytes (a segment exceeds it by at most one frame). Pruning deletes whole segments,
    /// so smaller segments give disk space back sooner, at the cost of more files.
    /// 1 ..= 256 GiB; default [`DEFAULT_SEGMENT_BYTES`].
    pub segment_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            durability: Durability::PowerLoss,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }
}

impl StoreOptions {
    /// These options with `durability`.
    pub fn durability(self, durability: Durability) -> Self {
        StoreOptions { durability, ..self }
    }

    /// These options with log segments of `bytes`.
    pub fn segment_bytes(self, bytes: u64) -> Self {
        StoreOptions {
            segment_bytes: bytes,
            ..self
        }
    }
}

/// The ledger header stored under [`layout::LEDGER_KEY`].
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct LedgerHeader {
    network_id: NetworkId,
    supply: u64,
    confirmed_index: MilestoneIndex,
    digest: Digest,
}

/// The last prune as stored under [`layout::PRUNE_KEY`] by its clean-up: where its
/// tombstone's body is in the log (tombstones after it are clean-ups still to redo on
/// open), the pruned milestone and the entry points.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PruneHeader {
    segment: u64,
    offset: u64,
    milestone: MilestoneIndex,
    /// Format 4 only: the entry points. Format 5 leaves them out (they are in the
    /// tombstone frame at `segment`/`offset`, which stays until a later prune's header
    /// replaces this one): at 10,000 payments/s they are about 300 KB, which made the sled
    /// node holding this key a blob file rewritten at every prune.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    entry_points: Vec<(TxId, MilestoneIndex)>,
}

/// State only log writers touch, behind [`SledStore::log_writer`].
#[derive(Debug)]
struct Writer {
    /// Id of the active segment.
    segment: u64,
    /// Where the next log frame goes in it.
    end: u64,
}

/// A [`Store`] on an embedded sled database and an append-only, segmented transaction log.
///
/// Transactions' bytes go to the log, one checksummed frame per `put_transactions` batch,
/// and an in-memory index maps ids and payload ids to them; everything else (ledger,
/// milestones, confirmations) lives in one sled tree ([`layout`]), so every sled write is
/// one `apply_batch`: atomic for concurrent readers and for a restart after a crash.
/// Log writers are serialised by one mutex and sled writers by another, so storing
/// transactions never waits for a milestone being written; readers wait for neither.
/// [`Store::prune`] commits with a tombstone frame in the log, then cleans up sled and
/// deletes log segments left without live transactions (see the [module](crate::store)
/// docs). [`Store::flush`] is the durability point, shared between concurrent callers
/// (group commit);
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
    /// The account table: a checkpoint file and the changes since (taken under the sled
    /// writer lock by whoever changes it).
    accounts: RwLock<AccountTable>,
    /// Serialises log appends (and segment changes).
    log_writer: Mutex<Writer>,
    /// Serialises sled batches (each reads what it is about to change). Taken before
    /// `log_writer` by whoever takes both (a prune).
    sled_writer: Mutex<()>,
    /// Bytes appended to the log since it was opened, and how many of them the last
    /// completed log sync covered (held while syncing, so concurrent callers share one
    /// `fdatasync`).
    log_written: AtomicU64,
    log_synced: Mutex<u64>,
    /// Whether sled has writes not yet made durable.
    sled_dirty: AtomicBool,
    group: GroupCommit,
    sync: Option<DiskSync>,
    /// The log starts a new segment past this size.
    segment_bytes: u64,
    /// The sled clean-up of a committed prune that failed to apply: applied before
    /// anything else a prune does (it is also redone from the log on open).
    unapplied: Mutex<Option<prune::Cleanup>>,
    #[cfg(test)]
    crash_at: Mutex<Option<prune::CrashPoint>>,
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
        Self::open_with_options(path, StoreOptions::default())
    }

    /// Opens (or creates) the database in directory `path` with the given durability.
    pub fn open_with(path: impl AsRef<Path>, durability: Durability) -> Result<SledStore> {
        Self::open_with_options(path, StoreOptions::default().durability(durability))
    }

    /// Opens (or creates) the database in directory `path`.
    ///
    /// Fails with [`StoreError::Corrupt`] on a database of another format (for instance
    /// one written by an earlier version, which kept transactions in sled), and with
    /// [`StoreError::Backend`] if another process has it open. A database of the previous
    /// format ([`layout::FORMAT_SINGLE_LOG`]: one log file, never pruned) is upgraded.
    /// Opening replays the log (tombstones included), redoes the sled clean-up of a prune
    /// a crash interrupted, and deletes log segments left with no live entry.
    pub fn open_with_options(path: impl AsRef<Path>, options: StoreOptions) -> Result<SledStore> {
        let path = path.as_ref();
        check_segment_bytes(options.segment_bytes)?;
        let db = open_db(path)?;
        let tree = db.open_tree(layout::TREE).map_err(backend)?;
        let durable = options.durability == Durability::PowerLoss;
        let new = check_format(&db, &tree, path, durable)?;
        let log = TxLog::open(path, new, durable)?;
        let mut index = Index::new(log.first_id(), log.segment_count());
        // An entry is 77 bytes plus a transaction of about 250: an estimate from the log's
        // size (pruned entries still in it make it an overestimate, given back by the
        // index's periodic shrink).
        index.reserve(usize::try_from(log.size()? / 330).unwrap_or(0));
        let mut accounts = AccountTable::open(Some(path), durable)?;
        let checkpoint = accounts.checkpoint_milestone();
        index.accounts_checkpoint = checkpoint.unwrap_or(0);
        let pruned = get::<PruneHeader>(&tree, "prune state", layout::PRUNE_KEY)?;
        for item in tree.scan_prefix([layout::PAYLOAD_BASE]) {
            let (k, v) = item.map_err(backend)?;
            let payload = dag_core::PayloadId(layout::key_id("payload base", &k)?);
            index.bases.insert(payload, decode("payload base", &v)?);
        }
        let mut replay =
            recovery::Replay::new(pruned.as_ref().map(|h| (h.segment, h.offset)), checkpoint);
        let scanned =
            log.scan(&mut |segment, at, frame| replay.frame(&mut index, &log, segment, at, frame))?;
        if let Some(h) = pruned {
            // The entry points of the last prune are those of its tombstone (a format-4
            // header holds them too).
            let entry_points = match replay.durable_entry_points.take() {
                Some(points) => points,
                None if !h.entry_points.is_empty() => h.entry_points,
                None => {
                    return Err(StoreError::Corrupt(format!(
                        "the tombstone of the last prune (log segment {}, offset {}) is \
                         missing from the log",
                        h.segment, h.offset
                    )))
                }
            };
            index.pruned = Some(dag_core::store::PruneState {
                milestone: h.milestone,
                entry_points,
            });
        }
        if scanned.dropped > 0 {
            tracing::warn!(
                bytes = scanned.dropped,
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
        let confirmed = get::<LedgerHeader>(&tree, "ledger header", layout::LEDGER_KEY)?
            .map(|h| h.confirmed_index);
        accounts.replay(std::mem::take(&mut replay.accounts), confirmed)?;
        let segment = log.active().id;
        let store = SledStore::assemble(
            db,
            tree,
            log,
            index,
            accounts,
            segment,
            scanned.end,
            sync,
            options,
        );
        store.recover(replay)?;
        Ok(store)
    }

    /// A database in a temporary location, deleted when the store is dropped (tests).
    /// Flushing it skips the `fsync` step: there is nothing to keep.
    pub fn open_temporary() -> Result<SledStore> {
        Self::open_temporary_with(StoreOptions::default())
    }

    /// [`SledStore::open_temporary`] with options (their durability is ignored).
    pub fn open_temporary_with(options: StoreOptions) -> Result<SledStore> {
        check_segment_bytes(options.segment_bytes)?;
        let db = config().temporary(true).open().map_err(backend)?;
        let tree = db.open_tree(layout::TREE).map_err(backend)?;
        if tree.get(layout::FORMAT_KEY).map_err(backend)?.is_none() {
            tree.insert(layout::FORMAT_KEY, &[layout::FORMAT][..])
                .map_err(backend)?;
        }
        let log = TxLog::temporary()?;
        let index = Index::new(0, 1);
        let accounts = AccountTable::open(None, false)?;
        let end = LOG_MAGIC.len() as u64;
        Ok(SledStore::assemble(
            db, tree, log, index, accounts, 0, end, None, options,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        db: sled::Db,
        tree: Tree,
        log: TxLog,
        index: Index,
        accounts: AccountTable,
        segment: u64,
        end: u64,
        sync: Option<DiskSync>,
        options: StoreOptions,
    ) -> SledStore {
        SledStore {
            db,
            tree,
            log,
            index: RwLock::new(index),
            accounts: RwLock::new(accounts),
            log_writer: Mutex::new(Writer { segment, end }),
            sled_writer: Mutex::new(()),
            log_written: AtomicU64::new(0),
            log_synced: Mutex::new(0),
            sled_dirty: AtomicBool::new(false),
            group: GroupCommit::default(),
            sync,
            segment_bytes: options.segment_bytes,
            unapplied: Mutex::new(None),
            #[cfg(test)]
            crash_at: Mutex::new(None),
        }
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

    /// Bytes the database occupies on disk: sled's count, the transaction log and the
    /// account checkpoint.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk().map_err(backend)?
            + self.log.size()?
            + self.read_accounts().file_bytes())
    }

    fn read_accounts(&self) -> std::sync::RwLockReadGuard<'_, AccountTable> {
        // Changed in single steps after each write succeeded: a poisoned lock is consistent.
        self.accounts.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_accounts(&self) -> std::sync::RwLockWriteGuard<'_, AccountTable> {
        self.accounts.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of live transaction log segments (files, for a store on disk).
    pub fn log_segments(&self) -> usize {
        self.log.segment_count()
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
        get(&self.tree, what, key)
    }

    fn ledger_header(&self) -> Result<Option<LedgerHeader>> {
        self.get("ledger header", layout::LEDGER_KEY)
    }

    fn apply(&self, batch: Batch) -> Result<()> {
        self.tree.apply_batch(batch).map_err(backend)?;
        self.sled_dirty.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Appends one frame body to the log, as a frame, moving on to a new segment first if
    /// the active one is full. Returns where the body went.
    fn append(&self, w: &mut Writer, mut buf: Vec<u8>) -> Result<LogPos> {
        // `buf` starts with room for the frame header.
        let header = layout::frame_header(&buf[layout::FRAME_HEADER_LEN..]);
        buf[..layout::FRAME_HEADER_LEN].copy_from_slice(&header);
        if w.end >= self.segment_bytes && w.end > LOG_MAGIC.len() as u64 {
            self.roll(w)?;
        }
        let at = w.end;
        self.log.active().append(at, &buf)?;
        w.end = at + buf.len() as u64;
        self.log_written
            .fetch_add(buf.len() as u64, Ordering::SeqCst);
        Ok(LogPos::new(w.segment, at + layout::FRAME_HEADER_LEN as u64))
    }

    /// Starts a new active segment. With power-loss durability the full one is synced
    /// first (so a log sync only ever needs the active segment) and the new file is made
    /// durable.
    fn roll(&self, w: &mut Writer) -> Result<()> {
        if self.sync.is_some() {
            self.log.active().sync()?;
        }
        let next = w.segment + 1;
        let seg = self.log.create_segment(next)?;
        {
            let mut index = self.write_index();
            self.log.push(seg);
            index.push_segment();
        }
        *w = Writer {
            segment: next,
            end: LOG_MAGIC.len() as u64,
        };
        Ok(())
    }

    /// The log entry of a transaction: its fixed header, checked against the id.
    fn entry_header(id: &TxId, slot: &Slot, seg: &Segment) -> Result<TxEntryHeader> {
        let mut buf = [0u8; TX_ENTRY_HEADER_LEN];
        seg.read_at(slot.pos.offset(), &mut buf)?;
        let h = layout::decode_tx_entry_header(&buf)?;
        if h.id != *id || h.len != slot.len {
            return Err(StoreError::Corrupt(format!(
                "the log entry of {id} holds another transaction"
            )));
        }
        Ok(h)
    }
}

fn check_segment_bytes(bytes: u64) -> Result<()> {
    if bytes == 0 || bytes > MAX_SEGMENT_BYTES {
        return Err(StoreError::Backend(format!(
            "log segment size {bytes} is not within 1 ..= {MAX_SEGMENT_BYTES} bytes"
        )));
    }
    Ok(())
}

fn get<T: DeserializeOwned>(tree: &Tree, what: &str, key: &[u8]) -> Result<Option<T>> {
    match tree.get(key).map_err(backend)? {
        None => Ok(None),
        Some(v) => decode(what, &v).map(Some),
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

/// Checks the format key, writing it into a new database and upgrading a database of an
/// earlier format (2: a single-file log is segment 0 of a log that was never pruned; 2 and
/// 3: the accounts move from sled to a checkpoint file; 2 to 4: confirmation chunks are
/// re-split, see [`upgrade`]). Returns whether the database is new.
fn check_format(db: &sled::Db, tree: &Tree, dir: &Path, sync: bool) -> Result<bool> {
    match tree.get(layout::FORMAT_KEY).map_err(backend)? {
        Some(v) if v.as_ref() == [layout::FORMAT] => Ok(false),
        Some(v)
            if v.as_ref() == [layout::FORMAT_SINGLE_LOG]
                || v.as_ref() == [layout::FORMAT_SEGMENTED]
                || v.as_ref() == [layout::FORMAT_ACCOUNTS_FILE] =>
        {
            if v.as_ref() != [layout::FORMAT_ACCOUNTS_FILE] {
                upgrade::upgrade_accounts(db, tree, dir, sync)?;
            }
            upgrade::upgrade_chunks(db, tree)?;
            tracing::info!(from = v[0], to = layout::FORMAT, "database format upgraded");
            Ok(false)
        }
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

//! [`SledStore`]: the [`Store`] on sled 0.34 plus an append-only transaction log.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use dag_core::store::{
    next_payload_status, MilestoneBatch, MilestoneRecord, PayloadRecord, PayloadStatus, Result,
    Store, StoreError, TxEntry, TxMeta,
};
use dag_core::{
    Account, Address, Channel, ChannelId, Digest, LedgerState, MilestoneIndex, NetworkId,
    PayloadId, PayloadOutcome, TxId,
};
use hashbrown::hash_map::Entry;
use hashbrown::HashMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::{Batch, IVec, Tree};

use super::group_commit::GroupCommit;
use super::txlog::TxLog;
use node_proto::layout::{self, Confirmation, Frame, TxEntryHeader, TX_ENTRY_HEADER_LEN};

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

const SLOT_SOLID: u8 = 1;
const SLOT_CONFIRMED: u8 = 2;
const SLOT_OUTCOME: u8 = 4;

/// What the index holds per transaction: where its entry is in the log, and what changed
/// since it was written (24 bytes).
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// Offset of the entry (its header) in the log.
    offset: u64,
    /// Length of the transaction's bytes.
    len: u32,
    /// Confirming milestone (with `SLOT_CONFIRMED`).
    confirmed_by: MilestoneIndex,
    /// Position in that milestone's white-flag order.
    position: u32,
    flags: u8,
    /// Outcome code (with `SLOT_OUTCOME`).
    outcome: u8,
}

impl Slot {
    fn confirmation(&self) -> Option<(MilestoneIndex, u32, Option<PayloadOutcome>)> {
        (self.flags & SLOT_CONFIRMED != 0).then(|| {
            let outcome = (self.flags & SLOT_OUTCOME != 0)
                .then(|| layout::decode_outcome(self.outcome))
                .flatten();
            (self.confirmed_by, self.position, outcome)
        })
    }

    fn confirm(&mut self, index: MilestoneIndex, position: u32, outcome: Option<PayloadOutcome>) {
        self.confirmed_by = index;
        self.position = position;
        self.flags |= SLOT_CONFIRMED;
        match outcome {
            Some(o) => {
                self.flags |= SLOT_OUTCOME;
                self.outcome = o.code();
            }
            None => {
                self.flags &= !SLOT_OUTCOME;
                self.outcome = 0;
            }
        }
    }
}

/// The in-memory index over the log, rebuilt when the store opens.
#[derive(Debug, Default)]
struct Index {
    /// The ledger's confirmed index (`None` before `init_ledger`), set in the same step as
    /// the confirmations of the milestone that raised it.
    confirmed: Option<MilestoneIndex>,
    txs: HashMap<TxId, Slot>,
    /// Payload -> the first transaction stored carrying it.
    payloads: HashMap<PayloadId, TxId>,
    /// Payload -> further transactions carrying it (reattachments), in storing order.
    more: HashMap<PayloadId, Vec<TxId>>,
}

impl Index {
    fn add_payload_tx(&mut self, payload: PayloadId, tx: TxId) {
        match self.payloads.entry(payload) {
            Entry::Vacant(v) => {
                v.insert(tx);
            }
            Entry::Occupied(_) => self.more.entry(payload).or_default().push(tx),
        }
    }

    fn payload_has(&self, payload: &PayloadId, tx: &TxId) -> bool {
        self.payloads.get(payload) == Some(tx)
            || self.more.get(payload).is_some_and(|m| m.contains(tx))
    }

    /// Adds a transactions frame whose body starts at `body_at` in the log; entries already
    /// indexed are skipped.
    fn add_frame(&mut self, body_at: u64, entries: &[(TxEntryHeader, usize, &[u8])]) {
        for (h, at, _) in entries {
            self.add(h, body_at + *at as u64);
        }
    }

    /// Indexes one log entry at `offset`, unless its id is indexed already.
    fn add(&mut self, h: &TxEntryHeader, offset: u64) {
        if let Entry::Vacant(v) = self.txs.entry(h.id) {
            v.insert(Slot {
                offset,
                len: h.len,
                confirmed_by: 0,
                position: 0,
                flags: if h.solid { SLOT_SOLID } else { 0 },
                outcome: 0,
            });
            if let Some(p) = h.payload {
                self.add_payload_tx(p, h.id);
            }
        }
    }

    fn mark_solid(&mut self, ids: &[TxId]) {
        for id in ids {
            if let Some(s) = self.txs.get_mut(id) {
                s.flags |= SLOT_SOLID;
            }
        }
    }

    /// Applies milestone `index`'s confirmations, the first of which has white-flag
    /// position `first`. Fails, changing nothing, if one names an unknown transaction.
    fn confirm(
        &mut self,
        index: MilestoneIndex,
        first: u32,
        confirmations: &[Confirmation],
    ) -> Result<()> {
        if let Some(c) = confirmations.iter().find(|c| !self.txs.contains_key(&c.tx)) {
            return Err(StoreError::UnknownTransaction(c.tx));
        }
        for (i, c) in confirmations.iter().enumerate() {
            let position = first.saturating_add(i as u32);
            if let Some(s) = self.txs.get_mut(&c.tx) {
                s.confirm(index, position, c.outcome);
            }
            if let Some(p) = c.payload {
                if !self.payload_has(&p, &c.tx) {
                    self.add_payload_tx(p, c.tx);
                }
            }
        }
        Ok(())
    }
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

fn io_error(what: &str, e: io::Error) -> StoreError {
    StoreError::Backend(format!("{what}: {e}"))
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

    fn read_index(&self) -> RwLockReadGuard<'_, Index> {
        // Index changes cannot panic halfway.
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_index(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
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

    /// Fills the index with the confirmations stored in sled, on open.
    fn load_confirmations(&self) -> Result<()> {
        let header = self.ledger_header()?;
        let confirmed = header.map_or(0, |h| h.confirmed_index);
        let mut index = self.write_index();
        index.confirmed = header.map(|h| h.confirmed_index);
        for item in self.tree.scan_prefix([layout::CONFIRMATION]) {
            let (k, v) = item.map_err(backend)?;
            let (milestone, chunk) = layout::decode_confirmation_key(&k)?;
            if milestone > confirmed {
                return Err(StoreError::Corrupt(format!(
                    "confirmations of milestone {milestone} beyond the confirmed {confirmed}"
                )));
            }
            let list = layout::decode_confirmations(&v)?;
            let first = chunk.saturating_mul(layout::CONFIRMATIONS_PER_CHUNK as u32);
            index
                .confirm(milestone, first, &list)
                .map_err(|e| match e {
                    StoreError::UnknownTransaction(tx) => StoreError::Corrupt(format!(
                        "milestone {milestone} confirms {tx}, which is not in the transaction log"
                    )),
                    e => e,
                })?;
        }
        Ok(())
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

    fn slot(&self, id: &TxId) -> Option<Slot> {
        self.read_index().txs.get(id).copied()
    }

    /// The metadata of a transaction from its log entry and its slot.
    fn meta(h: &TxEntryHeader, slot: &Slot) -> TxMeta {
        let confirmation = slot.confirmation();
        TxMeta {
            arrival: h.arrival,
            solid: slot.flags & SLOT_SOLID != 0,
            payload: h.payload,
            confirmed_by: confirmation.map(|c| c.0),
            outcome: confirmation.and_then(|c| c.2),
        }
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

/// A payload's status from the confirmations of the transactions carrying it: the rule of
/// [`Store::apply_milestone`] replayed in confirmation order (milestone, then white-flag
/// position), which is the order `apply_milestone` saw them in.
fn derive_status(
    mut confirmations: Vec<(MilestoneIndex, u32, TxId, PayloadOutcome)>,
) -> PayloadStatus {
    confirmations.sort_unstable_by_key(|c| (c.0, c.1));
    confirmations.into_iter().fold(
        PayloadStatus::Pending,
        |status, (milestone, _, tx, outcome)| next_payload_status(status, milestone, tx, outcome),
    )
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // Best effort on close; `flush` reports errors.
        let _ = self.physical_flush();
    }
}

impl SledStore {
    /// Makes every log append made so far durable (with power-loss durability; appends
    /// survive a process crash anyway). Callers that arrive while a sync runs wait for it
    /// and return at once if it covered them, else run the next one.
    fn sync_log(&self) -> Result<()> {
        if self.sync.is_none() {
            return Ok(());
        }
        let target = self.log_written.load(Ordering::SeqCst);
        let mut synced = self.log_synced.lock().unwrap_or_else(|e| e.into_inner());
        if *synced >= target {
            return Ok(());
        }
        let upto = self.log_written.load(Ordering::SeqCst);
        self.log.sync()?;
        *synced = upto;
        Ok(())
    }

    /// One physical flush of what is dirty: the log (`fdatasync` with power-loss
    /// durability), then sled's flush and the `fsync` step if configured.
    fn physical_flush(&self) -> Result<()> {
        self.sync_log()?;
        if self.sled_dirty.swap(false, Ordering::SeqCst) {
            let flushed = self
                .db
                .flush()
                .map_err(backend)
                .and_then(|_| self.sync.as_ref().map_or(Ok(()), DiskSync::sync));
            if let Err(e) = flushed {
                self.sled_dirty.store(true, Ordering::SeqCst);
                return Err(e);
            }
        }
        Ok(())
    }
}

impl Store for SledStore {
    /// One log frame holding every new transaction; nothing in sled.
    fn put_transactions(&self, entries: &[TxEntry<'_>]) -> Result<usize> {
        if entries.is_empty() {
            return Ok(0);
        }
        let mut w = self.log_writer();
        let mut buf = vec![0u8; layout::FRAME_HEADER_LEN];
        buf.extend_from_slice(&layout::transactions_body_start(0));
        let mut added = Vec::with_capacity(entries.len());
        {
            let index = self.read_index();
            let mut in_batch = HashSet::with_capacity(entries.len());
            for e in entries {
                // Stored before, or a duplicate inside the batch: stored once.
                if index.txs.contains_key(&e.id) || !in_batch.insert(e.id) {
                    continue;
                }
                let len = u32::try_from(e.bytes.len())
                    .map_err(|_| StoreError::Backend("transaction too large".into()))?;
                let h = TxEntryHeader {
                    id: e.id,
                    arrival: e.meta.arrival,
                    solid: e.meta.solid,
                    payload: e.meta.payload,
                    len,
                };
                added.push((h, buf.len() - layout::FRAME_HEADER_LEN));
                layout::push_tx_entry(&mut buf, &h, e.bytes);
            }
        }
        if added.is_empty() {
            return Ok(0);
        }
        if buf.len() > layout::MAX_FRAME_LEN {
            return Err(StoreError::Backend("batch too large for one frame".into()));
        }
        let count = added.len() as u32;
        let at = layout::FRAME_HEADER_LEN + 1;
        buf[at..at + 4].copy_from_slice(&count.to_be_bytes());
        let body_at = self.append(&mut w, buf)?;
        let mut index = self.write_index();
        for (h, at) in &added {
            index.add(h, body_at + *at as u64);
        }
        Ok(added.len())
    }

    fn transaction(&self, id: &TxId) -> Result<Option<Vec<u8>>> {
        let Some(slot) = self.slot(id) else {
            return Ok(None);
        };
        self.entry_header(id, &slot)?;
        let mut bytes = vec![0u8; slot.len as usize];
        self.log
            .read_at(slot.offset + TX_ENTRY_HEADER_LEN as u64, &mut bytes)?;
        Ok(Some(bytes))
    }

    fn metadata(&self, id: &TxId) -> Result<Option<TxMeta>> {
        let Some(slot) = self.slot(id) else {
            return Ok(None);
        };
        let h = self.entry_header(id, &slot)?;
        Ok(Some(Self::meta(&h, &slot)))
    }

    /// One log frame with the ids that changed.
    fn mark_solid(&self, ids: &[TxId]) -> Result<usize> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut w = self.log_writer();
        let changed: Vec<TxId> = {
            let index = self.read_index();
            let mut seen = HashSet::new();
            ids.iter()
                .filter(|id| {
                    index
                        .txs
                        .get(*id)
                        .is_some_and(|s| s.flags & SLOT_SOLID == 0)
                        && seen.insert(**id)
                })
                .copied()
                .collect()
        };
        if changed.is_empty() {
            return Ok(0);
        }
        let mut buf = vec![0u8; layout::FRAME_HEADER_LEN];
        buf.extend_from_slice(&layout::solid_body(&changed));
        self.append(&mut w, buf)?;
        self.write_index().mark_solid(&changed);
        Ok(changed.len())
    }

    fn transaction_count(&self) -> Result<usize> {
        Ok(self.read_index().txs.len())
    }

    /// One sequential read of the log, in storing order, with each transaction's current
    /// metadata from the index.
    fn for_each_transaction(&self, f: &mut dyn FnMut(&TxId, &[u8], &TxMeta)) -> Result<()> {
        let end = self.log_writer().end;
        let index = self.read_index();
        self.log.for_each_frame(end, &mut |_, frame| {
            if let Frame::Transactions(entries) = frame {
                for (h, _, bytes) in entries {
                    let slot = index.txs.get(&h.id).ok_or_else(|| {
                        StoreError::Corrupt(format!("{} is in the log but not indexed", h.id))
                    })?;
                    f(&h.id, bytes, &Self::meta(&h, slot));
                }
            }
            Ok(())
        })
    }

    /// From the index alone: the payload's transactions and, from their confirmations,
    /// its status.
    fn payload(&self, id: &PayloadId) -> Result<Option<PayloadRecord>> {
        let index = self.read_index();
        let Some(first) = index.payloads.get(id) else {
            return Ok(None);
        };
        let txs: Vec<TxId> = std::iter::once(*first)
            .chain(index.more.get(id).into_iter().flatten().copied())
            .collect();
        let confirmations = txs
            .iter()
            .filter_map(|tx| {
                let (milestone, position, outcome) = index.txs.get(tx)?.confirmation()?;
                Some((milestone, position, *tx, outcome?))
            })
            .collect();
        Ok(Some(PayloadRecord {
            txs,
            status: derive_status(confirmations),
        }))
    }

    fn milestone(&self, index: MilestoneIndex) -> Result<Option<MilestoneRecord>> {
        self.get("milestone record", &layout::milestone_key(index))
    }

    /// From the index, which takes a milestone's confirmations and its index in one step
    /// after its sled batch: whoever sees index `k` sees all of milestone `k`.
    fn confirmed_index(&self) -> Result<Option<MilestoneIndex>> {
        Ok(self.read_index().confirmed)
    }

    fn account(&self, address: &Address) -> Result<Option<Account>> {
        self.raw(&layout::account_key(address))?
            .map(|v| layout::decode_account(&v))
            .transpose()
    }

    fn channel(&self, id: &ChannelId) -> Result<Option<Channel>> {
        self.get("channel", &layout::channel_key(id))
    }

    fn init_ledger(&self, ledger: &LedgerState) -> Result<()> {
        let _w = self.sled_writer();
        if self.raw(layout::LEDGER_KEY)?.is_some() {
            return Err(StoreError::AlreadyInitialised);
        }
        let header = LedgerHeader {
            network_id: ledger.network_id,
            supply: ledger.supply,
            confirmed_index: ledger.confirmed_index,
            digest: ledger.digest,
        };
        let mut batch = Batch::default();
        for (a, acc) in &ledger.accounts {
            batch.insert(
                &layout::account_key(a)[..],
                &layout::encode_account(acc)[..],
            );
        }
        for (id, ch) in &ledger.channels {
            batch.insert(&layout::channel_key(id)[..], encode(ch)?);
        }
        batch.insert(layout::LEDGER_KEY, encode(&header)?);
        self.apply(batch)?;
        self.write_index().confirmed = Some(ledger.confirmed_index);
        Ok(())
    }

    fn load_ledger(&self) -> Result<Option<LedgerState>> {
        // Holding the sled writer lock keeps milestones out while the scans run.
        let _w = self.sled_writer();
        let Some(header) = self.ledger_header()? else {
            return Ok(None);
        };
        // Keys are the prefix and the raw 32-byte ids, so sled's byte order is the ids'.
        let mut accounts = Vec::new();
        for item in self.tree.scan_prefix([layout::ACCOUNT]) {
            let (k, v) = item.map_err(backend)?;
            accounts.push((
                Address(layout::key_id("account", &k)?),
                layout::decode_account(&v)?,
            ));
        }
        let mut channels = Vec::new();
        for item in self.tree.scan_prefix([layout::CHANNEL]) {
            let (k, v) = item.map_err(backend)?;
            channels.push((
                ChannelId(layout::key_id("channel", &k)?),
                decode("channel", &v)?,
            ));
        }
        Ok(Some(LedgerState {
            network_id: header.network_id,
            supply: header.supply,
            confirmed_index: header.confirmed_index,
            digest: header.digest,
            accounts,
            channels,
        }))
    }

    /// One sled batch: the confirmations in chunks of
    /// [`layout::CONFIRMATIONS_PER_CHUNK`], the milestone record, the changed accounts and
    /// channels, and the ledger header. Then the index takes the confirmations and the new
    /// confirmed index in one step.
    fn apply_milestone(&self, batch: &MilestoneBatch) -> Result<()> {
        let _w = self.sled_writer();
        // Checks come first: a rejected batch writes nothing.
        let Some(mut header) = self.ledger_header()? else {
            return Err(StoreError::NotInitialised);
        };
        let index = batch.record.index;
        let Some(expected) = header.confirmed_index.checked_add(1) else {
            return Err(StoreError::Backend(
                "milestone index space exhausted".into(),
            ));
        };
        if index != expected {
            return Err(StoreError::NonConsecutiveMilestone {
                expected,
                got: index,
            });
        }
        if batch.confirmed.len() > u32::MAX as usize {
            return Err(StoreError::Backend("milestone confirms too many".into()));
        }
        let confirmations: Vec<Confirmation> = {
            let ix = self.read_index();
            let mut out = Vec::with_capacity(batch.confirmed.len());
            for c in &batch.confirmed {
                if !ix.txs.contains_key(&c.tx) {
                    return Err(StoreError::UnknownTransaction(c.tx));
                }
                out.push(Confirmation {
                    tx: c.tx,
                    outcome: c.payload.map(|(_, o)| o),
                    // Confirmed as carrying a payload it is not indexed under: record it,
                    // so the payload's status sees this transaction after a reopen too.
                    payload: c
                        .payload
                        .map(|(p, _)| p)
                        .filter(|p| !ix.payload_has(p, &c.tx)),
                });
            }
            out
        };
        // The confirmed transactions are in the log; make sure they are durable before
        // this batch can be (sled may write it out in the background at any time).
        self.sync_log()?;
        let mut out = Batch::default();
        for (chunk, list) in confirmations
            .chunks(layout::CONFIRMATIONS_PER_CHUNK)
            .enumerate()
        {
            let mut v = Vec::with_capacity(list.len() * layout::CONFIRMATION_LEN);
            for c in list {
                layout::push_confirmation(&mut v, c);
            }
            out.insert(&layout::confirmation_key(index, chunk as u32)[..], v);
        }
        out.insert(&layout::milestone_key(index)[..], encode(&batch.record)?);
        for (a, acc) in &batch.diff.accounts {
            out.insert(
                &layout::account_key(a)[..],
                &layout::encode_account(acc)[..],
            );
        }
        for (id, ch) in &batch.diff.channels {
            out.insert(&layout::channel_key(id)[..], encode(ch)?);
        }
        header.confirmed_index = index;
        header.digest = batch.record.ledger_digest;
        out.insert(layout::LEDGER_KEY, encode(&header)?);
        self.apply(out)?;
        let mut ix = self.write_index();
        ix.confirm(index, 0, &confirmations)?;
        ix.confirmed = Some(index);
        Ok(())
    }

    /// Makes every earlier write durable as the store's [`Durability`] says, sharing the
    /// physical flush with concurrent callers (group commit).
    fn flush(&self) -> Result<()> {
        self.group.commit(|| self.physical_flush())
    }

    /// Syncs the log only, so storing transactions never waits for sled's flush of a
    /// milestone.
    fn flush_transactions(&self) -> Result<()> {
        self.sync_log()
    }
}

/// The files the `fsync` step syncs after sled's flush.
struct DiskSync {
    /// sled's log file, `<dir>/db`.
    log: File,
    /// The database directory.
    dir: File,
    dir_path: PathBuf,
    /// Names in the directory when it was last synced: it is synced again only when they
    /// change (an unchanged directory still costs a journal commit per `fsync`, about as
    /// much as the log's `fdatasync`).
    dir_names: Mutex<HashSet<OsString>>,
    /// `<dir>/blobs`, where sled puts values too large for the log.
    blobs: PathBuf,
    /// Blob files already synced (only the leader of a flush touches it).
    synced_blobs: Mutex<HashSet<OsString>>,
}

impl DiskSync {
    fn open(dir: &Path) -> Result<DiskSync> {
        let log = File::open(dir.join("db")).map_err(|e| io_error("opening the sled log", e))?;
        let dir_file = File::open(dir).map_err(|e| io_error("opening the database dir", e))?;
        let sync = DiskSync {
            log,
            dir: dir_file,
            dir_path: dir.to_path_buf(),
            dir_names: Mutex::new(HashSet::new()),
            blobs: dir.join("blobs"),
            synced_blobs: Mutex::new(HashSet::new()),
        };
        // Make the files sled just created durable before anything relies on them (the
        // empty name set differs from any listing, so the directory is synced).
        sync.sync()?;
        Ok(sync)
    }

    fn sync(&self) -> Result<()> {
        self.log
            .sync_data()
            .map_err(|e| io_error("fdatasync of the sled log", e))?;
        self.sync_blobs()?;
        self.sync_dir()
    }

    /// `fsync`s the database directory if files were created, renamed or removed since
    /// its last sync (sled's snapshots are written to a new file and renamed).
    fn sync_dir(&self) -> Result<()> {
        let names = std::fs::read_dir(&self.dir_path)
            .and_then(|entries| {
                entries
                    .map(|e| e.map(|e| e.file_name()))
                    .collect::<io::Result<HashSet<_>>>()
            })
            .map_err(|e| io_error("listing the database dir", e))?;
        let mut synced = self.dir_names.lock().unwrap_or_else(|e| e.into_inner());
        if *synced != names {
            self.dir
                .sync_all()
                .map_err(|e| io_error("fsync of the database dir", e))?;
            *synced = names;
        }
        Ok(())
    }

    fn sync_blobs(&self) -> Result<()> {
        let entries = match std::fs::read_dir(&self.blobs) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("listing sled blobs", e)),
        };
        let mut synced = self.synced_blobs.lock().unwrap_or_else(|e| e.into_inner());
        let mut present = HashSet::new();
        let mut new = false;
        for entry in entries {
            let entry = entry.map_err(|e| io_error("listing sled blobs", e))?;
            let name = entry.file_name();
            if !synced.contains(&name) {
                match File::open(entry.path()) {
                    Ok(f) => f
                        .sync_all()
                        .map_err(|e| io_error("fsync of a sled blob", e))?,
                    // sled removed it meanwhile (garbage collection): nothing to keep.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_error("opening a sled blob", e)),
                }
                new = true;
            }
            present.insert(name);
        }
        *synced = present;
        if new {
            File::open(&self.blobs)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_error("fsync of the blobs dir", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(s: &SledStore, i: u8) {
        let bytes = [i; 40];
        s.put_transactions(&[TxEntry {
            id: TxId([i; 32]),
            bytes: &bytes,
            meta: TxMeta::new(1, true, None),
        }])
        .unwrap();
    }

    fn synced(s: &SledStore) -> u64 {
        *s.log_synced.lock().unwrap()
    }

    /// `flush_transactions` covers every append made before it, from any thread, and skips
    /// the `fdatasync` when an earlier one already covered them; `flush` covers the log too.
    #[test]
    fn log_syncs_cover_every_earlier_append() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let start = synced(&s);
        put(&s, 1);
        let written = s.log_written.load(Ordering::SeqCst);
        assert!(written > start && synced(&s) == start);
        s.flush_transactions().unwrap();
        assert_eq!(synced(&s), written);
        s.flush_transactions().unwrap();
        assert_eq!(synced(&s), written);
        std::thread::scope(|scope| {
            scope.spawn(|| put(&s, 2));
        });
        put(&s, 3);
        s.flush().unwrap();
        assert_eq!(synced(&s), s.log_written.load(Ordering::SeqCst));
        assert!(synced(&s) > written);
        // Without power-loss durability there is nothing to sync.
        let t = SledStore::open_temporary().unwrap();
        put(&t, 1);
        t.flush_transactions().unwrap();
        assert_eq!(synced(&t), layout::LOG_MAGIC.len() as u64);
    }
}

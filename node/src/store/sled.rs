//! [`SledStore`]: the sled 0.34 implementation of [`Store`].

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use dag_core::store::{
    next_payload_status, MilestoneBatch, MilestoneRecord, PayloadRecord, PayloadStatus, Result,
    Store, StoreError, TxEntry, TxMeta,
};
use dag_core::{
    Account, Address, Channel, ChannelId, Digest, LedgerState, MilestoneIndex, NetworkId,
    PayloadId, PayloadOutcome, TxId,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::{Batch, IVec, Tree};

use super::group_commit::GroupCommit;
use super::layout::{self, TxHeader, TX_HEADER_LEN};

/// What [`Store::flush`] makes the data survive (see the [module](super) docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// sled's own flush only (`pwrite` + `sync_file_range` on Linux): survives a crash of
    /// the process, not reliably a power loss or kernel crash.
    ProcessCrash,
    /// sled's flush, then `fdatasync` of the log file and `fsync` of new blob files and of
    /// the database directory: survives a power loss too.
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

/// State only writers touch, behind [`SledStore::writer`].
#[derive(Debug, Default)]
struct Writer {
    /// Number of stored transactions (= next storing sequence), read from the database by
    /// the first `put_transactions`.
    tx_count: Option<u64>,
}

/// A [`Store`] on an embedded sled database.
///
/// Everything lives in one sled tree ([`layout`]), so every batch method is one sled
/// `apply_batch`: atomic for concurrent readers and for a restart after a crash. Writers
/// are serialised by a mutex (they read before they write); readers never wait for it.
/// [`Store::flush`] is the durability point, shared between concurrent callers (group
/// commit); [`Store::for_each_transaction`] visits transactions **in the order they were
/// first stored**, so a node reloading its Tangle sees parents before children as it did
/// live. Cloning is not offered: share it in an `Arc`.
///
/// Dropping the store flushes it (best effort, errors ignored); call [`Store::flush`]
/// first to see errors.
pub struct SledStore {
    db: sled::Db,
    tree: Tree,
    /// Serialises writers: each reads what it is about to change, then applies one batch.
    writer: Mutex<Writer>,
    /// Odd while `apply_milestone` writes its batch: `payload` reads several keys and
    /// retries if a milestone landed meanwhile (a sequence lock), so it never sees half of
    /// one.
    milestone_generation: AtomicU64,
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
/// small; the hot reads are served by the in-memory Tangle and ledger. (Measured with
/// node-bench: no change in throughput against the default.)
pub(crate) const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// The sled configuration: sled's defaults but a bounded page cache. Two tempting knobs are left alone on purpose:
/// `flush_every_ms(None)` would save nothing measurable (we flush explicitly anyway) but
/// would also stop sled's log cleaning, which runs only in that background flusher, so the
/// log would grow without bound; `Mode::HighThroughput` measured no faster here
/// (`store/node_cycle_report`) and, by sled's docs, trades disk space for less cleaning.
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
    /// one written by the earlier tree-per-record layout).
    pub fn open_with(path: impl AsRef<Path>, durability: Durability) -> Result<SledStore> {
        let path = path.as_ref();
        let db = config().path(path).open().map_err(backend)?;
        let sync = match durability {
            Durability::PowerLoss => Some(DiskSync::open(path)?),
            Durability::ProcessCrash => None,
        };
        Self::from_db(db, sync)
    }

    /// A database in a temporary location, deleted when the store is dropped (tests).
    /// Flushing it skips the `fsync` step: there is nothing to keep.
    pub fn open_temporary() -> Result<SledStore> {
        let db = config().temporary(true).open().map_err(backend)?;
        Self::from_db(db, None)
    }

    fn from_db(db: sled::Db, sync: Option<DiskSync>) -> Result<SledStore> {
        let tree = db.open_tree(layout::TREE).map_err(backend)?;
        match tree.get(layout::FORMAT_KEY).map_err(backend)? {
            Some(v) if v.as_ref() == [layout::FORMAT] => {}
            Some(v) => {
                return Err(StoreError::Corrupt(format!(
                    "database format {v:?}, this version reads format {}",
                    layout::FORMAT
                )))
            }
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
            }
        }
        Ok(SledStore {
            db,
            tree,
            writer: Mutex::new(Writer::default()),
            milestone_generation: AtomicU64::new(0),
            group: GroupCommit::default(),
            sync,
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

    /// Bytes the database occupies on disk, as sled counts them (for metrics).
    pub fn size_on_disk(&self) -> Result<u64> {
        self.db.size_on_disk().map_err(backend)
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        // The writer state is only changed after a batch succeeded, in one assignment, so
        // a poisoned lock still holds consistent data.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
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

    fn stored_tx_count(&self) -> Result<u64> {
        match self.raw(layout::TX_COUNT_KEY)? {
            None => Ok(0),
            Some(v) => layout::decode_u64("transaction count", &v),
        }
    }

    fn apply(&self, batch: Batch) -> Result<()> {
        self.tree.apply_batch(batch).map_err(backend)
    }

    /// The index entries of payload `id` and, from their transactions' records, its
    /// status. Not atomic by itself: [`Store::payload`] retries it around milestones.
    fn read_payload(&self, id: &PayloadId) -> Result<Option<PayloadRecord>> {
        let mut txs = Vec::new();
        let mut confirmations = Vec::new();
        for item in self.tree.scan_prefix(layout::payload_prefix(id)) {
            let (_, v) = item.map_err(backend)?;
            let tx = TxId(v.as_ref().try_into().map_err(|_| {
                StoreError::Corrupt(format!("payload index entry of {} bytes", v.len()))
            })?);
            let rec = self.raw(&layout::tx_key(&tx))?.ok_or_else(|| {
                StoreError::Corrupt(format!("payload index names {tx}, which is not stored"))
            })?;
            let h = layout::decode_tx_header(&rec)?;
            if let (Some(milestone), Some(outcome)) = (h.meta.confirmed_by, h.meta.outcome) {
                confirmations.push((milestone, h.position, tx, outcome));
            }
            txs.push(tx);
        }
        if txs.is_empty() {
            return Ok(None);
        }
        Ok(Some(PayloadRecord {
            txs,
            status: derive_status(confirmations),
        }))
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
    /// One physical flush: sled's, then the `fsync` step if configured.
    fn physical_flush(&self) -> Result<()> {
        self.db.flush().map_err(backend)?;
        if let Some(sync) = &self.sync {
            sync.sync()?;
        }
        Ok(())
    }
}

impl Store for SledStore {
    /// One batch: per new transaction its record and, if it carries a payload, one payload
    /// index entry; plus the transaction count. No read of the payload index is needed.
    fn put_transactions(&self, entries: &[TxEntry<'_>]) -> Result<usize> {
        if entries.is_empty() {
            return Ok(0);
        }
        let mut w = self.writer();
        let count = match w.tx_count {
            Some(n) => n,
            None => self.stored_tx_count()?,
        };
        let mut next = count;
        let mut batch = Batch::default();
        let mut in_batch = HashSet::with_capacity(entries.len());
        for e in entries {
            // A duplicate inside the batch is stored once.
            if !in_batch.insert(e.id) {
                continue;
            }
            let key = layout::tx_key(&e.id);
            if self.tree.contains_key(key).map_err(backend)? {
                continue;
            }
            let header = TxHeader {
                seq: next,
                meta: e.meta,
                position: 0,
            };
            batch.insert(&key[..], layout::encode_tx_record(&header, e.bytes));
            if let Some(p) = e.meta.payload {
                batch.insert(&layout::payload_key(&p, next)[..], &e.id.0[..]);
            }
            next += 1;
        }
        let new = next - count;
        if new > 0 {
            batch.insert(layout::TX_COUNT_KEY, &next.to_be_bytes()[..]);
            self.apply(batch)?;
        }
        w.tx_count = Some(next);
        usize::try_from(new).map_err(|_| StoreError::Backend("batch too large".into()))
    }

    fn transaction(&self, id: &TxId) -> Result<Option<Vec<u8>>> {
        match self.raw(&layout::tx_key(id))? {
            None => Ok(None),
            Some(v) => {
                layout::decode_tx_header(&v)?;
                Ok(Some(v[TX_HEADER_LEN..].to_vec()))
            }
        }
    }

    fn metadata(&self, id: &TxId) -> Result<Option<TxMeta>> {
        match self.raw(&layout::tx_key(id))? {
            None => Ok(None),
            Some(v) => Ok(Some(layout::decode_tx_header(&v)?.meta)),
        }
    }

    fn mark_solid(&self, ids: &[TxId]) -> Result<usize> {
        if ids.is_empty() {
            return Ok(0);
        }
        let _w = self.writer();
        let mut batch = Batch::default();
        let mut changed = HashSet::new();
        for id in ids {
            let key = layout::tx_key(id);
            let Some(v) = self.raw(&key)? else {
                continue;
            };
            let mut h = layout::decode_tx_header(&v)?;
            if !h.meta.solid && changed.insert(*id) {
                h.meta.solid = true;
                let mut rec = v.to_vec();
                layout::write_header(&mut rec, &h);
                batch.insert(&key[..], rec);
            }
        }
        if !changed.is_empty() {
            self.apply(batch)?;
        }
        Ok(changed.len())
    }

    fn transaction_count(&self) -> Result<usize> {
        let n = self.stored_tx_count()?;
        usize::try_from(n).map_err(|_| StoreError::Corrupt(format!("count {n}")))
    }

    /// Visits transactions in the order they were first stored (arrival order): one scan
    /// of the records, sorted by their storing sequence before `f` sees them. The sort
    /// holds a reference to every record at once (sled's shared buffers, about 60 bytes
    /// per transaction besides the records themselves).
    fn for_each_transaction(&self, f: &mut dyn FnMut(&TxId, &[u8], &TxMeta)) -> Result<()> {
        let mut all = Vec::new();
        for item in self.tree.scan_prefix([layout::TX]) {
            let (k, v) = item.map_err(backend)?;
            let seq = layout::decode_tx_header(&v)?.seq;
            all.push((seq, k, v));
        }
        all.sort_unstable_by_key(|r| r.0);
        for (_, k, v) in all {
            let id = TxId(layout::key_id("transaction", &k)?);
            let meta = layout::decode_tx_header(&v)?.meta;
            f(&id, &v[TX_HEADER_LEN..], &meta);
        }
        Ok(())
    }

    fn payload(&self, id: &PayloadId) -> Result<Option<PayloadRecord>> {
        loop {
            let before = self.milestone_generation.load(Ordering::SeqCst);
            if before % 2 == 1 {
                std::thread::yield_now();
                continue;
            }
            let record = self.read_payload(id)?;
            if self.milestone_generation.load(Ordering::SeqCst) == before {
                return Ok(record);
            }
        }
    }

    fn milestone(&self, index: MilestoneIndex) -> Result<Option<MilestoneRecord>> {
        self.get("milestone record", &layout::milestone_key(index))
    }

    fn confirmed_index(&self) -> Result<Option<MilestoneIndex>> {
        Ok(self.ledger_header()?.map(|h| h.confirmed_index))
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
        let _w = self.writer();
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
        self.apply(batch)
    }

    fn load_ledger(&self) -> Result<Option<LedgerState>> {
        // Holding the writer lock keeps milestones out while the scans run.
        let _w = self.writer();
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

    /// One batch: per confirmed transaction its record with the confirmation filled in
    /// (payload statuses are derived from these, so they need no write of their own), the
    /// milestone record, the changed accounts and channels, and the ledger header.
    fn apply_milestone(&self, batch: &MilestoneBatch) -> Result<()> {
        let _w = self.writer();
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
        let mut out = Batch::default();
        for (position, c) in batch.confirmed.iter().enumerate() {
            let key = layout::tx_key(&c.tx);
            let Some(v) = self.raw(&key)? else {
                return Err(StoreError::UnknownTransaction(c.tx));
            };
            let mut h = layout::decode_tx_header(&v)?;
            h.meta.confirmed_by = Some(index);
            h.meta.outcome = c.payload.map(|(_, o)| o);
            h.position = u32::try_from(position)
                .map_err(|_| StoreError::Backend("milestone confirms too many".into()))?;
            if let Some((pid, _)) = c.payload {
                if h.meta.payload != Some(pid) {
                    // Confirmed as carrying a payload it was not stored with: index it
                    // under that payload too, so the payload's status sees it.
                    out.insert(&layout::payload_key(&pid, h.seq)[..], &c.tx.0[..]);
                }
            }
            let mut rec = v.to_vec();
            layout::write_header(&mut rec, &h);
            out.insert(&key[..], rec);
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
        self.milestone_generation.fetch_add(1, Ordering::SeqCst);
        let result = self.apply(out);
        self.milestone_generation.fetch_add(1, Ordering::SeqCst);
        result
    }

    /// Makes every earlier write durable as the store's [`Durability`] says, sharing the
    /// physical flush with concurrent callers (group commit).
    fn flush(&self) -> Result<()> {
        self.group.commit(|| self.physical_flush())
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

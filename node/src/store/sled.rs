//! [`SledStore`]: the sled 0.34 implementation of [`Store`].

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use dag_core::store::{
    next_payload_status, MilestoneBatch, MilestoneRecord, PayloadRecord, PayloadStatus, Result,
    Store, StoreError, TxEntry, TxMeta,
};
use dag_core::{
    Account, Address, Channel, ChannelId, Digest, LedgerState, MilestoneIndex, NetworkId,
    PayloadId, TxId,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError,
    TransactionalTree,
};
use sled::{Transactional, Tree};

use super::group_commit::GroupCommit;

/// Names of the sled trees (part of the on-disk format; see the [module](super) docs).
pub mod trees {
    /// Transaction id -> canonical bytes.
    pub const TRANSACTIONS: &str = "transactions";
    /// Transaction id -> `TxMeta`.
    pub const METADATA: &str = "metadata";
    /// Storing sequence (u64 big-endian) -> transaction id.
    pub const ARRIVAL: &str = "arrival";
    /// Payload id -> `PayloadRecord`.
    pub const PAYLOADS: &str = "payloads";
    /// Milestone index (u32 big-endian) -> `MilestoneRecord`.
    pub const MILESTONES: &str = "milestones";
    /// Address -> `Account`.
    pub const ACCOUNTS: &str = "accounts";
    /// Channel id -> `Channel`.
    pub const CHANNELS: &str = "channels";
    /// Ledger header and counters.
    pub const STATE: &str = "state";
}

/// Keys of the `state` tree.
const KEY_LEDGER: &[u8] = b"ledger";
const KEY_TX_COUNT: &[u8] = b"tx_count";
const KEY_NEXT_ARRIVAL: &[u8] = b"next_arrival";

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

/// The ledger header stored under `state/ledger`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct LedgerHeader {
    network_id: NetworkId,
    supply: u64,
    confirmed_index: MilestoneIndex,
    digest: Digest,
}

/// A [`Store`] on an embedded sled database.
///
/// Every batch is one sled transaction (atomic for readers and across crashes);
/// [`Store::flush`] is the durability point, shared between concurrent callers (group
/// commit); [`Store::for_each_transaction`] visits transactions **in the order they were
/// first stored** (arrival order), so a node reloading its Tangle sees parents before
/// children as it did live. Cloning is not offered: share it in an `Arc`.
///
/// Dropping the store flushes it (best effort, errors ignored); call [`Store::flush`]
/// first to see errors.
pub struct SledStore {
    db: sled::Db,
    txs: Tree,
    meta: Tree,
    arrival: Tree,
    payloads: Tree,
    milestones: Tree,
    accounts: Tree,
    channels: Tree,
    state: Tree,
    /// Held for writing by `init_ledger`/`apply_milestone` and for reading by
    /// `load_ledger`, whose scan of several trees must not see half a batch.
    ledger_lock: RwLock<()>,
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

fn tx_error(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => backend(e),
    }
}

fn abort<T>(e: StoreError) -> ConflictableTransactionResult<T, StoreError> {
    Err(ConflictableTransactionError::Abort(e))
}

/// Encodes a value inside a transaction. Our plain structs always serialise; should one
/// not, the transaction aborts with a backend error instead of writing a bad value.
fn encode<T: Serialize>(value: &T) -> ConflictableTransactionResult<Vec<u8>, StoreError> {
    rmp_serde::to_vec(value)
        .or_else(|e| abort(StoreError::Backend(format!("encoding a record: {e}"))))
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    rmp_serde::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn decode_u64(what: &str, bytes: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what}: {} bytes, not 8", bytes.len())))?;
    Ok(u64::from_be_bytes(arr))
}

fn decode_id32(what: &str, bytes: &[u8]) -> Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what}: {} bytes, not 32", bytes.len())))
}

/// Reads and decodes a value inside a transaction; a decode failure aborts it.
fn tx_get<T: DeserializeOwned>(
    tree: &TransactionalTree,
    what: &str,
    key: &[u8],
) -> ConflictableTransactionResult<Option<T>, StoreError> {
    match tree.get(key)? {
        None => Ok(None),
        Some(v) => match decode(what, &v) {
            Ok(x) => Ok(Some(x)),
            Err(e) => abort(e),
        },
    }
}

fn tx_get_u64(
    tree: &TransactionalTree,
    key: &[u8],
) -> ConflictableTransactionResult<u64, StoreError> {
    match tree.get(key)? {
        None => Ok(0),
        Some(v) => match decode_u64("state counter", &v) {
            Ok(x) => Ok(x),
            Err(e) => abort(e),
        },
    }
}

impl SledStore {
    /// Opens (or creates) the database in directory `path`, with
    /// [`Durability::PowerLoss`].
    pub fn open(path: impl AsRef<Path>) -> Result<SledStore> {
        Self::open_with(path, Durability::PowerLoss)
    }

    /// Opens (or creates) the database in directory `path` with the given durability.
    pub fn open_with(path: impl AsRef<Path>, durability: Durability) -> Result<SledStore> {
        let path = path.as_ref();
        let db = sled::Config::new().path(path).open().map_err(backend)?;
        let sync = match durability {
            Durability::PowerLoss => Some(DiskSync::open(path)?),
            Durability::ProcessCrash => None,
        };
        Self::from_db(db, sync)
    }

    /// A database in a temporary location, deleted when the store is dropped (tests).
    /// Flushing it skips the `fsync` step: there is nothing to keep.
    pub fn open_temporary() -> Result<SledStore> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(backend)?;
        Self::from_db(db, None)
    }

    fn from_db(db: sled::Db, sync: Option<DiskSync>) -> Result<SledStore> {
        let tree = |name: &str| db.open_tree(name).map_err(backend);
        Ok(SledStore {
            txs: tree(trees::TRANSACTIONS)?,
            meta: tree(trees::METADATA)?,
            arrival: tree(trees::ARRIVAL)?,
            payloads: tree(trees::PAYLOADS)?,
            milestones: tree(trees::MILESTONES)?,
            accounts: tree(trees::ACCOUNTS)?,
            channels: tree(trees::CHANNELS)?,
            state: tree(trees::STATE)?,
            db,
            ledger_lock: RwLock::new(()),
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

    fn ledger_read(&self) -> RwLockReadGuard<'_, ()> {
        // The lock guards no data, so poisoning carries no meaning here.
        self.ledger_lock.read().unwrap_or_else(|e| e.into_inner())
    }

    fn ledger_write(&self) -> RwLockWriteGuard<'_, ()> {
        self.ledger_lock.write().unwrap_or_else(|e| e.into_inner())
    }

    fn get<T: DeserializeOwned>(&self, tree: &Tree, what: &str, key: &[u8]) -> Result<Option<T>> {
        match tree.get(key).map_err(backend)? {
            None => Ok(None),
            Some(v) => decode(what, &v).map(Some),
        }
    }

    fn ledger_header(&self) -> Result<Option<LedgerHeader>> {
        self.get(&self.state, "ledger header", KEY_LEDGER)
    }

    /// One physical flush: sled's, then the `fsync` step if configured.
    fn physical_flush(&self) -> Result<()> {
        self.db.flush().map_err(backend)?;
        if let Some(sync) = &self.sync {
            sync.sync()?;
        }
        Ok(())
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // Best effort on close; `flush` reports errors.
        let _ = self.physical_flush();
    }
}

impl Store for SledStore {
    fn put_transactions(&self, entries: &[TxEntry<'_>]) -> Result<usize> {
        if entries.is_empty() {
            return Ok(0);
        }
        (
            &self.txs,
            &self.meta,
            &self.arrival,
            &self.payloads,
            &self.state,
        )
            .transaction(|(txs, meta, arrival, payloads, state)| {
                let mut next = tx_get_u64(state, KEY_NEXT_ARRIVAL)?;
                let mut new = 0u64;
                for e in entries {
                    let key = &e.id.0[..];
                    // Reads see this transaction's own writes: a duplicate inside the
                    // batch is stored once.
                    if txs.get(key)?.is_some() {
                        continue;
                    }
                    txs.insert(key, e.bytes)?;
                    meta.insert(key, encode(&e.meta)?)?;
                    arrival.insert(&next.to_be_bytes()[..], key)?;
                    next += 1;
                    if let Some(p) = e.meta.payload {
                        let mut rec: PayloadRecord = tx_get(payloads, "payload record", &p.0)?
                            .unwrap_or(PayloadRecord {
                                txs: Vec::new(),
                                status: PayloadStatus::Pending,
                            });
                        rec.txs.push(e.id);
                        payloads.insert(&p.0[..], encode(&rec)?)?;
                    }
                    new += 1;
                }
                if new > 0 {
                    let count = tx_get_u64(state, KEY_TX_COUNT)?;
                    state.insert(KEY_TX_COUNT, &(count + new).to_be_bytes()[..])?;
                    state.insert(KEY_NEXT_ARRIVAL, &next.to_be_bytes()[..])?;
                }
                Ok(new as usize)
            })
            .map_err(tx_error)
    }

    fn transaction(&self, id: &TxId) -> Result<Option<Vec<u8>>> {
        Ok(self.txs.get(id.0).map_err(backend)?.map(|v| v.to_vec()))
    }

    fn metadata(&self, id: &TxId) -> Result<Option<TxMeta>> {
        self.get(&self.meta, "transaction metadata", &id.0)
    }

    fn mark_solid(&self, ids: &[TxId]) -> Result<usize> {
        if ids.is_empty() {
            return Ok(0);
        }
        self.meta
            .transaction(|meta| {
                let mut changed = 0;
                for id in ids {
                    let Some(mut m) = tx_get::<TxMeta>(meta, "transaction metadata", &id.0)? else {
                        continue;
                    };
                    if !m.solid {
                        m.solid = true;
                        meta.insert(&id.0[..], encode(&m)?)?;
                        changed += 1;
                    }
                }
                Ok(changed)
            })
            .map_err(tx_error)
    }

    fn transaction_count(&self) -> Result<usize> {
        match self.state.get(KEY_TX_COUNT).map_err(backend)? {
            None => Ok(0),
            Some(v) => {
                let n = decode_u64("transaction count", &v)?;
                usize::try_from(n).map_err(|_| StoreError::Corrupt(format!("count {n}")))
            }
        }
    }

    /// Visits transactions in the order they were first stored (arrival order), through
    /// the `arrival` index.
    fn for_each_transaction(&self, f: &mut dyn FnMut(&TxId, &[u8], &TxMeta)) -> Result<()> {
        for item in self.arrival.iter() {
            let (_, id) = item.map_err(backend)?;
            let id = TxId(decode_id32("arrival index entry", &id)?);
            let bytes = self.txs.get(id.0).map_err(backend)?.ok_or_else(|| {
                StoreError::Corrupt(format!("arrival index names {id}, which is not stored"))
            })?;
            let meta = self
                .metadata(&id)?
                .ok_or_else(|| StoreError::Corrupt(format!("transaction {id} has no metadata")))?;
            f(&id, &bytes, &meta);
        }
        Ok(())
    }

    fn payload(&self, id: &PayloadId) -> Result<Option<PayloadRecord>> {
        self.get(&self.payloads, "payload record", &id.0)
    }

    fn milestone(&self, index: MilestoneIndex) -> Result<Option<MilestoneRecord>> {
        self.get(&self.milestones, "milestone record", &index.to_be_bytes())
    }

    fn confirmed_index(&self) -> Result<Option<MilestoneIndex>> {
        Ok(self.ledger_header()?.map(|h| h.confirmed_index))
    }

    fn account(&self, address: &Address) -> Result<Option<Account>> {
        self.get(&self.accounts, "account", address.as_bytes())
    }

    fn channel(&self, id: &ChannelId) -> Result<Option<Channel>> {
        self.get(&self.channels, "channel", &id.0)
    }

    fn init_ledger(&self, ledger: &LedgerState) -> Result<()> {
        let _w = self.ledger_write();
        let header = LedgerHeader {
            network_id: ledger.network_id,
            supply: ledger.supply,
            confirmed_index: ledger.confirmed_index,
            digest: ledger.digest,
        };
        (&self.accounts, &self.channels, &self.state)
            .transaction(|(accounts, channels, state)| {
                if state.get(KEY_LEDGER)?.is_some() {
                    return abort(StoreError::AlreadyInitialised);
                }
                for (a, acc) in &ledger.accounts {
                    accounts.insert(&a.as_bytes()[..], encode(acc)?)?;
                }
                for (id, ch) in &ledger.channels {
                    channels.insert(&id.0[..], encode(ch)?)?;
                }
                state.insert(KEY_LEDGER, encode(&header)?)?;
                Ok(())
            })
            .map_err(tx_error)
    }

    fn load_ledger(&self) -> Result<Option<LedgerState>> {
        let _r = self.ledger_read();
        let Some(header) = self.ledger_header()? else {
            return Ok(None);
        };
        // Keys are the raw 32-byte ids, so sled's byte order is the ids' order.
        let mut accounts = Vec::new();
        for item in self.accounts.iter() {
            let (k, v) = item.map_err(backend)?;
            accounts.push((
                Address(decode_id32("account key", &k)?),
                decode("account", &v)?,
            ));
        }
        let mut channels = Vec::new();
        for item in self.channels.iter() {
            let (k, v) = item.map_err(backend)?;
            channels.push((
                ChannelId(decode_id32("channel key", &k)?),
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

    fn apply_milestone(&self, batch: &MilestoneBatch) -> Result<()> {
        let _w = self.ledger_write();
        let index = batch.record.index;
        (
            &self.meta,
            &self.payloads,
            &self.milestones,
            &self.accounts,
            &self.channels,
            &self.state,
        )
            .transaction(|(meta, payloads, milestones, accounts, channels, state)| {
                // Checks come first and abort the whole transaction: nothing is written.
                let Some(mut header) = tx_get::<LedgerHeader>(state, "ledger header", KEY_LEDGER)?
                else {
                    return abort(StoreError::NotInitialised);
                };
                let Some(expected) = header.confirmed_index.checked_add(1) else {
                    return abort(StoreError::Backend(
                        "milestone index space exhausted".into(),
                    ));
                };
                if index != expected {
                    return abort(StoreError::NonConsecutiveMilestone {
                        expected,
                        got: index,
                    });
                }
                for c in &batch.confirmed {
                    let Some(mut m) = tx_get::<TxMeta>(meta, "transaction metadata", &c.tx.0)?
                    else {
                        return abort(StoreError::UnknownTransaction(c.tx));
                    };
                    m.confirmed_by = Some(index);
                    m.outcome = c.payload.map(|(_, o)| o);
                    meta.insert(&c.tx.0[..], encode(&m)?)?;
                    if let Some((pid, outcome)) = c.payload {
                        let mut rec = tx_get::<PayloadRecord>(payloads, "payload record", &pid.0)?
                            .unwrap_or(PayloadRecord {
                                txs: vec![c.tx],
                                status: PayloadStatus::Pending,
                            });
                        rec.status = next_payload_status(rec.status, index, c.tx, outcome);
                        payloads.insert(&pid.0[..], encode(&rec)?)?;
                    }
                }
                milestones.insert(&index.to_be_bytes()[..], encode(&batch.record)?)?;
                for (a, acc) in &batch.diff.accounts {
                    accounts.insert(&a.as_bytes()[..], encode(acc)?)?;
                }
                for (id, ch) in &batch.diff.channels {
                    channels.insert(&id.0[..], encode(ch)?)?;
                }
                header.confirmed_index = index;
                header.digest = batch.record.ledger_digest;
                state.insert(KEY_LEDGER, encode(&header)?)?;
                Ok(())
            })
            .map_err(tx_error)
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

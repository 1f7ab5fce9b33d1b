//! The account table, kept out of sled (format 4): a **checkpoint** file holding the whole
//! table as of one confirmed milestone ([`layout::ACCOUNTS_FILE`]: a header, then
//! 48-byte records sorted by address), plus the **accounts frames** of the transaction log
//! written since (one per milestone: the accounts it changed, with their new values), which
//! are also kept in memory as the changes since the checkpoint.
//!
//! Why: sled 0.34 is log-structured, and rewriting thousands of random account keys per
//! milestone made garbage faster than its one background cleaner reclaimed it, so its file
//! grew with history (+0.97 MB per milestone of 5,000 payments among 100,000 accounts, and
//! a reopen that walked all of it). Here a milestone's account changes cost one sequential
//! append to the log (already synced before the milestone's sled batch, so no extra
//! `fdatasync`), and the space they take is given back whole: a new checkpoint makes the
//! frames before it unneeded, and their segments are deleted like any pruned segment.
//!
//! Commit point: a milestone's accounts frame is appended before its sled batch, which
//! raises the confirmed index. On open, the frames for milestones after the checkpoint and
//! up to the confirmed index are applied in milestone order; a frame for a milestone
//! beyond the confirmed index is one whose batch never committed (a crash in between), and
//! when that milestone is applied again the later frame replaces it.
//!
//! A checkpoint is written once the frames since the last one add up to the table's own
//! size (at least [`MIN_CHECKPOINT_BYTES`]), or after [`MAX_MILESTONES_BETWEEN`]
//! milestones: sled is flushed first (so the checkpoint never gets ahead of the durable
//! confirmed index), then the merge of the old checkpoint with the changes is written to
//! [`layout::ACCOUNTS_TMP_FILE`], synced, and renamed over the old one (the directory
//! synced). Writing costs a sequential pass over the table, amortised over at least as
//! many bytes of changes.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use dag_core::store::{Result, StoreError};
use dag_core::{Account, Address, MilestoneIndex};
use hashbrown::HashMap;
use node_proto::layout::{self, AccountsHeader, ACCOUNTS_HEADER_LEN, ACCOUNT_RECORD_LEN};

use crate::store::txlog::{fsync_dir, io_error};

/// A checkpoint is due once the frames since the last one hold at least this many bytes
/// (or the table's size, if larger).
pub(super) const MIN_CHECKPOINT_BYTES: u64 = 4 * 1024 * 1024;
/// ... or after this many milestones with changes, so the log segments holding the frames
/// of a quiet node are not kept for hours.
pub(super) const MAX_MILESTONES_BETWEEN: u32 = 600;

/// Records read per `pread` when the table is read in order.
const READ_RECORDS: usize = 16 * 1024;

/// Where a checkpoint's bytes are.
#[derive(Debug)]
enum Bytes {
    /// On disk, read with `pread`.
    File(File),
    /// A temporary store's, in memory (header included).
    Memory(Vec<u8>),
}

/// One checkpoint: its header and its bytes.
#[derive(Debug)]
struct Checkpoint {
    header: AccountsHeader,
    bytes: Bytes,
}

impl Checkpoint {
    fn read_at(&self, at: u64, buf: &mut [u8]) -> Result<()> {
        match &self.bytes {
            Bytes::File(f) => f
                .read_exact_at(buf, at)
                .map_err(|e| io_error("reading the account checkpoint", e)),
            Bytes::Memory(v) => {
                let slice = usize::try_from(at)
                    .ok()
                    .and_then(|at| v.get(at..at.checked_add(buf.len())?))
                    .ok_or_else(|| StoreError::Corrupt("account checkpoint cut short".into()))?;
                buf.copy_from_slice(slice);
                Ok(())
            }
        }
    }

    fn record(&self, i: u64) -> Result<(Address, Account)> {
        let mut buf = [0u8; ACCOUNT_RECORD_LEN];
        self.read_at(
            ACCOUNTS_HEADER_LEN as u64 + i * ACCOUNT_RECORD_LEN as u64,
            &mut buf,
        )?;
        layout::decode_account_record(&buf)
    }

    /// Binary search by address.
    fn find(&self, address: &Address) -> Result<Option<Account>> {
        let (mut lo, mut hi) = (0u64, self.header.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (a, acc) = self.record(mid)?;
            match a.as_bytes().cmp(address.as_bytes()) {
                std::cmp::Ordering::Equal => return Ok(Some(acc)),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        Ok(None)
    }

    /// Every record in order, checking the order and (with `check_crc`) the checksum.
    fn for_each(
        &self,
        check_crc: bool,
        visit: &mut dyn FnMut(Address, Account) -> Result<()>,
    ) -> Result<()> {
        let mut crc = crc32fast::Hasher::new();
        let mut buf = vec![0u8; READ_RECORDS * ACCOUNT_RECORD_LEN];
        let mut done = 0u64;
        let mut last: Option<Address> = None;
        while done < self.header.count {
            let n = (self.header.count - done).min(READ_RECORDS as u64) as usize;
            let chunk = &mut buf[..n * ACCOUNT_RECORD_LEN];
            self.read_at(
                ACCOUNTS_HEADER_LEN as u64 + done * ACCOUNT_RECORD_LEN as u64,
                chunk,
            )?;
            if check_crc {
                crc.update(chunk);
            }
            for r in chunk.chunks_exact(ACCOUNT_RECORD_LEN) {
                let (a, acc) = layout::decode_account_record(r)?;
                if last.is_some_and(|l| l.as_bytes() >= a.as_bytes()) {
                    return Err(StoreError::Corrupt(
                        "account checkpoint: records out of order".into(),
                    ));
                }
                last = Some(a);
                visit(a, acc)?;
            }
            done += n as u64;
        }
        if check_crc && crc.finalize() != self.header.crc {
            return Err(StoreError::Corrupt(
                "account checkpoint: checksum mismatch".into(),
            ));
        }
        Ok(())
    }

    fn file_bytes(&self) -> u64 {
        ACCOUNTS_HEADER_LEN as u64 + self.header.count * ACCOUNT_RECORD_LEN as u64
    }
}

/// The account table: the latest checkpoint and the changes since.
#[derive(Debug)]
pub(super) struct AccountTable {
    /// The database directory (`None`: a temporary store, checkpoints in memory).
    dir: Option<PathBuf>,
    /// Sync checkpoints and the directory (power-loss durability).
    sync: bool,
    /// `None` until the ledger is initialised.
    base: Option<Checkpoint>,
    /// Accounts changed since the checkpoint, with their latest values.
    changed: HashMap<Address, Account>,
    /// Bytes of accounts frames written since the checkpoint.
    bytes_since: u64,
    /// Milestones applied since the checkpoint.
    milestones_since: u32,
}

impl AccountTable {
    /// Opens the checkpoint in `dir` if there is one (checking it whole), and removes a
    /// checkpoint a crash left half-written.
    pub(super) fn open(dir: Option<&Path>, sync: bool) -> Result<AccountTable> {
        let mut table = AccountTable {
            dir: dir.map(Path::to_path_buf),
            sync,
            base: None,
            changed: HashMap::new(),
            bytes_since: 0,
            milestones_since: 0,
        };
        let Some(dir) = dir else {
            return Ok(table);
        };
        let tmp = dir.join(layout::ACCOUNTS_TMP_FILE);
        if tmp.exists() {
            std::fs::remove_file(&tmp)
                .map_err(|e| io_error("removing a half-written account checkpoint", e))?;
        }
        let path = dir.join(layout::ACCOUNTS_FILE);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(table),
            Err(e) => return Err(io_error("opening the account checkpoint", e)),
        };
        let len = file
            .metadata()
            .map_err(|e| io_error("reading the account checkpoint", e))?
            .len();
        let mut head = [0u8; ACCOUNTS_HEADER_LEN];
        if len < ACCOUNTS_HEADER_LEN as u64 {
            return Err(StoreError::Corrupt("account checkpoint: too short".into()));
        }
        file.read_exact_at(&mut head, 0)
            .map_err(|e| io_error("reading the account checkpoint", e))?;
        let header = layout::decode_accounts_header(&head, len)?;
        let base = Checkpoint {
            header,
            bytes: Bytes::File(file),
        };
        base.for_each(true, &mut |_, _| Ok(()))?;
        table.base = Some(base);
        Ok(table)
    }

    /// The milestone of the checkpoint (`None` before the ledger is initialised).
    pub(super) fn checkpoint_milestone(&self) -> Option<MilestoneIndex> {
        self.base.as_ref().map(|b| b.header.milestone)
    }

    /// After the log scan: applies the frames of the milestones after the checkpoint up to
    /// `confirmed` (the ledger's confirmed index, `None` before `init_ledger`), in
    /// milestone order. Every one of them must be there.
    pub(super) fn replay(
        &mut self,
        frames: std::collections::BTreeMap<MilestoneIndex, (Vec<(Address, Account)>, u64)>,
        confirmed: Option<MilestoneIndex>,
    ) -> Result<()> {
        let Some(confirmed) = confirmed else {
            // Not initialised: a checkpoint here is from an import a crash cut short.
            self.base = None;
            return Ok(());
        };
        let Some(from) = self.checkpoint_milestone() else {
            return Err(StoreError::Corrupt(format!(
                "the account checkpoint ({}) is missing",
                layout::ACCOUNTS_FILE
            )));
        };
        if from > confirmed {
            return Err(StoreError::Corrupt(format!(
                "the account checkpoint is at milestone {from}, beyond the confirmed {confirmed}"
            )));
        }
        // A milestone that changed no account has no frame; the log holds every segment
        // with a frame after the checkpoint (they are not deleted before a checkpoint
        // covers them) and its tail was synced before each milestone committed.
        for (_, (accounts, bytes)) in frames.range(from + 1..=confirmed) {
            self.apply(accounts, *bytes);
        }
        Ok(())
    }

    /// Takes the changes of one applied milestone (`bytes`: its frame's size).
    pub(super) fn apply(&mut self, accounts: &[(Address, Account)], bytes: u64) {
        if accounts.is_empty() {
            return;
        }
        for (a, acc) in accounts {
            self.changed.insert(*a, *acc);
        }
        self.bytes_since += bytes;
        self.milestones_since += 1;
    }

    /// An account.
    pub(super) fn get(&self, address: &Address) -> Result<Option<Account>> {
        if let Some(acc) = self.changed.get(address) {
            return Ok(Some(*acc));
        }
        match &self.base {
            Some(b) => b.find(address),
            None => Ok(None),
        }
    }

    /// The whole table, sorted by address.
    pub(super) fn all(&self) -> Result<Vec<(Address, Account)>> {
        let count = self.base.as_ref().map_or(0, |b| b.header.count as usize);
        let mut out = Vec::with_capacity(count + self.changed.len());
        self.merged(&mut |a, acc| {
            out.push((a, acc));
            Ok(())
        })?;
        Ok(out)
    }

    /// The checkpoint merged with the changes, in address order.
    fn merged(&self, visit: &mut dyn FnMut(Address, Account) -> Result<()>) -> Result<()> {
        let mut changes: Vec<(Address, Account)> =
            self.changed.iter().map(|(a, acc)| (*a, *acc)).collect();
        changes.sort_unstable_by(|x, y| x.0.as_bytes().cmp(y.0.as_bytes()));
        let mut next = changes.into_iter().peekable();
        if let Some(base) = &self.base {
            base.for_each(false, &mut |a, acc| {
                while let Some((c, _)) = next.peek() {
                    if c.as_bytes() >= a.as_bytes() {
                        break;
                    }
                    let (c, cacc) = next.next().expect("peeked");
                    visit(c, cacc)?;
                }
                if next.peek().is_some_and(|(c, _)| c == &a) {
                    let (c, cacc) = next.next().expect("peeked");
                    visit(c, cacc)
                } else {
                    visit(a, acc)
                }
            })?;
        }
        for (c, cacc) in next {
            visit(c, cacc)?;
        }
        Ok(())
    }

    /// Whether the changes since the checkpoint are worth a new one.
    pub(super) fn checkpoint_due(&self) -> bool {
        let table = self.base.as_ref().map_or(0, Checkpoint::file_bytes);
        self.bytes_since >= table.max(MIN_CHECKPOINT_BYTES)
            || self.milestones_since >= MAX_MILESTONES_BETWEEN
    }

    /// Writes the table as of `milestone` (the confirmed index, durable in sled) as the new
    /// checkpoint and forgets the changes.
    pub(super) fn checkpoint(&mut self, milestone: MilestoneIndex) -> Result<()> {
        let mut w = self.writer()?;
        self.merged(&mut |a, acc| w.push(&a, &acc))?;
        self.replace(w.finish(milestone)?);
        Ok(())
    }

    /// A new checkpoint replaces the old one and the changes it covers.
    fn replace(&mut self, base: Checkpoint) {
        self.base = Some(base);
        self.changed = HashMap::new();
        self.bytes_since = 0;
        self.milestones_since = 0;
    }

    /// Replaces the table with `accounts` as of `milestone` (a genesis or snapshot being
    /// imported, or a database being upgraded). Addresses must be distinct.
    pub(super) fn init(
        &mut self,
        milestone: MilestoneIndex,
        accounts: &[(Address, Account)],
    ) -> Result<()> {
        let mut sorted: Vec<&(Address, Account)> = accounts.iter().collect();
        sorted.sort_unstable_by(|x, y| x.0.as_bytes().cmp(y.0.as_bytes()));
        let mut w = self.writer()?;
        for (a, acc) in sorted {
            w.push(a, acc)?;
        }
        self.replace(w.finish(milestone)?);
        Ok(())
    }

    fn writer(&self) -> Result<CheckpointWriter> {
        let out = match &self.dir {
            Some(dir) => {
                let tmp = dir.join(layout::ACCOUNTS_TMP_FILE);
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&tmp)
                    .map_err(|e| io_error("creating an account checkpoint", e))?;
                Sink::File {
                    dir: dir.clone(),
                    tmp,
                    out: BufWriter::with_capacity(1 << 20, file),
                }
            }
            None => Sink::Memory(Vec::new()),
        };
        let mut w = CheckpointWriter {
            sink: out,
            sync: self.sync,
            crc: crc32fast::Hasher::new(),
            count: 0,
            last: None,
            rec: Vec::with_capacity(ACCOUNT_RECORD_LEN),
        };
        w.write(&[0u8; ACCOUNTS_HEADER_LEN])?;
        Ok(w)
    }

    /// Bytes the checkpoint takes on disk.
    pub(super) fn file_bytes(&self) -> u64 {
        match &self.base {
            Some(b) if matches!(b.bytes, Bytes::File(_)) => b.file_bytes(),
            _ => 0,
        }
    }

    /// Accounts changed since the checkpoint (held in memory).
    pub(super) fn changed_len(&self) -> usize {
        self.changed.len()
    }
}

enum Sink {
    File {
        dir: PathBuf,
        tmp: PathBuf,
        out: BufWriter<File>,
    },
    Memory(Vec<u8>),
}

/// Writes a checkpoint: records in address order, then the header, then (on disk) sync and
/// rename.
struct CheckpointWriter {
    sink: Sink,
    sync: bool,
    crc: crc32fast::Hasher,
    count: u64,
    last: Option<Address>,
    /// One record's bytes, reused (a checkpoint of a million accounts is a million pushes).
    rec: Vec<u8>,
}

impl CheckpointWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        match &mut self.sink {
            Sink::File { out, .. } => out
                .write_all(bytes)
                .map_err(|e| io_error("writing an account checkpoint", e)),
            Sink::Memory(v) => {
                v.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    fn push(&mut self, address: &Address, account: &Account) -> Result<()> {
        if self
            .last
            .is_some_and(|l| l.as_bytes() >= address.as_bytes())
        {
            return Err(StoreError::Backend(format!(
                "account {address} appears twice in the ledger"
            )));
        }
        self.last = Some(*address);
        let mut rec = std::mem::take(&mut self.rec);
        rec.clear();
        layout::push_account_record(&mut rec, address, account);
        self.crc.update(&rec);
        self.count += 1;
        let written = self.write(&rec);
        self.rec = rec;
        written
    }

    fn finish(self, milestone: MilestoneIndex) -> Result<Checkpoint> {
        let header = AccountsHeader {
            milestone,
            count: self.count,
            crc: self.crc.finalize(),
        };
        let head = layout::encode_accounts_header(&header);
        let bytes = match self.sink {
            Sink::Memory(mut v) => {
                v[..ACCOUNTS_HEADER_LEN].copy_from_slice(&head);
                Bytes::Memory(v)
            }
            Sink::File { dir, tmp, out } => {
                let file = out
                    .into_inner()
                    .map_err(|e| io_error("writing an account checkpoint", e.into_error()))?;
                let err = |e| io_error("writing an account checkpoint", e);
                file.write_all_at(&head, 0).map_err(err)?;
                if self.sync {
                    file.sync_data().map_err(err)?;
                }
                std::fs::rename(&tmp, dir.join(layout::ACCOUNTS_FILE)).map_err(err)?;
                if self.sync {
                    fsync_dir(&dir)?;
                }
                Bytes::File(file)
            }
        };
        Ok(Checkpoint { header, bytes })
    }
}

impl super::SledStore {
    /// Writes a new account checkpoint at `milestone`, the confirmed index (called with the
    /// sled writer held, right after the milestone's batch). sled is flushed first, so the
    /// checkpoint is never ahead of the confirmed index a restart finds; the log segments
    /// holding only frames it covers may then be deleted by the next prune.
    pub(super) fn checkpoint_accounts(&self, milestone: MilestoneIndex) -> Result<()> {
        dag_core::store::Store::flush(self)?;
        self.write_accounts().checkpoint(milestone)?;
        self.write_index().accounts_checkpoint = milestone;
        Ok(())
    }
}

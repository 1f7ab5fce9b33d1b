//! Durability: syncing the transaction log, the physical flush of what is dirty (shared by
//! concurrent callers through the group commit), and [`DiskSync`], the `fsync` step that
//! makes sled's writes survive a power loss.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use dag_core::store::{Result, StoreError};

use super::{backend, SledStore};

/// A backend error for a failed file operation.
fn io_error(what: &str, e: io::Error) -> StoreError {
    StoreError::Backend(format!("{what}: {e}"))
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
    /// and return at once if it covered them, else run the next one. Only the active
    /// segment is synced: a segment is synced whole before the next one is started.
    pub(super) fn sync_log(&self) -> Result<()> {
        if self.sync.is_none() {
            return Ok(());
        }
        let target = self.log_written.load(Ordering::SeqCst);
        let mut synced = self.log_synced.lock().unwrap_or_else(|e| e.into_inner());
        if *synced >= target {
            return Ok(());
        }
        let upto = self.log_written.load(Ordering::SeqCst);
        self.log.active().sync()?;
        *synced = upto;
        Ok(())
    }

    /// One physical flush of what is dirty: the log (`fdatasync` with power-loss
    /// durability), then sled's flush and the `fsync` step if configured.
    pub(super) fn physical_flush(&self) -> Result<()> {
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

/// The files the `fsync` step syncs after sled's flush.
pub(super) struct DiskSync {
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
    pub(super) fn open(dir: &Path) -> Result<DiskSync> {
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
    use dag_core::store::{Store, TxEntry, TxMeta};
    use dag_core::TxId;

    use super::*;
    use node_proto::layout;

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
        assert_eq!(synced(&t), 0);
    }

    /// With tiny segments, appends move on to new segments, and a log sync still covers
    /// every append (the full segment was synced when the next one started).
    #[test]
    fn log_syncs_cover_appends_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open_with_options(
            dir.path(),
            crate::store::StoreOptions::default().segment_bytes(100),
        )
        .unwrap();
        for i in 1..=4 {
            put(&s, i);
        }
        assert_eq!(s.log_segments(), 4);
        s.flush_transactions().unwrap();
        assert_eq!(synced(&s), s.log_written.load(Ordering::SeqCst));
        let frame = layout::FRAME_HEADER_LEN + 5 + layout::TX_ENTRY_HEADER_LEN + 40;
        assert_eq!(synced(&s), 4 * frame as u64);
    }
}

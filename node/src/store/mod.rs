//! Persistent storage: [`SledStore`], the backend of [`dag_core::store::Store`] on sled 0.34
//! and an append-only transaction log.
//!
//! It passes the same conformance suite as `MemStore` (`node/tests/store_sled.rs`).
//!
//! # On-disk layout (format 2)
//! Two parts in the database directory, the way Bitcoin Core keeps blocks in flat files and
//! its indexes and chain state in LevelDB:
//!
//! - **`transactions.log`** ([`layout::LOG_FILE`]): what never changes, the transactions.
//!   An 8-byte magic, then frames: body length (u32 LE), CRC-32 of the body (u32 LE), body.
//!   One `put_transactions` batch is one frame (kind 1: per transaction its id, arrival,
//!   solid flag, payload id, length and canonical bytes: 77 bytes + the transaction); a
//!   `mark_solid` call is one frame of ids (kind 2). Appended with `pwrite`, read with
//!   `pread`.
//! - **One sled tree**, `tangle` ([`layout::TREE`]): what a milestone changes. The first
//!   byte of a key says what it is; integers in keys are big-endian so keys sort
//!   numerically:
//!
//! | key                                | value                                              |
//! |------------------------------------|----------------------------------------------------|
//! | `k` + milestone index (u32) + chunk (u32) | up to 1,024 confirmations in white-flag order: tx id, outcome, and the payload id if it was confirmed as carrying one it was not stored with |
//! | `m` + milestone index (u32)        | `MilestoneRecord` (MessagePack)                    |
//! | `a` + address (33 B)               | balance, next seq (u64 each, 16 B)                 |
//! | `c` + channel id (33 B)            | `Channel` (MessagePack)                            |
//! | `sformat`                          | format version (1 byte)                            |
//! | `sledger`                          | network id, supply, confirmed index and digest (MessagePack) |
//!
//! - **In memory**, rebuilt on open by one scan of the log and of the `k` chunks: an index
//!   from tx id to its log entry and confirmation (56 bytes per transaction plus the hash
//!   table's overhead), and from payload id to the transactions carrying it. `transaction`
//!   and `metadata` are one index look-up and one `pread`; `payload` (with the status,
//!   derived from its transactions' confirmations in (milestone, white-flag position)
//!   order, the rule of `apply_milestone` replayed) is index only.
//!
//! Why this shape: sled 0.34 costs several microseconds per key written (each insert copies
//! a leaf node and appends a log fragment; perf puts 60% of a node cycle in sled's
//! `insert`/`get`), and the earlier layout with a record per transaction in sled wrote four
//! keys and read two per payment: about 53 us of CPU per payment, the node's bottleneck.
//! Now storing a batch is one `pwrite`, and confirming costs per payment 34 bytes in a
//! chunk plus the ledger's own account values (`store/node_cycle_report` in
//! `benches/benches/store.rs` has the figures). The price is the in-memory index, which
//! grows with the stored transactions (the store is not pruned yet).
//!
//! Atomicity: a frame is all or nothing (its CRC covers the whole batch); a sled batch is
//! all or nothing; the index takes a milestone's confirmations in one step under its lock.
//! The log is synced before a milestone's sled batch is applied, so a confirmation never
//! outlives the transaction it names. On open, a torn tail of the log (an incomplete frame
//! or a CRC mismatch, as a crash during an append leaves) is cut off and logged; like
//! RocksDB's point-in-time recovery, reading stops at the first damaged frame. Those bytes
//! were never flushed, so never acknowledged, unless the device lost flushed data; a
//! confirmation naming a transaction no longer in the log is then reported as `Corrupt`.
//!
//! A database of another format (including format 1, which kept transactions in sled) is
//! refused at open with `StoreError::Corrupt`.
//!
//! # Durability
//! [`Store::flush`](dag_core::store::Store::flush) is the durability point: the node calls
//! it before it acknowledges a submission. A physical flush syncs only what changed since
//! the last one: the transaction log, sled, or both (a round of submissions touches only
//! the log). [`Store::flush_transactions`](dag_core::store::Store::flush_transactions),
//! which the node's ingest uses, syncs the log alone, so a submission never waits for the
//! flush of a milestone being written by the milestone writer. Log syncs are ordered by
//! position (the end written against the end synced), so concurrent callers share one
//! `fdatasync` and none returns before its bytes are covered.
//!
//! - **The transaction log** is ours: appended with `pwrite`, which survives a crash of
//!   the process; with [`Durability::PowerLoss`] the flush also `fdatasync`s it (data,
//!   size and allocation, and a cache flush request to the device), and its creation is
//!   made durable with an `fsync` of the directory.
//!
//! What sled 0.34 gives, and what we add:
//!
//! - sled keeps recent writes in in-memory I/O buffers. `Db::flush` writes them to its log
//!   file (`<dir>/db`) with `pwrite` and then, on Linux, calls
//!   `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)` on the written range (not `fsync`;
//!   sled PR #928). After it returns, the data is in the kernel and has been sent to the
//!   device, so it **survives a crash of the process** (and of sled's own threads).
//! - It does **not** survive a power loss or kernel crash reliably. The man page of
//!   `sync_file_range(2)` says it writes out no file metadata and does not flush the disk's
//!   volatile write cache, so it "does not provide any data integrity" there. For sled
//!   this matters twice: the log grows by pwrite past the end of the file, and the new size
//!   and block allocation (ext4 delayed allocation, journal) are metadata that only an
//!   `fsync`/`fdatasync` commits; and a drive without power-loss protection may still hold
//!   the data in its cache. sled's own issues say the same (spacejam/sled#1351, #1452:
//!   "Data is not written durably"). sled does `fsync` (`sync_all`) the log from its
//!   background flusher, every 500 ms by default, and when it writes snapshots; blob files
//!   (values over about 128 KiB; we store none that large) are never synced.
//! - We close the gap: with [`Durability::PowerLoss`] (the default of [`SledStore::open`]),
//!   a physical flush of sled is its `flush` followed by `fdatasync` of sled's log file,
//!   `fsync` of any new blob
//!   file, and `fsync` of the database directory when its entries changed (file
//!   creations, snapshot renames; an unchanged directory is not synced, because on ext4
//!   that still costs a journal commit). On this machine's ext4 (virtual disk) `fdatasync`
//!   costs about 4 ms whatever it covers, against about 0.15 ms for sled's flush of a small
//!   write, which is why flushes are grouped (figures: `cargo bench -p benches --bench
//!   store`, `store/put_flush/{power_loss,process_crash}`).
//!   Residual gap, in sled itself: its snapshot renames and log-segment reuse are ordered
//!   by sled, not by us; we sync the directory at the next flush after a rename.
//!
//! The guarantee: **a 2xx means the submission survived a process crash and, with the
//! default [`Durability::PowerLoss`], a power loss** (on a device that honours cache-flush
//! requests, which is what `fsync` relies on everywhere). With
//! [`Durability::ProcessCrash`] it means a process crash only.
//!
//! ## Group commit
//! A physical flush costs about a millisecond or more whatever it covers, so flushing per
//! submission would cap the node at a few thousand per second. Concurrent callers of
//! `flush` therefore share physical flushes: a caller waits for the first flush that
//! *started after it called* (that one covers its writes); if none is running it runs one
//! itself, covering every caller that arrived meanwhile. N concurrent callers cost at most
//! two physical flushes, not N. [`SledStore::physical_flushes`] counts them.

// The format (pure, no I/O) builds without the `runtime` feature, for the fuzz targets.
/// The store's on-disk format lives in the protocol core (the fuzz targets and tools read
/// it without the driver).
pub use node_proto::layout;

mod group_commit;
mod sled;
mod txlog;

pub use self::sled::{Durability, SledStore, StoreOptions, DEFAULT_SEGMENT_BYTES};

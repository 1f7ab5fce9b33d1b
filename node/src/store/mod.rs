//! Persistent storage: [`SledStore`], the sled 0.34 backend of [`dag_core::store::Store`].
//!
//! It passes the same conformance suite as `MemStore` (`node/tests/store_sled.rs`).
//! Everything lives in **one sled tree**, so every batch method is one sled `apply_batch`:
//! all or nothing for concurrent readers (sled takes its write lock for a batch) and for a
//! restart after a crash (sled recovers a batch whole or not at all). A milestone is applied
//! in one such batch ([`dag_core::store::Store::apply_milestone`]). Writers are serialised by
//! a mutex, because each reads what it is about to change before it writes.
//!
//! # On-disk layout (format 1)
//! One sled tree, `tangle` ([`layout::TREE`]); the first byte of a key says what it is.
//! Integers in keys are big-endian so that keys sort numerically:
//!
//! | key                                | value                                              |
//! |------------------------------------|----------------------------------------------------|
//! | `t` + tx id (33 B)                 | transaction record: 59-byte header (storing sequence, arrival, flags, payload id, confirming milestone, white-flag position, outcome) + canonical bytes ([`layout::encode_tx_record`]) |
//! | `p` + payload id + storing seq (41 B) | tx id: one entry per transaction carrying the payload |
//! | `m` + milestone index (u32)        | `MilestoneRecord` (MessagePack)                    |
//! | `a` + address (33 B)               | balance, next seq (u64 each, 16 B)                 |
//! | `c` + channel id (33 B)            | `Channel` (MessagePack)                            |
//! | `sformat`                          | format version (1 byte)                            |
//! | `sledger`                          | network id, supply, confirmed index and digest (MessagePack) |
//! | `stx_count`                        | transactions stored (u64), also the next storing sequence |
//!
//! Why this shape: sled 0.34 costs several microseconds per inserted key whatever its size
//! (each insert copies a leaf node and appends a log fragment), so the layout minimises keys
//! written per payment: **two when it is stored** (its record and one payload index entry)
//! **and one when it is confirmed** (its record, rewritten with the confirmation), besides
//! the ledger's own account values. In particular:
//! - a transaction's metadata shares its record with its bytes;
//! - there is no arrival index: the storing sequence is in the record, and
//!   `for_each_transaction` sorts by it, so the node reloads its Tangle in the order it
//!   first stored the transactions (parents before children, as they were live; a
//!   sequence rather than the `arrival` timestamp, which may tie or step back);
//! - a payload's status is not stored but derived when it is read: the rule of
//!   `apply_milestone` replayed over the confirmations of its carrying transactions, in
//!   (milestone, white-flag position) order. The record keeps that position for this.
//!   `payload` reads several keys and retries if a milestone was applied meanwhile, so it
//!   never sees half a milestone either.
//!
//! - `for_each_transaction` therefore holds a reference to every record while it sorts
//!   (about 60 bytes per transaction besides the records, which sled shares with its cache);
//!   it runs once, on start.
//!
//! Measured and rejected: keying records by storing sequence (appends at the end of the
//! tree, a streaming reload) with an id -> sequence index costs a third key per payment:
//! about 10% more CPU and 45% more bytes on disk (`store/node_cycle_report`).
//!
//! A database of another format (including the earlier tree-per-record layout) is refused
//! at open with `StoreError::Corrupt`.
//!
//! # Durability
//! [`Store::flush`](dag_core::store::Store::flush) is the durability point: the node calls
//! it before it acknowledges a submission. What sled 0.34 gives, and what we add:
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
//!   a physical flush is sled's `flush` followed by `fdatasync` of the log file (data, file
//!   size and allocation, and a cache flush request to the device), `fsync` of any new blob
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

mod group_commit;
pub mod layout;
mod sled;

pub use self::sled::{Durability, SledStore};

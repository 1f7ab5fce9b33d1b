//! Persistent storage: [`SledStore`], the sled 0.34 backend of [`dag_core::store::Store`].
//!
//! It passes the same conformance suite as `MemStore` (`node/tests/store_sled.rs`). Every
//! batch method is one sled transaction across the trees it touches, so a batch is all or
//! nothing for concurrent readers and for a restart after a crash; a milestone is applied in
//! one such transaction ([`dag_core::store::Store::apply_milestone`]).
//!
//! # On-disk layout
//! One sled database, one tree per kind of record (names in [`trees`]); values are
//! MessagePack (rmp-serde) unless said otherwise, integers in keys are big-endian so that
//! keys sort numerically:
//!
//! | tree           | key                         | value                                 |
//! |----------------|-----------------------------|---------------------------------------|
//! | `transactions` | tx id (32 B)                | canonical transaction bytes           |
//! | `metadata`     | tx id                       | `TxMeta`                              |
//! | `arrival`      | storing sequence (u64 BE)   | tx id                                 |
//! | `payloads`     | payload id (32 B)           | `PayloadRecord`                       |
//! | `milestones`   | milestone index (u32 BE)    | `MilestoneRecord`                     |
//! | `accounts`     | address (32 B)              | `Account`                             |
//! | `channels`     | channel id (32 B)           | `Channel`                             |
//! | `state`        | `ledger`, `tx_count`, `next_arrival` | network id, supply, confirmed index and digest; counters (u64 BE) |
//!
//! The `arrival` index is what lets the node reload its Tangle in the order it first stored
//! the transactions ([`SledStore`]'s `for_each_transaction` walks it), so parents come
//! before their children as they did live and the solidifier's bounded buffer is not
//! flooded on start. It is keyed by a storing sequence number rather than by the
//! `arrival` timestamp: transactions stored in the same millisecond, or across a clock
//! step, keep their storing order.
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
mod sled;

pub use self::sled::{trees, Durability, SledStore};

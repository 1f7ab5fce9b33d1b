//! Persistent storage: [`SledStore`], the backend of [`dag_core::store::Store`] on sled 0.34
//! and an append-only transaction log.
//!
//! It passes the same conformance suite as `MemStore` (`node/tests/store_sled.rs`).
//!
//! # On-disk layout (format 5)
//! Three parts in the database directory, the way Bitcoin Core keeps blocks in flat files
//! and its indexes and chain state in LevelDB:
//!
//! - **The transaction log** (`txlog.rs`): what never changes, the transactions, in a
//!   sequence of **segment files**: `transactions.log` ([`layout::LOG_FILE`]) is segment 0,
//!   then `transactions.log.1`, `.2`, ... ([`layout::log_segment_name`]). Frames are
//!   appended to the newest (*active*) segment; once it holds
//!   [`StoreOptions::segment_bytes`] (64 MiB by default; the node uses
//!   [`PRUNED_SEGMENT_BYTES`], 16 MiB, when it prunes) the next frame starts a new one
//!   (with power-loss durability the full segment is `fdatasync`ed and the new file and its
//!   directory entry made durable first, so a log sync only ever covers the active
//!   segment). The live segments are always a contiguous range of ids. Each segment is an
//!   8-byte magic, then frames: body length (u32 LE), CRC-32 of the body (u32 LE), body.
//!   One `put_transactions` batch is one frame (kind 1: per transaction its id, arrival,
//!   solid flag, payload id, length and canonical bytes: 77 bytes + the transaction); a
//!   `mark_solid` call is one frame of ids (kind 2); a `prune` is one **tombstone** frame
//!   (kind 3, [`layout::Tombstone`]: the pruned milestone, the ids of the pruned
//!   transactions the store held, the solid entry points); a milestone that changes
//!   accounts writes one **accounts frame** (kind 4, [`layout::AccountsFrame`]: the
//!   milestone and the changed accounts' new values) before its sled batch. Appended with
//!   `pwrite`, read with `pread`.
//! - **The account checkpoint** (`sled/accounts.rs`), [`layout::ACCOUNTS_FILE`]: the whole
//!   account table as of one confirmed milestone, 48-byte records (address, balance, next
//!   seq) sorted by address after a checksummed header, written to a temporary file and
//!   renamed. The table is that checkpoint plus the accounts frames of the later
//!   milestones, which are also held in memory (the changes since the checkpoint); a new
//!   checkpoint is written once those frames add up to the table's size (at least 4 MiB)
//!   or 600 milestones. A log segment holding the frame of a milestone after the
//!   checkpoint is not deleted.
//! - **One sled tree**, `tangle` ([`layout::TREE`]): what a milestone changes, and what
//!   a prune leaves. The first byte of a key says what it is; integers in keys are
//!   big-endian so keys sort numerically:
//!
//! | key                                | value                                              |
//! |------------------------------------|----------------------------------------------------|
//! | `k` + milestone index (u32) + chunk (u32) | up to 64 confirmations in white-flag order (1,024 in format 4: such stores are re-split on open, `sled/upgrade.rs`; small values keep every sled node under sled's blob threshold): tx id, outcome, and the payload id if it was confirmed as carrying one it was not stored with |
//! | `p` + milestone index (u32) + chunk (u32) | bitmap of the entries of that `k` chunk that name pruned transactions (only while the chunk stays) |
//! | `m` + milestone index (u32)        | `MilestoneRecord` (MessagePack)                    |
//! | `c` + channel id (33 B)            | `Channel` (MessagePack)                            |
//! | `b` + payload id (33 B)            | a payload's status when some of its transactions were pruned, and the confirmed index then (MessagePack) |
//! | `sformat`                          | format version (1 byte)                            |
//! | `sledger`                          | network id, supply, confirmed index and digest (MessagePack) |
//! | `sprune`                           | the last applied prune: its tombstone's position in the log and its milestone (MessagePack; the entry points are read from the tombstone on open; format 4 stored them here too) |
//!
//! - **In memory**, rebuilt on open by one scan of the log and of the `k` chunks: an index
//!   from tx id to its log entry (segment and offset, packed in 8 bytes) and confirmation
//!   (56 bytes per transaction plus the hash table's overhead), from payload id to the
//!   transactions carrying it, and per live segment the number of its entries still
//!   indexed. `transaction` and `metadata` are one index look-up and one `pread`;
//!   `payload` (with the status, derived from its transactions' confirmations in
//!   (milestone, white-flag position) order, the rule of `apply_milestone` replayed, on top
//!   of its `b` base if it has one) is index only.
//!
//! Why the accounts are not in sled (they were until format 3): sled 0.34 is
//! log-structured, and a milestone rewrote thousands of random account keys, garbage its
//! one background cleaner did not reclaim as fast under load, so its file grew with
//! history (+0.97 MB per milestone of 5,000 payments among 100,000 accounts, and the open
//! time with it). An accounts frame is one sequential append to a log that is synced
//! before the milestone anyway, and its space comes back whole with its segment.
//!
//! Why this shape: sled 0.34 costs several microseconds per key written (each insert copies
//! a leaf node and appends a log fragment; perf puts 60% of a node cycle in sled's
//! `insert`/`get`), and the earlier layout with a record per transaction in sled wrote four
//! keys and read two per payment: about 53 us of CPU per payment, the node's bottleneck.
//! Now storing a batch is one `pwrite`, and confirming costs per payment 34 bytes in a
//! chunk plus the ledger's own account values (`store/node_cycle_report` in
//! `benches/benches/store.rs` has the figures). The price is the in-memory index, which
//! grows with the stored transactions until they are pruned.
//!
//! Atomicity: a frame is all or nothing (its CRC covers the whole batch); a sled batch is
//! all or nothing; the index takes a milestone's confirmations in one step under its lock.
//! The log is synced before a milestone's sled batch is applied, so a confirmation never
//! outlives the transaction it names. On open, a torn tail of the newest segment (an
//! incomplete frame or a CRC mismatch, as a crash during an append leaves) is cut off and
//! logged; like RocksDB's point-in-time recovery, reading stops at the first damaged
//! frame. Those bytes were never flushed, so never acknowledged, unless the device lost
//! flushed data; a confirmation naming a transaction no longer in the log is then reported
//! as `Corrupt`. An older segment was complete and synced before the next one was started:
//! damage there, or a segment missing from the middle of the range, is `Corrupt`.
//!
//! ## Pruning
//! [`Store::prune`](dag_core::store::Store::prune) (the node sends one batch per milestone
//! once it runs with retention), under the sled writer lock and then the log writer lock:
//!
//! 1. a flush, so everything written before the prune (the milestones it follows above
//!    all) is durable before the prune can be;
//! 2. the **tombstone** frame is appended and the log synced: the commit point. It lists
//!    the pruned transactions the store held, and the pruned milestone, which never goes
//!    back (the higher of the batch's and the previous one);
//! 3. the index forgets them in one step: slots, places in payload lists, counts of live
//!    entries per segment. A payload left without transactions goes; one that keeps some
//!    gets its current status as a base (`b`), so pruning never changes a status;
//! 4. one sled batch cleans up: the `m` records of milestones up to the pruned one; the
//!    `k` chunks of those milestones that no longer name a live transaction (with their
//!    `p` bitmap); a `p` bitmap marking the pruned entries of every chunk that stays (a
//!    chunk of a later milestone, or one still confirming a transaction the batch did not
//!    list, whose confirmation is kept); the `b` bases; and `sprune`;
//! 5. **segment deletion**: a segment is deleted (file removed, directory `fsync`ed) when
//!    it and every older segment hold no live transaction entry (tombstone and solid
//!    frames do not count) and it is not the active one; oldest first, after a flush that
//!    makes the clean-ups durable, and not while a clean-up failed to apply. A tombstone in
//!    a deleted segment is never needed again: the transactions it names lived in it or in
//!    older, deleted, segments; a confirmation chunk still naming one has its `p` bitmap.
//!
//! On open, the log scan applies the tombstones in order (their transactions leave the
//! index; the same transaction stored again later is indexed anew). A confirmation marked
//! in a `p` bitmap is skipped; one naming a transaction never stored is still `Corrupt`.
//! A tombstone after the one `sprune` points at is a prune whose clean-up may not have
//! reached sled: since step 1 flushed and the sled writer was held until step 4, sled then
//! holds exactly the state of when it was written, so its clean-up (bitmaps, bases,
//! deletions) is worked out again from the confirmations and the pruned entries and
//! applied, then segments left without live entries are deleted. So a crash anywhere in a
//! prune shows all of it (tombstone durable) or none of it (tombstone torn or lost).
//! Pruning keeps the disk (segments, sled keys) and the index bounded by what is kept.
//!
//! A database of another format (including format 1, which kept transactions in sled) is
//! refused at open with `StoreError::Corrupt`. A database of format 2 (a single
//! `transactions.log`, never pruned: segment 0 of a log without tombstones) or 3 (accounts
//! under sled keys `a` + address) is upgraded: its accounts are written as the checkpoint
//! (synced), then one sled batch removes the `a` keys and sets format 4, so that an
//! earlier version, which would misread a tombstone or an accounts frame as a torn tail,
//! refuses it from then on; a crash before that batch leaves the old format, upgraded
//! again at the next open. A database of format 4 (or one just upgraded to it) has its
//! confirmation chunks re-split into 64-entry ones, one sled batch per milestone with a
//! progress key, and then says format 5.
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
//!   the process; with [`Durability::PowerLoss`] the flush also `fdatasync`s its active
//!   segment (data, size and allocation, and a cache flush request to the device), and the
//!   creation and deletion of segments are made durable with an `fsync` of the directory.
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

pub use self::sled::{
    Durability, SledStore, StoreOptions, DEFAULT_SEGMENT_BYTES, PRUNED_SEGMENT_BYTES,
};

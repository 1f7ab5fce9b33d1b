//! Upgrades of databases written in earlier formats, run by `check_format` when a store
//! is opened (before anything else reads it).

use std::path::Path;

use dag_core::store::{Result, StoreError};
use dag_core::MilestoneIndex;
use node_proto::layout::{self, CONFIRMATIONS_PER_CHUNK, CONFIRMATIONS_PER_CHUNK_V4};
use sled::{Batch, Tree};

use super::accounts::AccountTable;
use super::{backend, get, LedgerHeader};

/// Progress of [`upgrade_chunks`]: the last milestone whose chunks are re-split (u32 BE).
/// Present only while a format-4 database is being upgraded.
const CHUNKS_DONE_KEY: &[u8] = b"supgrade5";

/// New chunks per format-4 chunk.
const SPLIT: usize = CONFIRMATIONS_PER_CHUNK_V4 / CONFIRMATIONS_PER_CHUNK;

/// Moves the accounts of a format-2 or -3 database out of sled: the checkpoint (at the
/// ledger's confirmed index) is written and synced first, then one sled batch removes the
/// account keys and sets format 4, flushed before anything of the new format is written
/// (so an earlier version never opens a log it would misread). A crash before that batch
/// leaves the old format, and the upgrade is done again.
pub(super) fn upgrade_accounts(db: &sled::Db, tree: &Tree, dir: &Path, sync: bool) -> Result<()> {
    let header = get::<LedgerHeader>(tree, "ledger header", layout::LEDGER_KEY)?;
    let mut records = Vec::new();
    let mut batch = Batch::default();
    for item in tree.scan_prefix([layout::ACCOUNT]) {
        let (k, v) = item.map_err(backend)?;
        records.push((
            dag_core::Address(layout::key_id("account", &k)?),
            layout::decode_account(&v)?,
        ));
        batch.remove(k);
    }
    if let Some(h) = header {
        AccountTable::open(Some(dir), sync)?.init(h.confirmed_index, &records)?;
    }
    batch.insert(layout::FORMAT_KEY, &[layout::FORMAT_ACCOUNTS_FILE][..]);
    tree.apply_batch(batch).map_err(backend)?;
    db.flush().map_err(backend)?;
    Ok(())
}

/// Re-splits the confirmation chunks of a format-4 database (1,024 entries) into chunks of
/// [`CONFIRMATIONS_PER_CHUNK`], with their pruned-entry bitmaps, keeping every entry's
/// position: entry `i` of old chunk `c` becomes entry `i % 64` of new chunk
/// `c * 16 + i / 64`. A new chunk whose entries are all pruned is left out (as a prune
/// would have deleted it). One sled batch per milestone records the milestone as done
/// ([`CHUNKS_DONE_KEY`]), so a crash resumes after it; the last batch sets format 5. The
/// prune state keeps its entry points until the next prune replaces it.
pub(super) fn upgrade_chunks(db: &sled::Db, tree: &Tree) -> Result<()> {
    let done = match tree.get(CHUNKS_DONE_KEY).map_err(backend)? {
        Some(v) => Some(MilestoneIndex::from_be_bytes(
            v.as_ref().try_into().map_err(|_| {
                StoreError::Corrupt("chunk upgrade progress of the wrong length".into())
            })?,
        )),
        None => None,
    };
    let mut milestones = Vec::new();
    for item in tree.scan_prefix([layout::CONFIRMATION]) {
        let (k, _) = item.map_err(backend)?;
        let (m, _) = layout::decode_confirmation_key(&k)?;
        if milestones.last() != Some(&m) && done.is_none_or(|d| m > d) {
            milestones.push(m);
        }
    }
    if !milestones.is_empty() {
        tracing::info!(
            milestones = milestones.len(),
            "upgrading the database to format 5: re-splitting confirmation chunks"
        );
    }
    for m in milestones {
        let mut batch = Batch::default();
        let range = layout::confirmation_key(m, 0).to_vec()
            ..=layout::confirmation_key(m, u32::MAX).to_vec();
        for item in tree.range(range) {
            let (k, v) = item.map_err(backend)?;
            let (_, chunk) = layout::decode_confirmation_key(&k)?;
            let entries = layout::decode_confirmations(&v)?;
            if entries.len() > CONFIRMATIONS_PER_CHUNK_V4 {
                return Err(StoreError::Corrupt(format!(
                    "confirmation chunk ({m}, {chunk}) of {} entries",
                    entries.len()
                )));
            }
            let pruned_key = layout::pruned_key(m, chunk);
            let bitmap = tree.get(pruned_key).map_err(backend)?;
            if let Some(b) = &bitmap {
                layout::check_pruned_bitmap_of(b, CONFIRMATIONS_PER_CHUNK_V4)?;
            }
            let bitmap = bitmap.as_deref().unwrap_or(&[]);
            batch.remove(&k[..]);
            batch.remove(&pruned_key[..]);
            let first = chunk
                .checked_mul(SPLIT as u32)
                .filter(|f| f.checked_add(SPLIT as u32).is_some())
                .ok_or_else(|| StoreError::Corrupt(format!("confirmation chunk {chunk}")))?;
            for (j, part) in entries.chunks(CONFIRMATIONS_PER_CHUNK).enumerate() {
                let base = j * CONFIRMATIONS_PER_CHUNK;
                let mut bits = Vec::new();
                for i in 0..part.len() {
                    if layout::pruned_bit(bitmap, base + i) {
                        layout::set_pruned_bit(&mut bits, i);
                    }
                }
                if bits.iter().map(|b| b.count_ones() as usize).sum::<usize>() == part.len() {
                    continue;
                }
                let mut v = Vec::with_capacity(part.len() * layout::CONFIRMATION_LEN);
                for c in part {
                    layout::push_confirmation(&mut v, c);
                }
                let new = first + j as u32;
                batch.insert(&layout::confirmation_key(m, new)[..], v);
                if !bits.is_empty() {
                    batch.insert(&layout::pruned_key(m, new)[..], bits);
                }
            }
        }
        batch.insert(CHUNKS_DONE_KEY, &m.to_be_bytes()[..]);
        tree.apply_batch(batch).map_err(backend)?;
    }
    let mut last = Batch::default();
    last.remove(CHUNKS_DONE_KEY);
    last.insert(layout::FORMAT_KEY, &[layout::FORMAT][..]);
    tree.apply_batch(last).map_err(backend)?;
    db.flush().map_err(backend)?;
    Ok(())
}

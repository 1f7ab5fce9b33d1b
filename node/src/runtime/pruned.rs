//! What the node pruned, for answers: the pruned milestone, and a bounded filter of the
//! pruned transaction and payload ids, so a request for one is answered 410 `pruned`
//! instead of 404.
//!
//! Ids are BLAKE2b hashes, so their bytes are uniform: the filter is a Bloom filter whose
//! positions are read straight out of the id (four 24-bit windows). Two generations of
//! 2 MiB each: when the current one has taken [`GENERATION`] ids it becomes the previous one
//! and a fresh one starts, so memory stays at 4 MiB and the last one to two million pruned
//! ids are recognised (a false positive, a never-seen id answered 410, has a probability
//! of about 0.2% at a full generation). Older pruned ids, and all of them after a restart,
//! are answered 404 like unknown ones.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use dag_core::MilestoneIndex;

/// Ids per generation.
const GENERATION: usize = 1 << 20;
/// Bits per generation (2 MiB).
const BITS: usize = 1 << 24;
/// Positions per id.
const HASHES: usize = 4;

/// The pruned milestone and the filter of pruned ids.
pub(super) struct Pruned {
    milestone: AtomicU32,
    filter: Mutex<Generations>,
}

struct Generations {
    current: Vec<u64>,
    previous: Vec<u64>,
    taken: usize,
}

fn positions(id: &[u8; 32]) -> [usize; HASHES] {
    let mut out = [0; HASHES];
    for (i, p) in out.iter_mut().enumerate() {
        let w = u32::from_le_bytes([id[4 * i], id[4 * i + 1], id[4 * i + 2], id[4 * i + 3]]);
        *p = (w as usize) & (BITS - 1);
    }
    out
}

fn has(bits: &[u64], id: &[u8; 32]) -> bool {
    !bits.is_empty()
        && positions(id)
            .iter()
            .all(|p| bits[p / 64] & (1 << (p % 64)) != 0)
}

impl Pruned {
    /// Nothing pruned beyond `milestone` (from the store at start).
    pub(super) fn new(milestone: MilestoneIndex) -> Self {
        Pruned {
            milestone: AtomicU32::new(milestone),
            filter: Mutex::new(Generations {
                current: Vec::new(),
                previous: Vec::new(),
                taken: 0,
            }),
        }
    }

    /// The newest pruned milestone (0: none).
    pub(super) fn milestone(&self) -> MilestoneIndex {
        self.milestone.load(Ordering::Relaxed)
    }

    /// Records a prune: its milestone and the ids it dropped.
    pub(super) fn record<'a>(
        &self,
        milestone: MilestoneIndex,
        ids: impl Iterator<Item = &'a [u8; 32]>,
    ) {
        self.milestone.fetch_max(milestone, Ordering::Relaxed);
        let mut g = self.filter.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            if g.taken >= GENERATION || g.current.is_empty() {
                let fresh = vec![0u64; BITS / 64];
                g.previous = std::mem::replace(&mut g.current, fresh);
                g.taken = 0;
            }
            for p in positions(id) {
                g.current[p / 64] |= 1 << (p % 64);
            }
            g.taken += 1;
        }
    }

    /// Whether `id` was probably pruned recently (see the module docs).
    pub(super) fn contains(&self, id: &[u8; 32]) -> bool {
        let g = self.filter.lock().unwrap_or_else(|p| p.into_inner());
        has(&g.current, id) || has(&g.previous, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> [u8; 32] {
        dag_core::crypto::blake2b256(&n.to_le_bytes())
    }

    #[test]
    fn recorded_ids_are_recognised_and_others_mostly_not() {
        let p = Pruned::new(3);
        assert_eq!(p.milestone(), 3);
        assert!(!p.contains(&id(1)), "an empty filter holds nothing");
        let ids: Vec<[u8; 32]> = (0..10_000).map(id).collect();
        p.record(7, ids.iter());
        assert_eq!(p.milestone(), 7);
        p.record(5, std::iter::empty());
        assert_eq!(p.milestone(), 7, "never goes back");
        assert!(ids.iter().all(|i| p.contains(i)));
        let false_positives = (10_000..20_000).filter(|n| p.contains(&id(*n))).count();
        assert!(false_positives < 10, "{false_positives} false positives");
    }
}

//! Giving memory back after a prune.
//!
//! Hash tables and ring buffers grow by doubling and never shrink on their own, so a node
//! whose held window briefly peaks (a slow milestone, a burst of arrivals) would keep the
//! doubled tables for the rest of its life: its memory would follow the largest window it
//! ever held, not the window it holds. Structures that prune call [`shrink_sparse`] (at most
//! every [`SHRINK_EVERY`] prunes, so a window hovering at a doubling threshold does not
//! rehash on every prune): a structure using less than half of its capacity is shrunk to
//! 1.25 times its length.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash};

/// Prunes between two checks of [`shrink_sparse`] (a shrink costs O(len)).
pub const SHRINK_EVERY: u32 = 16;

/// Structures below this capacity are left alone (not worth a reallocation).
const MIN_CAPACITY: usize = 4096;

/// A collection whose spare capacity can be given back.
pub trait Shrink {
    /// Elements held.
    fn held(&self) -> usize;
    /// Elements it has room for without growing.
    fn room(&self) -> usize;
    /// Shrinks the room to about `to` (never below the length).
    fn shrink_room_to(&mut self, to: usize);
}

/// `Shrink` for a collection with the usual `len`, `capacity` and `shrink_to`.
macro_rules! shrink_by_inherent_methods {
    (impl<$($g:ident),*> for $t:ty $(where $($bound:tt)*)?) => {
        impl<$($g),*> Shrink for $t $(where $($bound)*)? {
            fn held(&self) -> usize {
                self.len()
            }
            fn room(&self) -> usize {
                self.capacity()
            }
            fn shrink_room_to(&mut self, to: usize) {
                self.shrink_to(to);
            }
        }
    };
}

shrink_by_inherent_methods!(impl<K, V, S> for hashbrown::HashMap<K, V, S> where K: Eq + Hash, S: BuildHasher);
shrink_by_inherent_methods!(impl<T> for VecDeque<T>);
shrink_by_inherent_methods!(impl<T> for Vec<T>);

/// Shrinks `c` to 1.25 times its length if it uses less than half of its capacity (and the
/// capacity is worth the reallocation); returns whether it did.
pub fn shrink_sparse<C: Shrink>(c: &mut C) -> bool {
    let (len, room) = (c.held(), c.room());
    if room < MIN_CAPACITY || len.saturating_mul(2) >= room {
        return false;
    }
    c.shrink_room_to(len + len / 4);
    c.room() < room
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparse_map_shrinks_and_keeps_its_entries() {
        let mut m: hashbrown::HashMap<u64, u64> = (0..100_000).map(|i| (i, i * 2)).collect();
        let before = m.capacity();
        m.retain(|k, _| *k < 10_000);
        assert!(shrink_sparse(&mut m));
        assert!(m.capacity() < before / 4, "{} of {before}", m.capacity());
        assert!(m.capacity() >= 10_000);
        assert_eq!(m.len(), 10_000);
        assert!((0..10_000).all(|k| m.get(&k) == Some(&(k * 2))));
    }

    #[test]
    fn a_full_or_small_structure_is_left_alone() {
        let mut m: hashbrown::HashMap<u64, u64> = (0..100_000).map(|i| (i, i)).collect();
        let before = m.capacity();
        assert!(!shrink_sparse(&mut m));
        assert_eq!(m.capacity(), before);
        let mut small: VecDeque<u8> = VecDeque::with_capacity(1000);
        small.push_back(1);
        assert!(!shrink_sparse(&mut small));
        assert_eq!(small.capacity(), 1000);
    }

    #[test]
    fn a_drained_ring_buffer_shrinks() {
        let mut q: VecDeque<u64> = (0..1_000_000).collect();
        q.drain(..900_000);
        assert!(shrink_sparse(&mut q));
        assert!(q.capacity() < 200_000);
        assert_eq!(q.front(), Some(&900_000));
        assert_eq!(q.len(), 100_000);
    }
}

//! Merkle roots over ordered lists of 32-byte ids (a milestone's confirmed transactions and
//! applied payloads, in white-flag order), with audit paths a device can check.
//!
//! The tree is RFC 6962's (Certificate Transparency) with BLAKE2b-256: a leaf hashes as
//! `H(0x00 || id)`, an inner node as `H(0x01 || left || right)`, so no leaf can pass for an
//! inner node (second preimages); a list of `n > 1` ids splits at the largest power of two
//! below `n`. The root of the empty list is `H()` (BLAKE2b-256 of nothing).

use serde::{Deserialize, Serialize};

use crate::crypto::{blake2b256, blake2b256_parts};
use crate::ids::Digest;

/// Most siblings an audit path can have (lists hold fewer than 2^32 ids).
pub const MAX_PATH: usize = 32;

/// The hash of a leaf.
pub fn leaf_hash(id: &[u8; 32]) -> [u8; 32] {
    blake2b256_parts(&[&[0x00], id])
}

/// The hash of an inner node.
pub fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    blake2b256_parts(&[&[0x01], left, right])
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split(n: usize) -> usize {
    split_u64(n as u64) as usize
}

fn split_u64(n: u64) -> u64 {
    if n <= 2 {
        return 1;
    }
    1 << (63 - (n - 1).leading_zeros())
}

fn subtree(ids: &[[u8; 32]]) -> [u8; 32] {
    match ids.len() {
        0 => blake2b256(&[]),
        1 => leaf_hash(&ids[0]),
        n => {
            let k = split(n);
            node_hash(&subtree(&ids[..k]), &subtree(&ids[k..]))
        }
    }
}

/// The root over `ids`, in order.
pub fn root(ids: &[[u8; 32]]) -> Digest {
    Digest(subtree(ids))
}

/// Proof that an id is at a position of a list with a given root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPath {
    /// Position of the id in the list.
    pub index: u64,
    /// Length of the list.
    pub len: u64,
    /// Sibling hashes from the leaf up.
    pub siblings: Vec<Digest>,
}

/// The audit path of `ids[index]`; `None` if `index` is out of range.
pub fn audit_path(ids: &[[u8; 32]], index: usize) -> Option<AuditPath> {
    if index >= ids.len() {
        return None;
    }
    let mut siblings = Vec::new();
    let (mut lo, mut hi, mut i) = (0, ids.len(), index);
    // Top-down, then reversed to leaf-up.
    while hi - lo > 1 {
        let k = split(hi - lo);
        if i < k {
            siblings.push(Digest(subtree(&ids[lo + k..hi])));
            hi = lo + k;
        } else {
            siblings.push(Digest(subtree(&ids[lo..lo + k])));
            lo += k;
            i -= k;
        }
    }
    siblings.reverse();
    Some(AuditPath {
        index: index as u64,
        len: ids.len() as u64,
        siblings,
    })
}

impl AuditPath {
    /// Which side each sibling is on, leaf-up (`true`: on the left), from the index and the
    /// list's length. Empty for a malformed path (index out of range).
    pub fn sides(&self) -> Vec<bool> {
        if self.index >= self.len || self.len > 1 << MAX_PATH {
            return Vec::new();
        }
        let (mut lo, mut hi, i) = (0u64, self.len, self.index);
        let mut sides = Vec::new();
        while hi - lo > 1 {
            let k = split_u64(hi - lo);
            if i - lo < k {
                sides.push(false); // sibling on the right
                hi = lo + k;
            } else {
                sides.push(true); // sibling on the left
                lo += k;
            }
        }
        sides.reverse();
        sides
    }

    /// Whether `id` is at [`AuditPath::index`] of a list of [`AuditPath::len`] ids whose
    /// root is `root`. Malformed paths (wrong length, index out of range) are `false`.
    /// Membership is what this proves: as in RFC 6962, the root does not fix the list's
    /// length, and a few other (index, length) pairs may give the same path shape.
    pub fn verify(&self, root: &Digest, id: &[u8; 32]) -> bool {
        if self.index >= self.len || self.len > 1 << MAX_PATH || self.siblings.len() > MAX_PATH {
            return false;
        }
        let sides = self.sides();
        if sides.len() != self.siblings.len() {
            return false;
        }
        let mut h = leaf_hash(id);
        for (sibling, left) in self.siblings.iter().zip(sides.iter()) {
            h = if *left {
                node_hash(&sibling.0, &h)
            } else {
                node_hash(&h, &sibling.0)
            };
        }
        h == root.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<[u8; 32]> {
        (0..n as u64)
            .map(|i| blake2b256(&i.to_le_bytes()))
            .collect()
    }

    #[test]
    fn small_roots_follow_the_definition() {
        assert_eq!(root(&[]).0, blake2b256(&[]));
        let v = ids(3);
        assert_eq!(root(&v[..1]).0, leaf_hash(&v[0]));
        assert_eq!(
            root(&v).0,
            node_hash(
                &node_hash(&leaf_hash(&v[0]), &leaf_hash(&v[1])),
                &leaf_hash(&v[2])
            )
        );
        // A leaf cannot pose as an inner node: the root of two ids differs from a leaf over
        // their concatenated hashes.
        assert_ne!(root(&v[..2]).0, leaf_hash(&node_hash(&v[0], &v[1])));
    }

    #[test]
    fn every_audit_path_verifies_and_nothing_else_does() {
        for n in 1..40 {
            let v = ids(n);
            let r = root(&v);
            for i in 0..n {
                let p = audit_path(&v, i).unwrap();
                assert!(p.verify(&r, &v[i]), "n {n} i {i}");
                let other = (i + 1) % n;
                if other != i {
                    assert!(!p.verify(&r, &v[other]), "wrong id, n {n} i {i}");
                }
                let mut q = p.clone();
                q.index = (q.index + 1) % q.len;
                if q.index != p.index {
                    assert!(!q.verify(&r, &v[i]), "wrong index, n {n} i {i}");
                }
                for s in 0..p.siblings.len() {
                    let mut q = p.clone();
                    q.siblings[s].0[0] ^= 1;
                    assert!(!q.verify(&r, &v[i]));
                }
            }
            assert!(audit_path(&v, n).is_none());
        }
    }

    #[test]
    fn malformed_paths_are_false_not_panics() {
        let v = ids(5);
        let r = root(&v);
        for (index, len) in [(0, 0), (5, 5), (u64::MAX - 1, u64::MAX), (0, u64::MAX)] {
            let p = AuditPath {
                index,
                len,
                siblings: vec![Digest([0; 32]); 3],
            };
            assert!(!p.verify(&r, &v[0]));
        }
    }
}

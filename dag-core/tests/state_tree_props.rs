//! Property tests of the sparse Merkle state tree against a reference implementation of its
//! definition (a recursive function over the sorted final set of entries):
//!
//! - after any sequence of updates and deletes the root is the reference root of the final
//!   set, and so is the root of a fresh tree fed that set in any order, in one batch, or in
//!   chunks of batches (order and history independence, batch = one by one);
//! - every key's proof verifies against the root with what the tree holds, and fails for a
//!   wrong value, a wrong root, and a present key claimed with another value or as absent;
//! - every single-bit flip and every truncation of a MessagePack-encoded proof fails to
//!   decode or fails to verify; arbitrary bytes never make decoding or verifying panic.
//!
//! Keys come from a small per-case pool (so updates and deletes hit the same keys) and from
//! a cluster of keys that share long prefixes (chains of one-sided nodes, leaves at depth 256).

use std::collections::BTreeMap;

use dag_core::crypto::blake2b256_parts;
use dag_core::state_tree::{Proof, StateTree, Update, EMPTY_HASH};
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

type Map = BTreeMap<[u8; 32], [u8; 32]>;

/// Bit `i` of `key`, most significant first.
fn bit(key: &[u8; 32], i: usize) -> bool {
    key[i / 8] & (0x80 >> (i % 8)) != 0
}

/// The definition, written out: the hash of the subtree at `depth` over `entries` (sorted,
/// all sharing their first `depth` bits).
fn reference_hash(depth: usize, entries: &[([u8; 32], [u8; 32])]) -> [u8; 32] {
    match entries {
        [] => [0; 32],
        [(k, v)] => blake2b256_parts(&[&[0x00], k, v]),
        _ => {
            assert!(depth < 256, "distinct keys differ somewhere");
            let split = entries.iter().take_while(|(k, _)| !bit(k, depth)).count();
            let left = reference_hash(depth + 1, &entries[..split]);
            let right = reference_hash(depth + 1, &entries[split..]);
            blake2b256_parts(&[&[0x01], &left, &right])
        }
    }
}

fn reference_root(map: &Map) -> [u8; 32] {
    let entries: Vec<_> = map.iter().map(|(k, v)| (*k, *v)).collect();
    reference_hash(0, &entries)
}

#[derive(Clone, Debug)]
enum KeyGen {
    /// An index into the case's pool of random keys.
    Pool(usize),
    /// A key from a 4x4x4 cluster: bits 0-1, byte 16 and byte 31 vary, the rest is zero,
    /// so cluster keys share prefixes of up to 255 bits.
    Cluster(u8, u8, u8),
}

impl KeyGen {
    fn key(&self, pool: &[[u8; 32]]) -> [u8; 32] {
        match *self {
            KeyGen::Pool(i) => pool[i % pool.len()],
            KeyGen::Cluster(a, b, c) => {
                let mut key = [0u8; 32];
                key[0] = a << 6;
                key[16] = b;
                key[31] = c;
                key
            }
        }
    }
}

fn key_gen() -> impl Strategy<Value = KeyGen> {
    prop_oneof![
        3 => (0usize..24).prop_map(KeyGen::Pool),
        2 => (0u8..4, 0u8..4, 0u8..4).prop_map(|(a, b, c)| KeyGen::Cluster(a, b, c)),
    ]
}

/// Values from a small alphabet, so that rewriting an entry with its own value happens too.
fn value_of(x: u8) -> [u8; 32] {
    blake2b256_parts(&[b"value", &[x]])
}

#[derive(Clone, Debug)]
struct Case {
    pool: Vec<[u8; 32]>,
    /// `None` deletes.
    ops: Vec<(KeyGen, Option<u8>)>,
    seed: u64,
}

impl Case {
    fn updates(&self) -> Vec<Update> {
        self.ops
            .iter()
            .map(|(k, v)| (k.key(&self.pool), v.map(value_of)))
            .collect()
    }

    /// Every key the case can name, present or not.
    fn keys(&self) -> Vec<[u8; 32]> {
        let mut keys = self.pool.clone();
        for a in 0..4 {
            for b in 0..4 {
                for c in 0..4 {
                    keys.push(KeyGen::Cluster(a, b, c).key(&self.pool));
                }
            }
        }
        keys
    }
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(any::<[u8; 32]>(), 1..24),
        prop::collection::vec((key_gen(), prop::option::weighted(0.7, 0u8..4)), 0..120),
        any::<u64>(),
    )
        .prop_map(|(pool, ops, seed)| Case { pool, ops, seed })
}

/// The final set of a sequence of updates.
fn model(updates: &[Update]) -> Map {
    let mut map = Map::new();
    for (k, v) in updates {
        match v {
            Some(v) => map.insert(*k, *v),
            None => map.remove(k),
        };
    }
    map
}

fn one_by_one(updates: &[Update]) -> StateTree {
    let mut t = StateTree::new();
    for (k, v) in updates {
        t.update(*k, *v);
    }
    t
}

proptest! {
    // Cluster keys make paths up to 256 levels deep, which is slow in the dev profile.
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn root_is_a_function_of_the_final_set(c in case()) {
        let updates = c.updates();
        let map = model(&updates);
        let expect = reference_root(&map);

        let t = one_by_one(&updates);
        prop_assert_eq!(t.root(), expect);
        prop_assert_eq!(t.len(), map.len());
        for key in c.keys() {
            prop_assert_eq!(t.get(&key), map.get(&key).copied());
        }

        // A fresh tree fed the final set in a random order, one by one.
        let mut entries: Vec<Update> = map.iter().map(|(k, v)| (*k, Some(*v))).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
        entries.shuffle(&mut rng);
        prop_assert_eq!(one_by_one(&entries).root(), expect);
        // ... and in one batch.
        let mut fresh = StateTree::new();
        fresh.apply(&mut entries.clone());
        prop_assert_eq!(fresh.root(), expect);
        prop_assert_eq!(fresh.len(), map.len());

        // The whole history as one batch (duplicates: last wins), and in random chunks.
        let mut batch = StateTree::new();
        batch.apply(&mut updates.clone());
        prop_assert_eq!(batch.root(), expect);
        prop_assert_eq!(batch.len(), map.len());
        let mut chunked = StateTree::new();
        let mut rest = &updates[..];
        while !rest.is_empty() {
            let n = (rng.next_u64() as usize % 17 + 1).min(rest.len());
            chunked.apply(&mut rest[..n].to_vec());
            rest = &rest[n..];
        }
        prop_assert_eq!(chunked.root(), expect);

        // Deleting everything gives the empty tree.
        let mut gone: Vec<Update> = map.keys().map(|k| (*k, None)).collect();
        batch.apply(&mut gone);
        prop_assert_eq!(batch.root(), EMPTY_HASH);
        prop_assert!(batch.is_empty());
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn proofs_show_exactly_what_the_tree_holds(c in case()) {
        let updates = c.updates();
        let map = model(&updates);
        let mut t = StateTree::new();
        t.apply(&mut updates.clone());
        let root = t.root();
        let mut wrong_root = root;
        wrong_root[c.seed as usize % 32] ^= 1 << (c.seed % 8);
        let mut keys = c.keys();
        keys.push(blake2b256_parts(&[b"absent", &c.seed.to_le_bytes()]));
        let other_value = value_of(9);

        for (i, key) in keys.iter().enumerate() {
            let held = map.get(key).copied();
            let p = t.prove(key);
            prop_assert!(p.verify(&root, key, held), "own proof of {}", hex::encode(key));
            prop_assert!(!p.verify(&wrong_root, key, held));
            prop_assert!(!p.verify(&root, key, Some(other_value)));
            match held {
                Some(v) => {
                    prop_assert!(!p.verify(&root, key, None));
                    let mut v2 = v;
                    v2[0] ^= 1;
                    prop_assert!(!p.verify(&root, key, Some(v2)));
                }
                None => prop_assert!(!p.verify(&root, key, Some(value_of(0)))),
            }
            // No proof of any key shows another present key absent, and it shows it present
            // only if the walk ended at its leaf (a non-inclusion proof ending at a leaf is
            // that leaf's inclusion proof). A few others per key: every pair is too slow
            // with 256-level paths.
            for (other, v) in map.iter().skip(i % 5).step_by(5) {
                if other != key {
                    let at_its_leaf = p.leaf().map(|l| l.key) == Some(*other);
                    prop_assert_eq!(p.verify(&root, other, Some(*v)), at_its_leaf);
                    prop_assert!(!p.verify(&root, other, None));
                }
            }
            // An inclusion proof says nothing about other keys.
            if let Some(v) = held {
                for other in keys.iter().skip(i % 7).step_by(7) {
                    if other != key {
                        prop_assert!(!p.verify(&root, other, Some(v)));
                    }
                }
            }
        }
    }

    #[test]
    fn no_bit_flip_of_an_encoded_proof_survives(c in case(), pick in any::<usize>()) {
        let updates = c.updates();
        let map = model(&updates);
        let mut t = StateTree::new();
        t.apply(&mut updates.clone());
        let root = t.root();
        // Pool keys (random ones and one absent): their paths are short, and every bit of
        // the encoding is flipped. `deep_proof_bit_flips` covers a 256-level path.
        let mut keys = c.pool.clone();
        keys.push(blake2b256_parts(&[b"absent", &c.seed.to_le_bytes()]));
        let key = keys[pick % keys.len()];
        let held = map.get(&key).copied();
        let p = t.prove(&key);
        let bytes = rmp_serde::to_vec(&p).unwrap();
        prop_assert_eq!(&rmp_serde::from_slice::<Proof>(&bytes).unwrap(), &p);
        prop_assert!(p.verify(&root, &key, held));
        for i in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[i / 8] ^= 1 << (i % 8);
            if let Ok(q) = rmp_serde::from_slice::<Proof>(&flipped) {
                prop_assert!(!q.verify(&root, &key, held), "bit {} of {}", i, bytes.len() * 8);
            }
        }
        for n in 0..bytes.len() {
            if let Ok(q) = rmp_serde::from_slice::<Proof>(&bytes[..n]) {
                prop_assert!(!q.verify(&root, &key, held), "prefix of {} bytes", n);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..700),
                                   key in any::<[u8; 32]>()) {
        if let Ok(p) = rmp_serde::from_slice::<Proof>(&bytes) {
            prop_assert!(p.siblings().len() <= 256);
            let _ = p.verify(&EMPTY_HASH, &key, None);
            let _ = p.verify(&[1; 32], &key, Some([2; 32]));
        }
        if let Ok(s) = std::str::from_utf8(&bytes) {
            if let Ok(p) = serde_json::from_str::<Proof>(s) {
                let _ = p.verify(&EMPTY_HASH, &key, None);
            }
        }
    }
}

/// Bit flips in the proofs of a 256-level path (keys differing in their last bit) and of
/// the empty slot beside them: every bit of the header, the leaf and the first and last
/// three siblings, and one bit of each other sibling (all bits of all 256 siblings is too
/// slow in the dev profile; the short proofs of the property above get every bit flipped).
#[test]
fn deep_proof_bit_flips() {
    let mut t = StateTree::new();
    let a = [0u8; 32];
    let mut b = a;
    b[31] = 1;
    let mut c = a;
    c[31] = 2;
    let mut d = a;
    d[0] = 0x80;
    t.apply(&mut [
        (a, Some(value_of(0))),
        (b, Some(value_of(1))),
        (d, Some(value_of(2))),
    ]);
    let root = t.root();
    for (key, held) in [(b, Some(value_of(1))), (c, None)] {
        let p = t.prove(&key);
        assert!(p.siblings().len() >= 255);
        assert!(p.verify(&root, &key, held));
        let bytes = rmp_serde::to_vec(&p).unwrap();
        // Layout: fixarray 2, array16 (3 bytes), then per sibling bin8 (2 bytes) + 32.
        let n = p.siblings().len();
        for i in 0..bytes.len() * 8 {
            let byte = i / 8;
            if byte >= 4 && byte < 4 + 34 * n {
                let s = (byte - 4) / 34;
                if (3..n - 3).contains(&s) && i != (4 + 34 * s + 2) * 8 + s % 256 {
                    continue;
                }
            }
            let mut flipped = bytes.clone();
            flipped[byte] ^= 1 << (i % 8);
            if let Ok(q) = rmp_serde::from_slice::<Proof>(&flipped) {
                assert!(!q.verify(&root, &key, held), "bit {i}");
            }
        }
    }
}

/// Arbitrary bytes almost never decode; these are proofs with plausible structure.
#[test]
fn structured_hostile_proofs_are_false() {
    let mut t = StateTree::new();
    let mut ups: Vec<Update> = (0..1000u32)
        .map(|i| {
            (
                blake2b256_parts(&[b"k", &i.to_le_bytes()]),
                Some(value_of(i as u8)),
            )
        })
        .collect();
    t.apply(&mut ups);
    let root = t.root();
    let key = ups[0].0;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for n in [0usize, 1, 5, 20, 255, 256] {
        for with_leaf in [false, true] {
            // MessagePack: [ [bin32; n], nil | [bin32, bin32] ].
            let mut bytes = vec![0x92, 0xdc];
            bytes.extend_from_slice(&(n as u16).to_be_bytes());
            for _ in 0..n {
                bytes.extend_from_slice(&[0xc4, 32]);
                bytes.extend((0..32).map(|_| rng.next_u64() as u8));
            }
            if with_leaf {
                bytes.extend_from_slice(&[0x92, 0xc4, 32]);
                bytes.extend_from_slice(&key);
                bytes.extend_from_slice(&[0xc4, 32]);
                bytes.extend_from_slice(&value_of(0));
            } else {
                bytes.push(0xc0);
            }
            let p: Proof = rmp_serde::from_slice(&bytes).unwrap();
            assert_eq!(p.siblings().len(), n);
            assert!(!p.verify(&root, &key, Some(value_of(0))));
            assert!(!p.verify(&root, &key, None));
        }
    }
    // 257 announced and present: refused by the decoder.
    let mut bytes = vec![0x92, 0xdc, 1, 1];
    for _ in 0..257 {
        bytes.extend_from_slice(&[0xc4, 32]);
        bytes.extend_from_slice(&[5; 32]);
    }
    bytes.push(0xc0);
    assert!(rmp_serde::from_slice::<Proof>(&bytes).is_err());
}

/// A larger tree: random inserts, then half deleted and a quarter rewritten, batch against
/// one by one against the reference; every proof verifies.
#[test]
fn thousands_of_entries_batch_and_single_agree() {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let keys: Vec<[u8; 32]> = (0..5000)
        .map(|_| {
            let mut k = [0u8; 32];
            rng.fill_bytes(&mut k);
            k
        })
        .collect();
    let mut updates: Vec<Update> = keys.iter().map(|k| (*k, Some(value_of(1)))).collect();
    for (i, k) in keys.iter().enumerate() {
        match i % 4 {
            0 | 1 => updates.push((*k, None)),
            2 => updates.push((*k, Some(value_of(2)))),
            _ => {}
        }
    }
    let map = model(&updates);
    assert_eq!(map.len(), 2500);
    let single = one_by_one(&updates);
    let mut batch = StateTree::new();
    batch.apply(&mut updates[..5000].to_vec());
    batch.apply(&mut updates[5000..].to_vec());
    assert_eq!(single.root(), reference_root(&map));
    assert_eq!(batch.root(), single.root());
    for k in &keys {
        assert!(batch.prove(k).verify(&batch.root(), k, map.get(k).copied()));
    }
}

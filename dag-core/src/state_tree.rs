//! A sparse Merkle tree over 256-bit keys: the commitment to the whole ledger state (accounts
//! and channels) that a milestone can carry, updated in O(touched entries) per milestone, with
//! inclusion and non-inclusion proofs a light device checks against the root alone.
//!
//! The shape is that of Diem/Aptos's Jellyfish Merkle tree, binary: the full tree of depth 256
//! where every subtree that holds at most one entry is compressed into that entry.
//!
//! # Keys and values
//! A key is 32 bytes, a value is the 32-byte hash of an entry's canonical bytes; callers derive
//! both with [`key_of`] (a tag such as [`ACCOUNT_TAG`] or [`CHANNEL_TAG`] and the 32-byte id,
//! hashed, so keys are uniformly spread) and [`value_hash`]. Bit `i` of a key is bit
//! `7 - i % 8` of byte `i / 8` (most significant first), so bitwise order is byte order.
//!
//! # Canonical tree and hashes
//! For a bit string `p` of length `d <= 256`, the subtree at `p` holds the entries whose key
//! starts with `p`; the root is the subtree at the empty prefix. Its hash, with
//! `H` = BLAKE2b-256, is
//!
//! - `[0; 32]` if it holds no entry (an empty subtree);
//! - `H(0x00 || key || value_hash)` if it holds exactly one entry (a leaf), whatever `d`;
//! - `H(0x01 || hash(p || 0) || hash(p || 1))` if it holds two or more (an internal node).
//!
//! So an internal node exists exactly at the prefixes under which at least two entries lie.
//! One of its children may be empty: where all of its entries share the next bit, the tree
//! has a chain of such one-sided internal nodes down to the first bit at which they differ
//! (this is what binds the depth of every node into the root, which non-inclusion proofs
//! need). A subtree with one entry is never split further. The hash is therefore a function
//! of the set of `(key, value_hash)` pairs alone, not of insertion order or history. The
//! `0x00` / `0x01` prefixes keep a leaf from passing for an internal node (second preimages);
//! the empty hash has no known preimage. Internal nodes lie at depths `0..=255`, leaves at
//! `0..=256`.
//!
//! # Proofs
//! [`StateTree::prove`] walks from the root along the key's bits to the first leaf or empty
//! subtree and returns the siblings' hashes from the root down (at most 256) and the leaf
//! found there, if any. [`Proof::verify`] recomputes the root from them:
//!
//! - inclusion of `(key, value)`: the walk ends at the leaf `(key, value)`;
//! - non-inclusion of `key`: the walk ends at an empty subtree, or at a leaf with another key
//!   that agrees with `key` on the bits walked (so `key`, if present, would be in that
//!   single-entry subtree).
//!
//! In MessagePack a proof takes 34 bytes per sibling plus about 70 for the leaf. With `n`
//! uniformly spread keys the walk is about `log2(n) + 1` levels deep: at a million entries the
//! bench measures 20.6 siblings and 766 bytes on average.
//!
//! # Layout and cost
//! Nodes live in two arenas with `u32` references instead of one allocation per node: a leaf
//! is its key and value (64 bytes; its hash is recomputed when a parent needs it), an
//! internal node its two child references and its hash (40 bytes). A random binary trie of `n`
//! keys has about `n / ln 2 ≈ 1.44 n` internal nodes, so the tree uses about
//! `64 + 1.44 * 40 ≈ 122` bytes per entry live. The arenas grow by an eighth at a time, so
//! at most about 12% more is spare capacity: [`StateTree::heap_bytes`] is 125 bytes per entry
//! at 200k entries (a unit test checks it stays under 140) and 130 at 1M (the bench). Freed
//! slots are reused; the arenas never shrink.
//!
//! [`StateTree::apply`] sorts a batch and walks the tree once for all of it, splitting the
//! batch at every internal node by the next key bit: each internal node on the paths of a
//! batch is rehashed exactly once, so the top levels, which every update shares, cost one hash
//! per batch rather than one per update. No hash map is involved, so nothing depends on an
//! iteration order.
//!
//! Keys must be hashes (as from [`key_of`]): two chosen keys that share a 255-bit prefix cost
//! a chain of 255 internal nodes.

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smallvec::SmallVec;

use crate::crypto::{blake2b256_parts, Blake2b256};

/// The hash of an empty subtree (and the root of an empty tree).
pub const EMPTY_HASH: [u8; 32] = [0; 32];

/// Most siblings a proof can have: one per key bit.
pub const MAX_PROOF_SIBLINGS: usize = 256;

/// [`key_of`] tag for an account, keyed by its [`crate::Address`].
pub const ACCOUNT_TAG: u8 = b'A';

/// [`key_of`] tag for a payment channel, keyed by its [`crate::ChannelId`].
pub const CHANNEL_TAG: u8 = b'C';

const KEY_DOMAIN: &[u8] = b"tangle/state-key/v1";
const VALUE_DOMAIN: &[u8] = b"tangle/state-value/v1";

/// The tree key of the entry `id` of kind `tag`:
/// `BLAKE2b-256("tangle/state-key/v1" || tag || id)`.
pub fn key_of(tag: u8, id: &[u8; 32]) -> [u8; 32] {
    blake2b256_parts(&[KEY_DOMAIN, &[tag], id])
}

/// The value hash of an entry's canonical bytes: `BLAKE2b-256("tangle/state-value/v1" ||
/// bytes)`.
pub fn value_hash(bytes: &[u8]) -> [u8; 32] {
    blake2b256_parts(&[VALUE_DOMAIN, bytes])
}

fn leaf_hash(key: &[u8; 32], value: &[u8; 32]) -> [u8; 32] {
    use blake2::Digest as _;
    let mut h = Blake2b256::new();
    h.update([0x00]);
    h.update(key);
    h.update(value);
    h.finalize().into()
}

fn internal_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    use blake2::Digest as _;
    let mut h = Blake2b256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Bit `i` (`< 256`) of `key`, most significant bit of byte 0 first.
fn bit(key: &[u8; 32], i: usize) -> usize {
    usize::from((key[i / 8] >> (7 - i % 8)) & 1)
}

/// Whether `a` and `b` agree on their first `bits` (`<= 256`) bits.
fn same_prefix(a: &[u8; 32], b: &[u8; 32], bits: usize) -> bool {
    let whole = bits / 8;
    if a[..whole] != b[..whole] {
        return false;
    }
    let rest = bits % 8;
    rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

/// Makes room for one more element, growing a full arena by an eighth rather than doubling
/// it: at most 12.5% of an arena is spare (still amortised O(1) per push).
fn grow<T>(arena: &mut Vec<T>) {
    if arena.len() == arena.capacity() {
        arena.reserve_exact(arena.len() / 8 + 64);
    }
}

/// A reference to a node: [`NodeRef::EMPTY`], a leaf (`LEAF_FLAG | index`) or an internal
/// node (`index`, below `LEAF_FLAG`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NodeRef(u32);

const LEAF_FLAG: u32 = 1 << 31;

enum Node {
    Empty,
    Leaf(usize),
    Internal(usize),
}

impl NodeRef {
    const EMPTY: NodeRef = NodeRef(u32::MAX);

    fn leaf(index: usize) -> NodeRef {
        // `u32::MAX` is EMPTY, so leaf indices stop one short of the flag's range.
        let i = u32::try_from(index)
            .ok()
            .filter(|&i| i < LEAF_FLAG - 1)
            .expect("state tree: more than 2^31 - 1 leaves");
        NodeRef(LEAF_FLAG | i)
    }

    fn internal(index: usize) -> NodeRef {
        let i = u32::try_from(index)
            .ok()
            .filter(|&i| i < LEAF_FLAG)
            .expect("state tree: more than 2^31 internal nodes");
        NodeRef(i)
    }

    fn node(self) -> Node {
        if self == NodeRef::EMPTY {
            Node::Empty
        } else if self.0 & LEAF_FLAG != 0 {
            Node::Leaf((self.0 & !LEAF_FLAG) as usize)
        } else {
            Node::Internal(self.0 as usize)
        }
    }
}

#[derive(Clone, Copy)]
struct Leaf {
    key: [u8; 32],
    value: [u8; 32],
}

#[derive(Clone, Copy)]
struct Internal {
    /// Children for key bit 0 and 1 at this node's depth.
    children: [NodeRef; 2],
    hash: [u8; 32],
}

/// One update of a batch: a key and its new value hash, `None` to delete it.
pub type Update = ([u8; 32], Option<[u8; 32]>);

/// The sparse Merkle tree of the ledger state (see the [module docs](self)).
#[derive(Clone)]
pub struct StateTree {
    leaves: Vec<Leaf>,
    internals: Vec<Internal>,
    /// Unused slots of `leaves` and `internals`, reused before the arenas grow.
    free_leaves: Vec<u32>,
    free_internals: Vec<u32>,
    root: NodeRef,
    root_hash: [u8; 32],
    len: usize,
}

impl Default for StateTree {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for StateTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateTree")
            .field("len", &self.len)
            .field("root", &hex::encode(self.root_hash))
            .finish_non_exhaustive()
    }
}

impl StateTree {
    /// An empty tree; its root is [`EMPTY_HASH`].
    pub fn new() -> Self {
        StateTree {
            leaves: Vec::new(),
            internals: Vec::new(),
            free_leaves: Vec::new(),
            free_internals: Vec::new(),
            root: NodeRef::EMPTY,
            root_hash: EMPTY_HASH,
            len: 0,
        }
    }

    /// The root hash: the commitment to the set of `(key, value_hash)` entries.
    pub fn root(&self) -> [u8; 32] {
        self.root_hash
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the tree has no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Heap bytes held by the tree (capacity of its arenas and free lists), for memory
    /// accounting.
    pub fn heap_bytes(&self) -> usize {
        self.leaves.capacity() * std::mem::size_of::<Leaf>()
            + self.internals.capacity() * std::mem::size_of::<Internal>()
            + (self.free_leaves.capacity() + self.free_internals.capacity())
                * std::mem::size_of::<u32>()
    }

    /// The value hash stored under `key`, if any.
    pub fn get(&self, key: &[u8; 32]) -> Option<[u8; 32]> {
        let mut node = self.root;
        let mut depth = 0;
        loop {
            match node.node() {
                Node::Empty => return None,
                Node::Leaf(i) => {
                    let leaf = &self.leaves[i];
                    return (leaf.key == *key).then_some(leaf.value);
                }
                Node::Internal(i) => {
                    node = self.internals[i].children[bit(key, depth)];
                    depth += 1;
                }
            }
        }
    }

    /// Sets `key` to `value`, or deletes it for `None` (deleting an absent key changes
    /// nothing). Same as [`StateTree::apply`] with one update.
    pub fn update(&mut self, key: [u8; 32], value: Option<[u8; 32]>) {
        self.apply_sorted(&[(key, value)]);
    }

    /// Applies a batch of updates as if one by one in slice order (so for a key given twice
    /// the last one wins), rehashing every touched internal node once.
    ///
    /// The slice is used as scratch space: it is sorted by key and its contents afterwards
    /// are unspecified.
    ///
    /// # Panics
    /// If the tree would exceed 2^31 - 1 entries.
    pub fn apply(&mut self, updates: &mut [Update]) {
        // Stable, so equal keys keep their order and the last of each run is the last given.
        updates.sort_by_key(|u| u.0);
        let mut kept = 0;
        for i in 0..updates.len() {
            if i + 1 < updates.len() && updates[i + 1].0 == updates[i].0 {
                continue;
            }
            updates[kept] = updates[i];
            kept += 1;
        }
        self.apply_sorted(&updates[..kept]);
    }

    /// `updates` sorted by key, with distinct keys.
    fn apply_sorted(&mut self, updates: &[Update]) {
        if updates.is_empty() {
            return;
        }
        let (root, hash) = self.apply_at(self.root, 0, updates);
        self.root = root;
        self.root_hash = hash;
    }

    /// Applies `updates` (sorted, distinct, all under the node's prefix of length `depth`)
    /// to the subtree `node`; returns the new subtree and its hash.
    fn apply_at(&mut self, node: NodeRef, depth: usize, updates: &[Update]) -> (NodeRef, [u8; 32]) {
        if updates.is_empty() {
            return (node, self.hash_of(node));
        }
        match node.node() {
            Node::Empty => self.merge(None, depth, updates),
            Node::Leaf(i) => self.merge(Some(i), depth, updates),
            Node::Internal(i) => {
                let [left, right] = self.internals[i].children;
                let split = updates.partition_point(|(k, _)| bit(k, depth) == 0);
                let (left, left_hash) = self.apply_at(left, depth + 1, &updates[..split]);
                let (right, right_hash) = self.apply_at(right, depth + 1, &updates[split..]);
                match (left.node(), right.node()) {
                    (Node::Empty, Node::Empty) => {
                        self.free_internal(i);
                        (NodeRef::EMPTY, EMPTY_HASH)
                    }
                    // One entry left under this node: the subtree is that leaf.
                    (Node::Leaf(_), Node::Empty) => {
                        self.free_internal(i);
                        (left, left_hash)
                    }
                    (Node::Empty, Node::Leaf(_)) => {
                        self.free_internal(i);
                        (right, right_hash)
                    }
                    _ => {
                        let hash = internal_hash(&left_hash, &right_hash);
                        self.internals[i] = Internal {
                            children: [left, right],
                            hash,
                        };
                        (NodeRef::internal(i), hash)
                    }
                }
            }
        }
    }

    /// Applies `updates` to a subtree that is empty or the single leaf `leaf`: the leaves
    /// that remain, in key order, are built into a canonical subtree.
    fn merge(
        &mut self,
        leaf: Option<usize>,
        depth: usize,
        updates: &[Update],
    ) -> (NodeRef, [u8; 32]) {
        if let (Some(i), [(key, value)]) = (leaf, updates) {
            if self.leaves[i].key == *key {
                // The common case of a milestone: an existing entry changes or goes.
                return match value {
                    Some(v) => {
                        self.leaves[i].value = *v;
                        (NodeRef::leaf(i), leaf_hash(key, v))
                    }
                    None => {
                        self.free_leaf(i);
                        (NodeRef::EMPTY, EMPTY_HASH)
                    }
                };
            }
        }
        let mut items: SmallVec<[u32; 8]> = SmallVec::with_capacity(updates.len() + 1);
        let mut pending = leaf;
        for (key, value) in updates {
            if let Some(i) = pending {
                let old = self.leaves[i].key;
                if old < *key {
                    items.push(i as u32);
                    pending = None;
                } else if old == *key {
                    pending = None;
                    match value {
                        Some(v) => {
                            self.leaves[i].value = *v;
                            items.push(i as u32);
                        }
                        None => self.free_leaf(i),
                    }
                    continue;
                }
            }
            if let Some(v) = value {
                items.push(self.alloc_leaf(*key, *v));
            }
        }
        if let Some(i) = pending {
            items.push(i as u32);
        }
        self.build(depth, &items)
    }

    /// The canonical subtree at `depth` over `items` (leaf indices, keys sorted, distinct,
    /// sharing their first `depth` bits).
    fn build(&mut self, depth: usize, items: &[u32]) -> (NodeRef, [u8; 32]) {
        match items {
            [] => (NodeRef::EMPTY, EMPTY_HASH),
            [i] => {
                let leaf = &self.leaves[*i as usize];
                (
                    NodeRef::leaf(*i as usize),
                    leaf_hash(&leaf.key, &leaf.value),
                )
            }
            _ => {
                let split =
                    items.partition_point(|&i| bit(&self.leaves[i as usize].key, depth) == 0);
                let (left, left_hash) = self.build(depth + 1, &items[..split]);
                let (right, right_hash) = self.build(depth + 1, &items[split..]);
                let hash = internal_hash(&left_hash, &right_hash);
                (self.alloc_internal([left, right], hash), hash)
            }
        }
    }

    fn hash_of(&self, node: NodeRef) -> [u8; 32] {
        match node.node() {
            Node::Empty => EMPTY_HASH,
            Node::Leaf(i) => leaf_hash(&self.leaves[i].key, &self.leaves[i].value),
            Node::Internal(i) => self.internals[i].hash,
        }
    }

    fn alloc_leaf(&mut self, key: [u8; 32], value: [u8; 32]) -> u32 {
        self.len += 1;
        let leaf = Leaf { key, value };
        if let Some(i) = self.free_leaves.pop() {
            self.leaves[i as usize] = leaf;
            i
        } else {
            grow(&mut self.leaves);
            self.leaves.push(leaf);
            NodeRef::leaf(self.leaves.len() - 1).0 & !LEAF_FLAG
        }
    }

    fn free_leaf(&mut self, i: usize) {
        self.len -= 1;
        self.free_leaves.push(i as u32);
    }

    fn alloc_internal(&mut self, children: [NodeRef; 2], hash: [u8; 32]) -> NodeRef {
        let node = Internal { children, hash };
        if let Some(i) = self.free_internals.pop() {
            self.internals[i as usize] = node;
            NodeRef(i)
        } else {
            grow(&mut self.internals);
            self.internals.push(node);
            NodeRef::internal(self.internals.len() - 1)
        }
    }

    fn free_internal(&mut self, i: usize) {
        self.free_internals.push(i as u32);
    }

    /// A proof of what the tree holds under `key`: inclusion of its value if present,
    /// non-inclusion otherwise. Check it with [`Proof::verify`].
    pub fn prove(&self, key: &[u8; 32]) -> Proof {
        let mut siblings = Vec::new();
        let mut node = self.root;
        let mut depth = 0;
        loop {
            match node.node() {
                Node::Empty => {
                    return Proof {
                        siblings,
                        leaf: None,
                    }
                }
                Node::Leaf(i) => {
                    let leaf = &self.leaves[i];
                    return Proof {
                        siblings,
                        leaf: Some(ProofLeaf {
                            key: leaf.key,
                            value_hash: leaf.value,
                        }),
                    };
                }
                Node::Internal(i) => {
                    let b = bit(key, depth);
                    let children = self.internals[i].children;
                    siblings.push(self.hash_of(children[1 - b]));
                    node = children[b];
                    depth += 1;
                }
            }
        }
    }
}

/// The leaf a [`Proof`]'s walk ends at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofLeaf {
    /// The leaf's key.
    #[serde(with = "bytes32")]
    pub key: [u8; 32],
    /// The leaf's value hash.
    #[serde(with = "bytes32")]
    pub value_hash: [u8; 32],
}

/// A proof of inclusion or non-inclusion of a key in a [`StateTree`], checked against the
/// root alone (see the [module docs](self#proofs)).
///
/// In binary serde formats (MessagePack) every hash is a 32-byte `bin`, in human-readable
/// ones (JSON) lowercase hex. Decoding reads at most [`MAX_PROOF_SIBLINGS`] siblings and
/// fails on more; a decoded proof may still be wrong, which [`Proof::verify`] reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// Hashes of the subtrees beside the walk, from the root down: `siblings[i]` is the
    /// subtree whose prefix is the key's first `i` bits followed by the flipped bit `i`.
    #[serde(with = "siblings")]
    siblings: Vec<[u8; 32]>,
    /// The leaf the walk ends at, `None` if it ends at an empty subtree.
    leaf: Option<ProofLeaf>,
}

impl Proof {
    /// The siblings' hashes, from the root down.
    pub fn siblings(&self) -> &[[u8; 32]] {
        &self.siblings
    }

    /// The leaf the walk ends at, if any.
    pub fn leaf(&self) -> Option<&ProofLeaf> {
        self.leaf.as_ref()
    }

    /// Whether this proves that the tree with root `root` holds `value` under `key`
    /// (`Some`: inclusion) or holds nothing under `key` (`None`: non-inclusion).
    ///
    /// Never panics; a malformed proof (more than [`MAX_PROOF_SIBLINGS`] siblings, a leaf off
    /// the key's path, a shape the canonical tree cannot have) is `false`.
    pub fn verify(&self, root: &[u8; 32], key: &[u8; 32], value: Option<[u8; 32]>) -> bool {
        let depth = self.siblings.len();
        if depth > MAX_PROOF_SIBLINGS {
            return false;
        }
        // The deepest sibling holds the rest of its parent's two or more entries.
        if self.siblings.last() == Some(&EMPTY_HASH) {
            return false;
        }
        let mut hash = match (&self.leaf, value) {
            (Some(leaf), Some(v)) => {
                if leaf.key != *key || leaf.value_hash != v {
                    return false;
                }
                leaf_hash(&leaf.key, &leaf.value_hash)
            }
            (Some(leaf), None) => {
                // Another key where `key` would be: `key` would share this one-entry subtree.
                if leaf.key == *key || !same_prefix(&leaf.key, key, depth) {
                    return false;
                }
                leaf_hash(&leaf.key, &leaf.value_hash)
            }
            (None, Some(_)) => return false,
            // Two or more entries cannot have one 256-bit prefix.
            (None, None) if depth == MAX_PROOF_SIBLINGS => return false,
            (None, None) => EMPTY_HASH,
        };
        for (i, sibling) in self.siblings.iter().enumerate().rev() {
            hash = if bit(key, i) == 0 {
                internal_hash(&hash, sibling)
            } else {
                internal_hash(sibling, &hash)
            };
        }
        hash == *root
    }
}

/// A 32-byte hash as a `bin` (binary formats) or hex (human-readable formats).
mod bytes32 {
    use super::*;

    pub(super) fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(bytes))
        } else {
            s.serialize_bytes(bytes)
        }
    }

    struct Bytes32Visitor;

    impl Visitor<'_> for Bytes32Visitor {
        type Value = [u8; 32];

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a 32-byte hash")
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
            v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let mut out = [0u8; 32];
            hex::decode_to_slice(v, &mut out)
                .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))?;
            Ok(out)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        if d.is_human_readable() {
            d.deserialize_str(Bytes32Visitor)
        } else {
            d.deserialize_bytes(Bytes32Visitor)
        }
    }

    /// For sequences of hashes.
    pub(super) struct Hash(pub(super) [u8; 32]);

    impl Serialize for Hash {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            serialize(&self.0, s)
        }
    }

    impl<'de> Deserialize<'de> for Hash {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            deserialize(d).map(Hash)
        }
    }
}

/// A proof's siblings: a sequence of at most [`MAX_PROOF_SIBLINGS`] hashes; decoding stops
/// at the first one too many, so a hostile length costs nothing.
mod siblings {
    use super::bytes32::Hash;
    use super::*;

    pub(super) fn serialize<S: Serializer>(v: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for h in v {
            seq.serialize_element(&Hash(*h))?;
        }
        seq.end()
    }

    struct SiblingsVisitor;

    impl<'de> Visitor<'de> for SiblingsVisitor {
        type Value = Vec<[u8; 32]>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "at most {MAX_PROOF_SIBLINGS} hashes")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let hint = seq.size_hint().unwrap_or(0);
            if hint > MAX_PROOF_SIBLINGS {
                return Err(de::Error::invalid_length(hint, &self));
            }
            let mut out = Vec::with_capacity(hint);
            while let Some(Hash(h)) = seq.next_element()? {
                if out.len() == MAX_PROOF_SIBLINGS {
                    return Err(de::Error::invalid_length(out.len() + 1, &self));
                }
                out.push(h);
            }
            Ok(out)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 32]>, D::Error> {
        d.deserialize_seq(SiblingsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(i: u64) -> [u8; 32] {
        key_of(ACCOUNT_TAG, &crate::crypto::blake2b256(&i.to_le_bytes()))
    }

    fn v(i: u64) -> [u8; 32] {
        value_hash(&i.to_le_bytes())
    }

    /// A key with the given leading bits and zeros after.
    fn bits_key(bits: &[u8]) -> [u8; 32] {
        let mut key = [0u8; 32];
        for (i, b) in bits.iter().enumerate() {
            key[i / 8] |= b << (7 - i % 8);
        }
        key
    }

    #[test]
    fn small_trees_follow_the_definition() {
        let mut t = StateTree::new();
        assert_eq!(t.root(), EMPTY_HASH);
        assert!(t.is_empty());

        let a = bits_key(&[0, 0, 1]);
        let b = bits_key(&[0, 0, 0, 1]);
        let c = bits_key(&[1]);
        t.update(a, Some(v(1)));
        // One entry: the root is that leaf, at depth 0.
        assert_eq!(t.root(), leaf_hash(&a, &v(1)));
        t.update(b, Some(v(2)));
        // a and b share "00": a chain of two one-sided nodes above their split at bit 2.
        let split = internal_hash(&leaf_hash(&b, &v(2)), &leaf_hash(&a, &v(1)));
        let chain = internal_hash(&internal_hash(&split, &EMPTY_HASH), &EMPTY_HASH);
        assert_eq!(t.root(), chain);
        t.update(c, Some(v(3)));
        let with_c = internal_hash(&internal_hash(&split, &EMPTY_HASH), &leaf_hash(&c, &v(3)));
        assert_eq!(t.root(), with_c);
        assert_eq!(t.len(), 3);

        // Deleting b leaves {a, c}: a's single-entry subtree collapses to its leaf at depth 1.
        t.update(b, None);
        assert_eq!(
            t.root(),
            internal_hash(&leaf_hash(&a, &v(1)), &leaf_hash(&c, &v(3)))
        );
        t.update(c, None);
        assert_eq!(t.root(), leaf_hash(&a, &v(1)));
        t.update(a, None);
        assert_eq!(t.root(), EMPTY_HASH);
        assert!(t.is_empty());
        // All slots are free again and get reused.
        assert_eq!(t.free_leaves.len(), t.leaves.len());
        assert_eq!(t.free_internals.len(), t.internals.len());
    }

    #[test]
    fn keys_differing_only_in_the_last_bit() {
        let a = [0u8; 32];
        let mut b = [0u8; 32];
        b[31] = 1;
        let mut t = StateTree::new();
        t.apply(&mut [(a, Some(v(1))), (b, Some(v(2)))]);
        assert_eq!(t.internals.len(), 256);
        let mut expect = internal_hash(&leaf_hash(&a, &v(1)), &leaf_hash(&b, &v(2)));
        for _ in 0..255 {
            expect = internal_hash(&expect, &EMPTY_HASH);
        }
        assert_eq!(t.root(), expect);
        for (key, value) in [(a, v(1)), (b, v(2))] {
            let p = t.prove(&key);
            assert_eq!(p.siblings().len(), MAX_PROOF_SIBLINGS);
            assert!(p.verify(&t.root(), &key, Some(value)));
        }
        let mut c = [0u8; 32];
        c[31] = 2;
        let p = t.prove(&c);
        assert_eq!(p.siblings().len(), 255);
        assert!(p.leaf().is_none());
        assert!(p.verify(&t.root(), &c, None));
        t.update(b, None);
        assert_eq!(t.root(), leaf_hash(&a, &v(1)));
        assert_eq!(t.free_internals.len(), 256);
    }

    #[test]
    fn get_prove_and_verify() {
        let mut t = StateTree::new();
        let mut ups: Vec<Update> = (0..500).map(|i| (k(i), Some(v(i)))).collect();
        t.apply(&mut ups);
        assert_eq!(t.len(), 500);
        let root = t.root();
        for i in 0..600 {
            let p = t.prove(&k(i));
            if i < 500 {
                assert_eq!(t.get(&k(i)), Some(v(i)));
                assert!(p.verify(&root, &k(i), Some(v(i))));
                assert!(!p.verify(&root, &k(i), Some(v(i + 1))));
                assert!(!p.verify(&root, &k(i), None));
                assert!(!p.verify(&root, &k(i + 1), Some(v(i))));
            } else {
                assert_eq!(t.get(&k(i)), None);
                assert!(p.verify(&root, &k(i), None));
                assert!(!p.verify(&root, &k(i), Some(v(i))));
                // The walk's end proves nothing about a present key.
                assert!(!p.verify(&root, &k(i % 500), None));
            }
            assert!(!p.verify(&[1; 32], &k(i), t.get(&k(i))));
        }
    }

    #[test]
    fn malformed_proofs_are_false() {
        let mut t = StateTree::new();
        let mut ups: Vec<Update> = (0..64).map(|i| (k(i), Some(v(i)))).collect();
        t.apply(&mut ups);
        let root = t.root();
        let good = t.prove(&k(1));

        let mut long = good.clone();
        long.siblings = vec![[7; 32]; MAX_PROOF_SIBLINGS + 1];
        assert!(!long.verify(&root, &k(1), Some(v(1))));

        // Hand-made roots of trees no honest builder makes (they would need a hash
        // collision to match a real root), to show the shape checks themselves.
        // A leaf off the key's path cannot prove non-inclusion: here leaf "1..." sits on the
        // "0" side, where an absent key "0..." would be.
        let stray = ProofLeaf {
            key: bits_key(&[1, 1]),
            value_hash: v(1),
        };
        let sibling = leaf_hash(&bits_key(&[0, 1]), &v(2));
        let off = Proof {
            siblings: vec![sibling],
            leaf: Some(stray),
        };
        let off_root = internal_hash(&leaf_hash(&stray.key, &stray.value_hash), &sibling);
        assert!(!off.verify(&off_root, &bits_key(&[0, 0]), None));
        // A trailing empty sibling is not canonical (the leaf would be one level up).
        let near = ProofLeaf {
            key: bits_key(&[0, 1]),
            value_hash: v(1),
        };
        let padded = Proof {
            siblings: vec![EMPTY_HASH],
            leaf: Some(near),
        };
        let padded_root = internal_hash(&leaf_hash(&near.key, &near.value_hash), &EMPTY_HASH);
        assert!(!padded.verify(&padded_root, &near.key, Some(v(1))));
        // Without the padding it is a proof for a one-entry tree.
        let unpadded = Proof {
            siblings: vec![],
            leaf: Some(near),
        };
        assert!(unpadded.verify(
            &leaf_hash(&near.key, &near.value_hash),
            &near.key,
            Some(v(1))
        ));

        // Empty tree: the empty proof shows only non-inclusion.
        let e = StateTree::new().prove(&k(1));
        assert!(e.verify(&EMPTY_HASH, &k(1), None));
        assert!(!e.verify(&EMPTY_HASH, &k(1), Some(v(1))));
        assert!(!e.verify(&root, &k(1), None));
    }

    #[test]
    fn decoding_bounds_the_siblings() {
        let mut t = StateTree::new();
        t.apply(&mut [([0; 32], Some(v(0))), ([1; 32], Some(v(1)))]);
        let p = t.prove(&[0; 32]);
        let bytes = rmp_serde::to_vec(&p).unwrap();
        assert_eq!(rmp_serde::from_slice::<Proof>(&bytes).unwrap(), p);
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains(&hex::encode(p.siblings()[0])));
        assert_eq!(serde_json::from_str::<Proof>(&json).unwrap(), p);

        // 257 siblings do not decode, whether the length is announced or streamed.
        let too_many = Proof {
            siblings: vec![[3; 32]; MAX_PROOF_SIBLINGS + 1],
            leaf: None,
        };
        assert!(rmp_serde::from_slice::<Proof>(&rmp_serde::to_vec(&too_many).unwrap()).is_err());
        assert!(serde_json::from_str::<Proof>(&serde_json::to_string(&too_many).unwrap()).is_err());
        let max = Proof {
            siblings: vec![[3; 32]; MAX_PROOF_SIBLINGS],
            leaf: None,
        };
        let bytes = rmp_serde::to_vec(&max).unwrap();
        assert_eq!(rmp_serde::from_slice::<Proof>(&bytes).unwrap(), max);
        // A hostile announced length with no data behind it.
        let mut hostile = vec![0x92, 0xdd, 0xff, 0xff, 0xff, 0xff];
        hostile.extend_from_slice(&[0xc4, 32]);
        assert!(rmp_serde::from_slice::<Proof>(&hostile).is_err());
        // Hashes must be exactly 32 bytes.
        let short = [0x92, 0x91, 0xc4, 31]
            .iter()
            .copied()
            .chain([0; 31])
            .chain([0xc0]);
        assert!(rmp_serde::from_slice::<Proof>(&short.collect::<Vec<_>>()).is_err());
    }

    #[test]
    fn batch_equals_one_by_one_with_last_wins() {
        let mut ups: Vec<Update> = Vec::new();
        for i in 0..2000u64 {
            let key = k(i % 700);
            ups.push((key, (i % 5 != 0).then(|| v(i))));
        }
        let mut single = StateTree::new();
        for (key, value) in &ups {
            single.update(*key, *value);
        }
        let mut batch = StateTree::new();
        batch.apply(&mut ups.clone());
        assert_eq!(single.root(), batch.root());
        assert_eq!(single.len(), batch.len());
        // Chunks of a batch as well.
        let mut chunked = StateTree::new();
        for c in ups.chunks(333) {
            chunked.apply(&mut c.to_vec());
        }
        assert_eq!(chunked.root(), single.root());
    }

    #[test]
    fn large_batches_equal_small_ones() {
        // A milestone-sized batch (rewrites, inserts and deletes of a 20,000-entry tree) gives
        // the root of the same updates in small batches and of the result built from scratch.
        let mut ups: Vec<Update> = (0..20_000u64).map(|i| (k(i), Some(v(i)))).collect();
        let mut big = StateTree::new();
        big.apply(&mut ups.clone());
        let mut small = StateTree::new();
        for c in ups.chunks(50) {
            small.apply(&mut c.to_vec());
        }
        assert_eq!(big.root(), small.root());
        for (i, u) in ups.iter_mut().enumerate() {
            u.1 = match i % 10 {
                0 => None,
                _ => Some(v(i as u64 + 7)),
            };
        }
        ups.extend((20_000..26_000u64).map(|i| (k(i), Some(v(i)))));
        big.apply(&mut ups.clone());
        for c in ups.chunks(50) {
            small.apply(&mut c.to_vec());
        }
        assert_eq!(big.root(), small.root());
        assert_eq!(big.len(), 18_000 + 6_000);
        let mut fresh = StateTree::new();
        let mut live: Vec<Update> = ups.into_iter().filter(|u| u.1.is_some()).collect();
        fresh.apply(&mut live);
        assert_eq!(fresh.root(), big.root());
    }

    #[test]
    fn memory_per_entry_is_well_under_200_bytes() {
        let n = 200_000u64;
        let mut t = StateTree::new();
        let mut ups: Vec<Update> = (0..n).map(|i| (k(i), Some(v(i)))).collect();
        t.apply(&mut ups);
        let per_entry = t.heap_bytes() as f64 / n as f64;
        eprintln!(
            "{n} entries: {per_entry:.1} heap bytes per entry, {} internal nodes",
            t.internals.len()
        );
        let internal_per_entry = t.internals.len() as f64 / n as f64;
        // n / ln 2 internal nodes in a random trie.
        assert!(
            (1.35..1.55).contains(&internal_per_entry),
            "{internal_per_entry}"
        );
        // 64 + 1.44 * 40 = 122 bytes live, plus at most an eighth spare.
        assert!(per_entry < 140.0, "{per_entry} bytes per entry");
        assert_eq!(std::mem::size_of::<Internal>(), 40);
        assert_eq!(std::mem::size_of::<Leaf>(), 64);
    }
}

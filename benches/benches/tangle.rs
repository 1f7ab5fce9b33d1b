//! Criterion suite for the in-memory `Tangle`:
//! - `tangle_insert/solid_at_1M`: insert of solid transactions into a Tangle pre-grown to 1M;
//! - `tangle_insert/petgraph_stable_at_1M`: the same stream into a petgraph `StableDiGraph`
//!   plus an id index, for comparison with the arena;
//! - `tangle_milestone/cone_and_confirm`: white-flag order and confirmation of a typical
//!   milestone cone (a milestone every 1000 transactions);
//! - before the suites, RAM per stored transaction at 1M, measured with a counting global
//!   allocator (live heap bytes after building minus before, divided by the count).
//!
//! Shape: each new transaction approves two distinct random tips, as the issuer sees them
//! with a visibility delay of 64 arrivals (arrival rate times delay = 64): a steady state
//! with about 128 tips and no orphans. Ids are random 32-byte strings from a seeded ChaCha
//! stream (hashing is benchmarked elsewhere).

// The counting allocator below needs `unsafe impl GlobalAlloc`; nothing else here is unsafe.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{HashMap, VecDeque};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_main, Criterion, Throughput};
use dag_core::tangle::IdBuildHasher;
use dag_core::{InsertOutcome, Tangle, TangleConfig, TangleView, TxId, TxRef};
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Counts live heap bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to `System` with the caller's arguments unchanged; we only
// add bookkeeping on an atomic counter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Transactions in the pre-grown Tangle.
const BASE: usize = 1_000_000;
/// Visibility delay of the stream, in arrivals.
const DELAY: usize = 64;
/// Transactions between milestones.
const MILESTONE_EVERY: usize = 1_000;
/// Inserts measured per fresh clone of the base, so the Tangle stays near 1M.
const CHUNK: usize = 50_000;

/// Produces the steady-state transaction stream: uniform random tip selection with a
/// visibility delay of `DELAY` arrivals (a new transaction is seen, and its parents stop being
/// tips, only `DELAY` arrivals later), which keeps about `2 * DELAY` tips.
#[derive(Clone)]
struct Stream {
    rng: ChaCha8Rng,
    /// Visible tips and their positions (for swap-remove).
    tips: Vec<TxId>,
    pos: HashMap<TxId, usize, IdBuildHasher>,
    /// Issued but not yet visible.
    delayed: VecDeque<(TxId, [TxId; 2])>,
}

impl Stream {
    fn new(seed: u64) -> Self {
        let mut pos = HashMap::default();
        pos.insert(TxId::GENESIS, 0);
        Stream {
            rng: ChaCha8Rng::seed_from_u64(seed),
            tips: vec![TxId::GENESIS],
            pos,
            delayed: VecDeque::new(),
        }
    }

    fn remove_tip(&mut self, id: &TxId) {
        if let Some(p) = self.pos.remove(id) {
            self.tips.swap_remove(p);
            if let Some(moved) = self.tips.get(p) {
                self.pos.insert(*moved, p);
            }
        }
    }

    fn next(&mut self) -> (TxId, [TxId; 2]) {
        let mut id = [0u8; 32];
        self.rng.fill_bytes(&mut id);
        let id = TxId(id);
        let n = self.tips.len();
        let parents = if n < 2 {
            [self.tips[0], TxId::GENESIS]
        } else {
            let a = self.rng.gen_range(0..n);
            let mut b = self.rng.gen_range(0..n - 1);
            if b >= a {
                b += 1;
            }
            [self.tips[a], self.tips[b]]
        };
        let parents = if parents[0] == parents[1] {
            [TxId::GENESIS, TxId::GENESIS]
        } else {
            parents
        };
        self.delayed.push_back((id, parents));
        if self.delayed.len() > DELAY {
            if let Some((seen, ps)) = self.delayed.pop_front() {
                for p in &ps {
                    self.remove_tip(p);
                }
                self.pos.insert(seen, self.tips.len());
                self.tips.push(seen);
            }
        }
        (id, parents)
    }
}

/// Inserts `n` stream transactions, confirming a milestone every `MILESTONE_EVERY`.
fn grow(t: &mut Tangle, s: &mut Stream, n: usize, milestone: &mut u32) {
    for i in 0..n {
        let (id, parents) = s.next();
        let out = t.insert(id, parents, None, i as u64);
        assert!(matches!(out, Ok(InsertOutcome::Solid(_))), "{out:?}");
        if (i + 1) % MILESTONE_EVERY == 0 {
            let m = t.newest();
            let cone = t.unconfirmed_cone(&[m]);
            *milestone += 1;
            t.confirm(&cone, *milestone, m).expect("confirm");
        }
    }
}

/// The base Tangle at 1M and the stream positioned after it; prints RAM per transaction.
fn base() -> (Tangle, Stream, u32) {
    let mut s = Stream::new(7);
    let mut milestone = 0;
    let before = LIVE.load(Ordering::Relaxed);
    let mut t = Tangle::new(TangleConfig::default());
    grow(&mut t, &mut s, BASE, &mut milestone);
    let after = LIVE.load(Ordering::Relaxed);
    println!(
        "tangle memory: {} transactions, {} live heap bytes, {:.1} bytes/tx \
         (counting global allocator; tips {}, unconfirmed {})",
        t.len(),
        after - before,
        (after - before) as f64 / t.len() as f64,
        t.tips().len(),
        t.unconfirmed_len(),
    );
    (t, s, milestone)
}

fn bench_tangle(c: &mut Criterion) {
    let (base, mut stream, milestone) = base();
    // The milestone suite continues the base's stream; the insert chunk is a branch of it.
    let after_base = stream.clone();
    let chunk: Vec<(TxId, [TxId; 2])> = (0..CHUNK).map(|_| stream.next()).collect();

    // Direct figure, independent of criterion's sampling: median of 5 runs of CHUNK inserts
    // into a fresh clone of the 1M base.
    let mut runs: Vec<f64> = (0..5)
        .map(|_| {
            let mut t = base.clone();
            t.reserve(CHUNK);
            let start = Instant::now();
            for (i, (id, parents)) in chunk.iter().enumerate() {
                black_box(t.insert(*id, *parents, None, (BASE + i) as u64).is_ok());
            }
            start.elapsed().as_nanos() as f64 / CHUNK as f64
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    println!(
        "tangle insert at 1M, {CHUNK} solid inserts per run: median {:.0} ns/insert \
         ({:.2} M inserts/s), runs {runs:.0?}",
        runs[2],
        1e3 / runs[2]
    );

    // One criterion iteration = CHUNK inserts into a fresh clone of the base (clone and
    // reserve untimed), so the figure is per CHUNK; throughput gives inserts/s.
    let mut g = c.benchmark_group("tangle_insert");
    g.throughput(Throughput::Elements(CHUNK as u64));
    g.sample_size(10);
    g.bench_function("solid_at_1M", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut t = base.clone();
                t.reserve(CHUNK);
                let start = Instant::now();
                for (i, (id, parents)) in chunk.iter().enumerate() {
                    black_box(t.insert(*id, *parents, None, (BASE + i) as u64).is_ok());
                }
                total += start.elapsed();
            }
            total
        })
    });

    // petgraph comparison: same shape, nodes carry the id, edges approver -> parent.
    let mut graph: StableDiGraph<TxId, ()> = StableDiGraph::with_capacity(BASE, 2 * BASE);
    let mut index: HashMap<TxId, NodeIndex, IdBuildHasher> = HashMap::default();
    let g0 = graph.add_node(TxId::GENESIS);
    index.insert(TxId::GENESIS, g0);
    let pg_insert = |graph: &mut StableDiGraph<TxId, ()>,
                     index: &mut HashMap<TxId, NodeIndex, IdBuildHasher>,
                     id: TxId,
                     parents: [TxId; 2]| {
        if index.contains_key(&id) {
            return false; // duplicate, as `Tangle::insert` checks
        }
        let (Some(&a), Some(&b)) = (index.get(&parents[0]), index.get(&parents[1])) else {
            return false;
        };
        let n = graph.add_node(id);
        graph.add_edge(n, a, ());
        if a != b {
            graph.add_edge(n, b, ());
        }
        index.insert(id, n);
        true
    };
    let mut s = Stream::new(7);
    let before = LIVE.load(Ordering::Relaxed);
    for _ in 0..BASE {
        let (id, parents) = s.next();
        pg_insert(&mut graph, &mut index, id, parents);
    }
    println!(
        "petgraph StableDiGraph + index memory: {:.1} bytes/tx",
        (LIVE.load(Ordering::Relaxed) - before) as f64 / BASE as f64
    );
    g.bench_function("petgraph_stable_at_1M", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (mut gr, mut ix) = (graph.clone(), index.clone());
                gr.reserve_nodes(CHUNK);
                gr.reserve_edges(2 * CHUNK);
                ix.reserve(CHUNK);
                let start = Instant::now();
                for (id, parents) in &chunk {
                    black_box(pg_insert(&mut gr, &mut ix, *id, *parents));
                }
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
    drop((graph, index));

    let mut g = c.benchmark_group("tangle_milestone");
    g.throughput(Throughput::Elements(MILESTONE_EVERY as u64));
    let mut t = base.clone();
    let mut s = after_base;
    let mut m = milestone;
    let mut cone_len = 0usize;
    let mut cones = 0usize;
    g.bench_function("cone_and_confirm", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // Grow one milestone interval (untimed), without confirming.
                for i in 0..MILESTONE_EVERY {
                    let (id, parents) = s.next();
                    let out = t.insert(id, parents, None, i as u64);
                    assert!(matches!(out, Ok(InsertOutcome::Solid(_))), "{out:?}");
                }
                let tip: TxRef = t.newest();
                m += 1;
                let start = Instant::now();
                let cone = t.unconfirmed_cone(&[tip]);
                t.confirm(&cone, m, tip).expect("confirm");
                total += start.elapsed();
                cone_len += cone.len();
                cones += 1;
                // Keep the Tangle near 1M: drop what is older than the last 1M.
                if t.len() > BASE + 100_000 {
                    let _ = t.prune_before(TxRef(t.newest().0 - BASE as u32));
                }
            }
            total
        })
    });
    g.finish();
    println!(
        "milestone cones: {} on average over {} milestones; tangle len {} root {:?}",
        cone_len / cones.max(1),
        cones,
        t.len(),
        t.root()
    );
}

/// The suite (written out instead of `criterion_group!`, which makes an undocumented `pub fn`).
fn benches() {
    let mut c = Criterion::default().configure_from_args();
    bench_tangle(&mut c);
}

criterion_main!(benches);

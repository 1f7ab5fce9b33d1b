//! Shared fixtures: synthetic ids, a Tangle grown at a steady arrival rate with a
//! visibility delay, and chi-square helpers.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;

use dag_core::crypto::blake2b256;
use dag_core::{InsertOutcome, MilestoneIndex, Tangle, TangleConfig, TangleView, TxId, TxRef};
use rand::Rng;
use tip_selection::TipSelector;

/// A synthetic transaction id: BLAKE2b-256 of a counter (never the genesis id).
pub fn synthetic_id(n: u64) -> TxId {
    TxId(blake2b256(&n.to_le_bytes()))
}

/// Time unit of the fixtures, in ticks (arrival values): 1000, like milliseconds.
pub const UNIT: u64 = 1000;

/// A Tangle grown one transaction at a time: each new transaction selects its parents at
/// issue time, among the transactions visible then, and becomes visible `delay` ticks later.
pub struct Grower {
    pub tangle: Tangle,
    pub now: u64,
    counter: u64,
    /// (visible at, id, parents, milestone)
    in_flight: VecDeque<(u64, TxId, [TxId; 2], Option<MilestoneIndex>)>,
}

impl Default for Grower {
    fn default() -> Self {
        Grower::new()
    }
}

impl Grower {
    pub fn new() -> Self {
        Grower {
            tangle: Tangle::new(TangleConfig::default()),
            now: 0,
            counter: 0,
            in_flight: VecDeque::new(),
        }
    }

    pub fn next_id(&mut self) -> TxId {
        self.counter += 1;
        synthetic_id(self.counter)
    }

    /// Inserts a solid transaction at once, at the current time.
    pub fn add(&mut self, parents: [TxRef; 2]) -> TxRef {
        self.add_with(parents, None)
    }

    /// Inserts a solid transaction carrying milestone `ms` (if any) at once.
    pub fn add_with(&mut self, parents: [TxRef; 2], ms: Option<MilestoneIndex>) -> TxRef {
        let id = self.next_id();
        let p = [self.tangle.id(parents[0]), self.tangle.id(parents[1])];
        match self.tangle.insert(id, p, ms, self.now).expect("insert") {
            InsertOutcome::Solid(v) => v[0].1,
            other => panic!("not solid: {other:?}"),
        }
    }

    /// Makes every in-flight transaction due at `self.now` visible, telling `sel`.
    fn deliver<S: TipSelector>(&mut self, sel: &mut S) {
        while self.in_flight.front().is_some_and(|f| f.0 <= self.now) {
            let (at, id, parents, ms) = self.in_flight.pop_front().expect("front");
            match self.tangle.insert(id, parents, ms, at).expect("insert") {
                InsertOutcome::Solid(v) => {
                    let last = v.last().expect("one").1;
                    sel.on_solid(&self.tangle, last);
                }
                other => panic!("not solid: {other:?}"),
            }
        }
    }

    /// Advances time by one exponential inter-arrival at rate `lambda` per [`UNIT`], then
    /// issues one transaction whose parents `sel` selects now; it becomes visible after
    /// `delay` ticks. Returns the chosen parents.
    pub fn step<S: TipSelector, R: Rng>(
        &mut self,
        sel: &mut S,
        rng: &mut R,
        lambda: f64,
        delay: u64,
    ) -> [TxRef; 2] {
        let u: f64 = rng.gen_range(f64::EPSILON..1.0);
        self.now += (-u.ln() * UNIT as f64 / lambda).round() as u64;
        self.deliver(sel);
        let parents = sel.select(&self.tangle, self.now, rng).expect("select");
        let id = self.next_id();
        let p = [self.tangle.id(parents[0]), self.tangle.id(parents[1])];
        self.in_flight.push_back((self.now + delay, id, p, None));
        parents
    }

    /// Delivers everything still in flight (advancing time to the last delivery).
    pub fn flush<S: TipSelector>(&mut self, sel: &mut S) {
        if let Some(last) = self.in_flight.back() {
            self.now = self.now.max(last.0);
        }
        self.deliver(sel);
    }

    /// Issues a milestone approving two tips chosen by `sel`, inserts it at once and
    /// confirms its cone.
    pub fn milestone<S: TipSelector, R: Rng>(
        &mut self,
        sel: &mut S,
        rng: &mut R,
        index: MilestoneIndex,
    ) -> TxRef {
        let parents = sel.select(&self.tangle, self.now, rng).expect("select");
        let m = self.add_with(parents, Some(index));
        let order = self.tangle.unconfirmed_cone(&[m]);
        self.tangle.confirm(&order, index, m).expect("confirm");
        sel.on_solid(&self.tangle, m);
        sel.on_confirmed(&self.tangle, index);
        m
    }
}

/// Grows a Tangle of `n` transactions with `sel` at rate `lambda` and visibility delay
/// `delay`, then delivers the ones in flight.
pub fn grow<S: TipSelector, R: Rng>(
    sel: &mut S,
    rng: &mut R,
    n: usize,
    lambda: f64,
    delay: u64,
) -> Grower {
    let mut g = Grower::new();
    for _ in 0..n {
        g.step(sel, rng, lambda, delay);
    }
    g.flush(sel);
    g
}

/// Pearson's chi-square statistic of `observed` against `expected` counts.
pub fn chi_square(observed: &[f64], expected: &[f64]) -> f64 {
    observed
        .iter()
        .zip(expected)
        .map(|(o, e)| (o - e) * (o - e) / e)
        .sum()
}

/// Upper critical value of the chi-square distribution with `df` degrees of freedom at
/// significance 0.001 (Wilson-Hilferty approximation, z = 3.0902).
pub fn chi_square_critical_0001(df: usize) -> f64 {
    let k = df as f64;
    let z = 3.0902;
    let a = 2.0 / (9.0 * k);
    k * (1.0 - a + z * a.sqrt()).powi(3)
}

/// Every transaction's cumulative weight by brute force: 1 + size of its future cone.
pub fn brute_force_weight<V: TangleView>(view: &V, tx: TxRef) -> u32 {
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![tx];
    while let Some(x) = stack.pop() {
        for &y in view.approvers(x) {
            if seen.insert(y) {
                stack.push(y);
            }
        }
    }
    1 + seen.len() as u32
}

/// Whether `tip` has `target` in its past cone (or is it).
pub fn approves<V: TangleView>(view: &V, tip: TxRef, target: TxRef) -> bool {
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![tip];
    while let Some(x) = stack.pop() {
        if x == target {
            return true;
        }
        for p in view.parents(x) {
            if p >= target && p != x && seen.insert(p) {
                stack.push(p);
            }
        }
    }
    false
}

//! [`WeightedWalk`]: the weighted random walk (MCMC) of the IOTA white paper, with
//! cumulative weights kept incrementally inside a sliding window.

use std::collections::VecDeque;

use dag_core::{MilestoneIndex, TangleView, TxRef};
use rand::Rng;

use crate::error::SelectError;
use crate::selector::{lone_tip_parents, TipSelector};

/// Where walks start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryPoint {
    /// The bottom of the window: the heaviest of the first
    /// [`WalkConfig::entry_candidates`] transactions that arrived at most
    /// [`WalkConfig::depth`] time units before the newest one. Taking the heaviest keeps an
    /// attacker's transaction that happens to arrive at that moment from becoming the start.
    Depth,
    /// The transaction carrying the latest confirmed milestone, when it lies inside the
    /// window; [`EntryPoint::Depth`] otherwise.
    LatestMilestone,
}

/// Configuration of [`WeightedWalk`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WalkConfig {
    /// Randomness of the walk: 0 is the unweighted walk (uniform among approvers), large
    /// values follow the heaviest approver. Negative values are treated as 0.
    pub alpha: f64,
    /// Depth of the walk window, in the unit of [`TangleView::arrival`]: weights are kept
    /// for transactions that arrived at most this long before the newest one, and walks
    /// start at the bottom of that window. Default 5000 (5 s on a node).
    ///
    /// A deeper window costs more per arrival (weight maintenance is O(window)) but resists
    /// side chains attached further back: honest weight dominates only at transactions
    /// older than the Tangle's adaptation period (a few visibility delays). The parasite
    /// test uses 25 time units at lambda = 100 per unit and a delay of 1 unit.
    pub depth: u64,
    /// Hard cap on the number of transactions in the window, which bounds the cost of one
    /// weight update during an arrival burst. Default 4096.
    pub max_window: usize,
    /// Where walks start.
    pub entry: EntryPoint,
    /// How many transactions at the bottom of the window are considered as the start of a
    /// [`EntryPoint::Depth`] walk (the heaviest wins). Default 8.
    pub entry_candidates: usize,
    /// How many times the second walk is retried when it ends on the first walk's tip,
    /// before the first tip's trunk is used as the second parent. Default 4.
    pub distinct_retries: usize,
}

impl Default for WalkConfig {
    fn default() -> Self {
        WalkConfig {
            alpha: 0.01,
            depth: 5_000,
            max_window: 4096,
            entry: EntryPoint::Depth,
            entry_candidates: 8,
            distinct_retries: 4,
        }
    }
}

impl WalkConfig {
    /// The default configuration with `alpha`.
    pub fn with_alpha(alpha: f64) -> Self {
        WalkConfig {
            alpha,
            ..WalkConfig::default()
        }
    }
}

/// Approvers handled with a stack buffer of transition weights; nodes with more approvers
/// recompute the exponentials instead of allocating.
const STACK_APPROVERS: usize = 32;

/// Weighted random walk tip selection (Markov chain Monte Carlo).
///
/// A walk starts at an entry point at the bottom of a window of recent transactions and
/// repeatedly steps from `x` to one of its direct approvers `y`, with probability
/// proportional to `exp(-alpha * (H(x) - H(y)))`, until it reaches a tip. `H` is the
/// cumulative weight: 1 plus the number of transactions that approve `x` directly or
/// indirectly. The transition weights are computed as `exp(alpha * (H(y) - H_max))`, with
/// `H_max` the heaviest approver, so they lie in `(0, 1]`, never overflow, and the heaviest
/// approver always has weight 1.
///
/// # Weights: incremental, window-limited
///
/// When a transaction `y` arrives, every transaction of its past cone inside the window
/// gains 1 (a BFS over parents that stops below the window, with an epoch stamp per
/// transaction instead of a visited set). Weights below the window are dropped as it slides.
/// The weight of any transaction in the window is then exact: its whole future cone is
/// newer than it and so inside the window.
///
/// Trade-off: each arrival costs O(window) (the past cone of a new transaction covers
/// nearly the whole window), i.e. `lambda * depth` steps, independent of the Tangle's size;
/// a walk costs O(path length x approvers). Recomputing weights once per batch would cost
/// O(window^2 / 64) with bitsets per batch and serve stale weights in between; the
/// incremental update is exact at every selection and cheaper as long as there are fewer
/// than about `window / 64` selections per arrival (a node selects about once per
/// transaction it issues, a simulator once per transaction it creates).
///
/// # Stranded tips
///
/// A walk only moves from a transaction to its approvers, so it reaches only the future
/// cone of its entry point, which lies inside the window. A tip that leaves the window
/// (it arrived more than `depth` before the newest transaction, or more than
/// `max_window` transactions ago) without an approver can never be reached again: with
/// nothing else it would stay a tip for ever and its payload would never be confirmed
/// (issue #14 measured 19% of transactions at lambda 10 and half at lambda 50 with a
/// window of 5 delays). So the walker queues every such tip as it slides the window
/// (oldest first) and each selection takes the oldest one still unapproved as its second
/// parent, instead of a second walk. No setting can strand a transaction: one that is
/// too shallow for the load costs tips (each stranded one waits for a selection), never
/// confirmations. The price: a transaction attached on purpose to old parents and left
/// alone (a lazy tip) is approved after `depth`, one per selection; its cone is old, so
/// approving it adds nothing unconfirmed to the Tangle.
///
/// Weights are brought up to date lazily: [`TipSelector::on_solid`] and every selection
/// process all transactions up to `view.newest()` not processed yet. When the walker is
/// created on a large Tangle, or falls more than a window behind, it starts from the
/// bottom of the current window instead of replaying history.
#[derive(Debug, Clone)]
pub struct WeightedWalk {
    config: WalkConfig,
    /// Ref of `weights[0]`.
    base: u32,
    /// Bottom of the window (`base <= lo`).
    lo: u32,
    /// Every ref below `next` has been processed; `weights` covers `base..next`.
    next: u32,
    /// Cumulative weights of `base..next`.
    weights: Vec<u32>,
    /// BFS epoch stamps of `base..next`.
    stamps: Vec<u32>,
    epoch: u32,
    stack: Vec<TxRef>,
    /// Tips that fell below the window unapproved and were not handed out yet, oldest first
    /// (see "Stranded tips" in the type's documentation). An entry leaves once it has an
    /// approver or is pruned.
    stranded: VecDeque<u32>,
    /// Stranded tips already handed out once, with the arrival time from which they are
    /// handed out again if still unapproved (the selecting transaction may never have
    /// been attached); in that order.
    handed: VecDeque<(u32, u64)>,
}

impl WeightedWalk {
    /// A walker with `config`.
    pub fn new(config: WalkConfig) -> Self {
        WeightedWalk {
            config,
            base: 0,
            lo: 0,
            next: 0,
            weights: Vec::new(),
            stamps: Vec::new(),
            epoch: 0,
            stack: Vec::new(),
            stranded: VecDeque::new(),
            handed: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &WalkConfig {
        &self.config
    }

    /// Changes `alpha` (the weights do not depend on it).
    pub fn set_alpha(&mut self, alpha: f64) {
        self.config.alpha = alpha;
    }

    /// Bottom of the current window: the oldest transaction with a weight.
    pub fn window_start(&self) -> TxRef {
        TxRef(self.lo)
    }

    /// Cumulative weight of `tx` (1 + its approvers, direct and indirect), if `tx` is inside
    /// the processed window.
    pub fn cumulative_weight(&self, tx: TxRef) -> Option<u32> {
        if tx.0 < self.lo || tx.0 >= self.next {
            return None;
        }
        Some(self.weights[(tx.0 - self.base) as usize])
    }

    /// Weight used by the walk: transactions newer than the processed range (the view moved
    /// on without an update) count as 1, the weight they had on arrival.
    fn weight(&self, tx: TxRef) -> u32 {
        if tx.0 >= self.lo && tx.0 < self.next {
            self.weights[(tx.0 - self.base) as usize]
        } else {
            1
        }
    }

    /// First ref in `from..=newest` whose arrival is at least `newest_arrival - depth`.
    fn depth_floor<V: TangleView + ?Sized>(&self, view: &V, from: u32) -> u32 {
        let newest = view.newest().0;
        let threshold = view
            .arrival(TxRef(newest))
            .saturating_sub(self.config.depth);
        // Arrival is non-decreasing in ref order: binary search for the first ref at or
        // above the threshold.
        let (mut a, mut b) = (from, newest);
        while a < b {
            let mid = a + (b - a) / 2;
            if view.arrival(TxRef(mid)) >= threshold {
                b = mid;
            } else {
                a = mid + 1;
            }
        }
        a
    }

    /// Processes every transaction up to `view.newest()` not processed yet, and slides the
    /// window. Called by [`TipSelector::on_solid`] and at every selection.
    pub fn update<V: TangleView + ?Sized>(&mut self, view: &V) {
        if view.is_empty() {
            return;
        }
        let newest = view.newest().0;
        let root = view.root().0;
        if self.next > newest.saturating_add(1) {
            // The view is not the one we followed (or it shrank): start over.
            *self = WeightedWalk::new(self.config);
        }
        let cap = self.config.max_window.max(1) as u32;
        let floor = root
            .max(self.lo)
            .max((newest + 1).saturating_sub(cap))
            .min(newest);
        let lo = self.depth_floor(view, floor);
        if lo > self.next || self.next == 0 {
            // More than a window behind (or first use): start at the window bottom. Every
            // tip below it is stranded (one pass over the tips, not over the history).
            let mut below: Vec<u32> = view
                .tips()
                .iter()
                .map(|t| t.0)
                .filter(|&t| t >= root && t < lo)
                .collect();
            below.sort_unstable();
            self.stranded.clear();
            self.handed.clear();
            self.stranded.extend(below);
            self.base = lo;
            self.next = lo;
            self.weights.clear();
            self.stamps.clear();
        } else {
            // Transactions leaving the window without an approver can no longer be reached
            // by a walk: they are stranded until a selection approves them.
            for r in self.lo.max(root)..lo {
                if view.approvers(TxRef(r)).is_empty() {
                    self.stranded.push_back(r);
                }
            }
        }
        self.lo = lo;
        // Drop weights below the window once they are half the buffer.
        let dead = (self.lo - self.base) as usize;
        if dead > 1024 && dead * 2 > self.weights.len() {
            self.weights.drain(..dead);
            self.stamps.drain(..dead);
            self.base = self.lo;
        }
        for r in self.next..=newest {
            self.add_arrival(view, TxRef(r));
        }
        self.next = newest + 1;
    }

    /// Adds `y` (the next ref) with weight 1 and adds 1 to its past cone inside the window.
    fn add_arrival<V: TangleView + ?Sized>(&mut self, view: &V, y: TxRef) {
        debug_assert_eq!(y.0, self.base + self.weights.len() as u32);
        self.weights.push(1);
        self.stamps.push(0);
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.stamps.iter_mut().for_each(|s| *s = 0);
            self.epoch = 1;
        }
        let (lo, base, epoch) = (self.lo, self.base, self.epoch);
        // Mark y itself so a self-parent (the root) is not counted.
        self.stamps[(y.0 - base) as usize] = epoch;
        self.stack.clear();
        self.stack.extend(view.parents(y));
        while let Some(x) = self.stack.pop() {
            if x.0 < lo || x.0 >= y.0 {
                continue;
            }
            let i = (x.0 - base) as usize;
            if self.stamps[i] == epoch {
                continue;
            }
            self.stamps[i] = epoch;
            self.weights[i] += 1;
            for p in view.parents(x) {
                if p.0 >= lo && p.0 < y.0 && self.stamps[(p.0 - base) as usize] != epoch {
                    self.stack.push(p);
                }
            }
        }
    }

    /// The transaction walks start from, given the current window (call [`Self::update`]
    /// first for an up-to-date window).
    pub fn entry<V: TangleView + ?Sized>(&self, view: &V) -> TxRef {
        let newest = view.newest().0;
        let lo = self.lo.clamp(view.root().0, newest);
        if self.config.entry == EntryPoint::LatestMilestone {
            if let Some(m) = view.milestone(view.confirmed_milestone()) {
                if m.0 >= lo && m.0 <= newest {
                    return m;
                }
            }
        }
        let end = lo
            .saturating_add(self.config.entry_candidates.max(1) as u32)
            .min(newest + 1);
        let mut best = TxRef(lo);
        let mut best_w = 0;
        for r in lo..end {
            let w = self.weight(TxRef(r));
            if w > best_w {
                best = TxRef(r);
                best_w = w;
            }
        }
        best
    }

    /// One walk from `start` to a tip. Read-only, so several walks may share a walker.
    pub fn walk_from<V: TangleView + ?Sized, R: Rng + ?Sized>(
        &self,
        view: &V,
        start: TxRef,
        rng: &mut R,
    ) -> TxRef {
        let alpha = if self.config.alpha > 0.0 {
            self.config.alpha
        } else {
            0.0
        };
        let mut x = start;
        let mut buf = [0f64; STACK_APPROVERS];
        loop {
            let approvers = view.approvers(x);
            let n = approvers.len();
            if n == 0 {
                return x;
            }
            if n == 1 {
                x = approvers[0];
                continue;
            }
            if alpha == 0.0 {
                x = approvers[rng.gen_range(0..n)];
                continue;
            }
            let h_max = approvers.iter().map(|&y| self.weight(y)).max().unwrap_or(1);
            let step = |y: TxRef| (alpha * (f64::from(self.weight(y)) - f64::from(h_max))).exp();
            let mut total = 0.0;
            if n <= STACK_APPROVERS {
                for (slot, &y) in buf.iter_mut().zip(approvers) {
                    *slot = step(y);
                    total += *slot;
                }
            } else {
                total = approvers.iter().map(|&y| step(y)).sum();
            }
            // total >= 1 (the heaviest approver has weight exactly 1).
            let mut u = rng.gen::<f64>() * total;
            let mut chosen = approvers[n - 1];
            for (k, &y) in approvers.iter().enumerate() {
                let w = if n <= STACK_APPROVERS {
                    buf[k]
                } else {
                    step(y)
                };
                if u < w {
                    chosen = y;
                    break;
                }
                u -= w;
            }
            x = chosen;
        }
    }

    /// Takes the oldest stranded tip (a tip that arrived below the window, so no walk
    /// reaches it) still unapproved, if any, and marks it handed out: it comes back only
    /// if it is still a tip `depth` time units later (its approver was never attached), so
    /// the transactions selected while the first approver is in flight do not all pick
    /// it. Entries approved or pruned since are dropped. Call [`Self::update`] first.
    pub fn take_stranded<V: TangleView + ?Sized>(&mut self, view: &V) -> Option<TxRef> {
        let (root, newest) = (view.root().0, view.newest().0);
        let now = view.arrival(TxRef(newest));
        let live = |r: u32| r >= root && r <= newest && view.approvers(TxRef(r)).is_empty();
        let again = now.saturating_add(self.config.depth.max(1));
        while let Some(r) = self.stranded.pop_front() {
            if live(r) {
                self.handed.push_back((r, again));
                return Some(TxRef(r));
            }
        }
        while let Some(&(r, due)) = self.handed.front() {
            if !live(r) {
                self.handed.pop_front();
                continue;
            }
            if due > now {
                return None;
            }
            self.handed.pop_front();
            self.handed.push_back((r, again));
            return Some(TxRef(r));
        }
        None
    }

    /// Number of stranded tips queued, handed out or not (some may have been approved
    /// since; see [`Self::take_stranded`]).
    pub fn stranded_len(&self) -> usize {
        self.stranded.len() + self.handed.len()
    }

    /// One walk from the entry point to a tip (call [`Self::update`] first).
    pub fn walk<V: TangleView + ?Sized, R: Rng + ?Sized>(&self, view: &V, rng: &mut R) -> TxRef {
        self.walk_from(view, self.entry(view), rng)
    }
}

impl Default for WeightedWalk {
    fn default() -> Self {
        WeightedWalk::new(WalkConfig::default())
    }
}

impl TipSelector for WeightedWalk {
    fn on_solid<V: TangleView + ?Sized>(&mut self, view: &V, _tx: TxRef) {
        self.update(view);
    }

    fn on_confirmed<V: TangleView + ?Sized>(&mut self, view: &V, _index: MilestoneIndex) {
        self.update(view);
    }

    fn select<V: TangleView + ?Sized, R: Rng + ?Sized>(
        &mut self,
        view: &V,
        _now: u64,
        rng: &mut R,
    ) -> Result<[TxRef; 2], SelectError> {
        if view.is_empty() {
            return Err(SelectError::EmptyTangle);
        }
        self.update(view);
        let entry = self.entry(view);
        let first = self.walk_from(view, entry, rng);
        if let Some(s) = self.take_stranded(view) {
            if s != first {
                return Ok([first, s]);
            }
        }
        for _ in 0..=self.config.distinct_retries {
            let second = self.walk_from(view, entry, rng);
            if second != first {
                return Ok([first, second]);
            }
        }
        Ok(lone_tip_parents(view, first))
    }
}

//! [`RestrictedUrts`]: uniform selection among non-lazy tips, with an approver cap and tip
//! expiry, after IOTA's TIP-0003 and Hornet.

use dag_core::{MilestoneIndex, ReferencedMilestones, TangleView, TxRef};
use hashbrown::HashMap;
use rand::Rng;

use crate::error::SelectError;
use crate::selector::TipSelector;

/// How useful approving a tip is for confirmation, from the milestones its past cone
/// references (IOTA TIP-0003 "milestone based tip scoring").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TipScore {
    /// Attaches to a cone confirmed too long ago: never selected.
    Lazy,
    /// Attaches partly to an old cone: selected only by [`RestrictedUrts`] configured with
    /// `semi_lazy_fallback`, and only when no non-lazy tip is left.
    SemiLazy,
    /// A healthy tip.
    NonLazy,
}

/// Thresholds of the lazy / semi-lazy / non-lazy rules, in milestones.
///
/// With `cmi` the latest confirmed milestone index and `oldest` / `youngest` the indices the
/// tip's cone references ([`ReferencedMilestones`]), checked in this order (Hornet's
/// `TipScoreCalculator::TipScore`):
/// 1. `cmi - oldest > below_max_depth`: lazy (below max depth);
/// 2. `cmi - youngest > max_delta_youngest`: lazy;
/// 3. `cmi - oldest > max_delta_oldest`: semi-lazy;
/// 4. otherwise non-lazy.
///
/// Differences saturate at 0 (an index above `cmi` counts as fresh).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScoreRules {
    /// Largest allowed `cmi - oldest` before the tip is lazy (below max depth).
    pub below_max_depth: MilestoneIndex,
    /// Largest allowed `cmi - youngest` before the tip is lazy.
    pub max_delta_youngest: MilestoneIndex,
    /// Largest allowed `cmi - oldest` before the tip is semi-lazy.
    pub max_delta_oldest: MilestoneIndex,
}

impl Default for ScoreRules {
    /// Hornet's defaults, which are TIP-0003's recommended C1 = 8, C2 = 13, M = 15:
    /// `maxDeltaBlockYoungestConeRootIndexToCMI` = 8 and
    /// `maxDeltaBlockOldestConeRootIndexToCMI` = 13 (iotaledger/hornet, `pkg/tangle`
    /// parameters and configuration.md), `belowMaxDepth` = 15 (TIP-0003 "the current BMD for
    /// mainnet nodes is 15 milestones"; Hornet's tip-selection test suite uses the same).
    fn default() -> Self {
        ScoreRules {
            below_max_depth: 15,
            max_delta_youngest: 8,
            max_delta_oldest: 13,
        }
    }
}

impl ScoreRules {
    /// Scores a tip whose cone references `refs`, given the latest confirmed milestone `cmi`.
    pub fn score(&self, cmi: MilestoneIndex, refs: ReferencedMilestones) -> TipScore {
        let behind_oldest = cmi.saturating_sub(refs.oldest);
        let behind_youngest = cmi.saturating_sub(refs.youngest);
        if behind_oldest > self.below_max_depth || behind_youngest > self.max_delta_youngest {
            TipScore::Lazy
        } else if behind_oldest > self.max_delta_oldest {
            TipScore::SemiLazy
        } else {
            TipScore::NonLazy
        }
    }

    /// Scores `tx` in `view`.
    pub fn score_in<V: TangleView + ?Sized>(&self, view: &V, tx: TxRef) -> TipScore {
        self.score(view.confirmed_milestone(), view.referenced_milestones(tx))
    }
}

/// Configuration of [`RestrictedUrts`]. Times are in the unit of [`TangleView::arrival`]; the
/// defaults assume milliseconds (a node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestrictedUrtsConfig {
    /// Lazy / semi-lazy / non-lazy thresholds.
    pub rules: ScoreRules,
    /// A tip leaves the pool once it has this many direct approvers (TIP-0003 `X`, 2).
    /// Keeping approved tips selectable for a while widens the Tangle.
    pub max_approvers: usize,
    /// A tip leaves the pool this long after its first approver arrived (TIP-0003 `T`,
    /// 3 s). `None`: no limit.
    pub max_referenced_age: Option<u64>,
    /// A tip leaves the pool this long after its own arrival, approved or not. `None`: no
    /// limit. Default 60 s: long enough for any visibility delay, short enough that a node
    /// without milestones still stops approving stale tips.
    pub max_tip_age: Option<u64>,
    /// When no non-lazy tip is eligible, pick semi-lazy ones instead of failing. Hornet never
    /// selects semi-lazy tips for ordinary transactions, hence the default `false`.
    pub semi_lazy_fallback: bool,
}

impl Default for RestrictedUrtsConfig {
    fn default() -> Self {
        RestrictedUrtsConfig {
            rules: ScoreRules::default(),
            max_approvers: 2,
            max_referenced_age: Some(3_000),
            max_tip_age: Some(60_000),
            semi_lazy_fallback: false,
        }
    }
}

/// A set of refs with O(1) insert, remove and uniform pick.
#[derive(Debug, Clone, Default)]
struct Pool {
    items: Vec<TxRef>,
    pos: HashMap<TxRef, usize>,
}

impl Pool {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn insert(&mut self, tx: TxRef) {
        if let hashbrown::hash_map::Entry::Vacant(e) = self.pos.entry(tx) {
            e.insert(self.items.len());
            self.items.push(tx);
        }
    }

    fn remove(&mut self, tx: TxRef) -> bool {
        let Some(i) = self.pos.remove(&tx) else {
            return false;
        };
        self.items.swap_remove(i);
        if let Some(&moved) = self.items.get(i) {
            self.pos.insert(moved, i);
        }
        true
    }
}

/// Restricted uniform random tip selection.
///
/// Keeps its own pool of candidate tips, fed by [`TipSelector::on_solid`] (every new solid
/// transaction enters the pool unless lazy), and picks uniformly among the pool members that
/// pass every rule at the moment of the pick:
/// - score non-lazy (or semi-lazy with [`RestrictedUrtsConfig::semi_lazy_fallback`]),
///   computed from the view, so a missed `on_confirmed` can never let a lazy tip through;
/// - fewer than `max_approvers` direct approvers;
/// - not expired (`max_tip_age` since arrival, `max_referenced_age` since the first
///   approver).
///
/// A member that fails is dropped (or moved to the semi-lazy pool) and the pick is redrawn,
/// so the result is uniform over the eligible members. Each pick is O(1) amortised: the
/// pool is swept whenever it doubles, and [`TipSelector::on_confirmed`] rescores it.
///
/// When only one tip is eligible the second parent is that tip's trunk if the trunk is not
/// lazy; otherwise the selection fails with [`SelectError::NoEligibleTip`]. So no returned
/// parent ever scores lazy.
#[derive(Debug, Clone)]
pub struct RestrictedUrts {
    config: RestrictedUrtsConfig,
    non_lazy: Pool,
    semi_lazy: Pool,
    /// Every ref below this has been seen.
    next: u32,
    seeded: bool,
    sweep_at: usize,
}

/// Outcome of checking one pool member.
enum Check {
    Drop,
    Semi,
    Good,
}

impl RestrictedUrts {
    /// A selector with `config`.
    pub fn new(config: RestrictedUrtsConfig) -> Self {
        RestrictedUrts {
            config,
            non_lazy: Pool::default(),
            semi_lazy: Pool::default(),
            next: 0,
            seeded: false,
            sweep_at: 256,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RestrictedUrtsConfig {
        &self.config
    }

    /// Number of candidates in the pool (non-lazy, semi-lazy), including members not yet
    /// re-checked since they became ineligible.
    pub fn pool_len(&self) -> (usize, usize) {
        (self.non_lazy.len(), self.semi_lazy.len())
    }

    /// Brings the pool up to `view.newest()`. On first use the pool is seeded with the
    /// view's current tips instead of replaying the whole Tangle.
    fn catch_up<V: TangleView + ?Sized>(&mut self, view: &V) {
        if view.is_empty() {
            return;
        }
        let newest = view.newest().0;
        if !self.seeded || self.next > newest.saturating_add(1) {
            self.non_lazy = Pool::default();
            self.semi_lazy = Pool::default();
            for &t in view.tips() {
                self.admit(view, t);
            }
            self.next = newest + 1;
            self.seeded = true;
            return;
        }
        for r in self.next.max(view.root().0)..=newest {
            let tx = TxRef(r);
            self.admit(view, tx);
            let [trunk, branch] = view.parents(tx);
            for p in [trunk, branch] {
                if p != tx && view.approvers(p).len() >= self.config.max_approvers {
                    self.non_lazy.remove(p);
                    self.semi_lazy.remove(p);
                }
            }
        }
        self.next = newest + 1;
    }

    fn admit<V: TangleView + ?Sized>(&mut self, view: &V, tx: TxRef) {
        match self.config.rules.score_in(view, tx) {
            TipScore::NonLazy => self.non_lazy.insert(tx),
            TipScore::SemiLazy => self.semi_lazy.insert(tx),
            TipScore::Lazy => {}
        }
    }

    fn check<V: TangleView + ?Sized>(&self, view: &V, tx: TxRef, now: u64) -> Check {
        if tx < view.root() || tx > view.newest() {
            return Check::Drop;
        }
        let approvers = view.approvers(tx);
        if approvers.len() >= self.config.max_approvers {
            return Check::Drop;
        }
        if let Some(max) = self.config.max_tip_age {
            if now.saturating_sub(view.arrival(tx)) > max {
                return Check::Drop;
            }
        }
        if let (Some(max), Some(&first)) = (self.config.max_referenced_age, approvers.first()) {
            if now.saturating_sub(view.arrival(first)) > max {
                return Check::Drop;
            }
        }
        match self.config.rules.score_in(view, tx) {
            TipScore::Lazy => Check::Drop,
            TipScore::SemiLazy => Check::Semi,
            TipScore::NonLazy => Check::Good,
        }
    }

    /// Draws uniformly among eligible non-lazy members (then semi-lazy ones, if allowed),
    /// dropping or demoting members that fail their check.
    fn draw<V: TangleView + ?Sized, R: Rng + ?Sized>(
        &mut self,
        view: &V,
        now: u64,
        rng: &mut R,
    ) -> Option<TxRef> {
        while self.non_lazy.len() > 0 {
            let tx = self.non_lazy.items[rng.gen_range(0..self.non_lazy.len())];
            match self.check(view, tx, now) {
                Check::Good => return Some(tx),
                Check::Semi => {
                    self.non_lazy.remove(tx);
                    self.semi_lazy.insert(tx);
                }
                Check::Drop => {
                    self.non_lazy.remove(tx);
                }
            }
        }
        if !self.config.semi_lazy_fallback {
            return None;
        }
        while self.semi_lazy.len() > 0 {
            let tx = self.semi_lazy.items[rng.gen_range(0..self.semi_lazy.len())];
            match self.check(view, tx, now) {
                Check::Good | Check::Semi => return Some(tx),
                Check::Drop => {
                    self.semi_lazy.remove(tx);
                }
            }
        }
        None
    }

    /// Re-checks every member: drops ineligible ones and moves members between the
    /// non-lazy and semi-lazy pools.
    fn sweep<V: TangleView + ?Sized>(&mut self, view: &V, now: Option<u64>) {
        let members: Vec<TxRef> = self
            .non_lazy
            .items
            .iter()
            .chain(self.semi_lazy.items.iter())
            .copied()
            .collect();
        for tx in members {
            let verdict = match now {
                Some(now) => self.check(view, tx, now),
                None => match self.config.rules.score_in(view, tx) {
                    TipScore::Lazy => Check::Drop,
                    TipScore::SemiLazy => Check::Semi,
                    TipScore::NonLazy => Check::Good,
                },
            };
            self.non_lazy.remove(tx);
            self.semi_lazy.remove(tx);
            match verdict {
                Check::Good => self.non_lazy.insert(tx),
                Check::Semi => self.semi_lazy.insert(tx),
                Check::Drop => {}
            }
        }
        self.sweep_at = (2 * (self.non_lazy.len() + self.semi_lazy.len())).max(256);
    }
}

impl Default for RestrictedUrts {
    fn default() -> Self {
        RestrictedUrts::new(RestrictedUrtsConfig::default())
    }
}

impl TipSelector for RestrictedUrts {
    fn on_solid<V: TangleView + ?Sized>(&mut self, view: &V, _tx: TxRef) {
        self.catch_up(view);
    }

    fn on_confirmed<V: TangleView + ?Sized>(&mut self, view: &V, _index: MilestoneIndex) {
        self.catch_up(view);
        self.sweep(view, None);
    }

    fn select<V: TangleView + ?Sized, R: Rng + ?Sized>(
        &mut self,
        view: &V,
        now: u64,
        rng: &mut R,
    ) -> Result<[TxRef; 2], SelectError> {
        if view.is_empty() {
            return Err(SelectError::EmptyTangle);
        }
        self.catch_up(view);
        if self.non_lazy.len() + self.semi_lazy.len() > self.sweep_at {
            self.sweep(view, Some(now));
        }
        let none = SelectError::NoEligibleTip {
            tips: view.tips().len(),
        };
        let first = self.draw(view, now, rng).ok_or(none)?;
        // Take the first pick out while drawing the second, so the two differ.
        let in_non_lazy = self.non_lazy.remove(first);
        let in_semi_lazy = !in_non_lazy && self.semi_lazy.remove(first);
        let second = self.draw(view, now, rng);
        if in_non_lazy {
            self.non_lazy.insert(first);
        } else if in_semi_lazy {
            self.semi_lazy.insert(first);
        }
        match second {
            Some(second) => Ok([first, second]),
            None => {
                let trunk = view.parents(first)[0];
                if trunk == first {
                    Ok([first, first])
                } else if self.config.rules.score_in(view, trunk) != TipScore::Lazy {
                    Ok([first, trunk])
                } else {
                    Err(none)
                }
            }
        }
    }
}

//! The [`TipSelector`] trait shared by every algorithm, and [`AnySelector`] to choose one at
//! run time.

use dag_core::{MilestoneIndex, TangleView, TxRef};
use rand::Rng;

use crate::error::SelectError;
use crate::restricted::{RestrictedUrts, RestrictedUrtsConfig};
use crate::urts::Urts;
use crate::walk::{WalkConfig, WeightedWalk};

/// A tip-selection algorithm: picks the two parents of a new transaction.
///
/// # Order of calls
///
/// 1. After the Tangle gains solid transactions, call [`TipSelector::on_solid`] with the
///    newest one (once per transaction or once per batch: selectors catch up on every
///    transaction up to `view.newest()` that they have not seen yet).
/// 2. After a milestone is applied (the view's confirmation data changed), call
///    [`TipSelector::on_confirmed`].
/// 3. Call [`TipSelector::select`] as often as needed.
///
/// Steps 1 and 2 only move work out of the selection path: `select` itself catches up on
/// unseen transactions and re-checks every rule on the tip it returns, so a caller that
/// skips them still gets correct (if slower) selections. The view passed to all three must
/// be the same Tangle.
///
/// # Parents
///
/// `select` returns two distinct transactions. When only one tip is eligible, the second
/// parent is that tip's trunk (its past cone is inside the tip's, so the new transaction
/// references exactly the same cone and stays a valid, non-lazy attachment). Both parents
/// are the same only when the tip is the root, i.e. the Tangle holds nothing but genesis
/// (the one case where repeating a parent is valid).
pub trait TipSelector {
    /// The view now holds solid transactions up to `tx`; incremental selectors update their
    /// state. The default does nothing.
    fn on_solid<V: TangleView + ?Sized>(&mut self, view: &V, tx: TxRef) {
        let _ = (view, tx);
    }

    /// Milestone `index` was applied to the view (confirmation states and referenced
    /// milestones changed). The default does nothing.
    fn on_confirmed<V: TangleView + ?Sized>(&mut self, view: &V, index: MilestoneIndex) {
        let _ = (view, index);
    }

    /// Selects the two parents of a new transaction. `now` is the caller's current time, in
    /// the unit of [`TangleView::arrival`].
    fn select<V: TangleView + ?Sized, R: Rng + ?Sized>(
        &mut self,
        view: &V,
        now: u64,
        rng: &mut R,
    ) -> Result<[TxRef; 2], SelectError>;
}

/// The second parent when only `tip` is available: its trunk, or itself for the root.
pub(crate) fn lone_tip_parents<V: TangleView + ?Sized>(view: &V, tip: TxRef) -> [TxRef; 2] {
    let trunk = view.parents(tip)[0];
    if trunk == tip {
        [tip, tip]
    } else {
        [tip, trunk]
    }
}

/// Which selector: the one name the node's configuration, its protocol core and the
/// simulator's scenarios share (`urts`, `rurts`, `walk` in files and on command lines).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum SelectorKind {
    /// Uniform random tip selection ([`Urts`]).
    Urts,
    /// Uniform over non-lazy tips ([`RestrictedUrts`]); the node's default.
    #[default]
    Rurts,
    /// Weighted random walk ([`WeightedWalk`]).
    Walk,
}

impl SelectorKind {
    /// Every kind.
    pub const ALL: [SelectorKind; 3] =
        [SelectorKind::Urts, SelectorKind::Rurts, SelectorKind::Walk];

    /// The name used in files, on command lines and in reports.
    pub fn name(self) -> &'static str {
        match self {
            SelectorKind::Urts => "urts",
            SelectorKind::Rurts => "rurts",
            SelectorKind::Walk => "walk",
        }
    }
}

impl std::fmt::Display for SelectorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for SelectorKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        SelectorKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown tip selector {s:?} (urts, rurts or walk)"))
    }
}

/// One of the crate's selectors, chosen at run time (e.g. per simulator run).
#[derive(Debug, Clone)]
pub enum AnySelector {
    /// Uniform random tip selection.
    Urts(Urts),
    /// Restricted URTS (non-lazy tips, approver cap, expiry).
    Restricted(RestrictedUrts),
    /// Weighted random walk.
    Walk(WeightedWalk),
}

impl AnySelector {
    /// The selector of `kind`, with `restricted` used by [`SelectorKind::Rurts`] and `walk`
    /// by [`SelectorKind::Walk`] (the node passes the defaults, the simulator its
    /// scenario's settings).
    pub fn new(kind: SelectorKind, restricted: RestrictedUrtsConfig, walk: WalkConfig) -> Self {
        match kind {
            SelectorKind::Urts => AnySelector::Urts(Urts::new()),
            SelectorKind::Rurts => AnySelector::Restricted(RestrictedUrts::new(restricted)),
            SelectorKind::Walk => AnySelector::Walk(WeightedWalk::new(walk)),
        }
    }
}

impl TipSelector for AnySelector {
    fn on_solid<V: TangleView + ?Sized>(&mut self, view: &V, tx: TxRef) {
        match self {
            AnySelector::Urts(s) => s.on_solid(view, tx),
            AnySelector::Restricted(s) => s.on_solid(view, tx),
            AnySelector::Walk(s) => s.on_solid(view, tx),
        }
    }

    fn on_confirmed<V: TangleView + ?Sized>(&mut self, view: &V, index: MilestoneIndex) {
        match self {
            AnySelector::Urts(s) => s.on_confirmed(view, index),
            AnySelector::Restricted(s) => s.on_confirmed(view, index),
            AnySelector::Walk(s) => s.on_confirmed(view, index),
        }
    }

    fn select<V: TangleView + ?Sized, R: Rng + ?Sized>(
        &mut self,
        view: &V,
        now: u64,
        rng: &mut R,
    ) -> Result<[TxRef; 2], SelectError> {
        match self {
            AnySelector::Urts(s) => s.select(view, now, rng),
            AnySelector::Restricted(s) => s.select(view, now, rng),
            AnySelector::Walk(s) => s.select(view, now, rng),
        }
    }
}

//! [`Urts`]: uniform random tip selection.

use dag_core::{TangleView, TxRef};
use rand::Rng;

use crate::error::SelectError;
use crate::selector::{lone_tip_parents, TipSelector};

/// Uniform random tip selection: two distinct tips drawn uniformly from
/// [`TangleView::tips`], in O(1) (two random indices into the tip slice).
///
/// Fast and stateless, but blind: a parasite chain with more tips than the honest Tangle
/// gets more than half of the picks. Use [`crate::WeightedWalk`] where that matters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Urts;

impl Urts {
    /// A new selector.
    pub fn new() -> Self {
        Urts
    }
}

/// Two distinct uniform picks from `tips` (`tips.len() >= 2`).
pub(crate) fn pick_two<R: Rng + ?Sized>(tips: &[TxRef], rng: &mut R) -> [TxRef; 2] {
    let n = tips.len();
    let i = rng.gen_range(0..n);
    let mut j = rng.gen_range(0..n - 1);
    if j >= i {
        j += 1;
    }
    [tips[i], tips[j]]
}

impl TipSelector for Urts {
    fn select<V: TangleView + ?Sized, R: Rng + ?Sized>(
        &mut self,
        view: &V,
        _now: u64,
        rng: &mut R,
    ) -> Result<[TxRef; 2], SelectError> {
        let tips = view.tips();
        match tips.len() {
            0 if view.is_empty() => Err(SelectError::EmptyTangle),
            // A non-empty view always has a tip; this only guards a broken view.
            0 => Err(SelectError::NoEligibleTip { tips: 0 }),
            1 => Ok(lone_tip_parents(view, tips[0])),
            _ => Ok(pick_two(tips, rng)),
        }
    }
}

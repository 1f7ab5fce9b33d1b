//! [`ConfirmationConfidence`]: how many random walks end on a tip that approves a
//! transaction.

use dag_core::{TangleView, TxRef};
use rand::Rng;

use crate::error::{ConfidenceError, SelectError};
use crate::walk::WeightedWalk;

/// Estimates the confirmation confidence of a transaction: the share of `walks` weighted
/// random walks whose tip approves it (has it in its past cone, or is it).
///
/// A decentralised signal available before the next milestone: a transaction that most
/// walks' tips approve will almost surely be referenced by the next milestone.
///
/// Cost: one forward pass over the target's future cone (O(transactions newer than the
/// target), bounded by the walk window for recent targets), then O(1) per walk on top of
/// the walk itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfirmationConfidence {
    /// Number of walks per estimate.
    pub walks: usize,
}

impl Default for ConfirmationConfidence {
    /// 100 walks: the estimate has a standard error of at most 5 points.
    fn default() -> Self {
        ConfirmationConfidence { walks: 100 }
    }
}

impl ConfirmationConfidence {
    /// An estimator running `walks` walks.
    pub fn new(walks: usize) -> Self {
        ConfirmationConfidence { walks }
    }

    /// Marks the future cone of `target` (itself included), indexed by `ref - target`.
    fn future_cone<V: TangleView + ?Sized>(
        view: &V,
        target: TxRef,
    ) -> Result<Vec<bool>, ConfidenceError> {
        if view.is_empty() {
            return Err(SelectError::EmptyTangle.into());
        }
        if target < view.root() || target > view.newest() {
            return Err(ConfidenceError::UnknownTx(target));
        }
        let mut cone = vec![false; (view.newest().0 - target.0) as usize + 1];
        cone[0] = true;
        let mut stack = vec![target];
        while let Some(x) = stack.pop() {
            for &y in view.approvers(x) {
                if y > x && y <= view.newest() {
                    let i = (y.0 - target.0) as usize;
                    if !cone[i] {
                        cone[i] = true;
                        stack.push(y);
                    }
                }
            }
        }
        Ok(cone)
    }

    /// The share (0.0 to 1.0) of walks whose tip approves `target`. Brings `walker` up to
    /// date with `view` first.
    pub fn estimate<V: TangleView + ?Sized, R: Rng + ?Sized>(
        &self,
        walker: &mut WeightedWalk,
        view: &V,
        target: TxRef,
        rng: &mut R,
    ) -> Result<f64, ConfidenceError> {
        if self.walks == 0 {
            return Err(ConfidenceError::NoWalks);
        }
        let cone = Self::future_cone(view, target)?;
        walker.update(view);
        let entry = walker.entry(view);
        let hits = (0..self.walks)
            .filter(|_| approves(&cone, target, walker.walk_from(view, entry, rng)))
            .count();
        Ok(hits as f64 / self.walks as f64)
    }

    /// Like [`Self::estimate`], with the walks spread over the rayon pool. Each chunk of
    /// walks gets its own ChaCha8 generator seeded from `rng`, so results are reproducible
    /// for a given seed (but differ from [`Self::estimate`]'s).
    #[cfg(feature = "parallel")]
    pub fn estimate_par<V: TangleView + Sync + ?Sized, R: Rng + ?Sized>(
        &self,
        walker: &mut WeightedWalk,
        view: &V,
        target: TxRef,
        rng: &mut R,
    ) -> Result<f64, ConfidenceError> {
        use rand::SeedableRng;
        use rayon::prelude::*;
        const CHUNK: usize = 64;
        if self.walks == 0 {
            return Err(ConfidenceError::NoWalks);
        }
        let cone = Self::future_cone(view, target)?;
        walker.update(view);
        let walker: &WeightedWalk = walker;
        let entry = walker.entry(view);
        let chunks: Vec<(usize, u64)> = (0..self.walks)
            .step_by(CHUNK)
            .map(|start| ((self.walks - start).min(CHUNK), rng.gen()))
            .collect();
        let hits: usize = chunks
            .into_par_iter()
            .map(|(n, seed)| {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                (0..n)
                    .filter(|_| approves(&cone, target, walker.walk_from(view, entry, &mut rng)))
                    .count()
            })
            .sum();
        Ok(hits as f64 / self.walks as f64)
    }
}

fn approves(cone: &[bool], target: TxRef, tip: TxRef) -> bool {
    tip >= target
        && cone
            .get((tip.0 - target.0) as usize)
            .copied()
            .unwrap_or(false)
}

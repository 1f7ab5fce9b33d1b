//! Closed-form check of the base mode: the mean number of tips under URTS at high load is
//! `L0 = 2 lambda h` (Popov, "The Tangle", section 3), and the mean time from visibility
//! to the first approval is then `L0 / (2 lambda) = h`.
//!
//! # Tolerance
//! [`TOLERANCE`] is 5% relative error. Why that is the right size:
//! - statistical error is small: with `T / h` roughly independent windows of the tip
//!   count (T = simulated time), its standard error is about `sqrt(L0 / (T / h))`; for the
//!   default runs (`lambda h >= 25`, `T >= 2000 h`) that is below 0.5% of L0;
//! - the closed form itself is an approximation of order `1 / (lambda h)`: measured with
//!   `tangle-sim check` (200,000 transactions per rate), the mean tip count is about
//!   `2 lambda h + 0.4`, i.e. +10.6% at `lambda h = 2`, +3.6% at 5, +1.7% at 12.5, +0.4% at
//!   25, +0.2% at 100. So 5% holds from `lambda h >= 5` on, and the tests use
//!   `lambda h >= 12.5`, where the bias is at most a third of the tolerance. A wrong engine
//!   (e.g. parents chosen from the current instead of the delayed view, or a tip not
//!   removed when its approver appears) is off by a factor
//!   (L0 collapses to about 2 or grows without bound), far outside 5%.

use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use crate::scenario::{Scenario, ScenarioError, TipsConfig, TipsKind, WorkloadConfig};

/// Relative tolerance of the closed-form checks.
pub const TOLERANCE: f64 = 0.05;

/// One row of the check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckRow {
    /// Arrival rate.
    pub lambda: f64,
    /// Delay h.
    pub delay: f64,
    /// Closed form `2 lambda h`.
    pub expected_tips: f64,
    /// Simulated time-averaged tip count.
    pub mean_tips: f64,
    /// `|mean - expected| / expected`.
    pub tips_error: f64,
    /// Simulated mean time from visibility to first approval (expected: h).
    pub first_approval: f64,
    /// `|first_approval - h| / h`.
    pub first_approval_error: f64,
    /// Both errors within [`TOLERANCE`].
    pub ok: bool,
}

/// The base-mode scenario the check runs: URTS, empty payloads, one node, milestones on.
pub fn check_scenario(lambda: f64, delay: f64, transactions: u64, seed: u64) -> Scenario {
    Scenario {
        name: format!("check-lambda-{lambda}"),
        transactions,
        lambda,
        delay,
        seed,
        milestone_interval: 10.0 * delay,
        tips: TipsConfig {
            kind: TipsKind::Urts,
            ..TipsConfig::default()
        },
        workload: WorkloadConfig {
            empty: 1.0,
            ..WorkloadConfig::default()
        },
        ..Scenario::default()
    }
}

/// Runs the check at each `lambda` with delay `delay`.
pub fn closed_form_check(
    lambdas: &[f64],
    delay: f64,
    transactions: u64,
    seed: u64,
) -> Result<Vec<CheckRow>, ScenarioError> {
    lambdas
        .iter()
        .map(|&lambda| {
            let sc = check_scenario(lambda, delay, transactions, seed);
            let s = crate::run(&sc, &ProgressBar::hidden())?.summary;
            let expected = 2.0 * lambda * delay;
            let tips_error = (s.mean_tips - expected).abs() / expected;
            let first_approval_error = (s.mean_first_approval_delay - delay).abs() / delay;
            Ok(CheckRow {
                lambda,
                delay,
                expected_tips: expected,
                mean_tips: s.mean_tips,
                tips_error,
                first_approval: s.mean_first_approval_delay,
                first_approval_error,
                ok: tips_error <= TOLERANCE && first_approval_error <= TOLERANCE,
            })
        })
        .collect()
}

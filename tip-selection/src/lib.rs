//! # tip-selection
//!
//! Tip-selection algorithms for the tangle workspace: given a [`dag_core::TangleView`] of
//! solid transactions, pick the two parents of a new transaction. Pure algorithms: no I/O,
//! no clock (time comes in as `now`), no threads (rayon only behind the `parallel`
//! feature), randomness passed in as `&mut impl rand::Rng` so runs are reproducible.
//!
//! ## Key types
//! - [`TipSelector`]: the common trait (`on_solid`, `on_confirmed`, `select`; see its docs
//!   for the order of calls), and [`AnySelector`] to pick one at run time.
//! - [`Urts`]: uniform random tip selection, O(1) per pick.
//! - [`RestrictedUrts`]: URTS over non-lazy tips ([`ScoreRules`], [`TipScore`]), with an
//!   approver cap and tip expiry.
//! - [`WeightedWalk`]: the weighted random walk (MCMC, `alpha`), with cumulative weights
//!   maintained incrementally in a sliding window so a selection costs microseconds
//!   whatever the Tangle's size.
//! - [`ConfirmationConfidence`]: share of walks whose tip approves a transaction.
//!
//! ## Example
//! ```
//! use dag_core::{TangleView, TxRef};
//! use rand::SeedableRng;
//! use tip_selection::{TipSelector, Urts};
//! # fn parents<V: TangleView>(view: &V) -> [TxRef; 2] {
//! let mut rng = rand::rngs::StdRng::seed_from_u64(7);
//! let mut urts = Urts::new();
//! urts.select(view, 0, &mut rng).expect("a Tangle always has a tip")
//! # }
//! ```
//!
//! ## Layout
//! `selector` (trait), `urts`, `restricted`, `walk`, `confidence`, `error`.

mod confidence;
mod error;
mod restricted;
mod selector;
mod urts;
mod walk;

pub use confidence::ConfirmationConfidence;
pub use error::{ConfidenceError, SelectError};
pub use restricted::{RestrictedUrts, RestrictedUrtsConfig, ScoreRules, TipScore};
pub use selector::{AnySelector, SelectorKind, TipSelector};
pub use urts::Urts;
pub use walk::{EntryPoint, WalkConfig, WeightedWalk};

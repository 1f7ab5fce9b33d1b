//! # simulator
//!
//! A discrete-event simulator of the Tangle, built on the real library code: every node holds
//! a [`dag_core::Tangle`], selects tips with a [`tip_selection::AnySelector`] and confirms
//! milestones with the white-flag [`dag_core::Ledger`]. It answers "which tip selection,
//! which milestone interval, which parameters, for my fleet of devices?" before deploying,
//! and runs millions of transactions in seconds, deterministically (same scenario and seed,
//! byte-identical results).
//!
//! ## Key types
//! - [`Scenario`]: a run, from TOML (`scenarios/*.toml`) plus overrides.
//! - [`run`]: runs a scenario and returns a [`RunOutput`] ([`Summary`], time series, latency
//!   histogram); [`write_run_dir`] writes it to disk.
//! - [`run_sweep`]: a parameter grid in parallel (rayon).
//! - [`closed_form_check`]: base mode against `L0 = 2 lambda h`.
//!
//! ## Model
//! Poisson arrivals at rate `lambda`; a transaction issued at `t` is visible (inserted into
//! the issuing node's Tangle) at `t + h`, and at `t + h + latency(i, j)` on node `j`; its
//! parents are chosen from the Tangle as the issuing node sees it at `t`. A coordinator on
//! node 0 issues a milestone every `milestone_interval`. Workloads attach real signed
//! payloads (payments, meters, EV channels, anchors); attacks add parasite chains, lazy
//! tips, spam floods or double spends. See [`engine`] for the details and simplifications.
//!
//! ## Node mode
//! `tangle-sim run --mode node --nodes K [--txs N] [--lambda L] [--seed S] [--delay D]
//! [--milestone-interval M] [--tips T] [--devices N] [--batch-ms B]` runs the node's real protocol core
//! instead of the model ([`node_mode`], [`run_node`]): `K` [`node_proto::Protocol`] +
//! peering instances in a [`node_proto::harness::Cluster`] on a virtual clock, with real
//! signatures and proof of work, tip selection, the issuer's tip sweep, issuer chaining,
//! reattachment and milestones, fed with `N` payments at `L` per virtual second from
//! device accounts funded at genesis (each device pays consecutive sequence numbers through
//! its home node). Defaults: 4 nodes, 10,000 payments, 1,000 per second, 1,000 devices,
//! `D` = 0.005 s one-way frame delay (plus up to as much jitter), `M` = 0.5 s, `T` = rurts,
//! `B` = 1 (each node's arrivals of a window of `B` virtual ms are submitted in one call at
//! its end). The devices sign on a thread of their own, ahead of the simulation.
//! Base mode stays the default (`--mode base`). Node mode takes its settings from flags
//! only (`--scenario`, `--parents`, `--alpha` and `--depth` are refused; `--sign` changes
//! nothing: signatures are always real) and writes `node.toml` instead of `scenario.toml`.
//!
//! The run directory has the same files and `summary.json` the same fields as base mode.
//! In node mode the time unit is one virtual second, and:
//! - `transactions`: payments issued; `total_transactions`: every transaction node 0 holds
//!   (payment carriers and their reattachments, the sweep's merge transactions,
//!   milestones); `delay`: the one-way frame delay; `parents` is 2; `alpha` is the walk's
//!   default (used only with `--tips walk`).
//! - `confirmation_latency` (seconds) and `node.confirmation_latency_ms`: from the
//!   submission to the home node's event that applied the payment.
//! - `mean_tips`: node 0's tip count at each arrival after the warm-up; `approvers_histogram`,
//!   `mean_first_approval_delay`, `unapproved_rate`: the payments' first carriers as node 0
//!   sees them at the end (approval delay from its arrival at node 0 to its first approver's);
//!   `peak_tangle_len`: node 0's Tangle; `never_solid`: transactions still waiting for
//!   parents on any node at the end.
//! - `settled_transactions`: every payment (the run drains); `orphan_rate`: the share not
//!   applied on its home node by the end.
//! - `ledger`: node 0's milestones, applied payloads and conflicting carriers by reason;
//!   `supply_conserved` on every node; `nodes_consistent`: every node ended at the same
//!   milestone with the same digest, and stored the same digest for every milestone.
//! - `workload.payments`; `workload.signatures_verified`: payload-carrying transactions that
//!   became solid, all nodes together (each was signature-checked once there);
//!   `workload.signature_failures`: peer transactions that failed validation. The other
//!   workload counters are 0 (node mode issues plain payments only).
//! - Not measured, left at 0 (listed in `node.not_measured`): `closed_form_tips` (the
//!   sweep makes the URTS closed form moot), `ledger.late_confirmations`,
//!   `selection_fallbacks`; `attack` is absent.
//! - `wall_seconds`; `sim_tx_per_second`: payments issued per wall-clock second.
//! - `node` (node mode only): `digests_equal` (must be true), `histories_equal`, `drained`,
//!   accepted/refused/confirmed/confirmed-everywhere counts, per-node milestone, reattachments,
//!   peer validations, frames, and `wall` (seconds by phase; not deterministic, like
//!   `wall_seconds`). See [`NodeReport`].
//!
//! The same settings and seed give the same summary, wall-clock fields aside
//! ([`Summary::deterministic_json`]).
//!
//! ## Layout
//! `scenario` (config), `engine` (event loop, nodes, metrics), `workload` (devices and
//! payloads), `research` (k != 2), `report` (summary, CSV, SVG), `sweep`, `check`,
//! `node_mode` (the real node core on the harness), `chaos` (seeded fault runs of the real
//! node core with invariants: `tangle-sim chaos`).

pub mod chaos;
pub mod check;
pub mod engine;
pub mod node_mode;
pub mod report;
pub mod research;
pub mod scenario;
pub mod sweep;
mod workload;

use indicatif::ProgressBar;

pub use check::{closed_form_check, CheckRow, TOLERANCE};
pub use engine::Simulation;
pub use node_mode::{
    run_node, write_node_run_dir, NodeConfig, NodeModeError, NodeReport, NodeWall,
};
pub use report::{
    write_run_dir, AttackReport, LatencySummary, LedgerReport, ReportError, RunOutput, SamplePoint,
    Summary, Throughput,
};
pub use scenario::{
    AttackConfig, LinkLatency, NetworkConfig, Scenario, ScenarioError, TipsConfig, TipsKind,
    WorkloadConfig,
};
pub use sweep::{apply_override, run_grid, run_sweep, Axis, SweepError};
pub use workload::WorkloadReport;

/// Runs `scenario`: the protocol engine for `parents == 2`, research mode otherwise.
/// `progress` counts honest arrivals (pass `ProgressBar::hidden()` for none).
pub fn run(scenario: &Scenario, progress: &ProgressBar) -> Result<RunOutput, ScenarioError> {
    if scenario.parents == 2 {
        Ok(Simulation::new(scenario.clone())?.run(progress))
    } else {
        research::run_research(scenario, progress)
    }
}

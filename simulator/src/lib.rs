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
//! ## Layout
//! `scenario` (config), `engine` (event loop, nodes, metrics), `workload` (devices and
//! payloads), `research` (k != 2), `report` (summary, CSV, SVG), `sweep`, `check`.

pub mod check;
pub mod engine;
pub mod report;
pub mod research;
pub mod scenario;
pub mod sweep;
mod workload;

use indicatif::ProgressBar;

pub use check::{closed_form_check, CheckRow, TOLERANCE};
pub use engine::Simulation;
pub use report::{
    write_run_dir, AttackReport, LatencySummary, LedgerReport, ReportError, RunOutput, SamplePoint,
    Summary, Throughput,
};
pub use scenario::{
    AttackConfig, LinkLatency, NetworkConfig, Scenario, ScenarioError, TipsConfig, TipsKind,
    WorkloadConfig,
};
pub use sweep::{apply_override, run_sweep, Axis, SweepError};
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

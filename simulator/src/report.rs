//! What a run produces: [`Summary`] (`summary.json`), the time series, the latency
//! distribution, and the files of a run directory (CSV, JSON, TOML, SVG plots).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::node_mode::NodeReport;
use crate::scenario::Scenario;
use crate::workload::WorkloadReport;

/// Why writing a run directory failed.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A plot could not be drawn.
    #[error("cannot draw {path}: {message}")]
    Plot {
        /// The file.
        path: String,
        /// What plotters said.
        message: String,
    },
}

/// Confirmation latency percentiles, in time units, from issue to confirmation by the
/// observer node (node 0), over honest transactions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Mean.
    pub mean: f64,
    /// Number of confirmed honest transactions measured.
    pub count: u64,
}

impl LatencySummary {
    /// Percentiles of `values` (reorders them).
    pub fn from_values(values: &mut [f32]) -> LatencySummary {
        if values.is_empty() {
            return LatencySummary::default();
        }
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len() as f64;
        let mut pick = |q: f64| {
            let k = ((values.len() - 1) as f64 * q).round() as usize;
            let (_, v, _) = values.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
            f64::from(*v)
        };
        LatencySummary {
            p50: pick(0.5),
            p90: pick(0.9),
            p99: pick(0.99),
            mean,
            count: values.len() as u64,
        }
    }
}

/// Issue and confirmation rates, per time unit of simulated time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Honest transactions issued per time unit.
    pub issued_per_time: f64,
    /// Honest transactions confirmed (by node 0) per time unit.
    pub confirmed_per_time: f64,
    /// Confirmed share of honest transactions issued.
    pub confirmed_share: f64,
}

/// Ledger outcomes over the whole run (observer node).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LedgerReport {
    /// Milestones applied by node 0.
    pub milestones: u64,
    /// Payloads applied.
    pub applied: u64,
    /// Conflicting payloads, by reason.
    pub conflicting: BTreeMap<String, u64>,
    /// Confirmed transactions whose payload had been dropped by the simulator already
    /// (confirmed after they settled; excluded from the ledger).
    pub late_confirmations: u64,
    /// Total supply.
    pub supply: u64,
    /// Sum of balances plus open channel deposits equals the supply, on every node.
    pub supply_conserved: bool,
    /// Every node computed the same ledger digest at every milestone they all applied.
    pub nodes_consistent: bool,
    /// Node 0's final ledger digest (hex).
    pub digest: String,
}

/// Outcome of the attack of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AttackReport {
    /// Attack name.
    pub kind: String,
    /// How often it succeeded, in [0, 1]: parasite, the share of honest selections in the
    /// watch window that picked a parasite transaction; lazy tips, the share of lazy
    /// transactions confirmed; spam flood, the orphan rate of honest transactions issued
    /// during the flood; double spend, the share of attempts whose second payment applied
    /// (so the merchant's payment did not).
    pub success_rate: f64,
    /// Whether it succeeded at all (`success_rate > 0`).
    pub succeeded: bool,
    /// Attack-specific figures.
    pub metrics: BTreeMap<String, f64>,
}

/// The `summary.json` of a run. See the crate docs for the meaning of each field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Scenario name.
    pub name: String,
    /// Honest transactions issued.
    pub transactions: u64,
    /// Arrival rate.
    pub lambda: f64,
    /// Visibility delay h.
    pub delay: f64,
    /// Parents per transaction.
    pub parents: usize,
    /// Tip selection (`urts`, `rurts`, `walk`).
    pub tips: String,
    /// Walk alpha (reported for every selector).
    pub alpha: f64,
    /// Seed.
    pub seed: u64,
    /// Nodes.
    pub nodes: usize,
    /// Milestone interval (0: none).
    pub milestone_interval: f64,
    /// Simulated time at the end of the run.
    pub sim_time: f64,
    /// Every transaction issued: honest, milestones, attack.
    pub total_transactions: u64,
    /// Time-averaged number of tips seen by a newcomer (sampled at each honest arrival
    /// after the warm-up; Poisson arrivals see time averages).
    pub mean_tips: f64,
    /// The closed form for URTS at high load: `k/(k-1) * lambda * h` (`2 lambda h` for k = 2).
    pub closed_form_tips: f64,
    /// Mean time from visibility (issue + h) to first approval (issue of the first
    /// approver), over settled honest transactions that were approved.
    pub mean_first_approval_delay: f64,
    /// Index n: settled honest transactions with n direct approvers.
    pub approvers_histogram: Vec<u64>,
    /// Honest transactions old enough to have settled.
    pub settled_transactions: u64,
    /// Share of settled honest transactions never confirmed (never approved when
    /// milestones are off).
    pub orphan_rate: f64,
    /// Share of settled honest transactions never approved.
    pub unapproved_rate: f64,
    /// Confirmation latency.
    pub confirmation_latency: LatencySummary,
    /// Rates.
    pub throughput: Throughput,
    /// Ledger outcomes.
    pub ledger: LedgerReport,
    /// Workload counters.
    pub workload: WorkloadReport,
    /// Selections where the configured selector found no eligible tip and URTS was used.
    pub selection_fallbacks: u64,
    /// Transactions that never became solid on some node (e.g. approving pruned ones).
    pub never_solid: u64,
    /// Largest Tangle held by node 0 (transactions, after pruning).
    pub peak_tangle_len: u64,
    /// Attack outcome, if the scenario has an attack.
    pub attack: Option<AttackReport>,
    /// Wall-clock seconds of the run (not deterministic).
    pub wall_seconds: f64,
    /// Transactions simulated per wall-clock second (not deterministic); in node mode,
    /// payments issued per wall-clock second.
    pub sim_tx_per_second: f64,
    /// Node mode only (absent in base mode): the real-node figures, see
    /// [`crate::node_mode`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeReport>,
}

impl Summary {
    /// The summary as JSON with the wall-clock fields removed: what is byte-identical
    /// between two runs with the same scenario and seed.
    pub fn deterministic_json(&self) -> String {
        let mut s = self.clone();
        s.wall_seconds = 0.0;
        s.sim_tx_per_second = 0.0;
        if let Some(n) = &mut s.node {
            n.wall = Default::default();
        }
        serde_json::to_string_pretty(&s).unwrap_or_default()
    }
}

/// One row of the time series (node 0's view).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SamplePoint {
    /// Simulated time.
    pub time: f64,
    /// Tips.
    pub tips: u64,
    /// Unconfirmed transactions held.
    pub unconfirmed: u64,
    /// Transactions held (after pruning).
    pub held: u64,
    /// Latest confirmed milestone.
    pub milestone: u32,
    /// Honest transactions issued so far.
    pub issued: u64,
    /// Honest transactions confirmed so far.
    pub confirmed: u64,
}

/// Everything a run produced.
#[derive(Clone, Debug, Default)]
pub struct RunOutput {
    /// The summary.
    pub summary: Summary,
    /// Time series.
    pub series: Vec<SamplePoint>,
    /// Latency histogram: (bin upper edge in time units, count).
    pub latency_histogram: Vec<(f64, u64)>,
}

/// Histogram of `values` in `bins` equal bins up to the maximum.
pub fn histogram(values: &[f32], bins: usize) -> Vec<(f64, u64)> {
    let max = values.iter().copied().fold(0f32, f32::max);
    if values.is_empty() || bins == 0 || max <= 0.0 {
        return Vec::new();
    }
    let width = f64::from(max) / bins as f64;
    let mut counts = vec![0u64; bins];
    for &v in values {
        let i = ((f64::from(v) / width) as usize).min(bins - 1);
        counts[i] += 1;
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, c)| ((i + 1) as f64 * width, c))
        .collect()
}

fn write(dir: &Path, name: &str, contents: &str) -> Result<(), ReportError> {
    let path = dir.join(name);
    std::fs::write(&path, contents).map_err(|source| ReportError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Writes a run directory: `scenario.toml`, `summary.json`, `timeseries.csv`,
/// `latency.csv`, `tips.svg`, `latency.svg`.
pub fn write_run_dir(dir: &Path, scenario: &Scenario, out: &RunOutput) -> Result<(), ReportError> {
    write_run_files(dir, "scenario.toml", &scenario.to_toml(), out)
}

/// Writes a run directory whose settings are `config` (TOML text) in the file
/// `config_name`, then `summary.json`, `timeseries.csv`, `latency.csv`, `tips.svg`,
/// `latency.svg`.
pub fn write_run_files(
    dir: &Path,
    config_name: &str,
    config: &str,
    out: &RunOutput,
) -> Result<(), ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    write(dir, config_name, config)?;
    let json = serde_json::to_string_pretty(&out.summary).unwrap_or_default();
    write(dir, "summary.json", &(json + "\n"))?;
    let mut csv = String::from("time,tips,unconfirmed,held,milestone,issued,confirmed\n");
    for p in &out.series {
        let _ = writeln!(
            csv,
            "{:.6},{},{},{},{},{},{}",
            p.time, p.tips, p.unconfirmed, p.held, p.milestone, p.issued, p.confirmed
        );
    }
    write(dir, "timeseries.csv", &csv)?;
    let mut csv = String::from("latency_upper,count,cdf\n");
    let total: u64 = out.latency_histogram.iter().map(|x| x.1).sum();
    let mut acc = 0;
    for &(edge, c) in &out.latency_histogram {
        acc += c;
        let cdf = if total > 0 {
            acc as f64 / total as f64
        } else {
            0.0
        };
        let _ = writeln!(csv, "{edge:.6},{c},{cdf:.6}");
    }
    write(dir, "latency.csv", &csv)?;
    let tips: Vec<(f64, f64)> = out.series.iter().map(|p| (p.time, p.tips as f64)).collect();
    let title = format!(
        "tips over time ({}, lambda {}, h {})",
        out.summary.tips, out.summary.lambda, out.summary.delay
    );
    line_plot(
        &dir.join("tips.svg"),
        &title,
        "time",
        "tips",
        &[("tips", tips)],
        Some(out.summary.closed_form_tips),
    )?;
    let total = total.max(1) as f64;
    let mut acc = 0u64;
    let cdf: Vec<(f64, f64)> = out
        .latency_histogram
        .iter()
        .map(|&(e, c)| {
            acc += c;
            (e, acc as f64 / total)
        })
        .collect();
    line_plot(
        &dir.join("latency.svg"),
        "confirmation latency (CDF)",
        "latency",
        "share confirmed",
        &[("cdf", cdf)],
        None,
    )?;
    Ok(())
}

/// Draws line series into an SVG file (no fonts needed: the SVG backend emits text
/// elements). `reference` draws a horizontal dashed line (e.g. the closed form).
pub fn line_plot(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
    reference: Option<f64>,
) -> Result<(), ReportError> {
    let err = |e: String| ReportError::Plot {
        path: path.display().to_string(),
        message: e,
    };
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, reference.unwrap_or(0.0));
    for (_, s) in series {
        for &(x, y) in s {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y1 = y1.max(y);
        }
    }
    if x0 >= x1 {
        x0 = 0.0;
        x1 = x1.max(1.0);
    }
    let y1 = if y1 <= 0.0 { 1.0 } else { y1 * 1.05 };
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, 0.0..y1)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (i, (name, s)) in series.iter().enumerate() {
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(s.iter().copied(), color.stroke_width(2)))
            .map_err(|e| err(e.to_string()))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    if let Some(r) = reference {
        chart
            .draw_series(DashedLineSeries::new(
                vec![(x0, r), (x1, r)],
                8,
                4,
                BLACK.stroke_width(1),
            ))
            .map_err(|e| err(e.to_string()))?
            .label("closed form")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

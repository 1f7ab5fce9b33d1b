//! Parameter sweeps: the Cartesian product of a few axes, run in parallel with rayon, with
//! one comparison table (CSV and Markdown) and plot.

use std::fmt::Write as _;
use std::path::Path;

use indicatif::ProgressBar;
use rayon::prelude::*;

use crate::report::{line_plot, write_run_dir, ReportError, Summary};
use crate::scenario::{Scenario, ScenarioError};

/// One axis of a sweep: a scenario key (see [`apply_override`]) and its values.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    /// Key, e.g. `lambda` or `tips`.
    pub key: String,
    /// Values, as on the command line.
    pub values: Vec<String>,
}

/// Why a sweep failed.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// A grid point is not a valid scenario.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// Writing the results failed.
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// Sets `key` of `sc` to `value`. Keys: `txs`/`transactions`, `lambda`, `delay`,
/// `parents`, `tips`, `alpha`, `depth`, `seed`, `milestone_interval`, `nodes`, `latency`.
pub fn apply_override(sc: &mut Scenario, key: &str, value: &str) -> Result<(), ScenarioError> {
    let bad = || ScenarioError::Invalid(format!("bad value {value:?} for {key}"));
    let f = || value.parse::<f64>().map_err(|_| bad());
    let u = || value.parse::<u64>().map_err(|_| bad());
    match key {
        "txs" | "transactions" => sc.transactions = u()?,
        "lambda" => sc.lambda = f()?,
        "delay" => sc.delay = f()?,
        "parents" => sc.parents = u()? as usize,
        "tips" => {
            sc.tips.kind = value.parse().map_err(|_| bad())?;
        }
        "alpha" => sc.tips.alpha = f()?,
        "depth" => sc.tips.depth = f()?,
        "seed" => sc.seed = u()?,
        "milestone_interval" => sc.milestone_interval = f()?,
        "nodes" => sc.network.nodes = u()? as usize,
        "latency" => sc.network.latency = f()?,
        _ => return Err(ScenarioError::Invalid(format!("unknown sweep key {key:?}"))),
    }
    Ok(())
}

/// A grid point: the scenario and its `(key, value)` labels.
pub type GridPoint = (Scenario, Vec<(String, String)>);

/// Every grid point of `axes` applied to `base`.
pub fn grid(base: &Scenario, axes: &[Axis]) -> Result<Vec<GridPoint>, ScenarioError> {
    let mut points: Vec<GridPoint> = vec![(base.clone(), Vec::new())];
    for axis in axes {
        let mut next = Vec::new();
        for (sc, labels) in &points {
            for v in &axis.values {
                let mut s = sc.clone();
                apply_override(&mut s, &axis.key, v)?;
                let mut l = labels.clone();
                l.push((axis.key.clone(), v.clone()));
                next.push((s, l));
            }
        }
        points = next;
    }
    for (sc, _) in &points {
        sc.validate()?;
    }
    Ok(points)
}

/// Runs every grid point in parallel (rayon's pool: set `RAYON_NUM_THREADS` to limit it),
/// writes each run to `out/run-NN/`, and `sweep.csv`, `sweep.md`, `sweep.svg` to `out`.
pub fn run_sweep(
    base: &Scenario,
    axes: &[Axis],
    out: &Path,
    progress: &ProgressBar,
) -> Result<Vec<Summary>, SweepError> {
    let points = grid(base, axes)?;
    progress.set_length(points.len() as u64);
    let results: Vec<Result<Summary, SweepError>> = points
        .par_iter()
        .enumerate()
        .map(|(i, (sc, _))| {
            let output = crate::run(sc, &ProgressBar::hidden())?;
            write_run_dir(&out.join(format!("run-{i:02}")), sc, &output)?;
            progress.inc(1);
            Ok(output.summary)
        })
        .collect();
    let summaries = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    write_table(out, &points, &summaries)?;
    Ok(summaries)
}

/// A grid point's `(key, value)` labels and what its run produced.
pub type GridRun = (Vec<(String, String)>, crate::RunOutput);

/// Runs every grid point of `axes` applied to `base` in parallel (rayon's current pool) and
/// returns each point's labels and output, in grid order, writing nothing: what a caller that
/// keeps the results in memory wants (the Python binding's `tangle.sim.sweep`).
pub fn run_grid(base: &Scenario, axes: &[Axis]) -> Result<Vec<GridRun>, ScenarioError> {
    let points = grid(base, axes)?;
    let outputs: Vec<Result<crate::RunOutput, ScenarioError>> = points
        .par_iter()
        .map(|(sc, _)| crate::run(sc, &ProgressBar::hidden()))
        .collect();
    points
        .into_iter()
        .zip(outputs)
        .map(|((_, labels), out)| Ok((labels, out?)))
        .collect()
}

fn write_table(out: &Path, points: &[GridPoint], summaries: &[Summary]) -> Result<(), ReportError> {
    let keys: Vec<String> = points
        .first()
        .map(|p| p.1.iter().map(|(k, _)| k.clone()).collect())
        .unwrap_or_default();
    let cols = [
        "transactions",
        "mean_tips",
        "closed_form_tips",
        "first_approval",
        "p50",
        "p90",
        "p99",
        "orphan_rate",
        "wall_seconds",
        "sim_tx_per_second",
    ];
    let mut csv = String::from("run");
    let mut md = String::from("| run");
    for k in keys.iter().map(String::as_str).chain(cols) {
        let _ = write!(csv, ",{k}");
        let _ = write!(md, " | {k}");
    }
    csv.push('\n');
    md.push_str(" |\n|");
    for _ in 0..=keys.len() + cols.len() {
        md.push_str("---|");
    }
    md.push('\n');
    for (i, ((_, labels), s)) in points.iter().zip(summaries).enumerate() {
        let vals = [
            s.transactions.to_string(),
            format!("{:.3}", s.mean_tips),
            format!("{:.3}", s.closed_form_tips),
            format!("{:.4}", s.mean_first_approval_delay),
            format!("{:.4}", s.confirmation_latency.p50),
            format!("{:.4}", s.confirmation_latency.p90),
            format!("{:.4}", s.confirmation_latency.p99),
            format!("{:.5}", s.orphan_rate),
            format!("{:.3}", s.wall_seconds),
            format!("{:.0}", s.sim_tx_per_second),
        ];
        let _ = write!(csv, "{i:02}");
        let _ = write!(md, "| {i:02}");
        for v in labels.iter().map(|(_, v)| v.clone()).chain(vals) {
            let _ = write!(csv, ",{v}");
            let _ = write!(md, " | {v}");
        }
        csv.push('\n');
        md.push_str(" |\n");
    }
    let io = |path: &Path, text: &str| {
        std::fs::write(path, text).map_err(|source| ReportError::Io {
            path: path.display().to_string(),
            source,
        })
    };
    io(&out.join("sweep.csv"), &csv)?;
    io(&out.join("sweep.md"), &md)?;
    // Plot: x = the first axis (numeric if it parses, else the point's position), one line
    // per combination of the other axes, y = confirmation latency p50 and mean tips.
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for (i, ((_, labels), s)) in points.iter().zip(summaries).enumerate() {
        let x = labels
            .first()
            .and_then(|(_, v)| v.parse::<f64>().ok())
            .unwrap_or(i as f64);
        let rest: Vec<String> = labels
            .iter()
            .skip(1)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let name = if rest.is_empty() {
            "all".to_string()
        } else {
            rest.join(" ")
        };
        match series.iter_mut().find(|(n, _)| *n == name) {
            Some((_, pts)) => pts.push((x, s.mean_tips)),
            None => series.push((name, vec![(x, s.mean_tips)])),
        }
    }
    let refs: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(n, p)| (n.as_str(), p.clone()))
        .collect();
    let x_label = keys.first().map(String::as_str).unwrap_or("run");
    line_plot(
        &out.join("sweep.svg"),
        "mean tips per configuration",
        x_label,
        "mean tips",
        &refs,
        None,
    )
}

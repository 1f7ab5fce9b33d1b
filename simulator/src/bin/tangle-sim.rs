//! `tangle-sim`: command-line front end of the simulator (`run`, `sweep`, `check`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use simulator::{apply_override, Axis, Scenario};

#[derive(Parser)]
#[command(
    name = "tangle-sim",
    version,
    about = "Discrete-event Tangle simulator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario and write a run directory.
    Run(RunArgs),
    /// Run a parameter grid in parallel and write a comparison table and plot.
    Sweep(SweepArgs),
    /// Compare the base mode with the closed form L0 = 2 lambda h (URTS, high load).
    Check(CheckArgs),
}

/// Scenario flags shared by `run` and `sweep`; they override the scenario file.
#[derive(Args)]
struct ScenarioArgs {
    /// Scenario TOML file (defaults apply without one).
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Honest transactions.
    #[arg(long)]
    txs: Option<u64>,
    /// Arrival rate lambda.
    #[arg(long)]
    lambda: Option<f64>,
    /// Visibility delay h.
    #[arg(long)]
    delay: Option<f64>,
    /// Parents per transaction (2 = protocol; others run the research mode).
    #[arg(long)]
    parents: Option<usize>,
    /// Tip selection: urts, rurts or walk.
    #[arg(long)]
    tips: Option<String>,
    /// Weighted-walk alpha.
    #[arg(long)]
    alpha: Option<f64>,
    /// Weighted-walk depth (time units).
    #[arg(long)]
    depth: Option<f64>,
    /// RNG seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Milestone interval (0: none).
    #[arg(long)]
    milestone_interval: Option<f64>,
    /// Number of nodes.
    #[arg(long)]
    nodes: Option<usize>,
    /// Create and verify real Ed25519 signatures.
    #[arg(long)]
    sign: bool,
    /// Output directory.
    #[arg(long, default_value = "sim-out")]
    out: PathBuf,
    /// Never show a progress bar.
    #[arg(long)]
    no_progress: bool,
}

impl ScenarioArgs {
    fn scenario(&self) -> Result<Scenario> {
        let mut sc = match &self.scenario {
            Some(p) => Scenario::load(p)?,
            None => Scenario::default(),
        };
        let pairs: [(&str, Option<String>); 10] = [
            ("txs", self.txs.map(|v| v.to_string())),
            ("lambda", self.lambda.map(|v| v.to_string())),
            ("delay", self.delay.map(|v| v.to_string())),
            ("parents", self.parents.map(|v| v.to_string())),
            ("tips", self.tips.clone()),
            ("alpha", self.alpha.map(|v| v.to_string())),
            ("depth", self.depth.map(|v| v.to_string())),
            ("seed", self.seed.map(|v| v.to_string())),
            (
                "milestone_interval",
                self.milestone_interval.map(|v| v.to_string()),
            ),
            ("nodes", self.nodes.map(|v| v.to_string())),
        ];
        for (k, v) in pairs {
            if let Some(v) = v {
                apply_override(&mut sc, k, &v)?;
            }
        }
        if self.sign {
            sc.sign = true;
        }
        sc.validate()?;
        Ok(sc)
    }

    fn progress(&self, len: u64, template: &str) -> ProgressBar {
        if self.no_progress || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::new(len);
        if let Ok(style) = ProgressStyle::with_template(template) {
            pb.set_style(style);
        }
        pb
    }
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    common: ScenarioArgs,
}

#[derive(Args)]
struct SweepArgs {
    #[command(flatten)]
    common: ScenarioArgs,
    /// An axis, KEY=V1,V2,... (repeat for a grid), e.g. --grid lambda=10,50 --grid tips=urts,walk.
    #[arg(long = "grid", required = true)]
    grid: Vec<String>,
    /// Parallel runs (default: all cores).
    #[arg(long)]
    jobs: Option<usize>,
}

#[derive(Args)]
struct CheckArgs {
    /// Arrival rates to check.
    #[arg(long, value_delimiter = ',', default_values_t = vec![12.5, 25.0, 50.0, 100.0])]
    lambdas: Vec<f64>,
    /// Delay h.
    #[arg(long, default_value_t = 1.0)]
    delay: f64,
    /// Transactions per lambda.
    #[arg(long, default_value_t = 200_000)]
    txs: u64,
    /// RNG seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn run(args: RunArgs) -> Result<()> {
    let sc = args.common.scenario()?;
    let pb = args.common.progress(
        sc.transactions,
        "{elapsed_precise} [{bar:40}] {pos}/{len} tx ({per_sec}, eta {eta})",
    );
    let out = simulator::run(&sc, &pb)?;
    pb.finish_and_clear();
    simulator::write_run_dir(&args.common.out, &sc, &out)
        .with_context(|| format!("writing {}", args.common.out.display()))?;
    let s = &out.summary;
    println!(
        "{} transactions ({} total) in {:.2} s wall: {:.0} simulated tx/s",
        s.transactions, s.total_transactions, s.wall_seconds, s.sim_tx_per_second
    );
    println!(
        "mean tips {:.2} (2*lambda*h = {:.2}); first approval {:.3}; orphan rate {:.4}",
        s.mean_tips, s.closed_form_tips, s.mean_first_approval_delay, s.orphan_rate
    );
    println!(
        "confirmation latency p50 {:.3} p90 {:.3} p99 {:.3}; ledger applied {} conflicting {:?}",
        s.confirmation_latency.p50,
        s.confirmation_latency.p90,
        s.confirmation_latency.p99,
        s.ledger.applied,
        s.ledger.conflicting
    );
    if let Some(a) = &s.attack {
        println!(
            "attack {}: success rate {:.4} {:?}",
            a.kind, a.success_rate, a.metrics
        );
    }
    println!("wrote {}", args.common.out.display());
    Ok(())
}

fn sweep(args: SweepArgs) -> Result<()> {
    let sc = args.common.scenario()?;
    let axes = args
        .grid
        .iter()
        .map(|g| {
            let (k, v) = g
                .split_once('=')
                .with_context(|| format!("--grid {g:?}: expected KEY=V1,V2"))?;
            Ok(Axis {
                key: k.trim().to_string(),
                values: v.split(',').map(|s| s.trim().to_string()).collect(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(j) = args.jobs {
        rayon::ThreadPoolBuilder::new()
            .num_threads(j.max(1))
            .build_global()
            .context("configuring the thread pool")?;
    }
    let configs: u64 = axes.iter().map(|a| a.values.len() as u64).product();
    let pb = args
        .common
        .progress(configs, "{elapsed_precise} [{bar:40}] {pos}/{len} runs");
    let started = std::time::Instant::now();
    let summaries = simulator::run_sweep(&sc, &axes, &args.common.out, &pb)?;
    pb.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();
    let txs: u64 = summaries.iter().map(|s| s.total_transactions).sum();
    println!(
        "{} runs, {} transactions in {:.2} s wall: {:.0} simulated tx/s overall",
        summaries.len(),
        txs,
        wall,
        txs as f64 / wall.max(1e-9)
    );
    print!(
        "{}",
        std::fs::read_to_string(args.common.out.join("sweep.md")).unwrap_or_default()
    );
    Ok(())
}

fn check(args: CheckArgs) -> Result<bool> {
    let rows = simulator::closed_form_check(&args.lambdas, args.delay, args.txs, args.seed)?;
    println!(
        "closed form L0 = 2*lambda*h (URTS), tolerance {:.0}%",
        simulator::TOLERANCE * 100.0
    );
    println!("| lambda | h | 2*lambda*h | mean tips | error | first approval (h) | error | ok |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.1} | {:.3} | {:.2}% | {:.4} | {:.2}% | {} |",
            r.lambda,
            r.delay,
            r.expected_tips,
            r.mean_tips,
            r.tips_error * 100.0,
            r.first_approval,
            r.first_approval_error * 100.0,
            r.ok
        );
    }
    Ok(rows.iter().all(|r| r.ok))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run(a).map(|_| true),
        Command::Sweep(a) => sweep(a).map(|_| true),
        Command::Check(a) => check(a),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("tangle-sim: {e:#}");
            ExitCode::from(2)
        }
    }
}

//! `tangle-sim`: command-line front end of the simulator (`run`, `sweep`, `check`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use simulator::{apply_override, Axis, NodeConfig, Scenario};

// mimalloc, as in `tangle-node` and the benches: node mode allocates per frame and per
// transaction (glibc malloc and free were ~5% of its profile).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run one scenario and write a run directory (base mode, or the real node core with
    /// --mode node).
    #[command(after_long_help = NODE_MODE_HELP)]
    Run(RunArgs),
    /// Run a parameter grid in parallel and write a comparison table and plot.
    Sweep(SweepArgs),
    /// Compare the base mode with the closed form L0 = 2 lambda h (URTS, high load).
    Check(CheckArgs),
    /// Deterministic chaos: the real node core under seeded faults, invariants checked.
    /// `--seeds N [--start S] [--nodes K]` runs seeds S..S+N-1, prints one line per failing
    /// seed and a summary line, exits 1 if any failed; `--seed S --trace FILE` replays one
    /// seed and writes its event trace.
    Chaos(ChaosArgs),
}

#[derive(Args)]
struct ChaosArgs {
    /// Number of seeds to run.
    #[arg(long, conflicts_with = "seed")]
    seeds: Option<u64>,
    /// First seed of --seeds.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Nodes per run (2 to 16; node 0 issues milestones).
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// Replay this one seed.
    #[arg(long, requires = "trace")]
    seed: Option<u64>,
    /// Where to write the replayed seed's event trace.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Worker threads for --seeds.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Milestones by a committee of this many members (node i holds key i; the cluster
    /// has at least this many nodes), with crashed proposers and, when 2k - n - 1 >= 1,
    /// an equivocating Byzantine proposer; needs --threshold.
    #[arg(long, requires = "threshold")]
    committee: Option<usize>,
    /// Signatures a committee milestone needs (k of --committee n).
    #[arg(long, requires = "committee")]
    threshold: Option<u8>,
}

impl ChaosArgs {
    /// The configuration of seed `seed`.
    fn config(&self, seed: u64) -> simulator::chaos::ChaosConfig {
        simulator::chaos::ChaosConfig {
            committee: self
                .committee
                .zip(self.threshold)
                .map(|(members, threshold)| simulator::chaos::CommitteeSetting {
                    members,
                    threshold,
                }),
            ..simulator::chaos::ChaosConfig::new(seed, self.nodes)
        }
    }
}

fn chaos(a: &ChaosArgs) -> Result<ExitCode> {
    if !(2..=16).contains(&a.nodes) {
        anyhow::bail!("--nodes must be 2 to 16");
    }
    if let Some((n, k)) = a.committee.zip(a.threshold) {
        if !(2..=16).contains(&n) || k == 0 || usize::from(k) > n {
            anyhow::bail!("--committee must be 2 to 16 and --threshold 1 to --committee");
        }
    }
    if let Some(seed) = a.seed {
        let path = a
            .trace
            .as_ref()
            .context("--trace FILE is required with --seed")?;
        // The nodes' own logs on stderr when RUST_LOG asks (e.g. RUST_LOG=node_proto=debug).
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_writer(std::io::stderr)
                .try_init();
        }
        let o = simulator::chaos::run_seed(a.config(seed), true);
        let mut text = o.trace.join("\n");
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        if let Some(f) = &o.failure {
            println!("seed {seed}: {f}");
        }
        let failed = u64::from(o.failure.is_some());
        println!(
            "chaos: 1 seeds, {failed} failed, trace hash of seed {seed}: {}",
            o.trace_hash.to_hex()
        );
        return Ok(if failed > 0 {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    let Some(n) = a.seeds else {
        anyhow::bail!("give --seeds N or --seed S --trace FILE");
    };
    if n == 0 {
        anyhow::bail!("--seeds must be at least 1");
    }
    let outcomes = simulator::chaos::run_seeds_with(a.start, n, a.jobs, |s| a.config(s));
    let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
    for line in simulator::chaos::report(&outcomes) {
        println!("{line}");
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
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
    /// Visibility delay h (run --mode node: one-way frame delay between nodes, seconds).
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

/// Usage of node mode, shown by `tangle-sim run --help`.
const NODE_MODE_HELP: &str = "\
Node mode (--mode node):
  tangle-sim run --mode node --nodes K [--txs N] [--lambda L] [--seed S] [--delay D]
                 [--milestone-interval M] [--tips T] [--devices N] [--batch-ms B]
                 [--out DIR]

  Runs the node's real protocol core (node-proto): K nodes, each a Protocol + Peering
  pair, in the in-memory harness on a virtual clock, fully meshed; node 0 issues the
  milestones. Real Ed25519 signatures and real proof of work (difficulty 2); the node's
  tip selection, tip sweep, issuer chaining, reattachment and white-flag milestones.
  Workload: N payments arriving at L per virtual second, from device accounts funded at
  genesis; each device pays consecutive sequence numbers through its home node
  (device d -> node d % K), so payments are spread over the nodes.

  Flags in node mode (defaults in brackets):
    --nodes K               nodes, 1 to 63 [4]
    --txs N                 payments [10000]
    --lambda L              payments per virtual second [1000]
    --seed S                seed of the workload and the harness [1]
    --delay D               one-way frame delay between nodes, seconds; each frame gets
                            up to D more of seeded jitter [0.005]
    --milestone-interval M  seconds [0.5]
    --tips T                urts, rurts or walk [rurts]
    --devices N             device accounts [1000]
    --batch-ms B            each node's arrivals of a window of B virtual ms are
                            submitted together at its end, in one call (as a gateway
                            using the node's batch endpoint would) [1]
    --cheap-crypto          for runs at scale: devices do not sign payments (each
                            carries one fixed signature) and nodes skip verifying
                            payment signatures; milestone signatures, proof of work,
                            ids, encoding, the other validation checks and the ledger
                            stay real [off]
    --keep-milestones N     nodes 1.. keep the cones of the last N milestones and prune
                            the rest, as a node with a retention does (node 0 keeps
                            everything: the approval figures are its view) [0: none]
  --scenario, --parents, --alpha and --depth are refused; --sign changes nothing
  (signatures are real unless --cheap-crypto).

  The run waits after the last payment until every payment is decided on every node
  and all nodes agree (at most 120 virtual seconds), then writes node.toml,
  summary.json (the base-mode fields plus a \"node\" object: digests_equal, confirmed
  counts, per-phase wall time, ...), timeseries.csv, latency.csv and the plots.
  Latencies are virtual time from submission to the home node's confirmation event;
  sim_tx_per_second is payments per wall-clock second. See the simulator crate docs
  for every field.";

/// What `run` simulates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// The idealised Tangle model (the discrete-event engine).
    #[default]
    Base,
    /// The node's real protocol core on the in-memory harness.
    Node,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    common: ScenarioArgs,
    /// What to simulate: base (the model) or node (the real node core).
    #[arg(long, value_enum, default_value_t = Mode::Base)]
    mode: Mode,
    /// Node mode: device accounts funded at genesis.
    #[arg(long)]
    devices: Option<usize>,
    /// Node mode: submit each node's arrivals in windows of this many virtual ms.
    #[arg(long)]
    batch_ms: Option<u64>,
    /// Node mode, for scale: payments are not signed and their signatures not verified
    /// (milestone signatures, proof of work and every other check stay real).
    #[arg(long)]
    cheap_crypto: bool,
    /// Node mode: nodes other than node 0 keep the cones of the last N milestones
    /// (pruning; 0: all keep everything).
    #[arg(long)]
    keep_milestones: Option<u32>,
    /// Node mode: threads for the nodes' work (0: one per core, at most one per node);
    /// the result is the same with any number.
    #[arg(long)]
    threads: Option<usize>,
}

impl RunArgs {
    /// The node-mode settings from the flags.
    fn node_config(&self) -> Result<NodeConfig> {
        let a = &self.common;
        let refused = [
            ("--scenario", a.scenario.is_some()),
            ("--parents", a.parents.is_some()),
            ("--alpha", a.alpha.is_some()),
            ("--depth", a.depth.is_some()),
        ];
        if let Some((flag, _)) = refused.iter().find(|(_, set)| *set) {
            anyhow::bail!("{flag} is not supported with --mode node");
        }
        let mut c = NodeConfig::default();
        if let Some(v) = a.nodes {
            c.nodes = v;
        }
        if let Some(v) = a.txs {
            c.transactions = v;
        }
        if let Some(v) = a.lambda {
            c.lambda = v;
        }
        if let Some(v) = a.seed {
            c.seed = v;
        }
        if let Some(v) = a.delay {
            c.delay = v;
        }
        if let Some(v) = a.milestone_interval {
            c.milestone_interval = v;
        }
        if let Some(t) = &a.tips {
            c.tips = t
                .parse()
                .map_err(|e| anyhow::anyhow!("--tips {t:?}: {e}"))?;
        }
        if let Some(v) = self.devices {
            c.devices = v;
        }
        if let Some(v) = self.batch_ms {
            c.batch_ms = v;
        }
        c.cheap_crypto = self.cheap_crypto;
        if let Some(v) = self.keep_milestones {
            c.keep_milestones = v;
        }
        if let Some(v) = self.threads {
            c.threads = v;
        }
        c.validate()?;
        Ok(c)
    }
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

fn run_node(args: RunArgs) -> Result<()> {
    let cfg = args.node_config()?;
    let pb = args.common.progress(
        cfg.transactions,
        "{elapsed_precise} [{bar:40}] {pos}/{len} payments ({per_sec}, eta {eta})",
    );
    let out = simulator::run_node(&cfg, &pb)?;
    pb.finish_and_clear();
    simulator::write_node_run_dir(&args.common.out, &cfg, &out)
        .with_context(|| format!("writing {}", args.common.out.display()))?;
    let s = &out.summary;
    let Some(n) = &s.node else {
        anyhow::bail!("node mode produced no node report");
    };
    println!(
        "{} payments through {} nodes in {:.2} s wall: {:.0} payments/s ({:.2} virtual s, {} transactions on node 0)",
        s.transactions, s.nodes, s.wall_seconds, s.sim_tx_per_second, s.sim_time, s.total_transactions
    );
    println!(
        "confirmed {} on the home node, {} everywhere; orphan rate {:.4}; drained {}",
        n.confirmed, n.confirmed_everywhere, s.orphan_rate, n.drained
    );
    println!(
        "confirmation latency ms p50 {:.0} p90 {:.0} p99 {:.0}; mean tips {:.2}; milestones {}; reattachments {}",
        n.confirmation_latency_ms.p50,
        n.confirmation_latency_ms.p90,
        n.confirmation_latency_ms.p99,
        s.mean_tips,
        s.ledger.milestones,
        n.reattachments
    );
    println!(
        "digests equal on all nodes: {}; histories equal: {}; supply conserved: {}; conflicting {:?}",
        n.digests_equal, n.histories_equal, s.ledger.supply_conserved, s.ledger.conflicting
    );
    println!(
        "wall s: setup {:.2}, signing {:.2} (own thread; waited {:.2}), submit {:.2}, network {:.2}, report {:.2}",
        n.wall.setup,
        n.wall.signing,
        n.wall.waiting_for_signatures,
        n.wall.submit,
        n.wall.network,
        n.wall.report
    );
    println!("wrote {}", args.common.out.display());
    if !n.digests_equal {
        anyhow::bail!("the nodes ended with different ledger digests");
    }
    Ok(())
}

fn run(args: RunArgs) -> Result<()> {
    if args.mode == Mode::Node {
        return run_node(args);
    }
    if args.devices.is_some()
        || args.batch_ms.is_some()
        || args.cheap_crypto
        || args.keep_milestones.is_some()
        || args.threads.is_some()
    {
        anyhow::bail!(
            "--devices, --batch-ms, --cheap-crypto, --keep-milestones and --threads are for --mode node"
        );
    }
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
        Command::Chaos(a) => match chaos(&a) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
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

//! `tangle-node`: parses arguments, sets up logging, and calls into the `node` library.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use node::config::{NodeConfig, TipSelectorKind};
use node::init::{init, testnet, InitOptions, TestnetOptions};
use node::net::local::{local_configs, LocalNetwork, LocalNetworkOptions};

// mimalloc: the node allocates per transaction on its hot path, where glibc malloc costs ~30%.
// The `system-alloc` feature leaves the C allocator in place, for heap profilers that
// interpose malloc (heaptrack, jemalloc's profiler via LD_PRELOAD).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process (`prctl(PR_SET_THP_DISABLE)`, what
/// mimalloc does itself with `MIMALLOC_ALLOW_THP=0`; setting that variable to 1 keeps them).
/// mimalloc asks for huge pages on its arenas; the kernel's khugepaged then fills partly
/// used 2 MiB ranges back in after mimalloc returned pages of them, so the node's RSS crept
/// up over a 30-minute soak while its heap did not grow (518 of 707 MiB were huge pages),
/// and every fault on a purged range zeroed 2 MiB. Measured without them: RSS at 300,000
/// payments 332 MiB instead of 421-462, and throughput no lower (BENCHMARKS.md).
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none_or(|v| v != "1") {
        // Best effort: an old kernel without the call keeps its default.
        let _ = rustix::thread::disable_transparent_huge_pages(true);
    }
}

#[derive(Parser)]
#[command(name = "tangle-node", version, about = "A tangle ledger node")]
struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "TANGLE_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Flags that override the config file (flag > TANGLE_* env var > file).
#[derive(clap::Args, Default)]
struct Overrides {
    /// HTTP API listen address.
    #[arg(long, env = "TANGLE_API_ADDR")]
    api_addr: Option<SocketAddr>,
    /// MQTT listen address (events as topics, submissions by publishing).
    #[arg(long, env = "TANGLE_MQTT_ADDR")]
    mqtt_addr: Option<SocketAddr>,
    /// Database directory.
    #[arg(long, env = "TANGLE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Milestone interval, ms.
    #[arg(long, env = "TANGLE_MILESTONE_INTERVAL_MS")]
    milestone_interval_ms: Option<u64>,
    /// Admin bearer token.
    #[arg(long, env = "TANGLE_ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// Requests per second per client IP.
    #[arg(long, env = "TANGLE_RATE_LIMIT")]
    rate_limit_per_sec: Option<u32>,
    /// Most HTTP API connections served at once.
    #[arg(long, env = "TANGLE_API_MAX_CONNECTIONS")]
    api_max_connections: Option<usize>,
    /// Tip selector.
    #[arg(long, env = "TANGLE_TIP_SELECTOR", value_parser = |s: &str| s.parse::<TipSelectorKind>())]
    tip_selector: Option<TipSelectorKind>,
    /// Keep the last N milestones' history (0: keep everything).
    #[arg(long, env = "TANGLE_KEEP_MILESTONES")]
    keep_milestones: Option<u32>,
    /// Disk-size target of the database directory, MiB: prune more while it is larger
    /// (0: none).
    #[arg(long, env = "TANGLE_MAX_DISK_MB")]
    max_disk_mb: Option<u64>,
    /// Make a full snapshot every N milestones (0: only on demand).
    #[arg(long, env = "TANGLE_SNAPSHOT_INTERVAL")]
    snapshot_interval: Option<u32>,
    /// Make a delta snapshot every N milestones (0: only on demand).
    #[arg(long, env = "TANGLE_SNAPSHOT_DELTA_INTERVAL")]
    snapshot_delta_interval: Option<u32>,
    /// With an empty database, start from a peer's snapshot (`true`, the default) or sync
    /// from the genesis (`false`).
    #[arg(long, env = "TANGLE_FETCH_SNAPSHOT")]
    fetch_snapshot: Option<bool>,
}

impl Overrides {
    fn apply(self, cfg: &mut NodeConfig) {
        if let Some(v) = self.api_addr {
            cfg.api_addr = v;
        }
        if let Some(v) = self.mqtt_addr {
            cfg.mqtt_addr = Some(v);
        }
        if let Some(v) = self.data_dir {
            cfg.data_dir = v;
        }
        if let Some(v) = self.milestone_interval_ms {
            cfg.milestone_interval_ms = v;
        }
        if let Some(v) = self.admin_token {
            cfg.admin_token = Some(v);
        }
        if let Some(v) = self.rate_limit_per_sec {
            cfg.rate_limit_per_sec = v;
        }
        if let Some(v) = self.api_max_connections {
            cfg.api_max_connections = v;
        }
        if let Some(v) = self.tip_selector {
            cfg.tip_selector = v;
        }
        if let Some(v) = self.keep_milestones {
            cfg.pruning.keep_milestones = Some(v);
        }
        if let Some(v) = self.max_disk_mb {
            cfg.pruning.max_disk_mb = Some(v);
        }
        if let Some(v) = self.snapshot_interval {
            cfg.snapshots.interval = Some(v);
        }
        if let Some(v) = self.snapshot_delta_interval {
            cfg.snapshots.delta_interval = Some(v);
        }
        if let Some(v) = self.fetch_snapshot {
            cfg.snapshots.fetch_from_peers = v;
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// One command for development: a node with embedded storage, a dev genesis with a
    /// funded faucet, a dev milestone key and the API on 127.0.0.1.
    Dev {
        /// Node directory (created on first use, reused after). Default: a `tangle-dev`
        /// folder in the system temp dir.
        #[arg(long, env = "TANGLE_DEV_DIR")]
        data_dir: Option<PathBuf>,
        /// HTTP API listen address.
        #[arg(long, default_value = "127.0.0.1:14265", env = "TANGLE_API_ADDR")]
        api_addr: SocketAddr,
        /// MQTT listen address: the node's events as MQTT topics, payload submission by
        /// publishing (port 0: any free port, printed at start).
        #[arg(long, default_value = "127.0.0.1:1883", env = "TANGLE_MQTT_ADDR")]
        mqtt_addr: SocketAddr,
        /// No MQTT server.
        #[arg(long, conflicts_with = "mqtt_addr")]
        no_mqtt: bool,
        /// Proof-of-work difficulty of a new dev network.
        #[arg(long, default_value_t = 8)]
        pow_difficulty: u8,
        /// Milestone interval, ms.
        #[arg(long, default_value_t = 1000)]
        milestone_interval_ms: u64,
        /// Requests per second per client IP.
        #[arg(long, default_value_t = 100_000)]
        rate_limit_per_sec: u32,
        /// Most HTTP API connections served at once.
        #[arg(long, default_value_t = 1024, env = "TANGLE_API_MAX_CONNECTIONS")]
        api_max_connections: usize,
        /// Admin bearer token (admin routes are off without one).
        #[arg(long, env = "TANGLE_ADMIN_TOKEN")]
        admin_token: Option<String>,
        /// Also start this many follower nodes in this process, peered with the dev node
        /// over QUIC on 127.0.0.1; follower i lives in `<data-dir>/peer-<i>` and serves its
        /// API on the API port + i.
        #[arg(long, default_value_t = 0)]
        peers: usize,
        /// Keep the last N milestones' history (0: keep everything).
        #[arg(long, default_value_t = 0, env = "TANGLE_KEEP_MILESTONES")]
        keep_milestones: u32,
        /// Disk-size target of each node's database directory, MiB: prune more while it
        /// is larger (0: none).
        #[arg(long, default_value_t = 0, env = "TANGLE_MAX_DISK_MB")]
        max_disk_mb: u64,
        /// Make a full snapshot every N milestones (0: only on demand, through
        /// `POST /api/v1/admin/snapshot` with `--admin-token`).
        #[arg(long, default_value_t = 0, env = "TANGLE_SNAPSHOT_INTERVAL")]
        snapshot_interval: u32,
    },
    /// Runs a node from a config file written by `init`.
    Run {
        /// The config file.
        #[arg(long, env = "TANGLE_CONFIG")]
        config: PathBuf,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Writes a documented config, a node identity and, for a new network, a genesis and a
    /// committee key.
    Init {
        /// Directory to create.
        #[arg(long, default_value = "tangle-node")]
        dir: PathBuf,
        /// Join the network of this genesis file instead of creating a new one.
        #[arg(long)]
        genesis: Option<PathBuf>,
        /// Name of a new network.
        #[arg(long, default_value = "tangle")]
        network_name: String,
        /// PoW difficulty of a new network.
        #[arg(long, default_value_t = dag_core::pow::DEFAULT_DIFFICULTY)]
        pow_difficulty: u8,
        /// Also create a funded faucet (dev/test networks).
        #[arg(long)]
        faucet: bool,
        /// Start from this snapshot (with `--genesis`): it is verified against the
        /// genesis committee and its signed state root, and the node starts at its
        /// milestone instead of syncing from the genesis.
        #[arg(long, requires = "genesis")]
        snapshot: Option<PathBuf>,
    },
    /// Writes the node directories of a local test network whose nodes all sit on the
    /// milestone committee (k of n signatures per milestone): `DIR/node-<i>` with its
    /// identity, committee key, config (API on 127.0.0.1:P+i, peering on 127.0.0.1:P+100+i,
    /// every other node an allowlisted peer) and the shared genesis (a funded dev faucet on
    /// node 0). Start each with `tangle-node run --config DIR/node-<i>/node.toml`.
    Testnet {
        /// Number of nodes (committee members), 1 to 32.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Signatures a milestone needs (k).
        #[arg(long, default_value_t = 3)]
        threshold: u8,
        /// Directory for the node directories.
        #[arg(long, default_value = "testnet")]
        dir: PathBuf,
        /// First API port P (peering ports start at P + 100).
        #[arg(long, default_value_t = 14265)]
        base_port: u16,
        /// Name of the network.
        #[arg(long, default_value = "testnet")]
        network_name: String,
        /// PoW difficulty.
        #[arg(long, default_value_t = 8)]
        pow_difficulty: u8,
        /// Milestone interval, ms.
        #[arg(long, default_value_t = 1000)]
        milestone_interval_ms: u64,
    },
    /// Snapshot files: the ledger state at a milestone, with that milestone's signatures.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Writes a snapshot of a stopped node's store (its ledger at its last milestone).
    Create {
        /// The node's config file.
        #[arg(long, env = "TANGLE_CONFIG")]
        config: PathBuf,
        /// Output file (default: `snapshot-<network>-<milestone>.tsnap` here).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Reads a snapshot, checks its framing and checksum, prints its header; with
    /// `--genesis`, also checks it against that network's committee and its signed state.
    Inspect {
        /// The snapshot file.
        file: PathBuf,
        /// Verify against this genesis file.
        #[arg(long)]
        genesis: Option<PathBuf>,
        /// For a delta snapshot: the full snapshot it applies to (needed to verify it).
        #[arg(long)]
        base: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn snapshot_command(command: SnapshotCommand) -> anyhow::Result<()> {
    use node_proto::snapshot;
    match command {
        SnapshotCommand::Create { config, out } => {
            let cfg = NodeConfig::load(&config)?;
            let genesis = node::init::read_genesis(&cfg.genesis)?;
            let store = node::store::SledStore::open(&cfg.data_dir).with_context(|| {
                format!(
                    "opening the database in {} (is the node still running? stop it first)",
                    cfg.data_dir.display()
                )
            })?;
            let snap = snapshot::from_store(&store, &genesis, node::runtime::now_ms())?;
            let out = out.unwrap_or_else(|| {
                PathBuf::from(format!(
                    "snapshot-{}-{}.tsnap",
                    genesis.network_name, snap.header.milestone
                ))
            });
            let (_, digest) = node::snapshots::write_atomically(&out, &snap)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "snapshot of milestone {} ({} accounts, {} channels, {} entry points): {} \
                 (checksum {digest})",
                snap.header.milestone,
                snap.header.accounts,
                snap.header.channels,
                snap.header.entry_points,
                out.display()
            );
            Ok(())
        }
        SnapshotCommand::Inspect {
            file,
            genesis,
            base,
            json,
        } => {
            let read =
                |path: &std::path::Path| -> anyhow::Result<(snapshot::Snapshot, dag_core::Digest)> {
                    let f = std::fs::File::open(path)
                        .with_context(|| format!("opening {}", path.display()))?;
                    Ok(snapshot::read_with_digest(std::io::BufReader::new(f))?)
                };
            let (snap, digest) = read(&file)?;
            let verified = match &genesis {
                Some(g) => {
                    let g = node::init::read_genesis(g)?;
                    let whole = match (snap.is_delta(), &base) {
                        (false, _) => snap.clone(),
                        (true, Some(b)) => {
                            let (full, full_digest) = read(b)?;
                            full.apply_delta(full_digest, snap.clone())?
                        }
                        (true, None) => anyhow::bail!(
                            "{} is a delta snapshot: pass --base FULL to verify it",
                            file.display()
                        ),
                    };
                    whole.verify(&g, dag_core::ledger::state_root_of)?;
                    true
                }
                None => false,
            };
            let h = &snap.header;
            let milestone_tx = dag_core::codec::id_of_encoding(&h.milestone_tx);
            if json {
                let v = serde_json::json!({
                    "version": h.version,
                    "network_id": h.network_id,
                    "network_name": h.network_name,
                    "milestone": h.milestone,
                    "milestone_transaction": milestone_tx.to_string(),
                    "ledger_digest": h.ledger_digest.to_string(),
                    "supply": h.supply,
                    "accounts": h.accounts,
                    "channels": h.channels,
                    "entry_points": h.entry_points,
                    "committee": h.committee.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "threshold": h.threshold,
                    "created_at": h.created_at,
                    "digest": digest.to_string(),
                    "delta_of": h.base.map(|b| serde_json::json!({
                        "milestone": b.milestone,
                        "digest": b.digest.to_string(),
                    })),
                    "verified": verified,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("format version   {}", h.version);
                println!("network          {} ({})", h.network_name, h.network_id);
                println!(
                    "milestone        {} (transaction {milestone_tx})",
                    h.milestone
                );
                println!("ledger digest    {}", h.ledger_digest);
                println!("supply           {}", h.supply);
                println!("accounts         {}", h.accounts);
                println!("channels         {}", h.channels);
                println!("entry points     {}", h.entry_points);
                println!(
                    "committee        {} keys, threshold {}",
                    h.committee.len(),
                    h.threshold
                );
                println!("created at       {} ms", h.created_at);
                println!("file checksum    {digest}");
                if let Some(b) = h.base {
                    println!(
                        "delta of         the full snapshot of milestone {} ({}): the counts \
                         above are of changed entries",
                        b.milestone, b.digest
                    );
                }
                println!(
                    "checks           framing and checksum ok{}",
                    if verified {
                        "; signatures, ledger digest and state root match the genesis committee"
                    } else {
                        " (pass --genesis to verify the signatures and the state)"
                    }
                );
            }
            Ok(())
        }
    }
}

fn setup_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sled=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// SIGINT (Ctrl-C) and SIGTERM (what systemd, `docker stop` and `kill` send), caught from
/// the start of the process: either stops the node cleanly (the batch in flight finished,
/// the store flushed). Both are registered before anything else runs, so one that arrives
/// while the node is still starting (opening and restoring its store) is not left to the
/// default action, which would end the process on the spot: the node finishes starting,
/// then stops at once, cleanly.
struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers (inside the runtime). Only the commands that run a node do:
    /// for the others SIGINT keeps its default action.
    fn install() -> anyhow::Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(StopSignals {
                interrupt: signal(SignalKind::interrupt()).context("catching SIGINT")?,
                terminate: signal(SignalKind::terminate()).context("catching SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// Completes on the first of them (also one received before this was called).
    async fn received(mut self) {
        #[cfg(unix)]
        let which = tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        };
        #[cfg(not(unix))]
        let which = {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        };
        tracing::info!(signal = which, "shutting down");
    }
}

/// Binds the API address (port 0 picks a free port; the bound address is logged).
async fn bind_api(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    // The bound address (the port chosen by the OS with `--api-addr 127.0.0.1:0`), for
    // people and for tests and tools that spawn the node: one line, `API listening on URL`.
    let bound = listener.local_addr()?;
    println!("API listening on http://{bound}");
    tracing::info!(addr = %bound, "API listening");
    Ok(listener)
}

async fn serve(cfg: NodeConfig, stop: StopSignals) -> anyhow::Result<()> {
    let listener = bind_api(cfg.api_addr).await?;
    node::app::run(cfg, listener, stop.received()).await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    no_transparent_huge_pages();
    let cli = Cli::parse();
    setup_logging(cli.log_format);
    match cli.command {
        Command::Init {
            dir,
            genesis,
            network_name,
            pow_difficulty,
            faucet,
            snapshot,
        } => {
            let rep = init(&InitOptions {
                dir,
                genesis,
                network_name,
                pow_difficulty,
                dev: faucet,
                now_ms: node::runtime::now_ms(),
            })?;
            println!("config:       {}", rep.config.display());
            println!("network id:   {}", rep.genesis.network_id());
            if let Some(k) = rep.committee_key {
                println!("committee key: {}", k.display());
            }
            if let Some(k) = rep.faucet_key {
                println!("faucet key:   {}", k.display());
            }
            if let Some(file) = snapshot {
                let cfg = NodeConfig::load(&rep.config)?;
                let f = std::fs::File::open(&file)
                    .with_context(|| format!("opening {}", file.display()))?;
                let snap = node_proto::snapshot::read(std::io::BufReader::new(f))?;
                snap.verify(&rep.genesis, dag_core::ledger::state_root_of)?;
                let store = node::store::SledStore::open(&cfg.data_dir)?;
                node_proto::snapshot::import(&store, &snap)?;
                println!(
                    "started from the snapshot of milestone {} ({} accounts)",
                    snap.header.milestone, snap.header.accounts
                );
            }
            println!(
                "start it with: tangle-node run --config {}",
                rep.config.display()
            );
            Ok(())
        }
        Command::Testnet {
            nodes,
            threshold,
            dir,
            base_port,
            network_name,
            pow_difficulty,
            milestone_interval_ms,
        } => {
            let rep = testnet(&TestnetOptions {
                dir,
                nodes,
                threshold,
                base_port,
                network_name,
                pow_difficulty,
                milestone_interval_ms,
                now_ms: node::runtime::now_ms(),
            })?;
            println!(
                "network id:   {} ({} members, {} signatures per milestone)",
                rep.genesis.network_id(),
                rep.genesis.committee.len(),
                rep.genesis.threshold
            );
            if 2 * usize::from(threshold) <= nodes {
                println!(
                    "warning: with {threshold} of {nodes} signatures two milestones of one index \
                     can each get enough (a fork): use more than half"
                );
            }
            for (i, c) in rep.configs.iter().enumerate() {
                println!(
                    "node {i}: tangle-node run --config {}   (API http://127.0.0.1:{})",
                    c.display(),
                    u32::from(base_port) + i as u32
                );
            }
            Ok(())
        }
        Command::Snapshot { command } => snapshot_command(command),
        Command::Run { config, overrides } => {
            let stop = StopSignals::install()?;
            let mut cfg = NodeConfig::load(&config)?;
            overrides.apply(&mut cfg);
            serve(cfg, stop).await
        }
        Command::Dev {
            data_dir,
            api_addr,
            mqtt_addr,
            no_mqtt,
            pow_difficulty,
            milestone_interval_ms,
            rate_limit_per_sec,
            api_max_connections,
            admin_token,
            peers,
            keep_milestones,
            max_disk_mb,
            snapshot_interval,
        } => {
            let stop = StopSignals::install()?;
            let dir = data_dir.unwrap_or_else(|| std::env::temp_dir().join("tangle-dev"));
            let mut opts = LocalNetworkOptions::new(dir.clone());
            opts.followers = peers;
            opts.network_name = "tangle-dev".into();
            opts.pow_difficulty = pow_difficulty;
            opts.milestone_interval_ms = milestone_interval_ms;
            opts.api_addr = api_addr;
            let mut configs = local_configs(&opts)?;
            for cfg in &mut configs {
                cfg.rate_limit_per_sec = rate_limit_per_sec;
                cfg.api_max_connections = api_max_connections;
                cfg.admin_token.clone_from(&admin_token);
                cfg.pruning.keep_milestones = Some(keep_milestones);
                cfg.pruning.max_disk_mb = Some(max_disk_mb);
                cfg.snapshots.interval = Some(snapshot_interval);
            }
            let mut cfg = configs[0].clone();
            // A single node binds before printing, so `--api-addr 127.0.0.1:0` prints the
            // port it got.
            let listener = if peers == 0 {
                let listener = bind_api(cfg.api_addr).await?;
                cfg.api_addr = listener.local_addr()?;
                Some(listener)
            } else {
                None
            };
            // MQTT on the (single) dev node, bound before printing for the same reason.
            let mqtt = if peers == 0 && !no_mqtt {
                let l = tokio::net::TcpListener::bind(mqtt_addr)
                    .await
                    .with_context(|| {
                        format!(
                            "binding the MQTT address {mqtt_addr} (--mqtt-addr ADDR, or --no-mqtt)"
                        )
                    })?;
                cfg.mqtt_addr = Some(l.local_addr()?);
                Some(l)
            } else {
                None
            };
            let genesis = node::init::read_genesis_cached(&cfg.genesis, &cfg.data_dir)?;
            let faucet = node::init::read_key(
                cfg.faucet_key
                    .as_ref()
                    .context("dev node without faucet key")?,
            )?;
            println!("tangle-node dev");
            println!("  node directory : {}", dir.display());
            println!("  database       : {}", cfg.data_dir.display());
            println!(
                "  genesis        : {} (network id {})",
                cfg.genesis.display(),
                genesis.network_id()
            );
            println!("  faucet address : {}", faucet.address());
            println!("  pow difficulty : {}", genesis.pow_difficulty);
            println!("  API            : http://{}/api/v1/info", cfg.api_addr);
            println!("  dashboard      : http://{}/", cfg.api_addr);
            println!(
                "  OpenAPI        : http://{}/api/v1/openapi.json",
                cfg.api_addr
            );
            if let Some(addr) = cfg.mqtt_addr {
                println!("  MQTT           : mqtt://{addr} (topics: README, \"MQTT\")");
            }
            if let Some(listener) = listener {
                println!("  Ctrl-C stops the node cleanly; run the same command to continue.");
                return node::app::run_with_mqtt(cfg, listener, mqtt, stop.received()).await;
            }
            let net = LocalNetwork::start(configs).await?;
            for (i, n) in net.nodes().iter().enumerate() {
                let role = if i == 0 {
                    "issuer".to_string()
                } else {
                    format!("peer-{i}")
                };
                println!(
                    "  {role:<15}: http://{}/  peering {}  key {}  ({})",
                    n.api_addr,
                    n.network().local_addr()?,
                    n.network().public_key(),
                    n.config.data_dir.display()
                );
            }
            println!("  Ctrl-C stops the nodes cleanly; run the same command to continue.");
            stop.received().await;
            net.shutdown().await;
            Ok(())
        }
    }
}

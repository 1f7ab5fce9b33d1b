//! Wiring a node from its configuration: genesis and keys from files, sled store, the node
//! tasks and the HTTP API. `run` takes the listener and a shutdown future so tests can bind
//! `127.0.0.1:0` and stop the node cleanly.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;

use crate::api::{self, ApiOptions};
use crate::config::NodeConfig;
use crate::init::{read_genesis_cached, read_key};
use crate::runtime::{Node, NodeSetup};
use crate::snapshots::Snapshots;
use crate::store::{SledStore, StoreOptions};
use node_proto::ProtocolConfig;

/// Builds the protocol settings of a config (reads the key files it names).
pub fn protocol_config(
    cfg: &NodeConfig,
    genesis: &dag_core::Genesis,
) -> anyhow::Result<ProtocolConfig> {
    let milestone_signer = match &cfg.milestone_key {
        Some(path) => {
            let kp = read_key(path)?;
            let idx = genesis
                .committee
                .iter()
                .position(|a| *a == kp.address())
                .with_context(|| {
                    format!(
                        "milestone key {} ({}) is not in the genesis committee",
                        path.display(),
                        kp.address()
                    )
                })?;
            Some((idx as u8, kp))
        }
        None => None,
    };
    let faucet = cfg.faucet_key.as_ref().map(|p| read_key(p)).transpose()?;
    Ok(ProtocolConfig {
        milestone_signer,
        milestone_interval_ms: cfg.milestone_interval_ms.max(1),
        selector: cfg.tip_selector,
        faucet,
        seed: rand::random(),
        keep_milestones: cfg.pruning.keep(),
        ..ProtocolConfig::default()
    })
}

/// Opens the store and starts the node described by `cfg` (without the API).
pub async fn start_node(cfg: &NodeConfig) -> anyhow::Result<Node> {
    // From the binary copy in the data directory when the TOML is unchanged.
    let genesis = read_genesis_cached(&cfg.genesis, &cfg.data_dir)?;
    let protocol = protocol_config(cfg, &genesis)?;
    // A pruning node's disk use moves in steps of one log segment: smaller ones keep it
    // close to the window held. An archive node keeps fewer, larger files (each stays open).
    let segment_bytes = if cfg.pruning.prunes() {
        crate::store::PRUNED_SEGMENT_BYTES
    } else {
        crate::store::DEFAULT_SEGMENT_BYTES
    };
    let store = Arc::new(
        SledStore::open_with_options(
            &cfg.data_dir,
            StoreOptions::default().segment_bytes(segment_bytes),
        )
        .with_context(|| format!("opening the database in {}", cfg.data_dir.display()))?,
    );
    bootstrap_from_peers(cfg, &genesis, &store).await?;
    let node = Node::start(NodeSetup {
        genesis,
        store,
        protocol,
        max_batch: 2048,
        queue_capacity: 100_000,
    })
    .await?;
    if let Some(max) = cfg.pruning.max_disk_bytes() {
        node.limit_disk(crate::runtime::DiskTarget::new(cfg.data_dir.clone(), max));
    }
    Ok(node)
}

/// With an empty database, peers configured and `[snapshots] fetch_from_peers`, starts
/// from the newest snapshot a peer serves: downloads it into the snapshot directory
/// (resuming an earlier attempt), checks it against the genesis (framing, checksum,
/// milestone signatures, ledger digest and state root) and imports it. No peer serving one:
/// the node starts from the genesis and syncs. A refused file is deleted and the start
/// fails with the reason.
async fn bootstrap_from_peers(
    cfg: &NodeConfig,
    genesis: &dag_core::Genesis,
    store: &Arc<SledStore>,
) -> anyhow::Result<()> {
    use dag_core::store::Store;
    if !cfg.snapshots.fetch_from_peers || cfg.peers.is_empty() || cfg.peering_addr.is_none() {
        return Ok(());
    }
    if store.confirmed_index()?.is_some() {
        return Ok(());
    }
    let identity = read_key(&cfg.identity_key)
        .with_context(|| format!("reading the identity key {}", cfg.identity_key.display()))?;
    let fc = crate::net::fetch::FetchConfig::new(
        identity,
        cfg.peers.clone(),
        genesis.network_id(),
        cfg.snapshots.dir_for(&cfg.data_dir),
    );
    tracing::info!(
        peers = cfg.peers.len(),
        "empty database: asking peers for a snapshot"
    );
    let Some(fetched) = crate::net::fetch::fetch_snapshot(&fc).await? else {
        tracing::info!("no peer serves a snapshot: starting from the genesis");
        return Ok(());
    };
    tracing::info!(
        milestone = fetched.file.milestone,
        bytes = fetched.file.len,
        resumed_from = fetched.resumed_from,
        took_ms = fetched.took.as_millis() as u64,
        peer = %fetched.peer,
        "snapshot downloaded; verifying it"
    );
    let (genesis, store) = (genesis.clone(), store.clone());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        use node_proto::snapshot;
        let started = std::time::Instant::now();
        let refuse = |what: &str, e: &dyn std::fmt::Display| {
            anyhow::anyhow!(
                "the {what} of milestone {} served by peer {} is refused: {e}",
                fetched.file.milestone,
                fetched.peer
            )
        };
        let read = |path: &std::path::Path| {
            std::fs::File::open(path)
                .map_err(snapshot::SnapshotError::from)
                .and_then(|f| {
                    snapshot::read_with_digest(std::io::BufReader::with_capacity(1 << 20, f))
                })
        };
        let full = read(&fetched.path).and_then(|(s, digest)| {
            if digest != fetched.file.digest {
                return Err(snapshot::SnapshotError::Format(
                    "its checksum is not the one offered".into(),
                ));
            }
            Ok(s)
        });
        let full = match full {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_file(&fetched.path);
                if let Some((p, _)) = &fetched.delta {
                    let _ = std::fs::remove_file(p);
                }
                return Err(refuse("snapshot", &e));
            }
        };
        // With the delta on it, the newer state; without (or if the delta is refused),
        // the full snapshot's.
        let with_delta = fetched.delta.as_ref().map(|(p, _)| {
            read(p)
                .and_then(|(d, _)| full.clone().apply_delta(fetched.file.digest, d))
                .and_then(|s| {
                    s.verify(&genesis, dag_core::ledger::state_root_of)?;
                    Ok(s)
                })
        });
        let snap = match with_delta {
            Some(Ok(s)) => s,
            other => {
                if let (Some(Err(e)), Some((p, _))) = (&other, &fetched.delta) {
                    tracing::warn!(error = %e, "the delta is refused; starting from the full snapshot");
                    let _ = std::fs::remove_file(p);
                }
                if let Err(e) = full.verify(&genesis, dag_core::ledger::state_root_of) {
                    let _ = std::fs::remove_file(&fetched.path);
                    return Err(refuse("snapshot", &e));
                }
                full
            }
        };
        snapshot::import(&*store, &snap)?;
        tracing::info!(
            milestone = snap.header.milestone,
            accounts = snap.header.accounts,
            took_ms = started.elapsed().as_millis() as u64,
            "started from the peer's snapshot"
        );
        Ok(())
    })
    .await
    .context("the snapshot import task failed")?
}

/// Starts QUIC peering on `addr` (identity from `identity_key`, peers from the config),
/// serving `snapshots` to peers.
pub async fn start_network(
    cfg: &NodeConfig,
    node: &Node,
    addr: std::net::SocketAddr,
    snapshots: Option<Arc<Snapshots>>,
) -> anyhow::Result<crate::net::Network> {
    let identity = read_key(&cfg.identity_key)
        .with_context(|| format!("reading the identity key {}", cfg.identity_key.display()))?;
    let mut net = crate::net::NetConfig::new(addr, identity);
    net.peers = cfg.peers.clone();
    net.snapshots = snapshots;
    if cfg.milestone_key.is_some() {
        net.vote_file = Some(crate::committee::VoteFile::in_dir(&cfg.data_dir));
    }
    let network = crate::net::Network::start(net, node.handle()).await?;
    tracing::info!(
        addr = %network.local_addr()?,
        key = %network.public_key(),
        peers = cfg.peers.len(),
        "peering started"
    );
    Ok(network)
}

/// A started node with what runs beside it: peering, the snapshot directory (served to
/// peers, made periodically) and the admin routes of both. What [`run`] serves, and each
/// node of a [`crate::net::local::LocalNetwork`].
pub struct Assembled {
    /// The node.
    pub node: Node,
    /// Its peering layer, if peering is on.
    pub network: Option<crate::net::Network>,
    /// Its snapshot files.
    pub snapshots: Arc<Snapshots>,
    periodic: Option<(
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    )>,
    resources: (
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    ),
}

impl Assembled {
    /// Starts the node of `cfg` (fetching a snapshot from its peers first if its database
    /// is empty), opens its snapshot directory, starts peering on `peering` (if any) and the
    /// periodic snapshots.
    pub async fn start(
        cfg: &NodeConfig,
        peering: Option<std::net::SocketAddr>,
    ) -> anyhow::Result<Assembled> {
        let node = start_node(cfg).await?;
        let snapshots = match open_snapshots(cfg, &node) {
            Ok(s) => s,
            Err(e) => {
                node.shutdown().await;
                return Err(e);
            }
        };
        let network = match peering {
            Some(addr) => match start_network(cfg, &node, addr, Some(snapshots.clone())).await {
                Ok(n) => Some(n),
                Err(e) => {
                    node.shutdown().await;
                    return Err(e);
                }
            },
            None => None,
        };
        let (full, delta) = (cfg.snapshots.every(), cfg.snapshots.delta_every());
        let periodic = (full.is_some() || delta.is_some()).then(|| {
            let (stop, rx) = tokio::sync::watch::channel(false);
            let task = snapshots
                .clone()
                .spawn_periodic(node.handle(), full, delta, rx);
            (stop, task)
        });
        let resources = watch_resources(
            &node,
            cfg.data_dir.clone(),
            cfg.snapshots.dir_for(&cfg.data_dir),
        );
        Ok(Assembled {
            node,
            network,
            snapshots,
            periodic,
            resources,
        })
    }

    /// The admin routes: `/snapshot`, `/committee`, and the peering layer's `/peers`.
    pub fn admin_router(&self) -> axum::Router {
        let admin = self
            .snapshots
            .admin_router(self.node.handle())
            .merge(crate::rotation::admin_router(self.node.handle()));
        match &self.network {
            Some(n) => admin.merge(n.admin_router()),
            None => admin,
        }
    }

    /// Stops the periodic snapshots, peering, then the node (flushing its store).
    pub async fn shutdown(self) {
        let _ = self.resources.0.send(true);
        let _ = self.resources.1.await;
        if let Some((stop, task)) = self.periodic {
            let _ = stop.send(true);
            let _ = task.await;
        }
        if let Some(n) = self.network {
            n.shutdown().await;
        }
        self.node.shutdown().await;
    }
}

/// How often storage sizes and memory are measured for `/metrics`.
const RESOURCES_PERIOD: std::time::Duration = std::time::Duration::from_secs(5);

/// Measures the node's storage and memory into its metrics now and every
/// [`RESOURCES_PERIOD`] until told to stop.
fn watch_resources(
    node: &Node,
    data_dir: std::path::PathBuf,
    snapshots_dir: std::path::PathBuf,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, mut rx) = tokio::sync::watch::channel(false);
    let handle = node.handle();
    let dirs = Arc::new((data_dir, snapshots_dir));
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(RESOURCES_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = rx.wait_for(|s| *s) => return,
            }
            let (handle, dirs) = (handle.clone(), dirs.clone());
            let _ = tokio::task::spawn_blocking(move || {
                handle
                    .metrics_registry()
                    .observe_resources(&dirs.0, &dirs.1);
            })
            .await;
        }
    });
    (stop, task)
}

/// Opens the snapshot directory of `cfg` (files there are served to peers).
pub fn open_snapshots(cfg: &NodeConfig, node: &Node) -> anyhow::Result<Arc<Snapshots>> {
    let dir = cfg.snapshots.dir_for(&cfg.data_dir);
    let snapshots = node
        .handle()
        .with_protocol(|p| Snapshots::open(&dir, cfg.snapshots.keep, p.genesis()))
        .with_context(|| format!("opening the snapshot directory {}", dir.display()))?;
    if let Some(m) = snapshots.newest_milestone() {
        node.handle().set_snapshot_milestone(m);
    }
    Ok(snapshots)
}

/// The API settings of a config.
pub fn api_options(cfg: &NodeConfig) -> ApiOptions {
    ApiOptions {
        admin_token: cfg.admin_token.clone(),
        max_body_bytes: cfg.max_body_bytes,
        rate_limit_per_sec: cfg.rate_limit_per_sec,
        max_connections: cfg.api_max_connections,
        dev: cfg.faucet_key.is_some(),
        ..ApiOptions::default()
    }
}

/// Runs a node with its API on `listener` (and MQTT on `cfg.mqtt_addr`, if set) until
/// `shutdown` completes; then stops accepting requests, finishes the batch in flight and
/// flushes the store.
pub async fn run(
    cfg: NodeConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mqtt = match cfg.mqtt_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the MQTT address {addr}"))?,
        ),
        None => None,
    };
    run_with_mqtt(cfg, listener, mqtt, shutdown).await
}

/// [`run`] with the MQTT listener bound by the caller (`None`: no MQTT), so a caller that
/// binds port 0 knows the port before the node starts.
pub async fn run_with_mqtt(
    cfg: NodeConfig,
    listener: tokio::net::TcpListener,
    mqtt: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let assembled = Assembled::start(&cfg, cfg.peering_addr).await?;
    let admin = assembled.admin_router();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let on_shutdown = stop_tx.clone();
    tokio::spawn(async move {
        shutdown.await;
        on_shutdown.send_replace(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mqtt_task = mqtt.map(|l| {
        let handle = assembled.node.handle();
        let metrics = handle.metrics_registry().mqtt.clone();
        tokio::spawn(crate::mqtt::serve(
            l,
            handle,
            metrics,
            crate::mqtt::MqttOptions::default(),
            stopped(stop_rx.clone()),
        ))
    });
    let served = api::serve_with_admin(
        listener,
        assembled.node.handle(),
        api_options(&cfg),
        admin,
        stopped(stop_rx),
    )
    .await;
    // The API ended (shutdown or an error): MQTT ends with it.
    stop_tx.send_replace(true);
    if let Some(t) = mqtt_task {
        let _ = t.await;
    }
    assembled.shutdown().await;
    served.context("serving the API")
}

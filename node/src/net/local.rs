//! A small network of nodes in one process, peered over QUIC on 127.0.0.1: what
//! `tangle-node dev --peers N`, the `local_network` example and tests share.
//!
//! Layout on disk: the milestone issuer (dev genesis, committee key, faucet) lives in the
//! network directory itself, follower `i` (1-based) in `<dir>/peer-<i>` with its own
//! identity, database and a copy of the genesis. Directories are created on first use and
//! reused after, so a stopped network continues where it was.
//!
//! Every node listens for peers on `127.0.0.1:0` (or its configured `peering_addr`); once all
//! are bound, each one's key and actual address go on every other's allowlist, so the nodes
//! form a full mesh.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use dag_core::{Digest, MilestoneIndex};
use tokio::sync::watch;

use super::{Network, PeerEntry};
use crate::config::NodeConfig;
use crate::init::{files, init, InitOptions};
use crate::{NodeHandle, NodeService};

/// How to lay out a local network.
#[derive(Clone, Debug)]
pub struct LocalNetworkOptions {
    /// Network directory (the issuer's node directory; followers below it).
    pub dir: PathBuf,
    /// Follower nodes besides the issuer.
    pub followers: usize,
    /// Name of a new network.
    pub network_name: String,
    /// PoW difficulty of a new network.
    pub pow_difficulty: u8,
    /// Milestone interval, ms.
    pub milestone_interval_ms: u64,
    /// The issuer's API address; follower `i` gets the port `port + i` (port 0: any free
    /// port for every node).
    pub api_addr: SocketAddr,
}

impl LocalNetworkOptions {
    /// Defaults: 2 followers, PoW difficulty 4, a milestone every 500 ms, APIs on any port.
    pub fn new(dir: PathBuf) -> Self {
        LocalNetworkOptions {
            dir,
            followers: 2,
            network_name: "tangle-local".into(),
            pow_difficulty: 4,
            milestone_interval_ms: 500,
            api_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// The directory of follower `i` (1-based) of a network in `dir`.
pub fn follower_dir(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("peer-{i}"))
}

/// Creates the node directories that do not exist yet and returns the configs, issuer
/// first, with API addresses and milestone interval set from `opts`.
pub fn local_configs(opts: &LocalNetworkOptions) -> anyhow::Result<Vec<NodeConfig>> {
    let now = crate::runtime::now_ms();
    let issuer_config = opts.dir.join(files::CONFIG);
    if !issuer_config.exists() {
        init(&InitOptions {
            dir: opts.dir.clone(),
            genesis: None,
            network_name: opts.network_name.clone(),
            pow_difficulty: opts.pow_difficulty,
            dev: true,
            now_ms: now,
        })?;
    }
    let genesis = opts.dir.join(files::GENESIS);
    let mut paths = vec![issuer_config];
    for i in 1..=opts.followers {
        let dir = follower_dir(&opts.dir, i);
        let config = dir.join(files::CONFIG);
        if !config.exists() {
            init(&InitOptions {
                dir,
                genesis: Some(genesis.clone()),
                network_name: opts.network_name.clone(),
                pow_difficulty: opts.pow_difficulty,
                dev: false,
                now_ms: now,
            })?;
        }
        paths.push(config);
    }
    paths
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let mut cfg = NodeConfig::load(path)?;
            cfg.milestone_interval_ms = opts.milestone_interval_ms;
            cfg.api_addr = api_addr_of(opts.api_addr, i)?;
            Ok(cfg)
        })
        .collect()
}

/// `base` with its port moved up by `i` (port 0 stays 0).
fn api_addr_of(base: SocketAddr, i: usize) -> anyhow::Result<SocketAddr> {
    if base.port() == 0 {
        return Ok(base);
    }
    let port = u16::try_from(usize::from(base.port()) + i)
        .ok()
        .context("API port out of range")?;
    Ok(SocketAddr::new(base.ip(), port))
}

/// One running node of a [`LocalNetwork`].
pub struct LocalNode {
    /// Its configuration.
    pub config: NodeConfig,
    /// The address its HTTP API is bound to.
    pub api_addr: SocketAddr,
    /// The node, its peering layer and snapshot files.
    pub assembled: crate::app::Assembled,
    api: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl LocalNode {
    /// A handle on the node.
    pub fn handle(&self) -> NodeHandle {
        self.assembled.node.handle()
    }

    /// Its peering layer.
    pub fn network(&self) -> &Network {
        self.assembled
            .network
            .as_ref()
            .expect("local nodes always peer")
    }

    /// Its key and bound peering address, as other nodes' allowlists need them.
    pub fn peer_entry(&self) -> std::io::Result<PeerEntry> {
        Ok(PeerEntry {
            address: self.network().local_addr()?,
            public_key: self.network().public_key(),
        })
    }
}

/// Nodes running in this process, peered with each other over QUIC.
pub struct LocalNetwork {
    nodes: Vec<LocalNode>,
    stop: watch::Sender<bool>,
}

impl LocalNetwork {
    /// Starts a node (store, tasks, peering, API) per config, then puts every node on every
    /// other's allowlist. A config without `peering_addr` peers on `127.0.0.1:0`. Must run
    /// inside a tokio runtime.
    pub async fn start(configs: Vec<NodeConfig>) -> anyhow::Result<LocalNetwork> {
        let (stop, stop_rx) = watch::channel(false);
        let mut nodes: Vec<LocalNode> = Vec::new();
        for cfg in configs {
            match start_one(cfg, stop_rx.clone()).await {
                Ok(n) => nodes.push(n),
                Err(e) => {
                    LocalNetwork { nodes, stop }.shutdown().await;
                    return Err(e);
                }
            }
        }
        let net = LocalNetwork { nodes, stop };
        let entries: Vec<PeerEntry> = net
            .nodes
            .iter()
            .map(LocalNode::peer_entry)
            .collect::<Result<_, _>>()?;
        for n in &net.nodes {
            for e in &entries {
                if e.public_key != n.network().public_key() {
                    n.network().add_peer(*e);
                }
            }
        }
        Ok(net)
    }

    /// The nodes, issuer first.
    pub fn nodes(&self) -> &[LocalNode] {
        &self.nodes
    }

    /// A handle on every node, in order.
    pub fn handles(&self) -> Vec<NodeHandle> {
        self.nodes.iter().map(LocalNode::handle).collect()
    }

    /// Whether every node is connected to every other.
    pub fn fully_connected(&self) -> bool {
        let want = self.nodes.len().saturating_sub(1);
        self.nodes
            .iter()
            .all(|n| n.network().connected().len() >= want)
    }

    /// Waits until [`Self::fully_connected`], polling every 20 ms; false after `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.fully_connected() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// The ledger digest each node recorded at milestone `index` (`None` where that node has
    /// not applied it yet).
    pub fn digests_at(&self, index: MilestoneIndex) -> Vec<Option<Digest>> {
        digests_at(&self.handles(), index)
    }

    /// Stops the APIs, the peering layers, then the nodes (flushing their stores).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for n in self.nodes {
            let _ = n.api.await;
            n.assembled.shutdown().await;
        }
    }
}

/// The ledger digest each node recorded at milestone `index` (`None` where that node has not
/// applied it yet).
pub fn digests_at(handles: &[NodeHandle], index: MilestoneIndex) -> Vec<Option<Digest>> {
    handles
        .iter()
        .map(|h| {
            h.milestone(Some(index))
                .ok()
                .flatten()
                .map(|m| m.ledger_digest)
        })
        .collect()
}

async fn start_one(cfg: NodeConfig, mut stop: watch::Receiver<bool>) -> anyhow::Result<LocalNode> {
    let listen = cfg
        .peering_addr
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let assembled = crate::app::Assembled::start(&cfg, Some(listen)).await?;
    let listener = match tokio::net::TcpListener::bind(cfg.api_addr).await {
        Ok(l) => l,
        Err(e) => {
            assembled.shutdown().await;
            return Err(anyhow::Error::new(e).context(format!("binding {}", cfg.api_addr)));
        }
    };
    let api_addr = listener.local_addr()?;
    let api = tokio::spawn(crate::api::serve_with_admin(
        listener,
        assembled.node.handle(),
        crate::app::api_options(&cfg),
        assembled.admin_router(),
        async move {
            let _ = stop.wait_for(|s| *s).await;
        },
    ));
    Ok(LocalNode {
        config: cfg,
        api_addr,
        assembled,
        api,
    })
}

//! Wiring a node from its configuration: genesis and keys from files, sled store, the node
//! tasks and the HTTP API. `run` takes the listener and a shutdown future so tests can bind
//! `127.0.0.1:0` and stop the node cleanly.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;

use crate::api::{self, ApiOptions};
use crate::config::NodeConfig;
use crate::init::{read_genesis, read_key};
use crate::runtime::{Node, NodeSetup};
use crate::store::SledStore;
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
    let genesis = read_genesis(&cfg.genesis)?;
    let protocol = protocol_config(cfg, &genesis)?;
    let store = SledStore::open(&cfg.data_dir)
        .with_context(|| format!("opening the database in {}", cfg.data_dir.display()))?;
    let node = Node::start(NodeSetup {
        genesis,
        store: Arc::new(store),
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

/// Starts QUIC peering when the config has a `peering_addr` (identity from `identity_key`).
pub async fn start_network(
    cfg: &NodeConfig,
    node: &Node,
) -> anyhow::Result<Option<crate::net::Network>> {
    let Some(addr) = cfg.peering_addr else {
        return Ok(None);
    };
    let identity = read_key(&cfg.identity_key)
        .with_context(|| format!("reading the identity key {}", cfg.identity_key.display()))?;
    let mut net = crate::net::NetConfig::new(addr, identity);
    net.peers = cfg.peers.clone();
    let network = crate::net::Network::start(net, node.handle()).await?;
    tracing::info!(
        addr = %network.local_addr()?,
        key = %network.public_key(),
        peers = cfg.peers.len(),
        "peering started"
    );
    Ok(Some(network))
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

/// Runs a node with its API on `listener` until `shutdown` completes; then stops accepting
/// requests, finishes the batch in flight and flushes the store.
pub async fn run(
    cfg: NodeConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let node = start_node(&cfg).await?;
    let options = api_options(&cfg);
    let network = start_network(&cfg, &node).await?;
    let admin = network
        .as_ref()
        .map(|n| n.admin_router())
        .unwrap_or_default();
    let served = api::serve_with_admin(listener, node.handle(), options, admin, shutdown).await;
    if let Some(n) = network {
        n.shutdown().await;
    }
    node.shutdown().await;
    served.context("serving the API")
}

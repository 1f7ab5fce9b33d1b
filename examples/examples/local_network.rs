//! Three nodes on 127.0.0.1, peered over QUIC: gossip and confirmation across a network.
//!
//! `cargo run -p examples --example local_network`
//!
//! Starts, in this process, a milestone issuer (dev genesis, funded faucet) and two
//! followers, each with its own database and Ed25519 identity, every identity on every other
//! node's allowlist (TLS 1.3 refuses anyone else). The faucet funds a device address on the
//! issuer; the device then pays a shop, submitted to a follower, which has to gossip it to
//! the issuer to get it confirmed. Prints, per node, when it has seen the payment, when it
//! confirmed it, and finally the ledger digest every node computed at the same milestone.
//! Exits non-zero if any step fails or the digests differ.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use dag_core::{Address, Body, Keypair, PayloadId, SignedPayload};
use node::net::local::{local_configs, LocalNetwork, LocalNetworkOptions};
use node::service::PayloadState;
use node::{NodeHandle, NodeService};

const NAMES: [&str; 3] = ["issuer", "follower-1", "follower-2"];
const WAIT: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut opts = LocalNetworkOptions::new(dir.path().join("network"));
    opts.followers = 2;
    opts.milestone_interval_ms = 300;
    opts.network_name = "local-network-demo".into();
    let net = LocalNetwork::start(local_configs(&opts)?).await?;
    for (name, n) in NAMES.iter().zip(net.nodes()) {
        println!(
            "{name:<11} API http://{}  peering {}  key {}",
            n.api_addr,
            n.network().local_addr()?,
            n.network().public_key()
        );
    }
    let result = demo(&net).await;
    net.shutdown().await;
    result
}

async fn demo(net: &LocalNetwork) -> anyhow::Result<()> {
    ensure!(
        net.wait_connected(Duration::from_secs(10)).await,
        "the nodes did not connect"
    );
    println!("full mesh: every node connected to the other two over QUIC");
    let hs = net.handles();
    let network_id = hs[0].info().network_id;

    // 1. Fund a device from the faucet (on the issuer).
    let device = Keypair::from_seed(&[7; 32]);
    let shop = Address([42; 32]);
    let funded = hs[0]
        .faucet(device.address(), 1_000)
        .await
        .context("faucet")?;
    println!("\nfunding {} with 1000 from the faucet", device.address());
    follow(&hs, &funded.payload_id).await?;

    // 2. The device pays the shop, submitted to follower-1.
    let payment = SignedPayload::sign(
        &device,
        network_id,
        0,
        Body::Pay {
            to: shop,
            amount: 250,
            memo: b"coffee".to_vec(),
        },
    );
    let receipt = hs[1]
        .submit_payloads(vec![payment])
        .await
        .pop()
        .context("no verdict")?
        .context("submitting the payment")?;
    println!("\npayment of 250 to {shop} submitted to follower-1");
    follow(&hs, &receipt.payload_id).await?;

    // 3. Same balances and the same ledger digest everywhere.
    let index = hs
        .iter()
        .map(|h| h.info().confirmed_milestone)
        .min()
        .unwrap_or(0);
    let digests = net.digests_at(index);
    println!("\nledger digest at milestone {index}:");
    for (name, (h, d)) in NAMES.iter().zip(hs.iter().zip(&digests)) {
        let d = d.map(|d| d.to_string()).unwrap_or_else(|| "-".into());
        println!(
            "  {name:<11} {d}  shop balance {}",
            h.account(&shop)?.balance
        );
    }
    let first = digests[0].context("the issuer has no digest")?;
    if digests.iter().any(|d| *d != Some(first)) {
        bail!("the nodes' ledger digests differ");
    }
    for h in &hs {
        ensure!(
            h.account(&shop)?.balance == 250,
            "a node missed the payment"
        );
    }
    println!("all three nodes agree");
    Ok(())
}

/// Prints, per node, when it first sees the payload and when it confirms it.
async fn follow(hs: &[NodeHandle], id: &PayloadId) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut seen = [false; 3];
    let mut done = [false; 3];
    while done.iter().any(|d| !d) {
        ensure!(start.elapsed() < WAIT, "timed out waiting for {id}");
        for (i, h) in hs.iter().enumerate() {
            let view = h.payload(id)?;
            if !seen[i] && view.is_some() {
                seen[i] = true;
                println!(
                    "  {:>5} ms  {:<11} has it (gossip)",
                    start.elapsed().as_millis(),
                    NAMES[i]
                );
            }
            match view.map(|v| v.state) {
                Some(PayloadState::Confirmed { milestone, .. }) if !done[i] => {
                    done[i] = true;
                    println!(
                        "  {:>5} ms  {:<11} confirmed it at milestone {milestone}",
                        start.elapsed().as_millis(),
                        NAMES[i]
                    );
                }
                Some(PayloadState::Conflicting { reason, .. }) => {
                    bail!("{}: the payload conflicts: {reason}", NAMES[i])
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

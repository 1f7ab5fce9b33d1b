//! An electric vehicle pays a charger per kWh through a payment channel, on a real node.
//!
//! `cargo run -p examples --example ev_charging`
//!
//! Starts an in-process dev node (temporary directory, a milestone every 200 ms, a funded
//! faucet), creates an EV wallet and a charger wallet (encrypted keystores), funds the EV from
//! the faucet, then runs a 50 kWh session: the EV opens a channel on the ledger, hands the
//! charger one signed voucher per kWh off the ledger, and the charger claims the last voucher
//! on the ledger. Two ledger payloads for fifty payments. Prints each step and the final
//! balances, and exits non-zero if any of them is not what it must be.

use std::time::Duration;

use anyhow::{bail, ensure, Context};
use dag_core::Genesis;
use node::config::NodeConfig;
use node::init::{init, InitOptions};
use wallet::client::{NodeClient, PayloadStatus};
use wallet::{FileVoucherStore, Keystore, KeystoreOptions, Mnemonic, PayeeChannel, PayerChannel};

const FUNDS: u64 = 10_000;
const PRICE_PER_KWH: u64 = 25;
const SESSION_KWH: u64 = 50;
const DEPOSIT: u64 = 1_500;
/// Milestones the channel stays claimable (at 200 ms each: two minutes).
const EXPIRES_IN: u32 = 600;
const WAIT: Duration = Duration::from_secs(60);

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;

    // 1. A dev node in this process, on its own runtime; the wallets talk HTTP to it.
    let report = init(&InitOptions {
        dir: dir.path().join("node"),
        genesis: None,
        network_name: "ev-charging-demo".into(),
        pow_difficulty: 4,
        dev: true,
        now_ms: node::runtime::now_ms(),
    })?;
    let mut cfg = NodeConfig::load(&report.config)?;
    cfg.milestone_interval_ms = 200;
    let runtime = tokio::runtime::Runtime::new()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let node_task = runtime.spawn(node::app::run(cfg, listener, async move {
        let _ = stopped.await;
    }));

    let result = session(dir.path(), &url, &report.genesis);

    let _ = stop.send(());
    runtime.block_on(node_task)??;
    result
}

fn confirmed(step: &str, status: PayloadStatus) -> anyhow::Result<u32> {
    match status {
        PayloadStatus::Confirmed { milestone, .. } => Ok(milestone),
        other => bail!("{step}: expected confirmed, got {other:?}"),
    }
}

fn session(dir: &std::path::Path, url: &str, genesis: &Genesis) -> anyhow::Result<()> {
    let client = NodeClient::new(url)?;
    let mut info = None;
    for _ in 0..250 {
        if let Ok(i) = client.info() {
            info = Some(i);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let info = info.context("the node never answered")?;
    let net = info.network_id;
    println!(
        "[node]    dev node {url}, network {:?} (id {net}), milestones every 200 ms",
        info.network_name
    );

    // 2. Two wallets, each an encrypted keystore with its own mnemonic.
    let mut ev_ks = Keystore::create(
        dir.join("ev.json"),
        "ev-secret",
        &Mnemonic::generate(),
        net,
        KeystoreOptions::default(),
    )?;
    let mut charger_ks = Keystore::create(
        dir.join("charger.json"),
        "charger-secret",
        &Mnemonic::generate(),
        net,
        KeystoreOptions::default(),
    )?;
    let ev_addr = ev_ks.device(0).address();
    let charger_addr = charger_ks.device(0).address();
    println!(
        "[ev]      wallet {ev_addr}\n          did    {}",
        ev_addr.to_did_key()
    );
    println!(
        "[charger] wallet {charger_addr}\n          did    {}",
        charger_addr.to_did_key()
    );

    // 3. The faucet funds the EV.
    let r = client.faucet(&ev_addr, FUNDS)?;
    let m = confirmed("faucet", client.wait_final(&r.payload_id, WAIT)?)?;
    println!(
        "[faucet]  paid {FUNDS} to the EV (confirmed in milestone {m}); EV balance {}",
        client.account(&ev_addr)?.balance
    );

    // 4. Ledger payload 1: the EV opens a channel to the charger.
    client.sync_seq(&mut ev_ks, 0, &[])?;
    let mut ev = ev_ks.device(0);
    let expires_at = client.info()?.confirmed_milestone + EXPIRES_IN;
    let (mut payer, open) = PayerChannel::open(&mut ev, charger_addr, DEPOSIT, expires_at)?;
    ev_ks.set_next_seq(0, ev.next_seq())?;
    let (r, status) = client.submit_and_wait(&open, WAIT)?;
    let m = confirmed("open", status)?;
    println!(
        "[ev]      opened channel {} with deposit {DEPOSIT}, claimable until milestone \
         {expires_at} (payload {}, milestone {m})",
        payer.id(),
        r.payload_id
    );

    // 5. The charger does not take the node's word for the channel before it delivers the
    //    first kWh: it fetches the proof that a milestone of the committee applied the Open,
    //    checks it against the genesis (nothing the node says is trusted), and takes the
    //    channel's terms from the proven payload itself.
    let proof = client.payload_proof(&r.payload_id)?;
    let mut verifier = wallet::ProofVerifier::new(genesis)?;
    let proven = verifier
        .verify(&proof)
        .context("the proof of the channel's opening does not hold")?;
    ensure!(
        proven.applied && proven.payload_id == Some(r.payload_id),
        "the proof is not of the applied opening: {proven:?}"
    );
    let opened = proven
        .payload
        .context("the proven transaction carries no payload")?;
    let mut payee = PayeeChannel::from_open(
        net,
        &opened,
        charger_addr,
        FileVoucherStore::open(dir.join("charger-vouchers"))?,
    )?;
    let terms = *payee.terms();
    ensure!(
        terms.id == payer.id() && terms.deposit == DEPOSIT,
        "channel terms proven are not the ones agreed: {terms:?}"
    );
    println!(
        "[charger] checked the proof of the opening: applied by milestone {}, signed by the \
         genesis committee; payer {}, deposit {}",
        proven.milestone, terms.payer, terms.deposit
    );

    // 6. 50 kWh, one voucher each, off the ledger.
    for kwh in 1..=SESSION_KWH {
        let voucher = payer.voucher(PRICE_PER_KWH)?;
        let bytes = voucher.to_bytes();
        let gained = payee.accept_bytes(&bytes)?;
        ensure!(gained == PRICE_PER_KWH, "voucher {kwh} added {gained}");
        println!(
            "[session] kWh {kwh:>2}: voucher of {} bytes for {:>4} in total, checked and stored; \
             kWh {} delivered",
            bytes.len(),
            voucher.amount,
            kwh
        );
    }
    ensure!(
        client.account(&charger_addr)?.balance == 0,
        "vouchers must not touch the ledger"
    );

    // 7. Ledger payload 2: the charger claims the best voucher.
    client.sync_seq(&mut charger_ks, 0, &[])?;
    let mut charger = charger_ks.device(0);
    let claim = payee.claim(&mut charger, client.info()?.confirmed_milestone)?;
    charger_ks.set_next_seq(0, charger.next_seq())?;
    let (r, status) = client.submit_and_wait(&claim, WAIT)?;
    let m = confirmed("claim", status)?;
    println!(
        "[charger] claimed {} (payload {}, milestone {m})",
        payee.earned(),
        r.payload_id
    );

    // 8. Final balances, checked.
    let paid = SESSION_KWH * PRICE_PER_KWH;
    let ev_acct = client.account(&ev_addr)?;
    let charger_acct = client.account(&charger_addr)?;
    let ch = client.channel(&payer.id())?;
    println!(
        "[result]  EV balance      {:>6} (expected {})",
        ev_acct.balance,
        FUNDS - paid
    );
    println!(
        "[result]  charger balance {:>6} (expected {paid})",
        charger_acct.balance
    );
    println!(
        "[result]  ledger payloads for {SESSION_KWH} payments: {} (open + claim); channel closed: {}",
        ev_acct.next_seq + charger_acct.next_seq,
        ch.closed
    );
    ensure!(ev_acct.balance == FUNDS - paid, "EV balance is wrong");
    ensure!(charger_acct.balance == paid, "charger balance is wrong");
    ensure!(
        ev_acct.next_seq + charger_acct.next_seq == 2,
        "expected exactly two ledger payloads"
    );
    ensure!(
        ch.closed && ch.claimed == Some(paid),
        "channel state is wrong: {ch:?}"
    );
    println!("[result]  OK");
    Ok(())
}

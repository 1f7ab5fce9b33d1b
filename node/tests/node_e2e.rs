//! End-to-end: a real node (sled store, milestone issuer, dev faucet) serving its HTTP API on
//! 127.0.0.1 with an ephemeral port, driven with reqwest.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use dag_core::{codec, pow, Address, Body, Keypair, Payload, SignedPayload, Transaction, TxId};
use node::config::NodeConfig;
use node::init::{init, read_genesis, InitOptions};
use serde_json::{json, Value};
use tokio::sync::oneshot;

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

async fn start(dir: &Path, interval_ms: u64) -> Running {
    let mut cfg = NodeConfig::load(&dir.join("node.toml")).unwrap();
    cfg.milestone_interval_ms = interval_ms;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(node::app::run(cfg, listener, async move {
        let _ = rx.await;
    }));
    // The listener is bound before the node starts, so a request made now waits in the
    // accept backlog until the API serves it: no polling needed.
    Running { addr, stop, task }
}

fn new_dev_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    init(&InitOptions {
        dir: dir.path().to_owned(),
        genesis: None,
        network_name: "e2e".into(),
        pow_difficulty: 4,
        dev: true,
        now_ms: node::runtime::now_ms(),
    })
    .unwrap();
    dir
}

async fn get(url: String) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

async fn post_payload(r: &Running, p: &SignedPayload) -> reqwest::Response {
    reqwest::Client::new()
        .post(r.url("/api/v1/payloads"))
        .json(p)
        .send()
        .await
        .unwrap()
}

/// Polls until the payload is final (`confirmed` or `conflicting`; any other status, e.g.
/// `pending` or a transient reattachment status, is not). The bound only turns a hang into a
/// failure: it is far above the few 100 ms milestones a payload needs even on a loaded
/// machine, so it never decides a run that makes progress.
async fn wait_final(r: &Running, payload_id: &str) -> Value {
    const HANG_GUARD: Duration = Duration::from_secs(180);
    let start = tokio::time::Instant::now();
    loop {
        let v = get(r.url(&format!("/api/v1/payloads/{payload_id}"))).await;
        if v["status"] == "confirmed" || v["status"] == "conflicting" {
            return v;
        }
        assert!(
            start.elapsed() < HANG_GUARD,
            "payload {payload_id} not final after {HANG_GUARD:?}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `total_supply` and `open_deposits` from `/api/v1/info`.
async fn supply(r: &Running) -> (u64, u64) {
    let info = get(r.url("/api/v1/info")).await;
    (
        info["total_supply"].as_u64().unwrap(),
        info["open_deposits"].as_u64().unwrap(),
    )
}

/// The entry a state proof from `path` proves, checked with `params` alone and required to
/// be of milestone `milestone`.
async fn state_entry(
    r: &Running,
    params: &dag_core::ValidationParams,
    path: String,
    milestone: u64,
) -> dag_core::proof::StateEntry {
    let proof: dag_core::proof::StateProof = reqwest::get(r.url(&path))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let proven = proof.verify(params).unwrap();
    assert_eq!(u64::from(proven.milestone), milestone);
    proven.entry
}

async fn account(r: &Running, a: &Address) -> (u64, u64) {
    let v = get(r.url(&format!("/api/v1/accounts/{a}"))).await;
    (
        v["balance"].as_u64().unwrap(),
        v["next_seq"].as_u64().unwrap(),
    )
}

fn pay(kp: &Keypair, net: u64, seq: u64, to: Address, amount: u64) -> SignedPayload {
    SignedPayload::sign(
        kp,
        net,
        seq,
        Body::Pay {
            to,
            amount,
            memo: b"e2e".to_vec(),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_confirm_double_spend_once_and_state_survives_restart() {
    let dir = new_dev_dir();
    let genesis = read_genesis(&dir.path().join("genesis.toml")).unwrap();
    let net = genesis.network_id();
    let r = start(dir.path(), 100).await;
    let genesis_supply = genesis.supply().unwrap();
    assert_eq!(supply(&r).await, (genesis_supply, 0));

    let ev = Keypair::from_seed(&[21; 32]);
    let charger = Keypair::from_seed(&[22; 32]).address();
    let other = Keypair::from_seed(&[23; 32]).address();

    // Fund the EV from the faucet (the did:key form of the address works too).
    let resp = reqwest::Client::new()
        .post(r.url("/api/v1/faucet"))
        .json(&json!({"address": ev.address().to_did_key(), "amount": 10_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202, "{:?}", resp.text().await);
    let receipt: Value = resp.json().await.unwrap();
    let fin = wait_final(&r, receipt["payload_id"].as_str().unwrap()).await;
    assert_eq!(fin["status"], "confirmed", "{fin}");
    assert_eq!(account(&r, &ev.address()).await, (10_000, 0));

    // Three sequential payments in quick succession all apply, in order.
    let mut ids = Vec::new();
    for seq in 0..3 {
        let resp = post_payload(&r, &pay(&ev, net, seq, charger, 100)).await;
        assert_eq!(resp.status(), 202);
        let v: Value = resp.json().await.unwrap();
        ids.push(v["payload_id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        assert_eq!(wait_final(&r, id).await["status"], "confirmed");
    }
    assert_eq!(account(&r, &ev.address()).await, (9_700, 3));
    assert_eq!(account(&r, &charger).await.0, 300);

    // Double spend: the same seq spent twice. Both are accepted; exactly one applies.
    let a = pay(&ev, net, 3, charger, 9_000);
    let b = pay(&ev, net, 3, other, 9_000);
    let ra: Value = post_payload(&r, &a).await.json().await.unwrap();
    let rb: Value = post_payload(&r, &b).await.json().await.unwrap();
    let fa = wait_final(&r, ra["payload_id"].as_str().unwrap()).await;
    let fb = wait_final(&r, rb["payload_id"].as_str().unwrap()).await;
    let statuses = [
        fa["status"].as_str().unwrap(),
        fb["status"].as_str().unwrap(),
    ];
    assert!(
        statuses.contains(&"confirmed") && statuses.contains(&"conflicting"),
        "{fa} {fb}"
    );
    let loser = if fa["status"] == "conflicting" {
        &fa
    } else {
        &fb
    };
    assert!(
        loser["reason"].as_str().unwrap().contains("already used"),
        "{loser}"
    );
    assert_eq!(account(&r, &ev.address()).await, (700, 4));
    assert_eq!(
        account(&r, &charger).await.0 + account(&r, &other).await.0,
        9_300
    );

    // Proofs over HTTP (JSON and MessagePack) check with the genesis alone: the winner
    // applied, the loser confirmed but not applied.
    let params = dag_core::ValidationParams::new(&genesis).unwrap();
    for f in [&fa, &fb] {
        let id = f["payload_id"].as_str().unwrap();
        let proof: dag_core::proof::TransactionProof =
            reqwest::get(r.url(&format!("/api/v1/payloads/{id}/proof")))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        let proven = proof.verify(&params).unwrap();
        assert_eq!(proven.payload_id.unwrap().to_string(), id);
        assert_eq!(proven.applied, f["status"] == "confirmed", "{f}");
        let packed = reqwest::Client::new()
            .get(r.url(&format!(
                "/api/v1/transactions/{}/proof",
                proven.transaction_id
            )))
            .header("accept", "application/msgpack")
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let again: dag_core::proof::TransactionProof = rmp_serde::from_slice(&packed).unwrap();
        assert_eq!(again, proof);
    }
    // Not confirmed (unknown): 404.
    let resp = reqwest::get(r.url(&format!("/api/v1/transactions/{}/proof", "ab".repeat(32))))
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // Replaying an applied payload: 409, nothing changes.
    let resp = post_payload(&r, &a).await;
    assert_eq!(resp.status(), 409);

    // A channel locks 200 of the EV's 700: counted in open deposits, the supply unchanged.
    let open = SignedPayload::sign(
        &ev,
        net,
        4,
        Body::Open {
            payee: charger,
            deposit: 200,
            expires_at: 1_000_000,
        },
    );
    let ro: Value = post_payload(&r, &open).await.json().await.unwrap();
    let fo = wait_final(&r, ro["payload_id"].as_str().unwrap()).await;
    assert_eq!(fo["status"], "confirmed", "{fo}");
    assert_eq!(account(&r, &ev.address()).await, (500, 5));
    assert_eq!(supply(&r).await, (genesis_supply, 200));

    let info = get(r.url("/api/v1/info")).await;
    let digest = info["ledger_digest"].clone();
    let confirmed = info["confirmed_milestone"].as_u64().unwrap();
    assert!(confirmed >= 3);
    r.stop().await;

    // Restart on the same directory, with milestones effectively paused: same state. (The
    // node may have issued a milestone between the info read above and the stop: the
    // restarted node is at `confirmed` or later, and agrees on the digest at `confirmed`.)
    let r = start(dir.path(), 3_600_000).await;
    let info = get(r.url("/api/v1/info")).await;
    let now = info["confirmed_milestone"].as_u64().unwrap();
    assert!(
        now >= confirmed,
        "restarted at {now}, stopped at {confirmed} or later"
    );
    let at = |i: u64| get(r.url(&format!("/api/v1/milestones/{i}")));
    assert_eq!(at(confirmed).await["ledger_digest"], digest);
    assert_eq!(at(now).await["ledger_digest"], info["ledger_digest"]);
    assert_eq!(account(&r, &ev.address()).await, (500, 5));
    assert_eq!(supply(&r).await, (genesis_supply, 200));
    // The state proofs of the restarted node (milestones paused, so the state holds still)
    // check with the genesis alone: the EV's balance, the channel, a stranger's absence.
    use dag_core::proof::StateEntry;
    let state_proof = |path: String| state_entry(&r, &params, path, now);
    let StateEntry::Account {
        account: Some(acc), ..
    } = state_proof(format!("/api/v1/accounts/{}/proof", ev.address())).await
    else {
        panic!("the EV's account is proven present")
    };
    assert_eq!((acc.balance, acc.next_seq), (500, 5));
    let channel_id = dag_core::crypto::channel_id(&ev.address(), 4);
    let StateEntry::Channel {
        channel: Some(ch), ..
    } = state_proof(format!("/api/v1/channels/{channel_id}/proof")).await
    else {
        panic!("the channel is proven open")
    };
    assert_eq!((ch.deposit, ch.payee, ch.closed), (200, charger, false));
    let stranger = Keypair::from_seed(&[0x77; 32]).address();
    assert!(matches!(
        state_proof(format!("/api/v1/accounts/{stranger}/proof")).await,
        StateEntry::Account { account: None, .. }
    ));
    let fa2 = get(r.url(&format!(
        "/api/v1/payloads/{}",
        ra["payload_id"].as_str().unwrap()
    )))
    .await;
    assert_eq!(fa2["status"], fa["status"]);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_submissions_get_the_right_status_and_change_nothing() {
    let dir = new_dev_dir();
    let genesis = read_genesis(&dir.path().join("genesis.toml")).unwrap();
    let net = genesis.network_id();
    let r = start(dir.path(), 3_600_000).await;
    let client = reqwest::Client::new();
    let before = get(r.url("/api/v1/info")).await;

    let post_raw = |body: Vec<u8>| {
        client
            .post(r.url("/api/v1/transactions"))
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
    };

    // Malformed bytes.
    assert_eq!(post_raw(vec![1, 2, 3]).await.unwrap().status(), 400);
    // Oversized (beyond the transaction cap, under the body limit).
    assert_eq!(post_raw(vec![0u8; 5000]).await.unwrap().status(), 413);

    let kp = Keypair::from_seed(&[31; 32]);
    let tip: TxId = get(r.url("/api/v1/tips")).await["tips"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let build = |network_id: u64, payload: SignedPayload| {
        let mut tx = Transaction {
            version: dag_core::TX_VERSION,
            network_id,
            parents: [tip, TxId::GENESIS],
            timestamp: node::runtime::now_ms(),
            payload: Payload::Signed(payload),
            nonce: 0,
        };
        if tip == TxId::GENESIS {
            tx.parents = [TxId::GENESIS, TxId::GENESIS];
        }
        pow::solve(&mut tx, genesis.pow_difficulty);
        codec::encode(&tx)
    };
    // Wrongly signed: the signature is for another seq.
    let mut forged = pay(&kp, net, 0, Address([1; 32]), 1);
    forged.seq = 1;
    assert_eq!(post_raw(build(net, forged)).await.unwrap().status(), 422);
    // Wrong network.
    let other_net = pay(&kp, net ^ 1, 0, Address([1; 32]), 1);
    assert_eq!(
        post_raw(build(net ^ 1, other_net)).await.unwrap().status(),
        422
    );
    // A valid transaction is accepted once, then a resubmission conflicts.
    let good = build(net, pay(&kp, net, 0, Address([1; 32]), 1));
    assert_eq!(post_raw(good.clone()).await.unwrap().status(), 201);
    assert_eq!(post_raw(good).await.unwrap().status(), 409);
    // Bad JSON payload.
    let resp = client
        .post(r.url("/api/v1/payloads"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert!(
        err["code"].is_string() && err["message"].is_string(),
        "{err}"
    );

    // A zero faucet payment is refused up front.
    let resp = client
        .post(r.url("/api/v1/faucet"))
        .json(&json!({"address": kp.address(), "amount": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);

    let after = get(r.url("/api/v1/info")).await;
    assert_eq!(
        after["transactions"].as_u64().unwrap(),
        before["transactions"].as_u64().unwrap() + 1,
        "only the one valid transaction was added"
    );
    assert_eq!(after["ledger_digest"], before["ledger_digest"]);
    r.stop().await;
}

/// Waits until `/info` satisfies `done` (bounded only against hangs, see `wait_final`).
async fn wait_info(r: &Running, mut done: impl FnMut(&Value) -> bool) -> Value {
    const HANG_GUARD: Duration = Duration::from_secs(180);
    let start = tokio::time::Instant::now();
    loop {
        let info = get(r.url("/api/v1/info")).await;
        if done(&info) {
            return info;
        }
        assert!(start.elapsed() < HANG_GUARD, "info never got there: {info}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A node with `keep_milestones` forgets old history: old milestones, transactions and
/// payloads answer 410 `pruned`, accounts stay exact, and a restart loads only the kept
/// history and carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pruning_node_answers_410_for_old_history_and_restarts() {
    let dir = new_dev_dir();
    let genesis = read_genesis(&dir.path().join("genesis.toml")).unwrap();
    let net = genesis.network_id();
    let toml = dir.path().join("node.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    // `init` writes a commented `[pruning]` table; set it.
    assert!(text.contains("# keep_milestones = 60"), "{text}");
    std::fs::write(
        &toml,
        text.replace("# keep_milestones = 60", "keep_milestones = 2"),
    )
    .unwrap();
    let r = start(dir.path(), 100).await;

    let ev = Keypair::from_seed(&[31; 32]);
    let charger = Keypair::from_seed(&[32; 32]).address();
    let resp = reqwest::Client::new()
        .post(r.url("/api/v1/faucet"))
        .json(&json!({"address": ev.address().to_string(), "amount": 1_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let receipt: Value = resp.json().await.unwrap();
    wait_final(&r, receipt["payload_id"].as_str().unwrap()).await;
    let resp = post_payload(&r, &pay(&ev, net, 0, charger, 100)).await;
    let paid: Value = resp.json().await.unwrap();
    let fin = wait_final(&r, paid["payload_id"].as_str().unwrap()).await;
    assert_eq!(fin["status"], "confirmed");
    let tx = fin["transactions"][0].as_str().unwrap().to_string();
    let confirmed_at = get(r.url(&format!("/api/v1/transactions/{tx}/metadata"))).await
        ["confirmed_by"]
        .as_u64()
        .unwrap();
    // Wait until the payment's milestone is pruned.
    let info = wait_info(&r, |i| {
        i["oldest_milestone"].as_u64().unwrap() > confirmed_at + 1
    })
    .await;
    assert!(info["snapshot_milestone"].is_null());
    for path in [
        format!("/api/v1/payloads/{}", paid["payload_id"].as_str().unwrap()),
        format!("/api/v1/transactions/{tx}"),
        format!("/api/v1/milestones/{confirmed_at}"),
        "/api/v1/milestones/1".to_string(),
    ] {
        let resp = reqwest::get(r.url(&path)).await.unwrap();
        assert_eq!(resp.status(), 410, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "pruned", "{path}: {body}");
    }
    // Accounts stay exact, and the latest milestone is served.
    assert_eq!(account(&r, &ev.address()).await, (900, 1));
    assert_eq!(account(&r, &charger).await.0, 100);
    let latest = get(r.url("/api/v1/milestones/latest")).await;
    assert!(latest["index"].as_u64().unwrap() >= info["oldest_milestone"].as_u64().unwrap());
    r.stop().await;

    // Restart: the node starts from its pruned store and carries on.
    let r = start(dir.path(), 100).await;
    let info = get(r.url("/api/v1/info")).await;
    assert!(info["oldest_milestone"].as_u64().unwrap() > confirmed_at);
    assert_eq!(account(&r, &ev.address()).await, (900, 1));
    let resp = post_payload(&r, &pay(&ev, net, 1, charger, 50)).await;
    assert_eq!(resp.status(), 202);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        wait_final(&r, v["payload_id"].as_str().unwrap()).await["status"],
        "confirmed"
    );
    assert_eq!(account(&r, &charger).await.0, 150);
    let health = reqwest::get(r.url("/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    r.stop().await;
}

/// `tangle-node snapshot create` on a stopped node's store, `snapshot inspect --genesis`
/// verifies it (signatures, digest, state root), and a snapshot with a byte changed is
/// refused with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_create_and_inspect_through_the_binary() {
    let dir = new_dev_dir();
    let genesis = read_genesis(&dir.path().join("genesis.toml")).unwrap();
    let r = start(dir.path(), 100).await;
    let resp = reqwest::Client::new()
        .post(r.url("/api/v1/faucet"))
        .json(
            &json!({"address": Keypair::from_seed(&[41; 32]).address().to_string(), "amount": 77}),
        )
        .send()
        .await
        .unwrap();
    let receipt: Value = resp.json().await.unwrap();
    wait_final(&r, receipt["payload_id"].as_str().unwrap()).await;
    r.stop().await;

    let bin = env!("CARGO_BIN_EXE_tangle-node");
    let out = dir.path().join("snap.tsnap");
    let run =
        |args: &[&std::ffi::OsStr]| std::process::Command::new(bin).args(args).output().unwrap();
    let created = run(&[
        "snapshot".as_ref(),
        "create".as_ref(),
        "--config".as_ref(),
        dir.path().join("node.toml").as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let genesis_file = dir.path().join("genesis.toml");
    let inspect = |file: &Path| {
        run(&[
            "snapshot".as_ref(),
            "inspect".as_ref(),
            file.as_os_str(),
            "--genesis".as_ref(),
            genesis_file.as_os_str(),
            "--json".as_ref(),
        ])
    };
    let shown = inspect(&out);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let v: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["network_id"].as_u64().unwrap(), genesis.network_id());
    assert!(v["milestone"].as_u64().unwrap() >= 1);
    assert!(v["accounts"].as_u64().unwrap() >= 2);
    // One byte changed in the middle: refused, with a reason, and exit status 1.
    let mut bytes = std::fs::read(&out).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    let bad = dir.path().join("bad.tsnap");
    std::fs::write(&bad, &bytes).unwrap();
    let refused = inspect(&bad);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("snapshot"), "{err}");

    // A new node of the same network starts from the snapshot: its ledger is the
    // snapshot's, at the snapshot's milestone. A changed snapshot is refused by `init`.
    let join = |name: &str, file: &Path| {
        run(&[
            "init".as_ref(),
            "--dir".as_ref(),
            dir.path().join(name).as_os_str(),
            "--genesis".as_ref(),
            genesis_file.as_os_str(),
            "--snapshot".as_ref(),
            file.as_os_str(),
        ])
    };
    let refused = join("tampered", &bad);
    assert!(!refused.status.success());
    let joined = join("joined", &out);
    assert!(
        joined.status.success(),
        "{}",
        String::from_utf8_lossy(&joined.stderr)
    );
    let r = start(&dir.path().join("joined"), 100).await;
    let info = get(r.url("/api/v1/info")).await;
    assert_eq!(info["confirmed_milestone"], v["milestone"]);
    assert_eq!(info["ledger_digest"], v["ledger_digest"]);
    assert_eq!(
        account(&r, &Keypair::from_seed(&[41; 32]).address())
            .await
            .0,
        77
    );
    assert_eq!(reqwest::get(r.url("/health")).await.unwrap().status(), 200);
    r.stop().await;
}

//! Committee rotation on a real node over HTTP (issue #15): the operator approves an update
//! with `POST /api/v1/admin/committee`, the node's next milestone carries it, milestones go
//! on under the new committee, `GET /api/v1/committee` shows the schedule with its evidence
//! (which a client checks from the genesis itself), and a restart keeps it (sled).

mod common;

use std::time::Duration;

use dag_core::{CommitteeSchedule, Keypair};
use node::config::NodeConfig;
use node::init::{init, read_genesis, InitOptions};
use node::service::CommitteeView;
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// Turns a hang into a failure; never decides a run that makes progress.
const HANG_GUARD: Duration = Duration::from_secs(120);
const TOKEN: &str = "rotation-test-token";

async fn until<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    common::until_some(what, HANG_GUARD, f).await
}

struct Running {
    base: String,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(cfg: NodeConfig) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(node::app::run(cfg, listener, async move {
        let _ = rx.await;
    }));
    Running { base, stop, task }
}

async fn latest(http: &reqwest::Client, base: &str) -> Option<u64> {
    let v: Value = http
        .get(format!("{base}/api/v1/milestones/latest"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["index"].as_u64()
}

async fn committee(http: &reqwest::Client, base: &str) -> CommitteeView {
    http.get(format!("{base}/api/v1/committee"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_rotates_the_committee_and_it_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    init(&InitOptions {
        dir: dir.path().to_owned(),
        genesis: None,
        network_name: "rotation".into(),
        pow_difficulty: 4,
        dev: true,
        now_ms: node::runtime::now_ms(),
    })
    .unwrap();
    let genesis = read_genesis(&dir.path().join("genesis.toml")).unwrap();
    let mut cfg = NodeConfig::load(&dir.path().join("node.toml")).unwrap();
    cfg.milestone_interval_ms = 100;
    cfg.admin_token = Some(TOKEN.into());
    cfg.mqtt_addr = None;
    let node = start(cfg.clone()).await;
    let http = reqwest::Client::new();
    let base = node.base.clone();
    let at = until("a milestone", || async {
        latest(&http, &base).await.filter(|i| *i >= 2)
    })
    .await;

    // A second key and the dev key with threshold 1: the dev node stays able to sign alone,
    // as member 1 of a committee of two (so its signatures no longer check against the
    // genesis committee, where it is member 0 of one).
    let dev_key = genesis.committee[0];
    let other = Keypair::from_seed(&[42; 32]).address();
    let from = at + 5;
    let update = json!({
        "effective_from": from,
        "committee": [other.to_string(), dev_key.to_string()],
        "threshold": 1,
    });
    let admin = |body: Value| {
        http.post(format!("{base}/api/v1/admin/committee"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
    };
    // Refused: no token, an unusable threshold, an index already past.
    let no_token = http
        .post(format!("{base}/api/v1/admin/committee"))
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
    let mut bad = update.clone();
    bad["threshold"] = json!(3);
    assert_eq!(admin(bad).await.unwrap().status(), 422);
    let mut past = update.clone();
    past["effective_from"] = json!(1);
    assert_eq!(admin(past).await.unwrap().status(), 422);
    assert_eq!(
        admin(json!({"effective_from": "x"}))
            .await
            .unwrap()
            .status(),
        400
    );
    assert!(committee(&http, &base).await.approved_update.is_none());

    let approved = admin(update).await.unwrap();
    assert_eq!(approved.status(), 200);
    let view: CommitteeView = approved.json().await.unwrap();
    assert_eq!(
        view.approved_update.map(|u| u.effective_from),
        Some(from as u32)
    );

    // The next milestone carries it; milestones continue under the new committee.
    let view = until("the rotation and two milestones after it", || async {
        let v = committee(&http, &base).await;
        let i = latest(&http, &base).await?;
        (v.epochs.len() == 2 && i >= from + 2).then_some(v)
    })
    .await;
    assert_eq!(view.epochs[1].from as u64, from);
    assert_eq!(view.epochs[1].committee, vec![other, dev_key]);
    assert_eq!(view.epochs[1].threshold, 1);
    assert!(view.approved_update.is_none(), "used up");
    // A client checks the evidence from the genesis itself.
    let checked = CommitteeSchedule::from_rotations(&genesis, &view.rotations).unwrap();
    assert_eq!(checked.at(from as u32).committee, vec![other, dev_key]);
    // A milestone after the handover names its signer by its index in the new committee.
    let m: Value = http
        .get(format!("{base}/api/v1/milestones/{}", from + 1))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["signers"], json!([1]));
    // A device checks a balance proof after the handover with the evidence; with the
    // genesis committee alone it cannot (the signer is member 1 of the new committee).
    let faucet = genesis.allocations[0].address;
    let proof: dag_core::proof::StateProof = http
        .get(format!("{base}/api/v1/accounts/{faucet}/proof"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let with = dag_core::ValidationParams::with_rotations(&genesis, &view.rotations).unwrap();
    let proven = proof.verify(&with).unwrap();
    assert!(proven.milestone as u64 >= from);
    let without = dag_core::ValidationParams::new(&genesis).unwrap();
    assert!(proof.verify(&without).is_err());
    let _ = node.stop.send(());
    node.task.await.unwrap().unwrap();

    // A restart reads the rotation back from the store and goes on.
    let node = start(cfg).await;
    let base = node.base.clone();
    let after = committee(&http, &base).await;
    assert_eq!(after.epochs, view.epochs);
    assert_eq!(after.rotations, view.rotations);
    let top = latest(&http, &base).await.unwrap();
    until("milestones after the restart", || async {
        latest(&http, &base).await.filter(|i| *i >= top + 2)
    })
    .await;
    let _ = node.stop.send(());
    node.task.await.unwrap().unwrap();
}

//! A process crash against the real binary: `tangle-node dev` is killed with SIGKILL right
//! after it acknowledged a burst of submissions (no shutdown, no final flush, no `Drop`),
//! restarted on the same data directory: every acknowledged payload is still there and
//! gets confirmed, including those the node has to reattach. (What a power loss leaves
//! cannot be produced here; `node::store` documents that guarantee.)

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// A hang guard, not a timing assertion: what is waited for takes a few milestones (1 s
/// each); the bound only turns a hang into a failure.
const HANG_GUARD: Duration = Duration::from_secs(180);

/// Starts `tangle-node dev` on `dir` with the API on a port the OS picks (bound by the node
/// itself, so no other process can take it between choosing and binding); returns the child
/// and the API base URL the node reports on stdout.
fn spawn(dir: &std::path::Path) -> (Node, String) {
    let dir = dir.to_str().expect("a UTF-8 path");
    spawn_with(&["dev", "--data-dir", dir, "--no-mqtt"])
}

/// Starts `tangle-node ARGS --api-addr 127.0.0.1:0`, as [`spawn`].
fn spawn_with(args: &[&str]) -> (Node, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tangle-node"))
        .args(args)
        .arg("--api-addr")
        .arg("127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting tangle-node");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads until the address line, then keeps draining stdout so the node never blocks
    // on (or fails writing to) a full or closed pipe.
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = line.strip_prefix("API listening on ") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        }
    });
    let base = rx
        .recv_timeout(HANG_GUARD)
        .expect("tangle-node reported no API address");
    (Node(child), base)
}

/// The node process, SIGKILLed when dropped (also when an assertion fails, so no node
/// outlives the test).
struct Node(Child);

impl Node {
    /// SIGKILL: no shutdown, no final flush.
    fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_payloads_survive_sigkill() {
    const N: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    // The listener is bound before the address is reported: requests queue until served.
    let (child, base) = spawn(dir.path());
    let api = format!("{base}/api/v1");

    // A burst of concurrent faucet payments; keep the ids of those acknowledged (2xx).
    let calls: Vec<_> = (0..N)
        .map(|i| {
            let (http, api) = (http.clone(), api.clone());
            tokio::spawn(async move {
                let r = http
                    .post(format!("{api}/faucet"))
                    .json(&json!({
                        "address": PAYEE,
                        "amount": 1 + i as u64,
                    }))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "faucet: {}", r.status());
                let v: Value = r.json().await.unwrap();
                v["payload_id"].as_str().unwrap().to_owned()
            })
        })
        .collect();
    let mut acked = Vec::new();
    for c in calls {
        acked.push(c.await.unwrap());
    }
    // No graceful shutdown: the process dies at once.
    child.kill();

    let (child, base) = spawn(dir.path());
    let api = format!("{base}/api/v1");
    // Every acknowledged payload is still known, with a carrying transaction.
    for id in &acked {
        let r = http
            .get(format!("{api}/payloads/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "payload {id} was acknowledged, then lost");
        let v: Value = r.json().await.unwrap();
        assert!(!v["transactions"].as_array().unwrap().is_empty(), "{v}");
    }
    // And every one of them gets confirmed: payloads that conflicted for a sequence gap
    // are reattached after the restart, in sequence order.
    let deadline = std::time::Instant::now() + HANG_GUARD;
    for id in &acked {
        loop {
            let v: Value = http
                .get(format!("{api}/payloads/{id}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if v["status"] == "confirmed" {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "payload {id} not confirmed after the restart: {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    child.kill();
}

/// A payee (an Ed25519 did:key).
const PAYEE: &str = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";

/// Sends SIGTERM and waits for the process to end (a hang guard turns a node that never
/// stops into a failure); returns its exit status.
#[cfg(unix)]
fn terminate(mut node: Node) -> std::process::ExitStatus {
    let pid = rustix::process::Pid::from_raw(node.0.id() as i32).expect("a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let deadline = std::time::Instant::now() + HANG_GUARD;
    loop {
        if let Some(status) = node.0.try_wait().unwrap() {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tangle-node did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Submits a faucet payment; returns its payload id once the node acknowledged it.
async fn faucet(http: &reqwest::Client, base: &str, amount: u64) -> String {
    let r = http
        .post(format!("{base}/api/v1/faucet"))
        .json(&json!({"address": PAYEE, "amount": amount}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "faucet: {}", r.status());
    r.json::<Value>().await.unwrap()["payload_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits until payload `id` is confirmed (hang guard only).
async fn confirmed(http: &reqwest::Client, base: &str, id: &str) {
    let deadline = std::time::Instant::now() + HANG_GUARD;
    loop {
        let r = http
            .get(format!("{base}/api/v1/payloads/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "payload {id} was acknowledged, then lost");
        let v: Value = r.json().await.unwrap();
        if v["status"] == "confirmed" {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "payload {id} not confirmed: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The node's confirmed milestone and the payee's balance.
async fn progress(http: &reqwest::Client, base: &str) -> (u64, u64) {
    let info: Value = http
        .get(format!("{base}/api/v1/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let acc: Value = http
        .get(format!("{base}/api/v1/accounts/{PAYEE}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        info["confirmed_milestone"]
            .as_u64()
            .expect("confirmed_milestone"),
        acc["balance"].as_u64().unwrap_or(0),
    )
}

/// SIGTERM (what systemd, `docker stop` and `kill` send) stops `tangle-node dev` cleanly:
/// it exits with success, and a restart finds everything it had acknowledged.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_node_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let (child, base) = spawn(dir.path());
    let id = faucet(&http, &base, 5).await;
    let status = terminate(child);
    assert!(status.success(), "exit after SIGTERM: {status:?}");
    let (child, base) = spawn(dir.path());
    confirmed(&http, &base, &id).await;
    drop(child);
}

/// The same for `tangle-node run` (a node directory made by `init`): exit status 0 after
/// SIGTERM, three times in a row, and each restart carries on from where the node stopped:
/// no confirmed milestone lost, the payee's balance exactly what was paid.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_run_node_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let rep = node::init::init(&node::init::InitOptions {
        dir: dir.path().join("node"),
        genesis: None,
        network_name: "sigterm".into(),
        pow_difficulty: 1,
        dev: true,
        now_ms: node::runtime::now_ms(),
    })
    .unwrap();
    let config = rep.config.to_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let (mut ids, mut paid, mut stopped_at): (Vec<String>, u64, u64) = (Vec::new(), 0, 0);
    for round in 0..3 {
        let (child, base) = spawn_with(&["run", "--config", &config]);
        let (milestone, balance) = progress(&http, &base).await;
        assert!(
            milestone >= stopped_at,
            "round {round}: restarted at milestone {milestone}, stopped at {stopped_at}"
        );
        assert_eq!(balance, paid, "round {round}: balance after the restart");
        for id in &ids {
            confirmed(&http, &base, id).await;
        }
        let id = faucet(&http, &base, 1 + round).await;
        confirmed(&http, &base, &id).await;
        paid += 1 + round;
        ids.push(id);
        let (milestone, balance) = progress(&http, &base).await;
        assert_eq!(balance, paid, "round {round}: balance before SIGTERM");
        stopped_at = milestone;
        let status = terminate(child);
        assert!(
            status.success(),
            "round {round}: exit after SIGTERM: {status:?}"
        );
    }
}

/// A SIGTERM that arrives while the node is still starting (right after it bound its API
/// address, before or while it opens and restores its store) is not the default action's
/// instant death: the node finishes starting, stops cleanly and exits with success, and
/// opens again. Whenever the signal lands, the exit status must be 0.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_starting_stops_the_node_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let (child, base) = spawn(dir.path());
    let id = faucet(&http, &base, 7).await;
    confirmed(&http, &base, &id).await;
    assert!(terminate(child).success());
    // The API address is printed once bound, before the store is opened and restored.
    for round in 0..3 {
        let (child, _) = spawn(dir.path());
        let status = terminate(child);
        assert!(
            status.success(),
            "round {round}: SIGTERM during start: {status:?}"
        );
    }
    let (child, base) = spawn(dir.path());
    confirmed(&http, &base, &id).await;
    drop(child);
}

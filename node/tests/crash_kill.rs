//! A process crash against the real binary: `tangle-node dev` is killed with SIGKILL right
//! after it acknowledged a burst of submissions (no shutdown, no final flush, no `Drop`),
//! restarted on the same data directory: every acknowledged payload is still there and
//! gets confirmed, including those the node has to reattach. (What a power loss leaves
//! cannot be produced here; `node::store` documents that guarantee.)

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(dir: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tangle-node"))
        .arg("dev")
        .arg("--data-dir")
        .arg(dir)
        .arg("--api-addr")
        .arg(format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting tangle-node")
}

async fn wait_up(http: &reqwest::Client, base: &str) {
    for _ in 0..600 {
        if http.get(format!("{base}/health")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("tangle-node did not come up at {base}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_payloads_survive_sigkill() {
    const N: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let api = format!("{base}/api/v1");
    let http = reqwest::Client::new();
    let mut child = spawn(dir.path(), port);
    wait_up(&http, &base).await;

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
    child.kill().unwrap();
    child.wait().unwrap();

    let mut child = spawn(dir.path(), port);
    wait_up(&http, &base).await;
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
    // are reattached after the restart, in sequence order. The deadline is generous for a
    // loaded CI machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
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
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A payee (an Ed25519 did:key).
const PAYEE: &str = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";

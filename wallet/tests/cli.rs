//! The `tangle-wallet` binary against a real in-process dev node: the scripted contract
//! (`--json` shapes, exit codes, env vars), payments with `--wait`, channels and anchors.

#![cfg(feature = "cli")]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::TestNode;
use dag_core::{Address, PayloadId};
use serde_json::Value;
use wallet::client::{NodeClient, PayloadStatus};

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }
}

/// Runs the binary with `--keystore ks --node url` and `args`, password from the env.
fn wallet(ks: &Path, url: &str, args: &[&str]) -> Out {
    wallet_env(
        args,
        &[
            ("TANGLE_WALLET_KEYSTORE", ks.to_str().unwrap()),
            ("TANGLE_NODE_URL", url),
            ("TANGLE_WALLET_PASSWORD", "correct horse"),
        ],
    )
}

fn wallet_env(args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tangle-wallet"));
    cmd.args(args)
        .env_remove("TANGLE_WALLET_KEYSTORE")
        .env_remove("TANGLE_NODE_URL")
        .env_remove("TANGLE_WALLET_PASSWORD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    let out = Out {
        code: o.status.code().expect("exited, not killed by a signal"),
        stdout: String::from_utf8(o.stdout).unwrap(),
        stderr: String::from_utf8(o.stderr).unwrap(),
    };
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    out
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(|s| s.as_str()).collect();
    k.sort_unstable();
    k
}

/// How long a test waits for a payload or a milestone before failing: a hang guard far above
/// what anything needs with 100 ms milestones, not a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(180);

fn fund(url: &str, to: &str, amount: u64) {
    let c = NodeClient::new(url).unwrap();
    let r = c.faucet(&to.parse().unwrap(), amount).unwrap();
    let s = c.wait_final(&r.payload_id, HANG_GUARD).unwrap();
    assert!(matches!(s, PayloadStatus::Confirmed { .. }), "{s:?}");
}

#[test]
fn init_address_balance_pay_contract() {
    let node = TestNode::start(100);
    let dir = tempfile::tempdir().unwrap();
    let ev_ks = dir.path().join("ev/keystore.json");
    let charger_ks = dir.path().join("charger.json");
    let url = node.url.as_str();

    // init: network id from the node; refuses to overwrite.
    // The EV keystore uses a light KDF (as a small device would) so this test runs fast; the
    // charger's uses the defaults.
    // `--genesis` pins the network's genesis next to the keystore: `--wait` checks proofs
    // against its committee from then on.
    let genesis = node.genesis_path.to_str().unwrap();
    let o = wallet(
        &ev_ks,
        url,
        &[
            "--json",
            "init",
            "--kdf-memory-kib",
            "64",
            "--kdf-iterations",
            "1",
            "--genesis",
            genesis,
        ],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let init = o.json();
    assert_eq!(keys(&init), ["address", "did", "keystore", "network_id"]);
    assert_eq!(init["network_id"], node.network_id);
    let o = wallet(&ev_ks, url, &["init", "--network-id", "1"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("already exists"), "{}", o.stderr);

    // address: exactly {"address", "did"}, the same key twice.
    let o = wallet(&ev_ks, url, &["address", "--json"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let addr = o.json();
    assert_eq!(keys(&addr), ["address", "did"]);
    assert_eq!(addr["address"], init["address"]);
    let ev: Address = addr["address"].as_str().unwrap().parse().unwrap();
    let ev_did: Address = addr["did"].as_str().unwrap().parse().unwrap();
    assert_eq!(ev, ev_did);
    assert!(addr["did"].as_str().unwrap().starts_with("did:key:z6Mk"));
    // Human output names both too.
    let o = wallet(&ev_ks, url, &["address"]);
    assert!(o.stdout.contains(addr["address"].as_str().unwrap()));
    assert!(o.stdout.contains(addr["did"].as_str().unwrap()));

    // balance: exactly {"balance", "next_seq"}.
    fund(url, addr["address"].as_str().unwrap(), 10_000);
    let o = wallet(&ev_ks, url, &["--json", "balance"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(
        o.json(),
        serde_json::json!({"balance": 10_000, "next_seq": 0})
    );

    // pay to a did:key, --wait: exactly {"payload_id"}, confirmed (and proven).
    let o = wallet(&charger_ks, url, &["--json", "init"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let charger_did = o.json()["did"].as_str().unwrap().to_string();
    // The charger's keystore pinned no genesis: its `--wait` refuses to run (nothing is
    // submitted) unless told where the committee is, or to trust the node.
    fund(url, &charger_did, 10);
    let elsewhere = Address([9; 32]).to_bech32();
    let o = wallet(&charger_ks, url, &["pay", &elsewhere, "1", "--wait"]);
    assert_eq!(o.code, 1, "{} {}", o.stdout, o.stderr);
    assert!(o.stderr.contains("--trust-node"), "{}", o.stderr);
    let o = wallet(&charger_ks, url, &["--json", "balance"]);
    assert_eq!(o.json(), serde_json::json!({"balance": 10, "next_seq": 0}));
    let o = wallet(
        &charger_ks,
        url,
        &["pay", &elsewhere, "1", "--wait", "--trust-node"],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = wallet(
        &charger_ks,
        url,
        &["pay", &elsewhere, "1", "--wait", "--genesis", genesis],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = wallet(
        &ev_ks,
        url,
        &[
            "--json",
            "pay",
            &charger_did,
            "250",
            "--memo",
            "kWh",
            "--wait",
        ],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let pay = o.json();
    assert_eq!(keys(&pay), ["payload_id"]);
    let id: PayloadId = pay["payload_id"].as_str().unwrap().parse().unwrap();
    let client = NodeClient::new(url).unwrap();
    assert!(matches!(
        client.payload(&id).unwrap().status,
        PayloadStatus::Confirmed { .. }
    ));
    let o = wallet(&ev_ks, url, &["--json", "balance"]);
    assert_eq!(
        o.json(),
        serde_json::json!({"balance": 9_750, "next_seq": 1})
    );
    let o = wallet(&charger_ks, url, &["--json", "balance"]);
    assert_eq!(o.json()["balance"], 8 + 250);

    // Overspending with --wait: conflicting, exit 3, the payload id is still printed.
    let o = wallet(
        &ev_ks,
        url,
        &["--json", "pay", &charger_did, "1000000", "--wait"],
    );
    assert_eq!(o.code, 3, "{} {}", o.stdout, o.stderr);
    assert_eq!(keys(&o.json()), ["payload_id"]);
    assert!(o.stderr.contains("conflicting"), "{}", o.stderr);
    // The conflicting payment used its sequence number: the next payment applies.
    let o = wallet(&ev_ks, url, &["pay", &charger_did, "100", "--wait"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("confirmed"), "{}", o.stdout);
    let o = wallet(&ev_ks, url, &["--json", "balance"]);
    assert_eq!(
        o.json(),
        serde_json::json!({"balance": 9_650, "next_seq": 3})
    );

    // history: the three payloads, in order, with their status.
    let o = wallet(&ev_ks, url, &["--json", "history", "--status"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let h = o.json();
    let h = h.as_array().unwrap();
    let summary: Vec<(u64, &str, &str)> = h
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                e["kind"].as_str().unwrap(),
                e["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (0, "pay", "confirmed"),
            (1, "pay", "conflicting"),
            (2, "pay", "confirmed")
        ]
    );
    assert_eq!(h[0]["payload_id"], pay["payload_id"]);
    assert_eq!(h[0]["details"]["amount"], 250);

    // Errors: clear message, non-zero exit, no panic.
    let o = wallet_env(
        &["--keystore", ev_ks.to_str().unwrap(), "address"],
        &[("TANGLE_WALLET_PASSWORD", "wrong")],
    );
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("wrong password"), "{}", o.stderr);
    let o = wallet(&ev_ks, url, &["pay", "tng1notanaddress", "5"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    let o = wallet(&ev_ks, "http://127.0.0.1:1", &["balance"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("unreachable"), "{}", o.stderr);
    let o = wallet(&dir.path().join("none.json"), url, &["balance"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("tangle-wallet init"), "{}", o.stderr);
    let o = wallet(&ev_ks, url, &["pay", &charger_did, "0"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("greater than zero"), "{}", o.stderr);
}

#[test]
fn channel_session_and_anchor_through_the_cli() {
    let node = TestNode::start(100);
    let dir = tempfile::tempdir().unwrap();
    let ev_ks = dir.path().join("ev.json");
    let charger_ks = dir.path().join("charger.json");
    let url = node.url.as_str();
    let nid = node.network_id.to_string();
    let genesis = node.genesis_path.to_str().unwrap();
    for ks in [&ev_ks, &charger_ks] {
        let o = wallet(
            ks,
            url,
            &[
                "init",
                "--network-id",
                &nid,
                "--kdf-memory-kib",
                "64",
                "--genesis",
                genesis,
            ],
        );
        assert_eq!(o.code, 0, "{}", o.stderr);
    }
    let ev = wallet(&ev_ks, url, &["--json", "address"]).json()["address"]
        .as_str()
        .unwrap()
        .to_string();
    let charger = wallet(&charger_ks, url, &["--json", "address"]).json()["address"]
        .as_str()
        .unwrap()
        .to_string();
    fund(url, &ev, 5_000);

    // Open (ledger payload 1).
    let o = wallet(
        &ev_ks,
        url,
        &[
            "--json",
            "channel",
            "open",
            &charger,
            "100",
            "--expires-in",
            "1000",
            "--wait",
        ],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let open = o.json();
    let ch = open["channel_id"].as_str().unwrap().to_string();
    assert_eq!(open["deposit"], 100);

    // Four vouchers of 25, off the ledger (works with no node at all); a fifth would exceed
    // the deposit.
    let mut last = String::new();
    for _ in 0..4 {
        let o = wallet(
            &ev_ks,
            "http://127.0.0.1:1",
            &["channel", "voucher", &ch, "25"],
        );
        assert_eq!(o.code, 0, "{}", o.stderr);
        last = o.stdout.trim().to_string();
        assert_eq!(last.len(), 2 * wallet::Voucher::ENCODED_LEN);
    }
    let o = wallet(&ev_ks, url, &["channel", "voucher", &ch, "1"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("exceed the deposit"), "{}", o.stderr);

    // A tampered voucher is refused; the real one is claimed (ledger payload 2).
    let mut forged = last.clone().into_bytes();
    let i = forged.len() - 1;
    forged[i] = if forged[i] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).unwrap();
    let o = wallet(&charger_ks, url, &["channel", "claim", &ch, &forged]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("voucher refused"), "{}", o.stderr);
    let o = wallet(
        &charger_ks,
        url,
        &["--json", "channel", "claim", &ch, &last, "--wait"],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.json()["amount"], 100);
    let o = wallet(&ev_ks, url, &["--json", "balance"]);
    assert_eq!(
        o.json(),
        serde_json::json!({"balance": 4_900, "next_seq": 1})
    );
    let o = wallet(&charger_ks, url, &["--json", "balance"]);
    assert_eq!(o.json(), serde_json::json!({"balance": 100, "next_seq": 1}));
    let o = wallet(&ev_ks, url, &["--json", "channel", "status", &ch]);
    assert_eq!(o.json()["closed"], true);
    assert_eq!(o.json()["claimed"], 100);

    // Anchor a file, verify it, then tamper with it.
    let file = dir.path().join("reading.csv");
    std::fs::write(&file, "2024-01-01T00:00Z,21.5\n").unwrap();
    let f = file.to_str().unwrap();
    let o = wallet(
        &ev_ks,
        url,
        &["--json", "anchor", f, "--tag", "meter-7", "--wait"],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let anchor = o.json();
    let id = anchor["payload_id"].as_str().unwrap();
    assert_eq!(
        anchor["digest"],
        wallet::hash_file(&file).unwrap().to_hex().as_str()
    );
    let o = wallet(&ev_ks, url, &["--json", "verify-anchor", f, id]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.json()["valid"], true);
    assert_eq!(o.json()["tag"], "meter-7");
    std::fs::write(&file, "2024-01-01T00:00Z,99.9\n").unwrap();
    let o = wallet(&ev_ks, url, &["--json", "verify-anchor", f, id]);
    assert_eq!(o.code, 4, "{}", o.stderr);
    assert_eq!(o.json()["valid"], false);

    // Refund: refused before expiry (and to anyone but the payer), then once the channel
    // expired the whole deposit comes back.
    let open_channel = |deposit: &str, expires_in: &str| {
        let o = wallet(
            &ev_ks,
            url,
            &[
                "--json",
                "channel",
                "open",
                &charger,
                deposit,
                "--expires-in",
                expires_in,
                "--wait",
            ],
        );
        assert_eq!(o.code, 0, "{}", o.stderr);
        o.json()["channel_id"].as_str().unwrap().to_string()
    };
    let long = open_channel("300", "100000");
    let o = wallet(&ev_ks, url, &["channel", "refund", &long]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("refund is possible from"), "{}", o.stderr);
    let o = wallet(&charger_ks, url, &["channel", "refund", &long]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("not this channel's payer"),
        "{}",
        o.stderr
    );
    let short = open_channel("200", "3");
    let o = wallet(&ev_ks, url, &["--json", "balance"]);
    assert_eq!(o.json()["balance"], 4_900 - 300 - 200);
    // Wait for the node to confirm a milestone past the expiry, then the refund goes through.
    let o = wallet(&ev_ks, url, &["--json", "channel", "status", &short]);
    let expires_at = o.json()["expires_at"].as_u64().unwrap();
    let c = NodeClient::new(url).unwrap();
    let start = std::time::Instant::now();
    while u64::from(c.info().unwrap().confirmed_milestone) <= expires_at {
        // A hang guard (milestones come every 100 ms), not a timing assertion.
        assert!(
            start.elapsed() < HANG_GUARD,
            "no milestone past {expires_at}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = wallet(
        &ev_ks,
        url,
        &["--json", "channel", "refund", &short, "--wait"],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.json()["amount"], 200);
    let o = wallet(&ev_ks, url, &["--json", "balance"]);
    assert_eq!(o.json()["balance"], 4_900 - 300);
}

#[test]
fn init_restore_recovers_the_same_key_offline() {
    use std::io::Write;
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let ks = dir.path().join("restored.json");
    let mnemonic = wallet::Mnemonic::from_entropy(&[0x42; 32]).unwrap();
    let expected = mnemonic
        .to_seed("")
        .device_keypair(wallet::DEFAULT_COIN_TYPE, 0, 0)
        .address();
    // --network-id: no node needed (the URL points nowhere).
    let mut child = Command::new(env!("CARGO_BIN_EXE_tangle-wallet"))
        .args(["--json", "--keystore", ks.to_str().unwrap()])
        .args(["--node", "http://127.0.0.1:1", "init", "--restore"])
        .args(["--network-id", "7", "--kdf-memory-kib", "64"])
        .env("TANGLE_WALLET_PASSWORD", "pw")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(
        child.stdin.take().unwrap(),
        "{}",
        mnemonic.phrase().as_str()
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["address"], expected.to_bech32().as_str());
    assert_eq!(v["network_id"], 7);
    assert!(
        v.get("mnemonic").is_none(),
        "the phrase is not printed unasked"
    );
    let reopened = wallet::Keystore::open(&ks, "pw").unwrap();
    assert_eq!(reopened.device(0).address(), expected);
    assert_eq!(reopened.network_id(), 7);

    // A bad phrase is refused and creates nothing.
    let other = dir.path().join("bad.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tangle-wallet"))
        .args(["--keystore", other.to_str().unwrap(), "init", "--restore"])
        .args(["--network-id", "7"])
        .env("TANGLE_WALLET_PASSWORD", "pw")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "not a real phrase at all").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid backup phrase"));
    assert!(!other.exists());
}

/// Serves `body` as JSON to every request, like a node that lies: whatever it is asked.
fn lying_node(body: String) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                body.len(),
                body
            );
        }
    });
    url
}

#[test]
fn proofs_are_checked_against_the_genesis_not_the_node() {
    let node = TestNode::start(100);
    let other = TestNode::start(100);
    let to = Address([77; 32]).to_bech32();
    let c = NodeClient::new(&node.url).unwrap();
    let r = c.faucet(&to.parse().unwrap(), 5).unwrap();
    let s = c.wait_final(&r.payload_id, HANG_GUARD).unwrap();
    assert!(matches!(s, PayloadStatus::Confirmed { .. }), "{s:?}");
    let id = r.payload_id.to_hex();
    let genesis = node.genesis_path.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("proof.json");
    let env = [("TANGLE_NODE_URL", node.url.as_str())];

    // Fetched and checked, saved, checked again offline.
    let out = wallet_env(
        &[
            "--json",
            "proof",
            &id,
            "--genesis",
            genesis,
            "--out",
            saved.to_str().unwrap(),
        ],
        &env,
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v = out.json();
    assert_eq!(v["valid"], true);
    assert_eq!(v["applied"], true);
    assert_eq!(v["payload_id"], id.as_str());
    let out = wallet_env(
        &[
            "verify-proof",
            saved.to_str().unwrap(),
            "--genesis",
            genesis,
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.starts_with("OK"), "{}", out.stdout);

    // Against another network's genesis (another committee): refused, exit 4.
    let out = wallet_env(
        &[
            "verify-proof",
            saved.to_str().unwrap(),
            "--genesis",
            other.genesis_path.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);

    // A lying node serving the proof of another transaction (the proven one with its last
    // byte changed) as that of the payload: refused, exit 4.
    let text = std::fs::read_to_string(&saved).unwrap();
    let mut proof: Value = serde_json::from_str(&text).unwrap();
    let tx = proof["transaction"].as_str().unwrap().to_string();
    let (head, last) = tx.split_at(tx.len() - 1);
    let flipped = format!("{head}{}", if last == "0" { "1" } else { "0" });
    proof["transaction"] = Value::String(flipped);
    let liar = lying_node(proof.to_string());
    let out = wallet_env(
        &["--json", "proof", &id, "--genesis", genesis],
        &[("TANGLE_NODE_URL", liar.as_str())],
    );
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    assert_eq!(out.json()["valid"], false);

    // A lying node serving a real proof of another payload: refused (not the one asked for).
    let r2 = c.faucet(&to.parse().unwrap(), 6).unwrap();
    c.wait_final(&r2.payload_id, HANG_GUARD).unwrap();
    let liar =
        lying_node(serde_json::to_string(&c.payload_proof(&r2.payload_id).unwrap()).unwrap());
    let out = wallet_env(
        &["proof", &id, "--genesis", genesis],
        &[("TANGLE_NODE_URL", liar.as_str())],
    );
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
}

/// A proxy to the node at `real` that forwards every request but those `lie` answers itself
/// (status, JSON body): a compromised node in front of an honest network.
fn lying_proxy(
    real: String,
    lie: impl Fn(&str, &str) -> Option<(u16, String)> + Send + 'static,
) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let http = reqwest::blocking::Client::new();
        for stream in listener.incoming().flatten() {
            let mut r = BufReader::new(stream);
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or("GET").to_string();
            let path = parts.next().unwrap_or("/").to_string();
            let (mut len, mut headers) = (0usize, Vec::new());
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim_end().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.trim_end().split_once(':') {
                    let (k, v) = (k.to_ascii_lowercase(), v.trim().to_string());
                    match k.as_str() {
                        "content-length" => len = v.parse().unwrap_or(0),
                        "content-type" | "accept" => headers.push((k, v)),
                        _ => {}
                    }
                }
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_err() {
                continue;
            }
            // A buffering proxy cannot pass an event stream on: it says it has none (the
            // wallet then polls).
            let lie_or_no_stream = lie(&method, &path).or_else(|| {
                path.starts_with("/api/v1/events").then(|| {
                    (
                        404,
                        r#"{"code":"not_found","message":"no event stream"}"#.to_string(),
                    )
                })
            });
            let (status, ctype, out) = match lie_or_no_stream {
                Some((code, json)) => (code, "application/json".to_string(), json.into_bytes()),
                None => {
                    let method: reqwest::Method = method.parse().unwrap();
                    let mut req = http.request(method, format!("{real}{path}")).body(body);
                    for (k, v) in headers {
                        req = req.header(k, v);
                    }
                    match req.send() {
                        Ok(resp) => {
                            let code = resp.status().as_u16();
                            let ctype = resp
                                .headers()
                                .get("content-type")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("application/json")
                                .to_string();
                            (
                                code,
                                ctype,
                                resp.bytes().map(|b| b.to_vec()).unwrap_or_default(),
                            )
                        }
                        Err(_) => (502, "text/plain".to_string(), b"bad gateway".to_vec()),
                    }
                }
            };
            let mut s = r.into_inner();
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                out.len()
            );
            let _ = s.write_all(&out);
        }
    });
    url
}

#[test]
fn wait_and_verify_anchor_refuse_what_a_lying_node_cannot_prove() {
    let node = TestNode::start(100);
    let dir = tempfile::tempdir().unwrap();
    let ks = dir.path().join("ev.json");
    let genesis = node.genesis_path.to_str().unwrap();
    let o = wallet(
        &ks,
        &node.url,
        &[
            "--json",
            "init",
            "--kdf-memory-kib",
            "64",
            "--genesis",
            genesis,
        ],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let me = o.json()["address"].as_str().unwrap().to_string();
    fund(&node.url, &me, 1_000);
    let to = Address([5; 32]).to_bech32();

    // A node that answers the proof of every payload with the (valid) proof of another one:
    // the payment is real and confirmed, but the wallet cannot see it proven, so `--wait`
    // fails with exit 4 rather than report success on the node's word.
    let c = NodeClient::new(&node.url).unwrap();
    let other = c.faucet(&to.parse().unwrap(), 3).unwrap();
    c.wait_final(&other.payload_id, HANG_GUARD).unwrap();
    let swapped = serde_json::to_string(&c.payload_proof(&other.payload_id).unwrap()).unwrap();
    let liar = lying_proxy(node.url.clone(), move |m, p| {
        (m == "GET" && p.ends_with("/proof")).then(|| (200, swapped.clone()))
    });
    let o = wallet(&ks, &liar, &["--json", "pay", &to, "7", "--wait"]);
    assert_eq!(o.code, 4, "{} {}", o.stdout, o.stderr);
    assert!(o.stderr.contains("another payload"), "{}", o.stderr);
    // The same payment through the honest node proves fine.
    let o = wallet(&ks, &node.url, &["--json", "pay", &to, "7", "--wait"]);
    assert_eq!(o.code, 0, "{}", o.stderr);

    // A node that says an anchor that never was is confirmed, and has no proof of it.
    let file = dir.path().join("reading.csv");
    std::fs::write(&file, "42\n").unwrap();
    let ghost = PayloadId([0xab; 32]).to_hex();
    let tx = "cd".repeat(32);
    let fake = serde_json::json!({
        "payload_id": ghost, "issuer": me, "seq": 0, "kind": "anchor",
        "transactions": [tx], "status": "confirmed", "milestone": 3, "transaction_id": tx,
    })
    .to_string();
    let asked = format!("/api/v1/payloads/{ghost}");
    let liar = lying_proxy(node.url.clone(), move |_, p| {
        if p == asked {
            Some((200, fake.clone()))
        } else if p.ends_with("/proof") {
            Some((
                404,
                r#"{"code":"not_found","message":"unknown payload"}"#.into(),
            ))
        } else {
            None
        }
    });
    let o = wallet(
        &ks,
        &liar,
        &["--json", "verify-anchor", file.to_str().unwrap(), &ghost],
    );
    assert_eq!(o.code, 4, "{} {}", o.stdout, o.stderr);
    assert!(o.stderr.contains("serves no proof"), "{}", o.stderr);
}

#[test]
fn balance_prove_reads_the_balance_from_a_proof_and_refuses_a_lie() {
    let node = TestNode::start(100);
    let dir = tempfile::tempdir().unwrap();
    let ks = dir.path().join("meter.json");
    let genesis = node.genesis_path.to_str().unwrap();
    let o = wallet(
        &ks,
        &node.url,
        &["--json", "init", "--kdf-memory-kib", "64"],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let me = o.json()["address"].as_str().unwrap().to_string();
    // Without a genesis there is nothing to check the proof against.
    let o = wallet(&ks, &node.url, &["--json", "balance", "--prove"]);
    assert_eq!(o.code, 1, "{}", o.stdout);
    assert!(o.stderr.contains("--genesis"), "{}", o.stderr);
    fund(&node.url, &me, 1_234);
    let o = wallet(
        &ks,
        &node.url,
        &["--json", "--genesis", genesis, "balance", "--prove"],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v = o.json();
    assert_eq!(
        (v["balance"].as_u64(), v["next_seq"].as_u64()),
        (Some(1_234), Some(0))
    );
    assert!(v["milestone"].as_u64().unwrap() >= 1, "{v}");

    // A node that inflates the balance in its proof, and one that serves another
    // account's (valid) proof: both refused with exit 4.
    let c = NodeClient::new(&node.url).unwrap();
    let mut inflated = c.account_proof(&me.parse().unwrap()).unwrap();
    if let wallet::StateEntry::Account {
        account: Some(a), ..
    } = &mut inflated.entry
    {
        a.balance = 1_000_000;
    }
    let inflated = serde_json::to_string(&inflated).unwrap();
    let liar = lying_proxy(node.url.clone(), move |_, p| {
        p.ends_with("/proof").then(|| (200, inflated.clone()))
    });
    let o = wallet(
        &ks,
        &liar,
        &["--json", "--genesis", genesis, "balance", "--prove"],
    );
    assert_eq!(o.code, 4, "{} {}", o.stdout, o.stderr);
    assert!(o.stderr.contains("does not hold"), "{}", o.stderr);
    let other = serde_json::to_string(&c.account_proof(&Address([5; 32])).unwrap()).unwrap();
    let liar = lying_proxy(node.url.clone(), move |_, p| {
        p.ends_with("/proof").then(|| (200, other.clone()))
    });
    let o = wallet(
        &ks,
        &liar,
        &["--json", "--genesis", genesis, "balance", "--prove"],
    );
    assert_eq!(o.code, 4, "{} {}", o.stdout, o.stderr);
    assert!(o.stderr.contains("another entry"), "{}", o.stderr);
}

//! MQTT end to end: a real node (`app::run_with_mqtt`, sled store, milestone issuer, dev
//! faucet) with its MQTT server on an ephemeral port, driven (1) by a raw MQTT 3.1.1 client
//! built on rumqttc's packet codec and (2) by Debian's mosquitto clients (`mosquitto_sub`,
//! `mosquitto_pub`) as separate processes.
//!
//! The mosquitto test needs the `mosquitto-clients` package; without it, it says so and
//! passes, unless `TANGLE_REQUIRE_MQTT_CLIENTS=1` (CI sets it), where it fails.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::BytesMut;
use dag_core::{Address, Body, Keypair, SignedPayload};
use node::config::NodeConfig;
use node::init::{init, read_genesis, read_key, InitOptions};
use rumqttc::mqttbytes::v4::{Connect, Packet, Publish, Subscribe};
use rumqttc::mqttbytes::QoS;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Turns a hang into a failure; far above what any step needs, so it never decides a run
/// that makes progress.
const HANG_GUARD: Duration = Duration::from_secs(120);

struct Running {
    api: SocketAddr,
    mqtt: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

struct Dev {
    dir: tempfile::TempDir,
    net: u64,
    faucet: Keypair,
}

fn new_dev() -> Dev {
    let dir = tempfile::tempdir().unwrap();
    init(&InitOptions {
        dir: dir.path().to_owned(),
        genesis: None,
        network_name: "mqtt".into(),
        pow_difficulty: 4,
        dev: true,
        now_ms: node::runtime::now_ms(),
    })
    .unwrap();
    let net = read_genesis(&dir.path().join("genesis.toml"))
        .unwrap()
        .network_id();
    let faucet = read_key(&dir.path().join("faucet.key")).unwrap();
    Dev { dir, net, faucet }
}

async fn start(dir: &Path) -> Running {
    let mut cfg = NodeConfig::load(&dir.join("node.toml")).unwrap();
    cfg.milestone_interval_ms = 100;
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mqtt = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (api_addr, mqtt_addr) = (api.local_addr().unwrap(), mqtt.local_addr().unwrap());
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(node::app::run_with_mqtt(cfg, api, Some(mqtt), async move {
        let _ = rx.await;
    }));
    Running {
        api: api_addr,
        mqtt: mqtt_addr,
        stop,
        task,
    }
}

fn pay(dev: &Dev, seq: u64, to: Address, amount: u64) -> SignedPayload {
    SignedPayload::sign(
        &dev.faucet,
        dev.net,
        seq,
        Body::Pay {
            to,
            amount,
            memo: b"mqtt".to_vec(),
        },
    )
}

/// The faucet's next sequence number.
async fn faucet_seq(r: &Running, dev: &Dev) -> u64 {
    let url = format!("http://{}/api/v1/accounts/{}", r.api, dev.faucet.address());
    let v: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    v["next_seq"].as_u64().unwrap()
}

/// A raw MQTT 3.1.1 client: rumqttc's codec over a TcpStream.
struct Client {
    stream: TcpStream,
    buf: BytesMut,
}

impl Client {
    async fn connect(addr: SocketAddr, id: &str) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut c = Client {
            stream,
            buf: BytesMut::new(),
        };
        let mut connect = Connect::new(id);
        connect.keep_alive = 60;
        c.send(Packet::Connect(connect)).await;
        assert!(matches!(c.next().await, Some(Packet::ConnAck(_))));
        c
    }

    async fn send(&mut self, p: Packet) {
        let mut out = BytesMut::new();
        p.write(&mut out, usize::MAX).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// The next packet; `None` when the server closed the connection.
    async fn next(&mut self) -> Option<Packet> {
        tokio::time::timeout(HANG_GUARD, async {
            loop {
                match Packet::read(&mut self.buf, 1 << 20) {
                    Ok(p) => return Some(p),
                    Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                    Err(e) => panic!("bad packet from the server: {e}"),
                }
                if self.stream.read_buf(&mut self.buf).await.unwrap_or(0) == 0 {
                    return None;
                }
            }
        })
        .await
        .expect("no packet from the MQTT server")
    }

    async fn subscribe(&mut self, filters: &[&str]) -> Vec<Packet> {
        let mut s = Subscribe::new(filters[0], QoS::AtMostOnce);
        for f in &filters[1..] {
            s.add((*f).to_owned(), QoS::AtMostOnce);
        }
        s.pkid = 7;
        self.send(Packet::Subscribe(s)).await;
        // Publishes may arrive before the SUBACK only for filters of an earlier SUBSCRIBE;
        // collect them.
        let mut before = Vec::new();
        loop {
            match self.next().await.expect("closed while subscribing") {
                Packet::SubAck(a) => {
                    assert_eq!(a.pkid, 7);
                    assert_eq!(a.return_codes.len(), filters.len());
                    return before;
                }
                other => before.push(other),
            }
        }
    }

    /// The next PUBLISH whose topic is `topic` (others are skipped).
    async fn publish_on(&mut self, topic: &str) -> Value {
        loop {
            match self.next().await.expect("closed while waiting") {
                Packet::Publish(p) if p.topic == topic => {
                    return serde_json::from_slice(&p.payload).unwrap()
                }
                _ => {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_submissions_and_bad_clients_over_raw_mqtt() {
    let dev = new_dev();
    let r = start(dev.dir.path()).await;

    // Milestones arrive on both milestone topics.
    let mut watcher = Client::connect(r.mqtt, "watcher").await;
    watcher.subscribe(&["milestones/+"]).await;
    let m = watcher.publish_on("milestones/confirmed").await;
    assert_eq!(m["type"], "milestone");
    assert!(m["index"].as_u64().unwrap() >= 1);

    // A retained copy reaches a late subscriber at once, flagged RETAIN.
    let mut late = Client::connect(r.mqtt, "late").await;
    late.subscribe(&["milestones/latest"]).await;
    match late.next().await {
        Some(Packet::Publish(p)) => {
            assert!(p.retain, "the stored copy carries RETAIN");
            assert_eq!(p.topic, "milestones/latest");
        }
        other => panic!("expected the retained milestone, got {other:?}"),
    }

    // A device submits by publishing (QoS 1) and gets its verdict, the final status and
    // the recipient's account.
    let to = Keypair::from_seed(&[41; 32]).address();
    let mut device = Client::connect(r.mqtt, "device").await;
    let verdict_topic = "submit/dev-1/verdict";
    let account_topic = format!("accounts/{to}");
    device
        .subscribe(&[verdict_topic, "payloads/+", account_topic.as_str()])
        .await;
    let p = pay(&dev, faucet_seq(&r, &dev).await, to, 77);
    let mut publish = Publish::new(
        "submit/dev-1",
        QoS::AtLeastOnce,
        serde_json::to_vec(&p).unwrap(),
    );
    publish.pkid = 9;
    device.send(Packet::Publish(publish)).await;
    let mut verdict = None;
    let mut acked = false;
    while verdict.is_none() || !acked {
        match device.next().await.expect("closed") {
            Packet::Publish(p) if p.topic == verdict_topic => {
                verdict = Some(serde_json::from_slice::<Value>(&p.payload).unwrap())
            }
            Packet::PubAck(a) => {
                assert_eq!(a.pkid, 9);
                assert!(verdict.is_some(), "PUBACK comes after the verdict");
                acked = true;
            }
            _ => {}
        }
    }
    let verdict = verdict.unwrap();
    let payload_id = verdict["ok"]["payload_id"]
        .as_str()
        .unwrap_or_else(|| panic!("not accepted: {verdict}"))
        .to_owned();
    let status = loop {
        let s = device.publish_on(&format!("payloads/{payload_id}")).await;
        // `reattaching` and `reattached` are not final; the final status follows.
        if s["type"] == "payload" && s["status"] != "reattaching" {
            break s;
        }
    };
    assert_eq!(status["status"], "confirmed", "{status}");
    let account = device.publish_on(&account_topic).await;
    assert_eq!(account["balance"], 77, "{account}");

    // The same payload again: a verdict with the HTTP API's error code; not JSON: malformed.
    let again = Publish::new(
        "submit/dev-1",
        QoS::AtMostOnce,
        serde_json::to_vec(&p).unwrap(),
    );
    device.send(Packet::Publish(again)).await;
    let v = device.publish_on(verdict_topic).await;
    assert_eq!(v["error"]["code"], "conflict", "{v}");
    let junk = Publish::new("submit/dev-1", QoS::AtMostOnce, b"{not json".to_vec());
    device.send(Packet::Publish(junk)).await;
    let v = device.publish_on(verdict_topic).await;
    assert_eq!(v["error"]["code"], "malformed", "{v}");

    // Garbage instead of CONNECT, and a packet over the size limit: the connection is closed,
    // nothing else changes.
    for bytes in [
        vec![0xff; 64],
        vec![0x10, 0xff, 0xff, 0xff, 0x7f], // CONNECT claiming 256 MiB
    ] {
        let mut s = TcpStream::connect(r.mqtt).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        let mut sink = Vec::new();
        let n = tokio::time::timeout(HANG_GUARD, s.read_to_end(&mut sink))
            .await
            .expect("the server keeps a bad connection open")
            .unwrap_or(0);
        assert_eq!(n, 0, "no answer to garbage");
    }
    // A second CONNECT ends the session.
    let mut twice = Client::connect(r.mqtt, "twice").await;
    twice.send(Packet::Connect(Connect::new("twice"))).await;
    assert_eq!(twice.next().await, None);

    // The others still work, and the metrics count what happened.
    let m = watcher.publish_on("milestones/latest").await;
    assert_eq!(m["type"], "milestone");
    let metrics = reqwest::get(format!("http://{}/metrics", r.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(value("tangle_mqtt_submissions_total"), 3.0);
    assert!(value("tangle_mqtt_delivered_total") > 0.0);
    assert!(value("tangle_mqtt_clients") >= 3.0);
    r.stop().await;
}

/// Runs `cmd args`, returning its stdout lines as they come (a thread reads them).
fn spawn_lines(
    cmd: &str,
    args: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = std::process::Command::new(cmd)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd}: {e}"));
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

fn next_line(rx: &std::sync::mpsc::Receiver<String>, what: &str) -> String {
    rx.recv_timeout(HANG_GUARD)
        .unwrap_or_else(|_| panic!("mosquitto client: no line while waiting for {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_subscribe_and_submit() {
    let have = std::process::Command::new("mosquitto_pub")
        .arg("--help")
        .output()
        .is_ok();
    if !have {
        assert!(
            std::env::var("TANGLE_REQUIRE_MQTT_CLIENTS").as_deref() != Ok("1"),
            "mosquitto_pub/mosquitto_sub missing (apt-get install mosquitto-clients)"
        );
        eprintln!("mosquitto clients not installed: skipping (apt-get install mosquitto-clients)");
        return;
    }
    let dev = new_dev();
    let r = start(dev.dir.path()).await;
    let port = r.mqtt.port().to_string();

    // The newest milestone, retained: one message and exit.
    let out = tokio::task::spawn_blocking({
        let port = port.clone();
        move || {
            std::process::Command::new("mosquitto_sub")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-t",
                    "milestones/latest",
                    "-C",
                    "1",
                    "-W",
                    "120",
                ])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["type"], "milestone");

    // Subscribe to the verdict and payload topics; `-d` prints the SUBACK, so the publish
    // below is made only once the subscription is in place.
    let to = Keypair::from_seed(&[42; 32]).address();
    let p = pay(&dev, faucet_seq(&r, &dev).await, to, 5);
    let json = serde_json::to_string(&p).unwrap();
    // stdbuf: mosquitto_sub's stdout is a pipe here, which stdio would buffer.
    let (mut sub, lines) = spawn_lines(
        "stdbuf",
        &[
            "-oL",
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-d",
            "-v",
            "-W",
            "120",
            "-t",
            "submit/sensor-7/verdict",
            "-t",
            "payloads/+",
        ],
    );
    let lines = tokio::task::spawn_blocking(move || {
        while !next_line(&lines, "SUBACK").contains("received SUBACK") {}
        lines
    })
    .await
    .unwrap();
    let status = std::process::Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-q",
            "1",
            "-t",
            "submit/sensor-7",
            "-m",
            &json,
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let messages = tokio::task::spawn_blocking(move || {
        let mut got = Vec::new();
        while got.len() < 2 {
            let line = next_line(&lines, "a message");
            // `-v` prints "topic payload"; debug lines start with "Client".
            if let Some((topic, body)) = line.split_once(' ') {
                let body = serde_json::from_str::<Value>(body).unwrap_or_default();
                let not_final = body["status"] == "reattaching" || body["type"] == "reattached";
                if topic == "submit/sensor-7/verdict"
                    || (topic.starts_with("payloads/") && !not_final)
                {
                    got.push((topic.to_owned(), body));
                }
            }
        }
        got
    })
    .await
    .unwrap();
    assert_eq!(messages[0].0, "submit/sensor-7/verdict");
    let id = messages[0].1["ok"]["payload_id"]
        .as_str()
        .expect("accepted")
        .to_owned();
    assert_eq!(messages[1].0, format!("payloads/{id}"));
    assert_eq!(messages[1].1["status"], "confirmed", "{:?}", messages[1].1);
    let _ = sub.kill();
    let _ = sub.wait();
    r.stop().await;
}

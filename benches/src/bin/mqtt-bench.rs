//! `mqtt-bench`: the node's MQTT server under load, in one process with the node.
//!
//! 1. **Fan-out.** `--subscribers` raw MQTT 3.1.1 clients (rumqttc's codec over tokio
//!    sockets) subscribe to `transactions` and `milestones/+`; then `--payments` pre-signed
//!    payments are submitted over HTTP (`/payloads/batch`, `--clients` concurrent clients,
//!    `--batch` per request). Reported: messages delivered to the subscribers per second
//!    (from the first submission until the subscribers have read every message the server
//!    queued for them by the time the last payment's transaction was announced), the node's
//!    accepted rate meanwhile, and the messages the server dropped for subscribers whose
//!    queue was full.
//! 2. **Submit-to-verdict latency.** With the subscribers gone, `--samples` payments are
//!    submitted one at a time over HTTP (`POST /api/v1/payloads`, JSON; the answer is the
//!    verdict) and as many over MQTT (publish to `submit/bench`, wait for
//!    `submit/bench/verdict`), interleaved; p50 / p99 of each.
//!
//! Clients and node share the machine's cores (as in `node-bench`).
//!
//! ```text
//! cargo run --release -p benches --bin mqtt-bench -- --subscribers 1000 --payments 20000
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::BytesMut;
use clap::Parser;
use dag_core::{Allocation, Body, Genesis, Keypair, SignedPayload};
use node::store::SledStore;
use node::{Node, NodeSetup};
use node_proto::ProtocolConfig;
use rayon::prelude::*;
use rumqttc::mqttbytes::v4::{Connect, Packet, Publish, Subscribe};
use rumqttc::mqttbytes::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(about = "MQTT fan-out to many subscribers and submit-to-verdict latency")]
struct Args {
    /// MQTT subscribers (each on its own connection).
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Payments submitted over HTTP during the fan-out phase.
    #[arg(long, default_value_t = 20_000)]
    payments: usize,
    /// Concurrent HTTP clients submitting them.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Payments per `/payloads/batch` request.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Payments per transport in the latency phase.
    #[arg(long, default_value_t = 300)]
    samples: usize,
    /// Milestone interval, ms.
    #[arg(long, default_value_t = 1000)]
    milestone_interval_ms: u64,
}

/// A raw MQTT client: rumqttc's codec over a TcpStream.
struct Client {
    stream: TcpStream,
    buf: BytesMut,
}

impl Client {
    async fn connect(addr: SocketAddr, id: &str) -> anyhow::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut c = Client {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
        };
        let mut connect = Connect::new(id);
        connect.keep_alive = 0;
        c.send(Packet::Connect(connect)).await?;
        anyhow::ensure!(matches!(c.next().await?, Some(Packet::ConnAck(_))));
        Ok(c)
    }

    async fn send(&mut self, p: Packet) -> anyhow::Result<()> {
        let mut out = BytesMut::new();
        p.write(&mut out, usize::MAX)?;
        self.stream.write_all(&out).await?;
        Ok(())
    }

    async fn next(&mut self) -> anyhow::Result<Option<Packet>> {
        loop {
            match Packet::read(&mut self.buf, 1 << 20) {
                Ok(p) => return Ok(Some(p)),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => anyhow::bail!("bad packet: {e}"),
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    async fn subscribe(&mut self, filters: &[&str]) -> anyhow::Result<()> {
        let mut s = Subscribe::new(filters[0], QoS::AtMostOnce);
        for f in &filters[1..] {
            s.add((*f).to_owned(), QoS::AtMostOnce);
        }
        s.pkid = 1;
        self.send(Packet::Subscribe(s)).await?;
        loop {
            match self.next().await? {
                Some(Packet::SubAck(_)) => return Ok(()),
                Some(_) => {}
                None => anyhow::bail!("closed while subscribing"),
            }
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let accounts = args.payments + 2 * args.samples;
    eprintln!("generating {accounts} accounts...");
    let keys: Vec<Keypair> = (0..accounts)
        .into_par_iter()
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            seed[8] = 0x4d;
            Keypair::from_seed(&seed)
        })
        .collect();
    let committee = Keypair::from_seed(&[0xc1; 32]);
    let genesis = Genesis {
        network_name: "mqtt-bench".into(),
        timestamp: node::runtime::now_ms(),
        pow_difficulty: 0,
        timestamp_window_ms: 600_000,
        committee: vec![committee.address()],
        threshold: 1,
        allocations: keys
            .iter()
            .map(|k| Allocation {
                address: k.address(),
                amount: 1_000_000,
            })
            .collect(),
    };
    let net = genesis.network_id();
    let pay = |i: usize| {
        SignedPayload::sign(
            &keys[i],
            net,
            0,
            Body::Pay {
                to: keys[(i * 7 + 1) % accounts].address(),
                amount: 1,
                memo: Vec::new(),
            },
        )
    };
    let payloads: Vec<SignedPayload> = (0..accounts).into_par_iter().map(pay).collect();

    let dir = tempfile::tempdir()?;
    let store = SledStore::open(dir.path().join("db")).context("opening sled")?;
    let node = Node::start(NodeSetup {
        genesis,
        store: Arc::new(store),
        protocol: ProtocolConfig {
            milestone_signer: Some((0, committee)),
            milestone_interval_ms: args.milestone_interval_ms,
            ..ProtocolConfig::default()
        },
        max_batch: 2048,
        queue_capacity: 100_000,
    })
    .await?;
    let handle = node.handle();
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api_addr = api.local_addr()?;
    let mqtt = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mqtt_addr = mqtt.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let api_task = tokio::spawn(node::api::serve(
        api,
        handle.clone(),
        node::api::ApiOptions {
            rate_limit_per_sec: 0,
            max_batch_len: 100_000,
            ..Default::default()
        },
        stopped(stop_rx.clone()),
    ));
    let metrics = handle.metrics_registry().mqtt.clone();
    let mqtt_task = tokio::spawn(node::mqtt::serve(
        mqtt,
        handle.clone(),
        metrics.clone(),
        node::mqtt::MqttOptions::default(),
        stopped(stop_rx.clone()),
    ));

    // Phase 1: fan-out.
    eprintln!("connecting {} subscribers...", args.subscribers);
    let received = Arc::new(AtomicU64::new(0));
    let (sub_stop_tx, sub_stop) = tokio::sync::watch::channel(false);
    let mut subs = Vec::new();
    for i in 0..args.subscribers {
        let mut c = Client::connect(mqtt_addr, &format!("sub-{i}")).await?;
        c.subscribe(&["transactions", "milestones/+"]).await?;
        let (received, mut stop) = (received.clone(), sub_stop.clone());
        subs.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    p = c.next() => match p {
                        Ok(Some(Packet::Publish(_))) => {
                            received.fetch_add(1, Relaxed);
                        }
                        Ok(Some(_)) => {}
                        _ => return,
                    },
                    _ = stop.changed() => return,
                }
            }
        }));
    }
    let before = received.load(Relaxed);
    let published_before = metrics.messages.get();
    let delivered_before = metrics.delivered.get();
    // The payments' transactions as the node announces them (in process): the fan-out is
    // over once every payment's transaction was published and the subscribers have read
    // what the server queued for them by then. (Not "until the messages stop": milestones
    // go on arriving every interval, so subscribers of `milestones/+` are never quiet.)
    let mut node_events = node::service::NodeService::subscribe(&handle);
    let announced = Arc::new(AtomicU64::new(0));
    let watcher = {
        let announced = announced.clone();
        tokio::spawn(async move {
            loop {
                match node_events.recv().await {
                    Ok(node::service::NodeEvent::Transaction {
                        payload_id: Some(_),
                        ..
                    }) => {
                        announced.fetch_add(1, Relaxed);
                    }
                    Ok(_) => {}
                    // Missed events may have been payments: count them so the wait ends.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        announced.fetch_add(n, Relaxed);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    };
    eprintln!("submitting {} payments over HTTP...", args.payments);
    let chunks: Vec<Vec<u8>> = payloads[..args.payments]
        .chunks(args.batch.max(1))
        .map(|c| rmp_serde::to_vec_named(&c.iter().collect::<Vec<_>>()).expect("encodes"))
        .collect();
    let queue = Arc::new(std::sync::Mutex::new(chunks.into_iter()));
    let url = format!("http://{api_addr}/api/v1/payloads/batch");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (queue, url) = (queue.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let next = queue.lock().expect("queue").next();
                let Some(body) = next else { return };
                let _ = client
                    .post(&url)
                    .header("content-type", "application/msgpack")
                    .body(body)
                    .send()
                    .await
                    .and_then(|r| r.error_for_status());
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let submit_secs = start.elapsed().as_secs_f64();
    eprintln!("waiting for the subscribers to read the payments' messages...");
    let guard = Instant::now() + Duration::from_secs(120);
    while announced.load(Relaxed) < args.payments as u64 && Instant::now() < guard {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Everything the server queued up to now (the last payment's message included), read.
    let target = before + (metrics.delivered.get() - delivered_before);
    while received.load(Relaxed) < target && Instant::now() < guard {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let caught_up = received.load(Relaxed) >= target;
    let span = start.elapsed().as_secs_f64();
    watcher.abort();
    let _ = sub_stop_tx.send(true);
    for s in subs {
        let _ = s.await;
    }
    let delivered = target.min(received.load(Relaxed)) - before;
    if !caught_up {
        eprintln!("gave up waiting after 120 s: the subscribers did not read everything");
    }
    let published = metrics.messages.get() - published_before;
    println!(
        "mqtt-bench: {} subscribers (transactions, milestones/+), {} payments in batches of {} from {} HTTP clients",
        args.subscribers, args.payments, args.batch, args.clients
    );
    println!(
        "  accepted over HTTP meanwhile : {:.0} tx/s ({} in {submit_secs:.2} s)",
        args.payments as f64 / submit_secs,
        args.payments
    );
    println!("  messages published           : {published}");
    println!(
        "  delivered to subscribers     : {delivered} in {span:.2} s = {:.0} messages/s ({:.0} per subscriber)",
        delivered as f64 / span,
        delivered as f64 / span / args.subscribers.max(1) as f64
    );
    println!(
        "  dropped (full queues)        : {}  events missed by the server: {}",
        metrics.dropped.get(),
        metrics.events_missed.get()
    );

    // Phase 2: submit-to-verdict latency, HTTP against MQTT, interleaved.
    let mut device = Client::connect(mqtt_addr, "device").await?;
    device.subscribe(&["submit/bench/verdict"]).await?;
    let http = reqwest::Client::new();
    let (mut over_http, mut over_mqtt) = (Vec::new(), Vec::new());
    for k in 0..args.samples {
        let p = &payloads[args.payments + 2 * k];
        let t = Instant::now();
        let r = http
            .post(format!("http://{api_addr}/api/v1/payloads"))
            .json(p)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "HTTP refused: {}", r.text().await?);
        over_http.push(t.elapsed().as_secs_f64() * 1000.0);

        let p = &payloads[args.payments + 2 * k + 1];
        let t = Instant::now();
        device
            .send(Packet::Publish(Publish::new(
                "submit/bench",
                QoS::AtMostOnce,
                serde_json::to_vec(p)?,
            )))
            .await?;
        loop {
            match device.next().await? {
                Some(Packet::Publish(v)) if v.topic == "submit/bench/verdict" => {
                    let v: serde_json::Value = serde_json::from_slice(&v.payload)?;
                    anyhow::ensure!(v.get("ok").is_some(), "MQTT refused: {v}");
                    break;
                }
                Some(_) => {}
                None => anyhow::bail!("MQTT connection closed"),
            }
        }
        over_mqtt.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    for v in [&mut over_http, &mut over_mqtt] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "  submit->verdict, {} each, ms : HTTP p50 {:.2} p99 {:.2}   MQTT p50 {:.2} p99 {:.2}",
        args.samples,
        percentile(&over_http, 0.5),
        percentile(&over_http, 0.99),
        percentile(&over_mqtt, 0.5),
        percentile(&over_mqtt, 0.99)
    );

    let _ = stop_tx.send(true);
    let _ = api_task.await;
    let _ = mqtt_task.await;
    node.shutdown().await;
    Ok(())
}

//! What an operator looks at, against a real node: per-route HTTP metrics, storage and memory
//! gauges, the Grafana dashboard in docs/ asking only for metrics the node exports, and a
//! health warning when every confirmed payment conflicts.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use dag_core::{Body, Keypair, SignedPayload};
use node::config::NodeConfig;
use node::init::{init, read_genesis, InitOptions};
use serde_json::Value;
use tokio::sync::oneshot;

/// Turns a hang into a failure; never decides a run that makes progress.
const HANG_GUARD: Duration = Duration::from_secs(120);

async fn until<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    common::until_some(what, HANG_GUARD, f).await
}

/// The value of the sample line `series` (name and labels exactly as exported).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_grafana_and_health_warnings() {
    let dir = tempfile::tempdir().unwrap();
    init(&InitOptions {
        dir: dir.path().to_owned(),
        genesis: None,
        network_name: "operator".into(),
        pow_difficulty: 4,
        dev: true,
        now_ms: node::runtime::now_ms(),
    })
    .unwrap();
    let net = read_genesis(&dir.path().join("genesis.toml"))
        .unwrap()
        .network_id();
    let mut cfg = NodeConfig::load(&dir.path().join("node.toml")).unwrap();
    cfg.milestone_interval_ms = 100;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(node::app::run(cfg, listener, async move {
        let _ = rx.await;
    }));
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{base}{path}")).send();

    for _ in 0..3 {
        assert!(get("/api/v1/info").await.unwrap().status().is_success());
    }
    assert_eq!(get("/api/v1/payloads/nothex").await.unwrap().status(), 400);
    assert_eq!(get("/no/such/route").await.unwrap().status(), 404);

    // Storage is measured at start and every few seconds: wait until the log, account
    // checkpoint and sled parts are on disk, and a milestone was applied (and timed).
    let metrics = until("storage gauges and a milestone", || async {
        let m = get("/metrics").await.ok()?.text().await.ok()?;
        let log = sample(&m, "tangle_storage_bytes{part=\"log\"}")?;
        let sled = sample(&m, "tangle_storage_bytes{part=\"sled\"}")?;
        let accounts = sample(&m, "tangle_storage_bytes{part=\"accounts\"}")?;
        let timed = sample(&m, "tangle_milestone_issuance_latency_seconds_count")?;
        (log > 0.0 && sled > 0.0 && accounts > 0.0 && timed > 0.0).then_some(m)
    })
    .await;
    assert!(sample(&metrics, "tangle_resident_memory_bytes").unwrap() > 1e6);
    let info_ok =
        "tangle_api_http_requests_total{method=\"GET\",route=\"/api/v1/info\",status=\"200\"}";
    assert_eq!(sample(&metrics, info_ok), Some(3.0), "{metrics}");
    // The route is the pattern, not the id in the path.
    let bad_id = "tangle_api_http_requests_total{method=\"GET\",route=\"/api/v1/payloads/{id}\",status=\"400\"}";
    assert_eq!(sample(&metrics, bad_id), Some(1.0));
    assert!(!metrics.contains("nothex") && !metrics.contains("/no/such/route"));
    let count =
        "tangle_api_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/info\"}";
    assert_eq!(sample(&metrics, count), Some(3.0));

    // Every metric the Grafana dashboard queries is a family the node exports.
    let families: HashSet<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
        .collect();
    let dashboard = include_str!("../../docs/grafana/tangle-node.json");
    let parsed: Value = serde_json::from_str(dashboard).unwrap();
    assert!(parsed["panels"].as_array().unwrap().len() > 10);
    let mut queried = 0;
    for word in dashboard.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if !word.starts_with("tangle_") {
            continue;
        }
        queried += 1;
        let family = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| word.strip_suffix(s))
            .unwrap_or(word);
        assert!(
            families.contains(family),
            "the Grafana dashboard queries {word}, which /metrics does not export"
        );
    }
    assert!(queried > 20);

    // Payments from an account with no balance: accepted, then conflicting when confirmed.
    // Once every payload of the last milestones conflicts, /health warns (and stays 200).
    let health: Value = get("/health").await.unwrap().json().await.unwrap();
    assert_eq!(health["warnings"], serde_json::json!([]));
    let broke = Keypair::from_seed(&[77; 32]);
    let to = Keypair::from_seed(&[78; 32]).address();
    for seq in 0..4 {
        let p = SignedPayload::sign(
            &broke,
            net,
            seq,
            Body::Pay {
                to,
                amount: 10,
                memo: Vec::new(),
            },
        );
        let r = http
            .post(format!("{base}/api/v1/payloads"))
            .json(&p)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    }
    let health = until("the conflict warning", || async {
        let r = get("/health").await.ok()?;
        let status = r.status();
        let h: Value = r.json().await.ok()?;
        let warned = h["warnings"].as_array()?.iter().any(|w| {
            w.as_str()
                .is_some_and(|w| w.contains("conflicted") && w.contains("none applied"))
        });
        warned.then_some((status, h))
    })
    .await;
    assert_eq!(health.0, 200, "a warning does not make the node unhealthy");
    assert_eq!(health.1["healthy"], true);

    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

//! A real in-process dev node (sled store, milestone issuer, faucet) on 127.0.0.1 with an
//! ephemeral port, running on its own tokio runtime so that tests drive it with the blocking
//! client or the CLI binary from plain threads.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use node::config::NodeConfig;
use node::init::{init, InitOptions};
use tokio::sync::oneshot;

/// A running dev node; stopped (gracefully) on drop.
pub(crate) struct TestNode {
    /// Base URL, `http://127.0.0.1:PORT`.
    pub(crate) url: String,
    /// Network id of its genesis.
    pub(crate) network_id: u64,
    /// Its genesis file.
    pub(crate) genesis_path: std::path::PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    runtime: Option<tokio::runtime::Runtime>,
    _dir: tempfile::TempDir,
}

impl TestNode {
    /// Starts a fresh dev network node with milestones every `interval_ms`.
    pub(crate) fn start(interval_ms: u64) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let report = init(&InitOptions {
            dir: dir.path().to_owned(),
            genesis: None,
            network_name: "wallet-test".into(),
            pow_difficulty: 4,
            dev: true,
            now_ms: node::runtime::now_ms(),
        })
        .unwrap();
        let mut cfg = NodeConfig::load(&report.config).unwrap();
        cfg.milestone_interval_ms = interval_ms;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (stop, rx) = oneshot::channel::<()>();
        let task = runtime.spawn(node::app::run(cfg, listener, async move {
            let _ = rx.await;
        }));
        let node = TestNode {
            url: format!("http://{addr}"),
            network_id: report.genesis.network_id(),
            genesis_path: dir.path().join(node::init::files::GENESIS),
            stop: Some(stop),
            task: Some(task),
            runtime: Some(runtime),
            _dir: dir,
        };
        node.wait_ready();
        node
    }

    /// Waits until the API answers. The listener is bound before the node starts, so
    /// requests queue until it serves; the loop only covers a slow start (the client's own
    /// timeout and retries), and its bound is a hang guard, not a timing assertion.
    fn wait_ready(&self) {
        const HANG_GUARD: Duration = Duration::from_secs(180);
        let client = wallet::client::NodeClient::new(&self.url).unwrap();
        let start = std::time::Instant::now();
        while let Err(e) = client.info() {
            assert!(
                start.elapsed() < HANG_GUARD,
                "node at {} never answered: {e}",
                self.url
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let (Some(rt), Some(task)) = (self.runtime.take(), self.task.take()) {
            let result = rt.block_on(task);
            if !std::thread::panicking() {
                result.unwrap().unwrap();
            }
        }
    }
}

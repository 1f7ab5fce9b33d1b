//! `tangle-node snapshot create` after an interrupted one: a SIGKILL during the write leaves
//! at most `OUT.tmp` (of any length, with any bytes) next to the final path, never a
//! damaged `OUT`. The next `create` must succeed over that leftover, `snapshot inspect
//! --genesis` must accept the result, no `.tmp` may remain, and the store must still open.
//! (`scripts/snapshot-kill-campaign.sh` kills real `create` processes at random moments.)

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use node::config::NodeConfig;
use node::init::{init, InitOptions};
use node::NodeService;
use rand::{Rng, SeedableRng};

fn tangle_node(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tangle-node"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running tangle-node")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the node in process until it has applied `milestones` milestones, then stops it.
async fn run_until(cfg: &NodeConfig, milestones: u32) {
    let node = node::app::start_node(cfg).await.unwrap();
    let h = node.handle();
    while h.info().confirmed_milestone < milestones {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(h.health().healthy, "{:?}", h.health());
    drop(h);
    node.shutdown().await;
}

fn create(config: &Path, out: &Path) -> String {
    ok(&tangle_node(&[
        "snapshot".as_ref(),
        "create".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]))
}

fn inspect(file: &Path, genesis: &Path) -> serde_json::Value {
    let text = ok(&tangle_node(&[
        "snapshot".as_ref(),
        "inspect".as_ref(),
        file.as_os_str(),
        "--genesis".as_ref(),
        genesis.as_os_str(),
        "--json".as_ref(),
    ]));
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_succeeds_over_a_leftover_tmp_and_the_store_still_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let rep = init(&InitOptions {
        dir: tmp.path().join("node"),
        genesis: None,
        network_name: "snapshot-interrupted".into(),
        pow_difficulty: 2,
        dev: true,
        now_ms: node::runtime::now_ms(),
    })
    .unwrap();
    let mut cfg = NodeConfig::load(&rep.config).unwrap();
    cfg.milestone_interval_ms = 50;
    cfg.pruning.keep_milestones = Some(3);
    // The same settings in the file `snapshot create` reads.
    std::fs::write(&rep.config, cfg.to_documented_toml()).unwrap();
    let cfg = NodeConfig::load(&rep.config).unwrap();
    run_until(&cfg, 8).await;

    let out = tmp.path().join("snap.tsnap");
    let leftover = tmp.path().join("snap.tsnap.tmp");
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    // No leftover; empty; a few bytes; a partial frame; more than a whole snapshot.
    let lengths = [None, Some(0), Some(5), Some(4_099), Some(300_000)];
    let mut milestone = 0;
    for (round, len) in lengths.into_iter().enumerate() {
        if let Some(len) = len {
            let mut bytes = vec![0u8; len];
            rng.fill(&mut bytes[..]);
            // Now and then the start of a real snapshot, cut off (what a kill mid-write
            // leaves).
            if matches!(round, 2 | 3) && out.exists() {
                let real = std::fs::read(&out).unwrap();
                let cut = rng.gen_range(0..real.len());
                bytes = real[..cut].to_vec();
            }
            std::fs::write(&leftover, &bytes).unwrap();
        }
        create(&rep.config, &out);
        assert!(
            !leftover.exists(),
            "round {round}: the .tmp was left behind"
        );
        let v = inspect(&out, &cfg.genesis);
        assert_eq!(v["verified"], true, "round {round}: {v}");
        let m = v["milestone"].as_u64().unwrap();
        assert!(m >= milestone, "round {round}: milestone went back");
        milestone = m;
        // The node still starts on the store and carries on.
        run_until(&cfg, m as u32 + 2).await;
    }
}

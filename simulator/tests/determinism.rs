//! Same scenario and seed -> byte-identical results; another seed -> different results.

use indicatif::ProgressBar;
use simulator::{
    run, write_run_dir, NetworkConfig, Scenario, TipsConfig, TipsKind, WorkloadConfig,
};

fn scenario(seed: u64) -> Scenario {
    Scenario {
        name: "determinism".into(),
        transactions: 6_000,
        lambda: 20.0,
        delay: 0.5,
        seed,
        milestone_interval: 5.0,
        tips: TipsConfig {
            kind: TipsKind::Rurts,
            ..TipsConfig::default()
        },
        workload: WorkloadConfig {
            payments: 1.0,
            meters: 0.5,
            sensors: 0.5,
            ev: 0.2,
            empty: 0.5,
            devices: 300,
            meter_count: 50,
            sensor_count: 50,
            ev_count: 10,
            session_duration: 5.0,
            ..WorkloadConfig::default()
        },
        network: NetworkConfig {
            nodes: 3,
            latency: 0.2,
            links: Vec::new(),
        },
        ..Scenario::default()
    }
}

#[test]
fn same_seed_gives_byte_identical_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let sc = scenario(11);
    let a = run(&sc, &ProgressBar::hidden()).unwrap();
    let b = run(&sc, &ProgressBar::hidden()).unwrap();
    assert_eq!(
        a.summary.deterministic_json(),
        b.summary.deterministic_json()
    );
    assert_eq!(a.series, b.series);
    write_run_dir(&dir.path().join("a"), &sc, &a).unwrap();
    write_run_dir(&dir.path().join("b"), &sc, &b).unwrap();
    for f in [
        "scenario.toml",
        "timeseries.csv",
        "latency.csv",
        "tips.svg",
        "latency.svg",
    ] {
        let x = std::fs::read(dir.path().join("a").join(f)).unwrap();
        let y = std::fs::read(dir.path().join("b").join(f)).unwrap();
        assert_eq!(x, y, "{f} differs between two runs with the same seed");
    }
    // The run did real work: payloads applied and milestones confirmed.
    assert!(a.summary.ledger.applied > 1000);
    assert!(a.summary.ledger.milestones > 40);
}

#[test]
fn another_seed_gives_other_results() {
    let a = run(&scenario(1), &ProgressBar::hidden()).unwrap();
    let b = run(&scenario(2), &ProgressBar::hidden()).unwrap();
    assert_ne!(a.summary.ledger.digest, b.summary.ledger.digest);
    assert_ne!(a.summary.mean_tips, b.summary.mean_tips);
}

#[test]
fn summary_json_has_the_contract_fields() {
    let dir = tempfile::tempdir().unwrap();
    let mut sc = scenario(3);
    sc.transactions = 1_000;
    let out = run(&sc, &ProgressBar::hidden()).unwrap();
    write_run_dir(dir.path(), &sc, &out).unwrap();
    let text = std::fs::read_to_string(dir.path().join("summary.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for key in [
        "transactions",
        "lambda",
        "delay",
        "parents",
        "tips",
        "seed",
        "mean_tips",
        "mean_first_approval_delay",
        "approvers_histogram",
        "orphan_rate",
        "confirmation_latency",
        "wall_seconds",
        "sim_tx_per_second",
    ] {
        assert!(v.get(key).is_some(), "summary.json lacks {key}");
    }
    for p in ["p50", "p90", "p99"] {
        assert!(v["confirmation_latency"][p].is_number());
    }
    assert_eq!(v["transactions"], 1_000);
    assert_eq!(v["tips"], "rurts");
    assert!(v["approvers_histogram"].is_array());
    // The resolved scenario reads back as the same scenario.
    let back = Scenario::load(&dir.path().join("scenario.toml")).unwrap();
    assert_eq!(back, sc);
}

#[test]
fn shipped_scenarios_parse_and_validate() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let sc = Scenario::load(&path).unwrap();
            sc.validate()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 6);
}

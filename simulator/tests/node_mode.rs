//! Node mode: the real node core (node-proto) on the in-memory harness.

use indicatif::ProgressBar;
use simulator::{run_node, write_node_run_dir, NodeConfig};

fn config(nodes: usize, transactions: u64, seed: u64) -> NodeConfig {
    NodeConfig {
        nodes,
        transactions,
        lambda: 500.0,
        seed,
        devices: 200,
        ..NodeConfig::default()
    }
}

#[test]
fn three_nodes_confirm_every_payment_with_one_digest() {
    let cfg = config(3, 2_000, 7);
    let out = run_node(&cfg, &ProgressBar::hidden()).unwrap();
    let s = &out.summary;
    let n = s.node.as_ref().expect("node report");
    assert_eq!(s.transactions, 2_000);
    assert_eq!(n.accepted, 2_000);
    assert_eq!(n.refused, 0);
    assert!(
        n.drained,
        "everything decided before the drain time ran out"
    );
    assert_eq!(n.confirmed, 2_000, "every payment applied on its home node");
    assert_eq!(
        n.confirmed_everywhere, 2_000,
        "every payment applied everywhere"
    );
    assert!(n.digests_equal && n.histories_equal);
    assert!(s.ledger.nodes_consistent && s.ledger.supply_conserved);
    assert!(
        s.ledger.conflicting.is_empty(),
        "{:?}",
        s.ledger.conflicting
    );
    assert_eq!(s.ledger.applied, 2_000);
    assert_eq!(n.invalid, 0);
    assert_eq!(n.disconnections, 0);
    assert!(n.halted.is_empty());
    assert_eq!(s.orphan_rate, 0.0);
    assert_eq!(s.confirmation_latency.count, 2_000);
    assert!(s.confirmation_latency.p50 > 0.0 && s.confirmation_latency.p99 < 10.0);
    assert!(
        (n.confirmation_latency_ms.p50 - s.confirmation_latency.p50 * 1000.0).abs() < 1.0,
        "the same latencies in ms and in seconds"
    );
    assert!(s.ledger.milestones >= 2);
    assert!(
        s.total_transactions > 2_000,
        "carriers plus sweep and milestones"
    );
    // Each payment is validated once by each node.
    assert!(s.workload.signatures_verified >= 3 * 2_000);
    assert!(n.peer_transactions_validated >= 2 * 2_000);
    assert_eq!(n.confirmed_index.len(), 3);
    assert!(n.confirmed_index.iter().all(|&i| i == n.confirmed_index[0]));

    // The run directory: the base-mode files and fields, plus the node object.
    let dir = tempfile::tempdir().unwrap();
    write_node_run_dir(dir.path(), &cfg, &out).unwrap();
    for f in [
        "node.toml",
        "summary.json",
        "timeseries.csv",
        "latency.csv",
        "tips.svg",
        "latency.svg",
    ] {
        assert!(dir.path().join(f).exists(), "{f} written");
    }
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
    assert_eq!(v["node"]["digests_equal"], true);
    assert_eq!(v["node"]["mode"], "node");
    let back: NodeConfig =
        toml::from_str(&std::fs::read_to_string(dir.path().join("node.toml")).unwrap()).unwrap();
    assert_eq!(back, cfg);
}

#[test]
fn same_seed_gives_the_same_summary() {
    let run = |seed| {
        run_node(&config(3, 600, seed), &ProgressBar::hidden())
            .unwrap()
            .summary
    };
    let (a, b) = (run(11), run(11));
    assert_eq!(a.deterministic_json(), b.deterministic_json());
    assert!(a.node.as_ref().unwrap().digests_equal);
    let c = run(12);
    assert_ne!(
        a.ledger.digest, c.ledger.digest,
        "another seed, other payments"
    );
}

#[test]
fn one_thread_and_two_give_the_same_run() {
    // The nodes' work at each instant runs in parallel and is merged in node order: the
    // thread count must not change anything a run reports (deterministic_json holds every
    // figure but wall times: digests, histories, latencies, frame counts).
    let run = |threads| {
        let cfg = NodeConfig {
            threads,
            cheap_crypto: true,
            ..config(4, 1_500, 5)
        };
        run_node(&cfg, &ProgressBar::hidden()).unwrap().summary
    };
    let (one, two) = (run(1), run(2));
    assert!(one.node.as_ref().unwrap().digests_equal);
    assert_eq!(one.ledger.digest, two.ledger.digest);
    assert_eq!(one.deterministic_json(), two.deterministic_json());
}

#[test]
fn bad_settings_are_refused() {
    for cfg in [
        NodeConfig {
            nodes: 0,
            ..NodeConfig::default()
        },
        NodeConfig {
            lambda: 0.0,
            ..NodeConfig::default()
        },
        NodeConfig {
            devices: 1,
            ..NodeConfig::default()
        },
    ] {
        assert!(run_node(&cfg, &ProgressBar::hidden()).is_err());
    }
}

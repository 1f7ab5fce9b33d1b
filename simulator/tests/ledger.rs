//! Whole runs with real payloads: supply conserved, every node computes the same ledger,
//! the workloads do what they claim.

use indicatif::ProgressBar;
use simulator::{run, NetworkConfig, Scenario, TipsConfig, TipsKind, WorkloadConfig};

fn mix(nodes: usize, sign: bool, transactions: u64) -> Scenario {
    Scenario {
        name: "ledger".into(),
        transactions,
        lambda: 20.0,
        delay: 0.5,
        seed: 9,
        sign,
        milestone_interval: 4.0,
        tips: TipsConfig {
            kind: TipsKind::Urts,
            ..TipsConfig::default()
        },
        workload: WorkloadConfig {
            payments: 1.0,
            meters: 1.0,
            sensors: 1.0,
            ev: 1.0,
            empty: 0.2,
            devices: 200,
            meter_count: 40,
            sensor_count: 40,
            ev_count: 20,
            session_duration: 3.0,
            // Small balances so some payments fail for lack of funds.
            initial_balance: 400,
            max_payment: 100,
            // Channel deposit 10 kWh x 30 = 300 fits the balance.
            max_kwh: 10,
            price_per_kwh: 30,
            ..WorkloadConfig::default()
        },
        network: NetworkConfig {
            nodes,
            latency: 0.3,
            links: Vec::new(),
        },
        ..Scenario::default()
    }
}

#[test]
fn supply_is_conserved_and_nodes_agree() {
    let s = run(&mix(3, false, 8_000), &ProgressBar::hidden())
        .unwrap()
        .summary;
    let l = &s.ledger;
    assert!(l.supply > 0);
    assert!(l.supply_conserved, "{l:?}");
    assert!(l.nodes_consistent, "{l:?}");
    assert!(l.applied > 3_000, "{l:?}");
    // Tight balances make some payments conflict, which must not break conservation.
    assert!(
        l.conflicting
            .get("InsufficientBalance")
            .copied()
            .unwrap_or(0)
            > 0,
        "{l:?}"
    );
    let w = &s.workload;
    assert!(w.payments > 0 && w.meter_payments > 0 && w.anchors > 0);
    assert!(w.channel_opens > 0 && w.channel_claims > 0);
    assert!(w.sessions_settled > 0, "{w:?}");
    assert!(w.vouchers >= w.kwh_settled && w.kwh_settled > 0);
    assert_eq!(s.orphan_rate, 0.0);
}

#[test]
fn real_signatures_are_made_and_verified() {
    let s = run(&mix(2, true, 600), &ProgressBar::hidden())
        .unwrap()
        .summary;
    let w = &s.workload;
    assert!(w.signatures_verified > 500, "{w:?}");
    assert_eq!(w.signature_failures, 0);
    assert!(s.ledger.supply_conserved && s.ledger.nodes_consistent);
    assert!(s.ledger.applied > 200);
}

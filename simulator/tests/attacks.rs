//! Each attack's qualitative outcome.

use indicatif::ProgressBar;
use simulator::{run, AttackConfig, Scenario, Summary, TipsConfig, TipsKind};

fn scenario(kind: TipsKind, attack: AttackConfig, transactions: u64) -> Scenario {
    Scenario {
        name: "attack".into(),
        transactions,
        lambda: 20.0,
        delay: 1.0,
        seed: 3,
        milestone_interval: 10.0,
        tips: TipsConfig {
            kind,
            depth: 20.0,
            ..TipsConfig::default()
        },
        attack: Some(attack),
        ..Scenario::default()
    }
}

fn attack(s: &Summary) -> &simulator::AttackReport {
    s.attack.as_ref().expect("attack report")
}

fn parasite() -> AttackConfig {
    AttackConfig::Parasite {
        start: 200.0,
        attach_age: 30.0,
        chain: 20,
        tips: 400,
        measure: 5.0,
    }
}

#[test]
fn urts_picks_parasite_tips_and_the_weighted_walk_does_not() {
    let urts = run(
        &scenario(TipsKind::Urts, parasite(), 6_000),
        &ProgressBar::hidden(),
    )
    .unwrap()
    .summary;
    let walk = run(
        &scenario(TipsKind::Walk, parasite(), 6_000),
        &ProgressBar::hidden(),
    )
    .unwrap()
    .summary;
    let (u, w) = (attack(&urts), attack(&walk));
    assert!(u.metrics["watched_selections"] > 50.0 && w.metrics["watched_selections"] > 50.0);
    // 400 parasite tips against about 40 honest ones: URTS picks them most of the time.
    assert!(u.success_rate > 0.5, "{u:?}");
    // The walk starts inside the honest Tangle and never enters the side chain.
    assert!(w.success_rate < 0.02, "{w:?}");
    assert!(u.metrics["parasite_confirmed"] > w.metrics["parasite_confirmed"]);
}

#[test]
fn lazy_tips_get_confirmed_under_urts_but_not_restricted_urts() {
    let lazy = AttackConfig::LazyTips {
        start: 200.0,
        share: 0.1,
        age: 150.0,
    };
    let urts = run(
        &scenario(TipsKind::Urts, lazy.clone(), 10_000),
        &ProgressBar::hidden(),
    )
    .unwrap()
    .summary;
    let rurts = run(
        &scenario(TipsKind::Rurts, lazy, 10_000),
        &ProgressBar::hidden(),
    )
    .unwrap()
    .summary;
    let (u, r) = (attack(&urts), attack(&rurts));
    assert!(u.metrics["lazy_issued"] > 400.0 && r.metrics["lazy_issued"] > 400.0);
    assert!(u.success_rate > 0.5, "{u:?}");
    // Restricted URTS scores them lazy (their cone references milestones 15 behind):
    // honest issuers never approve them, so they are never confirmed.
    assert!(r.success_rate < 0.02, "{r:?}");
    assert!(r.metrics["honest_selections_with_lazy"] < 0.01, "{r:?}");
}

#[test]
fn a_double_spend_never_applies_twice_and_fails_once_the_first_is_confirmed() {
    let close = AttackConfig::DoubleSpend {
        start: 50.0,
        every: 40.0,
        gap: 0.5,
        attempts: 15,
    };
    let late = AttackConfig::DoubleSpend {
        start: 50.0,
        every: 40.0,
        gap: 30.0,
        attempts: 15,
    };
    let a = run(
        &scenario(TipsKind::Urts, close, 15_000),
        &ProgressBar::hidden(),
    )
    .unwrap()
    .summary;
    let b = run(
        &scenario(TipsKind::Urts, late, 15_000),
        &ProgressBar::hidden(),
    )
    .unwrap()
    .summary;
    for s in [&a, &b] {
        let r = attack(s);
        assert_eq!(r.metrics["both_applied"], 0.0, "{r:?}");
        assert_eq!(r.metrics["attempts"], 15.0);
        // Exactly one of the two payments applied in every attempt.
        assert_eq!(
            r.metrics["merchant_paid"] + r.metrics["second_applied"],
            15.0,
            "{r:?}"
        );
        assert_eq!(
            s.ledger.conflicting.get("SeqAlreadyUsed"),
            Some(&15),
            "{s:?}"
        );
    }
    // Issued 0.5 apart, both usually share a milestone cone: the white-flag order decides.
    assert!(attack(&a).success_rate > 0.0);
    // Three milestones later, the merchant's payment is always confirmed first.
    assert_eq!(attack(&b).success_rate, 0.0, "{:?}", attack(&b));
}

#[test]
fn a_spam_flood_is_absorbed_and_its_out_of_order_payloads_conflict() {
    let flood = AttackConfig::SpamFlood {
        start: 100.0,
        duration: 50.0,
        rate: 60.0,
    };
    let s = run(
        &scenario(TipsKind::Urts, flood, 8_000),
        &ProgressBar::hidden(),
    )
    .unwrap()
    .summary;
    let r = attack(&s);
    let issued = r.metrics["spam_issued"];
    assert!((2_400.0..3_600.0).contains(&issued), "{r:?}");
    // The Tangle absorbs a flood below its capacity: honest transactions still confirm.
    assert!(r.metrics["honest_settled_during"] > 500.0);
    assert!(r.success_rate < 0.01, "{r:?}");
    // One issuer with consecutive seqs in a DAG: the ledger rejects what arrives out of order.
    assert!(s.ledger.conflicting.get("SeqGap").copied().unwrap_or(0) > 0);
}

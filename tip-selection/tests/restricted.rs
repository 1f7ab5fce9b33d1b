//! RestrictedUrts: never a lazy tip, approver cap, expiry, semi-lazy fallback.

mod common;

use std::collections::HashSet;

use common::{Grower, UNIT};
use dag_core::{TangleView, TxRef};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tip_selection::{
    RestrictedUrts, RestrictedUrtsConfig, ScoreRules, SelectError, TipScore, TipSelector, Urts,
};

/// A Tangle grown by URTS (100 tx/unit, delay 1 unit) with a milestone every 2 units, then
/// `lazy` tips approving transactions from the first milestones' cones and `semi` tips
/// approving one transaction confirmed 14 milestones ago and one recent tip.
fn tangle_with_lazy_tips(seed: u64, lazy: usize, semi: usize) -> (Grower, ChaCha8Rng) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut g = Grower::new();
    let mut index = 0;
    let mut next_ms = 2 * UNIT;
    while index < 30 {
        g.step(&mut Urts, &mut rng, 100.0, UNIT);
        if g.now >= next_ms {
            index += 1;
            g.milestone(&mut Urts, &mut rng, index);
            next_ms += 2 * UNIT;
        }
    }
    g.flush(&mut Urts);
    let confirmed_by = |g: &Grower, ms| -> Vec<TxRef> {
        (1..=g.tangle.newest().0)
            .map(TxRef)
            .filter(|&r| g.tangle.confirmed_by(r) == Some(ms))
            .collect()
    };
    let old = confirmed_by(&g, 2);
    for _ in 0..lazy {
        let a = old[rng.gen_range(0..old.len())];
        let b = g.tangle.parents(a)[0];
        g.add([a, b]);
    }
    let cmi = g.tangle.confirmed_milestone();
    let semi_old = confirmed_by(&g, cmi - 14);
    let fresh: Vec<TxRef> = g
        .tangle
        .tips()
        .iter()
        .copied()
        .filter(|&t| ScoreRules::default().score_in(&g.tangle, t) == TipScore::NonLazy)
        .collect();
    for _ in 0..semi {
        let a = semi_old[rng.gen_range(0..semi_old.len())];
        let b = fresh[rng.gen_range(0..fresh.len())];
        g.add([a, b]);
    }
    (g, rng)
}

fn scores(g: &Grower) -> Vec<TipScore> {
    let rules = ScoreRules::default();
    g.tangle
        .tips()
        .iter()
        .map(|&t| rules.score_in(&g.tangle, t))
        .collect()
}

#[test]
fn never_returns_a_lazy_or_semi_lazy_tip() {
    let (g, mut rng) = tangle_with_lazy_tips(11, 300, 100);
    let s = scores(&g);
    let lazy = s.iter().filter(|&&x| x == TipScore::Lazy).count();
    let semi = s.iter().filter(|&&x| x == TipScore::SemiLazy).count();
    assert!(
        lazy >= 250 && semi >= 50,
        "{lazy} lazy, {semi} semi-lazy tips"
    );
    assert!(
        lazy * 2 > s.len(),
        "most tips are lazy: {lazy} of {}",
        s.len()
    );

    let rules = ScoreRules::default();
    let mut sel = RestrictedUrts::new(RestrictedUrtsConfig {
        max_referenced_age: None,
        ..RestrictedUrtsConfig::default()
    });
    let mut picked = HashSet::new();
    for _ in 0..2000 {
        let [a, b] = sel.select(&g.tangle, g.now, &mut rng).unwrap();
        assert_ne!(a, b);
        for p in [a, b] {
            assert_eq!(rules.score_in(&g.tangle, p), TipScore::NonLazy, "{p:?}");
            picked.insert(p);
        }
    }
    assert!(picked.len() > 20, "picks spread over {} tips", picked.len());

    // URTS on the same Tangle returns lazy tips most of the time.
    let lazy_urts = (0..1000)
        .filter(|_| {
            let [a, _] = Urts.select(&g.tangle, g.now, &mut rng).unwrap();
            rules.score_in(&g.tangle, a) == TipScore::Lazy
        })
        .count();
    assert!(
        lazy_urts > 500,
        "URTS returned {lazy_urts} lazy tips of 1000"
    );
}

#[test]
fn semi_lazy_tips_only_with_fallback() {
    let (mut g, mut rng) = tangle_with_lazy_tips(12, 0, 50);
    // Age every tip past the referenced-age limit except the semi-lazy ones, which have no
    // approvers: a later "now" with max_tip_age off leaves semi-lazy tips and saturated /
    // referenced-expired honest ones.
    g.now += 10 * UNIT;
    let rules = ScoreRules::default();
    let config = RestrictedUrtsConfig {
        max_tip_age: None,
        max_approvers: 1,
        ..RestrictedUrtsConfig::default()
    };
    // Only approver-less tips remain eligible (max_approvers 1); make every non-lazy tip
    // ineligible by giving it an approver that is itself semi-lazy.
    let non_lazy: Vec<TxRef> = g
        .tangle
        .tips()
        .iter()
        .copied()
        .filter(|&t| rules.score_in(&g.tangle, t) == TipScore::NonLazy)
        .collect();
    let cmi = g.tangle.confirmed_milestone();
    let old = (1..g.tangle.newest().0)
        .map(TxRef)
        .find(|&r| g.tangle.confirmed_by(r) == Some(cmi - 14))
        .unwrap();
    for t in non_lazy {
        g.add([t, old]);
    }
    assert!(scores(&g).iter().all(|&s| s == TipScore::SemiLazy));

    let mut strict = RestrictedUrts::new(config);
    assert!(matches!(
        strict.select(&g.tangle, g.now, &mut rng),
        Err(SelectError::NoEligibleTip { .. })
    ));
    let mut lenient = RestrictedUrts::new(RestrictedUrtsConfig {
        semi_lazy_fallback: true,
        ..config
    });
    for _ in 0..100 {
        let [a, b] = lenient.select(&g.tangle, g.now, &mut rng).unwrap();
        assert_ne!(a, b);
        assert_eq!(rules.score_in(&g.tangle, a), TipScore::SemiLazy);
        assert_eq!(rules.score_in(&g.tangle, b), TipScore::SemiLazy);
    }
}

#[test]
fn approver_cap_and_expiry() {
    let mut g = Grower::new();
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let root = g.tangle.root();
    // The selector follows the growth (on_solid after each arrival).
    let mut sel = RestrictedUrts::default();
    let mut add = |g: &mut Grower, parents| {
        let r = g.add(parents);
        sel.on_solid(&g.tangle, r);
        r
    };
    g.now = 1_000;
    let a = add(&mut g, [root, root]);
    let b = add(&mut g, [root, root]);
    let c = add(&mut g, [root, root]);
    g.now = 2_000;
    let d = add(&mut g, [a, b]);
    let e = add(&mut g, [a, c]);
    // a has two approvers: out (cap 2). b, c have one: still in; d, e are tips.
    assert_eq!(sel.pool_len(), (4, 0));
    let mut seen = HashSet::new();
    for _ in 0..400 {
        let [x, y] = sel.select(&g.tangle, 2_500, &mut rng).unwrap();
        seen.insert(x);
        seen.insert(y);
    }
    assert_eq!(seen, HashSet::from([b, c, d, e]));

    // 3 s after their first approver (d, e at 2000), b and c expire.
    let mut seen = HashSet::new();
    for _ in 0..100 {
        let [x, y] = sel.select(&g.tangle, 5_001, &mut rng).unwrap();
        seen.insert(x);
        seen.insert(y);
    }
    assert_eq!(seen, HashSet::from([d, e]));

    // 60 s after their own arrival, d and e expire too: nothing left.
    assert_eq!(
        sel.select(&g.tangle, 62_001, &mut rng),
        Err(SelectError::NoEligibleTip { tips: 2 })
    );
}

#[test]
fn a_lone_eligible_tip_gets_its_trunk() {
    let mut g = Grower::new();
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let root = g.tangle.root();
    let a = g.add([root, root]);
    let b = g.add([a, root]);
    let mut sel = RestrictedUrts::default();
    assert_eq!(sel.select(&g.tangle, 0, &mut rng), Ok([b, a]));
    let fresh = Grower::new();
    assert_eq!(
        RestrictedUrts::default().select(&fresh.tangle, 0, &mut rng),
        Ok([root, root])
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// Whatever the mix of lazy, semi-lazy and honest tips, no returned parent is lazy
    /// (and none is semi-lazy without the fallback).
    #[test]
    fn no_lazy_parent_ever(seed in any::<u64>(), lazy in 0usize..200, semi in 0usize..60, fallback in any::<bool>()) {
        let (g, mut rng) = tangle_with_lazy_tips(seed, lazy, semi);
        let rules = ScoreRules::default();
        let mut sel = RestrictedUrts::new(RestrictedUrtsConfig {
            semi_lazy_fallback: fallback,
            max_referenced_age: None,
            ..RestrictedUrtsConfig::default()
        });
        for _ in 0..200 {
            match sel.select(&g.tangle, g.now, &mut rng) {
                Ok(parents) => for p in parents {
                    let s = rules.score_in(&g.tangle, p);
                    prop_assert_ne!(s, TipScore::Lazy);
                    if !fallback {
                        prop_assert_eq!(s, TipScore::NonLazy);
                    }
                },
                Err(e) => {
                    let no_tip = matches!(e, SelectError::NoEligibleTip { .. });
                    prop_assert!(no_tip, "unexpected error {:?}", e);
                }
            }
        }
    }
}

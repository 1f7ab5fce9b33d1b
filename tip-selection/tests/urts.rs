//! URTS: uniform over tips, two distinct parents, the single-tip cases.

mod common;

use common::{chi_square, chi_square_critical_0001, Grower};
use dag_core::{TangleView, TxRef};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tip_selection::{AnySelector, TipSelector, Urts};

#[test]
fn picks_are_uniform_over_tips_chi_square() {
    // 40 tips, each approving the genesis twice (the one case a parent may repeat).
    let mut g = Grower::new();
    let root = g.tangle.root();
    for _ in 0..40 {
        g.add([root, root]);
    }
    let tips: Vec<TxRef> = g.tangle.tips().to_vec();
    assert_eq!(tips.len(), 40);
    let mut counts = vec![0f64; g.tangle.len()];
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut urts = Urts::new();
    let rounds = 20_000;
    for _ in 0..rounds {
        let [a, b] = urts.select(&g.tangle, 0, &mut rng).unwrap();
        assert_ne!(a, b, "parents must differ");
        assert!(tips.contains(&a) && tips.contains(&b));
        counts[a.index()] += 1.0;
        counts[b.index()] += 1.0;
    }
    let observed: Vec<f64> = tips.iter().map(|t| counts[t.index()]).collect();
    let expected = vec![2.0 * rounds as f64 / tips.len() as f64; tips.len()];
    let stat = chi_square(&observed, &expected);
    let critical = chi_square_critical_0001(tips.len() - 1);
    // Significance 0.001 with 39 degrees of freedom (critical value about 72.1).
    assert!(
        stat < critical,
        "chi-square {stat:.1} >= {critical:.1}: not uniform"
    );
}

#[test]
fn a_skewed_picker_fails_the_same_chi_square() {
    // The test above can fail: a picker that favours the first tip is rejected.
    let tips = 40usize;
    let rounds = 20_000usize;
    let mut observed = vec![2.0 * rounds as f64 / tips as f64; tips];
    observed[0] *= 1.3;
    observed[1] *= 0.7;
    let expected = vec![2.0 * rounds as f64 / tips as f64; tips];
    assert!(chi_square(&observed, &expected) > chi_square_critical_0001(tips - 1));
}

#[test]
fn genesis_alone_is_repeated_and_a_lone_tip_gets_its_trunk() {
    let mut g = Grower::new();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let root = g.tangle.root();
    assert_eq!(Urts.select(&g.tangle, 0, &mut rng).unwrap(), [root, root]);
    let a = g.add([root, root]);
    let b = g.add([a, root]);
    assert_eq!(g.tangle.tips(), &[b]);
    assert_eq!(Urts.select(&g.tangle, 0, &mut rng).unwrap(), [b, a]);
    let mut any = AnySelector::Urts(Urts);
    assert_eq!(any.select(&g.tangle, 0, &mut rng).unwrap(), [b, a]);
}

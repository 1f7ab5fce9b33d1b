//! Base mode against the closed forms of the Tangle model (see `simulator::check` for the
//! tolerance and its justification).

use indicatif::ProgressBar;
use simulator::{closed_form_check, run, Scenario, TOLERANCE};

#[test]
fn urts_tip_count_matches_two_lambda_h() {
    // lambda h = 12.5, 25, 50: L0 = 25, 50, 100.
    let rows = closed_form_check(&[12.5, 25.0, 50.0], 1.0, 40_000, 1).unwrap();
    for r in &rows {
        eprintln!(
            "lambda {}: mean tips {:.3} vs {:.1} ({:.2}%), first approval {:.4} vs h = 1 ({:.2}%)",
            r.lambda,
            r.mean_tips,
            r.expected_tips,
            r.tips_error * 100.0,
            r.first_approval,
            r.first_approval_error * 100.0
        );
        assert!(r.ok, "outside the {TOLERANCE} tolerance: {r:?}");
    }
}

#[test]
fn the_tip_count_scales_with_the_delay() {
    // Same lambda, h doubled: the tip count doubles (the closed form is linear in h).
    let rows = closed_form_check(&[20.0], 2.0, 30_000, 2).unwrap();
    assert!(rows[0].ok, "{:?}", rows[0]);
    assert!((rows[0].mean_tips - 80.0).abs() < 80.0 * TOLERANCE);
}

#[test]
fn research_mode_matches_k_over_k_minus_one() {
    // k parents: L0 = k/(k-1) * lambda * h, i.e. 1.5 lambda h for k = 3, 1.25 for k = 5.
    for (k, factor) in [(3usize, 1.5), (5, 1.25)] {
        let sc = Scenario {
            transactions: 60_000,
            lambda: 40.0,
            delay: 1.0,
            parents: k,
            milestone_interval: 0.0,
            ..Scenario::default()
        };
        let s = run(&sc, &ProgressBar::hidden()).unwrap().summary;
        let expected = factor * 40.0;
        assert_eq!(s.closed_form_tips, expected);
        let err = (s.mean_tips - expected).abs() / expected;
        assert!(err < TOLERANCE, "k = {k}: {} vs {expected}", s.mean_tips);
    }
}

//! A small sweep: every grid point runs, the table and plot are written.

use indicatif::ProgressBar;
use simulator::{run_sweep, Axis, Scenario};

#[test]
fn a_two_by_two_grid_writes_one_row_per_point() {
    let dir = tempfile::tempdir().unwrap();
    let base = Scenario {
        transactions: 2_000,
        ..Scenario::default()
    };
    let axes = [
        Axis {
            key: "lambda".into(),
            values: vec!["10".into(), "20".into()],
        },
        Axis {
            key: "tips".into(),
            values: vec!["urts".into(), "walk".into()],
        },
    ];
    let summaries = run_sweep(&base, &axes, dir.path(), &ProgressBar::hidden()).unwrap();
    assert_eq!(summaries.len(), 4);
    let tips: Vec<&str> = summaries.iter().map(|s| s.tips.as_str()).collect();
    assert_eq!(tips, ["urts", "walk", "urts", "walk"]);
    assert_eq!(summaries[2].lambda, 20.0);
    let csv = std::fs::read_to_string(dir.path().join("sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5);
    assert!(csv.starts_with("run,lambda,tips,"));
    for f in ["sweep.md", "sweep.svg", "run-03/summary.json"] {
        assert!(dir.path().join(f).exists(), "{f} missing");
    }
    // A bad key is refused before anything runs.
    let bad = [Axis {
        key: "lamda".into(),
        values: vec!["1".into()],
    }];
    assert!(run_sweep(&base, &bad, dir.path(), &ProgressBar::hidden()).is_err());
}

#[test]
fn run_grid_returns_the_same_summaries_as_run_sweep_in_grid_order() {
    let dir = tempfile::tempdir().unwrap();
    let base = Scenario {
        transactions: 1_000,
        ..Scenario::default()
    };
    let axes = [Axis {
        key: "seed".into(),
        values: vec!["1".into(), "2".into()],
    }];
    let written = run_sweep(&base, &axes, dir.path(), &ProgressBar::hidden()).unwrap();
    let kept = simulator::run_grid(&base, &axes).unwrap();
    assert_eq!(kept.len(), 2);
    for ((labels, out), s) in kept.iter().zip(&written) {
        assert_eq!(labels[0].0, "seed");
        assert_eq!(labels[0].1, s.seed.to_string());
        assert_eq!(out.summary.deterministic_json(), s.deterministic_json());
    }
    assert!(!kept[0].1.series.is_empty());
}

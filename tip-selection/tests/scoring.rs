//! Table-driven tests of the lazy / semi-lazy / non-lazy rules (`testdata/tip_scores.txt`).

use dag_core::ReferencedMilestones;
use tip_selection::{ScoreRules, TipScore};

fn parse_score(s: &str) -> TipScore {
    match s {
        "lazy" => TipScore::Lazy,
        "semi-lazy" => TipScore::SemiLazy,
        "non-lazy" => TipScore::NonLazy,
        other => panic!("unknown score {other:?}"),
    }
}

#[test]
fn scores_match_the_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/tip_scores.txt");
    let text = std::fs::read_to_string(path).expect("read testdata");
    let mut cases = 0;
    let mut seen = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        assert!(f.len() == 4 || f.len() == 7, "line {}: {line:?}", n + 1);
        let num = |i: usize| f[i].parse::<u32>().expect("number");
        let rules = if f.len() == 7 {
            ScoreRules {
                below_max_depth: num(4),
                max_delta_youngest: num(5),
                max_delta_oldest: num(6),
            }
        } else {
            ScoreRules::default()
        };
        let refs = ReferencedMilestones {
            oldest: num(1),
            youngest: num(2),
        };
        let expected = parse_score(f[3]);
        assert_eq!(
            rules.score(num(0), refs),
            expected,
            "line {}: {line:?}",
            n + 1
        );
        seen.insert(expected);
        cases += 1;
    }
    assert!(cases >= 20, "table has {cases} cases");
    assert_eq!(seen.len(), 3, "table covers every score");
}

#[test]
fn defaults_are_hornets() {
    let r = ScoreRules::default();
    assert_eq!(
        (r.below_max_depth, r.max_delta_youngest, r.max_delta_oldest),
        (15, 8, 13)
    );
}

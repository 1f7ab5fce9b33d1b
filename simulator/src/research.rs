//! Research mode for `parents != 2`: the Tangle model of the literature with `k` parents per
//! transaction and URTS, on a lightweight DAG of its own (the protocol's [`dag_core::Tangle`]
//! has exactly two parents). No milestones, no ledger, no network: Poisson arrivals at rate
//! lambda, each picking `min(k, tips)` distinct visible tips uniformly, each visible `h`
//! after its issue. A transaction stops being a tip when its first approver becomes visible.
//!
//! Per-transaction state is kept in flat arrays (about 24 bytes per transaction plus `4k`
//! for the parents), so this mode is meant for runs up to a few tens of millions.

use std::collections::VecDeque;
use std::time::Instant;

use indicatif::ProgressBar;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::report::{histogram, LedgerReport, RunOutput, SamplePoint, Summary, Throughput};
use crate::scenario::{to_ticks, to_units, Scenario, ScenarioError};

const NOT_TIP: u32 = u32::MAX;
const NEVER: u64 = u64::MAX;

/// Runs `sc` in research mode (any `parents` from 1 to 8, URTS).
pub fn run_research(sc: &Scenario, progress: &ProgressBar) -> Result<RunOutput, ScenarioError> {
    sc.validate()?;
    let started = Instant::now();
    let k = sc.parents;
    let n_total = sc.transactions as usize + 1;
    let mut rng = ChaCha8Rng::seed_from_u64(sc.seed);
    let h = to_ticks(sc.delay);
    let mean_gap = to_ticks(1.0) as f64 / sc.lambda;
    let warmup = (sc.transactions as f64 * sc.warmup) as usize;
    let duration = sc.transactions as f64 / sc.lambda;
    let sample_ticks = to_ticks(if sc.sample_interval > 0.0 {
        sc.sample_interval
    } else {
        duration / 1000.0
    })
    .max(1);

    let mut issued = vec![0u64; n_total];
    let mut first_approval = vec![NEVER; n_total];
    let mut approvers = vec![0u32; n_total];
    let mut tip_pos = vec![NOT_TIP; n_total];
    let mut parents: Vec<u32> = Vec::with_capacity(n_total * k);
    let mut tips: Vec<u32> = vec![0];
    tip_pos[0] = 0;
    parents.extend(std::iter::repeat_n(0, k)); // genesis: its own parents, never used
    let mut visible: VecDeque<(u64, u32)> = VecDeque::new();
    let (mut tips_sum, mut tips_n) = (0u128, 0u64);
    let mut series = Vec::new();
    let mut next_sample = 0u64;
    let mut now = 0u64;
    progress.set_length(sc.transactions);

    let remove_tip = |tips: &mut Vec<u32>, tip_pos: &mut [u32], p: u32| {
        let pos = tip_pos[p as usize];
        if pos == NOT_TIP {
            return;
        }
        tip_pos[p as usize] = NOT_TIP;
        tips.swap_remove(pos as usize);
        if let Some(&moved) = tips.get(pos as usize) {
            tip_pos[moved as usize] = pos;
        }
    };

    let mut chosen: Vec<u32> = Vec::with_capacity(k);
    for n in 1..n_total as u32 {
        let u: f64 = rng.gen();
        now += ((-(1.0 - u).ln()) * mean_gap).round().max(1.0) as u64;
        // Everything issued at least h ago is visible now (FIFO: the delay is constant).
        while let Some(&(at, v)) = visible.front() {
            if at > now {
                break;
            }
            visible.pop_front();
            let base = v as usize * k;
            for i in 0..k {
                let p = parents[base + i];
                remove_tip(&mut tips, &mut tip_pos, p);
            }
            tip_pos[v as usize] = tips.len() as u32;
            tips.push(v);
        }
        while next_sample <= now {
            series.push(SamplePoint {
                time: to_units(next_sample),
                tips: tips.len() as u64,
                issued: u64::from(n - 1),
                ..SamplePoint::default()
            });
            next_sample += sample_ticks;
        }
        if n as usize > warmup {
            tips_sum += tips.len() as u128;
            tips_n += 1;
        }
        // min(k, tips) distinct tips, uniformly (partial Fisher-Yates on indices).
        chosen.clear();
        let m = k.min(tips.len());
        for i in 0..m {
            let j = rng.gen_range(i..tips.len());
            tips.swap(i, j);
            tip_pos[tips[i] as usize] = i as u32;
            tip_pos[tips[j] as usize] = j as u32;
            chosen.push(tips[i]);
        }
        for j in m..k {
            chosen.push(chosen[j % m.max(1)]);
        }
        for (i, &p) in chosen.iter().enumerate() {
            if chosen[..i].contains(&p) {
                continue;
            }
            approvers[p as usize] += 1;
            if first_approval[p as usize] == NEVER {
                first_approval[p as usize] = now;
            }
        }
        issued[n as usize] = now;
        parents.extend_from_slice(&chosen);
        visible.push_back((now + h, n));
        if n & 0x3fff == 0 {
            progress.set_position(u64::from(n));
        }
    }
    progress.set_position(sc.transactions);

    let settle = to_ticks(sc.effective_settle_time());
    let mut hist: Vec<u64> = Vec::new();
    let (mut settled, mut unapproved, mut fa_sum, mut fa_n) = (0u64, 0u64, 0f64, 0u64);
    let mut delays: Vec<f32> = Vec::new();
    for n in 1..n_total {
        if issued[n] + settle > now {
            break;
        }
        settled += 1;
        let a = approvers[n] as usize;
        if hist.len() <= a {
            hist.resize(a + 1, 0);
        }
        hist[a] += 1;
        if first_approval[n] == NEVER {
            unapproved += 1;
        } else {
            let d = to_units(first_approval[n].saturating_sub(issued[n] + h));
            fa_sum += d;
            fa_n += 1;
            delays.push(d as f32);
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let ratio = |x: u64, y: u64| if y == 0 { 0.0 } else { x as f64 / y as f64 };
    let kf = k as f64;
    let summary = Summary {
        name: sc.name.clone(),
        transactions: sc.transactions,
        lambda: sc.lambda,
        delay: sc.delay,
        parents: k,
        tips: sc.tips.kind.name().into(),
        alpha: sc.tips.alpha,
        seed: sc.seed,
        nodes: 1,
        milestone_interval: 0.0,
        sim_time: to_units(now),
        total_transactions: sc.transactions,
        mean_tips: if tips_n == 0 {
            0.0
        } else {
            tips_sum as f64 / tips_n as f64
        },
        // k = 1 has no stationary tip count (a chain): reported as 0.
        closed_form_tips: if k > 1 {
            kf / (kf - 1.0) * sc.lambda * sc.delay
        } else {
            0.0
        },
        mean_first_approval_delay: if fa_n == 0 { 0.0 } else { fa_sum / fa_n as f64 },
        approvers_histogram: hist,
        settled_transactions: settled,
        orphan_rate: ratio(unapproved, settled),
        unapproved_rate: ratio(unapproved, settled),
        throughput: Throughput {
            issued_per_time: sc.transactions as f64 / to_units(now).max(f64::MIN_POSITIVE),
            ..Throughput::default()
        },
        ledger: LedgerReport::default(),
        wall_seconds: wall,
        sim_tx_per_second: sc.transactions as f64 / wall.max(1e-9),
        node: None,
        ..Summary::default()
    };
    Ok(RunOutput {
        summary,
        series,
        latency_histogram: histogram(&delays, 100),
    })
}

//! Property tests of the white-flag ledger: random mixes of payments, replays, reattachments,
//! overdrafts, double spends, and channel opens, claims (good and bad vouchers) and refunds,
//! over several milestones.
//!
//! After every milestone: supply is conserved, no `(issuer, seq)` is applied twice and each
//! issuer's applied seqs are exactly `0..next_seq`, every outcome matches an independent
//! reference model, the diff is exactly what changed, and a second ledger fed the same
//! ordered input has the same digest.

use std::collections::{BTreeMap, HashSet};

use dag_core::crypto::{self, Keypair};
use dag_core::{
    Account, Address, Allocation, Body, Channel, ChannelId, ConflictReason, Digest, Genesis,
    Ledger, LedgerState, PayloadOutcome, SignedPayload, TxId,
};
use proptest::prelude::*;

const KEYS: usize = 5;

#[derive(Debug, Clone, Copy)]
enum SeqMode {
    Next,
    Replay(u8),
    Gap(u8),
}

#[derive(Debug, Clone, Copy)]
enum VoucherMode {
    Good,
    WrongSigner,
    WrongAmount,
}

#[derive(Debug, Clone)]
enum Op {
    Pay {
        from: usize,
        to: usize,
        amount: u64,
        seq: SeqMode,
    },
    /// Two payloads with the same seq to different recipients, both in the milestone.
    DoubleSpend {
        from: usize,
        to: [usize; 2],
        amount: u64,
    },
    Open {
        from: usize,
        to: usize,
        deposit: u64,
        expiry: u32,
        seq: SeqMode,
    },
    /// `by: None` is the channel's payee; `pick` beyond the known channels is an unknown id.
    Claim {
        by: Option<usize>,
        pick: usize,
        /// Claimed share of the deposit; above 100 exceeds it.
        percent: u64,
        voucher: VoucherMode,
    },
    /// `by: None` is the channel's payer.
    Refund {
        by: Option<usize>,
        pick: usize,
    },
    Anchor {
        from: usize,
        seq: SeqMode,
    },
    /// The exact same signed payload again (a reattachment or replay).
    Reattach {
        pick: usize,
    },
}

fn seq_mode() -> impl Strategy<Value = SeqMode> {
    prop_oneof![
        8 => Just(SeqMode::Next),
        1 => (0u8..3).prop_map(SeqMode::Replay),
        1 => (0u8..3).prop_map(SeqMode::Gap),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0..KEYS;
    prop_oneof![
        6 => (k.clone(), k.clone(), 0u64..400, seq_mode())
            .prop_map(|(from, to, amount, seq)| Op::Pay { from, to, amount, seq }),
        2 => (k.clone(), k.clone(), k.clone(), 1u64..700)
            .prop_map(|(from, a, b, amount)| Op::DoubleSpend { from, to: [a, b], amount }),
        3 => (k.clone(), k.clone(), 0u64..500, 0u32..4, seq_mode()).prop_map(
            |(from, to, deposit, expiry, seq)| Op::Open { from, to, deposit, expiry, seq }
        ),
        3 => (
            prop::option::weighted(0.2, k.clone()),
            0usize..16,
            prop_oneof![4 => 0u64..=100, 1 => 101u64..150],
            prop_oneof![
                6 => Just(VoucherMode::Good),
                1 => Just(VoucherMode::WrongSigner),
                1 => Just(VoucherMode::WrongAmount),
            ]
        )
            .prop_map(|(by, pick, percent, voucher)| Op::Claim { by, pick, percent, voucher }),
        2 => (prop::option::weighted(0.2, k.clone()), 0usize..16)
            .prop_map(|(by, pick)| Op::Refund { by, pick }),
        1 => (k, seq_mode()).prop_map(|(from, seq)| Op::Anchor { from, seq }),
        2 => (0usize..64).prop_map(|pick| Op::Reattach { pick }),
    ]
}

struct World {
    keys: Vec<Keypair>,
    genesis: Genesis,
}

impl World {
    /// Accounts 0..4 funded with `funds`; account 4 starts empty.
    fn new(funds: &[u64]) -> World {
        let keys: Vec<Keypair> = (0..KEYS)
            .map(|i| Keypair::from_seed(&[i as u8 + 1; 32]))
            .collect();
        let genesis = Genesis {
            network_name: "ledger-props".into(),
            timestamp: 0,
            pow_difficulty: 0,
            timestamp_window_ms: 600_000,
            committee: vec![Address([0xcc; 32])],
            threshold: 1,
            allocations: funds
                .iter()
                .zip(&keys)
                .map(|(amount, k)| Allocation {
                    address: k.address(),
                    amount: *amount,
                })
                .collect(),
        };
        World { keys, genesis }
    }

    fn addr(&self, i: usize) -> Address {
        self.keys[i].address()
    }

    fn nid(&self) -> u64 {
        self.genesis.network_id()
    }
}

/// Turns abstract ops into signed payloads for milestone `index`. Seqs and channel picks are
/// resolved against a scratch copy of the model that applies each payload as it is built,
/// so "next" seqs and channels opened earlier in the same milestone are what they will be.
fn build(
    w: &World,
    model: &Model,
    index: u32,
    ops: &[Op],
    history: &mut Vec<SignedPayload>,
) -> Vec<SignedPayload> {
    let nid = w.nid();
    let mut scratch = model.clone();
    let sign =
        |from: usize, seq: u64, body: Body| SignedPayload::sign(&w.keys[from], nid, seq, body);
    let pay = |to: usize, amount: u64| Body::Pay {
        to: w.addr(to),
        amount,
        memo: vec![],
    };

    let mut out: Vec<SignedPayload> = Vec::new();
    for op in ops {
        let next = |m: &Model, from: usize| m.acc.get(&w.addr(from)).map_or(0, |a| a.next_seq);
        let seq_for = |m: &Model, from: usize, mode: SeqMode| match mode {
            SeqMode::Next => next(m, from),
            SeqMode::Replay(k) => next(m, from).saturating_sub(1 + u64::from(k)),
            SeqMode::Gap(k) => next(m, from) + 1 + u64::from(k),
        };
        let channels: Vec<(ChannelId, Channel)> =
            scratch.ch.iter().map(|(id, c)| (*id, *c)).collect();
        let pick_channel = |pick: usize, unknown: u8| {
            channels
                .get(pick % (channels.len() + 1))
                .copied()
                .unwrap_or((ChannelId([unknown; 32]), dummy_channel(w)))
        };
        let start = out.len();
        match *op {
            Op::Pay {
                from,
                to,
                amount,
                seq,
            } => out.push(sign(from, seq_for(&scratch, from, seq), pay(to, amount))),
            Op::DoubleSpend { from, to, amount } => {
                let seq = next(&scratch, from);
                out.push(sign(from, seq, pay(to[0], amount)));
                out.push(sign(from, seq, pay(to[1], amount + 1)));
            }
            Op::Open {
                from,
                to,
                deposit,
                expiry,
                seq,
            } => out.push(sign(
                from,
                seq_for(&scratch, from, seq),
                Body::Open {
                    payee: w.addr(to),
                    deposit,
                    expires_at: index + expiry,
                },
            )),
            Op::Claim {
                by,
                pick,
                percent,
                voucher,
            } => {
                let (id, ch) = pick_channel(pick, 0x77);
                let amount = ch.deposit * percent / 100;
                let by = by.unwrap_or_else(|| key_of(w, &ch.payee));
                let payer = key_of(w, &ch.payer);
                let (signer, signed_amount) = match voucher {
                    VoucherMode::Good => (payer, amount),
                    VoucherMode::WrongSigner => ((payer + 1) % KEYS, amount),
                    VoucherMode::WrongAmount => (payer, amount + 1),
                };
                let v =
                    w.keys[signer].sign(&crypto::voucher_signing_message(nid, &id, signed_amount));
                out.push(sign(
                    by,
                    next(&scratch, by),
                    Body::Claim {
                        channel: id,
                        amount,
                        voucher: v,
                    },
                ));
            }
            Op::Refund { by, pick } => {
                let (id, ch) = pick_channel(pick, 0x78);
                let by = by.unwrap_or_else(|| key_of(w, &ch.payer));
                out.push(sign(by, next(&scratch, by), Body::Refund { channel: id }));
            }
            Op::Anchor { from, seq } => out.push(sign(
                from,
                seq_for(&scratch, from, seq),
                Body::Anchor {
                    tag: b"t".to_vec(),
                    digest: Digest([1; 32]),
                },
            )),
            Op::Reattach { pick } => {
                if !history.is_empty() {
                    out.push(history[pick % history.len()].clone());
                }
            }
        }
        for p in &out[start..] {
            let _ = scratch.apply(nid, index, p);
        }
    }
    history.extend(out.iter().cloned());
    out
}

fn dummy_channel(w: &World) -> Channel {
    Channel {
        payer: w.addr(0),
        payee: w.addr(1),
        deposit: 0,
        expires_at: 0,
        closed: false,
        claimed: 0,
    }
}

fn key_of(w: &World, a: &Address) -> usize {
    (0..KEYS).find(|i| w.addr(*i) == *a).expect("known key")
}

/// An independent, deliberately simple reimplementation of the ledger rules.
#[derive(Clone, Default)]
struct Model {
    acc: BTreeMap<Address, Account>,
    ch: BTreeMap<ChannelId, Channel>,
}

impl Model {
    fn from_state(s: &LedgerState) -> Model {
        Model {
            acc: s.accounts.iter().copied().collect(),
            ch: s.channels.iter().copied().collect(),
        }
    }

    fn credit(&mut self, a: Address, amount: u64) {
        self.acc.entry(a).or_default().balance += amount;
    }

    fn apply(&mut self, nid: u64, index: u32, p: &SignedPayload) -> Result<(), ConflictReason> {
        use ConflictReason as R;
        let me = self.acc.get(&p.issuer).copied().unwrap_or_default();
        if p.seq != me.next_seq {
            return Err(if p.seq < me.next_seq {
                R::SeqAlreadyUsed
            } else {
                R::SeqGap
            });
        }
        // A payload at its turn uses its seq even when its content conflicts.
        self.acc.entry(p.issuer).or_default().next_seq += 1;
        let mut after = self.clone();
        match &p.body {
            Body::Pay { to, amount, .. } => {
                if *amount == 0 {
                    return Err(R::ZeroAmount);
                }
                if me.balance < *amount {
                    return Err(R::InsufficientBalance);
                }
                after.acc.get_mut(&p.issuer).unwrap().balance -= amount;
                after.credit(*to, *amount);
            }
            Body::Open {
                payee,
                deposit,
                expires_at,
            } => {
                if *deposit == 0 {
                    return Err(R::ZeroAmount);
                }
                if *payee == p.issuer {
                    return Err(R::SelfChannel);
                }
                if *expires_at <= index {
                    return Err(R::ExpiryNotInFuture);
                }
                if me.balance < *deposit {
                    return Err(R::InsufficientBalance);
                }
                after.acc.get_mut(&p.issuer).unwrap().balance -= deposit;
                after.ch.insert(
                    crypto::channel_id(&p.issuer, p.seq),
                    Channel {
                        payer: p.issuer,
                        payee: *payee,
                        deposit: *deposit,
                        expires_at: *expires_at,
                        closed: false,
                        claimed: 0,
                    },
                );
            }
            Body::Claim {
                channel,
                amount,
                voucher,
            } => {
                let c = *self.ch.get(channel).ok_or(R::UnknownChannel)?;
                if c.payee != p.issuer {
                    return Err(R::NotPayee);
                }
                if c.closed {
                    return Err(R::ChannelClosed);
                }
                if index > c.expires_at {
                    return Err(R::ChannelExpired);
                }
                if *amount > c.deposit {
                    return Err(R::ClaimExceedsDeposit);
                }
                let msg = crypto::voucher_signing_message(nid, channel, *amount);
                if crypto::verify(&c.payer, &msg, voucher).is_err() {
                    return Err(R::BadVoucher);
                }
                after.credit(c.payee, *amount);
                after.credit(c.payer, c.deposit - amount);
                let e = after.ch.get_mut(channel).unwrap();
                e.closed = true;
                e.claimed = *amount;
            }
            Body::Refund { channel } => {
                let c = *self.ch.get(channel).ok_or(R::UnknownChannel)?;
                if c.payer != p.issuer {
                    return Err(R::NotPayer);
                }
                if c.closed {
                    return Err(R::ChannelClosed);
                }
                if index <= c.expires_at {
                    return Err(R::ChannelNotExpired);
                }
                after.credit(c.payer, c.deposit);
                after.ch.get_mut(channel).unwrap().closed = true;
            }
            Body::Anchor { .. } => {}
        }
        *self = after;
        Ok(())
    }
}

fn tx_id(index: u32, i: usize) -> TxId {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&index.to_le_bytes());
    b[4..12].copy_from_slice(&(i as u64).to_le_bytes());
    TxId(b)
}

fn milestones() -> impl Strategy<Value = (Vec<u64>, Vec<Vec<Op>>)> {
    (
        prop::collection::vec(0u64..1_000, KEYS - 1),
        prop::collection::vec(prop::collection::vec(op(), 0..12), 1..8),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_over_random_milestones((funds, ms) in milestones()) {
        let w = World::new(&funds);
        let nid = w.nid();
        let mut ledger = Ledger::from_genesis(&w.genesis).unwrap();
        let mut twin = Ledger::from_genesis(&w.genesis).unwrap();
        let supply: u64 = funds.iter().sum();
        prop_assert_eq!(ledger.supply(), supply);
        let mut model = Model::from_state(&ledger.to_state());
        let mut applied: HashSet<(Address, u64)> = HashSet::new();
        let mut applied_count: BTreeMap<Address, u64> = BTreeMap::new();
        let mut history = Vec::new();

        for (m, ops) in ms.iter().enumerate() {
            let index = m as u32 + 1;
            let payloads = build(&w, &model, index, ops, &mut history);
            let before = ledger.to_state();
            let input: Vec<(TxId, &SignedPayload)> =
                payloads.iter().enumerate().map(|(i, p)| (tx_id(index, i), p)).collect();
            let out = ledger.apply_milestone(index, input.iter().copied()).unwrap();
            let twin_out = twin.apply_milestone(index, input.iter().copied()).unwrap();

            // Same ordered input, same everything.
            prop_assert_eq!(out.ledger_digest, twin_out.ledger_digest);
            prop_assert_eq!(&out, &twin_out);
            prop_assert_eq!(out.ledger_digest, ledger.digest());
            prop_assert_ne!(out.ledger_digest, before.digest);

            // Supply conserved.
            ledger.check_invariants().unwrap();
            let state = ledger.to_state();
            let total: u64 = state.accounts.iter().map(|(_, a)| a.balance).sum::<u64>()
                + state.channels.iter().filter(|(_, c)| !c.closed).map(|(_, c)| c.deposit).sum::<u64>();
            prop_assert_eq!(total, supply);
            // The read-only accessors (what `/api/v1/info` reports) agree with that sum.
            let open: u64 = state.channels.iter().filter(|(_, c)| !c.closed).map(|(_, c)| c.deposit).sum();
            prop_assert_eq!(ledger.open_deposits(), u128::from(open));
            prop_assert_eq!(ledger.total_balances() + ledger.open_deposits(), u128::from(supply));
            // The state root kept up to date milestone by milestone is the root of the whole
            // state built from scratch, and a restored ledger has it too.
            prop_assert_eq!(ledger.state_root(), dag_core::ledger::state_root_of(&state));
            prop_assert_eq!(
                Ledger::from_parts(state.clone()).unwrap().state_root(),
                ledger.state_root()
            );

            // Outcomes agree with the reference model; no (issuer, seq) applied twice.
            prop_assert_eq!(out.outcomes.len(), payloads.len());
            for (((tx, outcome), p), (input_tx, _)) in out.outcomes.iter().zip(&payloads).zip(&input) {
                prop_assert_eq!(tx, input_tx, "outcomes follow the input order");
                let expected = match model.apply(nid, index, p) {
                    Ok(()) => PayloadOutcome::Applied,
                    Err(r) => PayloadOutcome::Conflicting(r),
                };
                prop_assert_eq!(*outcome, expected, "payload {:?}", p);
                if outcome.is_applied() {
                    prop_assert!(applied.insert((p.issuer, p.seq)), "applied twice: {:?}", p);
                }
                // Applied or conflicting for its content: the seq is used.
                if outcome.is_final() && *outcome != PayloadOutcome::Conflicting(ConflictReason::SeqAlreadyUsed) {
                    *applied_count.entry(p.issuer).or_default() += 1;
                }
            }
            prop_assert_eq!(&state.accounts, &model.acc.iter().map(|(a, v)| (*a, *v)).collect::<Vec<_>>());
            prop_assert_eq!(&state.channels, &model.ch.iter().map(|(a, v)| (*a, *v)).collect::<Vec<_>>());
            for (a, acc) in &state.accounts {
                prop_assert_eq!(acc.next_seq, applied_count.get(a).copied().unwrap_or(0));
            }

            // The diff is exactly what changed: before + diff == after.
            let mut patched: BTreeMap<Address, Account> = before.accounts.iter().copied().collect();
            patched.extend(out.diff.accounts.iter().copied());
            let mut patched_ch: BTreeMap<ChannelId, Channel> = before.channels.iter().copied().collect();
            patched_ch.extend(out.diff.channels.iter().copied());
            prop_assert_eq!(patched.into_iter().collect::<Vec<_>>(), state.accounts.clone());
            prop_assert_eq!(patched_ch.into_iter().collect::<Vec<_>>(), state.channels.clone());
            prop_assert!(out.diff.accounts.windows(2).all(|x| x[0].0 < x[1].0));
            prop_assert!(out.diff.channels.windows(2).all(|x| x[0].0 < x[1].0));

            // A restart from the stored state continues identically.
            let restored = Ledger::from_parts(state).unwrap();
            prop_assert_eq!(restored.digest(), ledger.digest());
        }
    }

    #[test]
    fn order_of_a_conflicting_pair_decides_which_applies(
        funds in prop::collection::vec(1u64..1_000, KEYS - 1),
        from in 0..KEYS - 1,
        to in prop::array::uniform2(0..KEYS),
        frac in 1u64..=100,
    ) {
        prop_assume!(to[0] != to[1] && to[0] != from && to[1] != from);
        let w = World::new(&funds);
        let amount = (funds[from] * frac / 100).max(1);
        let pay = |to: usize| SignedPayload::sign(&w.keys[from], w.nid(), 0, Body::Pay {
            to: w.addr(to), amount, memo: vec![],
        });
        let (a, b) = (pay(to[0]), pay(to[1]));
        let (ta, tb) = (TxId([0xa; 32]), TxId([0xb; 32]));

        let mut l1 = Ledger::from_genesis(&w.genesis).unwrap();
        let o1 = l1.apply_milestone(1, [(ta, &a), (tb, &b)]).unwrap();
        let mut l2 = Ledger::from_genesis(&w.genesis).unwrap();
        let o2 = l2.apply_milestone(1, [(tb, &b), (ta, &a)]).unwrap();

        let conflict = PayloadOutcome::Conflicting(ConflictReason::SeqAlreadyUsed);
        prop_assert_eq!(&o1.outcomes, &vec![(ta, PayloadOutcome::Applied), (tb, conflict)]);
        prop_assert_eq!(&o2.outcomes, &vec![(tb, PayloadOutcome::Applied), (ta, conflict)]);
        prop_assert_eq!(l1.balance(&w.addr(to[0])), l2.balance(&w.addr(to[0])) + amount);
        prop_assert_eq!(l2.balance(&w.addr(to[1])), l1.balance(&w.addr(to[1])) + amount);
        prop_assert_ne!(l1.digest(), l2.digest());
    }
}

//! The conformance suite every [`Store`] backend must pass (feature `test-utils`).
//!
//! Each check takes a fresh, empty store and panics (like `assert!`) on a violation, so a
//! backend runs them from its own tests:
//!
//! ```ignore
//! #[test]
//! fn sled_store_conforms() {
//!     dag_core::store::conformance::run_all(|| SledStore::temporary().unwrap());
//! }
//! ```
//!
//! [`reopen_persistence`] and [`prune_persistence`] additionally check that data (and
//! pruning) survives closing and reopening; they are not part of [`run_all`] because only
//! the backend knows how to reopen itself. [`view`] captures what a store shows, for a
//! backend's own tests to compare two stores (say, against a [`MemStore`](super::MemStore)
//! given the same writes).

use crate::codec;
use crate::crypto::{self, Keypair};
use crate::genesis::{Allocation, Genesis, DEFAULT_TIMESTAMP_WINDOW_MS};
use crate::ids::{Address, ChannelId, Digest, PayloadId, TxId};
use crate::ledger::{Account, ConflictReason, Ledger, LedgerDiff, LedgerState, PayloadOutcome};
use crate::types::{Body, MilestoneIndex, Payload, SignedPayload, Transaction, TX_VERSION};

use super::{
    ConfirmedTx, MilestoneBatch, MilestoneRecord, PayloadRecord, PayloadStatus, PruneBatch,
    PruneState, Store, StoreError, TxEntry, TxMeta,
};

/// Runs every check, each on a fresh store from `make`.
pub fn run_all<S: Store>(make: impl Fn() -> S) {
    put_and_get(&make());
    unknown_is_none(&make());
    idempotent_reput(&make());
    mark_solid(&make());
    iterate_transactions(&make());
    ledger_init_rules(&make());
    milestone_batch_rules(&make());
    milestone_batch_atomic_visibility(&make());
    payload_status_across_reattachment(&make());
    ledger_round_trip(&make());
    prune_forgets_listed_transactions(&make());
    prune_milestone_never_goes_back(&make());
    pruned_transaction_stored_again(&make());
}

/// What a store shows about some transactions, payloads and milestones, and as a whole
/// (count, iteration, last prune, ledger): two stores given the same writes, or one store
/// before and after reopening, must show the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// Per asked transaction: bytes and metadata.
    pub txs: Vec<(TxId, Option<Vec<u8>>, Option<TxMeta>)>,
    /// Per asked payload: its record.
    pub payloads: Vec<(PayloadId, Option<PayloadRecord>)>,
    /// Milestone records `1..=milestones`.
    pub milestones: Vec<Option<MilestoneRecord>>,
    /// `transaction_count`.
    pub count: usize,
    /// The ids `for_each_transaction` visits, sorted.
    pub iterated: Vec<TxId>,
    /// `pruned`.
    pub pruned: Option<PruneState>,
    /// `confirmed_index`.
    pub confirmed: Option<MilestoneIndex>,
    /// `load_ledger`.
    pub ledger: Option<LedgerState>,
}

/// Captures a [`View`] of `s`.
pub fn view<S: Store + ?Sized>(
    s: &S,
    txs: &[TxId],
    payloads: &[PayloadId],
    milestones: MilestoneIndex,
) -> View {
    let mut visited = Vec::new();
    s.for_each_transaction(&mut |id, bytes, meta| visited.push((*id, bytes.to_vec(), *meta)))
        .unwrap();
    for (id, bytes, meta) in &visited {
        assert_eq!(
            s.transaction(id).unwrap().as_ref(),
            Some(bytes),
            "{id} iterated"
        );
        assert_eq!(
            s.metadata(id).unwrap().as_ref(),
            Some(meta),
            "{id} iterated"
        );
    }
    let mut iterated: Vec<TxId> = visited.iter().map(|v| v.0).collect();
    iterated.sort();
    iterated.dedup();
    assert_eq!(iterated.len(), visited.len(), "a transaction visited twice");
    View {
        txs: txs
            .iter()
            .map(|id| (*id, s.transaction(id).unwrap(), s.metadata(id).unwrap()))
            .collect(),
        payloads: payloads
            .iter()
            .map(|p| (*p, s.payload(p).unwrap()))
            .collect(),
        milestones: (1..=milestones).map(|i| s.milestone(i).unwrap()).collect(),
        count: s.transaction_count().unwrap(),
        iterated,
        pruned: s.pruned().unwrap(),
        confirmed: s.confirmed_index().unwrap(),
        ledger: s.load_ledger().unwrap(),
    }
}

/// A real encoded transaction carrying `payload`, made unique by `timestamp`.
fn tx(network_id: u64, timestamp: u64, payload: Payload) -> (TxId, Vec<u8>) {
    let t = Transaction {
        version: TX_VERSION,
        network_id,
        parents: [TxId::GENESIS, TxId::GENESIS],
        timestamp,
        payload,
        nonce: 0,
    };
    let bytes = codec::encode(&t);
    (codec::id_of_encoding(&bytes), bytes)
}

fn entry<'a>(id: TxId, bytes: &'a [u8], payload: Option<PayloadId>) -> TxEntry<'a> {
    TxEntry {
        id,
        bytes,
        meta: TxMeta::new(1_000, false, payload),
    }
}

fn blobs(n: u64) -> Vec<(TxId, Vec<u8>)> {
    (0..n).map(|i| tx(7, i, Payload::Empty)).collect()
}

/// Stored transactions read back with their bytes and metadata; batches count new ones.
pub fn put_and_get<S: Store>(s: &S) {
    let txs = blobs(3);
    let entries: Vec<_> = txs.iter().map(|(id, b)| entry(*id, b, None)).collect();
    assert_eq!(s.put_transactions(&entries).unwrap(), 3);
    for (id, bytes) in &txs {
        assert_eq!(s.transaction(id).unwrap().as_deref(), Some(&bytes[..]));
        assert_eq!(
            s.metadata(id).unwrap(),
            Some(TxMeta::new(1_000, false, None))
        );
    }
    assert_eq!(s.transaction_count().unwrap(), 3);
    assert_eq!(s.put_transactions(&[]).unwrap(), 0);
}

/// Unknown keys read as `None`, never as an error.
pub fn unknown_is_none<S: Store>(s: &S) {
    let id = TxId([0xee; 32]);
    assert_eq!(s.transaction(&id).unwrap(), None);
    assert_eq!(s.metadata(&id).unwrap(), None);
    assert_eq!(s.payload(&PayloadId([0xee; 32])).unwrap(), None);
    assert_eq!(s.milestone(1).unwrap(), None);
    assert_eq!(s.account(&Address([0xee; 32])).unwrap(), None);
    assert_eq!(s.channel(&ChannelId([0xee; 32])).unwrap(), None);
    assert_eq!(s.confirmed_index().unwrap(), None);
    assert_eq!(s.load_ledger().unwrap(), None);
    assert_eq!(s.transaction_count().unwrap(), 0);
    assert_eq!(s.mark_solid(&[id]).unwrap(), 0);
}

/// Re-putting a stored transaction changes nothing: not its metadata, not the payload
/// index, not the count.
pub fn idempotent_reput<S: Store>(s: &S) {
    let (id, bytes) = tx(7, 1, Payload::Empty);
    let pid = PayloadId([5; 32]);
    assert_eq!(
        s.put_transactions(&[entry(id, &bytes, Some(pid))]).unwrap(),
        1
    );
    assert_eq!(s.mark_solid(&[id]).unwrap(), 1);
    let again = TxEntry {
        id,
        bytes: &bytes,
        meta: TxMeta::new(99, false, Some(pid)),
    };
    assert_eq!(s.put_transactions(&[again, again]).unwrap(), 0);
    let meta = s.metadata(&id).unwrap().unwrap();
    assert!(meta.solid, "re-put must not reset metadata");
    assert_eq!(meta.arrival, 1_000);
    assert_eq!(s.payload(&pid).unwrap().unwrap().txs, vec![id]);
    assert_eq!(s.transaction_count().unwrap(), 1);
    // A duplicate inside one new batch is stored once.
    let (id2, bytes2) = tx(7, 2, Payload::Empty);
    let e = entry(id2, &bytes2, Some(pid));
    assert_eq!(s.put_transactions(&[e, e]).unwrap(), 1);
    assert_eq!(s.payload(&pid).unwrap().unwrap().txs, vec![id, id2]);
}

/// `mark_solid` sets the flag once and ignores unknown ids.
pub fn mark_solid<S: Store>(s: &S) {
    let txs = blobs(2);
    let entries: Vec<_> = txs.iter().map(|(id, b)| entry(*id, b, None)).collect();
    s.put_transactions(&entries).unwrap();
    assert_eq!(s.mark_solid(&[txs[0].0, TxId([1; 32])]).unwrap(), 1);
    assert_eq!(s.mark_solid(&[txs[0].0]).unwrap(), 0);
    assert!(s.metadata(&txs[0].0).unwrap().unwrap().solid);
    assert!(!s.metadata(&txs[1].0).unwrap().unwrap().solid);
}

/// `for_each_transaction` visits every stored transaction exactly once, in the order
/// they were first stored (not by id: the batches below are stored out of id order).
pub fn iterate_transactions<S: Store>(s: &S) {
    let mut txs = blobs(50);
    txs.sort_by_key(|t| std::cmp::Reverse(t.0));
    let entries: Vec<_> = txs.iter().map(|(id, b)| entry(*id, b, None)).collect();
    s.put_transactions(&entries[..20]).unwrap();
    s.put_transactions(&entries[20..]).unwrap();
    // Stored again: keeps its place.
    s.put_transactions(&entries[3..4]).unwrap();
    let mut seen = Vec::new();
    s.for_each_transaction(&mut |id, bytes, meta| {
        assert_eq!(codec::id_of_encoding(bytes), *id);
        assert_eq!(meta.arrival, 1_000);
        seen.push(*id);
    })
    .unwrap();
    let expected: Vec<_> = txs.iter().map(|(id, _)| *id).collect();
    assert_eq!(seen, expected);
}

/// A two-account network for the ledger checks.
struct Fixture {
    keys: [Keypair; 2],
    genesis: Genesis,
}

impl Fixture {
    fn new() -> Self {
        let keys = [Keypair::from_seed(&[1; 32]), Keypair::from_seed(&[2; 32])];
        let genesis = Genesis {
            network_name: "conformance".into(),
            timestamp: 0,
            pow_difficulty: 0,
            timestamp_window_ms: DEFAULT_TIMESTAMP_WINDOW_MS,
            committee: vec![Address([9; 32])],
            threshold: 1,
            allocations: keys
                .iter()
                .map(|k| Allocation {
                    address: k.address(),
                    amount: 1_000,
                })
                .collect(),
        };
        Fixture { keys, genesis }
    }

    fn nid(&self) -> u64 {
        self.genesis.network_id()
    }

    fn addr(&self, i: usize) -> Address {
        self.keys[i].address()
    }

    fn pay(&self, from: usize, seq: u64, amount: u64) -> SignedPayload {
        SignedPayload::sign(
            &self.keys[from],
            self.nid(),
            seq,
            Body::Pay {
                to: self.addr(1 - from),
                amount,
                memo: vec![],
            },
        )
    }
}

/// `init_ledger` once; `apply_milestone` only after it.
pub fn ledger_init_rules<S: Store>(s: &S) {
    let f = Fixture::new();
    let state = Ledger::from_genesis(&f.genesis).unwrap().to_state();
    let batch = MilestoneBatch {
        record: MilestoneRecord {
            index: 1,
            tx: TxId([1; 32]),
            timestamp: 5,
            ledger_digest: Digest([1; 32]),
        },
        confirmed: vec![],
        diff: LedgerDiff::default(),
    };
    assert_eq!(s.apply_milestone(&batch), Err(StoreError::NotInitialised));
    assert_eq!(s.milestone(1).unwrap(), None);
    s.init_ledger(&state).unwrap();
    assert_eq!(s.confirmed_index().unwrap(), Some(0));
    assert_eq!(s.load_ledger().unwrap().as_ref(), Some(&state));
    assert_eq!(
        s.account(&f.addr(0)).unwrap(),
        Some(Account {
            balance: 1_000,
            next_seq: 0
        })
    );
    assert_eq!(s.init_ledger(&state), Err(StoreError::AlreadyInitialised));
    s.apply_milestone(&batch).unwrap();
    assert_eq!(s.confirmed_index().unwrap(), Some(1));
    assert_eq!(s.load_ledger().unwrap().unwrap().digest, Digest([1; 32]));
}

/// Rejected batches (skipped or repeated index, unknown transaction) write nothing.
pub fn milestone_batch_rules<S: Store>(s: &S) {
    let f = Fixture::new();
    let state = Ledger::from_genesis(&f.genesis).unwrap().to_state();
    s.init_ledger(&state).unwrap();
    let (known, bytes) = tx(f.nid(), 1, Payload::Empty);
    s.put_transactions(&[entry(known, &bytes, None)]).unwrap();
    let diff = LedgerDiff {
        rotation: None,
        accounts: vec![(
            f.addr(0),
            Account {
                balance: 1,
                next_seq: 1,
            },
        )],
        channels: vec![],
    };
    let mk = |index, txs: &[TxId]| MilestoneBatch {
        record: MilestoneRecord {
            index,
            tx: known,
            timestamp: 5,
            ledger_digest: Digest([index as u8; 32]),
        },
        confirmed: txs
            .iter()
            .map(|t| ConfirmedTx {
                tx: *t,
                payload: None,
            })
            .collect(),
        diff: diff.clone(),
    };
    assert_eq!(
        s.apply_milestone(&mk(2, &[known])),
        Err(StoreError::NonConsecutiveMilestone {
            expected: 1,
            got: 2
        })
    );
    let unknown = TxId([0xab; 32]);
    assert_eq!(
        s.apply_milestone(&mk(1, &[known, unknown])),
        Err(StoreError::UnknownTransaction(unknown))
    );
    // Nothing of the rejected batches is visible.
    assert_eq!(s.confirmed_index().unwrap(), Some(0));
    assert_eq!(s.milestone(1).unwrap(), None);
    assert_eq!(s.milestone(2).unwrap(), None);
    assert_eq!(s.confirmations(1).unwrap(), None);
    assert_eq!(s.metadata(&known).unwrap().unwrap().confirmed_by, None);
    assert_eq!(s.load_ledger().unwrap().as_ref(), Some(&state));

    s.apply_milestone(&mk(1, &[known])).unwrap();
    assert_eq!(s.milestone(1).unwrap(), Some(mk(1, &[]).record));
    assert_eq!(s.confirmations(1).unwrap(), Some(vec![(known, None)]));
    assert_eq!(s.metadata(&known).unwrap().unwrap().confirmed_by, Some(1));
    assert_eq!(s.account(&f.addr(0)).unwrap(), Some(diff.accounts[0].1));
    assert_eq!(
        s.apply_milestone(&mk(1, &[known])),
        Err(StoreError::NonConsecutiveMilestone {
            expected: 2,
            got: 1
        }),
        "a repeated batch is rejected"
    );
}

/// A reader running concurrently with milestone batches never sees part of a batch: once
/// the confirmed index is `k`, milestone `k`, the confirmation of its transaction and its
/// ledger values are all visible.
pub fn milestone_batch_atomic_visibility<S: Store>(s: &S) {
    const N: u32 = 200;
    let f = Fixture::new();
    let (a, b) = (f.addr(0), f.addr(1));
    s.init_ledger(&Ledger::from_genesis(&f.genesis).unwrap().to_state())
        .unwrap();
    let txs = blobs(u64::from(N));
    let entries: Vec<_> = txs.iter().map(|(id, b)| entry(*id, b, None)).collect();
    s.put_transactions(&entries).unwrap();
    let batch = |i: u32| MilestoneBatch {
        record: MilestoneRecord {
            index: i,
            tx: txs[i as usize - 1].0,
            timestamp: u64::from(i),
            ledger_digest: Digest([i as u8; 32]),
        },
        confirmed: vec![ConfirmedTx {
            tx: txs[i as usize - 1].0,
            payload: None,
        }],
        diff: LedgerDiff {
            rotation: None,
            accounts: vec![
                (
                    a,
                    Account {
                        balance: 1_000 - u64::from(i),
                        next_seq: u64::from(i),
                    },
                ),
                (
                    b,
                    Account {
                        balance: 1_000 + u64::from(i),
                        next_seq: 0,
                    },
                ),
            ],
            channels: vec![],
        },
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for i in 1..=N {
                s.apply_milestone(&batch(i)).unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::Release);
        });
        loop {
            let finished = done.load(std::sync::atomic::Ordering::Acquire);
            let k = s.confirmed_index().unwrap().unwrap();
            if k > 0 {
                let rec = s
                    .milestone(k)
                    .unwrap()
                    .expect("record of the confirmed index");
                assert_eq!(rec.index, k);
                let meta = s.metadata(&rec.tx).unwrap().unwrap();
                assert_eq!(meta.confirmed_by, Some(k));
                let bal = s.account(&b).unwrap().unwrap().balance;
                assert!(
                    bal >= 1_000 + u64::from(k),
                    "ledger diff of {k} not visible"
                );
            }
            if finished {
                assert_eq!(k, N);
                break;
            }
        }
    });
}

/// The scenario shared by the payload and ledger checks: two milestones over a
/// reattached payload, a sequence gap filled later, and a channel.
struct Scenario {
    f: Fixture,
    ledger: Ledger,
    /// (tx id, bytes, payload id) of every stored transaction, in storing order.
    txs: Vec<(TxId, Vec<u8>, Option<PayloadId>)>,
    /// Payload ids: p1 = A pays seq 0 (carried twice), p2 = A pays seq 2 (gap, then
    /// reattached), p4 = A pays seq 1, p3 = B opens a channel.
    p: [PayloadId; 4],
}

impl Scenario {
    /// Stores the transactions and the genesis ledger, and applies two milestones to both
    /// the ledger and the store.
    fn run<S: Store>(s: &S) -> Scenario {
        let f = Fixture::new();
        let nid = f.nid();
        let mut ledger = Ledger::from_genesis(&f.genesis).unwrap();
        s.init_ledger(&ledger.to_state()).unwrap();
        let p1 = f.pay(0, 0, 100);
        let p2 = f.pay(0, 2, 50);
        let p4 = f.pay(0, 1, 10);
        let p3 = SignedPayload::sign(
            &f.keys[1],
            nid,
            0,
            Body::Open {
                payee: f.addr(0),
                deposit: 300,
                expires_at: 10,
            },
        );
        let signed = [&p1, &p1, &p2, &p4, &p2, &p3];
        let mut txs: Vec<(TxId, Vec<u8>, Option<PayloadId>)> = signed
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (id, bytes) = tx(nid, i as u64, Payload::Signed((*p).clone()));
                (id, bytes, Some(p.id()))
            })
            .collect();
        let (e, eb) = tx(nid, 100, Payload::Empty);
        txs.push((e, eb, None));
        let entries: Vec<_> = txs.iter().map(|(id, b, p)| entry(*id, b, *p)).collect();
        assert_eq!(s.put_transactions(&entries).unwrap(), txs.len());

        // Milestone 1 confirms tx0 (p1), tx2 (p2: gap) and the empty tx.
        // Milestone 2 confirms tx1 (p1 again), tx3 (p4), tx4 (p2 again), tx5 (p3).
        for (index, cone) in [(1u32, vec![0usize, 2, 6]), (2, vec![1, 3, 4, 5])] {
            let with_payload: Vec<(TxId, &SignedPayload)> = cone
                .iter()
                .filter(|i| **i < signed.len())
                .map(|i| (txs[*i].0, signed[*i]))
                .collect();
            let out = ledger.apply_milestone(index, with_payload).unwrap();
            let mut outcomes = out.outcomes.iter();
            let confirmed = cone
                .iter()
                .map(|i| ConfirmedTx {
                    tx: txs[*i].0,
                    payload: txs[*i].2.map(|pid| (pid, outcomes.next().unwrap().1)),
                })
                .collect();
            s.apply_milestone(&MilestoneBatch {
                record: MilestoneRecord {
                    index,
                    tx: txs[6].0,
                    timestamp: u64::from(index) * 1_000,
                    ledger_digest: out.ledger_digest,
                },
                confirmed,
                diff: out.diff,
            })
            .unwrap();
        }
        Scenario {
            p: [p1.id(), p2.id(), p3.id(), p4.id()],
            f,
            ledger,
            txs,
        }
    }
}

/// Payload statuses follow reattachment: a confirmed payload stays confirmed when a later
/// copy conflicts; a conflicting one (sequence gap) becomes confirmed when a later copy
/// applies; each transaction keeps its own outcome.
pub fn payload_status_across_reattachment<S: Store>(s: &S) {
    let sc = Scenario::run(s);
    let id = |i: usize| sc.txs[i].0;
    let [p1, p2, p3, p4] = sc.p;

    let r1 = s.payload(&p1).unwrap().unwrap();
    assert_eq!(r1.txs, vec![id(0), id(1)]);
    assert_eq!(
        r1.status,
        PayloadStatus::Confirmed {
            milestone: 1,
            tx: id(0)
        }
    );
    let m0 = s.metadata(&id(0)).unwrap().unwrap();
    assert_eq!(
        (m0.confirmed_by, m0.outcome),
        (Some(1), Some(PayloadOutcome::Applied))
    );
    let m1 = s.metadata(&id(1)).unwrap().unwrap();
    assert_eq!(
        (m1.confirmed_by, m1.outcome),
        (
            Some(2),
            Some(PayloadOutcome::Conflicting(ConflictReason::SeqAlreadyUsed))
        )
    );

    let r2 = s.payload(&p2).unwrap().unwrap();
    assert_eq!(r2.txs, vec![id(2), id(4)]);
    assert_eq!(
        r2.status,
        PayloadStatus::Confirmed {
            milestone: 2,
            tx: id(4)
        }
    );
    assert_eq!(
        s.metadata(&id(2)).unwrap().unwrap().outcome,
        Some(PayloadOutcome::Conflicting(ConflictReason::SeqGap))
    );
    for p in [p3, p4] {
        assert!(matches!(
            s.payload(&p).unwrap().unwrap().status,
            PayloadStatus::Confirmed { milestone: 2, .. }
        ));
    }
    let empty = s.metadata(&id(6)).unwrap().unwrap();
    assert_eq!((empty.confirmed_by, empty.outcome), (Some(1), None));
    assert_eq!(s.milestone(2).unwrap().unwrap().timestamp, 2_000);
}

/// The stored ledger equals the in-memory one: account and channel reads agree, and
/// `Ledger::from_parts(load_ledger())` has the same state and digest.
pub fn ledger_round_trip<S: Store>(s: &S) {
    let sc = Scenario::run(s);
    let loaded = s.load_ledger().unwrap().unwrap();
    assert_eq!(loaded, sc.ledger.to_state());
    let back = Ledger::from_parts(loaded).unwrap();
    assert_eq!(back.digest(), sc.ledger.digest());
    assert_eq!(back.confirmed_index(), 2);
    assert_eq!(s.confirmed_index().unwrap(), Some(2));
    for i in 0..2 {
        let a = sc.f.addr(i);
        assert_eq!(s.account(&a).unwrap().as_ref(), sc.ledger.account(&a));
    }
    assert_eq!(sc.ledger.balance(&sc.f.addr(0)), 1_000 - 160);
    let ch = crypto::channel_id(&sc.f.addr(1), 0);
    assert_eq!(s.channel(&ch).unwrap().as_ref(), sc.ledger.channel(&ch));
    assert!(s.channel(&ch).unwrap().is_some());
}

/// A milestone batch over no transactions and no ledger change (the stores do not check
/// digests).
fn empty_milestone(
    index: MilestoneIndex,
    tx: TxId,
    confirmed: &[(TxId, Option<(PayloadId, PayloadOutcome)>)],
) -> MilestoneBatch {
    MilestoneBatch {
        record: MilestoneRecord {
            index,
            tx,
            timestamp: u64::from(index) * 1_000,
            ledger_digest: Digest([index as u8; 32]),
        },
        confirmed: confirmed
            .iter()
            .map(|(tx, payload)| ConfirmedTx {
                tx: *tx,
                payload: *payload,
            })
            .collect(),
        diff: LedgerDiff::default(),
    }
}

/// Pruning forgets the listed transactions (bytes, metadata, their place in payload
/// records; a payload left without transactions goes, one that keeps some keeps its
/// status), ignores unknown and repeated ids, drops the milestone records up to the batch's
/// milestone and keeps the rest, the ledger and every unlisted transaction (with its
/// confirmation, also by a pruned milestone). A pruned transaction cannot be confirmed.
pub fn prune_forgets_listed_transactions<S: Store>(s: &S) {
    let sc = Scenario::run(s);
    let id = |i: usize| sc.txs[i].0;
    let [p1, p2, p3, p4] = sc.p;
    let all: Vec<TxId> = sc.txs.iter().map(|t| t.0).collect();
    let before = view(s, &all, &sc.p, 2);
    assert_eq!(s.pruned().unwrap(), None);
    let eps = vec![(id(6), 1), (id(3), 2)];
    // tx0 (p1's applied copy) and tx2 (p2's gap copy) were confirmed by milestone 1, tx5
    // (p3's only copy) by milestone 2.
    s.prune(&PruneBatch {
        milestone: 1,
        txs: vec![id(0), id(2), TxId([0xee; 32]), id(5), id(0)],
        entry_points: eps.clone(),
    })
    .unwrap();
    for i in [0, 2, 5] {
        assert_eq!(s.transaction(&id(i)).unwrap(), None, "tx{i}");
        assert_eq!(s.metadata(&id(i)).unwrap(), None, "tx{i}");
    }
    for i in [1, 3, 4, 6] {
        assert_eq!(
            before.txs[i],
            (
                id(i),
                s.transaction(&id(i)).unwrap(),
                s.metadata(&id(i)).unwrap()
            ),
            "tx{i}"
        );
    }
    assert_eq!(
        s.metadata(&id(6)).unwrap().unwrap().confirmed_by,
        Some(1),
        "an unlisted transaction keeps its confirmation by a pruned milestone"
    );
    assert_eq!(s.transaction_count().unwrap(), 4);
    let after = view(s, &all, &sc.p, 2);
    assert_eq!(after.iterated, {
        let mut v = vec![id(1), id(3), id(4), id(6)];
        v.sort();
        v
    });
    let r1 = s.payload(&p1).unwrap().unwrap();
    assert_eq!(r1.txs, vec![id(1)]);
    assert_eq!(
        r1.status,
        PayloadStatus::Confirmed {
            milestone: 1,
            tx: id(0)
        },
        "a payload keeps its status when the transaction that confirmed it is pruned"
    );
    let r2 = s.payload(&p2).unwrap().unwrap();
    assert_eq!(r2.txs, vec![id(4)]);
    assert_eq!(
        r2.status,
        PayloadStatus::Confirmed {
            milestone: 2,
            tx: id(4)
        }
    );
    assert_eq!(s.payload(&p3).unwrap(), None, "no transaction left");
    assert_eq!(s.payload(&p4).unwrap(), before.payloads[3].1);
    assert_eq!(s.milestone(1).unwrap(), None);
    assert_eq!(
        s.confirmations(1).unwrap(),
        None,
        "pruned with its milestone"
    );
    assert_eq!(s.milestone(2).unwrap(), before.milestones[1]);
    assert!(s.confirmations(2).unwrap().is_some());
    assert_eq!(
        s.pruned().unwrap(),
        Some(PruneState {
            milestone: 1,
            entry_points: eps
        })
    );
    assert_eq!(after.ledger, before.ledger);
    assert_eq!(s.confirmed_index().unwrap(), Some(2));
    assert_eq!(s.mark_solid(&[id(0)]).unwrap(), 0);
    assert_eq!(
        s.apply_milestone(&empty_milestone(3, id(6), &[(id(6), None), (id(2), None)])),
        Err(StoreError::UnknownTransaction(id(2))),
        "a pruned transaction cannot be confirmed"
    );
    assert_eq!(s.confirmed_index().unwrap(), Some(2));
    // Milestones go on after a prune.
    s.apply_milestone(&empty_milestone(3, id(6), &[])).unwrap();
    assert!(s.milestone(3).unwrap().is_some());
}

/// The pruned milestone never goes back: a batch below it only forgets its transactions
/// and replaces the entry points. A payload whose last transaction goes disappears.
pub fn prune_milestone_never_goes_back<S: Store>(s: &S) {
    let sc = Scenario::run(s);
    let id = |i: usize| sc.txs[i].0;
    let p1 = sc.p[0];
    s.prune(&PruneBatch {
        milestone: 2,
        txs: vec![id(0)],
        entry_points: vec![(id(0), 1)],
    })
    .unwrap();
    assert_eq!(
        (s.milestone(1).unwrap(), s.milestone(2).unwrap()),
        (None, None)
    );
    s.prune(&PruneBatch {
        milestone: 1,
        txs: vec![id(1)],
        entry_points: vec![],
    })
    .unwrap();
    assert_eq!(
        s.pruned().unwrap(),
        Some(PruneState {
            milestone: 2,
            entry_points: vec![]
        })
    );
    assert_eq!(s.payload(&p1).unwrap(), None);
    assert_eq!(s.milestone(2).unwrap(), None);
    // Only the entry points change; nothing else.
    let eps = vec![(id(6), 1)];
    let all: Vec<TxId> = sc.txs.iter().map(|t| t.0).collect();
    let before = view(s, &all, &sc.p, 2);
    s.prune(&PruneBatch {
        milestone: 0,
        txs: vec![],
        entry_points: eps.clone(),
    })
    .unwrap();
    let after = view(s, &all, &sc.p, 2);
    assert_eq!(
        after.pruned,
        Some(PruneState {
            milestone: 2,
            entry_points: eps
        })
    );
    assert_eq!(
        View {
            pruned: None,
            ..after
        },
        View {
            pruned: None,
            ..before
        }
    );
    assert_eq!(s.transaction_count().unwrap(), 5);
}

/// A pruned transaction stored again is a new transaction: fresh metadata (not its old
/// confirmation), appended to its payload's record, and it can be confirmed again.
pub fn pruned_transaction_stored_again<S: Store>(s: &S) {
    let sc = Scenario::run(s);
    let id = |i: usize| sc.txs[i].0;
    let p1 = sc.p[0];
    // tx1 (p1's second copy) was confirmed by milestone 2, after the pruned milestone.
    s.prune(&PruneBatch {
        milestone: 1,
        txs: vec![id(1), id(6)],
        entry_points: vec![],
    })
    .unwrap();
    assert_eq!(s.payload(&p1).unwrap().unwrap().txs, vec![id(0)]);
    let (tx1, bytes1, _) = &sc.txs[1];
    assert_eq!(
        s.put_transactions(&[entry(*tx1, bytes1, Some(p1))])
            .unwrap(),
        1
    );
    assert_eq!(
        s.metadata(tx1).unwrap(),
        Some(TxMeta::new(1_000, false, Some(p1)))
    );
    assert_eq!(s.transaction(tx1).unwrap().as_ref(), Some(bytes1));
    let r1 = s.payload(&p1).unwrap().unwrap();
    assert_eq!(r1.txs, vec![id(0), id(1)]);
    assert_eq!(
        r1.status,
        PayloadStatus::Confirmed {
            milestone: 1,
            tx: id(0)
        }
    );
    assert_eq!(s.transaction_count().unwrap(), 6);
    let used = PayloadOutcome::Conflicting(ConflictReason::SeqAlreadyUsed);
    s.apply_milestone(&empty_milestone(3, id(0), &[(id(1), Some((p1, used)))]))
        .unwrap();
    let m = s.metadata(tx1).unwrap().unwrap();
    assert_eq!((m.confirmed_by, m.outcome), (Some(3), Some(used)));
    assert_eq!(
        s.payload(&p1).unwrap().unwrap().status,
        PayloadStatus::Confirmed {
            milestone: 1,
            tx: id(0)
        }
    );
}

/// Pruning survives closing and reopening: what the store showed after a series of prunes
/// (with transactions stored again, milestones applied in between, payloads partly and
/// wholly pruned), it shows after reopening, and pruning goes on from there. `open` is
/// called twice; the first store is dropped (closed) before the second call.
pub fn prune_persistence<S: Store>(mut open: impl FnMut() -> S) {
    let (expected, all, payloads) = {
        let s = open();
        let sc = Scenario::run(&s);
        let id = |i: usize| sc.txs[i].0;
        s.mark_solid(&[id(3)]).unwrap();
        // p1 keeps tx1 (its status comes from tx0), p2 keeps tx4, p3 goes.
        s.prune(&PruneBatch {
            milestone: 1,
            txs: vec![id(0), id(2), id(5)],
            entry_points: vec![(id(6), 1)],
        })
        .unwrap();
        let (tx2, bytes2, p2) = &sc.txs[2];
        s.put_transactions(&[entry(*tx2, bytes2, *p2)]).unwrap();
        s.apply_milestone(&empty_milestone(3, id(6), &[])).unwrap();
        // p4 goes.
        s.prune(&PruneBatch {
            milestone: 1,
            txs: vec![id(3)],
            entry_points: vec![(id(6), 1), (id(4), 2)],
        })
        .unwrap();
        s.flush().unwrap();
        let all: Vec<TxId> = sc.txs.iter().map(|t| t.0).collect();
        (view(&s, &all, &sc.p, 3), all, sc.p)
    };
    assert_eq!(expected.count, 4);
    assert_eq!(
        expected.payloads[0].1.as_ref().map(|r| r.status),
        Some(PayloadStatus::Confirmed {
            milestone: 1,
            tx: all[0]
        })
    );
    assert_eq!(expected.payloads[3].1, None, "p4 lost its only transaction");
    let s = open();
    assert_eq!(view(&s, &all, &payloads, 3), expected);
    s.prune(&PruneBatch {
        milestone: 3,
        txs: vec![all[1], all[2]],
        entry_points: vec![],
    })
    .unwrap();
    assert_eq!(s.transaction_count().unwrap(), 2);
    assert_eq!(s.milestone(3).unwrap(), None);
    assert_eq!(s.payload(&payloads[0]).unwrap(), None);
    s.flush().unwrap();
    let expected = view(&s, &all, &payloads, 3);
    drop(s);
    assert_eq!(view(&open(), &all, &payloads, 3), expected);
}

/// Everything written and flushed before closing is there after reopening. `open` is
/// called twice; the first store is dropped (closed) before the second call.
pub fn reopen_persistence<S: Store>(mut open: impl FnMut() -> S) {
    let (expected_ledger, expected_txs, p1) = {
        let s = open();
        let sc = Scenario::run(&s);
        s.mark_solid(&[sc.txs[0].0]).unwrap();
        s.flush().unwrap();
        let mut txs = Vec::new();
        for (id, bytes, _) in &sc.txs {
            txs.push((*id, bytes.clone(), s.metadata(id).unwrap().unwrap()));
        }
        (
            sc.ledger.to_state(),
            txs,
            (sc.p[0], s.payload(&sc.p[0]).unwrap().unwrap()),
        )
    };
    let s = open();
    assert_eq!(s.load_ledger().unwrap().as_ref(), Some(&expected_ledger));
    assert_eq!(s.confirmed_index().unwrap(), Some(2));
    assert_eq!(s.transaction_count().unwrap(), expected_txs.len());
    for (id, bytes, meta) in &expected_txs {
        assert_eq!(s.transaction(id).unwrap().as_ref(), Some(bytes));
        assert_eq!(s.metadata(id).unwrap().as_ref(), Some(meta));
    }
    assert!(expected_txs[0].2.solid);
    assert_eq!(s.payload(&p1.0).unwrap().as_ref(), Some(&p1.1));
    assert!(s.milestone(1).unwrap().is_some() && s.milestone(2).unwrap().is_some());
    let back = Ledger::from_parts(s.load_ledger().unwrap().unwrap()).unwrap();
    assert_eq!(back.digest(), expected_ledger.digest);
}

//! Stateless work the core hands to its driver: proof of work for the transactions it built,
//! then stage-1 validation (structure, PoW, payload signature) of their bytes.
//!
//! As quinn-proto leaves sockets to quinn, the core leaves its expensive stateless work to
//! the driver: the driver chooses the threads (the node: the rayon pool; the simulator and
//! the in-memory harness: the calling thread) and never holds the core while the work runs.
//! A [`Work`] carries the state of the job it belongs to; the driver hands the result back
//! with [`Protocol::handle_work_done`], which continues the job and may return the next
//! step's work.
//!
//! ```text
//! let mut step = core.submit_payloads(payloads, now);          // or: core.poll_work()
//! loop {
//!     match step {
//!         Step::Work(mut w) => {
//!             let bytes = w.txs.iter_mut().map(|tx| Work::solve(tx, w.difficulty)).collect();
//!             let done = w.done(bytes, &validator);               // no lock held
//!             step = core.handle_work_done(done);
//!         }
//!         Step::Submitted(results) => break,                     // one per payload
//!         Step::Idle => break,
//!     }
//! }
//! ```
//!
//! Every work taken from the core must be handed back: a milestone's ledger is applied when
//! its work goes out, and the milestone is attached when it comes back.

use dag_core::codec;
use dag_core::store::TxMeta;
use dag_core::tangle::InsertOutcome;
use dag_core::validate::{BatchValidator, ValidTransaction, ValidationError};
use dag_core::whiteflag::ConeOutcome;
use dag_core::{
    pow, DecodeError, Milestone, MilestoneIndex, PayloadId, SignedPayload, Transaction, TxId, TxRef,
};

use super::Protocol;
use crate::types::{Event, Refusal, StoreWrite, StoredTx, Submitted};
use tip_selection::TipSelector;

/// Transactions built by the core that need proof of work and validation. Solve each
/// ([`Work::solve`]) on any thread, then [`Work::done`] with their encodings.
#[derive(Debug)]
pub struct Work {
    /// The transactions, nonce still zero.
    pub txs: Vec<Transaction>,
    /// PoW difficulty of the network.
    pub difficulty: u8,
    /// Validate as of this time (ms): when the core built them.
    pub now: u64,
    pub(super) job: Job,
}

/// Finished [`Work`]: one verdict per transaction, in order. Hand it back with
/// [`Protocol::handle_work_done`].
#[derive(Debug)]
pub struct WorkDone {
    verdicts: Vec<Result<ValidTransaction, ValidationError>>,
    now: u64,
    job: Job,
}

/// What a call that may need the driver's work returns.
#[derive(Debug)]
#[must_use = "work taken from the core must be done and handed back"]
pub enum Step {
    /// Do this work and hand it back with [`Protocol::handle_work_done`].
    Work(Work),
    /// A submission finished: one result per payload, in order.
    Submitted(Vec<Result<Submitted, Refusal>>),
    /// Nothing more to do for this job.
    Idle,
}

/// The job a [`Work`] belongs to, with what it needs to continue.
#[derive(Debug)]
pub(super) enum Job {
    /// Local payloads being attached (see [`Protocol::submit_payloads`]).
    Submit(Submission),
    /// One level of the tip sweep's merge tree of milestone `index`; `carry` joins the
    /// next level unmerged.
    Sweep {
        index: MilestoneIndex,
        carry: Option<TxRef>,
    },
    /// The milestone transaction of `index`; the ledger already holds its cone's effects.
    Milestone {
        index: MilestoneIndex,
        milestone: Box<Milestone>,
        applied: Box<ConeOutcome>,
    },
    /// Reattachments of these local payloads, in the order of the work's transactions.
    Reattach { payloads: Vec<PayloadId> },
    /// The transaction of committee milestone `index`, with k signatures
    /// (`committee.rs`).
    Publish { index: MilestoneIndex },
}

/// Local payloads on their way into the Tangle, with their results so far.
#[derive(Debug)]
pub(super) struct Submission {
    /// Payloads still to prepare, with their slot in `out`.
    pub(super) todo: Vec<(usize, SignedPayload)>,
    /// Slots and payload ids of the work out with the driver, in its order.
    pub(super) slots: Vec<(usize, PayloadId)>,
    pub(super) out: Vec<Option<Result<Submitted, Refusal>>>,
    pub(super) now: u64,
}

impl Work {
    pub(super) fn new(txs: Vec<Transaction>, difficulty: u8, now: u64, job: Job) -> Self {
        Work {
            txs,
            difficulty,
            now,
            job,
        }
    }

    /// Proof of work for one transaction (its nonce is set); returns its canonical bytes.
    pub fn solve(tx: &mut Transaction, difficulty: u8) -> Vec<u8> {
        pow::solve(tx, difficulty);
        codec::encode(tx)
    }

    /// Validates the driver's encodings of [`Work::txs`] (same order) as of [`Work::now`]
    /// with `validator` (the core's, [`Protocol::validator`]); a missing encoding counts as
    /// a transaction that failed to decode.
    pub fn done(self, encoded: Vec<Vec<u8>>, validator: &BatchValidator) -> WorkDone {
        let mut verdicts = validator.validate_batch(&encoded, self.now);
        verdicts.truncate(self.txs.len());
        while verdicts.len() < self.txs.len() {
            verdicts.push(Err(ValidationError::Decode(DecodeError::Malformed(
                "the driver returned no encoding for it".into(),
            ))));
        }
        WorkDone {
            verdicts,
            now: self.now,
            job: self.job,
        }
    }

    /// Does all of it on the calling thread (single-threaded drivers and tests).
    pub fn run(mut self, validator: &BatchValidator) -> WorkDone {
        let difficulty = self.difficulty;
        let encoded = self
            .txs
            .iter_mut()
            .map(|tx| Work::solve(tx, difficulty))
            .collect();
        self.done(encoded, validator)
    }
}

impl Protocol {
    /// The next work the core started by itself (milestone issuing and reattachment, after
    /// [`Protocol::handle_tick`]). Do it and hand it back with
    /// [`Protocol::handle_work_done`].
    pub fn poll_work(&mut self) -> Option<Work> {
        self.work.pop_front()
    }

    /// Takes finished work and carries on with its job; returns the job's next work, a
    /// submission's results, or [`Step::Idle`].
    pub fn handle_work_done(&mut self, done: WorkDone) -> Step {
        let WorkDone { verdicts, now, job } = done;
        match job {
            Job::Submit(s) => self.submission_done(s, verdicts),
            Job::Sweep { index, carry } => self.sweep_done(index, carry, verdicts, now),
            Job::Milestone {
                index,
                milestone,
                applied,
            } => self.milestone_done(index, *milestone, *applied, verdicts, now),
            Job::Reattach { payloads } => self.reattach_done(payloads, verdicts, now),
            Job::Publish { index } => self.publish_done(index, verdicts, now),
        }
    }

    /// Does every outstanding work of the core on the calling thread, including the work
    /// each step leads to: for single-threaded drivers (the simulator, tests), never under
    /// a lock shared with other threads.
    pub fn run_work_inline(&mut self) {
        while let Some(w) = self.poll_work() {
            let mut step = Step::Work(w);
            while let Step::Work(w) = step {
                let done = w.run(&self.validator.clone());
                step = self.handle_work_done(done);
            }
        }
    }

    /// [`Protocol::submit_payloads`] with its work done on the calling thread.
    pub fn submit_payloads_inline(
        &mut self,
        payloads: Vec<SignedPayload>,
        now: u64,
    ) -> Vec<Result<Submitted, Refusal>> {
        let mut step = self.submit_payloads(payloads, now);
        loop {
            match step {
                Step::Work(w) => {
                    let done = w.run(&self.validator.clone());
                    step = self.handle_work_done(done);
                }
                Step::Submitted(r) => return r,
                Step::Idle => return Vec::new(),
            }
        }
    }

    /// Attaches a transaction the core built and the driver solved and validated: inserts
    /// it (it must be solid: its parents are), queues its write. `None` if the Tangle
    /// refused it.
    pub(super) fn attach_own(
        &mut self,
        vt: ValidTransaction,
        milestone: Option<MilestoneIndex>,
        now: u64,
        batch: &mut Vec<StoredTx>,
    ) -> Option<(TxId, TxRef)> {
        let id = vt.id();
        let parents = vt.tx().parents;
        let r = match self.tangle.insert(id, parents, milestone, now) {
            Ok(InsertOutcome::Solid(refs)) => refs[0].1,
            _ => return None,
        };
        self.selector.on_solid(&self.tangle, r);
        let (_, _, bytes) = vt.into_parts();
        batch.push(StoredTx {
            id,
            bytes,
            meta: TxMeta::new(now, true, None),
            // A milestone this node issued is announced only once durable, like the
            // faucet's payloads: gossiped before its write, a crash lost it here while a
            // peer held it, and the restarted issuer signed another milestone of that
            // index (a fork: peers halted). Found by `tangle-sim chaos` (seed 344).
            node_signed: milestone.is_some(),
        });
        Some((id, r))
    }

    /// Queues `batch` as one store write (if not empty).
    pub(super) fn queue_batch(&mut self, batch: Vec<StoredTx>) {
        if !batch.is_empty() {
            self.writes.push_back(StoreWrite::Transactions(batch));
        }
    }

    /// Emits the solid event of a transaction the core attached itself.
    pub(super) fn emit_solid(&mut self, tx: TxId, parents: [TxId; 2]) {
        self.events.push_back(Event::Solid {
            tx,
            payload: None,
            parents,
        });
    }
}

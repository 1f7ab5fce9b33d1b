//! Ingest rounds: client transactions and payloads of one batch, the core's work (proof of
//! work and validation on the rayon pool, outside the lock), the timer, and the replies.

use super::*;

impl Shared {
    /// One ingest batch (runs on a blocking thread).
    pub(super) fn process(&self, requests: Vec<Request>) {
        let now = now_ms();
        // Move the data out of the requests; keep each reply with how many verdicts it gets.
        let mut tx_bytes: Vec<Vec<u8>> = Vec::new();
        let mut payloads: Vec<SignedPayload> = Vec::new();
        let mut tx_replies = Vec::new();
        let mut payload_replies = Vec::new();
        for r in requests {
            match r {
                Request::Transactions(t, reply) => {
                    tx_replies.push((t.len(), reply));
                    tx_bytes.extend(t);
                }
                Request::Payloads(p, reply) => {
                    payload_replies.push((p.len(), reply));
                    payloads.extend(p);
                }
            }
        }
        let tx_results = self.ingest_transactions(tx_bytes, now);
        let payload_results = self.ingest_payloads(payloads, now);
        // Nothing is acknowledged unless the round's writes were flushed.
        let store_err = self
            .persist()
            .err()
            .map(|e| SubmitError::Unavailable(format!("storage: {e}")));
        answer(tx_results, tx_replies, &store_err);
        answer(payload_results, payload_replies, &store_err);
    }

    pub(super) fn count(&self, ok: bool) {
        if ok {
            self.metrics.transactions_accepted.inc();
        } else {
            self.metrics.transactions_rejected.inc();
        }
    }

    pub(super) fn ingest_transactions(
        &self,
        bytes: Vec<Vec<u8>>,
        now: u64,
    ) -> Vec<Result<TxId, SubmitError>> {
        if bytes.is_empty() {
            return Vec::new();
        }
        if let Some(e) = self.unavailable() {
            return bytes.iter().map(|_| Err(e.clone())).collect();
        }
        let verdicts = self.validator.validate_batch(&bytes, now);
        let mut out: Vec<Option<Result<TxId, SubmitError>>> = Vec::with_capacity(bytes.len());
        let mut valid = Vec::new();
        let mut slots = Vec::new();
        for (i, v) in verdicts.into_iter().enumerate() {
            match v {
                Ok(vt) => {
                    valid.push(vt);
                    slots.push(i);
                    out.push(None);
                }
                Err(e) => out.push(Some(Err(validation_error(e)))),
            }
        }
        let results = self.lock().handle_transactions(valid, Origin::Api, now);
        for (slot, r) in slots.into_iter().zip(results) {
            out[slot] = Some(r.map_err(reject_error));
        }
        out.into_iter()
            .map(|r| {
                let r = r.expect("every slot filled");
                self.count(r.is_ok());
                r
            })
            .collect()
    }

    pub(super) fn ingest_payloads(
        &self,
        payloads: Vec<SignedPayload>,
        now: u64,
    ) -> Vec<Result<PayloadReceipt, SubmitError>> {
        if payloads.is_empty() {
            return Vec::new();
        }
        if let Some(e) = self.unavailable() {
            return payloads.iter().map(|_| Err(e.clone())).collect();
        }
        let step = self.lock().submit_payloads(payloads, now);
        let results = self.drive(step).unwrap_or_default();
        results
            .into_iter()
            .map(|r| {
                let r = r
                    .map(|s| PayloadReceipt {
                        payload_id: s.payload,
                        transaction_id: s.tx,
                    })
                    .map_err(|e| match e {
                        Refusal::Invalid(e) => validation_error(e),
                        Refusal::Rejected(e) => reject_error(e),
                    });
                self.count(r.is_ok());
                r
            })
            .collect()
    }

    /// Runs the core's work and every step it leads to: proof of work on the rayon pool,
    /// validation (batch, parallel), the core locked only to hand each result back.
    /// Returns a submission's results when the job was one.
    pub(super) fn drive(&self, mut step: Step) -> Option<Vec<Result<Submitted, Refusal>>> {
        loop {
            match step {
                Step::Work(mut work) => {
                    let difficulty = work.difficulty;
                    let encoded: Vec<Vec<u8>> = work
                        .txs
                        .par_iter_mut()
                        .map(|tx| Work::solve(tx, difficulty))
                        .collect();
                    let done = work.done(encoded, &self.validator);
                    step = self.lock().handle_work_done(done);
                }
                Step::Submitted(r) => return Some(r),
                Step::Idle => return None,
            }
        }
    }

    /// The timer: ticks the core, then does the work the tick started (milestone issuing,
    /// reattachment) outside the lock.
    pub(super) fn tick(&self, now: u64) {
        self.lock().handle_tick(now);
        loop {
            // (Not `while let`: its scrutinee's guard would be held through the body.)
            let work = self.lock().poll_work();
            let Some(work) = work else { break };
            let _ = self.drive(Step::Work(work));
        }
    }
}

/// A request's reply channel: one verdict per item it carried.
pub(super) type Reply<T> = oneshot::Sender<Vec<Result<T, SubmitError>>>;

/// Sends each request its slice of `results`, in order; a failed flush turns successes into
/// `store_err`.
pub(super) fn answer<T>(
    results: Vec<Result<T, SubmitError>>,
    replies: Vec<(usize, Reply<T>)>,
    store_err: &Option<SubmitError>,
) {
    let mut results = results.into_iter();
    for (n, reply) in replies {
        let v: Vec<_> = results
            .by_ref()
            .take(n)
            .map(|r| match (store_err, r) {
                (Some(e), Ok(_)) => Err(e.clone()),
                (_, r) => r,
            })
            .collect();
        let _ = reply.send(v);
    }
}

pub(super) fn validation_error(e: ValidationError) -> SubmitError {
    match e {
        ValidationError::Decode(DecodeError::TooLarge { .. }) => {
            SubmitError::TooLarge(e.to_string())
        }
        ValidationError::Decode(_) => SubmitError::Malformed(e.to_string()),
        other => SubmitError::Invalid(other.to_string()),
    }
}

pub(super) fn reject_error(e: RejectReason) -> SubmitError {
    if e.is_conflict() {
        return SubmitError::Conflict(e.to_string());
    }
    match e {
        RejectReason::NoTips(_) | RejectReason::Halted(_) => {
            SubmitError::Unavailable(e.to_string())
        }
        RejectReason::Tangle(InsertError::BufferFull { .. }) | RejectReason::PendingQuota => {
            SubmitError::Unavailable(e.to_string())
        }
        other => SubmitError::Invalid(other.to_string()),
    }
}

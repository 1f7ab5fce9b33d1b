//! Persistence: draining the core's writes in order, the backlog retried after storage
//! errors, the milestone writer thread, and restoring the core from the store at start.

use super::*;

/// Writes that failed, kept to be retried in order (see [`Shared::persist`]).
#[derive(Default)]
pub(super) struct Backlog {
    /// Transaction writes, retried as a whole (they are idempotent: stored ids are skipped).
    direct: Vec<StoreWrite>,
    /// Milestone jobs that wait for `direct` (a batch never goes before its transactions).
    jobs: Vec<MilestoneJob>,
}

/// A milestone's store batches (and the prunes that follow them, which drop what they
/// confirmed), and the events that wait for them to be durable.
pub(super) struct MilestoneJob {
    /// [`StoreWrite::Milestone`] and [`StoreWrite::Pruned`], in the core's order.
    writes: Vec<StoreWrite>,
    events: Vec<Event>,
}

/// The milestone writer thread: applies each job's batches in order, flushes, then
/// publishes its events. Ends when the queue closes (shutdown, or the node is gone).
pub(super) fn milestone_writer(
    shared: std::sync::Weak<Shared>,
    jobs: std::sync::mpsc::Receiver<MilestoneJob>,
) {
    while let Ok(job) = jobs.recv() {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        // A failed write is retried (with backoff) until it succeeds: a transient failure
        // (a full disk freed, file descriptors released) must not stop the node for good.
        let mut wait = Duration::from_millis(50);
        // Writes done so far: a retry goes on from the first that failed (a milestone batch
        // applied twice would be refused as non-consecutive).
        let mut done = 0;
        loop {
            let written = job.writes[done..]
                .iter()
                .try_for_each(|w| {
                    match w {
                        StoreWrite::Pruned(b) => shared.prune(b)?,
                        w => {
                            write_one(&*shared.store, w)?;
                        }
                    }
                    done += 1;
                    Ok(())
                })
                .and_then(|()| shared.store.flush());
            match written {
                Ok(()) => {
                    if shared.milestone_failing.swap(false, Ordering::SeqCst) {
                        tracing::info!("milestone write succeeded again; storage recovered");
                    }
                    break;
                }
                Err(e) => {
                    shared.storage_failed(&e, &shared.milestone_failing);
                    if shared.stopping.load(Ordering::SeqCst) {
                        tracing::error!(error = %e, "shutting down with a milestone batch unwritten; it is applied again from its transactions on restart");
                        return;
                    }
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        }
        shared.metrics.store_flushes.inc();
        shared.publish(job.events);
        let last = job.writes.iter().rev().find_map(|w| match w {
            StoreWrite::Milestone(b) => Some(b),
            _ => None,
        });
        if let Some(last) = last {
            *shared
                .durable_milestone
                .lock()
                .unwrap_or_else(|p| p.into_inner()) =
                (last.record.index, last.record.ledger_digest);
        }
    }
}

/// Carries out one protocol write (no flush); returns how many transactions were new.
pub(super) fn write_one(store: &dyn Store, w: &StoreWrite) -> Result<usize, StoreError> {
    w.apply_to(store)
}

/// Builds the protocol from the store: ledger (or genesis), then transactions in arrival
/// order, then confirmation marks.
pub(super) fn restore(
    genesis: Genesis,
    config: ProtocolConfig,
    store: &dyn Store,
) -> Result<Protocol, NodeError> {
    let (mut core, report) = restore_from_store(genesis, config, store, now_ms())?;
    if report.bad > 0 {
        tracing::warn!(
            bad = report.bad,
            "stored transactions could not be re-attached"
        );
    }
    // Milestones applied again (their batches were lost in a crash): store them before the
    // node starts, so the stored ledger never lags the one in memory.
    let mut milestones = 0;
    while let Some(w) = core.poll_store_write() {
        milestones += usize::from(matches!(w, StoreWrite::Milestone(_)));
        write_one(store, &w)?;
    }
    if milestones > 0 {
        store.flush()?;
        tracing::info!(
            milestones,
            "milestones whose batches were lost in a crash applied again"
        );
    }
    tracing::info!(
        transactions = report.transactions,
        pruned_milestone = report.pruned_milestone,
        confirmed_milestone = core.ledger().confirmed_index(),
        "state restored"
    );
    Ok(core)
}

impl Shared {
    /// Carries out a prune, and remembers what it dropped (for 410 answers): the
    /// transactions, their payloads, the views of the pruned milestones.
    pub(super) fn prune(&self, b: &dag_core::store::PruneBatch) -> Result<(), StoreError> {
        let mut payloads = Vec::new();
        for id in &b.txs {
            if let Some(p) = self.store.metadata(id)?.and_then(|m| m.payload) {
                payloads.push(p);
            }
        }
        self.store.prune(b)?;
        self.metrics.store_transactions.dec_by(b.txs.len() as i64);
        self.pruned.record(
            b.milestone,
            b.txs
                .iter()
                .map(|t| &t.0)
                .chain(payloads.iter().map(|p| &p.0)),
        );
        self.milestones
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|index, _| *index > b.milestone);
        Ok(())
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Protocol> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drains the protocol's writes and events; writes the transactions and flushes once,
    /// publishes the events that do not wait for a milestone, and queues milestone batches
    /// with their events for the milestone writer (see the module docs).
    pub(super) fn persist(&self) -> Result<(), StoreError> {
        let _order = self.write_order.lock().unwrap_or_else(|p| p.into_inner());
        let (writes, events) = {
            let mut core = self.lock();
            let mut w = Vec::new();
            while let Some(x) = core.poll_store_write() {
                w.push(x);
            }
            let mut e = Vec::new();
            while let Some(x) = core.poll_event() {
                e.push(x);
            }
            (w, e)
        };
        let mut direct = Vec::with_capacity(writes.len());
        let mut batches = Vec::new();
        for w in writes {
            match w {
                // In order after the milestone batches it follows (it drops what they
                // confirmed), so it goes to the milestone writer too.
                w @ (StoreWrite::Milestone(_) | StoreWrite::Pruned(_)) => batches.push(w),
                other => direct.push(other),
            }
        }
        let (now, later): (Vec<Event>, Vec<Event>) = if batches.is_empty() {
            (events, Vec::new())
        } else {
            events
                .into_iter()
                .partition(|e| !matches!(e, Event::Milestone(_) | Event::Payload { .. }))
        };
        // Gossip on acceptance, before the flush, except what this node signed itself (see
        // `StoredTx::node_signed`), which goes out once durable.
        self.notify_accepted(&direct, false);
        // Earlier writes that failed go first; the whole backlog is written again (stored
        // transactions are skipped), so nothing is lost or reordered by a failure.
        let mut backlog = self.backlog.lock().unwrap_or_else(|p| p.into_inner());
        backlog.direct.extend(direct);
        if !batches.is_empty() {
            backlog.jobs.push(MilestoneJob {
                writes: batches,
                events: later,
            });
        }
        let result = self.write_all(&backlog.direct);
        self.publish(now);
        match &result {
            Ok(()) => {
                self.notify_accepted(&backlog.direct, true);
                backlog.direct.clear();
                if self.store_failing.swap(false, Ordering::SeqCst) {
                    tracing::info!("store writes succeed again; the node accepts data");
                }
                let jobs = self
                    .milestone_jobs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                for job in backlog.jobs.drain(..) {
                    if let Some(jobs) = jobs.as_ref() {
                        let _ = jobs.send(job);
                    }
                }
            }
            Err(e) => self.storage_failed(e, &self.store_failing),
        }
        drop(backlog);
        self.refresh_gauges();
        result
    }

    /// Records a failed write: the node refuses data while `flag` is set, and says why.
    pub(super) fn storage_failed(&self, e: &StoreError, flag: &AtomicBool) {
        if !flag.swap(true, Ordering::SeqCst) {
            tracing::error!(error = %e, "store write failed; the node accepts no data and retries");
        }
        self.metrics.store_errors.inc();
        *self.store_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }

    /// Whether a storage failure is being retried.
    pub(super) fn storage_failing(&self) -> bool {
        self.store_failing.load(Ordering::SeqCst) || self.milestone_failing.load(Ordering::SeqCst)
    }

    /// Hands new transactions to the accepted hook: those signed by others (`node_signed`
    /// false) or by this node (true).
    pub(super) fn notify_accepted(&self, writes: &[StoreWrite], node_signed: bool) {
        let hook = self.on_accepted.read().unwrap_or_else(|p| p.into_inner());
        if let Some(hook) = hook.as_ref() {
            for w in writes {
                if let StoreWrite::Transactions(txs) = w {
                    if txs.iter().all(|t| t.node_signed == node_signed) {
                        hook(txs);
                    } else {
                        let some: Vec<_> = txs
                            .iter()
                            .filter(|t| t.node_signed == node_signed)
                            .cloned()
                            .collect();
                        if !some.is_empty() {
                            hook(&some);
                        }
                    }
                }
            }
        }
    }

    pub(super) fn write_all(&self, writes: &[StoreWrite]) -> Result<(), StoreError> {
        for w in writes {
            let new = write_one(&*self.store, w)?;
            self.metrics.store_transactions.inc_by(new as i64);
        }
        if writes.iter().any(|w| matches!(w, StoreWrite::Milestone(_))) {
            self.store.flush()?;
            self.metrics.store_flushes.inc();
        } else if !writes.is_empty() {
            self.store.flush_transactions()?;
            self.metrics.store_flushes.inc();
        }
        Ok(())
    }

    pub(super) fn publish(&self, events: Vec<Event>) {
        for e in events {
            let ev = match e {
                Event::Solid {
                    tx,
                    payload,
                    parents,
                } => NodeEvent::Transaction {
                    transaction_id: tx,
                    payload_id: payload,
                    parents: parents.to_vec(),
                },
                Event::Milestone(s) => {
                    self.metrics
                        .transactions_confirmed
                        .inc_by(s.confirmed as u64);
                    self.metrics.payloads_applied.inc_by(s.applied as u64);
                    self.metrics
                        .payloads_conflicting
                        .inc_by(s.conflicting as u64);
                    for d in &s.delays_ms {
                        self.metrics
                            .confirmation_latency
                            .observe(*d as f64 / 1000.0);
                    }
                    let view = milestone_view(&s);
                    let age_ms = super::now_ms().saturating_sub(view.timestamp);
                    self.metrics
                        .milestone_issuance_latency
                        .observe(age_ms as f64 / 1000.0);
                    self.milestones
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(s.record.index, view.clone());
                    NodeEvent::Milestone(view)
                }
                Event::Payload { payload, status } => {
                    // A copy of a payload that another copy already decided conflicts for
                    // its used seq: announce the payload's own (stored) status, once.
                    let status = match status {
                        PayloadStatus::Conflicting {
                            reason: ConflictReason::SeqAlreadyUsed,
                            ..
                        } => match self.store.payload(&payload) {
                            Ok(Some(rec)) if rec.status != status => continue,
                            _ => status,
                        },
                        other => other,
                    };
                    NodeEvent::Payload {
                        payload_id: payload,
                        state: payload_state(status),
                    }
                }
                Event::Reattached { payload, tx } => NodeEvent::Reattached {
                    payload_id: payload,
                    transaction_id: tx,
                },
                Event::Halted(_) => continue,
            };
            // No subscriber is fine.
            let _ = self.events.send(ev);
        }
    }

    pub(super) fn refresh_gauges(&self) {
        let core = self.lock();
        let t = core.tangle();
        self.metrics.tips.set(t.tips().len() as i64);
        self.metrics.tangle_size.set(t.len() as i64);
        self.metrics
            .pending_transactions
            .set(core.pending_len() as i64);
        self.metrics
            .confirmed_milestone
            .set(i64::from(core.ledger().confirmed_index()));
        self.metrics
            .latest_milestone
            .set(i64::from(core.latest_milestone()));
        let sizes = core.internal_sizes();
        drop(core);
        for (structure, n) in sizes.into_iter().chain(self.store.internal_sizes()) {
            self.metrics
                .internal_entries
                .get_or_create(&crate::metrics::StructureLabels { structure })
                .set(n as i64);
        }
    }

    pub(super) fn unavailable(&self) -> Option<SubmitError> {
        if self.storage_failing() {
            return Some(SubmitError::Unavailable(
                "storage is failing; the node retries and accepts no data until it recovers".into(),
            ));
        }
        None
    }
}

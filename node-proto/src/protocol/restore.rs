//! Start from the store: stored transactions re-inserted in arrival order, confirmation
//! marks of applied milestones replayed, undecided payloads kept alive again.

use dag_core::codec;
use dag_core::ledger::Ledger;
use dag_core::store::{PruneState, Store, StoreError, TxMeta};
use dag_core::tangle::{InsertOutcome, Tangle};
use dag_core::{Genesis, MilestoneIndex, Payload, TangleView, TxId, TxRef};
use tip_selection::{AnySelector, RestrictedUrtsConfig, WalkConfig};

use super::{Buffered, OwnPayload, Protocol};
use crate::types::{ProtocolConfig, ProtocolError};
use tip_selection::TipSelector;

impl Protocol {
    /// Starts the restore of a store that was pruned ([`dag_core::store::Store::pruned`]):
    /// the Tangle starts from the stored solid entry points, and the milestones up to the
    /// pruned one count as replayed. Call it before [`Protocol::restore_transaction`].
    pub fn restore_pruned(&mut self, state: &PruneState) {
        self.tangle =
            Tangle::from_entry_points(self.config.tangle, state.milestone, &state.entry_points);
        self.selector = AnySelector::new(
            self.config.selector,
            RestrictedUrtsConfig::default(),
            WalkConfig::default(),
        );
        self.pruned_index = state.milestone;
    }

    // ----- restore -----

    /// Re-inserts a stored transaction on start (in arrival order). Returns false if the
    /// bytes are not a transaction or it could not be attached.
    pub fn restore_transaction(&mut self, id: TxId, bytes: &[u8], meta: &TxMeta) -> bool {
        self.restore_one(id, bytes, meta).0
    }

    /// [`Protocol::restore_transaction`], also returning the index of the milestone the
    /// transaction carries, if it carries one.
    fn restore_one(
        &mut self,
        id: TxId,
        bytes: &[u8],
        meta: &TxMeta,
    ) -> (bool, Option<MilestoneIndex>) {
        let Ok(tx) = codec::decode(bytes) else {
            return (false, None);
        };
        if let Payload::Signed(p) = &tx.payload {
            let pid = meta.payload.unwrap_or_else(|| p.id());
            match meta.outcome {
                // Decided for good by one carrier: nothing to keep alive.
                Some(o) if o.is_final() => {
                    self.decided.insert(pid);
                }
                Some(_) => {
                    self.restored.insert(pid, (p.clone(), id, true));
                }
                None if meta.confirmed_by.is_none() => {
                    self.restored.insert(pid, (p.clone(), id, false));
                }
                None => {}
            }
            // A sequence number of the node's own key that a stored payload carries is
            // taken, whatever became of that payload: never sign another payload with it.
            let _ = self.note_faucet_seq(p);
        }
        let ms = tx.milestone().map(|m| m.index);
        let attached = match self.tangle.insert(id, tx.parents, ms, meta.arrival) {
            Ok(InsertOutcome::Solid(refs)) => {
                for (rid, r) in refs {
                    if rid == id {
                        self.after_solid(r, &tx, meta.confirmed_by.is_none(), false, meta.payload);
                    } else if let Some(b) = self.buffered.remove(&rid) {
                        self.after_solid(r, &b.tx, true, false, b.payload);
                    }
                }
                true
            }
            Ok(InsertOutcome::Pending { .. }) => {
                self.buffered.insert(
                    id,
                    Buffered {
                        tx,
                        bytes: None,
                        payload: meta.payload,
                        arrival: meta.arrival,
                        from: None,
                    },
                );
                true
            }
            Ok(InsertOutcome::Duplicate) => true,
            Err(_) => false,
        };
        (attached, ms)
    }

    /// Replays confirmation marks of the milestones already applied to the stored ledger, so
    /// the Tangle knows what is confirmed. The ledger itself is not touched (it was
    /// restored). Then applies any milestone that is solid and not yet applied: drain
    /// [`Protocol::poll_store_write`] afterwards and write those batches first.
    pub fn finish_restore(&mut self, now: u64) -> Result<(), ProtocolError> {
        let confirmed = self.ledger.confirmed_index();
        // Those not replayed yet ([`restore_from_store`] replays each as soon as its
        // milestone's transaction is in).
        let from = self.pruned_index.max(self.tangle.confirmed_milestone()) + 1;
        for index in from..=confirmed {
            self.replay_confirmation(index)?;
        }
        self.last_issued_at = now;
        // Keep alive what was not applied when the node stopped: the set of payloads this
        // node attached is not stored, so every unapplied payload it holds is taken on
        // (reattaching a peer's payload is harmless: one copy applies, the others
        // conflict). A sequence-gap conflict is reattached at the next tick.
        // A payload whose seq was used meanwhile is taken on too: reattached, it becomes
        // `conflicting` on every node (see `reattach_lazy`).
        let decided = std::mem::take(&mut self.decided);
        for (pid, (payload, tx, gap)) in std::mem::take(&mut self.restored) {
            if decided.contains(&pid) {
                continue;
            }
            self.own.entry(pid).or_insert(OwnPayload {
                payload,
                tx,
                attached_at_milestone: if gap { 0 } else { confirmed },
                reattachments: 0,
                gap,
                gap_reattachments: 0,
            });
        }
        self.fill_faucet_gaps();
        // Milestones whose transactions were stored but whose batch was not (the node
        // stopped in between) are applied now: their batches wait in the write queue, and
        // the driver must write them before anything else. (Dropping them left the stored
        // ledger behind the protocol's for good: found by the crash campaign.)
        self.apply_ready_milestones();
        self.prune_history();
        // Restoring announces nothing: nobody is subscribed yet.
        self.events.clear();
        // Parents still missing after a restart: request them (e.g. the node stopped
        // while solidifying).
        self.missing = self.buffered_missing();
        Ok(())
    }
}

impl Protocol {
    /// Marks the cone of applied milestone `index` confirmed in the Tangle, as it was when
    /// the node stopped (the ledger is not touched: it was restored).
    fn replay_confirmation(&mut self, index: MilestoneIndex) -> Result<(), ProtocolError> {
        self.milestones.remove(&index);
        let Some(ms_ref) = self.tangle.solid_milestone(index) else {
            return Err(ProtocolError::Restore(format!(
                "milestone {index} is applied in the ledger but its transaction is missing"
            )));
        };
        let roots: Vec<TxRef> = self.tangle.parents(ms_ref).to_vec();
        let mut order = self.tangle.unconfirmed_cone(&roots);
        order.push(ms_ref);
        for r in &order {
            self.forget_unconfirmed(*r);
        }
        self.tangle
            .confirm(&order, index, ms_ref)
            .map_err(|e| ProtocolError::Restore(e.to_string()))?;
        // Other copies of this milestone that became solid before this replay (two copies
        // waiting for the same parents become solid at one instant) are confirmed with it,
        // as when it was applied. Without this a restarted node kept such a copy
        // unconfirmed, the next milestone's cone held it there and not on the other
        // nodes, and it halted on a confirmed-root mismatch (committee chaos seed 255 and
        // the other confirmed-root halts).
        let ms_id = self.tangle.id(ms_ref);
        self.confirm_copies(index, ms_id);
        self.selector.on_confirmed(&self.tangle, index);
        Ok(())
    }
}

/// What [`restore_from_store`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Stored transactions read back.
    pub transactions: usize,
    /// Of those, how many could not be re-attached (not a transaction, or refused).
    pub bad: usize,
    /// The store had been pruned up to this milestone (0: never pruned).
    pub pruned_milestone: MilestoneIndex,
}

/// Builds a core from a store, in the one order that works: the ledger (or the genesis's,
/// written to a new store and flushed), the pruned state ([`Protocol::restore_pruned`]),
/// the stored transactions in arrival order, then [`Protocol::finish_restore`]. Milestones
/// applied again (their batches were lost in a crash) wait in the core's write queue: the
/// driver writes them ([`Protocol::poll_store_write`]) before anything else.
pub fn restore_from_store(
    genesis: Genesis,
    config: ProtocolConfig,
    store: &dyn Store,
    now: u64,
) -> Result<(Protocol, RestoreReport), ProtocolError> {
    let storage = |e: StoreError| ProtocolError::Restore(format!("storage: {e}"));
    let ledger = match store.load_ledger().map_err(storage)? {
        Some(state) => {
            Ledger::from_parts(state).map_err(|e| ProtocolError::Restore(e.to_string()))?
        }
        None => {
            let l = Ledger::from_genesis(&genesis)
                .map_err(|e| ProtocolError::Genesis(e.to_string()))?;
            store.init_ledger(&l.to_state()).map_err(storage)?;
            store.flush().map_err(storage)?;
            l
        }
    };
    if ledger.network_id() != genesis.network_id() {
        return Err(ProtocolError::Restore(format!(
            "the database belongs to network {}, the genesis defines {}",
            ledger.network_id(),
            genesis.network_id()
        )));
    }
    let mut core = Protocol::new(genesis, config, ledger)?;
    let mut report = RestoreReport::default();
    if let Some(state) = store.pruned().map_err(storage)? {
        report.pruned_milestone = state.milestone;
        core.restore_pruned(&state);
    }
    let confirmed = core.ledger.confirmed_index();
    // Each applied milestone's confirmation is replayed as soon as its transaction is in
    // (solid, so its whole cone is in too). `Tangle::confirm` recomputes the unconfirmed
    // transactions after the oldest one it confirms: replayed at the end, that is every
    // transaction still to be confirmed, once per milestone, O(milestones x transactions)
    // (30 s of a 40 s restart of 1.5M transactions and 260 milestones); replayed as they
    // come, it is the few transactions of the last milestone or two.
    //
    // The store visits transactions in storing order, so parents mostly come first and the
    // solidification buffer stays small; they are restored as they are read, not
    // collected and sorted first (that copy and sort were a third of a restart's CPU with
    // 600,000 transactions held).
    let mut next = core.pruned_index.max(core.tangle.confirmed_milestone()) + 1;
    core.tangle
        .reserve(store.transaction_count().map_err(storage)?);
    let mut replay = Ok(());
    // The first stored transaction carrying the last applied milestone.
    let mut last_milestone_tx = None;
    store
        .for_each_transaction(&mut |id, bytes, meta| {
            if replay.is_err() {
                return;
            }
            report.transactions += 1;
            let (attached, ms) = core.restore_one(*id, bytes, meta);
            if !attached {
                report.bad += 1;
            }
            if ms == Some(confirmed) && last_milestone_tx.is_none() {
                last_milestone_tx = Some(*id);
            }
            while next <= confirmed && core.tangle.solid_milestone(next).is_some() {
                replay = core.replay_confirmation(next);
                if replay.is_err() {
                    return;
                }
                next += 1;
            }
        })
        .map_err(storage)?;
    replay?;
    core.finish_restore(now)?;
    if core.milestone_tx(confirmed).is_none() {
        // Started from a snapshot: the last applied milestone's transaction is stored (an
        // entry point) but not held in the Tangle; the next milestone names it.
        match last_milestone_tx {
            Some(id) => core.last_milestone = Some((confirmed, id)),
            None => {
                return Err(ProtocolError::Restore(format!(
                    "the transaction of the last applied milestone {confirmed} is not stored"
                )))
            }
        }
    }
    Ok((core, report))
}

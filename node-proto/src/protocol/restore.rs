//! Start from the store: stored transactions re-inserted in arrival order, confirmation
//! marks of applied milestones replayed, undecided payloads kept alive again.

use dag_core::codec;
use dag_core::store::TxMeta;
use dag_core::tangle::InsertOutcome;
use dag_core::{Payload, TangleView, TxId, TxRef};

use super::{Buffered, OwnPayload, Protocol};
use crate::types::ProtocolError;
use tip_selection::TipSelector;

impl Protocol {
    // ----- restore -----

    /// Re-inserts a stored transaction on start (in arrival order). Returns false if the
    /// bytes are not a transaction or it could not be attached.
    pub fn restore_transaction(&mut self, id: TxId, bytes: &[u8], meta: &TxMeta) -> bool {
        let Ok(tx) = codec::decode(bytes) else {
            return false;
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
        match self.tangle.insert(id, tx.parents, ms, meta.arrival) {
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
        }
    }

    /// Replays confirmation marks of the milestones already applied to the stored ledger, so
    /// the Tangle knows what is confirmed. The ledger itself is not touched (it was
    /// restored). Then applies any milestone that is solid and not yet applied: drain
    /// [`Protocol::poll_store_write`] afterwards and write those batches first.
    pub fn finish_restore(&mut self, now: u64) -> Result<(), ProtocolError> {
        let confirmed = self.ledger.confirmed_index();
        for index in 1..=confirmed {
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
            self.selector.on_confirmed(&self.tangle, index);
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

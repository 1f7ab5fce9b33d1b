//! [`NodeHandle`]: peers' ingest, and the [`NodeService`] the API serves.

use super::*;

/// Milestones looked at for the conflicting-payloads warning of [`NodeHandle::health`].
const CONFLICT_WINDOW: u32 = 10;
/// Fewest conflicting payloads in that window for the warning (one bad payment is no news).
const CONFLICT_MIN: usize = 3;

impl NodeHandle {
    /// Warnings of `GET /health` (see [`Health::warnings`]): every payload confirmed by the
    /// last [`CONFLICT_WINDOW`] milestones conflicted (at least [`CONFLICT_MIN`], none
    /// applied).
    fn health_warnings(&self) -> Vec<String> {
        let newest = u32::try_from(self.shared.metrics.confirmed_milestone.get()).unwrap_or(0);
        if newest == 0 {
            return Vec::new();
        }
        let first = newest.saturating_sub(CONFLICT_WINDOW - 1).max(1);
        let (mut applied, mut conflicting) = (0, 0);
        {
            let views = self
                .shared
                .milestones
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for i in first..=newest {
                if let Some(v) = views.get(&i) {
                    applied += v.applied.unwrap_or(0);
                    conflicting += v.conflicting.unwrap_or(0);
                }
            }
        }
        if conflicting >= CONFLICT_MIN && applied == 0 {
            vec![format!(
                "every payload confirmed by milestones {first} to {newest} conflicted \
                 ({conflicting}, none applied); their reasons are in /api/v1/payloads/{{id}}"
            )]
        } else {
            Vec::new()
        }
    }

    /// The node's Prometheus metrics (the peering layer adds its per-peer series).
    pub fn metrics_registry(&self) -> &Metrics {
        &self.shared.metrics
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, SubmitError> {
        let (tx, rx) = oneshot::channel();
        self.ingest.try_send(make(tx)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                SubmitError::Unavailable("ingest queue full; retry later".into())
            }
            mpsc::error::TrySendError::Closed(_) => {
                SubmitError::Unavailable("node is shutting down".into())
            }
        })?;
        rx.await
            .map_err(|_| SubmitError::Unavailable("node is shutting down".into()))
    }

    /// Registers the function called (on a blocking thread, in write order) with every batch
    /// of newly accepted transactions, just before they are written and flushed: the
    /// peering layer gossips them. Gossip does not wait for the local flush (a peer may
    /// hold a transaction this node loses in a crash, which is harmless; the submitter got
    /// no acknowledgement for it). Replaces any earlier hook.
    pub fn set_accepted_hook(&self, hook: Option<AcceptedHook>) {
        *self
            .shared
            .on_accepted
            .write()
            .unwrap_or_else(|p| p.into_inner()) = hook;
    }

    /// Registers the function `/health` asks for the peering layer's reasons (for instance a
    /// node behind every peer's pruning point). Replaces any earlier probe.
    pub fn set_health_probe(&self, probe: Option<HealthProbe>) {
        *self
            .shared
            .health_probe
            .write()
            .unwrap_or_else(|p| p.into_inner()) = probe;
    }

    /// Validates, ingests ([`Origin::Peer`]) and stores transactions received from peers, as
    /// one group-committed batch; each comes with its sender (quotas of the solidification
    /// buffer are per sender). Blocking: call it from a blocking thread. A transaction
    /// marked `solicited` (we asked for it) is not refused for its age, only for the rest.
    /// Each comes with its id as the peering layer computed it
    /// ([`node_proto::peering::Inbound::Transaction`]; it is not hashed again).
    /// Returns one verdict per input and the parents now missing.
    pub fn ingest_from_peers(&self, txs: &[(Vec<u8>, TxId, bool, PeerKey)]) -> PeerIngest {
        let now = now_ms();
        let mut out = PeerIngest {
            verdicts: vec![Verdict::Refused; txs.len()],
            missing: Vec::new(),
        };
        if txs.is_empty() || self.shared.unavailable().is_some() {
            return out;
        }
        let items: Vec<(&[u8], TxId, bool)> = txs
            .iter()
            .map(|(b, id, s, _)| (b.as_slice(), *id, *s))
            .collect();
        let checked = validate_from_peers(&self.shared.validator, &items, now);
        let checked = checked
            .into_iter()
            .zip(txs)
            .map(|(v, t)| (v, t.3))
            .collect();
        {
            let mut core = self.shared.lock();
            out.verdicts = core.handle_peer_transactions(checked, now);
            out.missing = core.poll_missing();
        }
        let _ = self.shared.persist();
        out
    }

    /// Peers whose transactions expired waiting for parents, with how many (see
    /// [`Protocol::poll_expired`]): the peering layer penalises them.
    pub fn take_expired_senders(&self) -> Vec<(PeerKey, u64)> {
        self.shared.lock().poll_expired()
    }

    /// Parents still missing (see [`Protocol::poll_missing`]), e.g. right after a restart.
    pub fn take_missing_parents(&self) -> Vec<TxId> {
        self.shared.lock().poll_missing()
    }

    /// Records the milestone of the newest snapshot file (`/api/v1/info`'s
    /// `snapshot_milestone`).
    pub fn set_snapshot_milestone(&self, index: MilestoneIndex) {
        self.shared
            .snapshot_milestone
            .store(index, std::sync::atomic::Ordering::Relaxed);
    }

    /// Direct access to the protocol, for tests and tools (hold it briefly).
    pub fn with_protocol<R>(&self, f: impl FnOnce(&Protocol) -> R) -> R {
        f(&self.shared.lock())
    }

    /// Mutable access to the protocol, for calls that produce no store write (committee
    /// messages: `net`); hold it briefly.
    pub fn with_protocol_mut<R>(&self, f: impl FnOnce(&mut Protocol) -> R) -> R {
        f(&mut self.shared.lock())
    }

    pub(super) fn storage<T>(r: Result<T, StoreError>) -> Result<T, ServiceError> {
        r.map_err(|e| ServiceError::Storage(e.to_string()))
    }

    /// `found`, or (not found) [`ServiceError::Pruned`] if `id` was pruned recently.
    fn unless_pruned<T>(
        &self,
        found: Option<T>,
        id: &[u8; 32],
        what: &str,
        shown: &dyn std::fmt::Display,
    ) -> Result<Option<T>, ServiceError> {
        if found.is_none() && self.shared.pruned.contains(id) {
            return Err(ServiceError::Pruned(format!(
                "{what} {shown} was pruned: this node keeps milestones from {} on",
                self.shared.pruned.milestone() + 1
            )));
        }
        Ok(found)
    }
}

impl NodeHandle {
    /// [`NodeInfo::supply_of`] `ledger`, added up once per ledger state (the caller holds
    /// the core's lock, so the ledger does not change meanwhile).
    fn supply(&self, ledger: &dag_core::ledger::Ledger) -> (u64, u64) {
        let at = (ledger.confirmed_index(), ledger.digest());
        let mut cached = self.shared.supply.lock().unwrap_or_else(|p| p.into_inner());
        match *cached {
            Some(f) if f.at == at => (f.total, f.open),
            _ => {
                let (total, open) = NodeInfo::supply_of(ledger);
                *cached = Some(super::SupplyFigures { at, total, open });
                (total, open)
            }
        }
    }
}

impl NodeService for NodeHandle {
    fn info(&self) -> NodeInfo {
        let durable = *self
            .shared
            .durable_milestone
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let core = self.shared.lock();
        let (total_supply, open_deposits) = self.supply(core.ledger());
        NodeInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            network_name: self.shared.network_name.clone(),
            network_id: core.network_id(),
            pow_difficulty: self.shared.pow_difficulty,
            latest_milestone: core.latest_milestone(),
            confirmed_milestone: durable.0,
            tips: core.tangle().tips().len(),
            ledger_digest: durable.1,
            transactions: core.tangle().len(),
            milestone_issuer: core.is_milestone_issuer(),
            faucet: core.has_faucet(),
            halted: core.halted().map(str::to_owned),
            total_supply,
            open_deposits,
            oldest_milestone: self.shared.pruned.milestone() + 1,
            snapshot_milestone: match self
                .shared
                .snapshot_milestone
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                0 => None,
                i => Some(i),
            },
        }
    }

    fn health(&self) -> Health {
        let mut reasons = Vec::new();
        if let Some(h) = self.shared.lock().halted() {
            reasons.push(format!("confirmation halted: {h}"));
        }
        if self.shared.storage_failing() {
            let last = self
                .shared
                .store_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_default();
            reasons.push(format!("storage failing, retrying: {last}"));
        }
        let probe = self
            .shared
            .health_probe
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(probe) = probe {
            reasons.extend(probe());
        }
        Health {
            healthy: reasons.is_empty(),
            reasons,
            warnings: self.health_warnings(),
        }
    }

    fn tips(&self) -> Vec<TxId> {
        let core = self.shared.lock();
        let t = core.tangle();
        t.tips().iter().map(|r| t.id(*r)).collect()
    }

    async fn submit_transactions(&self, txs: Vec<Vec<u8>>) -> Vec<Result<TxId, SubmitError>> {
        let n = txs.len();
        match self.request(|tx| Request::Transactions(txs, tx)).await {
            Ok(v) => v,
            Err(e) => vec![Err(e); n],
        }
    }

    async fn submit_payloads(
        &self,
        payloads: Vec<SignedPayload>,
    ) -> Vec<Result<PayloadReceipt, SubmitError>> {
        let n = payloads.len();
        match self.request(|tx| Request::Payloads(payloads, tx)).await {
            Ok(v) => v,
            Err(e) => vec![Err(e); n],
        }
    }

    async fn faucet(&self, to: Address, amount: u64) -> Result<PayloadReceipt, SubmitError> {
        if amount == 0 {
            return Err(SubmitError::Invalid("amount must be positive".into()));
        }
        let payload = self
            .shared
            .lock()
            .faucet_payload(to, amount)
            .ok_or_else(|| SubmitError::NotEnabled("the faucet runs only in dev mode".into()))?;
        let seq = payload.seq;
        let r = self
            .submit_payloads(vec![payload])
            .await
            .pop()
            .unwrap_or_else(|| Err(SubmitError::Unavailable("no verdict".into())));
        if r.is_err() {
            self.shared.lock().release_faucet_seq(seq);
        }
        r
    }

    fn transaction(&self, id: &TxId) -> Result<Option<Vec<u8>>, ServiceError> {
        let found = Self::storage(self.shared.store.transaction(id))?;
        self.unless_pruned(found, &id.0, "transaction", id)
    }

    fn transaction_proof(
        &self,
        id: &TxId,
    ) -> Result<Option<dag_core::proof::TransactionProof>, ServiceError> {
        // 410 for a transaction pruned from the store (and still remembered as such).
        let known = Self::storage(self.shared.store.metadata(id))?;
        if self
            .unless_pruned(known, &id.0, "transaction", id)?
            .is_none()
        {
            return Ok(None);
        }
        use dag_core::proof::{Lookup, TransactionProof};
        match Self::storage(TransactionProof::from_store(&*self.shared.store, id))? {
            Lookup::Found(p) => Ok(Some(p)),
            Lookup::None => Ok(None),
            Lookup::Pruned(index) => Err(ServiceError::Pruned(format!(
                "milestone {index}, which confirmed transaction {id}, is pruned"
            ))),
        }
    }

    fn payload_proof(
        &self,
        id: &PayloadId,
    ) -> Result<Option<dag_core::proof::TransactionProof>, ServiceError> {
        let found = Self::storage(self.shared.store.payload(id))?;
        let Some(record) = self.unless_pruned(found, &id.0, "payload", id)? else {
            return Ok(None);
        };
        match record.status {
            PayloadStatus::Confirmed { tx, .. }
            | PayloadStatus::Conflicting { tx, .. }
            | PayloadStatus::Reattaching { tx, .. } => self.transaction_proof(&tx),
            PayloadStatus::Pending => Ok(None),
        }
    }

    fn committee(&self) -> Option<crate::service::CommitteeView> {
        let core = self.shared.lock();
        Some(crate::service::CommitteeView::of(
            &core.committee_schedule(),
            core.approved_committee_update().cloned(),
        ))
    }

    fn state_proof(
        &self,
        entry: dag_core::proof::StateEntry,
    ) -> Result<Option<dag_core::proof::StateProof>, ServiceError> {
        // The entry, its path and the milestone under one lock (all of one milestone); the
        // milestone's bytes from the store after.
        let (index, tx, root, (entry, path)) = {
            let core = self.shared.lock();
            let (index, tx) = core.applied_milestone();
            let ledger = core.ledger();
            (index, tx, ledger.state_root(), entry.read(ledger))
        };
        if index == 0 {
            return Ok(None);
        }
        let not_yet = || {
            ServiceError::Unavailable(format!(
                "milestone {index} is applied but not stored yet; retry"
            ))
        };
        let tx = tx.ok_or_else(not_yet)?;
        let milestone = Self::storage(self.shared.store.transaction(&tx))?.ok_or_else(not_yet)?;
        let signed = codec::decode(&milestone)
            .ok()
            .and_then(|t| t.milestone().map(|m| (m.index, m.state_root)));
        if signed != Some((index, root)) {
            return Err(ServiceError::Storage(format!(
                "stored transaction {tx} is not milestone {index} with the ledger's state root"
            )));
        }
        Ok(Some(dag_core::proof::StateProof {
            milestone,
            milestone_id: tx,
            entry,
            path,
        }))
    }

    fn transaction_metadata(&self, id: &TxId) -> Result<Option<TxMetadataView>, ServiceError> {
        let found = Self::storage(self.shared.store.metadata(id))?;
        let Some(meta) = self.unless_pruned(found, &id.0, "transaction", id)? else {
            return Ok(None);
        };
        let core = self.shared.lock();
        let t = core.tangle();
        let r = t.lookup(id);
        let confirmed_by = r.and_then(|r| t.confirmed_by(r)).or(meta.confirmed_by);
        Ok(Some(TxMetadataView {
            transaction_id: *id,
            solid: r.is_some() || meta.solid,
            arrival_ms: meta.arrival,
            confirmed_by,
            outcome: meta.outcome.map(|o| match o {
                PayloadOutcome::Applied => "applied".to_string(),
                PayloadOutcome::Conflicting(r) => format!("conflicting: {r}"),
            }),
            approvers: r.map(|r| t.approvers(r).len()).unwrap_or(0),
            is_tip: r.is_some_and(|r| t.approvers(r).is_empty()),
        }))
    }

    fn payload(&self, id: &PayloadId) -> Result<Option<PayloadView>, ServiceError> {
        let found = Self::storage(self.shared.store.payload(id))?;
        let Some(rec) = self.unless_pruned(found, &id.0, "payload", id)? else {
            return Ok(None);
        };
        let first = rec
            .txs
            .first()
            .ok_or_else(|| ServiceError::Storage(format!("payload {id} has no transaction")))?;
        let bytes = Self::storage(self.shared.store.transaction(first))?
            .ok_or_else(|| ServiceError::Storage(format!("transaction {first} missing")))?;
        let tx = codec::decode(&bytes).map_err(|e| ServiceError::Storage(e.to_string()))?;
        let p = tx
            .signed()
            .ok_or_else(|| ServiceError::Storage(format!("{first} carries no payload")))?;
        Ok(Some(PayloadView {
            payload_id: *id,
            issuer: p.issuer,
            seq: p.seq,
            kind: p.body.kind().to_string(),
            transactions: rec.txs.clone(),
            state: payload_state(rec.status),
        }))
    }

    fn account(&self, address: &Address) -> Result<AccountView, ServiceError> {
        let core = self.shared.lock();
        let l = core.ledger();
        Ok(AccountView {
            address: *address,
            did: address.to_did_key(),
            balance: l.balance(address),
            next_seq: l.next_seq(address),
        })
    }

    fn channel(&self, id: &ChannelId) -> Result<Option<ChannelView>, ServiceError> {
        let core = self.shared.lock();
        Ok(core.ledger().channel(id).map(|c| ChannelView {
            channel_id: *id,
            payer: c.payer,
            payee: c.payee,
            deposit: c.deposit,
            expires_at: c.expires_at,
            closed: c.closed,
            claimed: (c.closed && c.claimed > 0).then_some(c.claimed),
        }))
    }

    fn milestone(
        &self,
        index: Option<MilestoneIndex>,
    ) -> Result<Option<MilestoneView>, ServiceError> {
        if let Some(i) = index {
            return self.milestone_at(i, self.shared.pruned.milestone());
        }
        // "Latest" is never pruned: the store prunes only below milestones it wrote, so when
        // the durable index lags behind a tight retention, the oldest kept one is newer and
        // stored. A prune can still pass the index chosen before the store is read (a
        // retention of two milestones at one a second): then choose again.
        let mut attempts = 0;
        loop {
            let pruned = self.shared.pruned.milestone();
            let durable = self
                .shared
                .durable_milestone
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .0;
            let latest = if durable == 0 {
                0
            } else {
                durable.max(pruned + 1)
            };
            attempts += 1;
            match self.milestone_at(latest, pruned) {
                Ok(None) | Err(ServiceError::Pruned(_))
                    if latest > 0 && attempts < 16 && self.shared.pruned.milestone() > pruned => {}
                r => return r,
            }
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.shared.events.subscribe()
    }

    fn metrics(&self) -> String {
        self.shared.refresh_gauges();
        self.shared.metrics.render()
    }
}

impl NodeHandle {
    /// Milestone `index` (0: none), `pruned` being the pruning point read by the caller.
    fn milestone_at(
        &self,
        index: MilestoneIndex,
        pruned: MilestoneIndex,
    ) -> Result<Option<MilestoneView>, ServiceError> {
        if index == 0 {
            return Ok(None);
        }
        if index <= pruned {
            return Err(ServiceError::Pruned(format!(
                "milestone {index} was pruned: this node keeps milestones from {} on",
                pruned + 1
            )));
        }
        if let Some(s) = self
            .shared
            .milestones
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&index)
        {
            return Ok(Some(s.clone()));
        }
        // Applied before this process started: the store has the record, not the counts;
        // the signers are in the milestone's transaction.
        let Some(r) = Self::storage(self.shared.store.milestone(index))? else {
            return Ok(None);
        };
        let signers = Self::storage(self.shared.store.transaction(&r.tx))?
            .and_then(|bytes| dag_core::codec::decode(&bytes).ok())
            .and_then(|tx| {
                tx.milestone()
                    .map(|m| m.signatures.iter().map(|(s, _)| *s).collect())
            })
            .unwrap_or_default();
        Ok(Some(MilestoneView {
            index: r.index,
            transaction_id: r.tx,
            timestamp: r.timestamp,
            ledger_digest: r.ledger_digest,
            confirmed_transactions: None,
            applied: None,
            conflicting: None,
            signers,
        }))
    }
}

pub(super) fn payload_state(s: PayloadStatus) -> PayloadState {
    match s {
        PayloadStatus::Pending => PayloadState::Pending,
        PayloadStatus::Confirmed { milestone, tx } => PayloadState::Confirmed {
            milestone,
            transaction_id: tx,
        },
        PayloadStatus::Reattaching {
            milestone,
            tx,
            reason,
        } => PayloadState::Reattaching {
            milestone,
            transaction_id: tx,
            reason: reason.to_string(),
        },
        PayloadStatus::Conflicting {
            milestone,
            tx,
            reason,
        } => PayloadState::Conflicting {
            milestone,
            transaction_id: tx,
            reason: reason.to_string(),
        },
    }
}

pub(super) fn milestone_view(s: &MilestoneSummary) -> MilestoneView {
    MilestoneView {
        index: s.record.index,
        transaction_id: s.record.tx,
        timestamp: s.record.timestamp,
        ledger_digest: s.record.ledger_digest,
        confirmed_transactions: Some(s.confirmed),
        applied: Some(s.applied),
        conflicting: Some(s.conflicting),
        signers: s.signers.clone(),
    }
}

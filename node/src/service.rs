//! [`NodeService`]: what the HTTP API (and later the peering layer's admin routes) needs from a
//! running node, and the view types it returns. The API is generic over this trait, so the
//! router never reaches into the node's internals.

use std::future::Future;

use dag_core::{
    Address, ChannelId, Digest, MilestoneIndex, NetworkId, PayloadId, SignedPayload, TxId,
};
use serde::{Deserialize, Serialize};

/// Why a submission was refused. Nothing was changed by a refused submission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The bytes are not a canonical transaction, or the body is not a payload (HTTP 400).
    #[error("malformed: {0}")]
    Malformed(String),
    /// Larger than allowed (HTTP 413).
    #[error("too large: {0}")]
    TooLarge(String),
    /// Well-formed but invalid: bad signature, wrong network, PoW, timestamp... (HTTP 422).
    #[error("invalid: {0}")]
    Invalid(String),
    /// Known already, or a replay of an applied sequence number (HTTP 409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The node cannot take more right now (HTTP 503); retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The feature is off on this node (HTTP 404), e.g. the faucet outside dev mode.
    #[error("not available on this node: {0}")]
    NotEnabled(String),
}

/// A failure reading node state (HTTP 500/503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The storage backend failed.
    #[error("storage: {0}")]
    Storage(String),
    /// The node is stopping or its confirmation halted.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// It was here, and this node pruned it (it keeps only recent history).
    #[error("{0}")]
    Pruned(String),
}

/// `GET /api/v1/info`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeInfo {
    /// Software version.
    pub version: String,
    /// Network name from the genesis.
    pub network_name: String,
    /// Network id (decimal).
    #[schema(value_type = u64)]
    pub network_id: NetworkId,
    /// PoW difficulty of the network, in leading zero bits.
    pub pow_difficulty: u8,
    /// Latest milestone index seen (solid or not).
    #[schema(value_type = u32)]
    pub latest_milestone: MilestoneIndex,
    /// Latest applied (confirmed) milestone index.
    #[schema(value_type = u32)]
    pub confirmed_milestone: MilestoneIndex,
    /// Current number of tips.
    pub tips: usize,
    /// Hex of the ledger digest after the latest applied milestone.
    #[schema(value_type = String)]
    pub ledger_digest: Digest,
    /// Solid transactions held in memory.
    pub transactions: usize,
    /// Whether this node issues milestones.
    pub milestone_issuer: bool,
    /// Whether the dev faucet is enabled.
    pub faucet: bool,
    /// Set when confirmation stopped because of a ledger digest mismatch.
    pub halted: Option<String>,
    /// Sum of all balances plus the deposits locked in open channels, in base units. It
    /// always equals the total of the genesis allocations: a live check of the ledger's
    /// supply invariant (crash campaigns compare it after every restart).
    pub total_supply: u64,
    /// Sum of the deposits locked in open channels, in base units.
    pub open_deposits: u64,
    /// The oldest milestone whose cone this node still stores (1 when it keeps
    /// everything); older milestones, their transactions and payloads are answered 410.
    #[schema(value_type = u32)]
    pub oldest_milestone: MilestoneIndex,
    /// Index of the latest snapshot this node holds; null: none (snapshots are not made
    /// yet).
    #[schema(value_type = Option<u32>)]
    pub snapshot_milestone: Option<MilestoneIndex>,
}

impl NodeInfo {
    /// `(total_supply, open_deposits)` of `ledger`, as reported by `GET /api/v1/info`:
    /// balances plus open deposits, and open deposits (each saturating at `u64::MAX`, which
    /// only a broken ledger could reach). O(accounts + channels).
    pub fn supply_of(ledger: &dag_core::ledger::Ledger) -> (u64, u64) {
        let open = ledger.open_deposits();
        let total = ledger.total_balances() + open;
        let sat = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
        (sat(total), sat(open))
    }
}

/// Result of accepting a payload: it is durable and gossiped; confirmation comes later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PayloadReceipt {
    /// Payload id (stable across reattachments).
    #[schema(value_type = String)]
    pub payload_id: PayloadId,
    /// The transaction that carries it now.
    #[schema(value_type = String)]
    pub transaction_id: TxId,
}

/// Where a payload stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum PayloadState {
    /// Accepted, not yet confirmed.
    Pending,
    /// Confirmed and applied to the ledger.
    Confirmed {
        /// Confirming milestone.
        #[schema(value_type = u32)]
        milestone: MilestoneIndex,
        /// The transaction that was applied.
        #[schema(value_type = String)]
        transaction_id: TxId,
    },
    /// A confirmed copy could not apply yet (an earlier payload of the issuer is missing);
    /// the payload is reattached and applies once the gap is filled. Not final.
    Reattaching {
        /// Milestone that confirmed the copy.
        #[schema(value_type = u32)]
        milestone: MilestoneIndex,
        /// The transaction that was confirmed.
        #[schema(value_type = String)]
        transaction_id: TxId,
        /// Why it could not apply yet.
        reason: String,
    },
    /// Confirmed but not applied, with the reason. Final: no copy can apply any more.
    Conflicting {
        /// Confirming milestone.
        #[schema(value_type = u32)]
        milestone: MilestoneIndex,
        /// The transaction that was confirmed.
        #[schema(value_type = String)]
        transaction_id: TxId,
        /// Why it was not applied.
        reason: String,
    },
}

/// `GET /api/v1/payloads/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PayloadView {
    /// Payload id.
    #[schema(value_type = String)]
    pub payload_id: PayloadId,
    /// Issuer.
    #[schema(value_type = String)]
    pub issuer: Address,
    /// Issuer sequence number.
    pub seq: u64,
    /// Operation kind (`pay`, `open`, ...).
    pub kind: String,
    /// Every transaction that carried it (reattachments included).
    #[schema(value_type = Vec<String>)]
    pub transactions: Vec<TxId>,
    /// Status.
    #[serde(flatten)]
    pub state: PayloadState,
}

/// `GET /api/v1/transactions/{id}/metadata`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TxMetadataView {
    /// Id.
    #[schema(value_type = String)]
    pub transaction_id: TxId,
    /// Whether its past cone is complete.
    pub solid: bool,
    /// Local arrival time, ms since the epoch.
    pub arrival_ms: u64,
    /// Confirming milestone.
    #[schema(value_type = Option<u32>)]
    pub confirmed_by: Option<MilestoneIndex>,
    /// Ledger outcome: `applied`, `conflicting: <reason>` or none (no payload / unconfirmed).
    pub outcome: Option<String>,
    /// Direct approvers known.
    pub approvers: usize,
    /// Whether it is a tip.
    pub is_tip: bool,
}

/// `GET /api/v1/committee`: the milestone committees by index range and the evidence of
/// each rotation (what a device needs to check milestones after a rotation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommitteeView {
    /// The committees, oldest first: the genesis one from milestone 1, then one per rotation.
    pub epochs: Vec<EpochView>,
    /// Each rotation's evidence, oldest first: the milestone that carried the update (with
    /// its signatures) and its transaction's parents. Checked from the genesis committee on
    /// (`dag_core::CommitteeSchedule::from_rotations`), they give `epochs` without trusting
    /// this node.
    #[schema(value_type = Vec<Object>)]
    pub rotations: Vec<dag_core::Rotation>,
    /// The committee update this node's operator approved, not carried by a milestone yet.
    #[schema(value_type = Option<Object>)]
    pub approved_update: Option<dag_core::CommitteeUpdate>,
}

/// One committee's term.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EpochView {
    /// First milestone index it signs.
    pub from: MilestoneIndex,
    /// Its members' keys (bech32), in signer-index order.
    #[schema(value_type = Vec<String>)]
    pub committee: Vec<Address>,
    /// Signatures a milestone needs.
    pub threshold: u8,
}

impl CommitteeView {
    /// The view of `schedule`, with the operator's pending approval.
    pub fn of(
        schedule: &dag_core::CommitteeSchedule,
        approved_update: Option<dag_core::CommitteeUpdate>,
    ) -> Self {
        CommitteeView {
            epochs: schedule
                .epochs()
                .iter()
                .map(|e| EpochView {
                    from: e.from,
                    committee: e.committee.clone(),
                    threshold: e.threshold,
                })
                .collect(),
            rotations: schedule.rotations().to_vec(),
            approved_update,
        }
    }
}

/// `GET /api/v1/accounts/{address}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountView {
    /// Address (bech32).
    #[schema(value_type = String)]
    pub address: Address,
    /// The same key as did:key.
    pub did: String,
    /// Confirmed balance.
    pub balance: u64,
    /// Next sequence number the ledger will accept from this issuer.
    pub next_seq: u64,
}

/// `GET /api/v1/channels/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelView {
    /// Channel id.
    #[schema(value_type = String)]
    pub channel_id: ChannelId,
    /// Payer.
    #[schema(value_type = String)]
    pub payer: Address,
    /// Payee.
    #[schema(value_type = String)]
    pub payee: Address,
    /// Locked deposit.
    pub deposit: u64,
    /// Milestone index after which the payer may refund.
    #[schema(value_type = u32)]
    pub expires_at: MilestoneIndex,
    /// Closed by a claim or a refund.
    pub closed: bool,
    /// Amount paid to the payee by the claim, if claimed.
    pub claimed: Option<u64>,
}

/// `GET /api/v1/milestones/{index|latest}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MilestoneView {
    /// Index.
    #[schema(value_type = u32)]
    pub index: MilestoneIndex,
    /// Carrying transaction.
    #[schema(value_type = String)]
    pub transaction_id: TxId,
    /// Issuer time, ms.
    pub timestamp: u64,
    /// Ledger digest after applying it.
    #[schema(value_type = String)]
    pub ledger_digest: Digest,
    /// Transactions it confirmed (unknown for milestones applied before this process started).
    pub confirmed_transactions: Option<usize>,
    /// Of which payloads applied.
    pub applied: Option<usize>,
    /// Of which payloads conflicting.
    pub conflicting: Option<usize>,
    /// The committee members (indices in the genesis committee) whose signatures it
    /// carries, ascending.
    #[serde(default)]
    pub signers: Vec<u8>,
}

/// Node health for `GET /health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// 200 when true, 503 otherwise.
    pub healthy: bool,
    /// Why not healthy.
    pub reasons: Vec<String>,
    /// What an operator should look at although the node still serves (they do not make it
    /// unhealthy: a client can cause them, e.g. by sending only conflicting payments, and a
    /// load balancer must not take a node out for that). For example: every payload the
    /// last milestones confirmed conflicted.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Events streamed on `GET /api/v1/events` (SSE, one JSON object per event).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeEvent {
    /// A transaction became solid.
    Transaction {
        /// Id.
        #[schema(value_type = String)]
        transaction_id: TxId,
        /// Payload id, when it carries a signed payload.
        #[schema(value_type = Option<String>)]
        payload_id: Option<PayloadId>,
        /// The two transactions it approves (the dashboard draws the Tangle from these).
        #[serde(default)]
        #[schema(value_type = Vec<String>)]
        parents: Vec<TxId>,
    },
    /// A milestone was applied.
    Milestone(MilestoneView),
    /// A payload's status became final.
    Payload {
        /// Payload id.
        #[schema(value_type = String)]
        payload_id: PayloadId,
        /// Final state.
        #[serde(flatten)]
        state: PayloadState,
    },
    /// A payload was reattached in a new transaction because its old one went lazy.
    Reattached {
        /// Payload id.
        #[schema(value_type = String)]
        payload_id: PayloadId,
        /// New carrying transaction.
        #[schema(value_type = String)]
        transaction_id: TxId,
    },
}

/// What the API needs from a running node. Implemented by [`crate::Node`]'s handle.
pub trait NodeService: Clone + Send + Sync + 'static {
    /// Node summary.
    fn info(&self) -> NodeInfo;
    /// Health summary.
    fn health(&self) -> Health;
    /// Current tips.
    fn tips(&self) -> Vec<TxId>;
    /// Submits complete transactions (PoW done by the client); one verdict each, in order.
    /// A success means the transaction is stored durably.
    fn submit_transactions(
        &self,
        txs: Vec<Vec<u8>>,
    ) -> impl Future<Output = Vec<Result<TxId, SubmitError>>> + Send;
    /// Submits signed payloads; the node attaches each in a transaction (tip selection, PoW)
    /// and reattaches it if that transaction goes lazy. One verdict each, in order.
    fn submit_payloads(
        &self,
        payloads: Vec<SignedPayload>,
    ) -> impl Future<Output = Vec<Result<PayloadReceipt, SubmitError>>> + Send;
    /// Dev only: pays `amount` from the faucet to `to`.
    fn faucet(
        &self,
        to: Address,
        amount: u64,
    ) -> impl Future<Output = Result<PayloadReceipt, SubmitError>> + Send;
    /// A stored transaction's canonical bytes.
    fn transaction(&self, id: &TxId) -> Result<Option<Vec<u8>>, ServiceError>;
    /// A transaction's metadata.
    fn transaction_metadata(&self, id: &TxId) -> Result<Option<TxMetadataView>, ServiceError>;
    /// Proof that a transaction was confirmed (and its payload applied, if it was), checkable
    /// with the committee's keys only; `None` if it is unknown or not confirmed yet.
    fn transaction_proof(
        &self,
        id: &TxId,
    ) -> Result<Option<dag_core::proof::TransactionProof>, ServiceError>;
    /// The proof of the transaction whose confirmation decided a payload (the one that
    /// applied it, or the one that conflicted); `None` if it is unknown or undecided.
    fn payload_proof(
        &self,
        id: &PayloadId,
    ) -> Result<Option<dag_core::proof::TransactionProof>, ServiceError>;
    /// Proof of an account's or a channel's state (or absence) after the last applied
    /// milestone, against the state root it signed (the id in `entry` is what counts, its
    /// state is read from the ledger); `None` before the first milestone.
    fn state_proof(
        &self,
        entry: dag_core::proof::StateEntry,
    ) -> Result<Option<dag_core::proof::StateProof>, ServiceError>;
    /// A payload's status.
    fn payload(&self, id: &PayloadId) -> Result<Option<PayloadView>, ServiceError>;
    /// An account (zero balance and seq when unknown).
    fn account(&self, address: &Address) -> Result<AccountView, ServiceError>;
    /// A channel.
    fn channel(&self, id: &ChannelId) -> Result<Option<ChannelView>, ServiceError>;
    /// A milestone by index, or the latest applied one with `None`.
    fn milestone(
        &self,
        index: Option<MilestoneIndex>,
    ) -> Result<Option<MilestoneView>, ServiceError>;
    /// Live events.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<NodeEvent>;
    /// Prometheus text exposition of the node's metrics.
    fn metrics(&self) -> String;
    /// The committees by index range (`None`: this service does not know them).
    fn committee(&self) -> Option<CommitteeView> {
        None
    }
}

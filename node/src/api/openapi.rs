//! The OpenAPI document ([`ApiDoc`]), served at `/api/v1/openapi.json` and browsable in
//! Swagger UI at `/swagger-ui`.
//!
//! `dag-core` knows nothing of OpenAPI, so its types that travel in JSON (`Transaction`,
//! `SignedPayload`, `Body`, `Milestone`) are described here by schema-only mirrors named like
//! the real types. A unit test deserialises real values' JSON into the mirrors with
//! `deny_unknown_fields`, so a mirror that drifts from serde's actual output fails the build's
//! tests.

#![allow(dead_code)] // The mirrors' fields exist for the schema (and the drift test) only.

use serde::Deserialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::error::ErrorBody;
use super::handlers::{
    self, BatchVerdict, FaucetRequest, RawTransaction, TipsView, TransactionSubmitted,
};
use super::ApiConfigView;
use crate::service::{
    AccountView, ChannelView, Health, MilestoneView, NodeEvent, NodeInfo, PayloadReceipt,
    PayloadState, PayloadView, TxMetadataView,
};

/// JSON form of `dag_core::Transaction`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Transaction)]
pub(crate) struct TransactionDoc {
    /// Format version (1).
    version: u8,
    /// Network id.
    network_id: u64,
    /// Trunk and branch transaction ids (hex).
    parents: [String; 2],
    /// Issuer time, ms since the Unix epoch.
    timestamp: u64,
    /// What it carries.
    payload: PayloadDoc,
    /// Proof-of-work nonce.
    nonce: u64,
}

/// JSON form of `dag_core::Payload`: `"Empty"`, `{"Signed": ...}` or `{"Milestone": ...}`.
#[derive(Deserialize, ToSchema)]
#[schema(as = Payload)]
pub(crate) enum PayloadDoc {
    /// Tip maintenance / promotion.
    Empty,
    /// A device's signed operation.
    Signed(SignedPayloadDoc),
    /// A confirmation checkpoint.
    Milestone(MilestoneDoc),
}

/// JSON form of `dag_core::SignedPayload`: what `POST /api/v1/payloads` takes.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SignedPayload)]
pub(crate) struct SignedPayloadDoc {
    /// Issuer address (bech32 `tng1...`), its Ed25519 public key.
    issuer: String,
    /// Issuer sequence number.
    seq: u64,
    /// The operation.
    body: BodyDoc,
    /// Ed25519 signature over (network_id, issuer, seq, body), 128 hex characters.
    signature: String,
}

/// JSON form of `dag_core::Body`: an object with one key naming the operation.
#[derive(Deserialize, ToSchema)]
#[schema(as = Body)]
pub(crate) enum BodyDoc {
    /// Transfer.
    Pay {
        /// Recipient, bech32.
        to: String,
        /// Amount.
        amount: u64,
        /// Memo, hex, at most 64 bytes.
        memo: String,
    },
    /// Open a payment channel.
    Open {
        /// Payee, bech32.
        payee: String,
        /// Locked deposit.
        deposit: u64,
        /// Milestone index after which the payer may refund.
        expires_at: u32,
    },
    /// Claim a channel with the payer's voucher.
    Claim {
        /// Channel id, hex.
        channel: String,
        /// Cumulative amount the voucher signs.
        amount: u64,
        /// Voucher signature, hex.
        voucher: String,
    },
    /// Refund an expired, unclaimed channel.
    Refund {
        /// Channel id, hex.
        channel: String,
    },
    /// Anchor a digest of off-ledger data.
    Anchor {
        /// Tag, hex, at most 32 bytes.
        tag: String,
        /// Digest, hex.
        digest: String,
    },
}

/// JSON form of `dag_core::Milestone`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Milestone)]
pub(crate) struct MilestoneDoc {
    /// Index.
    index: u32,
    /// Issuer time, ms.
    timestamp: u64,
    /// Ledger digest after applying it, hex.
    ledger_digest: String,
    /// Committee signatures as `[signer index, signature hex]` pairs.
    signatures: Vec<(u8, String)>,
}

/// Raw bytes (`application/octet-stream`): a transaction's canonical encoding.
#[derive(ToSchema)]
#[schema(as = CanonicalBytes, value_type = String, format = Binary)]
pub(crate) struct BinaryDoc(Vec<u8>);

/// Declares the bearer scheme the admin routes use.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of every route.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "tangle-node API",
        description = "HTTP API of a tangle node. JSON by default; send `Accept: application/msgpack` for MessagePack. Every error is JSON `{\"code\", \"message\"}`."
    ),
    paths(
        handlers::health,
        handlers::info,
        handlers::tips,
        handlers::submit_transaction,
        handlers::submit_payload,
        handlers::submit_batch,
        handlers::transaction,
        handlers::transaction_metadata,
        handlers::payload,
        handlers::account,
        handlers::channel,
        handlers::milestone,
        handlers::events,
        handlers::metrics,
        handlers::faucet,
        handlers::admin_config,
        handlers::dashboard,
    ),
    components(schemas(
        ErrorBody, NodeInfo, Health, TipsView, RawTransaction, TransactionSubmitted,
        PayloadReceipt, PayloadState, PayloadView, BatchVerdict, TxMetadataView, AccountView,
        ChannelView, MilestoneView, NodeEvent, FaucetRequest, ApiConfigView, TransactionDoc,
        PayloadDoc, SignedPayloadDoc, BodyDoc, MilestoneDoc, BinaryDoc,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "node", description = "Node status, events, metrics, dashboard"),
        (name = "transactions", description = "Complete transactions"),
        (name = "payloads", description = "Signed payloads the node attaches for you"),
        (name = "ledger", description = "Accounts, channels, milestones"),
        (name = "dev", description = "Dev mode only"),
        (name = "admin", description = "Bearer token required"),
    )
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;
    use dag_core::{
        Body, ChannelId, Digest, Keypair, Milestone, Payload, Signature, SignedPayload,
        Transaction, TxId, TX_VERSION,
    };

    fn tx(payload: Payload) -> Transaction {
        Transaction {
            version: TX_VERSION,
            network_id: 7,
            parents: [TxId([1; 32]), TxId([2; 32])],
            timestamp: 1_700_000_000_000,
            payload,
            nonce: 42,
        }
    }

    /// Every mirror accepts serde's real JSON of the type it documents.
    #[test]
    fn mirrors_match_serde_json() {
        let key = Keypair::from_seed(&[3; 32]);
        let bodies = [
            Body::Pay {
                to: key.address(),
                amount: 5,
                memo: b"kWh".to_vec(),
            },
            Body::Open {
                payee: key.address(),
                deposit: 9,
                expires_at: 4,
            },
            Body::Claim {
                channel: ChannelId([4; 32]),
                amount: 3,
                voucher: Signature([5; 64]),
            },
            Body::Refund {
                channel: ChannelId([4; 32]),
            },
            Body::Anchor {
                tag: b"t".to_vec(),
                digest: Digest([6; 32]),
            },
        ];
        for body in bodies {
            let p = SignedPayload::sign(&key, 7, 1, body);
            let json = serde_json::to_string(&p).unwrap();
            serde_json::from_str::<SignedPayloadDoc>(&json).expect(&json);
            let json = serde_json::to_string(&tx(Payload::Signed(p))).unwrap();
            serde_json::from_str::<TransactionDoc>(&json).expect(&json);
        }
        let ms = Milestone {
            index: 3,
            timestamp: 5,
            ledger_digest: Digest([8; 32]),
            signatures: vec![(0, Signature([9; 64]))],
        };
        for payload in [Payload::Empty, Payload::Milestone(ms)] {
            let json = serde_json::to_string(&tx(payload)).unwrap();
            serde_json::from_str::<TransactionDoc>(&json).expect(&json);
        }
    }

    #[test]
    fn document_lists_every_route() {
        let doc = ApiDoc::openapi();
        let paths: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        for p in [
            "/health",
            "/api/v1/info",
            "/api/v1/transactions/{id}",
            "/api/v1/milestones/{index}",
            "/api/v1/admin/config",
        ] {
            assert!(paths.contains(&p), "{p} missing from {paths:?}");
        }
        assert!(doc
            .components
            .unwrap()
            .schemas
            .contains_key("SignedPayload"));
    }
}

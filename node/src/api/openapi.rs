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
use serde_json::{json, Value};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::error::ErrorBody;
use super::events::LaggedEvent;
use super::handlers::{
    self, BatchVerdict, FaucetRequest, RawTransaction, TipsView, TransactionSubmitted,
};
use super::sampled::SampledSummary;
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
    /// The transaction of the previous milestone (the genesis id for milestone 1), hex.
    previous: String,
    /// Merkle root of the ids of the transactions it confirms, in white-flag order, hex.
    confirmed_root: String,
    /// Merkle root of the ids of the confirmed transactions whose payload it applied, hex.
    applied_root: String,
    /// Root of the ledger's state tree (every account and channel) after it, hex.
    state_root: String,
    /// Ledger digest after applying it, hex.
    ledger_digest: String,
    /// Committee signatures as `[signer index, signature hex]` pairs.
    signatures: Vec<(u8, String)>,
    /// A new committee, effective from a later index (absent when none).
    #[serde(default)]
    committee_update: Option<CommitteeUpdateDoc>,
}

/// JSON form of `dag_core::CommitteeUpdate`: what `POST /api/v1/admin/committee` takes.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CommitteeUpdate)]
pub(crate) struct CommitteeUpdateDoc {
    /// First milestone index the new committee signs (after the carrying milestone).
    effective_from: u32,
    /// The new committee's keys, bech32, in signer-index order (1 to 32, distinct).
    committee: Vec<String>,
    /// Signatures it needs (1 to its size).
    threshold: u8,
}

/// Raw bytes (`application/octet-stream`): a transaction's canonical encoding.
#[derive(ToSchema)]
#[schema(as = CanonicalBytes, value_type = String, format = Binary)]
pub(crate) struct BinaryDoc(Vec<u8>);

/// [`dag_core::proof::TransactionProof`] as JSON.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
#[schema(as = TransactionProof)]
pub(crate) struct ProofDoc {
    /// The transaction's canonical bytes, hex.
    transaction: String,
    /// The milestone's transaction (with the committee's signatures), hex.
    milestone: String,
    /// The id of the milestone's transaction, hex.
    milestone_id: String,
    /// The path from the transaction's id to the milestone's `confirmed_root`, leaf up.
    confirmed: Vec<StepDoc>,
    /// The path to its `applied_root`, when the payload was applied.
    applied: Option<Vec<StepDoc>>,
}

/// [`dag_core::proof::Step`] as JSON.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
#[schema(as = ProofStep)]
pub(crate) struct StepDoc {
    /// The sibling is on the left.
    left: bool,
    /// The sibling's hash, hex.
    hash: String,
}

/// [`dag_core::proof::StateProof`] as JSON.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
#[schema(as = StateProof)]
pub(crate) struct StateProofDoc {
    /// The milestone's transaction (with the committee's signatures), hex.
    milestone: String,
    /// The id of the milestone's transaction, hex.
    milestone_id: String,
    /// The account or channel proven, as of that milestone.
    entry: StateEntryDoc,
    /// The state tree's path to the milestone's `state_root`.
    path: StatePathDoc,
}

/// [`dag_core::proof::StateEntry`] as JSON: one of `account` or `channel`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[allow(dead_code)]
#[schema(as = StateEntry)]
pub(crate) enum StateEntryDoc {
    /// An account.
    Account {
        /// Its address (bech32).
        address: String,
        /// Its state; null: no such account (a zero balance).
        account: Option<AccountStateDoc>,
    },
    /// A payment channel.
    Channel {
        /// Its id, hex.
        channel_id: String,
        /// Its state; null: no such channel.
        channel: Option<ChannelStateDoc>,
    },
}

/// [`dag_core::ledger::Account`] as JSON.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
#[schema(as = AccountState)]
pub(crate) struct AccountStateDoc {
    /// Spendable balance, base units.
    balance: u64,
    /// The `seq` the account's next payload must carry.
    next_seq: u64,
}

/// [`dag_core::ledger::Channel`] as JSON.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
#[schema(as = ChannelState)]
pub(crate) struct ChannelStateDoc {
    /// Who opened it (bech32).
    payer: String,
    /// Who may claim (bech32).
    payee: String,
    /// Locked amount.
    deposit: u64,
    /// Milestone index after which the payer may refund it.
    expires_at: u32,
    /// Claimed or refunded.
    closed: bool,
    /// Amount the payee claimed.
    claimed: u64,
}

/// [`dag_core::state_tree::Proof`] as JSON.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
#[schema(as = StatePath)]
pub(crate) struct StatePathDoc {
    /// Hashes of the subtrees beside the walk, root first, hex (at most 256).
    siblings: Vec<String>,
    /// The leaf the walk ends at; null if it ends at an empty subtree.
    leaf: Option<StateLeafDoc>,
}

/// [`dag_core::state_tree::ProofLeaf`] as JSON.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
#[schema(as = StateLeaf)]
pub(crate) struct StateLeafDoc {
    /// The leaf's key, hex.
    key: String,
    /// The leaf's value hash, hex.
    value_hash: String,
}

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

/// Formats of the strings and integers the API carries, applied to the generated document
/// by field name (the types come from `dag-core` and `service`, which know nothing of
/// OpenAPI): ids and digests are 64 lowercase hex characters, signatures 128, addresses
/// bech32 `tng1` + 58 characters, DIDs `did:key:z6Mk` + 44 base58 characters, and every
/// unsigned integer says its real range (`uint64` up to 2^64 - 1, not `int64`).
///
/// `network_id` is a JSON number as serde writes a `u64`, and real network ids (a hash of
/// the genesis) exceed 2^63 about half the time, so the document says `integer`, `format:
/// uint64`, `minimum: 0`, `maximum: 18446744073709551615` rather than changing the JSON to
/// a string: the JSON is what clients already parse, and the schema now matches it.
/// JavaScript clients need a big-integer JSON parser for it (and for amounts over 2^53).
struct Formats;

/// 64 lowercase hex characters (32 bytes).
fn hex32() -> Value {
    json!({"type": "string", "pattern": "^[0-9a-f]{64}$", "minLength": 64, "maxLength": 64})
}
/// 128 lowercase hex characters (64 bytes: an Ed25519 signature).
fn hex64() -> Value {
    json!({"type": "string", "pattern": "^[0-9a-f]{128}$", "minLength": 128, "maxLength": 128})
}
/// Hex of at most `n` bytes.
fn hex_upto(n: usize) -> Value {
    json!({"type": "string", "pattern": format!("^([0-9a-f]{{2}}){{0,{n}}}$"), "maxLength": 2 * n})
}
const BECH32: &str = "tng1[02-9ac-hj-np-z]{58}";
const DID_KEY: &str = "did:key:z6Mk[1-9A-HJ-NP-Za-km-z]{44}";
fn bech32() -> Value {
    json!({"type": "string", "pattern": format!("^{BECH32}$"), "minLength": 62, "maxLength": 62})
}
fn did_key() -> Value {
    json!({"type": "string", "pattern": format!("^{DID_KEY}$"), "minLength": 56, "maxLength": 56})
}
fn address_or_did() -> Value {
    json!({"type": "string", "pattern": format!("^({BECH32}|{DID_KEY})$"), "minLength": 56, "maxLength": 62})
}

/// The string format of a property called `name` (in any schema), if it has one.
fn string_format(name: &str) -> Option<Value> {
    Some(match name {
        "transaction_id" | "payload_id" | "channel_id" | "ledger_digest" | "channel" | "digest"
        | "base" | "previous" | "confirmed_root" | "applied_root" | "state_root" | "parents"
        | "tips" | "transactions" | "milestone_id" | "siblings" | "key" | "value_hash" => hex32(),
        "signature" | "voucher" => hex64(),
        "hash" => hex32(),
        "transaction" | "milestone" => {
            json!({"type": "string", "pattern": "^([0-9a-f]{2})+$", "minLength": 2})
        }
        "issuer" | "payer" | "payee" | "to" | "committee" => bech32(),
        "address" => address_or_did(),
        "did" => did_key(),
        "memo" => hex_upto(64),
        "tag" => hex_upto(32),
        "bytes" => json!({"type": "string", "pattern": "^([0-9a-fA-F]{2})+$", "minLength": 2}),
        _ => return None,
    })
}

/// Properties that are `u8` (utoipa writes them like `u32`).
const U8_FIELDS: [&str; 2] = ["version", "pow_difficulty"];

/// Applies [`string_format`] to string schemas (and string items of arrays) under a
/// property name, and the unsigned ranges to integer schemas, everywhere below `v`.
fn apply_formats(v: &mut Value, name: Option<&str>) {
    match v {
        Value::Object(map) => {
            let types: Vec<String> = match map.get("type") {
                Some(Value::String(t)) => vec![t.clone()],
                Some(Value::Array(ts)) => ts
                    .iter()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect(),
                _ => Vec::new(),
            };
            if types.iter().any(|t| t == "string") {
                if let Some(Value::Object(f)) = name.and_then(string_format) {
                    for (k, val) in f {
                        if k != "type" {
                            map.insert(k, val);
                        }
                    }
                }
            }
            if types.iter().any(|t| t == "integer") && map.get("minimum") == Some(&json!(0)) {
                let (format, max) = match map.get("format").and_then(Value::as_str) {
                    _ if name.is_some_and(|n| U8_FIELDS.contains(&n)) => ("uint8", json!(u8::MAX)),
                    Some("int32") => ("uint32", json!(u32::MAX)),
                    _ => ("uint64", json!(u64::MAX)),
                };
                map.insert("format".into(), json!(format));
                map.insert("maximum".into(), max);
            }
            if let Some(Value::Object(props)) = map.get_mut("properties") {
                for (prop, schema) in props.iter_mut() {
                    apply_formats(schema, Some(prop));
                }
            }
            if let Some(items) = map.get_mut("items") {
                apply_formats(items, name);
            }
            if let Some(Value::Array(prefix)) = map.get_mut("prefixItems") {
                // Milestone signatures: `[signer index (u8), signature]`.
                if let [index, signature] = prefix.as_mut_slice() {
                    apply_formats(index, Some("version"));
                    apply_formats(signature, Some("signature"));
                }
            }
            for key in ["oneOf", "allOf", "anyOf"] {
                if let Some(Value::Array(variants)) = map.get_mut(key) {
                    for variant in variants {
                        apply_formats(variant, name);
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                apply_formats(item, name);
            }
        }
        _ => {}
    }
}

/// Path parameters by route.
fn path_param_format(path: &str, param: &str) -> Option<Value> {
    Some(match (path, param) {
        (p, "id")
            if p.starts_with("/api/v1/transactions/")
                || p.starts_with("/api/v1/payloads/")
                || p.starts_with("/api/v1/channels/") =>
        {
            hex32()
        }
        (p, "address") if p.starts_with("/api/v1/accounts/") => address_or_did(),
        ("/api/v1/milestones/{index}", "index") => {
            json!({"type": "string", "pattern": "^([0-9]{1,10}|latest)$", "minLength": 1, "maxLength": 10})
        }
        ("/api/v1/events", "Last-Event-ID") => {
            json!({"type": "string", "pattern": "^[0-9]{1,20}$", "minLength": 1, "maxLength": 20})
        }
        _ => return None,
    })
}

/// Errors any route can answer (from the guards in front of every handler), added to each
/// operation that does not document the code itself; operations with a body also get the
/// body errors.
fn add_common_errors(op: &mut Value) {
    let has_body = op.get("requestBody").is_some();
    let Some(Value::Object(responses)) = op.get_mut("responses") else {
        return;
    };
    let mut common = vec![
        ("414", "Request target over 8 KiB"),
        ("429", "Rate limited; see Retry-After"),
        ("431", "More than 100 header lines or 32 KiB of headers"),
        (
            "503",
            "No answer within the request timeout, or the node is stopping",
        ),
    ];
    if has_body {
        common.extend([
            ("408", "The request body stopped arriving"),
            ("413", "Body over the size limit"),
            ("415", "Unsupported Content-Type"),
        ]);
    }
    for (code, description) in common {
        responses.entry(code).or_insert_with(|| {
            json!({
                "description": description,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
            })
        });
    }
}

impl Modify for Formats {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut doc = serde_json::to_value(&*openapi).expect("the document serialises");
        if let Some(Value::Object(schemas)) = doc.pointer_mut("/components/schemas") {
            for schema in schemas.values_mut() {
                apply_formats(schema, None);
            }
        }
        if let Some(Value::Object(paths)) = doc.pointer_mut("/paths") {
            for (path, item) in paths.iter_mut() {
                let Value::Object(ops) = item else { continue };
                for op in ops.values_mut() {
                    add_common_errors(op);
                    let Some(Value::Array(params)) = op.get_mut("parameters") else {
                        continue;
                    };
                    for param in params {
                        let name = param["name"].as_str().unwrap_or("").to_owned();
                        if let Some(schema) = path_param_format(path, &name) {
                            param["schema"] = schema;
                        }
                    }
                }
            }
        }
        let described = "Network id: a hash of the genesis, any value of a u64 (half of them \
            above 2^63). A JSON number; JavaScript clients need a big-integer parser.";
        for pointer in [
            "/components/schemas/NodeInfo/properties/network_id",
            "/components/schemas/Transaction/properties/network_id",
        ] {
            if let Some(Value::Object(schema)) = doc.pointer_mut(pointer) {
                schema.insert("description".into(), json!(described));
            }
        }
        *openapi = serde_json::from_value(doc).expect("the patched document deserialises");
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
        handlers::committee,
        crate::rotation::approve_update,
        crate::rotation::withdraw_update,
        handlers::events,
        handlers::events_sampled,
        handlers::metrics,
        handlers::faucet,
        handlers::admin_config,
        handlers::transaction_proof,
        handlers::payload_proof,
        handlers::account_proof,
        handlers::channel_proof,
        crate::snapshots::make_snapshot,
        handlers::dashboard,
    ),
    components(schemas(
        ErrorBody, NodeInfo, Health, TipsView, RawTransaction, TransactionSubmitted,
        PayloadReceipt, PayloadState, PayloadView, BatchVerdict, TxMetadataView, AccountView,
        ChannelView, MilestoneView, NodeEvent, FaucetRequest, ApiConfigView, TransactionDoc,
        PayloadDoc, SignedPayloadDoc, BodyDoc, MilestoneDoc, BinaryDoc, LaggedEvent, SampledSummary,
        crate::snapshots::SnapshotMade, crate::snapshots::Kind, ProofDoc, StepDoc,
        StateProofDoc, StateEntryDoc, AccountStateDoc, ChannelStateDoc, StatePathDoc,
        StateLeafDoc, CommitteeUpdateDoc, crate::service::CommitteeView,
        crate::service::EpochView,
    )),
    modifiers(&BearerAuth, &Formats),
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
    use dag_core::proof::{StateEntry, StateProof};
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
            previous: dag_core::TxId([1; 32]),
            confirmed_root: Digest([2; 32]),
            applied_root: Digest([3; 32]),
            state_root: Digest([4; 32]),
            ledger_digest: Digest([8; 32]),
            signatures: vec![(0, Signature([9; 64]))],
            committee_update: None,
        };
        for payload in [Payload::Empty, Payload::Milestone(ms)] {
            let json = serde_json::to_string(&tx(payload)).unwrap();
            serde_json::from_str::<TransactionDoc>(&json).expect(&json);
        }
        // State proofs: both entries, present and absent, a leaf and none.
        let mut tree = dag_core::state_tree::StateTree::new();
        tree.update([1; 32], Some([2; 32]));
        tree.update([0x81; 32], Some([3; 32]));
        let channel = dag_core::ledger::Channel {
            payer: key.address(),
            payee: key.address(),
            deposit: 5,
            expires_at: 9,
            closed: true,
            claimed: 2,
        };
        let entries = [
            StateEntry::Account {
                address: key.address(),
                account: Some(dag_core::ledger::Account {
                    balance: 3,
                    next_seq: 1,
                }),
            },
            StateEntry::Channel {
                channel_id: ChannelId([4; 32]),
                channel: Some(channel),
            },
            StateEntry::Channel {
                channel_id: ChannelId([4; 32]),
                channel: None,
            },
        ];
        for (entry, key) in entries.into_iter().zip([[1; 32], [0x81; 32], [0x41; 32]]) {
            let proof = StateProof {
                milestone: vec![1, 2],
                milestone_id: dag_core::TxId([7; 32]),
                entry,
                path: tree.prove(&key),
            };
            let json = serde_json::to_string(&proof).unwrap();
            serde_json::from_str::<StateProofDoc>(&json).expect(&json);
        }
    }

    /// Ids, addresses and signatures have their formats; unsigned integers their real
    /// range; every other string is on a short list of free-text fields (so a new id-like
    /// field without a format fails here).
    #[test]
    fn strings_and_integers_are_typed_precisely() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let at = |p: &str| {
            doc.pointer(p)
                .unwrap_or_else(|| panic!("{p} missing"))
                .clone()
        };
        let id = at("/components/schemas/PayloadReceipt/properties/payload_id");
        assert_eq!(id["pattern"], "^[0-9a-f]{64}$");
        assert_eq!(id["maxLength"], 64);
        let nid = at("/components/schemas/NodeInfo/properties/network_id");
        assert_eq!(nid["type"], "integer");
        assert_eq!(nid["format"], "uint64");
        assert_eq!(nid["maximum"], json!(u64::MAX));
        let sig = at("/components/schemas/SignedPayload/properties/signature");
        assert_eq!(sig["pattern"], "^[0-9a-f]{128}$");
        let issuer = at("/components/schemas/SignedPayload/properties/issuer");
        assert!(issuer["pattern"].as_str().unwrap().starts_with("^tng1"));
        assert_eq!(
            at("/components/schemas/Transaction/properties/version")["maximum"],
            json!(255)
        );
        for route in ["{address}", "{address}~1proof"] {
            let params = at(&format!(
                "/paths/~1api~1v1~1accounts~1{route}/get/parameters/0/schema"
            ));
            assert!(params["pattern"].as_str().unwrap().contains("did:key:z6Mk"));
        }
        let params = at("/paths/~1api~1v1~1channels~1{id}~1proof/get/parameters/0/schema");
        assert_eq!(params["pattern"], "^[0-9a-f]{64}$");

        // The patterns accept what the node writes.
        let key = dag_core::Keypair::from_seed(&[3; 32]);
        let bech = key.address().to_string();
        let did = key.address().to_did_key();
        assert_eq!(bech.len(), 62, "{bech}");
        assert_eq!(did.len(), 56, "{did}");
        assert!(bech.starts_with("tng1") && did.starts_with("did:key:z6Mk"));
        let charset = |s: &str, set: &str| s.chars().all(|c| set.contains(c));
        assert!(charset(&bech[4..], "qpzry9x8gf2tvdw0s3jn54khce6mua7l"));
        assert!(charset(
            &did[12..],
            "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
        ));

        let free_text = [
            "code",
            "message",
            "version",
            "network_name",
            "halted",
            "reasons",
            "warnings",
            "outcome",
            "kind",
            "reason",
            "type",
            "status",
            "path",
        ];
        fn strings(v: &Value, name: &str, out: &mut Vec<(String, Value)>) {
            match v {
                Value::Object(m) => {
                    let is_string = match &m.get("type") {
                        Some(Value::String(t)) => t == "string",
                        Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
                        _ => false,
                    };
                    if is_string && !m.contains_key("enum") && m.get("format").is_none() {
                        out.push((name.to_owned(), v.clone()));
                    }
                    for (k, child) in m {
                        let child_name = if k == "properties" || k == "items" {
                            name
                        } else {
                            k
                        };
                        strings(child, child_name, out);
                    }
                }
                Value::Array(items) => items.iter().for_each(|i| strings(i, name, out)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        strings(&doc["components"]["schemas"], "", &mut found);
        for (name, schema) in found {
            assert!(
                schema.get("pattern").is_some() || free_text.contains(&name.as_str()),
                "string {name} has no format: {schema}"
            );
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
            "/api/v1/admin/snapshot",
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

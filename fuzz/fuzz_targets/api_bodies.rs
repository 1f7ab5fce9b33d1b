//! Request bodies through the real HTTP API: `node::api::router` over a real in-memory node
//! (`Node::start` on a `MemStore`, dev faucet on, no milestone issuer, PoW difficulty 0),
//! driven with `tower::ServiceExt::oneshot` on one current-thread runtime made once.
//!
//! The first input byte picks the route (`POST /api/v1/payloads`, `/payloads/batch`,
//! `/transactions`, `/faucet`), the `Content-Type` (JSON, MessagePack, octet-stream, none,
//! or text from the input) and the `Accept`; the second picks the body: the rest of the
//! input as is, or a well-formed body built from it (a payload signed by one of a few
//! funded keys, a batch, a transaction, a faucet request; JSON or MessagePack), optionally
//! with one byte overwritten, so that the success paths are reached too.
//!
//! Checked for every request, besides "no panic":
//! - never a 5xx other than 503 (the routes document 503 for a busy or stopping node);
//! - every error is a JSON `ErrorBody` with a code;
//! - a 4xx (and a 200 batch in which every item failed) changes nothing: `/info`'s view
//!   of the node (tips, transactions, milestones, digest) and the status of the payload
//!   the body carried, if any, are as before;
//! - a 2xx carries what it promises: the payload or transaction it names is now known to
//!   the node.
//!
//! The node is replaced by a fresh one after 2,000 accepted requests, so that it stays
//! small and each execution costs about the same.
//!
//! `cargo +nightly fuzz run api_bodies`
#![no_main]

use std::sync::{LazyLock, Mutex};

use axum::body::Body as HttpBody;
use axum::http::{header, Request, Response, StatusCode};
use axum::Router;
use dag_core::{
    Address, Allocation, Body, ChannelId, Digest, Genesis, Keypair, MemStore, Payload, PayloadId,
    Signature, SignedPayload, Transaction, TxId, TX_VERSION,
};
use libfuzzer_sys::fuzz_target;
use node::api::{self, ApiOptions, BatchVerdict, ErrorBody, TransactionSubmitted};
use node::runtime::{Node, NodeHandle, NodeSetup};
use node::service::{NodeInfo, NodeService, PayloadReceipt};
use node_proto::ProtocolConfig;
use tower::ServiceExt;

const KEYS: u8 = 4;

static STATS: Mutex<std::collections::BTreeMap<(&str, u16), u64>> =
    Mutex::new(std::collections::BTreeMap::new());
const MAX_BATCH: usize = 8;
const RESET_AFTER: u32 = 2_000;

/// The funded issuers, derived once (deriving a public key costs more than a request).
static KEYPAIRS: LazyLock<Vec<Keypair>> = LazyLock::new(|| {
    (0..KEYS)
        .map(|i| Keypair::from_seed(&[0x10 + i; 32]))
        .collect()
});

fn key(i: u8) -> &'static Keypair {
    &KEYPAIRS[usize::from(i % KEYS)]
}

fn faucet_key() -> Keypair {
    Keypair::from_seed(&[0xfa; 32])
}

struct Env {
    rt: tokio::runtime::Runtime,
    genesis: Genesis,
    node: Option<Node>,
    handle: NodeHandle,
    app: Router,
    accepted: u32,
}

async fn start(genesis: &Genesis) -> (Node, NodeHandle, Router) {
    let node = Node::start(NodeSetup {
        genesis: genesis.clone(),
        store: std::sync::Arc::new(MemStore::new()),
        protocol: ProtocolConfig {
            faucet: Some(faucet_key()),
            milestone_interval_ms: 60_000,
            ..ProtocolConfig::default()
        },
        max_batch: 64,
        queue_capacity: 64,
    })
    .await
    .expect("in-memory node starts");
    let handle = node.handle();
    let app = api::router(
        handle.clone(),
        ApiOptions {
            max_body_bytes: 2048,
            max_batch_len: MAX_BATCH,
            rate_limit_per_sec: 0,
            dev: true,
            ..ApiOptions::default()
        },
    );
    (node, handle, app)
}

static ENV: LazyLock<Mutex<Env>> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut allocations: Vec<Allocation> = (0..KEYS)
        .map(|i| Allocation {
            address: key(i).address(),
            amount: 1_000_000,
        })
        .collect();
    allocations.push(Allocation {
        address: faucet_key().address(),
        amount: 1_000_000_000,
    });
    let genesis = Genesis {
        network_name: "fuzz".into(),
        timestamp: node::runtime::now_ms(),
        pow_difficulty: 0,
        timestamp_window_ms: 24 * 3600 * 1000,
        committee: vec![Keypair::from_seed(&[1; 32]).address()],
        threshold: 1,
        allocations,
    };
    let (node, handle, app) = rt.block_on(start(&genesis));
    Mutex::new(Env {
        rt,
        genesis,
        node: Some(node),
        handle,
        app,
        accepted: 0,
    })
});

/// Reads input bytes; zeros when it runs out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let Some((b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        *b
    }
    fn u64(&mut self) -> u64 {
        let mut v = [0u8; 8];
        for b in &mut v[..usize::from(self.u8() % 9)] {
            *b = self.u8();
        }
        u64::from_le_bytes(v)
    }
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut v = [0u8; N];
        let fill = self.u8();
        v.iter_mut().for_each(|b| *b = fill);
        v
    }
    fn vec(&mut self, max: usize) -> Vec<u8> {
        let n = usize::from(self.u8()) % (max + 1);
        (0..n).map(|_| self.u8()).collect()
    }
}

fn body_of(b: &mut Bytes<'_>) -> Body {
    let to = if b.u8() & 1 == 0 {
        key(b.u8()).address()
    } else {
        Address(b.array())
    };
    match b.u8() % 5 {
        0 => Body::Pay {
            to,
            amount: b.u64(),
            memo: b.vec(80),
        },
        1 => Body::Open {
            payee: to,
            deposit: b.u64(),
            expires_at: b.u64() as u32,
        },
        2 => Body::Claim {
            channel: ChannelId(b.array()),
            amount: b.u64(),
            voucher: Signature([b.u8(); 64]),
        },
        3 => Body::Refund {
            channel: ChannelId(b.array()),
        },
        _ => Body::Anchor {
            tag: b.vec(40),
            digest: Digest(b.array()),
        },
    }
}

fn payload_of(b: &mut Bytes<'_>, network_id: u64) -> SignedPayload {
    let signer = key(b.u8());
    let network = if b.u8() == 0xff { b.u64() } else { network_id };
    let seq = u64::from(b.u8() % 8);
    let body = body_of(b);
    let mut p = SignedPayload::sign(signer, network, seq, body);
    if b.u8() == 0xee {
        p.issuer = Address(b.array());
    }
    p
}

fn encode<T: serde::Serialize>(v: &T, msgpack: bool) -> Vec<u8> {
    if msgpack {
        rmp_serde::to_vec_named(v).expect("serialises")
    } else {
        serde_json::to_vec(v).expect("serialises")
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Route {
    Payload,
    Batch,
    Transaction,
    Faucet,
}

/// What the node says about the state a request could change.
#[derive(Debug, PartialEq)]
struct Snapshot {
    info: (usize, usize, u32, u32, Digest),
    payloads: Vec<Option<String>>,
}

fn snapshot(h: &NodeHandle, payloads: &[PayloadId]) -> Snapshot {
    let NodeInfo {
        tips,
        transactions,
        latest_milestone,
        confirmed_milestone,
        ledger_digest,
        ..
    } = h.info();
    Snapshot {
        info: (
            tips,
            transactions,
            latest_milestone,
            confirmed_milestone,
            ledger_digest,
        ),
        payloads: payloads
            .iter()
            .map(|id| {
                h.payload(id)
                    .expect("memory store")
                    .map(|v| format!("{v:?}"))
            })
            .collect(),
    }
}

fn decode<T: serde::de::DeserializeOwned>(res: &Response<axum::body::Bytes>) -> T {
    let msgpack = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("msgpack"));
    if msgpack {
        rmp_serde::from_slice(res.body()).expect("a msgpack success body decodes")
    } else {
        serde_json::from_slice(res.body()).expect("a JSON success body decodes")
    }
}

fuzz_target!(|data: &[u8]| {
    let mut env = ENV.lock().unwrap_or_else(|p| p.into_inner());
    let mut b = Bytes(data);
    let sel = b.u8();
    let route = match sel & 3 {
        0 => Route::Payload,
        1 => Route::Batch,
        2 => Route::Transaction,
        _ => Route::Faucet,
    };
    let content_type: Option<String> = match (sel >> 2) & 7 {
        0 | 1 => Some("application/json".into()),
        2 | 3 => Some("application/msgpack".into()),
        4 => Some("application/octet-stream".into()),
        5 => None,
        _ => Some(String::from_utf8_lossy(&b.vec(24)).into_owned()),
    };
    let accept = match sel >> 5 {
        0 => Some("application/msgpack"),
        1 => Some("application/octet-stream"),
        2 => Some("text/html, */*;q=0.1"),
        3 => None,
        _ => Some("application/json"),
    };
    let msgpack = content_type
        .as_deref()
        .is_some_and(|c| c.contains("msgpack"));
    let network_id = env.genesis.network_id();

    // The payloads the body carries (for the no-change check).
    let mut carried: Vec<PayloadId> = Vec::new();
    let mode = b.u8();
    let body: Vec<u8> = if mode & 1 == 0 {
        b.0.to_vec()
    } else {
        let mut body = match route {
            Route::Payload => {
                let p = payload_of(&mut b, network_id);
                carried.push(p.id());
                encode(&p, msgpack)
            }
            Route::Batch => {
                let n = usize::from(b.u8()) % (MAX_BATCH + 2);
                let ps: Vec<SignedPayload> =
                    (0..n).map(|_| payload_of(&mut b, network_id)).collect();
                carried.extend(ps.iter().map(SignedPayload::id));
                encode(&ps, msgpack)
            }
            Route::Transaction => {
                let payload = match b.u8() % 3 {
                    0 => Payload::Empty,
                    _ => {
                        let p = payload_of(&mut b, network_id);
                        carried.push(p.id());
                        Payload::Signed(p)
                    }
                };
                let tips = env.handle.tips();
                let parent = |i: u8| tips.get(usize::from(i)).copied().unwrap_or(TxId::GENESIS);
                let tx = Transaction {
                    version: if b.u8() == 0xff { b.u8() } else { TX_VERSION },
                    network_id,
                    parents: [parent(b.u8()), parent(b.u8())],
                    timestamp: node::runtime::now_ms().wrapping_add(b.u64()),
                    payload,
                    nonce: b.u64(),
                };
                let bytes = tx.to_bytes();
                match (sel >> 2) & 7 {
                    4 => bytes,
                    _ => encode(&api::RawTransaction { bytes }, msgpack),
                }
            }
            Route::Faucet => {
                let address = match b.u8() % 3 {
                    0 => key(b.u8()).address().to_string(),
                    1 => key(b.u8()).address().to_did_key(),
                    _ => String::from_utf8_lossy(&b.vec(70)).into_owned(),
                };
                encode(
                    &api::FaucetRequest {
                        address,
                        amount: b.u64(),
                    },
                    msgpack,
                )
            }
        };
        if mode & 2 != 0 && !body.is_empty() {
            let at = usize::from(b.u8()) * 256 + usize::from(b.u8());
            let n = body.len();
            body[at % n] = b.u8();
        }
        body
    };

    let path = match route {
        Route::Payload => "/api/v1/payloads",
        Route::Batch => "/api/v1/payloads/batch",
        Route::Transaction => "/api/v1/transactions",
        Route::Faucet => "/api/v1/faucet",
    };
    let mut req = Request::post(path);
    if let Some(ct) = &content_type {
        req = req.header(header::CONTENT_TYPE, ct.as_str());
    }
    if let Some(a) = accept {
        req = req.header(header::ACCEPT, a);
    }
    let Ok(req) = req.body(HttpBody::from(body)) else {
        return; // a Content-Type the http crate refuses never reaches a server
    };

    let handle = env.handle.clone();
    let before = snapshot(&handle, &carried);
    let app = env.app.clone();
    let res = env.rt.block_on(async move {
        let res = app.oneshot(req).await.expect("infallible");
        let (parts, body) = res.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .expect("a response body is readable");
        Response::from_parts(parts, bytes)
    });
    let status = res.status();
    if std::env::var_os("API_BODIES_STATS").is_some() {
        // Which routes answered what (to see that the success paths are reached), e.g.
        // `API_BODIES_STATS=1 cargo +nightly fuzz run api_bodies -- -runs=0`.
        let mut stats = STATS.lock().unwrap_or_else(|p| p.into_inner());
        *stats.entry((path, status.as_u16())).or_default() += 1;
        eprintln!("api_bodies stats: {stats:?}");
    }
    assert!(
        !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
        "{status} for {path}: {:?}",
        String::from_utf8_lossy(res.body())
    );

    if status.is_client_error() || status.is_server_error() {
        let err: ErrorBody = serde_json::from_slice(res.body())
            .unwrap_or_else(|e| panic!("{status} without a JSON ErrorBody ({e}): {res:?}"));
        assert!(!err.code.is_empty());
        if status.is_client_error() {
            assert_eq!(
                snapshot(&handle, &carried),
                before,
                "{status} {} changed the node",
                err.code
            );
        }
        return;
    }
    assert!(status.is_success(), "{status}");
    match route {
        Route::Payload | Route::Faucet => {
            let r: PayloadReceipt = decode(&res);
            assert!(handle
                .payload(&r.payload_id)
                .expect("memory store")
                .is_some());
            assert!(handle
                .transaction(&r.transaction_id)
                .expect("memory store")
                .is_some());
            env.accepted += 1;
        }
        Route::Transaction => {
            let r: TransactionSubmitted = decode(&res);
            assert!(handle
                .transaction(&r.transaction_id)
                .expect("memory store")
                .is_some());
            env.accepted += 1;
        }
        Route::Batch => {
            let verdicts: Vec<BatchVerdict> = decode(&res);
            let mut any = false;
            for v in verdicts {
                match v {
                    BatchVerdict::Ok(r) => {
                        any = true;
                        assert!(handle
                            .payload(&r.payload_id)
                            .expect("memory store")
                            .is_some());
                    }
                    BatchVerdict::Error(e) => assert!(!e.code.is_empty()),
                }
            }
            if any {
                env.accepted += 1;
            } else {
                assert_eq!(
                    snapshot(&handle, &carried),
                    before,
                    "a batch of refusals changed the node"
                );
            }
        }
    }
    drop(handle);
    if env.accepted >= RESET_AFTER {
        // A fresh node; the old one stops once its handles (router, ours) are gone.
        env.accepted = 0;
        let old = env.node.take();
        let genesis = env.genesis.clone();
        let (node, handle, app) = env.rt.block_on(start(&genesis));
        env.node = Some(node);
        env.handle = handle;
        env.app = app;
        if let Some(n) = old {
            env.rt.block_on(n.shutdown());
        }
    }
});

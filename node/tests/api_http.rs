//! The HTTP API over real HTTP (127.0.0.1, ephemeral ports), against `TestNode`: a test
//! double of `NodeService` kept in memory. It is deterministic and has just enough real
//! behaviour to tell routes apart: it verifies payload signatures (422), refuses a payload or
//! transaction it already holds (409), stores what it accepts (pending until the test issues a
//! milestone), credits faucet payments, and broadcasts events. The real node has its own
//! end-to-end tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dag_core::{
    codec, Address, Body, ChannelId, Digest, Keypair, MilestoneIndex, Payload, PayloadId,
    SignedPayload, Transaction, TxId, TX_VERSION,
};
use node::api::{self, ApiOptions, BatchVerdict, ErrorBody, TipsView, TransactionSubmitted};
use node::service::{
    AccountView, ChannelView, Health, MilestoneView, NodeEvent, NodeInfo, NodeService,
    PayloadReceipt, PayloadState, PayloadView, ServiceError, SubmitError, TxMetadataView,
};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use tokio::sync::{broadcast, oneshot};

const NETWORK: u64 = 7;

// ---------------------------------------------------------------------------------------
// The test double.

#[derive(Default)]
struct TestState {
    /// Payload id -> (payload, carrying transaction, confirming milestone).
    payloads: HashMap<PayloadId, (SignedPayload, TxId, Option<MilestoneIndex>)>,
    transactions: HashMap<TxId, Vec<u8>>,
    balances: HashMap<Address, u64>,
    milestones: Vec<MilestoneView>,
    faucet_seq: u64,
}

/// In-memory `NodeService` for these tests only.
#[derive(Clone)]
struct TestNode {
    state: Arc<Mutex<TestState>>,
    events: broadcast::Sender<NodeEvent>,
    healthy: Arc<AtomicBool>,
}

fn faucet_key() -> Keypair {
    Keypair::from_seed(&[0xfa; 32])
}

fn known_channel() -> ChannelId {
    ChannelId([0xcc; 32])
}

impl TestNode {
    fn new() -> Self {
        TestNode {
            state: Arc::default(),
            events: broadcast::channel(64).0,
            healthy: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Stores `tx` unless known; its id.
    fn store(&self, st: &mut TestState, bytes: Vec<u8>) -> Result<TxId, SubmitError> {
        let (tx, id) =
            codec::decode_with_id(&bytes).map_err(|e| SubmitError::Malformed(e.to_string()))?;
        if tx.network_id != NETWORK {
            return Err(SubmitError::Invalid(format!(
                "wrong network {}",
                tx.network_id
            )));
        }
        if st.transactions.contains_key(&id) {
            return Err(SubmitError::Conflict(format!(
                "transaction {id} already known"
            )));
        }
        st.transactions.insert(id, bytes);
        let _ = self.events.send(NodeEvent::Transaction {
            transaction_id: id,
            payload_id: tx.signed().map(SignedPayload::id),
            parents: Vec::new(),
        });
        Ok(id)
    }

    fn attach(&self, st: &mut TestState, p: SignedPayload) -> Result<PayloadReceipt, SubmitError> {
        p.verify(NETWORK)
            .map_err(|e| SubmitError::Invalid(format!("signature: {e}")))?;
        let payload_id = p.id();
        if st.payloads.contains_key(&payload_id) {
            return Err(SubmitError::Conflict(format!(
                "payload {payload_id} already known"
            )));
        }
        let tx = Transaction {
            version: TX_VERSION,
            network_id: NETWORK,
            parents: [TxId::GENESIS, TxId::GENESIS],
            timestamp: 1_700_000_000_000,
            payload: Payload::Signed(p.clone()),
            nonce: 0,
        };
        let transaction_id = self.store(st, tx.to_bytes())?;
        st.payloads.insert(payload_id, (p, transaction_id, None));
        Ok(PayloadReceipt {
            payload_id,
            transaction_id,
        })
    }

    /// Confirms every pending payload in a new milestone and applies `Pay` bodies.
    fn issue_milestone(&self) -> MilestoneView {
        let mut st = self.state.lock().unwrap();
        let index = st.milestones.len() as MilestoneIndex + 1;
        let mut confirmed = Vec::new();
        let mut credits = Vec::new();
        for (id, (p, tx, ms)) in st.payloads.iter_mut() {
            if ms.is_none() {
                *ms = Some(index);
                confirmed.push((*id, *tx));
                if let Body::Pay { to, amount, .. } = &p.body {
                    credits.push((*to, *amount));
                }
            }
        }
        for (to, amount) in credits {
            *st.balances.entry(to).or_default() += amount;
        }
        confirmed.sort();
        let view = MilestoneView {
            index,
            transaction_id: TxId([index as u8; 32]),
            timestamp: 1_700_000_000_000 + u64::from(index),
            ledger_digest: Digest([index as u8; 32]),
            confirmed_transactions: Some(confirmed.len()),
            applied: Some(confirmed.len()),
            conflicting: Some(0),
            signers: vec![0],
        };
        st.milestones.push(view.clone());
        let _ = self.events.send(NodeEvent::Milestone(view.clone()));
        for (payload_id, transaction_id) in confirmed {
            let _ = self.events.send(NodeEvent::Payload {
                payload_id,
                state: PayloadState::Confirmed {
                    milestone: index,
                    transaction_id,
                },
            });
        }
        view
    }
}

impl NodeService for TestNode {
    fn info(&self) -> NodeInfo {
        let st = self.state.lock().unwrap();
        let latest = st.milestones.len() as MilestoneIndex;
        NodeInfo {
            version: "test".into(),
            network_name: "testnet".into(),
            network_id: NETWORK,
            pow_difficulty: 0,
            latest_milestone: latest,
            confirmed_milestone: latest,
            tips: st.transactions.len(),
            ledger_digest: st
                .milestones
                .last()
                .map_or(Digest([0; 32]), |m| m.ledger_digest),
            transactions: st.transactions.len(),
            milestone_issuer: false,
            faucet: true,
            halted: None,
            total_supply: 1_000,
            open_deposits: 0,
            oldest_milestone: 1,
            snapshot_milestone: None,
        }
    }

    fn health(&self) -> Health {
        let healthy = self.healthy.load(Ordering::SeqCst);
        Health {
            healthy,
            reasons: if healthy {
                vec![]
            } else {
                vec!["not synced".into()]
            },
            warnings: vec![],
        }
    }

    fn tips(&self) -> Vec<TxId> {
        let mut tips: Vec<TxId> = self
            .state
            .lock()
            .unwrap()
            .transactions
            .keys()
            .copied()
            .collect();
        tips.sort();
        tips
    }

    async fn submit_transactions(&self, txs: Vec<Vec<u8>>) -> Vec<Result<TxId, SubmitError>> {
        let mut st = self.state.lock().unwrap();
        txs.into_iter().map(|b| self.store(&mut st, b)).collect()
    }

    async fn submit_payloads(
        &self,
        payloads: Vec<SignedPayload>,
    ) -> Vec<Result<PayloadReceipt, SubmitError>> {
        let mut st = self.state.lock().unwrap();
        payloads
            .into_iter()
            .map(|p| self.attach(&mut st, p))
            .collect()
    }

    async fn faucet(&self, to: Address, amount: u64) -> Result<PayloadReceipt, SubmitError> {
        if amount == 0 {
            return Err(SubmitError::Invalid("amount must be positive".into()));
        }
        let mut st = self.state.lock().unwrap();
        st.faucet_seq += 1;
        let body = Body::Pay {
            to,
            amount,
            memo: Vec::new(),
        };
        let p = SignedPayload::sign(&faucet_key(), NETWORK, st.faucet_seq, body);
        self.attach(&mut st, p)
    }

    fn transaction(&self, id: &TxId) -> Result<Option<Vec<u8>>, ServiceError> {
        Ok(self.state.lock().unwrap().transactions.get(id).cloned())
    }

    // This fake confirms nothing, so it has no proofs (the real ones: node_e2e.rs).
    fn transaction_proof(
        &self,
        _: &TxId,
    ) -> Result<Option<dag_core::proof::TransactionProof>, ServiceError> {
        Ok(None)
    }

    fn payload_proof(
        &self,
        _: &PayloadId,
    ) -> Result<Option<dag_core::proof::TransactionProof>, ServiceError> {
        Ok(None)
    }

    fn state_proof(
        &self,
        _: dag_core::proof::StateEntry,
    ) -> Result<Option<dag_core::proof::StateProof>, ServiceError> {
        Ok(None)
    }

    fn transaction_metadata(&self, id: &TxId) -> Result<Option<TxMetadataView>, ServiceError> {
        let st = self.state.lock().unwrap();
        Ok(st.transactions.get(id).map(|_| TxMetadataView {
            transaction_id: *id,
            solid: true,
            arrival_ms: 1_700_000_000_000,
            confirmed_by: None,
            outcome: None,
            approvers: 0,
            is_tip: true,
        }))
    }

    fn payload(&self, id: &PayloadId) -> Result<Option<PayloadView>, ServiceError> {
        let st = self.state.lock().unwrap();
        Ok(st.payloads.get(id).map(|(p, tx, ms)| PayloadView {
            payload_id: *id,
            issuer: p.issuer,
            seq: p.seq,
            kind: p.body.kind().into(),
            transactions: vec![*tx],
            state: match ms {
                None => PayloadState::Pending,
                Some(m) => PayloadState::Confirmed {
                    milestone: *m,
                    transaction_id: *tx,
                },
            },
        }))
    }

    fn account(&self, address: &Address) -> Result<AccountView, ServiceError> {
        let st = self.state.lock().unwrap();
        Ok(AccountView {
            address: *address,
            did: address.to_did_key(),
            balance: st.balances.get(address).copied().unwrap_or(0),
            next_seq: 0,
        })
    }

    fn channel(&self, id: &ChannelId) -> Result<Option<ChannelView>, ServiceError> {
        Ok((*id == known_channel()).then(|| ChannelView {
            channel_id: *id,
            payer: faucet_key().address(),
            payee: Address([2; 32]),
            deposit: 100,
            expires_at: 10,
            closed: false,
            claimed: None,
        }))
    }

    fn milestone(
        &self,
        index: Option<MilestoneIndex>,
    ) -> Result<Option<MilestoneView>, ServiceError> {
        let st = self.state.lock().unwrap();
        Ok(match index {
            None => st.milestones.last().cloned(),
            Some(0) => None,
            Some(i) => st.milestones.get(i as usize - 1).cloned(),
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    fn metrics(&self) -> String {
        format!(
            "# TYPE tangle_tips gauge\ntangle_tips {}\n",
            self.state.lock().unwrap().transactions.len()
        )
    }
}

// ---------------------------------------------------------------------------------------
// Harness.

struct Server {
    base: String,
    node: TestNode,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(options: ApiOptions) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let node = TestNode::new();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(api::serve(listener, node.clone(), options, async move {
            let _ = stopped.await;
        }));
        Server {
            base: format!("http://{addr}"),
            node,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task,
        }
    }

    async fn default() -> Server {
        Server::start(ApiOptions {
            dev: true,
            admin_token: Some("s3cret".into()),
            ..ApiOptions::default()
        })
        .await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    async fn post_json<T: serde::Serialize>(&self, path: &str, body: &T) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Stops the server and checks that `serve` returned cleanly.
    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

/// Asserts `response` is a JSON error with `status` and `code`; its message.
async fn expect_error(response: reqwest::Response, status: StatusCode, code: &str) -> String {
    assert_eq!(response.status(), status, "{:?}", response.url().path());
    let ct = response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(ct.starts_with("application/json"), "content-type {ct}");
    let body: ErrorBody = response.json().await.unwrap();
    assert_eq!(body.code, code, "{body:?}");
    assert!(!body.message.is_empty());
    body.message
}

fn device(n: u8) -> Keypair {
    Keypair::from_seed(&[n; 32])
}

fn pay(from: &Keypair, seq: u64, amount: u64) -> SignedPayload {
    let body = Body::Pay {
        to: Address([0xbb; 32]),
        amount,
        memo: b"kWh".to_vec(),
    };
    SignedPayload::sign(from, NETWORK, seq, body)
}

fn raw_tx(network_id: u64, timestamp: u64) -> Vec<u8> {
    Transaction {
        version: TX_VERSION,
        network_id,
        parents: [TxId::GENESIS, TxId::GENESIS],
        timestamp,
        payload: Payload::Empty,
        nonce: 0,
    }
    .to_bytes()
}

// ---------------------------------------------------------------------------------------
// Success shapes.

#[tokio::test]
async fn status_routes_answer_with_their_shapes() {
    let s = Server::default().await;

    let r = s.get("/health").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.json::<Health>().await.unwrap().healthy);
    s.node.healthy.store(false, Ordering::SeqCst);
    let r = s.get("/health").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.json::<Health>().await.unwrap().reasons,
        vec!["not synced"]
    );

    let info: NodeInfo = s.get("/api/v1/info").await.json().await.unwrap();
    assert_eq!(info.network_id, NETWORK);
    assert_eq!(info.tips, 0);
    // The raw JSON has the contract's field names, with the digest in hex.
    let raw: serde_json::Value = s.get("/api/v1/info").await.json().await.unwrap();
    for key in [
        "network_id",
        "latest_milestone",
        "confirmed_milestone",
        "tips",
        "ledger_digest",
        "total_supply",
        "open_deposits",
        "oldest_milestone",
        "snapshot_milestone",
    ] {
        assert!(raw.get(key).is_some(), "info lacks {key}: {raw}");
    }
    assert_eq!(raw["ledger_digest"], "00".repeat(32));

    let r = s
        .post_json("/api/v1/payloads", &pay(&device(1), 0, 5))
        .await;
    let receipt: PayloadReceipt = r.json().await.unwrap();
    let tips: TipsView = s.get("/api/v1/tips").await.json().await.unwrap();
    assert_eq!(tips.tips, vec![receipt.transaction_id]);

    let r = s.get("/metrics").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    assert!(text.contains("tangle_tips 1\n"), "{text}");
    assert!(text.contains("tangle_api_rate_limited_total 0"), "{text}");

    let r = s.get("/").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = r.text().await.unwrap();
    assert!(html.contains("/api/v1/events/sampled") && !html.contains("<script src"));
    s.shutdown().await;
}

#[tokio::test]
async fn payload_lifecycle_over_http() {
    let s = Server::default().await;
    let payload = pay(&device(1), 0, 25);

    let r = s.post_json("/api/v1/payloads", &payload).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let receipt: PayloadReceipt = r.json().await.unwrap();
    assert_eq!(receipt.payload_id, payload.id());

    let view: PayloadView = s
        .get(&format!("/api/v1/payloads/{}", receipt.payload_id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view.state, PayloadState::Pending);
    assert_eq!(
        (view.issuer, view.seq, view.kind.as_str()),
        (payload.issuer, 0, "pay")
    );
    assert_eq!(view.transactions, vec![receipt.transaction_id]);

    // The carrying transaction, as JSON and as its canonical bytes.
    let tx_path = format!("/api/v1/transactions/{}", receipt.transaction_id);
    let tx: Transaction = s.get(&tx_path).await.json().await.unwrap();
    assert_eq!(tx.signed(), Some(&payload));
    let r = s
        .http
        .get(s.url(&tx_path))
        .header(ACCEPT, "application/octet-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[CONTENT_TYPE], "application/octet-stream");
    let bytes = r.bytes().await.unwrap();
    assert_eq!(codec::id_of_encoding(&bytes), receipt.transaction_id);
    let meta: TxMetadataView = s
        .get(&format!("{tx_path}/metadata"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(meta.transaction_id, receipt.transaction_id);

    // No milestone yet, then one confirms the payment.
    expect_error(
        s.get("/api/v1/milestones/latest").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let ms = s.node.issue_milestone();
    let latest: MilestoneView = s
        .get("/api/v1/milestones/latest")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(latest, ms);
    let first: MilestoneView = s.get("/api/v1/milestones/1").await.json().await.unwrap();
    assert_eq!(first, ms);
    let view: PayloadView = s
        .get(&format!("/api/v1/payloads/{}", receipt.payload_id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        view.state,
        PayloadState::Confirmed {
            milestone: 1,
            transaction_id: receipt.transaction_id
        }
    );

    // The payee's account, by bech32 and by did:key.
    let payee = Address([0xbb; 32]);
    for form in [payee.to_bech32(), payee.to_did_key()] {
        let acct: AccountView = s
            .get(&format!("/api/v1/accounts/{form}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!((acct.address, acct.balance, acct.next_seq), (payee, 25, 0));
        assert_eq!(acct.did, payee.to_did_key());
    }

    let ch: ChannelView = s
        .get(&format!("/api/v1/channels/{}", known_channel()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!((ch.channel_id, ch.deposit), (known_channel(), 100));
    s.shutdown().await;
}

#[tokio::test]
async fn transactions_raw_or_hex_json() {
    let s = Server::default().await;
    let bytes = raw_tx(NETWORK, 1);
    let r = s
        .http
        .post(s.url("/api/v1/transactions"))
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let done: TransactionSubmitted = r.json().await.unwrap();
    assert_eq!(done.transaction_id, codec::id_of_encoding(&bytes));

    let other = raw_tx(NETWORK, 2);
    let r = s
        .post_json(
            "/api/v1/transactions",
            &serde_json::json!({ "bytes": hex::encode(&other) }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let done: TransactionSubmitted = r.json().await.unwrap();
    assert_eq!(done.transaction_id, codec::id_of_encoding(&other));

    // The same again: the double's Conflict is a 409.
    let r = s
        .post_json(
            "/api/v1/transactions",
            &serde_json::json!({ "bytes": hex::encode(&other) }),
        )
        .await;
    expect_error(r, StatusCode::CONFLICT, "conflict").await;
    // Another network: Invalid is a 422.
    let r = s
        .post_json(
            "/api/v1/transactions",
            &serde_json::json!({ "bytes": hex::encode(raw_tx(8, 1)) }),
        )
        .await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid").await;
    // Not a transaction: Malformed is a 400; so is bad hex.
    let r = s
        .http
        .post(s.url("/api/v1/transactions"))
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(vec![0xc1, 2, 3])
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "malformed").await;
    let r = s
        .post_json(
            "/api/v1/transactions",
            &serde_json::json!({ "bytes": "zz" }),
        )
        .await;
    expect_error(r, StatusCode::BAD_REQUEST, "malformed").await;
    assert_eq!(
        s.node.state.lock().unwrap().transactions.len(),
        2,
        "refusals change nothing"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn batch_returns_one_verdict_per_payload_in_order() {
    let s = Server::default().await;
    let good = pay(&device(1), 0, 1);
    let mut forged = pay(&device(2), 0, 1);
    forged.seq = 1; // signature no longer covers it
    let batch = vec![good.clone(), good.clone(), forged, pay(&device(3), 0, 2)];
    let r = s.post_json("/api/v1/payloads/batch", &batch).await;
    assert_eq!(r.status(), StatusCode::OK);
    let verdicts: Vec<BatchVerdict> = r.json().await.unwrap();
    assert_eq!(verdicts.len(), 4);
    assert!(matches!(&verdicts[0], BatchVerdict::Ok(rc) if rc.payload_id == good.id()));
    assert!(matches!(&verdicts[1], BatchVerdict::Error(e) if e.code == "conflict"));
    assert!(matches!(&verdicts[2], BatchVerdict::Error(e) if e.code == "invalid"));
    assert!(matches!(&verdicts[3], BatchVerdict::Ok(_)));
    // The wire shape is {"ok": ...} / {"error": {"code", "message"}}.
    let raw: serde_json::Value = s
        .post_json("/api/v1/payloads/batch", &[good])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(raw[0]["error"]["code"], "conflict", "{raw}");
    assert_eq!(s.node.state.lock().unwrap().payloads.len(), 2);

    let empty: Vec<BatchVerdict> = s
        .post_json("/api/v1/payloads/batch", &Vec::<SignedPayload>::new())
        .await
        .json()
        .await
        .unwrap();
    assert!(empty.is_empty());
    s.shutdown().await;
}

#[tokio::test]
async fn batch_longer_than_the_limit_is_413() {
    let s = Server::start(ApiOptions {
        max_batch_len: 2,
        ..ApiOptions::default()
    })
    .await;
    let batch: Vec<_> = (0..3).map(|i| pay(&device(1), i, 1)).collect();
    let r = s.post_json("/api/v1/payloads/batch", &batch).await;
    expect_error(r, StatusCode::PAYLOAD_TOO_LARGE, "too_large").await;
    assert!(s.node.state.lock().unwrap().payloads.is_empty());
    s.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Errors.

#[tokio::test]
async fn malformed_requests_are_400_json() {
    let s = Server::default().await;
    let r = s
        .http
        .post(s.url("/api/v1/payloads"))
        .header(CONTENT_TYPE, "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "malformed").await;
    // Valid JSON, not a payload.
    let r = s
        .post_json("/api/v1/payloads", &serde_json::json!({"issuer": 1}))
        .await;
    expect_error(r, StatusCode::BAD_REQUEST, "malformed").await;

    for path in [
        "/api/v1/accounts/tng1notanaddress",
        "/api/v1/accounts/did:key:zabc",
        "/api/v1/accounts/tng1notanaddress/proof",
        "/api/v1/channels/nothex/proof",
        "/api/v1/transactions/abcd",
        "/api/v1/transactions/xyz/metadata",
        "/api/v1/payloads/00",
        "/api/v1/channels/nothex",
        "/api/v1/milestones/first",
        "/api/v1/milestones/-1",
    ] {
        expect_error(s.get(path).await, StatusCode::BAD_REQUEST, "malformed").await;
    }
    let r = s
        .post_json(
            "/api/v1/faucet",
            &serde_json::json!({"address": "tng1xyz", "amount": 1}),
        )
        .await;
    let msg = expect_error(r, StatusCode::BAD_REQUEST, "malformed").await;
    assert!(msg.contains("address"), "{msg}");

    let r = s
        .http
        .post(s.url("/api/v1/payloads"))
        .header(CONTENT_TYPE, "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    expect_error(
        r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    s.shutdown().await;
}

#[tokio::test]
async fn unknown_things_are_404_and_wrong_methods_405() {
    let s = Server::default().await;
    let zero = "00".repeat(32);
    for path in [
        format!("/api/v1/transactions/{zero}"),
        format!("/api/v1/transactions/{zero}/metadata"),
        format!("/api/v1/payloads/{zero}"),
        format!("/api/v1/channels/{zero}"),
        "/api/v1/milestones/9".to_owned(),
        "/api/v1/milestones/8575802650".to_owned(),
        "/api/v1/nothing".to_owned(),
    ] {
        expect_error(s.get(&path).await, StatusCode::NOT_FOUND, "not_found").await;
    }
    let r = s.http.delete(s.url("/api/v1/info")).send().await.unwrap();
    expect_error(r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    s.shutdown().await;
}

#[tokio::test]
async fn conflict_and_invalid_payloads() {
    let s = Server::default().await;
    let p = pay(&device(4), 0, 3);
    assert_eq!(
        s.post_json("/api/v1/payloads", &p).await.status(),
        StatusCode::ACCEPTED
    );
    let msg = expect_error(
        s.post_json("/api/v1/payloads", &p).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    assert!(msg.contains("already known"), "{msg}");

    let mut bad = pay(&device(4), 1, 3);
    bad.signature = pay(&device(5), 1, 3).signature;
    expect_error(
        s.post_json("/api/v1/payloads", &bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
    )
    .await;
    let r = s
        .post_json(
            "/api/v1/faucet",
            &serde_json::json!({"address": Address([1; 32]).to_bech32(), "amount": 0}),
        )
        .await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid").await;
    assert_eq!(s.node.state.lock().unwrap().payloads.len(), 1);
    s.shutdown().await;
}

#[tokio::test]
async fn oversized_bodies_are_413_json() {
    let s = Server::start(ApiOptions {
        max_body_bytes: 1024,
        ..ApiOptions::default()
    })
    .await;
    // With a Content-Length...
    let r = s
        .http
        .post(s.url("/api/v1/transactions"))
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(vec![0u8; 4096])
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::PAYLOAD_TOO_LARGE, "too_large").await;
    // ...and as a JSON batch.
    let batch: Vec<_> = (0..20).map(|i| pay(&device(1), i, 1)).collect();
    let r = s.post_json("/api/v1/payloads/batch", &batch).await;
    expect_error(r, StatusCode::PAYLOAD_TOO_LARGE, "too_large").await;
    assert!(s.node.state.lock().unwrap().payloads.is_empty());
    s.shutdown().await;
}

#[tokio::test]
async fn rate_limit_per_client_is_429() {
    // One request per second with no burst: within a handful of back-to-back requests the
    // bucket cannot refill, so some must be refused.
    let s = Server::start(ApiOptions {
        rate_limit_per_sec: 1,
        rate_limit_burst: 1,
        ..ApiOptions::default()
    })
    .await;
    let mut limited = None;
    for _ in 0..20 {
        let r = s.get("/api/v1/info").await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = limited.expect("20 back-to-back requests at 1/s were never limited");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    s.shutdown().await;
}

#[tokio::test]
async fn admin_routes_need_the_bearer_token() {
    let s = Server::default().await;
    let url = s.url("/api/v1/admin/config");
    expect_error(
        s.http.get(&url).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let r = s
        .http
        .get(&url)
        .header(AUTHORIZATION, "Basic czNjcmV0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    expect_error(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let r = s
        .http
        .get(&url)
        .header(AUTHORIZATION, "Bearer wrong")
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = s
        .http
        .get(&url)
        .header(AUTHORIZATION, "Bearer s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cfg: api::ApiConfigView = r.json().await.unwrap();
    assert!(cfg.admin_token_set && cfg.dev);
    assert_eq!(cfg.max_body_bytes, ApiOptions::default().max_body_bytes);
    let text = s
        .http
        .get(&url)
        .header(AUTHORIZATION, "Bearer s3cret")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("s3cret"), "the token is never shown");
    s.shutdown().await;

    // No token configured: the admin scope does not exist.
    let s = Server::start(ApiOptions::default()).await;
    let r = s
        .http
        .get(s.url("/api/v1/admin/config"))
        .header(AUTHORIZATION, "Bearer s3cret")
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "not_found").await;
    s.shutdown().await;
}

#[tokio::test]
async fn faucet_only_in_dev_mode() {
    let s = Server::default().await;
    let to = Address([0x42; 32]);
    let r = s
        .post_json(
            "/api/v1/faucet",
            &serde_json::json!({"address": to.to_did_key(), "amount": 1000}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let receipt: PayloadReceipt = r.json().await.unwrap();
    let view: PayloadView = s
        .get(&format!("/api/v1/payloads/{}", receipt.payload_id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view.issuer, faucet_key().address());
    s.node.issue_milestone();
    let acct: AccountView = s
        .get(&format!("/api/v1/accounts/{to}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(acct.balance, 1000);
    s.shutdown().await;

    let s = Server::start(ApiOptions::default()).await;
    let r = s
        .post_json(
            "/api/v1/faucet",
            &serde_json::json!({"address": to.to_bech32(), "amount": 1}),
        )
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "not_found").await;
    assert!(s.node.state.lock().unwrap().payloads.is_empty());
    s.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Representations, events, documentation.

#[tokio::test]
async fn msgpack_in_and_out() {
    let s = Server::default().await;
    let payload = pay(&device(6), 0, 9);
    let r = s
        .http
        .post(s.url("/api/v1/payloads"))
        .header(CONTENT_TYPE, "application/msgpack")
        .header(ACCEPT, "application/msgpack")
        .body(rmp_serde::to_vec_named(&payload).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()[CONTENT_TYPE], "application/msgpack");
    let receipt: PayloadReceipt = rmp_serde::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(receipt.payload_id, payload.id());

    // The same account in both representations decodes to the same value.
    let path = format!("/api/v1/accounts/{}", payload.issuer);
    let json: AccountView = s.get(&path).await.json().await.unwrap();
    let r = s
        .http
        .get(s.url(&path))
        .header(ACCEPT, "application/msgpack")
        .send()
        .await
        .unwrap();
    let packed: AccountView = rmp_serde::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(packed, json);
    let info: NodeInfo = rmp_serde::from_slice(
        &s.http
            .get(s.url("/api/v1/info"))
            .header(ACCEPT, "application/json;q=0.5, application/msgpack")
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(info.network_id, NETWORK);
    // Errors stay JSON even when MessagePack was asked for.
    let r = s
        .http
        .get(s.url("/api/v1/payloads/00"))
        .header(ACCEPT, "application/msgpack")
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "malformed").await;
    // A msgpack body that is not a payload is malformed.
    let r = s
        .http
        .post(s.url("/api/v1/payloads"))
        .header(CONTENT_TYPE, "application/msgpack")
        .body(vec![0x93, 1, 2, 3])
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "malformed").await;
    s.shutdown().await;
}

/// Reads SSE `data:` lines from `response` until one parses as an event `pred` accepts.
async fn next_event(
    response: &mut reqwest::Response,
    buf: &mut String,
    pred: impl Fn(&NodeEvent) -> bool,
) -> NodeEvent {
    loop {
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            for line in frame.lines() {
                if let Some(data) = line.strip_prefix("data:") {
                    if let Ok(event) = serde_json::from_str::<NodeEvent>(data.trim()) {
                        if pred(&event) {
                            return event;
                        }
                    }
                }
            }
        }
        let chunk = response.chunk().await.unwrap().expect("event stream ended");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn events_stream_delivers_node_events() {
    let s = Server::default().await;
    let mut stream = s.get("/api/v1/events").await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(stream.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));

    // The handler subscribed before answering, so everything from now on is delivered.
    let receipt: PayloadReceipt = s
        .post_json("/api/v1/payloads", &pay(&device(7), 0, 1))
        .await
        .json()
        .await
        .unwrap();
    let ms = s.node.issue_milestone();
    let mut buf = String::new();
    let guard = Duration::from_secs(120); // a hang guard, not a timing assertion
    let ev = tokio::time::timeout(guard, next_event(&mut stream, &mut buf, |_| true))
        .await
        .unwrap();
    assert_eq!(
        ev,
        NodeEvent::Transaction {
            transaction_id: receipt.transaction_id,
            payload_id: Some(receipt.payload_id),
            parents: Vec::new(),
        }
    );
    let ev = tokio::time::timeout(guard, next_event(&mut stream, &mut buf, |_| true))
        .await
        .unwrap();
    assert_eq!(ev, NodeEvent::Milestone(ms));
    let ev = tokio::time::timeout(guard, next_event(&mut stream, &mut buf, |_| true))
        .await
        .unwrap();
    assert!(
        matches!(ev, NodeEvent::Payload { payload_id, .. } if payload_id == receipt.payload_id)
    );

    // Shutting down ends the open stream, so graceful shutdown completes.
    let Server { stop, task, .. } = s;
    let _ = stop.unwrap().send(());
    tokio::time::timeout(guard, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let rest = tokio::time::timeout(guard, async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(rest.is_ok(), "the event stream ended with the server");
}

#[tokio::test]
async fn openapi_document_covers_every_route() {
    let s = Server::default().await;
    let r = s.get("/api/v1/openapi.json").await;
    assert_eq!(r.status(), StatusCode::OK);
    let doc: serde_json::Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("/", "get"),
        ("/health", "get"),
        ("/metrics", "get"),
        ("/api/v1/info", "get"),
        ("/api/v1/tips", "get"),
        ("/api/v1/transactions", "post"),
        ("/api/v1/transactions/{id}", "get"),
        ("/api/v1/transactions/{id}/metadata", "get"),
        ("/api/v1/transactions/{id}/proof", "get"),
        ("/api/v1/payloads", "post"),
        ("/api/v1/payloads/batch", "post"),
        ("/api/v1/payloads/{id}", "get"),
        ("/api/v1/payloads/{id}/proof", "get"),
        ("/api/v1/accounts/{address}", "get"),
        ("/api/v1/accounts/{address}/proof", "get"),
        ("/api/v1/channels/{id}", "get"),
        ("/api/v1/channels/{id}/proof", "get"),
        ("/api/v1/milestones/{index}", "get"),
        ("/api/v1/committee", "get"),
        ("/api/v1/events", "get"),
        ("/api/v1/events/sampled", "get"),
        ("/api/v1/faucet", "post"),
        ("/api/v1/admin/config", "get"),
        // Mounted by `app::run` (the snapshot directory's admin route).
        ("/api/v1/admin/snapshot", "post"),
        // Mounted by `app::run` (committee rotation, `node::rotation`).
        ("/api/v1/admin/committee", "post"),
        ("/api/v1/admin/committee", "delete"),
    ];
    for (path, method) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing"
        );
    }
    let distinct: std::collections::BTreeSet<&str> = expected.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        paths.len(),
        distinct.len(),
        "{:?}",
        paths.keys().collect::<Vec<_>>()
    );
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "NodeInfo",
        "PayloadView",
        "SignedPayload",
        "Transaction",
        "ErrorBody",
        "BatchVerdict",
        "NodeEvent",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    // Every route's answers reference schemas that exist.
    let text = doc.to_string();
    for reference in text.split("\"#/components/schemas/").skip(1) {
        let name = &reference[..reference.find('"').unwrap()];
        assert!(schemas.contains_key(name), "dangling $ref {name}");
    }

    // Swagger UI is served from assets compiled into the binary.
    let r = s.get("/swagger-ui/").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("swagger"));
    let r = s.get("/swagger-ui/swagger-ui.css").await;
    assert_eq!(r.status(), StatusCode::OK);
    s.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Formats and limits: SSE ids and resumption, metrics formats, 408/414/431 as JSON,
// connection limit and header timeout.

/// Hang guard for reads that wait for something the server is bound to do; never a timing
/// assertion.
const GUARD: Duration = Duration::from_secs(30);

/// One SSE frame.
#[derive(Debug, Default)]
struct Frame {
    id: Option<u64>,
    event: Option<String>,
    data: String,
}

/// Reads the next frame that has data (skipping keep-alive comments).
async fn next_frame(response: &mut reqwest::Response, buf: &mut String) -> Frame {
    let read = async {
        loop {
            while let Some(end) = buf.find("\n\n") {
                let raw: String = buf.drain(..end + 2).collect();
                let mut frame = Frame::default();
                for line in raw.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        frame.id = Some(v.trim().parse().expect("numeric id"));
                    } else if let Some(v) = line.strip_prefix("event:") {
                        frame.event = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        frame.data.push_str(v.trim());
                    }
                }
                if !frame.data.is_empty() {
                    return frame;
                }
            }
            let chunk = response.chunk().await.unwrap().expect("event stream ended");
            buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(GUARD, read).await.expect("hang guard")
}

/// A transaction event with a recognisable id.
fn tx_event(n: u8) -> NodeEvent {
    NodeEvent::Transaction {
        transaction_id: TxId([n; 32]),
        payload_id: None,
        parents: Vec::new(),
    }
}

fn event_of(frame: &Frame) -> NodeEvent {
    assert_eq!(frame.event, None, "{frame:?}");
    serde_json::from_str(&frame.data).unwrap()
}

async fn events_from(s: &Server, last_event_id: Option<u64>) -> reqwest::Response {
    let mut request = s.http.get(s.url("/api/v1/events"));
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r
}

#[tokio::test]
async fn events_carry_increasing_ids_and_resume_from_last_event_id() {
    let s = Server::default().await;
    let mut stream = events_from(&s, None).await;
    let mut buf = String::new();
    for n in 0..3 {
        s.node.events.send(tx_event(n)).unwrap();
    }
    let mut ids = Vec::new();
    for n in 0..3 {
        let f = next_frame(&mut stream, &mut buf).await;
        assert_eq!(event_of(&f), tx_event(n));
        ids.push(f.id.expect("every event has an id"));
    }
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    drop(stream);

    // Two more while nobody listens; resuming after the second event replays 2, 3 and 4.
    s.node.events.send(tx_event(3)).unwrap();
    s.node.events.send(tx_event(4)).unwrap();
    let mut stream = events_from(&s, Some(ids[1])).await;
    let mut buf = String::new();
    for n in 2..5u8 {
        let f = next_frame(&mut stream, &mut buf).await;
        assert_eq!(event_of(&f), tx_event(n));
        assert_eq!(f.id, Some(ids[0] + u64::from(n)));
    }
    drop(stream);

    // A Last-Event-ID that is not a number is refused; an empty one means "from now".
    let r = s
        .http
        .get(s.url("/api/v1/events"))
        .header("Last-Event-ID", "abc")
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "malformed").await;
    s.shutdown().await;
}

#[tokio::test]
async fn resuming_after_the_ring_moved_on_gets_a_lagged_event_first() {
    let s = Server::start(ApiOptions {
        event_replay: 4,
        ..ApiOptions::default()
    })
    .await;
    let mut stream = events_from(&s, None).await;
    let mut buf = String::new();
    s.node.events.send(tx_event(0)).unwrap();
    let first = next_frame(&mut stream, &mut buf).await.id.unwrap();
    drop(stream);

    // An observer reads until the tenth event, so all ten are in the ring (which keeps 4).
    let mut observer = events_from(&s, None).await;
    let mut obuf = String::new();
    for n in 1..=10 {
        s.node.events.send(tx_event(n)).unwrap();
    }
    loop {
        let f = next_frame(&mut observer, &mut obuf).await;
        if f.event.is_none() && event_of(&f) == tx_event(10) {
            assert_eq!(f.id, Some(first + 10));
            break;
        }
    }

    let mut stream = events_from(&s, Some(first)).await;
    let mut buf = String::new();
    let f = next_frame(&mut stream, &mut buf).await;
    assert_eq!(f.event.as_deref(), Some("lagged"));
    let lagged: api::LaggedEvent = serde_json::from_str(&f.data).unwrap();
    assert_eq!(
        lagged,
        api::LaggedEvent {
            missed: Some(6),
            first_id: Some(first + 1),
            last_id: Some(first + 6),
            reason: "evicted".into(),
        }
    );
    assert_eq!(
        f.id,
        Some(first + 6),
        "resuming after the notice skips the lost ids"
    );
    for n in 7..=10u8 {
        let f = next_frame(&mut stream, &mut buf).await;
        assert_eq!(event_of(&f), tx_event(n));
        assert_eq!(f.id, Some(first + u64::from(n)));
    }
    s.shutdown().await;
}

/// The test double's broadcast channel holds 64 events; 100 sent without yielding (this test
/// runs on one thread) overflow the API's subscription by 36, which every client learns.
#[tokio::test]
async fn events_the_api_missed_are_announced_as_dropped() {
    let s = Server::default().await;
    let mut stream = events_from(&s, None).await;
    let mut buf = String::new();
    for n in 0..100 {
        s.node.events.send(tx_event(n)).unwrap();
    }
    let f = next_frame(&mut stream, &mut buf).await;
    assert_eq!(f.event.as_deref(), Some("lagged"), "{f:?}");
    let lagged: api::LaggedEvent = serde_json::from_str(&f.data).unwrap();
    assert_eq!(lagged.missed, Some(36));
    assert_eq!(lagged.reason, "dropped");
    let first = lagged.first_id.unwrap();
    assert_eq!(lagged.last_id, Some(first + 35));
    for n in 36..100u8 {
        let f = next_frame(&mut stream, &mut buf).await;
        assert_eq!(event_of(&f), tx_event(n));
        assert_eq!(f.id, Some(first + u64::from(n)));
    }
    let text = s.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains("\ntangle_api_events_dropped_total 36\n"),
        "{text}"
    );
    assert!(text.contains("\ntangle_api_sse_clients 1\n"), "{text}");
    s.shutdown().await;
}

/// Sums the `summary` frames of a sampled stream and collects its other events, until
/// `done` says the sums are complete.
async fn read_sampled(
    stream: &mut reqwest::Response,
    buf: &mut String,
    done: impl Fn(&api::SampledSummary) -> bool,
) -> (api::SampledSummary, Vec<NodeEvent>) {
    let mut total = api::SampledSummary::default();
    let mut events = Vec::new();
    loop {
        let f = next_frame(stream, buf).await;
        assert_eq!(f.event, None, "no lagged notice expected: {f:?}");
        let v: serde_json::Value = serde_json::from_str(&f.data).unwrap();
        if v["type"] == "summary" {
            let s: api::SampledSummary = serde_json::from_value(v).unwrap();
            assert_eq!(s.kind, "summary");
            total.transactions += s.transactions;
            total.transactions_sent += s.transactions_sent;
            total.payloads_confirmed += s.payloads_confirmed;
            total.payloads_conflicting += s.payloads_conflicting;
            total.payloads_sent += s.payloads_sent;
            total.milestones += s.milestones;
            total.confirmed_transactions += s.confirmed_transactions;
            total.missed += s.missed;
            if done(&total) {
                return (total, events);
            }
        } else {
            events.push(serde_json::from_value(v).unwrap());
        }
    }
}

/// Below its allowance the sampled stream carries every event, as `/api/v1/events` does,
/// and its summaries count them.
#[tokio::test]
async fn the_sampled_stream_carries_a_slow_node_whole_with_summaries() {
    let s = Server::default().await;
    let r = s.get("/api/v1/events/sampled").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut stream = r;
    let receipt: PayloadReceipt = s
        .post_json("/api/v1/payloads", &pay(&device(7), 0, 1))
        .await
        .json()
        .await
        .unwrap();
    let ms = s.node.issue_milestone();
    let mut buf = String::new();
    let (total, events) = read_sampled(&mut stream, &mut buf, |t| {
        t.transactions >= 1 && t.milestones >= 1 && t.payloads_confirmed >= 1
    })
    .await;
    assert_eq!(
        (total.transactions, total.transactions_sent),
        (1, 1),
        "{total:?}"
    );
    assert_eq!((total.payloads_confirmed, total.payloads_sent), (1, 1));
    assert_eq!(total.missed, 0);
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(
        matches!(&events[0], NodeEvent::Transaction { transaction_id, .. }
        if *transaction_id == receipt.transaction_id)
    );
    assert_eq!(events[1], NodeEvent::Milestone(ms));
    assert!(matches!(&events[2], NodeEvent::Payload { payload_id, .. }
        if *payload_id == receipt.payload_id));
    s.shutdown().await;
}

/// Thousands of transactions at once: the sampled stream sends at most its allowance (a
/// burst of 50 and 50 a second after), and its summaries still count every one.
#[tokio::test]
async fn the_sampled_stream_stays_within_its_allowance_and_counts_everything() {
    let s = Server::default().await;
    let started = std::time::Instant::now();
    let mut stream = s.get("/api/v1/events/sampled").await;
    assert_eq!(stream.status(), StatusCode::OK);
    let sent = 3000u64;
    for n in 0..sent {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&n.to_le_bytes());
        s.node
            .events
            .send(NodeEvent::Transaction {
                transaction_id: TxId(id),
                payload_id: None,
                parents: Vec::new(),
            })
            .unwrap();
        if n % 32 == 31 {
            // Let the stream's pump read (the test double's channel holds 64; whatever it
            // still misses is counted as missed).
            tokio::task::yield_now().await;
        }
    }
    let mut buf = String::new();
    let (total, events) =
        read_sampled(&mut stream, &mut buf, |t| t.transactions + t.missed >= sent).await;
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(total.transactions + total.missed, sent, "{total:?}");
    assert_eq!(events.len() as u64, total.transactions_sent);
    let allowance = 50.0 + 50.0 * elapsed;
    assert!(
        (total.transactions_sent as f64) <= allowance,
        "{} sent in {elapsed:.1} s",
        total.transactions_sent
    );
    assert!(total.transactions_sent >= 1);
    assert!(total.transactions_sent < total.transactions, "{total:?}");
    s.shutdown().await;
}

#[tokio::test]
async fn event_streams_beyond_the_cap_are_503_json() {
    let s = Server::start(ApiOptions {
        max_event_streams: 1,
        ..ApiOptions::default()
    })
    .await;
    let open = events_from(&s, None).await;
    let r = s.get("/api/v1/events").await;
    assert_eq!(r.headers()["retry-after"], "5");
    expect_error(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    drop(open);
    s.shutdown().await;
}

#[tokio::test]
async fn metrics_are_prometheus_text_or_openmetrics_on_request() {
    let s = Server::default().await;
    let r = s.get("/metrics").await;
    assert_eq!(
        r.headers()[CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    assert!(!text.contains("# EOF"), "{text}");
    assert!(text.contains(
        "# TYPE tangle_api_rate_limited_total counter\ntangle_api_rate_limited_total 0\n"
    ));
    assert!(text.contains("# TYPE tangle_api_sse_clients gauge\n"));

    let r = s
        .http
        .get(s.url("/metrics"))
        .header(
            ACCEPT,
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert!(r.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text; version=1.0.0"));
    let om = r.text().await.unwrap();
    assert_eq!(om.matches("# EOF").count(), 1, "{om}");
    assert!(om.ends_with("\n# EOF\n"));
    assert!(om.contains("# TYPE tangle_api_rate_limited counter\n"));
    assert!(
        om.contains("tangle_tips 0\n"),
        "the node's families come first: {om}"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn long_uris_and_large_headers_are_414_and_431_json() {
    let s = Server::default().await;
    let long = format!("/api/v1/info?pad={}", "a".repeat(9000));
    expect_error(s.get(&long).await, StatusCode::URI_TOO_LONG, "uri_too_long").await;

    let mut request = s.http.get(s.url("/api/v1/info"));
    for i in 0..101 {
        request = request.header(format!("x-pad-{i}"), "1");
    }
    let r = request.send().await.unwrap();
    expect_error(
        r,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
    )
    .await;
    let r = s
        .http
        .get(s.url("/api/v1/info"))
        .header("x-pad", "b".repeat(40 * 1024))
        .send()
        .await
        .unwrap();
    expect_error(
        r,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
    )
    .await;
    // A request just under the limits is served.
    let ok = format!("/api/v1/info?pad={}", "a".repeat(4000));
    assert_eq!(s.get(&ok).await.status(), StatusCode::OK);
    s.shutdown().await;
}

// Raw HTTP/1.1 over TCP, for what reqwest hides (keep-alive, partial requests).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one response (head and a `Content-Length` body) from `conn`: status and body.
async fn read_response(conn: &mut TcpStream) -> (u16, HashMap<String, String>, String) {
    let read = async {
        let mut data = Vec::new();
        let mut byte = [0u8; 1];
        while !data.ends_with(b"\r\n\r\n") {
            let n = conn.read(&mut byte).await.unwrap();
            assert_eq!(n, 1, "connection closed inside a response head: {data:?}");
            data.push(byte[0]);
        }
        let head = String::from_utf8(data).unwrap();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers["content-length"].parse().unwrap();
        let mut body = vec![0; len];
        conn.read_exact(&mut body).await.unwrap();
        (status, headers, String::from_utf8(body).unwrap())
    };
    tokio::time::timeout(GUARD, read).await.expect("hang guard")
}

async fn get_on(conn: &mut TcpStream, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let (status, _, body) = read_response(conn).await;
    (status, body)
}

/// Waits until the server closes `conn` (EOF), and returns what it sent before.
async fn read_until_closed(conn: &mut TcpStream) -> Vec<u8> {
    let mut data = Vec::new();
    tokio::time::timeout(GUARD, conn.read_to_end(&mut data))
        .await
        .expect("hang guard")
        .unwrap();
    data
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from {text}"))
}

/// With two slots, two open keep-alive connections take both: a third connection is not
/// accepted (it waits in the listen backlog) until one of them closes, and then is served.
/// This test runs on one thread, so the accept loop has recorded that it found every slot
/// taken before the second connection's first request is answered.
#[tokio::test]
async fn connections_beyond_the_limit_wait_until_one_closes() {
    let s = Server::start(ApiOptions {
        max_connections: 2,
        header_timeout: Duration::from_secs(600),
        ..ApiOptions::default()
    })
    .await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut a = TcpStream::connect(&addr).await.unwrap();
    assert_eq!(get_on(&mut a, "/health").await.0, 200);
    let mut b = TcpStream::connect(&addr).await.unwrap();
    assert_eq!(get_on(&mut b, "/health").await.0, 200);
    let mut c = TcpStream::connect(&addr).await.unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();

    let (status, text) = get_on(&mut a, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(metric(&text, "tangle_api_connections"), 2);
    assert_eq!(metric(&text, "tangle_api_connections_max"), 2);
    assert_eq!(metric(&text, "tangle_api_connections_accepted_total"), 2);
    assert!(metric(&text, "tangle_api_connection_limit_waits_total") >= 1);

    drop(a);
    let (status, _, text) = read_response(&mut c).await;
    assert_eq!(status, 200);
    assert_eq!(metric(&text, "tangle_api_connections_accepted_total"), 3);
    assert_eq!(get_on(&mut b, "/health").await.0, 200);
    drop((b, c));
    s.shutdown().await;
}

#[tokio::test]
async fn idle_and_half_sent_connections_are_closed_by_the_header_timeout() {
    let s = Server::start(ApiOptions {
        header_timeout: Duration::from_millis(200),
        ..ApiOptions::default()
    })
    .await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    // Never sends anything.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    // Sends half a request head.
    let mut half = TcpStream::connect(&addr).await.unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    // Keep-alive after one request, then idle.
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    assert_eq!(get_on(&mut kept, "/health").await.0, 200);

    assert!(read_until_closed(&mut idle).await.is_empty());
    assert!(read_until_closed(&mut half).await.is_empty());
    assert!(read_until_closed(&mut kept).await.is_empty());
    // The server is fine.
    assert_eq!(s.get("/health").await.status(), StatusCode::OK);
    s.shutdown().await;
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_408_json() {
    let s = Server::start(ApiOptions {
        body_timeout: Duration::from_millis(200),
        ..ApiOptions::default()
    })
    .await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    conn.write_all(
        b"POST /api/v1/payloads HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"issuer\":",
    )
    .await
    .unwrap();
    let (status, headers, body) = read_response(&mut conn).await;
    assert_eq!(status, 408);
    assert!(headers["content-type"].starts_with("application/json"));
    let body: ErrorBody = serde_json::from_str(&body).unwrap();
    assert_eq!(body.code, "timeout", "{body:?}");
    s.shutdown().await;
}

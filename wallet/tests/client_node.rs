//! The node client against a real in-process dev node: faucet, payments with confirmation,
//! sequence resync, error mapping, and the 50 kWh EV charging session through a channel.

#![cfg(feature = "client")]

mod common;

use std::time::Duration;

use common::TestNode;
use dag_core::{Body, ChannelId, Keypair, PayloadId, SignedPayload};
use wallet::client::{ClientError, NodeClient, PayloadStatus, SeqSync};
use wallet::{
    FileVoucherStore, KdfParams, Keystore, KeystoreOptions, Mnemonic, PayeeChannel, PayerChannel,
};

/// A hang guard for waits on confirmation (100 ms milestones), not a timing assertion.
const WAIT: Duration = Duration::from_secs(180);

fn keystore(dir: &std::path::Path, name: &str, network_id: u64) -> Keystore {
    Keystore::create(
        dir.join(name),
        "pw",
        &Mnemonic::generate(),
        network_id,
        KeystoreOptions {
            kdf: KdfParams::insecure_for_tests(),
            ..KeystoreOptions::default()
        },
    )
    .unwrap()
}

fn confirmed(s: &PayloadStatus) -> bool {
    matches!(s, PayloadStatus::Confirmed { .. })
}

#[test]
fn faucet_pay_wait_resync_and_errors() {
    let node = TestNode::start(100);
    let c = NodeClient::new(&node.url).unwrap();
    let net = c.info().unwrap().network_id;
    assert_eq!(net, node.network_id);
    let dir = tempfile::tempdir().unwrap();
    let mut ks = keystore(dir.path(), "ev.json", net);
    let ev = ks.device(0).address();
    let charger = Keypair::from_seed(&[0xc4; 32]).address();

    // Faucet -> balance.
    let r = c.faucet(&ev, 10_000).unwrap();
    assert!(confirmed(&c.wait_final(&r.payload_id, WAIT).unwrap()));
    let a = c.account(&ev).unwrap();
    assert_eq!((a.address, a.balance, a.next_seq), (ev, 10_000, 0));

    // A payment, submitted and waited for.
    assert_eq!(c.sync_seq(&mut ks, 0, &[]).unwrap(), SeqSync::InSync);
    let pay = ks
        .sign(
            0,
            Body::Pay {
                to: charger,
                amount: 1_000,
                memo: b"kWh".to_vec(),
            },
        )
        .unwrap();
    let (receipt, status) = c.submit_and_wait(&pay, WAIT).unwrap();
    assert_eq!(receipt.payload_id, pay.id());
    assert!(confirmed(&status), "{status:?}");
    assert_eq!(c.account(&ev).unwrap().balance, 9_000);
    assert_eq!(c.account(&ev).unwrap().next_seq, 1);
    assert_eq!(c.account(&charger).unwrap().balance, 1_000);
    let info = c.payload(&pay.id()).unwrap();
    assert_eq!((info.issuer, info.seq, info.kind.as_str()), (ev, 0, "pay"));
    // The payload itself can be fetched back from its transaction.
    assert_eq!(c.signed_payload(&pay.id()).unwrap(), pay);
    // Submitting it again is not an error: the node knows it, and it stays confirmed.
    assert_eq!(c.submit(&pay).unwrap().payload_id, pay.id());

    // Overspending: confirmed but conflicting, and it does not use up the sequence number,
    // so the keystore rewinds to fill the gap.
    let over = ks
        .sign(
            0,
            Body::Pay {
                to: charger,
                amount: 1_000_000,
                memo: vec![],
            },
        )
        .unwrap();
    let (_, status) = c.submit_and_wait(&over, WAIT).unwrap();
    assert!(
        matches!(status, PayloadStatus::Conflicting { ref reason, .. } if !reason.is_empty()),
        "{status:?}"
    );
    assert_eq!(c.account(&ev).unwrap().balance, 9_000);
    // The conflicting payment used seq 1 (conflicts are final), so the node's next seq is
    // the wallet's.
    let issued = [(0, pay.id()), (1, over.id())];
    assert_eq!(c.sync_seq(&mut ks, 0, &issued).unwrap(), SeqSync::InSync);
    assert_eq!(ks.device(0).next_seq(), 2);

    // Error mapping of the node's {code, message}.
    let unknown = PayloadId([7; 32]);
    assert!(c.payload(&unknown).unwrap_err().is_not_found());
    assert!(matches!(
        c.channel(&ChannelId([7; 32])),
        Err(ClientError::NotFound(_))
    ));
    let wrong_net = SignedPayload::sign(
        &Keypair::from_seed(&[9; 32]),
        net ^ 1,
        0,
        Body::Refund {
            channel: ChannelId([1; 32]),
        },
    );
    assert!(matches!(c.submit(&wrong_net), Err(ClientError::Invalid(_))));
}

#[test]
fn pending_payloads_keep_the_local_sequence() {
    // Milestones effectively paused: whatever is submitted stays pending.
    let node = TestNode::start(3_600_000);
    let c = NodeClient::new(&node.url).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut ks = keystore(dir.path(), "dev.json", node.network_id);
    let other = Keypair::from_seed(&[3; 32]).address();
    let p = ks
        .sign(
            0,
            Body::Pay {
                to: other,
                amount: 1,
                memo: vec![],
            },
        )
        .unwrap();
    c.submit(&p).unwrap();
    assert_eq!(c.payload(&p.id()).unwrap().status, PayloadStatus::Pending);
    assert!(matches!(
        c.wait_final(&p.id(), Duration::from_millis(200)),
        Err(ClientError::WaitTimeout { .. })
    ));
    // The node's confirmed next_seq is 0, the keystore's 1: the pending payload keeps it.
    assert_eq!(
        c.sync_seq(&mut ks, 0, &[(0, p.id())]).unwrap(),
        SeqSync::InFlight { local: 1, node: 0 }
    );
    assert_eq!(ks.device(0).next_seq(), 1);
    // A payload the node never saw is void: rewind.
    let lost = ks.sign(
        0,
        Body::Refund {
            channel: ChannelId([2; 32]),
        },
    );
    let lost = lost.unwrap();
    assert_eq!(
        c.sync_seq(
            &mut Keystore::open(ks.path(), "pw").unwrap(),
            0,
            &[(1, lost.id())]
        )
        .unwrap(),
        SeqSync::Rewound { from: 2, to: 0 }
    );
}

#[test]
fn fifty_kwh_session_through_the_node() {
    const FUNDS: u64 = 10_000;
    const PRICE: u64 = 25;
    const KWH: u64 = 50;
    const DEPOSIT: u64 = 1_500;

    let node = TestNode::start(100);
    let c = NodeClient::new(&node.url).unwrap();
    let net = node.network_id;
    let dir = tempfile::tempdir().unwrap();
    let mut ev_ks = keystore(dir.path(), "ev.json", net);
    let mut charger_ks = keystore(dir.path(), "charger.json", net);
    let ev_addr = ev_ks.device(0).address();
    let charger_addr = charger_ks.device(0).address();

    let r = c.faucet(&ev_addr, FUNDS).unwrap();
    assert!(confirmed(&c.wait_final(&r.payload_id, WAIT).unwrap()));

    // Ledger payload 1: the EV opens the channel.
    c.sync_seq(&mut ev_ks, 0, &[]).unwrap();
    let mut ev = ev_ks.device(0);
    let expires_at = c.info().unwrap().confirmed_milestone + 1_000;
    let (mut payer, open) = PayerChannel::open(&mut ev, charger_addr, DEPOSIT, expires_at).unwrap();
    ev_ks.set_next_seq(0, ev.next_seq()).unwrap();
    let (_, s) = c.submit_and_wait(&open, WAIT).unwrap();
    assert!(confirmed(&s), "{s:?}");
    assert_eq!(c.account(&ev_addr).unwrap().balance, FUNDS - DEPOSIT);

    // The charger learns the terms from the ledger, by channel id alone.
    let ch = c.channel(&payer.id()).unwrap();
    assert_eq!(ch.terms(), *payer.terms());
    assert!(!ch.closed);
    let mut payee = PayeeChannel::new(
        net,
        ch.terms(),
        FileVoucherStore::open(dir.path().join("vouchers")).unwrap(),
    )
    .unwrap();

    // 50 vouchers, off the ledger.
    for _ in 0..KWH {
        let v = payer.voucher(PRICE).unwrap();
        assert_eq!(payee.accept_bytes(&v.to_bytes()).unwrap(), PRICE);
    }
    assert_eq!(c.account(&charger_addr).unwrap().balance, 0);

    // Ledger payload 2: the charger claims.
    c.sync_seq(&mut charger_ks, 0, &[]).unwrap();
    let mut charger = charger_ks.device(0);
    let claim = payee
        .claim(&mut charger, c.info().unwrap().confirmed_milestone)
        .unwrap();
    charger_ks.set_next_seq(0, charger.next_seq()).unwrap();
    let (_, s) = c.submit_and_wait(&claim, WAIT).unwrap();
    assert!(confirmed(&s), "{s:?}");

    let paid = KWH * PRICE;
    let ev_acct = c.account(&ev_addr).unwrap();
    let charger_acct = c.account(&charger_addr).unwrap();
    assert_eq!(ev_acct.balance, FUNDS - paid);
    assert_eq!(charger_acct.balance, paid);
    // Exactly two ledger payloads were issued for the session.
    assert_eq!(ev_acct.next_seq + charger_acct.next_seq, 2);
    let ch = c.channel(&payer.id()).unwrap();
    assert!(ch.closed);
    assert_eq!(ch.claimed, Some(paid));
}

#[test]
fn event_stream_delivers_a_final_status_and_resumes_after_an_id() {
    let node = TestNode::start(100);
    let c = NodeClient::new(&node.url).unwrap();
    let events = c.events(None, Duration::from_secs(30)).unwrap();
    let to = Keypair::from_seed(&[0xe1; 32]).address();
    let r = c.faucet(&to, 7).unwrap();
    let want = r.payload_id.to_hex();
    let mut seen = None;
    // Bounded by the stream's read timeout (milestones every 100 ms keep it busy), and by a
    // count as a guard.
    for ev in events.take(100_000) {
        let ev = ev.unwrap();
        assert_eq!(ev.event, "message");
        let data: serde_json::Value = serde_json::from_str(&ev.data).unwrap();
        if data["type"] == "payload" && data["payload_id"] == want.as_str() {
            assert_eq!(data["status"], "confirmed");
            seen = ev.id;
            break;
        }
    }
    let id = seen.expect("the payload's final status came with an id");
    let mut again = c.events(Some(id - 1), Duration::from_secs(30)).unwrap();
    assert_eq!(again.next().unwrap().unwrap().id, Some(id));
}

//! An EV pays a charger per kWh for a 50 kWh session through a payment channel, checked
//! against dag-core's white-flag `Ledger`: 50 vouchers off the ledger, two ledger payloads
//! (Open, Claim), exact balances afterwards.

use dag_core::{
    Allocation, Body, ConflictReason, Genesis, Keypair, Ledger, PayloadOutcome, SignedPayload, TxId,
};
use wallet::{
    ClaimError, Device, FileVoucherStore, KdfParams, Keystore, KeystoreOptions, Mnemonic,
    PayeeChannel, PayerChannel, SeqResync, Voucher,
};

const EV_FUNDS: u64 = 10_000;
const PRICE_PER_KWH: u64 = 25;
const SESSION_KWH: u64 = 50;
const DEPOSIT: u64 = 1_500;
const EXPIRES_AT: u32 = 10;

struct World {
    ledger: Ledger,
    next_milestone: u32,
}

impl World {
    /// Confirms `payloads` in the next milestone and returns their outcomes.
    fn confirm(&mut self, payloads: &[&SignedPayload]) -> Vec<PayloadOutcome> {
        let index = self.next_milestone;
        self.next_milestone += 1;
        let out = self
            .ledger
            .apply_milestone(index, payloads.iter().map(|p| (TxId(p.id().0), *p)))
            .expect("milestones applied in order");
        self.ledger
            .check_invariants()
            .expect("ledger invariants hold");
        out.outcomes.into_iter().map(|(_, o)| o).collect()
    }

    /// Advances to milestone `index` with empty milestones.
    fn skip_to(&mut self, index: u32) {
        while self.next_milestone <= index {
            self.confirm(&[]);
        }
    }
}

/// The test network: the EV is the only funded account.
fn genesis(ev: &dag_core::Address) -> Genesis {
    Genesis {
        network_name: "ev-charging-test".into(),
        timestamp: 1_700_000_000_000,
        pow_difficulty: 0,
        timestamp_window_ms: 600_000,
        committee: vec![Keypair::from_seed(&[0xc0; 32]).address()],
        threshold: 1,
        allocations: vec![Allocation {
            address: *ev,
            amount: EV_FUNDS,
        }],
    }
}

fn setup(ev: &Device) -> World {
    let genesis = genesis(&ev.address());
    assert_eq!(genesis.network_id(), ev.network_id());
    World {
        ledger: Ledger::from_genesis(&genesis).unwrap(),
        next_milestone: 1,
    }
}

/// The EV's key comes from a keystore; returns its device 0 on the right network.
fn ev_device(dir: &std::path::Path) -> (Keystore, Device) {
    let mnemonic = Mnemonic::from_entropy(&[0xe7; 32]).unwrap();
    // The genesis funds the EV, so the network id depends on the EV's address.
    let probe = mnemonic
        .to_seed("")
        .device_keypair(wallet::DEFAULT_COIN_TYPE, 0, 0);
    let network_id = genesis(&probe.address()).network_id();
    let ks = Keystore::create(
        dir.join("ev.json"),
        "ev-password",
        &mnemonic,
        network_id,
        KeystoreOptions {
            kdf: KdfParams::insecure_for_tests(),
            ..KeystoreOptions::default()
        },
    )
    .unwrap();
    let dev = ks.device(0);
    (ks, dev)
}

#[test]
fn fifty_kwh_session_costs_two_ledger_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let (mut ev_keys, mut ev) = ev_device(dir.path());
    let network_id = ev.network_id();
    let mut charger = Device::new(Keypair::from_seed(&[0xc4; 32]), network_id, 0);
    let mut world = setup(&ev);
    let mut ledger_payloads = 0;

    // 1. The EV opens a channel (ledger payload 1) and records its new sequence number.
    let (mut payer, open) =
        PayerChannel::open(&mut ev, charger.address(), DEPOSIT, EXPIRES_AT).unwrap();
    ev_keys.set_next_seq(0, ev.next_seq()).unwrap();
    open.verify(network_id).unwrap();
    assert_eq!(world.confirm(&[&open]), [PayloadOutcome::Applied]);
    ledger_payloads += 1;
    assert_eq!(world.ledger.balance(&ev.address()), EV_FUNDS - DEPOSIT);

    // 2. The charger sees the confirmed Open and sets up its end with a file store.
    let store_dir = dir.path().join("charger-vouchers");
    let mut payee = PayeeChannel::from_open(
        network_id,
        &open,
        charger.address(),
        FileVoucherStore::open(&store_dir).unwrap(),
    )
    .unwrap();

    // 3. 50 kWh, one voucher each, off the ledger. Halfway the charger restarts and resumes
    //    from its persisted best voucher.
    let mut delivered_kwh = 0;
    let mut stale: Option<Voucher> = None;
    for kwh in 1..=SESSION_KWH {
        let v = payer.voucher(PRICE_PER_KWH).unwrap();
        let bytes = v.to_bytes();
        let gained = payee.accept_bytes(&bytes).unwrap();
        assert_eq!(gained, PRICE_PER_KWH);
        delivered_kwh += 1; // the charger delivers the next kWh only now
        if kwh == 10 {
            stale = Some(v);
        }
        if kwh == 25 {
            drop(payee);
            payee = PayeeChannel::from_open(
                network_id,
                &open,
                charger.address(),
                FileVoucherStore::open(&store_dir).unwrap(),
            )
            .unwrap();
            assert_eq!(payee.earned(), 25 * PRICE_PER_KWH);
        }
    }
    assert_eq!(delivered_kwh, SESSION_KWH);
    assert_eq!(payee.earned(), SESSION_KWH * PRICE_PER_KWH);
    // A replayed older voucher changes nothing.
    assert!(payee.accept(&stale.unwrap()).is_err());
    // Nothing of this touched the ledger.
    assert_eq!(world.ledger.balance(&charger.address()), 0);

    // 4. The charger claims the best voucher before expiry (ledger payload 2).
    let claim = payee
        .claim(&mut charger, world.ledger.confirmed_index())
        .unwrap();
    assert_eq!(world.confirm(&[&claim]), [PayloadOutcome::Applied]);
    ledger_payloads += 1;

    let paid = SESSION_KWH * PRICE_PER_KWH;
    assert_eq!(ledger_payloads, 2);
    assert_eq!(world.ledger.balance(&charger.address()), paid);
    assert_eq!(world.ledger.balance(&ev.address()), EV_FUNDS - paid);
    assert_eq!(world.ledger.supply(), EV_FUNDS);
    let ch = world.ledger.channel(&payer.id()).unwrap();
    assert!(ch.closed);
    assert_eq!(ch.claimed, paid);

    // Local sequence tracking agrees with the ledger, also after reopening the keystore.
    let reopened = Keystore::open(dir.path().join("ev.json"), "ev-password").unwrap();
    let mut ev_again = reopened.device(0);
    assert_eq!(ev_again.address(), ev.address());
    assert_eq!(
        ev_again.resync(world.ledger.next_seq(&ev.address())),
        SeqResync::InSync
    );
    assert_eq!(
        charger.resync(world.ledger.next_seq(&charger.address())),
        SeqResync::InSync
    );

    // A replayed claim is a conflict and moves nothing.
    assert!(matches!(
        world.confirm(&[&claim])[..],
        [PayloadOutcome::Conflicting(ConflictReason::SeqAlreadyUsed)]
    ));
    // A fresh claim of the closed channel too.
    let again = payee
        .claim(&mut charger, world.ledger.confirmed_index())
        .unwrap();
    assert!(matches!(
        world.confirm(&[&again])[..],
        [PayloadOutcome::Conflicting(ConflictReason::ChannelClosed)]
    ));
    assert_eq!(world.ledger.balance(&charger.address()), paid);
}

#[test]
fn unclaimed_channel_is_refunded_after_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let (_keys, mut ev) = ev_device(dir.path());
    let network_id = ev.network_id();
    let mut charger = Device::new(Keypair::from_seed(&[0xc4; 32]), network_id, 0);
    let mut world = setup(&ev);

    let (mut payer, open) =
        PayerChannel::open(&mut ev, charger.address(), DEPOSIT, EXPIRES_AT).unwrap();
    assert_eq!(world.confirm(&[&open]), [PayloadOutcome::Applied]);
    let mut payee = PayeeChannel::from_open(
        network_id,
        &open,
        charger.address(),
        wallet::MemVoucherStore::new(),
    )
    .unwrap();
    for _ in 0..3 {
        payee
            .accept(&payer.voucher(PRICE_PER_KWH).unwrap())
            .unwrap();
    }

    // Too early: the wallet refuses, and the ledger would too.
    assert!(payer
        .refund(&mut ev, world.ledger.confirmed_index())
        .is_err());
    let early = Device::new(ev.keypair().clone(), network_id, ev.next_seq())
        .refund(payer.id())
        .unwrap();
    assert!(matches!(
        world.confirm(&[&early])[..],
        [PayloadOutcome::Conflicting(
            ConflictReason::ChannelNotExpired
        )]
    ));
    // A conflicting payload uses its sequence number: the device follows the ledger.
    ev.resync(world.ledger.next_seq(&ev.address()));

    // The charger slept through expiry: its wallet refuses to build a late claim.
    world.skip_to(EXPIRES_AT);
    assert_eq!(
        payee.claim(&mut charger, world.ledger.confirmed_index()),
        Err(ClaimError::Expired {
            expires_at: EXPIRES_AT
        })
    );
    let refund = payer
        .refund(&mut ev, world.ledger.confirmed_index())
        .unwrap();
    assert!(matches!(refund.body, Body::Refund { .. }));
    assert_eq!(world.confirm(&[&refund]), [PayloadOutcome::Applied]);
    assert_eq!(world.ledger.balance(&ev.address()), EV_FUNDS);
    assert_eq!(world.ledger.balance(&charger.address()), 0);
}

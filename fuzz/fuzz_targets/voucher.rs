//! Payment-channel vouchers as a payee receives them from a payer it does not trust:
//! `wallet::Voucher::from_bytes` on arbitrary bytes, then a stateful `PayeeChannel` fed a
//! sequence of raw, validly signed and mutated signed vouchers.
//!
//! Checked, besides "no panic":
//! - decoding: accepted bytes re-encode to exactly the input (`to_bytes`), so the format has
//!   one encoding per voucher; a refusal names the real cause (length, version byte);
//!   checking the signature of a decoded voucher against any 32 bytes as a key is an
//!   error or not, never a panic;
//! - the payee: a refused voucher changes nothing (best voucher, earned amount, stored
//!   voucher); an accepted one is for this channel, within the deposit, exactly the
//!   voucher the payer signed for that amount (no forgery), raises the earned amount by
//!   exactly what `accept` returns, and is what the store holds afterwards; a payee
//!   reopened from its store holds the same best voucher.
//!
//! Input: records of one command byte and its operands (raw: 105 bytes; signed: an amount
//! index; mutated: an amount index, an offset and a byte).
//!
//! `cargo +nightly fuzz run voucher`
#![no_main]

use std::sync::LazyLock;

use dag_core::{Address, ChannelId, Keypair};
use libfuzzer_sys::fuzz_target;
use wallet::{
    ChannelTerms, MemVoucherStore, PayeeChannel, Voucher, VoucherDecodeError, VoucherStore,
    VOUCHER_VERSION,
};

const NETWORK: u64 = 7;
const DEPOSIT: u64 = 48;

struct Fixture {
    terms: ChannelTerms,
    /// Vouchers signed by the payer for amounts 0..=DEPOSIT+8 (the last ones exceed the
    /// deposit), and the same amounts signed on another channel and by another key.
    good: Vec<Voucher>,
    other_channel: Vec<Voucher>,
    other_signer: Vec<Voucher>,
}

static FIX: LazyLock<Fixture> = LazyLock::new(|| {
    let payer = Keypair::from_seed(&[1; 32]);
    let payee = Keypair::from_seed(&[2; 32]);
    let stranger = Keypair::from_seed(&[3; 32]);
    let terms = ChannelTerms {
        id: ChannelId([0xc1; 32]),
        payer: payer.address(),
        payee: payee.address(),
        deposit: DEPOSIT,
        expires_at: 1_000,
    };
    let amounts = 0..=DEPOSIT + 8;
    Fixture {
        terms,
        good: amounts
            .clone()
            .map(|a| Voucher::sign(&payer, NETWORK, terms.id, a))
            .collect(),
        other_channel: amounts
            .clone()
            .map(|a| Voucher::sign(&payer, NETWORK, ChannelId([0xc2; 32]), a))
            .collect(),
        other_signer: amounts
            .map(|a| Voucher::sign(&stranger, NETWORK, terms.id, a))
            .collect(),
    }
});

fn decode(data: &[u8]) -> Option<Voucher> {
    match Voucher::from_bytes(data) {
        Ok(v) => {
            assert_eq!(
                v.to_bytes().as_slice(),
                data,
                "accepted a non-canonical voucher"
            );
            assert_eq!(Voucher::from_bytes(&v.to_bytes()), Ok(v));
            return Some(v);
        }
        Err(VoucherDecodeError::Length(n)) => {
            assert_eq!(n, data.len());
            assert_ne!(n, Voucher::ENCODED_LEN);
        }
        Err(VoucherDecodeError::Version(b)) => {
            assert_eq!(data.len(), Voucher::ENCODED_LEN);
            assert_eq!(b, data[0]);
            assert_ne!(b, VOUCHER_VERSION);
        }
    }
    None
}

fn offer(payee: &mut PayeeChannel<MemVoucherStore>, bytes: &[u8]) {
    let fix = &*FIX;
    let before = (payee.best().copied(), payee.earned());
    let stored = payee.store().load(&fix.terms.id).expect("memory store");
    match payee.accept_bytes(bytes) {
        Ok(gain) => {
            let v = Voucher::from_bytes(bytes).expect("accepted bytes decode");
            assert_eq!(v.channel, fix.terms.id);
            assert!(v.amount <= fix.terms.deposit);
            // Only the payer can sign, and strict verification admits one signature per
            // message here: an accepted voucher is the one the payer signed.
            assert_eq!(v, fix.good[v.amount as usize], "accepted a forgery");
            assert!(
                v.amount > before.1,
                "accepted a voucher that does not raise"
            );
            assert_eq!(gain, v.amount - before.1);
            assert_eq!(payee.earned(), v.amount);
            assert_eq!(payee.best(), Some(&v));
            assert_eq!(
                payee.store().load(&fix.terms.id).expect("memory store"),
                Some(v)
            );
        }
        Err(_) => {
            assert_eq!(
                (payee.best().copied(), payee.earned()),
                before,
                "a refusal changed state"
            );
            assert_eq!(
                payee.store().load(&fix.terms.id).expect("memory store"),
                stored
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(v) = decode(data) {
        // Any 32 bytes as the payer key: an error or not, never a panic.
        let _ = v.verify(NETWORK, &Address(v.channel.0));
    }
    let fix = &*FIX;
    let mut payee = PayeeChannel::new(NETWORK, fix.terms, MemVoucherStore::new())
        .expect("payee channel over valid terms");
    let mut rest = data;
    while let Some((&cmd, r)) = rest.split_first() {
        rest = r;
        let n = fix.good.len();
        match cmd % 4 {
            0 => {
                let take = rest.len().min(Voucher::ENCODED_LEN);
                let (raw, r) = rest.split_at(take);
                rest = r;
                decode(raw);
                offer(&mut payee, raw);
            }
            1 => {
                let Some((&a, r)) = rest.split_first() else {
                    break;
                };
                rest = r;
                let set = match (cmd >> 2) % 4 {
                    0 | 1 => &fix.good,
                    2 => &fix.other_channel,
                    _ => &fix.other_signer,
                };
                offer(&mut payee, &set[usize::from(a) % n].to_bytes());
            }
            2 => {
                let [a, at, b, ..] = *rest else { break };
                rest = &rest[3..];
                let mut bytes = fix.good[usize::from(a) % n].to_bytes();
                bytes[usize::from(at) % Voucher::ENCODED_LEN] = b;
                decode(&bytes);
                offer(&mut payee, &bytes);
            }
            _ => {
                // A payee restarting from its store: the stored voucher is taken back.
                let store = payee.store().clone();
                let best = payee.best().copied();
                payee = PayeeChannel::new(NETWORK, fix.terms, store)
                    .expect("a store holding only accepted vouchers reopens");
                assert_eq!(payee.best().copied(), best);
            }
        }
    }
});

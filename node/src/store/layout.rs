//! The on-disk format of [`SledStore`](super::SledStore): one sled tree, keys by prefix,
//! and the binary transaction record (see the [module](super) docs for the table).
//!
//! Everything here is pure (no sled): key builders, and the encoder and checked decoder of
//! the transaction record. Decoding never panics; a malformed record is a
//! [`StoreError::Corrupt`].

use dag_core::store::{Result, StoreError, TxMeta};
use dag_core::{
    Account, Address, ChannelId, ConflictReason, MilestoneIndex, PayloadId, PayloadOutcome, TxId,
};

/// Name of the one sled tree holding everything.
pub const TREE: &str = "tangle";

/// Version of this format, stored under [`FORMAT_KEY`] when the database is created.
pub const FORMAT: u8 = 1;

/// Prefix of transaction records: `t` + tx id -> [`encode_tx_record`].
pub const TX: u8 = b't';
/// Prefix of the payload index: `p` + payload id + storing sequence (u64 BE) -> tx id.
pub const PAYLOAD: u8 = b'p';
/// Prefix of milestones: `m` + index (u32 BE) -> `MilestoneRecord` (MessagePack).
pub const MILESTONE: u8 = b'm';
/// Prefix of accounts: `a` + address -> balance, next seq (u64 BE each).
pub const ACCOUNT: u8 = b'a';
/// Prefix of channels: `c` + channel id -> `Channel` (MessagePack).
pub const CHANNEL: u8 = b'c';

/// Format version of the database (one byte, [`FORMAT`]).
pub const FORMAT_KEY: &[u8] = b"sformat";
/// Ledger header: network id, supply, confirmed index and digest (MessagePack).
pub const LEDGER_KEY: &[u8] = b"sledger";
/// Number of transactions ever stored (u64 BE); also the next storing sequence.
pub const TX_COUNT_KEY: &[u8] = b"stx_count";

/// Length of the fixed header of a transaction record, before the transaction's bytes.
pub const TX_HEADER_LEN: usize = 59;

const FLAG_SOLID: u8 = 1;
const FLAG_PAYLOAD: u8 = 2;
const FLAG_CONFIRMED: u8 = 4;
const FLAG_OUTCOME: u8 = 8;
const FLAGS_ALL: u8 = FLAG_SOLID | FLAG_PAYLOAD | FLAG_CONFIRMED | FLAG_OUTCOME;

// Offsets in the header.
const OFF_FLAGS: usize = 1;
const OFF_SEQ: usize = 2;
const OFF_ARRIVAL: usize = 10;
const OFF_PAYLOAD: usize = 18;
const OFF_CONFIRMED_BY: usize = 50;
const OFF_POSITION: usize = 54;
const OFF_OUTCOME: usize = 58;

/// Key of a transaction record.
pub fn tx_key(id: &TxId) -> [u8; 33] {
    prefixed(TX, &id.0)
}

/// Key of one payload index entry: the transaction with storing sequence `seq` carries
/// payload `id`. Entries of one payload sort by storing sequence.
pub fn payload_key(id: &PayloadId, seq: u64) -> [u8; 41] {
    let mut k = [0u8; 41];
    k[0] = PAYLOAD;
    k[1..33].copy_from_slice(&id.0);
    k[33..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Prefix of every index entry of payload `id`.
pub fn payload_prefix(id: &PayloadId) -> [u8; 33] {
    prefixed(PAYLOAD, &id.0)
}

/// Key of a milestone record.
pub fn milestone_key(index: MilestoneIndex) -> [u8; 5] {
    let mut k = [MILESTONE; 5];
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

/// Key of an account.
pub fn account_key(address: &Address) -> [u8; 33] {
    prefixed(ACCOUNT, address.as_bytes())
}

/// Key of a channel.
pub fn channel_key(id: &ChannelId) -> [u8; 33] {
    prefixed(CHANNEL, &id.0)
}

fn prefixed(prefix: u8, id: &[u8; 32]) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = prefix;
    k[1..].copy_from_slice(id);
    k
}

/// The 32-byte id after a one-byte prefix in a key.
pub fn key_id(what: &str, key: &[u8]) -> Result<[u8; 32]> {
    key.get(1..)
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("{what} key of {} bytes", key.len())))
}

/// An account value: balance then next sequence number, u64 big-endian each.
pub fn encode_account(account: &Account) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&account.balance.to_be_bytes());
    v[8..].copy_from_slice(&account.next_seq.to_be_bytes());
    v
}

/// Decodes [`encode_account`].
pub fn decode_account(bytes: &[u8]) -> Result<Account> {
    if bytes.len() != 16 {
        return Err(StoreError::Corrupt(format!(
            "account of {} bytes, not 16",
            bytes.len()
        )));
    }
    Ok(Account {
        balance: be_u64(&bytes[..8]),
        next_seq: be_u64(&bytes[8..]),
    })
}

/// A u64 stored big-endian in exactly 8 bytes.
pub fn decode_u64(what: &str, bytes: &[u8]) -> Result<u64> {
    if bytes.len() != 8 {
        return Err(StoreError::Corrupt(format!(
            "{what}: {} bytes, not 8",
            bytes.len()
        )));
    }
    Ok(be_u64(bytes))
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

/// The header of a transaction record: what the store knows about a transaction besides
/// its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxHeader {
    /// Storing sequence: 0 for the first transaction ever stored, then 1, 2, ...
    pub seq: u64,
    /// The metadata the trait exposes.
    pub meta: TxMeta,
    /// Position in its confirming milestone's white-flag order (0 while unconfirmed); it
    /// orders the confirmations of one payload within a milestone.
    pub position: u32,
}

/// A transaction record: the fixed [`TX_HEADER_LEN`]-byte header, then the canonical
/// transaction bytes.
///
/// | offset | size | field                                                       |
/// |--------|------|-------------------------------------------------------------|
/// | 0      | 1    | format, [`FORMAT`]                                          |
/// | 1      | 1    | flags: 1 solid, 2 payload, 4 confirmed, 8 outcome           |
/// | 2      | 8    | storing sequence (u64 BE)                                   |
/// | 10     | 8    | arrival, ms (u64 BE)                                        |
/// | 18     | 32   | payload id (zeros without flag 2)                           |
/// | 50     | 4    | confirming milestone (u32 BE; 0 without flag 4)             |
/// | 54     | 4    | position in that milestone's confirmation order (u32 BE)   |
/// | 58     | 1    | outcome: 0 applied, else the conflict reason's code         |
/// | 59     | ..   | canonical transaction bytes                                 |
pub fn encode_tx_record(header: &TxHeader, bytes: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; TX_HEADER_LEN + bytes.len()];
    write_header(&mut v, header);
    v[TX_HEADER_LEN..].copy_from_slice(bytes);
    v
}

/// Overwrites the header of an encoded record in place (the record is at least
/// [`TX_HEADER_LEN`] bytes long, as [`decode_tx_header`] checked).
pub fn write_header(record: &mut [u8], h: &TxHeader) {
    let m = &h.meta;
    let mut flags = 0;
    if m.solid {
        flags |= FLAG_SOLID;
    }
    record[0] = FORMAT;
    record[OFF_SEQ..OFF_ARRIVAL].copy_from_slice(&h.seq.to_be_bytes());
    record[OFF_ARRIVAL..OFF_PAYLOAD].copy_from_slice(&m.arrival.to_be_bytes());
    let pid = match m.payload {
        Some(p) => {
            flags |= FLAG_PAYLOAD;
            p.0
        }
        None => [0; 32],
    };
    record[OFF_PAYLOAD..OFF_CONFIRMED_BY].copy_from_slice(&pid);
    let by = match m.confirmed_by {
        Some(i) => {
            flags |= FLAG_CONFIRMED;
            i
        }
        None => 0,
    };
    record[OFF_CONFIRMED_BY..OFF_POSITION].copy_from_slice(&by.to_be_bytes());
    record[OFF_POSITION..OFF_OUTCOME].copy_from_slice(&h.position.to_be_bytes());
    record[OFF_OUTCOME] = match m.outcome {
        Some(o) => {
            flags |= FLAG_OUTCOME;
            o.code()
        }
        None => 0,
    };
    record[OFF_FLAGS] = flags;
}

/// Decodes and checks the header of a transaction record; the transaction's bytes are
/// `&record[TX_HEADER_LEN..]`.
pub fn decode_tx_header(record: &[u8]) -> Result<TxHeader> {
    let corrupt = |why: &str| Err(StoreError::Corrupt(format!("transaction record: {why}")));
    if record.len() < TX_HEADER_LEN {
        return corrupt("too short");
    }
    if record[0] != FORMAT {
        return corrupt("unknown format");
    }
    let flags = record[OFF_FLAGS];
    if flags & !FLAGS_ALL != 0 {
        return corrupt("unknown flags");
    }
    let code = record[OFF_OUTCOME];
    let outcome = if flags & FLAG_OUTCOME == 0 {
        if code != 0 {
            return corrupt("outcome without its flag");
        }
        None
    } else if code == 0 {
        Some(PayloadOutcome::Applied)
    } else {
        match ConflictReason::from_code(code) {
            Some(r) => Some(PayloadOutcome::Conflicting(r)),
            None => return corrupt("unknown conflict reason"),
        }
    };
    let mut pid = [0u8; 32];
    pid.copy_from_slice(&record[OFF_PAYLOAD..OFF_CONFIRMED_BY]);
    Ok(TxHeader {
        seq: be_u64(&record[OFF_SEQ..]),
        meta: TxMeta {
            arrival: be_u64(&record[OFF_ARRIVAL..]),
            solid: flags & FLAG_SOLID != 0,
            payload: (flags & FLAG_PAYLOAD != 0).then_some(PayloadId(pid)),
            confirmed_by: (flags & FLAG_CONFIRMED != 0)
                .then(|| be_u32(&record[OFF_CONFIRMED_BY..])),
            outcome,
        },
        position: be_u32(&record[OFF_POSITION..]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn outcome() -> impl Strategy<Value = Option<PayloadOutcome>> {
        prop_oneof![
            Just(None),
            Just(Some(PayloadOutcome::Applied)),
            proptest::sample::select(ConflictReason::ALL.to_vec())
                .prop_map(|r| Some(PayloadOutcome::Conflicting(r))),
        ]
    }

    proptest! {
        /// Every header survives encoding, and the bytes follow it unchanged.
        #[test]
        fn tx_record_round_trips(
            seq: u64, arrival: u64, solid: bool, pid: Option<[u8; 32]>,
            by: Option<u32>, position: u32, outcome in outcome(),
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let h = TxHeader {
                seq,
                meta: TxMeta { arrival, solid, payload: pid.map(PayloadId), confirmed_by: by, outcome },
                position,
            };
            let rec = encode_tx_record(&h, &bytes);
            prop_assert_eq!(decode_tx_header(&rec).unwrap(), h);
            prop_assert_eq!(&rec[TX_HEADER_LEN..], &bytes[..]);
        }

        /// Arbitrary bytes decode to a header or to `Corrupt`, never a panic.
        #[test]
        fn tx_header_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            match decode_tx_header(&bytes) {
                Ok(_) | Err(StoreError::Corrupt(_)) => {}
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }
    }

    #[test]
    fn malformed_records_are_corrupt() {
        let h = TxHeader {
            seq: 1,
            meta: TxMeta::new(5, true, None),
            position: 0,
        };
        let good = encode_tx_record(&h, b"tx");
        let mut bad_flags = good.clone();
        bad_flags[OFF_FLAGS] |= 0x80;
        let mut bad_reason = good.clone();
        bad_reason[OFF_FLAGS] |= FLAG_OUTCOME;
        bad_reason[OFF_OUTCOME] = 200;
        let mut bad_format = good.clone();
        bad_format[0] = 0;
        for rec in [
            &good[..TX_HEADER_LEN - 1],
            &bad_flags[..],
            &bad_reason[..],
            &bad_format[..],
        ] {
            assert!(matches!(decode_tx_header(rec), Err(StoreError::Corrupt(_))));
        }
        assert!(matches!(
            decode_account(&[0; 15]),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            key_id("x", &[b'a'; 5]),
            Err(StoreError::Corrupt(_))
        ));
    }

    /// Keys of different kinds never collide, and payload entries sort by sequence.
    #[test]
    fn keys_are_prefixed_and_ordered() {
        let id = [7u8; 32];
        let keys = [
            tx_key(&TxId(id)).to_vec(),
            payload_key(&PayloadId(id), 0).to_vec(),
            milestone_key(7).to_vec(),
            account_key(&Address(id)).to_vec(),
            channel_key(&ChannelId(id)).to_vec(),
            FORMAT_KEY.to_vec(),
        ];
        let firsts: std::collections::HashSet<u8> = keys.iter().map(|k| k[0]).collect();
        assert_eq!(firsts.len(), keys.len());
        assert!(payload_key(&PayloadId(id), 255) < payload_key(&PayloadId(id), 256));
        assert!(payload_key(&PayloadId(id), 3).starts_with(&payload_prefix(&PayloadId(id))));
    }
}

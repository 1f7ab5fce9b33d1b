//! The on-disk format of [`SledStore`](super::SledStore) (see the [module](super) docs for
//! the whole picture): the sled keys and values, and the frames of the transaction log.
//!
//! Everything here is pure (no I/O): key builders, encoders, and checked decoders. Decoding
//! never panics; a malformed value is a [`StoreError::Corrupt`].

use dag_core::store::{Result, StoreError};
use dag_core::{
    Account, Address, ChannelId, ConflictReason, MilestoneIndex, PayloadId, PayloadOutcome, TxId,
};

/// Name of the one sled tree holding everything but transactions.
pub const TREE: &str = "tangle";

/// Version of this format, stored under [`FORMAT_KEY`] when the database is created.
/// Format 5: confirmation chunks of [`CONFIRMATIONS_PER_CHUNK`] (64) entries, and the
/// prune state ([`PRUNE_KEY`]) without the entry points (they are read from the tombstone
/// frame it points at), so no sled node exceeds sled's blob threshold (see
/// [`CONFIRMATIONS_PER_CHUNK`]). Format 4 had 1,024-entry chunks
/// ([`CONFIRMATIONS_PER_CHUNK_V4`]); it is upgraded on open.
pub const FORMAT: u8 = 5;
/// Format 4: the account table is not in sled but in a checkpoint file
/// ([`ACCOUNTS_FILE`]) plus the account frames ([`FRAME_ACCOUNTS`]) the log holds since
/// it. Format 3 (and 2) kept accounts under sled keys ([`ACCOUNT`]).
pub const FORMAT_ACCOUNTS_FILE: u8 = 4;
/// Format 3: the transaction log is a sequence of segment files and may hold tombstone
/// frames ([`FRAME_PRUNE`]); sled holds the prune state ([`PRUNE_KEY`]), pruned-entry
/// bitmaps ([`PRUNED`]), payload bases ([`PAYLOAD_BASE`]) and the accounts ([`ACCOUNT`]).
/// Opened and upgraded to [`FORMAT`] (its accounts move to a checkpoint file).
pub const FORMAT_SEGMENTED: u8 = 3;
/// Format 2: one log file (which is segment 0 of format 3) and never pruned. It is a valid
/// format-3 database without tombstones, so it is upgraded like one.
pub const FORMAT_SINGLE_LOG: u8 = 2;

/// Prefix of milestones: `m` + index (u32 BE) -> `MilestoneRecord` (MessagePack).
pub const MILESTONE: u8 = b'm';
/// Prefix of confirmation chunks: `k` + milestone index (u32 BE) + chunk (u32 BE) ->
/// [`encode_confirmation`] entries, in white-flag order.
pub const CONFIRMATION: u8 = b'k';
/// Prefix of accounts in formats 2 and 3: `a` + address -> balance, next seq (u64 BE
/// each). Format 4 keeps none (they move to [`ACCOUNTS_FILE`] when a database is upgraded).
pub const ACCOUNT: u8 = b'a';
/// Prefix of channels: `c` + channel id -> `Channel` (MessagePack).
pub const CHANNEL: u8 = b'c';
/// Prefix of pruned-entry bitmaps: `p` + milestone index (u32 BE) + chunk (u32 BE) -> a
/// bitmap ([`pruned_bit`]) of the entries of confirmation chunk (index, chunk) that name
/// pruned transactions (bit `i` = entry `i`). Deleted with its chunk.
pub const PRUNED: u8 = b'p';
/// Prefix of payload bases: `b` + payload id -> the payload's status as it stood when some
/// of its transactions were pruned, and the confirmed index then (MessagePack).
pub const PAYLOAD_BASE: u8 = b'b';

/// Format version of the database (one byte, [`FORMAT`]).
pub const FORMAT_KEY: &[u8] = b"sformat";
/// Ledger header: network id, supply, confirmed index and digest (MessagePack).
pub const LEDGER_KEY: &[u8] = b"sledger";
/// The last prune: where its tombstone frame is in the log, its milestone and its entry
/// points (MessagePack). Written by the prune's clean-up, after the tombstone is durable.
pub const PRUNE_KEY: &[u8] = b"sprune";
/// Key of the committee rotations applied (MessagePack `Vec<dag_core::Rotation>`, oldest
/// first); absent until the first rotation.
pub const ROTATIONS_KEY: &[u8] = b"srotations";

/// Name of the first segment of the transaction log in the database directory; segment
/// `n > 0` is [`log_segment_name`]`(n)`, `transactions.log.<n>`.
pub const LOG_FILE: &str = "transactions.log";
/// The first bytes of a transaction log.
pub const LOG_MAGIC: &[u8; 8] = b"TANGLOG\x02";
/// Length of a frame's header: body length (u32 LE) and CRC-32 of the body (u32 LE).
pub const FRAME_HEADER_LEN: usize = 8;
/// Largest frame body accepted when reading a log (a frame holds one `put_transactions`
/// batch; the node writes at most a few MiB at once).
pub const MAX_FRAME_LEN: usize = 256 * 1024 * 1024;

/// Frame kind: a batch of transactions ([`TxEntryHeader`] + bytes, each).
pub const FRAME_TRANSACTIONS: u8 = 1;
/// Frame kind: transactions that became solid (32-byte ids).
pub const FRAME_SOLID: u8 = 2;
/// Frame kind: a tombstone, the commit point of a prune ([`Tombstone`]).
pub const FRAME_PRUNE: u8 = 3;
/// Frame kind: the accounts one milestone changed, with their new values
/// ([`accounts_body`]).
pub const FRAME_ACCOUNTS: u8 = 4;

/// Name of the account checkpoint in the database directory: the whole account table as
/// of one confirmed milestone ([`AccountsHeader`], then sorted [`ACCOUNT_RECORD_LEN`]-byte
/// records). Written to [`ACCOUNTS_TMP_FILE`] and renamed over it.
pub const ACCOUNTS_FILE: &str = "accounts.table";
/// Where a new checkpoint is written before it is renamed to [`ACCOUNTS_FILE`].
pub const ACCOUNTS_TMP_FILE: &str = "accounts.table.tmp";
/// The first bytes of an account checkpoint.
pub const ACCOUNTS_MAGIC: &[u8; 8] = b"TANGACC\x01";
/// Length of an account checkpoint's header ([`AccountsHeader`]).
pub const ACCOUNTS_HEADER_LEN: usize = 24;
/// Length of one account record: address (32), balance and next seq (u64 BE each).
pub const ACCOUNT_RECORD_LEN: usize = 48;
/// Length of an accounts frame body before its records.
pub const ACCOUNTS_BODY_HEADER_LEN: usize = 9;

/// Length of a transaction entry's fixed header in a log frame, before its bytes.
pub const TX_ENTRY_HEADER_LEN: usize = 77;
const ENTRY_FLAG_SOLID: u8 = 1;
const ENTRY_FLAG_PAYLOAD: u8 = 2;

/// Length of a confirmation entry without / with a payload id of its own.
pub const CONFIRMATION_LEN: usize = 34;
const CONFIRMATION_FLAG_OUTCOME: u8 = 1;
const CONFIRMATION_FLAG_PAYLOAD: u8 = 2;
/// Most entries in one confirmation chunk: at most 64 x 66 bytes, about 4 KiB. sled writes
/// a tree node (up to 17 keys with their values) as a separate blob file once it exceeds a
/// quarter of its 512 KiB log segment, and sled 0.34 does not reliably delete replaced
/// blobs: with 1,024-entry chunks (34-66 KiB) the data directory grew by about 2 MB a
/// minute at 10,000 payments/s from blobs of pruned milestones (format 4). 17 chunks of
/// this size stay near 72 KiB, under the threshold.
pub const CONFIRMATIONS_PER_CHUNK: usize = 64;
/// Most entries in one confirmation chunk of format 4 (read when such a store is
/// upgraded).
pub const CONFIRMATIONS_PER_CHUNK_V4: usize = 1_024;

/// Key of a milestone record.
pub fn milestone_key(index: MilestoneIndex) -> [u8; 5] {
    let mut k = [MILESTONE; 5];
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

/// Key of chunk `chunk` of milestone `index`'s confirmations.
pub fn confirmation_key(index: MilestoneIndex, chunk: u32) -> [u8; 9] {
    let mut k = [CONFIRMATION; 9];
    k[1..5].copy_from_slice(&index.to_be_bytes());
    k[5..].copy_from_slice(&chunk.to_be_bytes());
    k
}

/// The milestone index and chunk number of a confirmation key.
pub fn decode_confirmation_key(key: &[u8]) -> Result<(MilestoneIndex, u32)> {
    if key.len() != 9 || key[0] != CONFIRMATION {
        return Err(StoreError::Corrupt(format!(
            "confirmation key of {} bytes",
            key.len()
        )));
    }
    Ok((be_u32(&key[1..5]), be_u32(&key[5..])))
}

/// Key of the pruned-entry bitmap of chunk `chunk` of milestone `index`'s confirmations.
pub fn pruned_key(index: MilestoneIndex, chunk: u32) -> [u8; 9] {
    let mut k = confirmation_key(index, chunk);
    k[0] = PRUNED;
    k
}

/// The milestone index and chunk number of a pruned-entry bitmap key.
pub fn decode_pruned_key(key: &[u8]) -> Result<(MilestoneIndex, u32)> {
    if key.len() != 9 || key[0] != PRUNED {
        return Err(StoreError::Corrupt(format!(
            "pruned-entry key of {} bytes",
            key.len()
        )));
    }
    Ok((be_u32(&key[1..5]), be_u32(&key[5..])))
}

/// Whether entry `i` is marked in a pruned-entry bitmap (bit `i % 8` of byte `i / 8`).
pub fn pruned_bit(bitmap: &[u8], i: usize) -> bool {
    bitmap.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// Marks entry `i` in a pruned-entry bitmap, growing it as needed.
pub fn set_pruned_bit(bitmap: &mut Vec<u8>, i: usize) {
    if bitmap.len() <= i / 8 {
        bitmap.resize(i / 8 + 1, 0);
    }
    bitmap[i / 8] |= 1 << (i % 8);
}

/// Checks a stored pruned-entry bitmap: at most one bit per entry of a chunk.
pub fn check_pruned_bitmap(bitmap: &[u8]) -> Result<()> {
    check_pruned_bitmap_of(bitmap, CONFIRMATIONS_PER_CHUNK)
}

/// [`check_pruned_bitmap`] for chunks of at most `per_chunk` entries.
pub fn check_pruned_bitmap_of(bitmap: &[u8], per_chunk: usize) -> Result<()> {
    if bitmap.len() > per_chunk.div_ceil(8) {
        return Err(StoreError::Corrupt(format!(
            "pruned-entry bitmap of {} bytes",
            bitmap.len()
        )));
    }
    Ok(())
}

/// Key of a payload base.
pub fn payload_base_key(id: &PayloadId) -> [u8; 33] {
    prefixed(PAYLOAD_BASE, &id.0)
}

/// File name of log segment `id`: [`LOG_FILE`] for 0, `transactions.log.<id>` after.
pub fn log_segment_name(id: u64) -> String {
    if id == 0 {
        LOG_FILE.to_string()
    } else {
        format!("{LOG_FILE}.{id}")
    }
}

/// The segment id of a log segment's file name ([`log_segment_name`]); `None` for any other
/// name (including a non-canonical number such as `transactions.log.01`).
pub fn parse_log_segment_name(name: &str) -> Option<u64> {
    if name == LOG_FILE {
        return Some(0);
    }
    let n = name.strip_prefix(LOG_FILE)?.strip_prefix('.')?;
    let id: u64 = n.parse().ok()?;
    (id > 0 && log_segment_name(id) == name).then_some(id)
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

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

/// What a log entry says about a transaction when it was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxEntryHeader {
    /// The id.
    pub id: TxId,
    /// Local arrival time, ms.
    pub arrival: u64,
    /// Solid when stored.
    pub solid: bool,
    /// The payload it carries.
    pub payload: Option<PayloadId>,
    /// Length of the transaction's bytes, which follow the header.
    pub len: u32,
}

/// Appends one transaction entry to a frame body.
///
/// | offset | size | field                                        |
/// |--------|------|----------------------------------------------|
/// | 0      | 32   | tx id                                        |
/// | 32     | 8    | arrival, ms (u64 BE)                         |
/// | 40     | 1    | flags: 1 solid, 2 payload                    |
/// | 41     | 32   | payload id (zeros without flag 2)            |
/// | 73     | 4    | length of the bytes (u32 BE)                 |
/// | 77     | ..   | canonical transaction bytes                  |
pub fn push_tx_entry(out: &mut Vec<u8>, h: &TxEntryHeader, bytes: &[u8]) {
    debug_assert_eq!(h.len as usize, bytes.len());
    out.extend_from_slice(&h.id.0);
    out.extend_from_slice(&h.arrival.to_be_bytes());
    let mut flags = 0;
    if h.solid {
        flags |= ENTRY_FLAG_SOLID;
    }
    if h.payload.is_some() {
        flags |= ENTRY_FLAG_PAYLOAD;
    }
    out.push(flags);
    out.extend_from_slice(&h.payload.map_or([0; 32], |p| p.0));
    out.extend_from_slice(&h.len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Decodes the fixed header of a transaction entry (`bytes` holds at least the header).
pub fn decode_tx_entry_header(bytes: &[u8]) -> Result<TxEntryHeader> {
    let corrupt = |why: &str| Err(StoreError::Corrupt(format!("transaction entry: {why}")));
    if bytes.len() < TX_ENTRY_HEADER_LEN {
        return corrupt("too short");
    }
    let flags = bytes[40];
    if flags & !(ENTRY_FLAG_SOLID | ENTRY_FLAG_PAYLOAD) != 0 {
        return corrupt("unknown flags");
    }
    let mut id = [0u8; 32];
    id.copy_from_slice(&bytes[..32]);
    let mut pid = [0u8; 32];
    pid.copy_from_slice(&bytes[41..73]);
    if flags & ENTRY_FLAG_PAYLOAD == 0 && pid != [0; 32] {
        return corrupt("payload id without its flag");
    }
    Ok(TxEntryHeader {
        id: TxId(id),
        arrival: be_u64(&bytes[32..40]),
        solid: flags & ENTRY_FLAG_SOLID != 0,
        payload: (flags & ENTRY_FLAG_PAYLOAD != 0).then_some(PayloadId(pid)),
        len: be_u32(&bytes[73..77]),
    })
}

/// A decoded frame body.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Transaction entries: header, offset of the entry in the body, and bytes.
    Transactions(Vec<(TxEntryHeader, usize, &'a [u8])>),
    /// Ids of transactions that became solid.
    Solid(Vec<TxId>),
    /// A prune's commit point.
    Prune(Tombstone),
    /// The accounts a milestone changed.
    Accounts(AccountsFrame),
}

/// An accounts frame: the new values of the accounts one milestone changed, written before
/// the milestone's sled batch (which is its commit point).
///
/// | offset | size    | field                                       |
/// |--------|---------|---------------------------------------------|
/// | 0      | 1       | kind, [`FRAME_ACCOUNTS`]                    |
/// | 1      | 4       | number of records `n` (u32 BE)              |
/// | 5      | 4       | the milestone (u32 BE)                      |
/// | 9      | 48 n    | records ([`push_account_record`])           |
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountsFrame {
    /// The milestone whose application changed them.
    pub milestone: MilestoneIndex,
    /// The changed accounts, with their values after the milestone.
    pub accounts: Vec<(Address, Account)>,
}

/// An accounts frame body ([`AccountsFrame`]).
pub fn accounts_body(milestone: MilestoneIndex, accounts: &[(Address, Account)]) -> Vec<u8> {
    let mut v = Vec::with_capacity(ACCOUNTS_BODY_HEADER_LEN + accounts.len() * ACCOUNT_RECORD_LEN);
    v.push(FRAME_ACCOUNTS);
    v.extend_from_slice(&(accounts.len() as u32).to_be_bytes());
    v.extend_from_slice(&milestone.to_be_bytes());
    for (a, acc) in accounts {
        push_account_record(&mut v, a, acc);
    }
    v
}

/// Appends one account record: address, balance (u64 BE), next seq (u64 BE).
pub fn push_account_record(out: &mut Vec<u8>, address: &Address, account: &Account) {
    out.extend_from_slice(address.as_bytes());
    out.extend_from_slice(&encode_account(account));
}

/// Decodes one [`ACCOUNT_RECORD_LEN`]-byte account record.
pub fn decode_account_record(bytes: &[u8]) -> Result<(Address, Account)> {
    if bytes.len() != ACCOUNT_RECORD_LEN {
        return Err(StoreError::Corrupt(format!(
            "account record of {} bytes, not {ACCOUNT_RECORD_LEN}",
            bytes.len()
        )));
    }
    let mut a = [0u8; 32];
    a.copy_from_slice(&bytes[..32]);
    Ok((Address(a), decode_account(&bytes[32..])?))
}

fn decode_accounts_frame(body: &[u8]) -> Result<AccountsFrame> {
    let corrupt = |why: &str| Err(StoreError::Corrupt(format!("accounts frame: {why}")));
    if body.len() < ACCOUNTS_BODY_HEADER_LEN {
        return corrupt("too short");
    }
    let n = be_u32(&body[1..5]) as usize;
    let milestone = be_u32(&body[5..9]);
    let rest = &body[ACCOUNTS_BODY_HEADER_LEN..];
    if rest.len() != n.saturating_mul(ACCOUNT_RECORD_LEN) {
        return corrupt("of the wrong length");
    }
    let accounts = rest
        .chunks_exact(ACCOUNT_RECORD_LEN)
        .map(decode_account_record)
        .collect::<Result<Vec<_>>>()?;
    Ok(AccountsFrame {
        milestone,
        accounts,
    })
}

/// The header of an account checkpoint ([`ACCOUNTS_FILE`]).
///
/// | offset | size | field                                               |
/// |--------|------|-----------------------------------------------------|
/// | 0      | 8    | [`ACCOUNTS_MAGIC`]                                  |
/// | 8      | 4    | the confirmed milestone it holds the table at (u32 BE) |
/// | 12     | 8    | number of records (u64 BE)                          |
/// | 20     | 4    | CRC-32 of the records (u32 LE)                      |
///
/// The records follow, sorted by address, each address once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountsHeader {
    /// The milestone.
    pub milestone: MilestoneIndex,
    /// Number of records.
    pub count: u64,
    /// CRC-32 of the records.
    pub crc: u32,
}

/// Encodes an [`AccountsHeader`].
pub fn encode_accounts_header(h: &AccountsHeader) -> [u8; ACCOUNTS_HEADER_LEN] {
    let mut out = [0u8; ACCOUNTS_HEADER_LEN];
    out[..8].copy_from_slice(ACCOUNTS_MAGIC);
    out[8..12].copy_from_slice(&h.milestone.to_be_bytes());
    out[12..20].copy_from_slice(&h.count.to_be_bytes());
    out[20..].copy_from_slice(&h.crc.to_le_bytes());
    out
}

/// Decodes an [`AccountsHeader`]; `file_len` is the checkpoint's length, which must be
/// exactly the header and its records.
pub fn decode_accounts_header(bytes: &[u8], file_len: u64) -> Result<AccountsHeader> {
    let corrupt = |why: &str| Err(StoreError::Corrupt(format!("account checkpoint: {why}")));
    if bytes.len() < ACCOUNTS_HEADER_LEN {
        return corrupt("too short");
    }
    if &bytes[..8] != ACCOUNTS_MAGIC {
        return corrupt("bad magic");
    }
    let h = AccountsHeader {
        milestone: be_u32(&bytes[8..12]),
        count: be_u64(&bytes[12..20]),
        crc: le_u32(&bytes[20..24]),
    };
    let expected = h
        .count
        .checked_mul(ACCOUNT_RECORD_LEN as u64)
        .and_then(|n| n.checked_add(ACCOUNTS_HEADER_LEN as u64));
    if expected != Some(file_len) {
        return corrupt("its length does not match its record count");
    }
    Ok(h)
}

/// A tombstone frame: one prune, as `Store::prune` committed it.
///
/// | offset | size    | field                                                  |
/// |--------|---------|--------------------------------------------------------|
/// | 0      | 1       | kind, [`FRAME_PRUNE`]                                  |
/// | 1      | 4       | number of pruned ids `n` (u32 BE)                      |
/// | 5      | 4       | the prune's milestone (u32 BE)                         |
/// | 9      | 4       | number of entry points `e` (u32 BE)                    |
/// | 13     | 32 n    | pruned transaction ids                                 |
/// | ..     | 36 e    | entry points: tx id (32), confirming milestone (u32 BE) |
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tombstone {
    /// The pruned milestone after this prune (never lower than an earlier tombstone's).
    pub milestone: MilestoneIndex,
    /// The transactions pruned (those the store held when it was written).
    pub txs: Vec<TxId>,
    /// The solid entry points after this prune.
    pub entry_points: Vec<(TxId, MilestoneIndex)>,
}

/// Length of a tombstone body before its ids.
pub const TOMBSTONE_HEADER_LEN: usize = 13;
/// Length of one entry point in a tombstone.
pub const ENTRY_POINT_LEN: usize = 36;

/// Wraps a body into a frame: length, CRC-32, body.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
    out.extend_from_slice(&frame_header(body));
    out.extend_from_slice(body);
    out
}

/// The 8-byte header of a frame around `body`.
pub fn frame_header(body: &[u8]) -> [u8; FRAME_HEADER_LEN] {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut h = [0u8; FRAME_HEADER_LEN];
    h[..4].copy_from_slice(&len.to_le_bytes());
    h[4..].copy_from_slice(&crc32fast::hash(body).to_le_bytes());
    h
}

/// Reads a frame header: the body length and its expected CRC.
pub fn decode_frame_header(header: &[u8; FRAME_HEADER_LEN]) -> (usize, u32) {
    (le_u32(&header[..4]) as usize, le_u32(&header[4..]))
}

/// Whether `body` matches the CRC of its frame header.
pub fn body_matches(body: &[u8], crc: u32) -> bool {
    crc32fast::hash(body) == crc
}

/// A transactions frame body: kind, count (u32 BE), then the entries.
pub fn transactions_body_start(count: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + count as usize * 330);
    v.push(FRAME_TRANSACTIONS);
    v.extend_from_slice(&count.to_be_bytes());
    v
}

/// A solid-marks frame body.
pub fn solid_body(ids: &[TxId]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + ids.len() * 32);
    v.push(FRAME_SOLID);
    v.extend_from_slice(&(ids.len() as u32).to_be_bytes());
    for id in ids {
        v.extend_from_slice(&id.0);
    }
    v
}

/// A tombstone frame body ([`Tombstone`]).
pub fn tombstone_body(
    milestone: MilestoneIndex,
    txs: &[TxId],
    entry_points: &[(TxId, MilestoneIndex)],
) -> Vec<u8> {
    let mut v = Vec::with_capacity(
        TOMBSTONE_HEADER_LEN + txs.len() * 32 + entry_points.len() * ENTRY_POINT_LEN,
    );
    v.push(FRAME_PRUNE);
    v.extend_from_slice(&(txs.len() as u32).to_be_bytes());
    v.extend_from_slice(&milestone.to_be_bytes());
    v.extend_from_slice(&(entry_points.len() as u32).to_be_bytes());
    for id in txs {
        v.extend_from_slice(&id.0);
    }
    for (id, m) in entry_points {
        v.extend_from_slice(&id.0);
        v.extend_from_slice(&m.to_be_bytes());
    }
    v
}

fn decode_tombstone(body: &[u8]) -> Result<Tombstone> {
    let corrupt = |why: &str| Err(StoreError::Corrupt(format!("tombstone frame: {why}")));
    if body.len() < TOMBSTONE_HEADER_LEN {
        return corrupt("too short");
    }
    let n = be_u32(&body[1..5]) as usize;
    let milestone = be_u32(&body[5..9]);
    let e = be_u32(&body[9..13]) as usize;
    let rest = &body[TOMBSTONE_HEADER_LEN..];
    let ids_len = n.saturating_mul(32);
    if rest.len() != ids_len.saturating_add(e.saturating_mul(ENTRY_POINT_LEN)) {
        return corrupt("of the wrong length");
    }
    let (ids, eps) = rest.split_at(ids_len);
    Ok(Tombstone {
        milestone,
        txs: ids
            .chunks_exact(32)
            .map(|c| TxId(c.try_into().expect("chunks of 32")))
            .collect(),
        entry_points: eps
            .chunks_exact(ENTRY_POINT_LEN)
            .map(|c| {
                (
                    TxId(c[..32].try_into().expect("32 bytes")),
                    be_u32(&c[32..]),
                )
            })
            .collect(),
    })
}

/// Decodes a frame body whose CRC matched.
pub fn decode_body(body: &[u8]) -> Result<Frame<'_>> {
    let corrupt = |why: String| Err(StoreError::Corrupt(format!("log frame: {why}")));
    if body.first() == Some(&FRAME_PRUNE) {
        return decode_tombstone(body).map(Frame::Prune);
    }
    if body.first() == Some(&FRAME_ACCOUNTS) {
        return decode_accounts_frame(body).map(Frame::Accounts);
    }
    if body.len() < 5 {
        return corrupt(format!("body of {} bytes", body.len()));
    }
    let count = be_u32(&body[1..5]) as usize;
    let rest = &body[5..];
    match body[0] {
        FRAME_TRANSACTIONS => {
            let mut out = Vec::with_capacity(count.min(rest.len() / TX_ENTRY_HEADER_LEN));
            let mut at = 5;
            for _ in 0..count {
                let h = decode_tx_entry_header(&body[at.min(body.len())..])?;
                let start = at + TX_ENTRY_HEADER_LEN;
                let Some(bytes) = body.get(start..start + h.len as usize) else {
                    return corrupt("entry runs past the frame".into());
                };
                out.push((h, at, bytes));
                at = start + h.len as usize;
            }
            if at != body.len() {
                return corrupt("bytes after the last entry".into());
            }
            Ok(Frame::Transactions(out))
        }
        FRAME_SOLID => {
            if rest.len() != count.saturating_mul(32) {
                return corrupt("solid marks of the wrong length".into());
            }
            Ok(Frame::Solid(
                rest.chunks_exact(32)
                    .map(|c| TxId(c.try_into().expect("chunks of 32")))
                    .collect(),
            ))
        }
        k => corrupt(format!("unknown kind {k}")),
    }
}

/// One confirmed transaction in a confirmation chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Confirmation {
    /// The transaction.
    pub tx: TxId,
    /// What the ledger did with its payload, if it carries one.
    pub outcome: Option<PayloadOutcome>,
    /// The payload it was confirmed as carrying, when that is not the payload it was stored
    /// with.
    pub payload: Option<PayloadId>,
}

/// Appends a confirmation entry: tx id (32), flags (1 outcome, 2 payload id follows),
/// outcome code (0 applied, else the conflict reason's code), then the payload id if
/// flag 2.
pub fn push_confirmation(out: &mut Vec<u8>, c: &Confirmation) {
    out.extend_from_slice(&c.tx.0);
    let mut flags = 0;
    if c.outcome.is_some() {
        flags |= CONFIRMATION_FLAG_OUTCOME;
    }
    if c.payload.is_some() {
        flags |= CONFIRMATION_FLAG_PAYLOAD;
    }
    out.push(flags);
    out.push(c.outcome.map_or(0, |o| o.code()));
    if let Some(p) = c.payload {
        out.extend_from_slice(&p.0);
    }
}

/// Decodes a confirmation chunk.
pub fn decode_confirmations(mut bytes: &[u8]) -> Result<Vec<Confirmation>> {
    let corrupt = |why: &str| Err(StoreError::Corrupt(format!("confirmation: {why}")));
    let mut out = Vec::with_capacity(bytes.len() / CONFIRMATION_LEN);
    while !bytes.is_empty() {
        if bytes.len() < CONFIRMATION_LEN {
            return corrupt("truncated");
        }
        let flags = bytes[32];
        if flags & !(CONFIRMATION_FLAG_OUTCOME | CONFIRMATION_FLAG_PAYLOAD) != 0 {
            return corrupt("unknown flags");
        }
        let outcome = match (flags & CONFIRMATION_FLAG_OUTCOME != 0, bytes[33]) {
            (false, 0) => None,
            (false, _) => return corrupt("outcome without its flag"),
            (true, code) => match decode_outcome(code) {
                Some(o) => Some(o),
                None => return corrupt("unknown conflict reason"),
            },
        };
        let mut tx = [0u8; 32];
        tx.copy_from_slice(&bytes[..32]);
        let mut len = CONFIRMATION_LEN;
        let payload = if flags & CONFIRMATION_FLAG_PAYLOAD != 0 {
            let Some(p) = bytes.get(CONFIRMATION_LEN..CONFIRMATION_LEN + 32) else {
                return corrupt("truncated payload id");
            };
            len += 32;
            Some(PayloadId(p.try_into().expect("32 bytes")))
        } else {
            None
        };
        out.push(Confirmation {
            tx: TxId(tx),
            outcome,
            payload,
        });
        bytes = &bytes[len..];
    }
    Ok(out)
}

/// An outcome from its one-byte code: 0 applied, else a conflict reason.
pub fn decode_outcome(code: u8) -> Option<PayloadOutcome> {
    if code == 0 {
        Some(PayloadOutcome::Applied)
    } else {
        ConflictReason::from_code(code).map(PayloadOutcome::Conflicting)
    }
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

    fn entry() -> impl Strategy<Value = (TxEntryHeader, Vec<u8>)> {
        (
            any::<[u8; 32]>(),
            any::<u64>(),
            any::<bool>(),
            any::<Option<[u8; 32]>>(),
            proptest::collection::vec(any::<u8>(), 0..400),
        )
            .prop_map(|(id, arrival, solid, pid, bytes)| {
                (
                    TxEntryHeader {
                        id: TxId(id),
                        arrival,
                        solid,
                        payload: pid.map(PayloadId),
                        len: bytes.len() as u32,
                    },
                    bytes,
                )
            })
    }

    proptest! {
        /// Every batch of entries survives a transactions frame, with each entry's offset.
        #[test]
        fn transaction_frames_round_trip(entries in proptest::collection::vec(entry(), 0..8)) {
            let mut body = transactions_body_start(entries.len() as u32);
            let mut offsets = Vec::new();
            for (h, b) in &entries {
                offsets.push(body.len());
                push_tx_entry(&mut body, h, b);
            }
            let Frame::Transactions(got) = decode_body(&body).unwrap() else {
                panic!("wrong kind");
            };
            prop_assert_eq!(got.len(), entries.len());
            for ((h, at, b), ((want, wb), off)) in got.iter().zip(entries.iter().zip(offsets)) {
                prop_assert_eq!(h, want);
                prop_assert_eq!(*at, off);
                prop_assert_eq!(*b, &wb[..]);
                prop_assert_eq!(&decode_tx_entry_header(&body[off..]).unwrap(), want);
            }
        }

        /// Confirmation entries round-trip, with and without their own payload id.
        #[test]
        fn confirmations_round_trip(
            list in proptest::collection::vec(
                (any::<[u8; 32]>(), outcome(), any::<Option<[u8; 32]>>()), 0..10),
        ) {
            let list: Vec<Confirmation> = list
                .into_iter()
                .map(|(tx, outcome, p)| Confirmation { tx: TxId(tx), outcome, payload: p.map(PayloadId) })
                .collect();
            let mut bytes = Vec::new();
            for c in &list {
                push_confirmation(&mut bytes, c);
            }
            prop_assert_eq!(decode_confirmations(&bytes).unwrap(), list);
        }

        /// Tombstones round-trip: milestone, ids and entry points, in order.
        #[test]
        fn tombstones_round_trip(
            milestone in any::<u32>(),
            txs in proptest::collection::vec(any::<[u8; 32]>(), 0..20),
            eps in proptest::collection::vec((any::<[u8; 32]>(), any::<u32>()), 0..10),
        ) {
            let t = Tombstone {
                milestone,
                txs: txs.into_iter().map(TxId).collect(),
                entry_points: eps.into_iter().map(|(id, m)| (TxId(id), m)).collect(),
            };
            let body = tombstone_body(t.milestone, &t.txs, &t.entry_points);
            prop_assert_eq!(
                body.len(),
                TOMBSTONE_HEADER_LEN + 32 * t.txs.len() + ENTRY_POINT_LEN * t.entry_points.len()
            );
            prop_assert_eq!(decode_body(&body).unwrap(), Frame::Prune(t.clone()));
            // Any shorter or longer body is refused.
            prop_assert!(matches!(decode_body(&body[..body.len() - 1]), Err(StoreError::Corrupt(_))));
            let mut longer = body.clone();
            longer.push(0);
            prop_assert!(matches!(decode_body(&longer), Err(StoreError::Corrupt(_))));
        }

        /// Arbitrary bytes decode or are `Corrupt`, never a panic.
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            for r in [
                decode_body(&bytes).map(drop),
                decode_confirmations(&bytes).map(drop),
                decode_tx_entry_header(&bytes).map(drop),
                decode_confirmation_key(&bytes).map(drop),
                decode_pruned_key(&bytes).map(drop),
                check_pruned_bitmap(&bytes),
                decode_account(&bytes).map(drop),
            ] {
                match r {
                    Ok(()) | Err(StoreError::Corrupt(_)) => {}
                    Err(e) => prop_assert!(false, "unexpected error {e}"),
                }
            }
            let _ = pruned_bit(&bytes, bytes.len() * 8 + 3);
        }

        /// Bodies starting with the tombstone kind, with counts that claim more than the
        /// body holds (or overflow), are refused without a panic or a huge allocation.
        #[test]
        fn tombstone_decoder_never_panics(
            n in any::<u32>(),
            m in any::<u32>(),
            e in any::<u32>(),
            rest in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut body = vec![FRAME_PRUNE];
            body.extend_from_slice(&n.to_be_bytes());
            body.extend_from_slice(&m.to_be_bytes());
            body.extend_from_slice(&e.to_be_bytes());
            body.extend_from_slice(&rest);
            match decode_body(&body) {
                Ok(Frame::Prune(t)) => {
                    prop_assert_eq!(t.txs.len(), n as usize);
                    prop_assert_eq!(t.entry_points.len(), e as usize);
                    prop_assert_eq!(tombstone_body(t.milestone, &t.txs, &t.entry_points), body);
                }
                Ok(other) => prop_assert!(false, "decoded as {other:?}"),
                Err(StoreError::Corrupt(_)) => {}
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }
    }

    #[test]
    fn pruned_bitmaps_and_keys() {
        let mut b = Vec::new();
        for i in [0, 9, CONFIRMATIONS_PER_CHUNK - 1] {
            assert!(!pruned_bit(&b, i));
            set_pruned_bit(&mut b, i);
            assert!(pruned_bit(&b, i));
        }
        assert_eq!(b.len(), CONFIRMATIONS_PER_CHUNK / 8);
        assert!(!pruned_bit(&b, 1) && !pruned_bit(&b, 5_000));
        check_pruned_bitmap(&b).unwrap();
        b.push(0);
        assert!(matches!(
            check_pruned_bitmap(&b),
            Err(StoreError::Corrupt(_))
        ));
        // A format-4 chunk's bitmap is larger, and checked with its own bound.
        b.resize(CONFIRMATIONS_PER_CHUNK_V4 / 8, 0);
        check_pruned_bitmap_of(&b, CONFIRMATIONS_PER_CHUNK_V4).unwrap();
        assert!(check_pruned_bitmap(&b).is_err());
        assert_eq!(decode_pruned_key(&pruned_key(3, 7)).unwrap(), (3, 7));
        assert!(decode_pruned_key(&confirmation_key(3, 7)).is_err());
        assert!(decode_confirmation_key(&pruned_key(3, 7)).is_err());
    }

    #[test]
    fn log_segment_names() {
        assert_eq!(log_segment_name(0), LOG_FILE);
        assert_eq!(log_segment_name(12), "transactions.log.12");
        for id in [0, 1, 12, u64::MAX] {
            assert_eq!(parse_log_segment_name(&log_segment_name(id)), Some(id));
        }
        for name in [
            "transactions.log.0",
            "transactions.log.01",
            "transactions.log.",
            "transactions.log.x",
            "transactions.log1",
            "db",
            "conf",
        ] {
            assert_eq!(parse_log_segment_name(name), None, "{name}");
        }
    }

    #[test]
    fn malformed_values_are_corrupt() {
        let h = TxEntryHeader {
            id: TxId([1; 32]),
            arrival: 5,
            solid: true,
            payload: None,
            len: 2,
        };
        let mut body = transactions_body_start(1);
        push_tx_entry(&mut body, &h, b"tx");
        let mut bad_flags = body.clone();
        bad_flags[5 + 40] |= 0x80;
        let mut trailing = body.clone();
        trailing.push(0);
        let mut too_many = body.clone();
        too_many[4] = 2;
        let mut unknown_kind = body.clone();
        unknown_kind[0] = 9;
        for b in [
            &body[..body.len() - 1],
            &bad_flags[..],
            &trailing[..],
            &too_many[..],
            &unknown_kind[..],
        ] {
            assert!(
                matches!(decode_body(b), Err(StoreError::Corrupt(_))),
                "{b:?}"
            );
        }
        let mut c = Vec::new();
        push_confirmation(
            &mut c,
            &Confirmation {
                tx: TxId([2; 32]),
                outcome: Some(PayloadOutcome::Applied),
                payload: None,
            },
        );
        c[33] = 200;
        assert!(matches!(
            decode_confirmations(&c),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            decode_account(&[0; 15]),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            key_id("x", &[b'a'; 5]),
            Err(StoreError::Corrupt(_))
        ));
        assert!(!body_matches(b"abc", crc32fast::hash(b"abd")));
    }

    /// Keys of different kinds never collide, and confirmation chunks sort by milestone
    /// then chunk.
    #[test]
    fn keys_are_prefixed_and_ordered() {
        let id = [7u8; 32];
        let keys = [
            milestone_key(7).to_vec(),
            confirmation_key(7, 0).to_vec(),
            account_key(&Address(id)).to_vec(),
            channel_key(&ChannelId(id)).to_vec(),
            pruned_key(7, 0).to_vec(),
            payload_base_key(&PayloadId(id)).to_vec(),
            FORMAT_KEY.to_vec(),
        ];
        let firsts: std::collections::HashSet<u8> = keys.iter().map(|k| k[0]).collect();
        assert_eq!(firsts.len(), keys.len());
        assert!(confirmation_key(1, 300) < confirmation_key(2, 0));
        assert!(confirmation_key(256, 0) > confirmation_key(255, 9));
        assert_eq!(
            decode_confirmation_key(&confirmation_key(9, 4)).unwrap(),
            (9, 4)
        );
    }

    #[test]
    fn accounts_frames_and_checkpoint_headers_round_trip_and_refuse_damage() {
        let accounts: Vec<(Address, Account)> = (0..3u8)
            .map(|i| {
                (
                    Address([i; 32]),
                    Account {
                        balance: u64::from(i) * 1_000 + 7,
                        next_seq: u64::from(i),
                    },
                )
            })
            .collect();
        let body = accounts_body(42, &accounts);
        assert_eq!(
            body.len(),
            ACCOUNTS_BODY_HEADER_LEN + 3 * ACCOUNT_RECORD_LEN
        );
        assert_eq!(
            decode_body(&body).unwrap(),
            Frame::Accounts(AccountsFrame {
                milestone: 42,
                accounts: accounts.clone(),
            })
        );
        // One byte short, or a record count that disagrees with the length.
        assert!(decode_body(&body[..body.len() - 1]).is_err());
        let mut wrong = body.clone();
        wrong[4] = 4;
        assert!(decode_body(&wrong).is_err());

        let h = AccountsHeader {
            milestone: 9,
            count: 3,
            crc: 0xdead_beef,
        };
        let bytes = encode_accounts_header(&h);
        let len = (ACCOUNTS_HEADER_LEN + 3 * ACCOUNT_RECORD_LEN) as u64;
        assert_eq!(decode_accounts_header(&bytes, len).unwrap(), h);
        assert!(decode_accounts_header(&bytes, len + 1).is_err());
        assert!(decode_accounts_header(&bytes[..20], len).is_err());
        let mut magic = bytes;
        magic[0] ^= 1;
        assert!(decode_accounts_header(&magic, len).is_err());
        // A count whose size overflows is refused, not wrapped.
        let huge = encode_accounts_header(&AccountsHeader {
            count: u64::MAX,
            ..h
        });
        assert!(decode_accounts_header(&huge, len).is_err());
    }
}

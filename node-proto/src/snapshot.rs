//! Snapshot files: the ledger state at a milestone, that milestone's transaction (with its
//! committee signatures), the solid entry points and the committee, so a node can start
//! from it instead of from the genesis.
//!
//! # Format (version 1)
//! ```text
//! "TNGLSNAP"                      8 bytes
//! frame: Header                   the counts, the milestone, the committee
//! frame: Section::Accounts ...    up to 4,096 accounts each, ascending address
//! frame: Section::Channels ...    up to 4,096 channels each, ascending id
//! frame: Section::EntryPoints ... up to 4,096 each
//! frame: Section::End             BLAKE2b-256 of every byte before this frame
//! ```
//! A frame is its body's length (u32 LE), the CRC-32 of the body (u32 LE) and the body
//! (MessagePack). The file is written and read in one pass, holding one frame at a time
//! on either side; the reader checks each frame's CRC, the counts against the header and
//! the final checksum, and never panics on any input. What the state is worth is checked
//! by [`Snapshot::verify`]: the milestone's signatures against the committee of the
//! genesis, and the ledger digest and state root it signed against the state.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use dag_core::ledger::LedgerState;
use dag_core::validate::{validate, ValidationParams};
use dag_core::{
    codec, Account, Address, Channel, ChannelId, Digest, Genesis, MilestoneIndex, NetworkId,
    Payload, TxId,
};

/// First bytes of a snapshot file.
pub const MAGIC: &[u8; 8] = b"TNGLSNAP";
/// Version of the format written.
pub const VERSION: u16 = 1;
/// Entries per section frame.
pub const CHUNK: usize = 4096;
/// Largest frame accepted (a chunk of 4,096 channels is about 600 KiB).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;
/// The transactions confirmed by this many milestones up to the snapshot's (those the
/// snapshotting node still holds) are its solid entry points, with those of its last prune.
///
/// Why 16: a node started from the snapshot must know as confirmed every transaction that a
/// later milestone's cone can reach and that its peers know as confirmed, or it computes
/// another cone and halts on the confirmed root. Tips are chosen within restricted URTS's
/// below-max-depth window (15 milestones), so approvals reach back about that far; with 4,
/// a loaded machine at 100 ms milestones approved a transaction confirmed 5 milestones
/// before the snapshot, and the new node halted at the next milestone
/// (`node/tests/snapshot_join.rs`, 2 runs of 5). A transaction made by hand that approves
/// something confirmed earlier still could; refusing such approvals on arrival (a
/// below-max-depth rule in ingest) would close it and is not built.
pub const ENTRY_POINT_MILESTONES: MilestoneIndex = 16;

/// What a snapshot holds, before its sections.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Format version ([`VERSION`]).
    pub version: u16,
    /// The network.
    pub network_id: NetworkId,
    /// Its name, from the genesis.
    pub network_name: String,
    /// The milestone the state is at.
    pub milestone: MilestoneIndex,
    /// The ledger digest after it.
    pub ledger_digest: Digest,
    /// Total supply.
    pub supply: u64,
    /// Number of accounts in the sections.
    pub accounts: u64,
    /// Number of channels in the sections.
    pub channels: u64,
    /// Number of solid entry points in the sections.
    pub entry_points: u64,
    /// The committee (addresses) whose signatures the milestone carries, and how many are
    /// needed.
    pub committee: Vec<Address>,
    /// Signatures needed.
    pub threshold: u8,
    /// When the snapshot was made (ms since the Unix epoch).
    pub created_at: u64,
    /// The canonical bytes of the milestone's transaction, signatures included.
    #[serde(with = "serde_bytes")]
    pub milestone_tx: Vec<u8>,
    /// Set for a **delta** snapshot: the full snapshot it applies to. A delta's sections
    /// hold only the accounts and channels whose values differ from the base's (the counts
    /// are theirs), and its entry points are all of those at its own milestone.
    #[serde(default)]
    pub base: Option<Base>,
    /// The committee rotations applied up to the milestone, oldest first: the evidence of
    /// its committee (each rotation is checked against the committee before it, starting
    /// from the genesis one). Empty while the genesis committee is in office.
    #[serde(default)]
    pub rotations: Vec<dag_core::Rotation>,
}

/// The full snapshot a delta applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base {
    /// Its milestone.
    pub milestone: MilestoneIndex,
    /// Its file checksum ([`end_digest`]).
    pub digest: Digest,
}

/// One frame after the header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Section {
    /// Accounts, ascending address.
    Accounts(Vec<(Address, Account)>),
    /// Channels, ascending id.
    Channels(Vec<(ChannelId, Channel)>),
    /// Solid entry points: transactions below the snapshot that later ones approve, with
    /// the milestone that confirmed each.
    EntryPoints(Vec<(TxId, MilestoneIndex)>),
    /// The end: BLAKE2b-256 of every byte of the file before this frame.
    End(Digest),
}

/// A whole snapshot in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The header.
    pub header: Header,
    /// The ledger state at [`Header::milestone`].
    pub state: LedgerState,
    /// The solid entry points.
    pub entry_points: Vec<(TxId, MilestoneIndex)>,
}

/// Why a snapshot was refused.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading or writing failed.
    #[error("snapshot I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a snapshot of this version, or are damaged.
    #[error("not a valid snapshot: {0}")]
    Format(String),
    /// Well-formed, but its content is not what its milestone signed, or not of this
    /// network.
    #[error("snapshot refused: {0}")]
    Refused(String),
}

fn format(why: impl Into<String>) -> SnapshotError {
    SnapshotError::Format(why.into())
}

/// Writes a snapshot in one pass.
pub struct Writer<W: Write> {
    out: W,
    hashed: Hasher,
}

type Hasher = blake2::Blake2b<blake2::digest::consts::U32>;

impl<W: Write> Writer<W> {
    /// Starts a snapshot: the magic and the header.
    pub fn new(out: W, header: &Header) -> Result<Self, SnapshotError> {
        use blake2::Digest as _;
        let mut w = Writer {
            out,
            hashed: Hasher::new(),
        };
        w.raw(MAGIC)?;
        let body = rmp_serde::to_vec_named(header).map_err(|e| format(e.to_string()))?;
        w.frame(&body)?;
        Ok(w)
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        use blake2::Digest as _;
        self.hashed.update(bytes);
        self.out.write_all(bytes)?;
        Ok(())
    }

    fn frame(&mut self, body: &[u8]) -> Result<(), SnapshotError> {
        let len = u32::try_from(body.len())
            .ok()
            .filter(|l| (*l as usize) <= MAX_FRAME)
            .ok_or_else(|| format("frame too large"))?;
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(&len.to_le_bytes());
        head[4..].copy_from_slice(&crc32fast::hash(body).to_le_bytes());
        self.raw(&head)?;
        self.raw(body)
    }

    /// Writes one section frame.
    pub fn section(&mut self, s: &Section) -> Result<(), SnapshotError> {
        let body = rmp_serde::to_vec(s).map_err(|e| format(e.to_string()))?;
        self.frame(&body)
    }

    /// Writes `items` in sections of [`CHUNK`], made by `make`.
    pub fn chunked<T: Clone>(
        &mut self,
        items: &[T],
        make: impl Fn(Vec<T>) -> Section,
    ) -> Result<(), SnapshotError> {
        for c in items.chunks(CHUNK) {
            self.section(&make(c.to_vec()))?;
        }
        Ok(())
    }

    /// Writes the end frame and returns the output and the file's checksum (the one the
    /// end frame carries, which names the file: [`end_digest`]).
    pub fn finish(mut self) -> Result<(W, Digest), SnapshotError> {
        use blake2::Digest as _;
        let sum = Digest(self.hashed.clone().finalize().into());
        let body = rmp_serde::to_vec(&Section::End(sum)).map_err(|e| format(e.to_string()))?;
        self.frame(&body)?;
        self.out.flush()?;
        Ok((self.out, sum))
    }
}

/// Writes a whole snapshot; returns its checksum.
pub fn write(out: impl Write, snapshot: &Snapshot) -> Result<Digest, SnapshotError> {
    let mut w = Writer::new(out, &snapshot.header)?;
    w.chunked(&snapshot.state.accounts, Section::Accounts)?;
    w.chunked(&snapshot.state.channels, Section::Channels)?;
    w.chunked(&snapshot.entry_points, Section::EntryPoints)?;
    Ok(w.finish()?.1)
}

/// Length of the end frame (its head and its body): the same for every file.
fn end_frame_len() -> usize {
    8 + rmp_serde::to_vec(&Section::End(Digest([0; 32])))
        .map(|b| b.len())
        .unwrap_or(0)
}

/// The checksum in the end frame of the snapshot file of `len` bytes read by `input`,
/// without reading the rest: what names a file a node serves to peers. The frame's own
/// CRC is checked; the file as a whole is checked only by reading it ([`read`]).
pub fn end_digest(mut input: impl Read + std::io::Seek, len: u64) -> Result<Digest, SnapshotError> {
    let n = end_frame_len();
    if len < (MAGIC.len() + n) as u64 {
        return Err(format("too short for a snapshot"));
    }
    input.seek(std::io::SeekFrom::Start(len - n as u64))?;
    let mut tail = vec![0u8; n];
    input.read_exact(&mut tail)?;
    let body = &tail[8..];
    let crc = u32::from_le_bytes([tail[4], tail[5], tail[6], tail[7]]);
    if u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as usize != body.len()
        || crc32fast::hash(body) != crc
    {
        return Err(format("no end frame at the end"));
    }
    match rmp_serde::from_slice(body) {
        Ok(Section::End(d)) => Ok(d),
        _ => Err(format("no end frame at the end")),
    }
}

/// Reads a snapshot in one pass.
pub struct Reader<R: Read> {
    input: R,
    hashed: Hasher,
    done: bool,
    end: Option<Digest>,
}

impl<R: Read> Reader<R> {
    /// Reads the magic and the header.
    pub fn open(input: R) -> Result<(Self, Header), SnapshotError> {
        use blake2::Digest as _;
        let mut r = Reader {
            input,
            hashed: Hasher::new(),
            done: false,
            end: None,
        };
        let mut magic = [0u8; 8];
        r.exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(format("no snapshot magic at the start"));
        }
        let body = r.frame()?;
        let header: Header =
            rmp_serde::from_slice(&body).map_err(|e| format(format!("header: {e}")))?;
        if header.version != VERSION {
            return Err(format(format!(
                "format version {} (this node reads {VERSION})",
                header.version
            )));
        }
        Ok((r, header))
    }

    fn exact(&mut self, buf: &mut [u8]) -> Result<(), SnapshotError> {
        use blake2::Digest as _;
        self.input.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                format("truncated")
            } else {
                SnapshotError::Io(e)
            }
        })?;
        self.hashed.update(&*buf);
        Ok(())
    }

    fn frame(&mut self) -> Result<Vec<u8>, SnapshotError> {
        let mut head = [0u8; 8];
        self.exact(&mut head)?;
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_FRAME {
            return Err(format(format!(
                "frame of {len} bytes (at most {MAX_FRAME})"
            )));
        }
        let mut body = vec![0u8; len];
        self.exact(&mut body)?;
        if crc32fast::hash(&body) != crc {
            return Err(format("frame checksum mismatch"));
        }
        Ok(body)
    }

    /// The next section; `None` after the end frame (whose checksum was checked).
    pub fn next_section(&mut self) -> Result<Option<Section>, SnapshotError> {
        use blake2::Digest as _;
        if self.done {
            return Ok(None);
        }
        let before: [u8; 32] = self.hashed.clone().finalize().into();
        let body = self.frame()?;
        let s: Section =
            rmp_serde::from_slice(&body).map_err(|e| format(format!("section: {e}")))?;
        if let Section::End(sum) = &s {
            if sum.0 != before {
                return Err(format("file checksum mismatch"));
            }
            let mut rest = [0u8; 1];
            if self.input.read(&mut rest)? != 0 {
                return Err(format("bytes after the end frame"));
            }
            self.done = true;
            self.end = Some(*sum);
            return Ok(None);
        }
        Ok(Some(s))
    }
}

/// Reads a whole snapshot: every frame checked, the counts equal to the header's, keys
/// strictly ascending. Not yet [`Snapshot::verify`]-ed.
pub fn read(input: impl Read) -> Result<Snapshot, SnapshotError> {
    read_with_digest(input).map(|(s, _)| s)
}

/// [`read`], also returning the file's checksum (what a delta names its base by).
pub fn read_with_digest(input: impl Read) -> Result<(Snapshot, Digest), SnapshotError> {
    let (mut r, header) = Reader::open(input)?;
    let mut state = LedgerState {
        network_id: header.network_id,
        supply: header.supply,
        confirmed_index: header.milestone,
        digest: header.ledger_digest,
        accounts: Vec::new(),
        channels: Vec::new(),
        rotations: header.rotations.clone(),
    };
    let mut entry_points = Vec::new();
    let over = |n: usize, max: u64| n as u64 > max;
    while let Some(s) = r.next_section()? {
        match s {
            Section::Accounts(v) => {
                state.accounts.extend(v);
                if over(state.accounts.len(), header.accounts) {
                    return Err(format("more accounts than the header says"));
                }
            }
            Section::Channels(v) => {
                state.channels.extend(v);
                if over(state.channels.len(), header.channels) {
                    return Err(format("more channels than the header says"));
                }
            }
            Section::EntryPoints(v) => {
                entry_points.extend(v);
                if over(entry_points.len(), header.entry_points) {
                    return Err(format("more entry points than the header says"));
                }
            }
            Section::End(_) => {}
        }
    }
    if state.accounts.len() as u64 != header.accounts
        || state.channels.len() as u64 != header.channels
        || entry_points.len() as u64 != header.entry_points
    {
        return Err(format("fewer entries than the header says"));
    }
    if !state.accounts.windows(2).all(|w| w[0].0 < w[1].0)
        || !state.channels.windows(2).all(|w| w[0].0 < w[1].0)
    {
        return Err(format("entries out of order or repeated"));
    }
    let digest = r.end.ok_or_else(|| format("no end frame"))?;
    Ok((
        Snapshot {
            header,
            state,
            entry_points,
        },
        digest,
    ))
}

/// The entries of `current` that are not in `base` with the same value (both sorted by
/// key). Fails if `base` has a key `current` lacks (the ledger never removes one).
fn changed<K: Ord + Copy, V: PartialEq + Copy>(
    base: &[(K, V)],
    current: &[(K, V)],
) -> Result<Vec<(K, V)>, SnapshotError> {
    let gone =
        || SnapshotError::Refused("an entry of the base is gone: make a full snapshot".into());
    let mut out = Vec::new();
    let mut b = base.iter().peekable();
    for (k, v) in current {
        match b.peek() {
            Some((bk, _)) if bk < k => return Err(gone()),
            Some((bk, bv)) if bk == k => {
                if bv != v {
                    out.push((*k, *v));
                }
                b.next();
            }
            _ => out.push((*k, *v)),
        }
    }
    match b.next() {
        Some(_) => Err(gone()),
        None => Ok(out),
    }
}

/// `base` (sorted) with `changes` (sorted) written over it.
fn merged<K: Ord + Copy, V: Copy>(base: Vec<(K, V)>, changes: &[(K, V)]) -> Vec<(K, V)> {
    let mut out = Vec::with_capacity(base.len() + changes.len());
    let mut c = changes.iter().peekable();
    for (k, v) in base {
        while let Some((ck, cv)) = c.peek() {
            if *ck < k {
                out.push((*ck, *cv));
                c.next();
            } else {
                break;
            }
        }
        match c.peek() {
            Some((ck, cv)) if *ck == k => {
                out.push((*ck, *cv));
                c.next();
            }
            _ => out.push((k, v)),
        }
    }
    out.extend(c.copied());
    out
}

impl Snapshot {
    /// Whether this is a delta ([`Header::base`]).
    pub fn is_delta(&self) -> bool {
        self.header.base.is_some()
    }

    /// The delta from the full snapshot `base` (whose file checksum is `base_digest`) to
    /// `self`, a full snapshot of a later milestone: `self`'s header and entry points with
    /// only the accounts and channels whose values changed.
    pub fn delta_from(
        self,
        base: &Snapshot,
        base_digest: Digest,
    ) -> Result<Snapshot, SnapshotError> {
        if self.is_delta() || base.is_delta() {
            return Err(SnapshotError::Refused(
                "a delta is made between full snapshots".into(),
            ));
        }
        if base.header.network_id != self.header.network_id
            || base.header.milestone >= self.header.milestone
        {
            return Err(SnapshotError::Refused(format!(
                "no delta from milestone {} to milestone {}",
                base.header.milestone, self.header.milestone
            )));
        }
        let accounts = changed(&base.state.accounts, &self.state.accounts)?;
        let channels = changed(&base.state.channels, &self.state.channels)?;
        let mut header = self.header;
        header.accounts = accounts.len() as u64;
        header.channels = channels.len() as u64;
        header.base = Some(Base {
            milestone: base.header.milestone,
            digest: base_digest,
        });
        Ok(Snapshot {
            header,
            state: LedgerState {
                accounts,
                channels,
                ..self.state
            },
            entry_points: self.entry_points,
        })
    }

    /// Applies the delta `delta` to `self`, the full snapshot it names (file checksum
    /// `digest`): the full snapshot at the delta's milestone, still to be
    /// [`Snapshot::verify`]-ed.
    pub fn apply_delta(self, digest: Digest, delta: Snapshot) -> Result<Snapshot, SnapshotError> {
        let Some(base) = delta.header.base else {
            return Err(SnapshotError::Refused("not a delta".into()));
        };
        if self.is_delta() || base.milestone != self.header.milestone || base.digest != digest {
            return Err(SnapshotError::Refused(format!(
                "the delta applies to the snapshot of milestone {} ({}), not to this one",
                base.milestone, base.digest
            )));
        }
        if delta.header.network_id != self.header.network_id {
            return Err(SnapshotError::Refused(
                "the delta is of another network".into(),
            ));
        }
        let accounts = merged(self.state.accounts, &delta.state.accounts);
        let channels = merged(self.state.channels, &delta.state.channels);
        let mut header = delta.header;
        header.base = None;
        header.accounts = accounts.len() as u64;
        header.channels = channels.len() as u64;
        Ok(Snapshot {
            header,
            state: LedgerState {
                accounts,
                channels,
                ..delta.state
            },
            entry_points: delta.entry_points,
        })
    }
}

impl Snapshot {
    /// Checks that the snapshot is what the committee of `genesis` signed: the network, the
    /// milestone transaction (valid, a milestone of the header's index, enough committee
    /// signatures), its ledger digest, and the state's root against the one it signed.
    /// `state_root` computes the root of a ledger state (the ledger's state tree).
    pub fn verify(
        &self,
        genesis: &Genesis,
        state_root: impl FnOnce(&LedgerState) -> Digest,
    ) -> Result<(), SnapshotError> {
        let refused = |why: String| SnapshotError::Refused(why);
        let h = &self.header;
        if h.base.is_some() {
            return Err(refused(
                "it is a delta: apply it to its full snapshot first".into(),
            ));
        }
        if h.network_id != genesis.network_id() {
            return Err(refused(format!(
                "it is of network {}, the genesis defines {}",
                h.network_id,
                genesis.network_id()
            )));
        }
        if self.state.rotations != h.rotations {
            return Err(refused(
                "its state's committee rotations are not its header's".into(),
            ));
        }
        // The committee of its milestone: the genesis one, then each rotation checked
        // against the committee before it.
        let params = ValidationParams::with_rotations(genesis, &h.rotations)
            .map_err(|e| refused(format!("its committee rotations do not hold: {e}")))?;
        if (h.committee.clone(), h.threshold) != params.committee_at(h.milestone) {
            return Err(refused(
                "its committee is not the one in office at its milestone (the genesis \
                 committee and the rotations it carries)"
                    .into(),
            ));
        }
        let (tx, _) = codec::decode_with_id(&h.milestone_tx)
            .map_err(|e| refused(format!("milestone transaction: {e}")))?;
        // Checked as of its own timestamp: a snapshot is old by nature.
        validate(&h.milestone_tx, tx.timestamp, &params)
            .map_err(|e| refused(format!("milestone transaction: {e}")))?;
        let Payload::Milestone(m) = &tx.payload else {
            return Err(refused(
                "its milestone transaction carries no milestone".into(),
            ));
        };
        if m.index != h.milestone {
            return Err(refused(format!(
                "the header says milestone {}, the transaction carries {}",
                h.milestone, m.index
            )));
        }
        if m.ledger_digest != h.ledger_digest || self.state.digest != h.ledger_digest {
            return Err(refused(
                "the ledger digest is not the one the milestone signed".into(),
            ));
        }
        let root = state_root(&self.state);
        if root != m.state_root {
            return Err(refused(format!(
                "the state's root {root} is not the one the milestone signed ({})",
                m.state_root
            )));
        }
        Ok(())
    }
}

/// What a running node's snapshot is made of, as [`crate::Protocol::capture_snapshot`]
/// copies it under the core's lock: unsorted, and without the milestone transaction's
/// bytes (the driver reads them from its store).
#[derive(Clone, Debug)]
pub struct Capture {
    /// The network.
    pub network_id: NetworkId,
    /// Total supply.
    pub supply: u64,
    /// The last applied milestone.
    pub milestone: MilestoneIndex,
    /// The ledger digest after it.
    pub ledger_digest: Digest,
    /// Every account, in no order.
    pub accounts: Vec<(Address, Account)>,
    /// Every channel, in no order.
    pub channels: Vec<(ChannelId, Channel)>,
    /// Solid entry points, in no order, maybe repeated.
    pub entry_points: Vec<(TxId, MilestoneIndex)>,
    /// The transaction carrying the milestone.
    pub milestone_tx: TxId,
    /// The committee rotations applied, oldest first.
    pub rotations: Vec<dag_core::Rotation>,
}

impl Capture {
    /// Sorts the capture into a snapshot: `milestone_tx` is the canonical bytes of
    /// [`Capture::milestone_tx`] (checked), `genesis` gives the name and the committee,
    /// `now` stamps it.
    pub fn into_snapshot(
        mut self,
        genesis: &Genesis,
        milestone_tx: Vec<u8>,
        now: u64,
    ) -> Result<Snapshot, SnapshotError> {
        if codec::decode_with_id(&milestone_tx).map(|(_, id)| id).ok() != Some(self.milestone_tx) {
            return Err(SnapshotError::Refused(
                "the milestone transaction's bytes do not match its id".into(),
            ));
        }
        self.accounts.sort_unstable_by_key(|e| e.0);
        self.channels.sort_unstable_by_key(|e| e.0);
        let state = LedgerState {
            network_id: self.network_id,
            supply: self.supply,
            confirmed_index: self.milestone,
            digest: self.ledger_digest,
            accounts: self.accounts,
            channels: self.channels,
            rotations: self.rotations,
        };
        Ok(assemble(
            genesis,
            state,
            self.entry_points,
            milestone_tx,
            now,
        ))
    }
}

/// A snapshot of `state` (sorted) at its milestone, whose transaction is `milestone_tx`;
/// the entry points are sorted and deduplicated here.
fn assemble(
    genesis: &Genesis,
    state: LedgerState,
    mut entry_points: Vec<(TxId, MilestoneIndex)>,
    milestone_tx: Vec<u8>,
    now: u64,
) -> Snapshot {
    entry_points.sort_unstable_by_key(|(id, _)| *id);
    entry_points.dedup_by_key(|(id, _)| *id);
    // The committee in office at the milestone (the ledger's rotations were each checked
    // when applied; `verify` checks them again on the reading side).
    let (committee, threshold) =
        dag_core::CommitteeSchedule::from_rotations(genesis, &state.rotations)
            .map(|s| {
                let e = s.at(state.confirmed_index);
                (e.committee.clone(), e.threshold)
            })
            .unwrap_or_else(|_| (genesis.committee.clone(), genesis.threshold));
    let header = Header {
        version: VERSION,
        network_id: state.network_id,
        network_name: genesis.network_name.clone(),
        milestone: state.confirmed_index,
        ledger_digest: state.digest,
        supply: state.supply,
        accounts: state.accounts.len() as u64,
        channels: state.channels.len() as u64,
        entry_points: entry_points.len() as u64,
        committee,
        threshold,
        created_at: now,
        milestone_tx,
        base: None,
        rotations: state.rotations.clone(),
    };
    Snapshot {
        header,
        state,
        entry_points,
    }
}

/// A snapshot of what `store` holds: its ledger at its confirmed milestone, that
/// milestone's transaction, its solid entry points, and the committee of `genesis`. `now`
/// stamps it. Fails if the store has no ledger or lacks the milestone's transaction (a
/// snapshot at the genesis, milestone 0, is refused: there is nothing to start from).
pub fn from_store(
    store: &dyn dag_core::store::Store,
    genesis: &Genesis,
    now: u64,
) -> Result<Snapshot, SnapshotError> {
    let storage = |e: dag_core::store::StoreError| SnapshotError::Format(format!("store: {e}"));
    let state = store
        .load_ledger()
        .map_err(storage)?
        .ok_or_else(|| SnapshotError::Refused("the store holds no ledger".into()))?;
    let index = state.confirmed_index;
    if index == 0 {
        return Err(SnapshotError::Refused(
            "no milestone was applied yet: start from the genesis".into(),
        ));
    }
    let record = store.milestone(index).map_err(storage)?.ok_or_else(|| {
        SnapshotError::Refused(format!("the record of milestone {index} is not stored"))
    })?;
    let milestone_tx = store
        .transaction(&record.tx)
        .map_err(storage)?
        .ok_or_else(|| {
            SnapshotError::Refused(format!(
                "the transaction of milestone {index} is not stored"
            ))
        })?;
    // Entry points: those of the store's last prune, and every transaction confirmed by
    // the last few milestones, which transactions issued after the snapshot approve (after
    // a milestone the network's tips are its transaction and what it confirmed).
    let mut entry_points = store
        .pruned()
        .map_err(storage)?
        .map(|p| p.entry_points)
        .unwrap_or_default();
    let from = index.saturating_sub(ENTRY_POINT_MILESTONES - 1).max(1);
    let mut recent = Vec::new();
    let mut unconfirmed = Vec::new();
    store
        .for_each_transaction(&mut |id, _, meta| match meta.confirmed_by {
            Some(ms) if (from..=index).contains(&ms) => recent.push((*id, ms)),
            Some(_) => {}
            None => unconfirmed.push(*id),
        })
        .map_err(storage)?;
    entry_points.extend(recent);
    // The confirmed parents of unconfirmed transactions, however old (see
    // `Protocol::capture_snapshot`).
    for id in unconfirmed {
        let Some(bytes) = store.transaction(&id).map_err(storage)? else {
            continue;
        };
        let Ok(tx) = codec::decode(&bytes) else {
            continue;
        };
        for p in tx.parents {
            if let Some(ms) = store
                .metadata(&p)
                .map_err(storage)?
                .and_then(|m| m.confirmed_by)
            {
                entry_points.push((p, ms));
            }
        }
    }
    Ok(assemble(genesis, state, entry_points, milestone_tx, now))
}

/// Writes a verified snapshot into an empty store, so that a node restored from it
/// ([`crate::restore_from_store`]) starts at the snapshot's milestone: the ledger, the
/// milestone's transaction, and a prune state whose entry points are the snapshot's plus
/// that transaction. Call [`Snapshot::verify`] first. Refuses a store that holds a ledger.
pub fn import(store: &dyn dag_core::store::Store, s: &Snapshot) -> Result<(), SnapshotError> {
    use dag_core::store::{PruneBatch, TxEntry, TxMeta};
    let storage = |e: dag_core::store::StoreError| SnapshotError::Refused(format!("store: {e}"));
    if store.load_ledger().map_err(storage)?.is_some() {
        return Err(SnapshotError::Refused(
            "the database already holds a ledger: start from a snapshot only with an empty one"
                .into(),
        ));
    }
    let (tx, id) = codec::decode_with_id(&s.header.milestone_tx)
        .map_err(|e| SnapshotError::Refused(format!("milestone transaction: {e}")))?;
    store.init_ledger(&s.state).map_err(storage)?;
    store
        .put_transactions(&[TxEntry {
            id,
            bytes: &s.header.milestone_tx,
            meta: TxMeta::new(tx.timestamp, true, None),
        }])
        .map_err(storage)?;
    let mut entry_points = s.entry_points.clone();
    entry_points.push((id, s.header.milestone));
    store
        .prune(&PruneBatch {
            milestone: s.header.milestone,
            txs: Vec::new(),
            entry_points,
        })
        .map_err(storage)?;
    store.flush().map_err(storage)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::DevNetwork;
    use crate::{restore_from_store, ProtocolConfig};
    use dag_core::ledger::state_root_of;
    use dag_core::store::MemStore;

    /// A store after three milestones of payments from a node of `net`.
    fn store_with_history(net: &DevNetwork) -> MemStore {
        history(net).0
    }

    /// The same, with the issuing core.
    fn history(net: &DevNetwork) -> (MemStore, crate::Protocol) {
        let store = MemStore::new();
        let config = ProtocolConfig {
            milestone_signer: Some((0, net.committee.clone())),
            ..ProtocolConfig::default()
        };
        let t0 = DevNetwork::GENESIS_TIME_MS;
        let (mut p, _) = restore_from_store(net.genesis.clone(), config, &store, t0).unwrap();
        let mut now = t0 + 10;
        for m in 0..3u64 {
            let pay: Vec<_> = (0..3)
                .map(|k| net.pay(&net.faucet, m * 3 + k, Address([k as u8 + 1; 32]), 10))
                .collect();
            now = DevNetwork::milestone_round(&mut p, &store, pay, now);
        }
        assert_eq!(p.ledger().confirmed_index(), 3);
        (store, p)
    }

    /// A node started from a snapshot (nothing before its milestone) follows the network:
    /// it takes the next milestone's cone from the issuer and applies it to the same
    /// digest, chain link and state root.
    #[test]
    fn a_node_started_from_a_snapshot_follows_the_next_milestone() {
        let net = DevNetwork::new("snap", 2);
        let (store, mut issuer) = history(&net);
        let s = from_store(&store, &net.genesis, 42).unwrap();
        s.verify(&net.genesis, state_root_of).unwrap();
        let fresh = MemStore::new();
        import(&fresh, &s).unwrap();
        assert!(
            import(&fresh, &s).is_err(),
            "a store with a ledger is refused"
        );
        let t0 = DevNetwork::GENESIS_TIME_MS;
        let (mut follower, report) = restore_from_store(
            net.genesis.clone(),
            ProtocolConfig::default(),
            &fresh,
            t0 + 3500,
        )
        .unwrap();
        assert_eq!(report.pruned_milestone, 3);
        assert_eq!(follower.ledger().digest(), issuer.ledger().digest());
        // Milestone 4 at the issuer; its new transactions go to the follower.
        let pay = vec![net.pay(&net.faucet, 9, Address([9; 32]), 5)];
        for r in issuer.submit_payloads_inline(pay, t0 + 3600) {
            r.unwrap();
        }
        issuer.handle_tick(t0 + 4000);
        issuer.run_work_inline();
        let mut new = Vec::new();
        while let Some(w) = issuer.poll_store_write() {
            if let crate::StoreWrite::Transactions(txs) = w {
                new.extend(txs.into_iter().map(|t| t.bytes));
            }
        }
        let items: Vec<(&[u8], dag_core::TxId, bool)> = new
            .iter()
            .map(|b| (b.as_slice(), dag_core::codec::id_of_encoding(b), true))
            .collect();
        let checked = crate::validate_from_peers(&follower.validator(), &items, t0 + 4001);
        let peer = crate::peering::PeerKey([7; 32]);
        follower
            .handle_peer_transactions(checked.into_iter().map(|v| (v, peer)).collect(), t0 + 4001);
        assert_eq!(follower.halted(), None);
        assert_eq!(follower.ledger().confirmed_index(), 4);
        assert_eq!(follower.ledger().digest(), issuer.ledger().digest());
        assert_eq!(follower.ledger().state_root(), issuer.ledger().state_root());
    }

    fn bytes_of(s: &Snapshot) -> Vec<u8> {
        let mut out = Vec::new();
        write(&mut out, s).unwrap();
        out
    }

    /// A delta carries what changed between two full snapshots; applied to the first it
    /// gives the second, which verifies; a wrong base or a changed value is refused.
    #[test]
    fn a_delta_applied_to_its_base_gives_the_later_snapshot() {
        let net = DevNetwork::new("snap", 2);
        let (store, mut issuer) = history(&net);
        let full = from_store(&store, &net.genesis, 42).unwrap();
        let mut full_bytes = Vec::new();
        let digest = write(&mut full_bytes, &full).unwrap();
        assert_eq!(
            end_digest(std::io::Cursor::new(&full_bytes), full_bytes.len() as u64).unwrap(),
            digest
        );
        let t0 = DevNetwork::GENESIS_TIME_MS;
        // Two more milestones: an existing account paid again, new ones.
        for m in 0..2u64 {
            let pay = vec![
                net.pay(&net.faucet, 9 + m * 2, Address([1; 32]), 7),
                net.pay(&net.faucet, 10 + m * 2, Address([50 + m as u8; 32]), 3),
            ];
            for r in issuer.submit_payloads_inline(pay, t0 + 3100 + m * 1000) {
                r.unwrap();
            }
            issuer.handle_tick(t0 + 4000 + m * 1000);
            issuer.run_work_inline();
            while let Some(w) = issuer.poll_store_write() {
                w.apply_to(&store).unwrap();
            }
        }
        assert_eq!(issuer.ledger().confirmed_index(), 5);
        let later = from_store(&store, &net.genesis, 43).unwrap();
        let delta = later.clone().delta_from(&full, digest).unwrap();
        assert!(delta.is_delta());
        // The faucet, account 1 and the two new ones.
        assert_eq!(delta.state.accounts.len(), 4);
        assert!(delta.state.accounts.len() < later.state.accounts.len());
        let back = read(&bytes_of(&delta)[..]).unwrap();
        assert_eq!(back, delta);
        assert!(
            back.verify(&net.genesis, state_root_of).is_err(),
            "a delta alone is not a state"
        );
        let applied = full.clone().apply_delta(digest, back.clone()).unwrap();
        assert_eq!(applied, later);
        applied.verify(&net.genesis, state_root_of).unwrap();
        // Another base (same milestone, other file): refused.
        assert!(full
            .clone()
            .apply_delta(Digest([1; 32]), back.clone())
            .is_err());
        // A changed value: applies, but does not verify.
        let mut bad = back;
        bad.state.accounts[0].1.balance += 1;
        let err = full
            .apply_delta(digest, bad)
            .unwrap()
            .verify(&net.genesis, state_root_of);
        assert!(err.is_err());
    }

    #[test]
    fn a_snapshot_round_trips_and_verifies_against_its_milestone() {
        let net = DevNetwork::new("snap", 2);
        let store = store_with_history(&net);
        let s = from_store(&store, &net.genesis, 42).unwrap();
        assert_eq!(s.header.milestone, 3);
        assert!(s.header.accounts >= 4);
        let bytes = bytes_of(&s);
        let back = read(&bytes[..]).unwrap();
        assert_eq!(back, s);
        back.verify(&net.genesis, state_root_of).unwrap();
        // Another network's genesis refuses it.
        let other = DevNetwork::new("other", 2);
        assert!(matches!(
            back.verify(&other.genesis, state_root_of),
            Err(SnapshotError::Refused(_))
        ));
    }

    #[test]
    fn a_state_other_than_the_signed_one_is_refused() {
        let net = DevNetwork::new("snap", 2);
        let store = store_with_history(&net);
        let mut s = from_store(&store, &net.genesis, 42).unwrap();
        // A consistent-looking but different state (one unit moved between accounts).
        s.state.accounts[0].1.balance -= 1;
        s.state.accounts[1].1.balance += 1;
        let err = s.verify(&net.genesis, state_root_of).unwrap_err();
        assert!(err.to_string().contains("state's root"), "{err}");
    }

    /// Any single byte changed anywhere in the file: refused when read or when verified.
    #[test]
    fn a_snapshot_with_any_byte_changed_is_refused() {
        let net = DevNetwork::new("snap", 2);
        let store = store_with_history(&net);
        let s = from_store(&store, &net.genesis, 42).unwrap();
        let bytes = bytes_of(&s);
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                let accepted = read(&b[..])
                    .ok()
                    .filter(|t| t.verify(&net.genesis, state_root_of).is_ok());
                assert!(accepted.is_none(), "byte {i} ^ {flip:#x} was accepted");
            }
        }
        // Truncated anywhere, or with bytes after the end: refused.
        for cut in [0, 7, 8, bytes.len() / 2, bytes.len() - 1] {
            assert!(read(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(read(&longer[..]).is_err());
    }
}

//! The peer wire protocol: [`Message`]s in length-prefixed MessagePack frames.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of an rmp-encoded
//! [`Message`]. Frames larger than [`MAX_FRAME_LEN`] are refused before anything is
//! allocated, so a peer cannot make us buffer more than one capped frame. Each connection
//! carries one long-lived bidirectional stream; its first frame in each direction is a
//! [`Message::Handshake`] with the [`PROTOCOL_VERSION`] and the network id.
//!
//! [`FrameDecoder`] works on bytes only (no socket) and never panics on any input: the fuzz
//! target and the property tests feed it arbitrary bytes.

use dag_core::{Digest, Milestone, MilestoneIndex, TxId};
use serde::{Deserialize, Serialize};

/// Version of this wire protocol; peers with another version are refused. 2: committee
/// messages carry round votes (prevotes, precommits) and milestones may carry a committee
/// update, neither of which a version-1 node decodes, so the two are kept apart at the
/// handshake instead of failing on the first such message. 3: [`Message::Have`] (a relay
/// announces the transactions it got from a peer instead of sending them in full), which a
/// version-2 node would take for a protocol violation.
pub const PROTOCOL_VERSION: u16 = 3;

/// Largest frame body, bytes. A transaction is at most [`dag_core::codec::MAX_TX_SIZE`] bytes,
/// a request at most [`MAX_REQUEST_IDS`] ids: both fit with room to spare.
pub const MAX_FRAME_LEN: usize = 16 * 1024;

/// Most transaction ids in one [`Message::TransactionRequest`] or [`Message::Have`].
pub const MAX_REQUEST_IDS: usize = 256;

/// Most milestones asked for by one [`Message::MilestoneRequest`].
pub const MAX_MILESTONE_RANGE: u32 = 64;

/// Most snapshot chunks asked for by one [`Message::SnapshotRequest`].
pub const MAX_SNAPSHOT_CHUNKS: u16 = 64;

/// Bytes of snapshot file in one [`Message::SnapshotChunk`] (the last chunk of a file may
/// be shorter). With the message's framing it stays under [`MAX_FRAME_LEN`].
pub const SNAPSHOT_CHUNK_LEN: usize = 15 * 1024;

/// A snapshot file a node serves: enough to ask for it and to resume a download of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFile {
    /// The milestone its state is at.
    pub milestone: MilestoneIndex,
    /// Its length, bytes.
    pub len: u64,
    /// Its end checksum (the BLAKE2b-256 its end frame carries): names the file.
    pub digest: Digest,
    /// For a delta snapshot: the checksum of the full snapshot it applies to.
    pub base: Option<Digest>,
}

/// Most files in one [`Message::SnapshotOffer`] (a full snapshot and a delta on it).
pub const MAX_OFFERED_FILES: usize = 2;

/// Most signatures a [`CommitteeMessage`] carries (the committee's maximum size).
pub const MAX_COMMITTEE_SIGNATURES: usize = dag_core::MAX_MILESTONE_SIGNATURES;

/// Most round votes a [`CommitteeMessage`] carries (a prevote and a precommit per member).
pub const MAX_COMMITTEE_VOTES: usize = 2 * MAX_COMMITTEE_SIGNATURES;

/// A committee member's proposal of milestone `milestone.index` and the votes the sender
/// holds on it (see `node_proto::committee`): the proposed milestone and its parents, the
/// round votes on it ([`CommitteeVote`]: prevotes and precommits, each signed for one round)
/// and the milestone signatures. A proposal of round `r` is the one its proposer prevoted
/// in round `r`; a member signs the milestone itself (over
/// [`dag_core::crypto::milestone_signing_message`] of the parents and the milestone, so k
/// of them make the milestone) only once k members precommitted it in one round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitteeMessage {
    /// The round of the index in which the proposer first proposed it, as the sender knows
    /// (the proposer of round `r` of index `i` is committee member `(i + r) mod n`);
    /// informational: the signed round votes decide.
    pub round: u32,
    /// That proposer's committee index.
    pub proposer: u8,
    /// The milestone transaction's parents.
    pub parents: [TxId; 2],
    /// The proposed milestone, with the milestone signatures the sender holds (at most
    /// [`MAX_COMMITTEE_SIGNATURES`]).
    pub milestone: Milestone,
    /// Round votes on this proposal (at most [`MAX_COMMITTEE_VOTES`]).
    #[serde(default)]
    pub votes: Vec<CommitteeVote>,
}

/// A member's signed prevote or precommit for the proposal of the [`CommitteeMessage`]
/// carrying it, in one round (signing message:
/// `node_proto::committee::round_vote_message`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitteeVote {
    /// A precommit (else a prevote).
    pub precommit: bool,
    /// The round.
    pub round: u32,
    /// The member's committee index.
    pub member: u8,
    /// Its signature.
    pub signature: dag_core::Signature,
}

/// A node's progress, sent periodically to every peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Heartbeat {
    /// Highest milestone applied (solid and confirmed) by the sender.
    pub solid_milestone: MilestoneIndex,
    /// Highest milestone the sender has seen.
    pub latest_milestone: MilestoneIndex,
    /// Oldest milestone whose cone the sender still stores (0: nothing pruned).
    pub pruning_point: MilestoneIndex,
    /// Sender's clock when sent, ms (echoed back for round-trip time).
    pub sent_at_ms: u64,
    /// The `sent_at_ms` of the last heartbeat the sender received from us (0: none yet).
    pub echo_ms: u64,
}

/// One peer message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// First frame in each direction.
    Handshake {
        /// Wire protocol version ([`PROTOCOL_VERSION`]).
        version: u16,
        /// Network id (genesis hash) of the sender.
        network_id: u64,
    },
    /// A transaction's canonical bytes (gossip, or an answer to a request).
    Transaction(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Please send these transactions (missing parents).
    TransactionRequest(Vec<TxId>),
    /// Please send the milestone transactions with these indexes (inclusive).
    MilestoneRequest {
        /// First index.
        from: MilestoneIndex,
        /// Last index.
        to: MilestoneIndex,
    },
    /// Progress report.
    Heartbeat(Heartbeat),
    /// Which snapshot do you serve? Answered with [`Message::SnapshotOffer`].
    SnapshotQuery,
    /// The snapshot files the sender serves: its newest full snapshot and the newest delta
    /// on it, if any (empty: none). At most [`MAX_OFFERED_FILES`].
    SnapshotOffer(Vec<SnapshotFile>),
    /// Please send up to `count` chunks of the snapshot file `digest` from byte `offset`
    /// (a multiple of [`SNAPSHOT_CHUNK_LEN`]). A node that no longer serves that file
    /// answers with its current [`Message::SnapshotOffer`].
    SnapshotRequest {
        /// The file ([`SnapshotFile::digest`]).
        digest: Digest,
        /// First byte.
        offset: u64,
        /// Chunks, at most [`MAX_SNAPSHOT_CHUNKS`].
        count: u16,
    },
    /// Bytes `offset..offset + bytes.len()` of the snapshot file `digest`.
    SnapshotChunk {
        /// The file.
        digest: Digest,
        /// Where the bytes start.
        offset: u64,
        /// At most [`SNAPSHOT_CHUNK_LEN`] bytes.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// A committee member's proposal or vote (members only; other nodes ignore it).
    Committee(Box<CommitteeMessage>),
    /// The sender has these transactions (at most [`MAX_REQUEST_IDS`]): a relay announces
    /// the transactions it took from another peer this way; a node asks with
    /// [`Message::TransactionRequest`] for those it lacks.
    Have(Vec<TxId>),
}

/// Borrowing twin of [`Message`] for encoding without copies; same variants in the same
/// order, so both encode identically.
#[derive(Serialize)]
enum MessageRef<'a> {
    Handshake {
        version: u16,
        network_id: u64,
    },
    Transaction(#[serde(with = "serde_bytes")] &'a [u8]),
    TransactionRequest(&'a [TxId]),
    MilestoneRequest {
        from: MilestoneIndex,
        to: MilestoneIndex,
    },
    Heartbeat(&'a Heartbeat),
    SnapshotQuery,
    SnapshotOffer(&'a [SnapshotFile]),
    SnapshotRequest {
        digest: &'a Digest,
        offset: u64,
        count: u16,
    },
    SnapshotChunk {
        digest: &'a Digest,
        offset: u64,
        #[serde(with = "serde_bytes")]
        bytes: &'a [u8],
    },
    Committee(&'a CommitteeMessage),
    Have(&'a [TxId]),
}

/// A frame that cannot be decoded. The connection should be closed: framing is lost.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The length prefix exceeds [`MAX_FRAME_LEN`].
    #[error("frame of {len} bytes exceeds the {max}-byte cap")]
    FrameTooLarge {
        /// Announced length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The body is not a valid message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The message breaks a protocol limit (too many ids, range too wide).
    #[error("protocol limit: {0}")]
    Limit(String),
}

impl Message {
    /// Checks the limits the type system does not (request sizes).
    pub fn check_limits(&self) -> Result<(), WireError> {
        match self {
            Message::TransactionRequest(ids) if ids.len() > MAX_REQUEST_IDS => Err(
                WireError::Limit(format!("{} ids in one request", ids.len())),
            ),
            Message::Have(ids) if ids.len() > MAX_REQUEST_IDS => {
                Err(WireError::Limit(format!("{} ids announced", ids.len())))
            }
            Message::MilestoneRequest { from, to }
                if to < from || to - from >= MAX_MILESTONE_RANGE =>
            {
                Err(WireError::Limit(format!("milestone range {from}..={to}")))
            }
            Message::SnapshotRequest { count, offset, .. }
                if *count == 0
                    || *count > MAX_SNAPSHOT_CHUNKS
                    || offset % SNAPSHOT_CHUNK_LEN as u64 != 0 =>
            {
                Err(WireError::Limit(format!(
                    "snapshot request of {count} chunks at {offset}"
                )))
            }
            Message::SnapshotOffer(files) if files.len() > MAX_OFFERED_FILES => Err(
                WireError::Limit(format!("{} snapshot files offered", files.len())),
            ),
            Message::SnapshotChunk { bytes, .. } if bytes.len() > SNAPSHOT_CHUNK_LEN => Err(
                WireError::Limit(format!("snapshot chunk of {} bytes", bytes.len())),
            ),
            Message::Committee(c)
                if c.milestone.signatures.len() > MAX_COMMITTEE_SIGNATURES
                    || c.votes.len() > MAX_COMMITTEE_VOTES =>
            {
                Err(WireError::Limit(format!(
                    "{} committee signatures, {} votes",
                    c.milestone.signatures.len(),
                    c.votes.len()
                )))
            }
            _ => Ok(()),
        }
    }

    /// Appends this message as one frame to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let r = match self {
            Message::Handshake {
                version,
                network_id,
            } => MessageRef::Handshake {
                version: *version,
                network_id: *network_id,
            },
            Message::Transaction(b) => MessageRef::Transaction(b),
            Message::TransactionRequest(ids) => MessageRef::TransactionRequest(ids),
            Message::MilestoneRequest { from, to } => MessageRef::MilestoneRequest {
                from: *from,
                to: *to,
            },
            Message::Heartbeat(h) => MessageRef::Heartbeat(h),
            Message::SnapshotQuery => MessageRef::SnapshotQuery,
            Message::SnapshotOffer(o) => MessageRef::SnapshotOffer(o),
            Message::SnapshotRequest {
                digest,
                offset,
                count,
            } => MessageRef::SnapshotRequest {
                digest,
                offset: *offset,
                count: *count,
            },
            Message::SnapshotChunk {
                digest,
                offset,
                bytes,
            } => MessageRef::SnapshotChunk {
                digest,
                offset: *offset,
                bytes,
            },
            Message::Committee(c) => MessageRef::Committee(c),
            Message::Have(ids) => MessageRef::Have(ids),
        };
        encode_ref(&r, out);
    }
}

/// Appends a [`Message::Transaction`] frame carrying `bytes` to `out` (no copy into a
/// [`Message`] first).
pub fn encode_transaction(bytes: &[u8], out: &mut Vec<u8>) {
    encode_ref(&MessageRef::Transaction(bytes), out);
}

fn encode_ref(m: &MessageRef<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    // Writing into a Vec cannot fail, and every type here serialises.
    if rmp_serde::encode::write(out, m).is_err() {
        out.truncate(start);
        return;
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Decodes one frame body (without its length prefix).
pub fn decode_body(body: &[u8]) -> Result<Message, WireError> {
    if body.len() > MAX_FRAME_LEN {
        return Err(WireError::FrameTooLarge {
            len: body.len(),
            max: MAX_FRAME_LEN,
        });
    }
    let m: Message =
        rmp_serde::from_slice(body).map_err(|e| WireError::Malformed(e.to_string()))?;
    m.check_limits()?;
    Ok(m)
}

/// Splits a byte stream into messages. Feed it with [`FrameDecoder::push`], then take
/// messages with [`FrameDecoder::next_message`] until it returns `Ok(None)`.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    pos: usize,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next complete message, `Ok(None)` if more bytes are needed. After an error the
    /// stream is unusable.
    pub fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        let rest = &self.buf[self.pos..];
        if rest.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len > MAX_FRAME_LEN {
            return Err(WireError::FrameTooLarge {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        if rest.len() < 4 + len {
            return Ok(None);
        }
        let body = &rest[4..4 + len];
        self.pos += 4 + len;
        decode_body(body).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn samples() -> Vec<Message> {
        vec![
            Message::Handshake {
                version: PROTOCOL_VERSION,
                network_id: 42,
            },
            Message::Transaction(vec![1, 2, 3, 255]),
            Message::TransactionRequest(vec![TxId([7; 32]), TxId([9; 32])]),
            Message::Have(vec![TxId([8; 32]); MAX_REQUEST_IDS]),
            Message::MilestoneRequest { from: 3, to: 9 },
            Message::Heartbeat(Heartbeat {
                solid_milestone: 4,
                latest_milestone: 5,
                pruning_point: 0,
                sent_at_ms: 99,
                echo_ms: 98,
            }),
            Message::SnapshotQuery,
            Message::SnapshotOffer(Vec::new()),
            Message::SnapshotOffer(vec![
                SnapshotFile {
                    milestone: 7,
                    len: 1 << 33,
                    digest: Digest([3; 32]),
                    base: None,
                },
                SnapshotFile {
                    milestone: 9,
                    len: 100,
                    digest: Digest([4; 32]),
                    base: Some(Digest([3; 32])),
                },
            ]),
            Message::SnapshotRequest {
                digest: Digest([4; 32]),
                offset: 2 * SNAPSHOT_CHUNK_LEN as u64,
                count: MAX_SNAPSHOT_CHUNKS,
            },
            Message::SnapshotChunk {
                digest: Digest([5; 32]),
                offset: 0,
                bytes: vec![9; SNAPSHOT_CHUNK_LEN],
            },
            Message::Committee(Box::new(CommitteeMessage {
                round: 2,
                proposer: 3,
                parents: [TxId([1; 32]), TxId([2; 32])],
                milestone: Milestone {
                    index: 7,
                    timestamp: 1_700_000_000_000,
                    previous: TxId([3; 32]),
                    confirmed_root: Digest([4; 32]),
                    applied_root: Digest([5; 32]),
                    state_root: Digest([6; 32]),
                    ledger_digest: Digest([7; 32]),
                    signatures: vec![
                        (0, dag_core::Signature([8; 64])),
                        (3, dag_core::Signature([9; 64])),
                    ],
                    committee_update: None,
                },
                votes: vec![CommitteeVote {
                    precommit: true,
                    round: 2,
                    member: 1,
                    signature: dag_core::Signature([10; 64]),
                }],
            })),
        ]
    }

    #[test]
    fn frames_round_trip_even_when_split_byte_by_byte() {
        let mut stream = Vec::new();
        for m in samples() {
            m.encode_into(&mut stream);
        }
        encode_transaction(&[5, 6], &mut stream);
        let mut d = FrameDecoder::new();
        let mut out = Vec::new();
        for b in &stream {
            d.push(std::slice::from_ref(b));
            while let Some(m) = d.next_message().unwrap() {
                out.push(m);
            }
        }
        let mut want = samples();
        want.push(Message::Transaction(vec![5, 6]));
        assert_eq!(out, want);
        assert_eq!(d.buffered(), 0);
    }

    /// The largest committee message (every milestone signature and every round vote of
    /// the largest committee) fits in a frame.
    #[test]
    fn the_largest_committee_message_fits_in_a_frame() {
        let Message::Committee(mut c) = samples().pop().unwrap() else {
            panic!("the last sample is a committee message");
        };
        c.milestone.signatures = (0..MAX_COMMITTEE_SIGNATURES as u8)
            .map(|s| (s, dag_core::Signature([0xff; 64])))
            .collect();
        c.votes = (0..MAX_COMMITTEE_VOTES)
            .map(|i| CommitteeVote {
                precommit: i % 2 == 1,
                round: u32::MAX,
                member: (i / 2) as u8,
                signature: dag_core::Signature([0xff; 64]),
            })
            .collect();
        let mut frame = Vec::new();
        Message::Committee(c.clone()).encode_into(&mut frame);
        assert!(frame.len() - 4 <= MAX_FRAME_LEN, "{} bytes", frame.len());
        assert_eq!(
            decode_body(&frame[4..]).unwrap(),
            Message::Committee(c.clone())
        );
        c.votes.push(c.votes[0]);
        assert!(Message::Committee(c).check_limits().is_err());
    }

    #[test]
    fn oversized_frame_is_refused_before_buffering_it() {
        let mut d = FrameDecoder::new();
        d.push(&((MAX_FRAME_LEN + 1) as u32).to_be_bytes());
        assert!(matches!(
            d.next_message(),
            Err(WireError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn limits_are_enforced_on_decode() {
        let mut buf = Vec::new();
        Message::MilestoneRequest { from: 1, to: 1000 }.encode_into(&mut buf);
        Message::TransactionRequest(vec![TxId([0; 32]); MAX_REQUEST_IDS + 1]).encode_into(&mut buf);
        Message::Have(vec![TxId([0; 32]); MAX_REQUEST_IDS + 1]).encode_into(&mut buf);
        Message::SnapshotRequest {
            digest: Digest([0; 32]),
            offset: 0,
            count: MAX_SNAPSHOT_CHUNKS + 1,
        }
        .encode_into(&mut buf);
        Message::SnapshotRequest {
            digest: Digest([0; 32]),
            offset: 1,
            count: 1,
        }
        .encode_into(&mut buf);
        let mut d = FrameDecoder::new();
        d.push(&buf);
        for _ in 0..5 {
            assert!(matches!(d.next_message(), Err(WireError::Limit(_))));
        }
    }

    proptest! {
        #[test]
        fn decoder_never_panics(chunks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let mut d = FrameDecoder::new();
            for c in &chunks {
                d.push(c);
                while let Ok(Some(_)) = d.next_message() {}
            }
        }

        #[test]
        fn arbitrary_transactions_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let mut buf = Vec::new();
            encode_transaction(&bytes, &mut buf);
            let mut d = FrameDecoder::new();
            d.push(&buf);
            prop_assert_eq!(d.next_message().unwrap(), Some(Message::Transaction(bytes)));
        }
    }
}

//! Stateful: the bytes drive a session of [`Peering`], the peer state machine, the way the
//! QUIC driver (`node/src/net/mod.rs`) does, with five peer keys and a small configuration
//! (also taken from the bytes) so that every cap is reached. Events: connect, disconnect
//! (and reconnect), forget, raw bytes through each peer's [`FrameDecoder`], well-formed
//! messages (framed through the decoder, or handed to `handle_message` directly so that
//! Peering's own checks are exercised), verdicts for received transactions (late ones
//! too, after the sender left), gossip, missing-parent requests, ticks with time moving
//! forward (and the wall clock stepping back), byte counts, outbound polls.
//!
//! Checked after every step, besides "no panic":
//! - the connected set is exactly what the driver was told (connects that succeeded minus
//!   disconnects, violations and abuse events), within `max_peers`, and `connect` gives
//!   exactly the expected answer (already connected / banned / no slot / ok);
//! - every outbound queue within `queue_capacity`, the seen set within `seen_capacity`
//!   (its map and its order queue the same size), requests and the queue of requests waiting
//!   to be sent within `max_requests`;
//! - an abuse event names a peer that is no longer connected and is banned;
//! - a disconnect leaves nothing that blocks a reconnect: right after
//!   `handle_disconnected`, `handle_connected` of the same key succeeds unless it is banned;
//! - the sync peer, if any, is connected;
//! - everything Peering asks us to send respects the wire limits and survives an
//!   encode/decode round trip.
//!
//! `cargo +nightly fuzz run peering_session`
#![no_main]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use dag_core::{codec, TxId};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use node_proto::peering::{
    ConnectError, Inbound, LocalStatus, Outbound, PeerEvent, PeerKey, Peering, PeeringConfig,
    Verdict,
};
use node_proto::wire::{
    decode_body, encode_transaction, FrameDecoder, Heartbeat, Message, MAX_MILESTONE_RANGE,
    MAX_REQUEST_IDS,
};

const KEYS: u8 = 5;
const POOL: u8 = 12;
const START_MS: u64 = 1_700_000_000_000;

#[derive(Arbitrary, Debug)]
struct Setup {
    max_peers: u8,
    queue_capacity: u8,
    rate: u16,
    burst: u8,
    seen_capacity: u8,
    request_timeout_ms: u16,
    request_attempts: u8,
    max_requests: u8,
    heartbeat_interval_ms: u16,
    sync_range: u8,
    sync_timeout_ms: u16,
    invalid_penalty: u8,
    rate_penalty: u8,
    unsolid_penalty: u8,
    disconnect_below: u16,
    ban_ms: u32,
    relay_cache: u8,
}

impl Setup {
    fn config(&self) -> PeeringConfig {
        PeeringConfig {
            max_peers: usize::from(self.max_peers % 5),
            queue_capacity: usize::from(self.queue_capacity % 17),
            inbound_rate_per_sec: u32::from(self.rate % 2001),
            inbound_burst: u32::from(self.burst % 33),
            seen_capacity: usize::from(self.seen_capacity % 33),
            request_timeout_ms: u64::from(self.request_timeout_ms % 3000),
            request_attempts: u32::from(self.request_attempts % 5),
            max_requests: usize::from(self.max_requests % 33),
            heartbeat_interval_ms: u64::from(self.heartbeat_interval_ms % 2000),
            sync_range: u32::from(self.sync_range % 80),
            sync_timeout_ms: u64::from(self.sync_timeout_ms % 5000),
            invalid_penalty: i32::from(self.invalid_penalty),
            rate_penalty: i32::from(self.rate_penalty % 64),
            unsolid_penalty: i32::from(self.unsolid_penalty % 64),
            disconnect_below: -i32::from(self.disconnect_below % 1001),
            ban_ms: u64::from(self.ban_ms % 200_000),
            relay_cache: usize::from(self.relay_cache % 33),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Msg {
    Handshake {
        version: u16,
        network_id: u64,
    },
    /// Arbitrary bytes as a transaction (any length, including too short and too long).
    Transaction(Vec<u8>),
    /// One of a small pool of transactions, so that ids repeat across peers.
    Pooled(u8),
    /// Requests for pooled ids (may exceed the per-request limit when not framed).
    Request {
        ids: Vec<u8>,
        pad: u16,
    },
    /// A relay's announcement of pooled ids (may exceed the per-message limit when not
    /// framed).
    Have {
        ids: Vec<u8>,
        pad: u16,
    },
    MilestoneRequest {
        from: u32,
        to: u32,
    },
    Heartbeat {
        solid: u32,
        latest: u32,
        pruning: u32,
        sent_at: u64,
        echo_back: bool,
        echo: u64,
    },
}

#[derive(Arbitrary, Debug)]
enum Op {
    Connect(u8),
    Disconnect {
        peer: u8,
        reconnect: bool,
    },
    Forget(u8),
    /// Raw bytes into the peer's frame decoder.
    Bytes {
        peer: u8,
        bytes: Vec<u8>,
    },
    /// A well-formed message, framed through the decoder or handed over directly.
    Send {
        peer: u8,
        msg: Msg,
        framed: bool,
    },
    /// The ingest result of one received transaction (0..4 picks the verdict).
    Verdict {
        pick: u8,
        verdict: u8,
        gossip: bool,
    },
    /// `count` transactions of `peer` expired waiting for parents (the node reports them).
    Expired {
        peer: u8,
        count: u32,
    },
    /// A verdict for a transaction that `peer` never sent (a late or confused driver).
    StrayVerdict {
        peer: u8,
        tx: u8,
        verdict: u8,
    },
    Gossip(u8),
    Missing(Vec<u8>),
    Tick {
        advance: u16,
        solid: u16,
        ahead: u8,
        pruned: u16,
    },
    ClockBack(u16),
    RecordBytes {
        peer: u8,
        received: u32,
        sent: u32,
    },
    Poll {
        peer: u8,
        max: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    setup: Setup,
    ops: Vec<Op>,
}

fn key(i: u8) -> PeerKey {
    PeerKey([i % KEYS + 1; 32])
}

fn verdict(v: u8) -> Verdict {
    match v % 4 {
        0 => Verdict::New,
        1 => Verdict::Duplicate,
        2 => Verdict::Invalid,
        _ => Verdict::Refused,
    }
}

/// The pool of transactions: Peering only hashes them, their lengths vary. Built once.
static POOL_TXS: LazyLock<Vec<(Arc<[u8]>, TxId)>> = LazyLock::new(|| {
    (0..POOL)
        .map(|i| {
            let b = vec![i; 11 + usize::from(i) * 37];
            let id = codec::id_of_encoding(&b);
            (b.into(), id)
        })
        .collect()
});

fn pool_tx(i: u8) -> Vec<u8> {
    POOL_TXS[usize::from(i % POOL)].0.to_vec()
}

fn pool_id(i: u8) -> TxId {
    POOL_TXS[usize::from(i % POOL)].1
}

struct Session {
    p: Peering,
    cfg: PeeringConfig,
    now: u64,
    status: LocalStatus,
    /// What the driver believes is connected.
    connected: HashSet<PeerKey>,
    decoders: HashMap<PeerKey, FrameDecoder>,
    /// Received transactions waiting for a verdict: (sender, id, bytes).
    ingesting: Vec<(PeerKey, TxId, Vec<u8>)>,
    /// Transactions the node "stored" (verdict New).
    stored: HashMap<TxId, Arc<[u8]>>,
}

impl Session {
    fn disconnected(&mut self, k: PeerKey) {
        self.connected.remove(&k);
        self.decoders.remove(&k);
    }

    /// The driver closes the connection and its reader reports the end.
    fn close(&mut self, k: PeerKey, reconnect: bool) {
        let was = self.connected.contains(&k);
        self.p.handle_disconnected(&k);
        self.disconnected(k);
        assert!(!self.p.is_connected(&k));
        if reconnect {
            let r = self.connect(k);
            if was {
                // Its slot was just freed: only a ban may keep it out.
                assert!(
                    matches!(r, Ok(()) | Err(ConnectError::Banned(_))),
                    "reconnect right after a disconnect refused: {r:?}"
                );
            }
        }
    }

    /// Connects `k`; the answer must be exactly the expected one.
    fn connect(&mut self, k: PeerKey) -> Result<(), ConnectError> {
        let banned = self.p.is_banned(&k, self.now);
        let full = self.connected.len() >= self.cfg.max_peers.min(63);
        let r = self.p.handle_connected(k, self.now);
        match &r {
            Err(ConnectError::Banned(until)) => assert!(banned && *until > self.now),
            Err(ConnectError::AlreadyConnected) => assert!(!banned && self.connected.contains(&k)),
            Err(ConnectError::TooManyPeers) => {
                assert!(!banned && !self.connected.contains(&k) && full)
            }
            Ok(()) => {
                assert!(!banned && !self.connected.contains(&k) && !full);
                self.connected.insert(k);
            }
        }
        r
    }

    fn inbound(&mut self, k: PeerKey, msg: Message) {
        match self.p.handle_message(&k, msg, self.now) {
            Inbound::Nothing => {}
            Inbound::Disconnect(_) => self.close(k, false),
            Inbound::Transaction { id, bytes, .. } => {
                assert_eq!(id, codec::id_of_encoding(&bytes));
                self.ingesting.push((k, id, bytes));
            }
            Inbound::SendTransactions(ids) => {
                assert!(ids.len() <= MAX_REQUEST_IDS);
                for id in ids {
                    if let Some(b) = self.stored.get(&id).cloned() {
                        self.p.send_transaction(&k, id, b);
                    }
                }
            }
            Inbound::SendMilestones { from, to } => {
                assert!(from <= to && to - from < MAX_MILESTONE_RANGE);
                // Answer with some stored transaction, as a milestone would be.
                if let Some((id, b)) = self.stored.iter().next() {
                    let (id, b) = (*id, b.clone());
                    self.p.send_transaction(&k, id, b);
                }
            }
            // As a node without snapshot files answers.
            Inbound::SnapshotQuery => self.p.send_message(&k, Message::SnapshotOffer(Vec::new())),
            Inbound::SendSnapshot { count, offset, .. } => {
                assert!((1..=node_proto::wire::MAX_SNAPSHOT_CHUNKS).contains(&count));
                assert_eq!(offset % node_proto::wire::SNAPSHOT_CHUNK_LEN as u64, 0);
                self.p.send_message(&k, Message::SnapshotOffer(Vec::new()));
            }
            // A committee message is the core's (its decoder enforced the signature cap).
            Inbound::Committee(c) => {
                assert!(c.milestone.signatures.len() <= node_proto::wire::MAX_COMMITTEE_SIGNATURES);
            }
        }
    }

    /// Feeds bytes through the peer's decoder, as the reader does.
    fn bytes(&mut self, k: PeerKey, bytes: &[u8]) {
        if !self.connected.contains(&k) {
            return;
        }
        self.p.record_bytes(&k, bytes.len() as u64, 0);
        self.decoders.entry(k).or_default().push(bytes);
        loop {
            let Some(dec) = self.decoders.get_mut(&k) else {
                return;
            };
            match dec.next_message() {
                Ok(Some(m)) => {
                    self.inbound(k, m);
                    if !self.connected.contains(&k) {
                        return;
                    }
                }
                Ok(None) => return,
                Err(_) => {
                    self.close(k, false);
                    return;
                }
            }
        }
    }

    fn message(&self, msg: Msg) -> Message {
        match msg {
            Msg::Handshake {
                version,
                network_id,
            } => Message::Handshake {
                version,
                network_id,
            },
            Msg::Transaction(b) => Message::Transaction(b),
            Msg::Pooled(i) => Message::Transaction(pool_tx(i)),
            Msg::Request { ids, pad } => {
                let mut v: Vec<TxId> = ids.iter().map(|i| pool_id(*i)).collect();
                v.extend((0..pad % 300).map(|i| TxId([(i % 256) as u8; 32])));
                Message::TransactionRequest(v)
            }
            Msg::Have { ids, pad } => {
                let mut v: Vec<TxId> = ids.iter().map(|i| pool_id(*i)).collect();
                v.extend((0..pad % 300).map(|i| TxId([(i % 256) as u8; 32])));
                Message::Have(v)
            }
            Msg::MilestoneRequest { from, to } => Message::MilestoneRequest { from, to },
            Msg::Heartbeat {
                solid,
                latest,
                pruning,
                sent_at,
                echo_back,
                echo,
            } => Message::Heartbeat(Heartbeat {
                solid_milestone: solid,
                latest_milestone: latest,
                pruning_point: pruning,
                sent_at_ms: sent_at,
                // A real echo of one of our heartbeats, or anything.
                echo_ms: if echo_back {
                    self.now.saturating_sub(echo % 10_000)
                } else {
                    echo
                },
            }),
        }
    }

    fn events(&mut self) {
        while let Some(PeerEvent::Disconnect { peer, .. }) = self.p.poll_event() {
            assert!(
                !self.p.is_connected(&peer),
                "abuse disconnect left {peer} connected"
            );
            if self.cfg.ban_ms > 0 {
                assert!(self.p.is_banned(&peer, self.now), "abuse without a ban");
            }
            // The driver closes the connection; its reader then reports the end.
            self.close(peer, false);
        }
    }

    fn poll(&mut self, k: PeerKey, max: usize) {
        let queued = self.p.queue_len(&k);
        let out = self.p.poll_outbound(&k, max);
        assert_eq!(out.len(), queued.min(max));
        assert_eq!(self.p.queue_len(&k), queued - out.len());
        for o in out {
            let mut frame = Vec::new();
            match o {
                Outbound::Transaction(b) => {
                    encode_transaction(&b, &mut frame);
                    let m = decode_body(&frame[4..]).expect("our transaction frame decodes");
                    assert_eq!(m, Message::Transaction(b.to_vec()));
                }
                Outbound::Message(m) => {
                    m.check_limits()
                        .expect("we send only messages within the limits");
                    assert!(
                        !matches!(m, Message::Handshake { .. }),
                        "handshake is the driver's"
                    );
                    m.encode_into(&mut frame);
                    assert_eq!(decode_body(&frame[4..]).expect("our frame decodes"), m);
                }
            }
        }
    }

    fn check(&self) {
        let cfg = &self.cfg;
        let mut connected = self.p.connected();
        connected.sort();
        let mut model: Vec<PeerKey> = self.connected.iter().copied().collect();
        model.sort();
        assert_eq!(
            connected, model,
            "connected set differs from what the driver was told"
        );
        assert!(connected.len() <= cfg.max_peers.min(63));
        for i in 0..KEYS {
            let k = key(i);
            assert!(
                self.p.queue_len(&k) <= cfg.queue_capacity,
                "queue over its cap"
            );
        }
        let [seen, seen_order, unsent, banned, events] = self.p.internal_sizes();
        assert_eq!(seen, seen_order, "seen map and order disagree");
        assert!(seen <= cfg.seen_capacity.max(1), "seen set over its cap");
        assert!(self.p.pending_requests() <= cfg.max_requests);
        assert!(
            unsent <= cfg.max_requests,
            "{unsent} unsent request entries for at most {} requests",
            cfg.max_requests
        );
        assert!(banned <= usize::from(KEYS));
        assert_eq!(events, 0, "events are drained after every step");
        if let Some(s) = self.p.syncing_from() {
            assert!(
                self.connected.contains(&s),
                "syncing from a peer that is gone"
            );
        }
        for (k, m) in self.p.metrics() {
            assert_eq!(m.connected, self.connected.contains(&k));
        }
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Connect(i) => {
                let _ = self.connect(key(i));
            }
            Op::Disconnect { peer, reconnect } => self.close(key(peer), reconnect),
            Op::Forget(i) => {
                let k = key(i);
                self.p.forget(&k);
                self.disconnected(k);
                assert!(!self.p.is_banned(&k, self.now), "forget lifts the ban");
            }
            Op::Bytes { peer, bytes } => self.bytes(key(peer), &bytes),
            Op::Send { peer, msg, framed } => {
                let k = key(peer);
                let m = self.message(msg);
                if framed {
                    let mut frame = Vec::new();
                    m.encode_into(&mut frame);
                    self.bytes(k, &frame);
                } else if self.connected.contains(&k) {
                    self.inbound(k, m);
                }
            }
            Op::Verdict {
                pick,
                verdict: v,
                gossip,
            } => {
                if self.ingesting.is_empty() {
                    return;
                }
                let (k, id, bytes) = self
                    .ingesting
                    .swap_remove(usize::from(pick) % self.ingesting.len());
                let v = verdict(v);
                self.p.handle_verdict(&k, id, v, self.now);
                if v == Verdict::New {
                    let b: Arc<[u8]> = bytes.into();
                    self.stored.insert(id, b.clone());
                    if gossip {
                        self.p.gossip(id, b);
                    }
                }
            }
            Op::Expired { peer, count } => {
                self.p
                    .handle_expired(&key(peer), u64::from(count), self.now);
            }
            Op::StrayVerdict {
                peer,
                tx,
                verdict: v,
            } => {
                let id = pool_id(tx);
                self.p.handle_verdict(&key(peer), id, verdict(v), self.now);
            }
            Op::Gossip(i) => {
                let (b, id) = POOL_TXS[usize::from(i % POOL)].clone();
                self.p.gossip(id, b);
            }
            Op::Missing(ids) => {
                let ids: Vec<TxId> = ids
                    .iter()
                    .map(|i| {
                        if i & 0x80 == 0 {
                            pool_id(*i)
                        } else {
                            TxId([*i; 32])
                        }
                    })
                    .collect();
                self.p.handle_missing(ids, self.now);
            }
            Op::Tick {
                advance,
                solid,
                ahead,
                pruned,
            } => {
                self.now += u64::from(advance);
                // The node's own status: pruning point <= solid <= latest, never backwards.
                let solid = self.status.solid_milestone.max(u32::from(solid));
                self.status = LocalStatus {
                    solid_milestone: solid,
                    latest_milestone: solid + u32::from(ahead),
                    pruning_point: u32::from(pruned).min(solid),
                };
                self.p.handle_tick(self.now, self.status);
            }
            Op::ClockBack(ms) => self.now -= u64::from(ms),
            Op::RecordBytes {
                peer,
                received,
                sent,
            } => self
                .p
                .record_bytes(&key(peer), u64::from(received), u64::from(sent)),
            Op::Poll { peer, max } => {
                let max = if max == u8::MAX {
                    usize::MAX
                } else {
                    usize::from(max % 8)
                };
                self.poll(key(peer), max);
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let cfg = input.setup.config();
    let mut s = Session {
        p: Peering::new(cfg.clone()),
        cfg,
        now: START_MS,
        status: LocalStatus::default(),
        connected: HashSet::new(),
        decoders: HashMap::new(),
        ingesting: Vec::new(),
        stored: HashMap::new(),
    };
    for op in input.ops {
        s.step(op);
        s.events();
        s.check();
    }
});

//! Bootstrap: a node with an empty database fetches the newest snapshot its peers serve,
//! over the peering protocol ([`Message::SnapshotQuery`], [`Message::SnapshotRequest`]),
//! before it starts. The transfer logic is [`node_proto::fetch::Download`]; this is its
//! QUIC and file driver.
//!
//! Every configured peer is asked at once which snapshot it serves; the newest offer wins
//! (ties: the first peer in the config). The file is downloaded into
//! `DIR/<digest>.part` and renamed to a `.tsnap` file when complete; an interrupted
//! download (a crash, a lost peer) resumes from what the `.part` file holds, from any peer
//! serving the same file. The caller verifies the file against the genesis before using it
//! (nothing here trusts the peer).

use std::io::{Seek, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dag_core::Keypair;
use node_proto::fetch::{Chunk, Download};
use node_proto::peering::PeerKey;
use node_proto::wire::{FrameDecoder, Message, SnapshotFile, PROTOCOL_VERSION};

use super::{tls, PeerEntry, CLOSE_OK};
use crate::runtime::now_ms;

/// How a fetch goes.
#[derive(Clone, Debug)]
pub struct FetchConfig {
    /// Our identity (peers must have it on their allowlist).
    pub identity: Keypair,
    /// Who to ask.
    pub peers: Vec<PeerEntry>,
    /// The network (genesis hash).
    pub network_id: u64,
    /// Where the file goes.
    pub dir: PathBuf,
    /// Connecting, handshaking and getting an offer from one peer.
    pub query_timeout: Duration,
    /// A download with no progress for this long moves on to another peer.
    pub idle_timeout: Duration,
}

impl FetchConfig {
    /// Defaults: 5 s to get an offer, 30 s without progress.
    pub fn new(identity: Keypair, peers: Vec<PeerEntry>, network_id: u64, dir: PathBuf) -> Self {
        FetchConfig {
            identity,
            peers,
            network_id,
            dir,
            query_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// A fetched snapshot.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// The full snapshot file (complete, not yet verified).
    pub path: PathBuf,
    /// What it is.
    pub file: SnapshotFile,
    /// The delta on it the peer also served, if any (complete, not yet verified).
    pub delta: Option<(PathBuf, SnapshotFile)>,
    /// Who served them (the last peer, if it took several).
    pub peer: PeerKey,
    /// Bytes of the full file already on disk from an earlier attempt.
    pub resumed_from: u64,
    /// Time taken.
    pub took: Duration,
}

/// A connection with its stream, past the handshake.
struct Session {
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
    buf: Vec<u8>,
}

impl Session {
    async fn open(
        endpoint: &quinn::Endpoint,
        client: &quinn::ClientConfig,
        addr: SocketAddr,
        network_id: u64,
    ) -> anyhow::Result<Session> {
        let conn = endpoint
            .connect_with(client.clone(), addr, "tangle-node")?
            .await?;
        let (mut send, recv) = conn.open_bi().await?;
        let mut hello = Vec::new();
        Message::Handshake {
            version: PROTOCOL_VERSION,
            network_id,
        }
        .encode_into(&mut hello);
        send.write_all(&hello).await?;
        let mut s = Session {
            conn,
            send,
            recv,
            decoder: FrameDecoder::new(),
            buf: vec![0u8; 64 * 1024],
        };
        match s.next().await? {
            Message::Handshake {
                version,
                network_id: theirs,
            } if version == PROTOCOL_VERSION && theirs == network_id => Ok(s),
            other => anyhow::bail!("bad handshake: {other:?}"),
        }
    }

    async fn send(&mut self, m: &Message) -> anyhow::Result<()> {
        let mut out = Vec::new();
        m.encode_into(&mut out);
        self.send.write_all(&out).await?;
        Ok(())
    }

    /// The next message (waits for it).
    async fn next(&mut self) -> anyhow::Result<Message> {
        loop {
            if let Some(m) = self.decoder.next_message()? {
                return Ok(m);
            }
            match self.recv.read(&mut self.buf).await? {
                Some(n) => self.decoder.push(&self.buf[..n]),
                None => anyhow::bail!("the peer closed the stream"),
            }
        }
    }

    /// The peer's offer (other messages, gossip and heartbeats, are skipped).
    async fn offer(&mut self) -> anyhow::Result<Vec<SnapshotFile>> {
        self.send(&Message::SnapshotQuery).await?;
        loop {
            if let Message::SnapshotOffer(o) = self.next().await? {
                return Ok(o);
            }
        }
    }

    fn close(&self) {
        self.conn.close(CLOSE_OK.into(), b"snapshot fetched");
    }
}

/// Asks every peer for its snapshot and downloads the newest one offered. `Ok(None)`: no
/// peer answered with a snapshot (start from the genesis and sync).
pub async fn fetch_snapshot(cfg: &FetchConfig) -> anyhow::Result<Option<Fetched>> {
    let started = Instant::now();
    std::fs::create_dir_all(&cfg.dir)?;
    let allow: tls::Allowlist = Arc::new(std::sync::RwLock::new(
        cfg.peers
            .iter()
            .map(|p| (p.public_key, p.address))
            .collect(),
    ));
    let (_, client) = tls::quic_configs(&cfg.identity, allow)?;
    let any: SocketAddr = match cfg.peers.first().map(|p| p.address) {
        Some(SocketAddr::V6(_)) => "[::]:0".parse()?,
        _ => "0.0.0.0:0".parse()?,
    };
    let endpoint = quinn::Endpoint::client(any)?;

    // Ask everyone at once.
    let mut asks = tokio::task::JoinSet::new();
    for (i, p) in cfg.peers.iter().enumerate() {
        let (endpoint, client, p, net, limit) = (
            endpoint.clone(),
            client.clone(),
            *p,
            cfg.network_id,
            cfg.query_timeout,
        );
        asks.spawn(async move {
            let r = tokio::time::timeout(limit, async {
                let mut s = Session::open(&endpoint, &client, p.address, net).await?;
                let offer = s.offer().await?;
                anyhow::Ok((s, offer))
            })
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {limit:?}"))
            .and_then(|r| r);
            (i, p, r)
        });
    }
    let mut offers: Vec<Offered> = Vec::new();
    while let Some(joined) = asks.join_next().await {
        let Ok((i, p, r)) = joined else { continue };
        match r {
            Ok((s, files)) => match Offered::new(i, p, s, &files) {
                Some(o) => {
                    tracing::info!(peer = %p.public_key, milestone = o.full.milestone,
                        bytes = o.full.len, delta_milestone = o.delta.map(|d| d.milestone),
                        "peer offers a snapshot");
                    offers.push(o);
                }
                None => tracing::info!(peer = %p.public_key, "peer serves no snapshot"),
            },
            Err(e) => tracing::warn!(peer = %p.public_key, addr = %p.address, error = %e,
                "could not ask the peer for a snapshot"),
        }
    }
    // Newest start first (a delta's milestone, else the full one's); among equals, a
    // delta-less offer is no better, then config order.
    offers.sort_by_key(|o| (std::cmp::Reverse(o.newest()), o.index));
    let Some((full, delta)) = offers.first().map(|o| (o.full, o.delta)) else {
        endpoint.close(CLOSE_OK.into(), b"");
        return Ok(None);
    };
    let part = |f: &SnapshotFile| cfg.dir.join(format!("{}.part", f.digest.to_hex()));
    let (full_part, delta_part) = (part(&full), delta.as_ref().map(part));
    remove_other_parts(
        &cfg.dir,
        &[&full_part, delta_part.as_deref().unwrap_or(&full_part)],
    );
    let resumed_from = std::fs::metadata(&full_part).map(|m| m.len()).unwrap_or(0);
    let mut have_full = false;
    let mut got_delta = None;
    let mut last = None;
    let mut last_error = None;
    for mut o in offers {
        if o.full != full {
            o.session.close();
            continue;
        }
        if !have_full {
            match download(&mut o.session, full, &full_part, cfg.idle_timeout).await {
                Ok(()) => have_full = true,
                Err(e) => {
                    tracing::warn!(peer = %o.entry.public_key, error = %e,
                        "snapshot download failed; trying the next peer");
                    o.session.close();
                    last_error = Some(e);
                    continue;
                }
            }
        }
        last = Some(o.entry.public_key);
        if let (Some(d), Some(dp)) = (delta, &delta_part) {
            if o.delta == Some(d) {
                match download(&mut o.session, d, dp, cfg.idle_timeout).await {
                    Ok(()) => got_delta = Some(d),
                    Err(e) => tracing::warn!(peer = %o.entry.public_key, error = %e,
                        "delta download failed"),
                }
            }
        }
        o.session.close();
        if got_delta.is_some() || delta.is_none() {
            break;
        }
    }
    endpoint.close(CLOSE_OK.into(), b"");
    if !have_full {
        return Err(last_error
            .unwrap_or_else(|| anyhow::anyhow!("no peer could serve the snapshot"))
            .context(format!(
                "downloading the snapshot of milestone {} (what arrived stays in {} for the next attempt)",
                full.milestone,
                full_part.display()
            )));
    }
    if delta.is_some() && got_delta.is_none() {
        tracing::warn!("no peer could serve the delta: starting from the full snapshot");
    }
    let path = cfg
        .dir
        .join(format!("downloaded-{:010}.tsnap", full.milestone));
    std::fs::rename(&full_part, &path)?;
    let delta = match (got_delta, delta_part) {
        (Some(d), Some(dp)) => {
            let p = cfg
                .dir
                .join(format!("downloaded-delta-{:010}.tsnap", d.milestone));
            std::fs::rename(&dp, &p)?;
            Some((p, d))
        }
        _ => None,
    };
    std::fs::File::open(&cfg.dir)?.sync_all()?;
    Ok(Some(Fetched {
        path,
        file: full,
        delta,
        peer: last.unwrap_or(PeerKey([0; 32])),
        resumed_from,
        took: started.elapsed(),
    }))
}

/// A peer's answer: a full snapshot and the delta on it, if it offers one.
struct Offered {
    index: usize,
    entry: PeerEntry,
    session: Session,
    full: SnapshotFile,
    delta: Option<SnapshotFile>,
}

impl Offered {
    /// `None` (and the session closed) if `files` holds no full snapshot.
    fn new(
        index: usize,
        entry: PeerEntry,
        session: Session,
        files: &[SnapshotFile],
    ) -> Option<Self> {
        let Some(full) = files.iter().find(|f| f.base.is_none()).copied() else {
            session.close();
            return None;
        };
        let delta = files
            .iter()
            .find(|f| f.base == Some(full.digest) && f.milestone > full.milestone)
            .copied();
        Some(Offered {
            index,
            entry,
            session,
            full,
            delta,
        })
    }

    fn newest(&self) -> u32 {
        self.delta.map_or(self.full.milestone, |d| d.milestone)
    }
}

/// Deletes the `.part` files of other snapshots in `dir`.
fn remove_other_parts(dir: &Path, keep: &[&Path]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "part") && !keep.contains(&path.as_path()) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Downloads `file` into `part` (appending to what it holds) over `s`.
async fn download(
    s: &mut Session,
    file: SnapshotFile,
    part: &Path,
    idle: Duration,
) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(false)
        .write(true)
        .truncate(false)
        .open(part)?;
    let have = f.metadata()?.len();
    let mut d = Download::new(file, have, now_ms())?;
    // Keep whole chunks only.
    f.set_len(d.received())?;
    f.seek(std::io::SeekFrom::End(0))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, f);
    let mut logged = Instant::now();
    let mut progressed = Instant::now();
    if d.received() > 0 {
        tracing::info!(
            bytes = d.received(),
            of = file.len,
            "resuming a snapshot download"
        );
    }
    while !d.is_complete() {
        while let Some(req) = d.poll_request(now_ms()) {
            s.send(&req).await?;
        }
        let m = match tokio::time::timeout(Duration::from_millis(500), s.next()).await {
            Ok(m) => m?,
            Err(_) => {
                anyhow::ensure!(
                    progressed.elapsed() < idle,
                    "no progress for {idle:?} at byte {}",
                    d.received()
                );
                continue;
            }
        };
        match m {
            Message::SnapshotChunk {
                digest,
                offset,
                bytes,
            } if d.handle_chunk(&digest, offset, &bytes, now_ms())? == Chunk::Accepted => {
                out.write_all(&bytes)?;
                progressed = Instant::now();
            }
            Message::SnapshotOffer(o) if !o.contains(&file) => {
                anyhow::bail!("the peer no longer serves this snapshot (it offers {o:?})")
            }
            _ => {}
        }
        if logged.elapsed() >= Duration::from_secs(2) {
            logged = Instant::now();
            tracing::info!(
                bytes = d.received(),
                of = file.len,
                percent = d.received() * 100 / file.len,
                "downloading the snapshot"
            );
        }
    }
    let f = out.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    Ok(())
}

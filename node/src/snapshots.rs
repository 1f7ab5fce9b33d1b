//! Snapshot files of a running node: full ones every N milestones (`[snapshots] interval`),
//! deltas on the newest full one every M (`delta_interval`), both on demand
//! (`POST /api/v1/admin/snapshot?kind=full|delta`); kept in a directory (the newest few
//! full ones, the newest delta) and served to peers in chunks ([`Snapshots::read_chunks`],
//! see [`crate::net`]).
//!
//! A delta holds the accounts and channels whose values differ from its full snapshot's,
//! with its own milestone and entry points: it is computed by reading the full file back
//! and comparing (O(state) on a blocking thread, no bookkeeping on the milestone path), and
//! its size follows what changed.
//!
//! ## Making one while the node runs
//! The core's lock is held only to copy the ledger's maps and the entry points
//! ([`node_proto::Protocol::capture_snapshot`]: tens of milliseconds for a million
//! accounts); sorting, encoding and writing happen on the calling (blocking) thread. The
//! file is written as `NAME.tmp`, synced, renamed into place and the directory synced, so a
//! crash at any point leaves either the previous files or the new complete one (a leftover
//! `.tmp` is removed at the next start). Only one snapshot is made at a time.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use dag_core::{Digest, Genesis, MilestoneIndex};
use node_proto::snapshot::{self, SnapshotError};
use node_proto::wire::{SnapshotFile, SNAPSHOT_CHUNK_LEN};
use serde::Serialize;

use crate::api::ApiError;
use crate::runtime::now_ms;
use crate::{NodeHandle, NodeService};

/// Extension of snapshot files.
pub const EXTENSION: &str = "tsnap";

/// Which kind of snapshot to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The whole state.
    #[default]
    Full,
    /// What changed since the newest full snapshot.
    Delta,
}

/// A snapshot file on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    /// What peers are offered.
    pub file: SnapshotFile,
    /// Where it is.
    pub path: PathBuf,
}

/// A piece of a snapshot file: where it starts and its bytes.
pub type Chunk = (u64, Vec<u8>);

/// What `POST /api/v1/admin/snapshot` answers.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SnapshotMade {
    /// The milestone whose state it holds.
    pub milestone: MilestoneIndex,
    /// The file on the node's disk.
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// Its checksum (hex), the name peers ask for it by.
    pub digest: String,
    /// For a delta: the checksum of its full snapshot (hex).
    pub base: Option<String>,
    /// Accounts in it.
    pub accounts: u64,
    /// Channels in it.
    pub channels: u64,
    /// Solid entry points in it.
    pub entry_points: u64,
    /// Time taken, ms.
    pub took_ms: u64,
}

/// Making a snapshot failed.
#[derive(Debug, thiserror::Error)]
pub enum MakeError {
    /// One is being made already.
    #[error("a snapshot is being made already")]
    Busy,
    /// Nothing to snapshot yet (no milestone applied), or its transaction is not stored.
    #[error("{0}")]
    NotReady(String),
    /// Encoding or writing.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// File system.
    #[error("snapshot directory: {0}")]
    Io(#[from] std::io::Error),
}

/// The node's snapshot directory.
#[derive(Debug)]
pub struct Snapshots {
    dir: PathBuf,
    keep: usize,
    /// The genesis without its allocations: the header's name and committee.
    genesis: Genesis,
    /// Kept files, oldest first.
    files: Mutex<Vec<Served>>,
    /// Held while one is made.
    making: Mutex<()>,
}

impl Snapshots {
    /// Opens (creating it) the directory `dir`, keeping the newest `keep` files (at least
    /// 1). Files already there are offered (their end checksum is read, not the whole
    /// file); leftovers of an interrupted write (`*.tmp`) are removed.
    pub fn open(dir: &Path, keep: usize, genesis: &Genesis) -> std::io::Result<Arc<Snapshots>> {
        std::fs::create_dir_all(dir)?;
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("tmp") => {
                    let _ = std::fs::remove_file(&path);
                }
                Some(EXTENSION) => match describe(&path) {
                    Ok(file) => files.push(Served { file, path }),
                    Err(e) => tracing::warn!(path = %path.display(), error = %e,
                        "ignoring an unreadable snapshot file"),
                },
                _ => {}
            }
        }
        files.sort_by_key(|s| s.file.milestone);
        let genesis = Genesis {
            network_name: genesis.network_name.clone(),
            timestamp: genesis.timestamp,
            pow_difficulty: genesis.pow_difficulty,
            timestamp_window_ms: genesis.timestamp_window_ms,
            committee: genesis.committee.clone(),
            threshold: genesis.threshold,
            allocations: Vec::new(),
        };
        let s = Snapshots {
            dir: dir.to_path_buf(),
            keep: keep.max(1),
            genesis,
            files: Mutex::new(files),
            making: Mutex::new(()),
        };
        s.trim();
        Ok(Arc::new(s))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn files(&self) -> std::sync::MutexGuard<'_, Vec<Served>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest full snapshot.
    pub fn latest(&self) -> Option<Served> {
        self.files()
            .iter()
            .rev()
            .find(|s| s.file.base.is_none())
            .cloned()
    }

    /// What peers are offered: the newest full snapshot and the newest delta on it.
    pub fn offer(&self) -> Vec<SnapshotFile> {
        let files = self.files();
        let Some(full) = files.iter().rev().find(|s| s.file.base.is_none()) else {
            return Vec::new();
        };
        let mut out = vec![full.file];
        if let Some(d) = files
            .iter()
            .rev()
            .find(|s| s.file.base == Some(full.file.digest))
        {
            out.push(d.file);
        }
        out
    }

    /// The newest milestone a node can start at from the files kept (a delta's, or the
    /// full snapshot's).
    pub fn newest_milestone(&self) -> Option<MilestoneIndex> {
        self.offer().iter().map(|f| f.milestone).max()
    }

    /// Up to `count` chunks of the kept file `digest` from `offset` (a multiple of
    /// [`SNAPSHOT_CHUNK_LEN`]), as (offset, bytes); empty past its end. `None` if no kept
    /// file has that digest (answer with [`Snapshots::latest`] instead).
    pub fn read_chunks(
        &self,
        digest: &Digest,
        offset: u64,
        count: u16,
    ) -> Option<std::io::Result<Vec<Chunk>>> {
        let served = self
            .files()
            .iter()
            .find(|s| s.file.digest == *digest)
            .cloned()?;
        Some((|| {
            let mut out = Vec::new();
            if offset >= served.file.len {
                return Ok(out);
            }
            let mut f = File::open(&served.path)?;
            f.seek(SeekFrom::Start(offset))?;
            let mut at = offset;
            for _ in 0..count {
                let n = (served.file.len - at).min(SNAPSHOT_CHUNK_LEN as u64) as usize;
                if n == 0 {
                    break;
                }
                let mut buf = vec![0u8; n];
                f.read_exact(&mut buf)?;
                out.push((at, buf));
                at += n as u64;
            }
            Ok(out)
        })())
    }

    /// Makes a snapshot of `node` at its last applied milestone (blocking: call it on a
    /// blocking thread), keeps it and offers it to peers. A delta needs a full snapshot of
    /// an earlier milestone.
    pub fn make(&self, node: &NodeHandle, kind: Kind) -> Result<(Served, SnapshotMade), MakeError> {
        let _making = self.making.try_lock().map_err(|_| MakeError::Busy)?;
        let started = Instant::now();
        let capture = node
            .with_protocol(|p| p.capture_snapshot())
            .ok_or_else(|| MakeError::NotReady("no milestone was applied yet".into()))?;
        let base = self.latest();
        if self.newest_milestone() >= Some(capture.milestone) {
            return Err(MakeError::NotReady(format!(
                "a snapshot of milestone {} exists already",
                capture.milestone
            )));
        }
        let base = match (kind, base) {
            (Kind::Full, _) => None,
            (Kind::Delta, Some(b)) => Some(b),
            (Kind::Delta, None) => {
                return Err(MakeError::NotReady(
                    "no full snapshot to make a delta on".into(),
                ))
            }
        };
        // The milestone's transaction may still be on its way to the store (it is written
        // right after the core took it): wait a little for it.
        let mut bytes = None;
        for _ in 0..200 {
            match node.transaction(&capture.milestone_tx) {
                Ok(Some(b)) => {
                    bytes = Some(b);
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(MakeError::NotReady(format!("store: {e}"))),
            }
        }
        let bytes = bytes.ok_or_else(|| {
            MakeError::NotReady(format!(
                "the transaction of milestone {} is not stored",
                capture.milestone
            ))
        })?;
        let mut snap = capture.into_snapshot(&self.genesis, bytes, now_ms())?;
        if let Some(base) = &base {
            let f = File::open(&base.path)?;
            let (full, digest) =
                snapshot::read_with_digest(std::io::BufReader::with_capacity(1 << 20, f))?;
            if digest != base.file.digest {
                return Err(MakeError::Snapshot(SnapshotError::Format(format!(
                    "{} changed on disk",
                    base.path.display()
                ))));
            }
            snap = snap.delta_from(&full, digest)?;
        }
        let name = format!(
            "{}-{}-{:010}.{EXTENSION}",
            if base.is_some() { "delta" } else { "snapshot" },
            sanitize(&self.genesis.network_name),
            snap.header.milestone
        );
        let path = self.dir.join(name);
        let (len, digest) = write_atomically(&path, &snap)?;
        let served = Served {
            file: SnapshotFile {
                milestone: snap.header.milestone,
                len,
                digest,
                base: base.as_ref().map(|b| b.file.digest),
            },
            path: path.clone(),
        };
        {
            let mut files = self.files();
            files.retain(|s| s.path != path);
            files.push(served.clone());
            files.sort_by_key(|s| s.file.milestone);
        }
        self.trim();
        node.set_snapshot_milestone(snap.header.milestone);
        let made = SnapshotMade {
            milestone: snap.header.milestone,
            path: path.display().to_string(),
            bytes: len,
            digest: digest.to_string(),
            base: served.file.base.map(|b| b.to_string()),
            accounts: snap.header.accounts,
            channels: snap.header.channels,
            entry_points: snap.header.entry_points,
            took_ms: started.elapsed().as_millis() as u64,
        };
        tracing::info!(
            milestone = made.milestone,
            bytes = made.bytes,
            accounts = made.accounts,
            took_ms = made.took_ms,
            path = %made.path,
            "snapshot made"
        );
        Ok((served, made))
    }

    /// Deletes all but the newest `keep` full files and the newest delta on the newest
    /// full one.
    fn trim(&self) {
        let mut files = self.files();
        let fulls: Vec<Digest> = files
            .iter()
            .filter(|s| s.file.base.is_none())
            .map(|s| s.file.digest)
            .collect();
        let kept_fulls = &fulls[fulls.len().saturating_sub(self.keep)..];
        let newest_delta = files
            .iter()
            .rev()
            .find(|s| s.file.base.is_some() && s.file.base == fulls.last().copied())
            .map(|s| s.file.digest);
        files.retain(|s| {
            let keep = match s.file.base {
                None => kept_fulls.contains(&s.file.digest),
                Some(_) => Some(s.file.digest) == newest_delta,
            };
            if !keep {
                if let Err(e) = std::fs::remove_file(&s.path) {
                    tracing::warn!(path = %s.path.display(), error = %e, "removing an old snapshot");
                }
            }
            keep
        });
    }

    /// Makes a full snapshot every `full` milestones and a delta every `delta` milestones
    /// (when the applied index is a multiple of it; a full one wins when both are due),
    /// until `stop` changes.
    pub fn spawn_periodic(
        self: Arc<Self>,
        node: NodeHandle,
        full: Option<u32>,
        delta: Option<u32>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let due = move |index: MilestoneIndex| {
            let every = |n: Option<u32>| n.is_some_and(|n| n > 0 && index % n == 0);
            if every(full) {
                Some(Kind::Full)
            } else if every(delta) {
                Some(Kind::Delta)
            } else {
                None
            }
        };
        let mut events = node.subscribe();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    e = events.recv() => e,
                    _ = stop.changed() => return,
                };
                let index = match event {
                    Ok(crate::service::NodeEvent::Milestone(m)) => m.index,
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                };
                let Some(kind) = due(index) else { continue };
                let (s, n) = (self.clone(), node.clone());
                match tokio::task::spawn_blocking(move || s.make(&n, kind)).await {
                    Ok(Ok(_)) | Ok(Err(MakeError::Busy)) => {}
                    Ok(Err(MakeError::NotReady(why))) => {
                        tracing::debug!(%why, "no periodic snapshot")
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "periodic snapshot failed"),
                    Err(_) => tracing::error!("snapshot task panicked"),
                }
            }
        })
    }

    /// Admin routes (under `/api/v1/admin`): `POST /snapshot[?kind=full|delta]` makes one
    /// now and answers [`SnapshotMade`]; 409 `conflict` while one is being made, before the
    /// first milestone, or for a delta without a full snapshot.
    pub fn admin_router(self: &Arc<Self>, node: NodeHandle) -> Router {
        Router::new()
            .route("/snapshot", post(make_snapshot))
            .with_state((self.clone(), node))
    }
}

/// `?kind=` of `POST /api/v1/admin/snapshot`.
#[derive(Clone, Copy, Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MakeQuery {
    /// `full` (default) or `delta` (what changed since the newest full snapshot).
    pub kind: Option<Kind>,
}

/// Makes a snapshot of the node's ledger at its last applied milestone now (admin; bearer
/// token). It is kept in the node's snapshot directory and offered to peers.
#[utoipa::path(post, path = "/api/v1/admin/snapshot", tag = "admin",
    security(("bearer" = [])),
    params(MakeQuery),
    responses(
        (status = 201, description = "Made", body = SnapshotMade),
        (status = 400, description = "Unknown kind", body = crate::api::ErrorBody),
        (status = 401, description = "No bearer token", body = crate::api::ErrorBody),
        (status = 403, description = "Wrong token", body = crate::api::ErrorBody),
        (status = 404, description = "Admin routes disabled (no token configured)", body = crate::api::ErrorBody),
        (status = 409, description = "One is being made, no milestone was applied yet, or the one of this milestone exists", body = crate::api::ErrorBody),
        (status = 500, description = "Writing it failed", body = crate::api::ErrorBody),
    ))]
pub(crate) async fn make_snapshot(
    State((snapshots, node)): State<(Arc<Snapshots>, NodeHandle)>,
    query: Result<Query<MakeQuery>, QueryRejection>,
) -> Response {
    let kind = match query {
        Ok(Query(q)) => q.kind.unwrap_or_default(),
        Err(e) => return ApiError::malformed(e.body_text()).into_response(),
    };
    match tokio::task::spawn_blocking(move || snapshots.make(&node, kind)).await {
        Ok(Ok((_, made))) => (StatusCode::CREATED, Json(made)).into_response(),
        Ok(Err(e @ (MakeError::Busy | MakeError::NotReady(_)))) => {
            ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()).into_response()
        }
        Ok(Err(e)) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string())
            .into_response(),
        Err(_) => ApiError::internal("the snapshot task failed").into_response(),
    }
}

/// What a kept snapshot file is: its header's milestone, its length, its end checksum.
pub fn describe(path: &Path) -> Result<SnapshotFile, SnapshotError> {
    let f = File::open(path)?;
    let len = f.metadata()?.len();
    let (_, header) = snapshot::Reader::open(std::io::BufReader::new(&f))?;
    let digest = snapshot::end_digest(&f, len)?;
    Ok(SnapshotFile {
        milestone: header.milestone,
        len,
        digest,
        base: header.base.map(|b| b.digest),
    })
}

/// Writes `snap` to `path` so that a crash (SIGKILL, power loss) at any point leaves `path`
/// absent, as it was, or complete, never partly written: the bytes go to `PATH.tmp` in the
/// same directory (a leftover of an interrupted run is truncated and reused), which is
/// synced, renamed over `path`, and the directory synced so the rename is durable. On an
/// error the temporary file is removed. Returns the length and the checksum.
pub fn write_atomically(
    path: &Path,
    snap: &snapshot::Snapshot,
) -> Result<(u64, Digest), SnapshotError> {
    let mut tmp_name = path
        .file_name()
        .ok_or_else(|| {
            SnapshotError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} is not a file name", path.display()),
            ))
        })?
        .to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let result = (|| {
        let f = File::create(&tmp)?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let digest = snapshot::write(&mut w, snap)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        let len = f.metadata()?.len();
        drop(f);
        std::fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()?;
        Ok((len, digest))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A network name made safe for a file name.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

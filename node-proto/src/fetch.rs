//! Downloading a snapshot file from a peer, sans I/O: which chunks to ask for and which
//! received bytes to keep. The driver sends [`Download::poll_request`]'s messages, appends
//! what [`Download::handle_chunk`] accepts to its file, and resumes an interrupted download
//! with [`Download::new`] at the length of what it kept.
//!
//! Chunks are accepted in order only (one stream delivers them in order; one lost to a full
//! queue at the sender leaves a gap): a chunk not at the next offset is ignored, and when no
//! progress comes for [`STALL_MS`] the requests start over from the next offset. At most
//! [`WINDOW_CHUNKS`] chunks are asked for ahead of what was received, so a download holds at
//! most that many chunks in flight on either side. Nothing here trusts the bytes: the file's
//! checksum and the milestone's signatures are checked once it is complete
//! ([`crate::snapshot::read`], [`crate::snapshot::Snapshot::verify`]).

use dag_core::Digest;

use crate::wire::{Message, SnapshotFile, MAX_SNAPSHOT_CHUNKS, SNAPSHOT_CHUNK_LEN};

/// Most chunks requested beyond the received ones.
pub const WINDOW_CHUNKS: u64 = 2 * MAX_SNAPSHOT_CHUNKS as u64;

/// Without progress for this long, the outstanding requests are abandoned and asked again.
pub const STALL_MS: u64 = 3_000;

/// Largest snapshot file a node downloads (a billion accounts would not fit anyway).
pub const MAX_FILE_LEN: u64 = 64 << 30;

/// What became of a received chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunk {
    /// The next bytes: append them to the file.
    Accepted,
    /// Not the next bytes, or another file's: drop them.
    Ignored,
}

/// Why a download cannot go on with this peer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The offer is unusable.
    #[error("the peer offers an unusable file: {0}")]
    BadOffer(String),
    /// A chunk at the right place but of the wrong length.
    #[error("chunk at {offset} of {len} bytes (expected {expected})")]
    BadChunk {
        /// Where.
        offset: u64,
        /// Its length.
        len: usize,
        /// The length it should have.
        expected: usize,
    },
}

/// One file being downloaded.
#[derive(Clone, Debug)]
pub struct Download {
    file: SnapshotFile,
    /// Bytes received in order (and kept by the driver).
    have: u64,
    /// End of what was requested.
    asked: u64,
    /// Last progress, ms.
    progress_at: u64,
    /// Requests sent again after a stall.
    restarts: u64,
}

impl Download {
    /// Starts (or resumes, with `have` bytes already kept) the download of `file`. `have`
    /// is rounded down to a whole chunk (the driver truncates its file to
    /// [`Download::received`]).
    pub fn new(file: SnapshotFile, have: u64, now: u64) -> Result<Download, FetchError> {
        if file.milestone == 0 || file.len == 0 || file.len > MAX_FILE_LEN {
            return Err(FetchError::BadOffer(format!(
                "milestone {} of {} bytes",
                file.milestone, file.len
            )));
        }
        let chunk = SNAPSHOT_CHUNK_LEN as u64;
        let have = (have.min(file.len) / chunk) * chunk;
        Ok(Download {
            file,
            have,
            asked: have,
            progress_at: now,
            restarts: 0,
        })
    }

    /// The file.
    pub fn file(&self) -> &SnapshotFile {
        &self.file
    }

    /// Bytes received in order so far.
    pub fn received(&self) -> u64 {
        self.have
    }

    /// Whether every byte arrived.
    pub fn is_complete(&self) -> bool {
        self.have == self.file.len
    }

    /// How often requests were sent again after a stall.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// The next request to send, if the window has room (call until `None`).
    pub fn poll_request(&mut self, now: u64) -> Option<Message> {
        if self.is_complete() {
            return None;
        }
        if now.saturating_sub(self.progress_at) >= STALL_MS && self.asked > self.have {
            // Lost chunks: ask again from the next offset.
            self.asked = self.have;
            self.progress_at = now;
            self.restarts += 1;
        }
        let chunk = SNAPSHOT_CHUNK_LEN as u64;
        let limit = (self.have + WINDOW_CHUNKS * chunk).min(self.file.len);
        if self.asked >= limit {
            return None;
        }
        let left = (self.file.len - self.asked).div_ceil(chunk);
        let count = left.min(u64::from(MAX_SNAPSHOT_CHUNKS)) as u16;
        let offset = self.asked;
        self.asked = (self.asked + u64::from(count) * chunk).min(self.file.len);
        Some(Message::SnapshotRequest {
            digest: self.file.digest,
            offset,
            count,
        })
    }

    /// A received chunk of `digest` at `offset`.
    pub fn handle_chunk(
        &mut self,
        digest: &Digest,
        offset: u64,
        bytes: &[u8],
        now: u64,
    ) -> Result<Chunk, FetchError> {
        if *digest != self.file.digest || offset != self.have || self.is_complete() {
            return Ok(Chunk::Ignored);
        }
        let expected = (self.file.len - offset).min(SNAPSHOT_CHUNK_LEN as u64) as usize;
        if bytes.len() != expected {
            return Err(FetchError::BadChunk {
                offset,
                len: bytes.len(),
                expected,
            });
        }
        self.have += expected as u64;
        self.asked = self.asked.max(self.have);
        self.progress_at = now;
        Ok(Chunk::Accepted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file(len: u64) -> SnapshotFile {
        SnapshotFile {
            milestone: 9,
            len,
            digest: Digest([7; 32]),
            base: None,
        }
    }

    /// A peer that serves `data` and drops the chunks `drop` says, in order.
    fn serve(data: &[u8], m: &Message, drop: &mut impl FnMut() -> bool) -> Vec<(u64, Vec<u8>)> {
        let Message::SnapshotRequest { offset, count, .. } = m else {
            panic!("not a request: {m:?}");
        };
        let mut out = Vec::new();
        let mut at = *offset as usize;
        for _ in 0..*count {
            if at >= data.len() {
                break;
            }
            let end = (at + SNAPSHOT_CHUNK_LEN).min(data.len());
            if !drop() {
                out.push((at as u64, data[at..end].to_vec()));
            }
            at = end;
        }
        out
    }

    fn run(data: &[u8], have: u64, mut drop: impl FnMut() -> bool) -> (Vec<u8>, u64) {
        let mut kept = data[..(have as usize / SNAPSHOT_CHUNK_LEN) * SNAPSHOT_CHUNK_LEN].to_vec();
        let mut d = Download::new(file(data.len() as u64), have, 0).unwrap();
        assert_eq!(d.received(), kept.len() as u64);
        let mut now = 0;
        let mut rounds = 0;
        while !d.is_complete() {
            rounds += 1;
            assert!(rounds < 100_000, "no progress");
            let mut requests = Vec::new();
            while let Some(m) = d.poll_request(now) {
                requests.push(m);
            }
            for m in &requests {
                for (off, bytes) in serve(data, m, &mut drop) {
                    if d.handle_chunk(&Digest([7; 32]), off, &bytes, now).unwrap()
                        == Chunk::Accepted
                    {
                        kept.extend_from_slice(&bytes);
                    }
                }
            }
            now += 1_000;
        }
        (kept, d.restarts())
    }

    #[test]
    fn downloads_in_order_and_resumes() {
        let data: Vec<u8> = (0..SNAPSHOT_CHUNK_LEN * 300 + 17)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let (kept, restarts) = run(&data, 0, || false);
        assert_eq!(kept, data);
        assert_eq!(restarts, 0);
        // Resumed from a partial file (not on a chunk boundary: rounded down).
        let (kept, _) = run(&data, SNAPSHOT_CHUNK_LEN as u64 * 77 + 5, || false);
        assert_eq!(kept, data);
    }

    #[test]
    fn requests_stay_within_the_window_and_the_wire_limits() {
        let mut d = Download::new(file(SNAPSHOT_CHUNK_LEN as u64 * 1000), 0, 0).unwrap();
        let mut asked = 0u64;
        while let Some(m) = d.poll_request(0) {
            m.check_limits().unwrap();
            let Message::SnapshotRequest { count, .. } = m else {
                unreachable!()
            };
            asked += u64::from(count);
        }
        assert_eq!(asked, WINDOW_CHUNKS);
    }

    #[test]
    fn wrong_length_at_the_next_offset_is_an_error_and_other_files_are_ignored() {
        let mut d = Download::new(file(100_000), 0, 0).unwrap();
        assert_eq!(
            d.handle_chunk(&Digest([8; 32]), 0, &[0; SNAPSHOT_CHUNK_LEN], 0),
            Ok(Chunk::Ignored)
        );
        assert!(d.handle_chunk(&Digest([7; 32]), 0, &[0; 10], 0).is_err());
        assert_eq!(d.received(), 0);
        assert!(Download::new(file(0), 0, 0).is_err());
    }

    proptest! {
        #[test]
        fn lost_chunks_are_asked_again(len in 1usize..400_000, seed in any::<u64>(), resume in 0usize..400_000) {
            let data: Vec<u8> = (0..len).map(|i| (i as u64 ^ seed) as u8).collect();
            let mut x = seed | 1;
            let drop = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % 5 == 0
            };
            let (kept, _) = run(&data, resume.min(len) as u64, drop);
            prop_assert_eq!(kept, data);
        }
    }
}

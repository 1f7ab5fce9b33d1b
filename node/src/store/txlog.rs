//! The transaction log: a sequence of segment files of checksummed frames (see the
//! [module](super) docs). Positional I/O only (`pread`/`pwrite`), so readers never wait for
//! the writer and never share a file cursor.
//!
//! Segment `n` is the file [`layout::log_segment_name`]`(n)` in the database directory;
//! the live segments are always a contiguous range of ids, the newest being the active one
//! (appended to). Segments are created by the writer when the active one is full and
//! deleted oldest first, so a gap in the ids means damage.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use dag_core::store::{Result, StoreError};

use node_proto::layout::{self, Frame, FRAME_HEADER_LEN, LOG_MAGIC, MAX_FRAME_LEN};

pub(crate) fn io_error(what: &str, e: io::Error) -> StoreError {
    StoreError::Backend(format!("{what}: {e}"))
}

/// Bits of a [`LogPos`] holding the offset in the segment.
const OFFSET_BITS: u32 = 40;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;
const TAG_MASK: u64 = (1 << (64 - OFFSET_BITS)) - 1;
/// Largest segment accepted: offsets (plus a frame) stay well within [`OFFSET_BITS`].
pub(crate) const MAX_SEGMENT_BYTES: u64 = 1 << 38;

/// A position in the log in 8 bytes: the segment's id modulo 2^24 (its *tag*; the live
/// segments are far fewer, so the tag names one of them) and the byte offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LogPos(u64);

impl LogPos {
    pub(crate) fn new(segment: u64, offset: u64) -> LogPos {
        debug_assert!(offset <= OFFSET_MASK);
        LogPos(((segment & TAG_MASK) << OFFSET_BITS) | (offset & OFFSET_MASK))
    }

    /// The segment's id modulo 2^24.
    pub(crate) fn tag(self) -> u64 {
        self.0 >> OFFSET_BITS
    }

    /// Byte offset in the segment.
    pub(crate) fn offset(self) -> u64 {
        self.0 & OFFSET_MASK
    }

    /// The position `n` bytes further in the same segment.
    pub(crate) fn plus(self, n: u64) -> LogPos {
        LogPos::new(self.tag(), self.offset() + n)
    }
}

/// Index, in a list of live segments starting at id `first`, of the segment with `tag`.
pub(crate) fn segment_index(first: u64, tag: u64) -> usize {
    (tag.wrapping_sub(first) & TAG_MASK) as usize
}

/// One segment file.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Its id (0 for `transactions.log`).
    pub(crate) id: u64,
    file: File,
    /// `None` for the anonymous files of a temporary store.
    path: Option<PathBuf>,
}

/// A reader at a position of a file, through `pread` (the file's cursor is not used).
struct At<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Reads `buf.len()` bytes or reports how many were there (a short read at the end).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// How a scan of a segment's frames ended.
enum ScanEnd {
    /// At `end`, the end of the file or the limit.
    Clean(u64),
    /// At `end`, the start of an incomplete or damaged frame.
    Damaged(u64),
}

impl Segment {
    /// Writes the magic into an empty file (or one a crash left with part of the magic),
    /// or checks it. With `may_start` false the magic must be there whole.
    fn start(&self, may_start: bool, sync: bool) -> Result<()> {
        let mut magic = [0u8; 8];
        let got = read_full(
            &mut At {
                file: &self.file,
                pos: 0,
            },
            &mut magic,
        )
        .map_err(|e| io_error("reading the log", e))?;
        match got {
            n if n < 8 && magic[..n] == LOG_MAGIC[..n] && may_start => {
                self.append(0, LOG_MAGIC)?;
                if sync {
                    self.sync()?;
                }
                Ok(())
            }
            8 if &magic == LOG_MAGIC => Ok(()),
            _ => Err(StoreError::Corrupt(format!(
                "log segment {} has an unknown format or is cut short",
                self.id
            ))),
        }
    }

    /// The file's length.
    pub(crate) fn len(&self) -> Result<u64> {
        Ok(self
            .file
            .metadata()
            .map_err(|e| io_error("reading the log's size", e))?
            .len())
    }

    /// Visits the valid frames before `limit`: `visit(body_offset, frame)`.
    fn scan(
        &self,
        limit: u64,
        visit: &mut dyn FnMut(u64, Frame<'_>) -> Result<()>,
    ) -> Result<ScanEnd> {
        let start = LOG_MAGIC.len() as u64;
        let mut r = BufReader::with_capacity(
            1 << 20,
            At {
                file: &self.file,
                pos: start,
            },
        );
        let mut at = start;
        let mut body = Vec::new();
        let read = |e| io_error("reading the log", e);
        while at < limit {
            let mut header = [0u8; FRAME_HEADER_LEN];
            if read_full(&mut r, &mut header).map_err(read)? < FRAME_HEADER_LEN {
                return Ok(ScanEnd::Damaged(at));
            }
            let (len, crc) = layout::decode_frame_header(&header);
            let frame_end = at + (FRAME_HEADER_LEN + len) as u64;
            if len > MAX_FRAME_LEN || frame_end > limit {
                return Ok(ScanEnd::Damaged(at));
            }
            body.resize(len, 0);
            if read_full(&mut r, &mut body).map_err(read)? < len
                || !layout::body_matches(&body, crc)
            {
                return Ok(ScanEnd::Damaged(at));
            }
            let Ok(frame) = layout::decode_body(&body) else {
                return Ok(ScanEnd::Damaged(at));
            };
            visit(at + FRAME_HEADER_LEN as u64, frame)?;
            at = frame_end;
        }
        Ok(ScanEnd::Clean(at))
    }

    /// Visits the frames before `end` (which ends a frame written earlier).
    pub(crate) fn for_each_frame(
        &self,
        end: u64,
        visit: &mut dyn FnMut(u64, Frame<'_>) -> Result<()>,
    ) -> Result<()> {
        match self.scan(end, visit)? {
            ScanEnd::Clean(_) => Ok(()),
            ScanEnd::Damaged(at) => Err(StoreError::Corrupt(format!(
                "log segment {} damaged at byte {at}",
                self.id
            ))),
        }
    }

    /// Writes `bytes` at `at`. On failure the file is cut back to `at` (best effort), so a
    /// half-written frame does not linger before the next one.
    pub(crate) fn append(&self, at: u64, bytes: &[u8]) -> Result<()> {
        self.file.write_all_at(bytes, at).map_err(|e| {
            let _ = self.file.set_len(at);
            io_error("appending to the transaction log", e)
        })
    }

    /// Reads exactly `buf.len()` bytes at `at`.
    pub(crate) fn read_at(&self, at: u64, buf: &mut [u8]) -> Result<()> {
        self.file.read_exact_at(buf, at).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                StoreError::Corrupt(format!(
                    "log segment {} too short for a read at {at}",
                    self.id
                ))
            } else {
                io_error("reading the transaction log", e)
            }
        })
    }

    /// `fdatasync`: the data and the file's size reach the device.
    pub(crate) fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| io_error("fdatasync of the transaction log", e))
    }
}

/// The live segments of an open log, oldest first.
#[derive(Debug)]
pub(crate) struct TxLog {
    /// The database directory; `None` for a temporary store (anonymous files).
    dir: Option<PathBuf>,
    /// Whether creating and deleting segments is made durable (`fsync` of the directory).
    sync: bool,
    segments: RwLock<VecDeque<Arc<Segment>>>,
}

/// What [`TxLog::scan`] found.
#[derive(Debug)]
pub(crate) struct Scanned {
    /// Where the next frame goes in the active segment: the end of its last valid frame.
    pub end: u64,
    /// Bytes of a torn or damaged tail of the active segment that were cut off (0
    /// normally).
    pub dropped: u64,
}

/// The segment files in `dir`, by id.
fn segment_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| io_error("listing the database directory", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error("listing the database directory", e))?;
        if let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(layout::parse_log_segment_name)
        {
            found.push((id, entry.path()));
        }
    }
    found.sort_unstable_by_key(|f| f.0);
    Ok(found)
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("fsync of the database dir", e))
}

impl TxLog {
    /// Opens the log's segments in `dir`. With `create` (a new database) there must be
    /// none, and segment 0 is created; otherwise there must be at least one. Every segment
    /// but the newest must start with the magic; the newest gets it if a crash cut it short.
    /// With `sync`, creations (and later deletions) are made durable.
    pub(crate) fn open(dir: &Path, create: bool, sync: bool) -> Result<TxLog> {
        let found = segment_files(dir)?;
        if create {
            if let Some((_, path)) = found.first() {
                return Err(StoreError::Corrupt(format!(
                    "{} exists without its database",
                    path.display()
                )));
            }
            let log = TxLog {
                dir: Some(dir.to_path_buf()),
                sync,
                segments: RwLock::new(VecDeque::new()),
            };
            let first = log.create_segment(0)?;
            log.push(first);
            return Ok(log);
        }
        let Some(&(first, _)) = found.first() else {
            return Err(StoreError::Corrupt(format!(
                "the transaction log {} is missing",
                dir.join(layout::LOG_FILE).display()
            )));
        };
        let mut segments = VecDeque::with_capacity(found.len());
        for (i, (id, path)) in found.iter().enumerate() {
            if *id != first + i as u64 {
                return Err(StoreError::Corrupt(format!(
                    "log segment {} is missing (segments {first} to {} remain)",
                    first + i as u64,
                    found.last().map_or(0, |f| f.0)
                )));
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| io_error(&format!("opening {}", path.display()), e))?;
            let seg = Segment {
                id: *id,
                file,
                path: Some(path.clone()),
            };
            seg.start(i + 1 == found.len(), sync)?;
            if seg.len()? >= MAX_SEGMENT_BYTES {
                return Err(StoreError::Corrupt(format!(
                    "log segment {id} is larger than {MAX_SEGMENT_BYTES} bytes"
                )));
            }
            segments.push_back(Arc::new(seg));
        }
        Ok(TxLog {
            dir: Some(dir.to_path_buf()),
            sync,
            segments: RwLock::new(segments),
        })
    }

    /// An anonymous log, deleted when closed (temporary stores).
    pub(crate) fn temporary() -> Result<TxLog> {
        let log = TxLog {
            dir: None,
            sync: false,
            segments: RwLock::new(VecDeque::new()),
        };
        let first = log.create_segment(0)?;
        log.push(first);
        Ok(log)
    }

    fn read(&self) -> RwLockReadGuard<'_, VecDeque<Arc<Segment>>> {
        // The list is changed in single push/pop steps, so a poisoned lock is consistent.
        self.segments.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, VecDeque<Arc<Segment>>> {
        self.segments.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls `visit(segment id, body offset, frame)` for every valid frame, oldest segment
    /// first. A torn tail of the newest segment (an incomplete frame, or one whose checksum
    /// fails, as a crash during an append leaves) ends the log: it is cut off (durably with
    /// `sync`) and reported. Damage in an older segment, which was complete and synced
    /// before the next one was created, is [`StoreError::Corrupt`].
    pub(crate) fn scan(
        &self,
        visit: &mut dyn FnMut(u64, u64, Frame<'_>) -> Result<()>,
    ) -> Result<Scanned> {
        let segments = self.snapshot();
        let mut out = Scanned {
            end: LOG_MAGIC.len() as u64,
            dropped: 0,
        };
        for (i, seg) in segments.iter().enumerate() {
            let newest = i + 1 == segments.len();
            let len = seg.len()?;
            match seg.scan(len, &mut |at, frame| visit(seg.id, at, frame))? {
                ScanEnd::Clean(end) => out.end = end,
                ScanEnd::Damaged(end) if newest => {
                    seg.file
                        .set_len(end)
                        .map_err(|e| io_error("cutting the torn tail of the log", e))?;
                    if self.sync {
                        seg.sync()?;
                    }
                    out = Scanned {
                        end,
                        dropped: len - end,
                    };
                }
                ScanEnd::Damaged(end) => {
                    return Err(StoreError::Corrupt(format!(
                        "log segment {} is damaged at byte {end}, and newer segments follow it",
                        seg.id
                    )))
                }
            }
        }
        Ok(out)
    }

    /// Creates segment `id` (not yet live: see [`TxLog::push`]) with its magic; with
    /// `sync`, durably (the file and the directory entry).
    pub(crate) fn create_segment(&self, id: u64) -> Result<Arc<Segment>> {
        let seg = match &self.dir {
            Some(dir) => {
                let path = dir.join(layout::log_segment_name(id));
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|e| io_error(&format!("creating {}", path.display()), e))?;
                Segment {
                    id,
                    file,
                    path: Some(path),
                }
            }
            None => Segment {
                id,
                file: tempfile::tempfile().map_err(|e| io_error("creating a temporary log", e))?,
                path: None,
            },
        };
        let started = seg
            .start(true, self.sync)
            .and_then(|()| match (self.sync, &self.dir) {
                (true, Some(dir)) => fsync_dir(dir),
                _ => Ok(()),
            });
        if let Err(e) = started {
            // Not live yet: take the file away, so the next attempt can create it again.
            if let Some(path) = &seg.path {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
        Ok(Arc::new(seg))
    }

    /// Makes a segment from [`TxLog::create_segment`] the newest live one.
    pub(crate) fn push(&self, seg: Arc<Segment>) {
        self.write().push_back(seg);
    }

    /// The live segment with tag `tag` ([`LogPos::tag`]).
    pub(crate) fn segment(&self, tag: u64) -> Option<Arc<Segment>> {
        let segments = self.read();
        let first = segments.front()?.id;
        segments
            .get(segment_index(first, tag))
            .filter(|s| s.id & TAG_MASK == tag)
            .cloned()
    }

    /// The newest segment, the one appended to.
    pub(crate) fn active(&self) -> Arc<Segment> {
        self.read()
            .back()
            .cloned()
            .expect("a log always has an active segment")
    }

    /// The live segments, oldest first.
    pub(crate) fn snapshot(&self) -> Vec<Arc<Segment>> {
        self.read().iter().cloned().collect()
    }

    /// Id of the oldest live segment.
    pub(crate) fn first_id(&self) -> u64 {
        self.read().front().map_or(0, |s| s.id)
    }

    /// Number of live segments.
    pub(crate) fn segment_count(&self) -> usize {
        self.read().len()
    }

    /// Deletes the oldest segment's file (never the active one); with `sync`, durably,
    /// before any younger segment can go. It stays readable through handles already taken
    /// until they are dropped; [`TxLog::pop_oldest`] takes it out of the live list.
    pub(crate) fn remove_oldest_file(&self) -> Result<()> {
        let oldest = {
            let segments = self.read();
            if segments.len() < 2 {
                return Err(StoreError::Backend(
                    "the active log segment cannot be deleted".into(),
                ));
            }
            segments.front().cloned().expect("checked above")
        };
        if let Some(path) = &oldest.path {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                // Deleted by an earlier attempt that failed afterwards.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(io_error(
                        &format!("deleting log segment {}", path.display()),
                        e,
                    ))
                }
            }
            if let (true, Some(dir)) = (self.sync, &self.dir) {
                fsync_dir(dir)?;
            }
        }
        Ok(())
    }

    /// Takes the oldest segment out of the live list (after [`TxLog::remove_oldest_file`]).
    pub(crate) fn pop_oldest(&self) {
        let mut segments = self.write();
        if segments.len() > 1 {
            segments.pop_front();
        }
    }

    /// Bytes the live segments occupy.
    pub(crate) fn size(&self) -> Result<u64> {
        self.snapshot()
            .iter()
            .try_fold(0u64, |sum, s| Ok(sum + s.len()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dag_core::TxId;
    use node_proto::layout::{frame, solid_body};

    fn ids(frame: Frame<'_>) -> Vec<TxId> {
        match frame {
            Frame::Solid(ids) => ids,
            _ => panic!("unexpected kind"),
        }
    }

    fn open(dir: &Path, create: bool) -> (TxLog, Scanned, Vec<(u64, Vec<TxId>)>) {
        let mut seen = Vec::new();
        let log = TxLog::open(dir, create, false).unwrap();
        let s = log
            .scan(&mut |seg, _, f| {
                seen.push((seg, ids(f)));
                Ok(())
            })
            .unwrap();
        (log, s, seen)
    }

    fn seg_path(dir: &Path, id: u64) -> PathBuf {
        dir.join(layout::log_segment_name(id))
    }

    /// Frames written are read back in order; a torn last frame is cut off and the log
    /// carries on from there.
    #[test]
    fn frames_survive_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = seg_path(dir.path(), 0);
        let a = frame(&solid_body(&[TxId([1; 32])]));
        let b = frame(&solid_body(&[TxId([2; 32]), TxId([3; 32])]));
        let (log, s, seen) = open(dir.path(), true);
        assert!(seen.is_empty());
        let active = log.active();
        active.append(s.end, &a).unwrap();
        active.append(s.end + a.len() as u64, &b).unwrap();
        let full = s.end + (a.len() + b.len()) as u64;
        drop((log, active));
        let (_, s, seen) = open(dir.path(), false);
        assert_eq!(
            seen,
            vec![
                (0, vec![TxId([1; 32])]),
                (0, vec![TxId([2; 32]), TxId([3; 32])])
            ]
        );
        assert_eq!((s.end, s.dropped), (full, 0));

        // Torn in three ways: a short header, a short body, a damaged body.
        let bytes = std::fs::read(&path).unwrap();
        let a_end = full - b.len() as u64;
        for (cut, flip) in [(a_end + 4, None), (full - 1, None), (full, Some(full - 3))] {
            let mut damaged = bytes[..cut as usize].to_vec();
            if let Some(at) = flip {
                damaged[at as usize] ^= 0xff;
            }
            std::fs::write(&path, &damaged).unwrap();
            let (_, s, seen) = open(dir.path(), false);
            assert_eq!(seen, vec![(0, vec![TxId([1; 32])])]);
            assert_eq!(s.end, a_end);
            assert_eq!(s.dropped, cut - a_end);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), a_end);
        }
    }

    /// Segments are read in id order; only the newest may be torn (it is cut), damage in
    /// an older one or a missing segment in the middle is corruption, and a newest segment
    /// a crash left without its whole magic is started again.
    #[test]
    fn segments_are_read_in_order_and_only_the_newest_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let log = TxLog::open(dir.path(), true, false).unwrap();
        for i in 0..3u8 {
            if i > 0 {
                log.push(log.create_segment(u64::from(i)).unwrap());
            }
            log.active()
                .append(8, &frame(&solid_body(&[TxId([i; 32])])))
                .unwrap();
        }
        assert_eq!(log.segment_count(), 3);
        drop(log);
        let (log, _, seen) = open(dir.path(), false);
        let expected: Vec<_> = (0..3u8)
            .map(|i| (u64::from(i), vec![TxId([i; 32])]))
            .collect();
        assert_eq!(seen, expected);
        // Tags find the segments; positions pack segment and offset.
        let p = LogPos::new(2, 77);
        assert_eq!((p.tag(), p.offset(), p.plus(3).offset()), (2, 77, 80));
        assert_eq!(log.segment(p.tag()).unwrap().id, 2);
        assert!(log.segment(5).is_none());
        drop(log);

        // The oldest segment deleted: the others still open.
        std::fs::remove_file(seg_path(dir.path(), 0)).unwrap();
        let (log, _, seen) = open(dir.path(), false);
        assert_eq!(seen, expected[1..].to_vec());
        assert_eq!(log.first_id(), 1);
        drop(log);

        // A torn newest segment is cut; a torn older one is corruption.
        let newest = seg_path(dir.path(), 2);
        let len = std::fs::metadata(&newest).unwrap().len();
        let f = OpenOptions::new().write(true).open(&newest).unwrap();
        f.set_len(len - 1).unwrap();
        let (_, s, seen) = open(dir.path(), false);
        assert_eq!(seen, expected[1..2].to_vec());
        assert_eq!((s.end, s.dropped), (8, len - 9));
        let older = seg_path(dir.path(), 1);
        let len = std::fs::metadata(&older).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&older)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        assert!(matches!(
            TxLog::open(dir.path(), false, false).and_then(|l| l.scan(&mut |_, _, _| Ok(()))),
            Err(StoreError::Corrupt(_))
        ));

        // A gap in the ids is corruption.
        let dir = tempfile::tempdir().unwrap();
        let log = TxLog::open(dir.path(), true, false).unwrap();
        for i in 1..3 {
            log.push(log.create_segment(i).unwrap());
        }
        drop(log);
        std::fs::remove_file(seg_path(dir.path(), 1)).unwrap();
        assert!(matches!(
            TxLog::open(dir.path(), false, false),
            Err(StoreError::Corrupt(_))
        ));

        // A newest segment with part of its magic (a crash while creating it) is started.
        std::fs::write(seg_path(dir.path(), 1), &LOG_MAGIC[..3]).unwrap();
        std::fs::remove_file(seg_path(dir.path(), 2)).unwrap();
        let (log, s, seen) = open(dir.path(), false);
        assert_eq!((seen.len(), s.end, log.segment_count()), (0, 8, 2));
    }

    #[test]
    fn a_file_of_another_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(seg_path(dir.path(), 0), b"not a tangle log").unwrap();
        let r = TxLog::open(dir.path(), false, false);
        assert!(matches!(r, Err(StoreError::Corrupt(_))));
    }

    /// A new log refuses existing segments; an existing one needs at least one.
    #[test]
    fn create_and_open_check_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            TxLog::open(dir.path(), false, false),
            Err(StoreError::Corrupt(_))
        ));
        drop(TxLog::open(dir.path(), true, false).unwrap());
        assert!(matches!(
            TxLog::open(dir.path(), true, false),
            Err(StoreError::Corrupt(_))
        ));
        // Unrelated files are ignored.
        std::fs::write(dir.path().join("transactions.log.tmp"), b"x").unwrap();
        assert_eq!(
            TxLog::open(dir.path(), false, false)
                .unwrap()
                .segment_count(),
            1
        );
    }
}

//! The transaction log: an append-only file of checksummed frames (see the
//! [module](super) docs). Positional I/O only (`pread`/`pwrite`), so readers never wait for
//! the writer and never share a file cursor.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use dag_core::store::{Result, StoreError};

use node_proto::layout::{self, Frame, FRAME_HEADER_LEN, LOG_MAGIC, MAX_FRAME_LEN};

fn io_error(what: &str, e: io::Error) -> StoreError {
    StoreError::Backend(format!("{what}: {e}"))
}

/// An open transaction log.
#[derive(Debug)]
pub(crate) struct TxLog {
    file: File,
}

/// What [`TxLog::open`] found.
#[derive(Debug)]
pub(crate) struct Opened {
    pub log: TxLog,
    /// Where the next frame goes: the end of the last valid frame.
    pub end: u64,
    /// Bytes of a torn or damaged tail that were cut off (0 normally).
    pub dropped: u64,
}

/// A reader at a position of the file, through `pread` (the file's cursor is not used).
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

/// How a scan of the frames ended.
enum ScanEnd {
    /// At `end`, the end of the file or the limit.
    Clean(u64),
    /// At `end`, the start of an incomplete or damaged frame.
    Damaged(u64),
}

impl TxLog {
    /// Opens the log at `path`, creating it if `create` and it does not exist, and calls
    /// `visit(body_offset, frame)` for every valid frame in order (`body_offset` is where
    /// the frame's body starts in the file). A torn tail (an incomplete frame, or one whose
    /// checksum fails, as a crash during an append leaves) ends the log: it is cut off and
    /// reported in [`Opened::dropped`]. With `sync`, creating and cutting are made durable.
    pub(crate) fn open(
        path: &Path,
        create: bool,
        sync: bool,
        visit: &mut dyn FnMut(u64, Frame<'_>) -> Result<()>,
    ) -> Result<Opened> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)
            .map_err(|e| io_error(&format!("opening {}", path.display()), e))?;
        let log = TxLog { file };
        log.start(sync)?;
        let len = log.len()?;
        let (end, dropped) = match log.scan(len, visit)? {
            ScanEnd::Clean(end) => (end, 0),
            ScanEnd::Damaged(end) => {
                log.file
                    .set_len(end)
                    .map_err(|e| io_error("cutting the torn tail of the log", e))?;
                if sync {
                    log.sync()?;
                }
                (end, len - end)
            }
        };
        Ok(Opened { log, end, dropped })
    }

    /// An anonymous log, deleted when closed (temporary stores).
    pub(crate) fn temporary() -> Result<Opened> {
        let file = tempfile::tempfile().map_err(|e| io_error("creating a temporary log", e))?;
        let log = TxLog { file };
        log.start(false)?;
        Ok(Opened {
            log,
            end: LOG_MAGIC.len() as u64,
            dropped: 0,
        })
    }

    /// Writes the magic into an empty file, or checks it.
    fn start(&self, sync: bool) -> Result<()> {
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
            // Empty, or a crash cut the magic short when the file was created.
            n if n < 8 && magic[..n] == LOG_MAGIC[..n] => {
                self.append(0, LOG_MAGIC)?;
                if sync {
                    self.sync()?;
                }
                Ok(())
            }
            8 if &magic == LOG_MAGIC => Ok(()),
            _ => Err(StoreError::Corrupt(
                "the transaction log has an unknown format".into(),
            )),
        }
    }

    fn len(&self) -> Result<u64> {
        Ok(self
            .file
            .metadata()
            .map_err(|e| io_error("reading the log's size", e))?
            .len())
    }

    /// Bytes the file occupies (its length).
    pub(crate) fn size(&self) -> Result<u64> {
        self.len()
    }

    /// Visits the valid frames before `limit`.
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
                "transaction log damaged at byte {at}"
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
                StoreError::Corrupt(format!("transaction log too short for a read at {at}"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use dag_core::TxId;
    use node_proto::layout::{frame, solid_body};

    fn ids(frame: Frame<'_>) -> Vec<TxId> {
        match frame {
            Frame::Solid(ids) => ids,
            Frame::Transactions(_) => panic!("unexpected kind"),
        }
    }

    fn open(path: &Path) -> (Opened, Vec<Vec<TxId>>) {
        let mut seen = Vec::new();
        let o = TxLog::open(path, true, false, &mut |_, f| {
            seen.push(ids(f));
            Ok(())
        })
        .unwrap();
        (o, seen)
    }

    /// Frames written are read back in order; a torn last frame is cut off and the log
    /// carries on from there.
    #[test]
    fn frames_survive_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let a = frame(&solid_body(&[TxId([1; 32])]));
        let b = frame(&solid_body(&[TxId([2; 32]), TxId([3; 32])]));
        let (o, seen) = open(&path);
        assert!(seen.is_empty());
        o.log.append(o.end, &a).unwrap();
        o.log.append(o.end + a.len() as u64, &b).unwrap();
        let full = o.end + (a.len() + b.len()) as u64;
        drop(o);
        let (o, seen) = open(&path);
        assert_eq!(
            seen,
            vec![vec![TxId([1; 32])], vec![TxId([2; 32]), TxId([3; 32])]]
        );
        assert_eq!((o.end, o.dropped), (full, 0));
        drop(o);

        // Torn in three ways: a short header, a short body, a damaged body.
        let bytes = std::fs::read(&path).unwrap();
        let a_end = full - b.len() as u64;
        for (cut, flip) in [(a_end + 4, None), (full - 1, None), (full, Some(full - 3))] {
            let mut damaged = bytes[..cut as usize].to_vec();
            if let Some(at) = flip {
                damaged[at as usize] ^= 0xff;
            }
            std::fs::write(&path, &damaged).unwrap();
            let (o, seen) = open(&path);
            assert_eq!(seen, vec![vec![TxId([1; 32])]]);
            assert_eq!(o.end, a_end);
            assert_eq!(o.dropped, cut - a_end);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), a_end);
        }
    }

    #[test]
    fn a_file_of_another_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, b"not a tangle log").unwrap();
        let r = TxLog::open(&path, true, false, &mut |_, _| Ok(()));
        assert!(matches!(r, Err(StoreError::Corrupt(_))));
    }
}

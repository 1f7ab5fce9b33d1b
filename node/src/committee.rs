//! A committee member's durable vote (`node_proto::VoteRecord`): the last proposal this
//! node signed, written to `<data_dir>/committee-vote` before the signature leaves the node,
//! and handed back to the core on start, so a restarted member never signs two proposals
//! for one index.
//!
//! The file is replaced atomically (written to `committee-vote.tmp`, synced, renamed, the
//! directory synced): a crash leaves the previous vote or the new one, never a torn file.
//! One vote a second or so, a few hundred bytes each.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use node_proto::VoteRecord;

/// The vote file of a node.
#[derive(Clone, Debug)]
pub struct VoteFile {
    path: PathBuf,
}

/// The vote file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum VoteFileError {
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file holds no vote record (damaged): the node refuses to start rather than risk
    /// signing a second proposal for an index.
    #[error("{path}: not a vote record ({why}); remove it only if this member signed nothing at the current index")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

impl VoteFile {
    /// The vote file in `data_dir`.
    pub fn in_dir(data_dir: &Path) -> Self {
        VoteFile {
            path: data_dir.join("committee-vote"),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored vote (`None`: no file, never voted).
    pub fn read(&self) -> Result<Option<VoteRecord>, VoteFileError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(VoteFileError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        rmp_serde::from_slice(&bytes)
            .map(Some)
            .map_err(|e| VoteFileError::Damaged {
                path: self.path.clone(),
                why: e.to_string(),
            })
    }

    /// Records `vote` unless the file holds a vote it contradicts (another proposal at the
    /// same index, or a later index): returns that vote then, and writes nothing. The file
    /// is the last word on what this member signed, whatever the core's state (e.g. a core
    /// that signed before the vote file was handed back to it at start).
    pub fn record(&self, vote: &VoteRecord) -> Result<Option<VoteRecord>, VoteFileError> {
        if let Some(held) = self.read()? {
            if held.index > vote.index
                || (held.index == vote.index && held.proposal != vote.proposal)
            {
                return Ok(Some(held));
            }
            if held == *vote {
                return Ok(None);
            }
        }
        self.write(vote)?;
        Ok(None)
    }

    /// Replaces the stored vote with `vote`, durably (returns once synced).
    pub fn write(&self, vote: &VoteRecord) -> Result<(), VoteFileError> {
        let io = |source| VoteFileError::Io {
            path: self.path.clone(),
            source,
        };
        let bytes = rmp_serde::to_vec(vote).map_err(|e| VoteFileError::Damaged {
            path: self.path.clone(),
            why: e.to_string(),
        })?;
        let tmp = self.path.with_extension("tmp");
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        File::open(&dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dag_core::{Digest, Milestone, Signature, TxId};
    use node_proto::wire::CommitteeMessage;

    fn vote(index: u32) -> VoteRecord {
        VoteRecord {
            index,
            proposal: Digest([index as u8; 32]),
            message: CommitteeMessage {
                round: 1,
                proposer: 2,
                parents: [TxId([1; 32]), TxId([2; 32])],
                milestone: Milestone {
                    index,
                    timestamp: 5,
                    previous: TxId([3; 32]),
                    confirmed_root: Digest([4; 32]),
                    applied_root: Digest([5; 32]),
                    state_root: Digest([6; 32]),
                    ledger_digest: Digest([7; 32]),
                    signatures: vec![(2, Signature([8; 64]))],
                    committee_update: None,
                },
            },
        }
    }

    #[test]
    fn the_last_vote_survives_and_a_damaged_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = VoteFile::in_dir(dir.path());
        assert_eq!(f.read().unwrap(), None);
        f.write(&vote(7)).unwrap();
        f.write(&vote(8)).unwrap();
        assert_eq!(VoteFile::in_dir(dir.path()).read().unwrap(), Some(vote(8)));
        // A vote contradicting the stored one is refused and the stored one returned.
        let mut other = vote(8);
        other.proposal = Digest([99; 32]);
        assert_eq!(f.record(&other).unwrap(), Some(vote(8)));
        assert_eq!(f.record(&vote(7)).unwrap(), Some(vote(8)));
        assert_eq!(f.read().unwrap(), Some(vote(8)));
        assert_eq!(f.record(&vote(8)).unwrap(), None);
        assert_eq!(f.record(&vote(9)).unwrap(), None);
        assert_eq!(f.read().unwrap(), Some(vote(9)));
        std::fs::write(f.path(), b"\xc1junk").unwrap();
        assert!(matches!(f.read(), Err(VoteFileError::Damaged { .. })));
    }
}

//! A committee member's durable votes (`node_proto::VoteRecord`): at the index it is
//! deciding, its highest prevote, its lock (highest precommit) and the proposal whose
//! milestone it signed, with the proposals and certificates they name; written to
//! `<data_dir>/committee-vote` before the message carrying a new vote leaves the node, and
//! handed back to the core on start, so a restarted member never votes twice in one round,
//! keeps its lock and never signs two proposals for one index.
//!
//! The file is replaced atomically (written to `committee-vote.tmp`, synced, renamed, the
//! directory synced): a crash leaves the previous record or the new one, never a torn file.
//! About three records per milestone (prevote, precommit, signature), a few KiB each.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use node_proto::VoteRecord;

/// The file's format before the lock (one milestone signature per index).
#[derive(serde::Deserialize)]
struct LegacyVote {
    index: dag_core::MilestoneIndex,
    proposal: dag_core::Digest,
    message: node_proto::wire::CommitteeMessage,
}

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
        match rmp_serde::from_slice::<VoteRecord>(&bytes) {
            Ok(v) => Ok(Some(v)),
            Err(e) => match rmp_serde::from_slice::<LegacyVote>(&bytes) {
                // A vote of a node from before the lock: the milestone signature it gave.
                Ok(l) => Ok(Some(VoteRecord {
                    index: l.index,
                    prevote: None,
                    lock: None,
                    signed: Some(l.proposal),
                    messages: vec![l.message],
                    rounds_from: 0,
                })),
                Err(_) => Err(VoteFileError::Damaged {
                    path: self.path.clone(),
                    why: e.to_string(),
                }),
            },
        }
    }

    /// Records `vote` unless it does not follow the record in the file
    /// ([`VoteRecord::extends`]: a vote taken back or changed, or an earlier index): returns
    /// the stored record then, and writes nothing. The file is the last word on what this
    /// member voted, whatever the core's state (e.g. a core that voted before the file was
    /// handed back to it at start).
    pub fn record(&self, vote: &VoteRecord) -> Result<Option<VoteRecord>, VoteFileError> {
        if let Some(held) = self.read()? {
            if !vote.extends(&held) {
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

    fn message(index: u32) -> CommitteeMessage {
        CommitteeMessage {
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
            votes: Vec::new(),
        }
    }

    fn vote(index: u32) -> VoteRecord {
        let d = Digest([index as u8; 32]);
        VoteRecord {
            index,
            prevote: Some((1, d)),
            lock: Some((1, d)),
            signed: Some(d),
            messages: vec![message(index)],
            rounds_from: 0,
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
        // A record contradicting the stored one is refused and the stored one returned:
        // another signed proposal, a prevote of the same round for another proposal, a lock
        // taken back, an earlier index.
        let mut other = vote(8);
        other.signed = Some(Digest([99; 32]));
        assert_eq!(f.record(&other).unwrap(), Some(vote(8)));
        let mut other = vote(8);
        other.prevote = Some((1, Digest([99; 32])));
        assert_eq!(f.record(&other).unwrap(), Some(vote(8)));
        let mut other = vote(8);
        other.lock = None;
        assert_eq!(f.record(&other).unwrap(), Some(vote(8)));
        assert_eq!(f.record(&vote(7)).unwrap(), Some(vote(8)));
        assert_eq!(f.read().unwrap(), Some(vote(8)));
        assert_eq!(f.record(&vote(8)).unwrap(), None);
        // A later round's votes follow it.
        let mut later = vote(8);
        later.prevote = Some((4, Digest([99; 32])));
        later.lock = Some((4, Digest([99; 32])));
        assert_eq!(f.record(&later).unwrap(), None);
        assert_eq!(f.read().unwrap(), Some(later));
        assert_eq!(f.record(&vote(9)).unwrap(), None);
        assert_eq!(f.read().unwrap(), Some(vote(9)));
        std::fs::write(f.path(), b"\xc1junk").unwrap();
        assert!(matches!(f.read(), Err(VoteFileError::Damaged { .. })));
    }

    /// A vote file written before the lock (index, proposal, message) is read as a record
    /// of that milestone signature.
    #[test]
    fn a_vote_file_from_before_the_lock_is_read() {
        #[derive(serde::Serialize)]
        struct Old {
            index: u32,
            proposal: Digest,
            message: (u32, u8, [TxId; 2], Milestone),
        }
        let m = message(8);
        let old = Old {
            index: 8,
            proposal: Digest([8; 32]),
            message: (m.round, m.proposer, m.parents, m.milestone.clone()),
        };
        let dir = tempfile::tempdir().unwrap();
        let f = VoteFile::in_dir(dir.path());
        std::fs::write(f.path(), rmp_serde::to_vec(&old).unwrap()).unwrap();
        let got = f.read().unwrap().unwrap();
        assert_eq!(got.index, 8);
        assert_eq!(got.signed, Some(Digest([8; 32])));
        assert_eq!((got.prevote, got.lock), (None, None));
        assert_eq!(got.messages, vec![m]);
    }
}

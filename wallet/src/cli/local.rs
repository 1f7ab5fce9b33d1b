//! The CLI's small local files next to the keystore `K`:
//! - `K.history`: one JSON line per payload this keystore issued (appended before submitting);
//! - `K.channels/<id>.json`: the payer state of each channel it opened (updated before a
//!   voucher is printed);
//! - `K.vouchers/`: the payee's best voucher of each channel ([`crate::FileVoucherStore`]).

use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use dag_core::{Body, ChannelId, PayloadId, SignedPayload};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::channel::PayerChannelState;
use crate::fsutil::write_atomic;

/// One payload this keystore issued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct HistoryEntry {
    /// Payload id (hex).
    pub(crate) payload_id: PayloadId,
    /// Sequence number.
    pub(crate) seq: u64,
    /// `pay`, `open`, `claim`, `refund`, `anchor`.
    pub(crate) kind: String,
    /// Local time it was signed, ms since the epoch.
    pub(crate) time_ms: u64,
    /// What it does (recipient, amount, channel, digest...).
    pub(crate) details: Value,
}

impl HistoryEntry {
    pub(crate) fn of(p: &SignedPayload) -> Self {
        let details = match &p.body {
            Body::Pay { to, amount, memo } => json!({
                "to": to.to_bech32(),
                "amount": amount,
                "memo": String::from_utf8_lossy(memo),
            }),
            Body::Open {
                payee,
                deposit,
                expires_at,
            } => json!({
                "channel_id": dag_core::crypto::channel_id(&p.issuer, p.seq).to_hex(),
                "payee": payee.to_bech32(),
                "deposit": deposit,
                "expires_at": expires_at,
            }),
            Body::Claim {
                channel, amount, ..
            } => json!({"channel_id": channel.to_hex(), "amount": amount}),
            Body::Refund { channel } => json!({"channel_id": channel.to_hex()}),
            Body::Anchor { tag, digest } => json!({
                "tag": String::from_utf8_lossy(tag),
                "digest": digest.to_hex(),
            }),
        };
        let time_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        HistoryEntry {
            payload_id: p.id(),
            seq: p.seq,
            kind: p.body.kind().to_string(),
            time_ms,
            details,
        }
    }
}

fn sibling(keystore: &Path, suffix: &str) -> PathBuf {
    let mut name = keystore
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "keystore".into());
    name.push(suffix);
    keystore.with_file_name(name)
}

/// The history file of `keystore`.
pub(crate) fn history_path(keystore: &Path) -> PathBuf {
    sibling(keystore, ".history")
}

/// The genesis pinned next to `keystore` by `init --genesis` (its committee checks proofs).
pub(crate) fn genesis_path(keystore: &Path) -> PathBuf {
    sibling(keystore, ".genesis.toml")
}

/// The payer channel directory of `keystore`.
pub(crate) fn channels_dir(keystore: &Path) -> PathBuf {
    sibling(keystore, ".channels")
}

/// The payee voucher directory of `keystore`.
pub(crate) fn vouchers_dir(keystore: &Path) -> PathBuf {
    sibling(keystore, ".vouchers")
}

/// Appends `entry` to the history and syncs it.
pub(crate) fn append_history(keystore: &Path, entry: &HistoryEntry) -> io::Result<()> {
    let mut opts = OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(history_path(keystore))?;
    let mut line = serde_json::to_vec(entry).map_err(io::Error::other)?;
    line.push(b'\n');
    f.write_all(&line)?;
    f.sync_data()
}

/// The history, oldest first; an absent file is an empty history. Lines that do not parse
/// (a torn last line after a crash) are skipped.
pub(crate) fn read_history(keystore: &Path) -> io::Result<Vec<HistoryEntry>> {
    let f = match fs::File::open(history_path(keystore)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for line in BufReader::new(f).lines() {
        if let Ok(e) = serde_json::from_str::<HistoryEntry>(&line?) {
            out.push(e);
        }
    }
    Ok(out)
}

fn channel_path(keystore: &Path, id: &ChannelId) -> PathBuf {
    channels_dir(keystore).join(format!("{}.json", id.to_hex()))
}

/// Saves a payer channel's state atomically.
pub(crate) fn save_channel(keystore: &Path, state: &PayerChannelState) -> io::Result<()> {
    fs::create_dir_all(channels_dir(keystore))?;
    let bytes = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
    write_atomic(&channel_path(keystore, &state.terms.id), &bytes)
}

/// A payer channel's saved state, `None` if this keystore did not open it.
pub(crate) fn load_channel(
    keystore: &Path,
    id: &ChannelId,
) -> io::Result<Option<PayerChannelState>> {
    match fs::read(channel_path(keystore, id)) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::ChannelTerms;
    use dag_core::{Address, Keypair};

    #[test]
    fn history_appends_and_skips_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let ks = dir.path().join("w.json");
        assert!(read_history(&ks).unwrap().is_empty());
        let kp = Keypair::from_seed(&[1; 32]);
        let p = SignedPayload::sign(
            &kp,
            1,
            0,
            Body::Pay {
                to: Address([2; 32]),
                amount: 5,
                memo: b"m".to_vec(),
            },
        );
        let e = HistoryEntry::of(&p);
        append_history(&ks, &e).unwrap();
        let mut f = OpenOptions::new()
            .append(true)
            .open(history_path(&ks))
            .unwrap();
        f.write_all(b"{\"payload_id\": \"ab").unwrap();
        let h = read_history(&ks).unwrap();
        assert_eq!(h, vec![e]);
        assert_eq!(h[0].details["amount"], 5);
        assert_eq!(history_path(&ks), dir.path().join("w.json.history"));
    }

    #[test]
    fn channel_state_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let ks = dir.path().join("w.json");
        let state = PayerChannelState {
            terms: ChannelTerms {
                id: ChannelId([7; 32]),
                payer: Address([1; 32]),
                payee: Address([2; 32]),
                deposit: 100,
                expires_at: 50,
            },
            paid: 30,
        };
        assert_eq!(load_channel(&ks, &state.terms.id).unwrap(), None);
        save_channel(&ks, &state).unwrap();
        assert_eq!(load_channel(&ks, &state.terms.id).unwrap(), Some(state));
    }
}

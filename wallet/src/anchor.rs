//! Data anchors: prove that a file or a sensor reading existed, unchanged, by putting its
//! BLAKE2b-256 digest on the ledger in an Anchor payload. The data itself stays off-ledger.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use blake2::Digest as _;
use dag_core::crypto::{blake2b256, Blake2b256};
use dag_core::{Body, Digest, NetworkId, SignatureError, SignedPayload};

use crate::device::{BuildError, Device};

/// Anchoring or verifying failed.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// The data could not be read.
    #[error("reading the data: {0}")]
    Io(#[from] io::Error),
    /// The payload could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The payload is not an Anchor.
    #[error("payload is a {0}, not an anchor")]
    NotAnAnchor(&'static str),
    /// The payload's signature does not verify on this network.
    #[error("anchor signature: {0}")]
    BadSignature(#[from] SignatureError),
    /// The data does not match the anchored digest.
    #[error("data digest {actual} does not match the anchored digest {anchored}")]
    Mismatch {
        /// Digest on the ledger.
        anchored: Digest,
        /// Digest of the data at hand.
        actual: Digest,
    },
}

/// BLAKE2b-256 of `data` (a reading, a message).
pub fn hash_bytes(data: &[u8]) -> Digest {
    Digest(blake2b256(data))
}

/// BLAKE2b-256 of everything `reader` yields, read in 64 KiB chunks (constant memory).
pub fn hash_reader<R: Read>(mut reader: R) -> io::Result<Digest> {
    let mut h = Blake2b256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(Digest(h.finalize().into()))
}

/// BLAKE2b-256 of a file's content, streamed.
pub fn hash_file(path: impl AsRef<Path>) -> io::Result<Digest> {
    hash_reader(File::open(path)?)
}

/// An Anchor payload for the content of `path` under `tag`, signed by `device`.
pub fn anchor_file(
    device: &mut Device,
    tag: &[u8],
    path: impl AsRef<Path>,
) -> Result<SignedPayload, AnchorError> {
    let digest = hash_file(path)?;
    Ok(device.anchor(tag, digest)?)
}

/// An Anchor payload for one reading (any bytes) under `tag`, signed by `device`.
pub fn anchor_reading(
    device: &mut Device,
    tag: &[u8],
    reading: &[u8],
) -> Result<SignedPayload, BuildError> {
    device.anchor(tag, hash_bytes(reading))
}

/// The tag and digest an Anchor payload carries.
pub fn anchored_digest(payload: &SignedPayload) -> Result<(&[u8], Digest), AnchorError> {
    match &payload.body {
        Body::Anchor { tag, digest } => Ok((tag, *digest)),
        other => Err(AnchorError::NotAnAnchor(other.kind())),
    }
}

/// Checks that `actual` matches `anchored`.
pub fn verify_digest(anchored: Digest, actual: Digest) -> Result<(), AnchorError> {
    if anchored == actual {
        Ok(())
    } else {
        Err(AnchorError::Mismatch { anchored, actual })
    }
}

/// Checks that the file at `path` is what was anchored as `anchored`.
pub fn verify_file(path: impl AsRef<Path>, anchored: Digest) -> Result<(), AnchorError> {
    verify_digest(anchored, hash_file(path)?)
}

/// Checks an Anchor payload end to end: it is an Anchor, its issuer signed it on
/// `network_id`, and `data` hashes to its digest. (Whether it is confirmed is the node's to
/// say.)
pub fn verify_anchored_data(
    payload: &SignedPayload,
    network_id: NetworkId,
    data: &[u8],
) -> Result<(), AnchorError> {
    let (_, anchored) = anchored_digest(payload)?;
    payload.verify(network_id)?;
    verify_digest(anchored, hash_bytes(data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dag_core::Keypair;
    use std::io::Write;

    #[test]
    fn streaming_hash_equals_one_shot_hash() {
        // Larger than the 64 KiB buffer, not a multiple of it.
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
        assert_eq!(hash_reader(&data[..]).unwrap(), hash_bytes(&data));
        assert_eq!(
            hash_reader(&b""[..]).unwrap().to_hex(),
            "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8"
        );
    }

    #[test]
    fn file_anchor_verifies_and_detects_change() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"2024-05-01T10:00Z,21.5C\n").unwrap();
        f.flush().unwrap();
        let mut d = Device::new(Keypair::from_seed(&[4; 32]), 5, 0);
        let p = anchor_file(&mut d, b"temp", f.path()).unwrap();
        let (tag, digest) = anchored_digest(&p).unwrap();
        assert_eq!(tag, b"temp");
        verify_file(f.path(), digest).unwrap();
        f.write_all(b"2024-05-01T10:01Z,21.6C\n").unwrap();
        f.flush().unwrap();
        assert!(matches!(
            verify_file(f.path(), digest),
            Err(AnchorError::Mismatch { .. })
        ));
        assert!(matches!(
            verify_file("/nonexistent/file", digest),
            Err(AnchorError::Io(_))
        ));
    }

    #[test]
    fn reading_anchor_checks_signature_and_data() {
        let mut d = Device::new(Keypair::from_seed(&[4; 32]), 5, 0);
        let p = anchor_reading(&mut d, b"meter-7", b"{\"kwh\":12.5}").unwrap();
        verify_anchored_data(&p, 5, b"{\"kwh\":12.5}").unwrap();
        assert!(matches!(
            verify_anchored_data(&p, 5, b"{\"kwh\":12.6}"),
            Err(AnchorError::Mismatch { .. })
        ));
        assert!(matches!(
            verify_anchored_data(&p, 6, b"{\"kwh\":12.5}"),
            Err(AnchorError::BadSignature(_))
        ));
        let pay = d.pay(dag_core::Address([1; 32]), 1, b"").unwrap();
        assert!(matches!(
            verify_anchored_data(&pay, 5, b""),
            Err(AnchorError::NotAnAnchor("pay"))
        ));
    }
}

//! The certificate key extractor of peering (`node::net::tls::cert_public_key`, a
//! hand-written DER walker that decides whether a peer is on the allowlist) against
//! arbitrary bytes and against mutations of a real certificate made by the node
//! (`tls::self_signed`, generated once).
//!
//! Checked, besides "no panic":
//! - the unmodified certificate yields its key;
//! - a key it returns is really in the input, as the content of a 33-byte BIT STRING;
//! - it agrees with the X.509 parser rustls verifies the TLS signature with (rustls-webpki):
//!   whenever webpki accepts the certificate, the extractor returns exactly the Ed25519 key
//!   of webpki's SubjectPublicKeyInfo (and nothing if that is another kind of key). So the
//!   key checked against the allowlist is always the key that proved possession in the
//!   handshake: no certificate can show one key to the allowlist and another to rustls.
//!
//! The first input byte chooses the mode: arbitrary bytes as a certificate, or the real
//! certificate with (offset, byte) overwrites, insertions, deletions and truncation.
//!
//! `cargo +nightly fuzz run tls_peer_key`
#![no_main]

use std::sync::LazyLock;

use dag_core::Keypair;
use libfuzzer_sys::fuzz_target;
use node::net::tls::{cert_public_key, self_signed};
use node_proto::peering::PeerKey;
use rustls_pki_types::CertificateDer;

/// SubjectPublicKeyInfo of an Ed25519 key, up to the key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

static CERT: LazyLock<(Vec<u8>, PeerKey)> = LazyLock::new(|| {
    let kp = Keypair::from_seed(&[0x42; 32]);
    let (cert, _) = self_signed(&kp).expect("self-signed certificate");
    (cert.to_vec(), PeerKey(kp.address().0))
});

fn check(cert: &[u8]) -> Option<PeerKey> {
    let got = cert_public_key(cert);
    if let Some(k) = got {
        let mut needle = vec![0x03, 0x21, 0x00];
        needle.extend_from_slice(&k.0);
        assert!(
            cert.windows(needle.len()).any(|w| w == needle.as_slice()),
            "returned a key that is not in the certificate"
        );
    }
    let der = CertificateDer::from(cert);
    if let Ok(ee) = webpki::EndEntityCert::try_from(&der) {
        let spki = ee.subject_public_key_info();
        let expected = match spki.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
            Some(key) if key.len() == 32 => Some(PeerKey(key.try_into().expect("32 bytes"))),
            _ => None,
        };
        assert_eq!(
            got, expected,
            "allowlist key differs from the key rustls verifies"
        );
    }
    got
}

fuzz_target!(|data: &[u8]| {
    let (cert, key) = &*CERT;
    let Some((&mode, rest)) = data.split_first() else {
        assert_eq!(
            check(cert),
            Some(*key),
            "the node's own certificate yields its key"
        );
        return;
    };
    if mode & 1 == 0 {
        check(rest);
        return;
    }
    // Edits of the real certificate: 3-byte commands (op, offset, value).
    let mut c = cert.clone();
    for cmd in rest.chunks_exact(3) {
        let at = usize::from(cmd[1]) * 2 + usize::from(cmd[0] >> 7);
        let v = cmd[2];
        match cmd[0] % 5 {
            0 | 1 => {
                let n = c.len().max(1);
                if let Some(b) = c.get_mut(at % n) {
                    *b = v;
                }
            }
            2 => {
                let at = at.min(c.len());
                c.insert(at, v);
            }
            3 => {
                if !c.is_empty() {
                    let at = at % c.len();
                    c.remove(at);
                }
            }
            _ => c.truncate(at),
        }
    }
    let got = check(&c);
    if c == *cert {
        assert_eq!(got, Some(*key));
    }
});

//! Hashing (BLAKE2b-256), Ed25519 keys and signatures, and the exact messages that get signed.
//!
//! Every signed message starts with a domain tag and the network id, so a signature made for
//! one purpose or one network is worthless for another.

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest as _};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::{CryptoRng, RngCore};

use crate::error::SignatureError;
use crate::ids::{Address, ChannelId, Signature, TxId};
use crate::types::{Body, NetworkId, SignedPayload};

/// BLAKE2b with a 256-bit output.
pub type Blake2b256 = Blake2b<U32>;

/// BLAKE2b-256 of `data`.
pub fn blake2b256(data: &[u8]) -> [u8; 32] {
    Blake2b256::digest(data).into()
}

/// BLAKE2b-256 of several slices, as if concatenated.
pub fn blake2b256_parts(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Blake2b256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

const PAYLOAD_TAG: &[u8] = b"tangle/payload/v1";
const MILESTONE_TAG: &[u8] = b"tangle/milestone/v2";
const VOUCHER_TAG: &[u8] = b"tangle/voucher/v1";
const CHANNEL_TAG: &[u8] = b"tangle/channel/v1";

/// The bytes a device signs for a payload: tag, network id, issuer, seq, canonical body.
pub fn payload_signing_message(
    network_id: NetworkId,
    issuer: &Address,
    seq: u64,
    body: &Body,
) -> Vec<u8> {
    let mut msg = Vec::with_capacity(PAYLOAD_TAG.len() + 8 + 32 + 8 + 96);
    msg.extend_from_slice(PAYLOAD_TAG);
    msg.extend_from_slice(&network_id.to_le_bytes());
    msg.extend_from_slice(&issuer.0);
    msg.extend_from_slice(&seq.to_le_bytes());
    rmp_serde::encode::write(&mut msg, body).expect("writing to a Vec cannot fail");
    msg
}

/// The bytes committee members sign for a milestone carried by a transaction of
/// `network_id` approving `parents`: every field of `m` but the signatures.
pub fn milestone_signing_message(
    network_id: NetworkId,
    parents: &[TxId; 2],
    m: &crate::types::Milestone,
) -> Vec<u8> {
    let mut msg = Vec::with_capacity(MILESTONE_TAG.len() + 8 + 64 + 4 + 8 + 5 * 32);
    msg.extend_from_slice(MILESTONE_TAG);
    msg.extend_from_slice(&network_id.to_le_bytes());
    msg.extend_from_slice(&parents[0].0);
    msg.extend_from_slice(&parents[1].0);
    msg.extend_from_slice(&m.index.to_le_bytes());
    msg.extend_from_slice(&m.timestamp.to_le_bytes());
    msg.extend_from_slice(&m.previous.0);
    msg.extend_from_slice(&m.confirmed_root.0);
    msg.extend_from_slice(&m.applied_root.0);
    msg.extend_from_slice(&m.state_root.0);
    msg.extend_from_slice(&m.ledger_digest.0);
    if let Some(u) = &m.committee_update {
        // Only when present: a milestone without an update signs what it always signed.
        msg.extend_from_slice(b"rotate");
        msg.extend_from_slice(&u.effective_from.to_le_bytes());
        msg.push(u.threshold);
        msg.extend_from_slice(&(u.committee.len() as u32).to_le_bytes());
        for k in &u.committee {
            msg.extend_from_slice(&k.0);
        }
    }
    msg
}

/// The bytes a payer signs for a channel voucher: "`amount` in total may be claimed".
pub fn voucher_signing_message(
    network_id: NetworkId,
    channel: &ChannelId,
    cumulative_amount: u64,
) -> [u8; 17 + 8 + 32 + 8] {
    let mut msg = [0u8; 17 + 8 + 32 + 8];
    msg[..17].copy_from_slice(VOUCHER_TAG);
    msg[17..25].copy_from_slice(&network_id.to_le_bytes());
    msg[25..57].copy_from_slice(&channel.0);
    msg[57..].copy_from_slice(&cumulative_amount.to_le_bytes());
    msg
}

/// The id of the channel a payer opens with its payload number `seq`.
pub fn channel_id(payer: &Address, open_seq: u64) -> ChannelId {
    ChannelId(blake2b256_parts(&[
        CHANNEL_TAG,
        &payer.0,
        &open_seq.to_le_bytes(),
    ]))
}

/// An Ed25519 key pair. The secret is zeroized on drop.
#[derive(Clone)]
pub struct Keypair(SigningKey);

impl Keypair {
    /// A fresh key from a cryptographic RNG (use `rand::rngs::OsRng` on devices).
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Keypair(SigningKey::generate(rng))
    }

    /// The key whose 32-byte secret seed is `seed` (RFC 8032 "private key").
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Keypair(SigningKey::from_bytes(seed))
    }

    /// The 32-byte secret seed. Handle with care.
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public key, which is also the account address.
    pub fn address(&self) -> Address {
        Address(self.0.verifying_key().to_bytes())
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature(self.0.sign(msg).to_bytes())
    }
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair({})", self.address())
    }
}

/// Decodes a public key, rejecting invalid encodings and weak (small-order) keys, which
/// batch verification would treat differently from single verification.
pub fn verifying_key(addr: &Address) -> Result<VerifyingKey, SignatureError> {
    let vk = VerifyingKey::from_bytes(&addr.0).map_err(|_| SignatureError::InvalidKey)?;
    if vk.is_weak() {
        return Err(SignatureError::WeakKey);
    }
    Ok(vk)
}

/// Strict single verification (RFC 8032 with canonical `s`, no small-order `R` or key).
pub fn verify_with_key(
    vk: &VerifyingKey,
    msg: &[u8],
    sig: &Signature,
) -> Result<(), SignatureError> {
    let sig = ed25519_dalek::Signature::from_bytes(&sig.0);
    vk.verify_strict(msg, &sig)
        .map_err(|_| SignatureError::Invalid)
}

/// Strict single verification of `sig` by `addr` over `msg`.
pub fn verify(addr: &Address, msg: &[u8], sig: &Signature) -> Result<(), SignatureError> {
    verify_with_key(&verifying_key(addr)?, msg, sig)
}

impl SignedPayload {
    /// Builds and signs a payload for `network_id`.
    pub fn sign(keypair: &Keypair, network_id: NetworkId, seq: u64, body: Body) -> Self {
        let issuer = keypair.address();
        let signature = keypair.sign(&payload_signing_message(network_id, &issuer, seq, &body));
        SignedPayload {
            issuer,
            seq,
            body,
            signature,
        }
    }

    /// The message this payload's signature must cover on `network_id`.
    pub fn signing_message(&self, network_id: NetworkId) -> Vec<u8> {
        payload_signing_message(network_id, &self.issuer, self.seq, &self.body)
    }

    /// Checks the issuer's signature (strict single verification).
    pub fn verify(&self, network_id: NetworkId) -> Result<(), SignatureError> {
        verify(
            &self.issuer,
            &self.signing_message(network_id),
            &self.signature,
        )
    }

    /// The payload id: BLAKE2b-256 of the canonical encoding of the signed payload. It is
    /// independent of the carrying transaction, so it survives reattachment.
    pub fn id(&self) -> PayloadId {
        let bytes = rmp_serde::to_vec(self).expect("encoding to a Vec cannot fail");
        PayloadId(blake2b256(&bytes))
    }
}

pub use crate::ids::PayloadId;

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// RFC 8032 section 7.1, tests 1-3 and the SHA(abc) test, through our signing API.
    #[test]
    fn rfc8032_vectors() {
        let vectors = [
            (
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                "",
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
            ),
            (
                "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
                "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
                "72",
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
            ),
            (
                "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
                "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
                "af82",
                "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
            ),
            (
                "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
                "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
                "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
            ),
        ];
        for (sk, pk, msg, sig) in vectors {
            let kp = Keypair::from_seed(&h(sk).try_into().unwrap());
            assert_eq!(kp.address().0.to_vec(), h(pk));
            let s = kp.sign(&h(msg));
            assert_eq!(s.0.to_vec(), h(sig));
            verify(&kp.address(), &h(msg), &s).unwrap();
            let mut bad = s;
            bad.0[0] ^= 1;
            assert_eq!(
                verify(&kp.address(), &h(msg), &bad),
                Err(SignatureError::Invalid)
            );
        }
    }

    /// BLAKE2b-256 known answers (empty string and "abc"), RFC 7693 parameters with 32-byte
    /// output.
    #[test]
    fn blake2b256_vectors() {
        assert_eq!(
            hex::encode(blake2b256(b"")),
            "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8"
        );
        assert_eq!(
            hex::encode(blake2b256(b"abc")),
            "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319"
        );
        assert_eq!(
            blake2b256_parts(&[b"a", b"bc"]),
            blake2b256(b"abc"),
            "parts hash as the concatenation"
        );
    }

    #[test]
    fn weak_key_rejected() {
        // The identity point (a small-order key).
        let mut id = [0u8; 32];
        id[0] = 1;
        assert_eq!(
            verifying_key(&Address(id)).err(),
            Some(SignatureError::WeakKey)
        );
    }

    #[test]
    fn payload_signature_binds_network_and_fields() {
        let kp = Keypair::from_seed(&[3u8; 32]);
        let body = Body::Pay {
            to: Address([9u8; 32]),
            amount: 5,
            memo: b"kWh".to_vec(),
        };
        let p = SignedPayload::sign(&kp, 42, 0, body);
        p.verify(42).unwrap();
        assert_eq!(p.verify(43), Err(SignatureError::Invalid));
        let mut q = p.clone();
        q.seq = 1;
        assert_eq!(q.verify(42), Err(SignatureError::Invalid));
        assert_ne!(p.id(), q.id());
    }
}

//! [`Device`]: one signing key on one network with its local sequence counter, and the
//! builders of every payload body (Pay, Open, Claim, Refund, Anchor).
//!
//! Each builder checks what the ledger would certainly refuse (memo or tag too long, zero
//! amounts), signs with the device's network id and its next sequence number, and only then
//! advances the counter, so a refused build never burns a sequence number.

use dag_core::{
    Address, Body, ChannelId, Digest, Keypair, MilestoneIndex, NetworkId, Signature, SignedPayload,
    MAX_MEMO_LEN, MAX_TAG_LEN,
};

/// A payload could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The Pay memo is longer than [`MAX_MEMO_LEN`].
    #[error("memo is {0} bytes, at most {MAX_MEMO_LEN} are allowed")]
    MemoTooLong(usize),
    /// The Anchor tag is longer than [`MAX_TAG_LEN`].
    #[error("anchor tag is {0} bytes, at most {MAX_TAG_LEN} are allowed")]
    TagTooLong(usize),
    /// A payment of 0 or a channel with a deposit of 0 moves nothing.
    #[error("amount must be greater than zero")]
    ZeroAmount,
    /// Paying or opening a channel to oneself.
    #[error("recipient is the issuer itself")]
    SelfPayment,
    /// The sequence counter reached `u64::MAX`.
    #[error("sequence numbers exhausted")]
    SeqExhausted,
}

/// What [`Device::resync`] did to the local sequence counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqResync {
    /// Local and node agree.
    InSync,
    /// The node has applied payloads this device had forgotten (e.g. restored from a backup):
    /// the counter jumped forward.
    Advanced {
        /// Local value before.
        from: u64,
        /// The node's value, now local.
        to: u64,
    },
    /// Payloads signed locally never reached the ledger (lost before a node took them): the counter
    /// went back so the next payload fills the gap. Those payloads are void: re-sign what
    /// still needs doing.
    Rewound {
        /// Local value before.
        from: u64,
        /// The node's value, now local.
        to: u64,
    },
}

/// One device key on one network, with the next sequence number it will sign.
#[derive(Debug, Clone)]
pub struct Device {
    keypair: Keypair,
    network_id: NetworkId,
    next_seq: u64,
}

impl Device {
    /// A device signing for `network_id`, whose next payload gets `next_seq`.
    pub fn new(keypair: Keypair, network_id: NetworkId, next_seq: u64) -> Self {
        Device {
            keypair,
            network_id,
            next_seq,
        }
    }

    /// The account address (public key).
    pub fn address(&self) -> Address {
        self.keypair.address()
    }

    /// The `did:key:z6Mk...` of the key.
    pub fn did(&self) -> String {
        self.address().to_did_key()
    }

    /// The key pair.
    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    /// The network this device signs for.
    pub fn network_id(&self) -> NetworkId {
        self.network_id
    }

    /// The sequence number the next payload will carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Adopts the node's view of the next sequence number (`GET /accounts/{address}`); the
    /// node is right by definition, since it holds the ledger.
    pub fn resync(&mut self, node_next_seq: u64) -> SeqResync {
        let from = self.next_seq;
        self.next_seq = node_next_seq;
        match node_next_seq.cmp(&from) {
            std::cmp::Ordering::Equal => SeqResync::InSync,
            std::cmp::Ordering::Greater => SeqResync::Advanced {
                from,
                to: node_next_seq,
            },
            std::cmp::Ordering::Less => SeqResync::Rewound {
                from,
                to: node_next_seq,
            },
        }
    }

    /// Checks `body`, signs it with the next sequence number and advances the counter.
    pub fn sign(&mut self, body: Body) -> Result<SignedPayload, BuildError> {
        self.check(&body)?;
        let seq = self.next_seq;
        let next = seq.checked_add(1).ok_or(BuildError::SeqExhausted)?;
        let p = SignedPayload::sign(&self.keypair, self.network_id, seq, body);
        self.next_seq = next;
        Ok(p)
    }

    fn check(&self, body: &Body) -> Result<(), BuildError> {
        let me = self.address();
        match body {
            Body::Pay { to, amount, memo } => {
                if memo.len() > MAX_MEMO_LEN {
                    return Err(BuildError::MemoTooLong(memo.len()));
                }
                if *amount == 0 {
                    return Err(BuildError::ZeroAmount);
                }
                if *to == me {
                    return Err(BuildError::SelfPayment);
                }
            }
            Body::Open { payee, deposit, .. } => {
                if *deposit == 0 {
                    return Err(BuildError::ZeroAmount);
                }
                if *payee == me {
                    return Err(BuildError::SelfPayment);
                }
            }
            Body::Anchor { tag, .. } => {
                if tag.len() > MAX_TAG_LEN {
                    return Err(BuildError::TagTooLong(tag.len()));
                }
            }
            Body::Claim { .. } | Body::Refund { .. } => {}
        }
        Ok(())
    }

    /// A payment of `amount` to `to` with a memo of at most [`MAX_MEMO_LEN`] bytes.
    pub fn pay(
        &mut self,
        to: Address,
        amount: u64,
        memo: &[u8],
    ) -> Result<SignedPayload, BuildError> {
        self.sign(Body::Pay {
            to,
            amount,
            memo: memo.to_vec(),
        })
    }

    /// Opens a channel to `payee` locking `deposit` until milestone `expires_at`. The channel
    /// id is [`dag_core::crypto::channel_id`] of this address and the returned payload's seq.
    /// [`crate::PayerChannel::open`] wraps this and keeps the channel state.
    pub fn open(
        &mut self,
        payee: Address,
        deposit: u64,
        expires_at: MilestoneIndex,
    ) -> Result<SignedPayload, BuildError> {
        self.sign(Body::Open {
            payee,
            deposit,
            expires_at,
        })
    }

    /// Claims `amount` from `channel` with the payer's `voucher` signature (payee side; see
    /// [`crate::PayeeChannel::claim`]).
    pub fn claim(
        &mut self,
        channel: ChannelId,
        amount: u64,
        voucher: Signature,
    ) -> Result<SignedPayload, BuildError> {
        self.sign(Body::Claim {
            channel,
            amount,
            voucher,
        })
    }

    /// Takes back the deposit of an unclaimed, expired channel (payer side).
    pub fn refund(&mut self, channel: ChannelId) -> Result<SignedPayload, BuildError> {
        self.sign(Body::Refund { channel })
    }

    /// Anchors `digest` under `tag` (at most [`MAX_TAG_LEN`] bytes).
    pub fn anchor(&mut self, tag: &[u8], digest: Digest) -> Result<SignedPayload, BuildError> {
        self.sign(Body::Anchor {
            tag: tag.to_vec(),
            digest,
        })
    }

    /// The W3C DID document of this device's `did:key` (see [`did_document`]).
    pub fn did_document(&self) -> serde_json::Value {
        did_document(&self.address())
    }
}

/// The DID document of the `did:key` of `address`, as the did:key method resolves it: one
/// `Ed25519VerificationKey2020` verification method, usable for authentication, assertion and
/// capability invocation and delegation.
pub fn did_document(address: &Address) -> serde_json::Value {
    let did = address.to_did_key();
    let multibase = did
        .strip_prefix("did:key:")
        .expect("to_did_key starts with did:key:")
        .to_string();
    let vm = format!("{did}#{multibase}");
    serde_json::json!({
        "@context": [
            "https://www.w3.org/ns/did/v1",
            "https://w3id.org/security/suites/ed25519-2020/v1"
        ],
        "id": did,
        "verificationMethod": [{
            "id": vm,
            "type": "Ed25519VerificationKey2020",
            "controller": did,
            "publicKeyMultibase": multibase,
        }],
        "authentication": [vm],
        "assertionMethod": [vm],
        "capabilityInvocation": [vm],
        "capabilityDelegation": [vm],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dag_core::crypto::payload_signing_message;

    const NET: NetworkId = 0x7a6e_0001;

    fn dev() -> Device {
        Device::new(Keypair::from_seed(&[1u8; 32]), NET, 5)
    }

    #[test]
    fn every_builder_signs_with_network_and_consecutive_seqs() {
        let mut d = dev();
        let other = Address(Keypair::from_seed(&[2u8; 32]).address().0);
        let ch = ChannelId([4u8; 32]);
        let ps = [
            d.pay(other, 10, b"kWh").unwrap(),
            d.open(other, 100, 50).unwrap(),
            d.claim(ch, 7, Signature([9u8; 64])).unwrap(),
            d.refund(ch).unwrap(),
            d.anchor(b"meter", Digest([3u8; 32])).unwrap(),
        ];
        for (i, p) in ps.iter().enumerate() {
            assert_eq!(p.seq, 5 + i as u64);
            assert_eq!(p.issuer, d.address());
            p.verify(NET).unwrap();
            assert!(p.verify(NET + 1).is_err(), "bound to the network id");
            assert_eq!(
                p.signing_message(NET),
                payload_signing_message(NET, &p.issuer, p.seq, &p.body)
            );
        }
        assert_eq!(
            ps.iter().map(|p| p.body.kind()).collect::<Vec<_>>(),
            ["pay", "open", "claim", "refund", "anchor"]
        );
        assert_eq!(d.next_seq(), 10);
    }

    #[test]
    fn refused_builds_do_not_burn_a_seq() {
        let mut d = dev();
        let me = d.address();
        let other = Address([8u8; 32]);
        assert_eq!(
            d.pay(other, 1, &[0u8; MAX_MEMO_LEN + 1]),
            Err(BuildError::MemoTooLong(MAX_MEMO_LEN + 1))
        );
        assert_eq!(d.pay(other, 0, b""), Err(BuildError::ZeroAmount));
        assert_eq!(d.pay(me, 1, b""), Err(BuildError::SelfPayment));
        assert_eq!(d.open(other, 0, 9), Err(BuildError::ZeroAmount));
        assert_eq!(
            d.anchor(&[0u8; MAX_TAG_LEN + 1], Digest([0; 32])),
            Err(BuildError::TagTooLong(MAX_TAG_LEN + 1))
        );
        assert_eq!(d.next_seq(), 5);
        assert!(d.pay(other, 1, &[0u8; MAX_MEMO_LEN]).is_ok());
        let mut full = Device::new(Keypair::from_seed(&[1u8; 32]), NET, u64::MAX);
        assert_eq!(
            full.refund(ChannelId([0; 32])),
            Err(BuildError::SeqExhausted)
        );
    }

    #[test]
    fn resync_follows_the_node() {
        let mut d = dev();
        assert_eq!(d.resync(5), SeqResync::InSync);
        assert_eq!(d.resync(9), SeqResync::Advanced { from: 5, to: 9 });
        assert_eq!(d.resync(7), SeqResync::Rewound { from: 9, to: 7 });
        assert_eq!(d.refund(ChannelId([0; 32])).unwrap().seq, 7);
    }

    #[test]
    fn did_document_names_the_key() {
        let d = dev();
        let doc = d.did_document();
        let did = d.did();
        assert_eq!(doc["id"], did);
        let vm = &doc["verificationMethod"][0];
        assert_eq!(vm["controller"], did);
        let mb = vm["publicKeyMultibase"].as_str().unwrap();
        assert!(mb.starts_with("z6Mk"));
        assert_eq!(
            format!("did:key:{mb}").parse::<Address>().unwrap(),
            d.address()
        );
        assert_eq!(doc["authentication"][0], vm["id"]);
        assert_eq!(vm["id"], format!("{did}#{mb}"));
    }
}

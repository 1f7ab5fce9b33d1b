//! The encrypted keystore file: a device owner's mnemonic, network id and per-device sequence
//! numbers, sealed with a password.
//!
//! Format (version 1), compact JSON, every byte of it authenticated:
//!
//! ```text
//! {"version":1,
//!  "kdf":{"algorithm":"argon2id","m_cost_kib":..,"t_cost":..,"p_cost":..,"salt":"<hex>"},
//!  "cipher":{"algorithm":"xchacha20poly1305","nonce":"<hex>"},
//!  "ciphertext":"<hex>"}
//! ```
//!
//! The key is Argon2id(password, salt); the plaintext is the JSON of the secret contents; the
//! header (`version`, `kdf`, `cipher`, re-serialised) is the AEAD's associated data, so
//! changing any of it, or the ciphertext, makes decryption fail. Hex must be lowercase, so
//! there is exactly one spelling of each file. A wrong password and a modified file look the
//! same ([`KeystoreError::WrongPasswordOrTampered`]); neither panics.
//!
//! The file is written with mode 0600, atomically (temporary file, fsync, rename).
//! Sequence numbers live inside the sealed contents: [`Keystore::sign`] persists the new
//! counter before it hands the payload out, so a restart never reuses a sequence number.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use dag_core::{Body, NetworkId, SignedPayload};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::device::{BuildError, Device, SeqResync};
use crate::fsutil::{create_atomic, write_atomic};
use crate::keys::{Mnemonic, Seed, DEFAULT_COIN_TYPE};

/// Current keystore format version.
pub const KEYSTORE_VERSION: u32 = 1;
const KDF_ALGORITHM: &str = "argon2id";
const CIPHER_ALGORITHM: &str = "xchacha20poly1305";
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;

/// Upper bounds on Argon2 parameters read from a file, so that a tampered file cannot make
/// opening it exhaust memory or time.
const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
const MAX_T_COST: u32 = 64;
const MAX_P_COST: u32 = 16;

/// Opening, creating or updating a keystore failed.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// Reading or writing the file failed.
    #[error("keystore I/O: {0}")]
    Io(#[from] io::Error),
    /// `create` found a file already there (it never overwrites one).
    #[error("a keystore already exists at {0}")]
    AlreadyExists(PathBuf),
    /// The file is not a keystore (not JSON, missing or unknown fields, bad hex).
    #[error("not a keystore file: {0}")]
    Format(String),
    /// The file has a format version this build does not read.
    #[error("unsupported keystore version {0}")]
    UnsupportedVersion(u32),
    /// The file names a KDF or cipher this build does not implement.
    #[error("unsupported algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// The Argon2 parameters are out of range.
    #[error("invalid key derivation parameters: {0}")]
    KdfParams(String),
    /// Decryption failed: the password is wrong, or the file was modified.
    #[error("wrong password, or the keystore file was modified")]
    WrongPasswordOrTampered,
    /// The decrypted contents are not valid (a bug or a file written by another tool).
    #[error("keystore contents are invalid: {0}")]
    Corrupt(String),
    /// A payload could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory, in KiB.
    pub m_cost_kib: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// 19 MiB, 2 iterations, 1 lane: the OWASP recommendation for Argon2id, a fraction of a
    /// second on a small device.
    fn default() -> Self {
        KdfParams {
            m_cost_kib: 19 * 1024,
            t_cost: 2,
            p_cost: 1,
        }
    }
}

impl KdfParams {
    /// The cheapest parameters Argon2 accepts (8 KiB, 1 iteration). For tests only: they
    /// offer no protection against password guessing.
    pub fn insecure_for_tests() -> Self {
        KdfParams {
            m_cost_kib: 8,
            t_cost: 1,
            p_cost: 1,
        }
    }

    fn argon2(&self) -> Result<Argon2<'static>, KeystoreError> {
        if self.m_cost_kib > MAX_M_COST_KIB || self.t_cost > MAX_T_COST || self.p_cost > MAX_P_COST
        {
            return Err(KeystoreError::KdfParams(format!(
                "{self:?} exceeds the limits (m {MAX_M_COST_KIB} KiB, t {MAX_T_COST}, p {MAX_P_COST})"
            )));
        }
        let params = Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| KeystoreError::KdfParams(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// Lowercase hex, refusing any other spelling, so each file has one byte-exact form.
mod strict_hex {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(&s).map_err(de::Error::custom)?;
        if hex::encode(&v) != s {
            return Err(de::Error::custom("hex must be lowercase"));
        }
        Ok(v)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfHeader {
    algorithm: String,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    #[serde(with = "strict_hex")]
    salt: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CipherHeader {
    algorithm: String,
    #[serde(with = "strict_hex")]
    nonce: Vec<u8>,
}

/// The authenticated header: serialised as the AEAD's associated data.
#[derive(Serialize)]
struct Header<'a> {
    version: u32,
    kdf: &'a KdfHeader,
    cipher: &'a CipherHeader,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeystoreFile {
    version: u32,
    kdf: KdfHeader,
    cipher: CipherHeader,
    #[serde(with = "strict_hex")]
    ciphertext: Vec<u8>,
}

/// One device key's entry: its derivation index and next sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceEntry {
    /// Derivation index (`m/44'/coin'/account'/0'/index'`).
    pub index: u32,
    /// Next sequence number this key will sign.
    pub next_seq: u64,
}

/// The sealed contents.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Contents {
    network_id: NetworkId,
    mnemonic: String,
    bip39_passphrase: String,
    coin_type: u32,
    account: u32,
    devices: Vec<DeviceEntry>,
}

impl Drop for Contents {
    fn drop(&mut self) {
        self.mnemonic.zeroize();
        self.bip39_passphrase.zeroize();
    }
}

/// Derives the 32-byte file key from the password.
fn derive_key(
    password: &str,
    params: &KdfParams,
    salt: &[u8],
) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let mut key = Zeroizing::new([0u8; 32]);
    params
        .argon2()?
        .hash_password_into(password.as_bytes(), salt, key.as_mut())
        .map_err(|e| KeystoreError::KdfParams(e.to_string()))?;
    Ok(key)
}

fn aad(kdf: &KdfHeader, cipher: &CipherHeader) -> Vec<u8> {
    serde_json::to_vec(&Header {
        version: KEYSTORE_VERSION,
        kdf,
        cipher,
    })
    .expect("header serialises")
}

/// Seals `contents` under `key` with a fresh nonce; returns the file bytes.
fn seal(contents: &Contents, key: &[u8; 32], kdf: &KdfHeader) -> Vec<u8> {
    let plaintext = Zeroizing::new(serde_json::to_vec(contents).expect("contents serialise"));
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let cipher = CipherHeader {
        algorithm: CIPHER_ALGORITHM.into(),
        nonce: nonce.to_vec(),
    };
    let ciphertext = XChaCha20Poly1305::new(key.into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &plaintext,
                aad: &aad(kdf, &cipher),
            },
        )
        .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
    let file = KeystoreFile {
        version: KEYSTORE_VERSION,
        kdf: kdf.clone(),
        cipher,
        ciphertext,
    };
    serde_json::to_vec(&file).expect("file serialises")
}

/// Parses and decrypts file bytes; returns the contents, the key and the KDF header.
fn unseal(
    bytes: &[u8],
    password: &str,
) -> Result<(Contents, Zeroizing<[u8; 32]>, KdfHeader), KeystoreError> {
    // Check the version first, so a future format gets a clear error rather than a parse one.
    #[derive(Deserialize)]
    struct VersionOnly {
        version: u32,
    }
    let v: VersionOnly =
        serde_json::from_slice(bytes).map_err(|e| KeystoreError::Format(e.to_string()))?;
    if v.version != KEYSTORE_VERSION {
        return Err(KeystoreError::UnsupportedVersion(v.version));
    }
    let file: KeystoreFile =
        serde_json::from_slice(bytes).map_err(|e| KeystoreError::Format(e.to_string()))?;
    if file.kdf.algorithm != KDF_ALGORITHM {
        return Err(KeystoreError::UnsupportedAlgorithm(file.kdf.algorithm));
    }
    if file.cipher.algorithm != CIPHER_ALGORITHM {
        return Err(KeystoreError::UnsupportedAlgorithm(file.cipher.algorithm));
    }
    if file.kdf.salt.len() != SALT_LEN {
        return Err(KeystoreError::Format(format!(
            "salt is {} bytes, expected {SALT_LEN}",
            file.kdf.salt.len()
        )));
    }
    if file.cipher.nonce.len() != NONCE_LEN {
        return Err(KeystoreError::Format(format!(
            "nonce is {} bytes, expected {NONCE_LEN}",
            file.cipher.nonce.len()
        )));
    }
    let params = KdfParams {
        m_cost_kib: file.kdf.m_cost_kib,
        t_cost: file.kdf.t_cost,
        p_cost: file.kdf.p_cost,
    };
    let key = derive_key(password, &params, &file.kdf.salt)?;
    let plaintext = Zeroizing::new(
        XChaCha20Poly1305::new(key.as_ref().into())
            .decrypt(
                XNonce::from_slice(&file.cipher.nonce),
                Payload {
                    msg: &file.ciphertext,
                    aad: &aad(&file.kdf, &file.cipher),
                },
            )
            .map_err(|_| KeystoreError::WrongPasswordOrTampered)?,
    );
    // The error names only the position: serde's message could quote secret contents.
    let contents: Contents = serde_json::from_slice(&plaintext).map_err(|e| {
        KeystoreError::Corrupt(format!(
            "{:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    Ok((contents, key, file.kdf))
}

/// An unlocked keystore: holds the derived file key (zeroized on drop) so that updates are
/// re-sealed without asking for the password again.
pub struct Keystore {
    path: PathBuf,
    contents: Contents,
    seed: Seed,
    key: Zeroizing<[u8; 32]>,
    kdf: KdfHeader,
}

impl fmt::Debug for Keystore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keystore")
            .field("path", &self.path)
            .field("network_id", &self.contents.network_id)
            .field("devices", &self.contents.devices)
            .finish_non_exhaustive()
    }
}

/// Options for [`Keystore::create`].
#[derive(Debug, Clone)]
pub struct KeystoreOptions {
    /// Argon2id costs.
    pub kdf: KdfParams,
    /// BIP-39 passphrase (the "25th word"); empty by default.
    pub bip39_passphrase: String,
    /// SLIP-44 coin type in the derivation path.
    pub coin_type: u32,
    /// Account in the derivation path.
    pub account: u32,
}

impl Default for KeystoreOptions {
    fn default() -> Self {
        KeystoreOptions {
            kdf: KdfParams::default(),
            bip39_passphrase: String::new(),
            coin_type: DEFAULT_COIN_TYPE,
            account: 0,
        }
    }
}

impl Keystore {
    /// Creates a keystore at `path` for `mnemonic` on `network_id`, with device 0 at
    /// sequence 0. Never overwrites an existing file.
    pub fn create(
        path: impl AsRef<Path>,
        password: &str,
        mnemonic: &Mnemonic,
        network_id: NetworkId,
        options: KeystoreOptions,
    ) -> Result<Self, KeystoreError> {
        let path = path.as_ref().to_path_buf();
        let mut salt = [0u8; SALT_LEN];
        OsRng.fill_bytes(&mut salt);
        let kdf = KdfHeader {
            algorithm: KDF_ALGORITHM.into(),
            m_cost_kib: options.kdf.m_cost_kib,
            t_cost: options.kdf.t_cost,
            p_cost: options.kdf.p_cost,
            salt: salt.to_vec(),
        };
        let key = derive_key(password, &options.kdf, &salt)?;
        let contents = Contents {
            network_id,
            mnemonic: mnemonic.phrase().to_string(),
            bip39_passphrase: options.bip39_passphrase.clone(),
            coin_type: options.coin_type,
            account: options.account,
            devices: vec![DeviceEntry {
                index: 0,
                next_seq: 0,
            }],
        };
        let seed = mnemonic.to_seed(&options.bip39_passphrase);
        let bytes = seal(&contents, &key, &kdf);
        create_atomic(&path, &bytes).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                KeystoreError::AlreadyExists(path.clone())
            } else {
                KeystoreError::Io(e)
            }
        })?;
        Ok(Keystore {
            path,
            contents,
            seed,
            key,
            kdf,
        })
    }

    /// Opens and decrypts the keystore at `path`.
    pub fn open(path: impl AsRef<Path>, password: &str) -> Result<Self, KeystoreError> {
        let path = path.as_ref().to_path_buf();
        let bytes = Zeroizing::new(std::fs::read(&path)?);
        let (contents, key, kdf) = unseal(&bytes, password)?;
        let mnemonic = Mnemonic::parse(&contents.mnemonic)
            .map_err(|_| KeystoreError::Corrupt("stored mnemonic is invalid".into()))?;
        let seed = mnemonic.to_seed(&contents.bip39_passphrase);
        Ok(Keystore {
            path,
            contents,
            seed,
            key,
            kdf,
        })
    }

    /// Re-seals the contents (fresh nonce, same password) and replaces the file atomically.
    pub fn save(&self) -> Result<(), KeystoreError> {
        let bytes = seal(&self.contents, &self.key, &self.kdf);
        write_atomic(&self.path, &bytes)?;
        Ok(())
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The network the keys sign for.
    pub fn network_id(&self) -> NetworkId {
        self.contents.network_id
    }

    /// The backup mnemonic.
    pub fn mnemonic(&self) -> Result<Mnemonic, KeystoreError> {
        Mnemonic::parse(&self.contents.mnemonic).map_err(|e| KeystoreError::Corrupt(e.to_string()))
    }

    /// The device entries (index and next sequence number), by index.
    pub fn devices(&self) -> &[DeviceEntry] {
        &self.contents.devices
    }

    /// Device key `index` with its stored next sequence number (0 for a key never used).
    pub fn device(&self, index: u32) -> Device {
        let keypair =
            self.seed
                .device_keypair(self.contents.coin_type, self.contents.account, index);
        let next_seq = self
            .contents
            .devices
            .iter()
            .find(|d| d.index == index)
            .map_or(0, |d| d.next_seq);
        Device::new(keypair, self.contents.network_id, next_seq)
    }

    /// Records `next_seq` for device `index` and saves the file. If saving fails, the
    /// in-memory state is left as it was, matching the file.
    pub fn set_next_seq(&mut self, index: u32, next_seq: u64) -> Result<(), KeystoreError> {
        let before = self.contents.devices.clone();
        let devices = &mut self.contents.devices;
        match devices.binary_search_by_key(&index, |d| d.index) {
            Ok(i) => devices[i].next_seq = next_seq,
            Err(i) => devices.insert(i, DeviceEntry { index, next_seq }),
        }
        let saved = self.save();
        if saved.is_err() {
            self.contents.devices = before;
        }
        saved
    }

    /// Signs `body` with device `index` and its next sequence number, and persists the
    /// advanced counter before returning the payload, so a crash can never lead to the same
    /// sequence number being signed twice.
    pub fn sign(&mut self, index: u32, body: Body) -> Result<SignedPayload, KeystoreError> {
        let mut device = self.device(index);
        let payload = device.sign(body)?;
        self.set_next_seq(index, device.next_seq())?;
        Ok(payload)
    }

    /// Adopts the node's next sequence number for device `index` and saves the file.
    pub fn resync(&mut self, index: u32, node_next_seq: u64) -> Result<SeqResync, KeystoreError> {
        let mut device = self.device(index);
        let r = device.resync(node_next_seq);
        self.set_next_seq(index, node_next_seq)?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mnemonic() -> Mnemonic {
        Mnemonic::from_entropy(&[7u8; 32]).unwrap()
    }

    fn opts() -> KeystoreOptions {
        KeystoreOptions {
            kdf: KdfParams::insecure_for_tests(),
            ..KeystoreOptions::default()
        }
    }

    #[test]
    fn round_trip_keeps_keys_network_and_seqs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wallet.json");
        let mut ks = Keystore::create(&path, "pw", &mnemonic(), 42, opts()).unwrap();
        let addr0 = ks.device(0).address();
        let addr1 = ks.device(1).address();
        assert_ne!(addr0, addr1);
        let p = ks
            .sign(
                1,
                Body::Pay {
                    to: addr0,
                    amount: 3,
                    memo: vec![],
                },
            )
            .unwrap();
        assert_eq!(p.seq, 0);
        p.verify(42).unwrap();
        ks.sign(
            1,
            Body::Refund {
                channel: dag_core::ChannelId([1; 32]),
            },
        )
        .unwrap();
        drop(ks);

        let mut ks = Keystore::open(&path, "pw").unwrap();
        assert_eq!(ks.network_id(), 42);
        assert_eq!(ks.device(0).address(), addr0);
        assert_eq!(ks.device(1).address(), addr1);
        assert_eq!(ks.device(1).next_seq(), 2, "seq survives the restart");
        assert_eq!(ks.device(0).next_seq(), 0);
        assert_eq!(ks.mnemonic().unwrap().phrase(), mnemonic().phrase());
        assert_eq!(
            ks.resync(1, 1).unwrap(),
            SeqResync::Rewound { from: 2, to: 1 }
        );
        assert_eq!(Keystore::open(&path, "pw").unwrap().device(1).next_seq(), 1);
        assert!(!format!("{ks:?}").contains(mnemonic().phrase().as_str()));
        // The keys are those of the mnemonic, recoverable without the file.
        let seed = mnemonic().to_seed("");
        assert_eq!(
            seed.device_keypair(DEFAULT_COIN_TYPE, 0, 1).address(),
            addr1
        );
    }

    #[test]
    fn failed_save_hands_out_nothing_and_keeps_state() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let mut ks = Keystore::create(sub.join("w.json"), "pw", &mnemonic(), 1, opts()).unwrap();
        std::fs::remove_dir_all(&sub).unwrap();
        let refund = Body::Refund {
            channel: dag_core::ChannelId([1; 32]),
        };
        assert!(matches!(
            ks.sign(0, refund.clone()),
            Err(KeystoreError::Io(_))
        ));
        assert_eq!(
            ks.device(0).next_seq(),
            0,
            "no payload escaped, no seq consumed"
        );
        std::fs::create_dir(&sub).unwrap();
        assert_eq!(ks.sign(0, refund).unwrap().seq, 0);
    }

    #[cfg(unix)]
    #[test]
    fn file_is_private_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wallet.json");
        let mut ks = Keystore::create(&path, "pw", &mnemonic(), 1, opts()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        ks.set_next_seq(0, 5).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "after an update too");
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(
            Keystore::create(&path, "other", &mnemonic(), 1, opts()),
            Err(KeystoreError::AlreadyExists(_))
        ));
        assert_eq!(std::fs::read(&path).unwrap(), before);
        // No temporary files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn wrong_password_and_bad_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wallet.json");
        Keystore::create(&path, "right", &mnemonic(), 1, opts()).unwrap();
        assert!(matches!(
            Keystore::open(&path, "wrong"),
            Err(KeystoreError::WrongPasswordOrTampered)
        ));
        assert!(matches!(
            Keystore::open(dir.path().join("missing.json"), "right"),
            Err(KeystoreError::Io(_))
        ));
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let v2 = text.replacen("\"version\":1", "\"version\":2", 1);
        assert!(matches!(
            unseal(v2.as_bytes(), "right"),
            Err(KeystoreError::UnsupportedVersion(2))
        ));
        let scrypt = text.replacen("argon2id", "scrypt", 1);
        assert!(matches!(
            unseal(scrypt.as_bytes(), "right"),
            Err(KeystoreError::UnsupportedAlgorithm(_))
        ));
        let huge = text.replacen("\"m_cost_kib\":8", "\"m_cost_kib\":800000000", 1);
        assert!(matches!(
            unseal(huge.as_bytes(), "right"),
            Err(KeystoreError::KdfParams(_))
        ));
        assert!(matches!(
            unseal(b"not json", "right"),
            Err(KeystoreError::Format(_))
        ));
        assert!(matches!(
            unseal(b"", "right"),
            Err(KeystoreError::Format(_))
        ));
    }

    fn sealed() -> Vec<u8> {
        let kdf = KdfHeader {
            algorithm: KDF_ALGORITHM.into(),
            m_cost_kib: 8,
            t_cost: 1,
            p_cost: 1,
            salt: vec![5; SALT_LEN],
        };
        let key = derive_key("pw", &KdfParams::insecure_for_tests(), &kdf.salt).unwrap();
        let contents = Contents {
            network_id: 9,
            mnemonic: mnemonic().phrase().to_string(),
            bip39_passphrase: String::new(),
            coin_type: 1,
            account: 0,
            devices: vec![DeviceEntry {
                index: 0,
                next_seq: 12,
            }],
        };
        seal(&contents, &key, &kdf)
    }

    /// Exhaustive over positions: every byte, flipped in its low bit, its case bit (0x20) and
    /// its high bit, is detected.
    #[test]
    fn every_position_is_protected() {
        let good = sealed();
        for i in 0..good.len() {
            for x in [0x01u8, 0x20, 0x80] {
                let mut bad = good.clone();
                bad[i] ^= x;
                assert!(unseal(&bad, "pw").is_err(), "flip {x:#x} at {i}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Changing any single byte of the file, in any way, is detected.
        #[test]
        fn any_flipped_byte_is_an_error(pos in any::<prop::sample::Index>(), x in 1u8..=255) {
            let good = sealed();
            prop_assert_eq!(unseal(&good, "pw").unwrap().0.devices[0].next_seq, 12);
            let mut bad = good.clone();
            let i = pos.index(bad.len());
            bad[i] ^= x;
            prop_assert!(unseal(&bad, "pw").is_err(), "flip at {} ({:?})", i, bad[i] as char);
        }

        /// Truncation and appended bytes are detected too.
        #[test]
        fn truncated_or_extended_is_an_error(cut in any::<prop::sample::Index>(), extra in any::<u8>()) {
            let good = sealed();
            let n = cut.index(good.len());
            prop_assert!(unseal(&good[..n], "pw").is_err());
            let mut longer = good.clone();
            longer.push(extra);
            // Trailing whitespace is the one addition JSON ignores; anything else must fail.
            if !extra.is_ascii_whitespace() {
                prop_assert!(unseal(&longer, "pw").is_err());
            }
        }
    }
}

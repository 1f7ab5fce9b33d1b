//! Device keys: fresh Ed25519 keys, BIP-39 mnemonic backup and SLIP-10 hardened derivation.
//!
//! One mnemonic backs up every device key of an owner: the BIP-39 seed is the SLIP-10 master
//! secret, and device `i` of account `a` is the Ed25519 key at
//! `m/44'/<coin>'/<a>'/0'/<i>'` ([`device_path`]). SLIP-10 for ed25519 allows hardened
//! derivation only, so every path component is hardened.
//!
//! Every secret type here zeroizes its bytes when dropped.

use std::fmt;
use std::str::FromStr;

use dag_core::Keypair;
use hmac::{Hmac, Mac};
use rand_core::{CryptoRng, OsRng, RngCore};
use sha2::Sha512;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// SLIP-44 coin type used in [`device_path`]. The tangle has no registered coin type, so the
/// default is `1`, which SLIP-44 reserves for test networks of every coin.
pub const DEFAULT_COIN_TYPE: u32 = 1;

/// Components `>= HARDENED` are hardened (written `n'` or `nH`).
pub const HARDENED: u32 = 0x8000_0000;

/// A mnemonic or derivation path could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The phrase is not a valid English BIP-39 mnemonic (unknown word, bad checksum or
    /// length).
    #[error("invalid BIP-39 mnemonic: {0}")]
    Mnemonic(String),
    /// The path is not of the form `m/44'/1'/0'`.
    #[error("invalid derivation path {0:?}")]
    PathSyntax(String),
    /// SLIP-10 ed25519 supports hardened derivation only.
    #[error("derivation path component {0} is not hardened; ed25519 supports hardened only")]
    NotHardened(u32),
}

/// A fresh Ed25519 key pair from the operating system's RNG.
pub fn generate_keypair() -> Keypair {
    Keypair::generate(&mut OsRng)
}

/// A BIP-39 mnemonic (English word list). The phrase is zeroized on drop.
#[derive(Clone)]
pub struct Mnemonic(bip39::Mnemonic);

impl Mnemonic {
    /// A new 24-word mnemonic (256 bits of entropy) from the OS RNG.
    pub fn generate() -> Self {
        Self::generate_with(&mut OsRng)
    }

    /// A new 24-word mnemonic from `rng` (tests pass a seeded RNG; devices use
    /// [`Mnemonic::generate`]).
    pub fn generate_with<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut entropy = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(entropy.as_mut());
        Self::from_entropy(entropy.as_ref()).expect("32 bytes is a valid BIP-39 entropy length")
    }

    /// The mnemonic encoding `entropy` (16, 20, 24, 28 or 32 bytes).
    pub fn from_entropy(entropy: &[u8]) -> Result<Self, KeyError> {
        bip39::Mnemonic::from_entropy(entropy)
            .map(Mnemonic)
            .map_err(|e| KeyError::Mnemonic(e.to_string()))
    }

    /// Parses a phrase (words separated by whitespace; checked against the word list and the
    /// checksum).
    pub fn parse(phrase: &str) -> Result<Self, KeyError> {
        bip39::Mnemonic::parse_normalized(phrase)
            .map(Mnemonic)
            .map_err(|e| KeyError::Mnemonic(e.to_string()))
    }

    /// The phrase, words separated by single spaces.
    pub fn phrase(&self) -> Zeroizing<String> {
        Zeroizing::new(self.0.to_string())
    }

    /// Number of words.
    pub fn word_count(&self) -> usize {
        self.0.word_count()
    }

    /// The BIP-39 seed (PBKDF2-HMAC-SHA512, 2048 rounds) with an optional passphrase.
    pub fn to_seed(&self, passphrase: &str) -> Seed {
        Seed(self.0.to_seed_normalized(passphrase))
    }
}

impl fmt::Debug for Mnemonic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mnemonic({} words, redacted)", self.word_count())
    }
}

impl FromStr for Mnemonic {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::parse(s)
    }
}

/// A 64-byte master seed (normally the BIP-39 seed of a [`Mnemonic`]). Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Seed([u8; 64]);

impl Seed {
    /// Wraps raw seed bytes.
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        Seed(bytes)
    }

    /// The raw bytes. Handle with care.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// The Ed25519 key at `path` (SLIP-10).
    pub fn derive(&self, path: &DerivationPath) -> Keypair {
        ExtendedKey::master(&self.0).derive_path(path).keypair()
    }

    /// The key of device `index` of `account` under `coin_type` (see [`device_path`]).
    pub fn device_keypair(&self, coin_type: u32, account: u32, index: u32) -> Keypair {
        self.derive(&device_path(coin_type, account, index))
    }
}

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seed(redacted)")
    }
}

/// A SLIP-10 derivation path; every component is hardened (values `< 2^31`, stored without
/// the hardened bit).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DerivationPath(Vec<u32>);

impl DerivationPath {
    /// The path of hardened `components` (each must be `< 2^31`).
    pub fn hardened(components: &[u32]) -> Result<Self, KeyError> {
        for &c in components {
            if c >= HARDENED {
                return Err(KeyError::PathSyntax(format!(
                    "component {c} is out of range"
                )));
            }
        }
        Ok(DerivationPath(components.to_vec()))
    }

    /// The components, without the hardened bit.
    pub fn components(&self) -> &[u32] {
        &self.0
    }
}

impl fmt::Display for DerivationPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("m")?;
        for c in &self.0 {
            write!(f, "/{c}'")?;
        }
        Ok(())
    }
}

impl FromStr for DerivationPath {
    type Err = KeyError;
    /// Parses `m`, `m/44'/1'/0'` or `m/44H/1H/0H`; unhardened components are refused.
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let mut parts = s.split('/');
        if parts.next() != Some("m") {
            return Err(KeyError::PathSyntax(s.to_string()));
        }
        let mut out = Vec::new();
        for p in parts {
            let (num, hardened) = match p.strip_suffix(['\'', 'H', 'h']) {
                Some(n) => (n, true),
                None => (p, false),
            };
            if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
                return Err(KeyError::PathSyntax(s.to_string()));
            }
            let n: u32 = num
                .parse()
                .map_err(|_| KeyError::PathSyntax(s.to_string()))?;
            if n >= HARDENED {
                return Err(KeyError::PathSyntax(s.to_string()));
            }
            if !hardened {
                return Err(KeyError::NotHardened(n));
            }
            out.push(n);
        }
        Ok(DerivationPath(out))
    }
}

/// `m/44'/<coin_type>'/<account>'/0'/<index>'`: the path of device key `index`. Components at
/// or above `2^31` are reduced modulo `2^31` (they are hardened anyway).
pub fn device_path(coin_type: u32, account: u32, index: u32) -> DerivationPath {
    DerivationPath(vec![
        44,
        coin_type & !HARDENED,
        account & !HARDENED,
        0,
        index & !HARDENED,
    ])
}

/// A SLIP-10 extended private key: the Ed25519 secret seed and its chain code.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ExtendedKey {
    secret: [u8; 32],
    chain_code: [u8; 32],
}

impl ExtendedKey {
    /// The master key of `seed`: `HMAC-SHA512(key = "ed25519 seed", seed)`.
    pub fn master(seed: &[u8]) -> Self {
        Self::from_hmac(b"ed25519 seed", &[seed])
    }

    /// The hardened child `index` (`< 2^31`; the hardened bit is set here):
    /// `HMAC-SHA512(key = chain code, 0x00 || secret || ser32(index | 2^31))`.
    pub fn child(&self, index: u32) -> Self {
        let i = (index | HARDENED).to_be_bytes();
        Self::from_hmac(&self.chain_code, &[&[0u8], &self.secret, &i])
    }

    /// Follows `path` from this key.
    pub fn derive_path(&self, path: &DerivationPath) -> Self {
        path.0.iter().fold(self.clone(), |k, &i| k.child(i))
    }

    /// The Ed25519 secret seed (SLIP-10 "private key").
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The chain code.
    pub fn chain_code(&self) -> &[u8; 32] {
        &self.chain_code
    }

    /// The Ed25519 key pair whose secret seed this is.
    pub fn keypair(&self) -> Keypair {
        Keypair::from_seed(&self.secret)
    }

    fn from_hmac(key: &[u8], parts: &[&[u8]]) -> Self {
        let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes keys of any length");
        for p in parts {
            mac.update(p);
        }
        let out = Zeroizing::new(<[u8; 64]>::from(mac.finalize().into_bytes()));
        let mut k = ExtendedKey {
            secret: [0; 32],
            chain_code: [0; 32],
        };
        k.secret.copy_from_slice(&out[..32]);
        k.chain_code.copy_from_slice(&out[32..]);
        k
    }
}

impl fmt::Debug for ExtendedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ExtendedKey(redacted)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Step {
        path: &'static str,
        chain_code: &'static str,
        secret: &'static str,
    }

    fn check(seed_hex: &str, steps: &[Step]) {
        let seed = hex::decode(seed_hex).unwrap();
        let master = ExtendedKey::master(&seed);
        for s in steps {
            let path: DerivationPath = s.path.parse().unwrap();
            let k = master.derive_path(&path);
            assert_eq!(hex::encode(k.chain_code()), s.chain_code, "{}", s.path);
            assert_eq!(hex::encode(k.secret()), s.secret, "{}", s.path);
        }
    }

    /// SLIP-0010, "Test vector 1 for ed25519".
    #[test]
    fn slip10_test_vector_1() {
        check(
            "000102030405060708090a0b0c0d0e0f",
            &[
                Step {
                    path: "m",
                    chain_code: "90046a93de5380a72b5e45010748567d5ea02bbf6522f979e05c0d8d8ca9fffb",
                    secret: "2b4be7f19ee27bbf30c667b642d5f4aa69fd169872f8fc3059c08ebae2eb19e7",
                },
                Step {
                    path: "m/0H",
                    chain_code: "8b59aa11380b624e81507a27fedda59fea6d0b779a778918a2fd3590e16e9c69",
                    secret: "68e0fe46dfb67e368c75379acec591dad19df3cde26e63b93a8e704f1dade7a3",
                },
                Step {
                    path: "m/0H/1H",
                    chain_code: "a320425f77d1b5c2505a6b1b27382b37368ee640e3557c315416801243552f14",
                    secret: "b1d0bad404bf35da785a64ca1ac54b2617211d2777696fbffaf208f746ae84f2",
                },
                Step {
                    path: "m/0H/1H/2H",
                    chain_code: "2e69929e00b5ab250f49c3fb1c12f252de4fed2c1db88387094a0f8c4c9ccd6c",
                    secret: "92a5b23c0b8a99e37d07df3fb9966917f5d06e02ddbd909c7e184371463e9fc9",
                },
                Step {
                    path: "m/0H/1H/2H/2H",
                    chain_code: "8f6d87f93d750e0efccda017d662a1b31a266e4a6f5993b15f5c1f07f74dd5cc",
                    secret: "30d1dc7e5fc04c31219ab25a27ae00b50f6fd66622f6e9c913253d6511d1e662",
                },
                Step {
                    path: "m/0H/1H/2H/2H/1000000000H",
                    chain_code: "68789923a0cac2cd5a29172a475fe9e0fb14cd6adb5ad98a3fa70333e7afa230",
                    secret: "8f94d394a8e8fd6b1bc2f3f49f5c47e385281d5c17e65324b0f62483e37e8793",
                },
            ],
        );
        // The public key of m, as listed in the spec (without its 0x00 prefix byte).
        let m = ExtendedKey::master(&hex::decode("000102030405060708090a0b0c0d0e0f").unwrap());
        assert_eq!(
            hex::encode(m.keypair().address().0),
            "a4b2856bfec510abab89753fac1ac0e1112364e7d250545963f135f2a33188ed"
        );
    }

    /// SLIP-0010, "Test vector 2 for ed25519".
    #[test]
    fn slip10_test_vector_2() {
        check(
            "fffcf9f6f3f0edeae7e4e1dedbd8d5d2cfccc9c6c3c0bdbab7b4b1aeaba8a5a29f9c999693908d8a8784817e7b7875726f6c696663605d5a5754514e4b484542",
            &[
                Step {
                    path: "m",
                    chain_code: "ef70a74db9c3a5af931b5fe73ed8e1a53464133654fd55e7a66f8570b8e33c3b",
                    secret: "171cb88b1b3c1db25add599712e36245d75bc65a1a5c9e18d76f9f2b1eab4012",
                },
                Step {
                    path: "m/0H",
                    chain_code: "0b78a3226f915c082bf118f83618a618ab6dec793752624cbeb622acb562862d",
                    secret: "1559eb2bbec5790b0c65d8693e4d0875b1747f4970ae8b650486ed7470845635",
                },
                Step {
                    path: "m/0H/2147483647H",
                    chain_code: "138f0b2551bcafeca6ff2aa88ba8ed0ed8de070841f0c4ef0165df8181eaad7f",
                    secret: "ea4f5bfe8694d8bb74b7b59404632fd5968b774ed545e810de9c32a4fb4192f4",
                },
                Step {
                    path: "m/0H/2147483647H/1H",
                    chain_code: "73bd9fff1cfbde33a1b846c27085f711c0fe2d66fd32e139d3ebc28e5a4a6b90",
                    secret: "3757c7577170179c7868353ada796c839135b3d30554bbb74a4b1e4a5a58505c",
                },
                Step {
                    path: "m/0H/2147483647H/1H/2147483646H",
                    chain_code: "0902fe8a29f9140480a00ef244bd183e8a13288e4412d8389d140aac1794825a",
                    secret: "5837736c89570de861ebc173b1086da4f505d4adb387c6a1b1342d5e4ac9ec72",
                },
                Step {
                    path: "m/0H/2147483647H/1H/2147483646H/2H",
                    chain_code: "5d70af781f3a37b829f0d060924d5e960bdc02e85423494afc0b1a41bbe196d4",
                    secret: "551d333177df541ad876a60ea71f00447931c0a9da16f227c11ea080d7391b8d",
                },
            ],
        );
    }

    #[test]
    fn path_parsing() {
        let p: DerivationPath = "m/44'/1'/0'/0'/7'".parse().unwrap();
        assert_eq!(p, device_path(1, 0, 7));
        assert_eq!(p.to_string(), "m/44'/1'/0'/0'/7'");
        assert!("m"
            .parse::<DerivationPath>()
            .unwrap()
            .components()
            .is_empty());
        assert_eq!(
            "m/44'/0".parse::<DerivationPath>(),
            Err(KeyError::NotHardened(0))
        );
        for bad in ["", "44'", "m/", "m/x'", "m/2147483648'", "m/-1'", "M/1'"] {
            assert!(bad.parse::<DerivationPath>().is_err(), "{bad}");
        }
    }

    /// BIP-39 reference vector (entropy 0x00 * 16, passphrase "TREZOR").
    #[test]
    fn bip39_vector_and_device_keys_differ() {
        let m = Mnemonic::from_entropy(&[0u8; 16]).unwrap();
        assert_eq!(
            m.phrase().as_str(),
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
        );
        assert_eq!(
            hex::encode(m.to_seed("TREZOR").as_bytes()),
            "c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04"
        );
        let seed = m.to_seed("");
        let a = seed.device_keypair(DEFAULT_COIN_TYPE, 0, 0).address();
        let b = seed.device_keypair(DEFAULT_COIN_TYPE, 0, 1).address();
        let c = seed.device_keypair(DEFAULT_COIN_TYPE, 1, 0).address();
        assert!(a != b && a != c && b != c);
        // Deterministic: the same phrase gives the same keys.
        let again = Mnemonic::parse(&m.phrase()).unwrap().to_seed("");
        assert_eq!(again.device_keypair(DEFAULT_COIN_TYPE, 0, 1).address(), b);
        assert!(Mnemonic::parse("abandon abandon abandon").is_err());
        assert!(Mnemonic::parse(
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon"
        )
        .is_err());
    }

    #[test]
    fn generated_mnemonics_are_24_words_and_distinct() {
        let a = Mnemonic::generate();
        let b = Mnemonic::generate();
        assert_eq!(a.word_count(), 24);
        assert_ne!(a.phrase(), b.phrase());
        assert!(!format!("{a:?}").contains(a.phrase().as_str()));
        assert_ne!(generate_keypair().address(), generate_keypair().address());
    }
}

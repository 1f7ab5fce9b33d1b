//! `tangle-node init` and the dev-network layout: config, keys and genesis files.

use std::io::Write;
use std::path::{Path, PathBuf};

use dag_core::{Allocation, Genesis, GenesisError, Keypair};
use rand_core::OsRng;

use crate::config::NodeConfig;

/// File names inside a node directory.
pub mod files {
    /// Node configuration.
    pub const CONFIG: &str = "node.toml";
    /// Genesis of the network.
    pub const GENESIS: &str = "genesis.toml";
    /// Node identity key (peering).
    pub const IDENTITY: &str = "identity.key";
    /// Milestone committee key.
    pub const COMMITTEE: &str = "committee.key";
    /// Dev faucet key.
    pub const FAUCET: &str = "faucet.key";
    /// sled database folder.
    pub const DB: &str = "db";
}

/// Supply of a dev network, all of it in the faucet account.
pub const DEV_SUPPLY: u64 = 1_000_000_000_000;

/// Something went wrong writing or reading node files.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Refusing to overwrite an existing node directory.
    #[error("{0} already exists; refusing to overwrite it")]
    Exists(PathBuf),
    /// A key file does not hold a 64-hex-character seed.
    #[error("{0}: not a 32-byte hex key seed")]
    BadKey(PathBuf),
    /// The genesis file is not valid.
    #[error("genesis {path}: {message}")]
    BadGenesis {
        /// File.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The genesis defines no usable network.
    #[error(transparent)]
    Genesis(#[from] GenesisError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> InitError + '_ {
    move |source| InitError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `contents` to a new file with mode 0600 (secrets) or 0644.
pub fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), InitError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(contents).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

/// Writes a new key file holding the hex seed of a fresh key, and returns the key.
pub fn write_new_key(path: &Path) -> Result<Keypair, InitError> {
    let kp = Keypair::generate(&mut OsRng);
    write_file(
        path,
        format!("{}\n", hex::encode(kp.seed())).as_bytes(),
        true,
    )?;
    Ok(kp)
}

/// Reads a key file written by [`write_new_key`].
pub fn read_key(path: &Path) -> Result<Keypair, InitError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| InitError::BadKey(path.into()))?;
    Ok(Keypair::from_seed(&seed))
}

/// Reads and validates a genesis TOML file.
pub fn read_genesis(path: &Path) -> Result<Genesis, InitError> {
    let text = std::fs::read(path).map_err(io_err(path))?;
    parse_genesis(path, &text)
}

fn parse_genesis(path: &Path, text: &[u8]) -> Result<Genesis, InitError> {
    let bad = |message: String| InitError::BadGenesis {
        path: path.into(),
        message,
    };
    let text = std::str::from_utf8(text).map_err(|e| bad(e.to_string()))?;
    let g: Genesis = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
    g.validate()?;
    Ok(g)
}

/// Name of the binary copy of the genesis a node keeps in its data directory
/// ([`read_genesis_cached`]).
pub const GENESIS_CACHE: &str = "genesis.bin";

/// First bytes of a [`GENESIS_CACHE`] file (version 1).
const GENESIS_CACHE_MAGIC: &[u8; 8] = b"TGENBIN1";

/// [`read_genesis`] for a node starting on `data_dir`, without parsing the TOML again at
/// every start: the data directory keeps a binary copy of the genesis ([`GENESIS_CACHE`]:
/// magic, BLAKE2b-256 of the TOML file's bytes, BLAKE2b-256 of the body, the body: the
/// genesis in MessagePack, the encoding its network id is the hash of). The copy is used
/// only if it was made from a TOML file with exactly these bytes and its body matches its
/// checksum; otherwise the TOML is parsed and validated as by [`read_genesis`] and the copy
/// (re)written, atomically (a temporary file renamed over it). A copy that cannot be
/// written is only logged: it is a cache. Why: a genesis funding 100,000 accounts is an
/// 11 MB TOML file that takes 0.4-0.8 s of CPU to parse, at every start; hashing it takes
/// about 15 ms and decoding the copy about as long.
pub fn read_genesis_cached(path: &Path, data_dir: &Path) -> Result<Genesis, InitError> {
    let text = std::fs::read(path).map_err(io_err(path))?;
    let key = dag_core::crypto::blake2b256(&text);
    let cache = data_dir.join(GENESIS_CACHE);
    if let Some(g) = read_genesis_copy(&cache, &key) {
        return Ok(g);
    }
    let g = parse_genesis(path, &text)?;
    if let Err(e) = write_genesis_copy(&cache, &key, &g) {
        tracing::warn!(file = %cache.display(), error = %e, "could not keep a binary copy of the genesis");
    }
    Ok(g)
}

/// The genesis in the copy at `cache` if it was made from the TOML whose hash is `key`
/// and is intact and valid.
fn read_genesis_copy(cache: &Path, key: &[u8; 32]) -> Option<Genesis> {
    let bytes = std::fs::read(cache).ok()?;
    let rest = bytes.strip_prefix(GENESIS_CACHE_MAGIC)?;
    if rest.len() < 64 || rest[..32] != key[..] {
        return None;
    }
    let (sum, body) = rest[32..].split_at(32);
    if dag_core::crypto::blake2b256(body)[..] != sum[..] {
        tracing::warn!(file = %cache.display(), "the binary copy of the genesis is damaged; reading the TOML");
        return None;
    }
    let g: Genesis = rmp_serde::from_slice(body).ok()?;
    g.validate().ok()?;
    Some(g)
}

fn write_genesis_copy(cache: &Path, key: &[u8; 32], g: &Genesis) -> std::io::Result<()> {
    let body = rmp_serde::to_vec(g).map_err(std::io::Error::other)?;
    let mut out = Vec::with_capacity(GENESIS_CACHE_MAGIC.len() + 64 + body.len());
    out.extend_from_slice(GENESIS_CACHE_MAGIC);
    out.extend_from_slice(key);
    out.extend_from_slice(&dag_core::crypto::blake2b256(&body));
    out.extend_from_slice(&body);
    if let Some(dir) = cache.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = cache.with_extension("bin.tmp");
    std::fs::write(&tmp, &out)?;
    std::fs::rename(&tmp, cache)
}

/// Options of `tangle-node init`.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Directory to create the node in.
    pub dir: PathBuf,
    /// Join this existing network (copy its genesis) instead of creating a new one.
    pub genesis: Option<PathBuf>,
    /// Name of a new network.
    pub network_name: String,
    /// PoW difficulty of a new network.
    pub pow_difficulty: u8,
    /// Make this a dev network: a funded faucet key, enabled in the config.
    pub dev: bool,
    /// Genesis time of a new network (ms since the epoch).
    pub now_ms: u64,
}

/// What `init` wrote.
#[derive(Clone, Debug)]
pub struct InitReport {
    /// The config file.
    pub config: PathBuf,
    /// The network's genesis.
    pub genesis: Genesis,
    /// Committee key file, for a new network.
    pub committee_key: Option<PathBuf>,
    /// Faucet key file, for a dev network.
    pub faucet_key: Option<PathBuf>,
}

/// Creates a node directory: config, identity and, for a new network, genesis and committee
/// key (and a faucet for dev networks). Refuses to overwrite an existing config.
pub fn init(opts: &InitOptions) -> Result<InitReport, InitError> {
    let dir = &opts.dir;
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let config_path = dir.join(files::CONFIG);
    if config_path.exists() {
        return Err(InitError::Exists(config_path));
    }
    write_new_key(&dir.join(files::IDENTITY))?;
    let genesis_path = dir.join(files::GENESIS);
    let mut cfg = NodeConfig::new(files::DB.into(), files::GENESIS.into());
    let mut committee_key = None;
    let mut faucet_key = None;
    let genesis = match &opts.genesis {
        Some(src) => {
            let g = read_genesis(src)?;
            std::fs::copy(src, &genesis_path).map_err(io_err(&genesis_path))?;
            g
        }
        None => {
            let committee = write_new_key(&dir.join(files::COMMITTEE))?;
            cfg.milestone_key = Some(files::COMMITTEE.into());
            committee_key = Some(dir.join(files::COMMITTEE));
            let mut allocations = Vec::new();
            if opts.dev {
                let faucet = write_new_key(&dir.join(files::FAUCET))?;
                cfg.faucet_key = Some(files::FAUCET.into());
                faucet_key = Some(dir.join(files::FAUCET));
                allocations.push(Allocation {
                    address: faucet.address(),
                    amount: DEV_SUPPLY,
                });
            }
            let g = Genesis {
                network_name: opts.network_name.clone(),
                timestamp: opts.now_ms,
                pow_difficulty: opts.pow_difficulty,
                timestamp_window_ms: dag_core::genesis::DEFAULT_TIMESTAMP_WINDOW_MS,
                committee: vec![committee.address()],
                threshold: 1,
                allocations,
            };
            g.validate()?;
            let text = format!(
                "# Genesis of network {:?}. Its hash is the network id: never edit it after launch.\n{}",
                g.network_name,
                toml::to_string(&g).expect("genesis serialises")
            );
            write_file(&genesis_path, text.as_bytes(), false)?;
            g
        }
    };
    write_file(&config_path, cfg.to_documented_toml().as_bytes(), false)?;
    Ok(InitReport {
        config: config_path,
        genesis,
        committee_key,
        faucet_key,
    })
}

/// Options of `tangle-node testnet`.
#[derive(Clone, Debug)]
pub struct TestnetOptions {
    /// Directory holding the node directories `node-<i>`.
    pub dir: PathBuf,
    /// Number of nodes, each a committee member (1 to 32).
    pub nodes: usize,
    /// Committee signatures a milestone needs (1 to `nodes`).
    pub threshold: u8,
    /// Node `i` serves its API on 127.0.0.1:`base_port + i` and peers on
    /// 127.0.0.1:`base_port + 100 + i`.
    pub base_port: u16,
    /// Name of the network.
    pub network_name: String,
    /// PoW difficulty.
    pub pow_difficulty: u8,
    /// Milestone interval, ms.
    pub milestone_interval_ms: u64,
    /// Genesis time (ms since the epoch).
    pub now_ms: u64,
}

/// What `testnet` wrote.
#[derive(Clone, Debug)]
pub struct TestnetReport {
    /// The config file of each node, in order.
    pub configs: Vec<PathBuf>,
    /// The shared genesis.
    pub genesis: Genesis,
}

/// Writes `nodes` node directories `DIR/node-<i>` of one new network, as `cometbft testnet`
/// does: each with its identity, its committee key, a config (API on 127.0.0.1:P+i, peering
/// on 127.0.0.1:P+100+i, every other node an allowlisted peer) and the shared genesis (the
/// committee of every node's key with threshold `threshold`, and a funded dev faucet whose
/// key is in `node-0`). Each node then runs as its own process with
/// `tangle-node run --config DIR/node-<i>/node.toml`. Refuses to overwrite a node directory.
pub fn testnet(opts: &TestnetOptions) -> Result<TestnetReport, InitError> {
    let n = opts.nodes;
    let bad = |message: String| InitError::BadGenesis {
        path: opts.dir.clone(),
        message,
    };
    if n == 0 || n > dag_core::MAX_MILESTONE_SIGNATURES {
        return Err(bad(format!(
            "{n} nodes: 1 to {} are supported",
            dag_core::MAX_MILESTONE_SIGNATURES
        )));
    }
    if opts.threshold == 0 || usize::from(opts.threshold) > n {
        return Err(bad(format!("threshold {} of {n} members", opts.threshold)));
    }
    let port = |offset: usize| -> Result<u16, InitError> {
        u16::try_from(usize::from(opts.base_port) + offset).map_err(|_| {
            bad(format!(
                "port {} + {offset} is out of range",
                opts.base_port
            ))
        })
    };
    let dirs: Vec<PathBuf> = (0..n).map(|i| opts.dir.join(format!("node-{i}"))).collect();
    for d in &dirs {
        if d.join(files::CONFIG).exists() {
            return Err(InitError::Exists(d.join(files::CONFIG)));
        }
    }
    let mut identities = Vec::with_capacity(n);
    let mut committee = Vec::with_capacity(n);
    for d in &dirs {
        std::fs::create_dir_all(d).map_err(io_err(d))?;
        identities.push(write_new_key(&d.join(files::IDENTITY))?);
        committee.push(write_new_key(&d.join(files::COMMITTEE))?.address());
    }
    let faucet = write_new_key(&dirs[0].join(files::FAUCET))?;
    let genesis = Genesis {
        network_name: opts.network_name.clone(),
        timestamp: opts.now_ms,
        pow_difficulty: opts.pow_difficulty,
        timestamp_window_ms: dag_core::genesis::DEFAULT_TIMESTAMP_WINDOW_MS,
        committee,
        threshold: opts.threshold,
        allocations: vec![Allocation {
            address: faucet.address(),
            amount: DEV_SUPPLY,
        }],
    };
    genesis.validate()?;
    let text = format!(
        "# Genesis of test network {:?}: {n} committee members, {} signatures per milestone.\n{}",
        genesis.network_name,
        genesis.threshold,
        toml::to_string(&genesis).expect("genesis serialises")
    );
    let mut configs = Vec::with_capacity(n);
    for (i, d) in dirs.iter().enumerate() {
        write_file(&d.join(files::GENESIS), text.as_bytes(), false)?;
        let mut cfg = NodeConfig::new(files::DB.into(), files::GENESIS.into());
        cfg.api_addr = std::net::SocketAddr::from(([127, 0, 0, 1], port(i)?));
        cfg.peering_addr = Some(std::net::SocketAddr::from(([127, 0, 0, 1], port(100 + i)?)));
        cfg.milestone_key = Some(files::COMMITTEE.into());
        cfg.milestone_interval_ms = opts.milestone_interval_ms.max(1);
        if i == 0 {
            cfg.faucet_key = Some(files::FAUCET.into());
        }
        for (j, id) in identities.iter().enumerate() {
            if j != i {
                cfg.peers.push(crate::net::PeerEntry {
                    address: std::net::SocketAddr::from(([127, 0, 0, 1], port(100 + j)?)),
                    public_key: node_proto::peering::PeerKey(id.address().0),
                });
            }
        }
        let path = d.join(files::CONFIG);
        write_file(&path, cfg.to_documented_toml().as_bytes(), false)?;
        configs.push(path);
    }
    Ok(TestnetReport { configs, genesis })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A genesis of `n` funded accounts, written as TOML to `path`.
    fn big_genesis(path: &Path, n: u64) -> Genesis {
        let g = Genesis {
            network_name: "cache".into(),
            timestamp: 7,
            pow_difficulty: 1,
            timestamp_window_ms: 60_000,
            committee: vec![Keypair::from_seed(&[1; 32]).address()],
            threshold: 1,
            allocations: (0..n)
                .map(|i| {
                    let mut seed = [2u8; 32];
                    seed[..8].copy_from_slice(&i.to_le_bytes());
                    Allocation {
                        address: Keypair::from_seed(&seed).address(),
                        amount: 1 + i,
                    }
                })
                .collect(),
        };
        std::fs::write(path, toml::to_string(&g).unwrap()).unwrap();
        g
    }

    #[test]
    fn the_genesis_copy_is_used_only_for_the_toml_it_was_made_from() {
        let dir = tempfile::tempdir().unwrap();
        let (toml_path, data) = (dir.path().join("genesis.toml"), dir.path().join("db"));
        let g = big_genesis(&toml_path, 300);
        // First start: parsed from the TOML, the copy written (the data dir created).
        assert_eq!(read_genesis_cached(&toml_path, &data).unwrap(), g);
        let cache = data.join(GENESIS_CACHE);
        let copy = std::fs::read(&cache).unwrap();
        assert!(copy.starts_with(GENESIS_CACHE_MAGIC));
        assert_eq!(read_genesis_cached(&toml_path, &data).unwrap(), g);
        assert_eq!(
            read_genesis_cached(&toml_path, &data).unwrap().network_id(),
            read_genesis(&toml_path).unwrap().network_id()
        );

        // The copy is what a matching start reads: a copy holding another (valid) genesis
        // under this TOML's hash is believed, which shows the TOML was not parsed.
        let mut other = g.clone();
        other.timestamp = 8;
        write_genesis_copy(
            &cache,
            &dag_core::crypto::blake2b256(&std::fs::read(&toml_path).unwrap()),
            &other,
        )
        .unwrap();
        assert_eq!(read_genesis_cached(&toml_path, &data).unwrap(), other);

        // A changed TOML (one byte: another timestamp) is parsed, and the copy replaced.
        let mut changed = g.clone();
        changed.timestamp = 9;
        std::fs::write(&toml_path, toml::to_string(&changed).unwrap()).unwrap();
        assert_eq!(read_genesis_cached(&toml_path, &data).unwrap(), changed);
        assert_eq!(
            read_genesis_copy(
                &cache,
                &dag_core::crypto::blake2b256(&std::fs::read(&toml_path).unwrap())
            ),
            Some(changed.clone())
        );

        // A damaged copy (any body byte) is not used: the TOML is read and the copy rewritten.
        let mut bytes = std::fs::read(&cache).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&cache, &bytes).unwrap();
        let key = dag_core::crypto::blake2b256(&std::fs::read(&toml_path).unwrap());
        assert_eq!(read_genesis_copy(&cache, &key), None);
        assert_eq!(read_genesis_cached(&toml_path, &data).unwrap(), changed);
        assert_eq!(read_genesis_copy(&cache, &key), Some(changed.clone()));

        // A bad TOML is refused as by read_genesis, copy or not.
        std::fs::write(&toml_path, "threshold = ").unwrap();
        assert!(matches!(
            read_genesis_cached(&toml_path, &data),
            Err(InitError::BadGenesis { .. })
        ));
    }

    #[test]
    fn init_writes_a_loadable_dev_node_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let opts = InitOptions {
            dir: dir.path().join("n"),
            genesis: None,
            network_name: "t".into(),
            pow_difficulty: 4,
            dev: true,
            now_ms: 1,
        };
        let rep = init(&opts).unwrap();
        let cfg = NodeConfig::load(&rep.config).unwrap();
        let g = read_genesis(&cfg.genesis).unwrap();
        assert_eq!(g, rep.genesis);
        let faucet = read_key(cfg.faucet_key.as_ref().unwrap()).unwrap();
        assert_eq!(g.allocations[0].address, faucet.address());
        let committee = read_key(cfg.milestone_key.as_ref().unwrap()).unwrap();
        assert_eq!(g.committee, vec![committee.address()]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(rep.faucet_key.unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(init(&opts), Err(InitError::Exists(_))));
    }

    #[test]
    fn testnet_writes_n_peered_members_of_one_network() {
        let dir = tempfile::tempdir().unwrap();
        let opts = TestnetOptions {
            dir: dir.path().join("net"),
            nodes: 4,
            threshold: 3,
            base_port: 20_000,
            network_name: "t".into(),
            pow_difficulty: 4,
            milestone_interval_ms: 1000,
            now_ms: 1,
        };
        let rep = testnet(&opts).unwrap();
        assert_eq!(rep.configs.len(), 4);
        assert_eq!(rep.genesis.threshold, 3);
        let mut identities = Vec::new();
        for (i, path) in rep.configs.iter().enumerate() {
            let cfg = NodeConfig::load(path).unwrap();
            assert_eq!(read_genesis(&cfg.genesis).unwrap(), rep.genesis);
            let member = read_key(cfg.milestone_key.as_ref().unwrap()).unwrap();
            assert_eq!(rep.genesis.committee[i], member.address());
            assert_eq!(
                cfg.api_addr.to_string(),
                format!("127.0.0.1:{}", 20_000 + i)
            );
            assert_eq!(
                cfg.peering_addr.unwrap().to_string(),
                format!("127.0.0.1:{}", 20_100 + i)
            );
            assert_eq!(cfg.faucet_key.is_some(), i == 0);
            assert_eq!(cfg.peers.len(), 3);
            identities.push(read_key(&cfg.identity_key).unwrap().address());
        }
        // Every node lists every other one by its identity and peering address.
        for (i, path) in rep.configs.iter().enumerate() {
            let cfg = NodeConfig::load(path).unwrap();
            for (j, id) in identities.iter().enumerate().filter(|(j, _)| *j != i) {
                assert!(cfg.peers.iter().any(|p| p.public_key.0 == id.0
                    && p.address.to_string() == format!("127.0.0.1:{}", 20_100 + j)));
            }
        }
        let faucet = read_key(&dir.path().join("net/node-0").join(files::FAUCET)).unwrap();
        assert_eq!(rep.genesis.allocations[0].address, faucet.address());
        assert!(matches!(testnet(&opts), Err(InitError::Exists(_))));
        let too_many = TestnetOptions {
            threshold: 5,
            dir: dir.path().join("other"),
            ..opts
        };
        assert!(testnet(&too_many).is_err());
    }

    #[test]
    fn bad_key_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "nothex").unwrap();
        assert!(matches!(read_key(&p), Err(InitError::BadKey(_))));
    }
}

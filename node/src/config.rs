//! Node configuration: a TOML file, overridden by `TANGLE_*` environment variables, overridden
//! by command-line flags (the binary applies the last two through clap).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Which tip selector the node uses for the transactions it builds (the workspace's one
/// selector name: `urts`, `rurts`, `walk`).
pub use tip_selection::SelectorKind as TipSelectorKind;

/// Everything a node needs to run. Paths are relative to the config file's directory when
/// loaded from a file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Where sled keeps its files.
    pub data_dir: PathBuf,
    /// The genesis file (TOML) that defines the network.
    pub genesis: PathBuf,
    /// HTTP API listen address.
    #[serde(default = "default_api_addr")]
    pub api_addr: SocketAddr,
    /// MQTT listen address (the node's events as topics, submissions by publishing; see
    /// [`crate::mqtt`]); MQTT is off without it. `tangle-node dev` sets 127.0.0.1:1883.
    #[serde(default)]
    pub mqtt_addr: Option<SocketAddr>,
    /// Committee key seed file (hex); with it the node issues milestones.
    #[serde(default)]
    pub milestone_key: Option<PathBuf>,
    /// Milestone interval in milliseconds.
    #[serde(default = "default_milestone_interval")]
    pub milestone_interval_ms: u64,
    /// Bearer token for admin routes; admin routes are disabled without one.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// Largest accepted request body, in bytes.
    #[serde(default = "default_body_limit")]
    pub max_body_bytes: usize,
    /// Requests per second allowed per client IP (burst of the same size).
    #[serde(default = "default_rate_limit")]
    pub rate_limit_per_sec: u32,
    /// Most HTTP API connections served at once; more wait in the listen backlog.
    #[serde(default = "default_api_max_connections")]
    pub api_max_connections: usize,
    /// Tip selector for locally built transactions.
    #[serde(default)]
    pub tip_selector: TipSelectorKind,
    /// Dev mode: enables `POST /api/v1/faucet` with the faucet key below.
    #[serde(default)]
    pub faucet_key: Option<PathBuf>,
    /// UDP address for QUIC peering; peering is off without it.
    #[serde(default)]
    pub peering_addr: Option<SocketAddr>,
    /// Node identity key (hex seed file) presented to peers.
    #[serde(default = "default_identity")]
    pub identity_key: PathBuf,
    /// Static peers: `[[peers]]` tables with `address` and `public_key`.
    #[serde(default)]
    pub peers: Vec<crate::net::PeerEntry>,
    /// Retention of history (`[pruning]`); by default everything is kept (archive).
    #[serde(default)]
    pub pruning: PruningConfig,
    /// Snapshot files (`[snapshots]`): made periodically or on demand, served to peers,
    /// fetched from them by a new node.
    #[serde(default)]
    pub snapshots: SnapshotsConfig,
}

/// `[snapshots]`: snapshot files of the running node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotsConfig {
    /// Where they go (default: `snapshots` in the data directory).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Make one every this many milestones (when the applied index is a multiple of it).
    /// Absent or 0: only on demand (`POST /api/v1/admin/snapshot`).
    #[serde(default)]
    pub interval: Option<u32>,
    /// Make a delta (what changed since the newest full snapshot) every this many
    /// milestones. Absent or 0: only on demand (`?kind=delta`).
    #[serde(default)]
    pub delta_interval: Option<u32>,
    /// Keep the newest this many files (default 2, at least 1).
    #[serde(default = "default_snapshot_keep")]
    pub keep: usize,
    /// With an empty database and peers configured, start from the newest snapshot a peer
    /// serves (default true); without one, or with this off, sync from the genesis.
    #[serde(default = "default_true")]
    pub fetch_from_peers: bool,
}

impl Default for SnapshotsConfig {
    fn default() -> Self {
        SnapshotsConfig {
            dir: None,
            interval: None,
            delta_interval: None,
            keep: default_snapshot_keep(),
            fetch_from_peers: true,
        }
    }
}

impl SnapshotsConfig {
    /// The directory, given the data directory.
    pub fn dir_for(&self, data_dir: &Path) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| data_dir.join("snapshots"))
    }

    /// The period of full snapshots in milestones (`None`: on demand only).
    pub fn every(&self) -> Option<u32> {
        self.interval.filter(|n| *n > 0)
    }

    /// The period of deltas in milestones (`None`: on demand only).
    pub fn delta_every(&self) -> Option<u32> {
        self.delta_interval.filter(|n| *n > 0)
    }
}

fn default_snapshot_keep() -> usize {
    2
}

fn default_true() -> bool {
    true
}

/// `[pruning]`: how much history the node keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruningConfig {
    /// Keep the cones of the last this many milestones (at least 2: the last applied
    /// milestone's transaction stays, for the chain); older history leaves memory and the
    /// store after each milestone. Absent or 0: keep everything (`archive`).
    #[serde(default)]
    pub keep_milestones: Option<u32>,
    /// Disk-size target for the database directory, in MiB: while the directory is larger,
    /// the node keeps fewer milestones (never fewer than 2, never what an unconfirmed
    /// transaction needs). Combined with `keep_milestones`, the stricter wins. The
    /// transaction log is deleted in whole segments (16 MiB when the node prunes), so a
    /// target below a couple of segments plus sled's files cannot be met. Absent or 0: no target.
    #[serde(default)]
    pub max_disk_mb: Option<u64>,
}

impl PruningConfig {
    /// The retention as the core takes it (`None`: archive).
    pub fn keep(&self) -> Option<u32> {
        self.keep_milestones.filter(|n| *n > 0)
    }

    /// Whether the node prunes at all (a count or a disk target).
    pub fn prunes(&self) -> bool {
        self.keep().is_some() || self.max_disk_bytes().is_some()
    }

    /// The disk-size target in bytes (`None`: none).
    pub fn max_disk_bytes(&self) -> Option<u64> {
        self.max_disk_mb
            .filter(|n| *n > 0)
            .map(|n| n.saturating_mul(1 << 20))
    }
}

fn default_identity() -> PathBuf {
    "identity.key".into()
}

fn default_api_addr() -> SocketAddr {
    "127.0.0.1:14265".parse().expect("valid address")
}
fn default_milestone_interval() -> u64 {
    1000
}
fn default_body_limit() -> usize {
    4 * 1024 * 1024
}
fn default_rate_limit() -> u32 {
    100_000
}
fn default_api_max_connections() -> usize {
    1024
}

/// A configuration that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for a node config.
    #[error("parsing {path}: {source}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Cause.
        source: toml::de::Error,
    },
}

impl NodeConfig {
    /// A config with defaults for everything but the two required paths.
    pub fn new(data_dir: PathBuf, genesis: PathBuf) -> Self {
        NodeConfig {
            data_dir,
            genesis,
            api_addr: default_api_addr(),
            mqtt_addr: None,
            milestone_key: None,
            milestone_interval_ms: default_milestone_interval(),
            admin_token: None,
            max_body_bytes: default_body_limit(),
            rate_limit_per_sec: default_rate_limit(),
            api_max_connections: default_api_max_connections(),
            tip_selector: TipSelectorKind::default(),
            faucet_key: None,
            peering_addr: None,
            identity_key: default_identity(),
            peers: Vec::new(),
            pruning: PruningConfig::default(),
            snapshots: SnapshotsConfig::default(),
        }
    }

    /// Loads a TOML file; relative paths in it are resolved against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut cfg: NodeConfig = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut cfg.data_dir);
        fix(&mut cfg.genesis);
        fix(&mut cfg.identity_key);
        if let Some(p) = cfg.milestone_key.as_mut() {
            fix(p);
        }
        if let Some(p) = cfg.faucet_key.as_mut() {
            fix(p);
        }
        if let Some(p) = cfg.snapshots.dir.as_mut() {
            fix(p);
        }
        Ok(cfg)
    }

    /// A commented TOML rendering of this config, as `tangle-node init` writes it.
    pub fn to_documented_toml(&self) -> String {
        let opt = |p: &Option<PathBuf>, name: &str| match p {
            Some(p) => format!("{name} = {:?}\n", p.display().to_string()),
            None => format!("# {name} = \"...\"\n"),
        };
        format!(
            "# tangle-node configuration. Precedence: this file < TANGLE_* env vars < CLI flags.\n\
             \n\
             # Where the sled database lives.\n\
             data_dir = {:?}\n\
             # Genesis file defining the network (its hash is the network id).\n\
             genesis = {:?}\n\
             # HTTP API listen address.\n\
             api_addr = \"{}\"\n\
             # MQTT listen address: the node's events as topics, submissions by publishing\n\
             # (MQTT is off without it).\n\
             {}\
             # Committee key (hex seed file); with it this node issues milestones.\n\
             {}\
             # Milestone interval, ms.\n\
             milestone_interval_ms = {}\n\
             # Bearer token for admin routes (admin routes are off without one).\n\
             {}\
             # Largest request body, bytes.\n\
             max_body_bytes = {}\n\
             # Requests per second per client IP.\n\
             rate_limit_per_sec = {}\n\
             # Most HTTP API connections served at once (more wait in the listen backlog).\n\
             api_max_connections = {}\n\
             # Tip selector: \"rurts\" (default), \"urts\" or \"walk\".\n\
             tip_selector = \"{}\"\n\
             # Dev networks only: faucet key (hex seed file) enabling POST /api/v1/faucet.\n\
             {}\
             # Node identity (hex seed file) presented to peers over QUIC/TLS 1.3.\n\
             identity_key = {:?}\n\
             # UDP address for QUIC peering (peering is off without it).\n\
             {}\
             # Static peers; only these keys may connect. Repeat the table per peer:\n\
             # [[peers]]\n\
             # address = \"127.0.0.1:15600\"\n\
             # public_key = \"<64 hex characters>\"\n\
             {}\n\
             # Retention: keep the history of the last N milestones (memory and disk stay\n\
             # bounded); absent or 0 keeps everything (an archive node). max_disk_mb: while\n\
             # the database directory is larger than this many MiB, keep fewer milestones\n\
             # (at least 2; the stricter of the two wins; below ~64 MiB it cannot be met:\n\
             # the transaction log is deleted in whole 16 MiB segments).\n\
             [pruning]\n\
             {}{}\
             \n\
             # Snapshot files: a full one every `interval` milestones, a delta (what changed\n\
             # since the newest full one) every `delta_interval` (absent or 0: only on demand,\n\
             # POST /api/v1/admin/snapshot?kind=full|delta); the newest `keep` full ones and\n\
             # the newest delta stay in `dir` (default: the data directory's `snapshots`) and\n\
             # are served to peers. A node with an empty database starts from the newest one\n\
             # its peers serve (fetch_from_peers).\n\
             [snapshots]\n\
             {}{}\
             keep = {}\n\
             fetch_from_peers = {}\n",
            self.data_dir.display().to_string(),
            self.genesis.display().to_string(),
            self.api_addr,
            match &self.mqtt_addr {
                Some(a) => format!("mqtt_addr = \"{a}\"\n"),
                None => "# mqtt_addr = \"127.0.0.1:1883\"\n".into(),
            },
            opt(&self.milestone_key, "milestone_key"),
            self.milestone_interval_ms,
            match &self.admin_token {
                Some(t) => format!("admin_token = {t:?}\n"),
                None => "# admin_token = \"...\"\n".into(),
            },
            self.max_body_bytes,
            self.rate_limit_per_sec,
            self.api_max_connections,
            match self.tip_selector {
                TipSelectorKind::Urts => "urts",
                TipSelectorKind::Rurts => "rurts",
                TipSelectorKind::Walk => "walk",
            },
            opt(&self.faucet_key, "faucet_key"),
            self.identity_key.display().to_string(),
            match &self.peering_addr {
                Some(a) => format!("peering_addr = \"{a}\"\n"),
                None => "# peering_addr = \"0.0.0.0:15600\"\n".into(),
            },
            self.peers
                .iter()
                .map(|p| format!(
                    "\n[[peers]]\naddress = \"{}\"\npublic_key = \"{}\"\n",
                    p.address, p.public_key
                ))
                .collect::<String>(),
            match self.pruning.keep_milestones {
                Some(n) => format!("keep_milestones = {n}\n"),
                None => "# keep_milestones = 60\n".into(),
            },
            match self.pruning.max_disk_mb {
                Some(n) => format!("max_disk_mb = {n}\n"),
                None => "# max_disk_mb = 4096\n".into(),
            },
            match self.snapshots.interval {
                Some(n) => format!("interval = {n}\n"),
                None => "# interval = 1000\n".into(),
            },
            match self.snapshots.delta_interval {
                Some(n) => format!("delta_interval = {n}\n"),
                None => "# delta_interval = 100\n".into(),
            },
            self.snapshots.keep,
            self.snapshots.fetch_from_peers,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_toml_round_trips_with_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = NodeConfig::new("data".into(), "genesis.toml".into());
        cfg.milestone_key = Some("committee.key".into());
        cfg.admin_token = Some("secret".into());
        let path = dir.path().join("node.toml");
        std::fs::write(&path, cfg.to_documented_toml()).unwrap();
        let back = NodeConfig::load(&path).unwrap();
        assert_eq!(back.data_dir, dir.path().join("data"));
        assert_eq!(back.genesis, dir.path().join("genesis.toml"));
        assert_eq!(back.milestone_key, Some(dir.path().join("committee.key")));
        assert_eq!(back.admin_token.as_deref(), Some("secret"));
        assert_eq!(back.faucet_key, None);
        assert_eq!(back.api_addr, cfg.api_addr);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "data_dir = \"d\"\ngenesis = \"g\"\nbogus = 1\n").unwrap();
        assert!(matches!(
            NodeConfig::load(&path),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn pruning_settings_round_trip_and_default_to_archive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        let mut cfg = NodeConfig::new("data".into(), "genesis.toml".into());
        std::fs::write(&path, cfg.to_documented_toml()).unwrap();
        let back = NodeConfig::load(&path).unwrap();
        assert_eq!(back.pruning, PruningConfig::default());
        assert_eq!(
            (back.pruning.keep(), back.pruning.max_disk_bytes()),
            (None, None)
        );
        cfg.pruning.keep_milestones = Some(60);
        cfg.pruning.max_disk_mb = Some(512);
        std::fs::write(&path, cfg.to_documented_toml()).unwrap();
        let back = NodeConfig::load(&path).unwrap();
        assert_eq!(back.pruning, cfg.pruning);
        assert_eq!(back.pruning.max_disk_bytes(), Some(512 << 20));
    }
}

//! [`Scenario`]: everything that defines a run, read from TOML (`scenarios/*.toml`) and
//! overridden by command-line flags. Times are in abstract *time units* (think seconds); the
//! engine works in integer ticks of [`TICKS_PER_UNIT`] per unit.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Engine ticks per time unit (a microsecond when the unit is a second).
pub const TICKS_PER_UNIT: f64 = 1_000_000.0;

/// Converts time units to ticks (rounded, saturating at 0).
pub fn to_ticks(units: f64) -> u64 {
    if units.is_finite() && units > 0.0 {
        (units * TICKS_PER_UNIT).round() as u64
    } else {
        0
    }
}

/// Converts ticks to time units.
pub fn to_units(ticks: u64) -> f64 {
    ticks as f64 / TICKS_PER_UNIT
}

/// Why a scenario could not be loaded or is not runnable.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The scenario file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown fields.
    #[error("invalid scenario TOML: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value is out of range; the message names it.
    #[error("invalid scenario: {0}")]
    Invalid(String),
}

/// Tip-selection algorithm of a run: the workspace's one selector name, shared with the
/// node's configuration.
pub use tip_selection::SelectorKind as TipsKind;

/// Tip-selection settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TipsConfig {
    /// The algorithm.
    pub kind: TipsKind,
    /// Weighted walk: randomness `alpha`.
    pub alpha: f64,
    /// Weighted walk: window depth, in time units. Default 20: walks start 20 delays back,
    /// below every current tip's past at the loads of the closed-form checks (a shallower
    /// window strands tips, which the walker then approves as second parents: more tips
    /// and later confirmations, never lost ones; see `tip_selection::WeightedWalk`).
    pub depth: f64,
    /// Weighted walk: cap on the window size, in transactions.
    pub max_window: usize,
    /// Restricted URTS: approvers after which a tip leaves the pool.
    pub max_approvers: usize,
    /// Restricted URTS: time after the first approval at which a tip leaves the pool.
    pub max_referenced_age: f64,
    /// Restricted URTS: time after arrival at which a tip leaves the pool.
    pub max_tip_age: f64,
}

impl Default for TipsConfig {
    fn default() -> Self {
        TipsConfig {
            kind: TipsKind::Urts,
            alpha: 0.01,
            depth: 20.0,
            max_window: 4096,
            max_approvers: 2,
            max_referenced_age: 3.0,
            max_tip_age: 60.0,
        }
    }
}

/// Workload mix: each honest arrival is assigned a workload with probability proportional
/// to its weight (Poisson thinning, so each workload is itself a Poisson stream).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkloadConfig {
    /// Weight of plain payments between devices.
    pub payments: f64,
    /// Weight of smart-meter payments (pay the utility for the consumption since last time).
    pub meters: f64,
    /// Weight of EV-charging channel operations (open, then claim by the charger).
    pub ev: f64,
    /// Weight of sensor anchors.
    pub sensors: f64,
    /// Weight of empty transactions (no payload; the pure Tangle model).
    pub empty: f64,
    /// Number of payment devices.
    pub devices: usize,
    /// Number of smart meters.
    pub meter_count: usize,
    /// Number of EVs (each with its own charger account).
    pub ev_count: usize,
    /// Number of sensors.
    pub sensor_count: usize,
    /// Genesis balance of every account that pays.
    pub initial_balance: u64,
    /// Largest plain payment (amounts are uniform in 1..=max).
    pub max_payment: u64,
    /// Price of one kWh.
    pub price_per_kwh: u64,
    /// Largest charge of a session, in kWh (sessions charge 1..=max kWh; deposit covers max).
    pub max_kwh: u64,
    /// Charging session duration after the channel opened, in time units.
    pub session_duration: f64,
    /// Channel lifetime, in milestones after the one current at opening.
    pub channel_milestones: u32,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            payments: 0.0,
            meters: 0.0,
            ev: 0.0,
            sensors: 0.0,
            empty: 1.0,
            devices: 1000,
            meter_count: 200,
            ev_count: 100,
            sensor_count: 200,
            initial_balance: 1_000_000_000,
            max_payment: 100,
            price_per_kwh: 30,
            max_kwh: 50,
            session_duration: 30.0,
            channel_milestones: 1000,
        }
    }
}

/// A per-link latency override (symmetric).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkLatency {
    /// One node.
    pub a: usize,
    /// The other node.
    pub b: usize,
    /// One-way latency, in time units.
    pub latency: f64,
}

/// Network model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Number of nodes; 1 is the base model of the literature.
    pub nodes: usize,
    /// Default one-way latency between two nodes, in time units (added to `delay`).
    pub latency: f64,
    /// Per-link overrides.
    pub links: Vec<LinkLatency>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            nodes: 1,
            latency: 0.1,
            links: Vec::new(),
        }
    }
}

/// One attack to run alongside the honest workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AttackConfig {
    /// A side chain built in private and released at once: `chain` transactions in a chain
    /// whose root approves an honest transaction `attach_age` old, plus `tips` transactions
    /// approving the chain, so the parasite shows many tips.
    Parasite {
        /// Release time.
        start: f64,
        /// Age of the honest transaction the chain attaches to, at release.
        attach_age: f64,
        /// Chain length.
        chain: usize,
        /// Number of parasite tips.
        tips: usize,
        /// How long after release honest selections are watched.
        measure: f64,
    },
    /// A share of issuers that approve old transactions instead of selecting tips.
    LazyTips {
        /// Time from which lazy issuers are active.
        start: f64,
        /// Share of honest arrivals that are lazy.
        share: f64,
        /// Age of the transactions a lazy issuer approves.
        age: f64,
    },
    /// One issuer floods the network with signed anchors.
    SpamFlood {
        /// Flood start.
        start: f64,
        /// Flood duration.
        duration: f64,
        /// Flood rate (transactions per time unit), on top of `lambda`.
        rate: f64,
    },
    /// An account pays a merchant, then issues a conflicting payment with the same `seq` to
    /// itself `gap` later; repeated `attempts` times with fresh accounts.
    DoubleSpend {
        /// First attempt.
        start: f64,
        /// Time between attempts.
        every: f64,
        /// Time between the honest payment and the conflicting one.
        gap: f64,
        /// Number of attempts.
        attempts: usize,
    },
}

impl AttackConfig {
    /// Short name, as in the summary.
    pub fn name(&self) -> &'static str {
        match self {
            AttackConfig::Parasite { .. } => "parasite",
            AttackConfig::LazyTips { .. } => "lazy_tips",
            AttackConfig::SpamFlood { .. } => "spam_flood",
            AttackConfig::DoubleSpend { .. } => "double_spend",
        }
    }
}

/// A complete run description.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Free-form name.
    pub name: String,
    /// Honest transactions to issue.
    pub transactions: u64,
    /// Honest arrival rate (transactions per time unit).
    pub lambda: f64,
    /// Visibility delay `h`: a transaction can be approved `delay` after it is issued.
    pub delay: f64,
    /// Parents per transaction. 2 is the protocol; other values run the research mode
    /// (URTS only, no ledger; see [`crate::research`]).
    pub parents: usize,
    /// RNG seed.
    pub seed: u64,
    /// Time between milestones; 0 disables milestones (and so confirmation).
    pub milestone_interval: f64,
    /// Age after which a transaction is settled: its metrics are final and the Tangle may
    /// prune it. 0 picks a default from the other times.
    pub settle_time: f64,
    /// Time between time-series samples; 0 picks about 1000 samples per run.
    pub sample_interval: f64,
    /// Share of the first transactions left out of the tip-count average (warm-up).
    pub warmup: f64,
    /// Create and verify real Ed25519 signatures on every payload and voucher.
    pub sign: bool,
    /// Tip selection.
    pub tips: TipsConfig,
    /// Workload mix.
    pub workload: WorkloadConfig,
    /// Network model.
    pub network: NetworkConfig,
    /// Optional attack.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attack: Option<AttackConfig>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: "default".into(),
            transactions: 100_000,
            lambda: 50.0,
            delay: 1.0,
            parents: 2,
            seed: 1,
            milestone_interval: 10.0,
            settle_time: 0.0,
            sample_interval: 0.0,
            warmup: 0.1,
            sign: false,
            tips: TipsConfig::default(),
            workload: WorkloadConfig::default(),
            network: NetworkConfig::default(),
            attack: None,
        }
    }
}

impl Scenario {
    /// Parses a scenario from TOML text (missing fields take their defaults).
    pub fn from_toml(text: &str) -> Result<Scenario, ScenarioError> {
        Ok(toml::from_str(text)?)
    }

    /// Reads a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Scenario::from_toml(&text)
    }

    /// The scenario as TOML (what a run directory stores as `scenario.toml`).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot serialise: {e}\n"))
    }

    /// Largest one-way delivery delay between two nodes (0 with one node).
    pub fn max_latency(&self) -> f64 {
        if self.network.nodes <= 1 {
            return 0.0;
        }
        self.network
            .links
            .iter()
            .map(|l| l.latency)
            .fold(self.network.latency, f64::max)
    }

    /// The settle time in force: the configured one, or 20 x (delay + latency) plus five
    /// milestone intervals, and always more than the walk depth and the lazy age.
    pub fn effective_settle_time(&self) -> f64 {
        let base = 20.0 * (self.delay + self.max_latency()) + 5.0 * self.milestone_interval;
        let mut floor = base.max(2.0 * self.tips.depth);
        if let Some(AttackConfig::LazyTips { age, .. }) = &self.attack {
            floor = floor.max(2.0 * age);
        }
        if let Some(AttackConfig::Parasite { attach_age, .. }) = &self.attack {
            floor = floor.max(2.0 * attach_age);
        }
        if self.settle_time > 0.0 {
            self.settle_time
                .max(2.0 * (self.delay + self.max_latency()))
        } else {
            floor
        }
    }

    /// Checks every value is in range.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |m: &str| Err(ScenarioError::Invalid(m.to_string()));
        if !(self.lambda.is_finite() && self.lambda > 0.0) {
            return bad("lambda must be positive");
        }
        if !(self.delay.is_finite() && self.delay >= 0.0) {
            return bad("delay must be >= 0");
        }
        if self.parents < 1 || self.parents > 8 {
            return bad("parents must be between 1 and 8");
        }
        if self.transactions == 0 || self.transactions >= u64::from(u32::MAX / 2) {
            return bad("transactions must be between 1 and 2^31");
        }
        if !(self.milestone_interval.is_finite() && self.milestone_interval >= 0.0) {
            return bad("milestone_interval must be >= 0");
        }
        if !(0.0..1.0).contains(&self.warmup) {
            return bad("warmup must be in [0, 1)");
        }
        let w = &self.workload;
        let weights = [w.payments, w.meters, w.ev, w.sensors, w.empty];
        if weights.iter().any(|x| !(x.is_finite() && *x >= 0.0))
            || weights.iter().sum::<f64>() <= 0.0
        {
            return bad("workload weights must be >= 0 and not all 0");
        }
        if w.payments > 0.0 && w.devices < 2 {
            return bad("payments need at least 2 devices");
        }
        if w.meters > 0.0 && w.meter_count == 0 {
            return bad("meters need meter_count >= 1");
        }
        if w.ev > 0.0 && w.ev_count == 0 {
            return bad("ev needs ev_count >= 1");
        }
        if w.sensors > 0.0 && w.sensor_count == 0 {
            return bad("sensors need sensor_count >= 1");
        }
        if w.max_payment == 0 || w.max_kwh == 0 || w.price_per_kwh == 0 {
            return bad("max_payment, max_kwh and price_per_kwh must be >= 1");
        }
        let n = self.network.nodes;
        if n == 0 || n > 64 {
            return bad("network.nodes must be between 1 and 64");
        }
        if !(self.network.latency.is_finite() && self.network.latency >= 0.0) {
            return bad("network.latency must be >= 0");
        }
        for l in &self.network.links {
            if l.a >= n || l.b >= n || !(l.latency.is_finite() && l.latency >= 0.0) {
                return bad("network.links: node out of range or negative latency");
            }
        }
        if self.tips.max_window == 0 {
            return bad("tips.max_window must be >= 1");
        }
        if !(self.tips.alpha.is_finite() && self.tips.alpha >= 0.0) {
            return bad("tips.alpha must be >= 0");
        }
        if !(self.tips.depth.is_finite() && self.tips.depth > 0.0) {
            return bad("tips.depth must be > 0");
        }
        if self.parents != 2 && (self.tips.kind != TipsKind::Urts || self.attack.is_some()) {
            return bad("parents != 2 (research mode) supports only tips = urts and no attack");
        }
        if let Some(a) = &self.attack {
            match a {
                AttackConfig::Parasite { chain, tips, .. } if *chain < 2 || *tips == 0 => {
                    return bad("parasite needs chain >= 2 and tips >= 1");
                }
                AttackConfig::LazyTips { share, .. } if !(0.0..=1.0).contains(share) => {
                    return bad("lazy share must be in [0, 1]");
                }
                AttackConfig::SpamFlood { rate, .. } if !(rate.is_finite() && *rate > 0.0) => {
                    return bad("spam rate must be positive");
                }
                AttackConfig::DoubleSpend { attempts, .. } if *attempts == 0 => {
                    return bad("double spend needs attempts >= 1");
                }
                _ => {}
            }
            if self.milestone_interval <= 0.0 {
                return bad("attacks need milestones (milestone_interval > 0)");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trip_keeps_every_field() {
        let mut s = Scenario {
            attack: Some(AttackConfig::Parasite {
                start: 10.0,
                attach_age: 5.0,
                chain: 10,
                tips: 50,
                measure: 5.0,
            }),
            ..Scenario::default()
        };
        s.network.links.push(LinkLatency {
            a: 0,
            b: 1,
            latency: 0.5,
        });
        let back = Scenario::from_toml(&s.to_toml()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(Scenario::from_toml("lamda = 3.0").is_err());
    }

    #[test]
    fn validation_rejects_bad_values() {
        let s = Scenario {
            lambda: 0.0,
            ..Scenario::default()
        };
        assert!(s.validate().is_err());
        let s = Scenario {
            parents: 3,
            tips: TipsConfig {
                kind: TipsKind::Walk,
                ..TipsConfig::default()
            },
            ..Scenario::default()
        };
        assert!(s.validate().is_err());
        assert!(Scenario::default().validate().is_ok());
    }
}

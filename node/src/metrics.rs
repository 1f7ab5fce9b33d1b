//! Prometheus metrics of a node (`GET /metrics`), with prometheus-client.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label of [`Metrics::internal_entries`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct StructureLabels {
    /// Which structure (e.g. `core_tangle`, `store_index_txs`).
    pub structure: &'static str,
}

/// The node's metrics. Cheap to update from any thread.
pub struct Metrics {
    registry: Registry,
    /// Transactions accepted (stored), all origins.
    pub transactions_accepted: Counter,
    /// Submissions refused.
    pub transactions_rejected: Counter,
    /// Transactions confirmed by milestones.
    pub transactions_confirmed: Counter,
    /// Payloads applied to the ledger.
    pub payloads_applied: Counter,
    /// Payloads confirmed but conflicting.
    pub payloads_conflicting: Counter,
    /// Current tips.
    pub tips: Gauge,
    /// Latest milestone index seen.
    pub latest_milestone: Gauge,
    /// Latest applied milestone index.
    pub confirmed_milestone: Gauge,
    /// Solid transactions held in memory.
    pub tangle_size: Gauge,
    /// Peer transactions waiting for parents (the solidification buffer).
    pub pending_transactions: Gauge,
    /// Entries of the node's in-memory structures (the core's maps, the store's index), by
    /// structure: what to watch when memory grows.
    pub internal_entries: Family<StructureLabels, Gauge>,
    /// Transactions stored.
    pub store_transactions: Gauge,
    /// Seconds from arrival to confirmation.
    pub confirmation_latency: Histogram,
    /// Store flushes (group commits).
    pub store_flushes: Counter,
    /// Store writes or flushes that failed (each is retried).
    pub store_errors: Counter,
    /// Per-peer counters (label `peer`: its key in hex), filled by [`Metrics::observe_peers`].
    pub peers: PeerFamilies,
    /// A committee member's counters, filled by [`Metrics::observe_committee`].
    pub committee: CommitteeMetrics,
    /// The MQTT server's counters (`tangle_mqtt_*`; zero without MQTT).
    pub mqtt: MqttMetrics,
    /// Bytes on disk by part (`log`: the transaction log, `sled`: the index database,
    /// `snapshots`), filled by [`Metrics::observe_resources`].
    pub storage_bytes: Family<PartLabels, Gauge>,
    /// Resident memory of the process, bytes (Linux; 0 elsewhere).
    pub resident_memory_bytes: Gauge,
    /// Seconds from a milestone's issuer timestamp to its application on this node: on the
    /// issuer, how long issuing took (selection, PoW, signatures, storing); elsewhere plus
    /// the gossip delay.
    pub milestone_issuance_latency: Histogram,
}

/// Label of [`Metrics::storage_bytes`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct PartLabels {
    /// `log`, `sled` or `snapshots`.
    pub part: &'static str,
}

/// The MQTT server's metrics (see [`crate::mqtt`]). Clones share the same series.
#[derive(Clone, Default)]
pub struct MqttMetrics {
    /// Connected clients.
    pub clients: Gauge,
    /// Messages published to topics.
    pub messages: Counter,
    /// Messages queued to a subscriber.
    pub delivered: Counter,
    /// Messages not queued because the subscriber's queue was full.
    pub dropped: Counter,
    /// Payloads submitted by publishing to `submit/{token}`.
    pub submissions: Counter,
    /// Node events the MQTT server missed (its subscription fell behind).
    pub events_missed: Counter,
}

/// A committee member's metrics (`tangle_committee_*`; zero on other nodes).
pub struct CommitteeMetrics {
    /// Proposals made.
    pub proposals: Counter,
    /// Milestone signatures given (one per index at most).
    pub votes: Counter,
    /// Prevotes cast.
    pub prevotes: Counter,
    /// Precommits cast.
    pub precommits: Counter,
    /// Rounds that ended without a milestone.
    pub view_changes: Counter,
    /// Proposals refused after checking.
    pub rejected: Counter,
    /// Equivocations seen (a member signing two proposals for one index).
    pub equivocations: Counter,
    /// Milestones this member published.
    pub published: Counter,
    /// The round of the index being decided.
    pub round: Gauge,
    /// Seconds from a proposal to the publication of its milestone (milestones this member
    /// published).
    pub publication_latency: Histogram,
}

/// Labels of a per-peer series: `peer` = the peer's key (hex).
pub type PeerLabels = Vec<(String, String)>;

/// Per-peer metric families.
#[derive(Default)]
pub struct PeerFamilies {
    /// Messages received.
    pub messages_in: Family<PeerLabels, Counter>,
    /// Messages sent.
    pub messages_out: Family<PeerLabels, Counter>,
    /// Bytes received.
    pub bytes_in: Family<PeerLabels, Counter>,
    /// Bytes sent.
    pub bytes_out: Family<PeerLabels, Counter>,
    /// Inbound messages dropped by the rate limit.
    pub dropped_in: Family<PeerLabels, Counter>,
    /// Outbound messages dropped because the peer's queue was full.
    pub dropped_out: Family<PeerLabels, Counter>,
    /// Invalid transactions received.
    pub invalid: Family<PeerLabels, Counter>,
    /// Its transactions that expired waiting for parents that never came.
    pub unsolid_expired: Family<PeerLabels, Counter>,
    /// Last heartbeat round-trip time, seconds.
    pub rtt_seconds: Family<PeerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// 1 while connected.
    pub connected: Family<PeerLabels, Gauge>,
    /// The peer's score (invalid transactions and rate-limit drops lower it; it is banned at
    /// the configured floor).
    pub score: Family<PeerLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tangle");
        let m = Metrics {
            transactions_accepted: Counter::default(),
            transactions_rejected: Counter::default(),
            transactions_confirmed: Counter::default(),
            payloads_applied: Counter::default(),
            payloads_conflicting: Counter::default(),
            tips: Gauge::default(),
            latest_milestone: Gauge::default(),
            confirmed_milestone: Gauge::default(),
            tangle_size: Gauge::default(),
            pending_transactions: Gauge::default(),
            store_transactions: Gauge::default(),
            internal_entries: Family::default(),
            confirmation_latency: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            store_flushes: Counter::default(),
            store_errors: Counter::default(),
            peers: PeerFamilies::default(),
            committee: CommitteeMetrics {
                proposals: Counter::default(),
                votes: Counter::default(),
                prevotes: Counter::default(),
                precommits: Counter::default(),
                view_changes: Counter::default(),
                rejected: Counter::default(),
                equivocations: Counter::default(),
                published: Counter::default(),
                round: Gauge::default(),
                publication_latency: Histogram::new(exponential_buckets(0.05, 2.0, 12)),
            },
            mqtt: MqttMetrics::default(),
            storage_bytes: Family::default(),
            resident_memory_bytes: Gauge::default(),
            milestone_issuance_latency: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            registry: Registry::default(),
        };
        registry.register(
            "transactions_accepted",
            "Transactions accepted and stored",
            m.transactions_accepted.clone(),
        );
        registry.register(
            "transactions_rejected",
            "Submitted transactions or payloads refused",
            m.transactions_rejected.clone(),
        );
        registry.register(
            "transactions_confirmed",
            "Transactions confirmed by milestones",
            m.transactions_confirmed.clone(),
        );
        registry.register(
            "payloads_applied",
            "Payloads applied to the ledger",
            m.payloads_applied.clone(),
        );
        registry.register(
            "payloads_conflicting",
            "Payloads confirmed as conflicting",
            m.payloads_conflicting.clone(),
        );
        registry.register("tips", "Current number of tips", m.tips.clone());
        registry.register(
            "latest_milestone",
            "Latest milestone index seen",
            m.latest_milestone.clone(),
        );
        registry.register(
            "confirmed_milestone",
            "Latest applied milestone index",
            m.confirmed_milestone.clone(),
        );
        registry.register(
            "tangle_transactions",
            "Solid transactions held in memory",
            m.tangle_size.clone(),
        );
        registry.register(
            "pending_transactions",
            "Peer transactions waiting for their parents (solidification buffer)",
            m.pending_transactions.clone(),
        );
        registry.register(
            "internal_entries",
            "Entries of in-memory structures (the core's maps, the store's index)",
            m.internal_entries.clone(),
        );
        registry.register(
            "store_transactions",
            "Transactions stored on disk (pruned ones leave the count)",
            m.store_transactions.clone(),
        );
        registry.register(
            "confirmation_latency_seconds",
            "Time from arrival to confirmation",
            m.confirmation_latency.clone(),
        );
        registry.register(
            "store_flushes",
            "Durable store flushes (group commits)",
            m.store_flushes.clone(),
        );
        registry.register(
            "store_errors",
            "Store writes or flushes that failed (each is retried)",
            m.store_errors.clone(),
        );
        let p = &m.peers;
        let peer_counters = [
            (
                "peer_messages_received",
                "Messages received from a peer",
                &p.messages_in,
            ),
            (
                "peer_messages_sent",
                "Messages sent to a peer",
                &p.messages_out,
            ),
            (
                "peer_bytes_received",
                "Bytes received from a peer",
                &p.bytes_in,
            ),
            ("peer_bytes_sent", "Bytes sent to a peer", &p.bytes_out),
            (
                "peer_dropped_received",
                "Messages from a peer dropped by its rate limit",
                &p.dropped_in,
            ),
            (
                "peer_dropped_sent",
                "Messages to a peer dropped on a full queue",
                &p.dropped_out,
            ),
            (
                "peer_invalid_transactions",
                "Invalid transactions received from a peer",
                &p.invalid,
            ),
            (
                "peer_unsolid_expired_transactions",
                "Transactions from a peer that expired waiting for parents that never came",
                &p.unsolid_expired,
            ),
        ];
        for (name, help, family) in peer_counters {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "peer_rtt_seconds",
            "Last heartbeat round-trip time to a peer",
            p.rtt_seconds.clone(),
        );
        registry.register(
            "peer_connected",
            "1 while a peer is connected",
            p.connected.clone(),
        );
        registry.register(
            "peer_score",
            "A peer's score (lowered by invalid transactions and rate-limit drops)",
            p.score.clone(),
        );
        let c = &m.committee;
        let committee_counters = [
            (
                "committee_proposals",
                "Milestone proposals this committee member made",
                &c.proposals,
            ),
            (
                "committee_votes",
                "Milestones this committee member signed (after k precommits in one round)",
                &c.votes,
            ),
            (
                "committee_prevotes",
                "Prevotes this committee member cast",
                &c.prevotes,
            ),
            (
                "committee_precommits",
                "Precommits (locks) this committee member cast",
                &c.precommits,
            ),
            (
                "committee_view_changes",
                "Rounds that ended without a milestone (the next proposer took over)",
                &c.view_changes,
            ),
            (
                "committee_rejected_proposals",
                "Proposals refused after checking their cone",
                &c.rejected,
            ),
            (
                "committee_equivocations",
                "Committee members seen signing two proposals for one index",
                &c.equivocations,
            ),
            (
                "committee_published",
                "Milestones this committee member published",
                &c.published,
            ),
        ];
        for (name, help, counter) in committee_counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "committee_round",
            "Round of the milestone index being decided",
            c.round.clone(),
        );
        registry.register(
            "committee_publication_latency_seconds",
            "Seconds from a proposal to the publication of its milestone",
            c.publication_latency.clone(),
        );
        registry.register(
            "storage_bytes",
            "Bytes on disk: the transaction log, the account checkpoint, the sled index, snapshot files",
            m.storage_bytes.clone(),
        );
        registry.register(
            "resident_memory_bytes",
            "Resident memory of the node process",
            m.resident_memory_bytes.clone(),
        );
        registry.register(
            "milestone_issuance_latency_seconds",
            "Time from a milestone's issuer timestamp to its application on this node",
            m.milestone_issuance_latency.clone(),
        );
        let q = &m.mqtt;
        registry.register("mqtt_clients", "Connected MQTT clients", q.clients.clone());
        let mqtt_counters = [
            (
                "mqtt_messages",
                "Messages the node published to MQTT topics",
                &q.messages,
            ),
            (
                "mqtt_delivered",
                "MQTT messages queued to a subscriber",
                &q.delivered,
            ),
            (
                "mqtt_dropped",
                "MQTT messages dropped for a subscriber whose queue was full",
                &q.dropped,
            ),
            (
                "mqtt_submissions",
                "Payloads submitted over MQTT",
                &q.submissions,
            ),
            (
                "mqtt_events_missed",
                "Node events the MQTT server missed because it fell behind",
                &q.events_missed,
            ),
        ];
        for (name, help, counter) in mqtt_counters {
            registry.register(name, help, counter.clone());
        }
        Metrics { registry, ..m }
    }

    /// Brings the per-peer series up to date with the peering layer's counters (cumulative
    /// per peer, so each counter moves by the difference).
    pub fn observe_peers(
        &self,
        peers: &[(
            node_proto::peering::PeerKey,
            node_proto::peering::PeerMetrics,
        )],
    ) {
        let p = &self.peers;
        for (key, m) in peers {
            let labels: PeerLabels = vec![("peer".to_string(), key.to_string())];
            let bump = |family: &Family<PeerLabels, Counter>, value: u64| {
                let c = family.get_or_create(&labels);
                let now = c.get();
                if value > now {
                    c.inc_by(value - now);
                }
            };
            bump(&p.messages_in, m.messages_in);
            bump(&p.messages_out, m.messages_out);
            bump(&p.bytes_in, m.bytes_in);
            bump(&p.bytes_out, m.bytes_out);
            bump(&p.dropped_in, m.dropped_in);
            bump(&p.dropped_out, m.dropped_out);
            bump(&p.invalid, m.invalid);
            bump(&p.unsolid_expired, m.unsolid_expired);
            if let Some(rtt) = m.rtt_ms {
                p.rtt_seconds
                    .get_or_create(&labels)
                    .set(rtt as f64 / 1000.0);
            }
            p.connected
                .get_or_create(&labels)
                .set(i64::from(m.connected));
            p.score.get_or_create(&labels).set(i64::from(m.score));
        }
    }

    /// Brings the committee series up to date with the member's counters (cumulative) and
    /// the proposal-to-publication latencies (ms) since the last call.
    pub fn observe_committee(&self, stats: &node_proto::CommitteeStats, latencies_ms: &[u64]) {
        let c = &self.committee;
        let bump = |counter: &Counter, value: u64| {
            let now = counter.get();
            if value > now {
                counter.inc_by(value - now);
            }
        };
        bump(&c.proposals, stats.proposals);
        bump(&c.votes, stats.votes);
        bump(&c.prevotes, stats.prevotes);
        bump(&c.precommits, stats.precommits);
        bump(&c.view_changes, stats.view_changes);
        bump(&c.rejected, stats.rejected);
        bump(&c.equivocations, stats.equivocations);
        bump(&c.published, stats.published);
        c.round.set(i64::from(stats.round));
        for ms in latencies_ms {
            c.publication_latency.observe(*ms as f64 / 1000.0);
        }
    }

    /// Measures the data directory (the transaction log's files, the account checkpoint,
    /// the sled files: everything else in it) and the snapshot directory, and the
    /// process's resident memory. A few dozen `stat`s: call it every few seconds, off the
    /// async threads.
    pub fn observe_resources(&self, data_dir: &std::path::Path, snapshots_dir: &std::path::Path) {
        let (mut log, mut accounts, mut sled) = (0u64, 0u64, 0u64);
        if let Ok(entries) = std::fs::read_dir(data_dir) {
            for e in entries.flatten() {
                let path = e.path();
                if path == snapshots_dir {
                    continue;
                }
                let bytes = if path.is_dir() {
                    crate::runtime::dir_bytes(&path)
                } else {
                    e.metadata().map_or(0, |m| m.len())
                };
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with("transactions") {
                    log += bytes;
                } else if name.starts_with("accounts") {
                    accounts += bytes;
                } else {
                    sled += bytes;
                }
            }
        }
        let snapshots = crate::runtime::dir_bytes(snapshots_dir);
        for (part, bytes) in [
            ("log", log),
            ("accounts", accounts),
            ("sled", sled),
            ("snapshots", snapshots),
        ] {
            self.storage_bytes
                .get_or_create(&PartLabels { part })
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        self.resident_memory_bytes
            .set(i64::try_from(resident_memory_bytes()).unwrap_or(i64::MAX));
    }

    /// OpenMetrics text exposition (ends with `# EOF`); [`openmetrics_to_prometheus`] turns
    /// it into the Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// The process's resident set size from `/proc/self/status` (`VmRSS`); 0 where there is
/// none.
fn resident_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

/// Rewrites an OpenMetrics text exposition, as prometheus-client writes it, into the
/// Prometheus text format 0.0.4 (what `promtool check metrics` and `text/plain` scrapers
/// read). The two differ where prometheus-client's output uses them: a counter family is
/// named without `_total` in OpenMetrics (`# TYPE x counter`, sample `x_total`) but after its
/// samples in 0.0.4 (`# TYPE x_total counter`); `# UNIT` and `# EOF` do not exist in 0.0.4;
/// `unknown` is `untyped`; `_created` samples of counters are dropped. Exemplars and the
/// `info`/`stateset` types, which the node does not use, are passed through unchanged.
pub fn openmetrics_to_prometheus(openmetrics: &str) -> String {
    use std::collections::HashSet;
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .filter(|(_, kind)| kind.trim() == "counter")
        .map(|(name, _)| name)
        .collect();
    let counter_name = |name: &str| -> String {
        if counters.contains(name) && !name.ends_with("_total") {
            format!("{name}_total")
        } else {
            name.to_owned()
        }
    };
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push_str(&format!("# HELP {} {help}\n", counter_name(name)));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let kind = if kind == "unknown" { "untyped" } else { kind };
            out.push_str(&format!("# TYPE {} {kind}\n", counter_name(name)));
        } else if !line.starts_with('#') && is_counter_created(line, &counters) {
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Whether a sample line is the `_created` series of a counter family.
fn is_counter_created(line: &str, counters: &std::collections::HashSet<&str>) -> bool {
    let name = line.split(['{', ' ']).next().unwrap_or("");
    name.strip_suffix("_created")
        .is_some_and(|family| counters.contains(family))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every family of the converted text has one HELP and one TYPE line naming exactly
    /// the samples that follow, counters end in `_total`, and nothing OpenMetrics-only
    /// remains.
    #[test]
    fn prometheus_text_names_samples_like_their_family() {
        let m = Metrics::new();
        m.transactions_accepted.inc_by(3);
        m.confirmation_latency.observe(0.5);
        m.peers
            .messages_in
            .get_or_create(&vec![("peer".to_owned(), "ab".to_owned())])
            .inc();
        let om = m.render();
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(om.contains("# TYPE tangle_transactions_accepted counter"));

        let text = openmetrics_to_prometheus(&om);
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        assert!(text.contains("# TYPE tangle_transactions_accepted_total counter\n"));
        assert!(text.contains("\ntangle_transactions_accepted_total 3\n"));
        assert!(text.contains("tangle_peer_messages_received_total{peer=\"ab\"} 1\n"));
        let mut family: Option<(String, String)> = None;
        let mut helps = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_owned();
                assert!(helps.insert(name.clone()), "second HELP for {name}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(helps.contains(name), "TYPE without HELP: {line}");
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "{line}");
                }
                family = Some((name.to_owned(), kind.to_owned()));
            } else {
                let (name, kind) = family.as_ref().expect("sample before any TYPE");
                let sample = line.split(['{', ' ']).next().unwrap();
                let ok = sample == name
                    || (kind == "histogram"
                        && [
                            format!("{name}_bucket"),
                            format!("{name}_sum"),
                            format!("{name}_count"),
                        ]
                        .contains(&sample.to_owned()));
                assert!(ok, "sample {sample} under family {name} ({kind})");
            }
        }
    }

    #[test]
    fn counter_created_series_and_unknown_type_are_converted() {
        let om = "# HELP a_b Things.\n# TYPE a_b counter\n# UNIT a_b bytes\na_b_total 1\n\
                  a_b_created 17.5\n# HELP u Whatever.\n# TYPE u unknown\nu 2\n# EOF\n";
        assert_eq!(
            openmetrics_to_prometheus(om),
            "# HELP a_b_total Things.\n# TYPE a_b_total counter\na_b_total 1\n\
             # HELP u Whatever.\n# TYPE u untyped\nu 2\n"
        );
    }
}

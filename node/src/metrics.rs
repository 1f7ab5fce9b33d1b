//! Prometheus metrics of a node (`GET /metrics`), with prometheus-client.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

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
    /// Last heartbeat round-trip time, seconds.
    pub rtt_seconds: Family<PeerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// 1 while connected.
    pub connected: Family<PeerLabels, Gauge>,
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
            store_transactions: Gauge::default(),
            confirmation_latency: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            store_flushes: Counter::default(),
            store_errors: Counter::default(),
            peers: PeerFamilies::default(),
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
            "store_transactions",
            "Transactions stored on disk",
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
        Metrics { registry, ..m }
    }

    /// Brings the per-peer series up to date with the peering layer's counters (cumulative
    /// per peer, so each counter moves by the difference).
    pub fn observe_peers(
        &self,
        peers: &[(
            crate::protocol::peering::PeerKey,
            crate::protocol::peering::PeerMetrics,
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
            if let Some(rtt) = m.rtt_ms {
                p.rtt_seconds
                    .get_or_create(&labels)
                    .set(rtt as f64 / 1000.0);
            }
            p.connected
                .get_or_create(&labels)
                .set(i64::from(m.connected));
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

//! Prometheus metrics of a node (`GET /metrics`), with prometheus-client.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
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
        Metrics { registry, ..m }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

//! # node
//!
//! The tangle node: the driver of the [`node_proto`] core. It owns every kind of I/O the
//! core leaves out: storage (the transaction log and sled), the clock, threads (ingest
//! batches and proof of work on the rayon pool, never under the core's lock), QUIC peering,
//! the HTTP API and dashboard, configuration and the `tangle-node` binary. No protocol rule
//! lives here: what is valid, what a peer is blamed for, what a milestone confirms is
//! decided in `node-proto`.
//!
//! ## Layout
//! - [`runtime`]: the [`Node`] (ingest batches, the work loop, the timer, persistence with
//!   retries, the milestone writer) and its [`NodeHandle`].
//! - [`store`]: the sled + transaction-log backend of `dag_core::store::Store` (its on-disk
//!   format is [`node_proto::layout`]).
//! - [`net`]: QUIC transport of the [`node_proto::peering`] state machine.
//! - [`service`]: the [`NodeService`] boundary; [`api`]: axum handlers, SSE, OpenAPI,
//!   dashboard; [`metrics`]: Prometheus families; [`mqtt`]: the embedded MQTT broker that
//!   publishes the node's events and takes submissions.
//! - [`snapshots`]: snapshot files of the running node (periodic, on demand, served to
//!   peers).
//! - [`config`], [`init`], [`app`]: settings, network creation, the binary's commands.

pub mod api;
pub mod app;
pub mod committee;
pub mod config;
pub mod init;
pub mod metrics;
pub mod mqtt;
pub mod net;
pub mod rotation;
pub mod runtime;
pub mod service;
pub mod snapshots;
pub mod store;

pub use runtime::{Node, NodeHandle, NodeSetup};
pub use service::NodeService;

//! # node
//!
//! A standalone tangle node: sled storage, white-flag confirmation by milestones, an HTTP API
//! and a dashboard. The binary `tangle-node` is a thin wrapper around this library.
//!
//! ## Layout
//! - `protocol` (sans-I/O, always built): ingest, solidification, tip pool, milestone tracking
//!   and application, reattachment of lazy payloads, events. Input through `handle_*`,
//!   output through `poll_*`; time comes in as `now`.
//! - `store::layout`: the on-disk format (always built, for the fuzz targets).
//! - With the default `runtime` feature: `store` (sled backend of `dag_core::store::Store`),
//!   `service` (the [`NodeService`] boundary), `api` (axum), `config`, `init`.

pub mod protocol;

#[cfg(feature = "runtime")]
pub mod api;
#[cfg(feature = "runtime")]
pub mod app;
#[cfg(feature = "runtime")]
pub mod config;
#[cfg(feature = "runtime")]
pub mod init;
#[cfg(feature = "runtime")]
pub mod metrics;
#[cfg(feature = "runtime")]
pub mod net;
#[cfg(feature = "runtime")]
pub mod runtime;
#[cfg(feature = "runtime")]
pub mod service;
pub mod store;

#[cfg(feature = "runtime")]
pub use runtime::{Node, NodeHandle, NodeSetup};
#[cfg(feature = "runtime")]
pub use service::NodeService;

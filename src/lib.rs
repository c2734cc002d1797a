//! keyward: declarative, governed non-human credentials for multi-tenant Kubernetes platforms.
#![forbid(unsafe_code)]
// Nothing that comes from the cluster, a file or a user may panic a command or a
// controller: no unwrap, expect, panic or unchecked indexing outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod api;
pub mod audit;
pub mod client;
pub mod controller;
pub mod crd;
pub mod error;
pub mod inventory;
pub mod lint;
pub mod metrics;
pub mod policy;
pub mod report;
pub mod rotate;
pub mod runtime;
pub mod server;
pub mod store;
pub mod telemetry;

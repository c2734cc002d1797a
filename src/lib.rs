//! keyward: declarative, governed non-human credentials for multi-tenant Kubernetes platforms.
#![forbid(unsafe_code)]

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
pub mod server;
pub mod store;
pub mod telemetry;

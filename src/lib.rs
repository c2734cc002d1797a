//! keyward: declarative, governed non-human credentials for multi-tenant Kubernetes platforms.
#![forbid(unsafe_code)]

pub mod api;
pub mod audit;
pub mod crd;
pub mod metrics;
pub mod policy;
pub mod server;
pub mod telemetry;

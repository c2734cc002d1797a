//! keyward: declarative, governed non-human credentials for multi-tenant Kubernetes platforms.
#![forbid(unsafe_code)]

pub mod api;
pub mod crd;

//! Where credential values live: generated values and their fingerprints, and the
//! Kubernetes Secrets that serve them.

pub mod kubernetes;
pub mod value;
pub mod vault;

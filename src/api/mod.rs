//! The four keyward kinds (group `keyward.io`, version `v1alpha1`): types, docs and
//! admission rules. No behaviour lives here.

// kube's derive takes `printcolumn`, `category` and `selectable` once per value, which
// this lint reads as repeated attributes.
#![allow(clippy::duplicated_attributes)]

mod api_key;
#[cfg(test)]
pub(crate) mod bounded_fields;
mod common;
mod fingerprint;
mod integration;
pub mod labels;
mod sa_credential;
mod tenant;

pub use api_key::*;
pub use common::*;
pub use fingerprint::Fingerprint;
pub use integration::*;
pub use sa_credential::*;
pub use tenant::*;

/// The API group every keyward kind belongs to.
pub const GROUP: &str = "keyward.io";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";

//! The value-copy scan: reads Secret data a page at a time, fingerprints each value and keeps
//! only the places whose fingerprint is a managed credential's. No value outlives its page.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use super::InventoryError;
use super::object::HELM_RELEASE_TYPE;
use crate::api::Fingerprint;

/// Secrets per page: a page is the most Secret data held in memory at once.
pub const PAGE_SIZE: u32 = 100;

pub use crate::policy::copies::ValueCopy;

/// The values of one Secret that match `wanted`. A value is compared as stored and, when
/// surrounding whitespace differs, trimmed: a value pasted into a file and loaded with
/// `kubectl create secret --from-file` usually gains a trailing newline.
pub fn copies_in(
    namespace: &str,
    secret: &str,
    data: &BTreeMap<String, ByteString>,
    wanted: &HashSet<String>,
) -> Vec<ValueCopy> {
    let mut found = Vec::new();
    for (key, value) in data {
        let exact = Fingerprint::of(&value.0);
        let matched = if wanted.contains(exact.as_str()) {
            Some(exact)
        } else {
            let trimmed = value.0.trim_ascii();
            (trimmed.len() != value.0.len())
                .then(|| Fingerprint::of(trimmed))
                .filter(|fp| wanted.contains(fp.as_str()))
        };
        if let Some(fingerprint) = matched {
            found.push(ValueCopy {
                fingerprint: fingerprint.as_str().to_owned(),
                namespace: namespace.to_owned(),
                secret: secret.to_owned(),
                key: key.clone(),
            });
        }
    }
    found
}

/// Scans every Secret (of `namespace`, or of the cluster) except Helm release records, in
/// pages of [`PAGE_SIZE`], for values whose fingerprint is in `wanted`.
pub async fn scan(
    client: &Client,
    namespace: Option<&str>,
    wanted: &HashSet<String>,
) -> Result<Vec<ValueCopy>, InventoryError> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let api: Api<Secret> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let selector = format!("type!={HELM_RELEASE_TYPE}");
    let mut found = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().fields(&selector).limit(PAGE_SIZE);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let page = api.list(&params).await.map_err(InventoryError::scan)?;
        for secret in &page.items {
            if let Some(data) = &secret.data {
                found.extend(copies_in(
                    &secret.namespace().unwrap_or_default(),
                    &secret.name_any(),
                    data,
                    wanted,
                ));
            }
        }
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    found.sort();
    Ok(found)
}

/// Secrets of one namespace read one by one before a list of the namespace is cheaper.
pub const NAMESPACE_BATCH: usize = 8;

/// Reads the named Secrets of `namespace`, which holds about `size` Secrets (a GET each,
/// or one paged list of the namespace when more than [`NAMESPACE_BATCH`] are named and
/// they are at least half of it) and returns, for each, the copies of
/// `wanted` it holds now: none when it is gone or is a Helm release record. No value
/// outlives this call.
pub async fn read(
    client: &Client,
    namespace: &str,
    names: &BTreeSet<String>,
    size: usize,
    wanted: &HashSet<String>,
) -> Result<BTreeMap<String, Vec<ValueCopy>>, InventoryError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let found = |secret: &Secret| match &secret.data {
        Some(data) if secret.type_.as_deref() != Some(HELM_RELEASE_TYPE) => {
            copies_in(namespace, &secret.name_any(), data, wanted)
        }
        _ => Vec::new(),
    };
    let mut out: BTreeMap<String, Vec<ValueCopy>> =
        names.iter().map(|n| (n.clone(), Vec::new())).collect();
    if names.len() <= NAMESPACE_BATCH || size > names.len() * 2 {
        let gets: Vec<_> = names
            .iter()
            .map(|name| {
                let (api, name) = (api.clone(), name.clone());
                async move {
                    let result = api.get_opt(&name).await;
                    (name, result)
                }
            })
            .collect();
        let mut reads = futures::stream::iter(gets).buffer_unordered(NAMESPACE_BATCH);
        while let Some((name, result)) = reads.next().await {
            if let Some(secret) = result.map_err(InventoryError::scan)? {
                out.insert(name, found(&secret));
            }
        }
        return Ok(out);
    }
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(PAGE_SIZE);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let page = api.list(&params).await.map_err(InventoryError::scan)?;
        for secret in &page.items {
            if let Some(copies) = out.get_mut(&secret.name_any()) {
                *copies = found(secret);
            }
        }
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &[u8])]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
            .collect()
    }

    #[test]
    fn a_value_is_found_by_its_fingerprint_and_only_the_key_is_kept() {
        let wanted: HashSet<String> = [Fingerprint::of(b"gx_live_abc").as_str().to_owned()].into();
        let found = copies_in(
            "b",
            "copied",
            &data(&[("token", b"gx_live_abc"), ("other", b"unrelated")]),
            &wanted,
        );
        assert_eq!(
            found,
            vec![ValueCopy {
                fingerprint: Fingerprint::of(b"gx_live_abc").as_str().to_owned(),
                namespace: "b".into(),
                secret: "copied".into(),
                key: "token".into(),
            }]
        );
        assert!(!format!("{found:?}").contains("gx_live_abc"));
    }

    #[test]
    fn a_value_with_a_trailing_newline_still_matches() {
        let fp = Fingerprint::of(b"gx_live_abc").as_str().to_owned();
        let wanted: HashSet<String> = [fp.clone()].into();
        let found = copies_in("b", "file", &data(&[("key", b"gx_live_abc\n")]), &wanted);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].fingerprint, fp);
    }

    #[test]
    fn unrelated_values_are_not_reported() {
        let wanted: HashSet<String> = [Fingerprint::of(b"x").as_str().to_owned()].into();
        assert!(copies_in("b", "s", &data(&[("k", b"y"), ("e", b"")]), &wanted).is_empty());
    }
}

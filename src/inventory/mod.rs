//! The inventory: every Secret and ServiceAccount (from metadata only), the managed
//! credentials, RBAC and the value-copy scan, turned into the contract's findings — once for
//! `keyward report` ([`collect`]), or kept current for the findings metric ([`run`]).

pub mod credential;
pub mod findings;
pub mod object;
pub mod rbac;
pub mod scan;
mod watch;

use std::collections::{BTreeMap, HashSet};

use chrono::Utc;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

use crate::api::{ApiKey, ServiceAccountCredential, Tenant};
use crate::policy::tenancy::Tenancy;
use credential::ManagedCredential;
use findings::{Finding, Inputs, evaluate};
use object::{
    Class, Controllers, InventoryObject, LEGACY_TOKEN_SELECTOR, OTHER_SECRETS_SELECTOR, ObjectKind,
    SecretType,
};
use rbac::{Binding, Rbac};

/// Where the inventory last found managed values outside their credentials (never the
/// values), shared with the controllers for their `CrossTenant` condition.
pub type ValueCopies = std::sync::Arc<std::sync::RwLock<Vec<scan::ValueCopy>>>;

pub use watch::{DEFAULT_SCAN_INTERVAL, ObjectChange, Options, SYNCED_MESSAGE, run};

/// Objects per list page when listing metadata and keyward objects.
const LIST_PAGE_SIZE: u32 = 500;

/// Why the inventory could not be gathered. Never carries a Secret's data: a page of
/// Secrets that fails to decode is reported without the decoder's text, which may quote it.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("listing {what}: {source}")]
    List {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("scanning Secret data: {0}")]
    Scan(String),
}

impl InventoryError {
    fn scan(err: kube::Error) -> Self {
        match err {
            kube::Error::SerdeError(_) => {
                Self::Scan("a page of Secrets could not be decoded".into())
            }
            other => Self::Scan(other.to_string()),
        }
    }
}

/// The cluster's inventory at one instant: its findings (most severe first), its managed
/// credentials, and how many objects of each class it holds.
#[derive(Clone, Debug)]
pub struct Inventory {
    pub tenancy: Tenancy,
    pub findings: Vec<Finding>,
    pub credentials: Vec<ManagedCredential>,
    pub classes: BTreeMap<(ObjectKind, Class), usize>,
}

/// Gathers the inventory once with list calls: metadata-only lists of Secrets and
/// ServiceAccounts, full lists of keyward kinds and RBAC, then the paged value-copy scan.
pub async fn collect(client: &Client) -> Result<Inventory, InventoryError> {
    let tokens: Api<PartialObjectMeta<Secret>> = Api::all(client.clone());
    let accounts: Api<PartialObjectMeta<ServiceAccount>> = Api::all(client.clone());
    let (
        tenants,
        keys,
        sacs,
        legacy,
        others,
        service_accounts,
        roles,
        cluster_roles,
        bindings,
        cluster_bindings,
    ) = tokio::try_join!(
        list::<Tenant, _>(client, "Tenants", ListParams::default(), Some),
        list::<ApiKey, _>(client, "ApiKeys", ListParams::default(), |k| {
            Some((ManagedCredential::from(&k), k.metadata.uid))
        }),
        list::<ServiceAccountCredential, _>(
            client,
            "ServiceAccountCredentials",
            ListParams::default(),
            |s| Some((ManagedCredential::from(&s), s.metadata.uid)),
        ),
        list_with(
            &tokens,
            "Secrets",
            ListParams::default().fields(LEGACY_TOKEN_SELECTOR),
            |m| InventoryObject::secret(&m.metadata, SecretType::ServiceAccountToken),
        ),
        list_with(
            &tokens,
            "Secrets",
            ListParams::default().fields(OTHER_SECRETS_SELECTOR),
            |m| InventoryObject::secret(&m.metadata, SecretType::Other),
        ),
        list_with(&accounts, "ServiceAccounts", ListParams::default(), |m| {
            InventoryObject::service_account(&m.metadata)
        }),
        list::<Role, _>(client, "Roles", ListParams::default(), |r| {
            Some(rbac::role(&r))
        }),
        list::<ClusterRole, _>(client, "ClusterRoles", ListParams::default(), |r| {
            Some(rbac::cluster_role(&r))
        }),
        list::<RoleBinding, _>(client, "RoleBindings", ListParams::default(), |b| {
            Binding::from_role_binding(&b)
        }),
        list::<ClusterRoleBinding, _>(client, "ClusterRoleBindings", ListParams::default(), |b| {
            Binding::from_cluster_role_binding(&b)
        }),
    )?;
    let tenancy = Tenancy::new(&tenants);
    let mut controllers = Controllers::default();
    let credentials: Vec<ManagedCredential> = keys
        .into_iter()
        .chain(sacs)
        .map(|(credential, uid)| {
            controllers.insert(credential.kind, Some(&credential.namespace), uid.as_deref());
            credential
        })
        .collect();
    let copies = scan::scan(client, None, &fingerprints(&credentials)).await?;
    let rbac = Rbac::new(
        roles.into_iter().chain(cluster_roles),
        bindings.into_iter().chain(cluster_bindings),
    );
    let objects: Vec<InventoryObject> = legacy
        .into_iter()
        .chain(others)
        .chain(service_accounts)
        .collect();
    let mut classes = BTreeMap::new();
    for o in &objects {
        *classes.entry((o.kind, o.class(&controllers))).or_insert(0) += 1;
    }
    let evaluation = evaluate(
        Inputs {
            tenancy: &tenancy,
            objects: &objects,
            controllers: &controllers,
            credentials: &credentials,
            rbac: &rbac,
            copies: &copies,
        },
        Utc::now(),
    );
    Ok(Inventory {
        tenancy,
        findings: evaluation.findings,
        credentials,
        classes,
    })
}

/// The fingerprints the value-copy scan looks for.
pub fn fingerprints<'a>(
    credentials: impl IntoIterator<Item = &'a ManagedCredential>,
) -> HashSet<String> {
    credentials
        .into_iter()
        .filter_map(|c| c.fingerprint.clone())
        .collect()
}

async fn list<K, P>(
    client: &Client,
    what: &'static str,
    params: ListParams,
    project: impl Fn(K) -> Option<P>,
) -> Result<Vec<P>, InventoryError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    list_with(&Api::<K>::all(client.clone()), what, params, project).await
}

/// Lists every object in pages, projecting each page before the next is fetched so that
/// no more than one page of full objects is held at once.
async fn list_with<K, P>(
    api: &Api<K>,
    what: &'static str,
    params: ListParams,
    project: impl Fn(K) -> Option<P>,
) -> Result<Vec<P>, InventoryError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut page_params = params.clone().limit(LIST_PAGE_SIZE);
        if let Some(t) = &token {
            page_params = page_params.continue_token(t);
        }
        let page = api
            .list(&page_params)
            .await
            .map_err(|source| InventoryError::List { what, source })?;
        out.extend(page.items.into_iter().filter_map(&project));
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(out);
        }
    }
}

//! The Vault KV v2 store of ApiKey values, through `vaultrs`.
//!
//! Each value is one KV v2 version at `<mount>/data/<path>`, under the data key the
//! Secret uses. The path's `custom_metadata` is the record of the value keyward wrote
//! last: the credential (and its uid), tenant, owner, version, fingerprint, times, and the
//! KV version that holds it. The record is written *before* the value, so a pass that dies
//! between the two leaves a record whose fingerprint no version matches: the next pass
//! sees that the value was never stored and writes that same version again, never a
//! second one. A path whose record is not this credential's is never written or destroyed.
//!
//! Login is Vault's Kubernetes auth method with the controller's ServiceAccount token, or a
//! token from `VAULT_TOKEN` for development. A token is renewed when it is used past two
//! thirds of its lease, and logged in again when it cannot be renewed, so nothing runs
//! while no credential needs Vault. Neither the token nor a value ever reaches an error,
//! a log line or a metric: errors carry Vault's status code and messages only.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use vaultrs::api::kv2::requests::{ReadSecretRequest, SetSecretRequestOptions};
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use super::value::Value;
use crate::metrics::Metrics;
use crate::policy::api_key::Served;
use crate::policy::format_time;
use crate::runtime::lock;

/// Where the controller finds Vault and how it logs in (`--vault-*`).
#[derive(Clone, Debug)]
pub struct VaultConfig {
    pub addr: String,
    /// Kubernetes auth role; without it, `token` is used.
    pub role: Option<String>,
    pub auth_mount: String,
    /// The prefix template (`--vault-prefix`), e.g. `keyward/{tenant}`.
    pub prefix: String,
    pub ca_cert: Option<String>,
    /// The ServiceAccount token file used to log in with the Kubernetes method.
    pub jwt_path: String,
    /// A token for development (`VAULT_TOKEN`). Never logged.
    pub token: Option<String>,
    /// Bound on every request to Vault.
    pub timeout: Duration,
}

/// Why a Vault operation failed. No variant carries a token or a value.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("Vault cannot be reached: {0}")]
    Unreachable(String),
    #[error("Vault answered {code}: {message}")]
    Refused { code: u16, message: String },
    #[error("logging in to Vault: {0}")]
    Login(String),
    #[error("Vault settings: {0}")]
    Config(String),
    #[error("another write to the Vault path came first (check-and-set); it is read again")]
    Conflict,
}

impl VaultError {
    fn from_client(err: ClientError) -> Self {
        match err {
            ClientError::APIError { code, errors } => {
                // Vault's messages come as "1 error occurred:\n\t* permission denied\n\n".
                let message = errors
                    .iter()
                    .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
                    .collect::<Vec<_>>()
                    .join("; ");
                if code == 400 && message.contains("check-and-set") {
                    VaultError::Conflict
                } else {
                    VaultError::Refused {
                        code,
                        message: truncate(&message),
                    }
                }
            }
            ClientError::RestClientError { source } => {
                VaultError::Unreachable(truncate(&source_chain(&source)))
            }
            other => VaultError::Unreachable(truncate(&other.to_string())),
        }
    }

    /// Whether the token should be dropped and a new one obtained (expired or revoked).
    fn is_denied(&self) -> bool {
        matches!(self, VaultError::Refused { code: 403, .. })
    }
}

fn source_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn truncate(text: &str) -> String {
    text.chars().take(300).collect()
}

/// What keyward recorded about the value it stored at a path (the path's custom_metadata).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// `<namespace>/<name>` of the ApiKey.
    pub credential: String,
    pub credential_uid: String,
    pub tenant: String,
    pub owner: String,
    pub served: Served,
    /// The KV version that holds (or was to hold) the value.
    pub kv_version: u64,
    /// The KV version of the previous value, while it is served.
    pub previous_kv_version: Option<u64>,
}

mod field {
    pub const CREDENTIAL: &str = "credential";
    pub const CREDENTIAL_UID: &str = "credential-uid";
    pub const TENANT: &str = "tenant";
    pub const OWNER: &str = "owner";
    pub const VERSION: &str = "version";
    pub const FINGERPRINT: &str = "fingerprint";
    pub const ISSUED_AT: &str = "issued-at";
    pub const ROTATED_AT: &str = "rotated-at";
    pub const PREVIOUS_VALID_UNTIL: &str = "previous-valid-until";
    pub const ROTATION_REQUEST: &str = "rotation-request";
    pub const KV_VERSION: &str = "kv-version";
    pub const PREVIOUS_KV_VERSION: &str = "previous-kv-version";
    pub const MANAGED_BY: &str = "managed-by";
}

impl Record {
    pub fn to_metadata(&self) -> HashMap<String, String> {
        let s = &self.served;
        let mut map = HashMap::from([
            (field::MANAGED_BY.to_owned(), "keyward".to_owned()),
            (field::CREDENTIAL.to_owned(), self.credential.clone()),
            (
                field::CREDENTIAL_UID.to_owned(),
                self.credential_uid.clone(),
            ),
            (field::TENANT.to_owned(), self.tenant.clone()),
            (field::OWNER.to_owned(), self.owner.clone()),
            (field::VERSION.to_owned(), s.version.to_string()),
            (field::FINGERPRINT.to_owned(), s.fingerprint.clone()),
            (field::ISSUED_AT.to_owned(), format_time(s.issued_at)),
            (field::ROTATED_AT.to_owned(), format_time(s.rotated_at)),
            (field::KV_VERSION.to_owned(), self.kv_version.to_string()),
        ]);
        if let Some(until) = s.previous_valid_until {
            map.insert(field::PREVIOUS_VALID_UNTIL.to_owned(), format_time(until));
        }
        if let Some(request) = &s.rotation_request {
            map.insert(field::ROTATION_REQUEST.to_owned(), request.clone());
        }
        if let Some(kv) = self.previous_kv_version {
            map.insert(field::PREVIOUS_KV_VERSION.to_owned(), kv.to_string());
        }
        map
    }

    /// The record in `metadata`, if it is a complete keyward record.
    pub fn from_metadata(metadata: &HashMap<String, String>) -> Option<Self> {
        let time = |k: &str| {
            metadata
                .get(k)
                .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let text = |k: &str| metadata.get(k).cloned();
        Some(Record {
            credential: text(field::CREDENTIAL)?,
            credential_uid: text(field::CREDENTIAL_UID)?,
            tenant: text(field::TENANT).unwrap_or_default(),
            owner: text(field::OWNER).unwrap_or_default(),
            served: Served {
                version: metadata.get(field::VERSION)?.parse().ok()?,
                fingerprint: text(field::FINGERPRINT)?,
                issued_at: time(field::ISSUED_AT)?,
                rotated_at: time(field::ROTATED_AT)?,
                previous_valid_until: time(field::PREVIOUS_VALID_UNTIL),
                rotation_request: text(field::ROTATION_REQUEST),
            },
            kv_version: metadata.get(field::KV_VERSION)?.parse().ok()?,
            previous_kv_version: metadata
                .get(field::PREVIOUS_KV_VERSION)
                .and_then(|v| v.parse().ok()),
        })
    }
}

/// What a path holds, for one credential.
#[derive(Clone, Debug)]
pub enum Found {
    /// Nothing keyward recorded for this credential, and no version to keep: the next value
    /// is written with check-and-set `current_kv`.
    Absent { current_kv: u64 },
    /// The value the record describes.
    Stored { record: Record, value: Value },
    /// A record whose value was never stored (a pass died between the two writes): that
    /// version is to be written again.
    Unwritten { record: Record, current_kv: u64 },
    /// The path holds something this credential did not write: never touched.
    Foreign,
}

struct Auth {
    client: Arc<VaultClient>,
    /// When to renew (or log in again), for a token with a lease.
    renew_at: Option<Instant>,
    expires_at: Option<Instant>,
    renewable: bool,
}

/// The Vault store: one client, logged in on first use.
pub struct Vault {
    config: VaultConfig,
    auth: tokio::sync::Mutex<Option<Auth>>,
    metrics: Arc<Metrics>,
    /// What a credential's path holds after this process's last pass over it, with the
    /// resourceVersion of the status that pass wrote: the pass that status write wakes
    /// (its echo) uses it instead of reading Vault again. Taken by that pass.
    echo: std::sync::Mutex<HashMap<String, (String, Found)>>,
}

impl Vault {
    /// Checks the settings; nothing is sent until a credential needs Vault.
    pub fn new(config: VaultConfig, metrics: Arc<Metrics>) -> Result<Self, VaultError> {
        check_address(&config.addr)?;
        install_crypto_provider();
        if config.role.is_none() && config.token.is_none() {
            return Err(VaultError::Config(
                "--vault-addr needs --vault-role (Kubernetes auth) or VAULT_TOKEN".to_owned(),
            ));
        }
        // Each tenant's values live under its own prefix, so the prefix must name the
        // tenant; and one that cannot hold a path (`..`, `?`) would refuse every key: both
        // are refused here, once.
        if !config.prefix.contains("{tenant}") {
            return Err(VaultError::Config(format!(
                "--vault-prefix {:?} must contain {{tenant}}, so that no tenant can name another's path",
                config.prefix
            )));
        }
        crate::policy::vault::resolve(&config.prefix, "tenant", "namespace", "path")
            .map_err(|e| VaultError::Config(format!("--vault-prefix {:?}: {e}", config.prefix)))?;
        if let Some(ca) = &config.ca_cert {
            std::fs::metadata(ca)
                .map_err(|e| VaultError::Config(format!("--vault-ca-cert {ca}: {e}")))?;
        }
        Ok(Vault {
            config,
            auth: tokio::sync::Mutex::new(None),
            metrics,
            echo: std::sync::Mutex::default(),
        })
    }

    /// Remembers what the path of the credential `uid` holds after a pass whose status
    /// write returned `status_version`.
    pub fn remember(&self, uid: &str, status_version: String, found: Found) {
        lock(&self.echo).insert(uid.to_owned(), (status_version, found));
    }

    /// What the pass that left the key at `version` left in Vault, for the next pass that
    /// sees the key at that version (the one its status write woke, or its Secret write);
    /// `None` for any other version. Taken, not copied: a pass that fails before it
    /// remembers anew leaves nothing, so the next one reads Vault.
    pub fn recall(&self, uid: &str, version: Option<&str>) -> Option<Found> {
        let (written, found) = lock(&self.echo).remove(uid)?;
        (Some(written.as_str()) == version).then_some(found)
    }

    /// Forgets the credential `uid` (deleted).
    pub fn forget(&self, uid: &str) {
        lock(&self.echo).remove(uid);
    }

    pub fn config(&self) -> &VaultConfig {
        &self.config
    }

    fn build_client(&self, token: &str) -> Result<VaultClient, VaultError> {
        let settings = VaultClientSettingsBuilder::default()
            .address(&self.config.addr)
            .token(token)
            .ca_certs(self.config.ca_cert.iter().cloned().collect())
            .identity(None)
            .verify(true)
            .timeout(Some(self.config.timeout))
            .build()
            .map_err(|e| VaultError::Config(e.to_string()))?;
        VaultClient::new(settings).map_err(|e| VaultError::Config(e.to_string()))
    }

    /// A client with a valid token: renewed or logged in again when its lease is two
    /// thirds gone.
    async fn client(&self) -> Result<Arc<VaultClient>, VaultError> {
        let mut auth = self.auth.lock().await;
        let now = Instant::now();
        if let Some(a) = auth.as_ref() {
            if a.renew_at.is_none_or(|t| now < t) {
                return Ok(a.client.clone());
            }
            if a.renewable && a.expires_at.is_some_and(|t| now < t) {
                let renewed = vaultrs::token::renew_self(a.client.as_ref(), None).await;
                self.metrics.vault_request("renew", renewed.is_ok());
                match renewed {
                    Ok(info) if info.lease_duration > 0 => {
                        let client = a.client.clone();
                        tracing::info!(lease_seconds = info.lease_duration, "Vault token renewed");
                        *auth = Some(leased(client.clone(), info.lease_duration, info.renewable));
                        return Ok(client);
                    }
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(error = %VaultError::from_client(err), "renewing the Vault token failed; logging in again");
                    }
                }
            }
        }
        let fresh = self.login().await?;
        let client = fresh.client.clone();
        *auth = Some(fresh);
        Ok(client)
    }

    async fn login(&self) -> Result<Auth, VaultError> {
        let Some(role) = &self.config.role else {
            let token = self.config.token.as_deref().unwrap_or_default();
            return Ok(Auth {
                client: Arc::new(self.build_client(token)?),
                renew_at: None,
                expires_at: None,
                renewable: false,
            });
        };
        let jwt = tokio::fs::read_to_string(&self.config.jwt_path)
            .await
            .map_err(|e| {
                VaultError::Login(format!(
                    "reading the ServiceAccount token {}: {e}",
                    self.config.jwt_path
                ))
            })?;
        let anonymous = self.build_client("")?;
        let login =
            vaultrs::auth::kubernetes::login(&anonymous, &self.config.auth_mount, role, jwt.trim())
                .await;
        self.metrics.vault_request("login", login.is_ok());
        let info = login.map_err(|e| VaultError::Login(VaultError::from_client(e).to_string()))?;
        tracing::info!(
            role,
            mount = self.config.auth_mount,
            lease_seconds = info.lease_duration,
            "logged in to Vault"
        );
        let client = Arc::new(self.build_client(&info.client_token)?);
        Ok(leased(client, info.lease_duration, info.renewable))
    }

    /// Runs one request (`operation` names it in `keyward_vault_requests_total`); a denied
    /// token is dropped, so the next request logs in again.
    async fn run<T, F, Fut>(&self, operation: &str, op: F) -> Result<T, VaultError>
    where
        F: FnOnce(Arc<VaultClient>) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let client = self.client().await?;
        let result = op(client).await.map_err(VaultError::from_client);
        // A 404 is an answer (nothing there), not a failed request.
        let answered = matches!(&result, Ok(_) | Err(VaultError::Refused { code: 404, .. }));
        self.metrics.vault_request(operation, answered);
        if let Err(err) = &result
            && err.is_denied()
            && self.config.role.is_some()
        {
            *self.auth.lock().await = None;
        }
        result
    }

    /// What `path` holds for the credential with `uid`, with the value under `data_key`.
    pub async fn read(
        &self,
        mount: &str,
        path: &str,
        uid: &str,
        data_key: &str,
    ) -> Result<Found, VaultError> {
        let endpoint = ReadSecretRequest::builder()
            .mount(mount)
            .path(path)
            .build()
            .map_err(|e| VaultError::Config(e.to_string()))?;
        let read = self
            .run("read", |c| async move {
                vaultrs::api::exec_with_result(c.as_ref(), endpoint).await
            })
            .await;
        let response = match read {
            Ok(response) => response,
            Err(VaultError::Refused { code: 404, .. }) => {
                // No live version: the metadata says whether a record (or someone else's
                // path) is there, and the version a write must follow.
                return self.read_metadata_only(mount, path, uid).await;
            }
            Err(err) => return Err(err),
        };
        let metadata = response.metadata.custom_metadata.unwrap_or_default();
        let Some(record) = Record::from_metadata(&metadata) else {
            return Ok(Found::Foreign);
        };
        if record.credential_uid != uid {
            return Ok(Found::Foreign);
        }
        let value = response
            .data
            .get(data_key)
            .and_then(|v| v.as_str())
            .and_then(|v| Value::from_bytes(v.as_bytes()));
        let current_kv = response.metadata.version;
        match value {
            Some(value)
                if current_kv == record.kv_version
                    && value.fingerprint().as_str() == record.served.fingerprint =>
            {
                Ok(Found::Stored { record, value })
            }
            _ => Ok(Found::Unwritten { record, current_kv }),
        }
    }

    async fn read_metadata_only(
        &self,
        mount: &str,
        path: &str,
        uid: &str,
    ) -> Result<Found, VaultError> {
        let read = self
            .run("read_metadata", |c| async move {
                vaultrs::kv2::read_metadata(c.as_ref(), mount, path).await
            })
            .await;
        match read {
            Ok(meta) => {
                let record = meta
                    .custom_metadata
                    .as_ref()
                    .and_then(Record::from_metadata);
                match record {
                    Some(record) if record.credential_uid == uid => Ok(Found::Unwritten {
                        record,
                        current_kv: meta.current_version,
                    }),
                    // Someone else's path with every version deleted is still theirs.
                    _ => Ok(Found::Foreign),
                }
            }
            Err(VaultError::Refused { code: 404, .. }) => Ok(Found::Absent { current_kv: 0 }),
            Err(err) => Err(err),
        }
    }

    /// The value of one older version, if it is still there.
    pub async fn read_version(
        &self,
        mount: &str,
        path: &str,
        kv_version: u64,
        data_key: &str,
    ) -> Result<Option<Value>, VaultError> {
        let read = self
            .run("read", |c| async move {
                vaultrs::kv2::read_version::<HashMap<String, serde_json::Value>>(
                    c.as_ref(),
                    mount,
                    path,
                    kv_version,
                )
                .await
            })
            .await;
        match read {
            Ok(data) => Ok(data
                .get(data_key)
                .and_then(|v| v.as_str())
                .and_then(|v| Value::from_bytes(v.as_bytes()))),
            Err(VaultError::Refused { code: 404, .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Stores `value` as the version `record` describes: the record first, then the value
    /// with check-and-set on `record.kv_version - 1`.
    pub async fn write(
        &self,
        mount: &str,
        path: &str,
        record: &Record,
        data_key: &str,
        value: &Value,
    ) -> Result<(), VaultError> {
        self.write_record(mount, path, record).await?;
        let data = HashMap::from([(data_key.to_owned(), value.expose().to_owned())]);
        let cas = u32::try_from(record.kv_version.saturating_sub(1)).unwrap_or(u32::MAX);
        self.run("write", |c| async move {
            vaultrs::kv2::set_with_options(
                c.as_ref(),
                mount,
                path,
                &data,
                SetSecretRequestOptions { cas },
            )
            .await
        })
        .await?;
        Ok(())
    }

    /// Updates the record (the overlap ended) without a new version.
    pub async fn write_record(
        &self,
        mount: &str,
        path: &str,
        record: &Record,
    ) -> Result<(), VaultError> {
        let metadata = record.to_metadata();
        self.run("write_metadata", |c| async move {
            let mut opts = vaultrs::api::kv2::requests::SetSecretMetadataRequest::builder();
            opts.custom_metadata(metadata);
            vaultrs::kv2::set_metadata(c.as_ref(), mount, path, Some(&mut opts)).await
        })
        .await
    }

    /// Destroys every version older than `keep` that is not destroyed yet.
    pub async fn destroy_older(
        &self,
        mount: &str,
        path: &str,
        keep: u64,
    ) -> Result<Vec<u64>, VaultError> {
        let meta = self
            .run("read_metadata", |c| async move {
                vaultrs::kv2::read_metadata(c.as_ref(), mount, path).await
            })
            .await?;
        let mut older: Vec<u64> = meta
            .versions
            .iter()
            .filter(|(_, m)| !m.destroyed)
            .filter_map(|(v, _)| v.parse::<u64>().ok())
            .filter(|v| *v < keep)
            .collect();
        older.sort_unstable();
        if older.is_empty() {
            return Ok(older);
        }
        let versions = older.clone();
        self.run("destroy", |c| async move {
            vaultrs::kv2::destroy_versions(c.as_ref(), mount, path, versions).await
        })
        .await?;
        Ok(older)
    }

    /// Destroys every version and the metadata of `path`.
    pub async fn destroy_all(&self, mount: &str, path: &str) -> Result<(), VaultError> {
        match self
            .run("delete_metadata", |c| async move {
                vaultrs::kv2::delete_metadata(c.as_ref(), mount, path).await
            })
            .await
        {
            Ok(()) | Err(VaultError::Refused { code: 404, .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }
}

fn leased(client: Arc<VaultClient>, lease_seconds: u64, renewable: bool) -> Auth {
    let now = Instant::now();
    if lease_seconds == 0 {
        // A token without a lease (a root token) never needs renewing.
        return Auth {
            client,
            renew_at: None,
            expires_at: None,
            renewable: false,
        };
    }
    let lease = Duration::from_secs(lease_seconds);
    Auth {
        client,
        renew_at: now.checked_add(lease.mul_f64(2.0 / 3.0)),
        expires_at: now.checked_add(lease),
        renewable,
    }
}

/// The Vault client's TLS uses the process-wide rustls provider: ring, as the Kubernetes
/// client does (one provider in the binary). Installing it twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `vaultrs` panics on an address it cannot parse: check it first.
fn check_address(addr: &str) -> Result<(), VaultError> {
    let url = url::Url::parse(addr)
        .map_err(|e| VaultError::Config(format!("--vault-addr {addr:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(VaultError::Config(format!(
            "--vault-addr {addr:?}: must be an http:// or https:// address"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn record() -> Record {
        Record {
            credential: "acme/k".to_owned(),
            credential_uid: "uid-1".to_owned(),
            tenant: "acme".to_owned(),
            owner: "alice@acme.example".to_owned(),
            served: Served {
                version: 3,
                fingerprint: "sha256:0123456789abcdef".to_owned(),
                issued_at: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
                rotated_at: Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap(),
                previous_valid_until: Some(Utc.with_ymd_and_hms(2026, 11, 3, 0, 0, 0).unwrap()),
                rotation_request: Some("r1".to_owned()),
            },
            kv_version: 7,
            previous_kv_version: Some(6),
        }
    }

    #[test]
    fn a_record_survives_custom_metadata() {
        let r = record();
        assert_eq!(Record::from_metadata(&r.to_metadata()), Some(r.clone()));
        let mut plain = r.clone();
        plain.served.previous_valid_until = None;
        plain.served.rotation_request = None;
        plain.previous_kv_version = None;
        assert_eq!(Record::from_metadata(&plain.to_metadata()), Some(plain));
    }

    #[test]
    fn custom_metadata_that_is_not_a_complete_record_is_none() {
        assert_eq!(Record::from_metadata(&HashMap::new()), None);
        let mut map = record().to_metadata();
        map.insert("version".to_owned(), "three".to_owned());
        assert_eq!(Record::from_metadata(&map), None);
        let mut map = record().to_metadata();
        map.remove("credential-uid");
        assert_eq!(Record::from_metadata(&map), None);
    }

    fn config(prefix: &str) -> VaultConfig {
        VaultConfig {
            addr: "http://127.0.0.1:8200".to_owned(),
            role: None,
            auth_mount: "kubernetes".to_owned(),
            prefix: prefix.to_owned(),
            ca_cert: None,
            jwt_path: "/nonexistent".to_owned(),
            token: Some("t".to_owned()),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_prefix_must_name_the_tenant_and_be_a_plain_path() {
        let metrics = Arc::new(Metrics::new());
        for good in ["keyward/{tenant}", "teams/{namespace}/{tenant}", "{tenant}"] {
            assert!(Vault::new(config(good), metrics.clone()).is_ok(), "{good}");
        }
        for bad in [
            "",
            "keyward",
            "keyward/../{tenant}",
            "k?{tenant}",
            "keyward/{tenant}/a b",
        ] {
            assert!(
                Vault::new(config(bad), metrics.clone()).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn addresses_vaultrs_would_panic_on_are_refused() {
        assert!(check_address("http://127.0.0.1:8200").is_ok());
        assert!(check_address("https://vault.example:8200").is_ok());
        for bad in ["", "127.0.0.1:8200", "vault", "ftp://x", "http://", "::"] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
    }
}

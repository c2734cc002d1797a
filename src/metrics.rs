//! Prometheus metrics exposed by the operator: the `keyward_*` series names and labels
//! are a user-facing contract (dashboards and alerts depend on them), so they live here only.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::runtime::lock;
use std::time::Instant;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds (seconds) for reconcile latency: a cache-only pass takes about a
/// millisecond, a pass that talks to an external issuer can take several seconds.
const RECONCILE_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Identity of one managed credential across observations.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CredentialKey {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// What the metrics need to know about a credential at one point in time.
/// Holds only metadata: nothing here may ever carry the secret value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialSnapshot {
    pub tenant: String,
    pub owner: String,
    pub state: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub next_rotation_at: Option<DateTime<Utc>>,
}

/// Outcome label of `keyward_rotations_total`; a closed set so dashboards can rely on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationResult {
    Success,
    Failure,
}

impl RotationResult {
    pub fn as_str(self) -> &'static str {
        match self {
            RotationResult::Success => "success",
            RotationResult::Failure => "failure",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CredentialCountLabels {
    namespace: String,
    tenant: String,
    kind: String,
    state: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ExpiryLabels {
    namespace: String,
    name: String,
    kind: String,
    tenant: String,
    owner: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct NextRotationLabels {
    namespace: String,
    name: String,
    kind: String,
    tenant: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RotationLabels {
    kind: String,
    tenant: String,
    result: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RevocationLabels {
    kind: String,
    tenant: String,
    reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FindingLabels {
    tenant: String,
    finding: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ControllerLabels {
    controller: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KubeRequestLabels {
    method: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VaultRequestLabels {
    operation: String,
    result: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReconcileErrorLabels {
    controller: String,
    reason: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn reconcile_histogram() -> Histogram {
    Histogram::new(RECONCILE_BUCKETS)
}

/// All operator metrics plus the registry they are exposed through.
/// Share it as `Arc<Metrics>`; every method takes `&self`.
pub struct Metrics {
    registry: Registry,
    credentials: Family<CredentialCountLabels, Gauge>,
    expiry: Family<ExpiryLabels, Gauge>,
    next_rotation: Family<NextRotationLabels, Gauge>,
    rotations: Family<RotationLabels, Counter>,
    revocations: Family<RevocationLabels, Counter>,
    findings: Family<FindingLabels, Gauge>,
    reconcile_duration: HistogramFamily<ControllerLabels>,
    reconcile_errors: Family<ReconcileErrorLabels, Counter>,
    kube_requests: Family<KubeRequestLabels, Counter>,
    kube_throttled: Counter,
    vault_requests: Family<VaultRequestLabels, Counter>,
    /// Last view of every credential; also serialises all credential-gauge updates so a
    /// decrement-to-zero check and the following removal cannot interleave with another update.
    observed: Mutex<HashMap<CredentialKey, CredentialSnapshot>>,
    /// Label sets currently present in the findings family, which cannot list its own members.
    finding_labels: Mutex<HashSet<FindingLabels>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("keyward");
        let credentials = Family::<CredentialCountLabels, Gauge>::default();
        let expiry = Family::<ExpiryLabels, Gauge>::default();
        let next_rotation = Family::<NextRotationLabels, Gauge>::default();
        let rotations = Family::<RotationLabels, Counter>::default();
        let revocations = Family::<RevocationLabels, Counter>::default();
        let findings = Family::<FindingLabels, Gauge>::default();
        let reconcile_duration: HistogramFamily<ControllerLabels> =
            Family::new_with_constructor(reconcile_histogram);
        let reconcile_errors = Family::<ReconcileErrorLabels, Counter>::default();

        // Counter names are registered without `_total`: the encoder appends it.
        registry.register(
            "credentials",
            "Number of managed credentials by namespace, tenant, kind and state",
            credentials.clone(),
        );
        registry.register(
            "credential_expiry_timestamp_seconds",
            "Unix time at which a credential expires",
            expiry.clone(),
        );
        registry.register(
            "credential_next_rotation_timestamp_seconds",
            "Unix time of a credential's next scheduled rotation",
            next_rotation.clone(),
        );
        registry.register(
            "rotations",
            "Credential rotations by outcome",
            rotations.clone(),
        );
        registry.register(
            "revocations",
            "Credential revocations by reason",
            revocations.clone(),
        );
        registry.register(
            "inventory_findings",
            "Inventory findings by tenant and finding",
            findings.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile pass",
            reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconcile passes by controller and reason",
            reconcile_errors.clone(),
        );
        let kube_requests = Family::<KubeRequestLabels, Counter>::default();
        registry.register(
            "kube_requests",
            "Requests sent to the Kubernetes API by HTTP method (a quiet cluster costs none)",
            kube_requests.clone(),
        );
        let kube_throttled = Counter::default();
        registry.register(
            "kube_throttled",
            "Answers 429 Too Many Requests from the Kubernetes API (API Priority and Fairness); each request was sent again after the server's Retry-After",
            kube_throttled.clone(),
        );
        let vault_requests = Family::<VaultRequestLabels, Counter>::default();
        registry.register(
            "vault_requests",
            "Requests sent to Vault by operation (read, read_metadata, write_metadata, write, destroy, delete_metadata, login, renew) and result (ok: answered, 404 included; error)",
            vault_requests.clone(),
        );

        Self {
            registry,
            credentials,
            expiry,
            next_rotation,
            rotations,
            revocations,
            findings,
            reconcile_duration,
            reconcile_errors,
            kube_requests,
            kube_throttled,
            vault_requests,
            observed: Mutex::new(HashMap::new()),
            finding_labels: Mutex::new(HashSet::new()),
        }
    }

    /// Records the current view of one credential; `None` means it no longer exists.
    /// Only the difference to the previous view is applied, so repeating a view is a no-op.
    pub fn observe_credential(&self, key: CredentialKey, snapshot: Option<CredentialSnapshot>) {
        let mut observed = lock(&self.observed);
        let previous = observed.get(&key);
        if previous == snapshot.as_ref() {
            return;
        }

        let old_count = previous.map(|s| count_labels(&key, s));
        let new_count = snapshot.as_ref().map(|s| count_labels(&key, s));
        if old_count != new_count {
            if let Some(labels) = &old_count {
                self.decrement_count(labels);
            }
            if let Some(labels) = &new_count {
                self.credentials.get_or_create(labels).inc();
            }
        }

        let old_expiry = previous.and_then(|s| expiry_series(&key, s));
        let new_expiry = snapshot.as_ref().and_then(|s| expiry_series(&key, s));
        replace_series(&self.expiry, old_expiry, new_expiry);

        let old_next = previous.and_then(|s| next_rotation_series(&key, s));
        let new_next = snapshot
            .as_ref()
            .and_then(|s| next_rotation_series(&key, s));
        replace_series(&self.next_rotation, old_next, new_next);

        match snapshot {
            Some(snapshot) => {
                observed.insert(key, snapshot);
            }
            None => {
                observed.remove(&key);
            }
        }
    }

    fn decrement_count(&self, labels: &CredentialCountLabels) {
        // The guard must be gone before `remove`, which takes the family's write lock.
        let before = match self.credentials.get(labels) {
            Some(gauge) => gauge.dec(),
            None => return,
        };
        if before <= 1 {
            self.credentials.remove(labels);
        }
    }

    pub fn rotation(&self, kind: &str, tenant: &str, result: RotationResult) {
        self.rotations
            .get_or_create(&RotationLabels {
                kind: kind.to_owned(),
                tenant: tenant.to_owned(),
                result: result.as_str().to_owned(),
            })
            .inc();
    }

    pub fn revocation(&self, kind: &str, tenant: &str, reason: &str) {
        self.revocations
            .get_or_create(&RevocationLabels {
                kind: kind.to_owned(),
                tenant: tenant.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts one request to the Kubernetes API.
    pub fn kube_request(&self, method: &str) {
        self.kube_requests
            .get_or_create(&KubeRequestLabels {
                method: method.to_owned(),
            })
            .inc();
    }

    /// Counts one 429 Too Many Requests answer of the Kubernetes API.
    pub fn kube_throttled(&self) {
        self.kube_throttled.inc();
    }

    /// Counts one request to Vault.
    pub fn vault_request(&self, operation: &str, ok: bool) {
        self.vault_requests
            .get_or_create(&VaultRequestLabels {
                operation: operation.to_owned(),
                result: if ok { "ok" } else { "error" }.to_owned(),
            })
            .inc();
    }

    pub fn reconcile_error(&self, controller: &str, reason: &str) {
        self.reconcile_errors
            .get_or_create(&ReconcileErrorLabels {
                controller: controller.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Starts timing one reconcile pass; the duration is recorded when the guard drops,
    /// so early returns and `?` are measured too. The guard does not borrow `self`.
    #[must_use = "the reconcile is timed until this guard is dropped"]
    pub fn reconcile_timer(&self, controller: &str) -> ReconcileTimer {
        ReconcileTimer {
            histogram: self
                .reconcile_duration
                .get_or_create_owned(&ControllerLabels {
                    controller: controller.to_owned(),
                }),
            started: Instant::now(),
        }
    }

    /// Replaces the whole content of `keyward_inventory_findings`. Series missing from
    /// `counts` disappear; a duplicated label set keeps its last count.
    pub fn set_findings(&self, counts: impl IntoIterator<Item = ((Option<String>, String), i64)>) {
        let mut current = lock(&self.finding_labels);
        let mut next = HashSet::new();
        for ((tenant, finding), count) in counts {
            let labels = FindingLabels {
                tenant: tenant.unwrap_or_default(),
                finding,
            };
            self.findings.get_or_create(&labels).set(count);
            next.insert(labels);
        }
        // Stale series go only after the new values are in, so a scrape never sees a gap.
        for stale in current.difference(&next) {
            self.findings.remove(stale);
        }
        *current = next;
    }

    /// All metrics in the OpenMetrics text format, terminated by `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(err) = text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %err, "encoding metrics failed");
        }
        out
    }
}

/// Guard returned by [`Metrics::reconcile_timer`].
#[derive(Debug)]
pub struct ReconcileTimer {
    histogram: Histogram,
    started: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

fn count_labels(key: &CredentialKey, snapshot: &CredentialSnapshot) -> CredentialCountLabels {
    CredentialCountLabels {
        namespace: key.namespace.clone(),
        tenant: snapshot.tenant.clone(),
        kind: key.kind.clone(),
        state: snapshot.state.clone(),
    }
}

fn expiry_series(
    key: &CredentialKey,
    snapshot: &CredentialSnapshot,
) -> Option<(ExpiryLabels, i64)> {
    let at = snapshot.expires_at?;
    Some((
        ExpiryLabels {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            kind: key.kind.clone(),
            tenant: snapshot.tenant.clone(),
            owner: snapshot.owner.clone(),
        },
        at.timestamp(),
    ))
}

fn next_rotation_series(
    key: &CredentialKey,
    snapshot: &CredentialSnapshot,
) -> Option<(NextRotationLabels, i64)> {
    let at = snapshot.next_rotation_at?;
    Some((
        NextRotationLabels {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            kind: key.kind.clone(),
            tenant: snapshot.tenant.clone(),
        },
        at.timestamp(),
    ))
}

/// Moves a per-credential series from its old labels/value to the new ones. When the labels
/// are unchanged the value is overwritten in place rather than removed and re-added.
fn replace_series<L>(family: &Family<L, Gauge>, old: Option<(L, i64)>, new: Option<(L, i64)>)
where
    L: Clone + std::hash::Hash + Eq,
{
    if let Some((old_labels, _)) = &old {
        let kept = matches!(&new, Some((new_labels, _)) if new_labels == old_labels);
        if !kept {
            family.remove(old_labels);
        }
    }
    if let Some((labels, value)) = new {
        family.get_or_create(&labels).set(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn key(name: &str) -> CredentialKey {
        CredentialKey {
            kind: "ApiKey".into(),
            namespace: "team-a".into(),
            name: name.into(),
        }
    }

    fn snapshot(state: &str) -> CredentialSnapshot {
        CredentialSnapshot {
            tenant: "acme".into(),
            owner: "billing".into(),
            state: state.into(),
            expires_at: Utc.timestamp_opt(1_900_000_000, 0).single(),
            next_rotation_at: Utc.timestamp_opt(1_800_000_000, 0).single(),
        }
    }

    /// Sample lines (no comments) of the encoded output whose metric name is exactly `name`.
    fn samples(metrics: &Metrics, name: &str) -> Vec<String> {
        metrics
            .encode()
            .lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn state_change_moves_the_count_to_the_new_label_set() {
        let metrics = Metrics::new();
        metrics.observe_credential(key("a"), Some(snapshot("Pending")));
        metrics.observe_credential(key("b"), Some(snapshot("Pending")));
        metrics.observe_credential(key("a"), Some(snapshot("Ready")));

        let mut lines = samples(&metrics, "keyward_credentials");
        lines.sort();
        assert_eq!(
            lines,
            vec![
                r#"keyward_credentials{namespace="team-a",tenant="acme",kind="ApiKey",state="Pending"} 1"#,
                r#"keyward_credentials{namespace="team-a",tenant="acme",kind="ApiKey",state="Ready"} 1"#,
            ]
        );

        metrics.observe_credential(key("b"), Some(snapshot("Ready")));
        assert_eq!(
            samples(&metrics, "keyward_credentials"),
            vec![
                r#"keyward_credentials{namespace="team-a",tenant="acme",kind="ApiKey",state="Ready"} 2"#
            ],
            "a label set that drops to zero must disappear"
        );
    }

    #[test]
    fn deletion_removes_every_series_of_the_credential() {
        let metrics = Metrics::new();
        metrics.observe_credential(key("a"), Some(snapshot("Ready")));
        assert_eq!(
            samples(&metrics, "keyward_credential_expiry_timestamp_seconds"),
            vec![
                r#"keyward_credential_expiry_timestamp_seconds{namespace="team-a",name="a",kind="ApiKey",tenant="acme",owner="billing"} 1900000000"#
            ]
        );
        assert_eq!(
            samples(
                &metrics,
                "keyward_credential_next_rotation_timestamp_seconds"
            ),
            vec![
                r#"keyward_credential_next_rotation_timestamp_seconds{namespace="team-a",name="a",kind="ApiKey",tenant="acme"} 1800000000"#
            ]
        );

        metrics.observe_credential(key("a"), None);
        assert!(samples(&metrics, "keyward_credentials").is_empty());
        assert!(samples(&metrics, "keyward_credential_expiry_timestamp_seconds").is_empty());
        assert!(
            samples(
                &metrics,
                "keyward_credential_next_rotation_timestamp_seconds"
            )
            .is_empty()
        );
    }

    #[test]
    fn owner_change_replaces_the_expiry_series_instead_of_adding_one() {
        let metrics = Metrics::new();
        metrics.observe_credential(key("a"), Some(snapshot("Ready")));
        let mut moved = snapshot("Ready");
        moved.owner = "payments".into();
        moved.expires_at = Utc.timestamp_opt(1_950_000_000, 0).single();
        metrics.observe_credential(key("a"), Some(moved));

        assert_eq!(
            samples(&metrics, "keyward_credential_expiry_timestamp_seconds"),
            vec![
                r#"keyward_credential_expiry_timestamp_seconds{namespace="team-a",name="a",kind="ApiKey",tenant="acme",owner="payments"} 1950000000"#
            ]
        );
    }

    #[test]
    fn losing_the_expiry_removes_the_expiry_series() {
        let metrics = Metrics::new();
        metrics.observe_credential(key("a"), Some(snapshot("Ready")));
        let mut unbounded = snapshot("Ready");
        unbounded.expires_at = None;
        unbounded.next_rotation_at = None;
        metrics.observe_credential(key("a"), Some(unbounded));

        assert!(samples(&metrics, "keyward_credential_expiry_timestamp_seconds").is_empty());
        assert!(
            samples(
                &metrics,
                "keyward_credential_next_rotation_timestamp_seconds"
            )
            .is_empty()
        );
        assert_eq!(samples(&metrics, "keyward_credentials").len(), 1);
    }

    #[test]
    fn observing_the_same_snapshot_twice_changes_nothing() {
        let metrics = Metrics::new();
        metrics.observe_credential(key("a"), Some(snapshot("Ready")));
        let once = metrics.encode();
        metrics.observe_credential(key("a"), Some(snapshot("Ready")));
        assert_eq!(metrics.encode(), once);

        metrics.observe_credential(key("a"), None);
        let deleted = metrics.encode();
        metrics.observe_credential(key("a"), None);
        assert_eq!(metrics.encode(), deleted);
        assert!(samples(&metrics, "keyward_credentials").is_empty());
    }

    #[test]
    fn counters_and_histogram_are_exposed_under_the_contract_names() {
        let metrics = Metrics::new();
        metrics.rotation("ApiKey", "acme", RotationResult::Success);
        metrics.rotation("ApiKey", "acme", RotationResult::Failure);
        metrics.revocation("ApiKey", "acme", "compromised");
        metrics.reconcile_error("credential", "IssuerUnavailable");
        drop(metrics.reconcile_timer("credential"));
        metrics.observe_credential(key("a"), Some(snapshot("Ready")));
        metrics.set_findings([((None, "orphaned".to_owned()), 1)]);

        let text = metrics.encode();
        for expected in [
            r#"keyward_rotations_total{kind="ApiKey",tenant="acme",result="success"} 1"#,
            r#"keyward_rotations_total{kind="ApiKey",tenant="acme",result="failure"} 1"#,
            r#"keyward_revocations_total{kind="ApiKey",tenant="acme",reason="compromised"} 1"#,
            r#"keyward_reconcile_errors_total{controller="credential",reason="IssuerUnavailable"} 1"#,
            r#"keyward_reconcile_duration_seconds_count{controller="credential"} 1"#,
            r#"keyward_reconcile_duration_seconds_bucket{le="10.0",controller="credential"} 1"#,
            "# TYPE keyward_rotations counter",
            "# TYPE keyward_reconcile_duration_seconds histogram",
            "# TYPE keyward_credentials gauge",
            "# TYPE keyward_credential_expiry_timestamp_seconds gauge",
            "# TYPE keyward_credential_next_rotation_timestamp_seconds gauge",
            "# TYPE keyward_inventory_findings gauge",
            "# TYPE keyward_reconcile_errors counter",
        ] {
            assert!(
                text.lines().any(|line| line == expected),
                "missing {expected:?} in:\n{text}"
            );
        }
        assert!(!text.contains("_total_total"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn set_findings_replaces_the_previous_findings() {
        let metrics = Metrics::new();
        metrics.set_findings([
            ((Some("acme".to_owned()), "unowned".to_owned()), 3),
            ((None, "orphaned".to_owned()), 1),
        ]);
        let mut lines = samples(&metrics, "keyward_inventory_findings");
        lines.sort();
        assert_eq!(
            lines,
            vec![
                r#"keyward_inventory_findings{tenant="",finding="orphaned"} 1"#,
                r#"keyward_inventory_findings{tenant="acme",finding="unowned"} 3"#,
            ]
        );

        metrics.set_findings([((Some("acme".to_owned()), "unowned".to_owned()), 2)]);
        assert_eq!(
            samples(&metrics, "keyward_inventory_findings"),
            vec![r#"keyward_inventory_findings{tenant="acme",finding="unowned"} 2"#]
        );
    }
}

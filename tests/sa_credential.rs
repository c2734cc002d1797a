//! The ServiceAccountCredential lifecycle on the real control plane, with a `keyward run` per
//! test scoped to the test's namespace. Tokens are judged by the API server itself, through
//! TokenReview: issue, refresh ahead of expiry, expiry, revocation, rotation, conflict,
//! refusal and garbage collection.

mod support;

use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use k8s_openapi::api::core::v1::{Event, Secret, ServiceAccount};
use keyward::api::{CredentialState, PartnerIntegration, ServiceAccountCredential as Sac, Tenant};
use keyward::store::value::Fingerprint;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::operator::Operator;
use support::{TestEnv, wait_for, wait_gone};

const T: Duration = Duration::from_secs(30);
/// The API server caches a successful token authentication for 10 s, so a token whose
/// ServiceAccount is gone is rejected within that long (plus a margin).
const TOKEN_CACHE: Duration = Duration::from_secs(20);
const AUDIENCE: &str = "https://api.acme.example";

struct World {
    env: TestEnv,
    op: Operator,
    tenant: String,
    sacs: Api<Sac>,
    accounts: Api<ServiceAccount>,
    secrets: Api<Secret>,
    tenants: Api<Tenant>,
}

/// A fresh namespace, a Tenant owning it (owner alice; `extra` is merged into its spec) and
/// an operator managing it.
async fn world(prefix: &str, extra: Value) -> World {
    let env = TestEnv::new(prefix).await;
    let tenant = support::create_tenant(&env, extra).await;
    let tenants: Api<Tenant> = Api::all(env.client.clone());
    let op = Operator::start(&env.ns).await;
    World {
        sacs: Api::namespaced(env.client.clone(), &env.ns),
        accounts: Api::namespaced(env.client.clone(), &env.ns),
        secrets: Api::namespaced(env.client.clone(), &env.ns),
        tenants,
        env,
        op,
        tenant,
    }
}

impl World {
    async fn sac(&self, name: &str, spec: Value) -> Sac {
        support::create(&self.sacs, name, spec).await
    }

    /// A credential of alice's in this tenant, with `extra` merged into its spec.
    async fn alices(&self, name: &str, extra: Value) -> Sac {
        let spec = json!({"tenant": self.tenant, "owner": "alice", "audiences": [AUDIENCE]});
        self.sac(name, support::merged(spec, extra)).await
    }

    async fn wait_state(&self, name: &str, state: CredentialState) -> Sac {
        wait_for(
            &self.sacs,
            name,
            &format!("{state:?}"),
            T,
            move |s: &Sac| s.status.as_ref().and_then(|s| s.state) == Some(state),
        )
        .await
    }

    async fn wait_version(&self, name: &str, version: i64) -> Sac {
        wait_for(
            &self.sacs,
            name,
            &format!("Active at version {version}"),
            T,
            move |s: &Sac| {
                s.status.as_ref().is_some_and(|s| {
                    s.version == Some(version)
                        && s.state == Some(CredentialState::Active)
                        && s.fingerprint.is_some()
                })
            },
        )
        .await
    }

    async fn patch_tenant(&self, spec: Value) {
        self.tenants
            .patch(
                &self.tenant,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
            .unwrap();
    }

    /// The token served in Secret `name` under `token`.
    async fn token(&self, name: &str) -> String {
        let secret = self.secrets.get(name).await.unwrap();
        let bytes = secret.data.unwrap()["token"].0.clone();
        String::from_utf8(bytes).unwrap()
    }

    /// What the API server says of `token` for `audience` (its own audience when `None`).
    async fn review(&self, token: &str, audience: Option<&str>) -> TokenReviewStatus {
        let api: Api<TokenReview> = Api::all(self.env.client.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: audience.map(|a| vec![a.to_owned()]),
            },
            ..TokenReview::default()
        };
        api.create(&PostParams::default(), &review)
            .await
            .unwrap()
            .status
            .unwrap_or_default()
    }

    /// Asserts that `token` authenticates as ServiceAccount `account` for the audience.
    async fn assert_authenticates(&self, token: &str, account: &str) {
        let status = self.review(token, Some(AUDIENCE)).await;
        assert_eq!(status.authenticated, Some(true), "{:?}", status.error);
        let user = status.user.unwrap();
        assert_eq!(
            user.username.as_deref(),
            Some(format!("system:serviceaccount:{}:{account}", self.env.ns).as_str())
        );
    }

    /// Waits (bounded: the API server's authentication cache cannot be watched) until
    /// `token` no longer authenticates.
    async fn assert_rejected(&self, token: &str) {
        let deadline = tokio::time::Instant::now() + TOKEN_CACHE;
        loop {
            let status = self.review(token, Some(AUDIENCE)).await;
            if status.authenticated != Some(true) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "token still authenticates {TOKEN_CACHE:?} after its ServiceAccount went away"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn ready_reason(sac: &Sac) -> String {
        sac.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.reason.clone())
            .unwrap_or_default()
    }

    /// Waits (bounded) for an Event with `reason` on `name`; Events are published after
    /// the status they describe, so they can trail it by a moment.
    async fn wait_event(&self, name: &str, reason: &str) -> Vec<(String, String)> {
        self.wait_event_saying(name, reason, "").await
    }

    /// Waits (bounded) for an Event with `reason` whose message contains `saying`.
    async fn wait_event_saying(
        &self,
        name: &str,
        reason: &str,
        saying: &str,
    ) -> Vec<(String, String)> {
        let api: Api<Event> = Api::namespaced(self.env.client.clone(), &self.env.ns);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let list = api
                .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
                .await
                .unwrap();
            let events: Vec<_> = list
                .items
                .into_iter()
                .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
                .collect();
            if events
                .iter()
                .any(|(r, m)| r == reason && m.contains(saying))
                || tokio::time::Instant::now() > deadline
            {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Fails if any token appears in what the operator logged or printed, in an Event or
    /// in a status.
    async fn assert_never_shown(&self, tokens: &[String]) {
        let output = self.op.logs() + &self.op.stdout();
        let events: Api<Event> = Api::namespaced(self.env.client.clone(), &self.env.ns);
        let events =
            serde_json::to_string(&events.list(&ListParams::default()).await.unwrap()).unwrap();
        let statuses =
            serde_json::to_string(&self.sacs.list(&ListParams::default()).await.unwrap()).unwrap();
        for token in tokens {
            assert!(
                !output.contains(token.as_str()),
                "a token appears in the operator's output"
            );
            assert!(
                !events.contains(token.as_str()),
                "a token appears in an Event"
            );
            assert!(
                !statuses.contains(token.as_str()),
                "a token appears in a status"
            );
        }
    }

    async fn cleanup(self) {
        let _ = self
            .tenants
            .delete(&self.tenant, &DeleteParams::default())
            .await;
        self.env.cleanup().await;
    }
}

fn in_secs(s: i64) -> String {
    keyward::policy::format_time(Utc::now() + chrono::Duration::seconds(s))
}

#[tokio::test]
async fn issues_a_token_that_authenticates_as_its_service_account_for_its_audience() {
    let w = world("sac-issue", json!({})).await;
    let created = w
        .alices("reader", json!({"expiresAt": "2030-01-01T00:00:00Z"}))
        .await;
    let sac = w.wait_version("reader", 1).await;
    let status = sac.status.clone().unwrap();
    assert_eq!(status.tenant.as_deref(), Some(w.tenant.as_str()));
    assert_eq!(status.owner.as_deref(), Some("alice"));

    let account = w.accounts.get("reader").await.unwrap();
    assert_eq!(status.service_account_uid, account.uid());
    let token = w.token("reader-token").await;
    w.assert_authenticates(&token, "reader").await;
    let other_audience = w.review(&token, None).await;
    assert_ne!(
        other_audience.authenticated,
        Some(true),
        "bound to its audience only"
    );

    // Times: a 1h token (the default), replaced 20m (one third) ahead of its expiry.
    let fingerprint = Fingerprint::of(token.as_bytes()).to_string();
    assert_eq!(status.fingerprint.as_deref(), Some(fingerprint.as_str()));
    let issued = status.last_issued_at.unwrap().0;
    let expires = status.token_expires_at.unwrap().0;
    assert_eq!(expires - issued, chrono::Duration::hours(1));
    assert_eq!(
        status.next_refresh_at.unwrap().0,
        expires - chrono::Duration::minutes(20)
    );
    // The lineage starts when the ServiceAccount is created, just before its first token.
    let lineage = status.issued_at.unwrap().0;
    assert!(
        (issued - lineage).num_seconds().abs() <= 1,
        "{lineage} vs {issued}"
    );

    // The contract's labels and annotations, on both objects, each controlled by the SAC.
    let secret = w.secrets.get("reader-token").await.unwrap();
    for (meta, what) in [
        (&account.metadata, "ServiceAccount"),
        (&secret.metadata, "Secret"),
    ] {
        let labels = meta.labels.clone().unwrap_or_default();
        assert_eq!(
            labels
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str),
            Some("keyward"),
            "{what}"
        );
        assert_eq!(labels.get("keyward.io/tenant"), Some(&w.tenant), "{what}");
        assert_eq!(
            labels.get("keyward.io/credential").map(String::as_str),
            Some("reader"),
            "{what}"
        );
        let annotations = meta.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations.get("keyward.io/owner").map(String::as_str),
            Some("alice"),
            "{what}"
        );
        assert_eq!(
            annotations.get("keyward.io/version").map(String::as_str),
            Some("1"),
            "{what}"
        );
        assert_eq!(
            annotations.get("keyward.io/fingerprint"),
            Some(&fingerprint),
            "{what}"
        );
        assert_eq!(
            annotations.get("keyward.io/expires-at").map(String::as_str),
            Some("2030-01-01T00:00:00Z"),
            "{what}"
        );
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.uid.as_str(), owner.controller),
            (created.uid().unwrap().as_str(), Some(true)),
            "{what}"
        );
    }

    let events = w.wait_event("reader", "Issued").await;
    assert!(events.iter().any(|(r, _)| r == "Issued"), "{events:?}");
    let audit = w.op.audit();
    let issued_line = audit
        .iter()
        .find(|a| a["action"] == "Issued" && a["object"]["name"] == "reader")
        .expect("an audit line");
    assert_eq!(issued_line["object"]["kind"], "ServiceAccountCredential");
    assert_eq!(issued_line["version"], 1);
    assert_eq!(issued_line["fingerprint"], fingerprint.as_str());
    assert!(issued_line["tokenExpiresAt"].is_string(), "{issued_line}");

    // The tenant counts it.
    let tenant = wait_for(&w.tenants, &w.tenant, "counting it", T, |t: &Tenant| {
        t.status
            .as_ref()
            .and_then(|s| s.credentials.as_ref())
            .is_some_and(|c| c.total == 1 && c.active == 1)
    })
    .await;
    assert!(tenant.status.is_some());
    w.assert_never_shown(&[token]).await;
    w.cleanup().await;
}

#[tokio::test]
async fn a_token_is_refreshed_refresh_before_ahead_of_its_expiry_and_not_sooner() {
    let w = world("sac-refresh", json!({})).await;
    w.alices(
        "short",
        json!({"tokenTTL": "10m", "refreshBefore": "9m55s", "secret": {"name": "short-tok", "key": "jwt"}}),
    )
    .await;
    let first = w.wait_version("short", 1).await.status.unwrap();
    let first_seen = Utc::now();
    let issued = first.last_issued_at.unwrap().0;
    let refresh_at = first.next_refresh_at.unwrap().0;
    assert_eq!(refresh_at - issued, chrono::Duration::seconds(5));
    let secret = w.secrets.get("short-tok").await.unwrap();
    let old = String::from_utf8(secret.data.unwrap()["jwt"].0.clone()).unwrap();

    let first_fp = first.fingerprint.clone();
    let second = wait_for(&w.sacs, "short", "refreshed", T, move |s: &Sac| {
        s.status
            .as_ref()
            .is_some_and(|s| s.fingerprint.is_some() && s.fingerprint != first_fp)
    })
    .await
    .status
    .unwrap();
    let arrived = Utc::now();
    // Not before its time (the token's iat is in whole seconds), and not much after it.
    let reissued = second.last_issued_at.unwrap().0;
    assert!(reissued >= refresh_at, "{reissued} before {refresh_at}");
    assert!(
        arrived - first_seen < chrono::Duration::seconds(15),
        "refreshed {}s after the first token was seen",
        (arrived - first_seen).num_seconds()
    );
    assert_eq!(second.version, Some(1), "a refresh keeps the version");
    assert_eq!(second.service_account_uid, first.service_account_uid);
    assert_eq!(
        second.next_refresh_at.unwrap().0 - reissued,
        chrono::Duration::seconds(5)
    );
    let secret = w.secrets.get("short-tok").await.unwrap();
    let new = String::from_utf8(secret.data.unwrap()["jwt"].0.clone()).unwrap();
    assert_ne!(old, new);
    w.assert_authenticates(&new, "short").await;
    let events = w.wait_event_saying("short", "Issued", "refreshed").await;
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "Issued" && m.contains("refreshed")),
        "{events:?}"
    );
    w.assert_never_shown(&[old, new]).await;
    w.cleanup().await;
}

#[tokio::test]
async fn expiry_deletes_the_service_account_and_its_token_stops_authenticating() {
    let w = world("sac-expire", json!({})).await;
    w.alices("k", json!({"expiresAt": in_secs(4)})).await;
    w.wait_version("k", 1).await;
    let token = w.token("k-token").await;
    w.assert_authenticates(&token, "k").await;

    let expired = w.wait_state("k", CredentialState::Expired).await;
    assert_eq!(World::ready_reason(&expired), "Expired");
    let status = expired.status.unwrap();
    assert_eq!(status.fingerprint, None);
    assert_eq!(status.service_account_uid, None);
    wait_gone(&w.accounts, "k", T).await;
    wait_gone(&w.secrets, "k-token", T).await;
    w.assert_rejected(&token).await;
    let events = w.wait_event("k", "Expired").await;
    assert!(events.iter().any(|(r, _)| r == "Expired"), "{events:?}");
    w.assert_never_shown(&[token]).await;
    w.cleanup().await;
}

#[tokio::test]
async fn tenant_suspension_revokes_the_token_and_lifting_it_issues_a_new_service_account() {
    let w = world("sac-suspend", json!({})).await;
    w.alices("k", json!({})).await;
    let before = w.wait_version("k", 1).await.status.unwrap();
    let old = w.token("k-token").await;
    w.assert_authenticates(&old, "k").await;

    w.patch_tenant(json!({"state": "Suspended"})).await;
    let revoked = w.wait_state("k", CredentialState::Revoked).await;
    assert_eq!(World::ready_reason(&revoked), "TenantSuspended");
    wait_gone(&w.accounts, "k", T).await;
    wait_gone(&w.secrets, "k-token", T).await;
    w.assert_rejected(&old).await;
    let events = w.wait_event("k", "Revoked").await;
    assert!(events.iter().any(|(r, _)| r == "Revoked"), "{events:?}");

    w.patch_tenant(json!({"state": "Active"})).await;
    let after = w.wait_version("k", 2).await.status.unwrap();
    assert_ne!(after.service_account_uid, before.service_account_uid);
    let new = w.token("k-token").await;
    w.assert_authenticates(&new, "k").await;
    assert_ne!(
        w.review(&old, Some(AUDIENCE)).await.authenticated,
        Some(true)
    );
    w.assert_never_shown(&[old, new]).await;
    w.cleanup().await;
}

#[tokio::test]
async fn a_rotate_annotation_re_creates_the_service_account_and_only_the_new_token_works() {
    let w = world("sac-rotate", json!({})).await;
    w.alices("k", json!({})).await;
    let before = w.wait_version("k", 1).await.status.unwrap();
    let old = w.token("k-token").await;
    w.assert_authenticates(&old, "k").await;

    let annotate = |v: &str| json!({"metadata": {"annotations": {"keyward.io/rotate": v}}});
    w.sacs
        .patch("k", &PatchParams::default(), &Patch::Merge(annotate("r1")))
        .await
        .unwrap();
    let after = w.wait_version("k", 2).await.status.unwrap();
    assert_eq!(after.last_rotation_request.as_deref(), Some("r1"));
    assert_ne!(after.service_account_uid, before.service_account_uid);
    assert_eq!(
        after.issued_at, before.issued_at,
        "a rotation continues the lineage"
    );
    let account = w.accounts.get("k").await.unwrap();
    assert_eq!(account.uid(), after.service_account_uid);
    let new = w.token("k-token").await;
    w.assert_authenticates(&new, "k").await;
    w.assert_rejected(&old).await;
    let events = w.wait_event("k", "Rotated").await;
    assert!(events.iter().any(|(r, _)| r == "Rotated"), "{events:?}");

    // Any later reconcile (here forced by a label change) does not rotate again.
    w.sacs
        .patch(
            "k",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touch": "1"}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = w.sacs.get("k").await.unwrap().status.unwrap();
    assert_eq!(status.version, Some(2));
    assert_eq!(status.service_account_uid, after.service_account_uid);
    w.assert_never_shown(&[old, new]).await;
    w.cleanup().await;
}

#[tokio::test]
async fn an_existing_service_account_is_refused_and_left_byte_for_byte_intact() {
    let w = world("sac-conflict", json!({})).await;
    let foreign: ServiceAccount = serde_json::from_value(json!({
        "metadata": {"name": "taken", "labels": {"team": "payments"}, "annotations": {"note": "theirs"}},
    }))
    .unwrap();
    let before = w
        .accounts
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    w.alices("k", json!({"serviceAccountName": "taken"})).await;
    let sac = wait_for(&w.sacs, "k", "ServiceAccountConflict", T, |s: &Sac| {
        World::ready_reason(s) == "ServiceAccountConflict"
    })
    .await;
    let status = sac.status.unwrap();
    assert_eq!(status.state, Some(CredentialState::Pending));
    assert_eq!(status.fingerprint, None);
    let events = w.wait_event("k", "Conflict").await;
    assert!(events.iter().any(|(r, _)| r == "Conflict"), "{events:?}");
    assert!(w.secrets.get_opt("k-token").await.unwrap().is_none());
    let after = w.accounts.get("taken").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    assert_eq!(after.metadata.labels, before.metadata.labels);
    assert_eq!(after.metadata.annotations, before.metadata.annotations);
    assert_eq!(
        after.metadata.owner_references,
        before.metadata.owner_references
    );

    // Once the other ServiceAccount is gone, the credential gets one of its own.
    w.accounts
        .delete("taken", &DeleteParams::default())
        .await
        .unwrap();
    w.wait_version("k", 1).await;
    let token = w.token("k-token").await;
    w.assert_authenticates(&token, "taken").await;
    w.cleanup().await;
}

#[tokio::test]
async fn an_owner_outside_the_tenant_is_invalid_and_gets_no_service_account() {
    let w = world("sac-refuse", json!({})).await;
    w.sac(
        "k",
        json!({"tenant": w.tenant, "owner": "mallory", "audiences": [AUDIENCE]}),
    )
    .await;
    let sac = w.wait_state("k", CredentialState::Invalid).await;
    assert_eq!(World::ready_reason(&sac), "OwnerNotInTenant");
    let events = w.wait_event("k", "Refused").await;
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "Refused" && m.contains("OwnerNotInTenant")),
        "{events:?}"
    );
    assert!(w.accounts.get_opt("k").await.unwrap().is_none());
    assert!(w.secrets.get_opt("k-token").await.unwrap().is_none());
    w.cleanup().await;
}

#[tokio::test]
async fn an_integration_counts_its_credentials_and_its_suspension_revokes_them() {
    let w = world("sac-pi", json!({})).await;
    let pis: Api<PartnerIntegration> = Api::namespaced(w.env.client.clone(), &w.env.ns);
    let pi: PartnerIntegration = serde_json::from_value(json!({
        "apiVersion": "keyward.io/v1alpha1", "kind": "PartnerIntegration",
        "metadata": {"name": "pi"},
        "spec": {"tenant": w.tenant, "owner": "alice", "partner": {"name": "Globex"}},
    }))
    .unwrap();
    pis.create(&PostParams::default(), &pi).await.unwrap();
    w.sac("k", json!({"integration": "pi"})).await;
    let sac = w.wait_version("k", 1).await;
    assert_eq!(
        sac.status.unwrap().owner.as_deref(),
        Some("alice"),
        "owner from the integration"
    );
    let token = w.token("k-token").await;
    wait_for(&pis, "pi", "counting it", T, |pi: &PartnerIntegration| {
        pi.status.as_ref().and_then(|s| s.credentials) == Some(1)
    })
    .await;

    pis.patch(
        "pi",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspended": true}})),
    )
    .await
    .unwrap();
    let sac = w.wait_state("k", CredentialState::Revoked).await;
    assert_eq!(World::ready_reason(&sac), "IntegrationSuspended");
    wait_gone(&w.accounts, "k", T).await;
    w.assert_rejected(&token).await;
    w.cleanup().await;
}

#[tokio::test]
async fn deleting_the_credential_garbage_collects_its_service_account_and_secret() {
    let w = world("sac-gc", json!({})).await;
    w.alices("k", json!({})).await;
    w.wait_version("k", 1).await;
    let token = w.token("k-token").await;
    w.sacs
        .delete("k", &DeleteParams::background())
        .await
        .unwrap();
    wait_gone(&w.accounts, "k", T).await;
    wait_gone(&w.secrets, "k-token", T).await;
    w.assert_rejected(&token).await;
    w.cleanup().await;
}

#[tokio::test]
async fn renaming_the_service_account_deletes_the_old_one_and_its_tokens() {
    let w = world("sac-rename", json!({})).await;
    w.alices("k", json!({})).await;
    w.wait_version("k", 1).await;
    let old = w.token("k-token").await;
    w.sacs
        .patch(
            "k",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"serviceAccountName": "k-renamed"}})),
        )
        .await
        .unwrap();
    let sac = w.wait_version("k", 2).await;
    let account = w.accounts.get("k-renamed").await.unwrap();
    assert_eq!(account.uid(), sac.status.unwrap().service_account_uid);
    wait_gone(&w.accounts, "k", T).await;
    let new = w.token("k-token").await;
    w.assert_authenticates(&new, "k-renamed").await;
    w.assert_rejected(&old).await;
    w.cleanup().await;
}

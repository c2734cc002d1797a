//! What to do with a ServiceAccountCredential's ServiceAccount and token at time `t`: create
//! (or re-create) the ServiceAccount, refresh the token, withdraw both, or nothing; and when
//! the next token is due. Pure: the records it reads are the objects' annotations.

use std::collections::BTreeMap;

use base64::Engine;
use chrono::{DateTime, Duration, Utc};

pub use super::credential::{Delivery, PriorRecord};
use super::credential::{Lifecycle, ServedRecord, reason};
use crate::api::Fingerprint;
use crate::api::{CredentialState, GoDuration, labels};

/// Ready reason when a ServiceAccount of that name exists and is not this credential's.
pub const SERVICE_ACCOUNT_CONFLICT: &str = "ServiceAccountConflict";

/// Bookkeeping on the token Secret: which token it serves, so the next reconcile knows
/// when it is due and which ServiceAccount (by UID) it belongs to.
pub const TOKEN_ISSUED_AT: &str = "keyward.io/token-issued-at";
pub const TOKEN_EXPIRES_AT: &str = "keyward.io/token-expires-at";
pub const SERVICE_ACCOUNT_UID: &str = "keyward.io/service-account-uid";
/// Digest of the audiences and lifetime the token was requested with: a spec change to
/// either asks for a new token at once.
pub const TOKEN_REQUEST: &str = "keyward.io/token-request";

/// Default `tokenTTL`.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::hours(1);
/// The API server's shortest token lifetime.
pub const MIN_TOKEN_TTL: Duration = Duration::minutes(10);

/// Lifetime of each token and how long before its expiry it is replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenTiming {
    pub ttl: Duration,
    pub refresh_before: Duration,
}

impl Default for TokenTiming {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_TOKEN_TTL,
            refresh_before: DEFAULT_TOKEN_TTL / 3,
        }
    }
}

impl TokenTiming {
    /// Parses `tokenTTL` and `refreshBefore`, applying their defaults. Admission already
    /// enforces the bounds; they are checked again so a decision never rests on them.
    pub fn from_spec(
        ttl: Option<&GoDuration>,
        refresh_before: Option<&GoDuration>,
    ) -> Result<Self, String> {
        let ttl = match ttl {
            Some(d) => d.parse().map_err(|e| format!("tokenTTL: {e}"))?,
            None => DEFAULT_TOKEN_TTL,
        };
        if ttl < MIN_TOKEN_TTL {
            return Err(format!(
                "tokenTTL {} is shorter than the API server's minimum of 10m",
                super::format_duration(ttl)
            ));
        }
        let refresh_before = match refresh_before {
            Some(d) => d.parse().map_err(|e| format!("refreshBefore: {e}"))?,
            None => ttl / 3,
        };
        if refresh_before <= Duration::zero() || refresh_before >= ttl {
            return Err(format!(
                "refreshBefore {} must be longer than 0s and shorter than tokenTTL {}",
                super::format_duration(refresh_before),
                super::format_duration(ttl)
            ));
        }
        Ok(Self {
            ttl,
            refresh_before,
        })
    }

    /// When a token valid from `issued_at` to `expires_at` is replaced: `refreshBefore`
    /// ahead of its expiry. When the API server granted a shorter lifetime than `tokenTTL`,
    /// `refreshBefore` shrinks in proportion, so a token is never due the moment it arrives.
    pub fn refresh_at(&self, issued_at: DateTime<Utc>, expires_at: DateTime<Utc>) -> DateTime<Utc> {
        let lifetime = expires_at - issued_at;
        if lifetime <= Duration::zero() {
            return issued_at;
        }
        let before = if lifetime < self.ttl {
            let scaled = i128::from(self.refresh_before.num_milliseconds())
                * i128::from(lifetime.num_milliseconds())
                / i128::from(self.ttl.num_milliseconds().max(1));
            Duration::milliseconds(i64::try_from(scaled).unwrap_or(0))
        } else {
            self.refresh_before
        };
        super::earlier(expires_at, before)
    }

    /// Applies the controller's write floor: a refresh period (`tokenTTL` − `refreshBefore`)
    /// shorter than `floor` is lengthened to it by refreshing later. Returns the note for
    /// `PolicyCompliant=False reason=Clamped` when it had to.
    pub fn apply_floor(&mut self, floor: Duration) -> Option<String> {
        let period = self.ttl - self.refresh_before;
        if period >= floor {
            return None;
        }
        let refresh_before = (self.ttl - floor).max(Duration::zero());
        let note = format!(
            "the token refresh period {} is shorter than the controller's minimum, so tokens are refreshed {} before they expire",
            super::format_duration(period),
            super::format_duration(refresh_before)
        );
        self.refresh_before = refresh_before;
        Some(note)
    }

    /// `expirationSeconds` of the TokenRequest.
    pub fn expiration_seconds(&self) -> i64 {
        self.ttl.num_seconds()
    }
}

/// Digest of a token request (lifetime and audiences, in order), recorded with the token.
pub fn request_digest(audiences: &[String], timing: &TokenTiming) -> String {
    let canonical = format!("ttl={}\n{}", timing.ttl.num_seconds(), audiences.join("\n"));
    Fingerprint::of(canonical.as_bytes()).to_string()
}

/// A ServiceAccount this credential created, as its annotations record it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub uid: String,
    pub version: i64,
    /// First issue of the lineage this ServiceAccount continues.
    pub issued_at: DateTime<Utc>,
    /// The `keyward.io/rotate` value this ServiceAccount answered, if any.
    pub rotation_request: Option<String>,
}

/// A ServiceAccount to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAccount {
    pub version: i64,
    pub issued_at: DateTime<Utc>,
    pub rotation_request: Option<String>,
}

impl NewAccount {
    pub fn created(self, uid: String) -> Account {
        Account {
            uid,
            version: self.version,
            issued_at: self.issued_at,
            rotation_request: self.rotation_request,
        }
    }
}

/// The ServiceAccount of that name, as found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountState {
    Absent,
    /// Controlled by this credential.
    Ours(Account),
    /// Exists and is not controlled by this credential: never touched, never given a token.
    Foreign,
}

/// A served token, as the Secret records it (never the token itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub fingerprint: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// UID of the ServiceAccount the token is bound to.
    pub account_uid: String,
    /// [`request_digest`] of the request it answered.
    pub request: String,
}

/// The token Secret, as found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretState {
    Absent,
    /// Controlled by this credential; `None` when its records are unreadable or do not
    /// match the token it holds (a fresh token then replaces it).
    Ours(Option<Token>),
    Foreign,
}

fn parse_time(annotations: &BTreeMap<String, String>, key: &str) -> Option<DateTime<Utc>> {
    annotations
        .get(key)
        .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Reads what a ServiceAccount of ours records. Records that were damaged by hand fall
/// back to what status says, so versions never go back.
pub fn read_account(
    uid: &str,
    annotations: &BTreeMap<String, String>,
    last_version: Option<i64>,
    fallback_issued_at: DateTime<Utc>,
) -> Account {
    Account {
        uid: uid.to_owned(),
        version: annotations
            .get(labels::VERSION)
            .and_then(|v| v.parse::<i64>().ok())
            .or(last_version)
            .unwrap_or(1),
        issued_at: parse_time(annotations, labels::ISSUED_AT).unwrap_or(fallback_issued_at),
        rotation_request: annotations.get(labels::ROTATION_REQUEST).cloned(),
    }
}

/// Reads the token a Secret of ours records; `held` is the fingerprint of the token it
/// actually holds, which must match the record.
pub fn read_token(
    annotations: &BTreeMap<String, String>,
    held: Option<&Fingerprint>,
) -> Option<Token> {
    let fingerprint = annotations.get(labels::FINGERPRINT)?;
    if held?.as_str() != fingerprint {
        return None;
    }
    Some(Token {
        fingerprint: fingerprint.clone(),
        issued_at: parse_time(annotations, TOKEN_ISSUED_AT)?,
        expires_at: parse_time(annotations, TOKEN_EXPIRES_AT)?,
        account_uid: annotations.get(SERVICE_ACCOUNT_UID)?.clone(),
        request: annotations.get(TOKEN_REQUEST)?.clone(),
    })
}

/// What both managed objects carry: owner, version, fingerprint and effective expiry.
fn common_annotations(
    owner: &str,
    version: i64,
    fingerprint: Option<&str>,
    expires_at: Option<DateTime<Utc>>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::from([
        (labels::OWNER.to_owned(), owner.to_owned()),
        (labels::VERSION.to_owned(), version.to_string()),
    ]);
    if let Some(fingerprint) = fingerprint {
        out.insert(labels::FINGERPRINT.to_owned(), fingerprint.to_owned());
    }
    if let Some(at) = expires_at {
        out.insert(labels::EXPIRES_AT.to_owned(), super::format_time(at));
    }
    out
}

/// The annotations a ServiceAccount should carry: the contract's, and the record
/// [`read_account`] reads back.
pub fn account_annotations(
    account: &NewAccount,
    owner: &str,
    fingerprint: Option<&str>,
    expires_at: Option<DateTime<Utc>>,
) -> BTreeMap<String, String> {
    let mut out = common_annotations(owner, account.version, fingerprint, expires_at);
    out.insert(
        labels::ISSUED_AT.to_owned(),
        super::format_time(account.issued_at),
    );
    if let Some(request) = &account.rotation_request {
        out.insert(labels::ROTATION_REQUEST.to_owned(), request.clone());
    }
    out
}

/// The annotations the token Secret should carry: the contract's, and the record
/// [`read_token`] reads back.
pub fn secret_annotations(
    token: &Token,
    version: i64,
    owner: &str,
    expires_at: Option<DateTime<Utc>>,
) -> BTreeMap<String, String> {
    let mut out = common_annotations(owner, version, Some(&token.fingerprint), expires_at);
    out.extend([
        (
            TOKEN_ISSUED_AT.to_owned(),
            super::format_time(token.issued_at),
        ),
        (
            TOKEN_EXPIRES_AT.to_owned(),
            super::format_time(token.expires_at),
        ),
        (SERVICE_ACCOUNT_UID.to_owned(), token.account_uid.clone()),
        (TOKEN_REQUEST.to_owned(), token.request.clone()),
    ]);
    out
}

/// The claims of a ServiceAccount token that keyward checks: the UID of the ServiceAccount
/// it is bound to and when it was issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub account_uid: String,
    pub issued_at: Option<DateTime<Utc>>,
}

/// Reads the claims of a ServiceAccount token (a JWT; the signature is the API server's
/// business, this only reads what it says). `None` when it is not such a token.
pub fn token_claims(token: &str) -> Option<Claims> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let account_uid = claims
        .pointer("/kubernetes.io/serviceaccount/uid")?
        .as_str()?
        .to_owned();
    let issued_at = claims
        .get("iat")
        .and_then(serde_json::Value::as_i64)
        .and_then(|s| DateTime::from_timestamp(s, 0));
    Some(Claims {
        account_uid,
        issued_at,
    })
}

/// The write to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SacAction {
    /// The served token is current.
    Keep,
    /// Request a new token for the current ServiceAccount.
    Refresh,
    /// Create the ServiceAccount, after deleting the current one if there is one (which
    /// kills every token issued for it), and request a token for the new one.
    Create(NewAccount),
    /// No token may be served: delete the ServiceAccount, then the Secret (each only if
    /// this credential controls it).
    Withdraw,
}

/// The inputs of a ServiceAccountCredential besides its lifecycle and its objects.
#[derive(Clone, Debug, Default)]
pub struct PlanInput<'a> {
    pub timing: TokenTiming,
    /// [`request_digest`] of the token the spec asks for.
    pub request: &'a str,
    /// Current value of the `keyward.io/rotate` annotation.
    pub rotate_annotation: Option<&'a str>,
    /// `status.lastRotationRequest`.
    pub last_rotation_request: Option<&'a str>,
    /// `status.version` (survives withdrawal, so versions never go back).
    pub last_version: Option<i64>,
    /// `status.issuedAt` while the last status was Active: a ServiceAccount that has gone
    /// missing since (deleted by hand, or by a rotation that died half way) is re-created
    /// in the same lineage.
    pub lineage: Option<DateTime<Utc>>,
}

/// The decision for one ServiceAccountCredential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SacPlan {
    pub lifecycle: Lifecycle,
    pub action: SacAction,
    /// The rotation request answered, for `status.lastRotationRequest`.
    pub last_rotation_request: Option<String>,
}

/// Plans the ServiceAccount and its token. A ServiceAccount is re-created once for each
/// new value of the rotate annotation; the value is recorded on the new ServiceAccount, so
/// a reconcile that died after creating it does not create another.
pub fn plan(
    mut lifecycle: Lifecycle,
    account: &AccountState,
    secret: &SecretState,
    input: &PlanInput<'_>,
    now: DateTime<Utc>,
) -> SacPlan {
    if lifecycle.is_active() {
        let conflict = match (account, secret) {
            (AccountState::Foreign, _) => Some((
                SERVICE_ACCOUNT_CONFLICT,
                "a ServiceAccount of that name exists and is not controlled by this ServiceAccountCredential; it is left untouched and no token is issued for it",
            )),
            (_, SecretState::Foreign) => Some((
                reason::SECRET_CONFLICT,
                "a Secret of that name exists and is not controlled by this ServiceAccountCredential; it is left untouched",
            )),
            _ => None,
        };
        if let Some((why, message)) = conflict {
            lifecycle.state = CredentialState::Pending;
            lifecycle.reason = why.to_owned();
            lifecycle.message = message.to_owned();
            // The expiry still comes due: a conflicted credential turns Expired on time.
        }
    }
    let mut out = SacPlan {
        lifecycle,
        action: SacAction::Keep,
        last_rotation_request: input.last_rotation_request.map(str::to_owned),
    };

    if !out.lifecycle.is_active() {
        // Tokens issued earlier die with their ServiceAccount; the Secret goes with it.
        if matches!(account, AccountState::Ours(_)) || matches!(secret, SecretState::Ours(_)) {
            out.action = SacAction::Withdraw;
        }
        return out;
    }

    let request = input.rotate_annotation.map(str::to_owned);
    let current = match account {
        AccountState::Ours(current) => current,
        _ => {
            let version = input.last_version.unwrap_or(0).saturating_add(1);
            // A new ServiceAccount answers whatever rotation request stands.
            let rotation_request = request.or(out.last_rotation_request.clone());
            out.last_rotation_request = rotation_request.clone();
            out.action = SacAction::Create(NewAccount {
                version,
                issued_at: input.lineage.unwrap_or(now),
                rotation_request,
            });
            return out;
        }
    };
    if current.rotation_request.is_some() {
        out.last_rotation_request = current.rotation_request.clone();
    }

    let answered = |r: &String| {
        Some(r.as_str()) == current.rotation_request.as_deref()
            || Some(r.as_str()) == input.last_rotation_request
    };
    if let Some(request) = request.filter(|r| !answered(r)) {
        let version = current
            .version
            .max(input.last_version.unwrap_or(0))
            .saturating_add(1);
        out.last_rotation_request = Some(request.clone());
        out.action = SacAction::Create(NewAccount {
            version,
            issued_at: current.issued_at,
            rotation_request: Some(request),
        });
        return out;
    }

    let current_token = match secret {
        SecretState::Ours(Some(token)) => Some(token),
        _ => None,
    };
    let fresh = current_token.is_some_and(|token| {
        token.account_uid == current.uid
            && token.request == input.request
            && now < input.timing.refresh_at(token.issued_at, token.expires_at)
    });
    if !fresh {
        out.action = SacAction::Refresh;
    }
    out
}

/// When the served token is replaced and when to look again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub next_refresh_at: Option<DateTime<Utc>>,
    pub next_due: Option<DateTime<Utc>>,
}

/// Schedules the next pass once the token served is known.
pub fn schedule(
    lifecycle: &Lifecycle,
    token: Option<&Token>,
    timing: &TokenTiming,
    now: DateTime<Utc>,
) -> Schedule {
    let next_refresh_at = token
        .filter(|_| lifecycle.is_active())
        .map(|t| timing.refresh_at(t.issued_at, t.expires_at));
    let next_due =
        super::earliest_time([lifecycle.next_due, next_refresh_at]).map(|due| due.max(now));
    Schedule {
        next_refresh_at,
        next_due,
    }
}

/// What serving `token` of `account` means against the last status.
pub fn delivery(prior: &PriorRecord<'_>, account: &Account, token: &Token) -> Option<Delivery> {
    super::credential::delivery(
        prior,
        &ServedRecord {
            version: account.version,
            issued_at: account.issued_at,
            fingerprint: &token.fingerprint,
            rotation_request: account.rotation_request.as_deref(),
        },
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;
    use crate::api::Tenant;
    use crate::policy::credential::{CredentialInput, CredentialSpec, PriorOwner, decide};
    use crate::policy::tenancy::Tenancy;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap()
    }

    fn tenancy(state: &str) -> Tenancy {
        let tenant: Tenant = serde_json::from_value(json!({
            "apiVersion": "keyward.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": "acme"},
            "spec": {"namespaces": ["acme-prod"], "owners": [{"name": "alice", "kind": "User"}], "state": state},
        }))
        .unwrap();
        Tenancy::new([&tenant])
    }

    fn lifecycle(state: &str, now: DateTime<Utc>) -> Lifecycle {
        let t = tenancy(state);
        let spec = CredentialSpec {
            tenant: Some("acme".into()),
            owner: Some("alice".into()),
            ..Default::default()
        };
        decide(&CredentialInput {
            namespace: "acme-prod",
            generation: 1,
            spec: &spec,
            integration: None,
            tenancy: &t,
            observed_generation: None,
            renewed_at: None,
            prior_owner: PriorOwner::default(),
            now,
        })
    }

    fn active(now: DateTime<Utc>) -> Lifecycle {
        lifecycle("Active", now)
    }

    fn account(version: i64) -> Account {
        Account {
            uid: format!("uid-{version}"),
            version,
            issued_at: t0(),
            rotation_request: None,
        }
    }

    const REQUEST: &str = "sha256:0123456789abcdef";

    fn token(account: &Account, issued_at: DateTime<Utc>) -> Token {
        Token {
            fingerprint: format!("sha256:{}-{:x}", account.uid, issued_at.timestamp()),
            issued_at,
            expires_at: issued_at + Duration::hours(1),
            account_uid: account.uid.clone(),
            request: REQUEST.into(),
        }
    }

    fn input<'a>() -> PlanInput<'a> {
        PlanInput {
            request: REQUEST,
            ..Default::default()
        }
    }

    #[test]
    fn a_refresh_period_below_the_floor_is_lengthened_and_reported() {
        let mut t = TokenTiming::from_spec(Some(&"10m".into()), Some(&"9m59s".into())).unwrap();
        let note = t.apply_floor(Duration::minutes(1)).expect("clamped");
        assert!(note.contains("1s"), "{note}");
        assert_eq!(t.ttl - t.refresh_before, Duration::minutes(1));
        assert_eq!(t.apply_floor(Duration::minutes(1)), None);
        // A floor longer than the lifetime refreshes at expiry, never before issue.
        t.apply_floor(Duration::hours(2));
        assert_eq!(t.refresh_before, Duration::zero());
    }

    #[test]
    fn timing_defaults_to_one_hour_refreshed_twenty_minutes_ahead() {
        let t = TokenTiming::from_spec(None, None).unwrap();
        assert_eq!(t.ttl, Duration::hours(1));
        assert_eq!(t.refresh_before, Duration::minutes(20));
        assert_eq!(t.expiration_seconds(), 3600);
        let t = TokenTiming::from_spec(Some(&"90m".into()), None).unwrap();
        assert_eq!(t.refresh_before, Duration::minutes(30));
    }

    #[test]
    fn timing_out_of_bounds_is_refused() {
        assert!(TokenTiming::from_spec(Some(&"5m".into()), None).is_err());
        assert!(TokenTiming::from_spec(Some(&"10m".into()), Some(&"10m".into())).is_err());
        assert!(TokenTiming::from_spec(None, Some(&"0s".into())).is_err());
        assert!(TokenTiming::from_spec(None, Some(&"1x".into())).is_err());
    }

    #[test]
    fn a_token_is_refreshed_refresh_before_ahead_of_its_expiry() {
        let t = TokenTiming::from_spec(Some(&"10m".into()), Some(&"9m55s".into())).unwrap();
        let issued = t0();
        assert_eq!(
            t.refresh_at(issued, issued + Duration::minutes(10)),
            issued + Duration::seconds(5)
        );
    }

    #[test]
    fn a_shorter_lifetime_from_the_api_server_shrinks_refresh_before_in_proportion() {
        let t = TokenTiming::from_spec(Some(&"2h".into()), Some(&"90m".into())).unwrap();
        let issued = t0();
        // Granted 1h instead of 2h: refreshed 45m ahead, not 90m (which would be before issue).
        assert_eq!(
            t.refresh_at(issued, issued + Duration::hours(1)),
            issued + Duration::minutes(15)
        );
        // A longer lifetime than asked keeps refreshBefore as written.
        assert_eq!(
            t.refresh_at(issued, issued + Duration::hours(3)),
            issued + Duration::minutes(90)
        );
    }

    #[test]
    fn the_request_digest_changes_with_audiences_and_lifetime() {
        let one = TokenTiming::default();
        let two = TokenTiming::from_spec(Some(&"2h".into()), None).unwrap();
        let a = vec!["https://a.example".to_owned()];
        let b = vec!["https://b.example".to_owned()];
        assert_eq!(request_digest(&a, &one), request_digest(&a, &one));
        assert_ne!(request_digest(&a, &one), request_digest(&b, &one));
        assert_ne!(request_digest(&a, &one), request_digest(&a, &two));
        assert_ne!(request_digest(&a, &one), request_digest(&[], &one));
    }

    #[test]
    fn a_first_issue_creates_version_one() {
        let p = plan(
            active(t0()),
            &AccountState::Absent,
            &SecretState::Absent,
            &input(),
            t0(),
        );
        assert_eq!(
            p.action,
            SacAction::Create(NewAccount {
                version: 1,
                issued_at: t0(),
                rotation_request: None
            })
        );
    }

    #[test]
    fn a_current_token_is_kept_until_its_refresh_time() {
        let acc = account(1);
        let tok = token(&acc, t0());
        let refresh = TokenTiming::default().refresh_at(tok.issued_at, tok.expires_at);
        let keep = plan(
            active(refresh - Duration::seconds(1)),
            &AccountState::Ours(acc.clone()),
            &SecretState::Ours(Some(tok.clone())),
            &input(),
            refresh - Duration::seconds(1),
        );
        assert_eq!(keep.action, SacAction::Keep);
        let due = plan(
            active(refresh),
            &AccountState::Ours(acc),
            &SecretState::Ours(Some(tok.clone())),
            &input(),
            refresh,
        );
        assert_eq!(due.action, SacAction::Refresh);
        let s = schedule(&keep.lifecycle, Some(&tok), &TokenTiming::default(), t0());
        assert_eq!(s.next_refresh_at, Some(t0() + Duration::minutes(40)));
        assert_eq!(s.next_due, Some(t0() + Duration::minutes(40)));
    }

    #[test]
    fn a_token_of_another_service_account_or_request_or_none_is_replaced() {
        let acc = account(2);
        let mut other_uid = token(&acc, t0());
        other_uid.account_uid = "uid-1".into();
        let mut other_request = token(&acc, t0());
        other_request.request = "sha256:ffffffffffffffff".into();
        for secret in [
            SecretState::Absent,
            SecretState::Ours(None),
            SecretState::Ours(Some(other_uid)),
            SecretState::Ours(Some(other_request)),
        ] {
            let p = plan(
                active(t0()),
                &AccountState::Ours(acc.clone()),
                &secret,
                &input(),
                t0(),
            );
            assert_eq!(p.action, SacAction::Refresh, "{secret:?}");
        }
    }

    #[test]
    fn a_rotate_annotation_value_re_creates_the_service_account_once() {
        let acc = account(1);
        let rot = PlanInput {
            rotate_annotation: Some("r1"),
            last_version: Some(1),
            ..input()
        };
        let p = plan(
            active(t0()),
            &AccountState::Ours(acc.clone()),
            &SecretState::Ours(Some(token(&acc, t0()))),
            &rot,
            t0(),
        );
        assert_eq!(
            p.action,
            SacAction::Create(NewAccount {
                version: 2,
                issued_at: t0(),
                rotation_request: Some("r1".into())
            })
        );
        assert_eq!(p.last_rotation_request.as_deref(), Some("r1"));

        // The pass died after creating the new ServiceAccount: the next one only finishes it.
        let new = Account {
            uid: "uid-2".into(),
            version: 2,
            issued_at: t0(),
            rotation_request: Some("r1".into()),
        };
        let p = plan(
            active(t0()),
            &AccountState::Ours(new.clone()),
            &SecretState::Ours(Some(token(&acc, t0()))),
            &rot,
            t0(),
        );
        assert_eq!(p.action, SacAction::Refresh);
        assert_eq!(p.last_rotation_request.as_deref(), Some("r1"));

        // Once served and recorded, the same value does nothing.
        let answered = PlanInput {
            last_rotation_request: Some("r1"),
            last_version: Some(2),
            ..rot.clone()
        };
        let p = plan(
            active(t0()),
            &AccountState::Ours(new.clone()),
            &SecretState::Ours(Some(token(&new, t0()))),
            &answered,
            t0(),
        );
        assert_eq!(p.action, SacAction::Keep);
    }

    #[test]
    fn a_rotation_that_died_after_deleting_the_account_continues_the_lineage() {
        let rot = PlanInput {
            rotate_annotation: Some("r1"),
            last_version: Some(1),
            lineage: Some(t0()),
            ..input()
        };
        let now = t0() + Duration::minutes(5);
        let p = plan(
            active(now),
            &AccountState::Absent,
            &SecretState::Ours(Some(token(&account(1), t0()))),
            &rot,
            now,
        );
        assert_eq!(
            p.action,
            SacAction::Create(NewAccount {
                version: 2,
                issued_at: t0(),
                rotation_request: Some("r1".into())
            })
        );
    }

    #[test]
    fn a_foreign_service_account_is_a_conflict_and_is_left_alone() {
        let p = plan(
            active(t0()),
            &AccountState::Foreign,
            &SecretState::Absent,
            &input(),
            t0(),
        );
        assert_eq!(p.action, SacAction::Keep);
        assert_eq!(p.lifecycle.state, CredentialState::Pending);
        assert_eq!(p.lifecycle.reason, SERVICE_ACCOUNT_CONFLICT);
        // A Secret of ours left from before is withdrawn; the foreign ServiceAccount is not.
        let p = plan(
            active(t0()),
            &AccountState::Foreign,
            &SecretState::Ours(None),
            &input(),
            t0(),
        );
        assert_eq!(p.action, SacAction::Withdraw);
    }

    #[test]
    fn a_foreign_secret_is_a_conflict() {
        let p = plan(
            active(t0()),
            &AccountState::Absent,
            &SecretState::Foreign,
            &input(),
            t0(),
        );
        assert_eq!(p.action, SacAction::Keep);
        assert_eq!(p.lifecycle.reason, reason::SECRET_CONFLICT);
    }

    #[test]
    fn an_inactive_credential_withdraws_and_reissues_with_a_higher_version() {
        let acc = account(3);
        let p = plan(
            lifecycle("Suspended", t0()),
            &AccountState::Ours(acc.clone()),
            &SecretState::Ours(Some(token(&acc, t0()))),
            &input(),
            t0(),
        );
        assert_eq!(p.action, SacAction::Withdraw);
        assert_eq!(p.lifecycle.state, CredentialState::Revoked);
        let p = plan(
            lifecycle("Suspended", t0()),
            &AccountState::Absent,
            &SecretState::Absent,
            &input(),
            t0(),
        );
        assert_eq!(p.action, SacAction::Keep);

        let later = t0() + Duration::hours(1);
        let back = PlanInput {
            last_version: Some(3),
            ..input()
        };
        let p = plan(
            active(later),
            &AccountState::Absent,
            &SecretState::Absent,
            &back,
            later,
        );
        assert_eq!(
            p.action,
            SacAction::Create(NewAccount {
                version: 4,
                issued_at: later,
                rotation_request: None
            })
        );
    }

    #[test]
    fn records_round_trip_through_annotations() {
        let new = NewAccount {
            version: 7,
            issued_at: t0(),
            rotation_request: Some("r".into()),
        };
        let ann = account_annotations(&new, "alice", Some("sha256:00"), Some(t0()));
        assert_eq!(ann[labels::EXPIRES_AT], "2026-11-23T10:00:00Z");
        assert_eq!(
            read_account("u", &ann, None, t0() + Duration::days(1)),
            new.clone().created("u".into())
        );
        let acc = new.created("u".into());
        let tok = token(&acc, t0());
        let ann = secret_annotations(&tok, 7, "alice", None);
        assert!(!ann.contains_key(labels::EXPIRES_AT));
        assert_eq!(ann[labels::VERSION], "7");
        let held = Fingerprint::of(b"x");
        assert_eq!(read_token(&ann, Some(&held)), None, "record does not match");
        let mut matching = ann.clone();
        matching.insert(labels::FINGERPRINT.into(), held.to_string());
        let read = read_token(&matching, Some(&held)).unwrap();
        assert_eq!(read.expires_at, tok.expires_at);
        assert_eq!(read.account_uid, "u");
    }

    #[test]
    fn damaged_account_records_fall_back_to_status() {
        let acc = read_account("u", &BTreeMap::new(), Some(4), t0());
        assert_eq!((acc.version, acc.issued_at), (4, t0()));
    }

    #[test]
    fn claims_name_the_bound_service_account() {
        let payload = json!({"iat": 1_795_000_000, "kubernetes.io": {"serviceaccount": {"name": "x", "uid": "abc"}}});
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let jwt = format!(
            "{}.{}.sig",
            b64.encode(b"{}"),
            b64.encode(payload.to_string())
        );
        let claims = token_claims(&jwt).unwrap();
        assert_eq!(claims.account_uid, "abc");
        assert_eq!(claims.issued_at, DateTime::from_timestamp(1_795_000_000, 0));
        assert_eq!(token_claims("not-a-jwt"), None);
    }

    #[test]
    fn delivery_tells_issue_rotation_and_refresh_apart() {
        let acc = account(1);
        let tok = token(&acc, t0());
        let none = PriorRecord::default();
        assert_eq!(
            delivery(&none, &acc, &tok),
            Some(Delivery::Issued { version: 1 })
        );
        let served = PriorRecord {
            active: true,
            issued_at: Some(t0()),
            version: Some(1),
            fingerprint: Some(&tok.fingerprint),
            last_rotation_request: None,
        };
        assert_eq!(delivery(&served, &acc, &tok), None);
        let later = token(&acc, t0() + Duration::minutes(40));
        assert_eq!(
            delivery(&served, &acc, &later),
            Some(Delivery::Refreshed { version: 1 })
        );
        let mut rotated = account(2);
        rotated.rotation_request = Some("r1".into());
        assert_eq!(
            delivery(&served, &rotated, &token(&rotated, t0())),
            Some(Delivery::Rotated {
                version: 2,
                requested: true
            })
        );
        assert_eq!(
            delivery(&served, &account(2), &token(&account(2), t0())),
            Some(Delivery::Rotated {
                version: 2,
                requested: false
            })
        );
    }
}

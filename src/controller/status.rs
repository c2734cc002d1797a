//! Conditions and times at the boundary with Kubernetes' own types: a condition keeps its
//! `lastTransitionTime` unless its status changes, so an unchanged status is byte-equal
//! and is never written again.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::policy::credential::{OwnerBinding, PriorOwner, Verdict, reason};

/// Writes the whole `status` of `name` with server-side apply on the status subresource,
/// under keyward's field manager: the one way every controller writes status.
pub async fn apply_status<K>(
    api: &kube::Api<K>,
    name: &str,
    status: &impl serde::Serialize,
) -> Result<K, kube::Error>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    let params = kube::api::PatchParams::apply(super::context::FIELD_MANAGER).force();
    api.patch_status(name, &params, &kube::api::Patch::Apply(&patch))
        .await
}

pub use crate::runtime::{from_k8s_time, to_k8s_time};

pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Builds a condition from a verdict, keeping the prior transition time when the status
/// did not change.
pub fn condition(
    type_: &str,
    verdict: &Verdict,
    generation: Option<i64>,
    prior: &[Condition],
    now: DateTime<Utc>,
) -> Condition {
    let status = if verdict.status { "True" } else { "False" };
    let last_transition_time = match find(prior, type_) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => to_k8s_time(now),
    };
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: verdict.reason.clone(),
        message: bounded(&verdict.message),
        observed_generation: generation,
        last_transition_time,
    }
}

/// The longest condition message written, in characters: far below the 32 KiB that
/// `metav1.Condition` admits, so a message listing a long parent cycle or many namespace
/// conflicts never makes a status write fail.
pub const MAX_MESSAGE: usize = 2048;

fn bounded(message: &str) -> String {
    if message.chars().count() <= MAX_MESSAGE {
        return message.to_owned();
    }
    let mut out: String = message.chars().take(MAX_MESSAGE - 1).collect();
    out.push('…');
    out
}

/// The owner binding the last status recorded, from its `OwnerBound` condition: the grace
/// clock of a missing owner is that condition's transition time.
pub fn prior_owner(conditions: &[Condition], owner: Option<&str>) -> PriorOwner {
    let binding =
        find(conditions, "OwnerBound").map(|c| match (c.status.as_str(), c.reason.as_str()) {
            ("True", _) => OwnerBinding::Bound,
            ("False", reason::OWNER_MISSING) => OwnerBinding::Missing {
                since: from_k8s_time(&c.last_transition_time),
            },
            _ => OwnerBinding::NotInTenant,
        });
    PriorOwner {
        owner: owner.map(str::to_owned),
        binding,
    }
}

/// The current time, truncated to milliseconds so times round-trip through RFC 3339 text.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_survives_a_change_of_message_but_not_of_status() {
        let t1 = DateTime::from_timestamp(1_000, 0).unwrap();
        let t2 = DateTime::from_timestamp(2_000, 0).unwrap();
        let first = condition(
            "Ready",
            &Verdict::new(true, "Active", "a"),
            Some(1),
            &[],
            t1,
        );
        let same = condition(
            "Ready",
            &Verdict::new(true, "Active", "b"),
            Some(2),
            std::slice::from_ref(&first),
            t2,
        );
        assert_eq!(same.last_transition_time, first.last_transition_time);
        let flipped = condition(
            "Ready",
            &Verdict::new(false, "Expired", "c"),
            Some(2),
            &[first],
            t2,
        );
        assert_eq!(from_k8s_time(&flipped.last_transition_time), t2);
    }

    #[test]
    fn long_messages_are_cut_to_a_bounded_length() {
        let long = "é".repeat(MAX_MESSAGE * 3);
        let c = condition(
            "Ready",
            &Verdict::new(false, "X", long),
            None,
            &[],
            DateTime::UNIX_EPOCH,
        );
        assert_eq!(c.message.chars().count(), MAX_MESSAGE);
        assert!(c.message.ends_with('…'));
    }

    #[test]
    fn times_round_trip_between_chrono_and_kubernetes() {
        let t = DateTime::from_timestamp_millis(1_795_000_000_123).unwrap();
        assert_eq!(from_k8s_time(&to_k8s_time(t)), t);
    }
}

//! `keyward rotate`: asks for one rotation of an ApiKey or ServiceAccountCredential by
//! setting its `keyward.io/rotate` annotation to the current time.

use std::process::ExitCode;

use chrono::{DateTime, SecondsFormat, Utc};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};
use serde_json::json;

use crate::api::labels::ROTATE;
use crate::api::{ApiKey, ServiceAccountCredential};

/// The field manager of the annotation, so server-side apply users see who set it.
pub const FIELD_MANAGER: &str = "keyward-rotate";

/// A credential kind that can be rotated on request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    ApiKey,
    ServiceAccountCredential,
}

impl Kind {
    /// `apikey.keyward.io`, as kubectl names a resource in its output.
    pub fn resource(self) -> &'static str {
        match self {
            Self::ApiKey => "apikey.keyward.io",
            Self::ServiceAccountCredential => "serviceaccountcredential.keyward.io",
        }
    }
}

/// What to rotate: `KIND/NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub kind: Kind,
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("{0:?} is not KIND/NAME: expected e.g. ak/globex-api-key or sac/globex-reader")]
    Syntax(String),
    #[error("unknown kind {0:?}: expected ak, apikey, sac or serviceaccountcredential")]
    UnknownKind(String),
    #[error("{resource}/{name} not found in namespace {namespace}")]
    NotFound {
        resource: &'static str,
        name: String,
        namespace: String,
    },
    #[error("connecting to the cluster: {0}")]
    Connect(#[source] kube::Error),
    #[error("starting the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("{resource}/{name}: {source}")]
    Api {
        resource: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Parses `KIND/NAME`, taking the kinds as kubectl would: short name, singular, plural,
/// with or without the group, in any case.
pub fn parse_target(text: &str) -> Result<Target, RotateError> {
    let Some((kind, name)) = text.split_once('/') else {
        return Err(RotateError::Syntax(text.to_owned()));
    };
    if name.is_empty() || name.contains('/') {
        return Err(RotateError::Syntax(text.to_owned()));
    }
    let lower = kind.to_ascii_lowercase();
    let bare = lower.strip_suffix(".keyward.io").unwrap_or(&lower);
    let kind = match bare {
        "ak" | "apikey" | "apikeys" => Kind::ApiKey,
        "sac" | "serviceaccountcredential" | "serviceaccountcredentials" => {
            Kind::ServiceAccountCredential
        }
        _ => return Err(RotateError::UnknownKind(kind.to_owned())),
    };
    Ok(Target {
        kind,
        name: name.to_owned(),
    })
}

/// The annotation value for a request made at `now`: RFC 3339 UTC with milliseconds, so two
/// requests in the same second are still two different values (two rotations).
pub fn request_value(now: DateTime<Utc>) -> String {
    now.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The merge patch that sets the annotation and nothing else.
pub fn patch(value: &str) -> serde_json::Value {
    json!({"metadata": {"annotations": {ROTATE: value}}})
}

/// Sets the annotation on the target in `namespace`; returns the line to print.
pub async fn rotate(
    client: Client,
    target: &Target,
    namespace: &str,
    now: DateTime<Utc>,
) -> Result<String, RotateError> {
    let value = request_value(now);
    match target.kind {
        Kind::ApiKey => apply::<ApiKey>(client, target, namespace, &value).await?,
        Kind::ServiceAccountCredential => {
            apply::<ServiceAccountCredential>(client, target, namespace, &value).await?
        }
    }
    Ok(format!(
        "{}/{} rotation requested ({ROTATE}={value})",
        target.kind.resource(),
        target.name
    ))
}

async fn apply<K>(
    client: Client,
    target: &Target,
    namespace: &str,
    value: &str,
) -> Result<(), RotateError>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client, namespace);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    // A merge patch on a missing object fails with 404 instead of creating it.
    match api
        .patch(&target.name, &params, &Patch::Merge(patch(value)))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Err(RotateError::NotFound {
            resource: target.kind.resource(),
            name: target.name.clone(),
            namespace: namespace.to_owned(),
        }),
        Err(source) => Err(RotateError::Api {
            resource: target.kind.resource(),
            name: target.name.clone(),
            source,
        }),
    }
}

/// `keyward rotate`: exit code 0 when the request was recorded, 1 otherwise.
pub fn cli(target: &str, namespace: Option<String>) -> ExitCode {
    let result = parse_target(target).and_then(|target| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RotateError::Runtime)?;
        runtime.block_on(async {
            let client = Client::try_default().await.map_err(RotateError::Connect)?;
            let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_owned());
            rotate(client, &target, &namespace, Utc::now()).await
        })
    });
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("keyward rotate: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_named_as_kubectl_names_them() {
        for text in ["ak/x", "apikey/x", "ApiKeys/x", "apikey.keyward.io/x"] {
            assert_eq!(parse_target(text).unwrap().kind, Kind::ApiKey, "{text}");
        }
        for text in [
            "sac/x",
            "serviceaccountcredential/x",
            "serviceaccountcredentials.keyward.io/x",
        ] {
            assert_eq!(
                parse_target(text).unwrap().kind,
                Kind::ServiceAccountCredential,
                "{text}"
            );
        }
        assert_eq!(parse_target("ak/globex").unwrap().name, "globex");
    }

    #[test]
    fn unknown_kinds_and_malformed_targets_are_refused() {
        assert!(
            matches!(parse_target("secret/x"), Err(RotateError::UnknownKind(k)) if k == "secret")
        );
        for text in ["ak", "ak/", "ak/x/y"] {
            assert!(
                matches!(parse_target(text), Err(RotateError::Syntax(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn request_values_are_rfc3339_utc_and_differ_within_a_second() {
        let t: DateTime<Utc> = "2026-11-23T10:00:00.250Z".parse().unwrap();
        assert_eq!(request_value(t), "2026-11-23T10:00:00.250Z");
        let later = t + chrono::Duration::milliseconds(1);
        assert_ne!(request_value(t), request_value(later));
        assert_eq!(
            patch("v"),
            json!({"metadata": {"annotations": {"keyward.io/rotate": "v"}}})
        );
    }
}

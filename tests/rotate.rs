//! `keyward rotate` on the local control plane: the built binary, pointed at the plane by
//! `KUBECONFIG`, sets `keyward.io/rotate` on an ApiKey (no operator needed to see it).

mod support;

use std::process::{Command, Output};

use chrono::{DateTime, Utc};
use keyward::api::ApiKey;
use kube::api::{Api, PostParams};
use serde_json::json;
use support::TestEnv;

fn rotate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyward"))
        .arg("rotate")
        .args(args)
        .env("KUBECONFIG", support::kubeconfig_path())
        .output()
        .expect("running keyward rotate")
}

async fn create_key(env: &TestEnv, name: &str) -> Api<ApiKey> {
    let keys: Api<ApiKey> = Api::namespaced(env.client.clone(), &env.ns);
    let key: ApiKey = serde_json::from_value(json!({
        "apiVersion": "keyward.io/v1alpha1", "kind": "ApiKey",
        "metadata": {"name": name},
        "spec": {"tenant": "nobody", "owner": "alice"},
    }))
    .expect("an ApiKey");
    keys.create(&PostParams::default(), &key)
        .await
        .expect("creating the ApiKey");
    keys
}

#[tokio::test]
async fn rotate_sets_the_annotation_to_the_current_time() {
    let env = TestEnv::new("rotate").await;
    let keys = create_key(&env, "webhook-key").await;
    let before = Utc::now();

    let out = rotate(&["ak/webhook-key", "-n", &env.ns]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let key = keys.get("webhook-key").await.expect("the ApiKey");
    let value = key
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("keyward.io/rotate"))
        .expect("keyward.io/rotate is set")
        .clone();
    let at: DateTime<Utc> = DateTime::parse_from_rfc3339(&value)
        .expect("an RFC 3339 time")
        .with_timezone(&Utc);
    assert!(value.ends_with('Z'), "{value} is not UTC");
    assert!(
        at >= before - chrono::Duration::seconds(1) && at <= Utc::now(),
        "{value} is not the current time"
    );
    assert_eq!(
        stdout.trim(),
        format!("apikey.keyward.io/webhook-key rotation requested (keyward.io/rotate={value})")
    );
    let managers: Vec<String> = key
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.contains(&"keyward-rotate".to_owned()),
        "{managers:?}"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn a_second_request_takes_a_new_value() {
    let env = TestEnv::new("rotate").await;
    let keys = create_key(&env, "twice").await;
    let read = |key: ApiKey| {
        key.metadata
            .annotations
            .and_then(|a| a.get("keyward.io/rotate").cloned())
            .expect("keyward.io/rotate is set")
    };
    assert!(
        rotate(&["apikey/twice", "--namespace", &env.ns])
            .status
            .success()
    );
    let first = read(keys.get("twice").await.expect("the ApiKey"));
    assert!(
        rotate(&["apikey/twice", "--namespace", &env.ns])
            .status
            .success()
    );
    let second = read(keys.get("twice").await.expect("the ApiKey"));
    assert_ne!(
        first, second,
        "each request must be a value not seen before"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn a_missing_object_exits_1() {
    let env = TestEnv::new("rotate").await;
    let out = rotate(&["sac/nothing-here", "-n", &env.ns]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "serviceaccountcredential.keyward.io/nothing-here not found in namespace {}",
            env.ns
        )),
        "{stderr}"
    );
    env.cleanup().await;
}

#[test]
fn an_unknown_kind_exits_1() {
    // Refused before any connection is made, so no plane is needed.
    let out = rotate(&["secret/x", "-n", "default"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown kind \"secret\""), "{stderr}");
}

#[tokio::test]
async fn the_namespace_defaults_to_the_kubeconfigs() {
    let env = TestEnv::new("rotate").await;
    let keys = create_key(&env, "defaulted").await;
    // The plane's kubeconfig, with the test's namespace as its context's namespace.
    let mut config = kube::config::Kubeconfig::read_from(support::kubeconfig_path())
        .expect("the plane's kubeconfig");
    for context in &mut config.contexts {
        if let Some(context) = context.context.as_mut() {
            context.namespace = Some(env.ns.clone());
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        serde_json::to_string(&config).expect("kubeconfig serializes"),
    )
    .expect("writing the kubeconfig");

    let out = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["rotate", "ak/defaulted"])
        .env("KUBECONFIG", &path)
        .output()
        .expect("running keyward rotate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = keys.get("defaulted").await.expect("the ApiKey");
    assert!(
        key.metadata
            .annotations
            .is_some_and(|a| a.contains_key("keyward.io/rotate")),
        "annotation not set in the kubeconfig's namespace"
    );
    env.cleanup().await;
}

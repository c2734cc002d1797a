//! The CRDs on the real control plane: established, admitting every example, rejecting
//! invalid specs with a message a user understands, and serving the printer columns,
//! short names, categories, field selectors and `kubectl explain` of the contract.

mod support;

use std::collections::BTreeSet;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use keyward::api::{ApiKey, PartnerIntegration, ServiceAccountCredential, Tenant};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use support::{TestEnv, kubectl_ok};

/// The ApiResource of a keyward kind, by kind name.
fn resource(kind: &str) -> Option<ApiResource> {
    Some(match kind {
        "Tenant" => ApiResource::erase::<Tenant>(&()),
        "PartnerIntegration" => ApiResource::erase::<PartnerIntegration>(&()),
        "ApiKey" => ApiResource::erase::<ApiKey>(&()),
        "ServiceAccountCredential" => ApiResource::erase::<ServiceAccountCredential>(&()),
        _ => return None,
    })
}

/// Creates `object` with a server-side dry run (nothing is stored), in `ns` when namespaced.
async fn dry_run_create(env: &TestEnv, mut object: DynamicObject) -> Result<(), kube::Error> {
    let kind = object
        .types
        .as_ref()
        .map(|t| t.kind.clone())
        .unwrap_or_default();
    let ar = resource(&kind).unwrap_or_else(|| panic!("not a keyward kind: {kind}"));
    let api: Api<DynamicObject> = if kind == "Tenant" {
        object.metadata.namespace = None;
        Api::all_with(env.client.clone(), &ar)
    } else {
        object.metadata.namespace = Some(env.ns.clone());
        Api::namespaced_with(env.client.clone(), &env.ns, &ar)
    };
    let params = PostParams {
        dry_run: true,
        field_manager: Some("keyward-tests".into()),
    };
    api.create(&params, &object).await.map(|_| ())
}

fn parse(yaml: &str) -> DynamicObject {
    serde_saphyr::from_str(yaml).unwrap_or_else(|err| panic!("test YAML: {err}\n{yaml}"))
}

#[tokio::test]
async fn crds_are_established_with_accepted_names() {
    let env = TestEnv::new("crds").await;
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    for name in [
        "tenants.keyward.io",
        "partnerintegrations.keyward.io",
        "apikeys.keyward.io",
        "serviceaccountcredentials.keyward.io",
    ] {
        let crd = crds.get(name).await.expect(name);
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        for wanted in ["Established", "NamesAccepted"] {
            assert!(
                conditions
                    .iter()
                    .any(|c| c.type_ == wanted && c.status == "True"),
                "{name}: {wanted} is not True: {conditions:?}"
            );
        }
    }
    env.cleanup().await;
}

#[tokio::test]
async fn every_example_is_admitted() {
    let env = TestEnv::new("examples").await;
    let mut admitted = 0;
    for entry in std::fs::read_dir(support::repo().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let docs: Vec<DynamicObject> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        for doc in docs {
            let kind = doc
                .types
                .as_ref()
                .map(|t| t.kind.clone())
                .unwrap_or_default();
            if resource(&kind).is_none() {
                continue;
            }
            let name = doc.name_any();
            let mut doc = doc;
            if kind == "Tenant" {
                // Tenants are cluster-scoped: a unique name keeps this check independent of
                // Tenants already in the cluster (`make demo` leaves the examples').
                doc.metadata.name = Some(format!("{name}-{}", env.ns));
            }
            dry_run_create(&env, doc)
                .await
                .unwrap_or_else(|err| panic!("{}: {kind}/{name} rejected: {err}", path.display()));
            admitted += 1;
        }
    }
    assert!(
        admitted >= 8,
        "only {admitted} keyward objects found in examples/"
    );
    env.cleanup().await;
}

/// One invalid spec per admission rule, and a part of the message the user must see.
const INVALID: &[(&str, &str, &str)] = &[
    (
        "overlap not shorter than every",
        "kind: ApiKey\nspec: {tenant: acme, rotation: {every: 1h, overlap: 1h}}",
        "spec.rotation.overlap must be shorter than spec.rotation.every",
    ),
    (
        "rotation every zero",
        "kind: ApiKey\nspec: {tenant: acme, rotation: {every: 0s}}",
        "spec.rotation.every must be at least 1s",
    ),
    (
        "rotation every not a duration",
        "kind: ApiKey\nspec: {tenant: acme, rotation: {every: 30 days}}",
        "spec.rotation.every must be a duration of at most 876000h (100 years), such as",
    ),
    (
        "negative overlap",
        "kind: ApiKey\nspec: {tenant: acme, rotation: {every: 1h, overlap: -5m}}",
        "spec.rotation.overlap must be a duration of at most 876000h",
    ),
    (
        "api key with neither tenant nor integration",
        "kind: ApiKey\nspec: {owner: alice@acme.example}",
        "spec.tenant is required when spec.integration is not set",
    ),
    (
        "expiresAt not a date-time",
        "kind: ApiKey\nspec: {tenant: acme, expiresAt: next tuesday}",
        "spec.expiresAt must be an RFC 3339 time",
    ),
    (
        "expiresAt without a time zone",
        "kind: ApiKey\nspec: {tenant: acme, expiresAt: '2027-01-31T00:00:00'}",
        "spec.expiresAt must be an RFC 3339 time",
    ),
    (
        "too little entropy",
        "kind: ApiKey\nspec: {tenant: acme, generator: {bytes: 8}}",
        "should be greater than or equal to 16",
    ),
    (
        "too much entropy",
        "kind: ApiKey\nspec: {tenant: acme, generator: {bytes: 256}}",
        "should be less than or equal to 128",
    ),
    (
        "unknown encoding",
        "kind: ApiKey\nspec: {tenant: acme, generator: {encoding: base32}}",
        "Unsupported value: \"base32\"",
    ),
    (
        "prefix with a space",
        "kind: ApiKey\nspec: {tenant: acme, generator: {prefix: 'gx live'}}",
        "spec.generator.prefix",
    ),
    (
        "prefix too long",
        "kind: ApiKey\nspec: {tenant: acme, generator: {prefix: abcdefghijklmnopqrstuvwxyz0123456789}}",
        "may not be more than 32",
    ),
    (
        "secret only in vault without vault",
        "kind: ApiKey\nspec: {tenant: acme, secret: {enabled: false}}",
        "spec.vault is required",
    ),
    (
        "unknown consumer kind",
        "kind: ApiKey\nspec: {tenant: acme, consumers: [{kind: Job, name: x}]}",
        "Unsupported value: \"Job\"",
    ),
    (
        "token ttl under the API server's floor",
        "kind: ServiceAccountCredential\nspec: {tenant: acme, tokenTTL: 5m}",
        "spec.tokenTTL must be at least 10m",
    ),
    (
        "refreshBefore not shorter than tokenTTL",
        "kind: ServiceAccountCredential\nspec: {tenant: acme, tokenTTL: 10m, refreshBefore: 10m}",
        "spec.refreshBefore must be shorter than spec.tokenTTL",
    ),
    (
        "refreshBefore not shorter than the default tokenTTL",
        "kind: ServiceAccountCredential\nspec: {tenant: acme, refreshBefore: 2h}",
        "spec.refreshBefore must be shorter than spec.tokenTTL",
    ),
    (
        "service account credential with neither tenant nor integration",
        "kind: ServiceAccountCredential\nspec: {owner: alice@acme.example}",
        "spec.tenant is required when spec.integration is not set",
    ),
    (
        "tenant without owners",
        "kind: Tenant\nspec: {namespaces: [a]}",
        "spec.owners: Required value",
    ),
    (
        "tenant with an empty owner list",
        "kind: Tenant\nspec: {owners: []}",
        "should have at least 1 items",
    ),
    (
        "tenant listing an owner twice",
        "kind: Tenant\nspec: {owners: [{name: a, kind: User}, {name: a, kind: User}]}",
        "Duplicate value",
    ),
    (
        "owner of unknown kind",
        "kind: Tenant\nspec: {owners: [{name: a, kind: Robot}]}",
        "Unsupported value: \"Robot\"",
    ),
    (
        "unknown tenant state",
        "kind: Tenant\nspec: {owners: [{name: a, kind: User}], state: Paused}",
        "Unsupported value: \"Paused\"",
    ),
    (
        "tenant that parents itself",
        "kind: Tenant\nmetadata: {name: loop}\nspec: {owners: [{name: a, kind: User}], parent: loop}",
        "a tenant cannot be its own parent",
    ),
    (
        "policy duration not a duration",
        "kind: Tenant\nspec: {owners: [{name: a, kind: User}], policy: {maxLifetime: forever}}",
        "spec.policy.maxLifetime must be a duration of at most 876000h",
    ),
    (
        "namespace that is not a namespace name",
        "kind: Tenant\nspec: {owners: [{name: a, kind: User}], namespaces: [Acme_Prod]}",
        "spec.namespaces[0]",
    ),
    (
        "integration without owner",
        "kind: PartnerIntegration\nspec: {tenant: acme, partner: {name: Globex}}",
        "spec.owner: Required value",
    ),
    (
        "integration without partner name",
        "kind: PartnerIntegration\nspec: {tenant: acme, owner: a, partner: {}}",
        "spec.partner.name: Required value",
    ),
];

#[tokio::test]
async fn invalid_specs_are_rejected_with_a_clear_message() {
    let env = TestEnv::new("invalid").await;
    let mut failures = Vec::new();
    for (case, yaml, expected) in INVALID {
        let mut object = parse(&format!("apiVersion: keyward.io/v1alpha1\n{yaml}"));
        if object.metadata.name.is_none() {
            object.metadata.name = Some("invalid".into());
        }
        match dry_run_create(&env, object).await {
            Ok(()) => failures.push(format!("{case}: admitted")),
            Err(kube::Error::Api(status)) if status.is_invalid() => {
                if !status.message.contains(expected) {
                    failures.push(format!(
                        "{case}: message lacks {expected:?}: {}",
                        status.message
                    ));
                }
            }
            Err(err) => failures.push(format!("{case}: unexpected error {err}")),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    env.cleanup().await;
}

#[path = "../src/api/bounded_fields.rs"]
mod bounded_fields;
use bounded_fields::{
    HOSTILE_DURATIONS, HOSTILE_TIMES, bounded_fields, is_time_field, under_minimum,
};

/// Values at the edges that every field of the kind admits.
fn edges(path: &str) -> &'static [&'static str] {
    if is_time_field(path) {
        return &[
            "1970-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "9999-12-31T23:59:59+01:00",
            "2028-02-29T00:00:00Z",
            "2027-01-31T00:00:00.123456789-05:00",
        ];
    }
    match path {
        "spec.tokenTTL" => &["876000h", "10m", "1h30m", "1.5h"],
        "spec.refreshBefore" | "spec.rotation.overlap" => &[
            "875999h59m59s999ms999us999ns",
            "1s",
            "1h30m",
            "1.5h",
            "300ms",
            "1µs",
        ],
        _ => &["876000h", "1s", "1h30m", "1.5h"],
    }
}

async fn dry_run_spec(
    env: &TestEnv,
    kind: &str,
    spec: serde_json::Value,
) -> Result<(), kube::Error> {
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "keyward.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": format!("bounds-{}", env.ns)},
        "spec": spec,
    }))
    .expect("a keyward object");
    dry_run_create(env, object).await
}

#[tokio::test]
async fn hostile_durations_and_times_are_rejected_naming_the_field() {
    let env = TestEnv::new("bounds").await;
    let long = "9".repeat(100) + "h";
    let long_time = "2027-01-31T00:00:00.".to_owned() + &"1".repeat(100) + "Z";
    let mut failures = Vec::new();
    let mut checked = 0;
    for (kind, path, spec) in bounded_fields() {
        let mut hostile: Vec<&str> = if is_time_field(path) {
            HOSTILE_TIMES.to_vec()
        } else {
            HOSTILE_DURATIONS
                .iter()
                .chain(under_minimum(path))
                .copied()
                .collect()
        };
        let too_long = if is_time_field(path) {
            &long_time
        } else {
            &long
        };
        hostile.push(too_long);
        for value in hostile {
            checked += 1;
            match dry_run_spec(&env, kind, spec(value)).await {
                Ok(()) => failures.push(format!("{kind} {path}: {value:?} admitted")),
                Err(kube::Error::Api(status)) if status.is_invalid() => {
                    let message = &status.message;
                    // The rule's own message, naming the field; over maxLength the API
                    // server's length check (with the path) may come alone.
                    let named = message.contains(&format!("{path} must"))
                        || (value == too_long && message.contains(path));
                    if !named
                        || message.contains("type conversion error")
                        || message.contains("no such overload")
                    {
                        failures.push(format!("{kind} {path}: {value:?}: {message}"));
                    }
                }
                Err(err) => failures.push(format!("{kind} {path}: {value:?}: {err}")),
            }
        }
        for value in edges(path) {
            checked += 1;
            if let Err(err) = dry_run_spec(&env, kind, spec(value)).await {
                failures.push(format!("{kind} {path}: {value:?} rejected: {err}"));
            }
        }
    }
    assert!(checked > 200, "{checked}");
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    env.cleanup().await;
}

#[tokio::test]
async fn a_hostile_operand_gives_only_its_own_fields_message() {
    let env = TestEnv::new("operands").await;
    for (kind, spec, path, other) in [
        (
            "ApiKey",
            json!({"tenant": "acme", "rotation": {"every": "99999999999h", "overlap": "1h"}}),
            "spec.rotation.every",
            "spec.rotation.overlap must be shorter",
        ),
        (
            "ApiKey",
            json!({"tenant": "acme", "rotation": {"every": "1h", "overlap": "2562048h"}}),
            "spec.rotation.overlap",
            "spec.rotation.overlap must be shorter",
        ),
        (
            // Admitted syntax, beyond the bound: compared, it would also break the rule.
            "ApiKey",
            json!({"tenant": "acme", "rotation": {"every": "876000h", "overlap": "876001h"}}),
            "spec.rotation.overlap",
            "spec.rotation.overlap must be shorter",
        ),
        (
            "ServiceAccountCredential",
            json!({"tenant": "acme", "tokenTTL": "1h", "refreshBefore": "999999h"}),
            "spec.refreshBefore",
            "spec.refreshBefore must be shorter",
        ),
        (
            "ServiceAccountCredential",
            json!({"tenant": "acme", "tokenTTL": "99999999999h", "refreshBefore": "20m"}),
            "spec.tokenTTL",
            "spec.refreshBefore must be shorter",
        ),
        (
            "ServiceAccountCredential",
            json!({"tenant": "acme", "refreshBefore": "99999999999999999999h"}),
            "spec.refreshBefore",
            "spec.refreshBefore must be shorter",
        ),
    ] {
        let Err(kube::Error::Api(status)) = dry_run_spec(&env, kind, spec.clone()).await else {
            panic!("{spec} admitted");
        };
        let message = &status.message;
        assert!(
            message.contains(&format!("{path} must be a duration of at most 876000h")),
            "{spec}: {message}"
        );
        assert!(!message.contains(other), "{spec}: {message}");
        assert!(
            !message.contains("type conversion error"),
            "{spec}: {message}"
        );
    }
    env.cleanup().await;
}

/// The header line kubectl prints for a kind.
fn header(kind: &str, ns: &str) -> Vec<String> {
    let out = kubectl_ok(&["get", kind, "-n", ns, "--ignore-not-found=false"]);
    let first = out.lines().next().unwrap_or_default().to_owned();
    first.split_whitespace().map(str::to_owned).collect()
}

async fn create(env: &TestEnv, yaml: &str) {
    let mut object = parse(yaml);
    let kind = object.types.as_ref().unwrap().kind.clone();
    let ar = resource(&kind).unwrap();
    let api: Api<DynamicObject> = if kind == "Tenant" {
        Api::all_with(env.client.clone(), &ar)
    } else {
        object.metadata.namespace = Some(env.ns.clone());
        Api::namespaced_with(env.client.clone(), &env.ns, &ar)
    };
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|err| panic!("creating {kind}: {err}"));
}

#[tokio::test]
async fn kubectl_prints_the_contract_columns() {
    let env = TestEnv::new("columns").await;
    let tenant = format!("columns-{}", env.ns);
    create(&env, &format!(
        "apiVersion: keyward.io/v1alpha1\nkind: Tenant\nmetadata: {{name: {tenant}}}\nspec: {{namespaces: [{ns}], owners: [{{name: a, kind: User}}]}}",
        ns = env.ns
    ))
    .await;
    create(&env, &format!(
        "apiVersion: keyward.io/v1alpha1\nkind: PartnerIntegration\nmetadata: {{name: globex}}\nspec: {{tenant: {tenant}, owner: a, partner: {{name: Globex}}}}"
    ))
    .await;
    create(&env, &format!(
        "apiVersion: keyward.io/v1alpha1\nkind: ApiKey\nmetadata: {{name: key}}\nspec: {{tenant: {tenant}}}"
    ))
    .await;
    create(&env, &format!(
        "apiVersion: keyward.io/v1alpha1\nkind: ServiceAccountCredential\nmetadata: {{name: sa}}\nspec: {{tenant: {tenant}}}"
    ))
    .await;

    assert_eq!(
        header("apikeys", &env.ns),
        [
            "NAME", "TENANT", "OWNER", "STATE", "VERSION", "EXPIRES", "ROTATED", "AGE"
        ]
    );
    assert_eq!(
        header("serviceaccountcredentials", &env.ns),
        [
            "NAME",
            "TENANT",
            "OWNER",
            "STATE",
            "TOKEN-EXPIRES",
            "EXPIRES",
            "AGE"
        ]
    );
    assert_eq!(
        header("partnerintegrations", &env.ns),
        [
            "NAME", "TENANT", "PARTNER", "OWNER", "STATE", "EXPIRES", "AGE"
        ]
    );
    let tenants = kubectl_ok(&["get", "tenant", &tenant]);
    let mut lines = tenants.lines();
    let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        head,
        ["NAME", "STATE", "NAMESPACES", "CREDENTIALS", "READY", "AGE"]
    );
    assert!(
        lines.next().unwrap().contains(&format!("[\"{}\"]", env.ns)),
        "{tenants}"
    );

    let pis = kubectl_ok(&["get", "pi", "-n", &env.ns]);
    let row = pis.lines().nth(1).unwrap();
    assert!(
        row.starts_with("globex") && row.contains(&tenant) && row.contains("Globex"),
        "{pis}"
    );

    kubectl_ok(&["delete", "tenant", &tenant]);
    env.cleanup().await;
}

#[tokio::test]
async fn short_names_and_categories_list_the_kinds() {
    let env = TestEnv::new("names").await;
    let tenant = format!("names-{}", env.ns);
    create(&env, &format!(
        "apiVersion: keyward.io/v1alpha1\nkind: PartnerIntegration\nmetadata: {{name: globex}}\nspec: {{tenant: {tenant}, owner: a, partner: {{name: Globex}}}}"
    ))
    .await;
    create(&env, &format!(
        "apiVersion: keyward.io/v1alpha1\nkind: ApiKey\nmetadata: {{name: key}}\nspec: {{tenant: {tenant}}}"
    ))
    .await;
    create(&env, &format!(
        "apiVersion: keyward.io/v1alpha1\nkind: ServiceAccountCredential\nmetadata: {{name: sa}}\nspec: {{tenant: {tenant}}}"
    ))
    .await;

    let names = |args: &[&str]| -> BTreeSet<String> {
        let mut full = args.to_vec();
        full.extend(["-n", &env.ns, "-o", "name"]);
        kubectl_ok(&full).lines().map(str::to_owned).collect()
    };
    let nhi = names(&["get", "nhi"]);
    assert_eq!(
        nhi,
        BTreeSet::from([
            "apikey.keyward.io/key".to_owned(),
            "serviceaccountcredential.keyward.io/sa".to_owned(),
        ])
    );
    // The `keyward` category also holds the cluster-scoped Tenants of other tests.
    let namespaced: BTreeSet<String> = names(&["get", "keyward"])
        .into_iter()
        .filter(|n| !n.starts_with("tenant.keyward.io/"))
        .collect();
    assert!(namespaced.is_superset(&nhi), "{namespaced:?}");
    assert!(
        namespaced.contains("partnerintegration.keyward.io/globex"),
        "{namespaced:?}"
    );
    assert_eq!(names(&["get", "ak,sac,pi"]), namespaced);
    kubectl_ok(&["get", "tn"]);
    env.cleanup().await;
}

#[tokio::test]
async fn field_selectors_filter_credentials_by_tenant_owner_and_state() {
    let env = TestEnv::new("selectors").await;
    for (name, tenant, owner) in [
        ("a1", "alpha", "ann"),
        ("a2", "alpha", "bob"),
        ("b1", "beta", "ann"),
    ] {
        create(&env, &format!(
            "apiVersion: keyward.io/v1alpha1\nkind: ApiKey\nmetadata: {{name: {name}}}\nspec: {{tenant: {tenant}, owner: {owner}}}"
        ))
        .await;
    }
    create(&env, "apiVersion: keyward.io/v1alpha1\nkind: ServiceAccountCredential\nmetadata: {name: s1}\nspec: {tenant: alpha, owner: ann}").await;

    // Status as the controller would write it, through the status subresource.
    let keys: Api<ApiKey> = Api::namespaced(env.client.clone(), &env.ns);
    let params = PatchParams::apply("keyward-tests").force();
    for (name, state, tenant) in [
        ("a1", "Expired", "alpha"),
        ("a2", "Active", "alpha"),
        ("b1", "Expired", "beta"),
    ] {
        let patch = json!({
            "apiVersion": ApiKey::api_version(&()), "kind": ApiKey::kind(&()),
            "status": {"state": state, "tenant": tenant, "owner": "ann"},
        });
        keys.patch_status(name, &params, &Patch::Apply(&patch))
            .await
            .unwrap();
    }

    let selected = |selector: &str| -> BTreeSet<String> {
        let out = kubectl_ok(&[
            "get",
            "nhi",
            "-n",
            &env.ns,
            "--field-selector",
            selector,
            "-o",
            "name",
        ]);
        out.lines()
            .map(|l| l.rsplit('/').next().unwrap().to_owned())
            .collect()
    };
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(selected("spec.tenant=alpha"), set(&["a1", "a2", "s1"]));
    assert_eq!(selected("spec.owner=ann"), set(&["a1", "b1", "s1"]));
    assert_eq!(selected("status.state=Expired"), set(&["a1", "b1"]));
    assert_eq!(
        selected("status.tenant=alpha,status.state=Expired"),
        set(&["a1"])
    );
    assert_eq!(selected("status.owner=ann"), set(&["a1", "a2", "b1"]));

    let listed = keys
        .list(&ListParams::default().fields("spec.tenant=beta"))
        .await
        .unwrap();
    assert_eq!(
        listed
            .items
            .iter()
            .map(|k| k.name_any())
            .collect::<Vec<_>>(),
        ["b1"]
    );
    env.cleanup().await;
}

#[tokio::test]
async fn kubectl_explain_documents_the_fields() {
    let env = TestEnv::new("explain").await;
    for (path, phrase) in [
        (
            "apikeys.spec.rotation.overlap",
            "previous value keeps being served",
        ),
        ("apikeys.spec.generator.encoding", "base64url"),
        ("apikeys.status.fingerprint", "sha256:"),
        ("serviceaccountcredentials.spec.tokenTTL", "at least `10m`"),
        ("tenants.spec.policy.ownerGracePeriod", "Default `72h`"),
        ("tenants.spec.state", "Offboarded"),
        ("partnerintegrations.spec.expiresAt", "RFC 3339"),
    ] {
        let out = kubectl_ok(&["explain", path]);
        assert!(
            out.contains(phrase),
            "kubectl explain {path} lacks {phrase:?}:\n{out}"
        );
    }
    env.cleanup().await;
}

//! `keyward lint` as a pipeline runs it: the built binary on files in a temporary folder, no
//! cluster. One test per rule, and the file handling (folders, multi-document files, other
//! kinds, exit codes).

use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

/// What one run printed, and how it ended.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

fn lint(args: &[&str], dir: &Path) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .arg("lint")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running keyward lint");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A folder of manifests, linted from inside it so file names print relative.
struct Manifests {
    dir: TempDir,
}

impl Manifests {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn file(self, name: &str, text: &str) -> Self {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("folder");
        }
        std::fs::write(path, text).expect("write manifest");
        self
    }

    fn lint(&self, args: &[&str]) -> Run {
        lint(args, self.dir.path())
    }

    /// Lints the whole folder and returns the problem lines, asserting the exit code that
    /// goes with them.
    fn problems(&self) -> Vec<String> {
        let run = self.lint(&["."]);
        let lines: Vec<String> = run.lines().into_iter().map(str::to_owned).collect();
        let expected = if lines.is_empty() { 0 } else { 1 };
        assert_eq!(run.code, Some(expected), "{}{}", run.stdout, run.stderr);
        lines
    }
}

/// Tenant acme owns acme-prod; alice and the group platform are its owners.
const TENANT: &str = r#"
apiVersion: keyward.io/v1alpha1
kind: Tenant
metadata:
  name: acme
spec:
  namespaces: [acme-prod]
  owners:
    - {name: alice, kind: User}
    - {name: platform, kind: Group}
"#;

/// Acme's integration with Globex, owned by alice.
const INTEGRATION: &str = r#"
apiVersion: keyward.io/v1alpha1
kind: PartnerIntegration
metadata:
  name: globex
  namespace: acme-prod
spec:
  tenant: acme
  partner: {name: Globex}
  owner: alice
"#;

/// The tenant and the integration, plus `objects` in a second file.
fn with_acme(objects: &str) -> Manifests {
    Manifests::new()
        .file("tenants.yaml", &format!("{TENANT}---{INTEGRATION}"))
        .file("objects.yaml", objects)
}

fn api_key(namespace: &str, spec: &str) -> String {
    format!(
        "apiVersion: keyward.io/v1alpha1\nkind: ApiKey\nmetadata:\n  name: key\n  namespace: {namespace}\nspec:\n{spec}"
    )
}

fn tenant(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: keyward.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\nspec:\n{spec}"
    )
}

// --- Files, documents and exit codes -------------------------------------------------------

#[test]
fn the_repository_examples_pass() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let run = lint(&[examples.to_str().expect("utf-8 path")], Path::new("."));
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "");
}

#[test]
fn a_clean_folder_exits_0_printing_nothing_on_stdout() {
    let m = with_acme(&api_key("acme-prod", "  integration: globex\n"));
    let run = m.lint(&["."]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("no problems"), "{}", run.stderr);
}

#[test]
fn a_problem_exits_1_with_one_line_per_problem() {
    let m = with_acme(&api_key(
        "acme-prod",
        "  tenant: acme\n  owner: mallory\n  generator: {bytes: 8}\n",
    ));
    let run = m.lint(&["."]);
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.lines(),
        [
            "./objects.yaml: ApiKey/acme-prod/key: spec.generator.bytes: must be at least 16, not 8",
            "./objects.yaml: ApiKey/acme-prod/key: mallory is not an owner of tenant acme (OwnerNotInTenant)",
        ]
    );
    assert!(
        run.stderr.contains("2 problem(s) in 1 file(s)"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_missing_path_exits_2() {
    let m = Manifests::new();
    let run = m.lint(&["does-not-exist"]);
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("does-not-exist"), "{}", run.stderr);
}

#[test]
fn a_folder_without_yaml_exits_2() {
    let m = Manifests::new().file("README.md", "# nothing here\n");
    assert_eq!(m.lint(&["."]).code, Some(2));
}

#[test]
fn folders_are_searched_recursively_in_sorted_order() {
    let bad = |name: &str| {
        format!(
            "apiVersion: keyward.io/v1alpha1\nkind: ApiKey\nmetadata: {{name: {name}, namespace: acme-prod}}\nspec: {{tenant: acme, owner: mallory}}\n"
        )
    };
    let m = Manifests::new()
        .file("base/tenant.yml", TENANT)
        .file("overlays/prod/z.yaml", &bad("z"))
        .file("overlays/a.yaml", &bad("a"))
        .file("overlays/prod/ignored.txt", &bad("txt"))
        .file(".hidden/h.yaml", &bad("hidden"));
    assert_eq!(
        m.problems(),
        [
            "./overlays/a.yaml: ApiKey/acme-prod/a: mallory is not an owner of tenant acme (OwnerNotInTenant)",
            "./overlays/prod/z.yaml: ApiKey/acme-prod/z: mallory is not an owner of tenant acme (OwnerNotInTenant)",
        ]
    );
}

#[test]
fn files_and_folders_can_be_mixed_on_the_command_line() {
    let m = Manifests::new().file("tenant/acme.yaml", TENANT).file(
        "key.yaml",
        &api_key("acme-prod", "  tenant: acme\n  owner: alice\n"),
    );
    let run = m.lint(&["tenant", "key.yaml"]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
}

#[test]
fn rendered_output_can_be_piped_in() {
    use std::io::Write;
    let m = Manifests::new().file("tenant.yaml", TENANT);
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["lint", "-", "tenant.yaml"])
        .current_dir(m.dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("running keyward lint");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(api_key("acme-prod", "  tenant: acme\n  owner: mallory\n").as_bytes())
        .expect("writing stdin");
    let out = child.wait_with_output().expect("keyward lint ends");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "-: ApiKey/acme-prod/key: mallory is not an owner of tenant acme (OwnerNotInTenant)\n"
    );
}

#[test]
fn every_document_of_a_multi_document_file_is_checked() {
    let text = format!(
        "{TENANT}---\n{}\n---\n# only a comment\n---\n{}",
        api_key("acme-prod", "  tenant: acme\n  owner: alice\n"),
        api_key("acme-prod", "  tenant: acme\n  owner: mallory\n")
            .replace("name: key", "name: key2"),
    );
    let m = Manifests::new().file("all.yaml", &text);
    assert_eq!(
        m.problems(),
        [
            "./all.yaml: ApiKey/acme-prod/key2: mallory is not an owner of tenant acme (OwnerNotInTenant)"
        ]
    );
}

#[test]
fn documents_of_other_kinds_are_ignored() {
    let m = with_acme(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: acme-prod}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: not-a-number}\n---\n- a list\n---\njust text\n",
    )
    .file("kustomization.yaml", "resources: [tenants.yaml, objects.yaml]\n");
    assert_eq!(m.problems(), Vec::<String>::new());
}

#[test]
fn a_yaml_syntax_error_names_the_file_and_line() {
    let m = Manifests::new().file("broken.yaml", "a: 1\nb: [unclosed\nc: 2\n");
    let lines = m.problems();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("./broken.yaml:3: invalid YAML: "),
        "{lines:?}"
    );
}

#[test]
fn an_unknown_version_or_kind_of_the_keyward_group_is_a_problem() {
    let m = Manifests::new().file(
        "x.yaml",
        "apiVersion: keyward.io/v1\nkind: Tenant\nmetadata: {name: a}\n---\napiVersion: keyward.io/v1alpha1\nkind: Token\nmetadata: {name: b, namespace: ns}\n",
    );
    assert_eq!(
        m.problems(),
        [
            "./x.yaml: Tenant//a: apiVersion keyward.io/v1 is not served: keyward serves keyward.io/v1alpha1",
            "./x.yaml: Token/ns/b: kind \"Token\" is not a keyward kind: Tenant, PartnerIntegration, ApiKey or ServiceAccountCredential",
        ]
    );
}

#[test]
fn an_object_defined_twice_is_a_problem() {
    let m = with_acme(&api_key("acme-prod", "  integration: globex\n")).file(
        "again.yaml",
        &api_key("acme-prod", "  integration: globex\n"),
    );
    assert_eq!(
        m.problems(),
        ["./objects.yaml: ApiKey/acme-prod/key: defined more than once: also in ./again.yaml"]
    );
}

#[test]
fn a_namespaced_object_without_namespace_needs_the_namespace_flag() {
    let key = "apiVersion: keyward.io/v1alpha1\nkind: ApiKey\nmetadata: {name: key}\nspec: {integration: globex}\n";
    let m = with_acme(key);
    assert_eq!(
        m.problems(),
        [
            "./objects.yaml: ApiKey//key: metadata.namespace is not set: name it, or pass --namespace for manifests whose namespace is set when they are applied"
        ]
    );
    let run = m.lint(&["--namespace", "acme-prod", "."]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
}

// --- Schema ----------------------------------------------------------------------------------

#[test]
fn a_required_field_is_missing() {
    let m = Manifests::new().file("t.yaml", &tenant("acme", "  namespaces: [acme-prod]\n"));
    assert_eq!(
        m.problems(),
        ["./t.yaml: Tenant//acme: spec.owners: required field is missing"]
    );
}

#[test]
fn a_field_has_the_wrong_type() {
    let m = with_acme(&api_key(
        "acme-prod",
        "  integration: globex\n  generator: {bytes: thirty-two}\n",
    ));
    assert_eq!(
        m.problems(),
        [
            "./objects.yaml: ApiKey/acme-prod/key: spec.generator.bytes: must be of type integer, not string \"thirty-two\""
        ]
    );
}

#[test]
fn a_value_outside_its_enum() {
    let m = with_acme(&api_key(
        "acme-prod",
        "  integration: globex\n  generator: {encoding: base32}\n",
    ));
    assert_eq!(
        m.problems(),
        [
            "./objects.yaml: ApiKey/acme-prod/key: spec.generator.encoding: unsupported value \"base32\": must be one of \"base64url\", \"hex\", \"alphanumeric\""
        ]
    );
}

#[test]
fn a_number_above_its_maximum() {
    let m = with_acme(&api_key(
        "acme-prod",
        "  integration: globex\n  generator: {bytes: 129}\n",
    ));
    assert_eq!(
        m.problems(),
        [
            "./objects.yaml: ApiKey/acme-prod/key: spec.generator.bytes: must be at most 128, not 129"
        ]
    );
}

#[test]
fn a_string_longer_than_its_maximum() {
    let prefix = "x".repeat(33);
    let m = with_acme(&api_key(
        "acme-prod",
        &format!("  integration: globex\n  generator: {{prefix: {prefix}}}\n"),
    ));
    assert_eq!(
        m.problems(),
        [
            "./objects.yaml: ApiKey/acme-prod/key: spec.generator.prefix: must be at most 32 characters long"
        ]
    );
}

#[test]
fn a_string_not_matching_its_pattern() {
    let m = with_acme(&api_key(
        "acme-prod",
        "  integration: globex\n  generator: {prefix: \"gx live\"}\n",
    ));
    assert_eq!(
        m.problems(),
        [
            "./objects.yaml: ApiKey/acme-prod/key: spec.generator.prefix: \"gx live\" must match ^[A-Za-z0-9_-]*$"
        ]
    );
}

#[test]
fn an_unknown_field_is_a_problem_with_a_suggestion() {
    let m = with_acme(&api_key(
        "acme-prod",
        "  integration: globex\n  expiresat: \"2099-01-01T00:00:00Z\"\n",
    ));
    assert_eq!(
        m.problems(),
        [
            "./objects.yaml: ApiKey/acme-prod/key: spec.expiresat: unknown field (did you mean expiresAt?)"
        ]
    );
}

#[test]
fn a_malformed_duration_fails_its_admission_rule() {
    let m = with_acme(&api_key(
        "acme-prod",
        "  integration: globex\n  rotation: {every: 30 days}\n",
    ));
    assert_eq!(
        m.problems(),
        [
            "./objects.yaml: ApiKey/acme-prod/key: spec.rotation.every must be a duration of at most 876000h (100 years), such as \"720h\", \"90s\" or \"1h30m\""
        ]
    );
}

#[test]
fn a_malformed_time_fails_its_admission_rule() {
    let m = with_acme(&api_key(
        "acme-prod",
        "  integration: globex\n  expiresAt: \"2027-01-31\"\n",
    ));
    let lines = m.problems();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(
            "./objects.yaml: ApiKey/acme-prod/key: spec.expiresAt must be an RFC 3339 time"
        ),
        "{lines:?}"
    );
}

/// Durations and times no bound admits, in every duration and time field of every kind:
/// each object gets a line that names the field, lint exits 1, and nothing panics.
#[test]
fn hostile_durations_and_times_are_reported_on_their_field() {
    let durations = [
        "99999999999999999999h",
        "876001h",
        "2562048h",
        "9999999h",
        "1h1h",
        "\"\"",
        "-5m",
    ];
    let times = [
        "1969-12-31T23:59:59Z",
        "10000-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:00:00-05:00",
        "2027-13-01T00:00:00Z",
        "2027-02-30T00:00:00Z",
    ];
    let mut docs = Vec::new();
    let mut expected = Vec::new();
    let mut add = |kind: &str, path: &str, spec: String| {
        let name = format!("o{}", docs.len());
        let namespace = if kind == "Tenant" {
            String::new()
        } else {
            "\n  namespace: acme-prod".to_owned()
        };
        docs.push(format!(
            "apiVersion: keyward.io/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}{namespace}\nspec: {spec}\n"
        ));
        let ns = if kind == "Tenant" { "" } else { "acme-prod" };
        expected.push((format!("{kind}/{ns}/{name}: "), path.to_owned()));
    };
    for d in durations {
        for field in [
            "maxLifetime",
            "maxRotationInterval",
            "ownerGracePeriod",
            "staleAfter",
        ] {
            add(
                "Tenant",
                &format!("spec.policy.{field}"),
                format!("{{owners: [{{name: a, kind: User}}], policy: {{{field}: {d}}}}}"),
            );
        }
        add(
            "ApiKey",
            "spec.rotation.every",
            format!("{{integration: globex, rotation: {{every: {d}}}}}"),
        );
        add(
            "ApiKey",
            "spec.rotation.overlap",
            format!("{{integration: globex, rotation: {{every: 876000h, overlap: {d}}}}}"),
        );
        add(
            "ServiceAccountCredential",
            "spec.tokenTTL",
            format!("{{integration: globex, tokenTTL: {d}}}"),
        );
    }
    // At least 1s: 0.0000000000000000001h is 0 in Go's arithmetic (and admitted as 0 where
    // 0s is).
    for d in ["0s", "0.5s", "999ms", "1ns", "0.0000000000000000001h"] {
        add(
            "ApiKey",
            "spec.rotation.every",
            format!("{{integration: globex, rotation: {{every: {d}}}}}"),
        );
        add(
            "Tenant",
            "spec.policy.maxRotationInterval",
            format!("{{owners: [{{name: a, kind: User}}], policy: {{maxRotationInterval: {d}}}}}"),
        );
    }
    for t in times {
        add(
            "Tenant",
            "spec.endsAt",
            format!("{{owners: [{{name: a, kind: User}}], endsAt: \"{t}\"}}"),
        );
        add(
            "PartnerIntegration",
            "spec.expiresAt",
            format!("{{tenant: acme, owner: alice, partner: {{name: P}}, expiresAt: \"{t}\"}}"),
        );
        add(
            "ApiKey",
            "spec.expiresAt",
            format!("{{integration: globex, expiresAt: \"{t}\"}}"),
        );
        add(
            "ServiceAccountCredential",
            "spec.expiresAt",
            format!("{{integration: globex, expiresAt: \"{t}\"}}"),
        );
    }
    let m = with_acme(&docs.join("---\n"));
    let run = m.lint(&["."]);
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    let lines = run.lines();
    for (object, path) in expected {
        let messages: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.split_once(&object).map(|(_, m)| m))
            .collect();
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with(&format!("{path} must"))),
            "no line names {path} for {object}:\n{}",
            run.stdout
        );
        for message in messages {
            assert!(!message.contains("error"), "{object}: {message}");
        }
    }
}

#[test]
fn overlap_must_be_shorter_than_every() {
    let m = with_acme(&api_key(
        "acme-prod",
        "  integration: globex\n  rotation: {every: 1h, overlap: 1h}\n",
    ));
    assert_eq!(
        m.problems(),
        [
            "./objects.yaml: ApiKey/acme-prod/key: spec.rotation.overlap must be shorter than spec.rotation.every"
        ]
    );
}

#[test]
fn a_credential_needs_a_tenant_or_an_integration() {
    let m = with_acme(&api_key("acme-prod", "  owner: alice\n"));
    assert_eq!(
        m.problems(),
        [
            "./objects.yaml: ApiKey/acme-prod/key: spec.tenant is required when spec.integration is not set"
        ]
    );
}

#[test]
fn a_token_ttl_below_the_api_server_minimum() {
    let m = with_acme(
        "apiVersion: keyward.io/v1alpha1\nkind: ServiceAccountCredential\nmetadata: {name: sa, namespace: acme-prod}\nspec: {integration: globex, tokenTTL: 5m, refreshBefore: 1m}\n",
    );
    assert_eq!(
        m.problems(),
        [
            "./objects.yaml: ServiceAccountCredential/acme-prod/sa: spec.tokenTTL must be at least 10m, the API server's minimum token lifetime"
        ]
    );
}

#[test]
fn a_tenant_cannot_be_its_own_parent() {
    let m = Manifests::new().file(
        "t.yaml",
        &tenant(
            "acme",
            "  parent: acme\n  owners: [{name: alice, kind: User}]\n",
        ),
    );
    assert_eq!(
        m.problems(),
        ["./t.yaml: Tenant//acme: spec.parent: a tenant cannot be its own parent"]
    );
}

// --- Cross-object rules ---------------------------------------------------------------------

#[test]
fn the_owner_must_be_an_owner_of_the_tenant() {
    let m = with_acme(&api_key("acme-prod", "  tenant: acme\n  owner: mallory\n"));
    assert_eq!(
        m.problems(),
        [
            "./objects.yaml: ApiKey/acme-prod/key: mallory is not an owner of tenant acme (OwnerNotInTenant)"
        ]
    );
}

#[test]
fn the_integrations_owner_must_be_an_owner_of_the_tenant() {
    let m = Manifests::new().file("tenants.yaml", TENANT).file(
        "objects.yaml",
        &format!(
            "{}---\n{}",
            INTEGRATION.replace("owner: alice", "owner: mallory"),
            api_key("acme-prod", "  integration: globex\n")
        ),
    );
    assert_eq!(
        m.problems(),
        [
            "./objects.yaml: PartnerIntegration/acme-prod/globex: mallory is not an owner of tenant acme (OwnerNotInTenant)",
            "./objects.yaml: ApiKey/acme-prod/key: mallory is not an owner of tenant acme (OwnerNotInTenant)",
        ]
    );
}

#[test]
fn the_namespace_must_be_owned_by_the_tenant() {
    let m = with_acme(&api_key("elsewhere", "  tenant: acme\n  owner: alice\n"));
    assert_eq!(
        m.problems(),
        [
            "./objects.yaml: ApiKey/elsewhere/key: namespace elsewhere is not owned by tenant acme (NamespaceNotOwned)"
        ]
    );
}

#[test]
fn the_tenant_must_exist() {
    let m = Manifests::new().file(
        "k.yaml",
        &api_key("acme-prod", "  tenant: acme\n  owner: alice\n"),
    );
    assert_eq!(
        m.problems(),
        ["./k.yaml: ApiKey/acme-prod/key: tenant acme does not exist (TenantNotFound)"]
    );
}

#[test]
fn the_integration_must_exist_in_the_same_namespace() {
    let m = with_acme(&api_key("acme-prod", "  integration: initech\n"));
    assert_eq!(
        m.problems(),
        [
            "./objects.yaml: ApiKey/acme-prod/key: PartnerIntegration initech does not exist in namespace acme-prod (IntegrationNotFound)"
        ]
    );
}

#[test]
fn the_tenant_must_match_the_integrations() {
    let m = with_acme(&format!(
        "{}---\n{}",
        tenant("initech", "  owners: [{name: alice, kind: User}]\n"),
        api_key("acme-prod", "  integration: globex\n  tenant: initech\n")
    ));
    assert_eq!(
        m.problems(),
        [
            "./objects.yaml: ApiKey/acme-prod/key: spec.tenant initech differs from tenant acme of integration globex (TenantMismatch)"
        ]
    );
}

#[test]
fn an_expiry_in_the_past_is_a_problem() {
    let m = with_acme(&api_key(
        "acme-prod",
        "  integration: globex\n  expiresAt: \"2000-01-01T00:00:00Z\"\n",
    ));
    assert_eq!(
        m.problems(),
        [
            "./objects.yaml: ApiKey/acme-prod/key: already expired at 2000-01-01T00:00:00Z: its own expiresAt (Expired)"
        ]
    );
}

#[test]
fn an_integration_expiry_in_the_past_is_a_problem() {
    let m = Manifests::new().file(
        "pi.yaml",
        &format!(
            "{TENANT}---{}",
            INTEGRATION.replace(
                "owner: alice",
                "owner: alice\n  expiresAt: \"2000-01-01T00:00:00Z\""
            )
        ),
    );
    assert_eq!(
        m.problems(),
        [
            "./pi.yaml: PartnerIntegration/acme-prod/globex: already expired at 2000-01-01T00:00:00Z (Expired)"
        ]
    );
}

#[test]
fn an_expiry_beyond_the_max_lifetime_is_a_problem() {
    let m = Manifests::new()
        .file(
            "tenants.yaml",
            &tenant(
                "acme",
                "  namespaces: [acme-prod]\n  owners: [{name: alice, kind: User}]\n  policy: {maxLifetime: 24h}\n",
            ),
        )
        .file(
            "k.yaml",
            &api_key(
                "acme-prod",
                "  tenant: acme\n  owner: alice\n  expiresAt: \"2999-01-01T00:00:00Z\"\n",
            ),
        );
    let lines = m.problems();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(
            "./k.yaml: ApiKey/acme-prod/key: expiresAt 2999-01-01T00:00:00Z is later than tenant acme's maxLifetime (24h) allows from now"
        ),
        "{lines:?}"
    );
}

#[test]
fn a_parents_max_lifetime_applies_too() {
    let m = Manifests::new()
        .file(
            "tenants.yaml",
            &format!(
                "{}---\n{}",
                tenant("holding", "  owners: [{name: carol, kind: User}]\n  policy: {maxLifetime: 1h}\n"),
                tenant("acme", "  parent: holding\n  namespaces: [acme-prod]\n  owners: [{name: alice, kind: User}]\n")
            ),
        )
        .file(
            "k.yaml",
            &api_key(
                "acme-prod",
                "  tenant: acme\n  owner: alice\n  expiresAt: \"2999-01-01T00:00:00Z\"\n",
            ),
        );
    let lines = m.problems();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("maxLifetime (1h)"), "{lines:?}");
}

#[test]
fn a_missing_expiry_under_require_expiry_is_a_problem() {
    let m = Manifests::new()
        .file(
            "tenants.yaml",
            &tenant(
                "acme",
                "  namespaces: [acme-prod]\n  owners: [{name: alice, kind: User}]\n  policy: {requireExpiry: true}\n",
            ),
        )
        .file("k.yaml", &api_key("acme-prod", "  tenant: acme\n  owner: alice\n"));
    assert_eq!(
        m.problems(),
        [
            "./k.yaml: ApiKey/acme-prod/key: tenant acme requires an expiry and none applies (ExpiryRequired)"
        ]
    );
}

#[test]
fn a_missing_parent_is_a_problem() {
    let m = Manifests::new().file(
        "t.yaml",
        &tenant(
            "acme",
            "  parent: holding\n  owners: [{name: alice, kind: User}]\n",
        ),
    );
    assert_eq!(
        m.problems(),
        ["./t.yaml: Tenant//acme: tenant acme: parent holding does not exist (InvalidParent)"]
    );
}

#[test]
fn a_parent_cycle_is_a_problem() {
    let m = Manifests::new().file(
        "t.yaml",
        &format!(
            "{}---\n{}",
            tenant("a", "  parent: b\n  owners: [{name: x, kind: User}]\n"),
            tenant("b", "  parent: a\n  owners: [{name: x, kind: User}]\n")
        ),
    );
    assert_eq!(
        m.problems(),
        [
            "./t.yaml: Tenant//a: tenant a: parent chain is a cycle (a -> b -> a) (InvalidParent)",
            "./t.yaml: Tenant//b: tenant b: parent chain is a cycle (b -> a -> b) (InvalidParent)",
        ]
    );
}

#[test]
fn a_namespace_listed_by_two_tenants_is_a_problem() {
    let m = Manifests::new().file(
        "t.yaml",
        &format!(
            "{}---\n{}",
            tenant(
                "a",
                "  namespaces: [shared]\n  owners: [{name: x, kind: User}]\n"
            ),
            tenant(
                "b",
                "  namespaces: [shared]\n  owners: [{name: x, kind: User}]\n"
            )
        ),
    );
    assert_eq!(
        m.problems(),
        [
            "./t.yaml: Tenant//a: namespaces listed by another tenant are owned by neither: shared (also listed by b) (NamespaceConflict)",
            "./t.yaml: Tenant//b: namespaces listed by another tenant are owned by neither: shared (also listed by a) (NamespaceConflict)",
        ]
    );
}

#[test]
fn a_tenant_end_in_the_past_is_a_problem_unless_offboarded() {
    let ended = "  owners: [{name: x, kind: User}]\n  endsAt: \"2000-01-01T00:00:00Z\"\n";
    let m = Manifests::new().file("t.yaml", &tenant("a", ended));
    let lines = m.problems();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("./t.yaml: Tenant//a: endsAt 2000-01-01T00:00:00Z is in the past"),
        "{lines:?}"
    );
    let m = Manifests::new().file(
        "t.yaml",
        &tenant("a", &format!("{ended}  state: Offboarded\n")),
    );
    assert_eq!(m.problems(), Vec::<String>::new());
}

#[test]
fn an_absolute_vault_path_is_a_problem() {
    let m = with_acme(&api_key(
        "acme-prod",
        "  integration: globex\n  vault: {path: /secret/other-tenant}\n",
    ));
    assert_eq!(
        m.problems(),
        [
            "./objects.yaml: ApiKey/acme-prod/key: spec.vault.path \"/secret/other-tenant\" is absolute; it must be relative to the tenant's prefix (InvalidVaultPath)"
        ]
    );
}

#[test]
fn a_vault_path_with_dot_dot_is_a_problem() {
    let m = with_acme(&api_key(
        "acme-prod",
        "  integration: globex\n  vault: {path: ../initech/key}\n",
    ));
    assert_eq!(
        m.problems(),
        [
            "./objects.yaml: ApiKey/acme-prod/key: spec.vault.path \"../initech/key\" contains \"..\"; it must stay under the tenant's prefix (InvalidVaultPath)"
        ]
    );
}

#[test]
fn a_suspended_tenant_is_not_a_problem() {
    // Suspension is a decision, not a mistake: its credentials are revoked on purpose.
    let m = Manifests::new()
        .file(
            "tenants.yaml",
            &tenant(
                "acme",
                "  namespaces: [acme-prod]\n  owners: [{name: alice, kind: User}]\n  state: Suspended\n",
            ),
        )
        .file("k.yaml", &api_key("acme-prod", "  tenant: acme\n  owner: alice\n"));
    assert_eq!(m.problems(), Vec::<String>::new());
}

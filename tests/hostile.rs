//! Hostile manifests on the real control plane, applied one by one (server-side apply, as a
//! GitOps tool does) while one `keyward run` manages the test's namespace: enormous, tiny
//! and edge durations and times in every duration and time field of the four kinds, deep
//! and wide tenant hierarchies, a tenant listing 1,000 namespaces, strings at and past their
//! limits, a rotation every second.
//!
//! Admission may reject a manifest; for a value out of the contract's bounds it must, and
//! its message must name the field and not be the API server's "type conversion error"
//! (a CEL rule that called `duration()` on a value it cannot hold). After each manifest:
//! - the operator answers a rotation request on an unrelated, healthy ApiKey within 5 s
//!   (`status.lastRotationRequest` is the request, `version` + 1);
//! - every namespaced object the manifest created has a `Ready` condition for its current
//!   generation within 10 s (a state or `InvalidSpec`, never silence);
//! - the operator's `keyward_kube_requests_total` grew by at most
//!   `BASE + PER_OBJECT × namespaced objects created + PER_TENANT × Tenants created`;
//! - the process is the same one, alive, and `/healthz` is ok;
//! - `keyward report` (against the cluster) and `keyward lint <manifest>` (offline) exit
//!   0, 1 or 2, never 101, and print no "panicked".
//!
//! Each manifest's objects are deleted before the next one, so every request count is that
//! manifest's own. Cluster-scoped names start with the test's namespace, so nothing collides
//! with other tests' Tenants; the big hierarchies are deleted even when the test fails.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use keyward::api::ApiKey;
use kube::api::{Api, DynamicObject};
use serde_json::{Value, json};
use support::fault::{self, Process};
use support::operator::Operator;
use support::{TestEnv, wait_for};

/// The request ceiling per manifest. Each step of a credential's life costs a fixed handful
/// of requests, measured on this plane: the healthy key's rotation 5 (reads, its Secret,
/// its status), an ApiKey's issue 6 (its Secret, status, an Event, the tenant's recount),
/// a refusal 4 or 5 (status and an Event), a ServiceAccountCredential's issue 13 (its
/// ServiceAccount, a TokenRequest, its Secret, the reads that guard against conflicts,
/// status, Events). So 10 for the rotation and anything else that happens once, and 15 per
/// namespaced object created, cover the costliest step with a margin, but not a retry loop
/// (the window lasts seconds, and a failing object is retried with backoff) or work that
/// grows with the square of what was created. A Tenant this operator does not manage (none
/// of these lists the operator's namespace) is only read from the watch, so 1 per Tenant is
/// already generous: it holds a 1,000-tenant hierarchy to O(n), never O(n²).
const BASE: f64 = 10.0;
const PER_OBJECT: f64 = 15.0;
const PER_TENANT: f64 = 1.0;
/// How long the healthy key's rotation request may wait for its answer.
const ANSWER: Duration = Duration::from_secs(5);
/// How long a created object may wait for its Ready condition.
const READY: Duration = Duration::from_secs(10);
/// The write floor the operator runs with: the contract's default, so a rotation of 1s is
/// clamped to a minute, and no object makes the operator write more often than that.
const FLOOR: &str = "--min-rotation-interval=1m";

const MAX_DURATION_NS: u128 = 876_000 * 3_600 * 1_000_000_000;
const SECOND_NS: u128 = 1_000_000_000;

/// Durations for every duration field, with their value in nanoseconds.
const DURATIONS: &[(&str, u128)] = &[
    ("99999999999999999999h", u128::MAX),
    ("2562048h", 2_562_048 * 3_600 * SECOND_NS), // past Go's (and CEL's) largest duration
    ("876001h", 876_001 * 3_600 * SECOND_NS),
    ("876000h", MAX_DURATION_NS),
    ("1ns", 1),
    ("0s", 0),
    ("1s", SECOND_NS),
];

/// Times for every time field: inside 1970–9999 must be admitted, outside rejected, and
/// the two that are not quite times may go either way (admitted, the controller reports
/// them as InvalidSpec or uses them).
const TIMES: &[(&str, Bound)] = &[
    ("1969-12-31T23:59:59Z", Bound::Out),
    ("0001-01-01T00:00:00Z", Bound::Out),
    ("1970-01-01T00:00:00Z", Bound::In),
    ("9999-12-31T23:59:59Z", Bound::In),
    ("9999-12-31T23:59:60Z", Bound::Unclear),
    ("2026-02-30T00:00:00Z", Bound::Unclear),
];

#[derive(Clone, Copy)]
enum Bound {
    In,
    Out,
    Unclear,
}

/// Where a duration field's admitted values lie, in nanoseconds.
#[derive(Clone, Copy)]
struct Range {
    min: u128,
    min_inclusive: bool,
    max: u128,
    max_inclusive: bool,
}

const ANY: Range = Range {
    min: 0,
    min_inclusive: true,
    max: MAX_DURATION_NS,
    max_inclusive: true,
};
const AT_LEAST_1S: Range = Range {
    min: SECOND_NS,
    ..ANY
};
/// A duration that must be shorter than a partner field set to 876000h.
const BELOW_MAX: Range = Range {
    max_inclusive: false,
    ..ANY
};

impl Range {
    fn admits(&self, ns: u128) -> bool {
        let above = if self.min_inclusive {
            ns >= self.min
        } else {
            ns > self.min
        };
        let below = if self.max_inclusive {
            ns <= self.max
        } else {
            ns < self.max
        };
        above && below
    }
}

/// What admission must do with a manifest's first object (the hostile one).
enum Expect {
    Admit,
    /// Rejected, with a message naming this field.
    Reject(String),
    /// Either; if rejected, the message names this field.
    Either(String),
}

fn duration_expect(ns: u128, range: Range, field: &str) -> Expect {
    if range.admits(ns) {
        Expect::Admit
    } else {
        Expect::Reject(field.to_owned())
    }
}

fn time_expect(bound: Bound, field: &str) -> Expect {
    match bound {
        Bound::In => Expect::Admit,
        Bound::Out => Expect::Reject(field.to_owned()),
        Bound::Unclear => Expect::Either(field.to_owned()),
    }
}

type Check = Box<dyn Fn(&DynamicObject) -> Result<(), String> + Send + Sync>;

struct Case {
    name: String,
    objects: Vec<Value>,
    expect: Expect,
    /// Run on the first object once it is Ready, when it was admitted.
    check: Option<Check>,
}

impl Case {
    fn new(name: impl Into<String>, objects: Vec<Value>, expect: Expect) -> Self {
        Self {
            name: name.into(),
            objects,
            expect,
            check: None,
        }
    }

    fn check(
        mut self,
        check: impl Fn(&DynamicObject) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.check = Some(Box::new(check));
        self
    }
}

fn object(kind: &str, namespace: Option<&str>, name: &str, spec: Value) -> Value {
    let mut metadata = json!({"name": name});
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    json!({"apiVersion": "keyward.io/v1alpha1", "kind": kind, "metadata": metadata, "spec": spec})
}

fn condition<'a>(obj: &'a DynamicObject, type_: &str) -> Option<&'a Value> {
    obj.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn reason(obj: &DynamicObject, type_: &str) -> String {
    condition(obj, type_)
        .and_then(|c| c["reason"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// The check that `type_` has `reason`.
fn has_reason(
    type_: &'static str,
    want: &'static str,
) -> impl Fn(&DynamicObject) -> Result<(), String> {
    move |obj| {
        let got = reason(obj, type_);
        if got == want {
            Ok(())
        } else {
            Err(format!("{type_} reason is {got:?}, not {want}"))
        }
    }
}

/// The check that `status.state` is `want`.
fn in_state(want: &'static str) -> impl Fn(&DynamicObject) -> Result<(), String> {
    move |obj| {
        let got = &obj.data["status"]["state"];
        if got == want {
            Ok(())
        } else {
            Err(format!(
                "state is {got}, not {want} (Ready: {})",
                reason(obj, "Ready")
            ))
        }
    }
}

/// Block-style YAML for a JSON value; every string double-quoted, so nothing (a time, a
/// number-like duration) is read back as another type.
fn yaml(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                out.push_str(&format!("{pad}{k}:"));
                match v {
                    Value::Object(m) if !m.is_empty() => {
                        out.push('\n');
                        yaml(v, indent + 2, out);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push('\n');
                        yaml(v, indent + 2, out);
                    }
                    _ => {
                        out.push(' ');
                        out.push_str(&scalar(v));
                        out.push('\n');
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                let mut inner = String::new();
                match item {
                    Value::Object(m) if !m.is_empty() => yaml(item, indent + 2, &mut inner),
                    _ => inner = format!("{pad}  {}\n", scalar(item)),
                }
                out.push_str(&format!("{pad}- {}", &inner[indent + 2..]));
            }
        }
        _ => {
            out.push_str(&pad);
            out.push_str(&scalar(value));
            out.push('\n');
        }
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
        other => other.to_string(),
    }
}

fn manifest(objects: &[Value]) -> String {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        yaml(o, 0, &mut out);
    }
    out
}

fn kind_of(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or_default()
}

fn name_of(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

fn cli_ok(what: &str, out: &std::io::Result<Output>) -> Result<(), String> {
    let out = out
        .as_ref()
        .map_err(|err| format!("{what}: could not run: {err}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    let tail: String = stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
    if !matches!(code, Some(0..=2)) {
        return Err(format!(
            "{what} exited with {code:?} (not 0, 1 or 2): {tail}"
        ));
    }
    if stderr.contains("panicked") {
        return Err(format!("{what} panicked: {tail}"));
    }
    Ok(())
}

/// One manifest's figures, printed at the end.
struct Row {
    case: String,
    outcome: &'static str,
    namespaced: usize,
    tenants: usize,
    requests: f64,
    bound: f64,
    answer: Duration,
    ready: String,
}

struct World {
    env: TestEnv,
    op: Operator,
    process: Process,
    tenant: String,
    healthy: Api<ApiKey>,
    healthy_version: i64,
    rotations: usize,
    dir: tempfile::TempDir,
    /// Manifests applied and not yet deleted: deleted on drop, even when a test fails.
    applied: Vec<PathBuf>,
    rows: Vec<Row>,
    failures: Vec<String>,
}

impl World {
    async fn new(prefix: &str) -> Self {
        let env = TestEnv::new(prefix).await;
        let tenant = support::create_tenant(&env, json!({})).await;
        let op = Operator::start_with(&env.ns, &[FLOOR]).await;
        let process = Process::operator(&env.ns);
        let healthy: Api<ApiKey> = Api::namespaced(env.client.clone(), &env.ns);
        support::create(
            &healthy,
            "healthy",
            json!({"tenant": tenant, "owner": "alice"}),
        )
        .await;
        wait_for(
            &healthy,
            "healthy",
            "issued",
            Duration::from_secs(30),
            |k| k.status.as_ref().and_then(|s| s.version) == Some(1),
        )
        .await;
        fault::settled_requests(&op, Duration::from_millis(800), Duration::from_secs(15)).await;
        Self {
            env,
            op,
            process,
            tenant,
            healthy,
            healthy_version: 1,
            rotations: 0,
            dir: tempfile::tempdir().expect("temp dir"),
            applied: Vec::new(),
            rows: Vec::new(),
            failures: Vec::new(),
        }
    }

    fn ns(&self) -> &str {
        &self.env.ns
    }

    /// A namespaced object in the test's namespace.
    fn local(&self, kind: &str, name: &str, spec: Value) -> Value {
        object(kind, Some(self.ns()), name, spec)
    }

    /// An ApiKey in the healthy tenant.
    fn key(&self, name: &str, extra: Value) -> Value {
        let spec = support::merged(json!({"tenant": self.tenant, "owner": "alice"}), extra);
        self.local("ApiKey", name, spec)
    }

    /// A ServiceAccountCredential in the healthy tenant.
    fn sac(&self, name: &str, extra: Value) -> Value {
        let spec = support::merged(json!({"tenant": self.tenant, "owner": "alice"}), extra);
        self.local("ServiceAccountCredential", name, spec)
    }

    /// A Tenant of its own (owning no namespace of this operator), with owner alice.
    fn tenant(&self, name: &str, extra: Value) -> Value {
        let spec = support::merged(
            json!({"owners": [{"name": "alice", "kind": "User"}]}),
            extra,
        );
        object("Tenant", None, name, spec)
    }

    /// An ApiKey of the tenant `tenant`, so the operator resolves that tenant for a
    /// credential it manages (which is then Invalid: the namespace is not the tenant's).
    fn companion(&self, name: &str, tenant: &str) -> Value {
        self.local("ApiKey", name, json!({"tenant": tenant, "owner": "alice"}))
    }

    fn api(&self, o: &Value) -> Api<DynamicObject> {
        let kind = kind_of(o);
        let ns = (kind != "Tenant").then(|| self.ns());
        fault::keyward_api(&self.env.client, ns, kind)
    }

    fn fail(&mut self, case: &str, what: String) {
        eprintln!("hostile: {case}: FAIL {what}");
        self.failures.push(format!("{case}: {what}"));
    }

    async fn run(&mut self, case: Case) {
        let Case {
            name,
            objects,
            expect,
            check,
        } = case;
        let before = fault::kube_requests(&self.op).await;
        // kubectl splits -f at commas, so the file is named by its position.
        let path = self.dir.path().join(format!("{:03}.yaml", self.rows.len()));
        std::fs::write(&path, manifest(&objects)).expect("writing the manifest");
        self.applied.push(path.clone());
        let file = path.to_string_lossy().into_owned();
        let applied = support::kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=keyward-hostile",
            "-f",
            &file,
        ]);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&applied.stdout),
            String::from_utf8_lossy(&applied.stderr)
        );

        // What exists now is what the manifest created.
        let mut exists = Vec::new();
        for o in &objects {
            exists.push(matches!(self.api(o).get_opt(name_of(o)).await, Ok(Some(_))));
        }
        let namespaced = objects
            .iter()
            .zip(&exists)
            .filter(|(o, e)| **e && kind_of(o) != "Tenant")
            .count();
        let tenants = objects
            .iter()
            .zip(&exists)
            .filter(|(o, e)| **e && kind_of(o) == "Tenant")
            .count();
        let admitted = exists.first().copied().unwrap_or(false);
        if said.contains("type conversion error") {
            self.fail(
                &name,
                format!("admission said \"type conversion error\": {said}"),
            );
        }
        let named = |field: &str| said.contains(field);
        match &expect {
            Expect::Admit if !admitted || !applied.status.success() => {
                self.fail(&name, format!("not admitted: {}", said.trim()));
            }
            Expect::Reject(field) if admitted => {
                self.fail(&name, format!("admitted, but {field} is out of bounds"));
            }
            Expect::Reject(field) | Expect::Either(field) if !admitted && !named(field) => {
                self.fail(
                    &name,
                    format!("rejected without naming {field}: {}", said.trim()),
                );
            }
            _ => {}
        }

        // Every namespaced object created gets a Ready condition for its generation (and
        // the first passes its check, once the operator has caught up with the manifest).
        let mut ready = Vec::new();
        let deadline = Instant::now() + READY;
        for (i, o) in objects.iter().enumerate() {
            if !exists[i] || kind_of(o) == "Tenant" {
                continue;
            }
            let api = self.api(o);
            let check = check.as_ref().filter(|_| i == 0);
            let (got, verdict) = loop {
                let now = api.get(name_of(o)).await.ok();
                let current = now.as_ref().filter(|obj| {
                    condition(obj, "Ready").is_some()
                        && obj.data["status"]["observedGeneration"].as_i64()
                            == obj.metadata.generation
                });
                let verdict = current.map(|obj| check.map_or(Ok(()), |c| c(obj)));
                if matches!(verdict, Some(Ok(()))) || Instant::now() > deadline {
                    break (now, verdict);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            let status = got
                .as_ref()
                .map(|obj| obj.data["status"].to_string())
                .unwrap_or_default();
            match (&got, verdict) {
                (Some(obj), Some(verdict)) => {
                    ready.push(format!("{}={}", short(name_of(o)), reason(obj, "Ready")));
                    if let Err(err) = verdict {
                        self.fail(&name, format!("{}: {err}", short(name_of(o))));
                    }
                }
                _ => self.fail(
                    &name,
                    format!(
                        "{} {}: no Ready condition for its generation within {READY:?}; status {status}",
                        kind_of(o),
                        short(name_of(o))
                    ),
                ),
            }
        }

        // The unrelated, healthy key still gets its rotation request answered.
        let answer = self.rotate_healthy(&name).await;

        // The commands meanwhile, while the request count settles.
        let kubeconfig = support::kubeconfig_path();
        let report = tokio::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args(["report", "-o", "json"])
            .env("KUBECONFIG", &kubeconfig)
            .output();
        let lint = tokio::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
            .arg("lint")
            .arg(&path)
            .env_remove("KUBECONFIG")
            .output();
        let settle = fault::settled_requests(
            &self.op,
            Duration::from_millis(800),
            Duration::from_secs(15),
        );
        let (report, lint, after) = tokio::join!(report, lint, settle);
        for (what, out) in [("keyward report", &report), ("keyward lint", &lint)] {
            if let Err(err) = cli_ok(what, out) {
                self.fail(&name, err);
            }
        }
        let requests = fault::total(&after) - fault::total(&before);
        let bound = BASE + PER_OBJECT * namespaced as f64 + PER_TENANT * tenants as f64;
        let by_method: BTreeMap<&String, f64> = after
            .iter()
            .map(|(m, v)| (m, v - before.get(m).copied().unwrap_or_default()))
            .filter(|(_, v)| *v > 0.0)
            .collect();
        if requests > bound {
            self.fail(
                &name,
                format!(
                    "{requests} requests, more than {bound} ({namespaced} namespaced objects, \
                     {tenants} tenants): {by_method:?}"
                ),
            );
        }
        if !self.process.is_alive() {
            self.fail(
                &name,
                format!(
                    "the operator process {:?} is gone:\n{}",
                    self.process,
                    tail(&self.op.logs(), 30)
                ),
            );
        } else if !fault::healthy(&self.op).await {
            self.fail(&name, "/healthz is not ok".to_owned());
        }

        let outcome = if admitted { "admitted" } else { "rejected" };
        let code = |out: &std::io::Result<Output>| {
            out.as_ref()
                .ok()
                .and_then(|o| o.status.code())
                .map_or("-".to_owned(), |c| c.to_string())
        };
        let codes = format!("report {} lint {}", code(&report), code(&lint));
        eprintln!(
            "hostile: {name}: {outcome}, {namespaced}+{tenants} created, {requests} requests {by_method:?} (bound {bound}), answer {answer:?}, {codes}, ready [{}]",
            ready.join(" ")
        );
        self.rows.push(Row {
            case: name,
            outcome,
            namespaced,
            tenants,
            requests,
            bound,
            answer,
            ready: ready.join(" "),
        });

        // Gone before the next manifest, so its count is its own.
        if namespaced + tenants > 0 {
            let deleted =
                support::kubectl(&["delete", "--ignore-not-found", "--wait=false", "-f", &file]);
            if deleted.status.success() {
                self.applied.retain(|p| p != &path);
            }
            fault::settled_requests(
                &self.op,
                Duration::from_millis(800),
                Duration::from_secs(30),
            )
            .await;
        } else {
            self.applied.retain(|p| p != &path);
        }
    }

    /// Asks for a rotation of the healthy key and waits for its answer; returns how long
    /// it took (or records a failure).
    async fn rotate_healthy(&mut self, case: &str) -> Duration {
        self.rotations += 1;
        let request = format!("{case}-{}", self.rotations);
        let keys = fault::api_keys(&self.env.client, self.ns());
        let started = Instant::now();
        fault::request_rotation(&keys, "healthy", &request).await;
        let want = self.healthy_version + 1;
        loop {
            let key = self.healthy.get("healthy").await.ok();
            let status = key.as_ref().and_then(|k| k.status.as_ref());
            if status.and_then(|s| s.last_rotation_request.as_deref()) == Some(request.as_str()) {
                let version = status.and_then(|s| s.version).unwrap_or_default();
                if version != want {
                    self.fail(
                        case,
                        format!("healthy key: version {version} after the request, not {want}"),
                    );
                }
                self.healthy_version = version;
                return started.elapsed();
            }
            if started.elapsed() > ANSWER {
                self.fail(
                    case,
                    format!(
                        "healthy key: rotation request not answered within {ANSWER:?}; status {:?}",
                        status
                    ),
                );
                self.healthy_version = status
                    .and_then(|s| s.version)
                    .unwrap_or(self.healthy_version);
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn finish(&mut self) {
        let total_requests: f64 = self.rows.iter().map(|r| r.requests).sum();
        eprintln!(
            "hostile: {} manifests, {total_requests} requests in all",
            self.rows.len()
        );
        eprintln!(
            "{:<44} {:<9} {:>6} {:>7} {:>9} {:>7} {:>9}  ready",
            "manifest", "outcome", "ns", "tenants", "requests", "bound", "answer"
        );
        for r in &self.rows {
            eprintln!(
                "{:<44} {:<9} {:>6} {:>7} {:>9} {:>7} {:>8}ms  {}",
                r.case,
                r.outcome,
                r.namespaced,
                r.tenants,
                r.requests,
                r.bound,
                r.answer.as_millis(),
                r.ready
            );
        }
        assert!(
            self.failures.is_empty(),
            "{} of {} hostile manifests failed:\n{}",
            self.failures.len(),
            self.rows.len(),
            self.failures.join("\n")
        );
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for path in &self.applied {
            let file = path.to_string_lossy();
            let _ =
                support::kubectl(&["delete", "--ignore-not-found", "--wait=false", "-f", &file]);
        }
        let _ = support::kubectl(&[
            "delete",
            "tenant",
            &self.tenant,
            "--ignore-not-found",
            "--wait=false",
        ]);
        let _ = support::kubectl(&[
            "delete",
            "namespace",
            &self.env.ns,
            "--ignore-not-found",
            "--wait=false",
        ]);
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A name as printed: long ones shortened.
fn short(name: &str) -> String {
    if name.len() > 40 {
        format!("{}…({} chars)", &name[..20], name.len())
    } else {
        name.to_owned()
    }
}

#[tokio::test]
async fn tenant_policy_durations_and_end_times() {
    let mut w = World::new("hs-tn").await;
    let fields: [(&str, &str, Range); 4] = [
        ("maxLifetime", "ml", ANY),
        ("ownerGracePeriod", "og", ANY),
        ("staleAfter", "sa", ANY),
        ("maxRotationInterval", "mr", AT_LEAST_1S),
    ];
    for (field, short, range) in fields {
        for (i, (value, ns)) in DURATIONS.iter().enumerate() {
            let name = format!("{}-{short}-{i}", w.ns());
            let objects = vec![
                w.tenant(&name, json!({"policy": {field: value}})),
                w.companion(&format!("{short}-{i}"), &name),
            ];
            let expect = duration_expect(*ns, range, &format!("spec.policy.{field}"));
            w.run(Case::new(
                format!("tenant.policy.{field}={value}"),
                objects,
                expect,
            ))
            .await;
        }
    }
    for (i, (value, bound)) in TIMES.iter().enumerate() {
        let name = format!("{}-end-{i}", w.ns());
        let objects = vec![
            w.tenant(&name, json!({"endsAt": value})),
            w.companion(&format!("end-{i}"), &name),
        ];
        let expect = time_expect(*bound, "spec.endsAt");
        w.run(Case::new(format!("tenant.endsAt={value}"), objects, expect))
            .await;
    }
    w.finish();
}

#[tokio::test]
async fn api_key_and_integration_durations_and_times() {
    let mut w = World::new("hs-ak").await;
    for (i, (value, ns)) in DURATIONS.iter().enumerate() {
        let objects = vec![w.key(&format!("every-{i}"), json!({"rotation": {"every": value}}))];
        let mut case = Case::new(
            format!("apikey.rotation.every={value}"),
            objects,
            duration_expect(*ns, AT_LEAST_1S, "spec.rotation.every"),
        );
        if *ns < 60 * SECOND_NS {
            // Shorter than the operator's floor: clamped, and said so.
            case = case.check(has_reason("PolicyCompliant", "Clamped"));
        }
        w.run(case).await;
    }
    for (i, (value, ns)) in DURATIONS.iter().enumerate() {
        let spec = json!({"rotation": {"every": "876000h", "overlap": value}});
        let objects = vec![w.key(&format!("overlap-{i}"), spec)];
        let expect = duration_expect(*ns, BELOW_MAX, "spec.rotation.overlap");
        w.run(Case::new(
            format!("apikey.rotation.overlap={value}"),
            objects,
            expect,
        ))
        .await;
    }
    for (i, (value, bound)) in TIMES.iter().enumerate() {
        let objects = vec![w.key(&format!("expires-{i}"), json!({"expiresAt": value}))];
        let mut case = Case::new(
            format!("apikey.expiresAt={value}"),
            objects,
            time_expect(*bound, "spec.expiresAt"),
        );
        match *value {
            "1970-01-01T00:00:00Z" => case = case.check(in_state("Expired")),
            "9999-12-31T23:59:59Z" => case = case.check(in_state("Active")),
            _ => {}
        }
        w.run(case).await;
    }
    for (i, (value, bound)) in TIMES.iter().enumerate() {
        let pi = format!("pi-{i}");
        let spec = json!({"tenant": w.tenant, "owner": "alice", "partner": {"name": "Hostile Partner"}, "expiresAt": value});
        let objects = vec![
            w.local("PartnerIntegration", &pi, spec),
            w.local("ApiKey", &format!("pi-key-{i}"), json!({"integration": pi})),
        ];
        let mut case = Case::new(
            format!("integration.expiresAt={value}"),
            objects,
            time_expect(*bound, "spec.expiresAt"),
        );
        match *value {
            "1970-01-01T00:00:00Z" => case = case.check(in_state("Expired")),
            "9999-12-31T23:59:59Z" => case = case.check(in_state("Active")),
            _ => {}
        }
        w.run(case).await;
    }
    // A rotation every second, the smallest admitted: the floor clamps it to a minute, so
    // it costs one issue and nothing more while the test watches.
    let objects = vec![w.key(
        "every-second",
        json!({"rotation": {"every": "1s", "overlap": "0s"}}),
    )];
    w.run(
        Case::new(
            "apikey.rotation.every=1s,overlap=0s",
            objects,
            Expect::Admit,
        )
        .check(has_reason("PolicyCompliant", "Clamped")),
    )
    .await;
    w.finish();
}

#[tokio::test]
async fn service_account_credential_durations_and_times() {
    let mut w = World::new("hs-sac").await;
    let ttl_range = Range {
        min: 600 * SECOND_NS,
        ..ANY
    };
    for (i, (value, ns)) in DURATIONS.iter().enumerate() {
        let objects = vec![w.sac(&format!("ttl-{i}"), json!({"tokenTTL": value}))];
        let expect = duration_expect(*ns, ttl_range, "spec.tokenTTL");
        w.run(Case::new(format!("sac.tokenTTL={value}"), objects, expect))
            .await;
    }
    let refresh_range = Range {
        min_inclusive: false,
        ..BELOW_MAX
    };
    for (i, (value, ns)) in DURATIONS.iter().enumerate() {
        let spec = json!({"tokenTTL": "876000h", "refreshBefore": value});
        let objects = vec![w.sac(&format!("refresh-{i}"), spec)];
        let expect = duration_expect(*ns, refresh_range, "spec.refreshBefore");
        w.run(Case::new(
            format!("sac.refreshBefore={value}"),
            objects,
            expect,
        ))
        .await;
    }
    for (i, (value, bound)) in TIMES.iter().enumerate() {
        let objects = vec![w.sac(&format!("expires-{i}"), json!({"expiresAt": value}))];
        let mut case = Case::new(
            format!("sac.expiresAt={value}"),
            objects,
            time_expect(*bound, "spec.expiresAt"),
        );
        if *value == "1970-01-01T00:00:00Z" {
            case = case.check(in_state("Expired"));
        }
        w.run(case).await;
    }
    // A refresh period of one second (10m - 599s): clamped up to the floor.
    let objects = vec![w.sac(
        "refresh-every-second",
        json!({"tokenTTL": "10m", "refreshBefore": "599s"}),
    )];
    w.run(
        Case::new(
            "sac.tokenTTL=10m,refreshBefore=599s",
            objects,
            Expect::Admit,
        )
        .check(has_reason("PolicyCompliant", "Clamped")),
    )
    .await;
    w.finish();
}

#[tokio::test]
async fn hierarchies_and_oversized_strings() {
    let mut w = World::new("hs-big").await;
    let ns = w.ns().to_owned();

    // Deep: a 300-long parent chain, applied root first (each parent before its child),
    // and a credential of its deepest tenant.
    let mut objects = vec![w.companion("deep", &format!("{ns}-d299"))];
    objects.extend((0..300).map(|i| match i {
        0 => w.tenant(&format!("{ns}-d000"), json!({})),
        _ => w.tenant(
            &format!("{ns}-d{i:03}"),
            json!({"parent": format!("{ns}-d{:03}", i - 1)}),
        ),
    }));
    w.run(
        Case::new("tenant chain of 300", objects, Expect::Admit)
            .check(has_reason("Ready", "NamespaceNotOwned")),
    )
    .await;

    // Wide: one root with 1,000 children.
    let root = format!("{ns}-w");
    let mut objects = vec![
        w.companion("wide", &format!("{ns}-w0999")),
        w.tenant(&root, json!({})),
    ];
    objects.extend((0..1000).map(|i| w.tenant(&format!("{ns}-w{i:04}"), json!({"parent": root}))));
    w.run(
        Case::new("1000 tenants under one parent", objects, Expect::Admit)
            .check(has_reason("Ready", "NamespaceNotOwned")),
    )
    .await;

    // A parent cycle.
    let (a, b) = (format!("{ns}-cy-a"), format!("{ns}-cy-b"));
    let objects = vec![
        w.companion("cycle", &a),
        w.tenant(&a, json!({"parent": b})),
        w.tenant(&b, json!({"parent": a})),
    ];
    w.run(
        Case::new("tenant parent cycle", objects, Expect::Admit)
            .check(has_reason("Ready", "InvalidParent")),
    )
    .await;

    // A tenant listing 1,000 namespaces (none of them this operator's), and one too many.
    for (count, expect) in [
        (1000, Expect::Admit),
        (1001, Expect::Reject("spec.namespaces".into())),
    ] {
        let name = format!("{ns}-many-{count}");
        let namespaces: Vec<String> = (0..count).map(|i| format!("{ns}-n{i:04}")).collect();
        let objects = vec![
            w.tenant(&name, json!({"namespaces": namespaces})),
            w.companion(&format!("many-{count}"), &name),
        ];
        w.run(Case::new(
            format!("tenant with {count} namespaces"),
            objects,
            expect,
        ))
        .await;
    }

    // Strings at and past their limits.
    let long = |c: char, n: usize| c.to_string().repeat(n);
    for (n, expect) in [
        (256, Expect::Admit),
        (257, Expect::Reject("spec.displayName".into())),
    ] {
        let name = format!("{ns}-dn-{n}");
        let objects = vec![
            w.tenant(&name, json!({"displayName": long('D', n)})),
            w.companion(&format!("dn-{n}"), &name),
        ];
        w.run(Case::new(
            format!("tenant displayName of {n}"),
            objects,
            expect,
        ))
        .await;
    }
    for (n, expect) in [
        (253, Expect::Admit),
        (254, Expect::Reject("spec.owners[0].name".into())),
    ] {
        let name = format!("{ns}-on-{n}");
        let owner = long('o', n);
        let objects = vec![
            object(
                "Tenant",
                None,
                &name,
                json!({"owners": [{"name": owner, "kind": "User"}]}),
            ),
            w.local(
                "ApiKey",
                &format!("on-{n}"),
                json!({"tenant": name, "owner": owner}),
            ),
        ];
        w.run(Case::new(
            format!("tenant owner name of {n}"),
            objects,
            expect,
        ))
        .await;
    }
    let name = format!("{ns}-sp");
    let objects = vec![w.tenant(&name, json!({"sponsor": long('s', 254)}))];
    w.run(Case::new(
        "tenant sponsor of 254",
        objects,
        Expect::Reject("spec.sponsor".into()),
    ))
    .await;
    // A Tenant's name is the value of the label keyward.io/tenant: at most 63 characters.
    for (n, expect) in [
        (63, Expect::Admit),
        (64, Expect::Reject("metadata.name".into())),
        (253, Expect::Reject("metadata.name".into())),
    ] {
        let name = format!("{ns}-{}", long('t', n - ns.len() - 1));
        let objects = vec![
            w.tenant(&name, json!({})),
            w.companion(&format!("tn-{n}"), &name),
        ];
        w.run(Case::new(format!("tenant name of {n}"), objects, expect))
            .await;
    }
    // ApiKey names around the 63-character limit of label values (keyward.io/credential)
    // and at the 253 of object names: admission refuses what no label could carry.
    for n in [63, 64, 253] {
        let objects = vec![w.key(&format!("k{}", long('a', n - 1)), json!({}))];
        let expect = if n == 63 {
            Expect::Admit
        } else {
            Expect::Reject("metadata.name".into())
        };
        let mut case = Case::new(format!("apikey name of {n}"), objects, expect);
        if n == 63 {
            case = case.check(in_state("Active"));
        }
        w.run(case).await;
    }
    // A ServiceAccountCredential whose default Secret name (<name>-token) would pass 253.
    let objects = vec![w.sac(&format!("s{}", long('a', 249)), json!({}))];
    w.run(Case::new(
        "sac name of 250",
        objects,
        Expect::Reject("metadata.name".into()),
    ))
    .await;
    let objects = vec![w.key("long-owner", json!({"owner": long('o', 253)}))];
    w.run(
        Case::new(
            "apikey owner of 253 not in the tenant",
            objects,
            Expect::Admit,
        )
        .check(has_reason("Ready", "OwnerNotInTenant")),
    )
    .await;
    let objects = vec![w.key(
        "long-prefix",
        json!({"generator": {"prefix": long('p', 33)}}),
    )];
    w.run(Case::new(
        "apikey prefix of 33",
        objects,
        Expect::Reject("spec.generator.prefix".into()),
    ))
    .await;
    let spec = json!({"tenant": w.tenant, "owner": "alice", "partner": {"name": long('P', 257)}, "purpose": long('u', 1025)});
    let objects = vec![w.local("PartnerIntegration", "long-partner", spec)];
    w.run(Case::new(
        "integration partner of 257, purpose of 1025",
        objects,
        Expect::Reject("spec.partner.name".into()),
    ))
    .await;
    w.finish();
}

//! `keyward lint`: offline checks of keyward manifests for GitOps pipelines — the CRD schema
//! (structure and CEL rules, both read from the generated CRDs) and the cross-object rules
//! the operator applies, using the Tenants and PartnerIntegrations found alongside.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use kube::core::cel::{CompiledSchema, Validator, compile_schema};
use regex::Regex;
use serde_json::Value;

mod schema;

pub use schema::FieldError;
use schema::{Walker, rule_errors};

use crate::api::{
    ApiKey, DNS_SUBDOMAIN_PATTERN, PartnerIntegration, ServiceAccountCredential, Tenant,
    TenantState,
};
use crate::policy::credential::{
    self, CredentialInput, CredentialSpec, IntegrationFacts, PriorOwner,
};
use crate::policy::tenancy::{Tenancy, TenancyError};
use crate::policy::{format_duration, format_time, integration, tenant};

/// The apiVersion of every keyward kind.
pub const API_VERSION: &str = "keyward.io/v1alpha1";

/// One file's name (as it is printed) and contents.
#[derive(Clone, Debug)]
pub struct Source {
    pub name: String,
    pub text: String,
}

/// What a lint run needs besides the files.
#[derive(Clone, Debug)]
pub struct Options {
    /// The time expiries are compared with.
    pub now: DateTime<Utc>,
    /// Namespace of namespaced objects that name none, as `kubectl apply -n` would set it.
    pub default_namespace: Option<String>,
}

/// The object a problem is about: `kind/namespace/name`, the namespace empty for a Tenant.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// Where in a file a problem is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// A line of the file (YAML that does not parse).
    Line(u64),
    /// A keyward object of the file.
    Object(ObjectId),
}

/// One problem, printed as one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub place: Place,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.place {
            Place::Line(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            Place::Object(id) => write!(f, "{}: {id}: {}", self.file, self.message),
        }
    }
}

/// What a lint run found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub problems: Vec<Problem>,
    /// keyward objects checked.
    pub objects: usize,
}

/// Why lint could not run at all (as opposed to finding problems).
#[derive(Debug, thiserror::Error)]
pub enum LintError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no .yaml or .yml files in {0}")]
    NoFiles(String),
}

// ---------------------------------------------------------------------------------------------
// Files.

/// The YAML files under `paths`, sorted: every `.yaml`/`.yml` file in the folders
/// (recursively, skipping hidden folders such as `.git`), and every path named as a file
/// whatever its extension. Symbolic links to files are followed, to folders not (no loops).
pub fn yaml_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LintError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| LintError::Io { path, source }
    };
    let mut files = BTreeSet::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(io(path))?;
        if meta.is_dir() {
            walk(path, &mut files)?;
        } else {
            files.insert(path.clone());
        }
    }
    if files.is_empty() {
        let named: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(LintError::NoFiles(named.join(", ")));
    }
    Ok(files.into_iter().collect())
}

fn walk(dir: &Path, files: &mut BTreeSet<PathBuf>) -> Result<(), LintError> {
    let io = |source| LintError::Io {
        path: dir.display().to_string(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io)?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if kind.is_dir() {
            if !hidden {
                walk(&path, files)?;
            }
        } else if is_yaml(&path) && (kind.is_file() || path.is_file()) {
            files.insert(path);
        }
    }
    Ok(())
}

fn is_yaml(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

/// The path that stands for standard input, so rendered output can be piped in
/// (`kustomize build overlays/prod | keyward lint -`).
pub const STDIN: &str = "-";

/// Reads and lints the files under `paths` (and standard input for `-`).
pub fn lint_paths(paths: &[PathBuf], options: &Options) -> Result<Report, LintError> {
    let (stdin, paths): (Vec<&PathBuf>, Vec<&PathBuf>) =
        paths.iter().partition(|p| p.as_os_str() == STDIN);
    let mut sources = Vec::new();
    if !stdin.is_empty() {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).map_err(|source| {
            LintError::Io {
                path: "standard input".to_owned(),
                source,
            }
        })?;
        sources.push(source(STDIN.to_owned(), bytes));
    }
    if !paths.is_empty() || sources.is_empty() {
        let paths: Vec<PathBuf> = paths.into_iter().cloned().collect();
        for path in yaml_files(&paths)? {
            let bytes = std::fs::read(&path).map_err(|source| LintError::Io {
                path: path.display().to_string(),
                source,
            })?;
            sources.push(source(path.display().to_string(), bytes));
        }
    }
    Ok(lint(&sources, options))
}

fn source(name: String, bytes: Vec<u8>) -> Source {
    // Bytes that are not UTF-8 become a NUL, which `parse_documents` reports as a problem of
    // the file rather than a failure to run.
    let text = String::from_utf8(bytes).unwrap_or_else(|_| "\u{0}".to_owned());
    Source { name, text }
}

/// `keyward lint`: prints one line per problem on stdout and a summary on stderr. Exit code
/// 0 when clean, 1 when a problem was found, 2 when the paths could not be read.
pub fn cli(paths: &[PathBuf], default_namespace: Option<String>) -> ExitCode {
    let options = Options {
        now: Utc::now(),
        default_namespace,
    };
    match lint_paths(paths, &options) {
        Ok(report) => {
            for problem in &report.problems {
                println!("{problem}");
            }
            let files: BTreeSet<&str> = report.problems.iter().map(|p| p.file.as_str()).collect();
            if report.problems.is_empty() {
                eprintln!(
                    "keyward lint: {} keyward object(s), no problems",
                    report.objects
                );
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "keyward lint: {} problem(s) in {} file(s)",
                    report.problems.len(),
                    files.len()
                );
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!("keyward lint: {err}");
            ExitCode::from(2)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The run.

/// The four kinds, with the CRD facts lint needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Tenant,
    PartnerIntegration,
    ApiKey,
    ServiceAccountCredential,
}

impl Kind {
    fn parse(kind: &str) -> Option<Self> {
        Some(match kind {
            "Tenant" => Self::Tenant,
            "PartnerIntegration" => Self::PartnerIntegration,
            "ApiKey" => Self::ApiKey,
            "ServiceAccountCredential" => Self::ServiceAccountCredential,
            _ => return None,
        })
    }
}

/// A keyward object as read, and as far as it could be typed.
enum Typed {
    Tenant(Box<Tenant>),
    Integration(Box<PartnerIntegration>),
    ApiKey(Box<ApiKey>),
    Sac(Box<ServiceAccountCredential>),
}

impl Typed {
    fn read(kind: Kind, value: Value) -> Result<Self, serde_json::Error> {
        Ok(match kind {
            Kind::Tenant => Self::Tenant(Box::new(serde_json::from_value(value)?)),
            Kind::PartnerIntegration => Self::Integration(Box::new(serde_json::from_value(value)?)),
            Kind::ApiKey => Self::ApiKey(Box::new(serde_json::from_value(value)?)),
            Kind::ServiceAccountCredential => Self::Sac(Box::new(serde_json::from_value(value)?)),
        })
    }
}

struct Object {
    file: usize,
    doc: usize,
    id: ObjectId,
    /// False when the namespace of a namespaced object is unknown.
    placed: bool,
    typed: Typed,
}

/// The checked schema of one kind, from the generated CRD.
struct KindSchema {
    namespaced: bool,
    schema: Value,
    compiled: CompiledSchema,
}

/// Lints every document of `sources`. Pure: the result depends only on the inputs.
pub fn lint(sources: &[Source], options: &Options) -> Report {
    let mut run = Run::new(options);
    for (file, source) in sources.iter().enumerate() {
        run.read(file, source);
    }
    run.cross_check(sources);
    let mut problems = run.problems;
    // Files in the order given, documents in file order; problems of one document in the
    // order found (syntax, schema, then rules).
    problems.sort_by_key(|(file, doc, _)| (*file, *doc));
    Report {
        objects: run.objects.len() + run.unparsed,
        problems: problems.into_iter().map(|(_, _, p)| p).collect(),
    }
}

struct Run<'a> {
    options: &'a Options,
    schemas: BTreeMap<Kind, KindSchema>,
    validator: Validator,
    patterns: HashMap<String, Option<Regex>>,
    problems: Vec<(usize, usize, Problem)>,
    objects: Vec<Object>,
    /// The file each object was first read from.
    seen: BTreeMap<ObjectId, String>,
    /// Objects that did not even deserialize (their problems are reported); rules that
    /// would only say they are missing stay quiet about them.
    unparsed_tenants: BTreeSet<String>,
    unparsed_integrations: BTreeSet<(String, String)>,
    unparsed: usize,
}

impl<'a> Run<'a> {
    fn new(options: &'a Options) -> Self {
        let mut schemas = BTreeMap::new();
        for crd in crate::crd::all() {
            let Some(kind) = Kind::parse(&crd.spec.names.kind) else {
                continue;
            };
            let schema = crd
                .spec
                .versions
                .iter()
                .find(|v| v.name == crate::api::VERSION)
                .and_then(|v| v.schema.as_ref())
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .and_then(|s| serde_json::to_value(s).ok())
                .unwrap_or(Value::Null);
            let compiled = compile_schema(&schema);
            schemas.insert(
                kind,
                KindSchema {
                    namespaced: crd.spec.scope == "Namespaced",
                    schema,
                    compiled,
                },
            );
        }
        Self {
            options,
            schemas,
            validator: Validator::new(),
            patterns: HashMap::new(),
            problems: Vec::new(),
            objects: Vec::new(),
            seen: BTreeMap::new(),
            unparsed_tenants: BTreeSet::new(),
            unparsed_integrations: BTreeSet::new(),
            unparsed: 0,
        }
    }

    fn problem(&mut self, file: &str, at: (usize, usize), place: Place, message: String) {
        self.problems.push((
            at.0,
            at.1,
            Problem {
                file: file.to_owned(),
                place,
                message,
            },
        ));
    }

    /// Parses every document of a file and checks each keyward object on its own.
    fn read(&mut self, file: usize, source: &Source) {
        let (docs, error) = parse_documents(&source.text);
        let mut index = 0;
        for doc in docs {
            for object in expand_list(doc) {
                self.read_object(file, index, &source.name, object);
                index += 1;
            }
        }
        if let Some((line, message)) = error {
            self.problem(&source.name, (file, index), Place::Line(line), message);
        }
    }

    fn read_object(&mut self, file: usize, doc: usize, name: &str, mut value: Value) {
        let Some(api_version) = value.get("apiVersion").and_then(Value::as_str) else {
            return;
        };
        let group = api_version.split('/').next().unwrap_or_default();
        if group != crate::api::GROUP {
            return;
        }
        let kind_text = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let kind = Kind::parse(&kind_text);
        let namespaced = kind
            .and_then(|k| self.schemas.get(&k))
            .is_none_or(|s| s.namespaced);
        let metadata = value.get("metadata").cloned().unwrap_or(Value::Null);
        let object_name = metadata
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let written_namespace = metadata
            .get("namespace")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let namespace = if namespaced {
            written_namespace
                .clone()
                .or_else(|| self.options.default_namespace.clone())
        } else {
            None
        };
        let id = ObjectId {
            kind: kind_text.clone(),
            namespace: namespace.clone().unwrap_or_default(),
            name: object_name.clone(),
        };
        let at = (file, doc);
        let say = |run: &mut Self, message: String| {
            run.problem(name, at, Place::Object(id.clone()), message);
        };

        if api_version != API_VERSION {
            say(
                self,
                format!("apiVersion {api_version} is not served: keyward serves {API_VERSION}"),
            );
            return;
        }
        let Some(kind) = kind else {
            say(
                self,
                format!(
                    "kind {kind_text:?} is not a keyward kind: Tenant, PartnerIntegration, ApiKey or ServiceAccountCredential"
                ),
            );
            return;
        };

        // Metadata: the API server's own checks of a custom object's name and namespace.
        if !metadata.is_object() {
            say(self, "metadata: required field is missing".into());
        } else if object_name.is_empty() {
            say(self, "metadata.name: required field is missing".into());
        } else if object_name.len() > 253 || !self.matches(DNS_SUBDOMAIN_PATTERN, &object_name) {
            say(
                self,
                format!(
                    "metadata.name: {object_name:?} is not a valid name: lower-case letters, digits, '-' and '.', at most 253 characters"
                ),
            );
        }
        if namespaced && namespace.is_none() {
            say(
                self,
                "metadata.namespace is not set: name it, or pass --namespace for manifests whose namespace is set when they are applied".into(),
            );
        }
        if let Some(first) = self.seen.get(&id) {
            let message = if first == name {
                "defined more than once in this file".to_owned()
            } else {
                format!("defined more than once: also in {first}")
            };
            say(self, message);
            return;
        }
        self.seen.insert(id.clone(), name.to_owned());

        // Schema: structure first (it also prunes what the API server would prune), then the
        // CEL rules on what remains.
        if let Some(object) = value.as_object_mut() {
            // Status is written by the operator; in a manifest it is ignored.
            object.remove("status");
        }
        let mut errors = Vec::new();
        self.check_structure(kind, &mut value, &mut errors);
        self.check_rules(kind, &value, &mut errors);
        let schema_ok = errors.is_empty();
        for error in errors {
            say(self, error.to_string());
        }

        match Typed::read(kind, value) {
            Ok(typed) => self.objects.push(Object {
                file,
                doc,
                id,
                placed: namespace.is_some() || !namespaced,
                typed,
            }),
            Err(err) => {
                if schema_ok {
                    // The schema accepted what the operator cannot read: say so rather than
                    // skip the object quietly.
                    say(self, format!("cannot be read as a {kind_text}: {err}"));
                }
                self.unparsed += 1;
                match kind {
                    Kind::Tenant => {
                        self.unparsed_tenants.insert(object_name);
                    }
                    Kind::PartnerIntegration => {
                        self.unparsed_integrations
                            .insert((namespace.unwrap_or_default(), object_name));
                    }
                    _ => {}
                }
            }
        }
    }

    fn matches(&mut self, pattern: &str, text: &str) -> bool {
        self.regex(pattern).is_some_and(|re| re.is_match(text))
    }

    fn regex(&mut self, pattern: &str) -> Option<&Regex> {
        self.patterns
            .entry(pattern.to_owned())
            .or_insert_with(|| Regex::new(pattern).ok())
            .as_ref()
    }

    fn check_structure(&mut self, kind: Kind, value: &mut Value, errors: &mut Vec<FieldError>) {
        let Some(schema) = self.schemas.get(&kind).map(|s| &s.schema) else {
            return;
        };
        let Some(object) = value.as_object_mut() else {
            return;
        };
        // apiVersion, kind and metadata are the API server's, not the CRD schema's.
        let mut envelope = serde_json::Map::new();
        for key in ["apiVersion", "kind", "metadata"] {
            if let Some(v) = object.remove(key) {
                envelope.insert(key.to_owned(), v);
            }
        }
        let mut walker = Walker {
            patterns: &mut self.patterns,
            errors,
        };
        walker.check(schema, value, "");
        if let Some(object) = value.as_object_mut() {
            object.extend(envelope);
        }
    }

    fn check_rules(&self, kind: Kind, value: &Value, errors: &mut Vec<FieldError>) {
        if let Some(schema) = self.schemas.get(&kind) {
            let found = rule_errors(
                &self.validator,
                &schema.schema,
                &schema.compiled,
                value,
                errors,
            );
            errors.extend(found);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Cross-object rules.

    fn cross_check(&mut self, sources: &[Source]) {
        let now = self.options.now;
        let objects = std::mem::take(&mut self.objects);
        let tenants: Vec<&Tenant> = objects
            .iter()
            .filter_map(|o| match &o.typed {
                Typed::Tenant(t) => Some(t.as_ref()),
                _ => None,
            })
            .collect();
        let tenancy = Tenancy::new(tenants);

        // Integrations first: credentials take their tenant, owner and expiry from them.
        let mut integrations: BTreeMap<(String, String), IntegrationFacts> = BTreeMap::new();
        let mut found: Vec<(usize, usize, ObjectId, String)> = Vec::new();
        for object in &objects {
            let mut say = |message: String| {
                found.push((object.file, object.doc, object.id.clone(), message));
            };
            match &object.typed {
                Typed::Tenant(t) => {
                    for message in self.tenant_problems(&tenancy, t, now) {
                        say(message);
                    }
                }
                Typed::Integration(pi) if object.placed => {
                    let ns = object.id.namespace.as_str();
                    let decision =
                        integration::decide(pi, ns, &tenancy, &PriorOwner::default(), now);
                    integrations.insert(
                        (ns.to_owned(), object.id.name.clone()),
                        IntegrationFacts {
                            name: object.id.name.clone(),
                            tenant: pi.spec.tenant.clone(),
                            owner: pi.spec.owner.clone(),
                            expires_at: pi.spec.expires_at.map(|t| t.0),
                            suspended: pi.spec.suspended.unwrap_or(false),
                            owner_binding: decision.owner_binding,
                        },
                    );
                    if self.echoes_reported(&tenancy, &pi.spec.tenant) {
                        continue;
                    }
                    use crate::api::IntegrationState as S;
                    match decision.state {
                        S::Invalid => say(format!(
                            "{} ({})",
                            decision.ready.message, decision.ready.reason
                        )),
                        S::Expired => say(format!(
                            "already {} ({})",
                            decision.ready.message, decision.ready.reason
                        )),
                        S::Active | S::Suspended => {}
                    }
                }
                _ => {}
            }
        }

        for object in &objects {
            if !object.placed {
                continue;
            }
            let messages = match &object.typed {
                Typed::ApiKey(key) => {
                    let spec = &key.spec;
                    let mut messages = self.credential_problems(
                        &tenancy,
                        &integrations,
                        &object.id,
                        CredentialFields {
                            integration: spec.integration.as_deref(),
                            tenant: spec.tenant.as_deref(),
                            owner: spec.owner.as_deref(),
                            expires_at: spec.expires_at.map(|t| t.0),
                            rotation_every: spec
                                .rotation
                                .as_ref()
                                .and_then(|r| r.every.parse().ok()),
                        },
                    );
                    if let Some(vault) = &spec.vault
                        && let Some(message) = vault_path_problem(&vault.path)
                    {
                        messages.push(message);
                    }
                    messages
                }
                Typed::Sac(sac) => {
                    let spec = &sac.spec;
                    self.credential_problems(
                        &tenancy,
                        &integrations,
                        &object.id,
                        CredentialFields {
                            integration: spec.integration.as_deref(),
                            tenant: spec.tenant.as_deref(),
                            owner: spec.owner.as_deref(),
                            expires_at: spec.expires_at.map(|t| t.0),
                            rotation_every: None,
                        },
                    )
                }
                _ => Vec::new(),
            };
            for message in messages {
                found.push((object.file, object.doc, object.id.clone(), message));
            }
        }

        for (file, doc, id, message) in found {
            let name = sources
                .get(file)
                .map(|s| s.name.as_str())
                .unwrap_or_default();
            self.problem(name, (file, doc), Place::Object(id), message);
        }
        self.objects = objects;
    }

    /// True when resolving `tenant` fails only because of something reported elsewhere: a
    /// malformed policy duration or a self-parent (schema problems of that Tenant), or a
    /// Tenant document that could not be read.
    fn echoes_reported(&self, tenancy: &Tenancy, tenant: &str) -> bool {
        match tenancy.resolve(tenant) {
            Ok(_) => false,
            Err(TenancyError::InvalidPolicy { .. }) => true,
            Err(TenancyError::NotFound(name)) => self.unparsed_tenants.contains(&name),
            Err(TenancyError::MissingParent { parent, .. }) => {
                self.unparsed_tenants.contains(&parent)
            }
            // A tenant that is its own parent is refused by an admission rule, reported on it.
            Err(TenancyError::ParentCycle { cycle, .. }) => {
                matches!(cycle.as_slice(), [.., a, b] if a == b)
            }
        }
    }

    fn tenant_problems(&self, tenancy: &Tenancy, t: &Tenant, now: DateTime<Utc>) -> Vec<String> {
        let Some(name) = t.metadata.name.as_deref() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let decision = tenant::decide(tenancy, name, now);
        if !decision.ready.status && !self.echoes_reported(tenancy, name) {
            out.push(format!(
                "{} ({})",
                decision.ready.message, decision.ready.reason
            ));
        }
        if let Some(ends) = t.spec.ends_at
            && ends.0 <= now
            && t.spec.state != Some(TenantState::Offboarded)
        {
            out.push(format!(
                "endsAt {} is in the past, so the tenant counts as Offboarded and every credential of it expires; write state: Offboarded to keep an ended tenant",
                format_time(ends.0)
            ));
        }
        out
    }

    fn credential_problems(
        &self,
        tenancy: &Tenancy,
        integrations: &BTreeMap<(String, String), IntegrationFacts>,
        id: &ObjectId,
        fields: CredentialFields<'_>,
    ) -> Vec<String> {
        let now = self.options.now;
        let spec = CredentialSpec {
            integration: fields.integration.map(str::to_owned),
            tenant: fields.tenant.map(str::to_owned),
            owner: fields.owner.map(str::to_owned),
            expires_at: fields.expires_at,
            rotation_every: fields.rotation_every,
        };
        let integration = fields
            .integration
            .map(|pi| integrations.get(&(id.namespace.clone(), pi.to_owned())));
        if let (Some(pi), Some(None)) = (fields.integration, integration)
            && self
                .unparsed_integrations
                .contains(&(id.namespace.clone(), pi.to_owned()))
        {
            return Vec::new();
        }
        if fields.tenant.is_none() && fields.integration.is_none() {
            // The admission rule requires one of them; that problem is already reported.
            return Vec::new();
        }
        let tenant_name = fields
            .tenant
            .map(str::to_owned)
            .or_else(|| integration.flatten().map(|pi| pi.tenant.clone()));
        if let Some(t) = &tenant_name
            && self.echoes_reported(tenancy, t)
        {
            return Vec::new();
        }
        let lifecycle = credential::decide(&CredentialInput {
            namespace: &id.namespace,
            generation: 1,
            spec: &spec,
            integration,
            tenancy,
            observed_generation: None,
            renewed_at: None,
            prior_owner: PriorOwner::default(),
            now,
        });
        let mut out = Vec::new();
        use crate::api::CredentialState as S;
        match lifecycle.state {
            S::Invalid => out.push(format!("{} ({})", lifecycle.message, lifecycle.reason)),
            S::Expired => out.push(format!(
                "already {} ({})",
                lifecycle.message, lifecycle.reason
            )),
            S::Active | S::Revoked | S::Pending => {}
        }
        // maxLifetime counts from the last change of the spec, which is when it is applied:
        // an expiresAt beyond now + maxLifetime is cut short by the operator.
        if let (Some(own), Some(t)) = (fields.expires_at, lifecycle.tenant.as_deref())
            && lifecycle.state != S::Expired
            && let Ok(resolved) = tenancy.resolve(t)
            && let Some(max) = resolved.policy.max_lifetime
            && let Some(cut) = crate::policy::credential::cut_by_max_lifetime(Some(own), now, max)
        {
            out.push(format!(
                "expiresAt {} is later than tenant {t}'s maxLifetime ({}) allows from now; it would expire at {} instead ({})",
                format_time(own),
                format_duration(max),
                format_time(cut),
                "PolicyCompliant=False"
            ));
        }
        out
    }
}

/// The spec fields both credential kinds share.
struct CredentialFields<'a> {
    integration: Option<&'a str>,
    tenant: Option<&'a str>,
    owner: Option<&'a str>,
    expires_at: Option<DateTime<Utc>>,
    rotation_every: Option<chrono::Duration>,
}

pub use crate::policy::vault::path_problem as vault_path_problem;

// ---------------------------------------------------------------------------------------------
// YAML.

/// Every document of a YAML stream (empty ones skipped), and the line and message of a
/// syntax error that ended it early.
pub fn parse_documents(text: &str) -> (Vec<Value>, Option<(u64, String)>) {
    let mut docs = Vec::new();
    if text.contains('\u{0}') {
        return (docs, Some((1, "not a UTF-8 text file".to_owned())));
    }
    let mut reader = std::io::Cursor::new(text.as_bytes());
    for doc in serde_saphyr::read::<_, Value>(&mut reader) {
        match doc {
            Ok(Value::Null) => {}
            Ok(value) => docs.push(value),
            Err(err) => {
                let line = err.location().map(|l| l.line()).unwrap_or(1).max(1);
                return (docs, Some((line, yaml_message(&err))));
            }
        }
    }
    (docs, None)
}

/// The first line of a YAML error, without the source snippet and the position the library
/// adds (the line is printed before the message; the column after it).
fn yaml_message(err: &serde_saphyr::Error) -> String {
    let text = err.without_snippet().to_string();
    let first = text.lines().next().unwrap_or_default().trim();
    // The library's advice to its caller is no use to someone fixing a manifest.
    let first = first
        .split(", set DuplicateKeyPolicy")
        .next()
        .unwrap_or_default();
    let first = match first.rfind(" at line ") {
        Some(at) if first[at..].contains(", column ") => &first[..at],
        _ => first,
    };
    let column = err
        .location()
        .map(|l| format!(" (column {})", l.column()))
        .unwrap_or_default();
    if first.is_empty() {
        format!("invalid YAML{column}")
    } else {
        format!("invalid YAML: {first}{column}")
    }
}

/// A `kind: List` (what `kubectl get -o yaml` prints) stands for its items.
fn expand_list(doc: Value) -> Vec<Value> {
    let is_list = doc.get("apiVersion").and_then(Value::as_str) == Some("v1")
        && doc.get("kind").and_then(Value::as_str) == Some("List");
    if !is_list {
        return vec![doc];
    }
    match doc {
        Value::Object(mut map) => match map.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-06-01T00:00:00Z".parse().expect("a time")
    }

    fn lint_text(text: &str) -> Vec<String> {
        let options = Options {
            now: now(),
            default_namespace: None,
        };
        let source = Source {
            name: "m.yaml".into(),
            text: text.into(),
        };
        lint(&[source], &options)
            .problems
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const TENANT: &str = "apiVersion: keyward.io/v1alpha1
kind: Tenant
metadata: {name: acme}
spec:
  namespaces: [acme-prod]
  owners: [{name: alice, kind: User}]
";

    #[test]
    fn a_consistent_tenant_and_key_have_no_problems() {
        let text = format!(
            "{TENANT}---
apiVersion: keyward.io/v1alpha1
kind: ApiKey
metadata: {{name: k, namespace: acme-prod}}
spec: {{tenant: acme, owner: alice, rotation: {{every: 720h, overlap: 1h}}}}
"
        );
        assert_eq!(lint_text(&text), Vec::<String>::new());
    }

    #[test]
    fn problems_name_file_kind_namespace_and_name() {
        let text = format!(
            "{TENANT}---
apiVersion: keyward.io/v1alpha1
kind: ApiKey
metadata: {{name: k, namespace: acme-prod}}
spec: {{tenant: acme, owner: mallory}}
"
        );
        assert_eq!(
            lint_text(&text),
            [
                "m.yaml: ApiKey/acme-prod/k: mallory is not an owner of tenant acme (OwnerNotInTenant)"
            ]
        );
    }

    #[test]
    fn a_tenant_has_an_empty_namespace_part() {
        let text = "apiVersion: keyward.io/v1alpha1
kind: Tenant
metadata: {name: acme}
spec: {owners: []}
";
        assert_eq!(
            lint_text(text),
            ["m.yaml: Tenant//acme: spec.owners: must have at least 1 item(s)"]
        );
    }

    #[test]
    fn syntax_errors_carry_the_line() {
        let problems = lint_text("a: 1\nb: [unclosed\nc: 2\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("m.yaml:"), "{problems:?}");
        assert!(problems[0].contains("invalid YAML"), "{problems:?}");
    }

    /// Every field that carries a rule, set to a valid value: each rule evaluates and passes
    /// offline, so none of keyward's own rules is beyond the CEL library.
    #[test]
    fn every_keyward_admission_rule_evaluates_offline() {
        let objects = [
            serde_json::json!({"apiVersion": API_VERSION, "kind": "Tenant", "metadata": {"name": "a"},
                "spec": {"parent": "b", "owners": [{"name": "x", "kind": "User"}], "endsAt": "2027-01-01T00:00:00+02:00",
                    "policy": {"maxLifetime": "1h", "maxRotationInterval": "1h", "ownerGracePeriod": "1h", "staleAfter": "1h"}}}),
            serde_json::json!({"apiVersion": API_VERSION, "kind": "PartnerIntegration", "metadata": {"name": "p", "namespace": "n"},
                "spec": {"tenant": "a", "owner": "x", "partner": {"name": "P"}, "expiresAt": "2027-01-01T00:00:00Z"}}),
            serde_json::json!({"apiVersion": API_VERSION, "kind": "ApiKey", "metadata": {"name": "k", "namespace": "n"},
                "spec": {"integration": "p", "tenant": "a", "secret": {"enabled": false}, "vault": {"path": "p"},
                    "rotation": {"every": "2h", "overlap": "1h30m"}, "expiresAt": "2027-01-01T00:00:00.5Z"}}),
            serde_json::json!({"apiVersion": API_VERSION, "kind": "ServiceAccountCredential", "metadata": {"name": "s", "namespace": "n"},
                "spec": {"tenant": "a", "tokenTTL": "2h", "refreshBefore": "30m", "expiresAt": "2027-01-01T00:00:00Z"}}),
        ];
        let options = Options {
            now: now(),
            default_namespace: None,
        };
        let run = Run::new(&options);
        assert_eq!(run.schemas.len(), 4);
        for object in objects {
            let kind = object["kind"].as_str().and_then(Kind::parse).expect("kind");
            let mut errors = Vec::new();
            run.check_rules(kind, &object, &mut errors);
            assert!(errors.is_empty(), "{kind:?}: {errors:?}");
        }
        // And the rules are really there.
        let text = serde_json::to_string(&run.schemas[&Kind::ApiKey].schema).expect("json");
        assert!(text.contains("x-kubernetes-validations"));
    }

    #[test]
    fn vault_paths_must_stay_under_the_prefix() {
        assert_eq!(vault_path_problem("globex/api-key"), None);
        assert_eq!(vault_path_problem("a..b/c"), None);
        assert!(vault_path_problem("/etc/x").is_some());
        assert!(vault_path_problem("a/../../b").is_some());
        assert!(vault_path_problem("..").is_some());
    }

    #[test]
    fn lists_stand_for_their_items_and_other_documents_are_ignored() {
        let list = format!(
            "apiVersion: v1
kind: List
items:
- {}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: x}}
---
---
just a string
",
            serde_json::to_string(&serde_saphyr::from_str::<Value>(TENANT).expect("tenant yaml"))
                .expect("json")
        );
        let options = Options {
            now: now(),
            default_namespace: None,
        };
        let report = lint(
            &[Source {
                name: "l.yaml".into(),
                text: list,
            }],
            &options,
        );
        assert_eq!(report.problems, vec![]);
        assert_eq!(report.objects, 1);
    }
}

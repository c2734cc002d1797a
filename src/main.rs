//! The `keyward` command line: parses arguments and hands over to the library.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keyward::telemetry::{self, LogFormat};

/// Declarative, governed non-human credentials for multi-tenant Kubernetes platforms.
#[derive(Parser)]
#[command(name = "keyward", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once per process: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the controller against the cluster of the current kubeconfig (or in-cluster).
    Run {
        /// Address of /metrics, /healthz and /readyz.
        #[arg(long, default_value = "0.0.0.0:8080", env = "KEYWARD_METRICS_ADDR")]
        metrics_addr: SocketAddr,
        /// Manage only this namespace (and the Tenants that list it). Default: the cluster.
        #[arg(long, env = "KEYWARD_NAMESPACE")]
        namespace: Option<String>,
        /// Reconcile only while holding the Lease `keyward` (replicas wait as warm standbys).
        #[arg(long)]
        leader_elect: bool,
        /// Namespace of the leader-election Lease.
        #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
        leader_elect_namespace: String,
        /// How long the Lease outlives its holder's last renewal.
        #[arg(long, default_value = "15s", value_parser = parse_duration)]
        leader_elect_lease_duration: std::time::Duration,
        /// Period of the inventory's full re-scan for copies of managed values (between
        /// two, each Secret seen created or changed is read once); `0`: never.
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        scan_interval: std::time::Duration,
        /// The write floor: no effective rotation interval and no ServiceAccountCredential
        /// refresh period is shorter than this (shorter ones are clamped up and reported as
        /// PolicyCompliant=False reason=Clamped).
        #[arg(long, default_value = "1m", value_parser = parse_duration)]
        min_rotation_interval: std::time::Duration,
        /// Passes that do work at once: ApiKeys and ServiceAccountCredentials share one
        /// bound, admitted by urgency (expiries and revocations first, then issues and
        /// rotations, then the rest); Tenants and PartnerIntegrations each have their own.
        #[arg(long, default_value_t = keyward::controller::DEFAULT_CONCURRENCY, value_parser = clap::value_parser!(u16).range(1..))]
        concurrency: u16,
        /// Requests per second sent to the Kubernetes API, sustained (`0`: no limit). The
        /// leader election's Lease requests are never held back.
        #[arg(long, default_value_t = keyward::client::DEFAULT_QPS)]
        kube_qps: u32,
        /// Requests sent to the Kubernetes API at once before --kube-qps applies.
        #[arg(long, default_value_t = keyward::client::DEFAULT_BURST, value_parser = clap::value_parser!(u32).range(1..))]
        kube_burst: u32,
        /// Vault's address (http:// or https://). Without it, a key with spec.vault says
        /// Synced=False reason=VaultUnavailable and a Vault-only key is not issued.
        #[arg(long, env = "VAULT_ADDR")]
        vault_addr: Option<String>,
        /// Vault Kubernetes auth role to log in with, using the ServiceAccount token in
        /// --vault-token-file. Without it, the token in VAULT_TOKEN is used (development).
        #[arg(long)]
        vault_role: Option<String>,
        /// Mount path of Vault's Kubernetes auth method.
        #[arg(long, default_value = "kubernetes")]
        vault_auth_mount: String,
        /// Where every key's values live in Vault, under its mount: `{tenant}` (and
        /// `{namespace}`) are replaced, and spec.vault.path is relative to it.
        #[arg(long, default_value = keyward::policy::vault::DEFAULT_PREFIX)]
        vault_prefix: String,
        /// PEM file of the CA that signed Vault's serving certificate.
        #[arg(long, env = "VAULT_CACERT")]
        vault_ca_cert: Option<String>,
        /// The ServiceAccount token presented to Vault's Kubernetes auth method (read at
        /// each login, so a projected token that rotates is picked up).
        #[arg(
            long,
            default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token"
        )]
        vault_token_file: String,
        /// Log format on stderr (audit lines always go to stdout as JSON).
        #[arg(long, value_enum, default_value_t = LogFormat::Json)]
        log_format: LogFormat,
    },
    /// Print every keyward CustomResourceDefinition as YAML.
    Crd,
    /// Check manifests offline (no cluster): schema, admission rules and the cross-object
    /// rules, using the Tenants and PartnerIntegrations found in the same paths. Prints one
    /// `file: Kind/namespace/name: message` line per problem; exit code 1 on any problem,
    /// 2 when the paths cannot be read.
    Lint {
        /// Files or folders (searched recursively for .yaml and .yml files); `-` reads
        /// standard input.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<std::path::PathBuf>,
        /// Namespace of namespaced objects that set none (as `kubectl apply -n` would).
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Ask for one rotation of an ApiKey or ServiceAccountCredential now, by setting its
    /// keyward.io/rotate annotation to the current time.
    Rotate {
        /// ak/NAME or sac/NAME (also apikey/NAME, serviceaccountcredential/NAME).
        #[arg(value_name = "KIND/NAME")]
        target: String,
        /// Namespace of the object. Default: the current kubeconfig's namespace.
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Print the inventory's findings and the managed credentials of the cluster in the
    /// current kubeconfig. Exit code 0; 1 when a `--fail-on` finding exists; 2 when the
    /// cluster cannot be read.
    Report(keyward::report::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Lint { paths, namespace } => keyward::lint::cli(&paths, namespace),
        Command::Rotate { target, namespace } => keyward::rotate::cli(&target, namespace),
        Command::Report(args) => keyward::report::cli(&args),
        Command::Crd => match keyward::crd::yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("keyward crd: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Run {
            metrics_addr,
            namespace,
            leader_elect,
            leader_elect_namespace,
            leader_elect_lease_duration,
            scan_interval,
            min_rotation_interval,
            concurrency,
            kube_qps,
            kube_burst,
            vault_addr,
            vault_role,
            vault_auth_mount,
            vault_prefix,
            vault_ca_cert,
            vault_token_file,
            log_format,
        } => {
            if let Err(err) = telemetry::init(log_format) {
                eprintln!("keyward run: {err}");
                return ExitCode::FAILURE;
            }
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(err) => {
                    eprintln!("keyward run: starting the runtime: {err}");
                    return ExitCode::FAILURE;
                }
            };
            let leader_election = leader_elect.then(|| keyward::controller::leader::LeaseOptions {
                namespace: leader_elect_namespace,
                name: "keyward".to_owned(),
                duration: leader_elect_lease_duration,
            });
            let result = runtime.block_on(keyward::controller::run(keyward::controller::Options {
                metrics_addr,
                namespace,
                leader_election,
                scan_interval,
                min_rotation_interval: chrono::Duration::from_std(min_rotation_interval)
                    .unwrap_or(chrono::Duration::MAX),
                concurrency,
                rate_limit: keyward::client::RateLimit {
                    qps: kube_qps,
                    burst: kube_burst,
                },
                vault: vault_addr.map(|addr| keyward::store::vault::VaultConfig {
                    addr,
                    role: vault_role,
                    auth_mount: vault_auth_mount,
                    prefix: vault_prefix,
                    ca_cert: vault_ca_cert,
                    jwt_path: vault_token_file,
                    token: std::env::var("VAULT_TOKEN").ok().filter(|t| !t.is_empty()),
                    timeout: std::time::Duration::from_secs(10),
                }),
            }));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!(error = %err, "keyward run failed");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Parses a Go duration (`15s`, `1m30s`) for a flag.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    keyward::api::GoDuration::from(text)
        .parse()
        .map_err(|e| e.to_string())
        .and_then(|d| d.to_std().map_err(|e| e.to_string()))
}

//! `keyward report`: the inventory's findings and the managed credentials of the cluster in
//! the current kubeconfig, as a table for people, JSON for tools, or CSV for spreadsheets.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use kube::Client;
use serde::Serialize;

use crate::api::CredentialState;
use crate::inventory::findings::{self, Finding, FindingKind};
use crate::inventory::object::{Class, ObjectKind};
use crate::inventory::{self, Inventory, InventoryError};
use crate::policy::format_time;

/// Output format of `keyward report`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Findings, most severe first, then the credentials, for a person to read.
    #[default]
    Table,
    /// One object: `{"findings": […], "credentials": […]}`.
    Json,
    /// The findings, one per line, after a header line.
    Csv,
}

/// Arguments of `keyward report`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Only findings and credentials in the namespaces this tenant owns.
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,
    /// Only findings of this kind (repeatable).
    #[arg(
        long = "finding",
        value_name = "FINDING",
        value_enum,
        ignore_case = true
    )]
    pub findings: Vec<FindingKind>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Exit with code 1 (after printing) when a finding of this kind exists in the report's
    /// scope (`--tenant`; `--finding` only filters what is printed). Repeatable.
    #[arg(
        long = "fail-on",
        value_name = "FINDING",
        value_enum,
        ignore_case = true
    )]
    pub fail_on: Vec<FindingKind>,
}

/// One managed credential as the report prints it. Never a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialRow {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    /// The tenant that owns the credential's namespace; `None` when none does.
    pub tenant: Option<String>,
    pub owner: Option<String>,
    pub state: Option<CredentialState>,
    pub version: Option<i64>,
    #[serde(serialize_with = "rfc3339")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339")]
    pub last_rotated_at: Option<DateTime<Utc>>,
}

fn rfc3339<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&format_time(*t)),
        None => s.serialize_none(),
    }
}

/// What `keyward report` prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub credentials: Vec<CredentialRow>,
    /// Objects per kind and class over the whole cluster (table output only).
    #[serde(skip)]
    pub classes: BTreeMap<(ObjectKind, Class), usize>,
    /// A `--fail-on` finding exists in scope.
    #[serde(skip)]
    pub failed: bool,
}

/// Narrows the inventory to what `args` asks for.
pub fn report(inventory: &Inventory, args: &Args) -> Report {
    let in_scope = |tenant: Option<&str>| args.tenant.is_none() || tenant == args.tenant.as_deref();
    let scoped: Vec<&Finding> = inventory
        .findings
        .iter()
        .filter(|f| in_scope(f.tenant.as_deref()))
        .collect();
    let failed = scoped.iter().any(|f| args.fail_on.contains(&f.finding));
    let mut findings: Vec<Finding> = scoped
        .into_iter()
        .filter(|f| args.findings.is_empty() || args.findings.contains(&f.finding))
        .cloned()
        .collect();
    findings::sort(&mut findings);
    let mut credentials: Vec<CredentialRow> = inventory
        .credentials
        .iter()
        .map(|c| CredentialRow {
            kind: c.kind.as_str(),
            namespace: c.namespace.clone(),
            name: c.name.clone(),
            tenant: inventory
                .tenancy
                .namespace_owner(&c.namespace)
                .tenant()
                .map(str::to_owned),
            owner: c.owner.clone(),
            state: c.state,
            version: c.version,
            expires_at: c.expires_at,
            last_rotated_at: c.last_rotated_at,
        })
        .filter(|c| in_scope(c.tenant.as_deref()))
        .collect();
    credentials
        .sort_by(|a, b| (&a.namespace, &a.name, a.kind).cmp(&(&b.namespace, &b.name, b.kind)));
    Report {
        findings,
        credentials,
        classes: inventory.classes.clone(),
        failed,
    }
}

/// The report in `format`, ending with a newline.
pub fn render(report: &Report, format: Format, now: DateTime<Utc>) -> String {
    match format {
        Format::Json => json(report),
        Format::Csv => csv(&report.findings),
        Format::Table => table(report, now),
    }
}

fn json(report: &Report) -> String {
    // Serializing strings, numbers and nulls cannot fail; an empty object is still valid JSON.
    let mut out = serde_json::to_string_pretty(report).unwrap_or_else(|_| "{}".to_owned());
    out.push('\n');
    out
}

/// Header of the CSV output.
pub const CSV_HEADER: &str = "finding,tenant,namespace,kind,name,message";

fn csv(findings: &[Finding]) -> String {
    let mut out = format!("{CSV_HEADER}\r\n");
    for f in findings {
        let fields = [
            f.finding.as_str(),
            f.tenant.as_deref().unwrap_or_default(),
            f.namespace.as_deref().unwrap_or_default(),
            &f.kind,
            &f.name,
            &f.message,
        ];
        let line: Vec<String> = fields.iter().map(|s| csv_field(s)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// RFC 4180: a field with a comma, quote or line break is quoted, quotes doubled.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn table(report: &Report, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "FINDINGS ({})", report.findings.len());
    if report.findings.is_empty() {
        out.push_str("none\n");
    } else {
        let rows = report
            .findings
            .iter()
            .map(|f| {
                vec![
                    f.finding.as_str().to_owned(),
                    dash(f.tenant.as_deref()),
                    dash(f.namespace.as_deref()),
                    format!("{}/{}", f.kind, f.name),
                    f.at.map(|t| when(t, now)).unwrap_or_else(|| "-".to_owned()),
                    f.message.clone(),
                ]
            })
            .collect();
        out.push_str(&columns(
            &[
                "FINDING",
                "TENANT",
                "NAMESPACE",
                "OBJECT",
                "WHEN",
                "MESSAGE",
            ],
            rows,
        ));
    }
    let _ = writeln!(out, "\nCREDENTIALS ({})", report.credentials.len());
    if report.credentials.is_empty() {
        out.push_str("none\n");
    } else {
        let rows = report
            .credentials
            .iter()
            .map(|c| {
                vec![
                    c.kind.to_owned(),
                    c.namespace.clone(),
                    c.name.clone(),
                    dash(c.tenant.as_deref()),
                    dash(c.owner.as_deref()),
                    c.state
                        .map(|s| format!("{s:?}"))
                        .unwrap_or_else(|| "-".to_owned()),
                    c.version
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "-".to_owned()),
                    c.expires_at
                        .map(|t| when(t, now))
                        .unwrap_or_else(|| "never".to_owned()),
                    c.last_rotated_at
                        .map(|t| when(t, now))
                        .unwrap_or_else(|| "-".to_owned()),
                ]
            })
            .collect();
        out.push_str(&columns(
            &[
                "KIND",
                "NAMESPACE",
                "NAME",
                "TENANT",
                "OWNER",
                "STATE",
                "VERSION",
                "EXPIRES",
                "ROTATED",
            ],
            rows,
        ));
    }
    if !report.classes.is_empty() {
        let _ = writeln!(out, "\nINVENTORY (whole cluster)");
        for kind in [ObjectKind::Secret, ObjectKind::ServiceAccount] {
            let parts: Vec<String> = [Class::Managed, Class::LegacySaToken, Class::Unmanaged]
                .into_iter()
                .filter_map(|class| {
                    let n = report.classes.get(&(kind, class)).copied().unwrap_or(0);
                    (n > 0).then(|| format!("{n} {}", class.as_str()))
                })
                .collect();
            let total: usize = report
                .classes
                .iter()
                .filter(|((k, _), _)| *k == kind)
                .map(|(_, n)| n)
                .sum();
            let _ = writeln!(out, "{}s: {total} ({})", kind.as_str(), parts.join(", "));
        }
    }
    out
}

fn dash(s: Option<&str>) -> String {
    s.unwrap_or("-").to_owned()
}

/// `3d ago (2026-05-29T00:00:00Z)` or `in 2h (…)`: how far, then exactly when.
pub fn when(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let d = t - now;
    let (secs, future) = if d.num_seconds() >= 0 {
        (d.num_seconds(), true)
    } else {
        (-d.num_seconds(), false)
    };
    let span = match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    };
    let relative = if future {
        format!("in {span}")
    } else {
        format!("{span} ago")
    };
    format!("{relative} ({})", format_time(t))
}

/// Left-aligned columns two spaces apart; the last column is not padded.
fn columns(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows.iter()) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                let _ = write!(
                    line,
                    "{cell:<width$}  ",
                    width = widths.get(i).copied().unwrap_or(0)
                );
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Gathers the inventory of the cluster in the current kubeconfig.
async fn gather() -> Result<Inventory, ReportError> {
    let client = Client::try_default().await.map_err(ReportError::Connect)?;
    Ok(inventory::collect(&client).await?)
}

#[derive(Debug, thiserror::Error)]
enum ReportError {
    #[error("connecting to the cluster: {0}")]
    Connect(#[source] kube::Error),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error("starting the runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// `keyward report`: exit code 0, 1 when a `--fail-on` finding exists, 2 when the cluster
/// could not be read.
pub fn cli(args: &Args) -> ExitCode {
    let inventory = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ReportError::Runtime)
        .and_then(|runtime| runtime.block_on(gather()));
    let inventory = match inventory {
        Ok(inventory) => inventory,
        Err(err) => {
            eprintln!("keyward report: {err}");
            return ExitCode::from(2);
        }
    };
    let report = report(&inventory, args);
    print!("{}", render(&report, args.output, Utc::now()));
    if report.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Any pair of times chrono can hold formats without a panic, in every output.
        #[test]
        fn relative_times_never_panic(
            a in chrono::DateTime::<Utc>::MIN_UTC.timestamp()..chrono::DateTime::<Utc>::MAX_UTC.timestamp(),
            b in chrono::DateTime::<Utc>::MIN_UTC.timestamp()..chrono::DateTime::<Utc>::MAX_UTC.timestamp(),
        ) {
            let (Some(a), Some(b)) = (DateTime::from_timestamp(a, 0), DateTime::from_timestamp(b, 0)) else {
                return Ok(());
            };
            proptest::prop_assert!(!when(a, b).is_empty());
        }
    }
    use crate::api::Tenant;
    use crate::inventory::credential::{CredentialKind, ManagedCredential};
    use crate::policy::tenancy::Tenancy;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn finding(kind: FindingKind, tenant: Option<&str>, name: &str, message: &str) -> Finding {
        Finding {
            finding: kind,
            tenant: tenant.map(Into::into),
            namespace: Some("a1".into()),
            kind: "Secret".into(),
            name: name.into(),
            message: message.into(),
            at: Some(at("2026-05-29T00:00:00Z")),
        }
    }

    fn inventory() -> Inventory {
        let tenant: Tenant = serde_json::from_value(json!({
            "apiVersion": "keyward.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": "acme"},
            "spec": {"namespaces": ["a1"], "owners": [{"name": "alice", "kind": "User"}]},
        }))
        .unwrap();
        let credential = |ns: &str, name: &str| ManagedCredential {
            kind: CredentialKind::ApiKey,
            namespace: ns.into(),
            name: name.into(),
            tenant: Some("acme".into()),
            owner: Some("alice".into()),
            state: Some(CredentialState::Active),
            version: Some(3),
            fingerprint: Some("sha256:0123456789abcdef".into()),
            expires_at: Some(at("2026-07-01T00:00:00Z")),
            last_rotated_at: Some(at("2026-05-31T22:00:00Z")),
            reason: None,
            message: None,
        };
        Inventory {
            tenancy: Tenancy::new([&tenant]),
            findings: vec![
                finding(FindingKind::CrossTenant, None, "copied", "in \"b\", here"),
                finding(FindingKind::Unowned, Some("acme"), "plain", "no owner"),
                finding(FindingKind::Stale, Some("acme"), "old", "old"),
            ],
            credentials: vec![credential("a1", "key"), credential("elsewhere", "stray")],
            classes: [
                ((ObjectKind::Secret, Class::Managed), 1),
                ((ObjectKind::Secret, Class::Unmanaged), 2),
                ((ObjectKind::ServiceAccount, Class::Unmanaged), 4),
            ]
            .into(),
        }
    }

    fn args(tenant: Option<&str>, findings: &[FindingKind], fail_on: &[FindingKind]) -> Args {
        Args {
            tenant: tenant.map(Into::into),
            findings: findings.to_vec(),
            output: Format::Json,
            fail_on: fail_on.to_vec(),
        }
    }

    #[test]
    fn json_is_one_object_with_the_contract_fields() {
        let r = report(&inventory(), &args(None, &[], &[]));
        let v: serde_json::Value =
            serde_json::from_str(&render(&r, Format::Json, Utc::now())).unwrap();
        assert_eq!(
            v["findings"][0],
            json!({"finding": "CrossTenant", "tenant": null, "namespace": "a1",
                   "kind": "Secret", "name": "copied", "message": "in \"b\", here"})
        );
        assert_eq!(
            v["credentials"][0],
            json!({"kind": "ApiKey", "namespace": "a1", "name": "key", "tenant": "acme",
                   "owner": "alice", "state": "Active", "version": 3,
                   "expiresAt": "2026-07-01T00:00:00Z", "lastRotatedAt": "2026-05-31T22:00:00Z"})
        );
        assert_eq!(
            v["credentials"][1]["tenant"],
            json!(null),
            "no tenant owns namespace elsewhere"
        );
        assert_eq!(v.as_object().unwrap().len(), 2);
    }

    #[test]
    fn tenant_filters_both_lists_and_finding_filters_findings() {
        let r = report(
            &inventory(),
            &args(Some("acme"), &[FindingKind::Stale], &[]),
        );
        assert_eq!(r.findings.len(), 1);
        assert_eq!(r.findings[0].name, "old");
        assert_eq!(r.credentials.len(), 1);
        assert_eq!(r.credentials[0].name, "key");
    }

    #[test]
    fn fail_on_looks_at_the_tenants_findings_whatever_is_printed() {
        let inv = inventory();
        assert!(report(&inv, &args(None, &[], &[FindingKind::CrossTenant])).failed);
        assert!(!report(&inv, &args(Some("acme"), &[], &[FindingKind::CrossTenant])).failed);
        assert!(
            report(
                &inv,
                &args(Some("acme"), &[FindingKind::Stale], &[FindingKind::Unowned])
            )
            .failed
        );
        assert!(!report(&inv, &args(None, &[], &[FindingKind::Expired])).failed);
    }

    #[test]
    fn csv_has_a_header_and_quotes_what_needs_quoting() {
        let r = report(&inventory(), &args(None, &[], &[]));
        let text = render(&r, Format::Csv, Utc::now());
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], "finding,tenant,namespace,kind,name,message");
        assert_eq!(
            lines[1],
            r#"CrossTenant,,a1,Secret,copied,"in ""b"", here""#
        );
        assert_eq!(lines[2], "Stale,acme,a1,Secret,old,old");
        assert_eq!(lines.len(), 5, "three findings and a final line break");
    }

    #[test]
    fn table_shows_findings_by_severity_with_relative_and_absolute_times() {
        let r = report(&inventory(), &args(None, &[], &[]));
        let text = render(&r, Format::Table, at("2026-06-01T00:00:00Z"));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "FINDINGS (3)");
        assert!(lines[1].starts_with("FINDING "));
        assert!(lines[2].starts_with("CrossTenant "));
        assert!(lines[3].starts_with("Stale "), "{text}");
        assert!(lines[4].starts_with("Unowned "), "{text}");
        assert!(text.contains("3d ago (2026-05-29T00:00:00Z)"), "{text}");
        assert!(text.contains("in 30d (2026-07-01T00:00:00Z)"), "{text}");
        assert!(text.contains("2h ago (2026-05-31T22:00:00Z)"), "{text}");
        assert!(text.contains("CREDENTIALS (2)"));
        assert!(
            text.contains("Secrets: 3 (1 managed, 2 unmanaged)"),
            "{text}"
        );
        assert!(text.contains("ServiceAccounts: 4 (4 unmanaged)"), "{text}");
    }

    #[test]
    fn relative_times_pick_the_largest_unit() {
        let now = at("2026-06-01T00:00:00Z");
        assert_eq!(
            when(at("2026-06-01T00:00:30Z"), now),
            "in 30s (2026-06-01T00:00:30Z)"
        );
        assert_eq!(
            when(at("2026-05-31T23:15:00Z"), now),
            "45m ago (2026-05-31T23:15:00Z)"
        );
        assert_eq!(
            when(at("2025-06-01T00:00:00Z"), now),
            "365d ago (2025-06-01T00:00:00Z)"
        );
    }
}

//! The audit trail: one JSON line on stdout per credential lifecycle event (issue, rotation,
//! expiry, revocation, refusal, conflict), kept apart from diagnostic logs on stderr.
//!
//! Records describe credentials, never contain them: no field can hold a secret value.

use std::io::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// What happened to the credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum AuditAction {
    Issued,
    Rotated,
    Expired,
    Revoked,
    Refused,
    Conflict,
}

/// The Kubernetes object the record is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: Option<String>,
}

/// One audit event. Build it with [`AuditRecord::new`] and fill in the optional fields;
/// `audit` is private so that it cannot be anything but `true`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    audit: bool,
    /// Names the announcement (the name of its Event): a line printed again after a crash
    /// carries the same id, so a log pipeline can drop the repeat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub time: DateTime<Utc>,
    pub action: AuditAction,
    pub object: ObjectRef,
    pub tenant: Option<String>,
    pub owner: Option<String>,
    pub integration: Option<String>,
    pub version: Option<i64>,
    /// A non-reversible digest for correlating versions, never the value itself.
    pub fingerprint: Option<String>,
    pub reason: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_rotated_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_rotation_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_valid_until: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<DateTime<Utc>>,
}

impl AuditRecord {
    /// A record stamped with the current time and every optional field empty.
    pub fn new(
        action: AuditAction,
        object: ObjectRef,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            audit: true,
            id: None,
            time: Utc::now(),
            action,
            object,
            tenant: None,
            owner: None,
            integration: None,
            version: None,
            fingerprint: None,
            reason: reason.into(),
            message: message.into(),
            issued_at: None,
            last_rotated_at: None,
            next_rotation_at: None,
            previous_valid_until: None,
            expires_at: None,
            token_expires_at: None,
        }
    }
}

/// The record as one JSON line including the trailing newline. JSON escapes control
/// characters inside strings, so a multi-line message cannot split the record.
pub fn to_line(record: &AuditRecord) -> Result<String, serde_json::Error> {
    let mut line = serde_json::to_string(record)?;
    line.push('\n');
    Ok(line)
}

/// Writes the record to stdout. The line is built first and written under one lock so that
/// concurrent reconcilers cannot interleave partial records.
pub fn emit(record: &AuditRecord) {
    let line = match to_line(record) {
        Ok(line) => line,
        Err(err) => {
            tracing::warn!(error = %err, "audit record could not be serialized");
            return;
        }
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = stdout
        .write_all(line.as_bytes())
        .and_then(|()| stdout.flush())
    {
        tracing::warn!(error = %err, "audit record could not be written to stdout");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::Value;

    fn record(action: AuditAction) -> AuditRecord {
        let mut record = AuditRecord::new(
            action,
            ObjectRef {
                kind: "ManagedCredential".into(),
                namespace: Some("team-a".into()),
                name: "billing-api".into(),
                uid: Some("0b1c".into()),
            },
            "Scheduled",
            "rotated on schedule",
        );
        record.tenant = Some("acme".into());
        record.version = Some(3);
        record
    }

    fn parse(record: &AuditRecord) -> Value {
        let line = to_line(record).expect("serializes");
        serde_json::from_str(&line).expect("line is valid JSON")
    }

    #[test]
    fn line_parses_back_with_audit_true_and_camel_case_fields() {
        let mut record = record(AuditAction::Rotated);
        record.next_rotation_at = Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).single();
        let value = parse(&record);

        assert_eq!(value["audit"], Value::Bool(true));
        assert_eq!(value["action"], "Rotated");
        assert_eq!(value["object"]["namespace"], "team-a");
        assert_eq!(value["tenant"], "acme");
        assert_eq!(value["version"], 3);
        assert_eq!(value["nextRotationAt"], "2030-01-02T03:04:05Z");
        let time = value["time"].as_str().expect("time is a string");
        assert!(DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
    }

    #[test]
    fn every_action_serializes_under_its_contract_name() {
        for (action, name) in [
            (AuditAction::Issued, "Issued"),
            (AuditAction::Rotated, "Rotated"),
            (AuditAction::Expired, "Expired"),
            (AuditAction::Revoked, "Revoked"),
            (AuditAction::Refused, "Refused"),
            (AuditAction::Conflict, "Conflict"),
        ] {
            assert_eq!(parse(&record(action))["action"], name);
        }
    }

    #[test]
    fn absent_times_are_omitted_rather_than_null() {
        let value = parse(&record(AuditAction::Issued));
        let object = value.as_object().expect("record is an object");
        for key in [
            "issuedAt",
            "lastRotatedAt",
            "nextRotationAt",
            "previousValidUntil",
            "expiresAt",
            "tokenExpiresAt",
        ] {
            assert!(!object.contains_key(key), "{key} should be omitted");
        }
    }

    #[test]
    fn record_is_exactly_one_line_even_with_a_multi_line_message() {
        let mut record = record(AuditAction::Refused);
        record.message = "first line\nsecond line\r\n".into();
        let line = to_line(&record).expect("serializes");
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1);
        assert!(!line.contains('\r'));
        assert_eq!(parse(&record)["message"], "first line\nsecond line\r\n");
    }
}

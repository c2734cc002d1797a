//! The CRD schema as the API server applies it: the structural checks of an OpenAPI v3
//! schema (with the pruning the server does), and the verdicts of its CEL rules.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use kube::core::cel::{CompiledSchema, ErrorKind, ValidationError, Validator};
use regex::Regex;
use serde_json::Value;

use crate::api::GoDuration;

/// A problem at a field path of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // keyward's own rule messages start with the field they are about
        // (`spec.rotation.every must be …`); those need no path in front.
        let names_itself = self
            .message
            .strip_prefix(self.path.as_str())
            .is_some_and(|rest| rest.starts_with([' ', '.', '[']));
        if self.path.is_empty() || names_itself {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Checks a value against an OpenAPI v3 structural schema (type, required, enum, bounds,
/// lengths, patterns, list uniqueness, unknown fields) and prunes what the API server
/// prunes: unknown fields, and nulls where the schema is not nullable.
pub(super) struct Walker<'a> {
    pub(super) patterns: &'a mut HashMap<String, Option<Regex>>,
    pub(super) errors: &'a mut Vec<FieldError>,
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

fn is_true(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool) == Some(true)
}

impl Walker<'_> {
    fn error(&mut self, path: &str, message: String) {
        self.errors.push(FieldError {
            path: path.to_owned(),
            message,
        });
    }

    pub(super) fn check(&mut self, schema: &Value, value: &mut Value, path: &str) {
        if value.is_null() && is_true(schema, "nullable") {
            return;
        }
        if let Some(expected) = schema.get("type").and_then(Value::as_str) {
            let actual = json_type(value);
            let fits = match expected {
                "integer" => {
                    actual == "integer" || value.as_f64().is_some_and(|f| f.fract() == 0.0)
                }
                "number" => matches!(actual, "integer" | "number"),
                other => other == actual,
            };
            if !fits {
                self.error(
                    path,
                    format!("must be of type {expected}, not {actual} {}", short(value)),
                );
                return;
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            self.error(
                path,
                format!(
                    "unsupported value {}: must be one of {}",
                    short(value),
                    list.join(", ")
                ),
            );
        }
        match value {
            Value::String(s) => self.check_string(schema, s, path),
            Value::Number(n) => {
                if let Some(n) = n.as_f64() {
                    self.check_number(schema, n, path);
                }
            }
            Value::Array(items) => self.check_array(schema, items, path),
            Value::Object(map) => self.check_object(schema, map, path),
            _ => {}
        }
    }

    fn check_string(&mut self, schema: &Value, s: &str, path: &str) {
        // The API server counts characters, not bytes.
        let length = s.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && length < min
        {
            self.error(path, format!("must be at least {min} character(s) long"));
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && length > max
        {
            self.error(path, format!("must be at most {max} characters long"));
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            let regex = self
                .patterns
                .entry(pattern.to_owned())
                .or_insert_with(|| Regex::new(pattern).ok());
            match regex {
                Some(re) if re.is_match(s) => {}
                Some(_) => self.error(path, format!("{s:?} must match {pattern}")),
                None => self.error(
                    path,
                    format!("cannot check the pattern {pattern} offline: it does not compile"),
                ),
            }
        }
    }

    fn check_number(&mut self, schema: &Value, n: f64, path: &str) {
        let show = |x: f64| {
            if x.fract() == 0.0 {
                format!("{x:.0}")
            } else {
                x.to_string()
            }
        };
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            let exclusive = is_true(schema, "exclusiveMinimum");
            if n < min || (exclusive && n == min) {
                let how = if exclusive {
                    "greater than"
                } else {
                    "at least"
                };
                self.error(
                    path,
                    format!("must be {how} {}, not {}", show(min), show(n)),
                );
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            let exclusive = is_true(schema, "exclusiveMaximum");
            if n > max || (exclusive && n == max) {
                let how = if exclusive { "less than" } else { "at most" };
                self.error(
                    path,
                    format!("must be {how} {}, not {}", show(max), show(n)),
                );
            }
        }
    }

    fn check_array(&mut self, schema: &Value, items: &mut [Value], path: &str) {
        let count = items.len() as u64;
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && count < min
        {
            self.error(path, format!("must have at least {min} item(s)"));
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && count > max
        {
            self.error(path, format!("must have at most {max} items"));
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter_mut().enumerate() {
                self.check(item_schema, item, &format!("{path}[{i}]"));
            }
        }
        match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => {
                for (i, item) in items.iter().enumerate() {
                    if items.iter().take(i).any(|earlier| earlier == item) {
                        self.error(
                            &format!("{path}[{i}]"),
                            format!("duplicate value {}", short(item)),
                        );
                    }
                }
            }
            Some("map") => {
                let keys: Vec<&str> = schema
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|k| k.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let key_of = |item: &Value| -> Vec<Value> {
                    keys.iter()
                        .map(|k| item.get(*k).cloned().unwrap_or(Value::Null))
                        .collect()
                };
                for (i, item) in items.iter().enumerate() {
                    let key = key_of(item);
                    if items.iter().take(i).any(|earlier| key_of(earlier) == key) {
                        let described: Vec<String> = keys
                            .iter()
                            .zip(&key)
                            .map(|(k, v)| format!("{k} {v}"))
                            .collect();
                        self.error(
                            &format!("{path}[{i}]"),
                            format!("duplicate entry with {}", described.join(" and ")),
                        );
                    }
                }
            }
            _ => {}
        }
    }

    fn check_object(
        &mut self,
        schema: &Value,
        map: &mut serde_json::Map<String, Value>,
        path: &str,
    ) {
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties").filter(|a| a.is_object());
        // An object schema with neither properties nor additionalProperties (metadata) is
        // free-form here: the API server checks it by its own rules.
        let free = is_true(schema, "x-kubernetes-preserve-unknown-fields")
            || (properties.is_none() && additional.is_none());
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            let here = join(path, &key);
            let field_schema = properties.and_then(|p| p.get(&key)).or(additional);
            match field_schema {
                Some(field_schema) => {
                    let is_null = map.get(&key).is_some_and(Value::is_null);
                    if is_null && !is_true(field_schema, "nullable") {
                        // The API server drops a null it cannot keep, as if never written.
                        map.remove(&key);
                        continue;
                    }
                    if let Some(child) = map.get_mut(&key) {
                        self.check(field_schema, child, &here);
                    }
                }
                None if free => {}
                None => {
                    let hint = properties
                        .and_then(|p| closest(&key, p.keys().map(String::as_str)))
                        .map(|k| format!(" (did you mean {k}?)"))
                        .unwrap_or_default();
                    self.error(&here, format!("unknown field{hint}"));
                    map.remove(&key);
                }
            }
        }
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for field in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(field) {
                    self.error(&join(path, field), "required field is missing".to_owned());
                }
            }
        }
    }
}

/// The known name closest to a misspelt one, if it is close enough to be the one meant.
fn closest<'k>(word: &str, known: impl Iterator<Item = &'k str>) -> Option<&'k str> {
    let lower = word.to_lowercase();
    known
        .map(|k| (edit_distance(&lower, &k.to_lowercase()), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 5))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    strsim::levenshtein(a, b)
}

/// The CEL rules' verdicts on `value`, as field errors. A rule the library cannot evaluate
/// is reported as unchecked, never taken as passed.
pub(super) fn rule_errors(
    validator: &Validator,
    schema: &Value,
    compiled: &CompiledSchema,
    value: &Value,
    structural: &[FieldError],
) -> Vec<FieldError> {
    let value = offline_view(schema, value);
    let Err(failures) = validator.validate_compiled(compiled, &value, None) else {
        return Vec::new();
    };
    let failures = failures.into_vec();
    let mut found: Vec<FieldError> = Vec::new();
    let mut unevaluated: Vec<&ValidationError> = Vec::new();
    for failure in &failures {
        match failure.kind {
            ErrorKind::ValidationFailure => found.push(FieldError {
                path: failure.field_path.clone(),
                message: failure.message.clone(),
            }),
            _ => unevaluated.push(failure),
        }
    }
    for failure in unevaluated {
        let path = failure.field_path.as_str();
        // A rule that fails at run time on a value already reported as wrong (a
        // malformed duration, say) adds nothing: the API server would reject the same.
        let explained = structural.iter().chain(found.iter()).any(|e| {
            path.is_empty()
                || e.path == path
                || e.path.starts_with(&format!("{path}."))
                || e.path.starts_with(&format!("{path}["))
        });
        if failure.kind == ErrorKind::EvaluationError && explained {
            continue;
        }
        let message = match failure.kind {
            // Admission rejects a value on which a rule fails to evaluate, as it rejects
            // one on which the rule is false: give the rule's own message.
            ErrorKind::EvaluationError => match rule_message(schema, path, &failure.rule) {
                Some(said) => format!("{said} ({})", failure.message),
                None => format!("{} (rule `{}`)", failure.message, failure.rule),
            },
            // The CEL library cannot evaluate the rule: say that it went unchecked rather
            // than let it pass.
            _ => format!(
                "cannot check the admission rule `{}` offline: {}",
                failure.rule, failure.message
            ),
        };
        found.push(FieldError {
            path: path.to_owned(),
            message,
        });
    }
    found
}

/// The object as the CEL rules are evaluated on it offline. The CEL library's `duration()`
/// is not Go's: it knows no `µs`, stops reading at a unit it does not know, and computes in
/// floating point, a nanosecond off at times. So every duration in the syntax admission
/// accepts is handed to it in the canonical spelling of its value as Go (and keyward's
/// parser) computes it, which the library reads exactly: the rules then decide as the API
/// server does. Anything else is left as written, for the rules to reject.
fn offline_view(schema: &Value, value: &Value) -> Value {
    let mut value = value.clone();
    canonical_durations(schema, &mut value, &duration_rule());
    value
}

/// The rule every duration field carries (from the type's schema).
fn duration_rule() -> String {
    crate::api::cel_is_duration("self")
}

fn canonical_durations(schema: &Value, value: &mut Value, marker: &str) {
    match value {
        Value::String(text) => {
            let is_duration = schema
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
                .is_some_and(|rules| {
                    rules.iter().any(|r| {
                        r.get("rule")
                            .and_then(Value::as_str)
                            .is_some_and(|rule| rule.starts_with(marker))
                    })
                });
            if is_duration && admitted_duration(text) {
                match GoDuration(text.clone()).parse() {
                    Ok(d) => {
                        if let Some(canonical) = GoDuration::from_duration(d) {
                            *text = canonical.0;
                        }
                    }
                    // Longer than any bound: only the micro sign needs spelling out for the
                    // library to see that it is too long.
                    Err(_) => *text = text.replace('\u{b5}', "u"),
                }
            }
        }
        Value::Object(map) => {
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (name, child) in map.iter_mut() {
                    if let Some(child_schema) = properties.get(name) {
                        canonical_durations(child_schema, child, marker);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    canonical_durations(item_schema, item, marker);
                }
            }
        }
        _ => {}
    }
}

fn admitted_duration(text: &str) -> bool {
    static PATTERN: LazyLock<Option<Regex>> =
        LazyLock::new(|| Regex::new(crate::api::DURATION_PATTERN).ok());
    !text.is_empty() && PATTERN.as_ref().is_some_and(|re| re.is_match(text))
}

/// The message of the rule `rule` at the schema node of the data path `path`
/// (`spec.owners[0].kind`). Several fields share a rule's text with different messages, so
/// the rule is looked up where it failed.
fn rule_message<'s>(schema: &'s Value, path: &str, rule: &str) -> Option<&'s str> {
    let mut node = schema;
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let mut parts = segment.split('[');
        let field = parts.next().unwrap_or_default();
        node = node.get("properties")?.get(field)?;
        for _index in parts {
            node = node.get("items")?;
        }
    }
    node.get("x-kubernetes-validations")?
        .as_array()?
        .iter()
        .find(|r| r.get("rule").and_then(Value::as_str) == Some(rule))?
        .get("message")?
        .as_str()
}

#[cfg(test)]
mod tests {
    use kube::core::cel::compile_schema;

    use super::*;

    fn walk_errors(schema: Value, mut value: Value) -> (Vec<String>, Value) {
        let mut patterns = HashMap::new();
        let mut errors = Vec::new();
        Walker {
            patterns: &mut patterns,
            errors: &mut errors,
        }
        .check(&schema, &mut value, "spec");
        (errors.iter().map(ToString::to_string).collect(), value)
    }

    #[test]
    fn walker_checks_types_bounds_enums_and_patterns() {
        let schema = serde_json::json!({
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                "bytes": {"type": "integer", "minimum": 16.0, "maximum": 128.0},
                "state": {"type": "string", "enum": ["Active", "Suspended"]},
                "on": {"type": "boolean"},
            },
        });
        let (errors, _) = walk_errors(
            schema,
            serde_json::json!({"name": "Abcdef1", "bytes": 200, "state": "Paused", "on": "yes"}),
        );
        assert_eq!(
            errors,
            [
                "spec.bytes: must be at most 128, not 200",
                "spec.name: must be at most 5 characters long",
                "spec.name: \"Abcdef1\" must match ^[a-z]+$",
                "spec.on: must be of type boolean, not string \"yes\"",
                "spec.state: unsupported value \"Paused\": must be one of \"Active\", \"Suspended\"",
            ]
        );
    }

    #[test]
    fn walker_reports_and_prunes_unknown_fields_and_drops_nulls() {
        let schema = serde_json::json!({
            "type": "object",
            "required": ["expiresAt"],
            "properties": {
                "expiresAt": {"type": "string"},
                "tenant": {"type": "string"},
            },
        });
        let (errors, value) = walk_errors(
            schema,
            serde_json::json!({"expiresat": "2027-01-01T00:00:00Z", "tenant": null}),
        );
        assert_eq!(
            errors,
            [
                "spec.expiresat: unknown field (did you mean expiresAt?)",
                "spec.expiresAt: required field is missing",
            ]
        );
        assert_eq!(value, serde_json::json!({}));
    }

    #[test]
    fn walker_finds_duplicates_in_sets_and_maps() {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {
                "ns": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                "owners": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"kind": {"type": "string"}, "name": {"type": "string"}}},
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["kind", "name"],
                },
            },
        });
        let (errors, _) = walk_errors(
            schema,
            serde_json::json!({
                "ns": ["a", "b", "a"],
                "owners": [{"kind": "User", "name": "x"}, {"kind": "Group", "name": "x"}, {"kind": "User", "name": "x"}],
            }),
        );
        assert_eq!(
            errors,
            [
                "spec.ns[2]: duplicate value \"a\"",
                "spec.owners[2]: duplicate entry with kind \"User\" and name \"x\"",
            ]
        );
    }

    fn rules_on(rule: &str, value: Value, structural: &[FieldError]) -> Vec<String> {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {"every": {
                "type": "string",
                "x-kubernetes-validations": [{"rule": rule, "message": "must be a positive duration"}],
            }},
        });
        rule_errors(
            &Validator::new(),
            &schema,
            &compile_schema(&schema),
            &value,
            structural,
        )
        .iter()
        .map(ToString::to_string)
        .collect()
    }

    #[test]
    fn a_false_rule_gives_its_message() {
        let rule = "duration(self) > duration('0s')";
        assert_eq!(
            rules_on(rule, serde_json::json!({"every": "0s"}), &[]),
            ["every: must be a positive duration"]
        );
        assert!(rules_on(rule, serde_json::json!({"every": "1h"}), &[]).is_empty());
    }

    #[test]
    fn a_rule_that_fails_to_evaluate_rejects_with_its_message_unless_explained() {
        let rule = "duration(self) > duration('0s')";
        let problems = rules_on(rule, serde_json::json!({"every": "soon"}), &[]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("every: must be a positive duration ("),
            "{problems:?}"
        );
        let already = [FieldError {
            path: "every".into(),
            message: "must match a pattern".into(),
        }];
        assert!(rules_on(rule, serde_json::json!({"every": "soon"}), &already).is_empty());
    }

    #[test]
    fn a_rule_the_library_cannot_evaluate_is_reported_as_unchecked() {
        let problems = rules_on("self.frobnicate()", serde_json::json!({"every": "1h"}), &[]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0]
                .starts_with("every: cannot check the admission rule `self.frobnicate()` offline"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_rule_message_is_found_where_the_rule_failed() {
        let schema = serde_json::json!({"properties": {
            "a": {"x-kubernetes-validations": [{"rule": "r", "message": "about a"}]},
            "b": {"items": {"x-kubernetes-validations": [{"rule": "r", "message": "about b"}]}},
        }});
        assert_eq!(rule_message(&schema, "a", "r"), Some("about a"));
        assert_eq!(rule_message(&schema, "b[3]", "r"), Some("about b"));
        assert_eq!(rule_message(&schema, "c", "r"), None);
    }

    /// Structural and rule errors of a keyward object with this spec, as lint finds them.
    fn keyward_errors(kind: &str, spec: Value) -> Vec<String> {
        let crd = crate::crd::all()
            .into_iter()
            .find(|c| c.spec.names.kind == kind)
            .expect("a keyward kind");
        let schema =
            serde_json::to_value(&crd.spec.versions[0].schema).expect("schema")["openAPIV3Schema"]
                .clone();
        let mut value = serde_json::json!({"spec": spec});
        let mut patterns = HashMap::new();
        let mut structural = Vec::new();
        Walker {
            patterns: &mut patterns,
            errors: &mut structural,
        }
        .check(&schema, &mut value, "");
        let rules = rule_errors(
            &Validator::new(),
            &schema,
            &compile_schema(&schema),
            &value,
            &structural,
        );
        structural
            .iter()
            .chain(&rules)
            .map(ToString::to_string)
            .collect()
    }

    use crate::api::bounded_fields::{
        HOSTILE_DURATIONS, HOSTILE_TIMES, bounded_fields as fields, is_time_field as is_time,
        under_minimum as below_minimum,
    };

    #[test]
    fn hostile_durations_and_times_are_rejected_offline_with_the_field_named() {
        let long = "9".repeat(100) + "h";
        for (kind, path, spec) in fields() {
            let hostile: Vec<&str> = if is_time(path) {
                HOSTILE_TIMES.to_vec()
            } else {
                HOSTILE_DURATIONS
                    .iter()
                    .chain(below_minimum(path))
                    .copied()
                    .chain([long.as_str()])
                    .collect()
            };
            for value in hostile {
                let errors = keyward_errors(kind, spec(value));
                assert!(!errors.is_empty(), "{kind} {path}: {value:?} admitted");
                for error in &errors {
                    assert!(
                        error.starts_with(&format!("{path} "))
                            || error.starts_with(&format!("{path}: ")),
                        "{kind} {path}: {value:?}: {error}"
                    );
                    assert!(
                        !error.contains("conversion")
                            && !error.contains("error")
                            && !error.contains("cannot check"),
                        "{kind} {path}: {value:?}: {error}"
                    );
                }
            }
        }
    }

    #[test]
    fn edge_durations_and_times_are_admitted_offline() {
        for (kind, path, spec) in fields() {
            let edges: &[&str] = if is_time(path) {
                &[
                    "1970-01-01T00:00:00Z",
                    "9999-12-31T23:59:59Z",
                    "9999-12-31T23:59:59+01:00",
                    "1970-01-01T00:00:00-01:00",
                    "2028-02-29T00:00:00Z",
                    "2027-01-31T00:00:00.123456789+05:30",
                ]
            } else if path == "spec.tokenTTL" {
                &["876000h", "10m", "600s", "1h30m", "1.5h", "0.25h", "9m60s"]
            } else if path == "spec.refreshBefore" || path == "spec.rotation.overlap" {
                &[
                    "875999h59m59s999ms999us999ns",
                    "1s",
                    "1h30m",
                    "1.5h",
                    "300ms",
                    "1µs",
                    "1ns",
                ]
            } else {
                &[
                    "876000h",
                    "1s",
                    "1h30m",
                    "1.5h",
                    "1000ms",
                    "1h0.5m",
                    "0.5s500ms",
                ]
            };
            for value in edges {
                assert_eq!(
                    keyward_errors(kind, spec(value)),
                    Vec::<String>::new(),
                    "{kind} {path}: {value:?}"
                );
            }
        }
        // overlap and refreshBefore are compared with their partner to the nanosecond.
        let key = |every: &str, overlap: &str| {
            keyward_errors(
                "ApiKey",
                serde_json::json!({"tenant": "a", "rotation": {"every": every, "overlap": overlap}}),
            )
        };
        // The CEL library alone reads 1.3s as 1299999999ns and µs not at all.
        let equal = ["spec.rotation.overlap must be shorter than spec.rotation.every"];
        assert_eq!(key("1.3s", "1s300ms"), equal);
        assert_eq!(key("1s", "1000000µs"), equal);
        assert_eq!(key("1s", "999999999ns"), Vec::<String>::new());
        assert_eq!(key("2h", "1h59m59.999999999s"), Vec::<String>::new());
    }

    #[test]
    fn a_message_that_names_its_field_is_printed_without_the_path() {
        let error = |path: &str, message: &str| {
            FieldError {
                path: path.into(),
                message: message.into(),
            }
            .to_string()
        };
        assert_eq!(error("spec.a", "spec.a must be 1"), "spec.a must be 1");
        assert_eq!(error("spec", "spec.a must be 1"), "spec.a must be 1");
        assert_eq!(error("spec.a", "must be 1"), "spec.a: must be 1");
        assert_eq!(
            error("spec.a", "spec.ab must be 1"),
            "spec.a: spec.ab must be 1"
        );
    }

    #[test]
    fn close_misspellings_are_suggested() {
        let known = ["expiresAt", "tenant", "integration"];
        assert_eq!(closest("expiresat", known.into_iter()), Some("expiresAt"));
        assert_eq!(
            closest("intgration", known.into_iter()),
            Some("integration")
        );
        assert_eq!(closest("colour", known.into_iter()), None);
    }
}

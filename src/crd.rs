//! The CustomResourceDefinitions of every keyward kind, as installed in a cluster and as
//! committed under `crds/`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

use crate::api::{ApiKey, FIELD, PartnerIntegration, ServiceAccountCredential, Tenant};

/// Every keyward CRD, in a stable order, each rule's message naming the field it is on.
pub fn all() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        Tenant::crd(),
        PartnerIntegration::crd(),
        ApiKey::crd(),
        ServiceAccountCredential::crd(),
    ];
    for crd in &mut crds {
        for version in &mut crd.spec.versions {
            if let Some(schema) = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
            {
                name_fields(schema, "");
            }
        }
    }
    crds
}

/// Writes the path of each schema node (`spec.rotation.every`) into the messages of its
/// rules in place of [`FIELD`]. A type's rules (every duration, every time) are written once
/// for all the fields of that type, and only here is the field known; the API server also
/// prefixes the path, but a message must name the field on its own (`keyward lint`, and
/// anything that shows the message without its prefix).
fn name_fields(schema: &mut JSONSchemaProps, path: &str) {
    for rule in schema.x_kubernetes_validations.iter_mut().flatten() {
        if let Some(message) = rule.message.as_mut() {
            *message = message.replace(FIELD, path);
        }
    }
    for (name, property) in schema.properties.iter_mut().flatten() {
        let here = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        name_fields(property, &here);
    }
    let each = format!("{path}[*]");
    match schema.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(item)) => name_fields(item, &each),
        Some(JSONSchemaPropsOrArray::Schemas(items)) => {
            for item in items {
                name_fields(item, &each);
            }
        }
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(value)) = schema.additional_properties.as_mut() {
        name_fields(value, &each);
    }
}

/// Every CRD as one multi-document YAML stream: what `keyward crd` prints and `crds/` holds.
pub fn yaml() -> Result<String, serde_saphyr::ser::Error> {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use regex::Regex;
    use serde_json::Value;

    use super::*;

    #[test]
    fn committed_crds_equal_keyward_crd_output() {
        let committed = include_str!("../crds/keyward.yaml");
        let generated = yaml().expect("CRDs serialize");
        assert!(
            committed == generated,
            "crds/keyward.yaml is out of date: run `make crds` and commit the result"
        );
    }

    /// `helm install` applies the chart's `crds/`: it must be what `keyward crd` prints.
    #[test]
    fn the_charts_crds_equal_keyward_crd_output() {
        let chart = include_str!("../charts/keyward/crds/keyward.yaml");
        let generated = yaml().expect("CRDs serialize");
        assert!(
            chart == generated,
            "charts/keyward/crds/keyward.yaml is out of date: run `make crds` and commit the result"
        );
    }

    /// Collects the paths of schema properties that have no description.
    fn undocumented(schema: &Value, path: &str, out: &mut Vec<String>) {
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (name, property) in properties {
                let here = format!("{path}.{name}");
                let documented = property
                    .get("description")
                    .and_then(Value::as_str)
                    .is_some_and(|d| !d.trim().is_empty());
                if !documented && !matches!(name.as_str(), "apiVersion" | "kind" | "metadata") {
                    out.push(here.clone());
                }
                undocumented(property, &here, out);
            }
        }
        if let Some(items) = schema.get("items") {
            undocumented(items, &format!("{path}[]"), out);
        }
    }

    #[test]
    fn every_field_is_documented_for_kubectl_explain() {
        let mut missing = Vec::new();
        for crd in all() {
            for version in &crd.spec.versions {
                let schema = version
                    .schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref())
                    .expect("every version has a schema");
                let schema = serde_json::to_value(schema).expect("schema serializes");
                undocumented(&schema, &crd.spec.names.kind, &mut missing);
            }
        }
        assert!(
            missing.is_empty(),
            "fields without a description: {missing:#?}"
        );
    }

    #[test]
    fn credential_kinds_are_in_the_nhi_category_and_all_in_keyward() {
        for crd in all() {
            let names = &crd.spec.names;
            let categories = names.categories.clone().unwrap_or_default();
            assert!(categories.contains(&"keyward".to_owned()), "{}", names.kind);
            let credential = matches!(names.kind.as_str(), "ApiKey" | "ServiceAccountCredential");
            assert_eq!(
                categories.contains(&"nhi".to_owned()),
                credential,
                "{}",
                names.kind
            );
        }
    }

    /// Every rule with the schema node it is on and that node's path, for every CRD.
    fn rules(schema: &Value, path: &str, out: &mut Vec<(String, Value, Value)>) {
        for rule in schema
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            out.push((path.to_owned(), schema.clone(), rule.clone()));
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (name, property) in properties {
                let here = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                rules(property, &here, out);
            }
        }
        if let Some(items) = schema.get("items") {
            rules(items, &format!("{path}[*]"), out);
        }
    }

    fn all_rules() -> Vec<(String, String, Value, Value)> {
        let mut out = Vec::new();
        for crd in all() {
            let schema = serde_json::to_value(&crd.spec.versions[0].schema).expect("serializes");
            let mut found = Vec::new();
            rules(&schema["openAPIV3Schema"], "", &mut found);
            out.extend(
                found
                    .into_iter()
                    .map(|(path, node, rule)| (crd.spec.names.kind.clone(), path, node, rule)),
            );
        }
        out
    }

    #[test]
    fn every_rule_message_names_its_field() {
        let all = all_rules();
        assert!(all.len() > 20, "{}", all.len());
        for (kind, path, _, rule) in all {
            let message = rule["message"].as_str().unwrap_or_default();
            assert!(!message.contains(FIELD), "{kind} {path}: {message}");
            assert!(
                message.starts_with("spec.") || message.starts_with(&path),
                "{kind} {path}: {message:?} does not name the field"
            );
        }
    }

    #[test]
    fn every_duration_and_time_in_a_spec_is_bounded_and_none_in_a_status() {
        let mut durations = BTreeSet::new();
        let mut times = BTreeSet::new();
        for (kind, path, _, rule) in all_rules() {
            let text = rule["rule"].as_str().unwrap_or_default();
            let message = rule["message"].as_str().unwrap_or_default();
            assert!(!path.starts_with("status"), "{kind} {path}: a status rule");
            if text == crate::api::cel_is_duration("self") {
                assert!(
                    message.starts_with(&format!("{path} must be a duration of at most 876000h")),
                    "{message}"
                );
                durations.insert(format!("{kind}.{path}"));
            }
            if text == crate::api::cel_is_time("self") {
                assert!(
                    message.starts_with(&format!("{path} must be an RFC 3339 time from 1970")),
                    "{message}"
                );
                times.insert(format!("{kind}.{path}"));
            }
        }
        let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(
            durations,
            set(&[
                "ApiKey.spec.rotation.every",
                "ApiKey.spec.rotation.overlap",
                "ServiceAccountCredential.spec.refreshBefore",
                "ServiceAccountCredential.spec.tokenTTL",
                "Tenant.spec.policy.maxLifetime",
                "Tenant.spec.policy.maxRotationInterval",
                "Tenant.spec.policy.ownerGracePeriod",
                "Tenant.spec.policy.staleAfter",
            ])
        );
        assert_eq!(
            times,
            set(&[
                "ApiKey.spec.expiresAt",
                "PartnerIntegration.spec.expiresAt",
                "ServiceAccountCredential.spec.expiresAt",
                "Tenant.spec.endsAt",
            ])
        );
    }

    /// A rule that calls `duration()` or `timestamp()` on a value that could fail to convert
    /// would make the API server answer with a conversion error instead of the rule's
    /// message: every such call is behind the check of its operand (syntax, then bound).
    #[test]
    fn every_conversion_is_guarded_by_its_syntax_check() {
        let operand = Regex::new(r"(duration|timestamp)\((self(\.[A-Za-z]+)?)\)").expect("regex");
        for (kind, path, _, rule) in all_rules() {
            let text = rule["rule"].as_str().unwrap_or_default();
            for call in operand.captures_iter(text) {
                let expr = &call[2];
                let guard = if &call[1] == "duration" {
                    crate::api::cel_is_duration(expr)
                } else {
                    crate::api::cel_is_time(expr)
                };
                let first_call = text.find(&call[0]).expect("found");
                let first_guard = text.find(&guard);
                assert!(
                    first_guard.is_some_and(|g| g < first_call),
                    "{kind} {path}: {} in `{text}` is not guarded",
                    &call[0]
                );
            }
        }
    }

    #[test]
    fn no_spec_field_has_a_schema_default() {
        // The operator never fills defaults into a user's spec, and neither may the API server.
        for crd in all() {
            let text = serde_json::to_string(&crd.spec.versions[0].schema).expect("serializes");
            assert!(
                !text.contains("\"default\""),
                "{} has a schema default",
                crd.spec.names.kind
            );
        }
    }
}

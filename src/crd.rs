//! The CustomResourceDefinitions of every keyward kind, as installed in a cluster and as
//! committed under `crds/`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::api::{ApiKey, PartnerIntegration, ServiceAccountCredential, Tenant};

/// Every keyward CRD, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        Tenant::crd(),
        PartnerIntegration::crd(),
        ApiKey::crd(),
        ServiceAccountCredential::crd(),
    ]
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

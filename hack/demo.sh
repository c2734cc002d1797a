#!/usr/bin/env bash
# `make demo`: runs the operator against the local plane (already up, CRDs installed) and
# the local Vault server (already up), applies examples/ and shows, within a minute, keys
# being issued (one kept in Vault only), one rotating every 30 s
# with a 10 s overlap, a trial key expiring 45 s after issue, and the findings report. The operator is stopped
# when the demo ends; its log and audit trail stay in .cluster/.
set -euo pipefail
cd "$(dirname "$0")/.."

kubectl() { .cluster/bin/kubectl --kubeconfig .cluster/kubeconfig "$@"; }
section() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# The local Vault server (hack/vault.sh up, run by `make demo`); development token auth.
eval "$(hack/vault.sh env)"
vault() { "$KEYWARD_VAULT_BIN" "$@"; }

section "starting keyward run (log: .cluster/keyward.log, audit trail: .cluster/keyward-audit.jsonl)"
KUBECONFIG=.cluster/kubeconfig ./target/debug/keyward run --metrics-addr 127.0.0.1:18080 --log-format text --min-rotation-interval 10s \
  --vault-addr "$VAULT_ADDR" \
  >.cluster/keyward-audit.jsonl 2>.cluster/keyward.log &
operator=$!
trap 'kill "$operator" 2>/dev/null; wait "$operator" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -fs http://127.0.0.1:18080/readyz >/dev/null 2>&1 && break
  sleep 0.1
done

# A fresh start: objects left by an earlier demo would carry their old versions and times.
# The operator runs first: a key kept in Vault is deleted only once its values are destroyed.
for ns in acme-prod acme-dev initech-trial; do
  kubectl delete --ignore-not-found --timeout=60s -n "$ns" apikeys,serviceaccountcredentials,partnerintegrations --all >/dev/null 2>&1 || true
done
kubectl delete --ignore-not-found tenants.keyward.io acme acme-holdings initech >/dev/null 2>&1 || true

section "applying examples/"
kubectl apply --server-side --field-manager keyward-demo -f examples/00-namespaces.yaml
kubectl apply --server-side --field-manager keyward-demo -f examples/
sleep 2

section "issued: kubectl get nhi,pi,tn -A"
kubectl get nhi,pi,tn -A

for t in 15 30 45 55; do
  sleep $((t - ${last:-0}))
  last=$t
  section "after ${t}s: kubectl get apikeys -A"
  kubectl get apikeys -A
done

section "the Secret of demo-rotating (values are never printed by keyward; here only the keys and annotations)"
kubectl get secret demo-rotating -n acme-dev \
  -o go-template='{{range $k, $v := .data}}data: {{$k}}{{"\n"}}{{end}}{{range $k, $v := .metadata.annotations}}{{$k}}: {{$v}}{{"\n"}}{{end}}'

section "reporting-vault-key lives in Vault only: no Secret; keyward's record in the path's custom_metadata (vault kv metadata get)"
kubectl get secret reporting-vault-key -n acme-prod 2>&1 | sed 's/^/  kubectl: /' || true
vault kv metadata get -mount=secret keyward/acme/partners/reporting | grep -E '^(current_version|custom_metadata)' | sort -u

section "why trial-key expired: kubectl get apikey trial-key -n initech-trial"
kubectl get apikey trial-key -n initech-trial \
  -o go-template='{{range .status.conditions}}{{if eq .type "Ready"}}Ready={{.status}} reason={{.reason}}: {{.message}}{{"\n"}}{{end}}{{end}}'

section "events"
kubectl get events -A --field-selector reportingComponent=keyward --sort-by=.metadata.creationTimestamp 2>/dev/null | tail -n 12 \
  || kubectl get events -A | grep -E 'Issued|Rotated|Expired' | tail -n 12

section "audit trail (one JSON line per action; .cluster/keyward-audit.jsonl)"
grep '"audit":true' .cluster/keyward-audit.jsonl | cut -c1-220 | tail -n 8

section "metrics (http://127.0.0.1:18080/metrics)"
curl -fs http://127.0.0.1:18080/metrics | grep -E '^keyward_(credentials|rotations_total|inventory_findings)' || true

section "findings for security teams: keyward report --tenant acme; keyward report --tenant initech"
KUBECONFIG=.cluster/kubeconfig ./target/debug/keyward report --tenant acme || true
KUBECONFIG=.cluster/kubeconfig ./target/debug/keyward report --tenant initech || true

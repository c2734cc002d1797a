#!/usr/bin/env bash
# `make demo`: applies examples/ to the local plane (already up, CRDs installed) and shows
# what keyward manages.
set -euo pipefail
cd "$(dirname "$0")/.."

kubectl() { .cluster/bin/kubectl --kubeconfig .cluster/kubeconfig "$@"; }

echo "== applying examples/"
# Namespaces first, so the namespaced objects have somewhere to go.
kubectl apply --server-side --field-manager keyward-demo -f examples/00-namespaces.yaml
kubectl apply --server-side --field-manager keyward-demo -f examples/
echo
echo "== kubectl get nhi,pi,tn -A"
kubectl get nhi,pi,tn -A

#!/usr/bin/env bash
# Gives the operator under test the identity the chart gives it in a cluster: installs the
# chart's ServiceAccount and RBAC (release `keyward` in namespace keyward-system, rendered by
# `helm template` from charts/keyward, so exactly what a platform team reviews and installs)
# into the local plane, mints a token for that ServiceAccount (TokenRequest), and writes
# .cluster/operator.kubeconfig, which uses that token and not the admin certificate. The
# integration tests run `keyward run` with it (tests/support), and tests/rbac.rs proves from
# the audit log that the chart's rules are exactly what those runs needed.
#
# Run after `hack/cluster.sh up`; `make test` and `make integration` do. Idempotent: it
# re-applies the RBAC (a rule removed from the chart goes from the plane too) and mints a
# fresh token (valid 7 days) each time.
set -euo pipefail

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$HACK_DIR/.." && pwd -P)
DIR=$ROOT/.cluster
NAMESPACE=keyward-system
RELEASE=keyward
SERVICE_ACCOUNT=keyward
OUT=$DIR/operator.kubeconfig

die() { echo "operator-identity: $*" >&2; exit 1; }

[[ -f $DIR/kubeconfig && -x $DIR/bin/kubectl ]] || die "no local plane: run hack/cluster.sh up first"
kubectl() { "$DIR/bin/kubectl" --kubeconfig="$DIR/kubeconfig" "$@"; }
"$HACK_DIR/build-helm.sh" >&2
helm=$("$HACK_DIR/build-helm.sh" --bin)

# The CRDs first, as `helm install` does (the chart's crds/).
kubectl apply --server-side --force-conflicts --field-manager=keyward-test-install \
  -f "$ROOT/charts/keyward/crds/" >/dev/null
kubectl wait --for=condition=Established --timeout=60s -f "$ROOT/charts/keyward/crds/" >/dev/null
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply --server-side -f - >/dev/null
"$helm" template "$RELEASE" "$ROOT/charts/keyward" --namespace "$NAMESPACE" \
    --show-only templates/serviceaccount.yaml --show-only templates/rbac.yaml \
  | kubectl apply --server-side --force-conflicts --field-manager=keyward-test-install -f - >/dev/null

token=$(kubectl create token "$SERVICE_ACCOUNT" --namespace "$NAMESPACE" --duration=168h)
server=$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
ca=$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
[[ -n $token && -n $server && -n $ca ]] || die "could not read the plane's address, CA or a token"
umask 077
cat >"$OUT.tmp" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
  - name: keyward-local
    cluster:
      server: $server
      certificate-authority-data: $ca
users:
  - name: system:serviceaccount:$NAMESPACE:$SERVICE_ACCOUNT
    user:
      token: $token
contexts:
  - name: operator
    context:
      cluster: keyward-local
      user: system:serviceaccount:$NAMESPACE:$SERVICE_ACCOUNT
current-context: operator
KUBECONFIG
mv -f "$OUT.tmp" "$OUT"
# The token works and is not an admin's.
[[ $("$DIR/bin/kubectl" --kubeconfig="$OUT" auth can-i get apikeys.keyward.io --all-namespaces) == yes ]] \
  || die "the chart's ServiceAccount cannot read ApiKeys"
[[ $("$DIR/bin/kubectl" --kubeconfig="$OUT" auth can-i '*' '*' --all-namespaces 2>/dev/null || true) == no ]] \
  || die "the chart's ServiceAccount is a cluster admin"
echo "operator identity: system:serviceaccount:$NAMESPACE:$SERVICE_ACCOUNT ($OUT)"

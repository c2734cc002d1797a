#!/usr/bin/env bash
# Builds the helm CLI (v3) used by the chart checks from the Go module proxy, into the same
# cache as the control plane:
#
#   ${KEYWARD_CACHE_DIR:-~/.cache/keyward}/helm-<version>/bin/helm
#
# The version is pinned by the wrapper module hack/helm/go.mod (with a complete go.sum).
# Built only when missing; prints "helm: cached" or "built in Ns".
# `build-helm.sh --bin` prints the binary's path only.
set -euo pipefail

HELM_VERSION=v3.21.4

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
CACHE_DIR=${KEYWARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keyward}
BIN_DIR=$CACHE_DIR/helm-$HELM_VERSION/bin

die() { echo "build-helm: $*" >&2; exit 1; }

grep -Eq "^[[:space:]]*(require )?helm.sh/helm/v3 $HELM_VERSION( |\$)" "$HACK_DIR/helm/go.mod" \
  || die "hack/helm/go.mod does not require helm.sh/helm/v3 $HELM_VERSION; update the variable at the top"

if [[ ${1:-} == --bin ]]; then
  echo "$BIN_DIR/helm"
  exit 0
fi
[[ $# -eq 0 ]] || die "usage: $0 [--bin]"

if [[ -x $BIN_DIR/helm ]]; then
  echo "helm: cached ($BIN_DIR/helm)"
  exit 0
fi
command -v go >/dev/null 2>&1 || die "go is required to build helm"

mkdir -p "$BIN_DIR"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE_DIR/.build-helm.lock"
  if ! flock -n 9; then
    echo "build-helm: another build holds $CACHE_DIR/.build-helm.lock; waiting" >&2
    flock 9
  fi
  if [[ -x $BIN_DIR/helm ]]; then
    echo "helm: cached ($BIN_DIR/helm)"
    exit 0
  fi
fi
rm -rf "$BIN_DIR"/../.build.*
tmp=$(mktemp -d "$BIN_DIR/../.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start=$(date +%s)
export GOFLAGS="-buildvcs=false -modcacherw" CGO_ENABLED=0
cp "$HACK_DIR/helm/go.mod" "$HACK_DIR/helm/go.sum" "$tmp/"
# As helm's own Makefile does: its version, and the Kubernetes version it assumes without a
# cluster (`helm template`, `helm lint`) taken from the client-go it is built with; a module
# build leaves them at "v3.x-dev" and 1.20.
kube=$(awk '$1 == "k8s.io/client-go" { print $2 }' "$HACK_DIR/helm/go.mod")
kube_minor=${kube#v0.}; kube_minor=${kube_minor%%.*}
[[ $kube_minor =~ ^[0-9]+$ ]] || die "no k8s.io/client-go version in hack/helm/go.mod"
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$kube_minor"
done
(cd "$tmp" && nice -n 10 go build -trimpath -ldflags="$ldflags" \
  -o "$tmp/helm" helm.sh/helm/v3/cmd/helm) \
  || die "go build of helm $HELM_VERSION failed"
"$tmp/helm" version --short >/dev/null || die "the built helm binary does not run"
mv -f "$tmp/helm" "$BIN_DIR/helm"
echo "helm: built in $(($(date +%s) - start))s -> $BIN_DIR/helm"

#!/usr/bin/env bash
# The prometheus-operator CRDs for ServiceMonitor and PrometheusRule, generated from the
# published API types (github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring)
# with controller-gen, both pinned by the wrapper module hack/monitoring/go.mod (with a
# complete go.sum). The chart's optional ServiceMonitor and PrometheusRule are checked
# against them by a server-side dry run on the local plane (tests/chart.rs).
#
#   ${KEYWARD_CACHE_DIR:-~/.cache/keyward}/monitoring-crds-<version>/*.yaml
#
# Generated only when missing (about 2 minutes on 2 cores, mostly compiling controller-gen).
# Prints the directory.
set -euo pipefail

MONITORING_VERSION=v0.95.2

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
CACHE_DIR=${KEYWARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keyward}
OUT=$CACHE_DIR/monitoring-crds-$MONITORING_VERSION

die() { echo "monitoring-crds: $*" >&2; exit 1; }

grep -Eq "^[[:space:]]*(require )?github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring $MONITORING_VERSION( |\$)" \
  "$HACK_DIR/monitoring/go.mod" \
  || die "hack/monitoring/go.mod does not require the monitoring API $MONITORING_VERSION; update the variable at the top"

wanted=(monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml)
have() { local f; for f in "${wanted[@]}"; do [[ -s $OUT/$f ]] || return 1; done; }
if have; then echo "$OUT"; exit 0; fi
command -v go >/dev/null 2>&1 || die "go is required to generate the monitoring CRDs"

mkdir -p "$CACHE_DIR"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE_DIR/.monitoring-crds.lock"
  flock 9
  if have; then echo "$OUT"; exit 0; fi
fi
tmp=$(mktemp -d "$CACHE_DIR/.monitoring.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cp "$HACK_DIR/monitoring/go.mod" "$HACK_DIR/monitoring/go.sum" "$HACK_DIR/monitoring/tools.go" "$tmp/"
export GOFLAGS="-buildvcs=false -modcacherw" CGO_ENABLED=0
(cd "$tmp" && nice -n 10 go run sigs.k8s.io/controller-tools/cmd/controller-gen crd \
  paths=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1 \
  output:crd:dir="$tmp/out") >&2 || die "controller-gen failed"
mkdir -p "$OUT"
for f in "${wanted[@]}"; do
  [[ -s $tmp/out/$f ]] || die "controller-gen wrote no $f"
  cp "$tmp/out/$f" "$OUT/$f"
done
echo "$OUT"

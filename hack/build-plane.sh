#!/usr/bin/env bash
# Builds the local control-plane binaries (kube-apiserver, kube-controller-manager,
# kubectl, etcd) from source with `go build`, into a per-version cache:
#
#   ${KEYWARD_CACHE_DIR:-~/.cache/keyward}/k8s-<version>/bin/{kube-apiserver,kube-controller-manager,kubectl}
#   ${KEYWARD_CACHE_DIR:-~/.cache/keyward}/etcd-<version>/bin/etcd
#
# A binary is built only when it is missing. The version pins live in
# hack/k8s/go.mod and hack/etcd/go.mod (with complete go.sum files), so a fresh
# machine needs only Go and the Go module proxy. The variables below must match
# those go.mod files; the script refuses to run when they disagree, so a bump in
# one place cannot silently reuse binaries cached under the old version's name.
#
# Prints one line per binary: "cached" or "built in Ns".
# `build-plane.sh --dirs` only prints K8S_BIN_DIR=... and ETCD_BIN_DIR=... (shell
# syntax, for eval) so hack/cluster.sh finds the binaries without a second copy
# of the versions.
set -euo pipefail

K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.16

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
CACHE_DIR=${KEYWARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keyward}
K8S_BIN_DIR=$CACHE_DIR/k8s-$K8S_VERSION/bin
ETCD_BIN_DIR=$CACHE_DIR/etcd-$ETCD_VERSION/bin

K8S_CMDS=(kube-apiserver kube-controller-manager kubectl)

die() { echo "build-plane: $*" >&2; exit 1; }

now() { date +%s; }

# The module's require line is the source of truth for what gets built.
check_pin() { # <go.mod> <module path> <expected version>
  local have
  have=$(awk -v m="$2" '($1 == m || ($1 == "require" && $2 == m)) { print ($1 == m ? $2 : $3); exit }' "$1")
  [[ $have == "$3" ]] || die "$1 pins $2 at '${have:-<none>}' but this script expects $3; update the variables at the top"
}
check_pin "$HACK_DIR/k8s/go.mod" k8s.io/kubernetes "$K8S_VERSION"
check_pin "$HACK_DIR/etcd/go.mod" go.etcd.io/etcd/server/v3 "$ETCD_VERSION"

if [[ ${1:-} == --dirs ]]; then
  printf 'K8S_BIN_DIR=%q\nETCD_BIN_DIR=%q\n' "$K8S_BIN_DIR" "$ETCD_BIN_DIR"
  exit 0
fi
[[ $# -eq 0 ]] || die "usage: $0 [--dirs]"

# Without stamping, /version and `kubectl version` report v0.0.0-master+$Format:%H$
# (the default in component-base). -X is link-time only, so it costs nothing extra.
minor=${K8S_VERSION#v*.}; minor=${minor%%.*}
major=${K8S_VERSION#v}; major=${major%%.*}
K8S_LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  K8S_LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done

# One builder at a time per cache: parallel test runs would otherwise each start
# a multi-minute build on the same files. flock is optional (absent on macOS).
mkdir -p "$K8S_BIN_DIR" "$ETCD_BIN_DIR"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE_DIR/.build.lock"
  if ! flock -n 9; then
    echo "build-plane: another build holds $CACHE_DIR/.build.lock; waiting" >&2
    flock 9
  fi
fi

# Scratch dirs left by a build that was killed hard (KILL skips traps); we hold
# the lock, so none of them belongs to a running build.
rm -rf "$K8S_BIN_DIR"/../.build.* "$ETCD_BIN_DIR"/../.build.*

TMP_DIRS=()
cleanup() { [[ ${#TMP_DIRS[@]} -eq 0 ]] || rm -rf "${TMP_DIRS[@]}"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# go build writes into a scratch dir next to the final one (same filesystem), and
# each binary is renamed into place only after the build succeeded, so an
# interrupted build never leaves a partial file that a later run takes as cached.
build_into() { # <module dir> <final bin dir> <ldflags> <output name>:<package>...
  local mod_dir=$1 bin_dir=$2 ldflags=$3; shift 3
  command -v go >/dev/null 2>&1 || die "go is required to build $*"
  local tmp start spec out
  tmp=$(mktemp -d "$bin_dir/../.build.XXXXXX")
  TMP_DIRS+=("$tmp")
  start=$(now)
  local pkgs=()
  for spec in "$@"; do pkgs+=("${spec#*:}"); done
  if [[ $# -eq 1 ]]; then
    out="$tmp/${1%%:*}"
  else
    out="$tmp/" # with several packages, -o must be a directory
  fi
  (cd "$mod_dir" && go build -trimpath -ldflags="$ldflags" -o "$out" "${pkgs[@]}") \
    || die "go build failed in $mod_dir"
  for spec in "$@"; do
    mv -f "$tmp/${spec%%:*}" "$bin_dir/${spec%%:*}"
  done
  for spec in "$@"; do
    echo "${spec%%:*}: built in $(($(now) - start))s -> $bin_dir/${spec%%:*}"
  done
}

missing=()
for cmd in "${K8S_CMDS[@]}"; do
  if [[ -x $K8S_BIN_DIR/$cmd ]]; then
    echo "$cmd: cached ($K8S_BIN_DIR/$cmd)"
  else
    missing+=("$cmd:k8s.io/kubernetes/cmd/$cmd")
  fi
done
# Missing k8s binaries go in a single go build so shared packages compile once.
[[ ${#missing[@]} -eq 0 ]] || build_into "$HACK_DIR/k8s" "$K8S_BIN_DIR" "$K8S_LDFLAGS" "${missing[@]}"

if [[ -x $ETCD_BIN_DIR/etcd ]]; then
  echo "etcd: cached ($ETCD_BIN_DIR/etcd)"
else
  build_into "$HACK_DIR/etcd" "$ETCD_BIN_DIR" "-s -w" "etcd:go.etcd.io/etcd/server/v3"
fi

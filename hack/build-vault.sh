#!/usr/bin/env bash
# Builds the Vault server used by the tests and the demo from the Go module proxy, into
# the same cache as the control plane:
#
#   ${KEYWARD_CACHE_DIR:-~/.cache/keyward}/vault-<version>/bin/vault
#
# Vault v1.14.2 (MPL-2.0) is built through the wrapper module hack/vault/go.mod (with a
# complete go.sum): Vault's own go.mod replaces its nested api and sdk modules with
# directories the module zip does not hold, so the wrapper points each at the published
# version Vault v1.14.2 requires. The sdk (v0.9.2) is copied out of the module cache into
# the build directory with one startup panic removed ("defines a CreateOperation but no
# ExistenceCheck"), a check added to the sdk after the 1.14 release branch was cut, which
# Vault 1.14.2's own enterprise-only stubs trip on the first request. Later 1.14.x need
# sdk code that no published sdk tag has, so the version is pinned.
#
# Built only when missing. About 10 minutes on 2 cores from an empty module cache,
# ~3.5 GB peak while linking, a ~270 MB binary. Prints "vault: cached" or "built in Ns".
# `build-vault.sh --bin` prints the binary's path only.
set -euo pipefail

VAULT_VERSION=v1.14.2
SDK_VERSION=v0.9.2

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
CACHE_DIR=${KEYWARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keyward}
BIN_DIR=$CACHE_DIR/vault-$VAULT_VERSION/bin

die() { echo "build-vault: $*" >&2; exit 1; }

grep -q "^require github.com/hashicorp/vault $VAULT_VERSION\$" "$HACK_DIR/vault/go.mod" \
  || die "hack/vault/go.mod does not require github.com/hashicorp/vault $VAULT_VERSION; update the variables at the top"

if [[ ${1:-} == --bin ]]; then
  echo "$BIN_DIR/vault"
  exit 0
fi
[[ $# -eq 0 ]] || die "usage: $0 [--bin]"

if [[ -x $BIN_DIR/vault ]]; then
  echo "vault: cached ($BIN_DIR/vault)"
  exit 0
fi
command -v go >/dev/null 2>&1 || die "go is required to build Vault"

mkdir -p "$BIN_DIR"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE_DIR/.build-vault.lock"
  if ! flock -n 9; then
    echo "build-vault: another build holds $CACHE_DIR/.build-vault.lock; waiting" >&2
    flock 9
  fi
  if [[ -x $BIN_DIR/vault ]]; then
    echo "vault: cached ($BIN_DIR/vault)"
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
cp "$HACK_DIR/vault/go.mod" "$HACK_DIR/vault/go.sum" "$tmp/"
sdk=$(cd / && go mod download -json "github.com/hashicorp/vault/sdk@$SDK_VERSION" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -n $sdk && -d $sdk ]] || die "could not download github.com/hashicorp/vault/sdk@$SDK_VERSION"
cp -r "$sdk" "$tmp/sdk"
chmod -R u+w "$tmp/sdk"
sed -i 's|panic(fmt.Sprintf("Pattern %v defines a CreateOperation but no ExistenceCheck", p.Pattern))|// check absent from the Vault 1.14 release-branch sdk|' \
  "$tmp/sdk/framework/backend.go"
! grep -q 'but no ExistenceCheck", p.Pattern' "$tmp/sdk/framework/backend.go" \
  || die "the sdk check to remove was not found in $sdk/framework/backend.go"
(cd "$tmp" && nice -n 10 go build -trimpath -ldflags='-s -w' -o "$tmp/vault" github.com/hashicorp/vault) \
  || die "go build of Vault $VAULT_VERSION failed"
"$tmp/vault" version >/dev/null || die "the built vault binary does not run"
mv -f "$tmp/vault" "$BIN_DIR/vault"
echo "vault: built in $(($(date +%s) - start))s -> $BIN_DIR/vault"

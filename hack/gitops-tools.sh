#!/usr/bin/env bash
# The tools tests/gitops.rs needs to run keyward's Argo CD health checks
# (docs/gitops/argocd/*.lua): a Lua 5.4 interpreter and the cjson module, from Debian's
# packages lua5.4 and lua-cjson. Installs them with apt-get only when they are missing, so
# a second run costs one interpreter start.
set -euo pipefail

present() {
  command -v lua5.4 >/dev/null 2>&1 && lua5.4 -e 'require("cjson")' >/dev/null 2>&1
}

if present; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "gitops-tools: lua5.4 with the cjson module is missing and there is no apt-get; install a Lua 5.4 interpreter named lua5.4 and lua-cjson by hand" >&2
  exit 1
fi
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  sudo=(sudo)
fi
echo "gitops-tools: installing lua5.4 and lua-cjson" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have no package lists yet.
if ! "${sudo[@]}" apt-get install -y --no-install-recommends lua5.4 lua-cjson; then
  "${sudo[@]}" apt-get update
  "${sudo[@]}" apt-get install -y --no-install-recommends lua5.4 lua-cjson
fi
if ! present; then
  echo "gitops-tools: lua5.4 still cannot load cjson after the install" >&2
  exit 1
fi

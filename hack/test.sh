#!/usr/bin/env bash
# `make test`: static checks, unit tests, then the integration tests on the local control
# plane and a Vault server.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --lib --bins

# What this script starts it stops again; what was already running (a developer's) is
# reused and left running.
stop=()
cleanup() {
  local c
  for c in "${stop[@]}"; do "$c" down || true; done
}
trap cleanup EXIT
if hack/cluster.sh status >/dev/null 2>&1; then
  echo "test: reusing the running local plane"
else
  stop+=(hack/cluster.sh)
  hack/cluster.sh up
fi
# The Vault server (built from Go modules on first use, like the plane); `up` also points
# its Kubernetes auth method at the plane.
if hack/vault.sh status >/dev/null 2>&1; then
  echo "test: reusing the running Vault server"
else
  stop=(hack/vault.sh "${stop[@]}")
fi
hack/vault.sh up
# The operator under test runs as the chart's ServiceAccount, with the chart's RBAC (helm
# is built from Go modules on first use); tests/rbac.rs reads this run's audit log.
hack/build-helm.sh
hack/operator-identity.sh
# tests/gitops.rs runs the Argo CD health checks in Debian's lua5.4.
hack/gitops-tools.sh
rm -f .cluster/audit-*.log
: >.cluster/audit.log
cargo test --locked --test '*'
# tests/outage.rs kills and restarts the kube-apiserver every other test shares, so it is
# #[ignore]d (the line above, like `make integration`, never runs it beside the others) and
# runs here alone, after them (`make outage` runs it by itself).
cargo test --locked --test outage -- --ignored
# Last, once every operator of the run has sent its requests: the RBAC proof (no request
# refused, no rule of the chart unused).
cargo test --locked --test rbac -- --ignored --nocapture

#!/usr/bin/env bash
# `make test`: static checks, unit tests, then the integration tests on the local control
# plane. A plane this script starts is stopped again when it ends; one that was already
# running (a developer's) is reused and left running.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --lib --bins

if hack/cluster.sh status >/dev/null 2>&1; then
  echo "test: reusing the running local plane"
else
  trap 'hack/cluster.sh down' EXIT
  hack/cluster.sh up
fi
cargo test --locked --test '*'
# tests/outage.rs kills and restarts the kube-apiserver every other test shares, so it is
# #[ignore]d (the line above, like `make integration`, never runs it beside the others) and
# runs here alone, after them (`make outage` runs it by itself).
cargo test --locked --test outage -- --ignored

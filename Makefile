# keyward — build, test and demo on a real local control plane (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
KUBECONFIG_LOCAL := $(CURDIR)/.cluster/kubeconfig
KUBECTL := $(CURDIR)/.cluster/bin/kubectl --kubeconfig $(KUBECONFIG_LOCAL)

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build the keyward binary
	$(CARGO) build --locked --bin keyward

.PHONY: crds
crds: ## Regenerate crds/ and the chart's crds/ from the Rust types
	$(CARGO) run --locked --quiet --bin keyward -- crd > crds/keyward.yaml
	cp crds/keyward.yaml charts/keyward/crds/keyward.yaml

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: lint
lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

.PHONY: unit
unit: ## Unit tests (no cluster)
	$(CARGO) test --locked --lib --bins

.PHONY: integration
integration: ## Integration tests on the running local plane (make cluster-up), the operator under the chart's RBAC
	hack/operator-identity.sh
	$(CARGO) test --locked --test '*'

.PHONY: test
test: ## Everything CI runs: lint, unit tests, and integration tests on a local plane it brings up and down
	hack/test.sh

.PHONY: outage
outage: cluster-up ## Kill the local plane's kube-apiserver for 10 s under a running operator (run alone)
	$(CARGO) test --locked --test outage -- --ignored --nocapture

.PHONY: bench
bench: cluster-up ## Benchmarks (run alone): headline figures (docs/performance.md); the inventory with 100,000 Secrets; one Tenant change among 1,300; leader failover
	hack/operator-identity.sh
	$(CARGO) bench --locked --bench operator
	$(CARGO) bench --locked --bench inventory
	$(CARGO) bench --locked --bench tenancy
	$(CARGO) bench --locked --bench failover

.PHONY: image
image: ## OCI image of keyward without a container daemon: target/image/oci and target/image/keyward-<version>.oci.tar
	hack/image.sh

.PHONY: cluster-up
cluster-up: ## Build (once) and start etcd, kube-apiserver and kube-controller-manager on 127.0.0.1
	hack/cluster.sh up

.PHONY: cluster-down
cluster-down: ## Stop the local plane
	hack/cluster.sh down

.PHONY: vault-up
vault-up: cluster-up ## Build (once) and start a Vault server on 127.0.0.1:18200 (KV v2 at secret/, Kubernetes auth against the plane)
	hack/vault.sh up

.PHONY: vault-down
vault-down: ## Stop the Vault server and drop its data
	hack/vault.sh down

.PHONY: install-crds
install-crds: cluster-up ## Install the CRDs into the local plane and wait until they are established
	$(KUBECTL) apply --server-side --field-manager keyward-install -f crds/keyward.yaml
	$(KUBECTL) wait --for condition=Established --timeout 60s -f crds/keyward.yaml

.PHONY: demo
demo: build install-crds vault-up ## Bring up the plane, install the CRDs, apply examples/ and show them
	hack/demo.sh

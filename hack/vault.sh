#!/usr/bin/env bash
# A real Vault server on 127.0.0.1 for tests and the demo, beside the local plane
# (hack/cluster.sh). Not `vault server -dev`: its storage is in memory, and the tests
# restart Vault under a running operator and expect the values to survive, so this is a
# server with file storage, initialised with one unseal key and unsealed by this script.
#
#   hack/vault.sh up        build Vault if needed, start (or reuse) it, initialise and
#                           unseal it; KV v2 at secret/, the policy and role `keyward`,
#                           and, when the plane runs, the Kubernetes auth method
#                           configured against it
#   hack/vault.sh down      stop it and drop its data
#   hack/vault.sh status    exit 0 only if it runs, is ours, and is unsealed
#   hack/vault.sh env       eval "$(hack/vault.sh env)" -> VAULT_ADDR, VAULT_TOKEN (root)
#   hack/vault.sh kill      SIGKILL it, keeping its data (an outage)
#   hack/vault.sh start     start it again on the same data and unseal it
#
# Everything lives in <repo>/.vault/ (git-ignored): config, data, init output (the unseal
# key and root token of this throwaway server), vault.pid, vault.log.
# KEYWARD_VAULT_PORT (18200) is the listener port (loopback only, plain HTTP).
#
# Kubernetes auth: the plane's ServiceAccount keyward-system/vault-token-reviewer, bound to
# system:auth-delegator, is Vault's token reviewer; Vault runs outside the cluster, so
# disable_local_ca_jwt=true and the plane's CA and address are given. The role `keyward`
# admits the ServiceAccount keyward-system/keyward with the policy `keyward`, which may
# write, read and destroy under secret/keyward/ only.
set -euo pipefail

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$HACK_DIR/.." && pwd -P)
DIR=$ROOT/.vault
PORT=${KEYWARD_VAULT_PORT:-18200}
ADDR=http://127.0.0.1:$PORT
VAULT_BIN=$("$HACK_DIR/build-vault.sh" --bin)
KUBECTL=$ROOT/.cluster/bin/kubectl
KUBECONFIG_FILE=$ROOT/.cluster/kubeconfig
TIMEOUT=${KEYWARD_VAULT_TIMEOUT:-60}

log() { echo "vault: $*" >&2; }
die() { log "$*"; exit 1; }

v() { VAULT_ADDR=$ADDR VAULT_TOKEN=${ROOT_TOKEN:-} "$VAULT_BIN" "$@"; }

# The PID counts as ours only if it runs our binary with our config.
pid_of() {
  local pid args
  [[ -s $DIR/vault.pid ]] || return 1
  pid=$(<"$DIR/vault.pid")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  args=$(ps -ww -o args= -p "$pid" 2>/dev/null) || return 1
  [[ $args == "$VAULT_BIN server -config=$DIR/config.hcl"* ]] || return 1
  echo "$pid"
}

# 200: initialised, unsealed, active; 501: not initialised; 503: sealed.
health() { curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$ADDR/v1/sys/health" 2>/dev/null || true; }

read_init() {
  [[ -s $DIR/init.txt ]] || return 1
  UNSEAL_KEY=$(sed -n 's/^Unseal Key 1: //p' "$DIR/init.txt")
  ROOT_TOKEN=$(sed -n 's/^Initial Root Token: //p' "$DIR/init.txt")
  [[ -n $UNSEAL_KEY && -n $ROOT_TOKEN ]]
}

lock() {
  mkdir -p "$DIR"
  command -v flock >/dev/null 2>&1 || return 0
  exec 9>"$DIR/.lock"
  flock -w 1800 9 || die "gave up waiting for $DIR/.lock"
}

start_server() {
  local i code
  umask 077
  mkdir -p "$DIR/data"
  cat >"$DIR/config.hcl" <<HCL
storage "file" { path = "$DIR/data" }
listener "tcp" {
  address     = "127.0.0.1:$PORT"
  tls_disable = true
}
disable_mlock = true
api_addr      = "$ADDR"
ui            = false
HCL
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null \
    && die "127.0.0.1:$PORT is in use by a process this script did not start; stop it or set KEYWARD_VAULT_PORT"
  rm -f "$DIR/vault.pid"
  # shellcheck disable=SC2016 # expanded by the inner shell
  setsid nohup bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$DIR/vault.pid" \
    "$VAULT_BIN" server -config="$DIR/config.hcl" >>"$DIR/vault.log" 2>&1 </dev/null 9>&- &
  for ((i = 0; i < TIMEOUT * 10; i++)); do
    code=$(health)
    [[ $code == 200 || $code == 501 || $code == 503 ]] && return 0
    # The PID file is written just before the exec: alive is enough here (pid_of also
    # checks the command line, which is still the wrapper's for a moment).
    [[ -s $DIR/vault.pid ]] && ! kill -0 "$(<"$DIR/vault.pid")" 2>/dev/null \
      && { tail -n 20 "$DIR/vault.log" >&2; die "vault exited while starting"; }
    sleep 0.1
  done
  die "vault did not listen on $ADDR within ${TIMEOUT}s; see $DIR/vault.log"
}

unseal() {
  local i
  if [[ $(health) == 501 ]]; then
    v operator init -key-shares=1 -key-threshold=1 >"$DIR/init.txt.tmp"
    mv "$DIR/init.txt.tmp" "$DIR/init.txt"
    rm -f "$DIR/configured"
  fi
  read_init || die "$DIR/init.txt is missing or unreadable; run \`$0 down\` and \`$0 up\`"
  [[ $(health) == 503 ]] && v operator unseal "$UNSEAL_KEY" >/dev/null
  for ((i = 0; i < TIMEOUT * 10; i++)); do
    [[ $(health) == 200 ]] && return 0
    sleep 0.1
  done
  die "vault did not become active within ${TIMEOUT}s; see $DIR/vault.log"
}

configure() {
  if [[ ! -e $DIR/configured ]]; then
    v secrets list | grep -q '^secret/' || v secrets enable -path=secret -version=2 kv >/dev/null
    v auth list | grep -q '^kubernetes/' || v auth enable kubernetes >/dev/null
    touch "$DIR/configured"
  fi
  # What the operator may do: write, read and destroy under secret/keyward/, nothing else.
  v policy write keyward - >/dev/null <<'HCL'
path "secret/data/keyward/*"     { capabilities = ["create", "read", "update"] }
path "secret/metadata/keyward/*" { capabilities = ["create", "read", "update", "delete"] }
path "secret/destroy/keyward/*"  { capabilities = ["update"] }
HCL
  if "$ROOT/hack/cluster.sh" status >/dev/null 2>&1; then
    configure_kubernetes_auth
  else
    log "the local plane is not running: the Kubernetes auth method is left unconfigured (run \`$0 up\` again after \`make cluster-up\`)"
  fi
}

# Run on every `up`: the plane may have been recreated (new ServiceAccount uids).
configure_kubernetes_auth() {
  local k=("$KUBECTL" --kubeconfig "$KUBECONFIG_FILE") jwt
  "${k[@]}" apply --server-side --field-manager keyward-hack -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Namespace
metadata: {name: keyward-system}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: vault-token-reviewer, namespace: keyward-system}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: keyward, namespace: keyward-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: keyward-vault-token-reviewer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:auth-delegator"}
subjects: [{kind: ServiceAccount, name: vault-token-reviewer, namespace: keyward-system}]
YAML
  jwt=$("${k[@]}" -n keyward-system create token vault-token-reviewer --duration=24h)
  v write auth/kubernetes/config \
    kubernetes_host="https://127.0.0.1:${KEYWARD_APISERVER_PORT:-16443}" \
    kubernetes_ca_cert=@"$ROOT/.cluster/pki/ca.crt" \
    token_reviewer_jwt="$jwt" \
    disable_local_ca_jwt=true >/dev/null
  v write auth/kubernetes/role/keyward \
    bound_service_account_names=keyward \
    bound_service_account_namespaces=keyward-system \
    token_policies=keyward token_ttl=1h token_max_ttl=24h >/dev/null
}

cmd_up() {
  lock
  "$HACK_DIR/build-vault.sh" >&2
  if pid_of >/dev/null && [[ $(health) == 200 ]]; then
    read_init || die "$DIR/init.txt is missing; run \`$0 down\` first"
    log "reusing the running Vault at $ADDR"
  else
    if pid_of >/dev/null; then
      log "a Vault of ours runs but is not active; restarting it"
      stop
    fi
    local t0=$SECONDS
    start_server
    unseal
    log "ready in $((SECONDS - t0))s: $ADDR"
  fi
  configure
  log "  eval \"\$($0 env)\""
}

stop() {
  local pid i
  pid=$(pid_of) || { rm -f "$DIR/vault.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$DIR/vault.pid"
  log "stopped vault (pid $pid)"
}

cmd_down() {
  lock
  stop
  rm -rf "$DIR/data" "$DIR/init.txt" "$DIR/configured"
}

cmd_kill() {
  local pid i
  pid=$(pid_of) || die "vault is not running (or not started by this script)"
  kill -KILL "$pid"
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  rm -f "$DIR/vault.pid"
  log "killed vault (pid $pid) at $(date +%s.%N | cut -c1-14)"
}

cmd_start() {
  lock
  pid_of >/dev/null && die "vault is already running"
  [[ -e $DIR/init.txt ]] || die "no data to start from; run \`$0 up\`"
  start_server
  unseal
  log "started and unsealed at $(date +%s.%N | cut -c1-14)"
}

cmd_status() {
  local pid
  pid=$(pid_of) || { echo "vault not running"; return 1; }
  [[ $(health) == 200 ]] || { echo "vault running (pid $pid) but not active"; return 1; }
  echo "vault running (pid $pid), unsealed: $ADDR"
}

cmd_env() {
  read_init || die "not initialised; run \`$0 up\`"
  printf 'export VAULT_ADDR=%q\n' "$ADDR"
  printf 'export VAULT_TOKEN=%q\n' "$ROOT_TOKEN"
  printf 'export KEYWARD_VAULT_BIN=%q\n' "$VAULT_BIN"
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  kill) cmd_kill ;;
  start) cmd_start ;;
  *)
    echo "usage: $0 up|down|status|env|kill|start" >&2
    exit 2
    ;;
esac

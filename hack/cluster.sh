#!/usr/bin/env bash
# A real, minimal Kubernetes control plane on 127.0.0.1 for tests and the demo:
# etcd + kube-apiserver + kube-controller-manager as plain local processes
# (no Docker, no kind, no kubelet, so Pods never run).
#
#   hack/cluster.sh up      build binaries if needed, start the plane (or reuse a
#                           healthy one started by this script), wait until usable
#   hack/cluster.sh down    stop what `up` started, drop the etcd data
#   hack/cluster.sh status  exit 0 only if all three run and /readyz is ok
#   hack/cluster.sh env     eval "$(hack/cluster.sh env)" -> KUBECONFIG and PATH
#   hack/cluster.sh restart-apiserver [SECONDS]
#                           crash the kube-apiserver `up` started (SIGKILL), keep it
#                           down SECONDS (default 10), start it again with the same
#                           arguments and wait for /readyz. Prints `killed <time>`, then
#                           as its last line the time it was ready again (UNIX s.mmm)
#
# Everything lives in <repo>/.cluster/ (git-ignored): PKI, admin kubeconfig,
# <component>.pid, <component>.log, etcd data, and audit.log (the requests of the
# ServiceAccounts of keyward-system, see hack/audit-policy.yaml). Ports (loopback only):
#   KEYWARD_ETCD_PORT (23790), KEYWARD_ETCD_PEER_PORT (23800),
#   KEYWARD_APISERVER_PORT (16443); the controller-manager serves nothing.
# KEYWARD_CLUSTER_TIMEOUT (60) bounds the wait for readiness, in seconds.
set -euo pipefail

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$HACK_DIR/.." && pwd -P)
DIR=$ROOT/.cluster
PKI=$DIR/pki
ETCD_DATA=$DIR/etcd-data
KUBECONFIG_FILE=$DIR/kubeconfig

# Versions and the binary cache layout are owned by build-plane.sh.
dirs=$("$HACK_DIR/build-plane.sh" --dirs)
eval "$dirs"
K8S_BIN=$K8S_BIN_DIR
ETCD_BIN=$ETCD_BIN_DIR

ETCD_PORT=${KEYWARD_ETCD_PORT:-23790}
ETCD_PEER_PORT=${KEYWARD_ETCD_PEER_PORT:-23800}
APISERVER_PORT=${KEYWARD_APISERVER_PORT:-16443}
TIMEOUT=${KEYWARD_CLUSTER_TIMEOUT:-60}

APISERVER_URL=https://127.0.0.1:$APISERVER_PORT
# Stop order; start order is the reverse.
COMPONENTS=(kube-controller-manager kube-apiserver etcd)

log() { echo "cluster: $*" >&2; }
die() { log "$*"; exit 1; }

now_ms() {
  if [[ -n ${EPOCHREALTIME:-} ]]; then
    local t=${EPOCHREALTIME/[.,]/}
    echo $((t / 1000))
  else
    echo $((SECONDS * 1000))
  fi
}

# UNIX time in milliseconds (now_ms may fall back to a relative clock).
epoch_ms() {
  if [[ -n ${EPOCHREALTIME:-} ]]; then
    local t=${EPOCHREALTIME/[.,]/}
    echo $((t / 1000))
  else
    echo $(($(date +%s) * 1000))
  fi
}

fmt_ms() { echo "$(($1 / 1000)).$(printf '%03d' $(($1 % 1000)))"; }

bin_of() {
  case $1 in
    etcd) echo "$ETCD_BIN/etcd" ;;
    *) echo "$K8S_BIN/$1" ;;
  esac
}

# ---------------------------------------------------------------------------
# Process bookkeeping. A PID file alone is not proof: the PID may have been
# reused by an unrelated process after a reboot or crash. A PID counts as ours
# only if its command line starts with our binary path and mentions our .cluster
# directory (every component gets paths under it), so we never signal anything
# this script did not start.
# ---------------------------------------------------------------------------
pid_of() { # prints the PID if the component runs and is ours
  local name=$1 pidfile=$DIR/$1.pid pid args
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  args=$(ps -ww -o args= -p "$pid" 2>/dev/null) || return 1
  [[ $args == "$(bin_of "$name") "* && $args == *"$DIR/"* ]] || return 1
  echo "$pid"
}

readyz() {
  curl -fsS --max-time 3 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "$APISERVER_URL/readyz" 2>/dev/null
}

apiserver_ready() { [[ $(readyz) == ok ]]; }

# All three ours and alive, and /readyz ok. A busy apiserver may miss one probe,
# so it gets a few seconds before we call the plane broken (and restart it).
healthy() {
  local c i
  for c in "${COMPONENTS[@]}"; do pid_of "$c" >/dev/null || return 1; done
  for ((i = 0; i < 10; i++)); do
    apiserver_ready && return 0
    sleep 1
  done
  return 1
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Detached start: own session (setsid) so it outlives the calling shell and its
# terminal; the inner shell records its own PID and then execs the binary, so the
# PID file holds the component's PID whether or not setsid had to fork. fd 9 (the
# up/down lock) is closed, or the long-lived component would hold the lock forever.
start() { # <name> <args...>
  local name=$1; shift
  local bin pidfile=$DIR/$name.pid
  bin=$(bin_of "$name")
  rm -f "$pidfile"
  # shellcheck disable=SC2016 # expanded by the inner shell
  setsid nohup bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pidfile" "$bin" "$@" \
    >"$DIR/$name.log" 2>&1 </dev/null 9>&- &
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -s $pidfile ]] && return 0
    sleep 0.1
  done
  die "$name did not start; see $DIR/$name.log"
}

stop() { # <name>
  local name=$1 pid i
  if pid=$(pid_of "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do # 10 s for a clean shutdown
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) ignored TERM for 10s; sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    log "stopped $name (pid $pid)"
  elif [[ -e $DIR/$name.pid ]]; then
    log "$name: stale PID file (process gone or not ours); left the process alone"
  fi
  rm -f "$DIR/$name.pid"
}

stop_all() {
  local c
  for c in "${COMPONENTS[@]}"; do stop "$c"; done
  # The next `up` starts from an empty store; PKI and logs stay. The audit log is the
  # store's: it starts empty with it.
  rm -rf "$ETCD_DATA" "$DIR"/audit*.log
}

fail() { # <component whose log explains it> <message>
  log "$2"
  if [[ -f $DIR/$1.log ]]; then
    log "last lines of $DIR/$1.log:"
    tail -n 30 "$DIR/$1.log" >&2
  fi
  log "stopping the partial plane"
  stop_all
  exit 1
}

# Polls <check> until it succeeds or the shared deadline passes; fails early if
# the component the check depends on has exited.
wait_for() { # <component> <description> <check command...>
  local name=$1 what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    pid_of "$name" >/dev/null || fail "$name" "$name exited while waiting for $what"
    (($(now_ms) < DEADLINE)) || fail "$name" "timed out after ${TIMEOUT}s waiting for $what"
    sleep 0.2
  done
}

# ---------------------------------------------------------------------------
# PKI: one CA, a serving cert, an admin client cert (system:masters), and the
# service-account signing key pair. Reused across up/down so an exported
# KUBECONFIG stays valid; regenerated when missing or expiring within a day.
# ---------------------------------------------------------------------------
sign() { # <name> <subject> <extensions>
  openssl genrsa -out "$PKI/$1.key" 2048 2>/dev/null
  openssl req -new -key "$PKI/$1.key" -subj "$2" -out "$PKI/$1.csr"
  openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 365 -sha256 \
    -extfile <(printf '%s\n' "$3") -out "$PKI/$1.crt" 2>/dev/null
  rm -f "$PKI/$1.csr"
}

ensure_pki() {
  local f ok=1
  for f in ca.crt ca.key apiserver.crt apiserver.key admin.crt admin.key sa.key sa.pub; do
    [[ -s $PKI/$f ]] || ok=0
  done
  if ((ok)); then
    for f in ca apiserver admin; do
      openssl x509 -checkend 86400 -noout -in "$PKI/$f.crt" >/dev/null 2>&1 || ok=0
    done
  fi
  ((ok)) && return 0

  log "generating PKI in $PKI"
  rm -rf "$PKI"
  mkdir -p "$PKI"
  openssl genrsa -out "$PKI/ca.key" 2048 2>/dev/null
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=keyward-local-ca" -days 365 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$PKI/ca.crt"
  sign apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc"
  sign admin "/O=system:masters/CN=keyward-admin" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
}

b64() { base64 <"$1" | tr -d '\n'; }

# Self-contained admin kubeconfig (certs embedded), written atomically so a
# reader never sees half a file. Same content on every `up` while the PKI lasts,
# so an exported KUBECONFIG survives down/up.
write_kubeconfig() {
  cat >"$KUBECONFIG_FILE.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: keyward
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: keyward-admin
  user:
    client-certificate-data: $(b64 "$PKI/admin.crt")
    client-key-data: $(b64 "$PKI/admin.key")
contexts:
- name: keyward
  context:
    cluster: keyward
    user: keyward-admin
current-context: keyward
EOF
  mv -f "$KUBECONFIG_FILE.tmp" "$KUBECONFIG_FILE"
}

# ---------------------------------------------------------------------------
# Components
# ---------------------------------------------------------------------------
start_etcd() {
  # Plain HTTP on loopback only; the data is throwaway, so fsync is skipped
  # (noticeably faster on slow disks). Metrics stay on the client listener.
  start etcd \
    --name=keyward \
    --data-dir="$ETCD_DATA" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="keyward=http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster-state=new \
    --unsafe-no-fsync
}

start_apiserver() {
  start kube-apiserver \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --secure-port="$APISERVER_PORT" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --endpoint-reconciler-type=none \
    --service-cluster-ip-range=10.96.0.0/16 \
    --authorization-mode=Node,RBAC \
    --client-ca-file="$PKI/ca.crt" \
    --tls-cert-file="$PKI/apiserver.crt" \
    --tls-private-key-file="$PKI/apiserver.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" \
    --audit-policy-file="$HACK_DIR/audit-policy.yaml" \
    --audit-log-path="$DIR/audit.log" \
    --audit-log-format=json \
    --audit-log-maxsize=1024 \
    --profiling=false
}

start_controller_manager() {
  # Only the controllers a pod-less plane needs (service accounts and their
  # tokens, namespaces, garbage collection, kube-root-ca.crt, and the aggregation of
  # ClusterRoles into admin/edit/view, which the chart's keyward:edit and keyward:view
  # rely on). --secure-port=0:
  # no listener at all, and without it there is no delegated authn/authz that
  # would need --authentication-kubeconfig.
  start kube-controller-manager \
    --kubeconfig="$KUBECONFIG_FILE" \
    --use-service-account-credentials \
    --root-ca-file="$PKI/ca.crt" \
    --service-account-private-key-file="$PKI/sa.key" \
    --flex-volume-plugin-dir="$DIR/flex" \
    --bind-address=127.0.0.1 \
    --secure-port=0 \
    --leader-elect=false \
    --controllers=serviceaccount-token-controller,serviceaccount-controller,garbage-collector-controller,namespace-controller,root-ca-certificate-publisher-controller,legacy-serviceaccount-token-cleaner-controller,clusterrole-aggregation-controller \
    --profiling=false
}

etcd_healthy() {
  curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'
}

default_sa_exists() {
  "$K8S_BIN/kubectl" --kubeconfig="$KUBECONFIG_FILE" --request-timeout=3s \
    -n default get serviceaccount default -o name
}

# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------
# up/down mutate shared state; serialise them (e.g. parallel test binaries all
# calling `up`). flock is optional (absent on macOS).
# The wait is long because the holder may be building the binaries from scratch.
lock() {
  mkdir -p "$DIR"
  command -v flock >/dev/null 2>&1 || return 0
  exec 9>"$DIR/.lock"
  if ! flock -n 9; then
    log "waiting for another cluster.sh holding $DIR/.lock"
    flock -w 1800 9 || die "gave up after 30 min waiting for $DIR/.lock"
  fi
}

cmd_up() {
  lock
  "$HACK_DIR/build-plane.sh" >&2
  # A fixed path to the matching kubectl, for the Makefile, the demo and the tests.
  mkdir -p "$DIR/bin"
  ln -sfn "$K8S_BIN/kubectl" "$DIR/bin/kubectl"

  if healthy; then
    log "reusing the running plane at $APISERVER_URL (KUBECONFIG=$KUBECONFIG_FILE)"
    return 0
  fi
  umask 077 # keys and the kubeconfig are for this user only
  # Whatever of ours is left (crashed apiserver, stray etcd) goes, so we start clean.
  stop_all

  local p
  for p in "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT"; do
    port_busy "$p" && die "127.0.0.1:$p is in use by a process this script did not start; stop it or set KEYWARD_*_PORT"
  done

  local t0
  t0=$(now_ms)
  DEADLINE=$((t0 + TIMEOUT * 1000))
  chmod 700 "$DIR"
  mkdir -p "$DIR/flex"
  ensure_pki
  write_kubeconfig # always: the PKI or KEYWARD_APISERVER_PORT may have changed

  start_etcd
  wait_for etcd "etcd /health" etcd_healthy
  start_apiserver
  wait_for kube-apiserver "kube-apiserver /readyz" apiserver_ready
  start_controller_manager
  wait_for kube-controller-manager "ServiceAccount default/default (created by the controller-manager)" default_sa_exists

  local ms=$(($(now_ms) - t0))
  log "ready in $((ms / 1000)).$(printf '%03d' $((ms % 1000)))s: $APISERVER_URL"
  log "  eval \"\$($HACK_DIR/cluster.sh env)\""
}

cmd_down() {
  lock
  stop_all
}

cmd_status() {
  local c pid rc=0
  for c in etcd kube-apiserver kube-controller-manager; do
    if pid=$(pid_of "$c"); then
      printf '%-24s running (pid %s)\n' "$c" "$pid"
    else
      printf '%-24s not running\n' "$c"
      rc=1
    fi
  done
  local r
  r=$(readyz) || r=
  if [[ $r == ok ]]; then
    printf '%-24s ok (%s)\n' readyz "$APISERVER_URL"
  else
    printf '%-24s not ok (%s)\n' readyz "$APISERVER_URL"
    rc=1
  fi
  return "$rc"
}

# An outage, for tests of what the controller does while the API server is gone: the
# apiserver is killed as in a crash (no graceful shutdown, open watches just break),
# etcd and the controller-manager keep running, and the same arguments start it again.
# Holding the up/down lock keeps a concurrent `up` from taking the outage for a broken
# plane and restarting everything. A restart that fails leaves etcd and the
# controller-manager alone (unlike `up`), so `up` can still repair the plane.
cmd_restart_apiserver() {
  local secs=${1:-10} pid i t0 ms
  [[ $secs =~ ^[0-9]+([.][0-9]+)?$ ]] || die "restart-apiserver: SECONDS must be a number, not '$secs'"
  lock
  pid=$(pid_of kube-apiserver) || die "kube-apiserver is not running (or not started by this script): run \`$0 up\` first"
  pid_of etcd >/dev/null || die "etcd is not running (or not started by this script): run \`$0 up\` first"

  t0=$(epoch_ms)
  kill -KILL "$pid"
  # A large process takes a moment to be torn down; it serves nothing from the signal on.
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -0 "$pid" 2>/dev/null && die "kube-apiserver (pid $pid) survived SIGKILL"
  rm -f "$DIR/kube-apiserver.pid"
  log "killed kube-apiserver (pid $pid) at $(fmt_ms "$t0") (gone $(fmt_ms $(($(epoch_ms) - t0)))s later); down for ${secs}s"
  echo "killed $(fmt_ms "$t0")"
  # start() truncates the log; keep the crashed run's for whoever investigates.
  [[ -f $DIR/kube-apiserver.log ]] && mv -f "$DIR/kube-apiserver.log" "$DIR/kube-apiserver.log.prev"
  sleep "$secs"

  port_busy "$APISERVER_PORT" && die "127.0.0.1:$APISERVER_PORT was taken while the apiserver was down"
  start_apiserver
  DEADLINE=$(($(now_ms) + TIMEOUT * 1000))
  until apiserver_ready; do
    if ! pid_of kube-apiserver >/dev/null; then
      log "kube-apiserver exited while starting again; last lines of $DIR/kube-apiserver.log:"
      tail -n 30 "$DIR/kube-apiserver.log" >&2
      exit 1
    fi
    (($(now_ms) < DEADLINE)) || die "kube-apiserver not ready ${TIMEOUT}s after its restart; see $DIR/kube-apiserver.log"
    sleep 0.05
  done
  ms=$(epoch_ms)
  log "kube-apiserver ready again (pid $(pid_of kube-apiserver)) at $(fmt_ms "$ms"), $(fmt_ms $((ms - t0)))s after the kill"
  fmt_ms "$ms"
}

cmd_env() {
  printf 'export KUBECONFIG=%q\n' "$KUBECONFIG_FILE"
  # shellcheck disable=SC2016 # $PATH is for the caller's eval to expand
  printf 'export PATH=%q:"$PATH"\n' "$K8S_BIN"
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  restart-apiserver) cmd_restart_apiserver "${@:2}" ;;
  *)
    echo "usage: $0 up|down|status|env|restart-apiserver [SECONDS]" >&2
    exit 2
    ;;
esac

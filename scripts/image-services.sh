#!/usr/bin/env bash
# Run a command with the services the Triton image tests use, then stop them — also when the command fails
# or is interrupted:
#   * a Docker daemon on its own socket (started with --iptables=false --ip6tables=false on a bridge of its
#     own, so it never touches another daemon's docker0); with CVTRITON_USE_DOCKER_HOST=1 and a daemon
#     answering at $DOCKER_HOST, that daemon is used instead;
#   * two image registries on 127.0.0.1 (Debian's docker-registry): one open, one with htpasswd auth.
# The command sees DOCKER_HOST, CVTRITON_TEST_REGISTRY, CVTRITON_TEST_REGISTRY_AUTH,
# CVTRITON_TEST_REGISTRY_USER and CVTRITON_TEST_REGISTRY_PASSWORD (a random one, never written to a log).
#
#   bash scripts/image-services.sh .venv/bin/pytest tests/image      # the image tests, as CI runs them
#
# Needs root (dockerd, a bridge) and the packages scripts/bootstrap.sh installs. The daemon's data root is
# kept in .pytest_cache/d/cvtriton-dockerd so the stand-in Triton base image is built only once per checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON_VENV:-.venv/bin/python}
(($#)) || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }

RUN_DIR=$(mktemp -d /tmp/cvtriton-svc.XXXXXX)       # short: unix socket paths are limited to 108 bytes
DATA_ROOT=${CVTRITON_DOCKERD_DATA:-$PWD/.pytest_cache/d/cvtriton-dockerd}
BRIDGE=cvtdocker0
BRIDGE_CIDR=${CVTRITON_DOCKERD_BRIDGE_CIDR:-172.29.213.1/24}
pids=()
made_bridge=0

log() { echo "image-services: $*" >&2; }

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  for ((i=${#pids[@]}-1; i>=0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if ((made_bridge)); then ip link delete "$BRIDGE" 2>/dev/null || true; fi
  rm -rf "$RUN_DIR"
  exit "$status"
}
child=
on_signal() {   # forward to the command, let it finish its own cleanup, then stop the services (EXIT trap)
  if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null || true; wait "$child" 2>/dev/null || true; fi
  exit "$1"
}
trap cleanup EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

daemon_answers() {
  "$PY" - <<'EOF' 2>/dev/null
import docker, sys
try:
    docker.APIClient(**docker.utils.kwargs_from_env(), version="auto", timeout=3).ping()
except Exception:
    sys.exit(1)
EOF
}

if [ "${CVTRITON_USE_DOCKER_HOST:-0}" = 1 ] && [ -n "${DOCKER_HOST:-}" ] && daemon_answers; then
  log "using the Docker daemon at $DOCKER_HOST"
else
  command -v dockerd >/dev/null || { log "dockerd not found: install docker.io (scripts/bootstrap.sh does)"; exit 2; }
  [ "$(id -u)" = 0 ] || { log "starting dockerd needs root"; exit 2; }
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$BRIDGE_CIDR" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    made_bridge=1
  fi
  mkdir -p "$DATA_ROOT" "$RUN_DIR/exec"
  dockerd --data-root "$DATA_ROOT" --exec-root "$RUN_DIR/exec" --pidfile "$RUN_DIR/docker.pid" \
    -H "unix://$RUN_DIR/docker.sock" --iptables=false --ip6tables=false --bridge="$BRIDGE" \
    >"$RUN_DIR/dockerd.log" 2>&1 &
  pids+=($!)
  export DOCKER_HOST="unix://$RUN_DIR/docker.sock"
  for _ in $(seq 1 300); do
    daemon_answers && break
    kill -0 "${pids[0]}" 2>/dev/null || { log "dockerd exited:"; tail -20 "$RUN_DIR/dockerd.log" >&2; exit 1; }
    sleep 0.1
  done
  daemon_answers || { log "dockerd did not answer in 30 s:"; tail -20 "$RUN_DIR/dockerd.log" >&2; exit 1; }
  log "dockerd on $DOCKER_HOST (data root $DATA_ROOT)"
fi

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_registry() {
  for _ in $(seq 1 200); do
    "$PY" -c "import urllib.request,urllib.error,sys
try: urllib.request.urlopen('http://$1/v2/', timeout=1)
except urllib.error.HTTPError as e: sys.exit(0 if e.code == 401 else 1)
except OSError: sys.exit(1)" 2>/dev/null && return 0
    sleep 0.1
  done
  log "registry on $1 did not answer"; return 1
}

open_port=$(free_port)
"$PY" -m cvtriton_standins.registry --root "$RUN_DIR/registry-open" --port "$open_port" >"$RUN_DIR/registry-open.log" 2>&1 &
pids+=($!)
auth_port=$(free_port)
export CVTRITON_TEST_REGISTRY_USER=cvtriton-ci
CVTRITON_TEST_REGISTRY_PASSWORD=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(18))')
export CVTRITON_TEST_REGISTRY_PASSWORD
"$PY" -m cvtriton_standins.registry --root "$RUN_DIR/registry-auth" --port "$auth_port" \
  --user "$CVTRITON_TEST_REGISTRY_USER" --password-env CVTRITON_TEST_REGISTRY_PASSWORD \
  >"$RUN_DIR/registry-auth.log" 2>&1 &
pids+=($!)
wait_registry "127.0.0.1:$open_port"
wait_registry "127.0.0.1:$auth_port"
export CVTRITON_TEST_REGISTRY="127.0.0.1:$open_port" CVTRITON_TEST_REGISTRY_AUTH="127.0.0.1:$auth_port"
log "registries on $CVTRITON_TEST_REGISTRY (open) and $CVTRITON_TEST_REGISTRY_AUTH (htpasswd)"

status=0
# In the background so a signal reaches the traps at once (wait is interruptible). A background command of a
# script starts with SIGINT and SIGQUIT ignored, and so would every process it starts (a test that interrupts
# a run with SIGINT would see it ignored): the command gets their default dispositions back before it runs.
"$PY" -c 'import os, signal, sys
for sig in (signal.SIGINT, signal.SIGQUIT):
    signal.signal(sig, signal.SIG_DFL)
os.execvp(sys.argv[1], sys.argv[1:])' "$@" <&0 &
child=$!
wait "$child" || status=$?
child=
exit "$status"

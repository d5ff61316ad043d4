#!/usr/bin/env bash
# Set up a fresh machine for cvtriton-tui: system packages, a virtual environment in .venv, the project
# (editable) with its test extras. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
  echo "bootstrap: Python >= 3.10 is needed (found $("$PY" --version 2>&1)) — install it or set PYTHON=/path/to/python3" >&2
  exit 2
fi

# System packages (Debian names): what the tool needs to run, then what the tests need — the Triton image
# tests use a real Docker Engine, Debian's image registry and debootstrap (scripts/image-services.sh).
APT_PACKAGES=(${CVTRITON_APT_PACKAGES:-})
TEST_APT_PACKAGES=(${CVTRITON_TEST_APT_PACKAGES:-docker.io containerd runc iptables iproute2 debootstrap docker-registry})
# Node's npm installs Azurite (the Azure Storage emulator) for the Azure ML no-code tests (below).
command -v npm >/dev/null 2>&1 || TEST_APT_PACKAGES+=(nodejs npm)
missing=()
for pkg in "${APT_PACKAGES[@]}" "${TEST_APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    needed=()
    for pkg in "${missing[@]}"; do
      [[ " ${APT_PACKAGES[*]} " == *" $pkg "* ]] && needed+=("$pkg")
    done
    echo "bootstrap: missing system packages: ${missing[*]} — install them with: sudo apt-get install ${missing[*]}" >&2
    # the tool itself runs without the test packages (the image tests then fail, saying so)
    ((${#needed[@]} == 0)) || exit 2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[test]"
# Azurite, the official Azure Storage emulator (npm package), for the tests of no-code Azure ML deployments
# (cvtriton_standins.azurite): pinned, in .tools/azurite (gitignored); skipped when that version is there.
AZURITE_VERSION=3.35.0
AZURITE_DIR=.tools/azurite
if ! grep -qs "\"version\": \"$AZURITE_VERSION\"" "$AZURITE_DIR/node_modules/azurite/package.json" \
    || [ ! -x "$AZURITE_DIR/node_modules/.bin/azurite-blob" ]; then
  if command -v npm >/dev/null 2>&1; then
    mkdir -p "$AZURITE_DIR"
    npm install --prefix "$AZURITE_DIR" --no-audit --no-fund --silent "azurite@$AZURITE_VERSION" >/dev/null
  else
    echo "bootstrap: npm not found, so Azurite is not installed (the no-code Azure ML tests need it) — install Node.js and npm" >&2
  fi
fi
echo "bootstrap: ready — .venv/bin/cvtriton-tui (wizard), .venv/bin/cvtriton-tui local (no Azure needed)" >&2

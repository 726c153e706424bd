#!/usr/bin/env bash
# Install soutui into ./.venv with every extra (train, dev, bench, course; idempotent), on a fresh
# Debian/Ubuntu machine too, so `make test` runs every default test (the course tests included).
# Pass --browser to also install Chromium for the page tests.
#
# System packages (apt) are installed only when missing: python3-venv (venv + ensurepip),
# libgomp1 (OpenMP for LightGBM/faiss), postgresql (the store tests start a throwaway server),
# prometheus (the monitoring test scrapes the server with it),
# and with --browser chromium + a CJK font.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

apt_install() {
  [ "$#" -gt 0 ] || return 0
  if ! command -v apt-get >/dev/null; then
    echo "setup: please install these system packages first: $*" >&2
    exit 1
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: as root, run: apt-get install -y $*" >&2; exit 1; }
    sudo="sudo"
  fi
  echo "setup: apt-get install $*"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

missing=()
command -v "$PY" >/dev/null || missing+=(python3)
if command -v "$PY" >/dev/null && ! "$PY" -c "import ensurepip, venv" 2>/dev/null; then
  missing+=(python3-venv)
fi
# grep reads all of ldconfig's output (no -q): an early exit would SIGPIPE ldconfig and, under pipefail, look like "missing"
if ! { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep "libgomp.so.1" >/dev/null; then
  missing+=(libgomp1)
fi
# PostgreSQL server binaries (initdb, pg_ctl): the store contract tests start a throwaway server
if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
# Prometheus server: the monitoring test scrapes a real `soutui serve` with it (tests/serving/test_prometheus.py)
command -v prometheus >/dev/null || missing+=(prometheus)
if [ "${1:-}" = "--browser" ] && [ ! -x /usr/bin/chromium ]; then
  missing+=(chromium fonts-wqy-microhei)
fi
apt_install "${missing[@]}"

if ! "$PY" -c "import sys; sys.exit(sys.version_info < (3, 11))"; then
  echo "setup: soutui needs Python >= 3.11; $PY is $("$PY" --version 2>&1). Set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch is pinned in the [train] extra (torch==2.13.0, the CPU wheel); installing it first keeps
# pip from resolving any other package to a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[train,dev,bench,course]"
# federated training (soutui federated): flwr without its own pins, which would downgrade fastapi,
# starlette, uvicorn and protobuf under the server; then the runtime pieces pyproject's [federated] lists
.venv/bin/python -m pip install -q --no-deps "flwr==1.42.0"
.venv/bin/python -m pip install -q "grpcio>=1.70,<2" "grpcio-health-checking>=1.70,<2" "cryptography>=50,<51" \
  "pycryptodome>=3.18,<4" "iterators>=0.0.2,<0.0.3" "tomli>=2,<3" \
  "typer>=0.12,<1" "rich>=13" "sqlalchemy>=2,<3" "alembic>=1.13,<2" "tomli-w>=1,<2" "pathspec>=0.12" \
  "prompt-toolkit>=3,<4" "pyyaml>=6,<7" "click>=8,<9"
echo "soutui installed in .venv ($(.venv/bin/soutui --version))"

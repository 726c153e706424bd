#!/usr/bin/env bash
# Creates .venv-peers: RecBole 1.2.1 (the external SASRec peer) + soutui, kept apart from soutui's own venv.
#
# Why a separate venv: RecBole pins old-style dependencies (ray needs setuptools<81, numpy-1
# aliases) that soutui itself must not inherit. torch is installed FIRST and pinned through a
# constraints file so nothing RecBole pulls in can swap it for an unpinned / CUDA build.
#
#     bash benchmarks/peers/setup_recbole.sh        # from the repository root
#     .venv-peers/bin/python benchmarks/peer_recbole.py --minutes 20 --threads 2 --json
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${PEERS_VENV:-$ROOT/.venv-peers}"
PY="${PYTHON:-python3.11}"
TORCH="torch==2.13.0"

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)
CONSTRAINTS="$VENV/constraints.txt"
printf '%s\n' "$TORCH" "setuptools<81" > "$CONSTRAINTS"

"${PIP[@]}" install -q --upgrade pip "setuptools<81" wheel -c "$CONSTRAINTS"
# torch first, from the local CPU wheel when there is one (PIP_FIND_LINKS=/opt/wheels here)
"${PIP[@]}" install -q "$TORCH" -c "$CONSTRAINTS"
"$VENV/bin/python" -c 'import torch, sys; sys.exit(torch.version.cuda is not None)' \
  || { echo "a CUDA torch was installed; put the CPU wheel in PIP_FIND_LINKS and rerun" >&2; exit 1; }
# pin the exact build now installed (2.13.0+cpu) so no later step can replace it
"$VENV/bin/python" -c 'import torch; print("torch==" + torch.__version__)' > "$CONSTRAINTS"
# ray (RecBole's tuner) imports pkg_resources, gone from setuptools 81; RecBole's pandas code
# (fillna(inplace=True) on a column) silently does nothing under pandas 3's copy-on-write
printf '%s\n' "setuptools<81" "pandas<3" >> "$CONSTRAINTS"
"${PIP[@]}" install -q "recbole==1.2.1" -c "$CONSTRAINTS"
# soutui itself: the peer script reads the data and computes metrics with soutui's own code
"${PIP[@]}" install -q -e "$ROOT" -c "$CONSTRAINTS"

"$VENV/bin/python" - <<'PY'
import torch, recbole, numpy, scipy, pandas
print("torch", torch.__version__, "cuda", torch.version.cuda, "| recbole", recbole.__version__,
      "| numpy", numpy.__version__, "| scipy", scipy.__version__, "| pandas", pandas.__version__)
assert torch.version.cuda is None, "a CUDA torch slipped in; the peer run must use the pinned CPU wheel"
PY

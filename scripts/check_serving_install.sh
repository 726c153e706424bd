#!/usr/bin/env bash
# Prove that the core install (no extras, no PyTorch) serves an ONNX SASRec bundle.
#
# 1. With the full dev venv (.venv, made by scripts/setup.sh): import a small synthetic
#    shop through the CLI, train a tiny SASRec, and build a bundle with its ONNX export.
# 2. In a fresh venv: `pip install .` WITHOUT extras; check that `import torch` fails there.
# 3. Start `soutui serve` from the fresh venv on that bundle and ask /v1/recommend for a
#    user with history; the answer must come from the ONNX SASRec ("model": "sasrec").
#    /v1/search must answer too, by every method (the index carries its query encoder), and
#    Chinese queries must find the English-titled products (multilingual encoder, numpy only).
# Prints both install sizes (du of site-packages). Usage: scripts/check_serving_install.sh [WORKDIR to keep]
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
KEEP=${1:+yes}  # a work dir given on the command line is kept for inspection; a temporary one is removed
WORK=${1:-$(mktemp -d /tmp/soutui-serving-install.XXXXXX)}
mkdir -p "$WORK"
export SOUTUI_HOME="$WORK/home" OMP_NUM_THREADS=1 PYTHONDONTWRITEBYTECODE=1
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ -z "$KEEP" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
step() { echo "[check_serving_install $(date +%H:%M:%S)] $*"; }
logged() {  # logged LOG CMD...: run CMD with its output in LOG; on failure show the log's tail
  local log=$1; shift
  "$@" >"$log" 2>&1 || { echo "FAIL: $* (log $log):" >&2; tail -20 "$log" >&2; exit 1; }
}

step "fresh venv: pip install . (no extras), in the background (work dir $WORK)"
rm -rf "$WORK/venv"
"${PYTHON:-python3}" -m venv "$WORK/venv"
# --no-compile: byte-compiling ~900 MB of packages is most of the install time and proves nothing
"$WORK/venv/bin/python" -m pip install -q --no-compile --disable-pip-version-check "$REPO" >"$WORK/pip.log" 2>&1 &
PIP_PID=$!

step "build a tiny ONNX SASRec bundle with the dev venv"
.venv/bin/python scripts/tiny_shop.py "$WORK/shop"
S=.venv/bin/soutui
logged "$WORK/import.log" $S data import generic --name tiny-shop --events "$WORK/shop/events.csv" \
  --items "$WORK/shop/items.csv" --no-pseudonymize --json
logged "$WORK/train.log" $S train --dataset tiny-shop --model sasrec --output "$WORK/sasrec" --json \
  --set epochs=3 --set d_model=16 --set n_layers=1 --set max_len=10 --set batch_size=64 --set progress=false
logged "$WORK/bundle.log" $S bundle build --dataset tiny-shop --sasrec "$WORK/sasrec" \
  --out "$WORK/bundles" --json
BUNDLE=$(find "$WORK/bundles" -mindepth 1 -maxdepth 1 -type d ! -name '.*' | head -1)
test -n "$BUNDLE" || { echo "no bundle was built" >&2; exit 1; }

step "wait for the core install"
wait "$PIP_PID" || { grep -v "^WARNING: Location" "$WORK/pip.log" >&2; echo "pip install . failed" >&2; exit 1; }
"$WORK/venv/bin/python" -c "import pathlib, soutui; assert (pathlib.Path(soutui.__file__).parent / 'defaults.toml').is_file()"
if "$WORK/venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "FAIL: torch is importable in the core install" >&2; exit 1
fi
if out=$("$WORK/venv/bin/soutui" train --model sasrec --dataset tiny-shop 2>&1) \
  || ! grep -q "pip install 'soutui\[train\]'" <<<"$out"; then
  echo "FAIL: soutui train on the core install should name the [train] extra; it said: $out" >&2; exit 1
fi

PORT=$("$WORK/venv/bin/python" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
cat >"$WORK/serve.toml" <<EOF
port = $PORT
bundle = "$BUNDLE"
recommender = "sasrec"
EOF
step "serve from the core venv on port $PORT"
KEY=check-install-key  # the API key opens read endpoints too
(cd "$WORK" && SOUTUI_API_KEY=$KEY exec "$WORK/venv/bin/soutui" serve --config "$WORK/serve.toml") \
  >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!
"$WORK/venv/bin/python" - "$PORT" "$SERVER_PID" "$KEY" <<'EOF' || { echo "--- server log"; tail -30 "$WORK/serve.log"; exit 1; }
import json, sys, time, urllib.parse, urllib.request
port, pid, key = sys.argv[1:4]
base = f"http://127.0.0.1:{port}"


def get(path: str) -> dict:
    req = urllib.request.Request(base + path, headers={"X-API-Key": key})
    return json.loads(urllib.request.urlopen(req, timeout=30).read())


deadline = time.time() + 90
while True:
    try:
        urllib.request.urlopen(base + "/healthz", timeout=2).read()
        break
    except OSError:
        if time.time() > deadline:
            sys.exit("server did not answer /healthz within 90 s")
        time.sleep(0.5)
ans = get("/v1/recommend/u1?k=5")
assert ans["model"] == "sasrec", ans
assert ans["history_length"] > 0 and len(ans["items"]) == 5, ans
maps = open(f"/proc/{pid}/maps").read() if sys.platform == "linux" else ""
assert "libtorch" not in maps, "the server process mapped libtorch"
print("recommend u1 ->", [it["item_id"] for it in ans["items"]], "model", ans["model"])
for method in ("bm25", "dense", "hybrid", "ltr"):
    res = get(f"/v1/search?q=shampoo&k=3&method={method}")
    titles = [h["title"] for h in res["items"]]
    assert titles and "shampoo" in titles[0], (method, titles)
    print(f"search {method}: {titles}")
for query, word in (("洗发水", "shampoo"), ("防晒霜", "sunscreen")):  # Chinese queries, English titles
    titles = [h["title"] for h in get(f"/v1/search?q={urllib.parse.quote(query)}&k=3")["items"]]
    assert titles and word in titles[0], (query, titles)
    print(f"search {query}: {titles}")
EOF

size() { du -sm "$1"/lib/python3*/site-packages | cut -f1; }
step "OK: the core install serves the ONNX SASRec bundle and its search index without torch"
echo "site-packages: core install $(size "$WORK/venv") MB; dev venv (.venv, all extras) $(size .venv) MB"

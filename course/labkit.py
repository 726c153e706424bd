"""What every lab needs before its first step: the mode, a home, the data and the CLI.

FAST mode (SOUTUI_COURSE_FAST=1, what CI runs) keeps the same code path with small budgets
and a throw-away SOUTUI_HOME; full mode uses the learner's own SOUTUI_HOME and the budgets
behind the figures of docs/ and the README.
"""

from __future__ import annotations

import atexit
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
COURSE = Path(__file__).resolve().parent
FAST = os.environ.get("SOUTUI_COURSE_FAST", "0") == "1"


def setup() -> Path:
    """Pick SOUTUI_HOME (a temp dir in fast mode) and return the real-data folder."""
    if FAST:
        home = tempfile.mkdtemp(prefix="soutui-course-")
        os.environ["SOUTUI_HOME"] = home
        atexit.register(shutil.rmtree, home, ignore_errors=True)  # the kernel exits at the end of the run
        # the text-embedding cache is shared with the test suite: the first run on a machine pays
        # for encoding the catalogue (minutes on 2 cores), later runs read it back
        os.environ.setdefault("SOUTUI_CACHE", str(Path(tempfile.gettempdir()) / "soutui-test-cache"))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return data_dir()


def data_dir() -> Path:
    """$SOUTUI_DATA_DIR, else the shared/data folder beside the repository."""
    env = os.environ.get("SOUTUI_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates += [COURSE.parent.parent / "shared" / "data", COURSE.parent / "shared" / "data"]
    for path in candidates:
        if (path / "amazon-beauty").is_dir():
            return path
    raise FileNotFoundError("no amazon-beauty data: set SOUTUI_DATA_DIR to the folder holding amazon-beauty/")


def budget(fast: T, full: T) -> T:
    """The fast-mode value in CI, the full value otherwise (same code path, smaller numbers)."""
    return fast if FAST else full


def beauty_shop(n_items: int, n_buyers: int, items: Any = None, seed: int = 0) -> tuple[Any, Any]:
    """Amazon Beauty cut to a small shop: (events, its products).

    The products are `items` if given, else the `n_items` most reviewed ones; the customers are a
    seeded sample of `n_buyers` among those who bought at least 3 of them. `events` keeps the raw
    file's columns plus `ts`: the review time in seconds, ties broken by the review's position."""
    import numpy as np
    import pandas as pd

    raw = pd.read_csv(data_dir() / "amazon-beauty" / "beauty_interactions.tsv", sep="\t")
    shop_items = raw.item_id.value_counts().index[:n_items] if items is None else pd.Index(items)
    events = raw[raw.item_id.isin(shop_items)]
    buyers = events.user_id.value_counts()
    buyers = buyers[buyers >= 3].index
    keep = np.random.default_rng(seed).choice(buyers, min(len(buyers), n_buyers), replace=False)
    events = events[events.user_id.isin(keep)]
    events = events.assign(ts=events.timestamp.fillna(events.timestamp.min()).astype("int64") + events.position)
    return events, shop_items


def _executable() -> str:
    beside = Path(sys.executable).parent / "soutui"
    found = str(beside) if beside.exists() else shutil.which("soutui")
    if not found:
        raise FileNotFoundError("the soutui command is not installed: pip install -e '.[train,course]'")
    return found


def soutui(*args: str, echo: bool = True) -> dict[str, Any]:
    """Run `soutui ARGS --json` and return its JSON answer (the CLI is the most stable surface)."""
    cmd = [_executable(), *args, "--json"]
    if echo:
        print("$ " + shlex.join(["soutui", *args, "--json"]))
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if done.returncode != 0:
        raise RuntimeError(f"soutui {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)  # type: ignore[no-any-return]


class Server:
    """`soutui serve ARGS` on a free loopback port, started and waited for (`/healthz`), stopped at exit.

    `get(path, **params)` and `post(path, body)` return the decoded JSON answer; `base` is the server's URL.
    """

    def __init__(self, *args: str, wait_s: float = 120.0) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [_executable(), "serve", *args, "--port", str(self.port)]
        print("$ " + shlex.join(["soutui", *cmd[1:]]))
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
        atexit.register(self.stop)  # never leave the server behind, even if a later cell fails
        self.health = self._wait(wait_s)

    def _wait(self, wait_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return self.get("/healthz")
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(self.process.stderr.read().decode()[-2000:]) from None  # type: ignore[union-attr]
                if time.monotonic() > deadline:
                    raise TimeoutError(f"soutui serve did not answer /healthz within {wait_s:.0f} s") from None
                time.sleep(0.25)

    def get(self, path: str, **params: Any) -> Any:
        url = self.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=30) as answer:
            return json.loads(answer.read())

    def post(self, path: str, body: Any) -> Any:
        request = urllib.request.Request(self.base + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()

"""retain_freed_memory: a freed large block stays in the heap and the next allocation reuses it
(instead of a fresh mmap the kernel must zero again: page faults on every training step)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")

# allocate, write and free a 64 MB block ten times; then ask malloc where its memory is
PROBE = """
import ctypes, json
import numpy as np
from soutui.models.fitting import retain_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(k, ctypes.c_size_t) for k in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

on = retain_freed_memory()
for _ in range(10):
    a = np.ones(8 << 20)  # 64 MB of float64, every page written
    del a
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
mi = libc.mallinfo2()
print(json.dumps({"on": on, "heap": mi.arena, "free_in_heap": mi.fordblks, "mmapped": mi.hblkhd}))
"""

MB = 1 << 20


def _probe(retain: str) -> dict[str, object]:
    env = {**os.environ, "SOUTUI_RETAIN_FREED_MEMORY": retain}
    env.pop("MALLOC_MMAP_MAX_", None)
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_freed_blocks_stay_in_the_heap_and_are_reused() -> None:
    off, on = _probe("0"), _probe("1")
    assert off["on"] is False and on["on"] is True
    assert int(off["heap"]) < 64 * MB  # glibc's default: each block was its own mmap, unmapped on free
    assert int(on["free_in_heap"]) >= 64 * MB  # retained: the freed block stays in the heap ...
    assert int(on["heap"]) < 2 * 64 * MB  # ... and each new block reused it (ten would need 640 MB)
    assert int(on["mmapped"]) < 64 * MB

"""Checks for lab 11 (privacy): every trace of a deleted user, epsilon from the noise, bytes per round.

Split from checks.py to keep each file short; the helpers (report, close_to) live there. The
lab imports this module as `privacy_checks`.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from checks import Problem, Verdict, report

# ---- exercise 11.1: which files still hold a user --------------------------------------------

RAW, PSEUDO = "A2P739KOM4U5JB", "u_0123456789abcdef0123456789abcdef"


def _plant(root: Path) -> set[str]:
    """A small SOUTUI_HOME look-alike; returns the files that hold RAW or PSEUDO."""
    (root / "events").mkdir()
    (root / "bundles" / "b1").mkdir(parents=True)
    (root / "events" / "shop.jsonl").write_text(f'{{"user_id": "{PSEUDO}", "item_id": "B1"}}\n', encoding="utf-8")
    (root / "soutui.duckdb").write_bytes(b"\x00\xff" * 1_000_000 + RAW.encode() + b"\x00\x01")  # binary, id at the end
    (root / "bundles" / "b1" / "manifest.json").write_text('{"models": ["itemknn"]}', encoding="utf-8")
    (root / "bundles" / "b1" / "model.npy").write_bytes(b"\x93NUMPY\x01\x00" + bytes(range(256)) * 40)
    (root / "other.jsonl").write_text('{"user_id": "u_ffff"}\n', encoding="utf-8")
    return {"events/shop.jsonl", "soutui.duckdb"}


def _relative(found: Any, root: Path) -> list[str] | None:
    try:
        out = []
        for f in found:
            p = Path(f)
            out.append((p.relative_to(root) if p.is_absolute() else p).as_posix())
        return out
    except (TypeError, ValueError):
        return None


def lab11_traces(answer: Callable[[Path, Sequence[str]], Any]) -> Verdict:
    """`answer(root, needles)`: the files under root (relative paths) whose bytes hold any needle."""
    with tempfile.TemporaryDirectory(prefix="lab11-") as tmp:
        root = Path(tmp)
        want = _plant(root)
        try:
            found = answer(root, [RAW, PSEUDO])
        except UnicodeDecodeError as exc:
            return report([(f"读文件出错：{exc!r}。店铺库是二进制文件：用 read_bytes() 读字节，再找 id 的 encode()",
                            f"reading failed: {exc!r}. A store file is binary: read bytes (read_bytes()) and "
                            "look for the id's encode()")])
        except Exception as exc:  # noqa: BLE001 - a learner's code may fail in any way
            return report([(f"files_holding 出错：{exc!r}", f"files_holding raised {exc!r}")])
        got = _relative(found, root) if found is not None else None
        if got is None:
            return report([("应当返回一个路径列表（相对 root 的字符串），现在是 " + repr(found)[:80],
                            "return a list of paths (strings relative to root), got " + repr(found)[:80])])
    problems: list[Problem] = []
    if len(got) != len(set(got)):
        problems.append(("同一个文件列了不止一次：每个文件只列一次", "a file is listed more than once: list each once"))
    missing, extra = want - set(got), set(got) - want
    if "events/shop.jsonl" in missing:
        problems.append(("漏了 events/shop.jsonl：它在子目录里，而且里面只有假名。要递归遍历（rglob），并且每个 needle 都要找",
                         "events/shop.jsonl is missing: it is in a subfolder and holds only the pseudonym. Walk "
                         "every folder (rglob) and look for every needle"))
    if "soutui.duckdb" in missing:
        problems.append(("漏了 soutui.duckdb：它是 2 MB 的二进制文件，原始 id 在最后。要读整个文件的字节，不能只读开头",
                         "soutui.duckdb is missing: a 2 MB binary file with the raw id at its very end. Read the "
                         "whole file's bytes, not its beginning"))
    if extra:
        problems.append((f"这些不含任何 needle，不该列出：{sorted(extra)}（目录不算，'u_' 前缀本身也不算）",
                         f"these hold no needle and should not be listed: {sorted(extra)} (folders do not count, "
                         "nor does the 'u_' prefix alone)"))
    return report(problems)


# ---- exercise 11.2: epsilon from the noise multiplier ----------------------------------------

EPS_CASES = [  # (noise multiplier sigma, sampling rate q, steps, delta)
    (0.848388671875, 1 / 13, 20, 1e-4),
    (0.967, 1 / 175, 30, 1e-5),
    (1.1, 0.01, 1000, 1e-5),
    (2.0, 0.05, 200, 1e-6),
]


def rdp_epsilon(sigma: float, q: float, steps: int, delta: float) -> float:
    """The reference: Opacus's RDP accountant after `steps` Poisson-sampled steps."""
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(sigma, q, steps)]
    return float(acc.get_epsilon(delta=delta))


def _eps_hint(shown: str, got: float, case: tuple[float, float, int, float]) -> Problem:
    sigma, q, steps, delta = case
    want = rdp_epsilon(*case)
    if math.isclose(got, rdp_epsilon(sigma, q, 1, delta), rel_tol=1e-6):
        return (f"{shown}：这是一步的 ε。隐私损失随步数累积，记账器要知道走了 {steps} 步",
                f"{shown}: that is one step's epsilon. The loss adds up over steps: the accountant must "
                f"know all {steps} of them")
    if math.isclose(got, rdp_epsilon(sigma, 1.0, steps, delta), rel_tol=1e-6):
        return (f"{shown}：你用了 q = 1（每步用所有人）。每个用户每步只以概率 q = {q:.4g} 被抽中，这个“抽样放大”让 ε 小得多",
                f"{shown}: you used q = 1 (everyone in every step). Each user is drawn with probability q = "
                f"{q:.4g} per step, and that subsampling makes epsilon much smaller")
    if got > 0 and abs(got / want - 1) < 0.25:
        return (f"{shown}，应为 {want:.6g}：接近但不同，是不是用了别的记账器（PRV、GDP）？记录里写的是 'rdp'",
                f"{shown}, expected {want:.6g}: close but not equal. Another accountant (PRV, GDP)? The "
                "record says 'rdp'")
    return (f"{shown}，应为 {want:.6g}", f"{shown}, expected {want:.6g}")


def lab11_epsilon(answer: Callable[[float, float, int, float], Any], privacy: dict[str, Any]) -> Verdict:
    """`answer(sigma, q, steps, delta)` = the RDP epsilon; it must also give back the run's record."""
    record = (float(privacy["noise_multiplier"]), float(privacy["sample_rate"]), int(privacy["steps"]),
              float(privacy["delta"]))
    for case in [record, *EPS_CASES]:
        shown = "epsilon_for({:.4g}, {:.4g}, {}, {:g})".format(*case)
        try:
            got = float(answer(*case))
        except Exception as exc:  # noqa: BLE001
            return report([(f"{shown} 出错：{exc!r}", f"{shown} raised {exc!r}")])
        shown += f" = {got:.6g}"
        if not math.isclose(got, rdp_epsilon(*case), rel_tol=1e-6):
            return report([_eps_hint(shown, got, case)])
    got = float(answer(*record))
    if not math.isclose(got, float(privacy["epsilon"]), rel_tol=1e-3, abs_tol=1e-3):
        return report([(f"你的 ε = {got:.4f}，记录里是 {privacy['epsilon']}：训练记录和记账器对不上",
                        f"your epsilon {got:.4f} differs from the record's {privacy['epsilon']}")])
    return report([])


# ---- exercise 11.3: bytes a federated round moves --------------------------------------------

NPY_HEADER = 128  # bytes of .npy framing per float32 tensor of these shapes (format 1.0, padded to 64)


def fed_bytes(param_shapes: Sequence[Sequence[int]], clients: int) -> int:
    """Up + down bytes of one FedAvg round: every client downloads and uploads every tensor."""
    per_client = sum(4 * math.prod(shape) + NPY_HEADER for shape in param_shapes)
    return 2 * clients * per_client


def lab11_bytes(answer: Callable[[list[list[int]], int], Any], record: dict[str, Any]) -> Verdict:
    """`answer(param_shapes, clients)` = bytes up + down per round; checked against the run's record."""
    shapes = [list(s) for s in record["param_shapes"]]
    clients = int(record["federated"]["clients"])
    cases = [(shapes, clients, int(record["bytes_per_round"])), ([[601, 16], [16]], 4, fed_bytes([[601, 16], [16]], 4))]
    for case_shapes, n, want in cases:
        shown = f"bytes_per_round({len(case_shapes)} tensors, {n} clients)"
        try:
            got = int(answer([list(s) for s in case_shapes], n))
        except Exception as exc:  # noqa: BLE001
            return report([(f"{shown} 出错：{exc!r}", f"{shown} raised {exc!r}")])
        if got == want:
            continue
        shown += f" = {got:,}"
        numbers = sum(math.prod(s) for s in case_shapes)
        if got * 2 == want:
            hint = ("只算了一个方向：每一轮每个客户端先下载全局参数、再上传自己的，要乘 2",
                    "one direction only: every round each client downloads the global parameters and uploads its own (x 2)")
        elif got * n == want:
            hint = (f"只算了一个客户端：{n} 个客户端每个都收发一遍", f"one client only: all {n} clients send and receive")
        elif got == 2 * n * 8 * numbers or got == 2 * n * (8 * numbers + NPY_HEADER * len(case_shapes)):
            hint = ("按 8 字节算了：参数是 float32，每个数 4 字节", "counted 8 bytes a number: the parameters are float32, 4 bytes each")
        elif got == 2 * n * 4 * numbers:
            hint = (f"差 {want - got:,} 字节：每个张量还有 {NPY_HEADER} 字节的 .npy 头（形状、dtype）",
                    f"{want - got:,} bytes short: every tensor also carries a {NPY_HEADER}-byte .npy header (shape, dtype)")
        else:
            hint = (f"应为 {want:,}", f"expected {want:,}")
        return report([(f"{shown}：{hint[0]}", f"{shown}: {hint[1]}")])
    return report([])

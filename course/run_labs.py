"""Execute the labs as CI does: solutions filled in, checks strict, fast mode by default.

    python course/run_labs.py              # every lab, fast mode, then the site
    python course/run_labs.py --full       # full budgets (the figures of docs/ and the README)
    python course/run_labs.py --labs 01,03 --no-site

Each lab's exercise cells (tag `exercise`, `ex:<id>`) are replaced by the code under
`# %% ex:<id>` in course/solutions/<lab>.py; the check cell after them then runs with
SOUTUI_COURSE_STRICT=1, so a wrong solution or a changed engine fails the run.
`--as-learner` runs the starting code instead: every check must report, and no cell may crash. Executed
notebooks go to course/_build/, the site to course/_site/{zh,en}/.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bilingual  # noqa: E402
import site_build  # noqa: E402

COURSE = Path(__file__).resolve().parent
LABS = COURSE / "labs"
SOLUTIONS = COURSE / "solutions"
BUILD = COURSE / "_build"
SITE = COURSE / "_site"
_BLOCK = re.compile(r"^# %% ex:(\S+)\s*$", re.MULTILINE)


def lab_files(only: list[str] | None = None) -> list[Path]:
    files = sorted(LABS.glob("[0-9][0-9]_*.py"))
    if only:
        files = [f for f in files if f.name[:2] in only]
    return files


def solutions_for(lab: Path) -> dict[str, str]:
    """`# %% ex:<id>` blocks of course/solutions/<lab name>.py."""
    path = SOLUTIONS / lab.name
    if not path.exists():
        return {}
    parts = _BLOCK.split(path.read_text(encoding="utf-8"))
    return {parts[i]: parts[i + 1].strip() + "\n" for i in range(1, len(parts) - 1, 2)}


def with_solutions(nb: nbformat.NotebookNode, lab: Path) -> nbformat.NotebookNode:
    sols = solutions_for(lab)
    out = nbformat.from_dict(nb)
    for cell in out.cells:
        ex = bilingual.exercise_id(cell)
        if cell.cell_type == "code" and "exercise" in bilingual.tags(cell) and ex is not None:
            if ex not in sols:
                raise SystemExit(f"{lab.name}: no solution for exercise {ex} in {SOLUTIONS / lab.name}")
            cell.metadata["learner_source"] = cell.source
            cell.source = sols[ex]
    return out


def execute(lab: Path, timeout: int, learner: bool = False) -> tuple[nbformat.NotebookNode, float]:
    nb = bilingual.read_lab(lab) if learner else with_solutions(bilingual.read_lab(lab), lab)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(LABS)}}).execute()
    return nb, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="full budgets instead of fast mode")
    ap.add_argument("--labs", help="comma-separated lab numbers, e.g. 01,03 (default: all)")
    ap.add_argument("--no-site", action="store_true", help="execute only, do not build the site")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    ap.add_argument("--as-learner", action="store_true",
                    help="run the exercises as a learner gets them (no solutions, checks report and go on)")
    ap.add_argument("--build-dir", type=Path, default=BUILD, help="executed notebooks (default course/_build)")
    ap.add_argument("--site-dir", type=Path, default=SITE, help="the site (default course/_site)")
    args = ap.parse_args(argv)
    labs = lab_files(args.labs.split(",") if args.labs else None)
    bad = [p for lab in labs for p in bilingual.problems(lab)]
    if bad:
        print("\n".join(bad), file=sys.stderr)
        return 1
    os.environ["SOUTUI_COURSE_FAST"] = "0" if args.full else "1"
    os.environ["SOUTUI_COURSE_STRICT"] = "0" if args.as_learner else "1"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"  # plots become outputs
    args.build_dir.mkdir(parents=True, exist_ok=True)
    executed = []
    total = time.perf_counter()
    for lab in labs:
        nb, secs = execute(lab, args.timeout, args.as_learner)
        nbformat.write(nb, args.build_dir / f"{lab.stem}.ipynb")
        executed.append((lab, nb))
        print(f"course: {lab.name} ran in {secs:.1f} s", flush=True)
    print(f"course: {len(labs)} labs in {time.perf_counter() - total:.1f} s "
          f"({'full' if args.full else 'fast'} mode)")
    if not args.no_site:
        for lang in bilingual.LANGS:
            site_build.build(executed, args.site_dir / lang, lang)
        print(f"course: site in {args.site_dir}/zh and {args.site_dir}/en")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

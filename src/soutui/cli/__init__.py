"""The `soutui` command: thin subcommands that parse, call the library, and print.

Each subcommand group lives in its own module and is listed explicitly in COMMANDS.
Errors a user can fix are printed as one clear line (exit 2), never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from soutui import __version__

# module name -> provides register(subparsers); order = order in --help
COMMANDS: tuple[str, ...] = (
    "soutui.cli.data_cmd",
    "soutui.cli.evaluate_cmd",
    "soutui.cli.train_cmd",
    "soutui.cli.search_cmd",
    "soutui.cli.serve_cmd",
    "soutui.cli.demo_cmd",
)


class UserError(Exception):
    """An error caused by input the user can fix; printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soutui", description="搜推 soutui: e-commerce search and recommendation"
    )
    parser.add_argument("--version", action="version", version=f"soutui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMANDS:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name == mod:
                continue  # a command group not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (UserError, FileNotFoundError, KeyError, ValueError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"soutui: error: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("soutui: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`soutui` errors: user mistakes are one line (exit 2), bugs keep their traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from soutui.cli import evaluate_cmd, main


def test_user_error_is_one_line_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--ks", "ten"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "soutui: error: --ks must be positive integers separated by commas, got 'ten'"
    ]


def test_debug_adds_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--debug", "evaluate", "--ks", "ten"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ConfigError" in err
    assert err.strip().splitlines()[-1].startswith("soutui: error: --ks must be")


def test_missing_files_are_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--config", str(tmp_path / "nope.toml")]) == 2
    assert f"config file {tmp_path / 'nope.toml'} does not exist" in capsys.readouterr().err
    rc = main(["data", "import", "amazon-beauty", "--data-dir", str(tmp_path / "none"), "--store",
               f"duckdb://{tmp_path / 's.duckdb'}"])  # fmt: skip
    assert rc == 2
    assert "does not exist" in capsys.readouterr().err


def test_bad_config_key_names_the_allowed_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "serve.toml"
    cfg.write_text("prot = 8001\n")
    assert main(["serve", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) ['prot']" in err and "'port'" in err and len(err.strip().splitlines()) == 1


def test_unexpected_exceptions_are_not_user_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """A KeyError/ValueError from a bug must surface with its traceback, not as 'soutui: error'."""

    def broken(text: str) -> tuple[int, ...]:
        return {"a": (1,)}[text]  # a bug: KeyError

    monkeypatch.setattr(evaluate_cmd, "parse_ks", broken)
    with pytest.raises(KeyError):
        main(["evaluate", "--ks", "10"])


def test_command_line_exit_codes(tmp_path: Path) -> None:
    """The installed entry point: exit 2 and one stderr line for a user error."""
    code = "import sys; from soutui.cli import main; sys.exit(main())"
    run = subprocess.run(
        [sys.executable, "-c", code, "serve", "--config", str(tmp_path / "nope.toml")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"soutui: error: config file {tmp_path / 'nope.toml'} does not exist; pass the path of a TOML file"
    ]


def test_unknown_dataset_says_how_to_import_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = f"duckdb://{tmp_path / 's.duckdb'}"
    assert main(["evaluate", "--dataset", "my-shop", "--model", "popularity", "--store", store]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "soutui data import generic --name my-shop --events FILE" in err[0]


def test_missing_training_extra_says_what_to_install() -> None:
    """On the core install (no torch), training commands tell the user which extra to install."""
    code = (
        "import sys; sys.modules['torch'] = None\n"  # as if torch were not installed
        "from soutui.cli import main; sys.exit(main(['train', '--model', 'sasrec', '--dataset', 'x']))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [
        "soutui: error: `soutui train` needs torch, which the core install leaves out; "
        "install the [train] extra: pip install 'soutui[train]'"
    ]

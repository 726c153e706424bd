"""Config parsing: pydantic validation behind from_dict, unknown keys named, TOML round trip."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

import soutui
from soutui.config import (
    ConfigError,
    MissingFileError,
    NotFoundError,
    UserError,
    from_dict,
    load_toml,
    to_dict,
    to_toml,
)


@dataclass
class Inner:
    n: int = 1
    weights: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ConfigError(f"inner.n must be >= 0, got {self.n}")


@dataclass
class Outer:
    name: str = "x"
    rate: float = 0.5
    mode: Literal["a", "b"] = "a"
    tags: list[str] = field(default_factory=list)
    limit: int | None = None
    inner: Inner = field(default_factory=Inner)


def test_builds_nested_and_coerces_numbers() -> None:
    cfg = from_dict(Outer, {"rate": 2, "inner": {"n": 3, "weights": [1, 2.5]}, "limit": 4})
    assert cfg == Outer(rate=2.0, limit=4, inner=Inner(n=3, weights=(1.0, 2.5)))
    assert isinstance(cfg.rate, float) and isinstance(cfg.inner.weights, tuple)


def test_unknown_key_names_key_and_allowed_ones() -> None:
    with pytest.raises(ConfigError) as err:
        from_dict(Outer, {"rat": 1.0})
    assert "unknown key(s) ['rat']" in str(err.value)
    assert "['inner', 'limit', 'mode', 'name', 'rate', 'tags']" in str(err.value)
    with pytest.raises(ConfigError, match=r"cfg\.inner: unknown key\(s\) \['m'\]; allowed keys are \['n', 'weights'\]"):
        from_dict(Outer, {"inner": {"m": 1}}, where="cfg")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"rate": "fast"}, r"Outer\.rate: .*got 'fast'"),
        ({"mode": "c"}, r"Outer\.mode: Input should be 'a' or 'b', got 'c'"),
        ({"name": 5}, r"Outer\.name: .*string"),
        ({"inner": {"n": 2.5}}, r"Outer\.inner\.n: .*integer"),
        ({"inner": {"n": -1}}, r"inner\.n must be >= 0, got -1"),
        ({"inner": 3}, r"Outer\.inner: "),
    ],
)
def test_bad_values_are_config_errors(data: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        from_dict(Outer, data)


def test_user_errors_keep_their_builtin_bases() -> None:
    assert issubclass(ConfigError, UserError) and issubclass(ConfigError, ValueError)
    assert issubclass(MissingFileError, UserError) and issubclass(MissingFileError, FileNotFoundError)
    assert issubclass(NotFoundError, UserError) and issubclass(NotFoundError, KeyError)
    assert str(NotFoundError("dataset 'x' is not in the store")) == "dataset 'x' is not in the store"
    with pytest.raises(ConfigError, match="expected a table"):
        from_dict(Outer, [1, 2])  # type: ignore[arg-type]


def test_toml_round_trip_escapes_strings(tmp_path: Path) -> None:
    cfg = Outer(name='say "hi"\\ and\nleave', tags=["a'b", "c"], inner=Inner(weights=(0.5, 2.0)))
    text = to_toml(cfg)
    assert "limit" not in text  # None has no TOML form: left out, so the default applies
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert tomllib.loads(text)["name"] == cfg.name
    assert load_toml(Outer, path) == cfg
    assert to_dict(cfg)["inner"] == {"n": 1, "weights": (0.5, 2.0)}


def test_load_toml_errors_say_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="does not exist"):
        load_toml(Outer, tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(Outer, bad)
    typo = tmp_path / "typo.toml"
    typo.write_text("[inner]\nnn = 2\n")
    with pytest.raises(ConfigError, match=rf"{typo}\.inner: unknown key\(s\) \['nn'\]"):
        load_toml(Outer, typo)


# --- the shipped, commented defaults.toml -------------------------------------------

DEFAULTS = Path(soutui.__file__).parent / "defaults.toml"


def _defaults() -> dict[str, Any]:
    return tomllib.loads(DEFAULTS.read_text(encoding="utf-8"))


def test_defaults_toml_is_every_serve_key_at_its_default() -> None:
    from soutui.serving.settings import RulesConfig, ServeSettings

    doc = _defaults()
    assert set(doc["serve"]) == {f.name for f in dataclasses.fields(ServeSettings)}
    assert set(doc["serve"]["rules"]) == {f.name for f in dataclasses.fields(RulesConfig)}
    assert from_dict(ServeSettings, doc["serve"]) == ServeSettings()
    assert load_toml(ServeSettings, DEFAULTS, table="serve") == ServeSettings()


def test_defaults_toml_is_every_model_parameter_at_its_default() -> None:
    from soutui.models.registry import MODELS, model_class

    models = _defaults()["models"]
    assert set(models) == set(MODELS)
    for name in MODELS:
        if name == "sasrec":
            continue
        default = model_class(name)().params()
        assert models[name] == default, name  # every key, every value


def test_defaults_toml_sasrec_section_matches_its_configs() -> None:
    pytest.importorskip("torch")
    from soutui.models.sasrec_recommender import DERIVED, split_params

    section = _defaults()["models"]["sasrec"]
    defaults = split_params({})
    assert split_params(section) == defaults  # same values, through the real typed configs
    keys = {f.name for cfg in defaults for f in dataclasses.fields(cfg)} - set(DERIVED)
    assert set(section) == keys


def test_defaults_toml_retrain_table_is_every_key_at_its_default() -> None:
    from soutui.training.retrain import RetrainConfig, retrain_config

    section = _defaults()["retrain"]
    assert set(section) == {f.name for f in dataclasses.fields(RetrainConfig)}
    assert retrain_config(section) == RetrainConfig()
    assert load_toml(RetrainConfig, DEFAULTS, table="retrain") == RetrainConfig()  # what `retrain --config` reads


def test_every_defaults_key_has_a_comment() -> None:
    for line in DEFAULTS.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            assert " # " in line, f"defaults.toml: document {line.split('=')[0].strip()!r} with a comment"

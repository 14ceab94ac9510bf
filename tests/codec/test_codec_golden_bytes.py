"""Golden bytes: SHA-256 of the encoded bytes + header of fixed tensors of every layout.

The hashes were computed with the encoder as it was before the encoder and decoder shared one
layout walk (main at 5c40894); the shared walk must keep every byte. A change of the byte
layout bumps ``FORMAT_VERSION`` and regenerates these hashes on purpose.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import numpy as np
import pytest

from bitvert.codec import EncodedTensor, decode, encode, encode_plain
from bitvert.pruning import PruneConfig, prune


def _weights(seed: int, shape: tuple[int, ...], scale: float = 12.0) -> np.ndarray:
    """Laplace integers; ``scale < 0``: odd channels at scale 2, even ones at ``-scale`` (mixed ranges)."""
    rng = np.random.default_rng(seed)
    if scale < 0:
        per_channel = np.where(np.arange(shape[0]) % 2 == 1, 2.0, -scale).reshape((-1,) + (1,) * (len(shape) - 1))
        return np.clip(np.round(rng.laplace(0, 1, shape) * per_channel), -127, 127).astype(np.int16)
    return np.clip(np.round(rng.laplace(0, scale, shape)), -127, 127).astype(np.int16)


def _dense(k: int, picks: list[int]) -> np.ndarray:
    out = np.zeros(k, dtype=bool)
    out[picks] = True
    return out


def _pruned(seed: int, shape: tuple[int, ...], dense: list[int] | None = None, kind: str | None = None,
            scale: float = 12.0, **cfg: object) -> Callable[[], tuple[EncodedTensor, np.ndarray]]:
    def build() -> tuple[EncodedTensor, np.ndarray]:
        w = _weights(seed, shape, scale)
        if "weight_bits" in cfg:
            lim = (1 << (int(cfg["weight_bits"]) - 1)) - 1
            w = np.clip(w, -lim, lim).astype(np.int16)
        r = prune(w, PruneConfig(**cfg), kind=kind, dense_channels=None if dense is None else _dense(shape[0], dense))
        return encode(r, "golden"), np.asarray(r.weights)
    return build


def _plain(seed: int, shape: tuple[int, ...], narrow: bool) -> Callable[[], tuple[EncodedTensor, np.ndarray]]:
    def build() -> tuple[EncodedTensor, np.ndarray]:
        w = _weights(seed, shape)
        bits = None
        if narrow:  # fewer-bit RTN channels: every third channel at 8 bits, the rest at 6
            bits = np.where(np.arange(shape[0]) % 3 == 0, 8, 6)
            w = np.where((bits == 8)[:, None], w, np.clip(w, -32, 31)).astype(np.int16)
        return encode_plain(w, group_size=32, channel_bits=bits, name="golden"), w
    return build


# 70 = 2 x 32 + 6 input features: every channel ends in a 6-weight remainder group
CASES: dict[str, Callable[[], tuple[EncodedTensor, np.ndarray]]] = {
    "ra_paper": _pruned(1, (48, 70), method="rounded_avg", columns=2),
    "ra_paper_sensitive": _pruned(2, (48, 70), dense=[0, 17, 47], method="rounded_avg", columns=4),
    "ra_code": _pruned(3, (40, 64), method="rounded_avg", semantics="code", columns=3),
    "zp_paper": _pruned(4, (48, 70), dense=[5, 6], method="zero_point", columns=4),
    "zp_code": _pruned(5, (64, 96), scale=30.0, method="zero_point", semantics="code", columns=4),
    "zp_code_escaped": _pruned(15, (32, 64), scale=-40.0, method="zero_point", semantics="code", columns=4,
                               group_size=8),
    "ra_n7_escaped": _pruned(16, (16, 64), scale=60.0, method="rounded_avg", columns=7),
    "zp_conv": _pruned(6, (24, 40, 3, 3), method="zero_point", columns=4, kind="conv"),
    "zp_depthwise": _pruned(7, (16, 1, 3, 3), method="zero_point", columns=3, group_size=4, kind="conv"),
    "zp_dense_remainder": _pruned(8, (32, 70), method="zero_point", columns=4, remainder="dense"),
    "zp_6bit": _pruned(9, (32, 64), scale=6.0, method="zero_point", weight_bits=6, columns=2),
    "bitwave": _pruned(10, (48, 70), method="bitflip", columns=4, neg_min="clamp"),
    "bitwave_sensitive": _pruned(11, (48, 64), dense=[3, 30], method="bitflip", columns=5, neg_min="clamp"),
    "bitwave_group8": _pruned(12, (20, 36), method="bitflip", columns=3, group_size=8, neg_min="clamp"),
    "plain_int8": _plain(13, (40, 70), narrow=False),
    "plain_rtn": _plain(14, (40, 70), narrow=True),
}

GOLDEN = {
    "bitwave": "e96adf0e7a038fcf7d1bf5003be001989e61eb4c7f0ea930c89c2ef88a32b547",
    "bitwave_group8": "643a5a9b6982f61bc05469983f2201e8603f843d06aabd2c52ced088a5706281",
    "bitwave_sensitive": "5f83907c1147a2eb386281099783ccb5a13a492c8c616be24f2991c65877e71c",
    "plain_int8": "69d045b94031005eca399ea40a96446444d5f5e6705f49a530267fb883d1c585",
    "plain_rtn": "5ddcf604e7b22e8c94a2d4fa2ea869ed4c21d6028a787d3d957f9d75d915c6b2",
    "ra_code": "4855b206330410266edd3ef94b083a9e37f656810bc88e1c12f2a7b4f5d644b6",
    "ra_n7_escaped": "095dea6e1315fd494163ec0e2ae29be03c341655db98f15b42f5975a3ad54e34",
    "ra_paper": "8fa7c6baee74dae511f8ae2a6930d9cf06bc4fc773d06b47e399c6afe8c4cee9",
    "ra_paper_sensitive": "92f63cebf0154b97043d695f4cdd47b72a4ccf8fa996e974851d7614f8f6397d",
    "zp_6bit": "463169912e6e09c1366d9939c9e76912e35d55b27cb61e5477d512cd1e9a068a",
    "zp_code": "710eccf842a882c02d66029f79898713020ab95a52a9b2fb27ee76acfa31dfe2",
    "zp_code_escaped": "524f4265b6c40d09d5d21e874aa5d503dfa3db0be8581c509ee544ea4d6e477f",
    "zp_conv": "13e776eb068e7ad7b2fd2924f62f539d403427856337ae0be20fa19d6a29a3af",
    "zp_dense_remainder": "d5aa3f25795386c7c90f3e8309007f7906542ccaa310e82b8dc7b03d84521bdc",
    "zp_depthwise": "5608786e8c0a4c58bea643368bfa60e3ad44016e887578d9384271172e5af321",
    "zp_paper": "23b1ee94293366046d45ce7d1b442384ae1fff1e5d4684fad6f2f24ff0cafaac",
}


def _digest(enc: EncodedTensor) -> str:
    h = hashlib.sha256(np.ascontiguousarray(enc.to_bytes()).tobytes())
    h.update(json.dumps(enc.header(), sort_keys=True).encode())
    return h.hexdigest()


@pytest.mark.parametrize("case", sorted(CASES))
def test_encoded_bytes_are_golden(case: str) -> None:
    enc, weights = CASES[case]()
    assert _digest(enc) == GOLDEN[case]
    assert np.array_equal(decode(enc), weights)


def test_golden_cases_cover_every_layout_and_chunk_kind() -> None:
    encs = [CASES[c]()[0] for c in sorted(CASES)]
    assert {e.layout.value for e in encs} == {"bbs_rounded_avg", "bbs_zero_point", "bitwave", "plain"}
    assert any(not c.metadata for e in encs if e.layout.value != "plain" for c in e.chunks)  # sensitive
    assert any(len({c.columns for c in e.chunks}) > 1 for e in encs)  # several widths
    assert any(e.stats()["escaped_channels"] for e in encs)  # wider chunk for escaped channels
    assert any(e.shape[-1] % e.group_size for e in encs if len(e.shape) == 2)  # remainder groups

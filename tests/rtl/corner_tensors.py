"""Hand-built encoded tensors that reach the corners of the BitVert PE (shared by the RTL tests).

They are made through the format's own reader (``EncodedTensor.from_bytes``), so every one
is a valid ``*.bbs.safetensors`` tensor: one 32-weight group per output channel, chosen
metadata bytes and chosen column bits.
"""

from __future__ import annotations

import numpy as np

from bitvert.codec import EncodedTensor, TensorLayout, encode_plain

GROUP = 32


def synthetic(layout: TensorLayout, n_free: int, metadata: np.ndarray, columns: np.ndarray) -> EncodedTensor:
    """A ``[K, 32]`` linear tensor whose group ``k`` has metadata byte ``metadata[k]`` and stored
    columns ``columns[k]`` (``[8 - n_free, 32]`` bits, MSB column first)."""
    k = len(metadata)
    n_cols = 8 - n_free
    assert columns.shape == (k, n_cols, GROUP)
    payload = np.packbits(columns.astype(np.uint8).ravel())
    header = {"layout": layout.value, "shape": [k, GROUP], "kind": "linear", "group_size": GROUP,
              "remainder": "short", "weight_bits": 8, "columns": n_free, "chunks": [[n_cols, k, 1]],
              "payload_bytes": int(payload.size), "metadata_bytes": k, "index_bytes": 0, "source": {}}
    blob = np.concatenate([payload, np.asarray(metadata, np.uint8)])
    return EncodedTensor.from_bytes(blob, header, "corner")


def every_pattern_columns(k: int, n_cols: int, seed: int) -> np.ndarray:
    """``[k, n_cols, 32]`` bits in which every 8-bit sub-group pattern appears in every slot."""
    g = np.arange(k)[:, None, None]
    j = np.arange(n_cols)[None, :, None]
    u = np.arange(GROUP // 8)[None, None, :]
    pattern = (g + 37 * j + 101 * u + seed) % 256  # [k, n_cols, 4]
    bits = (pattern[..., None] >> np.arange(8)) & 1
    return bits.reshape(k, n_cols, GROUP)


def special_columns(k: int, n_cols: int, seed: int) -> np.ndarray:
    """All-0, all-1, 4-of-8 and 5-of-8 ones and random columns, mixed per group."""
    rng = np.random.default_rng(seed)
    out = rng.integers(0, 2, size=(k, n_cols, GROUP))
    kind = rng.integers(0, 5, size=(k, n_cols))
    out[kind == 0] = 0
    out[kind == 1] = 1
    four = np.tile(np.array([1, 1, 1, 1, 0, 0, 0, 0]), GROUP // 8)
    five = np.tile(np.array([1, 0, 1, 1, 0, 1, 0, 1]), GROUP // 8)
    out[kind == 2] = four
    out[kind == 3] = five
    return out


def metadata_corners() -> list[tuple[str, EncodedTensor]]:
    """Every metadata byte the format allows, for both BBS layouts and N = 2, 4, 6."""
    cases = []
    for layout in (TensorLayout.BBS_ZERO_POINT, TensorLayout.BBS_ROUNDED_AVG):
        for n_free in (2, 4, 6):
            n_cols = 8 - n_free
            metas = []
            for r in range(0, min(3, 8 - n_cols) + 1):
                k_low = 8 - n_cols - r
                fields = range(64) if layout is TensorLayout.BBS_ZERO_POINT else range(min(64, 1 << k_low))
                metas += [(r << 6) | f for f in fields]
            md = np.array(metas, dtype=np.uint8)
            seed = len(cases)
            make = every_pattern_columns if seed % 2 else special_columns
            cols = make(len(md), n_cols, seed)
            cases.append((f"{layout.value}-N{n_free}", synthetic(layout, n_free, md, cols)))
    return cases


def plain_corners() -> list[tuple[str, EncodedTensor]]:
    """Plain (no metadata) tensors: INT8 extremes, and narrow channels down to 1 stored column."""
    w = np.array([[-128] * 32, [127] * 32, [-127] * 32, [0] * 32, [-1] * 32,
                  [127, -128] * 16, [-127, 127] * 16, list(range(-16, 16))], dtype=np.int64)
    rng = np.random.default_rng(7)
    narrow = rng.integers(-1, 1, size=(4, 32))  # 1-bit two's complement: {-1, 0}
    narrow2 = rng.integers(-2, 2, size=(4, 32))
    narrow4 = rng.integers(-8, 8, size=(4, 32))
    ws = np.concatenate([w, narrow, narrow2, narrow4])
    bits = [8] * len(w) + [1] * 4 + [2] * 4 + [4] * 4
    return [("plain", encode_plain(ws, kind="linear", channel_bits=bits))]

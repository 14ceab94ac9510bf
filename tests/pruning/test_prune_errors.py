import numpy as np
import pytest
import torch

from bitvert.errors import ConfigError, InputError
from bitvert.pruning import PruneConfig, prune


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "avg"}, "method must be one of"),
        ({"method": "rounded_avg", "semantics": "pape"}, "semantics must be one of"),
        ({"method": "rounded_avg", "weight_bits": 1}, "weight_bits must be in"),
        ({"method": "rounded_avg", "weight_bits": 9}, "weight_bits must be in"),
        ({"method": "rounded_avg", "group_size": 1}, "group_size must be in"),
        ({"method": "zero_point", "group_size": 8192}, r"group_size must be in \[2, 4096\]"),
        ({"method": "rounded_avg", "columns": 8}, r"columns must be in \[1, 7\]"),
        ({"method": "rounded_avg", "columns": 0}, "columns must be in"),
        ({"method": "zero_point", "constant_bits": 0}, "constant_bits must be in"),
        ({"method": "rounded_avg", "columns": 2.5}, "columns must be an integer"),
        ({"method": "rounded_avg", "remainder": "pad"}, "remainder must be one of"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PruneConfig(**kwargs)


CFG = PruneConfig("zero_point", group_size=4)


@pytest.mark.parametrize(
    "w, match",
    [
        (torch.randn(4, 4), "integer tensor"),
        (np.full((4, 4), np.nan), "NaN"),
        (np.ones((4, 4)), "must hold integers"),
        (np.full((4, 4), 300), "outside the signed 8-bit range"),
        (np.zeros((0, 4), dtype=np.int8), "empty"),
        (np.arange(4), "infer the layer kind"),
    ],
)
def test_bad_weights(w, match):
    with pytest.raises(InputError, match=match):
        prune(w, CFG)


def test_bad_dense_channels_and_config_type():
    w = np.ones((4, 8), dtype=np.int8)
    with pytest.raises(InputError, match=r"dense_channels must be a bool array of shape \(4,\)"):
        prune(w, CFG, dense_channels=np.ones(3, dtype=bool))
    with pytest.raises(InputError, match="config must be a PruneConfig"):
        prune(w, {"method": "rounded_avg"})


def test_neg_min_policy_for_sign_magnitude_methods():
    w = np.array([[-128, 5, 3, 1]], dtype=np.int16)
    for method, semantics in [("zero_point", "code"), ("bitflip", "code")]:
        with pytest.raises(InputError, match="1 value\\(s\\) equal to -128"):
            prune(w, PruneConfig(method, semantics, group_size=4))
        res = prune(w, PruneConfig(method, semantics, group_size=4, neg_min="clamp"))
        assert res.n_clamped == 1 and res.original[0, 0] == -127
    # two's complement methods handle -128 natively
    assert prune(w, PruneConfig("rounded_avg", group_size=4)).n_clamped == 0


def test_config_round_trip():
    cfg = PruneConfig("zero_point", "code", columns=3)
    assert cfg.constant_bits == 5
    assert PruneConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown PruneConfig key"):
        PruneConfig.from_dict({**cfg.to_dict(), "colums": 3})


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.int64])
def test_out_of_range_weight_in_a_large_tensor_raises_before_pruning(dtype):
    """Large tensors are range-checked in the parallel int16 pass (core.validation): one bad weight
    still stops prune() with the clear error of the small-tensor path."""
    from bitvert.core.validation import PARALLEL_MIN_WEIGHTS

    w = np.zeros((PARALLEL_MIN_WEIGHTS // 512, 512), dtype=dtype)
    w[-1, -1] = -300
    with pytest.raises(InputError, match=r"values in \[-300, 0\], outside the signed 8-bit range \[-128, 127\]"):
        prune(w, PruneConfig("zero_point", group_size=32, columns=4))

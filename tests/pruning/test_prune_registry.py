"""The pruning-method registry: built-in entries, what they declare, and bad registrations."""

from __future__ import annotations

import numpy as np
import pytest

from bitvert.core.bitplanes import NumberFormat
from bitvert.errors import ConfigError
from bitvert.pruning import PruneConfig, PruneMethod, prune
from bitvert.pruning.methods import (
    HARDWARE_DESIGNS,
    LAYOUTS,
    REGISTRY,
    MethodSpec,
    get_method,
    method_names,
    methods_for_hardware,
    register_method,
    unregister_method,
)


def _spec(**kw):
    base = dict(name="toy_reg", label="toy", kernel=REGISTRY["bitflip"].kernel, reference=REGISTRY["bitflip"].reference,
                layout="bbs_zero_point", hardware="bitvert")
    return MethodSpec(**{**base, **kw})


def test_builtin_methods_are_the_enum_and_declare_their_facts():
    assert method_names()[:3] == [m.value for m in PruneMethod] == ["rounded_avg", "zero_point", "bitflip"]
    ra, zp, bf = (get_method(m) for m in PruneMethod)
    assert (ra.layout, zp.layout, bf.layout) == ("bbs_rounded_avg", "bbs_zero_point", "bitwave")
    assert (ra.hardware, zp.hardware, bf.hardware) == ("bitvert", "bitvert", "bitwave")
    assert methods_for_hardware("bitvert")[:2] == ["rounded_avg", "zero_point"]
    assert methods_for_hardware("bitwave")[:1] == ["bitflip"]
    assert all(s.metadata for s in (ra, zp, bf))
    assert zp.offset and not ra.offset and not bf.offset
    assert (ra.label, zp.label, bf.label) == ("BBS rounded averaging", "BBS zero-point shifting", "BitWave bit flip")


@pytest.mark.parametrize(("method", "semantics", "fmt", "cap"), [
    ("rounded_avg", "paper", NumberFormat.TWOS_COMPLEMENT, 3),
    ("rounded_avg", "code", NumberFormat.TWOS_COMPLEMENT, 3),
    ("zero_point", "paper", NumberFormat.TWOS_COMPLEMENT, 3),
    ("zero_point", "code", NumberFormat.SIGN_MAGNITUDE, 7),
    ("bitflip", "code", NumberFormat.SIGN_MAGNITUDE, 3),
])
def test_config_asks_the_registry_for_format_and_cap(method, semantics, fmt, cap):
    cfg = PruneConfig(method, semantics)
    assert cfg.method is PruneMethod(method) and cfg.method_name == method
    assert cfg.number_format is fmt and cfg.redundant_cap == cap


def test_code_rounded_avg_cap_follows_the_published_scan():
    # planes 1..b-5: 3 at 8 bits, 1 at 6 bits, 0 at 4 bits (paper: min(3, b-1))
    assert [PruneConfig("rounded_avg", "code", weight_bits=b, columns=1).redundant_cap for b in (8, 6, 4)] == [3, 1, 0]
    assert [PruneConfig("rounded_avg", weight_bits=b, columns=1).redundant_cap for b in (8, 3)] == [3, 2]


def test_stored_groups_add_the_constant_only_for_offset_methods():
    w = [[81, -20, 1, -7]]
    zp = prune(w, PruneConfig("zero_point", group_size=4, columns=4))
    assert zp.stored_groups().tolist() == [[82 - 26, -22 - 26, 2 - 26, -6 - 26]]
    ra = prune(w, PruneConfig("rounded_avg", group_size=4, columns=4))
    assert ra.stored_groups().tolist() == ra.groups().tolist()


def test_unknown_method_lists_the_registered_ones():
    with pytest.raises(ConfigError, match=r"method must be one of \['rounded_avg', 'zero_point', 'bitflip'"):
        PruneConfig("rounded_average")
    with pytest.raises(ConfigError, match="method must be one of"):
        get_method(3)


@pytest.mark.parametrize(("kw", "match"), [
    ({"name": "Bad Name"}, "lower-case identifier"),
    ({"layout": "plain"}, "layout must be one of"),
    ({"hardware": "stripes"}, "hardware must be one of"),
    ({"free_columns": "ones"}, "free_columns must be"),
])
def test_bad_specs_are_rejected(kw, match):
    with pytest.raises(ConfigError, match=match):
        _spec(**kw)


def test_register_rejects_duplicates_reserved_names_and_non_specs():
    with pytest.raises(ConfigError, match="already registered"):
        register_method(_spec(name="zero_point"))
    for reserved in ("none", "rtn"):
        with pytest.raises(ConfigError, match="reserved for the pipeline"):
            register_method(_spec(name=reserved))
    with pytest.raises(ConfigError, match="expects a MethodSpec"):
        register_method({"name": "x"})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="is not registered"):
        unregister_method("toy_reg")


def test_register_and_unregister_round_trip():
    spec = register_method(_spec())
    try:
        assert get_method("toy_reg") is spec and "toy_reg" in methods_for_hardware("bitvert")
        again = register_method(_spec(label="toy 2"), replace=True)
        assert get_method("toy_reg") is again
        cfg = PruneConfig("toy_reg", "code", columns=2)
        assert cfg.method == "toy_reg" and not isinstance(cfg.method, PruneMethod)
        res = prune(np.array([[3, -5, 7, 1]]), PruneConfig("toy_reg", "code", group_size=4, columns=2))
        assert res.weights.shape == (1, 4)
    finally:
        unregister_method("toy_reg")
    assert "toy_reg" not in REGISTRY


def test_layouts_and_designs_are_declared_once():
    assert LAYOUTS == ("bbs_rounded_avg", "bbs_zero_point", "bitwave")
    assert HARDWARE_DESIGNS == ("bitvert", "bitwave")


def test_free_columns_come_from_the_spec_definition_unless_the_kernel_declares_them():
    """A spec reusing bit flip's kernel under the two's-complement definition gets its free columns
    counted by ``count_free`` (the kernel's own fourth array counts zero-magnitude columns)."""
    w = np.random.default_rng(3).integers(-3, 4, size=(8, 64)).astype(np.int8)  # zero-magnitude: 5, capped: 3
    spec = register_method(_spec())
    try:
        res = prune(w, PruneConfig("toy_reg", group_size=32, columns=1))
        expected = spec.count_free(res.groups(), res.metadata.constant, res.layout.lengths(), 8, res.config.redundant_cap)
        assert res.metadata.free_columns.tolist() == expected.tolist()
        bf = prune(w, PruneConfig("bitflip", group_size=32, columns=1))
        assert bf.groups().tolist() == res.groups().tolist()
        assert bf.metadata.free_columns.tolist() != expected.tolist()  # the two definitions differ here
    finally:
        unregister_method("toy_reg")

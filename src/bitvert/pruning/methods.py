"""The pruning-method registry: one definition per binary-pruning method.

Every fact about a method lives in its :class:`MethodSpec`, registered here; every other module
asks the registry instead of listing method names:

==================  =========================================================================
field               who reads it
==================  =========================================================================
``name``            :class:`~bitvert.pruning.PruneConfig` validation, pipeline presets' ``method``
``options``         documentation of the :class:`~bitvert.pruning.PruneConfig` fields it reads
``validate``        :class:`~bitvert.pruning.PruneConfig` (method-specific checks)
``kernel``          :func:`bitvert.pruning.prune_groups` (the compiled fast path)
``reference``       :func:`reference_group` (readable, one group; tests check the kernel with it)
``grid``            :func:`bitvert.pruning.gptq.gptq_prune` (the values a group's metadata allows)
``number_format``   :attr:`PruneConfig.number_format` (``neg_min`` policy before pruning)
``redundant_cap``   :attr:`PruneConfig.redundant_cap` (pruning and the codec's free-column count)
``offset``          stored values are ``weights + constant`` (zero-point shifting)
``free_columns``    how :class:`~bitvert.pruning.GroupMetadata` counts free columns
                    (``kernel_free_columns``: the kernel counts them in its own pass)
``layout``          the codec's :class:`~bitvert.codec.layout.TensorLayout`, *by value*
                    (``bitvert.pruning`` never imports ``bitvert.codec``)
``metadata``        whether pruned groups carry per-group metadata (checkpoints, encoding)
``hardware``        the accelerator design that runs the method's variants
                    (:func:`bitvert.hardware.targets.can_run`)
``label``           the name reports print
==================  =========================================================================

The pipeline-level methods ``none`` (INT8 baseline) and ``rtn`` (fewer-bit round-to-nearest) are
**not** registry entries: they do not binary-prune groups (``none`` leaves the INT8 integers,
``rtn`` re-quantizes from the float weights), so they have no kernel, layout or metadata. They
live in :mod:`bitvert.pipeline.presets` (``PIPELINE_METHODS``), which accepts their names next
to every registered method.

Adding a method (docs/architecture.md, "How to add a pruning method"): write its kernel
(:mod:`bitvert.pruning._kernels`) and reference (:mod:`bitvert.pruning.reference`), then
:func:`register_method` a :class:`MethodSpec` at the bottom of this file.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from bitvert.core import analysis
from bitvert.core.bitplanes import NumberFormat
from bitvert.errors import ConfigError
from bitvert.pruning import _kernels, grids, reference

_Config = Any
"""A :class:`bitvert.pruning.PruneConfig` (not imported here: :mod:`bitvert.pruning.config` imports this module)."""

__all__ = [
    "MethodSpec",
    "PruneMethod",
    "REGISTRY",
    "KernelFn",
    "ReferenceFn",
    "register_method",
    "unregister_method",
    "get_method",
    "method_names",
    "methods_for_hardware",
    "reference_group",
    "LAYOUTS",
    "HARDWARE_DESIGNS",
]

KernelFn = Callable[[np.ndarray, np.ndarray, np.ndarray, _Config], tuple[np.ndarray, ...]]
"""``kernel(values[n_groups, width] int16, lengths int32, active bool, config) -> (pruned int16,
redundant uint8, constant int16[, free_columns uint8])``; inactive groups and phantom entries are
returned unchanged. A kernel whose spec sets ``kernel_free_columns`` returns its output's free
columns fourth (counted in the same pass; equal to :meth:`MethodSpec.count_free` of the output,
checked for the built-in kernels by ``tests/pruning/test_prune_kernels.py``); otherwise
:func:`bitvert.pruning.prune_groups` counts them."""

ReferenceFn = Callable[[np.ndarray, _Config], tuple[np.ndarray, int, int]]
"""``reference(group_weights 1-d, config) -> (pruned, redundant, constant)`` for one real group."""

LAYOUTS: tuple[str, ...] = ("bbs_rounded_avg", "bbs_zero_point", "bitwave")
"""Values of :class:`bitvert.codec.layout.TensorLayout` a pruned tensor may encode to: every layout
but ``plain`` (unpruned tensors; a codec test keeps this list equal to the enum)."""

HARDWARE_DESIGNS: tuple[str, ...] = ("bitvert", "bitwave")
"""Accelerator designs that run pruned variants (the dense designs run INT8)."""


class PruneMethod(str, Enum):
    """The built-in binary-pruning methods (the names of their registry entries, registered below).

    The registry is the source of truth: :class:`PruneConfig` accepts any registered method and
    stores a built-in one as this enum, another (registered at run time) as its name.
    """

    ROUNDED_AVG = "rounded_avg"
    """Replace the low columns of each group by the rounded mean of their values (BBS §III-B)."""
    ZERO_POINT = "zero_point"
    """Shift the group by a searched constant so its low columns round to zero (BBS Algorithm 1)."""
    BITFLIP = "bitflip"
    """BitWave's zero-column bit flip in sign-magnitude (the paper's baseline)."""


def _default_cap(bits: int, semantics: str) -> int:
    return min(3, bits - 1)


@dataclass(frozen=True)
class MethodSpec:
    """Everything bitvert knows about one binary-pruning method.

    Attributes:
        name: the ``method`` value of :class:`~bitvert.pruning.PruneConfig` and pipeline presets.
        label: human name for reports (``BBS rounded averaging``).
        kernel: the compiled fast path (:data:`KernelFn`).
        reference: readable per-group implementation (:data:`ReferenceFn`).
        layout: value of the codec's ``TensorLayout`` pruned tensors encode to (:data:`LAYOUTS`).
        hardware: accelerator design that runs the variants (:data:`HARDWARE_DESIGNS`).
        number_format: number format the method works in under ``semantics="paper"``.
        number_format_code: the format under ``semantics="code"`` (``None``: same as ``paper``).
        redundant_cap: ``(weight_bits, semantics) -> int``: most leading columns a group may
            count as redundant (:attr:`PruneConfig.redundant_cap`).
        offset: stored values are ``weights + constant`` (the hardware subtracts ``c * sum(A)``).
        free_columns: ``twos_complement``: free columns of the stored values in two's complement
            (capped redundant + constant low columns); ``zero_magnitude``: all-zero magnitude
            columns (BitWave's mask).
        options: :class:`~bitvert.pruning.PruneConfig` fields the method reads beyond the
            common ones (``semantics``, ``weight_bits``, ``group_size``, ``columns``, ``remainder``).
        validate: extra checks of a config naming this method; raises
            :class:`~bitvert.errors.ConfigError`.
        grid: the integers a pruned group can hold given its metadata (:data:`~bitvert.pruning.grids.GridFn`);
            ``None``: the error-feedback solver (:func:`~bitvert.pruning.gptq.gptq_prune`) cannot run it.
    """

    name: str
    label: str
    kernel: KernelFn
    reference: ReferenceFn
    layout: str
    hardware: str
    number_format: NumberFormat = NumberFormat.TWOS_COMPLEMENT
    number_format_code: NumberFormat | None = None
    redundant_cap: Callable[[int, str], int] = _default_cap
    offset: bool = False
    free_columns: Literal["twos_complement", "zero_magnitude"] = "twos_complement"
    options: tuple[str, ...] = ()
    validate: Callable[[_Config], None] | None = None
    grid: grids.GridFn | None = None
    kernel_free_columns: bool = False

    def __post_init__(self) -> None:
        if not self.name or not self.name.isidentifier() or self.name != self.name.lower():
            raise ConfigError(f"method name {self.name!r} must be a lower-case identifier (e.g. 'my_method')")
        if self.layout not in LAYOUTS:
            raise ConfigError(f"method {self.name!r}: layout must be one of {list(LAYOUTS)}, got {self.layout!r}")
        if self.hardware not in HARDWARE_DESIGNS:
            raise ConfigError(
                f"method {self.name!r}: hardware must be one of {list(HARDWARE_DESIGNS)}, got {self.hardware!r}")
        if self.free_columns not in ("twos_complement", "zero_magnitude"):
            raise ConfigError(f"method {self.name!r}: free_columns must be 'twos_complement' or 'zero_magnitude', "
                              f"got {self.free_columns!r}")

    @property
    def metadata(self) -> bool:
        """Whether pruned groups carry per-group metadata: every pruned layout does (BBS: 2-bit
        redundant count + 6-bit constant; BitWave: the zero-column mask)."""
        return self.layout in LAYOUTS

    def format_for(self, semantics: str) -> NumberFormat:
        """Number format under ``semantics`` (``paper`` / ``code``)."""
        if semantics == "code" and self.number_format_code is not None:
            return self.number_format_code
        return self.number_format

    def stored(self, pruned: np.ndarray, constant: np.ndarray) -> np.ndarray:
        """Stored group values (``int16``): ``pruned + constant`` for offset methods, else ``pruned``."""
        if not self.offset:
            return pruned
        return (pruned + constant[:, None]).astype(np.int16)

    def count_free(self, pruned: np.ndarray, constant: np.ndarray, lengths: np.ndarray, bits: int,
                   cap: int) -> np.ndarray:
        """Free columns per group (``uint8[n_groups]``) by the method's own definition."""
        if self.free_columns == "zero_magnitude":
            return analysis.zero_magnitude_columns(pruned, lengths, bits)
        return analysis.free_columns(pruned, lengths, bits, cap=cap,
                                     offsets=constant if self.offset else None)


_REGISTRY: dict[str, MethodSpec] = {}
REGISTRY = MappingProxyType(_REGISTRY)
"""Read-only view of the registered methods, by name, in registration order."""


def register_method(spec: MethodSpec, replace: bool = False) -> MethodSpec:
    """Register ``spec`` (``replace=True`` overwrites a method of the same name); returns it.

    Raises:
        ConfigError: ``spec`` is not a :class:`MethodSpec`, or its name is taken (and not ``replace``),
            or it names a pipeline-level method (``none``, ``rtn``).
    """
    if not isinstance(spec, MethodSpec):
        raise ConfigError(f"register_method expects a MethodSpec, got {type(spec).__name__}")
    if spec.name in ("none", "rtn", "fp32"):
        raise ConfigError(f"method name {spec.name!r} is reserved for the pipeline; choose another name")
    if spec.name in _REGISTRY and not replace:
        raise ConfigError(f"pruning method {spec.name!r} is already registered; pass replace=True to overwrite")
    _REGISTRY[spec.name] = spec
    return spec


def unregister_method(name: str) -> None:
    """Remove a registered method (e.g. a test's toy method). Raises :class:`ConfigError` if unknown."""
    if name not in _REGISTRY:
        raise ConfigError(f"pruning method {name!r} is not registered; registered: {method_names()}")
    del _REGISTRY[name]


def method_names() -> list[str]:
    """Names of the registered methods, in registration order."""
    return list(_REGISTRY)


def get_method(name: object) -> MethodSpec:
    """The :class:`MethodSpec` of ``name`` (a string or :class:`~bitvert.pruning.PruneMethod`).

    Raises:
        ConfigError: no method of that name is registered (lists the registered ones).
    """
    key = getattr(name, "value", name)
    spec = _REGISTRY.get(key) if isinstance(key, str) else None
    if spec is None:
        raise ConfigError(f"method must be one of {method_names()}, got {name!r}")
    return spec


def methods_for_hardware(design: str) -> list[str]:
    """Registered methods whose variants run on accelerator design ``design``."""
    return [n for n, s in _REGISTRY.items() if s.hardware == design]


def reference_group(w: np.ndarray, config: _Config) -> tuple[np.ndarray, int, int]:
    """The readable reference of ``config``'s method on one group: ``(pruned, redundant, constant)``."""
    return get_method(config.method).reference(np.asarray(w), config)


# ---------------------------------------------------------------------- the built-in methods
@functools.lru_cache(maxsize=32)
def _zero_point_tables(bits: int, n_cols: int, n_levels: int, cmin: int, cmax: int,
                       sign_magnitude: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The zero-point search's tables (read-only): the exact error table and the agreement
    intervals of the residue search (:func:`bitvert.pruning._kernels.agreement_intervals`)."""
    tables = (_kernels.error_table(bits, n_cols, n_levels, cmin, cmax, sign_magnitude),
              *_kernels.agreement_intervals(bits, n_cols, n_levels, cmin, cmax, sign_magnitude))
    for t in tables:
        t.setflags(write=False)
    return tables


def _half_even(config: _Config) -> bool:
    return getattr(config.mean_rounding, "value", config.mean_rounding) == "half_even"


def _rounded_avg_kernel(values: np.ndarray, lengths: np.ndarray, active: np.ndarray,
                        config: _Config) -> tuple[np.ndarray, ...]:
    return _kernels.rounded_avg(values, lengths, active, int(config.weight_bits), int(config.columns),
                                config.redundant_cap, _half_even(config), np.empty(values.shape, np.int16))


def _rounded_avg_reference(w: np.ndarray, config: _Config) -> tuple[np.ndarray, int, int]:
    return reference.rounded_avg_group(w, int(config.weight_bits), int(config.columns), config.redundant_cap,
                                       _half_even(config))


def _rounded_avg_cap(bits: int, semantics: str) -> int:
    # the published rounded averaging scans planes 1..b-5 (3 at 8 bits)
    return max(0, min(3, bits - 5)) if semantics == "code" else min(3, bits - 1)


def _zero_point_kernel(values: np.ndarray, lengths: np.ndarray, active: np.ndarray,
                       config: _Config) -> tuple[np.ndarray, ...]:
    b, n_cols, cap = int(config.weight_bits), int(config.columns), config.redundant_cap
    cmin, cmax = config.constant_range
    sign_magnitude = config.semantics == "code"
    n_levels = b if sign_magnitude else cap + 1
    tables = _zero_point_tables(b, n_cols, n_levels, cmin, cmax, sign_magnitude)
    return _kernels.zero_point(values, lengths, active, *tables, b, n_cols, cap, cmin, cmax, sign_magnitude,
                               np.empty(values.shape, np.int16))


def _zero_point_reference(w: np.ndarray, config: _Config) -> tuple[np.ndarray, int, int]:
    b, n_cols, cb = int(config.weight_bits), int(config.columns), int(config.constant_bits or 0)
    if config.semantics == "code":
        return reference.zero_point_code_group(w, b, n_cols, cb)
    return reference.zero_point_paper_group(w, b, n_cols, cb, config.redundant_cap)


def _zero_point_cap(bits: int, semantics: str) -> int:
    # published zero-point shifting counts leading zero magnitude planes without a cap
    return bits - 1 if semantics == "code" else min(3, bits - 1)


def _bitflip_kernel(values: np.ndarray, lengths: np.ndarray, active: np.ndarray,
                    config: _Config) -> tuple[np.ndarray, ...]:
    return _kernels.bitflip(values, lengths, active, int(config.weight_bits), int(config.columns),
                            np.empty(values.shape, np.int16))


def _bitflip_reference(w: np.ndarray, config: _Config) -> tuple[np.ndarray, int, int]:
    return reference.bitflip_group(w, int(config.weight_bits), int(config.columns))


register_method(MethodSpec(
    name=PruneMethod.ROUNDED_AVG.value, label="BBS rounded averaging",
    kernel=_rounded_avg_kernel, reference=_rounded_avg_reference, layout="bbs_rounded_avg", hardware="bitvert",
    redundant_cap=_rounded_avg_cap, options=("mean_rounding",), grid=grids.rounded_avg_grid,
    kernel_free_columns=True,
))
register_method(MethodSpec(
    name=PruneMethod.ZERO_POINT.value, label="BBS zero-point shifting",
    kernel=_zero_point_kernel, reference=_zero_point_reference, layout="bbs_zero_point", hardware="bitvert",
    number_format_code=NumberFormat.SIGN_MAGNITUDE, redundant_cap=_zero_point_cap, offset=True,
    options=("constant_bits", "neg_min"), grid=grids.zero_point_grid, kernel_free_columns=True,
))
register_method(MethodSpec(
    name=PruneMethod.BITFLIP.value, label="BitWave bit flip",
    kernel=_bitflip_kernel, reference=_bitflip_reference, layout="bitwave", hardware="bitwave",
    number_format=NumberFormat.SIGN_MAGNITUDE, free_columns="zero_magnitude", options=("neg_min",),
    grid=grids.bitflip_grid, kernel_free_columns=True,
))

"""Configuration of single-tensor binary pruning."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

from bitvert.core.bitplanes import NegMinPolicy, NumberFormat
from bitvert.core.grouping import RemainderPolicy
from bitvert.errors import ConfigError
from bitvert.pruning.methods import MethodSpec, PruneMethod, get_method

__all__ = ["PruneMethod", "Semantics", "MeanRounding", "PruneConfig", "MAX_GROUP_SIZE"]

MAX_GROUP_SIZE = 4096
"""Largest supported group (keeps the zero-point search's 32-bit error sums exact)."""


_BUILTIN = frozenset(m.value for m in PruneMethod)


class Semantics(str, Enum):
    """Which definition of a method to follow where the paper and the published code differ."""

    PAPER = "paper"
    CODE = "code"


class MeanRounding(str, Enum):
    """Tie rule for the rounded mean of rounded averaging."""

    HALF_EVEN = "half_even"
    """``torch.round`` semantics, as in the published code (default)."""
    HALF_UP = "half_up"


def _enum(cls: type[Enum], value: Any, name: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        raise ConfigError(f"{name} must be one of {[m.value for m in cls]}, got {value!r}") from None


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


@dataclass(frozen=True)
class PruneConfig:
    """How to binary-prune one weight tensor.

    Attributes:
        method: a registered method (:func:`bitvert.pruning.methods.method_names`): ``rounded_avg``,
            ``zero_point``, ``bitflip`` (stored as :class:`PruneMethod`) or one registered at run time
            (stored as its name).
        semantics: ``paper`` (two's complement, 6-bit constant) or ``code`` (the
            published functions, bit-exact). Only zero-point shifting differs
            materially; see docs/pruning.md.
        weight_bits: ``b``, 2..8.
        group_size: ``g``, weights sharing one metadata entry (paper: 32).
        columns: ``N``, the number of columns every pruned group must free, ``1..b-1``.
        constant_bits: width of the zero-point constant; ``None`` = 6 (paper) or 5 (code).
            Candidates are ``[-2**(cb-1), 2**(cb-1) - 1]``.
        mean_rounding: tie rule of the rounded mean (rounded averaging).
        remainder: policy for rows not divisible by ``group_size``.
        neg_min: what sign-magnitude methods (code-semantics zero-point, bit flip) do
            with ``-2**(b-1)``: ``reject`` (default) or ``clamp`` (counted in the result).
    """

    method: PruneMethod | str
    semantics: Semantics | str = Semantics.PAPER
    weight_bits: int = 8
    group_size: int = 32
    columns: int = 4
    constant_bits: int | None = None
    mean_rounding: MeanRounding | str = MeanRounding.HALF_EVEN
    remainder: RemainderPolicy | str = RemainderPolicy.SHORT
    neg_min: NegMinPolicy | str = NegMinPolicy.REJECT

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        spec = get_method(self.method)
        set_(self, "method", PruneMethod(spec.name) if spec.name in _BUILTIN else spec.name)
        set_(self, "semantics", _enum(Semantics, self.semantics, "semantics"))
        set_(self, "mean_rounding", _enum(MeanRounding, self.mean_rounding, "mean_rounding"))
        set_(self, "remainder", _enum(RemainderPolicy, self.remainder, "remainder"))
        set_(self, "neg_min", _enum(NegMinPolicy, self.neg_min, "neg_min"))
        bits = _int(self.weight_bits, "weight_bits", 2, 8)
        _int(self.group_size, "group_size", 2, MAX_GROUP_SIZE)
        _int(self.columns, "columns", 1, bits - 1)
        if self.constant_bits is None:
            default = 6 if self.semantics is Semantics.PAPER else 5
            set_(self, "constant_bits", min(default, bits))
        else:
            _int(self.constant_bits, "constant_bits", 1, bits)
        if spec.validate is not None:
            spec.validate(self)

    @property
    def spec(self) -> MethodSpec:
        """The registry entry of :attr:`method` (:class:`~bitvert.pruning.methods.MethodSpec`)."""
        return get_method(self.method)

    @property
    def method_name(self) -> str:
        """:attr:`method` as a plain string."""
        return self.spec.name

    @property
    def number_format(self) -> NumberFormat:
        """Number format the method works in (under this config's semantics)."""
        return self.spec.format_for(self.semantics)

    @property
    def redundant_cap(self) -> int:
        """Most leading sign-extension columns a group may count.

        3 (the 2-bit metadata field) for rounded averaging and paper zero-point
        shifting; the published rounded averaging scans planes ``1..b-5``
        (3 at 8 bits); published zero-point shifting counts leading zero
        magnitude planes without a cap.
        """
        return int(self.spec.redundant_cap(int(self.weight_bits), self.semantics))

    @property
    def constant_range(self) -> tuple[int, int]:
        """Inclusive range of zero-point constants searched."""
        cb = int(self.constant_bits or 0)
        return -(1 << (cb - 1)), (1 << (cb - 1)) - 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (enums as strings)."""
        d = asdict(self)
        return {k: (v.value if isinstance(v, Enum) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PruneConfig":
        """Inverse of :meth:`to_dict`; unknown keys are rejected."""
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown PruneConfig key(s) {sorted(unknown)}; known keys: {sorted(known)}")
        return cls(**data)

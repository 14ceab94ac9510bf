"""Common interface of the accelerator cycle models."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from bitvert.errors import ConfigError, UnsupportedLayerError
from bitvert.hardware.tiling import Mapping, map_layer
from bitvert.hardware.workload import LayerWorkload, Workload

__all__ = ["ComputeResult", "AcceleratorModel", "POPCOUNT8", "register", "model_for", "REGISTRY"]

POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
"""Number of one bits of every byte value."""


@dataclass
class ComputeResult:
    """What a design's cycle model reports for one layer.

    Attributes:
        compute_cycles: cycles of the PE array (no memory stalls).
        mapping: tiling of the layer.
        weight_bits: stored footprint of the layer's weights (one copy), metadata included.
        input_bits_per_element: bits per input activation element as stored/moved.
        output_bits_per_element: bits per output activation element as stored/moved.
        weight_read_bits: bits read from the weight SRAM.
        input_read_bits: bits read from the activation SRAM.
        effectual_macs: MACs actually performed (SparTen energy), else the layer's MACs.
        extra: design-specific figures (``cycles_fluid``, ``sensitive_channels``...).
    """

    compute_cycles: float
    mapping: Mapping
    weight_bits: float
    input_bits_per_element: float
    output_bits_per_element: float
    weight_read_bits: float
    input_read_bits: float
    effectual_macs: float
    extra: dict[str, Any] = field(default_factory=dict)


class AcceleratorModel(ABC):
    """Base class: one instance per accelerator config; ``prepare`` once per workload, then ``layer``."""

    design: ClassVar[str] = ""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.workload_name = ""

    def prepare(self, workload: Workload) -> None:
        """Whole-workload preprocessing (global sensitive channels, pruning); default: none."""
        self.workload_name = workload.name

    def check_mappable(self, layer: LayerWorkload) -> None:
        """Raise if one tile's working set does not fit the buffers."""
        c = self.config
        tile_weight_bits = c.array_rows * c.lanes_per_pe * 8
        tile_input_bits = c.array_cols * c.lanes_per_pe * max(float(c.activation_bits), 8.0)
        if tile_weight_bits > c.weight_sram_kib * 8192:
            raise ConfigError(
                f"accelerator {c.name!r}: key 'weight_sram_kib' = {c.weight_sram_kib} cannot hold one tile of "
                f"layer {layer.name!r} ({tile_weight_bits} bits); enlarge it or shrink array_rows/lanes_per_pe"
            )
        if tile_input_bits > c.input_sram_kib * 8192:
            raise ConfigError(
                f"accelerator {c.name!r}: key 'input_sram_kib' = {c.input_sram_kib} cannot hold one tile of "
                f"layer {layer.name!r} ({tile_input_bits:.0f} bits); enlarge it or shrink array_cols/lanes_per_pe"
            )

    @abstractmethod
    def layer(self, layer: LayerWorkload) -> ComputeResult:
        """Cycle model of one layer."""

    # helpers ------------------------------------------------------------------------------
    def mapping(self, layer: LayerWorkload) -> Mapping:
        c = self.config
        return map_layer(layer, c.array_rows, c.array_cols, c.lanes_per_pe)

    def dense_result(
        self, layer: LayerWorkload, cycles_per_tile: float, weight_bits_per_weight: float, act_bits: float,
        extra: dict[str, Any] | None = None,
    ) -> ComputeResult:
        """Result of a data-independent design: ``tiles * cycles_per_tile``."""
        m = self.mapping(layer)
        return self._result(layer, m, m.tiles * cycles_per_tile, layer.n_weights * weight_bits_per_weight,
                            act_bits, extra)

    def data_result(
        self, layer: LayerWorkload, tile_cost: np.ndarray, weight_bits: float, act_bits: float = 8.0,
        extra: dict[str, Any] | None = None,
    ) -> ComputeResult:
        """Result of a data-dependent design from per-``(row tile, slice)`` cycles."""
        m = self.mapping(layer)
        if tile_cost.shape != (m.row_tiles, m.n_slices):
            raise UnsupportedLayerError(  # pragma: no cover - internal consistency
                f"layer {layer.name!r}: cost shape {tile_cost.shape} != {(m.row_tiles, m.n_slices)}"
            )
        cycles = float(tile_cost.sum(dtype=np.float64)) * m.spatial_tiles
        return self._result(layer, m, cycles, weight_bits, act_bits, extra)

    def _result(
        self, layer: LayerWorkload, m: Mapping, cycles: float, weight_bits: float, act_bits: float,
        extra: dict[str, Any] | None,
    ) -> ComputeResult:
        """The :class:`ComputeResult` both helpers build: weights read once per spatial tile."""
        return ComputeResult(
            compute_cycles=cycles,
            mapping=m,
            weight_bits=weight_bits,
            input_bits_per_element=act_bits,
            output_bits_per_element=act_bits,
            weight_read_bits=weight_bits * m.spatial_tiles,
            input_read_bits=m.tiles * self.config.array_cols * self.config.lanes_per_pe * act_bits,
            effectual_macs=float(layer.macs),
            extra=dict(extra or {}),
        )


REGISTRY: dict[str, type[AcceleratorModel]] = {}


def register(cls: type[AcceleratorModel]) -> type[AcceleratorModel]:
    """Class decorator: register a model under its ``design`` name."""
    REGISTRY[cls.design] = cls
    return cls


def model_for(config: Any) -> AcceleratorModel:
    """Instantiate the registered model of ``config.design``."""
    try:
        cls = REGISTRY[config.design]
    except KeyError:
        raise ConfigError(f"key 'design': no model registered for {config.design!r}") from None
    return cls(config)

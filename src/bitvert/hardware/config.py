"""Validated accelerator configurations and their YAML presets.

Every accelerator is a pydantic v2 model with ``extra="forbid"`` and units in
field names. Presets live in ``bitvert/data/hardware/accelerators/*.yaml``
(loaded through :mod:`importlib.resources`), each with ``version: 1``.
Loading rejects duplicate YAML keys, unknown keys and wrong values with a
:class:`~bitvert.errors.ConfigError` naming the key path.

Array sizes follow the spec's iso-lane table (BBS.md §10.4). A config describes hardware only
(array, lanes, the datapath's group size, metadata bits, floors, buffers, energy key); which
variant of the model it runs is named by a simulation target (:mod:`bitvert.hardware.targets`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from bitvert.errors import ConfigError

__all__ = [
    "AcceleratorConfig",
    "AntConfig",
    "BitParallelConfig",
    "BitVertConfig",
    "BitWaveConfig",
    "BitletConfig",
    "PragmaticConfig",
    "SparTenConfig",
    "StripesConfig",
    "available_presets",
    "config_yaml",
    "load_accelerator",
    "parse_accelerator",
]

CONFIG_VERSION = 1


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = Field(1, description="config schema version")
    name: str = Field(..., min_length=1, description="accelerator name used in reports")
    array_rows: int = Field(..., gt=0, description="PE rows (output channels in parallel)")
    array_cols: int = Field(..., gt=0, description="PE columns (pixels/tokens in parallel)")
    lanes_per_pe: int = Field(..., gt=0, description="weights reduced per PE pass (g)")
    weight_sram_kib: float = Field(256.0, gt=0, description="weight buffer size")
    input_sram_kib: float = Field(256.0, gt=0, description="activation buffer size (holds outputs too)")
    dram_bits_per_cycle: float = Field(128.0, gt=0, description="DRAM bandwidth")
    freq_mhz: float = Field(800.0, gt=0)
    activation_bits: float = Field(8.0, gt=0, le=16)
    energy_key: str = Field(..., min_length=1, description="entry of the energy/area table")

    @property
    def n_pes(self) -> int:
        return self.array_rows * self.array_cols


class StripesConfig(_Base):
    """Dense bit-serial reference: cycles per tile = weight precision."""

    design: Literal["stripes"] = "stripes"
    weight_precision_bits: int = Field(8, ge=1, le=16)


class BitParallelConfig(_Base):
    """Bit-parallel INT8 MAC array: one tile per cycle."""

    design: Literal["bit-parallel"] = "bit-parallel"


class BitVertConfig(_Base):
    """BitVert datapath: cycles from the stored columns of a BBS-encoded variant (BBS.md §9-§10).

    The pruning (method, N, beta) is the variant's, not the hardware's: a simulation target
    pairs this config with a pipeline preset (:mod:`bitvert.hardware.targets`).
    """

    design: Literal["bitvert"] = "bitvert"
    group_size: int = Field(32, gt=1, description="weights per metadata group the datapath reads")
    metadata_bits_per_group: int = Field(8, ge=0)
    min_cycles_per_tile: int = Field(
        2, ge=1, description="floor: the 6-bit BBS constant is multiplied 3 bits per cycle"
    )


class PragmaticConfig(_Base):
    """Pragmatic: lock-step essential-bit skipping (magnitude one-bits)."""

    design: Literal["pragmatic"] = "pragmatic"
    min_cycles_per_tile: int = Field(1, ge=1, description="floor for an all-zero tile")


class BitletConfig(_Base):
    """Bitlet: one lane per bit significance; the busiest significance sets the time."""

    design: Literal["bitlet"] = "bitlet"
    min_cycles_per_tile: int = Field(1, ge=1, description="floor for an all-zero tile")


class BitWaveConfig(_Base):
    """BitWave datapath: zero-column skipping on a bit-flipped (``bitwave-*``) variant's weights."""

    design: Literal["bitwave"] = "bitwave"
    group_size: int = Field(32, gt=1, description="bit-flip group size the datapath reads")
    metadata_bits_per_group: int = Field(8, ge=0, description="column bitmask per group")
    min_cycles_per_tile: int = Field(1, ge=1, description="floor for an all-zero tile")


class AntConfig(_Base):
    """ANT: Stripes-style PE at a fractional adaptive-type precision for weights and activations."""

    design: Literal["ant"] = "ant"
    precision_bits: float = Field(6.1, gt=0, le=8, description="b_ant when the workload is not listed")
    precision_bits_by_workload: dict[str, float] = Field(default_factory=dict)

    def precision_for(self, workload: str) -> float:
        return float(self.precision_bits_by_workload.get(workload, self.precision_bits))


class SparTenConfig(_Base):
    """SparTen: bit-parallel value-sparse MACs over 128-long chunks."""

    design: Literal["sparten"] = "sparten"
    chunk_size: int = Field(128, gt=0)
    min_cycles_per_chunk: float = Field(16.0, ge=0, description="buffer-load floor per chunk")
    min_cycles_per_chunk_depthwise: float = Field(8.0, ge=0)
    mask_bits_per_element: int = Field(1, ge=0)


AcceleratorConfig = Annotated[
    Union[
        StripesConfig,
        BitParallelConfig,
        BitVertConfig,
        PragmaticConfig,
        BitletConfig,
        BitWaveConfig,
        AntConfig,
        SparTenConfig,
    ],
    Field(discriminator="design"),
]

_ADAPTER: TypeAdapter[Any] = TypeAdapter(AcceleratorConfig)

class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML text, rejecting duplicate keys; errors name ``source``."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None


_VARIANT_KEYS = frozenset({
    "method", "pruned_columns", "sensitive_fraction", "sensitive_round_multiple", "fluid_low_precision_bits",
    "weight_precision_bits_by_workload",
})
"""Keys of former BitVert / BitWave configs that belong to the pipeline preset now."""


def _format_validation(exc: ValidationError, source: str, data: Any) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err["loc"]]
        if loc and isinstance(data, dict) and loc[0] == data.get("design"):
            loc = loc[1:]
        key = ".".join(loc) or "<root>"
        msg = err["msg"]
        moved = loc and (loc[-1] in _VARIANT_KEYS or (
            loc[-1] == "weight_precision_bits" and isinstance(data, dict) and data.get("design") == "bitwave"))
        if err["type"] == "extra_forbidden" and moved:
            msg = ("describes the pruned variant, not the hardware; remove it and name the pipeline preset with "
                   "the accelerator instead, e.g. 'bitvert:moderate', 'my_bitvert.yaml:conservative' or "
                   "'bitwave:bitwave-w6'")
        elif err["type"] == "extra_forbidden":
            msg = "unknown key (check spelling and units, e.g. weight_sram_kib)"
        parts.append(f"key {key!r}: {msg} (got {err.get('input')!r})")
    return f"{source}: invalid accelerator config: " + "; ".join(parts)


def parse_accelerator(data: dict[str, Any], source: str = "<dict>") -> Any:
    """Validate a config mapping and return the matching config model."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: an accelerator config must be a mapping, got {type(data).__name__}")
    if "design" not in data:
        raise ConfigError(
            f"{source}: key 'design' is missing; choose one of "
            "stripes, bit-parallel, bitvert, pragmatic, bitlet, bitwave, ant, sparten"
        )
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, source, data)) from None


def _preset_dir() -> Any:
    return resources.files("bitvert") / "data" / "hardware" / "accelerators"


def available_presets() -> list[str]:
    """Names of the shipped accelerator presets."""
    return sorted(p.name[: -len(".yaml")] for p in _preset_dir().iterdir() if p.name.endswith(".yaml"))


def load_accelerator(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> Any:
    """Load a shipped preset by name or a YAML file by path, with optional key overrides."""
    path = Path(name_or_path)
    if str(name_or_path).endswith((".yaml", ".yml")):
        if not path.is_file():
            raise ConfigError(f"accelerator config file {str(path)!r} does not exist")
        text, source = path.read_text(encoding="utf-8"), str(path)
    else:
        entry = _preset_dir() / f"{name_or_path}.yaml"
        if not entry.is_file():
            raise ConfigError(
                f"unknown accelerator {str(name_or_path)!r}; choose one of {available_presets()} or pass a .yaml path"
            )
        text, source = entry.read_text(encoding="utf-8"), f"preset {name_or_path}"
    data = load_yaml(text, source)
    if overrides:
        data = {**data, **overrides}
    return parse_accelerator(data, source)


def config_yaml(config: Any) -> str:
    """A complete, commented YAML file of an accelerator config: every field with its value (defaults
    included) and its description as a comment above it.

    :func:`load_accelerator` reads the text back into an equal config, so it is the template to copy
    and edit for a custom accelerator (``bitvert simulate --dump-config bitvert > my_bitvert.yaml``).
    """
    fields = type(config).model_fields
    doc = (type(config).__doc__ or "").strip().splitlines()
    example = {"bitvert": "moderate", "bitwave": "bitwave-w5"}.get(str(config.design))
    lines = [f"# {doc[0]}" if doc else f"# {config.design} accelerator",
             f"# Hardware only: name the pruned variant it runs with the file, e.g. '{config.name}.yaml:{example}'."
             if example else "# Hardware only: a dense design, it runs the model's INT8 variant."]
    dump = config.model_dump()
    order = ["version", "design", "name"] + [k for k in dump if k not in ("version", "design", "name")]
    for key in order:
        description = fields[key].description if key in fields else None
        if description:
            lines.append(f"# {description}")
        lines.append(yaml.safe_dump({key: dump[key]}, default_flow_style=True, sort_keys=False).strip()[1:-1])
    return "\n".join(lines) + "\n"

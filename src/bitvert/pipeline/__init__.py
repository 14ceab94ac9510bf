"""Model-level pipeline: INT8 post-training quantization, hardware-aware global binary
pruning (the paper's Algorithm 2), presets and the pruned-checkpoint format.

Entry points: :func:`prune_model_` (in place, returns a :class:`ModelPruneReport`),
:func:`prune_int_layers` (the same Algorithm 2 on integer layers without a model),
:func:`quantize_model_` (the INT8 baseline), :func:`get_preset`, :func:`save_pruned` /
:func:`load_pruned` / :func:`apply_checkpoint_`.
"""

from bitvert.pipeline.checkpoint import (
    CheckpointLayer,
    PrunedCheckpoint,
    apply_checkpoint_,
    load_pruned,
    save_pruned,
    to_checkpoint,
)
from bitvert.pipeline.global_prune import (
    IntLayer,
    LayerPruneRecord,
    ModelPruneReport,
    channel_scores,
    prune_int_layers,
    prune_model_,
    select_sensitive,
)
from bitvert.pipeline.presets import BASELINES, PRESETS, PipelinePreset, baseline_of, get_preset, list_presets
from bitvert.pipeline.quantize import (
    ActivationQuantizer,
    ActivationRange,
    LayerRole,
    QuantConfig,
    QuantLayer,
    assign_roles,
    dequantize_weight,
    quantize_model_,
    quantize_weight,
    run_batches,
    select_layers,
    weight_int_range,
)

__all__ = [
    "QuantConfig",
    "LayerRole",
    "QuantLayer",
    "ActivationQuantizer",
    "ActivationRange",
    "quantize_weight",
    "dequantize_weight",
    "weight_int_range",
    "assign_roles",
    "select_layers",
    "run_batches",
    "quantize_model_",
    "PipelinePreset",
    "PRESETS",
    "BASELINES",
    "get_preset",
    "list_presets",
    "baseline_of",
    "select_sensitive",
    "channel_scores",
    "LayerPruneRecord",
    "ModelPruneReport",
    "IntLayer",
    "prune_model_",
    "prune_int_layers",
    "CheckpointLayer",
    "PrunedCheckpoint",
    "to_checkpoint",
    "save_pruned",
    "load_pruned",
    "apply_checkpoint_",
]

"""The example input a model is simulated on: real text of an exact length, or real images at native size.

The accelerator simulator takes a model's layer geometry from one forward pass
(:func:`bitvert.hardware.import_torch.import_workload`), so the input decides how many tokens or
pixels each layer processes. :func:`example_input` builds that input honestly:

* text models: real calibration text (the loader's ``extra["example_texts"]``, else the offline
  movie sentences), tokenized sentence by sentence and concatenated, cut to exactly ``seq_len_tokens``
  tokens per sequence,
  special tokens included; consecutive sequences continue the text. Only when the text runs out
  are the last positions padded (``padded_tokens`` > 0, attention mask 0 there);
* vision models: real images (the loader's ``extra["example_images"]``, else its calibration
  batches) preprocessed at the model's native resolution (``extra["native_resolution_px"]``, else
  the crop size of its preprocessing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bitvert.errors import ConfigError, InputError
from bitvert.models.types import Batch, LoadedModel

__all__ = ["ExampleInput", "example_input", "text_example", "DEFAULT_SEQ_LEN_TOKENS"]

#: Tokens per sequence of a text model's simulated input when none is asked for.
DEFAULT_SEQ_LEN_TOKENS = 128


@dataclass(frozen=True)
class ExampleInput:
    """One model input and what it holds.

    Attributes:
        batch: the input (``(N, C, H, W)`` tensor or dict of token tensors).
        batch_size: sequences / images in the batch.
        seq_len_tokens: tokens per sequence (text models; ``None`` for vision).
        resolution_px: ``(height, width)`` of the images (vision models; ``None`` for text).
        padded_tokens: pad tokens in the whole batch (0 when the text sufficed).
        source: where the data came from, in words.
    """

    batch: Batch
    batch_size: int
    seq_len_tokens: int | None
    resolution_px: tuple[int, int] | None
    padded_tokens: int
    source: str

    def describe(self) -> dict[str, Any]:
        """JSON-ready fields (everything but the tensors)."""
        return {
            "batch_size": self.batch_size,
            "seq_len_tokens": self.seq_len_tokens,
            "resolution_px": list(self.resolution_px) if self.resolution_px is not None else None,
            "padded_tokens": self.padded_tokens,
            "source": self.source,
        }

    def sentence(self) -> str:
        """One line saying what was simulated (e.g. ``batch 1 x 128 tokens of real text``)."""
        if self.seq_len_tokens is not None:
            pad = f", {self.padded_tokens} of them padding (the text ran out)" if self.padded_tokens else ""
            return f"batch {self.batch_size} x {self.seq_len_tokens} tokens ({self.source}{pad})"
        h, w = self.resolution_px or (0, 0)
        return f"batch {self.batch_size} x {h}x{w} images ({self.source})"


def _check_positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special token ids a tokenizer puts before and after one sequence (e.g. [CLS] / [SEP])."""
    probe = "hello"
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    for start in range(len(full) - len(plain) + 1):
        if full[start:start + len(plain)] == plain:
            return full[:start], full[start + len(plain):]
    return [], []


def text_example(tokenizer: Any, texts: Sequence[str], batch_size: int, seq_len_tokens: int, source: str,
                 max_tokens: int | None = None) -> ExampleInput:
    """``batch_size`` sequences of exactly ``seq_len_tokens`` tokens cut from the concatenated ``texts``.

    Raises:
        InputError: ``seq_len_tokens`` is below the tokenizer's special tokens + 1 or above
            ``max_tokens``, or ``texts`` is empty.
    """
    batch_size = _check_positive(batch_size, "batch size")
    seq_len_tokens = _check_positive(seq_len_tokens, "seq_len_tokens")
    if max_tokens is not None and seq_len_tokens > max_tokens:
        raise InputError(f"seq_len_tokens={seq_len_tokens} exceeds the model's {max_tokens} positions; "
                         f"choose --seq-len <= {max_tokens}")
    if isinstance(texts, str) or not texts:
        raise InputError("texts must be a non-empty sequence of strings")
    prefix, suffix = _special_tokens(tokenizer)
    body = seq_len_tokens - len(prefix) - len(suffix)
    if body < 1:
        n_special = len(prefix) + len(suffix)
        raise InputError(f"seq_len_tokens={seq_len_tokens} leaves no room for text after the {n_special} special "
                         f"tokens; choose --seq-len >= {n_special + 1}")
    need = batch_size * body
    ids: list[int] = []
    for start in range(0, len(texts), 64):  # tokenize sentence by sentence until the batch is full
        for row in tokenizer(list(texts[start:start + 64]), add_special_tokens=False)["input_ids"]:
            ids.extend(row)
        if len(ids) >= need:
            break
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    available = min(len(ids), need)
    arr = np.full((batch_size, body), pad_id, dtype=np.int64)
    mask = np.zeros((batch_size, seq_len_tokens), dtype=np.int64)
    flat = arr.reshape(-1)
    flat[:available] = ids[:available]
    real = np.arange(need).reshape(batch_size, body) < available
    full_ids = np.concatenate([np.tile(np.asarray(prefix, np.int64), (batch_size, 1)), arr,
                               np.tile(np.asarray(suffix, np.int64), (batch_size, 1))], axis=1)
    mask[:, len(prefix):len(prefix) + body] = real
    rows_with_text = real.any(axis=1)
    mask[rows_with_text, :len(prefix)] = 1
    mask[rows_with_text, len(prefix) + body:] = 1
    batch: dict[str, torch.Tensor] = {"input_ids": torch.from_numpy(full_ids),
                                      "attention_mask": torch.from_numpy(mask)}
    if "token_type_ids" in getattr(tokenizer, "model_input_names", ()):
        batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
    return ExampleInput(batch=batch, batch_size=batch_size, seq_len_tokens=seq_len_tokens, resolution_px=None,
                        padded_tokens=int(need - available), source=source)


def _max_positions(loaded: LoadedModel) -> int | None:
    """The most tokens the model accepts (tokenizer limit and position embeddings, when known)."""
    limits = []
    tokenizer = loaded.extra.get("tokenizer")
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
        limits.append(tok_max)
    for module in (loaded.model, getattr(loaded.model, "encoder", None)):
        positions = getattr(getattr(module, "config", None), "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 0:
            limits.append(positions)
    return min(limits) if limits else None


def example_input(loaded: LoadedModel, batch_size: int = 1, seq_len_tokens: int | None = None) -> ExampleInput:
    """The input ``loaded`` is simulated on (see the module doc).

    Args:
        loaded: a model of :func:`bitvert.models.load_model`.
        batch_size: sequences or images (>= 1).
        seq_len_tokens: tokens per sequence of a text model (default :data:`DEFAULT_SEQ_LEN_TOKENS`);
            must be ``None`` for vision models, which run at their native resolution.

    Raises:
        InputError: a bad batch size / sequence length, or ``seq_len_tokens`` given for a vision model.
        ConfigError: a text model without a tokenizer.
    """
    batch_size = _check_positive(batch_size, "batch size")
    if loaded.family == "vision":
        if seq_len_tokens is not None:
            raise InputError(f"{loaded.name} is a vision model: --seq-len applies to text models only; vision "
                             "models run at their native resolution")
        return _image_example(loaded, batch_size)
    tokenizer = loaded.extra.get("tokenizer")
    if tokenizer is None:
        raise ConfigError(f"text model {loaded.name!r} has no tokenizer in extra['tokenizer']; cannot build its input")
    seq = DEFAULT_SEQ_LEN_TOKENS if seq_len_tokens is None else _check_positive(seq_len_tokens, "seq_len_tokens")
    texts_fn = loaded.extra.get("example_texts")
    if texts_fn is not None:
        texts, source = texts_fn()
    else:
        from bitvert.models import data as offline_data

        texts, _ = offline_data.movie_sentences()
        source = "movie-review sentences (offline calibration text)"
    max_tokens = _max_positions(loaded)
    if seq_len_tokens is None and max_tokens is not None:
        seq = min(seq, max_tokens)
    return text_example(tokenizer, list(texts), batch_size, seq, source, max_tokens)


def _image_example(loaded: LoadedModel, batch_size: int) -> ExampleInput:
    images_fn = loaded.extra.get("example_images")
    if images_fn is not None:
        from bitvert.models.preprocess import preprocess_images

        images, source = images_fn()
        if batch_size > len(images):
            raise InputError(f"batch size {batch_size} exceeds the {len(images)} example images of {loaded.name}; "
                             "choose a smaller --batch")
        native = loaded.extra.get("native_resolution_px")
        config = loaded.extra["preprocess"]
        if native is not None:
            config = config.model_copy(update={"resize_px": int(native), "crop_px": int(native)})
        x = preprocess_images(images[:batch_size], config)
    else:
        x = next(iter(loaded.calibration_batches(batch_size)))
        source = "the model's calibration images"
        if not isinstance(x, torch.Tensor) or x.shape[0] != batch_size:
            raise ConfigError(f"{loaded.name}: its calibration batches do not give {batch_size} images at once; "
                              "choose a smaller --batch")
    return ExampleInput(batch=x, batch_size=batch_size, seq_len_tokens=None,
                        resolution_px=(int(x.shape[-2]), int(x.shape[-1])), padded_tokens=0, source=source)

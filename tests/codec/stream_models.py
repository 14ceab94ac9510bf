"""A seeded tiny Llama written as a sharded HuggingFace folder, for the streaming tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from safetensors.torch import save_file


def llama_config(tied: bool) -> "transformers.LlamaConfig":
    return transformers.LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                                    num_key_value_heads=2, vocab_size=160, tie_word_embeddings=tied,
                                    max_position_embeddings=64)


def write_hf(folder: Path, tied: bool = False, dtype: torch.dtype = torch.bfloat16, n_shards: int = 3,
             seed: int = 0) -> Path:
    """A seeded tiny Llama saved as ``n_shards`` safetensors shards + index, the HuggingFace way."""
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(llama_config(tied)).to(dtype)
    folder.mkdir(parents=True)
    model.config.save_pretrained(folder)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if tied:
        state.pop("lm_head.weight")
    keys = list(state)
    parts = np.array_split(np.arange(len(keys)), n_shards)
    weight_map = {}
    for i, idx in enumerate(parts):
        fname = f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors"
        save_file({keys[j]: state[keys[j]] for j in idx}, str(folder / fname), metadata={"format": "pt"})
        weight_map.update({keys[j]: fname for j in idx})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder



def interrupt_save(monkeypatch, n: int) -> Callable[..., Any]:
    """Make the ``n``-th shard write of ``bitvert.codec.stream`` raise ``KeyboardInterrupt``; returns the real
    writer (``monkeypatch.setattr(stream_mod, "save_encoded", real)`` restores it)."""
    from bitvert.codec import stream as stream_mod

    real = stream_mod.save_encoded
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(stream_mod, "save_encoded", flaky)
    return real

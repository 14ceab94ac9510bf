"""The bad-input matrix of issue 14: every command, every kind of bad input.

Each case runs the CLI's ``main()`` in-process and asserts: exit status 2, exactly one message line
(``error: ...``) that names the offending input, no traceback, and no file or folder created (the
case runs in an empty working folder whose listing must not change; outputs point into it). A few
cases at the end run ``python -m bitvert`` for the real exit path.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from cli_helpers import run_bitvert
from click.testing import CliRunner

from bitvert.cli import main

_LOG_PREFIXES = ("DEBUG ", "INFO ", "WARNING ")


@dataclass(frozen=True)
class Case:
    """``args`` may use ``{in}`` (the shared input files) and ``{ws}`` (the case's empty working folder)."""

    id: str
    args: tuple[str, ...]
    names: str
    setup: Callable[[Path, Path], None] | None = None
    env: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------- shared inputs


def _rewrite_safetensors(src: Path, dst: Path, tensors: Callable[[dict], dict] | None = None,
                         meta: Callable[[dict], dict] | None = None) -> None:
    """Rewrite a safetensors file with changed tensors / metadata, checksums left as they were."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as f:
        m = dict(f.metadata() or {})
        t = {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors(t) if tensors else t, str(dst), metadata=meta(m) if meta else m)


def _flip_weights(t: dict) -> dict:
    key = next(k for k, v in t.items() if k.endswith(".q") and v.numel() >= 4000)
    q = t[key].clone()
    q.view(-1)[:4000] ^= 1  # 4,000 weights flipped, as in the issue
    return {**t, key: q}


def _flip_bbs(t: dict) -> dict:
    key = next(k for k in t if k.startswith("bbs."))
    v = t[key].clone()
    v.view(-1)[:16] ^= 1
    return {**t, key: v}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real pruned MNIST-CNN checkpoint, its encoded file and damaged copies of both, YAML files."""
    import copy

    from bitvert.codec import encode_checkpoint_file
    from bitvert.models import load_model
    from bitvert.pipeline import prune_model_, save_pruned

    d = tmp_path_factory.mktemp("bad-inputs")
    loaded = load_model("mnist-cnn")
    model = copy.deepcopy(loaded.model).eval()
    torch.manual_seed(0)
    report = prune_model_(model, "moderate", calibration=loaded.calibration_batches(8))
    ckpt = save_pruned(d / "pruned.safetensors", model, report,
                       {"name": loaded.name, "family": loaded.family, "default_task": loaded.default_task})
    encode_checkpoint_file(ckpt, d / "model.bbs.safetensors")
    raw, bbs = ckpt.read_bytes(), (d / "model.bbs.safetensors").read_bytes()
    _rewrite_safetensors(ckpt, d / "flipped.safetensors", tensors=_flip_weights)
    _rewrite_safetensors(ckpt, d / "edited.safetensors",
                         meta=lambda m: {**m, "bitvert": m["bitvert"].replace('"mnist-cnn"', '"other"')})
    _rewrite_safetensors(d / "model.bbs.safetensors", d / "flipped.bbs.safetensors", tensors=_flip_bbs)
    (d / "truncated.safetensors").write_bytes(raw[: len(raw) // 2])
    (d / "truncated.bbs.safetensors").write_bytes(bbs[: len(bbs) // 2])
    (d / "random.safetensors").write_bytes(os.urandom(4096))
    (d / "random.bbs.safetensors").write_bytes(os.urandom(4096))
    (d / "empty.safetensors").write_bytes(b"")
    (d / "empty.bbs.safetensors").write_bytes(b"")
    (d / "header-only.safetensors").write_bytes(raw[: 8 + struct.unpack("<Q", raw[:8])[0]])
    (d / "notes.txt").write_text("not a model\n")
    (d / "a-folder").mkdir()
    (d / "a-file").write_text("x")
    (d / "images").mkdir()
    (d / "images" / "cat").mkdir()
    (d / "images" / "cat" / "0.jpg").write_bytes(b"")  # a 0-byte image, as in the issue
    for name in ("bad-transformers", "truncated-transformers"):
        (d / name).mkdir()
        (d / name / "config.json").write_text(json.dumps({
            "model_type": "bert", "architectures": ["BertModel"], "hidden_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 64, "vocab_size": 100}))
    (d / "bad-transformers" / "model.safetensors").write_bytes(os.urandom(2048))
    (d / "truncated-transformers" / "model.safetensors").write_bytes(raw[:300])
    base = "design: stripes\nname: mine\narray_rows: 16\narray_cols: 16\nlanes_per_pe: 16\nenergy_key: stripes\n"
    yamls = {
        "syntax": "design: [stripes\n",
        "unknown-key": base + "colour: red\n",
        "wrong-unit": base + "weight_sram_kb: 256\n",
        "negative": base.replace("array_rows: 16", "array_rows: -4"),
        "wrong-type": base.replace("array_rows: 16", "array_rows: sixteen"),
        "no-design": base.replace("design: stripes\n", ""),
        "unknown-design": base.replace("design: stripes", "design: tpu"),
        "duplicate": base + "name: other\n",
        "a-list": "- design: stripes\n",
        "empty": "",
        "pruning-key": base.replace("stripes", "bitvert") + "sensitive_fraction: 0.2\n",
        "energy-key": base.replace("energy_key: stripes", "energy_key: nothing"),
    }
    for name, text in yamls.items():
        (d / f"acc-{name}.yaml").write_text(text)
    (d / "llama-list.yaml").write_text("- 1\n- 2\n")
    (d / "llama-syntax.yaml").write_text("hidden_size: [1\n")
    (d / "llama-unknown.yaml").write_text("hidden_size: 64\nnum_hidden_layers: 1\ncolour: red\n")
    return d


def _unwritable(ws: Path, inp: Path) -> None:
    (ws / "ro").mkdir()
    (ws / "ro").chmod(0o555)


def _nonempty(ws: Path, inp: Path) -> None:
    (ws / "stuff").mkdir()
    (ws / "stuff" / "keep.txt").write_text("mine")


def _afile(ws: Path, inp: Path) -> None:
    (ws / "out.txt").write_text("x")


def _copy_ckpt(ws: Path, inp: Path) -> None:
    (ws / "p.safetensors").write_bytes((inp / "pruned.safetensors").read_bytes())


_I = "{in}"
CASES: list[Case] = [
    # ---- usage: unknown commands/options, missing or malformed values (click), the global options
    Case("no-such-command", ("nosuch",), "'nosuch'"),
    Case("threads-zero", ("--threads", "0", "models"), "--threads"),
    Case("threads-text", ("--threads", "many", "models"), "--threads"),
    Case("omp-garbage", ("models",), "OMP_NUM_THREADS", env={"OMP_NUM_THREADS": "lots"}),
    Case("omp-zero", ("models",), "OMP_NUM_THREADS", env={"OMP_NUM_THREADS": "0"}),
    Case("models-bad-option", ("models", "--tables"), "--tables"),
    Case("prune-no-model", ("prune", "--out", "{ws}/o"), "--model"),
    Case("prune-no-out", ("prune", "--model", "mnist-cnn"), "--out"),
    Case("prune-bad-option", ("prune", "--model", "mnist-cnn", "--out", "{ws}/o", "--bogus"), "--bogus"),
    Case("prune-calib-zero", ("prune", "--model", "mnist-cnn", "--out", "{ws}/o", "--calibration-samples", "0"),
         "--calibration-samples"),
    Case("prune-calib-text", ("prune", "--model", "mnist-cnn", "--out", "{ws}/o", "--calibration-samples", "x"),
         "--calibration-samples"),
    Case("prune-fidelity-zero", ("prune", "--model", "mnist-cnn", "--out", "{ws}/o", "--fidelity-samples", "0"),
         "--fidelity-samples"),
    Case("prune-seed-negative", ("prune", "--model", "mnist-cnn", "--out", "{ws}/o", "--seed", "-1"), "--seed"),
    Case("run-seed-negative", ("run", "--model", "mnist-cnn", "--out", "{ws}/r", "--seed", "-1"), "--seed"),
    Case("run-batch-zero", ("run", "--model", "mnist-cnn", "--out", "{ws}/r", "--batch", "0"), "--batch"),
    Case("run-seq-len-zero", ("run", "--model", "mnist-cnn", "--out", "{ws}/r", "--seq-len", "0"), "--seq-len"),
    Case("run-calib-samples-zero", ("run", "--model", "mnist-cnn", "--out", "{ws}/r", "--calibration-samples", "0"),
         "--calibration-samples"),
    Case("run-calib-data-missing", ("run", "--model", "mnist-cnn", "--out", "{ws}/r", "--calibration-data",
                                    "{ws}/nowhere"), "nowhere"),
    Case("eval-no-target", ("eval",), "TARGET"),
    Case("encode-no-checkpoint", ("encode", "--out", "{ws}/m.bbs.safetensors"), "CHECKPOINT"),
    Case("encode-no-out", ("encode", _I + "/pruned.safetensors"), "--out"),
    Case("decode-no-out", ("decode", _I + "/model.bbs.safetensors"), "--out"),
    Case("inspect-no-path", ("inspect", "--json"), "PATH"),
    Case("simulate-out-empty-option", ("simulate", "--workload", "resnet50", "--out"), "--out"),
    Case("simulate-batch-text", ("simulate", "--workload", "resnet50", "--out", "{ws}/s", "--batch", "x"), "--batch"),
    Case("simulate-checkpoint-missing", ("simulate", "--checkpoint", "{ws}/none.safetensors", "--out", "{ws}/s"),
         "none.safetensors"),
    Case("simulate-llama-missing", ("simulate", "--llama-config", "{ws}/none.yaml", "--out", "{ws}/s"), "none.yaml"),
    # ---- prune: every input checked before --out is created
    Case("prune-unknown-model", ("prune", "--model", "no-such-model", "--out", "{ws}/o"), "no-such-model"),
    Case("prune-unknown-preset", ("prune", "--model", "mnist-cnn", "--preset", "extreme", "--out", "{ws}/o"),
         "extreme"),
    Case("prune-set-no-equals", ("prune", "--model", "mnist-cnn", "--set", "beta", "--out", "{ws}/o"), "beta"),
    Case("prune-set-unknown-field", ("prune", "--model", "mnist-cnn", "--set", "colour=1", "--out", "{ws}/o"),
         "colour"),
    Case("prune-set-bad-value", ("prune", "--model", "mnist-cnn", "--set", "sensitive_fraction=2", "--out", "{ws}/o"),
         "sensitive_fraction"),
    Case("prune-set-bad-quant", ("prune", "--model", "mnist-cnn", "--set", "quant.weight_bits=99", "--out",
                                 "{ws}/o"), "weight_bits"),
    Case("prune-rule-bad-role", ("prune", "--model", "mnist-cnn", "--rule", "conv.*=half", "--out", "{ws}/o"),
         "half"),
    Case("prune-rule-no-equals", ("prune", "--model", "mnist-cnn", "--rule", "conv", "--out", "{ws}/o"), "conv"),
    Case("prune-limit-zero", ("prune", "--model", "mnist-cnn", "--limit", "0", "--out", "{ws}/o"), "--limit"),
    Case("prune-limit-text", ("prune", "--model", "mnist-cnn", "--limit", "many", "--out", "{ws}/o"), "--limit"),
    Case("prune-limit-negative", ("prune", "--model", "mnist-cnn", "--limit", "-5", "--out", "{ws}/o"), "--limit"),
    Case("prune-out-is-file", ("prune", "--model", "mnist-cnn", "--out", "{ws}/out.txt"), "out.txt", _afile),
    Case("prune-out-below-file", ("prune", "--model", "mnist-cnn", "--out", "{ws}/out.txt/sub"), "out.txt", _afile),
    Case("prune-out-read-only", ("prune", "--model", "mnist-cnn", "--out", "{ws}/ro/o"), "ro", _unwritable),
    Case("prune-out-is-read-only", ("prune", "--model", "mnist-cnn", "--out", "{ws}/ro"), "ro", _unwritable),
    Case("prune-unknown-task", ("prune", "--model", "mnist-cnn", "--task", "imagenet", "--out", "{ws}/o"),
         "imagenet"),
    Case("prune-task-wrong-family", ("prune", "--model", "mnist-cnn", "--task", "lee-similarity", "--out",
                                     "{ws}/o"), "lee-similarity"),
    Case("prune-task-needs-data", ("prune", "--model", "mnist-cnn", "--task", "image-folder", "--out", "{ws}/o"),
         "image-folder"),
    Case("prune-task-data-missing", ("prune", "--model", "mnist-cnn", "--task", "image-folder:{ws}/nowhere",
                                     "--out", "{ws}/o"), "nowhere"),
    Case("prune-task-data-unexpected", ("prune", "--model", "mnist-cnn", "--task", "mnist-top1:{ws}/x", "--out",
                                        "{ws}/o"), "mnist-top1"),
    Case("prune-model-folder-no-config", ("prune", "--model", _I + "/a-folder", "--out", "{ws}/o"), "a-folder"),
    Case("prune-model-onnx-missing", ("prune", "--model", "{ws}/net.onnx", "--out", "{ws}/o"), "net.onnx"),
    Case("prune-model-text-file", ("prune", "--model", _I + "/notes.txt", "--out", "{ws}/o"), "notes.txt"),
    Case("prune-transformers-random-weights", ("prune", "--model", _I + "/bad-transformers", "--out", "{ws}/o"),
         "bad-transformers"),
    Case("prune-transformers-truncated-weights", ("prune", "--model", _I + "/truncated-transformers", "--out",
                                                  "{ws}/o"), "truncated-transformers"),
    # ---- run
    Case("run-unknown-preset", ("run", "--model", "mnist-cnn", "--presets", "extreme", "--out", "{ws}/r"),
         "extreme"),
    Case("run-empty-presets", ("run", "--model", "mnist-cnn", "--presets", ",", "--out", "{ws}/r"), "presets"),
    Case("run-unknown-baseline", ("run", "--model", "mnist-cnn", "--baselines", "magic", "--out", "{ws}/r"),
         "magic"),
    Case("run-mixed-footing", ("run", "--model", "mnist-cnn", "--presets", "moderate,llm-moderate", "--out",
                               "{ws}/r"), "llm-moderate"),
    Case("run-unknown-accelerator", ("run", "--model", "mnist-cnn", "--accelerators", "tpu", "--out", "{ws}/r"),
         "tpu"),
    Case("run-accelerator-yaml", ("run", "--model", "mnist-cnn", "--accelerators", _I + "/acc-unknown-key.yaml",
                                  "--out", "{ws}/r"), "colour"),
    Case("run-limit-zero", ("run", "--model", "mnist-cnn", "--limit", "0", "--out", "{ws}/r"), "--limit"),
    Case("run-limit-text", ("run", "--model", "mnist-cnn", "--limit", "all", "--out", "{ws}/r"), "--limit"),
    Case("run-out-is-file", ("run", "--model", "mnist-cnn", "--out", "{ws}/out.txt"), "out.txt", _afile),
    Case("run-out-below-file", ("run", "--model", "mnist-cnn", "--out", "{ws}/out.txt/r"), "out.txt", _afile),
    Case("run-out-not-a-report", ("run", "--model", "mnist-cnn", "--out", "{ws}/stuff"), "stuff", _nonempty),
    Case("run-out-read-only", ("run", "--model", "mnist-cnn", "--out", "{ws}/ro/r"), "ro", _unwritable),
    Case("run-calibration-data-embedded", ("run", "--model", "mnist-cnn", "--calibration-data", _I + "/images",
                                           "--out", "{ws}/r"), "--calibration-data"),
    Case("run-calibration-data-efficientnet", ("run", "--model", "efficientnet-lite0", "--calibration-data",
                                               _I + "/images", "--out", "{ws}/r"), "efficientnet-lite0"),
    Case("run-unknown-model", ("run", "--model", "no-such-model", "--out", "{ws}/r"), "no-such-model"),
    Case("run-unknown-task", ("run", "--model", "mnist-cnn", "--task", "imagenet", "--out", "{ws}/r"), "imagenet"),
    Case("run-task-data-missing", ("run", "--model", "mnist-cnn", "--task", "image-folder:{ws}/nowhere", "--out",
                                   "{ws}/r"), "nowhere"),
    Case("run-task-wrong-family", ("run", "--model", "mnist-cnn", "--task", "glue:" + _I + "/notes.txt", "--out",
                                   "{ws}/r"), "glue"),
    Case("run-seq-len-vision", ("run", "--model", "mnist-cnn", "--seq-len", "64", "--out", "{ws}/r"), "seq"),
    # ---- eval
    Case("eval-flipped-weights", ("eval", _I + "/flipped.safetensors"), "checksum"),
    Case("eval-edited-header", ("eval", _I + "/edited.safetensors"), "checksum"),
    Case("eval-truncated", ("eval", _I + "/truncated.safetensors"), "truncated.safetensors"),
    Case("eval-random-bytes", ("eval", _I + "/random.safetensors"), "random.safetensors"),
    Case("eval-empty-file", ("eval", _I + "/empty.safetensors"), "empty.safetensors"),
    Case("eval-header-only", ("eval", _I + "/header-only.safetensors"), "header-only.safetensors"),
    Case("eval-missing-checkpoint", ("eval", "{ws}/gone.safetensors"), "gone.safetensors"),
    Case("eval-flipped-bbs", ("eval", _I + "/flipped.bbs.safetensors"), "checksum"),
    Case("eval-truncated-bbs", ("eval", _I + "/truncated.bbs.safetensors"), "truncated.bbs.safetensors"),
    Case("eval-unknown-model", ("eval", "no-such-model"), "no-such-model"),
    Case("eval-checkpoint-unknown-model", ("eval", _I + "/pruned.safetensors", "--model", "no-such-model"),
         "no-such-model"),
    Case("eval-limit-zero", ("eval", "mnist-cnn", "--limit", "0"), "--limit"),
    Case("eval-unknown-task", ("eval", "mnist-cnn", "--task", "imagenet"), "imagenet"),
    Case("eval-task-wrong-family", ("eval", "mnist-cnn", "--task", "similarity-suite"), "similarity-suite"),
    Case("eval-folder-without-checkpoint", ("eval", _I + "/a-folder"), "a-folder"),
    # ---- encode
    Case("encode-missing", ("encode", "{ws}/gone.safetensors", "--out", "{ws}/m.bbs.safetensors"), "gone"),
    Case("encode-flipped", ("encode", _I + "/flipped.safetensors", "--out", "{ws}/m.bbs.safetensors"), "checksum"),
    Case("encode-edited", ("encode", _I + "/edited.safetensors", "--out", "{ws}/m.bbs.safetensors"), "checksum"),
    Case("encode-truncated", ("encode", _I + "/truncated.safetensors", "--out", "{ws}/m.bbs.safetensors"),
         "truncated.safetensors"),
    Case("encode-random", ("encode", _I + "/random.safetensors", "--out", "{ws}/m.bbs.safetensors"),
         "random.safetensors"),
    Case("encode-empty", ("encode", _I + "/empty.safetensors", "--out", "{ws}/m.bbs.safetensors"),
         "empty.safetensors"),
    Case("encode-an-encoded-file", ("encode", _I + "/model.bbs.safetensors", "--out", "{ws}/m.bbs.safetensors"),
         "model.bbs.safetensors"),
    Case("encode-a-folder", ("encode", _I + "/a-folder", "--out", "{ws}/m.bbs.safetensors"), "a-folder"),
    Case("encode-out-is-folder", ("encode", _I + "/pruned.safetensors", "--out", "{ws}"), "--out"),
    Case("encode-out-below-file", ("encode", _I + "/pruned.safetensors", "--out", "{ws}/out.txt/m.bbs.safetensors"),
         "out.txt", _afile),
    Case("encode-out-read-only", ("encode", _I + "/pruned.safetensors", "--out", "{ws}/ro/m.bbs.safetensors"), "ro",
         _unwritable),
    Case("encode-out-is-input", ("encode", "{ws}/p.safetensors", "--out", "{ws}/p.safetensors"), "p.safetensors",
         _copy_ckpt),
    # ---- decode
    Case("decode-missing", ("decode", "{ws}/gone.bbs.safetensors", "--out", "{ws}/d"), "gone.bbs.safetensors"),
    Case("decode-a-pruned-file", ("decode", _I + "/pruned.safetensors", "--out", "{ws}/d"), "pruned.safetensors"),
    Case("decode-flipped", ("decode", _I + "/flipped.bbs.safetensors", "--out", "{ws}/d"), "checksum"),
    Case("decode-truncated", ("decode", _I + "/truncated.bbs.safetensors", "--out", "{ws}/d"),
         "truncated.bbs.safetensors"),
    Case("decode-random", ("decode", _I + "/random.bbs.safetensors", "--out", "{ws}/d"), "random.bbs.safetensors"),
    Case("decode-empty", ("decode", _I + "/empty.bbs.safetensors", "--out", "{ws}/d"), "empty.bbs.safetensors"),
    Case("decode-out-is-file", ("decode", _I + "/model.bbs.safetensors", "--out", "{ws}/out.txt"), "out.txt", _afile),
    Case("decode-out-below-file", ("decode", _I + "/model.bbs.safetensors", "--out", "{ws}/out.txt/d"), "out.txt",
         _afile),
    Case("decode-out-read-only", ("decode", _I + "/model.bbs.safetensors", "--out", "{ws}/ro/d"), "ro", _unwritable),
    # ---- inspect
    Case("inspect-missing", ("inspect", "{ws}/gone.bbs.safetensors"), "gone.bbs.safetensors"),
    Case("inspect-a-pruned-file", ("inspect", _I + "/pruned.safetensors"), "pruned.safetensors"),
    Case("inspect-flipped", ("inspect", _I + "/flipped.bbs.safetensors"), "checksum"),
    Case("inspect-truncated", ("inspect", _I + "/truncated.bbs.safetensors"), "truncated.bbs.safetensors"),
    Case("inspect-random", ("inspect", _I + "/random.bbs.safetensors"), "random.bbs.safetensors"),
    Case("inspect-text-file", ("inspect", _I + "/notes.txt"), "notes.txt"),
    # ---- simulate (and the accelerator YAML reader)
    Case("simulate-nothing", ("simulate", "--out", "{ws}/s"), "--workload"),
    Case("simulate-unknown-workload", ("simulate", "--workload", "alexnet", "--out", "{ws}/s"), "alexnet"),
    Case("simulate-batch-zero", ("simulate", "--workload", "resnet50", "--batch", "0", "--out", "{ws}/s"), "--batch"),
    Case("simulate-seq-len-zero", ("simulate", "--model", "minilm-l6", "--seq-len", "0", "--out", "{ws}/s"),
         "--seq-len"),
    Case("simulate-seq-len-without-model", ("simulate", "--workload", "resnet50", "--seq-len", "64", "--out",
                                            "{ws}/s"), "--seq-len"),
    Case("simulate-unknown-accelerator", ("simulate", "--workload", "resnet50", "--accelerators", "tpu", "--out",
                                          "{ws}/s"), "tpu"),
    Case("simulate-duplicate-accelerator", ("simulate", "--workload", "resnet50", "--accelerators",
                                            "stripes,stripes", "--out", "{ws}/s"), "stripes"),
    Case("simulate-hw-without-preset", ("simulate", "--workload", "resnet50", "--accelerators", "bitvert", "--out",
                                        "{ws}/s"), "bitvert"),
    Case("simulate-hw-wrong-preset", ("simulate", "--workload", "resnet50", "--accelerators",
                                      "bitvert:bitwave-moderate", "--out", "{ws}/s"), "bitwave-moderate"),
    Case("simulate-hw-unknown-preset", ("simulate", "--workload", "resnet50", "--accelerators", "bitvert:nonsense",
                                        "--out", "{ws}/s"), "nonsense"),
    Case("simulate-yaml-missing", ("simulate", "--workload", "resnet50", "--accelerators", "{ws}/mine.yaml", "--out",
                                   "{ws}/s"), "mine.yaml"),
    *[Case(f"simulate-yaml-{name}", ("simulate", "--workload", "resnet50", "--accelerators",
                                     f"{_I}/acc-{name}.yaml", "--out", "{ws}/s"), names)
      for name, names in (("syntax", "acc-syntax.yaml"), ("unknown-key", "colour"), ("wrong-unit", "weight_sram_kb"),
                          ("negative", "array_rows"), ("wrong-type", "array_rows"), ("no-design", "design"),
                          ("unknown-design", "tpu"), ("duplicate", "name"), ("a-list", "acc-a-list.yaml"),
                          ("empty", "acc-empty.yaml"), ("pruning-key", "sensitive_fraction"),
                          ("energy-key", "energy_key"))],
    Case("simulate-llama-not-mapping", ("simulate", "--llama-config", _I + "/llama-list.yaml", "--out", "{ws}/s"),
         "llama-list.yaml"),
    Case("simulate-llama-syntax", ("simulate", "--llama-config", _I + "/llama-syntax.yaml", "--out", "{ws}/s"),
         "llama-syntax.yaml"),
    Case("simulate-llama-unknown-field", ("simulate", "--llama-config", _I + "/llama-unknown.yaml", "--out",
                                          "{ws}/s"), "colour"),
    Case("simulate-checkpoint-and-workload", ("simulate", "--checkpoint", _I + "/pruned.safetensors", "--workload",
                                              "resnet50", "--out", "{ws}/s"), "--checkpoint"),
    Case("simulate-checkpoint-random", ("simulate", "--checkpoint", _I + "/random.safetensors", "--out", "{ws}/s"),
         "random.safetensors"),
    Case("simulate-checkpoint-flipped", ("simulate", "--checkpoint", _I + "/flipped.safetensors", "--out", "{ws}/s"),
         "checksum"),
    Case("simulate-checkpoint-truncated-bbs", ("simulate", "--checkpoint", _I + "/truncated.bbs.safetensors", "--out",
                                               "{ws}/s"), "truncated.bbs.safetensors"),
    Case("simulate-unknown-model", ("simulate", "--model", "no-such-model", "--out", "{ws}/s"), "no-such-model"),
    Case("simulate-out-is-file", ("simulate", "--workload", "resnet50", "--out", "{ws}/out.txt"), "out.txt", _afile),
    Case("simulate-out-below-file", ("simulate", "--workload", "resnet50", "--out", "{ws}/out.txt/s"), "out.txt",
         _afile),
    Case("simulate-out-read-only", ("simulate", "--workload", "resnet50", "--out", "{ws}/ro/s"), "ro", _unwritable),
]


def test_the_matrix_has_at_least_100_cases() -> None:
    assert len(CASES) >= 100
    assert len({c.id for c in CASES}) == len(CASES)


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def deny_read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Root may write into a 0555 folder; make the output check see it as the unwritable folder it is for
    everyone else (non-root runs get the real permission check)."""
    if os.geteuid() != 0:
        return
    import bitvert.outputs as outputs

    real = os.access

    def access(path: os.PathLike[str] | str, mode: int) -> bool:
        if Path(path).name == "ro" and mode & os.W_OK:
            return False
        return real(path, mode)

    monkeypatch.setattr(outputs.os, "access", access)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   deny_read_only: None) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    if case.setup is not None:
        case.setup(ws, inputs)
    monkeypatch.chdir(ws)
    for k, v in case.env.items():
        monkeypatch.setenv(k, v)
    before, inputs_before = _listing(ws), _listing(inputs)
    args = ["-q", *(a.replace("{in}", str(inputs)).replace("{ws}", str(ws)) for a in case.args)]
    result = CliRunner().invoke(main, args)
    try:
        assert result.exit_code == 2, (result.exit_code, result.output)
        assert isinstance(result.exception, SystemExit), result.exception
        assert "Traceback" not in result.output
        lines = [ln for ln in result.stderr.splitlines() if ln.strip() and not ln.startswith(_LOG_PREFIXES)]
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: "), lines[0]
        assert case.names.lower() in lines[0].lower(), lines[0]
        assert _listing(ws) == before, "the failed command created files"
        assert _listing(inputs) == inputs_before, "the failed command created files beside its inputs"
    finally:
        if (ws / "ro").exists():
            (ws / "ro").chmod(0o755)


# ---------------------------------------------------------------- the real exit path


def test_eval_of_a_tampered_checkpoint_exits_2_with_the_checksum_error(inputs: Path, tmp_path: Path) -> None:
    """The issue's silent wrong result: 4,000 flipped weights were evaluated with exit 0."""
    out = run_bitvert("eval", str(inputs / "flipped.safetensors"), cwd=tmp_path, timeout=300)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: ") and "fails its checksum" in line and "flipped.safetensors" in line


def test_real_exit_path_of_a_bad_environment(tmp_path: Path) -> None:
    """A bad OMP_NUM_THREADS through the real process exit (the other exit paths: the signal tests)."""
    names = "OMP_NUM_THREADS"
    out = run_bitvert("models", cwd=tmp_path, env={"OMP_NUM_THREADS": "x"}, timeout=300)
    assert out.returncode == 2, out.stderr
    # libgomp itself warns about a bad OMP_NUM_THREADS when torch loads it; that line is not ours
    (line,) = [ln for ln in out.stderr.strip().splitlines() if ln.strip() and not ln.startswith("libgomp:")]
    assert line.startswith("error: ") and names in line and "Traceback" not in out.stderr
    assert list(tmp_path.iterdir()) == []

"""`bitvert eval` on the encoded file gives the same numbers as on the pruned checkpoint."""

import copy

import pytest

from bitvert.cli.eval import run_eval
from bitvert.codec import encode_checkpoint_file
from bitvert.pipeline import get_preset, prune_model_, save_pruned


@pytest.fixture(scope="module")
def mnist():
    from bitvert.models import load_model

    try:
        return load_model("mnist-cnn")
    except Exception as exc:  # the models extra is installed by `make test`
        pytest.skip(f"mnist-cnn unavailable: {exc}")


def test_eval_reads_bbs_file(mnist, tmp_path):
    model = copy.deepcopy(mnist.model).eval()
    preset = get_preset("moderate", quant={"act_bits": None})
    report = prune_model_(model, preset)
    ckpt = save_pruned(tmp_path / "pruned.safetensors", model, report,
                       {"name": mnist.name, "default_task": mnist.default_task})
    bbs = tmp_path / "model.bbs.safetensors"
    encode_checkpoint_file(ckpt, bbs)
    from_ckpt = run_eval(str(ckpt), limit=200)
    from_file = run_eval(str(bbs), limit=200)
    assert from_file["metrics"] == from_ckpt["metrics"]
    assert from_file["model"] == "mnist-cnn" and from_file["variant"] == "moderate"

"""Byte-identical outputs, a write fault mid-run, and thread counts that follow OMP_NUM_THREADS."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import bitvert_env
from click.testing import CliRunner

from bitvert.cli import main

_RUN = ("run", "--model", "mnist-cnn", "--presets", "moderate", "--baselines", "bitwave", "--limit", "64",
        "--accelerators", "stripes,sparten,bitvert-moderate,bitwave", "--keep-checkpoints")


def _identical_files(folder: Path) -> list[Path]:
    """The files issue 14 requires to be byte-identical between two runs."""
    patterns = ("encoded/*.bbs.safetensors", "checkpoints/*.safetensors", "results.json", "simulation/summary.json",
                "simulation/layers.csv")
    return sorted(p.relative_to(folder) for pat in patterns for p in folder.glob(pat))


@pytest.mark.slow
def test_two_runs_write_byte_identical_files(tmp_path: Path) -> None:
    runner = CliRunner()
    for name in ("a", "b"):
        res = runner.invoke(main, ["-q", *_RUN, "--out", str(tmp_path / name)])
        assert res.exit_code == 0, res.output
    files = _identical_files(tmp_path / "a")
    assert len(files) == 9 and files == _identical_files(tmp_path / "b")  # 3 variants x 2 files + 3
    assert any(f.parent.name == "checkpoints" for f in files) and any(f.parent.name == "encoded" for f in files)
    differ = [str(f) for f in files if (tmp_path / "a" / f).read_bytes() != (tmp_path / "b" / f).read_bytes()]
    assert differ == []
    timings = json.loads((tmp_path / "a" / "timings.json").read_text())
    assert timings["timings_s"]["total"] > 0 and "timings_s" not in json.loads(
        (tmp_path / "a" / "results.json").read_text())


@pytest.mark.slow
def test_prune_twice_writes_identical_checkpoint_and_summary(tmp_path: Path) -> None:
    runner = CliRunner()
    for name in ("a", "b"):
        res = runner.invoke(main, ["-q", "prune", "--model", "mnist-cnn", "--no-baselines", "--limit", "64",
                                   "--out", str(tmp_path / name)])
        assert res.exit_code == 0, res.output
    for f in ("pruned.safetensors", "summary.json", "table.txt"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert "timings_s" in json.loads((tmp_path / "a" / "timings.json").read_text())


def test_output_folder_unwritable_mid_run_is_a_clear_error_and_leaves_nothing(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The encoded/ folder becomes read-only after the first variant: one line naming the path, exit 2, no
    report folder and no partial folder (root ignores permission bits: the write fails by injection)."""
    import bitvert.report.study as study

    real = study.encode_and_verify
    calls: list[Path] = []

    def encode(model, report, model_info, scratch, encoded_dir, name, *rest):  # noqa: ANN001, ANN202
        calls.append(encoded_dir)
        if len(calls) == 2:
            encoded_dir.chmod(0o555)
            if os.geteuid() == 0:
                raise PermissionError(errno.EACCES, "Permission denied", str(encoded_dir / f"{name}.bbs.safetensors"))
        return real(model, report, model_info, scratch, encoded_dir, name, *rest)

    monkeypatch.setattr(study, "encode_and_verify", encode)
    out = tmp_path / "report"
    res = CliRunner().invoke(main, ["-q", *_RUN, "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Permission denied" in errors[0] and "encoded" in errors[0]
    assert "removed the partial report folder" in res.stderr
    assert len(calls) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_omp_num_threads_holds_for_torch_after_the_cli_ran_a_numba_kernel(tmp_path: Path) -> None:
    """numba's OpenMP layer used to reset torch to all cores at its first parallel kernel."""
    script = (
        "import sys, torch, numba\n"
        "from bitvert.cli import main\n"
        "try:\n"
        "    main(['-q', 'simulate', '--workload', 'resnet50', '--accelerators', 'bitvert-moderate', '--no-plots',\n"
        "          '--out', sys.argv[1]], standalone_mode=False)\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc\n"
        "print(torch.get_num_threads(), numba.get_num_threads(), numba.threading_layer())\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "s")], env=bitvert_env({"OMP_NUM_THREADS": "1"}),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    torch_n, numba_n, layer = out.stdout.splitlines()[-1].split()
    assert (torch_n, numba_n) == ("1", "1") and layer  # a layer name: numba did launch a parallel kernel


def test_threads_option_sets_torch_and_numba(tmp_path: Path) -> None:
    script = (
        "import torch, numba\n"
        "from bitvert.cli import main\n"
        "try:\n"
        "    main(['--threads', '1', 'models', '--json'], standalone_mode=False)\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc\n"
        "print(torch.get_num_threads(), numba.get_num_threads())\n"
    )
    env = {k: v for k, v in bitvert_env().items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1].split() == ["1", "1"]

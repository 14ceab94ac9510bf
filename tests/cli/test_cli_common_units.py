"""Units behind the one error path: output checks, thread counts, limit reports, one-line validation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bitvert.errors import ConfigError, InputError, validation_message
from bitvert.outputs import check_output_file, check_output_folder
from bitvert.threads import set_threads, thread_counts, threads_from_env


def test_output_folder_checks(tmp_path: Path) -> None:
    assert check_output_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # creates nothing
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match=r"--out '.*f' is a file"):
        check_output_folder(tmp_path / "f")
    with pytest.raises(InputError, match="is a file, not a folder"):
        check_output_folder(tmp_path / "f" / "sub", "--dir")
    with pytest.raises(InputError, match="--out is empty"):
        check_output_folder("")


def test_output_file_checks(tmp_path: Path) -> None:
    src = tmp_path / "in.safetensors"
    src.write_bytes(b"x")
    assert check_output_file(tmp_path / "out.bin", inputs=[src]) == tmp_path / "out.bin"
    with pytest.raises(InputError, match="is a folder"):
        check_output_file(tmp_path)
    with pytest.raises(InputError, match="is the input file itself"):
        check_output_file(src, inputs=[src])
    with pytest.raises(InputError, match="is a file, not a folder"):
        check_output_file(src / "x.bin")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_refused(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(InputError, match="not writable"):
            check_output_folder(ro / "out")
        with pytest.raises(InputError, match="not writable"):
            check_output_file(ro / "m.bbs.safetensors")
    finally:
        ro.chmod(0o755)


def test_threads_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads_from_env() is None
    monkeypatch.setenv("OMP_NUM_THREADS", " 3 ")
    assert threads_from_env() == 3
    for bad in ("0", "-2", "two", "1.5"):
        monkeypatch.setenv("OMP_NUM_THREADS", bad)
        with pytest.raises(ConfigError, match="OMP_NUM_THREADS"):
            threads_from_env()


def test_set_threads_sets_torch_and_numba() -> None:
    before = thread_counts()
    try:
        assert set_threads(1) == 1
        assert thread_counts() == {"torch": 1, "numba": 1}
        with pytest.raises(ConfigError):
            set_threads(0)
    finally:
        set_threads(before["torch"])


def test_limit_unused_only_when_every_part_was_capped() -> None:
    from bitvert.evaluation import LimitUse, limit_unused

    assert limit_unused([]) is None
    suite = [LimitUse("documents", 120, 50, 50), LimitUse("pairs", 120, 999, 120)]
    assert limit_unused(suite) is None  # the pairs used the limit
    probe = [LimitUse("images", 10000, 1000, 1000)]
    assert limit_unused(probe) == "limit 10000 is more than the task can use (1000 images); it evaluated all of them"


def test_limit_uses_are_collected_by_check_limit() -> None:
    from bitvert.evaluation import limit_uses
    from bitvert.evaluation._common import check_limit

    assert check_limit(5, 3, "images") == 3  # outside a collector: nothing recorded, no error
    with limit_uses() as uses:
        check_limit(5, 3, "images")
        check_limit(None, 3, "images")
    assert [(u.limit, u.available, u.used) for u in uses] == [(5, 3, 3)]


def test_validation_message_is_one_line() -> None:
    from pydantic import BaseModel, ConfigDict, ValidationError

    class M(BaseModel):
        model_config = ConfigDict(extra="forbid")
        n: int

    with pytest.raises(ValidationError) as info:
        M(n="x", colour="red")  # type: ignore[call-arg]
    msg = validation_message(info.value)
    assert "\n" not in msg and "n: " in msg and "colour: unknown field (got 'red')" in msg


def test_calibration_data_is_refused_where_it_cannot_apply(tmp_path: Path) -> None:
    from bitvert.models import check_calibration_path, load_model

    check_calibration_path("torchvision:resnet50", tmp_path)  # a folder for a model that needs one: fine
    check_calibration_path("mnist-cnn", None)
    with pytest.raises(ConfigError, match="--calibration-data .* does not apply to the embedded model 'mnist-cnn'"):
        load_model("mnist-cnn", calibration_path=tmp_path)
    with pytest.raises(InputError, match="is not a folder"):
        check_calibration_path("torchvision:resnet50", tmp_path / "missing")


@pytest.mark.slow
def test_a_limit_above_what_the_task_has_is_reported() -> None:
    """MNIST's task has 4,000 images: --limit 5000 evaluates them all and says so."""
    from click.testing import CliRunner

    from bitvert.cli import main

    res = CliRunner().invoke(main, ["-q", "eval", "mnist-cnn", "--limit", "5000", "--json"])
    assert res.exit_code == 0, res.output
    assert "limit 5000 is more than the task can use (4000 images); it evaluated all of them" in res.stderr

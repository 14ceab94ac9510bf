"""One error path: failed reads/writes exit 2 with one line; SIGTERM cleans up like Ctrl-C and exits 143."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cli_helpers import bitvert_argv, bitvert_env, run_bitvert


def _bitvert(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_bitvert(*args, cwd=cwd)


def test_unwritable_out_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """--out below a regular file (NotADirectoryError): no traceback, the path named, exit 2."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = _bitvert("simulate", "--workload", "resnet50", "--accelerators", "stripes", "--no-plots",
                   "--out", str(blocker / "sub"), cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    lines = [l for l in out.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and str(blocker / "sub") in lines[0] and "writable" in lines[0]


def test_os_error_message_names_both_paths() -> None:
    from bitvert.cli import os_error_message

    msg = os_error_message(OSError(28, "No space left on device", "/data/out.tmp", None, "/data/out"))
    assert msg.startswith("error: No space left on device: /data/out.tmp -> /data/out;")
    assert "\n" not in msg


def test_sigterm_mid_run_exits_143_and_leaves_nothing(tmp_path: Path) -> None:
    """SIGTERM (what `timeout` and schedulers send) during `bitvert run`: exit 143, a message, no partial
    folder, no report folder."""
    out_dir = tmp_path / "report"
    proc = subprocess.Popen(bitvert_argv("run", "--model", "mnist-cnn", "--limit", "200", "--out", str(out_dir)),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=bitvert_env())
    deadline = time.monotonic() + 300
    partial: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        partial = list(tmp_path.glob(".report.partial-*"))
        if partial and any(partial[0].iterdir()):
            break
        time.sleep(0.2)
    assert partial, "the run never created its partial folder"
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "terminated by SIGTERM" in err and "Traceback" not in err
    assert not list(tmp_path.glob(".report.partial-*")), "the partial folder was left behind"
    assert not out_dir.exists()


def test_stale_partial_folders_of_dead_processes_are_removed(tmp_path: Path, caplog) -> None:
    """Partial folders of a dead process go; those of a live process (or not ours) stay."""
    import logging

    from bitvert.report.publish import partial_folder

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    out_dir = tmp_path / "report"
    stale = tmp_path / f".report.partial-{dead}"
    stale_old = tmp_path / f".report.old-{dead}"
    alive = tmp_path / f".report.partial-{os.getppid()}"
    other = tmp_path / f".other.partial-{dead}"
    for folder in (stale, stale_old, alive, other):
        folder.mkdir()
        (folder / "x.bin").write_bytes(b"0" * 10)
    with caplog.at_level(logging.INFO, logger="bitvert.report.publish"):
        with partial_folder(out_dir) as tmp:
            assert tmp.name == f".report.partial-{os.getpid()}"
    assert not stale.exists() and not stale_old.exists()
    assert alive.exists() and other.exists()
    assert f"removed the stale partial folder {stale}" in caplog.text


def test_sigterm_during_a_sweep_says_how_to_resume(tmp_path: Path) -> None:
    """A sweep keeps its finished points: SIGTERM says so (not "no output was completed") and leaves the sweep
    folder for the rerun, exit 143."""
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: tiny\nmodels: [{name: mnist-cnn, limit: 100}]\npresets: [moderate]\n"
                    "grid: [{columns: [2, 3, 4, 5]}]\naccelerators: [bitvert]\ncalibration_samples: 8\n",
                    encoding="utf-8")
    out_dir = tmp_path / "sweep"
    proc = subprocess.Popen(bitvert_argv("sweep", str(spec), "--out", str(out_dir), "--workers", "1"), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=bitvert_env())
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not (out_dir / "sweep.json").is_file():
        time.sleep(0.1)
    assert (out_dir / "sweep.json").is_file(), "the sweep never started"
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert f"terminated by SIGTERM: finished points are in {out_dir}; rerun the same command to resume" in err
    assert "no output was completed" not in err and "Traceback" not in err
    assert (out_dir / "sweep.json").is_file()

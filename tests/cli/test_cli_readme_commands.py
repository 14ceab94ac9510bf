"""Every ``bitvert`` command of the README's shell blocks runs as written.

* fast (default suite): every command parses -- the command exists, every option is known and every
  required option is given (what broke `bitvert simulate --workload paper`, whose --out was required);
  ``--help`` and ``models`` run;
* slow: the commands that need only offline (embedded) models run in an empty folder, with small
  evaluation limits added, and exit 0.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from cli_helpers import run_bitvert
from click.testing import CliRunner

from bitvert.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"

_ONLINE = ("hf:", "torchvision:", "timm:")


def readme_commands() -> list[list[str]]:
    """The ``bitvert`` commands of the README's ```sh blocks (continuations joined, comments dropped), as
    argument lists without the program name; inline `bitvert ...` spans of the prose too."""
    text = README.read_text(encoding="utf-8")
    commands: list[list[str]] = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0].endswith("bitvert") and words[1:] not in commands:
                commands.append(words[1:])
    for span in re.findall(r"`((?:\.venv/bin/)?bitvert [^`]+)`", text):
        words = shlex.split(span)
        if any(w.startswith("--") for w in words) and words[1:] not in commands and "..." not in span:
            commands.append(words[1:])
    return commands


def _split_global(args: list[str]) -> tuple[list[str], list[str]]:
    """(options of `bitvert` itself, the subcommand and its arguments)."""
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] not in ("--help", "-h"):
        i += 2 if args[i] == "--threads" else 1
    return args[:i], args[i:]


def _own_data(args: list[str]) -> bool:
    return any(a.startswith("/") or a.startswith(_ONLINE) or ":/" in a for a in args)


def _reader_blocks() -> list[list[str]]:
    """Commands of the ```sh blocks that work on the reader's own data: a block with one such command (an
    absolute path, a hub model) is a recipe whose later commands read the earlier ones' outputs."""
    text = README.read_text(encoding="utf-8")
    found: list[list[str]] = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        cmds = [shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines()]
        cmds = [w[1:] for w in cmds if w and w[0].endswith("bitvert")]
        if any(_own_data(c) for c in cmds):
            found += cmds
    return found


_READER = _reader_blocks()


def _offline(args: list[str]) -> bool:
    return not _own_data(args) and args not in _READER


def _outputs() -> set[str]:
    """Folders the README's commands write (``--out`` / ``-o``): a later command may read them."""
    outs = set()
    for cmd in readme_commands():
        outs |= {cmd[i + 1] for i, w in enumerate(cmd[:-1]) if w in ("--out", "-o")}
    return outs


def test_the_readme_has_commands() -> None:
    cmds = readme_commands()
    assert len(cmds) >= 8
    assert ["simulate", "--workload", "paper"] in cmds


@pytest.mark.parametrize("args", readme_commands(), ids=lambda a: " ".join(a)[:60] or "bitvert")
def test_readme_command_parses(args: list[str]) -> None:
    """Parse like click does (no work): unknown commands/options and missing required options fail here.
    Commands on the reader's own data only parse up to the existence of those paths."""
    head, sub = _split_global(args)
    main.make_context("bitvert", [*head, "models"])  # the global options parse
    if not sub or sub == ["--help"]:  # `bitvert --help`
        return
    name, rest = sub[0], sub[1:]
    cmd = main.commands.get(name)
    assert cmd is not None, f"README uses the unknown command {name!r}"
    try:
        cmd.make_context(name, list(rest))
    except click.exceptions.Exit:  # --help
        pass
    except click.BadParameter as exc:
        msg = exc.format_message()
        made_earlier = any(repr(out) in msg or f"'{out}'" in msg for out in _outputs())
        if "does not exist" not in msg or (_offline(args) and not made_earlier):
            raise


@pytest.mark.parametrize("args", [["--help"], ["models"]])
def test_cheap_readme_commands_run(args: list[str]) -> None:
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output


def _small(command: list[str]) -> list[str]:
    """The command with limits that keep it short (the README's own options are kept)."""
    head, args = _split_global(command)
    return head + _small_sub(args)


def _small_sub(args: list[str]) -> list[str]:
    if not args:
        return args
    if args[0] == "run":
        extra = ["--limit", "4", "--calibration-samples", "4"]
        if "--presets" not in args:
            extra += ["--presets", "moderate", "--baselines", "none"]
        if "--accelerators" not in args:
            extra += ["--accelerators", "stripes,sparten,bitvert-moderate"]
        return args + extra
    if args[0] == "prune":
        return args + ["--limit", "4", "--calibration-samples", "4", "--no-baselines", "--fidelity-samples", "2"]
    if args[0] == "simulate" and "paper" in args:
        return args + ["--accelerators", "stripes,sparten,bitvert-moderate", "--no-plots"]
    return args


def _runnable(args: list[str]) -> bool:
    """Offline commands that finish in minutes: a README sweep runs its whole grid (tens of minutes; the
    engines, resuming and the report are tested in tests/report/test_sweep_*.py on a 6-point spec)."""
    return _offline(args) and _split_global(args)[1][:1] != ["sweep"]


@pytest.mark.slow
@pytest.mark.parametrize("args", [a for a in readme_commands() if _runnable(a)],
                         ids=lambda a: " ".join(a)[:60] or "bitvert")
def test_offline_readme_command_runs(args: list[str], tmp_path: Path) -> None:
    out = run_bitvert(*_small(args), cwd=tmp_path, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]

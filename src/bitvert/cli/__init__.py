"""The ``bitvert`` command line.

This module is the only place in bitvert that configures logging. Each
subcommand lives in its own module of this package and is registered in
:data:`_SUBCOMMANDS` as ``"module:attribute"``.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys

import click

from bitvert import __version__
from bitvert.cli._common import apply_threads, os_error_message
from bitvert.errors import BitvertError

_SUBCOMMANDS: list[str] = [
    "bitvert.cli.prune:prune_cmd",
    "bitvert.cli.eval:eval_cmd",
    "bitvert.cli.simulate:simulate_cmd",
    "bitvert.cli.codec:encode_cmd", "bitvert.cli.codec:decode_cmd", "bitvert.cli.codec:inspect_cmd",
    "bitvert.cli.run:run_cmd",
    "bitvert.cli.sweep:sweep_cmd",
    "bitvert.cli.models:models",
]


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose >= 2 else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("bitvert")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


_SIGTERM_NOTE: list[str] = []


def say_on_sigterm(message: str) -> None:
    """What SIGTERM reports for this command instead of "no output was completed": for a command that keeps
    its finished work (``bitvert sweep``) and resumes from it."""
    _SIGTERM_NOTE[:] = [message]


def _on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (``timeout``, job schedulers): remove the partial output folder and exit 143 at once.

    The clean-up happens here rather than by raising an exception, because an exception raised while
    the main thread runs inside a native callback (numba compiling, for instance) is swallowed there.
    """
    from bitvert.report.publish import remove_active_partials

    removed = remove_active_partials()
    what = f"; removed the partial output {', '.join(str(p) for p in removed)}" if removed else ""
    note = _SIGTERM_NOTE[0] if _SIGTERM_NOTE else f"no output was completed{what}"
    try:
        sys.stderr.write(f"terminated by SIGTERM: {note}\n")
        sys.stderr.flush()
    finally:
        os._exit(143)


class _UsageLine(click.ClickException):
    """A command-line usage error as one line (``error: ...; see `bitvert CMD --help```), exit 2."""

    exit_code = 2

    def show(self, file: object = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _usage_line(exc: click.UsageError) -> _UsageLine:
    command = exc.ctx.command_path if exc.ctx is not None else "bitvert"
    return _UsageLine(f"{exc.format_message()} (see `{command} --help`)")


class _Group(click.Group):
    """Turns bitvert's own errors, failed reads/writes and usage errors into a one-line message and exit
    status 2; SIGINT exits 130 after the command removed its partial output (SIGTERM:
    :func:`_on_sigterm`, 143)."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: object) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)  # type: ignore[arg-type]
        except click.UsageError as exc:
            raise _usage_line(exc) from None

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _usage_line(exc) from None
        except BitvertError as exc:
            click.echo("error: " + "; ".join(ln.strip() for ln in str(exc).splitlines() if ln.strip()), err=True)
            ctx.exit(2)
        except OSError as exc:
            click.echo(os_error_message(exc), err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bitvert")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads of torch and numba (default: $OMP_NUM_THREADS when set, else all cores).")
def main(verbose: int, quiet: bool, threads: int | None) -> None:
    """bitvert: BBS binary pruning, the BBS weight format and the BitVert accelerator model."""
    _configure_logging(verbose, quiet)
    signal.signal(signal.SIGTERM, _on_sigterm)  # remove partial output, exit 143
    apply_threads(threads)


def _register() -> None:
    for spec in _SUBCOMMANDS:
        module_name, attr = spec.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        main.add_command(command)


_register()

__all__ = ["main", "os_error_message", "say_on_sigterm"]

"""The ``serprof`` command line: thin Typer commands over the library API.

Every command lives in one module of this package (one group of commands each) and registers itself
through ``register(app)``. Command modules import torch, fla and matplotlib lazily inside their
functions so that ``serprof --help`` stays fast. ``main`` is the one place that maps serprof's
errors to exit codes: 0 ok, 1 regression found / check failed, 2 usage error, 3 unavailable.
"""

from __future__ import annotations

import sys

import typer

from profiler.cli import bench, gate, kernels, report, selftest, sweep
from profiler.core.errors import SerprofError
from profiler.core.version import __version__

app = typer.Typer(
    name="serprof",
    help="Profile latency, peak memory and energy of softmax vs efficient attention kernels.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,   # help texts are plain text: '[/causal|full]' is printed, never parsed as markup
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.command()
def version() -> None:
    """Print serprof's version."""
    typer.echo(__version__)


def _register_all() -> None:
    for mod in (kernels, sweep, report, gate, bench, selftest):
        mod.register(app)


_register_all()


def _click_errors() -> tuple[type, type]:
    """``(UsageError, ClickException)`` of the click that typer uses (typer >= 0.2x vendors its own)."""
    mro = typer.BadParameter.__mro__
    return (next(c for c in mro if c.__name__ == "UsageError"),
            next(c for c in mro if c.__name__ == "ClickException"))


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning every user error into one line and an exit code.

    Click's own parse errors (unknown option or command, a value of the wrong type) become
    ``serprof: error: <message> (see '<command> --help')`` with exit code 2, like serprof's
    ``UsageError``; a bare ``serprof`` prints the help (exit 2, as click does).
    """
    click_usage, click_exception = _click_errors()
    try:
        rv = app(args=argv, standalone_mode=False)
    except click_usage as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":   # a bare group: its help (plain text, markup off)
            typer.echo(exc.format_message())
            sys.exit(2)
        where = exc.ctx.command_path if exc.ctx is not None else "serprof"
        typer.echo(f"serprof: error: {exc.format_message()} (see '{where} --help')", err=True)
        sys.exit(2)
    except click_exception as exc:
        typer.echo(f"serprof: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except SerprofError as exc:
        typer.echo(f"serprof: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("serprof: interrupted", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)

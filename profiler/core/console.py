"""The console output boundary: text from users, systems or run folders is printed, never interpreted.

rich reads ``[...]`` as markup. Anything that was not written by serprof's own code (a scenario
name, a path, a stored reason, an environment value, an exception message) goes through ``esc``
before it is put into a rich markup string, or is printed with ``markup=False``.
``shell_quote`` makes a path safe to paste into a shell in hints such as "resume with: ...".
"""

from __future__ import annotations

import os
import shlex
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape


def esc(value: Any) -> str:
    """``str(value)`` with rich markup escaped (``[b]`` prints as ``[b]``)."""
    return escape(str(value))


def shell_quote(text: str) -> str:
    return shlex.quote(text)


#: Console width off a terminal: wide enough that no table is cut or wrapped (rich would use 80).
PIPE_WIDTH = 1000


def console(*, stderr: bool = False) -> Any:
    """The rich console every command prints through. Off a terminal (a pipe, a file, CI logs) lines
    are never wrapped and tables are laid out at their full width (``PIPE_WIDTH``; a ``COLUMNS``
    environment variable still wins), so a long path, id or number stays on one line for grep and
    copy-paste. On a terminal, rich fits the terminal as usual."""
    stream = sys.stderr if stderr else sys.stdout
    tty = bool(getattr(stream, "isatty", lambda: False)())
    if tty:
        return Console(stderr=stderr)
    width = None if os.environ.get("COLUMNS", "").strip().isdigit() else PIPE_WIDTH
    return Console(stderr=stderr, soft_wrap=True, width=width)

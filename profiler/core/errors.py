"""The two kinds of errors serprof raises on purpose.

A user's mistake (bad length syntax, unknown kernel, unreadable scenario) is a ``UsageError``: the
CLI prints its message as one line and exits 2. A device or meter the user asked for that this
machine does not have is an ``UnavailableError``: one line, exit 3. Anything else is a programmer's
mistake and propagates as an ordinary exception.
"""

from __future__ import annotations

import difflib


class SerprofError(Exception):
    """Base class for errors that the CLI turns into one line and an exit code."""

    exit_code = 1


class UsageError(SerprofError):
    """Bad input from the user: flags, scenario files, run folders. Exit code 2."""

    exit_code = 2


class UnavailableError(SerprofError):
    """The requested device, backend or meter is not available here. Exit code 3."""

    exit_code = 3


#: Words people type for a valid choice that spelling distance would not find ("gpu" is closer to
#: "cpu" than to "cuda"): checked before the close-match search, used only when the target is valid.
ALIASES = {"gpu": "cuda", "gpus": "cuda", "nvidia": "cuda", "cuda:0": "cuda", "host": "cpu"}


def did_you_mean(value: str, choices) -> str:
    """Return ``"valid: a, b, c"`` (plus an alias or a close match if any) for error messages."""
    choices = sorted(choices)
    alias = ALIASES.get(str(value).strip().lower())
    close = [alias] if alias in choices else difflib.get_close_matches(value, choices, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"valid: {', '.join(choices)}{hint}"

"""Where Triton and fla keep compiled kernels and autotune results, so first calls are paid once.

Why. On an H200 the first call of each fla series spent 20-93 s compiling and autotuning
(../evidence/h200-2026-11-30/README.md). Triton caches compiled kernels in ``TRITON_CACHE_DIR``
(default ``~/.triton/cache``) and fla can keep autotune results there (``FLA_CACHE_RESULTS=1``).
Every worker process starts with a stable cache folder under the user's cache directory, so later
workers and later runs find the kernels already built.

What serprof does. ``apply_cache_env`` runs at worker start-up, before torch or Triton are imported:
it sets ``TRITON_CACHE_DIR`` to ``$XDG_CACHE_HOME/serprof/triton`` (or ``~/.cache/serprof/triton``)
and ``FLA_CACHE_RESULTS=1``, each only where the user has not set it, and notes whether the cache
folder existed and was non-empty at that moment ("warm"). ``cache_state()`` hands that to the
``FirstCall`` record of each point. What is not captured: whether a given kernel was actually found
in the cache (Triton does not say); a warm folder may still miss the point's shapes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import MutableMapping

TRITON_ENV = "TRITON_CACHE_DIR"
FLA_ENV = "FLA_CACHE_RESULTS"


@dataclass(frozen=True)
class CacheState:
    cache_dir: str | None
    warm: bool | None
    note: str | None = None


_STATE: CacheState | None = None


def default_cache_dir(environ: MutableMapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/serprof/triton``, else ``~/.cache/serprof/triton``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "serprof" / "triton"


def _is_warm(path: Path) -> bool:
    try:
        return path.is_dir() and any(path.iterdir())
    except OSError:
        return False


def apply_cache_env(environ: MutableMapping[str, str] | None = None) -> CacheState:
    """Set the cache defaults in ``environ`` (``os.environ``) unless set; remember the cache state."""
    global _STATE
    env = os.environ if environ is None else environ
    user_set = bool(env.get(TRITON_ENV))
    if not user_set:
        env[TRITON_ENV] = str(default_cache_dir(env))
    env.setdefault(FLA_ENV, "1")
    path = Path(env[TRITON_ENV])
    note = "cache state at worker start; TRITON_CACHE_DIR " + ("set by the user" if user_set else "serprof's default")
    _STATE = CacheState(cache_dir=str(path), warm=_is_warm(path), note=note)
    return _STATE


def cache_state() -> CacheState:
    """The state noted by ``apply_cache_env`` in this process, or the environment's as it is now."""
    if _STATE is not None:
        return _STATE
    d = os.environ.get(TRITON_ENV)
    if not d:
        return CacheState(cache_dir=None, warm=None, note="not a serprof worker: Triton's own cache default")
    return CacheState(cache_dir=d, warm=_is_warm(Path(d)), note="cache state at the first call")

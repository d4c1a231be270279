"""Where each plugin kernel came from (an entry point or a kernel module), for messages that name it.

Filled by ``profiler.kernels.registry``; built-in kernels are absent. Import-free so that every kernels
module (``check`` included) can name a plugin without an import loop.
"""

from __future__ import annotations

from typing import Any

#: Kernel name -> where it came from, for plugins only.
ORIGINS: dict[str, str] = {}


def label(spec: Any) -> str:
    """``kernel 'x'``, plus its plugin origin when not built in (for error lines)."""
    where = ORIGINS.get(spec.name)
    return f"kernel {spec.name!r}" + (f" from {where}" if where else "")

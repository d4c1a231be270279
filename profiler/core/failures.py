"""What a backend's exception means: out of memory, a device fault, a library refusing this machine, or an error.

One classification for the sweep's workers and for ``serprof verify``:

* **out of memory** (``is_oom``): ``torch.OutOfMemoryError``, ``MemoryError``, or a ``RuntimeError``
  whose text says so -> the point's status ``oom``; the process is still usable.
* **device fault** (``device_fault``): a CUDA error that poisons the process's CUDA context
  (``torch.AcceleratorError``; "misaligned address", "illegal memory access", "device-side assert",
  "unspecified launch failure", ...). Every later CUDA call in that process fails with the same error,
  so the process that saw it must not measure or check anything else: the sweep replaces the worker,
  ``verify`` marks the rest of that process's checks as not run. Seen on an H200 (2026-12-04): fla
  0.6.0 ``chunk_gla`` in float32 at head dim 16 raised "CUDA error: misaligned address", and every
  later check of the same process failed with it.
* **refusal** (``library_refusal``): a library that declines to run on this software/hardware
  combination, saying why, e.g. fla 0.6.0's gated ``chunk_bwd_dqkwg`` on Hopper with Triton >= 3.4
  and < 3.7.1 ("produces incorrect results ... Please upgrade Triton to >= 3.7.1 or install
  tilelang"), which stops the backward of GLA, gated delta rule, Comba and KDA there -> the
  combination is unavailable here, with the library's own words as the reason; not a failure of
  serprof's run.
* anything else is an ordinary error of that backend.
"""

from __future__ import annotations

import sys

OOM_TEXTS = ("can't allocate memory", "out of memory", "cannot allocate memory", "failed to allocate")

#: texts of CUDA errors after which the CUDA context of the process is unusable (sticky errors)
DEVICE_FAULT_TEXTS = ("misaligned address", "illegal memory access", "illegal instruction",
                      "device-side assert", "unspecified launch failure", "an illegal memory access",
                      "cuda error: operation not permitted when stream is capturing",
                      "hardware exception", "uncorrectable ecc error", "launch timed out")

#: phrases with which a library declines this machine (its own words become the reason)
REFUSAL_TEXTS = ("please upgrade triton", "install tilelang", "produces incorrect results")


def is_oom(exc: BaseException) -> bool:
    """An allocation failure (CUDA or CPU), as opposed to any other error."""
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")
    if torch is not None:
        oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
        if oom_type is not None and isinstance(exc, oom_type):
            return True
    if isinstance(exc, RuntimeError):
        text = str(exc).lower()
        return any(t in text for t in OOM_TEXTS)
    return False


def device_fault(exc_or_text: BaseException | str | None) -> bool:
    """True for a CUDA error that leaves the process's CUDA context unusable (not an OOM).

    Takes the exception or the recorded reason text (``"AcceleratorError: CUDA error: ..."``)."""
    if exc_or_text is None:
        return False
    if isinstance(exc_or_text, BaseException):
        if is_oom(exc_or_text):
            return False
        if type(exc_or_text).__name__ == "AcceleratorError":
            return True
        text = f"{type(exc_or_text).__name__}: {exc_or_text}"
    else:
        text = exc_or_text
    low = text.lower()
    if any(t in low for t in OOM_TEXTS):
        return False
    return "acceleratorerror" in low or ("cuda error" in low and any(t in low for t in DEVICE_FAULT_TEXTS))


def library_refusal(exc: BaseException) -> str | None:
    """The library's reason when ``exc`` says it declines to run on this machine, else None."""
    if not isinstance(exc, (RuntimeError, NotImplementedError)):
        return None
    text = " ".join(str(exc).split())
    low = text.lower()
    if any(t in low for t in REFUSAL_TEXTS):
        return text[:400]
    return None

"""``serprof trace``: one point under ``torch.profiler``, for looking inside a kernel.

Builds the point's inputs exactly as a sweep does (``kernel.make_inputs``, ``KernelSpec.build``),
makes one warm-up call outside the profiler, then profiles ``steps`` calls with CPU (and CUDA)
activities, shapes and memory events. Writes:

* ``trace.json``: Chrome trace format, opens in https://ui.perfetto.dev or chrome://tracing;
* ``tb/``: a log dir written by ``torch.profiler.tensorboard_trace_handler`` for TensorBoard's
  profiler plugin (``pip install 'serprof[tb]'``).

Runs in the calling process (it is an inspection tool, not a measurement): profiler overhead makes
its timings unfit as performance numbers. Kineto (the profiler's C++ back end) writes
``USDT:... profiler_start`` / ``profiler_stop`` lines straight to the process's stdout/stderr file
descriptors; ``_without_kineto_noise`` drops those lines and passes every other line through.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from profiler.core.errors import UsageError, did_you_mean
from profiler.core.lazy import lazy_import
from profiler.core.paths import make_dir
from profiler.core.records import MODES, PointSpec
from profiler.kernels import get_kernel, require_available
from profiler.kernels.base import Shape
from profiler.planning.points import resolve_device
from profiler.planning.scenario import _parse_dtypes, _parse_lengths
from profiler.store.runs import new_run_id

torch = lazy_import("torch")
torch_profiler = lazy_import("torch.profiler")

#: Kineto's tracing-probe log lines, e.g. ``USDT:2026-12-04 09:32:40 9645:9645 SyncActivityProfilerHandler.cpp:52] profiler_start``
_KINETO_NOISE = re.compile(r"^USDT:.*\] profiler_\w+\s*$")


def trace_point(*, kernel: str, backend: str | None = None, length: str = "1k", batch: int = 1, heads: int = 4,
                head_dim: int = 64, dtype: str = "float32", mode: str = "fwd", causal: bool = True,
                device: str = "auto", steps: int = 3, out: Path | None = None) -> dict[str, Any]:
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device {device!r} is not allowed; {did_you_mean(device, ('auto', 'cpu', 'cuda'))}")
    if mode not in MODES:
        raise UsageError(f"--mode {mode!r} is not allowed; valid: {', '.join(MODES)}")
    if steps < 1:
        raise UsageError("--steps must be >= 1")
    lengths = _parse_lengths(length, "--length")
    if len(lengths) != 1:
        raise UsageError(f"--length takes one length, got {len(lengths)}")
    (dt,) = _parse_dtypes(dtype, "--dtype")[:1]
    spec_k = get_kernel(kernel)
    bname = backend or spec_k.default_backend
    dev = resolve_device(device)
    b = require_available(kernel, bname, dev)
    if causal not in b.causal:
        raise UsageError(f"{kernel}/{bname} supports only {'causal' if True in b.causal else 'non-causal'} attention")
    shape = Shape(batch, lengths[0], heads, head_dim)
    bad = spec_k.check_shape(shape)
    if bad:
        raise UsageError(bad)
    spec = PointSpec(kernel=kernel, backend=bname, device=dev, dtype=dt, mode=mode, B=batch, T=lengths[0],
                     H=heads, D=head_dim, causal=causal)

    out_dir = Path(out) if out is not None else Path("reports") / new_run_id(f"trace-{kernel}-{bname}")
    make_dir(out_dir, "--out")   # before anything runs: an output folder that cannot be made is bad input

    tb_dir = out_dir / "tb"
    work = spec_k.build(spec, dev, 0)   # the inputs and call exactly as a sweep builds them
    call, reset = work.call, work.reset

    def one() -> None:
        if reset is not None:
            reset()
        call()
        if dev == "cuda":
            torch.cuda.synchronize()

    one()  # warm-up outside the profile (first-call and autotuning costs)
    activities = [torch_profiler.ProfilerActivity.CPU] + ([torch_profiler.ProfilerActivity.CUDA] if dev == "cuda" else [])
    with _without_kineto_noise(), torch_profiler.profile(
            activities=activities, record_shapes=True, profile_memory=True,
            on_trace_ready=torch_profiler.tensorboard_trace_handler(str(tb_dir), worker_name=spec.kernel)):
        for i in range(steps):
            with torch_profiler.record_function(f"serprof:{spec.kernel}/{spec.backend} call {i}"):
                one()
    # The handler saved the trace into tb/ (a kineto trace can be saved once): copy it for Perfetto.

    saved = sorted(tb_dir.glob("*.pt.trace.json"), key=lambda p: p.stat().st_mtime)
    chrome = out_dir / "trace.json"
    shutil.copyfile(saved[-1], chrome)
    return {"point": spec.id, "chrome_trace": str(chrome), "tensorboard_dir": str(tb_dir), "out": str(out_dir)}


@contextlib.contextmanager
def _without_kineto_noise() -> Iterator[None]:
    """Capture the C-level stdout and stderr (fds 1 and 2) meanwhile; afterwards write back every
    captured line except kineto's ``USDT: ... profiler_start``-style lines (``_KINETO_NOISE``)."""
    saved: list[tuple[int, int, Any, Any]] = []
    try:
        for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
            try:
                stream.flush()
                tmp = tempfile.TemporaryFile()
                saved.append((fd, os.dup(fd), tmp, stream))
                os.dup2(tmp.fileno(), fd)
            except (OSError, ValueError, AttributeError):   # no such fd (embedded use): leave it alone
                continue
        yield
    finally:
        for fd, old, tmp, stream in reversed(saved):
            with contextlib.suppress(OSError, ValueError, AttributeError):
                stream.flush()
            os.dup2(old, fd)
            os.close(old)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            tmp.close()
            kept = "".join(ln for ln in text.splitlines(keepends=True) if not _KINETO_NOISE.match(ln))
            if kept:
                os.write(fd, kept.encode("utf-8"))

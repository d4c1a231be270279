"""Run flash-linear-attention's real Triton kernels on CPU under Triton's interpreter.

For correctness only: interpreted kernels execute with NumPy, so timings mean nothing. Verified with
triton 3.9.0 and fla 0.6.0 (``../shared/context/FLA.md`` section 5).

Entering interpret mode
    ``triton.jit`` decides at *decoration* time whether a kernel is compiled or interpreted (it reads
    ``triton.knobs.runtime.interpret``, i.e. ``TRITON_INTERPRET``). fla decorates its kernels when
    its modules are imported, so ``enable()`` must run before anything imports ``fla``. Importing
    triton (or torch) earlier is harmless; ``enable()`` raises ``InterpretError`` if fla was already
    imported with compiled kernels, because those can never be interpreted in that process. A
    process that has imported fla normally (a test session, a sweep worker) runs interpreted work in
    a fresh subprocess: ``run_isolated("pkg.module:function", kwargs)``.

The patches (installed by ``enable()``, active only while an interpreted kernel runs)
    1. Autotuning: ``triton.runtime.autotuner.Autotuner.run`` benchmarks every config through the
       active GPU driver ("0 active drivers"); with one config it skips benchmarking, so each
       autotuner keeps only its first config.
    2. Loop variables: compiled Triton makes the induction variable of ``for i in range(n)`` a
       tensor, and fla calls tensor methods on it (``i_t.to(tl.int64)``); the interpreter runs the
       loop with Python ints. ``triton.runtime.interpreter._patch_lang`` (called for every kernel
       launch; its ``_LangPatchScope`` undoes its patches afterwards) is wrapped so that the scope
       also sets a module-level ``range`` in the kernel's own module, yielding scalar interpreter
       tensors (``tl.core.tensor(TensorHandle(np.array(i, np.int32), tl.int32), tl.int32)``). The
       ``range`` falls back to the builtin outside a kernel launch, because triton's device-function
       path calls ``_patch_lang`` without ever restoring it.
    3. ``triton.language.extra.libdevice.log1p`` (fla's ``logaddexp``, LightNet/GSA gate scans) has
       no interpreter implementation (it returns None); inside the same scope it maps to
       ``tl.log(1.0 + x)``.
    4. A Triton builtin imported under a module-level name (``fla.ops.utils.op.gather = tl.gather``,
       used by the DPLR / KDA-style intra-chunk kernels) keeps pointing at the unpatched builtin; inside
       the same scope every such name in the kernel's module is patched like ``tl``'s own attributes.
    5. The interpreter computes ``bool_block & bool_scalar`` (``chunk_hgrn``'s ``mask & (t < T)``) as
       int32 0/1 data, which its native masked load / store refuse ("mask has unsupported dtype"); the
       builder's ``create_masked_load`` / ``create_masked_store`` take such a mask as bool.
    6. ``libdevice.fast_cosf`` / ``fast_sinf`` (CyFA's clock rotation; ``FAST_MATH``) return None like
       ``log1p``; inside the same scope they map to the exact ``tl.cos`` / ``tl.sin`` they approximate.
    7. Not a language patch: ``host_guard_lifted`` lets a kernel's call skip a host-side *device* check
       (CyFA's ``validate_cyfa_inputs(require_cuda=True)`` refuses CPU tensors before any kernel runs)
       for one call, only in interpret mode.

Dry mode (``dry()``, FLA.md section 5b)
    Inside ``with dry():`` every interpreted kernel launch returns at once: fla's host code still
    runs and allocates every buffer it would allocate on CUDA, in the same order, on the CPU, so a
    memory profile of one call gives the op's tensor-allocation peak at any T in about a second.
    Caveats: output values are garbage (``torch.empty``); host code that branches on values a
    kernel computed sees uninitialised memory (check an op's host code before trusting a figure);
    on CUDA the caching allocator rounds blocks up to 512 bytes and Triton's autotuning and
    cache-flush buffers live outside the call; both must be added to a prediction made this way.

Never verify bf16 here: NumPy has no bf16, and interpreted bf16 results are wrong.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from profiler.core.isolated import (
    ChildFailure,
    ChildRaised,
    ChildTimedOut,
    call_isolated,
)
from profiler.core.lazy import lazy_import

interp = lazy_import('triton.runtime.interpreter')
triton = lazy_import('triton')
tl = lazy_import('triton.language')
libdevice = lazy_import('triton.language.extra.libdevice')
triton_autotuner = lazy_import('triton.runtime.autotuner')

#: dtypes whose interpreted results are meaningful (NumPy has no bfloat16).
INTERPRETABLE_DTYPES = ("float32", "float16")
BF16_REASON = "bf16 cannot be verified under Triton's interpreter (NumPy has no bfloat16; results are wrong)"
#: libdevice fast-math externs fla calls (CyFA's clock rotation) -> the exact ``tl`` function they approximate
FAST_MATH = {"fast_cosf": "cos", "fast_sinf": "sin"}

_state = threading.local()
_installed = False


class InterpretError(RuntimeError):
    """Interpret mode cannot be entered (or an isolated interpreted run failed)."""


def is_enabled() -> bool:
    """True once ``enable()`` has installed the interpreter patches in this process."""
    return _installed


def _fla_compiled_kernels_loaded() -> bool:
    """True if fla's kernels were decorated as compiled (not interpreted) JIT functions."""
    if "fla" not in sys.modules:
        return False
    mod = sys.modules.get("fla.ops.utils.op")
    if mod is None:
        try:  # fla imported but this module not yet: it will be decorated with the current env
            mod = importlib.import_module("fla.ops.utils.op")
        except Exception:  # noqa: BLE001 - fla unusable: nothing to interpret anyway
            return False

    return not isinstance(getattr(mod, "exp", None), interp.InterpretedFunction)


def enable() -> None:
    """Enter interpret mode in this process (idempotent). Call before anything imports fla.

    Raises ``InterpretError`` if fla's kernels were already compiled-decorated in this process.
    """
    global _installed
    if _installed:
        return
    # checked before touching the environment, so a refused call leaves the process as it was
    if _fla_compiled_kernels_loaded():
        raise InterpretError(
            "fla was imported in this process before Triton's interpreter was enabled, so its "
            "kernels are compiled JIT functions; enable interpret mode before importing fla, or use "
            "profiler.kernels.interpret.run_isolated() to run interpreted work in a fresh process")
    os.environ["TRITON_INTERPRET"] = "1"

    triton.knobs.runtime.interpret = True
    _install_patches()
    _installed = True


def _install_patches() -> None:
    # 1. single autotune config
    orig_autotune_run = triton_autotuner.Autotuner.run

    def single_config_run(self, *args, **kwargs):
        if len(self.configs) > 1:
            self.configs = self.configs[:1]
        return orig_autotune_run(self, *args, **kwargs)

    triton_autotuner.Autotuner.run = single_config_run

    # 2. + 3. extra patches inside the per-launch language patch scope
    def as_int(x) -> int:
        if isinstance(x, tl.core.tensor):
            return int(np.asarray(x.handle.data).item())
        if isinstance(x, tl.constexpr):
            return int(x.value)
        return int(x)

    def tensor_range(*args, **kwargs):
        if getattr(_state, "launch_depth", 0) == 0:
            return builtins.range(*args, **kwargs)
        bounds = [as_int(a) for a in args]
        return (tl.core.tensor(interp.TensorHandle(np.array(i, dtype=np.int32), tl.int32), tl.int32)
                for i in builtins.range(*bounds))

    def log1p(x, *args, **kwargs):
        return tl.log(1.0 + x)

    def _exact_math(name: str):
        def fn(x, *args, **kwargs):
            return getattr(tl, name)(x)
        return fn

    orig_patch_lang = interp._patch_lang

    def patch_lang(fn):
        scope = orig_patch_lang(fn)
        module = sys.modules.get(fn.__globals__.get("__name__", ""))
        if module is not None:
            scope.set_attr(module, "range", tensor_range)
            # 4. a language builtin bound to a module-level name (fla: ``gather = tl.gather``) escapes the
            #    patching of ``tl``'s own attributes: patch that name in the kernel's module too
            for name, member in list(fn.__globals__.items()):
                if tl.core.is_builtin(member):
                    interp._patch_attr(module, name, member, interp.interpreter_builder, scope)
        scope.set_attr(libdevice, "log1p", log1p)
        for name, exact in FAST_MATH.items():     # 6. CyFA's fast_cosf / fast_sinf
            scope.set_attr(libdevice, name, _exact_math(exact))
        return scope

    interp._patch_lang = patch_lang

    orig_grid_call = interp.GridExecutor.__call__

    def grid_call(self, *args, **kwargs):
        _state.launch_depth = getattr(_state, "launch_depth", 0) + 1
        try:
            return orig_grid_call(self, *args, **kwargs)
        finally:
            _state.launch_depth -= 1

    interp.GridExecutor.__call__ = grid_call

    # 5. masks that are int1 in Triton but int32 in the interpreter's data (``bool & bool`` after a
    #    broadcast, as in ``chunk_hgrn``): the native load / store refuse them; 0/1 values as bool
    def bool_mask(mask):
        data = getattr(mask, "data", None)
        if isinstance(data, np.ndarray) and data.dtype != np.bool_ and np.issubdtype(data.dtype, np.integer):
            return interp.TensorHandle(data.astype(np.bool_), mask.dtype)
        return mask

    orig_load = interp.InterpreterBuilder.create_masked_load
    orig_store = interp.InterpreterBuilder.create_masked_store

    def masked_load(self, ptrs, mask, *args, **kwargs):
        return orig_load(self, ptrs, bool_mask(mask), *args, **kwargs)

    def masked_store(self, ptrs, value, mask, *args, **kwargs):
        return orig_store(self, ptrs, value, bool_mask(mask), *args, **kwargs)

    interp.InterpreterBuilder.create_masked_load = masked_load
    interp.InterpreterBuilder.create_masked_store = masked_store


@contextlib.contextmanager
def host_guard_lifted(module: Any, name: str, **overrides: Any) -> Iterator[None]:
    """Within the block, ``module.name`` is called with ``overrides`` as keyword arguments (7. in the module
    doc): for fla host code that refuses CPU tensors by a device check alone (CyFA's
    ``validate_cyfa_inputs(require_cuda=True)``). Only while interpreting: raises ``InterpretError``
    otherwise, so a real CPU call still gets fla's own error."""
    if not _installed:
        raise InterpretError("host_guard_lifted() needs interpret mode: call profiler.kernels.interpret.enable()")
    orig = getattr(module, name)

    def lifted(*args, **kwargs):
        return orig(*args, **{**kwargs, **overrides})

    setattr(module, name, lifted)
    try:
        yield
    finally:
        setattr(module, name, orig)


# ----------------------------------------------------------------------------- dry mode

@dataclass
class DryStats:
    """What a ``dry()`` block skipped."""

    skipped_launches: int = 0


@contextlib.contextmanager
def dry() -> Iterator[DryStats]:
    """Skip every interpreted kernel body inside the block (host code and allocations still run).

    Requires interpret mode (``enable()``). See the module docstring for the caveats.
    """
    if not _installed:
        raise InterpretError("dry() needs interpret mode: call profiler.kernels.interpret.enable() first")

    stats = DryStats()
    orig_run = interp.InterpretedFunction.run

    def skipped(self, *args, grid=None, warmup=False, **kwargs):
        stats.skipped_launches += 1
        return None

    interp.InterpretedFunction.run = skipped
    try:
        yield stats
    finally:
        interp.InterpretedFunction.run = orig_run


# ----------------------------------------------------------------------------- isolation

def run_isolated(target: str, kwargs: dict | None = None, *, timeout_s: float = 600.0) -> Any:
    """Run ``target`` ("package.module:function" or "/path/file.py:function") with JSON ``kwargs``
    in a fresh interpreted process.

    An isolated call (``profiler.core.isolated.call_isolated``): the child has ``TRITON_INTERPRET=1``,
    calls ``enable()``, then ``function(**kwargs)``, and sends back its JSON-serialisable result.
    Use this from any process that has imported fla normally (tests, sweep workers). Raises
    ``InterpretError`` naming how the child failed (exception text, exit code or signal, timeout).
    """
    try:
        return call_isolated(target, kwargs, env=dict(os.environ, TRITON_INTERPRET="1"),
                             setup=(f"{__name__}:enable",), timeout_s=timeout_s, name="interpreted run")
    except ChildTimedOut as exc:
        raise InterpretError(f"interpreted run of {target} timed out after {timeout_s:.0f} s") from exc
    except ChildRaised as exc:
        tail = "\n".join(exc.traceback_text.strip().splitlines()[-15:])
        raise InterpretError(f"interpreted run of {target} failed ({exc.exc_type}: {exc.message}):\n{tail}") from exc
    except ChildFailure as exc:
        raise InterpretError(f"interpreted run of {target} failed: {exc}") from exc

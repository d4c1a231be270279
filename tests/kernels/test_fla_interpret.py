"""fla's real Triton kernels on CPU under Triton's interpreter (profiler.kernels.interpret).

Isolation: interpret mode must be entered before fla is imported, and the rest of the suite imports
fla normally (naive references), so every interpreted run happens in a fresh subprocess through
``profiler.kernels.interpret.run_isolated``: nothing here changes this pytest process (no env var, no
patch). One module-scoped subprocess runs every fla backend (all six mechanisms) at small shapes;
the tests then assert on its results. Interpreted timings are meaningless and are not asserted.
"""

import os
import sys

import pytest

from profiler.kernels.interpret import InterpretError, run_isolated

pytestmark = pytest.mark.interpret

KERNELS = ("softmax", "retnet", "lightnet", "gsa", "fox", "kda")
SHAPE = dict(lengths=[64], batches=[1], heads=2, head_dim=32, interpret=True, backends=["fla"])


def _child_suite(runs: list, dry_T: int) -> dict:
    """Runs in the interpreted child (one fla import for everything)."""
    from profiler.measure.verify import verify_many_json

    return {"verify": verify_many_json(runs=runs), "dry": _dry_probe(dry_T)}


@pytest.fixture(scope="module")
def child():
    """fp32 forward+backward of every fla backend vs reference and torch backend, then the dry-mode
    probe, in one fresh interpreted process."""
    runs = [dict(SHAPE, kernels=list(KERNELS), dtypes=["float32"], modes=["fwdbwd"])]
    return run_isolated(f"{__file__}:_child_suite", {"runs": runs, "dry_T": 65536}, timeout_s=600)


@pytest.fixture(scope="module")
def interpreted(child):
    return child["verify"]


@pytest.fixture(scope="module")
def interpreted_fp16():
    """fp16 forward of every fla backend (its own interpreted process: ``make test-long``)."""
    runs = [dict(SHAPE, kernels=list(KERNELS), dtypes=["float16"], modes=["fwd"])]
    return run_isolated("profiler.measure.verify:verify_many_json", {"runs": runs}, timeout_s=600)


def _rows(results, kernel, dtype):
    return [r for r in results if r["kernel"] == kernel and r["dtype"] == dtype]


@pytest.mark.parametrize("kernel", KERNELS)
def test_fla_backend_matches_reference_and_torch_fp32(interpreted, kernel):
    rows = _rows(interpreted, kernel, "float32")
    assert {r["against"] for r in rows} == {None, "sdpa" if kernel == "softmax" else "torch"}
    for r in rows:
        assert r["error"] is None, r["error"]
        c = r["correctness"]
        assert r["interpret"] and r["mode"] == "fwdbwd" and r["causal"]
        assert c["max_rel_err"] <= 1e-5 and c["grad_max_rel_err"] is not None
        assert c["grad_max_rel_err"] <= 1e-5, (r["against"], c)
        assert r["passed"]


@pytest.mark.long
@pytest.mark.parametrize("kernel", KERNELS)
def test_fla_backend_fp16_forward(interpreted_fp16, kernel):
    rows = _rows(interpreted_fp16, kernel, "float16")
    assert len(rows) == 2
    for r in rows:
        assert r["error"] is None, r["error"]
        c = r["correctness"]
        assert 0 < c["max_rel_err"] <= 5e-3  # fp16 rounding is visible, but small
        assert r["passed"]


def _dry_probe(T: int) -> dict:
    """Runs in the interpreted child: fla forward of softmax and FoX with kernel bodies skipped."""
    import torch

    from profiler.kernels import fox, softmax
    from profiler.kernels import interpret as fla_interpret
    from profiler.kernels.base import Shape
    from profiler.measure.memory import ProfilerMemoryMeter

    shape = Shape(1, T, 4, 64)
    out = {}
    for mod in (softmax, fox):
        k = mod.KERNEL
        x = k.make_inputs(shape, "float32", "cpu", 0)
        with torch.no_grad(), fla_interpret.dry() as stats:
            reading = ProfilerMemoryMeter().measure(lambda: k.backends["fla"].run(x, True))
        out[k.name] = {"peak": reading.peak_bytes, "model": k.memory_bytes(shape, 4, "fla", True, "fwd"),
                       "skipped": stats.skipped_launches}
    out["range_left_in_kernel_module"] = hasattr(sys.modules["fla.ops.attn.parallel"], "range")
    out["env"] = os.environ.get("TRITON_INTERPRET")
    return out


def test_dry_mode_gives_host_allocations_at_long_T(child):
    res = child["dry"]
    for name in ("softmax", "fox"):
        r = res[name]
        assert r["skipped"] >= 1
        # fla allocates exactly what the analytic model says (o, lse, and G for FoX)
        assert r["peak"] == r["model"], (name, r)
    assert res["range_left_in_kernel_module"] is False
    assert res["env"] == "1"


def test_enable_refuses_after_compiled_fla_import_and_leaves_env_alone():
    """In this (non-interpreting) process fla's kernels are compiled: enable() must refuse, untouched."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import fla.ops.utils.op  # noqa: F401 - compiled-decorated here, as in any test session
    from profiler.kernels import interpret as fla_interpret

    with pytest.raises(InterpretError, match="run_isolated"):
        fla_interpret.enable()
    assert os.environ.get("TRITON_INTERPRET") != "1" and not fla_interpret.is_enabled()


def test_run_isolated_reports_child_failure():
    with pytest.raises(InterpretError, match="failed"):
        run_isolated("profiler.core.units:parse_lengths", {"text": "nonsense"}, timeout_s=120)


def test_this_process_is_not_interpreting():
    assert os.environ.get("TRITON_INTERPRET") != "1"

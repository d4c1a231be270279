"""fla's feature-map / quadratic families (profiler.kernels.catalog_attn) under Triton's interpreter on CPU.

As test_fla_interpret_catalog.py: one fresh interpreted subprocess runs ``verify_many`` and the tests
assert on its rows; every backend is compared with its reference and with the torch backend.

* quick (``make test``): based (``parallel_based`` and ``fused_chunk_based``), rebased
  (``parallel_rebased``), ``parallel_stickbreaking_attn``, ``parallel_wall_attn`` (fp32) and
  ``parallel_parallax`` (fp16 only),
  forward + backward at B=1, T=130, H=1, D=16: T > 128 runs
  ``parallel_*``'s inter-block loop (its forward block is 128 tokens, backward 64) and
  ``fused_chunk_based``'s chunk loop (16); D=16 is ``fused_chunk_based``'s limit.
* long: fp16 forward + backward of every backend, the layers' Dv != D (D=16, Dv=32), and GQA with a
  sliding window for the kernels that take them (H=4 over 2 key/value heads, window 40).
* nsa (long: ~30-60 s interpreted, its GQA tile needs 16 query heads): ``parallel_nsa`` + the sliding
  branch through ``parallel_attn``, fp32 fwd+bwd at B=1, T=130 (three 64-token blocks, the last
  partial), H=16 over one key/value head, D=16, with a 40-key window (the band is exercised), and fp16
  at H=32 over two key/value heads.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from interpreted_checks import check_rows, run_interpreted

from profiler.kernels import catalog_attn, registry
from profiler.kernels.interpret import run_isolated

pytestmark = pytest.mark.interpret

NAMES = [n for n in catalog_attn.NAMES if n != "nsa"]   # nsa: its own (long) test below
FP32 = [n for n in NAMES if all("float32" in b.dtypes for b in registry()[n].backends.values())]
FP16_ONLY = [n for n in NAMES if n not in FP32]          # parallel_parallax: fp16 / bf16 only
SHAPE = dict(lengths=[130], batches=[1], heads=1, head_dim=16, interpret=True)


_run = run_interpreted


_check = check_rows


def _every_fla_backend():
    return {(n, b) for n in NAMES for b in registry()[n].backends if b != "torch"}


def test_every_fla_backend_matches_reference_and_torch_fp32():
    rows = _run([dict(SHAPE, kernels=FP32, dtypes=["float32"], modes=["fwdbwd"]),
                 dict(SHAPE, kernels=FP16_ONLY, dtypes=["float16"], modes=["fwdbwd"])])
    _check([r for r in rows if r["dtype"] == "float32"], 1e-5)
    _check([r for r in rows if r["dtype"] == "float16"], 5e-3)
    assert {(r["kernel"], r["backend"]) for r in rows} == _every_fla_backend()
    assert {r["against"] for r in rows} == {None, "torch"}


@pytest.mark.long
def test_every_fla_backend_fp16_and_value_dim():
    rows = _run([dict(SHAPE, kernels=NAMES, dtypes=["float16"], modes=["fwd", "fwdbwd"]),
                 dict(SHAPE, kernels=["parallax"], dtypes=["float16"], modes=["fwdbwd"], lengths=[100])])
    _check(rows, 5e-3)
    assert {(r["kernel"], r["backend"]) for r in rows} == _every_fla_backend()
    # the layers' shape: feature dim 16, head dim 32 (Dv != D), through the same check
    child = str(Path(__file__).with_name("test_fla_interpret_catalog_attn.py")) + ":_value_dim_child"
    res = run_isolated(child, {}, timeout_s=1200)
    assert set(res) == {f"{n}/{b}" for n, b in _every_fla_backend() if n in FP32
                        and "value_dim" in registry()[n].shape_axes}
    for key, (err, passed) in res.items():
        assert passed and err <= 1e-5, (key, err)
    child = str(Path(__file__).with_name("test_fla_interpret_catalog_attn.py")) + ":_window_child"
    res = run_isolated(child, {}, timeout_s=1200)
    assert {k.split("/")[0] for k in res} == {n for n in NAMES if "window" in registry()[n].shape_axes}
    for key, (err, passed, tol) in res.items():
        assert passed and err <= tol, (key, err)


def _window_child() -> dict:
    """In the interpreted child: GQA (H=4 over 2 kv heads) with a 40-key window, fwd+bwd, each fla backend
    of the kernels that take a window (fp32, or fp16 where the kernel has no fp32)."""
    from profiler.kernels.base import Shape
    from profiler.kernels.verify import verify_against_backend

    out = {}
    for n in NAMES:
        spec = registry()[n]
        if "window" not in spec.shape_axes:
            continue
        for b in spec.backends:
            if b == "torch":
                continue
            dt = "float32" if "float32" in spec.backends[b].dtypes else "float16"
            [c] = verify_against_backend(spec, b, Shape(1, 130, 4, 16, kv_heads=2, window=40), dt, "cpu", True,
                                         "fwdbwd", interpret=True)
            out[f"{n}/{b}"] = (max(c.max_rel_err, c.grad_max_rel_err or 0.0), c.passed, c.tolerance)
    return out


def _value_dim_child() -> dict:
    """In the interpreted child: each fla backend that takes a value dim at D=16, Dv=32 against the
    reference (fwd+bwd, fp32)."""
    from profiler.kernels.base import Shape
    from profiler.kernels.verify import verify_against_backend

    out = {}
    for n in FP32:
        spec = registry()[n]
        if "value_dim" not in spec.shape_axes:
            continue
        for b in spec.backends:
            if b == "torch":
                continue
            [c] = verify_against_backend(spec, b, Shape(1, 130, 1, 16, value_dim=32), "float32", "cpu", True,
                                         "fwdbwd", interpret=True)
            out[f"{n}/{b}"] = (max(c.max_rel_err, c.grad_max_rel_err or 0.0), c.passed)
    return out


@pytest.mark.long
def test_nsa_matches_reference_with_a_window_and_gqa():
    child = str(Path(__file__).with_name("test_fla_interpret_catalog_attn.py")) + ":_nsa_child"
    res = run_isolated(child, {}, timeout_s=1200)
    assert set(res) == {"fp32-window", "fp16-gqa"}
    assert res["fp32-window"][1] and res["fp32-window"][0] <= 1e-5, res
    assert res["fp16-gqa"][1] and res["fp16-gqa"][0] <= 5e-3, res


def _nsa_child() -> dict:
    from profiler.kernels.base import Shape
    from profiler.kernels.verify import verify_against_backend

    spec, out = registry()["nsa"], {}
    for key, shape, dtype in (("fp32-window", Shape(1, 130, 16, 16, window=40), "float32"),
                              ("fp16-gqa", Shape(1, 130, 32, 16, kv_heads=2), "float16")):
        [c] = verify_against_backend(spec, "fla", shape, dtype, "cpu", True, "fwdbwd", interpret=True)
        out[key] = (max(c.max_rel_err, c.grad_max_rel_err or 0.0), c.passed)
    return out

"""The generalized delta-rule catalogue's fla backends (profiler.kernels.catalog_delta) under Triton's
interpreter on CPU, as test_fla_interpret_catalog.py: one fresh interpreted subprocess
(``interpret.run_isolated``) per check runs ``verify_many`` and the tests assert on its rows. Each
kernel is compared with its fp32 reference, and with the torch engine backend where it has one.

Shapes: the smallest that run two chunks, the second partial (the inter-chunk state kernels run):
T = 20 for chunk_dplr_delta_rule (chunk 16), T = 40 for Gated DeltaProduct (80 sub-steps), T = 140 for
chunk_hgrn (chunk 128), T = 72 for the chunk-64 kernels; B=1, H=1, D=16 (the interpreter's cost is per
program instance).

* quick (``make test``): each kernel's ``chunk_*`` backend (``fla``), forward, fp32 (fp16 for the ones
  declared fp16 / bf16: RWKV-7's layer call, chunk_gated_delta_product, chunk_momentum_delta_rule).
* long (``make test-long``): the chunk kernels' backward, and every other fla backend (RWKV-7's fla-exact,
  the fused-recurrent kernels; fwd+bwd where they have one) in fp32 and fp16.
"""

from __future__ import annotations

import pytest
from interpreted_checks import check_rows, run_interpreted

from profiler.kernels import catalog_delta, registry
from profiler.kernels.interpret import run_isolated

pytestmark = pytest.mark.interpret

NAMES = list(catalog_delta.NAMES)
T_OF = {"dplr_delta_rule": 20, "gated_delta_product": 40, "hgrn": 140}
BASE = dict(batches=[1], heads=1, head_dim=16, interpret=True)


_run = run_interpreted


def _plan(name: str, backend: str, dtype: str, backward: bool = True) -> dict:
    b = registry()[name].backends[backend]
    mode = "fwdbwd" if b.backward and backward else "fwd"
    return dict(BASE, lengths=[T_OF.get(name, 72)], kernels=[name], backends=[backend], dtypes=[dtype], modes=[mode])


def _check(rows, tol):
    check_rows(rows, tol)
    for r in rows:   # compared with the torch engine only where the kernel has one
        assert r["against"] in ((None, "torch") if "torch" in registry()[r["kernel"]].backends else (None,))


TOL = {"float32": 1e-5, "float16": 5e-3}


def _dtype(name: str, backend: str) -> str:
    return "float32" if "float32" in registry()[name].backends[backend].dtypes else "float16"


@pytest.fixture(scope="module")
def quick():
    return _run([_plan(n, "fla", _dtype(n, "fla"), backward=False) for n in NAMES])


@pytest.mark.parametrize("name", NAMES)
def test_chunk_kernel_matches_reference(quick, name):
    rows = [r for r in quick if r["kernel"] == name]
    _check(rows, TOL)
    # an engine member is also compared with its torch backend
    assert {r["against"] for r in rows} == ({None, "torch"} if "torch" in registry()[name].backends else {None})
    assert {r["mode"] for r in rows} == {"fwd"}


@pytest.mark.long
def test_every_other_fla_backend_matches_reference():
    """Every other fla backend in fp32 and fp16 (fwd+bwd where it has a backward), and the chunk kernels'
    backward (fp32, or fp16 where declared so)."""
    want = {(n, b, dt) for n in NAMES for b in registry()[n].backends if b not in ("fla", "torch")
            for dt in ("float32", "float16") if dt in registry()[n].backends[b].dtypes}
    grads = [n for n in NAMES if registry()[n].backends["fla"].backward]
    rows = _run([_plan(*w) for w in sorted(want)] + [_plan(n, "fla", _dtype(n, "fla")) for n in grads])
    _check(rows, TOL)
    assert {(r["kernel"], r["backend"], r["dtype"]) for r in rows if r["backend"] != "fla"} == want
    assert {r["kernel"] for r in rows if r["backend"] == "fla" and r["mode"] == "fwdbwd"} == set(grads)


VARLEN = [(n, b) for n in NAMES for b, be in registry()[n].backends.items() if be.varlen == "cu_seqlens"]


def _varlen_child(cases: list) -> dict:
    """In the interpreted child: each sequence of a packed batch (``fixed:40,24,64``) against the reference on
    that sequence alone, and the control without ``cu_seqlens`` (the state must leak), as
    test_fla_varlen_interpret.py does for the hand-written kernels."""
    from profiler.core.records import PointSpec
    from profiler.kernels import get_kernel, varlen
    from profiler.kernels.varlen import options

    out = {}
    for kname, bname in cases:
        spec = get_kernel(kname)
        dtype = "float32" if "float32" in spec.backends[bname].dtypes else "float16"
        point = PointSpec(kname, bname, "cpu", dtype, "fwd", 1, 128, 1, 16, True, interpret=True,
                          options=tuple(sorted(options("fixed:40,24,64", 0))))
        c = varlen.check(spec, point, "cpu", 0, None)
        pack = varlen.packing(point)
        inputs = varlen.make_inputs(spec, point, "cpu", 0, pack)
        dense = {k: v for k, v in inputs.items() if k not in ("cu_seqlens", "max_seqlen")}
        leak = spec.backends[bname].run(dense, True).float()
        packed = spec.backends[bname].run(inputs, True).float()
        out[f"{kname}/{bname}"] = {"passed": c.passed, "errs": list(c.per_sequence_rel_err), "tol": c.tolerance,
                                   "leak": float((leak - packed).abs().max())}
    return out


@pytest.mark.long
def test_fla_cu_seqlens_matches_each_sequence_alone():
    res = run_isolated(f"{__file__}:_varlen_child", {"cases": VARLEN}, timeout_s=1200)
    assert set(res) == {f"{k}/{b}" for k, b in VARLEN}
    for case, r in res.items():
        assert len(r["errs"]) == 3 and r["passed"] and max(r["errs"]) <= r["tol"], (case, r)
        assert r["leak"] > 1e-3, (case, r)     # without cu_seqlens the later sequences see the earlier ones

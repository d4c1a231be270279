"""fla's cu_seqlens paths under Triton's interpreter on CPU (numerics only, never timing).

One fresh interpreted subprocess (``run_isolated``, as tests/kernels/test_fla_interpret.py) runs every
fla backend that declares ``Backend.varlen == "cu_seqlens"`` on a packed batch of three sequences
(``fixed:40,24,64``: boundaries inside and across fla's 64-token chunks) and checks each sequence
against the fp32 reference on that sequence alone (``profiler.kernels.varlen.check``). The control
runs the same op on the same packed tensors *without* ``cu_seqlens``: the state then leaks across
the boundaries, and the per-sequence check must see it.
"""

import pytest

from profiler.kernels.interpret import run_isolated

pytestmark = [pytest.mark.interpret, pytest.mark.long]

CASES = [("softmax", "fla"), ("retnet", "fla"), ("retnet", "fla-fused-chunk"), ("retnet", "fla-recurrent"),
         ("retnet", "fla-parallel"), ("kda", "fla"), ("kda", "fla-recurrent"), ("lightnet", "fla"),
         ("lightnet", "fla-recurrent"), ("gsa", "fla"), ("gsa", "fla-recurrent"), ("fox", "fla")]


def _child(cases: list) -> dict:
    """In the interpreted child: per-sequence check of each fla backend, and the leak control."""
    from profiler.core.records import PointSpec
    from profiler.kernels import get_kernel, varlen
    from profiler.kernels.varlen import options

    out = {}
    for kname, bname in cases:
        spec = get_kernel(kname)
        point = PointSpec(kname, bname, "cpu", "float32", "fwd", 1, 128, 2, 32, True, interpret=True,
                          options=tuple(sorted(options("fixed:40,24,64", 0))))
        c = varlen.check(spec, point, "cpu", 0, None)
        # control: the same packed tensors through the op with the offsets withheld
        pack = varlen.packing(point)
        inputs = varlen.make_inputs(spec, point, "cpu", 0, pack)
        dense = {k: v for k, v in inputs.items() if k not in ("cu_seqlens", "max_seqlen")}
        leak = spec.backends[bname].run(dense, True)
        packed = spec.backends[bname].run(inputs, True)
        out[f"{kname}/{bname}"] = {"passed": c.passed, "errs": list(c.per_sequence_rel_err), "tol": c.tolerance,
                                   "leak": float((leak - packed).abs().max())}
    return out


@pytest.fixture(scope="module")
def results():
    return run_isolated(f"{__file__}:_child", {"cases": CASES}, timeout_s=900)


@pytest.mark.parametrize("case", [f"{k}/{b}" for k, b in CASES])
def test_fla_cu_seqlens_matches_each_sequence_alone(results, case):
    r = results[case]
    assert len(r["errs"]) == 3 and r["passed"], r
    assert max(r["errs"]) <= r["tol"]
    # without cu_seqlens the later sequences see the earlier ones: the outputs differ
    assert r["leak"] > 1e-3, r

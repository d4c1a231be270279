"""fla backends with grouped key/value heads, Dv != D and a sliding window, under Triton's interpreter.

fla 0.6.0's ``parallel_attn`` takes GQA, Dv and ``window_size`` natively; retention and KDA get k, v
(and KDA's g, beta) repeated per query head. One fresh interpreted subprocess
(``profiler.kernels.interpret.run_isolated``) verifies each against the fp32 reference, forward and
gradients (bwd mode included). Correctness only: interpreted timings are never asserted.
"""

import pytest

from profiler.kernels.interpret import run_isolated

pytestmark = [pytest.mark.interpret, pytest.mark.long]

S = dict(B=1, T=64, H=4, D=32)
CASES = [("softmax", "fla", dict(S, kv_heads=1), "fwdbwd"), ("softmax", "fla", dict(S, value_dim=64), "fwdbwd"),
         ("softmax", "fla", dict(S, window=16), "fwdbwd"),
         ("softmax", "fla", dict(S, kv_heads=2, value_dim=64, window=16), "bwd"),
         ("retnet", "fla", dict(S, kv_heads=2, value_dim=64), "fwdbwd"),
         ("kda", "fla", dict(S, kv_heads=2, value_dim=64), "fwdbwd")]


def _child(cases):
    from profiler.kernels import registry
    from profiler.kernels.base import Shape
    from profiler.kernels.verify import verify_point_against_reference

    out = []
    for kernel, backend, shp, mode in cases:
        c = verify_point_against_reference(registry()[kernel], backend, Shape(**shp), "float32", "cpu", True, mode,
                                           interpret=True)
        out.append(dict(case=[kernel, backend, shp, mode], passed=c.passed, rel=c.max_rel_err, grad=c.grad_max_rel_err))
    return out


@pytest.fixture(scope="module")
def results():
    return run_isolated(f"{__file__}:_child", {"cases": CASES}, timeout_s=900)


@pytest.mark.parametrize("i", range(len(CASES)))
def test_fla_takes_the_shape_axes(results, i):
    r = results[i]
    assert r["case"][0] == CASES[i][0]
    assert r["passed"] and r["rel"] <= 1e-5 and r["grad"] is not None and r["grad"] <= 1e-5, r

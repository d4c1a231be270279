"""fla's catalogue backends (profiler.kernels.catalog) under Triton's interpreter on CPU.

As test_fla_interpret.py: one fresh interpreted subprocess (``interpret.run_isolated``) per check runs
``verify_many`` and the tests assert on its rows. Shape: T=80 (two chunks of 64, the second partial,
so the inter-chunk state kernels run), B=1, H=2, D=32. Every backend is compared with the fp32
reference and with the engine's torch backend.

* quick (``make test``): each family's ``chunk_*`` kernel (``fla``), forward + backward, fp32
  (``chunk_delta_rule`` refuses fp32: fp16).
* long (``make test-long``): every other fla backend (fused-chunk, parallel: fwd+bwd; fused-recurrent:
  forward, it is the decode kernel) and fp16 forwards of the chunk kernels.
"""

from __future__ import annotations

import pytest
from interpreted_checks import check_rows, run_interpreted

from profiler.kernels import catalog, registry
from profiler.kernels.interpret import run_isolated

pytestmark = pytest.mark.interpret

NAMES = list(catalog.NAMES)
SHAPE = dict(lengths=[80], batches=[1], heads=2, head_dim=32, interpret=True)
FP32 = [n for n in NAMES if "float32" in registry()[n].backends["fla"].dtypes]
FP16_ONLY = [n for n in NAMES if n not in FP32]
OTHER = sorted({b for n in NAMES for b in registry()[n].backends if b not in ("torch", "fla")})


_run = run_interpreted


_check = check_rows


@pytest.fixture(scope="module")
def quick():
    return _run([dict(SHAPE, kernels=FP32, backends=["fla"], dtypes=["float32"], modes=["fwdbwd"]),
                 dict(SHAPE, kernels=FP16_ONLY, backends=["fla"], dtypes=["float16"], modes=["fwdbwd"])])


@pytest.mark.parametrize("name", NAMES)
def test_chunk_kernel_matches_reference_and_engine(quick, name):
    rows = [r for r in quick if r["kernel"] == name]
    assert {r["against"] for r in rows} == {None, "torch"}
    _check(rows, 1e-5 if name in FP32 else 5e-3)


@pytest.mark.long
def test_every_other_fla_backend_matches_reference_and_engine():
    runs = []
    for b in OTHER:
        ks = [n for n in NAMES if b in registry()[n].backends]
        grad = [n for n in ks if registry()[n].backends[b].backward and b != "fla-recurrent"]
        fwd = [n for n in ks if n not in grad]
        runs += [dict(SHAPE, kernels=grad, backends=[b], dtypes=["float32"], modes=["fwdbwd"])] if grad else []
        runs += [dict(SHAPE, kernels=fwd, backends=[b], dtypes=["float32"], modes=["fwd"])] if fwd else []
    runs.append(dict(SHAPE, kernels=NAMES, backends=["fla"], dtypes=["float16"], modes=["fwd"]))
    rows = _run(runs)
    _check([r for r in rows if r["dtype"] == "float32"], 1e-5)
    _check([r for r in rows if r["dtype"] == "float16"], 5e-3)
    seen = {(r["kernel"], r["backend"]) for r in rows}
    assert seen >= {(n, b) for n in NAMES for b in registry()[n].backends if b != "torch"}


@pytest.mark.long
def test_fla_decode_with_carried_state_matches_full_sequence():
    """Each family's fused_recurrent_* from the engine's carried state (decode 2 steps, streaming chunk
    3, after T=8), as test_kernels_decode_fla does for the hand-written mechanisms."""
    from pathlib import Path

    child = str(Path(__file__).with_name("test_kernels_decode_fla.py")) + ":_child"
    names = [n for n in NAMES if registry()[n].recurrent is not None and registry()[n].recurrent.fla is not None]
    res = run_isolated(child, {"kernels": names}, timeout_s=1200)
    assert set(res) == {f"{n}/{p}" for n in names for p in ("decode", "streaming")}
    for key, (err, passed) in res.items():
        assert passed and err < 1e-5, (key, err)

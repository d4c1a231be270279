"""profiler.measure.verify: verify_point_against_reference semantics (errors, gradients, prefixes, tolerances) and verify_many."""

import math
import warnings

import pytest

from profiler.core.errors import UnavailableError, UsageError
from profiler.kernels import softmax
from profiler.kernels.base import Backend, Shape
from profiler.measure.verify import (
    TF32_TOLERANCE,
    TOLERANCES,
    VerifyResult,
    resolve_backends,
    tolerance_for,
    verify_many,
    verify_point_against_reference,
)

warnings.filterwarnings("ignore", message="Triton is not supported")


def _patch_backend(monkeypatch, run):
    monkeypatch.setitem(softmax.KERNEL.backends, "naive", Backend("naive", run, causal=(True, False)))


def test_correct_backend_passes_with_forward_and_gradient_errors():
    c = verify_point_against_reference("softmax", "sdpa", Shape(2, 70, 2, 32), "float32", "cpu", True, "fwdbwd")
    assert c.passed and c.checked_T == 70 and c.tolerance == TOLERANCES["float32"]
    assert 0 <= c.max_rel_err <= 1e-5 and c.max_abs_err >= 0
    assert c.grad_max_rel_err is not None and c.grad_max_rel_err <= 1e-5
    assert "fp64" in c.reference
    fwd = verify_point_against_reference("softmax", "sdpa", Shape(2, 70, 2, 32), "float32", "cpu", True, "fwd")
    assert fwd.grad_max_rel_err is None and fwd.max_rel_err == pytest.approx(c.max_rel_err)


def test_wrong_forward_fails(monkeypatch):
    _patch_backend(monkeypatch, lambda x, causal: softmax.run_sdpa(x, causal) * (1 + 1e-4))
    c = verify_point_against_reference("softmax", "naive", Shape(1, 40, 2, 32), "float32", "cpu", False, "fwd")
    assert not c.passed and 5e-5 < c.max_rel_err < 2e-4


def test_wrong_gradient_fails_only_in_fwdbwd(monkeypatch):
    def run(x, causal):  # right forward, gradients scaled by 1.01
        o = softmax.run_sdpa(x, causal)
        return o * 1.01 - (o * 0.01).detach()

    _patch_backend(monkeypatch, run)
    shape = Shape(1, 40, 2, 32)
    assert verify_point_against_reference("softmax", "naive", shape, "float32", "cpu", True, "fwd").passed
    c = verify_point_against_reference("softmax", "naive", shape, "float32", "cpu", True, "fwdbwd")
    assert not c.passed and c.max_rel_err <= 1e-5 and c.grad_max_rel_err == pytest.approx(0.01, rel=1e-3)


def test_non_finite_output_fails(monkeypatch):
    _patch_backend(monkeypatch, lambda x, causal: softmax.run_sdpa(x, causal) * float("nan"))
    c = verify_point_against_reference("softmax", "naive", Shape(1, 8, 1, 32), "float32", "cpu", True, "fwd")
    assert not c.passed and math.isinf(c.max_rel_err)


def test_long_causal_T_compares_a_prefix_exactly(monkeypatch):
    c = verify_point_against_reference("softmax", "sdpa", Shape(1, 300, 2, 32), "float32", "cpu", True, "fwdbwd", max_T=128)
    assert c.passed and c.checked_T == 128

    def run(x, causal):  # wrong in row 5 only
        o = softmax.run_sdpa(x, causal).clone()
        o[:, 5] += 1.0
        return o

    _patch_backend(monkeypatch, run)
    assert not verify_point_against_reference("softmax", "naive", Shape(1, 300, 2, 32), "float32", "cpu", True, "fwd", max_T=128).passed


def test_long_non_causal_T_checks_query_rows_against_all_keys(monkeypatch):
    c = verify_point_against_reference("fox", "torch", Shape(1, 1000, 2, 32), "float32", "cpu", False, "fwdbwd", max_T=128)
    assert c.passed and c.checked_T == 64  # clamp(128**2 // 1000, 64, 128)

    def run(x, causal):  # ignores the last key: visible to every query row when non-causal
        return softmax.run_sdpa(dict(x, k=x["k"][:, :-1], v=x["v"][:, :-1]), causal)

    _patch_backend(monkeypatch, run)
    bad = verify_point_against_reference("softmax", "naive", Shape(1, 1000, 2, 32), "float32", "cpu", False, "fwd", max_T=128)
    assert not bad.passed


def test_fp16_uses_the_fp16_tolerance():
    c = verify_point_against_reference("fox", "torch", Shape(1, 64, 2, 32), "float16", "cpu", True, "fwdbwd")
    assert c.tolerance == TOLERANCES["float16"] and c.passed
    assert c.max_rel_err > 1e-6  # the fp16 output really is compared


def test_against_another_backend():
    from profiler.measure.verify import verify_against_backend

    ref, other = verify_against_backend("softmax", "naive", Shape(1, 50, 2, 32), "float32", "cpu", True, "fwdbwd",
                               oracles=(None, "sdpa"))
    assert ref.passed and other.passed and "sdpa" in other.reference


def test_tolerance_table():
    assert tolerance_for("float32") == 1e-5
    assert tolerance_for("float16") > tolerance_for("float32")
    assert tolerance_for("bfloat16") > tolerance_for("float16")
    assert tolerance_for("float32", ("fla", "triton"), "cuda:0") == TF32_TOLERANCE
    assert tolerance_for("float32", ("fla", "triton"), "cpu") == 1e-5


@pytest.mark.parametrize("args, exc, fragment", [
    (("nope", "sdpa", Shape(1, 8, 1, 32), "float32", "cpu", True, "fwd"), UsageError, "valid: "),
    (("softmax", "nope", Shape(1, 8, 1, 32), "float32", "cpu", True, "fwd"), UsageError, "valid: "),
    (("softmax", "sdpa", Shape(1, 8, 1, 32), "fp33", "cpu", True, "fwd"), UsageError, "float32"),
    (("softmax", "sdpa", Shape(1, 8, 1, 32), "float32", "cpu", True, "backward"), UsageError, "fwdbwd"),
    (("fox", "torch", Shape(1, 8, 1, 512), "float32", "cpu", True, "fwd"), UsageError, "limit of 256"),
    (("softmax", "fla", Shape(1, 8, 1, 512), "float32", "cuda", True, "fwd"), UsageError, "limit of 256"),
    (("fox", "fla", Shape(1, 8, 1, 32), "float32", "cpu", False, "fwd"), UsageError, "non-causal"),
    (("fox", "fla", Shape(1, 8, 1, 32), "float32", "cpu", True, "fwd"), UnavailableError, "--interpret"),
    (("softmax", "sdpa-cudnn", Shape(1, 8, 1, 16), "float16", "cpu", True, "fwd"), UnavailableError, "cuda"),
])
def test_bad_requests_raise_before_running(args, exc, fragment):
    with pytest.raises(exc) as err:
        verify_point_against_reference(*args)
    assert fragment in str(err.value)


def test_bf16_refused_under_interpreter_without_entering_it():
    import os

    with pytest.raises(UsageError, match="bf16"):
        verify_point_against_reference("fox", "fla", Shape(1, 8, 1, 32), "bfloat16", "cpu", True, "fwd", interpret=True)
    assert os.environ.get("TRITON_INTERPRET") != "1"


def test_resolve_backends():
    pairs = resolve_backends(["softmax", "fox"], None, "cpu", False)
    assert ("softmax", "sdpa") in pairs and ("softmax", "naive") in pairs and ("fox", "torch") in pairs
    cpu_pinned = {"sdpa-math", "flex"}   # issue 17: these run on CPU; the CUDA-only pins do not
    assert cpu_pinned <= {b for _, b in pairs}
    assert not any(b in ("fla", "flash-attn") or (b.startswith("sdpa-") and b not in cpu_pinned) for _, b in pairs)
    assert resolve_backends(["softmax", "fox"], None, "cpu", True) == [("softmax", "fla"), ("fox", "fla")]
    with pytest.raises(UsageError, match="valid: "):
        resolve_backends(["softmax"], ["sdpaa"], "cpu", False)
    with pytest.raises(UnavailableError):
        resolve_backends(["softmax"], ["fla"], "cpu", False)


def test_verify_many_covers_every_combination():
    seen = []
    res = verify_many(["softmax", "fox"], ["sdpa", "torch"], lengths=[17, 40], batches=[1], heads=1, head_dim=32,
                      dtypes=["float32"], modes=["fwd", "fwdbwd"], progress=seen.append)
    # 2 kernels x 1 backend each x 2 modes x 2 causal x 2 lengths
    assert len(res) == 16 and seen == res
    assert all(isinstance(r, VerifyResult) and r.passed for r in res)
    assert {(r.kernel, r.backend) for r in res} == {("softmax", "sdpa"), ("fox", "torch")}
    d = res[0].to_dict()
    assert d["passed"] is True and d["shape"]["T"] in (17, 40) and "max_rel_err" in d["correctness"]


def test_verify_many_turns_backend_crashes_into_results(monkeypatch):
    def boom(x, causal):
        raise RuntimeError("kernel exploded")

    _patch_backend(monkeypatch, boom)
    res = verify_many(["softmax"], ["naive"], lengths=[8], batches=[1], heads=1, head_dim=32,
                      modes=["fwd"], causal=[True])
    assert len(res) == 1 and not res[0].passed and "kernel exploded" in res[0].error


def test_T1_zero_gradients_are_not_judged_on_their_own_zero_scale():
    """At T=1 dq and dk are exactly 0 in the reference; the backend's rounding noise must pass."""
    for kernel, backend in (("softmax", "sdpa"), ("fox", "torch")):
        c = verify_point_against_reference(kernel, backend, Shape(2, 1, 2, 32), "float32", "cpu", True, "fwdbwd")
        assert c.passed and c.grad_max_rel_err < 1e-5, (kernel, c)


def test_verify_many_skips_a_dtype_the_backend_lacks_with_a_reason(monkeypatch):
    """`serprof verify --dtype fp32,bf16` on CUDA stopped with exit 2 at softmax/sdpa-flash in fp32;
    an unsupported (backend, dtype) is now a skipped result with the reason, the rest still runs."""
    import dataclasses

    b = softmax.KERNEL.backends["naive"]
    monkeypatch.setitem(softmax.KERNEL.backends, "naive", dataclasses.replace(b, dtypes=("float32",)))
    seen = []
    res = verify_many(["softmax"], ["naive", "sdpa"], lengths=[8], batches=[1], heads=1, head_dim=32,
                      dtypes=["float32", "bfloat16"], modes=["fwd"], causal=[True], progress=seen.append)
    assert seen == res and len(res) == 4
    skipped = [r for r in res if r.skipped]
    assert [(r.backend, r.dtype) for r in skipped] == [("naive", "bfloat16")]
    assert "does not support bfloat16; valid: float32" in skipped[0].skipped
    assert not skipped[0].failed and not skipped[0].passed and skipped[0].correctness is None
    assert all(r.passed and not r.failed for r in res if not r.skipped)
    assert skipped[0].to_dict()["skipped"].startswith("softmax/naive")
    # an unknown dtype is still an input error
    with pytest.raises(UsageError, match="unknown dtype"):
        verify_many(["softmax"], ["naive"], lengths=[8], batches=[1], heads=1, head_dim=32,
                    dtypes=["fp33"], modes=["fwd"], causal=[True])

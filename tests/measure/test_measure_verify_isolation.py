"""``serprof verify`` keeps one backend's failure to itself (what a real H200 showed on 2026-12-04).

A plugin kernel models the three things seen there: a sticky CUDA fault (fla's ``chunk_gla`` in fp32 at
head dim 16 raised "CUDA error: misaligned address", after which every call of that process failed), a
library declining the machine (fla's gated chunk backward on Hopper with Triton < 3.7.1), and a
combination the backend finds it cannot do only when called (``UnavailableError``). On CUDA each
(kernel, backend) runs in its own process; ``jobs`` > 1 does the same on CPU, which is how this is tested.
"""

from __future__ import annotations

import os
import textwrap

import pytest

import profiler.kernels as K
from profiler.kernels import origins
from profiler.measure.verify import default_jobs, verify_many

PLUGIN = textwrap.dedent('''
    """Backends that fail the ways real GPUs and libraries do (test plugin)."""
    import torch

    from profiler.core.errors import UnavailableError
    from profiler.kernels import Backend, KernelSpec, make_qkv

    POISONED = []
    FAULT = "CUDA error: misaligned address"
    REFUSAL = ("Triton >= 3.4.0 and < 3.7.1 on Hopper GPUs produces incorrect results for gated chunk_bwd_dqkwg "
               "(see #640). Please upgrade Triton to >= 3.7.1 or install tilelang: `pip install tilelang`")


    def _sticky():
        if POISONED:   # a poisoned CUDA context: every later call of this process fails the same way
            raise getattr(torch, "AcceleratorError", RuntimeError)(POISONED[0])


    def good(x, causal):
        _sticky()
        return reference(x, causal)


    def poison(x, causal):
        POISONED.append(FAULT)
        _sticky()


    def declines(x, causal):
        _sticky()
        raise RuntimeError(REFUSAL)


    def narrow(x, causal):
        _sticky()
        if x["q"].shape[0] > 1:
            raise UnavailableError("narrow runs one stream at a time; use --batch 1")
        return reference(x, causal)


    def reference(x, causal):
        q, k, v = x["q"].float(), x["k"].float(), x["v"].float()
        s = torch.einsum("bthd,bshd->bhts", q, k)
        T = q.shape[1]
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
        return torch.einsum("bhts,bshd->bthd", s, v)


    KERNEL = KernelSpec(
        name="faulty", title="faulty (test)", family="softmax", make_inputs=make_qkv,
        backends={"a_poison": Backend("a_poison", poison), "b_good": Backend("b_good", good),
                  "c_declines": Backend("c_declines", declines), "d_narrow": Backend("d_narrow", narrow)},
        reference=reference, reference_name="fp32 softmax", flops=lambda s, c: 1.0,
        bytes_moved=lambda s, i, c: 1.0, memory_bytes=lambda s, i, b, c, m: 1, default_backend="b_good")
''')


@pytest.fixture
def faulty(tmp_path, monkeypatch):
    (tmp_path / "faulty_kernels.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setattr(K, "_modules", {})
    saved = dict(origins.ORIGINS)
    K.use_kernel_modules(["faulty_kernels"])
    yield
    origins.ORIGINS.clear()
    origins.ORIGINS.update(saved)


def _by_backend(results):
    out: dict[str, list] = {}
    for r in results:
        out.setdefault(r.backend, []).append(r)
    return out


def _run(jobs):
    return _by_backend(verify_many(["faulty"], None, lengths=(9,), batches=(1, 2), heads=1, head_dim=8,
                                   modes=("fwd",), device="cpu", jobs=jobs))


def test_in_one_process_a_device_fault_marks_the_rest_not_run_and_says_why(faulty):
    res = _run(jobs=1)
    assert all("misaligned address" in r.error for r in res["a_poison"])
    # the later backends never ran in the poisoned process: errors that name the earlier fault
    for r in res["b_good"] + res["d_narrow"]:
        assert r.failed and r.error.startswith("not run:") and "faulty/a_poison" in r.error


def test_isolated_processes_keep_the_fault_to_its_backend(faulty):
    res = _run(jobs=2)
    assert all(r.failed and "misaligned address" in r.error for r in res["a_poison"])
    assert [r.passed for r in res["b_good"]] == [True, True]
    # a library declining this machine is skipped with its own words, not a failure
    assert all(r.skipped and "declines this machine" in r.skipped and "upgrade Triton" in r.skipped
               and not r.failed for r in res["c_declines"])
    # a run-time UnavailableError skips that combination only
    narrow = {r.shape.B: r for r in res["d_narrow"]}
    assert narrow[1].passed and narrow[2].skipped and "one stream" in narrow[2].skipped
    # results keep the plan's order whatever order the processes finished in
    assert list(res) == ["a_poison", "b_good", "c_declines", "d_narrow"]


def test_default_jobs():
    assert default_jobs("cpu", False) == 1 and default_jobs("cuda", True) == 1
    assert 1 <= default_jobs("cuda", False) <= 8

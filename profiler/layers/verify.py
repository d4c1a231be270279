"""Correctness of a layer- or model-level point against its fp32 oracle (``LayerEntry.verify``).

* ``torch`` ports: the point's module on an input of ``min(T, 256)`` tokens against the same layer
  with every mechanism call replaced by the kernel's fp32 reference (fla naive forms or the kernels'
  own slow forms: ``profiler.layers.common.oracle``), same input and weights, in fp32.
* ``fla`` layers: against the fp32 torch port with the fla weights loaded.
* packed replay points (``packing=packed``): three utterances of different lengths packed through
  the fla layer against the fp32 torch port on each utterance alone (``verify_packed``).

Tolerance: 1e-3 relative (fp32), 3e-2 (fp16), 6e-2 (bf16).
"""

from __future__ import annotations

import dataclasses

from profiler.core.lazy import lazy_import
from profiler.core.records import Correctness, PointSpec
from profiler.layers.common import oracle
from profiler.layers.packed import packed_fn, packed_inputs, split_packed
from profiler.layers.workload import build_module, make_inputs

torch = lazy_import("torch")

VERIFY_T = 256
TOLERANCE = {"float32": 1e-3, "float16": 3e-2, "bfloat16": 6e-2}


def verify(spec: PointSpec, torch_device: str, seed: int, max_T: int = VERIFY_T) -> Correctness:
    """Compare the point's module with its fp32 oracle on a ``min(T, max_T)``-token input."""
    Tc = max(2, min(spec.T, max_T))
    small = dataclasses.replace(spec, T=Tc, B=min(spec.B, 2), options=tuple(o for o in spec.options if o[0] != "audio_s"))
    module = build_module(small, device=torch_device, seed=seed)
    inputs = make_inputs(small, device=torch_device, seed=seed)
    if spec.backend == "fla":
        ref_spec = dataclasses.replace(small, backend="torch", dtype="float32", device="cpu")
        ref_module = build_module(ref_spec, seed=seed)
        ref_module.load_state_dict({k: v.float().cpu() for k, v in module.state_dict().items()}, strict=True)
        name = "fp32 torch port with the fla weights"
        oracle_ctx = None
    else:
        ref_module = build_module(dataclasses.replace(small, dtype="float32", device="cpu"), seed=seed)
        name = "fp32 layer on the kernels' reference forms"
        oracle_ctx = oracle
    args = [inputs[k] for k in (("speech", "text") if spec.level == "model" else ("x",))]
    with torch.no_grad():
        out = module(*args)
        out = (out[0] if isinstance(out, tuple) else out).float().cpu()
        ref_args = [a.float().cpu() for a in args]
        if oracle_ctx is not None:
            with oracle_ctx():
                ref = ref_module(*ref_args)
        else:
            ref = ref_module(*ref_args)
    ref = ref.float()
    abs_err = (out - ref).abs().max().item()
    rel = abs_err / max(ref.abs().max().item(), 1e-30)
    tol = TOLERANCE.get(spec.dtype, 1e-3)
    return Correctness(reference=name, max_abs_err=abs_err, max_rel_err=rel, tolerance=tol,
                       passed=bool(rel <= tol), checked_T=Tc)


def verify_packed(spec: PointSpec, torch_device: str, seed: int, max_T: int = VERIFY_T) -> Correctness:
    """Packed fla call on three utterances (T/3, T/2, T tokens, T = ``min(spec.T, max_T)``) against the
    fp32 torch port (fla weights loaded) on each utterance alone at batch 1."""
    Tc = max(6, min(spec.T, max_T))
    lengths = [Tc // 3, Tc // 2, Tc]
    small = dataclasses.replace(spec, T=Tc, B=3, options=())
    module = build_module(small, device=torch_device, seed=seed)
    ref_module = build_module(dataclasses.replace(small, backend="torch", dtype="float32", device="cpu"), seed=seed)
    ref_module.load_state_dict({k: v.float().cpu() for k, v in module.state_dict().items()}, strict=True)
    full = make_inputs(small, device=torch_device, seed=seed)["x"]
    abs_err, ref_max = 0.0, 0.0
    with torch.no_grad():
        outs = split_packed(packed_fn(module)(packed_inputs(lengths, full)), lengths)
        for i, (t, o) in enumerate(zip(lengths, outs)):
            ref = ref_module(full[i:i + 1, :t].float().cpu())[0].float()
            abs_err = max(abs_err, (o.float().cpu() - ref).abs().max().item())
            ref_max = max(ref_max, ref.abs().max().item())
    rel = abs_err / max(ref_max, 1e-30)
    tol = TOLERANCE.get(spec.dtype, 1e-3)
    return Correctness(reference="fp32 torch port with the fla weights, each utterance alone (packed call)",
                       max_abs_err=abs_err, max_rel_err=rel, tolerance=tol, passed=bool(rel <= tol), checked_T=Tc)

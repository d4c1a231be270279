"""A toy serprof kernel: causal linear attention, ``o_t = scale * sum_{s<=t} (q_t . k_s) v_s``.

Everything a plugin needs comes from ``profiler.kernels``: ``KernelSpec``, ``Backend``, ``Shape`` and the
deterministic input helper ``make_qkv``. The module exports ``KERNEL``; the package's pyproject declares it
under the entry-point group ``serprof.kernels``.
"""

from __future__ import annotations

from profiler.kernels import Backend, KernelSpec, Shape, make_qkv, scale_of


def run_cumsum(inputs, causal: bool):
    """Running sums of k_s v_s^T (B, T, H, D, D) then q_t @ S_t: O(T D^2) time and memory."""
    import torch

    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    state = torch.cumsum(k.unsqueeze(-1) * v.unsqueeze(-2), dim=1)
    return torch.einsum("bthd,bthde->bthe", q, state) * scale_of(inputs, q.shape[-1])


def run_masked(inputs, causal: bool):
    """Masked T x T scores (no softmax), then @ v: O(T^2 D)."""
    import torch

    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    T = q.shape[1]
    s = torch.einsum("bthd,bshd->bhts", q, k) * scale_of(inputs, q.shape[-1])
    s = s.masked_fill(torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1), 0.0)
    return torch.einsum("bhts,bshd->bthd", s, v)


def reference(inputs, causal: bool):
    """fp64 masked quadratic form, returned as fp32 (the oracle every backend is checked against)."""
    import torch

    q, k, v = (inputs[n].double() for n in ("q", "k", "v"))
    Tq, Tk = q.shape[1], k.shape[1]
    s = torch.einsum("bthd,bshd->bhts", q, k) * scale_of(inputs, q.shape[-1])
    mask = torch.arange(Tk)[None, :] > torch.arange(Tq)[:, None]
    s = s.masked_fill(mask.to(s.device), 0.0)
    return torch.einsum("bhts,bshd->bthd", s, v).float()


def flops(shape: Shape, causal: bool) -> float:
    """Masked quadratic form: 2 matmuls of 2*D FLOPs per (query, key) pair, T(T+1)/2 pairs."""
    return 4.0 * shape.B * shape.H * shape.D * shape.T * (shape.T + 1) / 2


def bytes_moved(shape: Shape, itemsize: int, causal: bool) -> float:
    """Read q, k, v and write o once."""
    return 4.0 * shape.B * shape.T * shape.H * shape.D * itemsize


def memory_bytes(shape: Shape, itemsize: int, backend: str, causal: bool, mode: str) -> int:
    """``cumsum``: the (B, T, H, D, D) outer products and their running sum; ``masked``: scores, mask and
    masked copy (B*H*T^2 each); plus the output. fwd+bwd: twice that plus q, k, v gradients."""
    B, T, H, D = shape.B, shape.T, shape.H, shape.D
    act = B * T * H * D * itemsize
    work = 2 * B * T * H * D * D * itemsize if backend == "cumsum" else 2 * B * H * T * T * itemsize + T * T
    return int(work + act) if mode == "fwd" else int(2 * work + 4 * act)


KERNEL = KernelSpec(
    name="toy_linear",
    title="Toy causal linear attention (plugin)",
    family="linear",
    make_inputs=make_qkv,
    backends={
        "cumsum": Backend("cumsum", run_cumsum, description="running sums of k v^T (torch)"),
        "masked": Backend("masked", run_masked, description="masked T x T scores without softmax (torch)"),
    },
    reference=reference,
    reference_name="fp64 masked quadratic form",
    flops=flops,
    bytes_moved=bytes_moved,
    memory_bytes=memory_bytes,
    reference_max_T=1024,
    max_head_dim=128,
    default_backend="cumsum",
    description="Unnormalised causal linear attention, an out-of-tree example kernel.",
)

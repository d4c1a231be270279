"""Forward equivalence of each CPU port against the real flash-linear-attention layer, same weights.

    python -m profiler.layers.fla_verify [--layers retnet,gsa] [--hidden 128] [--heads 2] [--T 48,80]
                                        [--device cpu|cuda] [--seed 0]

For every fla layer of the study: build the fla class at the given size (seeded), build the port,
load the fla state_dict into it with ``strict=True``, run both on the same input ``x`` [B, T, hidden]
(fp32, ``no_grad``) and report ``max|port - fla| / max|fla|``. On CPU the fla layer runs under
Triton's interpreter (``profiler.kernels.interpret``; ``TRITON_INTERPRET=1`` is set here before triton
is imported, so run this as its own process). Note that fla layers pick their recurrent kernels at
T <= 64 and the chunked ones above. Prints one JSON object: ``{"<layer>@T<T>": {"rel_err", "seconds", "finite"}}``.
On a GPU machine the same command checks the whole chain on CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

from profiler.core.lazy import lazy_import
from profiler.kernels import interpret
from profiler.layers import build_fla, build_port

torch = lazy_import("torch")


def compare(name: str, hidden: int, heads: int, T: int, B: int, device: str, seed: int) -> dict:
    torch.manual_seed(seed)
    ref = build_fla(name, hidden, heads).to(device).eval()
    port = build_port(name, hidden, heads).to(device).eval()
    port.load_state_dict(ref.state_dict(), strict=True)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(B, T, hidden, generator=gen).to(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        want = ref(x)[0].float()
        got = port(x).float()
    err = (got - want).abs().max().item() / max(want.abs().max().item(), 1e-30)
    return {"rel_err": err, "seconds": time.perf_counter() - t0, "finite": bool(torch.isfinite(got).all())}


def _activate_interpreter() -> None:
    os.environ.setdefault("TRITON_INTERPRET", "1")

    interpret.enable()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m profiler.layers.fla_verify")
    ap.add_argument("--layers", default="retnet,lightnet,gsa,fox,kda", help="names; name@T pins one length")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--T", default="48", help="comma-separated lengths (fla: recurrent kernels at T <= 64, chunked above)")
    ap.add_argument("--B", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.device == "cpu":
        _activate_interpreter()

    warnings.filterwarnings("ignore")
    out = {}
    for item in args.layers.split(","):
        name, _, only_T = item.partition("@")   # "gsa@80": this layer at T=80 only
        for T in ([int(only_T)] if only_T else [int(t) for t in args.T.split(",")]):
            out[f"{name}@T{T}"] = compare(name, args.hidden, args.heads, T, args.B, args.device, args.seed)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

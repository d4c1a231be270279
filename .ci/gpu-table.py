"""One Markdown table from what `.ci/gpu-check` left in a results folder (python .ci/gpu-table.py DIR)."""

from __future__ import annotations

import json
import math
import re
import sys
from collections import defaultdict
from pathlib import Path


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _present(v) -> bool:
    """A number, not None or NaN."""
    try:
        return v is not None and not math.isnan(float(v))
    except (TypeError, ValueError):
        return False


def steps(r: Path) -> list[str]:
    p = r / "steps.txt"
    return ["## Steps (exit code, wall time)", "```", p.read_text().strip() if p.exists() else "(none)", "```"]


def environment(r: Path) -> list[str]:
    env = _json(r / "env.json") or {}
    out = ["## Machine"]
    text = json.dumps(env)
    for key in ("torch", "triton", "fla-core", "cuda", "driver", "name"):
        m = re.search(rf'"{re.escape(key)}[^"]*":\s*"([^"]+)"', text)
        if m:
            out.append(f"- {key}: {m.group(1)}")
    return out


def pytest_line(r: Path) -> list[str]:
    p = r / "pytest-gpu.log"
    lines = p.read_text().strip().splitlines() if p.exists() else []
    tail = [ln for ln in lines if re.search(r"passed|failed|error|skipped", ln)]
    return ["## pytest -m gpu", "```", *(tail[-8:] or ["(no log)"]), "```"]


def bench_timer(r: Path) -> list[str]:
    data = _json(r / "bench-timer.json")
    out = ["## bench timer --device cuda"]
    if data is None:
        return out + ["(no result)"]
    out += ["```", json.dumps(data, indent=1)[:4000], "```"]
    return out


def verify(r: Path) -> list[str]:
    rows = defaultdict(lambda: {"ok": 0, "failed": 0, "skipped": 0, "worst": 0.0, "bad": []})
    missing = []
    for p in sorted(r.glob("verify-*.json")):
        tag = p.stem.rsplit("-", 1)[1]
        data = _json(p)
        if not data:
            err = p.with_suffix(".err")
            last = err.read_text().strip().splitlines()[-3:] if err.exists() else []
            missing.append(f"{p.stem}: {' | '.join(last)}")
            continue
        for res in data.get("results", []):
            key = (res["kernel"], res["backend"], tag)
            row = rows[key]
            if res.get("skipped"):
                row["skipped"] += 1
                continue
            c = res.get("correctness") or {}
            ok = bool(c.get("passed", c.get("ok", False)))
            row["ok" if ok else "failed"] += 1
            row["worst"] = max(row["worst"], float(c.get("max_rel_err") or 0.0))
            if not ok:
                s = res.get("shape", {})
                row["bad"].append(f"{res.get('dtype')}/{res.get('mode')}/T{s.get('T')}: {c.get('max_rel_err')}")
    for err in sorted(r.glob("verify-*.err")):
        if not err.with_suffix(".json").exists():
            missing.append(f"{err.stem}: {' | '.join(err.read_text().strip().splitlines()[-3:])}")
    out = ["## verify --device cuda (one process per kernel)",
           "| kernel | backend | check | ok | failed | skipped | worst rel err | failures |", "|---|---|---|---|---|---|---|---|"]
    for (k, b, tag), row in sorted(rows.items()):
        out.append(f"| {k} | {b} | {tag} | {row['ok']} | {row['failed']} | {row['skipped']} | {row['worst']:.2g} | "
                   f"{'; '.join(row['bad'][:3])} |")
    if missing:
        out += ["", "No JSON (timed out or crashed):", *[f"- {m}" for m in missing]]
    return out


def selftest(r: Path) -> list[str]:
    data = _json(r / "selftest-quick.json")
    out = ["## selftest --device cuda --quick"]
    if data is None:
        return out + ["(no result)"]
    out += [f"passed: {data.get('passed')}, wall {data.get('wall_s', 0):.0f} s", "",
            "| group | check | state | detail |", "|---|---|---|---|"]
    for c in data.get("checks", []):
        out.append(f"| {c['group']} | {c['name']} | {c['state']} | {str(c.get('detail', '')).replace('|', '/')[:160]} |")
    return out


def sweep(r: Path, name: str) -> list[str]:
    folder = r / name
    out = [f"## sweep {name}"]
    if not (folder / "points.jsonl").exists():
        return out + ["(no points)"]
    try:
        import profiler

        df = profiler.load(folder).to_pandas()
    except Exception as exc:  # noqa: BLE001 - a table script reports whatever it can
        return out + [f"(could not load: {exc})"]
    cols = ["kernel", "backend", "T", "causal", "status", "median_s", "call_median_s", "peak_bytes", "energy_j",
            "max_rel_err", "timing_method", "first_call_s", "reason"]
    cols = [c for c in cols if c in df.columns]
    out += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df[cols].sort_values(["kernel", "backend", "causal", "T"]).iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if c in ("median_s", "call_median_s", "first_call_s") and _present(v):
                cells.append(f"{float(v) * 1e3:.4g} ms")
            elif c == "peak_bytes" and _present(v):
                cells.append(f"{float(v) / 2**20:.4g} MiB")
            elif isinstance(v, float):
                cells.append(f"{v:.3g}")
            else:
                cells.append(str(v)[:80].replace("|", "/"))
        out.append("| " + " | ".join(cells) + " |")
    return out


def main(r: Path) -> None:
    parts = [steps(r), environment(r), pytest_line(r), bench_timer(r), verify(r), selftest(r),
             sweep(r, "run-kernels"), sweep(r, "run-varlen")]
    print("\n\n".join("\n".join(p) for p in parts))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

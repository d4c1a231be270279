"""Item 8 of issue 12: bad input across every command, kept as data. Each argument list must end with
its exit code (``BAD``: 2, a usage or input error; ``UNAVAILABLE``: 3, the requested device, backend
or meter is unavailable here), exactly one line on stderr that starts with ``serprof: error:``, and no
traceback. The expected code is part of each case's data, never read from the actual outcome. Runs
in this process through ``profiler.cli.main``.

Placeholders: ``{RUN}`` a finished run folder, ``{BAD}`` a run folder with a damaged manifest,
``{EMPTY}`` an empty folder, ``{FILE}`` an existing plain file, ``{TMP}`` a scratch folder,
``{TOML:...}`` a scenario file with that text (``\\n`` for newlines).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hardening_helpers import assert_one_line_error

DATA = Path(__file__).resolve().parents[1] / "data"
S = ["sweep", "--dry-run", "--device", "cpu"]          # a sweep that would only plan
V = ["verify", "--kernels", "softmax", "--backend", "sdpa"]

BAD: list[list[str]] = [
    # --- top level and unknown things
    ["no-such-command"], ["--no-such-flag"], ["version", "extra"], ["bench", "nope"], ["baseline", "nope"],
    # --- sweep: selections
    [*S, "--kernels", "nope"], [*S, "--kernels", ""], [*S, "--kernels", ","], [*S, "--backend", "nope"],
    [*S, "--kernels", "retnet", "--backend", "sdpa"], [*S, "--dtype", "fp8"], [*S, "--dtype", ""],
    [*S, "--mode", "train"], [*S, "--level", "galaxy"], [*S, "--device", "tpu"], [*S, "--device", ""],
    [*S, "--bidirectional", "maybe"], [*S, "--packing", "zip"], [*S, "--executor", "k8s"],
    # --- sweep: numbers
    [*S, "--lengths", "0"], [*S, "--lengths", "-5"], [*S, "--lengths", "1k..x"], [*S, "--lengths", "abc"],
    [*S, "--lengths", "8k..1k:x0"], [*S, "--lengths", "1..4096:+0"], [*S, "--lengths", "1" + "0" * 400],
    [*S, "--lengths", "1..99999999999"], [*S, "--lengths", ""], [*S, "--lengths", "1k;2k"],
    [*S, "--batch", "0"], [*S, "--batch", "-1"], [*S, "--batch", "x"], [*S, "--batch", "1.5"],
    [*S, "--heads", "0"], [*S, "--heads", "3000000000"], [*S, "--head-dim", "0"], [*S, "--head-dim", "nan"],
    [*S, "--warmup", "nan"], [*S, "--warmup", "-1"], [*S, "--warmup", "inf"], [*S, "--warmup", "x"],
    [*S, "--time-budget", "0"], [*S, "--time-budget", "-inf"], [*S, "--time-budget", "1e300"],
    [*S, "--target-ci", "0"], [*S, "--target-ci", "2"], [*S, "--target-ci", "nan"],
    [*S, "--timeout", "nan"], [*S, "--timeout", "inf"], [*S, "--timeout", "1e300"], [*S, "--timeout", "-1"],
    [*S, "--memory-budget", "1e999GiB"], [*S, "--memory-budget", "lots"], [*S, "--memory-budget", "-1GiB"],
    [*S, "--memory-budget", "0"], [*S, "--memory-budget", "9" * 400 + "GiB"],
    [*S, "--text-rate", "inf"], [*S, "--text-rate", "nan"], [*S, "--text-rate", "-1"],
    [*S, "--level", "layer", "--audio", "1e300s"], [*S, "--level", "layer", "--audio", "0s"],
    [*S, "--level", "layer", "--audio", "-2min"], [*S, "--level", "layer", "--audio", "1s..2s:99999999"],
    [*S, "--level", "layer", "--audio", "forever"], [*S, "--utterances", "-1"], [*S, "--utterances", "9" * 30],
    [*S, "--utterances", "x"], [*S, "--workers", "0"], [*S, "--workers", "-3"], [*S, "--cores-per-worker", "0"],
    [*S, "--devices", "a,b"], [*S, "--devices", "-1"],
    # --- sweep: SLURM options as data
    [*S, "--partition", "gpu"], [*S, "--executor", "slurm", "--time-limit", "soon"],
    [*S, "--executor", "slurm", "--time-limit", "-5"], [*S, "--executor", "slurm", "--gpus-per-task", "-1"],
    [*S, "--executor", "slurm", "--shards", "0"], [*S, "--executor", "slurm", "--array-parallelism", "-1"],
    [*S, "--executor", "slurm", "--sbatch-extra", "--comment=\"x\ntouch /tmp/p #\""],
    [*S, "--executor", "slurm", "--sbatch-extra", "--x=1; rm -rf /"],
    [*S, "--executor", "slurm", "--sbatch-extra", "$(reboot)"],
    [*S, "--executor", "slurm", "--sbatch-extra", "--a=`id`"],
    [*S, "--executor", "slurm", "--partition", "gpu\nrm"],
    [*S, "--executor", "slurm", "--account", "a b"],
    # --- sweep: files and folders
    [*S, "--scenario", "{TMP}/missing.toml"], [*S, "--scenario", "{EMPTY}"], [*S, "--scenario", "{TOML:kernels = 5}"],
    [*S, "--scenario", "{TOML:lengths = [1, 2, [3]]}"], [*S, "--scenario", "{TOML:this is not toml}"],
    [*S, "--scenario", "{TOML:[settings]\\nwarmup_s = nan}"], [*S, "--scenario", "{TOML:[settings]\\nbogus = 1}"],
    [*S, "--scenario", "{TOML:[execution]\\nexecutor = 5}"], [*S, "--scenario", "{TOML:unknown_key = 1}"],
    [*S, "--scenario", "{TOML:[settings]\\npoint_timeout_s = 1e300}"],
    ["sweep", "--dry-run", "--scenario", "{TOML:device = \"tpu\"}"], [*S, "--scenario", "{TOML:level = 3}"],
    ["sweep", "--resume", "{TMP}/missing"], ["sweep", "--resume", "{EMPTY}"], ["sweep", "--resume", "{BAD}"],
    ["sweep", "--resume", "{FILE}"], ["sweep", "--resume", "{RUN}", "--kernels", "retnet"],
    ["sweep", "--resume", "{RUN}", "--warmup", "1"], ["sweep", "--out", "{FILE}", "--kernels", "softmax", "--lengths", "64", "--device", "cpu"],
    ["sweep", "--device", "cpu", "--out", "{FILE}/run", "--kernels", "softmax", "--lengths", "64"],
    # --- verify
    [*V, "--max-t", "0"], [*V, "--max-t", "-5"], [*V, "--lengths", "0"], [*V, "--lengths", "x"],
    [*V, "--batch", "0"], [*V, "--heads", "0"], [*V, "--head-dim", "-1"], [*V, "--dtype", "fp8"],
    [*V, "--mode", "train"], [*V, "--device", "tpu"], ["verify", "--kernels", "nope"],
    ["verify", "--kernels", "softmax", "--backend", "nope"], ["verify", "--interpret", "--dtype", "bf16"],
    ["verify", "--interpret", "--device", "cuda"],
    # --- list, env
    ["list", "--device", "tpu"], ["list", "--json", "extra"], ["env", "--bogus"],
    # --- trace
    ["trace", "--kernel", "nope"], ["trace", "--kernel", "softmax", "--length", "0"],
    ["trace", "--kernel", "softmax", "--length", "1k,2k"], ["trace", "--kernel", "softmax", "--steps", "0"],
    ["trace", "--kernel", "softmax", "--mode", "train"], ["trace", "--kernel", "softmax", "--device", "tpu"],
    ["trace", "--kernel", "softmax", "--dtype", "fp8"], ["trace", "--kernel", "softmax", "--backend", "nope"],
    ["trace", "--kernel", "softmax", "--batch", "0"],
    # --- doctor
    ["doctor", "--device", "tpu"], ["doctor", "--out", "{FILE}/x"],
    ["selftest", "--device", "tpu"], ["selftest", "--json-out", "{FILE}/x.json"], ["selftest", "--quick", "x"],
    # --- status, report, export
    ["status", "{TMP}/missing"], ["status", "{EMPTY}"], ["status", "{BAD}"], ["status", "{FILE}"],
    ["report", "{TMP}/missing"], ["report", "{EMPTY}"], ["report", "{BAD}"], ["report", "{RUN}", "--out", "{EMPTY}"],
    ["report", "{RUN}", "--out", "{FILE}/r.html"], ["report", "{RUN}", "--markdown", "{EMPTY}"],
    ["report", "{RUN}", "--markdown", "{TMP}/missing-dir/s.md"], ["report", "{RUN}", "--baseline", "nope/x"],
    ["export", "{RUN}", "--format", "xls"], ["export", "{RUN}", "-o", "{EMPTY}"], ["export", "{BAD}"],
    ["export", "{RUN}", "-o", "{TMP}/missing-dir/p.csv"], ["export", "{TMP}/missing"],
    # --- frontier
    ["frontier", "--device-memory", "1e999"], ["frontier", "--device-memory", "lots"],
    ["frontier", "--device-memory", "-1GiB"], ["frontier", "--device-memory", "0"],
    ["frontier", "--device-memory", "80GiB", "--kernels", "nope"], ["frontier", "--device-memory", "80GiB", "--dtype", "fp8"],
    ["frontier", "--device-memory", "80GiB", "--mode", "train"], ["frontier", "--device-memory", "80GiB", "-B", "0"],
    ["frontier", "--device-memory", "80GiB", "-H", "0"], ["frontier"],
    # --- gate
    ["gate"], ["gate", "--baseline", "{RUN}"], ["gate", "--baseline", "{TMP}/missing", "--candidate", "{RUN}"],
    ["gate", "--baseline", "{RUN}", "--candidate", "{BAD}"], ["gate", "--baseline", "{RUN}", "--candidate", "{EMPTY}"],
    ["gate", "-b", "{RUN}", "-c", "{RUN}", "--rule", "latency"], ["gate", "-b", "{RUN}", "-c", "{RUN}", "--rule", "nope:+5%"],
    ["gate", "-b", "{RUN}", "-c", "{RUN}", "--rule", "latency:+x%"], ["gate", "-b", "{RUN}", "-c", "{RUN}", "--rule", "latency:+5%@T>>4"],
    ["gate", "-b", "{RUN}", "-c", "{RUN}", "--alpha", "0"], ["gate", "-b", "{RUN}", "-c", "{RUN}", "--alpha", "nan"],
    ["gate", "-b", "{RUN}", "-c", "{RUN}", "--n-boot", "0"], ["gate", "-b", "{RUN}", "-c", "{RUN}", "--n-boot", "-5"],
    ["gate", "-b", "{RUN}", "-c", "{RUN}", "--noise-floor", "2"], ["gate", "-b", "{RUN}", "-c", "{RUN}", "--statistic", "q200"],
    ["gate", "-b", "{RUN}", "-c", "{RUN}", "--normalize", "magic"], ["gate", "-b", "{RUN}", "-c", "{RUN}", "--seed", "-1"],
    ["gate", "-b", "{RUN}", "-c", "{RUN}", "--json-out", "{EMPTY}"],
    ["gate", "-b", "{RUN}", "-c", "{RUN}", "--markdown-out", "{FILE}/x.md"],
    ["gate", "-b", "{RUN}", "-c", "{RUN}", "--rounds", "3"],
    ["gate-interleave"], ["gate-interleave", "--ref-a", "HEAD"], ["gate-interleave", "--ref-a", "A", "--ref-b", "B", "--rounds", "0"],
    ["gate-interleave", "--ref-a", "A", "--ref-b", "B", "--reps", "-1"],
    ["gate-interleave", "--ref-a", "A", "--ref-b", "B", "--kernels", "nope"],
    # --- gate-eval, baseline
    ["gate-eval", "--comparisons", "0"], ["gate-eval", "--comparisons", "-1"], ["gate-eval", "--samples", "0"],
    ["gate-eval", "--slowdowns", "x"], ["gate-eval", "--threshold", "nan"], ["gate-eval", "--threads", "0"],
    ["gate-eval", "--design", "nope"], ["gate-eval", "--design", "sweeps", "--pairs", "-1"],
    ["gate-eval", "--design", "sweeps", "--slowdown", "0"], ["gate-eval", "--design", "interleave", "--rounds", "1"],
    ["gate-eval", "--design", "sweeps", "--processes", "0"], ["gate-eval", "--design", "sweeps", "--keep", "{FILE}"],
    ["gate-calibrate", "--repeats", "1"], ["gate-calibrate", "--processes", "0"], ["gate-calibrate", "{RUN}"],
    ["gate-calibrate", "{TMP}/missing", "{TMP}/missing2"], ["gate-calibrate", "{RUN}", "{RUN}", "-o", "{FILE}/x.json"],
    ["gate-calibrate", "{RUN}", "{RUN}", "--keep", "{FILE}"],
    ["gate", "-b", "{RUN}", "-c", "{RUN}", "--noise-profile", "{FILE}"],
    ["gate", "-b", "{RUN}", "-c", "{RUN}", "--noise-profile", "{TMP}/missing.json"],
    ["gate", "-c", "{RUN}", "--history", "{FILE}"], ["gate", "-c", "{RUN}", "--history", "{EMPTY}"],
    ["gate", "-c", "{RUN}", "--history", "{EMPTY}", "--history-runs", "1"],
    ["baseline", "save", "{RUN}"], ["baseline", "save", "{TMP}/missing", "-o", "{TMP}/b.json"],
    ["baseline", "save", "{RUN}", "-o", "{EMPTY}"], ["baseline", "save", "{RUN}", "-o", "{FILE}/b.json"],
    ["baseline", "save", "{RUN}", "-o", "{TMP}/b.json", "--max-samples", "0"],
    # --- bench
    ["bench", "kernels", "--kernels", "nope"], ["bench", "kernels", "--lengths", "0"],
    ["bench", "timer", "--ops", "nope"], ["bench", "timer", "--rounds", "0"], ["bench", "timer", "--device", "tpu"],
    ["bench", "memory", "--length", "0"], ["bench", "scaleout", "--workers", "0"],
    ["bench", "scaleout", "--workers", "1"], ["bench", "scaleout", "--out", "{FILE}"],
]

#: Requests for something this machine lacks: exit 3. The second item names what must be absent for
#: the case to be an error at all ("cuda": a CUDA device; None: unavailable everywhere it is asked).
UNAVAILABLE: list[tuple[list[str], str | None]] = [
    (["bench", "timer", "--device", "cuda"], "cuda"),
    (["selftest", "--device", "cuda"], "cuda"),
    ([*S, "--kernels", "retnet", "--backend", "fla"], None),      # fla needs CUDA (or --interpret)
    ([*S, "--backend", "fla"], None),
    ([*S, "--kernels", "softmax", "--backend", "sdpa-flash"], None),
    (["verify", "--kernels", "retnet", "--backend", "fla"], None),
]

#: (argv, expected exit code, what must be absent)
CASES: list[tuple[list[str], int, str | None]] = [(a, 2, None) for a in BAD] + [(a, 3, need) for a, need in UNAVAILABLE]


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    run = root / "run"
    shutil.copytree(DATA / "run-a52bece-kernels", run)
    bad = root / "bad"
    shutil.copytree(DATA / "run-a52bece-kernels", bad)
    (bad / "manifest.json").write_text('{"schema_version": "x", "run_id": 5}')
    (root / "empty").mkdir()
    (root / "file").write_text("not a folder\n")
    return {"RUN": run, "BAD": bad, "EMPTY": root / "empty", "FILE": root / "file", "TMP": root}


def _fill(arg: str, places: dict, counter: list[int]) -> str:
    if arg.startswith("{TOML:"):
        counter[0] += 1
        f = places["TMP"] / f"s{counter[0]}.toml"
        f.write_text(arg[len("{TOML:"):-1].replace("\\n", "\n") + "\n")
        return str(f)
    for key, path in places.items():
        arg = arg.replace("{" + key + "}", str(path))
    return arg


def test_there_are_at_least_150_bad_inputs_over_every_command():
    from profiler.cli import app

    assert len(BAD) >= 150 and len({tuple(a) for a, _, _ in CASES}) == len(CASES)
    names = {c.name or c.callback.__name__ for c in app.registered_commands} | {g.name for g in app.registered_groups}
    covered = {a[0] for a, _, _ in CASES}
    assert names - {"version"} <= covered, f"commands without a bad input: {sorted(names - covered)}"


def _cuda_here() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("argv, expected, absent", CASES, ids=[f"{e}: " + " ".join(a)[:60] for a, e, _ in CASES])
def test_bad_input_is_one_line_and_its_exit_code(cli, places, argv, expected, absent, monkeypatch):
    if absent == "cuda" and _cuda_here():
        pytest.skip("this machine has CUDA, so the request is not unavailable here")
    monkeypatch.chdir(places["TMP"])   # nothing a bad input does can land in the repository
    counter = [0]
    args = [_fill(a, places, counter) for a in argv]
    code, _out, err = cli(*args)
    assert_one_line_error(code, err, expected_code=expected)

"""Items 2, 3, 6 and 7 of issue 12: numbers within documented ranges, output paths checked first, no silent
passes, SLURM options as data. Every bad input here must exit 2 with one line and no traceback."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hardening_helpers import assert_one_line_error, fake_run, raw_ids, serprof
from hypothesis import given, settings
from hypothesis import strategies as st

from profiler.core.errors import UsageError
from profiler.core.paths import check_output_dir, check_output_file
from profiler.core.settings import SETTINGS, check_all

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "scaleout" / "hostile_sbatch_extra.txt"
BASE = ["sweep", "--kernels", "softmax", "--backend", "sdpa", "--lengths", "64", "--device", "cpu"]

# ------------------------------------------------------------------ item 2: flags (dry-run: nothing written)
BAD_FLAGS = [
    (["--timeout", "nan"], "--timeout"), (["--timeout", "inf"], "--timeout"), (["--timeout", "1e300"], "--timeout"),
    (["--timeout", "0"], "--timeout"), (["--warmup", "nan"], "--warmup"), (["--warmup", "-1"], ">= 0"),
    (["--time-budget", "-inf"], "--time-budget"), (["--target-ci", "2"], "--target-ci"),
    (["--lengths", "1" + "0" * 399], "too large"), (["--lengths", "9" * 40 + "k"], "too large"),
    (["--lengths", "1..99999999999"], "too large"), (["--memory-budget", "1e999GiB"], "--memory-budget"),
    (["--memory-budget", "9" * 400 + "GiB"], "too large"), (["--memory-budget", "0"], "--memory-budget"),
    (["--text-rate", "inf"], "--text-rate"), (["--text-rate", "nan"], "--text-rate"), (["--text-rate", "-1"], "--text-rate"),
    (["--batch", "0"], "--batch"), (["--heads", "3000000000"], "too large"), (["--audio", "1e300s"], "--audio"),
    (["--audio", "1s..2s:99999999"], "--audio"), (["--audio", "0.0000001s"], "--audio"),
    (["--utterances", "9" * 30], "--utterances"), (["--device", "tpu"], "--device"),
    (["--kernels", "retnet", "--backend", "sdpa"], "plans no point"),
]


@pytest.mark.parametrize("args, needle", BAD_FLAGS, ids=[" ".join(a)[:40] for a, _ in BAD_FLAGS])
def test_bad_numbers_and_selections_are_exit_2(tmp_path, cli, args, needle):
    argv = list(BASE)
    for flag in args[::2]:   # a given flag replaces the base value
        if flag in argv:
            i = argv.index(flag)
            del argv[i:i + 2]
    code, _, err = cli(*argv, *args, "--dry-run")
    assert_one_line_error(code, err, 2, needle)


def test_warmup_zero_is_allowed_and_message_says_ge_0(cli):
    code, _, err = cli(*BASE, "--warmup", "0", "--dry-run")
    assert code == 0, err
    code, _, err = cli(*BASE, "--warmup", "-1", "--dry-run")
    line = assert_one_line_error(code, err)
    assert "> 0" not in line.replace(">= 0", "")


BAD_TOML = [
    ("kernels = 5\n", "key 'kernels'"),
    ("lengths = [" + ",".join(str(i) for i in range(1, 20001)) + "]\n", "at most 4096"),
    ("lengths = [true]\n", "key 'lengths'"),
    ("batch = [1.5]\n", "key 'batch'"),
    ("text_rate = inf\n", "key 'text_rate'"),
    ("frame_rate = nan\n", "key 'frame_rate'"),
    ("utterances = -1\n", "key 'utterances'"),
    ("[settings]\npoint_timeout_s = inf\n", "settings.point_timeout_s"),
    ("[settings]\nwarmup_s = nan\n", "settings.warmup_s"),
    ("[settings]\nmemory_budget = 1e30\n", "settings.memory_budget"),
    ("[settings]\nmemory_budget = \"1e999GiB\"\n", "settings.memory_budget"),
    ("[settings]\nmax_reps = 1\nmin_reps = 5\n", "max_reps"),
    ("[settings]\nseed = -1\n", "settings.seed"),
    ("[execution]\nexecutor = 5\n", "execution.executor"),
    ("[execution]\nsbatch_extra = 5\n", "execution.sbatch_extra"),
]


@pytest.mark.parametrize("text, needle", BAD_TOML, ids=[t[:30] for t, _ in BAD_TOML])
def test_bad_scenario_values_name_file_and_key(tmp_path, cli, text, needle):
    f = tmp_path / "scen.toml"
    f.write_text('backends = ["sdpa"]\n' + text if not text.startswith("[") else 'kernels = ["softmax"]\n' + text)
    code, _, err = cli("sweep", "--scenario", f, "--device", "cpu", "--dry-run")
    line = assert_one_line_error(code, err, 2, needle)
    assert str(f) in line


# ------------------------------------------------------------------ item 2: property-based
@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40) | st.from_regex(r"[0-9kKmM.,:x+ ]{1,30}", fullmatch=True))
def test_length_parser_returns_valid_values_or_usage_error(text):
    from profiler.core.units import MAX_INT, MAX_VALUES, parse_lengths

    try:
        out = parse_lengths(text)
    except UsageError:
        return
    assert out and len(out) <= MAX_VALUES and all(isinstance(v, int) and 1 <= v <= MAX_INT for v in out)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40) | st.from_regex(r"[0-9.eE+\-]{1,12}(ms|s|min|h|m)?(\.\.[0-9.]{1,6}(s|min)?(:[0-9]{1,9})?)?", fullmatch=True))
def test_audio_parser_returns_valid_values_or_usage_error(text):
    import math

    from profiler.core.audio import parse_audio

    try:
        out = parse_audio(text)
    except UsageError:
        return
    assert out and all(math.isfinite(v) and 1e-3 <= v <= 86400 for v in out)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30) | st.from_regex(r"[0-9.]{1,400}\s?(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB|e[0-9]+)?", fullmatch=True))
def test_memory_parsers_return_valid_values_or_usage_error(text):
    from profiler.core.units import parse_bytes
    from profiler.probes.frontier import parse_bytes as device_bytes

    for fn in (parse_bytes, device_bytes):
        try:
            v = fn(text)
        except UsageError:
            continue
        assert isinstance(v, int) and 1 <= v <= 2 ** 60


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20) | st.from_regex(r"[0-9:\-]{1,12}(s|min|h|d)?", fullmatch=True) | st.integers())
def test_duration_parser_returns_minutes_or_usage_error(text):
    from profiler.runner.slurm import parse_time_limit

    try:
        v = parse_time_limit(text)
    except UsageError:
        return
    assert v is None or (isinstance(v, int) and v >= 1)


_SCALARS = (st.none() | st.booleans() | st.integers(-10 ** 30, 10 ** 30) | st.floats(allow_nan=True)
            | st.text(max_size=12))
_VALUES = _SCALARS | st.lists(_SCALARS, max_size=5) | st.dictionaries(st.text(max_size=8), _SCALARS, max_size=3)
_KEYS = st.sampled_from(["name", "kernels", "backends", "lengths", "batch", "dtypes", "modes", "heads", "head_dim",
                         "causal", "device", "interpret", "level", "audio", "frame_rate", "text_rate",
                         "bidirectional", "utterances", "packing", "settings", "bogus"])
_SETTING_KEYS = st.sampled_from([sp for s in SETTINGS for sp in s.spellings] + ["bogus"])   # the declared ones


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_KEYS, _VALUES, max_size=5), st.dictionaries(_SETTING_KEYS, _SCALARS, max_size=3))
def test_scenario_loader_builds_a_valid_spec_or_raises_usage_error(tmp_path_factory, data, setting_values):
    """Any TOML-shaped scenario either builds a spec within the limits or raises UsageError."""
    from profiler.planning.scenario import build_spec, validate_spec

    data = dict(data)
    if setting_values:
        data["settings"] = {k: v for k, v in setting_values.items() if v is not None}
    f = tmp_path_factory.mktemp("scen") / "s.toml"
    f.write_text(_toml(data))
    try:
        spec = build_spec(f)
    except UsageError:
        return
    validate_spec(spec, "built")          # would raise if a limit were bypassed
    check_all(spec.settings, "built")


def _toml_value(v):
    import json as _json
    import math

    if v is None:
        return '""'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v) if abs(v) < 2 ** 63 else _json.dumps(str(v))
    if isinstance(v, str):
        return _json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{_json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"


def _toml(data) -> str:
    import json as _json

    table = data.get("settings") if isinstance(data.get("settings"), dict) else None
    lines = [f"{_json.dumps(k)} = {_toml_value(v)}" for k, v in data.items() if not (k == "settings" and table is not None)]
    if table is not None:   # a [settings] table; a scalar `settings = ...` stays a bad key the loader must refuse
        lines += ["[settings]"] + [f"{_json.dumps(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ item 3: output paths
def test_output_path_checks_unit(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a folder"):
        check_output_file(tmp_path, "--json-out")
    with pytest.raises(UsageError, match="does not exist"):
        check_output_file(tmp_path / "nope" / "x.md", "--markdown")
    with pytest.raises(UsageError, match="not a folder"):
        check_output_file(tmp_path / "file" / "x.md", "--markdown")
    with pytest.raises(UsageError, match="not a folder"):
        check_output_dir(tmp_path / "file", "--out")
    with pytest.raises(UsageError, match="not a folder"):
        check_output_dir(tmp_path / "file" / "sub", "--out")
    assert check_output_file(tmp_path / "new" / "x.json", "--json-out", create_parents=True)


def test_output_paths_of_commands_are_checked_before_work(tmp_path, cli):
    run = fake_run(tmp_path)
    (tmp_path / "file").write_text("x")
    cases = [
        (["report", run, "-o", tmp_path], "--out"),
        (["report", run, "-o", tmp_path / "file" / "r.html"], "--out"),
        (["report", run, "--markdown", tmp_path / "missing" / "s.md"], "--markdown"),
        (["report", run, "--markdown", tmp_path], "--markdown"),
        (["export", run, "-o", tmp_path], "-o/--output"),
        (["export", run, "-o", tmp_path / "missing" / "x.csv"], "-o/--output"),
        (["baseline", "save", run, "-o", tmp_path], "--out"),
        (["gate", "-b", run, "-c", run, "--json-out", tmp_path], "--json-out"),
        (["gate", "-b", run, "-c", run, "--markdown-out", tmp_path / "file" / "m.md"], "--markdown-out"),
        (["gate-eval", "--json-out", tmp_path], "--json-out"),
        (["sweep", *BASE[1:], "--out", tmp_path / "file", "--no-report"], "--out"),
    ]
    for argv, needle in cases:
        code, _, err = cli(*argv)
        assert_one_line_error(code, err, 2, needle)
    assert not (run / "report.html").exists()


def test_unwritable_points_file_on_resume_measures_nothing_and_loses_nothing(tmp_path):
    run = fake_run(tmp_path)
    before = (run / "points.jsonl").read_bytes()
    lines = before.splitlines()
    (run / "points.jsonl").write_bytes(lines[0] + b"\n")     # two points missing
    kept = (run / "points.jsonl").read_bytes()
    if os.geteuid() == 0:      # root writes through chmod: make the store fail another way
        (run / "points.jsonl").rename(run / "points-000.jsonl")
        (run / "points.jsonl").mkdir()
    else:
        os.chmod(run / "points.jsonl", stat.S_IRUSR)
    p = serprof("sweep", "--resume", run, "--no-report")
    line = assert_one_line_error(p.returncode, p.stderr, 2, "cannot write records")
    assert "nothing was measured" in line and "--resume" in line
    if os.geteuid() == 0:
        assert (run / "points-000.jsonl").read_bytes() == kept
        (run / "points.jsonl").rmdir()
        (run / "points-000.jsonl").rename(run / "points.jsonl")
    else:
        assert (run / "points.jsonl").read_bytes() == kept
        os.chmod(run / "points.jsonl", stat.S_IRUSR | stat.S_IWUSR)
    p = serprof("sweep", "--resume", run, "--no-report")
    assert p.returncode == 0, p.stderr
    ids = raw_ids(run)
    assert len(ids) == len(set(ids)) == 3


def test_append_failing_mid_run_stops_cleanly_with_the_resume_hint(tmp_path, monkeypatch):
    from profiler.planning.scenario import build_spec
    from profiler.runner import sweep as sweep_mod
    from profiler.store.runs import RunDir

    monkeypatch.setenv("SERPROF_MEASURE_FN", "tests.fakes.workers:fake_measure")
    calls = {"n": 0}
    real = RunDir.append

    def flaky(self, rec):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real(self, rec)

    monkeypatch.setattr(RunDir, "append", flaky)
    spec = build_spec(None, {"kernels": "softmax", "backends": "sdpa", "lengths": "64,128,256", "causal": "causal",
                             "device": "cpu", "verify": False})
    with pytest.raises(UsageError) as exc:
        sweep_mod.run_sweep(spec, out=tmp_path / "run", calibrate=False)
    msg = str(exc.value)
    assert "No space left" in msg and f"--resume {tmp_path / 'run'}" in msg
    assert len(raw_ids(tmp_path / "run")) == 1
    monkeypatch.setattr(RunDir, "append", real)
    res = sweep_mod.run_sweep(resume=tmp_path / "run", calibrate=False)
    assert len(res.records) == 2 and len(set(raw_ids(tmp_path / "run"))) == 3


# ------------------------------------------------------------------ item 6: no silent passes
def test_gate_with_nothing_compared_is_exit_2_unless_allow_empty(tmp_path, cli):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "gate"))
    from gate_helpers import write_run

    run = fake_run(tmp_path)
    empty = write_run(tmp_path / "empty", [])
    import json as _json

    env = _json.loads((run / "manifest.json").read_text())["environment"]
    m = _json.loads((empty / "manifest.json").read_text())
    m["environment"] = env
    (empty / "manifest.json").write_text(_json.dumps(m))
    for b, c in ((run, empty), (empty, run), (empty, empty)):
        code, _, err = cli("gate", "-b", b, "-c", c, "--json-out", tmp_path / "v.json")
        assert_one_line_error(code, err, 2, "nothing was compared")
        assert (tmp_path / "v.json").exists()          # the verdict is still written
        code, _, err = cli("gate", "-b", b, "-c", c, "--allow-empty")
        assert code == 0, err


@pytest.mark.parametrize("argv, needle", [
    (["gate", "-b", "X", "-c", "X", "--n-boot", "0"], "--n-boot"),
    (["gate", "-b", "X", "-c", "X", "--n-boot", "-5"], "--n-boot"),
    (["gate-eval", "--comparisons", "0"], "--comparisons"),
    (["gate-eval", "--comparisons", "-3"], "--comparisons"),
    (["gate-eval", "--samples", "0"], "--samples"),
    (["verify", "--max-t", "0", "--kernels", "softmax"], "--max-t"),
    (["verify", "--max-t", "-4", "--kernels", "softmax"], "--max-t"),
    (["doctor", "--device", "tpu"], "--device"),
    (["frontier", "--device-memory", "1e999"], "--device-memory"),
    (["frontier", "--device-memory", "9" * 400], "--device-memory"),
])
def test_accepted_nonsense_is_now_exit_2(tmp_path, cli, argv, needle):
    if "X" in argv:
        run = fake_run(tmp_path)
        argv = [run if a == "X" else a for a in argv]
    code, _, err = cli(*argv)
    assert_one_line_error(code, err, 2, needle)


# ------------------------------------------------------------------ item 7: SLURM options are data
def _normalise(text: str, tmp: Path) -> str:
    return text.replace(str(tmp), "<tmp>")


def test_hostile_sbatch_extra_is_refused_in_dry_run_golden(tmp_path, cli):
    f = tmp_path / "hostile.toml"
    f.write_text('kernels = ["softmax"]\nbackends = ["sdpa"]\nlengths = [64]\n[execution]\nexecutor = "slurm"\n'
                 'sbatch_extra = "--comment=\\"x\\ntouch /tmp/p #\\""\n')
    outputs = []
    code, out, err = cli("sweep", "--scenario", f, "--dry-run")
    outputs.append(assert_one_line_error(code, err, 2, "execution.sbatch_extra"))
    assert "touch" not in out and "#SBATCH" not in out
    code, out, err = cli(*BASE, "--executor", "slurm", "--sbatch-extra", '--comment="x\ntouch /tmp/p #"', "--dry-run")
    outputs.append(assert_one_line_error(code, err, 2, "--sbatch-extra"))
    assert "#SBATCH" not in out
    text = _normalise("\n".join(outputs), tmp_path) + "\n"
    if os.environ.get("SERPROF_REGEN_GOLDEN") == "1":
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


@pytest.mark.parametrize("value", ["--comment=x;touch", "--comment=$(id)", "--comment=`id`", "--qos=a|b",
                                   "--qos=a&&b", "--x=a\rb", "--comment='a\nb'", "-c 1", "--=x", "nope",
                                   "--comment='has space'", "--array=0-3", "--output=/tmp/x", "--qos=a>b"])
def test_hostile_tokens_are_refused(value):
    from profiler.runner.slurm import parse_sbatch_extra

    with pytest.raises(UsageError, match="--sbatch-extra"):
        parse_sbatch_extra(value)


def test_benign_tokens_still_parse_and_strings_reaching_the_script_are_checked(tmp_path):
    from profiler.runner import slurm

    assert slurm.parse_sbatch_extra("--constraint=a100 --qos high --exclusive --gres=gpu:a100:2") == (
        ("constraint", "a100"), ("qos", "high"), ("exclusive", True), ("gres", "gpu:a100:2"))
    with pytest.raises(UsageError, match="--partition"):
        slurm.options_from_flags(partition="gpu\n#SBATCH --x")
    with pytest.raises(UsageError, match="--account"):
        slurm.options_from_flags(account="a;b")
    assert slurm.safe_job_name("serprof-[/]\nrm -rf") == "serprof-----rm--rf"
    opts = slurm.SlurmOptions(sbatch_extra=(("comment", "x\ntouch /tmp/p"),))   # e.g. from an edited shards.json
    with pytest.raises(UsageError, match="sbatch_extra"):
        slurm.render_job_script(opts, tmp_path / "run", 2)

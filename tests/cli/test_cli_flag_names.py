"""Every error message names the flag (or the scenario file and key) the user actually wrote.

Each bad numeric or choice flag of ``serprof sweep``, ``serprof gate`` and ``serprof gate-interleave``
must end in one line on stderr, ``serprof: error: ...`` naming that flag, and exit code 2. Values from
a scenario file name the file and its key. (Flags and setting keys are mapped once, in
``profiler.planning.names``.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from profiler.cli import main

REPO = Path(__file__).resolve().parents[2]


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    return exc.value.code, err


def _one_line_exit_2(argv, capsys, *fragments):
    code, err = _run(argv, capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("serprof: error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    assert "Traceback" not in err
    return lines[0]


SWEEP_BAD = [
    ("--kernels", "nope"),
    ("--backend", "nope"),
    ("--lengths", "1k..x"),
    ("--batch", "0"),
    ("--dtype", "fp9"),
    ("--mode", "backward"),
    ("--heads", "0"),
    ("--head-dim", "x"),
    ("--device", "tpu"),
    ("--warmup", "-1"),
    ("--time-budget", "0"),
    ("--target-ci", "-1"),
    ("--memory-budget", "lots"),
    ("--memory-budget", "0"),
    ("--timeout", "-1"),
    ("--level", "galaxy"),
    ("--audio", "long"),
    ("--text-rate", "-1"),
    ("--text-rate", "x"),
    ("--bidirectional", "sideways"),
    ("--utterances", "-1"),
    ("--utterances", "x"),
    ("--packing", "tight"),
    ("--executor", "cloud"),
    ("--devices", "x"),
    ("--workers", "0"),
    ("--workers", "x"),
    ("--cores-per-worker", "0"),
]
SLURM_BAD = [
    ("--time-limit", "soon"),
    ("--gpus-per-task", "-1"),
    ("--array-parallelism", "0"),
    ("--shards", "0"),
    ("--sbatch-extra", "x"),
]


@pytest.mark.parametrize("flag, value", SWEEP_BAD, ids=[f"{f}={v}" for f, v in SWEEP_BAD])
def test_sweep_bad_flag_names_the_flag(flag, value, capsys):
    _one_line_exit_2(["sweep", "--device", "cpu", flag, value, "--dry-run"] if flag != "--device"
                     else ["sweep", flag, value, "--dry-run"], capsys, flag)


@pytest.mark.parametrize("flag, value", SLURM_BAD, ids=[f"{f}={v}" for f, v in SLURM_BAD])
def test_sweep_bad_slurm_flag_names_the_flag(flag, value, capsys):
    _one_line_exit_2(["sweep", "--device", "cpu", "--executor", "slurm", flag, value, "--dry-run"], capsys, flag)
    # without --executor slurm the same flag is named as a SLURM option
    _one_line_exit_2(["sweep", "--device", "cpu", flag, value, "--dry-run"], capsys, flag)


def test_issue_examples_name_the_written_flag(capsys, tmp_path):
    line = _one_line_exit_2(["sweep", "--target-ci", "-1"], capsys, "--target-ci")
    assert "--target-rel-ci" not in line
    line = _one_line_exit_2(["sweep", "--timeout", "-1"], capsys, "--timeout")
    assert "--point-timeout-s" not in line
    line = _one_line_exit_2(["sweep", "--resume", str(tmp_path), "--no-verify", "--warmup", "1"], capsys,
                            "drop --warmup, --no-verify")
    assert "--warmup-s" not in line and "--verify," not in line
    _one_line_exit_2(["sweep", "--resume", str(tmp_path), "--non-causal", "--no-energy"], capsys,
                     "drop --non-causal, --no-energy")


@pytest.mark.parametrize("toml, fragments", [
    ('[settings]\ntarget_rel_ci = -1\n', ["key 'settings.target_rel_ci'", "must be a finite number > 0"]),
    ('[settings]\nwarmup_s = -1\n', ["key 'settings.warmup_s'", "must be a finite number >= 0"]),
    ('lengths = "1k..x"\n', ["key 'lengths'"]),
    ('kernels = ["nope"]\n', ["key 'kernels'", "unknown kernel 'nope'"]),
    ('[execution]\nworkers = 0\n', ["key 'execution.workers'", "must be >= 1"]),
    ('[execution]\nexecutor = "cloud"\n', ["key 'execution.executor'", "not allowed"]),
    ('[execution]\ndevices = "x"\n', ["key 'execution.devices'", "not a CUDA device index"]),
    ('[execution]\npartition = "gpu"\n', ["key 'execution.partition'", "is a SLURM option", 'executor = "slurm"']),
    ('[execution]\nexecutor = "slurm"\nshards = 0\n', ["key 'execution.shards'", "must be >= 1"]),
    ('[execution]\nexecutor = "slurm"\ntime_limit = "soon"\n', ["key 'execution.time_limit'", "is not a time"]),
])
def test_scenario_values_name_the_file_and_key(toml, fragments, capsys, tmp_path):
    scen = tmp_path / "s.toml"
    scen.write_text('device = "cpu"\n' + toml)
    line = _one_line_exit_2(["sweep", "--scenario", str(scen), "--dry-run"], capsys, str(scen), *fragments)
    assert "--" not in line.split("; ")[0].replace("--dry-run", ""), line   # no flag the user did not write


def test_flag_overrides_the_scenario_and_is_named(capsys, tmp_path):
    scen = tmp_path / "s.toml"
    scen.write_text('device = "cpu"\n[execution]\nworkers = 1\n')
    line = _one_line_exit_2(["sweep", "--scenario", str(scen), "--workers", "0", "--dry-run"], capsys, "--workers")
    assert "s.toml" not in line


GATE_BAD = [
    ("--alpha", "2"),
    ("--alpha", "x"),
    ("--normalize", "weather"),
    ("--statistic", "mean"),
    ("--noise-floor", "-1"),
    ("--n-boot", "0"),
    ("--seed", "x"),
    ("--rule", "latency:+5"),
]


@pytest.mark.parametrize("flag, value", GATE_BAD, ids=[f"{f}={v}" for f, v in GATE_BAD])
def test_gate_bad_flag_names_the_flag(flag, value, capsys, tmp_path):
    # the flag is checked before the runs are read: even missing run folders do not hide it
    frag = "rule 'latency:+5'" if flag == "--rule" else flag
    _one_line_exit_2(["gate", "-b", str(tmp_path / "a"), "-c", str(tmp_path / "b"), flag, value], capsys, frag)


INTERLEAVE_BAD = [
    ("--rounds", "0"), ("--reps", "0"), ("--batch", "0"), ("--heads", "0"), ("--head-dim", "0"),
    ("--lengths", "long"), ("--alpha", "2"), ("--noise-floor", "2"), ("--statistic", "mean"), ("--n-boot", "0"),
    ("--rounds", "x"),
]


@pytest.mark.parametrize("flag, value", INTERLEAVE_BAD, ids=[f"{f}={v}" for f, v in INTERLEAVE_BAD])
def test_gate_interleave_bad_flag_names_the_flag(flag, value, capsys):
    argv = ["gate-interleave", "--ref-a", "HEAD", "--ref-b", "HEAD", "--repo", str(REPO), "--kernels", "dial",
            "--lengths", "64", flag, value]
    _one_line_exit_2(argv, capsys, flag)


def test_gate_interleave_missing_inputs_name_the_flag(capsys):
    _one_line_exit_2(["gate-interleave", "--ref-a", "HEAD"], capsys, "--ref-b")
    _one_line_exit_2(["gate-interleave", "--ref-a", "HEAD", "--ref-b", "HEAD", "--lengths", "64"], capsys, "--kernels")
    _one_line_exit_2(["gate-interleave", "--ref-a", "HEAD", "--ref-b", "HEAD", "-k", "dial"], capsys, "--lengths")


def test_old_gate_interleave_spelling_points_to_the_new_command(capsys):
    _one_line_exit_2(["gate", "--interleave", "--ref-a", "HEAD", "--ref-b", "HEAD", "-k", "dial", "-T", "64"],
                     capsys, "--interleave", "serprof gate-interleave")


def test_interleave_only_flags_without_interleave_point_to_the_new_command(capsys, tmp_path):
    _one_line_exit_2(["gate", "-b", str(tmp_path), "-c", str(tmp_path), "--rounds", "3"], capsys,
                     "--rounds", "gate-interleave")

"""Pure pieces of scale-out: core splitting, device checks, ordering, sharding, SLURM option parsing."""

from __future__ import annotations

import pytest

from profiler.core.errors import UsageError
from profiler.core.records import PointSpec
from profiler.runner import pinning
from profiler.runner.multi import order_points
from profiler.runner.slurm import make_shards, parse_sbatch_extra, parse_time_limit


def test_split_cores_gives_disjoint_equal_sets_and_refuses_sharing():
    sets = pinning.split_cores(2, cores=[0, 1, 2, 3, 4])
    assert sets == [(0, 1), (2, 3)]                   # core 4 left unused rather than shared
    assert pinning.split_cores(3, cores=[4, 5, 6], cores_per_worker=1) == [(4,), (5,), (6,)]
    with pytest.raises(UsageError, match="only 2 core"):
        pinning.split_cores(3, cores=[0, 1])
    with pytest.raises(UsageError, match="needs 4 cores"):
        pinning.split_cores(2, cores=[0, 1, 2], cores_per_worker=2)


def test_cpu_slot_env_carries_affinity_and_thread_counts():
    slot = pinning.cpu_slots(2, cores=[0, 1, 2, 3])[1]
    env = slot.env({"PATH": "/bin"})
    assert env[pinning.PIN_CORES_ENV] == "2,3" and env[pinning.PIN_THREADS_ENV] == "2"
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "2"
    assert "CUDA_VISIBLE_DEVICES" not in env and env["PATH"] == "/bin"
    cuda = pinning.cuda_slots([3, 1])
    assert cuda[0].env({})["CUDA_VISIBLE_DEVICES"] == "3" and cuda[1].describe()["cuda_visible_devices"] == "1"


@pytest.mark.parametrize("text, msg", [("0,x", "not a CUDA device index"), ("1,1", "listed twice"),
                                       ("-1", "negative"), (",", "at least one")])
def test_parse_devices_rejects_bad_lists(text, msg):
    with pytest.raises(UsageError, match=msg):
        pinning.parse_devices(text)


def test_cuda_device_checks_name_the_problem():
    assert pinning.parse_devices("0, 2") == (0, 2)
    with pytest.raises(UsageError, match="--device is cpu; on CPU use --workers"):
        pinning.check_cuda_devices((0,), "cpu", 4)
    with pytest.raises(UsageError, match="no CUDA device"):
        pinning.check_cuda_devices((0,), "auto", 0)
    with pytest.raises(UsageError, match=r"device 4 does not exist; torch sees 2 \(valid: 0, 1\)"):
        pinning.check_cuda_devices((1, 4), "cuda", 2)
    pinning.check_cuda_devices((0, 1), "cuda", 2)     # valid: no error


def _s(kernel, T, B=1, H=4):
    return PointSpec(kernel=kernel, backend="zz", T=T, B=B, H=H)   # unknown kernel: cost = tokens*H*D


def test_order_puts_costly_series_first_and_keeps_each_series_short_to_long():
    small = [_s("ka", 256), _s("ka", 512)]
    big = [_s("kb", 1024), _s("kb", 4096), _s("kb", 8192)]
    mid = [_s("kc", 2048, H=2), _s("kc", 4096, H=2)]
    out = order_points(small + mid + big)
    assert out == big + mid + small


def test_shards_hold_whole_series_balanced_and_every_point_once():
    series = {k: [_s(k, t) for t in (256, 512, 1024)] for k in ("a", "b", "c", "d")}
    series["e"] = [_s("e", 64 * 1024)]                # one very costly series
    pts = [p for v in series.values() for p in v]
    shards = make_shards(pts, 2)
    assert sorted(p.id for sh in shards for p in sh) == sorted(p.id for p in pts)
    assert shards[0] == series["e"]                   # the costly series alone; the rest share shard 1
    for sh in shards:
        for key in {p.series_key for p in sh}:
            members = [p for p in sh if p.series_key == key]
            assert len(members) == len([p for p in pts if p.series_key == key])   # never split
            assert [p.T for p in members] == sorted(p.T for p in members)         # short to long
    assert len(make_shards(pts)) == 5 and len(make_shards(pts, 50)) == 5          # <= number of series


@pytest.mark.parametrize("text, minutes", [("90", 90), ("2:00:00", 120), ("1-00:00:00", 1440), ("1-2", 1560),
                                           ("30:30", 31), ("2h", 120), ("45min", 45), (15, 15)])
def test_time_limit_accepts_slurm_syntax(text, minutes):
    assert parse_time_limit(text) == minutes


@pytest.mark.parametrize("text", ["soon", "0", "1:xx"])
def test_time_limit_rejects_nonsense(text):
    with pytest.raises(UsageError, match="--time-limit"):
        parse_time_limit(text)


def test_sbatch_extra_parses_long_flags_and_refuses_ones_serprof_sets():
    assert parse_sbatch_extra("--constraint=a100 --qos high --exclusive --mail_type=END") == (
        ("constraint", "a100"), ("qos", "high"), ("exclusive", True), ("mail-type", "END"))
    for bad, msg in [("constraint=a100", "expected sbatch flags"), ("-C a100", "long flag"),
                     ("--array=0-3", "set by serprof")]:
        with pytest.raises(UsageError, match=msg):
            parse_sbatch_extra(bad)


def test_scenario_execution_table_is_validated_and_flags_override_it(tmp_path):
    from profiler.cli.scaleout import choose_for_sweep, execution_table
    from profiler.planning.scenario import build_spec
    from profiler.runner.multi import MultiExecutor

    scen = tmp_path / "s.toml"
    scen.write_text('kernels = ["retnet"]\ndevice = "cpu"\n[execution]\nworkers = 2\ncores_per_worker = 1\n')
    spec = build_spec(scen, {})                       # the execution table is not part of the sweep spec
    assert spec.kernels == ("retnet",) and execution_table(scen) == {"workers": 2, "cores_per_worker": 1}
    choice = choose_for_sweep({}, scenario=scen, spec=spec, resume=None)
    cores = [s.cores for s in choice.executor.slots]
    assert isinstance(choice.executor, MultiExecutor) and len(cores) == 2 and cores[0] != cores[1]
    assert all(len(c) == 1 for c in cores) and all(s.threads == 1 for s in choice.executor.slots)
    choice = choose_for_sweep({"workers": 1}, scenario=scen, spec=spec, resume=None)   # flag wins
    assert len(choice.executor.slots) == 1
    scen.write_text('[execution]\nexecutor = "slurm"\npartition = "gpu"\ntime_limit = "1:00:00"\n')
    choice = choose_for_sweep({}, scenario=scen, spec=build_spec(scen, {}), resume=None)
    assert choice.kind == "slurm" and choice.slurm.partition == "gpu" and choice.slurm.time_limit_min == 60
    scen.write_text('[execution]\npartitoin = "gpu"\n')
    with pytest.raises(UsageError, match="unknown key 'execution.partitoin'.*did you mean 'partition'"):
        execution_table(scen)

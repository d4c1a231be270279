"""Values own their statistics (Timing) and one module formats numbers (profiler.core.fmt)."""

from __future__ import annotations

import math
import subprocess
import sys

from profiler.core import fmt
from profiler.core.records import Timing, to_dict
from profiler.core.stats import median_ci, summarize


def test_timing_computes_and_caches_median_ci_and_noise_flags():
    xs = tuple(1e-3 * (1 + 0.001 * i) for i in range(40))
    t = Timing(xs, "perf_counter_ns")
    assert t.median_s == summarize(xs).median and t.ci_s == median_ci(xs)
    assert t.summary is t.summary                   # cached
    assert not t.noisy and t.noise_flags == ()
    import dataclasses

    assert set(to_dict(t)) == {f.name for f in dataclasses.fields(Timing)}   # derived values are never stored
    assert not {"median_s", "summary", "ci_s", "rel_ci", "noisy", "noise_flags", "n"} & set(to_dict(t))
    few = Timing((1.0, 2.0, 4.0), "x")
    assert few.noisy and few.noise_flags[0] == "few samples (3)" and few.noise_flags[1].startswith("wide CI")
    empty = Timing((), "x")
    assert empty.median_s is None and empty.ci_s is None and not empty.wide_ci and empty.noisy


def test_records_import_stays_light():
    """Every command reads records; scipy (the slow import behind the statistics) loads on first use."""
    p = subprocess.run([sys.executable, "-c", "import sys, profiler.core.records, profiler.core.fmt; "
                        "assert 'scipy' not in sys.modules and 'torch' not in sys.modules"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def test_fmt_styles():
    assert fmt.seconds(2.5e-3) == "2.5 ms" and fmt.seconds(None) == "–" and fmt.seconds(None, missing="-") == "-"
    assert fmt.seconds_fixed(1.5e-5) == "15.0 µs" and fmt.seconds_fixed(0.25) == "250.00 ms"
    assert fmt.bytes_iec(3 * 2**30) == "3 GiB" and fmt.bytes_iec(2**41, sig=4, largest="GiB") == "2048 GiB"
    assert fmt.bytes_fixed(1536) == "1.5 KiB" and fmt.bytes_exact(4096) == "4KiB"
    assert fmt.joules(0.0123) == "12.3 mJ" and fmt.rate(2.5e12, "FLOP/s") == "2.5 TFLOP/s"
    assert fmt.ratio(1.234) == "1.23×" and fmt.count(4096) == "4,096" and fmt.count(math.inf) == "∞"
    assert fmt.count(math.inf, missing="?", infinite=None) == "?" and fmt.percent(0.125) == "12%"

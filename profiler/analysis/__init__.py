"""Analysis of stored runs: pure functions over records (numpy/scipy; never torch).

* ``series``    per-point summaries and grouping into series (all of a spec but T)
* ``fits``      log-log exponent with a bootstrap CI; a + bT + cT^2 cost model (NNLS)
* ``crossover`` baseline choice, ratios vs the baseline, crossover lengths T*
* ``frontier``  OOM frontier: longest T that ran, first failure, predicted max T
* ``roofline``  achieved FLOP/s and bytes/s against calibration and spec-sheet peaks
* ``devices``   which device model measured each record; per-model memory and calibration
* ``ser``       SER view of layer/model points: audio duration, utterance replays, payoff in audio time
* ``summary``   ``analyze(loaded_run, baseline=None) -> RunAnalysis`` (all of the above)
* ``compare``, ``gates``  baseline-vs-candidate statistics and CI gates
"""

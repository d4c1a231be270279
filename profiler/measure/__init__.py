"""The measurement engine, run inside worker processes.

* ``point``: ``measure_point(spec, settings, device_index=0) -> PointRecord`` (verify, time, memory, energy);
* ``timer``: warm-up and the repetition/stopping algorithm (perf_counter_ns, CUDA events);
* ``memory``: peak memory of one call (CUDA allocator, torch.profiler allocation events on CPU);
* ``energy``: NVML and RAPL energy counters, the power sampler, a null meter that says why;
* ``device``: the CPU / CUDA abstraction that hands out the above;
* ``bench``: benchmarks of the kernels and of this engine (``serprof bench``).

Importing this package is cheap; torch is imported where a measurement needs it.
"""

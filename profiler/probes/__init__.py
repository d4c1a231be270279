"""Probes: procedures that run measurements and then judge them, in one call.

Each needs both sides of the data flow (``measure``/``runner`` to produce records, ``analysis`` to judge
them), so they sit after ``report`` and before ``api``: ``selftest`` (can the numbers be trusted on this
machine), ``gate_eval`` (the gate's false-alarm and detection rates) and ``frontier`` (the longest
sequence that fits a device of a given memory size, probed without that device).
"""

"""Shared test configuration.

* ``gpu``-marked tests skip cleanly when torch sees no CUDA device.
* Torch runs with 2 threads, like the machines this suite is meant for.
* The repository root is on ``PYTHONPATH`` so that worker processes can load the test fakes
  (``SERPROF_MEASURE_FN=tests.fakes.workers:...``).
* hypothesis keeps no example database and writes its cache to the temp folder, not ``.hypothesis/``
  in the checkout.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings
from hypothesis.configuration import set_hypothesis_home_dir

set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "serprof-hypothesis")
hypothesis_settings.register_profile("serprof", database=None)
hypothesis_settings.load_profile("serprof")

_ROOT = str(Path(__file__).resolve().parents[1])
os.environ.setdefault("SERPROF_FLEX_COMPILE", "0")   # FlexAttention eager in tests (profiler.kernels.softmax)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH", "")) if p)


def pytest_collection_modifyitems(config, items):
    gpu_items = [i for i in items if "gpu" in i.keywords]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none visible to torch)")
    for item in gpu_items:
        item.add_marker(skip)

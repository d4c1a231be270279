"""Fixtures of the report tests: the synthetic run folder (``synth_run.py``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("serprof_tests_synth_run", Path(__file__).parents[1] / "analysis" / "synth_run.py")
synth = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(synth)


@pytest.fixture(autouse=True)
def kernel_groups():
    """Kernel groups as the API installs them (``profiler.api`` wires the registry into the report)."""
    import profiler.api  # noqa: F401  (installs the lookup on import)
    from profiler.report import groups

    assert groups.group_of("gsa") == "gated"
    yield


@pytest.fixture(scope="session")
def synth_module():
    return synth


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory) -> Path:
    return synth.make_run(tmp_path_factory.mktemp("report") / "synthetic")


@pytest.fixture(scope="session")
def layer_run(tmp_path_factory) -> Path:
    """A layer-level (SER) run: audio-derived lengths, utterance replays (``synth.make_layer_run``)."""
    return synth.make_layer_run(tmp_path_factory.mktemp("ser") / "paper-like")

"""``slurm``-marked tests run only when asked (``make test-slurm`` sets ``SERPROF_SLURM_TESTS=1``) and, for
those that use the ``slurm_cluster`` fixture, only where a SLURM controller answers; otherwise they
skip with the reason. ``make test`` therefore stays fast and runs anywhere."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

OPT_IN = "SERPROF_SLURM_TESTS"


def pytest_collection_modifyitems(config, items):
    if os.environ.get(OPT_IN) == "1":
        return
    skip = pytest.mark.skip(reason=f"real-SLURM test: run `make test-slurm` ({OPT_IN}=1; it starts the one-node "
                                   "cluster of .ci/slurm)")
    for item in items:
        if item.get_closest_marker("slurm") is not None:
            item.add_marker(skip)


def cluster_problem(partition: str = "debug") -> str | None:
    """Why no SLURM cluster is usable here (``None``: sinfo lists ``partition`` with an idle/mixed node)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no SLURM client here (sinfo/sbatch not found; sudo .ci/slurm/start installs and starts one)"
    try:
        p = subprocess.run(["sinfo", "-h", "-p", partition, "-o", "%T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s"
    if p.returncode != 0:
        said = "; ".join(ln.strip() for ln in (p.stderr or p.stdout).splitlines() if ln.strip())
        return f"SLURM not reachable: {said[:300]}"
    states = p.stdout.split()
    if not any(s.rstrip("*") in ("idle", "mixed", "allocated") for s in states):
        return f"partition {partition!r} has no usable node (sinfo: {' '.join(states) or 'none'})"
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """The partition of a reachable one-node cluster (``.ci/slurm/start``), or skip with the reason."""
    why = cluster_problem("debug")
    if why:
        pytest.skip(why)
    return "debug"

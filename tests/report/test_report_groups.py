"""Kernel groups in the report: lookup order, fallback to "other", grouped figure panels, sorted tables."""

from __future__ import annotations

from types import SimpleNamespace

from profiler.report import figures, groups
from profiler.report.html import load_analysis
from profiler.report.text import summary_rows


def test_group_of_prefers_stored_groups_then_the_lookup_then_other():
    assert groups.group_of("retnet") == "linear+decay"            # the registry, via the API's lookup
    assert groups.group_of("my_plugin_kernel") == "other"           # unknown / uninstalled plugin
    assert groups.group_of("retnet", {"groups": {"retnet": "gated"}}) == "gated"
    saved = (groups._lookup, groups._order)
    try:
        groups.use_lookup(lambda k: 1 / 0)                         # a broken lookup never breaks a report
        assert groups.group_of("retnet") == "other" and groups.group_of("softmax") == "softmax"
    finally:
        groups.use_lookup(*saved)
    assert groups.ordered(["other", "zzz", "gated", "softmax"]) == ["softmax", "gated", "zzz", "other"]


def _analysis(kernels, notes=None):
    keys = [SimpleNamespace(kernel=k, facet=("cpu", "float32", "fwd", 1)) for k in kernels]
    return SimpleNamespace(series=[SimpleNamespace(key=k) for k in keys], manifest=SimpleNamespace(notes=notes or {})), keys


def test_panels_split_by_group_with_softmax_in_each():
    a, keys = _analysis(["softmax", "retnet", "gsa", "lightnet", "my_plugin"])
    panels = figures._panels([a])
    f = ("cpu", "float32", "fwd", 1)
    assert panels == [(f, "linear+decay"), (f, "gated"), (f, "other")]
    drawn = {g: [k.kernel for k in keys if figures._in_panel(a, k, f, g)] for _, g in panels}
    assert drawn == {"linear+decay": ["softmax", "retnet"], "gated": ["softmax", "gsa", "lightnet"],
                     "other": ["softmax", "my_plugin"]}
    one, _ = _analysis(["softmax", "gsa", "lightnet"])             # one group besides softmax: one panel
    assert figures._panels([one]) == [(f, None)]


def test_summary_rows_sorted_by_group(synthetic_run):
    rows = summary_rows(load_analysis(synthetic_run))
    got = [r.group for r in rows]
    assert got == sorted(got, key=groups.rank) and got[0] == "softmax" and "delta-rule" in got
    assert [r.variant.split("/")[0] for r in rows if r.group != "softmax"] == ["retnet", "gsa", "kda"]

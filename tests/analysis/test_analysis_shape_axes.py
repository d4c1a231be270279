"""Series keyed by the shape axes: facets per kv-heads ratio / Dv, the window as part of the variant,
comparisons only within one shape, full softmax as the default baseline."""

from profiler.analysis.crossover import Variant, choose_baseline, compare_all
from profiler.analysis.series import Series, SeriesKey
from profiler.core.records import PointSpec


def _series(**kw):
    return Series(SeriesKey.of(PointSpec(**kw)))


def test_keys_facets_and_variants():
    full = SeriesKey.of(PointSpec("softmax", "sdpa"))
    gqa = SeriesKey.of(PointSpec("softmax", "sdpa", H=8, kv_heads=2, value_dim=128))
    win = SeriesKey.of(PointSpec("softmax", "sdpa", window=256))
    assert full.facet[4] == "" and gqa.facet[4] == "H8:KV2 Dv128" and "H8:KV2 Dv128" in gqa.facet_label
    assert win.variant == "softmax/sdpa/causal w=256" and win.facet == full.facet
    assert win.match_key == full.match_key and gqa.match_key != full.match_key
    assert str(Variant.of(win)) == "softmax/sdpa/causal w=256" and Variant.of(win) != Variant.of(full)


def test_baseline_is_full_context_softmax_and_comparisons_stay_within_a_shape():
    series = [_series(kernel="softmax", backend="sdpa", window=64), _series(kernel="softmax", backend="sdpa"),
              _series(kernel="retnet", backend="torch"), _series(kernel="retnet", backend="torch", kv_heads=1),
              _series(kernel="softmax", backend="sdpa", kv_heads=1)]
    base = choose_baseline(series)
    assert base.causal == Variant("softmax", "sdpa", True)      # full-context softmax, not the windowed one
    assert choose_baseline(series, "softmax/sdpa").causal == base.causal
    pairs = {(c.series.key.kernel, c.series.key.window, c.series.key.kv_heads, c.baseline.key.kv_heads)
             for c in compare_all(series, base)}
    assert pairs == {("softmax", 64, 0, 0), ("retnet", 0, 0, 0), ("retnet", 0, 1, 1)}

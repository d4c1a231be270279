"""Worker start-up keeps Triton's compiled kernels and fla's autotune results between processes and runs."""

from __future__ import annotations

import pytest

from profiler.measure import compile_cache as cc
from profiler.measure.timer import first_call_record


@pytest.fixture(autouse=True)
def _no_global_state(monkeypatch):
    monkeypatch.setattr(cc, "_STATE", None)


def test_default_under_xdg_cache_home_and_cold(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path), "HOME": "/nonexistent"}
    state = cc.apply_cache_env(env)
    assert env[cc.TRITON_ENV] == str(tmp_path / "serprof" / "triton")
    assert env[cc.FLA_ENV] == "1"
    assert state.cache_dir == env[cc.TRITON_ENV] and state.warm is False
    assert "serprof's default" in state.note


def test_default_under_home_cache_and_warm(tmp_path):
    d = tmp_path / ".cache" / "serprof" / "triton"
    (d / "abc").mkdir(parents=True)
    env = {"HOME": str(tmp_path)}
    state = cc.apply_cache_env(env)
    assert env[cc.TRITON_ENV] == str(d) and state.warm is True
    assert cc.cache_state() is state
    fc = first_call_record(1.5)
    assert (fc.wall_s, fc.cache_dir, fc.cache_warm) == (1.5, str(d), True)


def test_user_values_win(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    env = {"HOME": str(tmp_path), cc.TRITON_ENV: str(mine), cc.FLA_ENV: "0"}
    state = cc.apply_cache_env(env)
    assert env[cc.TRITON_ENV] == str(mine) and env[cc.FLA_ENV] == "0"
    assert state.warm is False and "set by the user" in state.note   # exists but empty


def test_outside_a_worker_the_state_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(cc.TRITON_ENV, raising=False)
    s = cc.cache_state()
    assert s.cache_dir is None and s.warm is None

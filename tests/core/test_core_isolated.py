"""The isolated-call seam (``profiler.core.isolated``): results, and each way a call can fail, as a type."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from profiler.core.isolated import (
    ChildCrashed,
    ChildRaised,
    ChildTimedOut,
    IsolatedProcess,
    call_isolated,
)

HERE = os.path.abspath(__file__)


# --- targets, run in the child (loaded by file path) ------------------------------------------------

def _echo(**kwargs):
    return {"kwargs": kwargs, "pid": os.getpid(), "env": os.environ.get("SEAM_TEST"), "cwd": os.getcwd()}


def _fail(text):
    print("a line on stdout that must not corrupt the result pipe")
    raise ValueError(text)


def _die(kind):
    sys.stderr.write("about to die\n")
    sys.stderr.flush()
    if kind == "segv":
        import ctypes
        ctypes.string_at(0)
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(7)


def _sleep(s):
    time.sleep(s)


def _not_json():
    return object()


# --- tests ------------------------------------------------------------------------------------------

def test_result_env_cwd_and_nan_roundtrip(tmp_path):
    out = call_isolated(f"{HERE}:_echo", {"x": [1, 2.5, float("nan")], "s": "é"}, env=dict(os.environ, SEAM_TEST="on"),
                        cwd=tmp_path)
    assert out["kwargs"]["x"][:2] == [1, 2.5] and out["kwargs"]["x"][2] != out["kwargs"]["x"][2]  # NaN
    assert out["kwargs"]["s"] == "é" and out["env"] == "on" and out["cwd"] == str(tmp_path)
    assert out["pid"] != os.getpid()


def test_exception_is_raised_as_its_text_and_the_child_lives_on():
    with IsolatedProcess(name="helper") as child:
        with pytest.raises(ChildRaised) as info:
            child.call(f"{HERE}:_fail", {"text": "bad input 42"})
        assert info.value.exc_type == "ValueError" and info.value.message == "bad input 42"
        assert "_fail" in info.value.traceback_text
        assert child.alive() and child.call("os:getpid") == child.pid
        with pytest.raises(ChildRaised, match="not JSON serializable"):
            child.call(f"{HERE}:_not_json")
        with pytest.raises(ChildRaised, match="ModuleNotFoundError"):
            child.call("no_such_module_xyz:f")


@pytest.mark.parametrize("kind, code, text", [("segv", -signal.SIGSEGV, "SIGSEGV"), ("kill", -signal.SIGKILL, "SIGKILL"),
                                              ("exit", 7, "exited with code 7")])
def test_a_dying_child_is_crashed_with_its_exit_code_or_signal(kind, code, text):
    with pytest.raises(ChildCrashed) as info:
        call_isolated(f"{HERE}:_die", {"kind": kind}, name="worker")
    assert info.value.returncode == code and text in str(info.value) and str(info.value).startswith("worker ")
    if kind == "segv":   # the fault handler's headline is the log tail
        assert info.value.log_tail.startswith("Fatal Python error: Segmentation fault")
    else:
        assert info.value.log_tail == "about to die"
    assert info.value.signal_name == (None if code > 0 else signal.Signals(-code).name)


def test_timeout_kills_the_child():
    child = IsolatedProcess()
    t0 = time.monotonic()
    with pytest.raises(ChildTimedOut) as info:
        child.call(f"{HERE}:_sleep", {"s": 60}, timeout_s=0.5)
    assert time.monotonic() - t0 < 15 and info.value.timeout_s == 0.5
    assert not child.alive()
    with pytest.raises(ProcessLookupError):
        os.kill(child.pid, 0)


def test_setup_runs_first_and_timeout_covers_the_whole_call():
    with pytest.raises(ChildTimedOut):
        call_isolated("os:getpid", setup=(f"{HERE}:_sleep_a_while",), timeout_s=0.5)


def _sleep_a_while():
    time.sleep(60)


def test_log_kept_only_when_the_child_wrote_something(tmp_path):
    call_isolated("os:getpid", log_dir=tmp_path / "quiet", name="worker")
    assert not (tmp_path / "quiet").exists()
    with pytest.raises(ChildRaised):
        call_isolated(f"{HERE}:_fail", {"text": "boom"}, log_dir=tmp_path / "logs", name="worker")
    (log,) = (tmp_path / "logs").iterdir()
    text = log.read_text()
    assert log.name.startswith("worker-") and "ValueError: boom" in text and "must not corrupt" in text


def test_child_is_in_its_own_session_so_ctrl_c_reaches_only_the_parent():
    with IsolatedProcess() as child:
        sid = child.call(f"{HERE}:_sid")
        assert sid == child.pid != os.getsid(0)


def _sid():
    return os.getsid(0)


def test_a_file_target_can_import_its_sibling_modules(tmp_path):
    """As ``python file.py`` does, the target file's folder is on the child's sys.path (CI caught a
    test file importing a helper next to it that only the parent's conftest had put on sys.path)."""
    (tmp_path / "sibling_helper_xyz.py").write_text("VALUE = 41\n")
    (tmp_path / "target.py").write_text("from sibling_helper_xyz import VALUE\n\n"
                                        "def answer():\n    return VALUE + 1\n")
    assert call_isolated(f"{tmp_path / 'target.py'}:answer") == 42

"""Isolated calls: run a named function in a child process and get its result or a typed failure.

The one way serprof runs code in another process: the sweep's measurement workers
(``profiler.runner.local``), Triton-interpreted fla runs (``profiler.kernels.interpret.run_isolated``)
and the fresh processes of interleaved A/B (``profiler.runner.interleaved_ab``)::

    with IsolatedProcess(env, name="worker", log_dir=run_dir / "logs") as child:
        info = child.call("profiler.runner.worker:start", {"device": "cpu"}, timeout_s=600)
        rec = child.call("profiler.runner.worker:point", {...}, timeout_s=300)

    result = call_isolated("pkg.module:function", {"x": 1}, env=env, timeout_s=60)

A target is ``"package.module:function"`` or ``"/path/to/file.py:function"`` (a file outside any
package: test helpers, or code that must not import the calling tree's ``profiler``). Arguments
and results are JSON (``NaN``/``inf`` allowed), never pickle: a message is data, not code.

How a call ends (each a ``ChildFailure`` subclass carrying the tail of the child's log):

* a result -> returned;
* the function raised -> ``ChildRaised`` (exception type, message, traceback); the child lives on;
* the child died (segfault, abort, SIGKILL from the OOM killer, ``sys.exit``) -> ``ChildCrashed``
  with the exit code or signal, and the fault handler's headline when there is one;
* no result within ``timeout_s`` -> the child's process group is SIGKILLed -> ``ChildTimedOut``.

Process. ``python -P <this file>``: the child runs this file, which imports only the standard library,
so a child whose ``PYTHONPATH`` points at another snapshot of serprof (interleaved A/B of an older
commit) still speaks the same protocol; the working directory is put on ``sys.path`` as ``python -m``
would. Commands arrive on the child's stdin, one JSON line each; results go back on a dedicated pipe,
so whatever a library prints cannot corrupt them. The child's stdout and stderr go to a log file
(``log_dir``; kept only when not empty) or an anonymous temporary file, with
``PYTHONFAULTHANDLER=1`` so that a segfault leaves a Python traceback there. The child runs in a
session of its own (a Ctrl-C in the terminal reaches only the parent, which then stops its children
deliberately) and asks Linux to SIGKILL it when the parent dies (``PR_SET_PDEATHSIG``), so a killed
parent leaves no orphan working in the background.

Wire format (parent -> child stdin; child -> result pipe)::

    {"call": "pkg.mod:fn", "kwargs": {...}}      {"ok": true, "result": ...}
    {"exit": true}                               {"ok": false, "type": "ValueError", "message": "...",
                                                  "traceback": "..."}
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib
import importlib.util
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Mapping

#: this file, which the child runs as its main program (it imports only the standard library)
CHILD_MAIN = Path(__file__).resolve()
_GRACE_S = 5.0


# ----------------------------------------------------------------------------- failures

class ChildFailure(Exception):
    """An isolated call did not return a result; ``log_tail`` is the last line of the child's log."""

    def __init__(self, message: str, *, target: str = "", log_tail: str = ""):
        super().__init__(message)
        self.target, self.log_tail = target, log_tail


class ChildCrashed(ChildFailure):
    """The child process ended during a call. ``returncode``: its exit code (negative: killed by a
    signal, named by ``signal_name``), ``None`` when it could not be reaped."""

    def __init__(self, name: str, returncode: int | None, *, target: str = "", log_tail: str = ""):
        self.returncode = returncode
        text = describe_exit(name, returncode) + (f"; last stderr: {log_tail}" if log_tail else "")
        super().__init__(text, target=target, log_tail=log_tail)

    @property
    def signal_name(self) -> str | None:
        if self.returncode is None or self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"


class ChildTimedOut(ChildFailure):
    """No result within ``timeout_s`` seconds; the child was killed."""

    def __init__(self, name: str, timeout_s: float, *, target: str = "", log_tail: str = ""):
        self.timeout_s = timeout_s
        super().__init__(f"{name} gave no result within {timeout_s:g} s; killed", target=target, log_tail=log_tail)


class ChildRaised(ChildFailure):
    """The called function raised; ``exc_type``, ``message`` and ``traceback_text`` say what. The
    child is still alive and can take more calls."""

    def __init__(self, exc_type: str, message: str, traceback_text: str, *, target: str = "", log_tail: str = ""):
        self.exc_type, self.message, self.traceback_text = exc_type, message, traceback_text
        super().__init__(f"{exc_type}: {message}" if message else exc_type, target=target, log_tail=log_tail)


def describe_exit(name: str, returncode: int | None) -> str:
    """``"worker killed by SIGKILL (likely the kernel's OOM killer), exit code -9"`` and the like."""
    if returncode is None:
        return f"{name} stopped responding"
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode).name
        except ValueError:
            sig = f"signal {-returncode}"
        hint = " (likely the kernel's OOM killer)" if -returncode == signal.SIGKILL else ""
        return f"{name} killed by {sig}{hint}, exit code {returncode}"
    return f"{name} exited with code {returncode}"


# ----------------------------------------------------------------------------- parent side

def _encode(msg: Mapping[str, Any]) -> bytes:
    return (json.dumps(msg, separators=(",", ":"), allow_nan=True) + "\n").encode()


class IsolatedProcess:
    """One child process that runs calls (one at a time, in order) until stopped.

    ``env``: the child's whole environment (default: this process's). ``name`` labels failures
    ("worker killed by SIGSEGV ..."). ``log_dir``: where the child's stdout/stderr log goes
    (``<name>-<ns>.log``, deleted at the end when empty); default an anonymous temporary file.
    ``cwd``: the child's working directory (also first on its ``sys.path``).
    """

    def __init__(self, env: Mapping[str, str] | None = None, *, name: str = "child", log_dir: Path | None = None,
                 cwd: str | Path | None = None):
        self.name = name
        child_env = dict(os.environ if env is None else env)
        child_env.setdefault("PYTHONFAULTHANDLER", "1")  # a segfault prints a Python traceback to the log
        if log_dir is not None:
            log_dir = Path(log_dir)
            log_dir.mkdir(parents=True, exist_ok=True)
            self._log = open(log_dir / f"{name.replace(' ', '-')}-{time.time_ns()}.log", "w+b")
        else:
            self._log = tempfile.TemporaryFile()
        r, w = os.pipe()
        try:
            self.proc = subprocess.Popen([sys.executable, "-P", str(CHILD_MAIN), str(w)], stdin=subprocess.PIPE,
                                         stdout=self._log, stderr=self._log, pass_fds=(w,), env=child_env,
                                         cwd=None if cwd is None else str(cwd), start_new_session=True)
        except BaseException:
            os.close(r)
            self._log.close()
            raise
        finally:
            os.close(w)
        self._rfd = r
        self._buf = b""
        self._target = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def call(self, target: str, kwargs: Mapping[str, Any] | None = None, *, timeout_s: float | None = None) -> Any:
        """``target(**kwargs)`` in the child; its JSON result, or a ``ChildFailure``."""
        self.submit(target, kwargs)
        return self.result(timeout_s)

    def submit(self, target: str, kwargs: Mapping[str, Any] | None = None) -> None:
        """Send a call without waiting (``result`` collects it): start several children's work together."""
        self._target = target
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(_encode({"call": target, "kwargs": dict(kwargs or {})}))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise self._crashed() from None

    def result(self, timeout_s: float | None = None) -> Any:
        """The submitted call's result; on timeout the child is killed (``ChildTimedOut``)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while b"\n" not in self._buf:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                tail = self.log_tail()
                self.kill()
                raise ChildTimedOut(self.name, float(timeout_s or 0), target=self._target, log_tail=tail)
            ready, _, _ = select.select([self._rfd], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._rfd, 1 << 16)
            if not chunk:
                raise self._crashed()
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        msg = json.loads(line)
        if msg.get("ok"):
            return msg.get("result")
        raise ChildRaised(msg.get("type", "Exception"), msg.get("message", ""), msg.get("traceback", ""),
                          target=self._target, log_tail=self.log_tail())

    def _crashed(self) -> ChildCrashed:
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            rc = None
        return ChildCrashed(self.name, rc, target=self._target, log_tail=self.log_tail())

    def log_text(self, limit_bytes: int = 4096) -> str:
        """The last ``limit_bytes`` of the child's stdout/stderr log."""
        try:
            self._log.flush()
            self._log.seek(0, os.SEEK_END)
            size = self._log.tell()
            self._log.seek(max(0, size - limit_bytes))
            return self._log.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""

    def log_tail(self, limit: int = 300) -> str:
        """The log's last non-empty line (the fault handler's headline, "Fatal Python error: ...", when present)."""
        lines = [ln.strip() for ln in self.log_text().splitlines() if ln.strip()]
        if not lines:
            return ""
        fatal = [ln for ln in lines if ln.startswith("Fatal Python error")]
        return (fatal[-1] if fatal else lines[-1])[:limit]

    def kill(self) -> None:
        """SIGKILL the child's process group (it runs in a session of its own) and release it."""
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._reap()

    def stop(self, grace_s: float = _GRACE_S) -> None:
        """Ask the child to exit; kill it if it has not within ``grace_s``."""
        if self.alive():
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(_encode({"exit": True}))
                self.proc.stdin.close()
                self.proc.wait(timeout=grace_s)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        self.kill()

    def _reap(self) -> None:
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
        except OSError:
            pass
        if self._rfd >= 0:
            try:
                os.close(self._rfd)
            except OSError:
                pass
            self._rfd = -1
        try:
            name = getattr(self._log, "name", None)
            empty = isinstance(name, str) and not self._log.closed and os.path.getsize(name) == 0
            self._log.close()
            if empty:   # keep only logs that say something (a crash's stderr)
                os.unlink(name)
                try:
                    os.rmdir(os.path.dirname(name))   # only succeeds when no other log is left
                except OSError:
                    pass
        except (OSError, ValueError):
            pass

    def __enter__(self) -> "IsolatedProcess":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.stop()
        else:   # a failure or a Ctrl-C in the parent: no grace
            self.kill()


def call_isolated(target: str, kwargs: Mapping[str, Any] | None = None, *, env: Mapping[str, str] | None = None,
                  setup: tuple[str, ...] = (), timeout_s: float | None = None, name: str = "child",
                  cwd: str | Path | None = None, log_dir: Path | None = None) -> Any:
    """``target(**kwargs)`` in a fresh child process that exits afterwards.

    ``setup``: targets called first without arguments (``"profiler.kernels.interpret:enable"``);
    ``timeout_s`` bounds setup and call together. Failures as ``IsolatedProcess.call``.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s

    def left() -> float | None:
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    with IsolatedProcess(env, name=name, cwd=cwd, log_dir=log_dir) as child:
        for step in setup:
            child.call(step, timeout_s=left())
        return child.call(target, kwargs, timeout_s=left())


# ----------------------------------------------------------------------------- child side

_loaded_files: dict[str, Any] = {}


def resolve(target: str) -> Any:
    """The function a target names: ``"pkg.module:function"`` or ``"/path/file.py:function"``.

    A file target's folder goes on ``sys.path`` first, as ``python file.py`` would put it, so the
    file can import its sibling modules.
    """
    mod_name, _, fn_name = target.rpartition(":")
    if not mod_name or not fn_name:
        raise ValueError(f"target {target!r} is not 'module:function' or '/path/file.py:function'")
    if mod_name.endswith(".py"):
        module = _loaded_files.get(mod_name)
        if module is None:
            folder = os.path.dirname(os.path.abspath(mod_name))
            if folder not in sys.path:
                sys.path.insert(0, folder)
            key = hashlib.sha1(mod_name.encode()).hexdigest()[:12]
            spec = importlib.util.spec_from_file_location(f"_serprof_isolated_{key}", mod_name)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {mod_name}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            _loaded_files[mod_name] = module
    else:
        module = importlib.import_module(mod_name)
    return getattr(module, fn_name)


def _set_pdeathsig() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def serve(result_fd: int) -> int:
    """The child's loop: read calls from stdin, answer each on ``result_fd``, until ``exit`` or EOF."""
    _set_pdeathsig()
    sys.path.insert(0, os.getcwd())   # as ``python -m`` would (``-P`` left this file's folder off the path)
    out = os.fdopen(result_fd, "wb", buffering=0)
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        msg = json.loads(line)
        if msg.get("exit"):
            break
        try:
            reply = _encode({"ok": True, "result": resolve(msg["call"])(**(msg.get("kwargs") or {}))})
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - every failure of a call goes back to the parent
            tb = traceback.format_exc()
            sys.stderr.write(tb)
            sys.stderr.flush()
            first = str(exc).strip()
            reply = _encode({"ok": False, "type": type(exc).__name__, "message": first, "traceback": tb})
            del exc
        out.write(reply)
    return 0


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1])))

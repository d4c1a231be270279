"""One writer per run folder: an exclusive ``fcntl.flock`` on ``<run>/writer.lock``.

Writers (``serprof sweep``, ``sweep --resume``, local, multi-worker and the SLURM submit path) take
the lock before they read which points are done and hold it until their last write. The lock file
records who holds it (pid, host, command, since when), so a second writer fails at once with a
``UsageError`` (exit 2) naming that process.

A writer killed with ``kill -9`` cannot release anything itself; the kernel drops its ``flock``
with the process, so the next writer gets the lock and finds the dead holder's record in the file:
that is a *stale* lock, reported (``RunLock.stale``) and taken over. On a file system without
``flock`` (some network mounts) the lock degrades to the pid check: a record of a live process on
this host blocks, one of a dead process is taken over.

Readers (report, status, export) never take the lock and never block.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from profiler.core.errors import UsageError
from profiler.core.paths import check_output_dir, make_dir
from profiler.store.runs import RunDir

LOCK_FILE = "writer.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    return True


def read_holder(run_dir: str | os.PathLike) -> dict[str, Any]:
    """What the lock file says about its (last) holder; ``{}`` when absent or unreadable."""
    try:
        data = json.loads((Path(run_dir) / LOCK_FILE).read_bytes().decode("utf-8", "replace") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def describe_holder(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process"
    cmd = holder.get("command")
    return (f"pid {holder.get('pid')} on {holder.get('host')}"
            + (f" ({cmd})" if cmd else "") + (f", since {holder.get('since')}" if holder.get("since") else ""))


class RunLock:
    """Exclusive writer lock of a run folder; a context manager (``acquire`` / ``release`` also work)."""

    def __init__(self, run_dir: str | os.PathLike, command: str | None = None):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.command = command if command is not None else " ".join(["serprof", *sys.argv[1:]])[:500]
        self.fd: int | None = None
        self.stale: dict[str, Any] | None = None   # the dead holder taken over, if any

    def acquire(self) -> "RunLock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UsageError(f"{self.run_dir}: cannot create the writer lock {self.path.name} ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UsageError(f"{self.run_dir} is being written by {describe_holder(read_holder(self.run_dir))}; "
                                 "one writer per run folder: wait for it to finish (or stop it), then resume") from None
            if not self._pid_check_only():   # no flock here (e.g. a network mount): fall back to the pid
                raise UsageError(f"{self.run_dir} is being written by {describe_holder(read_holder(self.run_dir))}") from None
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        previous = read_holder(self.run_dir)
        if previous.get("pid") and not previous.get("released"):
            self.stale = previous
        self.fd = fd
        self._write({"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                     "since": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        return self

    def _pid_check_only(self) -> bool:
        """True if the recorded holder is gone (or not on this host we cannot tell: then it is taken)."""
        holder = read_holder(self.run_dir)
        if not holder or holder.get("released"):
            return True
        if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
            return not _pid_alive(holder["pid"])
        return False

    def _write(self, info: dict[str, Any]) -> None:
        assert self.fd is not None
        data = (json.dumps(info, sort_keys=True) + "\n").encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)
        os.fsync(self.fd)

    def release(self) -> None:
        if self.fd is None:
            return

        try:
            self._write({**read_holder(self.run_dir), "released": True})
        except OSError:
            pass
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire() if self.fd is None else self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def stale_warning(lock: RunLock) -> str | None:
    """One line about a taken-over stale lock (None when the folder was free)."""
    if not lock.stale:
        return None
    return (f"{lock.run_dir}: took over the writer lock of {describe_holder(lock.stale)}, "
            "which ended without releasing it (killed?)")


def create_locked(path: str | os.PathLike, manifest_for: Any) -> tuple[Any, RunLock]:
    """A new run folder at ``path`` (``--out``) held by this process: ``(RunDir, RunLock)``.

    Checks the folder can be created and holds no run yet (``UsageError`` otherwise), creates it, takes
    the writer lock, then writes ``manifest_for(folder_name)``; on any failure the lock is released.
    """
    p = Path(path)
    check_output_dir(p, "--out")
    if (p / "manifest.json").exists():
        raise UsageError(f"{p} already holds a run; use --resume {p} or another --out")
    make_dir(p, "--out")
    lock = RunLock(p).acquire()
    try:
        return RunDir.create(p, manifest_for(p.name)), lock
    except BaseException:
        lock.release()
        raise

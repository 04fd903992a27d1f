"""One trainer per output folder: an exclusive `flock` held for a training stage's whole run, and death with the parent.

Two trainers on one folder would both write `last.pt` and `dvc.lock` would record whichever
finished last. `output_lock` takes an exclusive, non-blocking `fcntl.flock` on a lock file
holding the holder's pid; a second trainer fails at once naming that pid. The kernel drops a
flock when the process holding it dies, however it dies (kill -9 included), so there is no
stale-lock logic: a lock file left behind is just a file.

A `dvc repro` killed with -9 does not take its stage process along. `die_with_parent` asks
Linux to send the trainer SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG); elsewhere a
daemon thread checks the parent pid once a second.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

LOCK_NAME = ".trainer.lock"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_PARENT_AT_START = os.getppid()  # read at import, before a parent could die unnoticed


class OutputLockedError(ValueError):
    """Another process holds the output folder's lock; the message names its pid."""


def _holder(fd: int) -> str:
    """The pid written by the lock's holder ('unknown' while it has not written it yet)."""
    for _ in range(20):
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text:
            return text
        time.sleep(0.01)
    return "unknown"


@contextmanager
def output_lock(lock_path: Path, stage: str, writes: Path,
                why: str = "two trainers on one folder would overwrite each other's checkpoint") -> Iterator[None]:
    """Hold an exclusive lock on `lock_path` (created, holding our pid) while the block runs.

    Raises OutputLockedError ("another <stage> (pid N) is writing <writes>: ...; <why> (lock: <lock_path>)") at
    once when another process holds it. The lock is released when the block ends or the process dies.
    """
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            pid = _holder(fd)
            raise OutputLockedError(
                f"another {stage} (pid {pid}) is writing {writes}: wait for it to finish or stop it (kill {pid}); "
                f"{why} (lock: {lock_path})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race with a waiting opener)


def die_with_parent(sig: int = signal.SIGTERM) -> str:
    """Have this process receive `sig` when its parent dies; returns how ("prctl" or "parent-pid check")."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0:
                if os.getppid() != _PARENT_AT_START:  # the parent died before prctl took effect
                    os.kill(os.getpid(), sig)
                return "prctl"
        except (OSError, AttributeError):
            pass
    _start_parent_watch(sig)
    return "parent-pid check"


_watching = threading.Event()


def _start_parent_watch(sig: int) -> None:
    if _watching.is_set():
        return
    _watching.set()

    def watch() -> None:
        while True:
            if os.getppid() != _PARENT_AT_START:
                log.error("the parent process (pid %d) is gone: stopping", _PARENT_AT_START)
                os.kill(os.getpid(), sig)
                return
            time.sleep(1.0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()

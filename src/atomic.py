"""Write a stage's outputs completely or not at all: a folder staged next to its target and swapped in, a file
written beside its target and renamed over it.

A staging folder is `.<name>-tmp-<pid>-<random>` beside its target. A kill -9 leaves it
behind, so `sweep_staging` (called before every new staging folder, and by stages at their
start) removes those whose process is gone, and finishes a swap cut between its two renames.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_staging(final: Path) -> None:
    """Remove what killed writers of `final` left beside it: staging folders of processes that are gone (and of
    older code, without a pid), `.<name>-old` (put back as `final` if the swap died before `final` was renamed in)."""
    final = Path(final)
    if not final.parent.is_dir():
        return
    pattern = re.compile(rf"^\.{re.escape(final.name)}-tmp-(?:(\d+)-)?")
    for entry in final.parent.iterdir():
        match = pattern.match(entry.name)
        if match and not (match.group(1) and _running(int(match.group(1)))):
            log.warning("removing %s, left by an interrupted run", entry)
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    old = final.with_name(f".{final.name}-old")
    if old.exists():
        if final.exists():
            shutil.rmtree(old)
        else:
            log.warning("putting back %s from %s (a swap was interrupted)", final, old)
            old.rename(final)


def staging_dir(final: Path) -> Path:
    """An empty folder next to `final` (same file system, so the swap is a rename); stale ones are swept first."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_staging(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-tmp-{os.getpid()}-", dir=final.parent))
    tmp.chmod(0o755)  # mkdtemp makes 0700 folders
    return tmp


def replace_dir(tmp: Path, final: Path) -> None:
    """Move the finished folder `tmp` to `final`, replacing any previous `final`.

    Each rename is atomic, so readers see the old folder or the new one, never a
    half-written one; if the second rename fails the previous folder is put back.
    """
    tmp, final = Path(tmp), Path(final)
    old = final.with_name(f".{final.name}-old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    try:
        tmp.rename(final)
    except OSError:
        if old.exists() and not final.exists():
            old.rename(final)
        raise
    if old.exists():
        shutil.rmtree(old)


@contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Yield a staging folder; it replaces `final` when the block succeeds and is removed when it fails."""
    tmp = staging_dir(final)
    try:
        yield tmp
        replace_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_text(path: Path, text: str) -> None:
    """Write `text` to a hidden file beside `path` and rename it over `path`: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, obj: object) -> None:
    """`obj` as indented JSON, written atomically (see `write_text`)."""
    write_text(path, json.dumps(obj, indent=2) + "\n")

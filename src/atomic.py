"""Write a stage's output folder completely or not at all: stage it next to the target, then swap it in."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def staging_dir(final: Path) -> Path:
    """An empty folder next to `final` (same file system, so the swap is a rename)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-tmp-", dir=final.parent))
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

"""Nothing lost: a fresh training run keeps the previous run's logs until its own first checkpoint exists.

dvclive empties its folder when a run starts fresh, while the previous `last.pt` stays until
the new run's first checkpoint replaces it. A run that failed in between (diverged, was
interrupted, was killed) would leave the old checkpoint without its logs. So a fresh run
first moves `live/` aside to `.live-previous/` (with a marker file recording which
`last.pt` it belongs to: inode, size, mtime) and decides when it ends, or at the next start
after a kill -9:

- `last.pt` is still the one the logs belong to (the new run never checkpointed): the new
  `live/` is dropped and the previous one put back;
- `last.pt` was replaced (rename is atomic, so a new file means a finished new checkpoint):
  the new logs belong to it and the set-aside copy is deleted.
"""

from __future__ import annotations

import json
import logging
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from src.atomic import write_json

log = logging.getLogger(__name__)

ASIDE = ".live-previous"


def _identity(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _paths(live_dir: Path) -> tuple[Path, Path]:
    return live_dir.with_name(ASIDE), live_dir.with_name(ASIDE + ".json")


def settle(live_dir: Path, checkpoint_path: Path) -> None:
    """Put the set-aside logs back, or delete them, by whether `checkpoint_path` changed since (see module doc)."""
    aside, marker = _paths(live_dir)
    if aside.exists():
        try:
            belongs_to = json.loads(marker.read_text())["checkpoint"]
        except (FileNotFoundError, ValueError, KeyError):
            belongs_to = "unknown"  # the marker is written first, so this is a copy being deleted: finish it
        if belongs_to != "unknown" and _identity(checkpoint_path) == belongs_to:
            log.warning("the run that replaced %s stopped before its first checkpoint: putting back the logs of %s",
                        live_dir, checkpoint_path)
            if live_dir.exists():
                shutil.rmtree(live_dir)
            aside.rename(live_dir)
        else:
            shutil.rmtree(aside)
    marker.unlink(missing_ok=True)


@contextmanager
def previous_logs_kept(live_dir: Path, checkpoint_path: Path, fresh: bool) -> Iterator[None]:
    """For a `fresh` run: set `live_dir` aside now; on leaving keep it or drop it (`settle`). A resumed run
    appends to its own logs and needs nothing."""
    settle(live_dir, checkpoint_path)  # what a killed run left
    if not fresh or not live_dir.exists():
        yield
        return
    aside, marker = _paths(live_dir)
    write_json(marker, {"checkpoint": _identity(checkpoint_path)})
    live_dir.rename(aside)
    try:
        yield
    finally:
        settle(live_dir, checkpoint_path)

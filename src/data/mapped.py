"""Memory-mapped arrays streamed chunk by chunk, without their pages piling up in the process."""

from __future__ import annotations

import mmap

import numpy as np


def release_pages(*arrays: np.ndarray | None) -> None:
    """Drop the file pages the memory-mapped `arrays` (np.load(mmap_mode=...) or reserved_memmap, or views of them)
    hold in this process: madvise(MADV_DONTNEED) on each whole mapping. Their data stays in the file and the page
    cache (a shared file mapping's dirty pages are written back, not lost), and is read again on the next access.

    Why: every page a loop touches stays mapped, and counted in the process's RSS, until the mapping is closed,
    so a stage that streams a cohort's arrays chunk by chunk would still grow its RSS to the cohort's size. Calling
    this after each chunk keeps RSS at O(chunk). Arrays that are not memory-mapped are skipped; so is everything on
    a system without madvise."""
    for array in arrays:
        mapping = getattr(array, "_mmap", None)
        if mapping is not None and hasattr(mapping, "madvise"):
            mapping.madvise(mmap.MADV_DONTNEED)


GATHER_BLOCK = 32  # sampled rows read between two releases


def take_rows(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """array[rows] as an in-memory array, read GATHER_BLOCK rows at a time with the pages released in between.

    Why not array[rows]: the kernel maps a faulted file page together with its neighbours (fault-around, and
    whole large folios of the page cache on recent kernels), so a seeded sample scattered over a cohort's file
    maps far more than the rows it reads: 512 rows of 64 KiB mapped 275 MiB of a 352 MiB file in one gather.
    Released every block, what is mapped stays at a block's neighbourhood whatever the file's size."""
    rows = np.asarray(rows)
    out = np.empty((len(rows), *array.shape[1:]), array.dtype)
    for start in range(0, len(rows), GATHER_BLOCK):
        out[start:start + GATHER_BLOCK] = array[rows[start:start + GATHER_BLOCK]]
        release_pages(array)
    return out

"""Storage format of the prepared splits, measured: one .npz per split read eagerly vs one .npy per array memory-mapped.

A synthetic split of ~500 MB (float32 slices (N, 1, 128, 128)) is written both ways into a
temporary folder; each reader then runs in a fresh process that opens the split and reads
BATCHES random batches of 16 slices. Reported per format: time to open, mean time per
batch (the first batch included in open-to-first-batch), and the growth of the process's
resident set (VmRSS of /proc/self/status) from before opening to after the last batch.
zarr (chunked, compressed) is not a dependency of this project and is not measured.

    python benchmarks/storage_format.py [--mib 500] [--out benchmarks/storage_format.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZE, BATCH, BATCHES = 128, 16, 20
READER = r"""
import json, sys, time
import numpy as np
def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
fmt, path, n, batch, batches = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rng = np.random.default_rng(0)
rss0 = rss_mib()
t0 = time.perf_counter()
if fmt == "npz-eager":
    with np.load(path) as f:
        hr = f["hr"]
else:
    hr = np.load(path, mmap_mode="r")
t_open = time.perf_counter() - t0
times = []
for _ in range(batches):
    idx = np.sort(rng.choice(n, batch, replace=False))
    t = time.perf_counter()
    x = np.ascontiguousarray(hr[idx], dtype=np.float32)
    times.append(time.perf_counter() - t)
print(json.dumps({"open_s": t_open, "first_batch_s": t_open + times[0], "batch_mean_ms": 1000 * float(np.mean(times)),
                  "rss_growth_mib": rss_mib() - rss0}))
"""


def drop_cache_hint(path: Path) -> None:
    """Best effort: evict `path` from the page cache so the first read pays for the disk (Linux only)."""
    import os
    try:
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    except (AttributeError, OSError):
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, default=500.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("storage_format.json"))
    args = parser.parse_args()
    n = int(args.mib * 2**20 // (SIZE * SIZE * 4))
    rows = {}
    with tempfile.TemporaryDirectory(prefix="storage-format-") as tmp:
        tmp = Path(tmp)
        hr = np.lib.format.open_memmap(tmp / "hr.npy", mode="w+", dtype=np.float32, shape=(n, 1, SIZE, SIZE))
        rng = np.random.default_rng(0)
        for start in range(0, n, 512):  # written in chunks: the benchmark itself stays small
            hr[start:start + 512] = rng.uniform(-1, 1, hr[start:start + 512].shape).astype(np.float32)
        hr.flush()
        del hr
        np.savez(tmp / "train.npz", hr=np.load(tmp / "hr.npy", mmap_mode="r"))  # as prepare wrote splits before
        for fmt, path in (("npz-eager", tmp / "train.npz"), ("npy-mmap", tmp / "hr.npy")):
            drop_cache_hint(path)
            out = subprocess.run([sys.executable, "-c", READER, fmt, str(path), str(n), str(BATCH), str(BATCHES)],
                                 capture_output=True, text=True, check=True).stdout
            rows[fmt] = json.loads(out)
    result = {"split_mib": round(n * SIZE * SIZE * 4 / 2**20, 1), "slices": n, "batch": BATCH, "batches": BATCHES,
              "rss": "VmRSS growth of the reading process, before open to after the last batch",
              "formats": {k: {m: round(v, 4) for m, v in r.items()} for k, r in rows.items()},
              "date": time.strftime("%Y-%m-%d")}
    print(f"split: {result['split_mib']} MiB, {n} slices of {SIZE}x{SIZE}; {BATCHES} random batches of {BATCH}")
    print(f"{'format':<10} {'open s':>8} {'first batch s':>14} {'batch ms':>9} {'RSS growth MiB':>15}")
    for fmt, r in rows.items():
        print(f"{fmt:<10} {r['open_s']:>8.3f} {r['first_batch_s']:>14.3f} {r['batch_mean_ms']:>9.2f} "
              f"{r['rss_growth_mib']:>15.1f}")
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Start a training stage: in this process for one process (`train.nproc` 1), under torchrun for more (DDP).

    python -m src.launch NPROC src.<stage> [stage arguments]

dvc.yaml runs every training stage through this, with NPROC = ${train.nproc}. With more than one process it
becomes `torchrun --standalone --nproc-per-node=NPROC -m src.<stage> ...` (src/training/distributed.py reads the
ranks torchrun sets). With one there is nothing for torchrun's agent to do, and it cost 2.0-2.2 s a stage
(measured on the 2-core EPYC: its agent imports torch before the worker does), about 10 s of a default run's
five training stages; the stage runs as `python -m src.<stage>` would, which it does without RANK/WORLD_SIZE
(`from_environment` returns SINGLE for a world of one either way), so the results are the same.
"""

from __future__ import annotations

import os
import runpy
import sys

USAGE = "usage: python -m src.launch NPROC src.<stage> [stage arguments]"


def torchrun_argv(nproc: int, module: str, args: list[str]) -> list[str]:
    """torchrun as a module of this interpreter (the `torchrun` script is the same entry point)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", module, *args]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE)
        print(__doc__)
        return 0
    if len(argv) < 2 or not argv[1].startswith("src."):
        print(f"error: {USAGE}", file=sys.stderr)
        return 2
    nproc_text, module, *args = argv
    try:
        nproc = int(nproc_text)
    except ValueError:
        nproc = 0
    if nproc < 1:
        print(f"error: train.nproc must be a whole number >= 1, got {nproc_text!r}", file=sys.stderr)
        return 2
    if nproc > 1:
        command = torchrun_argv(nproc, module, args)
        os.execv(command[0], command)  # replaces this process: signals and the exit status are torchrun's
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)  # the stage exits through sys.exit
    return 0


if __name__ == "__main__":
    sys.exit(main())

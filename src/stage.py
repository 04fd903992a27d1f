"""The skeleton every DVC stage module shares: `--help`, `--params`, logging, and the error exit.

A stage module defines its recipe (`run(params) -> summary`) and ends with
`sys.exit(run_stage(...))`; an expected failure (bad params, missing or corrupt input,
a training run that cannot recover, any failed system call: a full disk, a read-only file system, an
I/O error) prints one `error: ...` line naming the culprit and exits 1, with nothing half-written (each
stage writes through `src.atomic`).
"""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import sys
import threading
from typing import Any, Callable

from src.config import ConfigError, Params, load_params

log = logging.getLogger("stage")

# Failures a user can act on: each carries a message naming the file, key or stage; so does every OSError
# (`describe_os_error`). Anything else (a shape mismatch, an out-of-memory error, a bug) keeps its traceback.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ConfigError, FileNotFoundError, ValueError)


class Terminated(KeyboardInterrupt):
    """SIGTERM: the signal of `docker stop`, Slurm and CI time limits, `timeout`, and a dying parent's
    PR_SET_PDEATHSIG (src/training/lock.py). Raised as a KeyboardInterrupt so that every clean-up written for
    Ctrl-C (staging folders removed, a fresh run's set-aside logs put back) runs for it too."""


def _terminate(signum: int, frame) -> None:
    raise Terminated


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def describe_os_error(err: OSError) -> str:
    """`<path>: <reason>` for a failed system call (both paths of a rename or link); a full disk or quota says so
    and what to do. An OSError raised with a message of its own (`FileNotFoundError("x: not found (...)")`) is
    that message."""
    if err.errno is None or not err.strerror:
        return str(err)
    where = " -> ".join(str(name) for name in (err.filename, err.filename2) if name is not None)
    reason = err.strerror
    if err.errno in DISK_FULL:
        reason = (f"the disk is full ({reason}); free space and run the stage again (outputs are as their last "
                  f"complete write left them)")
    return f"{where}: {reason}" if where else reason


def run_stage(name: str, description: str, recipe: Callable[..., Any], argv: list[str] | None = None,
              reads_params: bool = True, expected: tuple[type[BaseException], ...] = (),
              options: dict[str, dict[str, Any]] | None = None) -> int:
    """Parse argv, load params, run `recipe(params)`; return the process exit code.

    `name` is the stage (`python -m src.<name>`); `recipe`'s return value, a dict of
    summary numbers or a short string, is logged. `reads_params=False` for stages that
    take no params (then `recipe` gets None). `expected`: the stage's own user-facing
    errors besides EXPECTED_ERRORS (e.g. a training run that diverged). `options`: the stage's
    own command-line options, {"--flag": argparse keyword arguments}; their values reach
    `recipe` as keyword arguments (a DVC `foreach` stage passes its item this way).
    """
    parser = argparse.ArgumentParser(prog=f"python -m src.{name}", description=description)
    if reads_params:
        parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    for flag, spec in (options or {}).items():
        parser.add_argument(flag, **spec)
    args = parser.parse_args(argv)
    extra = {key: value for key, value in vars(args).items() if key != "params"}
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Signal handlers can only be set from the main thread (a stage's main called from a worker thread keeps
    # Python's default: SIGTERM then ends the process without clean-up).
    previous = signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        summary = recipe(load_params(args.params) if reads_params else None, **extra)
    except OSError as err:  # any system call (a full disk, a read-only file system, EIO, ELOOP, EACCES): by now
        # the stage's context managers have removed its staging folders and temporary files
        print(f"error: {name}: {describe_os_error(err)}", file=sys.stderr)
        return 1
    except (*EXPECTED_ERRORS, *expected) as err:
        print(f"error: {name}: {err}", file=sys.stderr)
        return 1
    except Terminated:  # as Ctrl-C, with the shell's exit code for SIGTERM (128 + 15)
        print(f"error: {name}: terminated (SIGTERM); outputs are as their last complete write left them",
              file=sys.stderr)
        return 143
    except KeyboardInterrupt:  # Ctrl-C: every output is as its last complete (atomic) write left it
        print(f"error: {name}: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if isinstance(summary, dict):
        for key, value in summary.items():
            log.info("%s: %s = %s", name, key, f"{value:.4f}" if isinstance(value, float) else value)
    elif summary:
        log.info("%s: %s", name, summary)
    return 0

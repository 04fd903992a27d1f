"""Run a stage module (`python audited_stage.py src.train_sr [args]`) under test instrumentation.

Everything it records goes to $DDP_TEST_OUT, outside the stage's workspace (the cwd):
- writes_rank<R>.log: every file or folder this rank opened for writing, created, renamed or
  removed inside the workspace (Python audit events: builtins.open, os.open, os.mkdir, ...);
- nets_rank<R>_step<S>.pt: this rank's networks (parameters and buffers) and extras (image
  pools) at the end of each training phase, and the segmenter's weights after its training.
Launched by torchrun (RANK set) or as a plain process (rank 0).
"""

import os
import runpy
import sys
from pathlib import Path

OUT = Path(os.environ["DDP_TEST_OUT"])
RANK = os.environ.get("RANK", "0")
WORKSPACE = str(Path.cwd().resolve())
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_log = open(OUT / f"writes_rank{RANK}.log", "a")  # opened before the hook: not recorded


def _inside(path) -> str | None:
    if isinstance(path, int) or path is None:
        return None
    path = os.fsdecode(path)
    full = os.path.abspath(os.path.join(WORKSPACE, path))
    return full if full.startswith(WORKSPACE + os.sep) else None


def _hook(event: str, args: tuple) -> None:
    if event == "open":
        path, mode, flags = (list(args) + [None, None, None])[:3]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
            (mode is None and isinstance(flags, int) and flags & WRITE_FLAGS)
        paths = [path] if writing else []
    elif event in ("os.mkdir", "os.remove", "os.rmdir", "os.truncate", "shutil.rmtree"):
        paths = [args[0]]
    elif event in ("os.rename", "os.replace", "os.link", "os.symlink"):
        paths = [args[0], args[1]]
    else:
        return
    for path in paths:
        inside = _inside(path)
        if inside:
            _log.write(f"{event} {inside}\n")
            _log.flush()


def _dump_after(module, name: str, networks) -> None:
    """Wrap module.name so each call's networks are saved to OUT when it returns."""
    import torch

    original = getattr(module, name)

    def wrapped(*args, **kwargs):
        result = original(*args, **kwargs)
        modules, extras, step = networks(args, kwargs)
        torch.save({"modules": {k: v.state_dict() for k, v in modules.items()},
                    "extras": {k: v.state_dict() for k, v in extras.items()}},
                   OUT / f"nets_rank{RANK}_step{step}.pt")
        return result
    setattr(module, name, wrapped)


def main() -> None:
    stage, *args = sys.argv[1:]
    sys.path.insert(0, os.environ.get("REPO", "."))
    import src.training.run as run_module

    _dump_after(run_module, "fit", lambda a, k: (a[0].modules, a[0].extras, a[0].step))
    if stage == "src.train_segmenter":  # patched where the stage (re-run as __main__) imports it from
        import src.training.segmentation as segmentation
        _dump_after(segmentation, "fit_segmenter", lambda a, k: ({"segmenter": a[0]}, {}, a[4]))
    sys.addaudithook(_hook)
    sys.argv = [stage, *args]
    runpy.run_module(stage, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

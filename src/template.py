"""DVC stage `template`: copy the MNI152 2009a template shipped inside nilearn into data/raw/mni152/.

The files come from the installed package (importlib.resources), never from a download:
the T1 template and the grey- and white-matter probability maps (1 mm, 197x233x189,
stored as uint8 0..255). The copy is atomic: the files are written into a temporary
folder next to the target, which is then renamed over it.
"""

from __future__ import annotations

import importlib.resources
import shutil
import sys
from pathlib import Path

from src.atomic import staged_dir
from src.stage import run_stage

OUT_DIR = Path("data/raw/mni152")
PACKAGE = "nilearn"
DATA = ("datasets", "data")  # resolved under the package, so nilearn.datasets (slow) is never imported
FILES = {
    "t1.nii.gz": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm.nii.gz": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm.nii.gz": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


def copy_template(out_dir: Path = OUT_DIR) -> list[Path]:
    """Copy the three template files into `out_dir` (replacing it); returns the written paths."""
    data = importlib.resources.files(PACKAGE).joinpath(*DATA)
    with staged_dir(out_dir) as tmp:
        for target, source in FILES.items():
            resource = data / source
            if not resource.is_file():
                raise FileNotFoundError(f"{resource}: not in the installed nilearn package")
            with resource.open("rb") as src, (tmp / target).open("wb") as dst:
                shutil.copyfileobj(src, dst)
    return [out_dir / name for name in FILES]


DESCRIPTION = ("Reads the MNI152 2009a symmetric template (T1, grey- and white-matter probability maps) from the "
               f"installed nilearn package (nilearn/datasets/data) and writes {OUT_DIR}/t1.nii.gz, gm.nii.gz and "
               "wm.nii.gz (an atomic copy; no download).")


def main(argv: list[str] | None = None) -> int:
    def recipe(_params) -> str:
        try:
            written = copy_template()
        except ModuleNotFoundError as err:
            raise FileNotFoundError(f"the nilearn package is not installed: {err}") from None
        return ", ".join(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)" for path in written)
    return run_stage("template", DESCRIPTION, recipe, argv, reads_params=False)


if __name__ == "__main__":
    sys.exit(main())

"""Helpers for the data tests: an ellipsoid "head" (WM core, GM shell, CSF shell and ventricles),
writers for NIfTI, DICOM and 8/16-bit PNG/TIFF, and a small params dict for `prepare`.

A plain module with a unique name (not conftest.py) so test modules can import it directly."""

from __future__ import annotations

import copy
from pathlib import Path

import nibabel as nib
import numpy as np
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def synthetic_head(shape=(40, 44, 36), seed=0) -> tuple[np.ndarray, np.ndarray]:
    """(T1-like image float32, labels uint8 0 bg / 1 CSF / 2 GM / 3 WM), same shape.

    Egg-shaped along axis 2 with one ventricle off the midline, and with radii drawn from the
    seed: no slice repeats along an axis and every seed is another head, as in real data
    (prepare's leakage check would flag mirror-symmetric or identical heads, rightly).
    """
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    rng = np.random.default_rng(seed)
    radii = np.array([0.85, 0.9, 0.8]) * (1 + 0.1 * rng.uniform(-1, 1, 3))
    egg = 1 + 0.25 * grid[2]  # the head widens along axis 2
    r = np.sqrt((grid[0] / radii[0]) ** 2 + (grid[1] / (radii[1] * egg)) ** 2 + (grid[2] / radii[2]) ** 2)
    labels = np.zeros(shape, np.uint8)
    labels[r < 1.0] = 1
    labels[r < 0.85] = 2
    labels[r < 0.6] = 3
    centre = (0.15, rng.uniform(-0.1, 0.1), 0.2)
    ventricle = sum(((g - c) / a) ** 2 for g, c, a in zip(grid, centre, (0.1, 0.25, 0.15))) < 1
    labels[ventricle] = 1
    image = np.choose(labels, [0.0, 30.0, 75.0, 110.0]) + rng.normal(0, 2.0, shape)
    image[labels == 0] = np.abs(rng.normal(0, 2.0, (labels == 0).sum()))
    return image.astype(np.float32), labels


def write_nifti(path: Path, array: np.ndarray) -> Path:
    nib.Nifti1Image(np.asarray(array), np.eye(4)).to_filename(str(path))
    return path


def write_dicom(path: Path, pixels: np.ndarray, instance: int | None = 1, z: float | None = 0.0,
                series_uid: str | None = None) -> Path:
    """A minimal valid MR Image Storage file with 16-bit unsigned pixel data (rows, cols).

    Files written into one folder share a SeriesInstanceUID (derived from the folder) unless
    `series_uid` says otherwise; `instance=None` / `z=None` leave out InstanceNumber /
    ImagePositionPatient."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.PatientName = "Phantom^Test"
    ds.PatientID = "0"
    folder = str(Path(path).resolve().parent)
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["study", folder])
    ds.SeriesInstanceUID = series_uid or generate_uid(entropy_srcs=["series", folder])
    if instance is not None:
        ds.InstanceNumber = instance
    if z is not None:
        ds.ImagePositionPatient = [0.0, 0.0, float(z)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [1.0, 1.0]
    ds.SliceThickness = 1.0
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def write_image(path: Path, pixels: np.ndarray) -> Path:
    """PNG/TIFF from a (rows, cols) uint8 or uint16 array."""
    Image.fromarray(np.ascontiguousarray(pixels)).save(str(path))
    return path


def base_params() -> dict:
    """The repository's params.yaml with a small `data` section for tiny inputs."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw = copy.deepcopy(raw)
    raw["data"].update({
        "source": "folder", "folder": "user", "axes": [2], "image_size": 32, "scale": 4,
        "min_foreground": 0.05, "split_gap": 1,
    })
    raw["data"]["sim"]["variants_per_slice"] = 2
    raw["data"]["sim"]["elastic_magnitude"] = 2.0
    return raw

"""How well the SR discriminator tells val HR from the current generator's output, during the GAN phase.

A D at chance gives G no adversarial signal at all (issue 20), and D's training loss cannot show it: d/adv is
scored on augmented crops (DiffAugment) of a game that moves under it. So `train_sr` scores D every
`train.sr.d_val_every` steps on a fixed grid of val crops it never trains on, without augmentation, and logs:

- `val/d_auc`: ROC AUC of D's mean patch logit, real HR crops against G's crops of the same windows (the
  Mann-Whitney form: P(real scored above fake), ties half). Threshold-free; 0.5 is chance.
- `val/d_accuracy`: balanced accuracy at D's own decision boundary (`gan_utils.decision_boundary`); 0.5 is chance.

After the last step the stage scores once more, with 95 % bootstrap intervals over val slices (the crops of a
drawn slice go together), so "clear of chance" is a statement with an interval: `val/d_final/auc` and
`val/d_final/auc_ci95` in the summary. Scoring runs D in eval mode (spectral norm then skips its power
iteration, so D's state is untouched) and draws no random numbers: the run trains exactly as without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
from torch import nn
from torchmetrics.functional.classification import binary_auroc

from src.metrics.bootstrap import percentile_interval, resample_indices

VAL_STRIDE_LR = 8   # LR px between crop windows: on the demo's 32-px LR slices, a 3 x 3 grid of 16-px crops
N_RESAMPLES = 1000


@dataclass(frozen=True)
class ValCrops:
    """Crops of every monitored val slice at a fixed grid of windows, window-major."""

    lr: torch.Tensor      # (N, 1, c/s, c/s)
    naive: torch.Tensor   # (N, 1, c, c)
    hr: torch.Tensor      # (N, 1, c, c)
    owner: np.ndarray     # (N,) the val slice each crop comes from: the bootstrap's unit
    windows: int          # crops per slice; each window's crops are consecutive, one per slice


def val_crop_grid(val: Mapping[str, torch.Tensor], scale: int, hr_crop: int,
                  stride_lr: int = VAL_STRIDE_LR) -> ValCrops:
    """The crops G and D see in training (an HR crop of `hr_crop` px and its LR window), tiled over whole val slices.

    val: {"lr": (n, 1, h, w), "naive": (n, 1, h*s, w*s), "hr": (n, 1, h*s, w*s)}.
    """
    lr_size, lr_crop = val["lr"].shape[-1], hr_crop // scale
    if lr_crop > lr_size:
        raise ValueError(f"crop of {hr_crop} px is larger than the val slices ({lr_size * scale} px)")
    starts = range(0, lr_size - lr_crop + 1, stride_lr)
    windows = [(y, x) for y in starts for x in starts]
    lr = torch.cat([val["lr"][..., y:y + lr_crop, x:x + lr_crop] for y, x in windows])

    def hr_grid(images: torch.Tensor) -> torch.Tensor:
        return torch.cat([images[..., y * scale:(y + lr_crop) * scale, x * scale:(x + lr_crop) * scale]
                          for y, x in windows])

    n = len(val["lr"])
    return ValCrops(lr, hr_grid(val["naive"]), hr_grid(val["hr"]), np.tile(np.arange(n), len(windows)), len(windows))


def auc(real: np.ndarray, fake: np.ndarray) -> float:
    """P(score(real) > score(fake)) + 0.5 P(tie): the ROC AUC, by torchmetrics' binary_auroc (as evaluate_sr's
    error-detection AUROC, src/evaluation/calibration.py)."""
    scores = torch.from_numpy(np.concatenate([real, fake]).astype(np.float64))
    labels = torch.cat([torch.ones(len(real), dtype=torch.int64), torch.zeros(len(fake), dtype=torch.int64)])
    return float(binary_auroc(scores, labels))


def balanced_accuracy(real: np.ndarray, fake: np.ndarray, boundary: float | None) -> float:
    """Real called real (score > boundary) and fake called fake, averaged over the two classes.

    boundary None is the relativistic average D's own rule (`gan_utils.decision_boundary("relativistic")`): a
    real crop is called real when it scores above the fakes' mean, a fake called fake when below the reals' mean.
    """
    if boundary is None:
        return float(0.5 * ((real > fake.mean()).mean() + (fake <= real.mean()).mean()))
    return float(0.5 * ((real > boundary).mean() + (fake <= boundary).mean()))


def separation(real: np.ndarray, fake: np.ndarray, owner: np.ndarray, boundary: float | None, seed: int,
               n_resamples: int = N_RESAMPLES) -> dict:
    """Accuracy and AUC with 95 % bootstrap intervals over slices (the crops of a drawn slice go together)."""
    crops_of = [np.flatnonzero(owner == s) for s in range(int(owner.max()) + 1)]
    acc_b, auc_b = [], []
    for draw in resample_indices(len(crops_of), n_resamples, seed):
        rows = np.concatenate([crops_of[s] for s in draw])
        acc_b.append(balanced_accuracy(real[rows], fake[rows], boundary))
        auc_b.append(auc(real[rows], fake[rows]))
    ci = lambda b: [round(v, 4) for v in percentile_interval(np.array(b))]  # noqa: E731
    return {"accuracy": {"value": round(balanced_accuracy(real, fake, boundary), 4), "ci95": ci(acc_b)},
            "auc": {"value": round(auc(real, fake), 4), "ci95": ci(auc_b)},
            "mean_score": {"real": round(float(real.mean()), 4), "fake": round(float(fake.mean()), 4)}}


@torch.no_grad()
def crop_scores(d: nn.Module, images: torch.Tensor, batch: int = 64) -> np.ndarray:
    """(N,) D's mean patch logit per image, in float32. D must be in eval mode (the caller's job)."""
    return np.concatenate([d(images[i:i + batch]).float().flatten(1).mean(1).cpu().numpy()
                           for i in range(0, len(images), batch)])


@torch.no_grad()
def generate(g: nn.Module, crops: ValCrops) -> torch.Tensor:
    """G's output for every crop, one window (one crop per slice) per call."""
    n = len(crops.lr) // crops.windows
    return torch.cat([g(crops.lr[i:i + n], crops.naive[i:i + n]) for i in range(0, len(crops.lr), n)])


def discriminator_scores(d: nn.Module, g: nn.Module, crops: ValCrops) -> tuple[np.ndarray, np.ndarray]:
    """(real, fake) scores of D on the HR crops and on G's crops, D in eval mode; both networks' modes restored."""
    modes = d.training, g.training
    d.eval()
    g.eval()
    try:
        return crop_scores(d, crops.hr), crop_scores(d, generate(g, crops))
    finally:
        d.train(modes[0])
        g.train(modes[1])

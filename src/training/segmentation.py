"""Supervised U-Net training: one recipe for the semantic-consistency segmenter and for
the downstream segmenters of `evaluate` (same augmentations, loss, optimiser and budget)."""

from __future__ import annotations

from typing import Callable

import albumentations as A
import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from tqdm import tqdm

from src.config import SegmenterConfig
from src.metrics.segmentation import dice_per_class, mean_foreground_dice
from src.training.inference import predict
from src.training.runtime import Runtime


def augmentation(crop_size: int, seed: int) -> A.Compose:
    """Augmentations for MR slices, on images in [0, 1] with background 0.

    Geometry: left-right flips (brain symmetry), small rotations/scalings (head position),
    nearest-neighbour for the labels. Intensity: gamma, brightness/contrast (scanner and
    protocol variation), Gaussian noise. No up-down flips or large rotations: slices have
    an anatomical orientation. Background fill is 0 (= -1 in model units).
    """
    return A.Compose(
        [
            A.RandomCrop(crop_size, crop_size),
            A.HorizontalFlip(p=0.5),
            A.Affine(scale=(0.9, 1.1), rotate=(-10, 10), translate_percent=(-0.05, 0.05),
                     interpolation=1, mask_interpolation=0, fill=0, fill_mask=0, p=0.7),
            A.RandomGamma(gamma_limit=(80, 120), p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=0.5),
            A.GaussNoise(std_range=(0.0, 0.03), p=0.3),
        ],
        seed=seed,
    )


def _batch(images: np.ndarray, labels: np.ndarray, idx: np.ndarray, transform: A.Compose):
    out_img, out_lab = [], []
    for i in idx:
        res = transform(image=images[i], mask=labels[i])
        out_img.append(res["image"])
        out_lab.append(res["mask"])
    img = torch.from_numpy(np.stack(out_img)).float().clamp(0, 1)[:, None] * 2 - 1
    return img, torch.from_numpy(np.stack(out_lab)).long()


Render = Callable[[torch.Tensor, torch.Generator], torch.Tensor]  # labels (B, H, W) -> images (B, 1, H, W)


def fit_segmenter(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, cfg: SegmenterConfig,
                  steps: int, seed: int, runtime: Runtime, desc: str, render: Render | None = None) -> list[float]:
    """Train `model` in place on images (N, 1, H, W) in [-1, 1] and labels (N, H, W).

    Loss: cross-entropy + soft Dice (smp), AdamW with cosine decay. Returns the loss per step.
    `render` (domain randomisation): each batch's images are drawn afresh from its augmented
    label crops, with a torch.Generator seeded from `seed`; `images` then only set the crops.
    """
    if len(images) == 0:
        raise ValueError(f"{desc}: no training images")
    if images.shape[-1] < cfg.crop_size or images.shape[-2] < cfg.crop_size:
        raise ValueError(f"segmenter.crop_size {cfg.crop_size} is larger than the images {tuple(images.shape[-2:])}")
    np_images = ((images[:, 0].numpy() + 1) / 2).astype(np.float32)
    np_labels = labels.numpy().astype(np.uint8)
    transform = augmentation(cfg.crop_size, seed)
    rng = np.random.default_rng(seed)
    render_draws = torch.Generator().manual_seed(seed)
    dice_loss = smp.losses.DiceLoss(mode="multiclass")
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=cfg.lr * 0.05)
    model.train()
    losses = []
    bar = tqdm(range(steps), desc=desc, dynamic_ncols=True)
    for _ in bar:
        idx = rng.integers(len(np_images), size=cfg.batch_size)
        img, lab = _batch(np_images, np_labels, idx, transform)
        if render is not None:
            img = render(lab, render_draws)
        img, lab = runtime.batch(img), lab.to(runtime.device)
        with runtime.autocast():
            logits = model(img).float()
            loss = F.cross_entropy(logits, lab) + dice_loss(logits, lab)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return losses


def predict_labels(model: torch.nn.Module, images: torch.Tensor, runtime: Runtime, batch_size: int = 16) -> torch.Tensor:
    """Argmax labels (N, H, W) on CPU for images (N, 1, H, W) in [-1, 1]."""
    return predict(model, images, runtime, batch_size, postprocess=lambda logits: logits.argmax(1))


def dice_report(prefix: str, pred: torch.Tensor, target: torch.Tensor, class_names: list[str]) -> dict[str, float]:
    """{prefix/dice/<class>: ..., prefix/dice/mean_foreground: ...} (background excluded from the mean)."""
    per_class = dice_per_class(pred, target, len(class_names))
    scores = {f"{prefix}/dice/{name}": float(v) for name, v in zip(class_names, per_class.tolist()) if name != "background"}
    scores[f"{prefix}/dice/mean_foreground"] = mean_foreground_dice(per_class)
    return scores

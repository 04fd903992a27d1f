"""Random training batches from in-memory tensors, drawn from a checkpointed torch.Generator.

The training stages read through src/training/data.py (lazy slices, DataLoader, DDP sampler);
this in-memory sampler serves the in-process benchmark screens and the loop's unit tests,
where a whole split fits in memory and one process draws every batch.
"""

from __future__ import annotations

import torch


def _dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = torch.rot90(x, k, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if flip else x


def paired_crops(lr_img: torch.Tensor, naive_img: torch.Tensor, hr_img: torch.Tensor, scale: int, hr_crop: int,
                 batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Aligned random crops: LR crop of hr_crop/scale px at (y, x) <-> naive and HR crops at (y*scale, x*scale).

    lr_img (N, 1, h, w); naive_img, hr_img (N, 1, h*scale, w*scale). Each triple also gets
    one random dihedral transform (flips/rot90: no preferred in-plane orientation for SR).
    """
    n, _, h, w = lr_img.shape
    lr_crop = hr_crop // scale
    if lr_crop > min(h, w):
        raise ValueError(f"train.sr.crop_size {hr_crop} is larger than the HR images ({h * scale}x{w * scale})")
    idx = torch.randint(n, (batch_size,), generator=generator)
    ys = torch.randint(h - lr_crop + 1, (batch_size,), generator=generator)
    xs = torch.randint(w - lr_crop + 1, (batch_size,), generator=generator)
    ks = torch.randint(4, (batch_size,), generator=generator)
    flips = torch.randint(2, (batch_size,), generator=generator)
    lr_out, naive_out, hr_out = [], [], []
    for i, y, x, k, f in zip(idx.tolist(), ys.tolist(), xs.tolist(), ks.tolist(), flips.tolist()):
        hr_window = (slice(None), slice(y * scale, (y + lr_crop) * scale), slice(x * scale, (x + lr_crop) * scale))
        lr_out.append(_dihedral(lr_img[i, :, y:y + lr_crop, x:x + lr_crop], k, bool(f)))
        naive_out.append(_dihedral(naive_img[i][hr_window], k, bool(f)))
        hr_out.append(_dihedral(hr_img[i][hr_window], k, bool(f)))
    return torch.stack(lr_out), torch.stack(naive_out), torch.stack(hr_out)


def random_crops(images: torch.Tensor, crop: int, batch_size: int, generator: torch.Generator,
                 labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Random crops (and horizontal flips) of images (N, 1, H, W) and, aligned, labels (N, H, W).

    Only left-right flips: brain slices are left-right symmetric but not up-down.
    """
    n, _, h, w = images.shape
    if crop > min(h, w):
        raise ValueError(f"crop size {crop} is larger than the images ({h}x{w})")
    idx = torch.randint(n, (batch_size,), generator=generator)
    ys = torch.randint(h - crop + 1, (batch_size,), generator=generator)
    xs = torch.randint(w - crop + 1, (batch_size,), generator=generator)
    flips = torch.randint(2, (batch_size,), generator=generator)
    img_out, lab_out = [], []
    for i, y, x, f in zip(idx.tolist(), ys.tolist(), xs.tolist(), flips.tolist()):
        patch = images[i, :, y:y + crop, x:x + crop]
        img_out.append(torch.flip(patch, dims=(-1,)) if f else patch)
        if labels is not None:
            lab = labels[i, y:y + crop, x:x + crop]
            lab_out.append(torch.flip(lab, dims=(-1,)) if f else lab)
    return torch.stack(img_out), (torch.stack(lab_out) if labels is not None else None)

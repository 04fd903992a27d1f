"""MIND structure loss: the descriptor against a direct numpy/scipy computation, and the invariances
it is used for (contrast size and sign) against the change it must see (moved anatomy)."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from src.losses.structure import mind_descriptor, mind_loss, search_offsets


def numpy_mind(image: np.ndarray, radius: int, sigma: float, clamp: float) -> np.ndarray:
    """Heinrich's definition with explicit loops: edge-replicated shifts, Gaussian patch SSD (scipy,
    same 3-sigma kernel), V = mean over the 4-neighbourhood clamped to [mean / clamp, clamp * mean]."""
    height, width = image.shape
    padded = np.pad(image, radius + 1, mode="edge")

    def shifted(dy, dx):
        return padded[radius + 1 + dy:radius + 1 + dy + height, radius + 1 + dx:radius + 1 + dx + width]

    def patch_ssd(dy, dx):
        return ndimage.gaussian_filter((image - shifted(dy, dx)) ** 2, sigma, mode="nearest", truncate=3.0)

    variance = np.mean([patch_ssd(dy, dx) for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0))], axis=0)
    mean = variance.mean()
    variance = np.clip(variance, mean / clamp, clamp * mean)
    offsets = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1) if (dy, dx) != (0, 0)]
    descriptor = np.stack([np.exp(-patch_ssd(dy, dx) / variance) for dy, dx in offsets])
    return descriptor / descriptor.max(axis=0)


def tissue_image(order=(1.0, -0.12, -0.37), shift=0):
    """Three nested 'tissues' on a -1 background, rendered with the given intensities."""
    yy, xx = np.mgrid[:40, :40]
    radius = np.hypot(yy - 20, xx - 20 - shift)
    image = np.full((40, 40), -1.0)
    for value, outer in zip(order, (16, 11, 6)):
        image[radius < outer] = value
    return torch.tensor(image, dtype=torch.float32)[None, None]


def test_search_region_is_dense_without_centre():
    offsets = search_offsets(2)
    assert len(offsets) == 24 and (0, 0) not in offsets and len(set(offsets)) == 24


def test_descriptor_matches_direct_computation():
    rng = np.random.default_rng(0)
    image = ndimage.gaussian_filter(rng.normal(size=(24, 20)), 1.5).astype(np.float32)
    expected = numpy_mind(image.astype(np.float64), radius=2, sigma=1.0, clamp=1000.0)
    got = mind_descriptor(torch.from_numpy(image)[None, None], radius=2, sigma=1.0)[0].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("scale,offset", [(-0.5, 0.3), (2.0, -1.0), (-1.0, 0.0)])
def test_descriptor_ignores_contrast_size_and_sign(scale, offset):
    image = tissue_image()
    torch.testing.assert_close(mind_descriptor(scale * image + offset), mind_descriptor(image), rtol=1e-4, atol=1e-4)


def test_loss_forgives_a_tissue_reordering_but_not_moved_anatomy():
    t2 = tissue_image((1.0, -0.12, -0.37))
    t1 = tissue_image((-0.16, 0.44, 0.82))   # CSF dark, GM/WM swapped: the cross-contrast target
    moved = tissue_image((1.0, -0.12, -0.37), shift=3)
    reordered, displaced = mind_loss(t1, t2).item(), mind_loss(moved, t2).item()
    assert reordered < 0.25 * displaced
    # Pixel L1, the cycle term's measure, ranks them the other way round.
    assert (t1 - t2).abs().mean() > (moved - t2).abs().mean()


def test_loss_is_zero_on_itself_and_has_gradient():
    image = tissue_image()
    output = (image * 0.9).requires_grad_(True)
    assert mind_loss(image, image).item() == pytest.approx(0.0, abs=1e-7)
    noisy = output + 0.05 * torch.randn_like(output)
    mind_loss(noisy, image).backward()
    assert output.grad is not None and output.grad.abs().sum() > 0


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="expected images of shape"):
        mind_descriptor(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="differ in shape"):
        mind_loss(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9))

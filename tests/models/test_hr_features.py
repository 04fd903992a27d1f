"""The HR denoising autoencoder and its perceptual loss (src/models/hr_features.py)."""

import torch

from src.models.hr_features import FeaturePerceptualLoss, HRFeatureEncoder, train_hr_features


def _smooth_batches(step: int) -> torch.Tensor:
    """Deterministic HR-like crops: smooth blobs with sharp edges, in [-1, 1]."""
    gen = torch.Generator().manual_seed(step % 4)
    yy, xx = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    centres = torch.rand(4, 2, generator=gen) * 12 + 6
    radius = torch.hypot(yy[None] - centres[:, 0, None, None], xx[None] - centres[:, 1, None, None])
    return torch.where(radius < 6, 0.6, -1.0)[:, None]


def test_training_is_seeded_reduces_the_restoration_error_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    encoder_a, losses = train_hr_features(_smooth_batches, 60, seed=5, device=torch.device("cpu"), width=8)
    assert torch.equal(torch.get_rng_state(), before)
    encoder_b, _ = train_hr_features(_smooth_batches, 60, seed=5, device=torch.device("cpu"), width=8)
    encoder_c, _ = train_hr_features(_smooth_batches, 60, seed=6, device=torch.device("cpu"), width=8)
    weights = [torch.cat([p.flatten() for p in e.parameters()]) for e in (encoder_a, encoder_b, encoder_c)]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])
    assert losses["last_l1"] < 0.7 * losses["first_l1"], losses
    assert not encoder_a.training and not any(p.requires_grad for p in encoder_a.parameters())


def test_feature_loss_is_zero_on_equal_images_and_passes_gradients_to_the_prediction_only():
    torch.manual_seed(0)
    loss_fn = FeaturePerceptualLoss(HRFeatureEncoder(width=8))
    target = _smooth_batches(0)
    assert loss_fn(target.clone(), target).item() == 0.0
    pred = (target + 0.1 * torch.randn_like(target)).requires_grad_(True)
    loss = loss_fn(pred, target)
    loss.backward()
    assert loss.item() > 0 and pred.grad is not None and pred.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss_fn.parameters())
    loss_fn.train()
    assert not loss_fn.encoder.training  # a frozen feature network stays in eval mode

"""Tests for the GAN helpers: frozen, discriminate, ImagePool, ema_update, real_sign."""

import pytest
import torch
from torch import nn

from src.training.gan_utils import ImagePool, discriminate, ema_update, frozen, real_sign


def _mixed_net():
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    net[0].bias.requires_grad_(False)
    return net


def test_frozen_freezes_and_restores_mixed_flags():
    net = _mixed_net()
    before = [p.requires_grad for p in net.parameters()]
    assert before == [True, False, True, True]
    with frozen(net) as inner:
        assert inner is net
        assert not any(p.requires_grad for p in net.parameters())
    assert [p.requires_grad for p in net.parameters()] == before


def test_frozen_restores_on_exception():
    net = _mixed_net()
    before = [p.requires_grad for p in net.parameters()]
    with pytest.raises(RuntimeError, match="boom"):
        with frozen(net):
            raise RuntimeError("boom")
    assert [p.requires_grad for p in net.parameters()] == before


class _RecordingD(nn.Module):
    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, images):
        self.seen.append(images)
        return images.mean(dim=(1, 2, 3))


def test_discriminate_applies_policy():
    images = torch.rand(4, 1, 16, 16) * 2 - 1
    d = _RecordingD()
    torch.manual_seed(0)
    logits = discriminate(d, images, "color,translation,cutout")
    assert logits.shape == (4,)
    assert not torch.equal(d.seen[-1], images)
    discriminate(d, images, "")
    assert d.seen[-1] is images


def test_discriminate_instance_noise():
    images = torch.zeros(64, 1, 8, 8)
    d = _RecordingD()
    torch.manual_seed(1)
    discriminate(d, images, "", instance_noise_std=0.5)
    assert d.seen[-1].std().item() == pytest.approx(0.5, rel=0.1)
    with pytest.raises(ValueError):
        discriminate(d, images, "", instance_noise_std=-1.0)


def test_discriminate_passes_gradient_to_images():
    images = (torch.rand(2, 1, 16, 16) * 2 - 1).requires_grad_(True)
    discriminate(_RecordingD(), images, "color,translation,cutout", instance_noise_std=0.1).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def _batch(start, n=2):
    """Images whose constant value identifies them: start, start+1, ..."""
    return torch.arange(start, start + n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 4, 4).clone()


def _ids(images):
    return images[:, 0, 0, 0].tolist()


def test_pool_size_zero_returns_input():
    images = _batch(0)
    assert ImagePool(0).query(images) is images


def test_pool_returns_inputs_until_full_and_detaches():
    pool = ImagePool(4, torch.Generator().manual_seed(0))
    fake = _batch(0).requires_grad_(True)
    out = pool.query(fake)
    assert _ids(out) == [0, 1] and not out.requires_grad
    assert _ids(pool.query(_batch(2))) == [2, 3]
    assert len(pool.images) == 4
    # The pool stores clones: changing the caller's tensor later does not change the pool.
    fake.data.fill_(99.0)
    assert sorted(_ids(torch.stack(pool.images))) == [0, 1, 2, 3]


def test_pool_swaps_half_the_time_with_earlier_images():
    pool = ImagePool(10, torch.Generator().manual_seed(1))
    pool.query(_batch(0, n=10))
    inserted = set(range(10))
    n_stored, n_total = 0, 0
    for step in range(400):
        start = 10 + 2 * step
        out_ids = _ids(pool.query(_batch(start)))
        new_ids = {start, start + 1}
        for value in out_ids:
            assert value in inserted | new_ids
            if value not in new_ids:
                n_stored += 1
                assert value < start
        inserted |= new_ids
        n_total += len(out_ids)
    # Binomial(800, 0.5): std 0.018 of the fraction; 0.06 is > 3 std.
    assert abs(n_stored / n_total - 0.5) < 0.06
    # The pool never holds more than `size` images, and each only once.
    stored = _ids(torch.stack(pool.images))
    assert len(stored) == 10 and len(set(stored)) == 10


def test_pool_state_dict_round_trip_resumes_identically():
    pool = ImagePool(5, torch.Generator().manual_seed(2))
    for step in range(6):
        pool.query(_batch(2 * step))
    state = pool.state_dict()
    expected = [pool.query(_batch(100 + 2 * step)) for step in range(10)]

    resumed = ImagePool(5, torch.Generator().manual_seed(12345))
    resumed.load_state_dict(state)
    got = [resumed.query(_batch(100 + 2 * step)) for step in range(10)]
    for a, b in zip(expected, got):
        assert torch.equal(a, b)


def test_pool_state_dict_survives_torch_save(tmp_path):
    pool = ImagePool(3, torch.Generator().manual_seed(3))
    pool.query(_batch(0))
    torch.save(pool.state_dict(), tmp_path / "pool.pt")
    resumed = ImagePool(3)
    resumed.load_state_dict(torch.load(tmp_path / "pool.pt", weights_only=True))
    assert _ids(torch.stack(resumed.images)) == [0, 1]
    with pytest.raises(ValueError):
        ImagePool(1).load_state_dict(pool.state_dict())


def test_ema_update_moves_toward_net_and_copies_buffers():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    ema = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    net[1].running_mean.fill_(2.0)
    before = [p.clone() for p in ema.parameters()]
    ema_update(ema, net, decay=0.9)
    for p_before, p_ema, p in zip(before, ema.parameters(), net.parameters()):
        assert torch.allclose(p_ema, 0.9 * p_before + 0.1 * p)
    assert torch.equal(ema[1].running_mean, net[1].running_mean)
    distance = sum((p_e - p).abs().sum() for p_e, p in zip(ema.parameters(), net.parameters()))
    for _ in range(50):
        ema_update(ema, net, decay=0.9)
    assert sum((p_e - p).abs().sum() for p_e, p in zip(ema.parameters(), net.parameters())) < 0.01 * distance
    assert all(not p.requires_grad or p.grad is None for p in ema.parameters())


def test_ema_decay_one_keeps_ema_and_zero_copies():
    net, ema = nn.Linear(2, 2), nn.Linear(2, 2)
    before = ema.weight.clone()
    ema_update(ema, net, decay=1.0)
    assert torch.equal(ema.weight, before)
    ema_update(ema, net, decay=0.0)
    assert torch.equal(ema.weight, net.weight)


def test_real_sign():
    logits = torch.tensor([2.0, 0.3, -1.0, 0.7])
    assert real_sign(logits, "nonsaturating") == pytest.approx(0.5)
    assert real_sign(logits, "hinge") == pytest.approx(0.5)
    # LSGAN's boundary is 0.5: 2.0 and 0.7 above, 0.3 and -1.0 below.
    assert real_sign(logits, "lsgan") == pytest.approx(0.0)
    assert real_sign(torch.full((2, 1, 3, 3), 0.9), "lsgan") == 1.0
    with pytest.raises(ValueError):
        real_sign(logits, "wgan")
    # The relativistic D calls a real image real when it scores above the fakes' mean (here 0.5).
    assert real_sign(logits, "relativistic", torch.tensor([0.0, 1.0])) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="fake_logits"):
        real_sign(logits, "relativistic")

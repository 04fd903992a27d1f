"""CycleGAN step: all four players learn, flags restored, D only via the choke point, zero weights skipped."""

import pytest
import torch
from torch import nn

import src.training.cyclegan_step as cg
from src.losses.perceptual import VGGPerceptualLoss, build_vgg19_features
from src.models.cyclegan import ResnetGenerator
from src.models.discriminators import PatchDiscriminator
from src.training.gan_utils import ImagePool
from src.training.runtime import make_runtime
from tests.training.helpers import ChokePointGuard, changed, guarded_discriminate, params_of

RUNTIME = make_runtime("cpu", amp=False)


class ThresholdSegmenter(nn.Module):
    """Frozen 1x1-conv segmenter: class by intensity band (stands in for the U-Net)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 1)
        with torch.no_grad():
            self.conv.weight[:, 0, 0, 0] = torch.tensor([-8.0, 0.0, 4.0, 8.0])
            self.conv.bias[:] = torch.tensor([-2.0, 0.0, -1.0, -4.0])
        self.eval().requires_grad_(False)

    def forward(self, x):
        return self.conv(x)


def setup(weights):
    torch.manual_seed(0)
    nets = cg.CycleGANNets(ResnetGenerator(1, 4, 1), ResnetGenerator(1, 4, 1),
                           ChokePointGuard(PatchDiscriminator(1, 4, 2, spectral_norm=False)),
                           ChokePointGuard(PatchDiscriminator(1, 4, 2, spectral_norm=True)))
    opt_g = torch.optim.Adam([*nets.g_sim2real.parameters(), *nets.g_real2sim.parameters()], lr=1e-3)
    opt_d = torch.optim.Adam([*nets.d_real.parameters(), *nets.d_sim.parameters()], lr=1e-3)
    features, _ = build_vgg19_features(None)
    pools = ImagePool(4, torch.Generator().manual_seed(0)), ImagePool(4, torch.Generator().manual_seed(1))
    sim = torch.rand(2, 1, 16, 16) * 2 - 1
    real = torch.rand(2, 1, 16, 16) * 2 - 1
    labels = torch.randint(0, 4, (2, 16, 16))
    return nets, opt_g, opt_d, pools, VGGPerceptualLoss(features, ["relu1_1"]), ThresholdSegmenter(), sim, labels, real


def test_step_updates_all_four_and_restores_flags(monkeypatch):
    monkeypatch.setattr(cg, "discriminate", guarded_discriminate(cg.discriminate))
    weights = cg.CycleGANWeights(adv=1.0, cycle=10.0, identity=5.0, percep=1.0, semantic=1.0)
    nets, opt_g, opt_d, (pool_real, pool_sim), percep, seg, sim, labels, real = setup(weights)
    before = {name: params_of(getattr(nets, name)) for name in ("g_sim2real", "g_real2sim", "d_real", "d_sim")}
    flags = {name: [p.requires_grad for p in getattr(nets, name).parameters()] for name in before}
    stats = cg.cyclegan_step(nets, opt_g, opt_d, pool_real, pool_sim, percep, seg, sim, labels, real, weights,
                             "lsgan", "color,translation,cutout", RUNTIME)
    for name in before:
        assert changed(before[name], getattr(nets, name)), f"{name} did not change"
        assert [p.requires_grad for p in getattr(nets, name).parameters()] == flags[name]
    # Each D: fake in the G step, real + pooled fake in the D step.
    assert nets.d_real.calls == 3 and nets.d_sim.calls == 3
    assert {"g/adv", "g/cycle", "g/identity", "g/percep", "g/semantic", "d_real/adv", "d_sim/adv",
            "d_real/real_sign", "d_sim/real_sign"} <= set(stats)
    assert all(p.grad is None or not p.requires_grad for p in seg.parameters())


@pytest.mark.parametrize("term", ["adv", "cycle", "identity", "percep", "semantic"])
def test_zero_weight_term_is_not_computed(monkeypatch, term):
    monkeypatch.setattr(cg, "discriminate", guarded_discriminate(cg.discriminate))
    values = dict(adv=1.0, cycle=10.0, identity=5.0, percep=1.0, semantic=1.0)
    values[term] = 0.0
    weights = cg.CycleGANWeights(**values)
    nets, opt_g, opt_d, (pool_real, pool_sim), percep, seg, sim, labels, real = setup(weights)
    calls = {"percep": 0, "semantic": 0, "g": 0}

    def count(name, fn):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(percep, "forward", count("percep", percep.forward))
    monkeypatch.setattr(cg, "semantic_ce", count("semantic", cg.semantic_ce))
    monkeypatch.setattr(nets.g_sim2real, "forward", count("g", nets.g_sim2real.forward))
    stats = cg.cyclegan_step(nets, opt_g, opt_d, pool_real, pool_sim, percep, seg, sim, labels, real, weights,
                             "lsgan", "", RUNTIME)
    assert f"g/{term}" not in stats
    if term == "percep":
        assert calls["percep"] == 0
    if term == "semantic":
        assert calls["semantic"] == 0
    if term == "adv":
        assert nets.d_real.calls == 2 and nets.d_sim.calls == 2  # D step only
    # g_sim2real runs for fake_real, plus rec_real (cycle) and identity(real) when on.
    expected_g = 1 + (values["cycle"] > 0) + (values["identity"] > 0)
    assert calls["g"] == expected_g

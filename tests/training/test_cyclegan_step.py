"""CycleGAN step: all four players learn, flags restored, D only via the choke point, zero weights skipped,
and the fused step computes what the textbook six-call step computes."""

import copy

import pytest
import torch
from torch import nn

import src.training.cyclegan_step as cg
from benchmarks.textbook import textbook_cyclegan_step
from src.losses.perceptual import VGGPerceptualLoss
from src.models.cyclegan import ResnetGenerator
from src.models.discriminators import PatchDiscriminator
from src.training.gan_utils import ImagePool
from src.training.runtime import Runtime, make_runtime
from tests.training.helpers import ChokePointGuard, changed, guarded_discriminate, params_of, tiny_vgg

RUNTIME = make_runtime("cpu", amp=False)
ALL_ON = dict(lambda_adv=1.0, lambda_cycle=10.0, lambda_identity=5.0, lambda_percep=1.0, lambda_semantic=1.0,
              lambda_structure=1.0)


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


def setup(policy="color,translation,cutout", spectral_norm=(False, True), guard=True, intensity_hidden=0, **weights):
    torch.manual_seed(0)
    settings = cg.CycleGANSettings(**{**ALL_ON, **weights}, gan_loss="lsgan", policy=policy)
    wrap = ChokePointGuard if guard else (lambda d: d)
    generator = dict(residual=bool(intensity_hidden), intensity_hidden=intensity_hidden)
    nets = cg.CycleGANNets(ResnetGenerator(1, 4, 1, **generator), ResnetGenerator(1, 4, 1, **generator),
                           wrap(PatchDiscriminator(1, 4, 2, spectral_norm=spectral_norm[0])),
                           wrap(PatchDiscriminator(1, 4, 2, spectral_norm=spectral_norm[1])))
    optimizers = cg.CycleGANOptimizers(
        torch.optim.Adam([*nets.g_sim2real.parameters(), *nets.g_real2sim.parameters()], lr=1e-3),
        torch.optim.Adam([*nets.d_real.parameters(), *nets.d_sim.parameters()], lr=1e-3))
    critics = cg.CycleGANCritics(ImagePool(4, torch.Generator().manual_seed(0)),
                                 ImagePool(4, torch.Generator().manual_seed(1)),
                                 VGGPerceptualLoss(tiny_vgg(), ["relu1_1"]), ThresholdSegmenter(), settings)
    batch = cg.CycleGANBatch(torch.rand(2, 1, 16, 16) * 2 - 1, torch.randint(0, 4, (2, 16, 16)),
                             torch.rand(2, 1, 16, 16) * 2 - 1)
    return nets, optimizers, critics, batch, settings


def test_step_updates_all_four_and_restores_flags(monkeypatch):
    monkeypatch.setattr(cg, "discriminate", guarded_discriminate(cg.discriminate))
    monkeypatch.setattr(cg, "discriminate_pair", guarded_discriminate(cg.discriminate_pair))
    nets, optimizers, critics, batch, settings = setup()
    # A mix of flags (one D parameter frozen by the caller): they must come back exactly as they were.
    next(nets.d_sim.parameters()).requires_grad_(False)
    before = {name: params_of(getattr(nets, name)) for name in ("g_sim2real", "g_real2sim", "d_real", "d_sim")}
    flags = {name: [p.requires_grad for p in getattr(nets, name).parameters()] for name in before}
    stats = cg.cyclegan_step(nets, optimizers, critics, batch, settings, RUNTIME)
    for name in before:
        assert changed(before[name], getattr(nets, name)), f"{name} did not change"
        assert [p.requires_grad for p in getattr(nets, name).parameters()] == flags[name]
    # Each D: fake in the G step, then real and pooled fake together in one D-step call.
    assert nets.d_real.calls == 2 and nets.d_sim.calls == 2
    assert {"g/adv", "g/cycle", "g/identity", "g/percep", "g/semantic", "d_real/adv", "d_sim/adv",
            "d_real/real_sign", "d_sim/real_sign"} <= set(stats)
    assert all(p.grad is None for p in critics.segmenter.parameters())


@pytest.mark.parametrize("term", ["adv", "cycle", "identity", "percep", "semantic"])
def test_zero_weight_term_is_not_computed(monkeypatch, term):
    monkeypatch.setattr(cg, "discriminate", guarded_discriminate(cg.discriminate))
    monkeypatch.setattr(cg, "discriminate_pair", guarded_discriminate(cg.discriminate_pair))
    nets, optimizers, critics, batch, settings = setup(policy="", **{f"lambda_{term}": 0.0})
    calls = {"percep": 0, "semantic": 0, "g": 0}

    def count(name, fn):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(critics.perceptual, "forward", count("percep", critics.perceptual.forward))
    monkeypatch.setattr(cg, "semantic_ce", count("semantic", cg.semantic_ce))
    monkeypatch.setattr(nets.g_sim2real, "forward", count("g", nets.g_sim2real.forward))
    stats = cg.cyclegan_step(nets, optimizers, critics, batch, settings, RUNTIME)
    assert f"g/{term}" not in stats
    assert calls["percep"] == (term != "percep")
    assert calls["semantic"] == (0 if term == "semantic" else 2)
    expected_d_calls = 1 if term == "adv" else 2  # the D step's one fused call, plus the G step's
    assert nets.d_real.calls == expected_d_calls and nets.d_sim.calls == expected_d_calls
    # g_sim2real: one call for fake_real (with the identity output fused in), one for rec_real.
    assert calls["g"] == 1 + (term != "cycle")


@pytest.mark.parametrize("term,module", [("percep", "perceptual"), ("semantic", "segmenter")])
def test_positive_weight_without_its_network_fails_at_construction(term, module):
    settings = cg.CycleGANSettings(**ALL_ON, gan_loss="lsgan", policy="")
    parts = {"perceptual": nn.Identity(), "segmenter": ThresholdSegmenter(), module: None}
    with pytest.raises(ValueError, match=f"train.lambda_{term} is 1.0 but no"):
        cg.CycleGANCritics(ImagePool(0), ImagePool(0), parts["perceptual"], parts["segmenter"], settings)
    zero = cg.CycleGANSettings(**{**ALL_ON, f"lambda_{term}": 0.0}, gan_loss="lsgan", policy="")
    cg.CycleGANCritics(ImagePool(0), ImagePool(0), parts["perceptual"], parts["segmenter"], zero)


@pytest.mark.parametrize("identity,intensity_hidden", [(5.0, 0), (0.0, 0), (5.0, 8)])
def test_fused_step_equals_textbook_step(identity, intensity_hidden):
    """Same seed, same weights: the fused step (4 G calls, 1 D call per D step) gives the textbook
    step's losses and gradients. Spectral norm is off here: with it the fused D step runs one power
    iteration instead of two, a documented difference of the fused step. With the intensity branch
    (refiner generators) the concatenated batch must still split into the per-part outputs."""
    nets, optimizers, critics, batch, settings = setup(spectral_norm=(False, False), guard=False,
                                                       lambda_identity=identity, intensity_hidden=intensity_hidden)
    if intensity_hidden:  # a non-zero branch, as after training (its zero start would hide a mismatch)
        for g in (nets.g_sim2real, nets.g_real2sim):
            torch.nn.init.normal_(g.intensity.net[-1].weight, 0.0, 0.5)
    twin = copy.deepcopy((nets, optimizers, critics, batch, settings))
    torch.manual_seed(7)
    fused = cg.cyclegan_step(nets, optimizers, critics, batch, settings, RUNTIME)
    torch.manual_seed(7)
    textbook = textbook_cyclegan_step(*twin)
    for key, value in textbook.items():
        assert fused[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    for name in ("g_sim2real", "g_real2sim", "d_real", "d_sim"):
        for (pname, p), q in zip(getattr(nets, name).named_parameters(), getattr(twin[0], name).parameters()):
            # Gradients, not updated weights: Adam turns a bias's float-noise gradient (mathematically
            # 0 before an instance norm) into a full-size step of either sign. atol: such a bias's float
            # noise, ~1e-6 of the largest gradient (~12 here) once every term is on.
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}.{pname}: {m}")


def test_bf16_path_keeps_fp32_master_weights_and_runs_convs_in_bf16():
    nets, optimizers, critics, batch, settings = setup(guard=False)
    conv_dtypes = []
    first_conv = next(m for m in nets.g_sim2real.modules() if isinstance(m, nn.Conv2d))
    first_conv.register_forward_hook(lambda module, args, out: conv_dtypes.append(out.dtype))
    stats = cg.cyclegan_step(nets, optimizers, critics, batch, settings,
                             Runtime(torch.device("cpu"), amp=True, channels_last=False))
    assert torch.bfloat16 in conv_dtypes
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())
    for name in ("g_sim2real", "g_real2sim", "d_real", "d_sim"):
        assert all(p.dtype == torch.float32 for p in getattr(nets, name).parameters()), name
    for optimizer in (optimizers.g, optimizers.d):
        for state in optimizer.state.values():
            assert state["exp_avg"].dtype == torch.float32 and state["exp_avg_sq"].dtype == torch.float32


def test_generator_param_groups_give_the_intensity_branch_its_own_lr():
    from src.train_cyclegan import generator_param_groups

    gens = [ResnetGenerator(1, 4, 1, residual=True, intensity_hidden=8) for _ in range(2)]
    rest, branch = generator_param_groups(gens, 2e-4, 3e-3)
    assert (rest["lr"], branch["lr"]) == (2e-4, 3e-3)
    every = [p for g in gens for p in g.parameters()]
    grouped = rest["params"] + branch["params"]
    assert len(grouped) == len(every) and {id(p) for p in grouped} == {id(p) for p in every}  # each once
    assert {id(p) for p in branch["params"]} == {id(p) for g in gens for p in g.intensity.parameters()}
    plain = [ResnetGenerator(1, 4, 1, residual=True) for _ in range(2)]
    assert [len(group["params"]) for group in generator_param_groups(plain, 2e-4, 3e-3)] == \
        [len([*plain[0].parameters(), *plain[1].parameters()])]


def test_cycle_ramp():
    from src.train_cyclegan import cycle_ramp

    assert [cycle_ramp(0)(s) for s in (0, 5)] == [1.0, 1.0]
    assert [cycle_ramp(4)(s) for s in (0, 1, 4, 9)] == [0.0, 0.25, 1.0, 1.0]
    assert [cycle_ramp(4, delay_steps=10)(s) for s in (0, 9, 10, 11, 14, 20)] == [0.0, 0.0, 0.0, 0.25, 1.0, 1.0]
    assert [cycle_ramp(0, delay_steps=3)(s) for s in (0, 2, 3)] == [0.0, 0.0, 1.0]
